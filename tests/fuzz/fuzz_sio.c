/* fuzz_sio.c - libFuzzer entry point for what Socket.IO clients send: a
 * polling payload split on 0x1e, each Engine.IO packet typed, each message
 * parsed as a Socket.IO packet, an EVENT turned into its channel payload and
 * that payload back into the frame Socket.IO clients get.
 *
 * Besides crashes (ASan/UBSan), it aborts when a rule the gateway relies on
 * breaks: packets lie inside the input and hold no separator; parsed data
 * and namespaces lie inside the packet, data is valid JSON; a channel
 * payload is a valid JSON object; the frame built from any valid payload is
 * "42" and a valid JSON array. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/eio.h"
#include "proto/json.h"
#include "proto/sio.h"

static void check_frame(const char *payload, size_t len)
{
    struct msg *m = sio_encode_delivery(payload, len);
    if (!m)
        return;
    const char *f = (const char *)msg_data(m);
    if (m->len < 4 || memcmp(f, "42[", 3) || !json_valid(f + 2, m->len - 2))
        abort();
    msg_unref(m);
}

static void check_packet(const char *pkt, size_t len)
{
    if (eio_type(pkt, len) != EIO_MESSAGE)
        return;
    struct sio_packet p;
    const char *why;
    if (sio_parse(pkt + 1, len - 1, &p, &why) < 0)
        return;
    const char *end = pkt + len;
    if ((p.data && (p.data < pkt || p.data + p.data_len > end ||
                    !json_valid(p.data, p.data_len))) ||
        (p.nsp_len > 1 && (p.nsp < pkt || p.nsp + p.nsp_len > end)))
        abort();
    size_t n;
    char *payload = sio_event_payload(p.data, p.data_len, &n, &why);
    if (!payload)
        return;
    if (!json_valid(payload, n) || payload[0] != '{')
        abort();
    check_frame(payload, n);
    free(payload);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *cur = (const char *)data, *end = cur + size, *pkt;
    size_t len;
    while (eio_payload_next(&cur, end, &pkt, &len) == 0) {
        if (pkt < (const char *)data || pkt + len > end || memchr(pkt, EIO_SEP, len))
            abort();
        check_packet(pkt, len);
    }
    if (json_valid((const char *)data, size))
        check_frame((const char *)data, size);
    return 0;
}
