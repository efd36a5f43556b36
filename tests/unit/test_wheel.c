/* test_wheel.c - the timing wheel, with the time passed in. */
#include <stddef.h>

#include "core/wheel.h"
#include "check.h"

#define S 1000000ull /* a second in microseconds */

struct item {
    struct wheel_timer t;
    unsigned fired;
    uint64_t again_us;          /* set again to this when fired (0: not) */
    struct wheel_timer *cancel; /* cancelled when fired */
};

static struct wheel w; /* zeroed: a valid empty wheel */
static unsigned looked; /* fired calls of the last expire */

static void fired(struct wheel_timer *t, void *arg)
{
    struct item *it = (struct item *)((char *)t - offsetof(struct item, t));
    it->fired++;
    looked++;
    if (it->again_us)
        wheel_set(arg, t, it->again_us);
    if (it->cancel)
        wheel_cancel(it->cancel);
}

static void expire(uint64_t now)
{
    looked = 0;
    wheel_expire(&w, now, fired, &w);
}

static void test_due_in_order_of_time(void)
{
    struct item a = {0}, b = {0}, c = {0};
    expire(100 * S); /* the clock starts */
    wheel_set(&w, &a.t, 100 * S + 300000);
    wheel_set(&w, &b.t, 101 * S + 1);
    wheel_set(&w, &c.t, 3000 * S);
    expire(100 * S + 299999);
    CHECK_EQ_UINT(looked, 0);
    expire(100 * S + 300000); /* due exactly now */
    CHECK_EQ_UINT(a.fired, 1);
    CHECK(!a.t.pprev);
    expire(101 * S);
    CHECK_EQ_UINT(b.fired, 0); /* same slot, a microsecond later */
    expire(105 * S);
    CHECK_EQ_UINT(b.fired, 1);
    CHECK_EQ_UINT(a.fired, 1); /* once only */
    expire(2999 * S);
    CHECK_EQ_UINT(c.fired, 0);
    expire(3000 * S);
    CHECK_EQ_UINT(c.fired, 1);
    CHECK_EQ_UINT(looked, 1);
}

static void test_past_and_far(void)
{
    struct item past = {0}, far = {0};
    expire(4000 * S);
    wheel_set(&w, &past.t, 10 * S); /* long past: the next expire */
    /* further out than the wheel spans: waits out whole revolutions */
    wheel_set(&w, &far.t, 4000 * S + 3ull * WHEEL_SLOTS * S + 5 * S);
    expire(4000 * S + 1);
    CHECK_EQ_UINT(past.fired, 1);
    expire(4000 * S + 2ull * WHEEL_SLOTS * S + 5 * S); /* the same slot, too early */
    CHECK_EQ_UINT(far.fired, 0);
    expire(4000 * S + 3ull * WHEEL_SLOTS * S + 4 * S);
    CHECK_EQ_UINT(far.fired, 0);
    expire(4000 * S + 3ull * WHEEL_SLOTS * S + 6 * S);
    CHECK_EQ_UINT(far.fired, 1);
}

static void test_move_cancel_and_reentry(void)
{
    uint64_t now = 20000 * S;
    struct item a = {0}, b = {0}, c = {0};
    expire(now);
    wheel_set(&w, &a.t, now + 50 * S);
    wheel_set(&w, &a.t, now + 2 * S); /* moved sooner */
    wheel_set(&w, &b.t, now + 2 * S);
    wheel_cancel(&b.t);
    wheel_cancel(&b.t); /* twice is fine */
    expire(now + 3 * S);
    CHECK_EQ_UINT(a.fired, 1);
    CHECK_EQ_UINT(b.fired, 0);
    expire(now + 60 * S);
    CHECK_EQ_UINT(a.fired, 1); /* not at its old time */

    /* set again for a time already due: waits for the next call; one that
     * cancels another due in the same call keeps it from firing */
    now += 100 * S;
    a = (struct item){.again_us = now};
    b = (struct item){.cancel = &c.t};
    c = (struct item){0};
    wheel_set(&w, &b.t, now);
    wheel_set(&w, &c.t, now);
    wheel_set(&w, &a.t, now);
    expire(now);
    CHECK_EQ_UINT(a.fired + b.fired + c.fired, 2);
    CHECK_EQ_UINT(a.fired, 1);
    a.again_us = 0;
    expire(now + 1);
    CHECK_EQ_UINT(a.fired, 2);
}

static void test_many(void)
{
    enum { N = 10000 };
    static struct item v[N];
    uint64_t now = 90000 * S;
    expire(now);
    for (int i = 0; i < N; i++)
        wheel_set(&w, &v[i].t, now + (uint64_t)(i % 100) * S + 1);
    expire(now + 10 * S);
    CHECK_EQ_UINT(looked, 1000); /* slots 0..9 */
    expire(now + 10 * S + 500000);
    CHECK_EQ_UINT(looked, 100);
    expire(now + 100 * S);
    CHECK_EQ_UINT(looked, 8900);
    unsigned total = 0;
    for (int i = 0; i < N; i++)
        total += v[i].fired;
    CHECK_EQ_UINT(total, N);
}

int main(void)
{
    RUN(test_due_in_order_of_time);
    RUN(test_past_and_far);
    RUN(test_move_cancel_and_reentry);
    RUN(test_many);
    return check_summary();
}
