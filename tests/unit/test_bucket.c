/* test_bucket.c - the publish token bucket, with the time passed in. */
#include "core/bucket.h"
#include "check.h"

static void test_burst_then_rate(void)
{
    struct bucket b;
    bucket_init(&b, 5, 1000000);
    for (int i = 0; i < 5; i++)
        CHECK_EQ_INT(bucket_take(&b, 2, 5, 1000000), 1); /* the burst */
    CHECK_EQ_INT(bucket_take(&b, 2, 5, 1000000), 0);
    CHECK_EQ_INT(bucket_take(&b, 2, 5, 1400000), 0);     /* 0.8 token */
    CHECK_EQ_INT(bucket_take(&b, 2, 5, 1500000), 1);     /* 1 token at 2/s */
    CHECK_EQ_INT(bucket_take(&b, 2, 5, 1500000), 0);
}

static void test_refill_is_capped(void)
{
    struct bucket b;
    bucket_init(&b, 3, 0);
    for (int i = 0; i < 3; i++)
        bucket_take(&b, 100, 3, 0);
    int taken = 0;
    for (int i = 0; i < 10; i++) /* an hour idle saves no more than the burst */
        taken += bucket_take(&b, 100, 3, 3600000000ull);
    CHECK_EQ_INT(taken, 3);
}

static void test_unlimited_and_clock_going_back(void)
{
    struct bucket b;
    bucket_init(&b, 1, 5000000);
    for (int i = 0; i < 1000; i++)
        CHECK_EQ_INT(bucket_take(&b, 0, 1, 5000000), 1);
    CHECK_EQ_INT(bucket_take(&b, 1, 1, 5000000), 1);
    CHECK_EQ_INT(bucket_take(&b, 1, 1, 4000000), 0); /* no tokens from the past */
    CHECK_EQ_INT(bucket_take(&b, 1, 1, 5000000), 0);
    CHECK_EQ_INT(bucket_take(&b, 1, 1, 5000001), 0);
    CHECK_EQ_INT(bucket_take(&b, 1, 1, 6000000), 1);
}

static void test_steady_rate(void)
{
    struct bucket b;
    bucket_init(&b, 10, 0);
    int taken = 0; /* 10 s of trying every millisecond at 50/s, burst 10 */
    for (uint64_t t = 0; t <= 10000000; t += 1000)
        taken += bucket_take(&b, 50, 10, t);
    CHECK_MSG(taken >= 509 && taken <= 511, "took %d, expected 10 + 500", taken);
}

int main(void)
{
    RUN(test_burst_then_rate);
    RUN(test_refill_is_capped);
    RUN(test_unlimited_and_clock_going_back);
    RUN(test_steady_rate);
    return check_summary();
}
