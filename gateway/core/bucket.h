/* bucket.h - a token bucket: rate tokens per second, at most burst saved.
 *
 * Pure arithmetic on a caller-owned struct; the caller passes the time, so
 * a session needs no timer and tests are deterministic. */
#ifndef WSGATE_BUCKET_H
#define WSGATE_BUCKET_H

#include <stdint.h>

struct bucket {
    double tokens;
    uint64_t at_us; /* when tokens was last brought up to date */
};

/* A full bucket at time now_us. */
void bucket_init(struct bucket *b, unsigned burst, uint64_t now_us);

/* Takes one token if there is one at now_us: returns 1, else 0. A rate of
 * 0 (or less) means unlimited. */
int bucket_take(struct bucket *b, double rate, unsigned burst, uint64_t now_us);

#endif
