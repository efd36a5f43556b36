/* bucket.c - see bucket.h. */
#include "core/bucket.h"

void bucket_init(struct bucket *b, unsigned burst, uint64_t now_us)
{
    b->tokens = burst;
    b->at_us = now_us;
}

int bucket_take(struct bucket *b, double rate, unsigned burst, uint64_t now_us)
{
    if (rate <= 0)
        return 1;
    if (now_us > b->at_us) { /* never earn tokens from a clock going back */
        b->tokens += (double)(now_us - b->at_us) * rate / 1e6;
        b->at_us = now_us;
    }
    if (b->tokens > burst)
        b->tokens = burst;
    if (b->tokens < 1)
        return 0;
    b->tokens -= 1;
    return 1;
}
