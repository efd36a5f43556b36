/* test_msg.c - refcounted msgs and the bounded per-client queue. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "core/msg.h"

/* A msg of len bytes (len >= 4) whose first four bytes hold tag. */
static struct msg *tagged(uint32_t tag, size_t len)
{
    struct msg *m = msg_new(len);
    if (m) {
        memset(msg_data(m), 'x', len);
        memcpy(msg_data(m), &tag, sizeof tag);
    }
    return m;
}

static uint32_t tag_of(struct msg *m)
{
    uint32_t t;
    memcpy(&t, msg_data(m), sizeof t);
    return t;
}

static void test_msg_refcount(void)
{
    struct msg *m = msg_new(10);
    CHECK_NOT_NULL(m);
    if (!m)
        return;
    CHECK_EQ_UINT(m->refs, 1);
    CHECK_EQ_UINT(m->len, 10);
    /* the frame sits right after MSG_HEADROOM bytes of headroom */
    CHECK_EQ_INT(msg_data(m) - m->buf, MSG_HEADROOM);
    memset(m->buf, 0, MSG_HEADROOM);     /* headroom is writable ... */
    memcpy(msg_data(m), "0123456789", 10); /* ... and so is the frame */
    CHECK_PTR_EQ(msg_ref(m), m);
    CHECK_EQ_UINT(m->refs, 2);
    msg_ref(m);
    CHECK_EQ_UINT(m->refs, 3);
    msg_unref(m);
    msg_unref(m);
    CHECK_EQ_UINT(m->refs, 1);
    CHECK_MEM(msg_data(m), m->len, "0123456789");
    msg_unref(m); /* frees: ASan reports a leak or a double free otherwise */

    msg_unref(NULL); /* harmless */

    struct msg *z = msg_new(0);
    CHECK_NOT_NULL(z);
    if (z) {
        CHECK_EQ_UINT(z->len, 0);
        CHECK_EQ_UINT(z->refs, 1);
        msg_unref(z);
    }
}

static void test_msgq_empty(void)
{
    struct msgq q = {0};
    CHECK_NULL(msgq_peek(&q));
    msgq_pop(&q); /* no-op on an empty queue */
    CHECK_EQ_UINT(q.count, 0);
    CHECK_EQ_UINT(q.bytes, 0);
    msgq_clear(&q);
    CHECK_NULL(q.ring);
    CHECK_EQ_UINT(q.count, 0);
}

static void test_msgq_order_and_bytes(void)
{
    struct msgq q = {0};
    struct msg *a = tagged(1, 4), *b = tagged(2, 5), *c = tagged(3, 7);
    CHECK_EQ_INT(msgq_push(&q, a, 1000), 0);
    CHECK_EQ_INT(msgq_push(&q, b, 1000), 0);
    CHECK_EQ_INT(msgq_push(&q, c, 1000), 0);
    CHECK_EQ_UINT(q.count, 3);
    CHECK_EQ_UINT(q.bytes, 16);
    /* the queue took one reference each */
    CHECK_EQ_UINT(a->refs, 2);
    CHECK_EQ_UINT(b->refs, 2);
    CHECK_EQ_UINT(c->refs, 2);

    CHECK_PTR_EQ(msgq_peek(&q), a);
    CHECK_PTR_EQ(msgq_peek(&q), a); /* peek does not remove */
    CHECK_EQ_UINT(a->refs, 2);
    msgq_pop(&q);
    CHECK_EQ_UINT(a->refs, 1);
    CHECK_EQ_UINT(q.count, 2);
    CHECK_EQ_UINT(q.bytes, 12);
    CHECK_PTR_EQ(msgq_peek(&q), b);
    msgq_pop(&q);
    CHECK_EQ_UINT(b->refs, 1);
    CHECK_EQ_UINT(q.bytes, 7);
    CHECK_PTR_EQ(msgq_peek(&q), c);
    msgq_pop(&q);
    CHECK_EQ_UINT(c->refs, 1);
    CHECK_EQ_UINT(q.count, 0);
    CHECK_EQ_UINT(q.bytes, 0);
    CHECK_NULL(msgq_peek(&q));

    /* the same msg twice: two references, two entries */
    CHECK_EQ_INT(msgq_push(&q, a, 1000), 0);
    CHECK_EQ_INT(msgq_push(&q, a, 1000), 0);
    CHECK_EQ_UINT(a->refs, 3);
    CHECK_EQ_UINT(q.bytes, 8);
    msgq_clear(&q);
    CHECK_EQ_UINT(a->refs, 1);

    msg_unref(a);
    msg_unref(b);
    msg_unref(c);
}

