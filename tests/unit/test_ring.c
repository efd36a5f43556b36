/* test_ring.c - the embedded engine's per-channel history ring. */
#include "broker/ring.h"
#include "check.h"

#define S 1000000ull

static void test_append_read_wrap(void)
{
    struct ring *r = ring_new(3);
    struct history_entry e[8];
    CHECK_EQ_UINT(ring_top(r), 0);
    CHECK_EQ_UINT(ring_read(r, 0, 1, S, e, 8), 0);
    const char *p[5] = {"1", "22", "333", "4444", "55555"};
    for (int i = 0; i < 5; i++)
        CHECK_EQ_UINT(ring_append(r, p[i], strlen(p[i]), 10), (uint64_t)i + 1);
    CHECK_EQ_UINT(ring_top(r), 5);
    size_t n = ring_read(r, 0, 10, S, e, 8); /* 1 and 2 fell out */
    CHECK_EQ_UINT(n, 3);
    CHECK_EQ_UINT(e[0].offset, 3);
    CHECK_MEM(e[0].payload, e[0].len, "333");
    CHECK_EQ_UINT(e[2].offset, 5);
    CHECK_MEM(e[2].payload, e[2].len, "55555");
    n = ring_read(r, 3, 10, S, e, 8);
    CHECK_EQ_UINT(n, 2);
    CHECK_EQ_UINT(e[0].offset, 4);
    CHECK_EQ_UINT(ring_read(r, 5, 10, S, e, 8), 0);
    CHECK_EQ_UINT(ring_read(r, 99, 10, S, e, 8), 0); /* from the future */
    CHECK_EQ_UINT(ring_read(r, 0, 10, S, e, 1), 1);  /* limit */
    ring_free(r);
}

static void test_ttl(void)
{
    struct ring *r = ring_new(4);
    struct history_entry e[4];
    ring_append(r, "1", 1, 0);
    ring_append(r, "2", 1, 2 * S);
    CHECK_EQ_UINT(ring_read(r, 0, 3 * S - 1, S, e, 4), 2); /* counted from the last */
    CHECK_EQ_UINT(ring_read(r, 0, 3 * S, S, e, 4), 0);
    CHECK_EQ_UINT(ring_append(r, "3", 1, 9 * S), 3); /* offsets go on */
    CHECK_EQ_UINT(ring_read(r, 0, 9 * S, S, e, 4), 3);
    ring_free(r);
}

int main(void)
{
    RUN(test_append_read_wrap);
    RUN(test_ttl);
    return check_summary();
}
