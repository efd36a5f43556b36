/* frames.c - see frames.h. */
#include "net/frames.h"

#include <string.h>

#include "core/msg.h"

_Static_assert(CONN_FRAMES_BYTES <= 0x10000,
               "with two frames or more, each is under 64 KiB: 16-bit lengths");

size_t frames_join(unsigned char *out, struct msg *const *m, size_t n)
{
    size_t len = 0;
    for (size_t i = 0; i < n; i++) {
        size_t k = m[i]->len;
        out[len++] = 0x81; /* FIN, text */
        if (k < 126) {
            out[len++] = (unsigned char)k;
        } else {
            out[len++] = 126;
            out[len++] = (unsigned char)(k >> 8);
            out[len++] = (unsigned char)k;
        }
        memcpy(out + len, msg_data(m[i]), k);
        len += k;
    }
    return len;
}