static void test_msgq_limit(void)
{
    struct msgq q = {0};
    struct msg *m4 = tagged(1, 4), *m6 = tagged(2, 6), *m1 = tagged(3, 4);
    struct msg *big = tagged(4, 11), *empty = msg_new(0);

    /* a msg alone larger than the limit is refused, even on an empty queue */
    CHECK_EQ_INT(msgq_push(&q, big, 10), -1);
    CHECK_EQ_UINT(q.count, 0);
    CHECK_EQ_UINT(q.bytes, 0);
    CHECK_EQ_UINT(big->refs, 1);

    CHECK_EQ_INT(msgq_push(&q, m4, 10), 0);
    CHECK_EQ_INT(msgq_push(&q, m6, 10), 0); /* exactly 10: fits */
    CHECK_EQ_UINT(q.bytes, 10);
    CHECK_EQ_INT(msgq_push(&q, m1, 10), -1); /* 14 > 10 */
    CHECK_EQ_UINT(q.count, 2);
    CHECK_EQ_UINT(q.bytes, 10);
    CHECK_EQ_UINT(m1->refs, 1); /* refused: no reference taken */
    CHECK_EQ_INT(msgq_push(&q, empty, 10), 0); /* 0 more bytes still fits */
    CHECK_EQ_UINT(q.count, 3);
    CHECK_EQ_UINT(q.bytes, 10);

    /* room again once the head is written */
    msgq_pop(&q);
    CHECK_EQ_UINT(q.bytes, 6);
    CHECK_EQ_INT(msgq_push(&q, m1, 10), 0);
    CHECK_EQ_UINT(q.bytes, 10);
    CHECK_EQ_UINT(m1->refs, 2);
    /* a smaller limit on a later push is honoured too */
    CHECK_EQ_INT(msgq_push(&q, empty, 9), -1);

    msgq_clear(&q);
    CHECK_EQ_UINT(m4->refs, 1);
    CHECK_EQ_UINT(m6->refs, 1);
    CHECK_EQ_UINT(m1->refs, 1);
    CHECK_EQ_UINT(empty->refs, 1);
    msg_unref(m4);
    msg_unref(m6);
    msg_unref(m1);
    msg_unref(big);
    msg_unref(empty);
}

/* Pops everything, checking tags first..first+n-1 in order. */
static void drain_expect(struct msgq *q, uint32_t first, uint32_t n, int line)
{
    for (uint32_t i = 0; i < n; i++) {
        struct msg *m = msgq_peek(q);
        if (!check_record(m != NULL, __FILE__, line, "queue empty at %u of %u", i, n))
            return;
        if (!check_record(tag_of(m) == first + i, __FILE__, line,
                          "entry %u: tag %u, want %u", i, tag_of(m), first + i))
            return;
        msgq_pop(q);
    }
    check_record(msgq_peek(q) == NULL, __FILE__, line, "queue not empty after %u", n);
}

