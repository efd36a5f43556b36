/* eio.c - see eio.h. */
#include "proto/eio.h"

#include <stdio.h>
#include <string.h>

int eio_type(const char *buf, size_t len)
{
    if (len == 0)
        return EIO_INVALID;
    if (buf[0] == 'b')
        return EIO_BINARY;
    if (buf[0] < '0' || buf[0] > '6')
        return EIO_INVALID;
    return buf[0] - '0';
}

struct msg *eio_encode_open(const char *sid, int upgradable, double ping_interval_s,
                            double ping_timeout_s, size_t max_payload)
{
    char buf[256];
    int n = snprintf(buf, sizeof buf,
                     "0{\"sid\":\"%.*s\",\"upgrades\":[%s],\"pingInterval\":%.0f,"
                     "\"pingTimeout\":%.0f,\"maxPayload\":%zu}",
                     EIO_SID_MAX, sid, upgradable ? "\"websocket\"" : "",
                     ping_interval_s * 1000, ping_timeout_s * 1000, max_payload);
    return msg_from_text(buf, (size_t)n);
}

struct msg *eio_encode_bare(enum eio_type t)
{
    char c = (char)('0' + t);
    return msg_from_text(&c, 1);
}

int eio_payload_next(const char **cur, const char *end, const char **pkt, size_t *len)
{
    if (*cur >= end)
        return -1;
    const char *sep = memchr(*cur, EIO_SEP, (size_t)(end - *cur));
    *pkt = *cur;
    *len = (size_t)((sep ? sep : end) - *cur);
    *cur = sep ? sep + 1 : end;
    return 0;
}

size_t eio_payload_join(unsigned char *out, struct msg *const *m, size_t n)
{
    size_t len = 0;
    for (size_t i = 0; i < n; i++) {
        if (i)
            out[len++] = (unsigned char)EIO_SEP;
        memcpy(out + len, msg_data(m[i]), m[i]->len);
        len += m[i]->len;
    }
    return len;
}
