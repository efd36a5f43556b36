/* frames.c - see frames.h. */
#include "net/frames.h"

#include <stdint.h>
#include <string.h>

#include "core/msg.h"

_Static_assert(CONN_FRAMES_BYTES <= 0x10000,
               "with two frames or more, each is under 64 KiB: 16-bit lengths");

/* Writes the header of a k-byte frame at out; returns its length. */
static size_t header(unsigned char *out, uint64_t k)
{
    size_t h = k < 126 ? 2 : k <= 0xffff ? 4 : 10;
    out[0] = 0x81; /* FIN, text */
    out[1] = h == 2 ? (unsigned char)k : h == 4 ? 126 : 127;
    for (size_t i = 2; i < h; i++) /* big-endian length */
        out[i] = (unsigned char)(k >> (8 * (h - 1 - i)));
    return h;
}

size_t frames_header(unsigned char *payload, size_t len)
{
    unsigned char h[FRAMES_HEADER_MAX];
    size_t n = header(h, len);
    memcpy(payload - n, h, n);
    return n;
}

size_t frames_join(unsigned char *out, struct msg *const *m, size_t n)
{
    size_t len = 0;
    for (size_t i = 0; i < n; i++) {
        size_t k = m[i]->len;
        len += header(out + len, k);
        memcpy(out + len, msg_data(m[i]), k);
        len += k;
    }
    return len;
}
