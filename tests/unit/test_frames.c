/* test_frames.c - server frames, byte for byte: header sizes at the
 * 125/126 and 65535/65536 boundaries, in place and joined, order, and
 * payloads intact. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "core/msg.h"
#include "net/frames.h"

static struct msg *filled(size_t len, char c)
{
    struct msg *m = msg_new(len);
    if (m)
        memset(msg_data(m), c, len);
    return m;
}

static void test_header_sizes(void)
{
    static const size_t lens[] = {0, 1, 125, 126, 127, 1000, 65535};
    static const size_t hdrs[] = {2, 2, 2, 4, 4, 4, 4};
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        struct msg *m[2] = {filled(lens[i], 'a'), filled(1, 'z')};
        CHECK_NOT_NULL(m[0]);
        CHECK_NOT_NULL(m[1]);
        static unsigned char out[FRAMES_JOIN_MAX];
        size_t n = frames_join(out, m, 2);
        CHECK_EQ_UINT(n, hdrs[i] + lens[i] + 3);
        CHECK_EQ_UINT(out[0], 0x81);
        if (hdrs[i] == 2) {
            CHECK_EQ_UINT(out[1], lens[i]); /* unmasked, 7-bit length */
        } else {
            CHECK_EQ_UINT(out[1], 126);
            CHECK_EQ_UINT((size_t)out[2] << 8 | out[3], lens[i]);
        }
        CHECK(lens[i] == 0 || (out[hdrs[i]] == 'a' && out[hdrs[i] + lens[i] - 1] == 'a'));
        const unsigned char *next = out + hdrs[i] + lens[i];
        CHECK(next[0] == 0x81 && next[1] == 1 && next[2] == 'z');
        msg_unref(m[0]);
        msg_unref(m[1]);
    }
}

static void test_many_in_order(void)
{
    struct msg *m[CONN_FRAMES_MAX];
    for (int i = 0; i < CONN_FRAMES_MAX; i++)
        m[i] = filled((size_t)(CONN_FRAMES_BYTES / CONN_FRAMES_MAX), (char)('0' + i % 64));
    static unsigned char out[FRAMES_JOIN_MAX];
    size_t n = frames_join(out, m, CONN_FRAMES_MAX);
    size_t per = CONN_FRAMES_BYTES / CONN_FRAMES_MAX, hdr = per < 126 ? 2 : 4;
    CHECK_EQ_UINT(n, CONN_FRAMES_MAX * (hdr + per));
    CHECK(n <= FRAMES_JOIN_MAX);
    int ordered = 1;
    for (int i = 0; i < CONN_FRAMES_MAX; i++) {
        const unsigned char *f = out + (size_t)i * (hdr + per);
        ordered &= f[0] == 0x81 && f[hdr] == (unsigned char)('0' + i % 64) &&
                   f[hdr + per - 1] == (unsigned char)('0' + i % 64);
        msg_unref(m[i]);
    }
    CHECK(ordered);
}

/* One frame's header, written into the headroom right before its payload:
 * 2, 4 and 10 bytes at the 125/126 and 65535/65536 boundaries. */
static void test_header_in_place(void)
{
    static const size_t lens[] = {0, 125, 126, 65535, 65536, 70000};
    static const size_t hdrs[] = {2, 2, 4, 4, 10, 10};
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        struct msg *m = filled(lens[i], 'p');
        CHECK_NOT_NULL(m);
        memset(m->buf, 0xee, MSG_HEADROOM);
        size_t h = frames_header(msg_data(m), lens[i]);
        CHECK_EQ_UINT(h, hdrs[i]);
        const unsigned char *f = msg_data(m) - h;
        CHECK_EQ_UINT(f[0], 0x81);
        uint64_t len = f[1];
        if (h > 2) {
            CHECK_EQ_UINT(f[1], h == 4 ? 126 : 127);
            len = 0;
            for (size_t k = 2; k < h; k++)
                len = len << 8 | f[k];
        }
        CHECK_EQ_UINT(len, lens[i]);
        CHECK(m->buf[MSG_HEADROOM - h - 1] == 0xee); /* nothing before the header */
        CHECK(lens[i] == 0 || (f[h] == 'p' && f[h + lens[i] - 1] == 'p'));
        msg_unref(m);
    }
}

int main(void)
{
    RUN(test_header_sizes);
    RUN(test_header_in_place);
    RUN(test_many_in_order);
    return check_summary();
}