static void test_msgq_growth_wraparound(void)
{
    enum { N = 1000 };
    static struct msg *ms[N];
    for (uint32_t i = 0; i < N; i++)
        ms[i] = tagged(i, 8);
    struct msgq q = {0};

    /* wrap inside the first ring, then grow while head is not at 0 */
    for (uint32_t i = 0; i < 6; i++)
        CHECK_EQ_INT(msgq_push(&q, ms[i], SIZE_MAX), 0);
    for (uint32_t i = 0; i < 4; i++)
        msgq_pop(&q);
    for (uint32_t i = 6; i < 30; i++)
        CHECK_EQ_INT(msgq_push(&q, ms[i], SIZE_MAX), 0);
    CHECK_EQ_UINT(q.count, 26);
    CHECK_EQ_UINT(q.bytes, 26 * 8);
    drain_expect(&q, 4, 26, __LINE__);
    CHECK_EQ_UINT(q.bytes, 0);

    /* many entries at once */
    for (uint32_t i = 0; i < N; i++)
        CHECK_EQ_INT(msgq_push(&q, ms[i], SIZE_MAX), 0);
    CHECK_EQ_UINT(q.count, N);
    CHECK_EQ_UINT(q.bytes, (size_t)N * 8);
    CHECK(q.cap >= N);
    for (uint32_t i = 0; i < N; i++)
        CHECK_EQ_UINT(ms[i]->refs, 2);
    drain_expect(&q, 0, N, __LINE__);
    for (uint32_t i = 0; i < N; i++)
        CHECK_EQ_UINT(ms[i]->refs, 1);

    /* a queue that keeps moving: push 3, pop 2, so head sweeps the ring
     * many times while it grows */
    uint32_t next_in = 0, next_out = 0;
    int order_ok = 1;
    while (next_in < N) {
        for (int k = 0; k < 3 && next_in < N; k++)
            CHECK_EQ_INT(msgq_push(&q, ms[next_in++], SIZE_MAX), 0);
        for (int k = 0; k < 2; k++) {
            struct msg *m = msgq_peek(&q);
            if (m && tag_of(m) != next_out)
                order_ok = 0;
            next_out++;
            msgq_pop(&q);
        }
    }
    CHECK(order_ok);
    CHECK_EQ_UINT(q.count, next_in - next_out);
    CHECK_EQ_UINT(q.bytes, (size_t)(next_in - next_out) * 8);
    drain_expect(&q, next_out, next_in - next_out, __LINE__);
    CHECK_EQ_UINT(q.bytes, 0);

    /* an emptied queue is as good as new */
    CHECK_EQ_INT(msgq_push(&q, ms[7], SIZE_MAX), 0);
    CHECK_PTR_EQ(msgq_peek(&q), ms[7]);
    msgq_clear(&q);

    for (uint32_t i = 0; i < N; i++) {
        CHECK_EQ_UINT(ms[i]->refs, 1);
        msg_unref(ms[i]);
    }
}

static void test_msgq_clear_drops_refs(void)
{
    enum { N = 100 };
    struct msg *ms[N];
    struct msgq q = {0};
    for (uint32_t i = 0; i < N; i++) {
        ms[i] = tagged(i, 16);
        msg_ref(ms[i]); /* the test holds two references to each */
    }
    for (uint32_t i = 0; i < N; i++)
        CHECK_EQ_INT(msgq_push(&q, ms[i], SIZE_MAX), 0);
    /* some popped, so the ring is neither full nor starting at 0 */
    for (uint32_t i = 0; i < 10; i++)
        msgq_pop(&q);
    for (uint32_t i = 0; i < 10; i++)
        CHECK_EQ_INT(msgq_push(&q, ms[i], SIZE_MAX), 0);
    for (uint32_t i = 0; i < N; i++)
        CHECK_EQ_UINT(ms[i]->refs, 3);

    msgq_clear(&q);
    CHECK_EQ_UINT(q.count, 0);
    CHECK_EQ_UINT(q.bytes, 0);
    CHECK_NULL(q.ring);
    CHECK_NULL(msgq_peek(&q));
    for (uint32_t i = 0; i < N; i++)
        CHECK_EQ_UINT(ms[i]->refs, 2);

    /* the queue works after a clear */
    CHECK_EQ_INT(msgq_push(&q, ms[0], 100), 0);
    CHECK_EQ_UINT(ms[0]->refs, 3);
    msgq_clear(&q);
    msgq_clear(&q); /* twice is harmless */

    for (uint32_t i = 0; i < N; i++) {
        CHECK_EQ_UINT(ms[i]->refs, 2);
        msg_unref(ms[i]);
        msg_unref(ms[i]);
    }
}

int main(void)
{
    RUN(test_msg_refcount);
    RUN(test_msgq_empty);
    RUN(test_msgq_order_and_bytes);
    RUN(test_msgq_limit);
    RUN(test_msgq_growth_wraparound);
    RUN(test_msgq_clear_drops_refs);
    return check_summary();
}
