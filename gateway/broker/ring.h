/* ring.h - one channel's history in memory, for the embedded engine: the
 * last cap payloads with offsets 1, 2, 3, ... and the time of the last
 * append. Pure: the caller passes the clock.
 *
 * Ownership: the caller owns the ring (ring_free); the ring owns copies of
 * the payloads. Entries filled by ring_read() point into the ring and stay
 * valid until the next append or free. */
#ifndef WSGATE_RING_H
#define WSGATE_RING_H

#include <stddef.h>
#include <stdint.h>

#include "core/history.h"

struct ring;

/* cap >= 1. NULL when out of memory. */
struct ring *ring_new(unsigned cap);
void ring_free(struct ring *r);

/* Appends a copy of the payload; the oldest falls out when full. Returns
 * its offset, or 0 when out of memory (nothing changed). */
uint64_t ring_append(struct ring *r, const char *payload, size_t len, uint64_t now_us);

/* The last offset appended (0: none). */
uint64_t ring_top(const struct ring *r);

/* Fills out with up to max entries of offsets > since, oldest first, and
 * returns how many. A ring whose last append is ttl_us old or older has
 * expired: it returns none (its offsets still count on). */
size_t ring_read(const struct ring *r, uint64_t since, uint64_t now_us,
                 uint64_t ttl_us, struct history_entry *out, size_t max);

#endif
