/* wheel.h - deadlines on a hashed timing wheel, so that timers over many
 * connections cost only the ones that come due.
 *
 * Setting, moving and cancelling a deadline is O(1); wheel_expire() looks
 * only at the slots the clock has reached since the previous call, each a
 * WHEEL_RES_US span of deadlines. A deadline further out than the wheel
 * spans (WHEEL_SLOTS spans) waits in its slot and is looked at once per
 * revolution. Times are caller-supplied microseconds (core/clock.h). An
 * all-zero wheel and an all-zero timer are valid and empty.
 *
 * Ownership: the caller owns the wheel and embeds one struct wheel_timer
 * per deadline in its own objects; the wheel only links them. */
#ifndef WSGATE_WHEEL_H
#define WSGATE_WHEEL_H

#include <stdint.h>

#define WHEEL_RES_US 1000000u /* one slot: a second of deadlines */
#define WHEEL_SLOTS 4096u     /* spans 68 min, over every keepalive limit */

struct wheel_timer {
    struct wheel_timer *next;
    struct wheel_timer **pprev; /* NULL: not set */
    uint64_t due_us;
};

struct wheel {
    struct wheel_timer *slots[WHEEL_SLOTS];
    uint64_t next; /* first slot wheel_expire() has not yet passed */
};

/* Sets (or moves) t to expire at due_us; a time already past expires at
 * the next wheel_expire(). */
void wheel_set(struct wheel *w, struct wheel_timer *t, uint64_t due_us);

/* Unsets t; a no-op when it is not set. */
void wheel_cancel(struct wheel_timer *t);

/* Unsets and hands to fn every timer due at or before now_us, each at most
 * once per call; fn may set or cancel any timer. */
void wheel_expire(struct wheel *w, uint64_t now_us,
                  void (*fn)(struct wheel_timer *t, void *arg), void *arg);

#endif
