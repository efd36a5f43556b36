/* history.h - what a channel's history looks like to the hub, and the two
 * pure decisions recovery rests on; no I/O, no allocation.
 *
 * A read of a channel's history (broker.h: history()) answers with the
 * channel's current position (epoch and top offset) and the messages after
 * a given offset, oldest first. A subscriber that tracks positions admits
 * each live message with history_admit() and, after a read, asks
 * history_gap() whether the read closes the gap from where it stood. All
 * pointers are borrowed from the caller. history_epoch_new() is the one
 * function here that is not pure: it draws from the system's RNG. */
#ifndef WSGATE_HISTORY_H
#define WSGATE_HISTORY_H

#include <stddef.h>
#include <stdint.h>

#include "core/delivery.h"

struct history_entry {
    uint64_t offset;
    const char *payload; /* as published; valid during the read's callback */
    size_t len;
};

struct history_read {
    struct position top; /* current epoch; offset 0: nothing published yet */
    const struct history_entry *entries; /* offsets > since, ascending */
    size_t n;
};

enum history_admit { HISTORY_NEXT, HISTORY_DUPLICATE, HISTORY_GAP };

/* A live message at pos for a subscriber that last saw last: the next one,
 * one it already has, or one past a hole (or from another epoch). */
enum history_admit history_admit(const struct position *last,
                                 const struct position *pos);

/* Why missed messages cannot be delivered. */
enum history_loss {
    HISTORY_COMPLETE,  /* nothing is lost */
    HISTORY_EPOCH,     /* "epoch_changed": the channel's history restarted */
    HISTORY_FUTURE,    /* "future_offset": past the channel's top */
    HISTORY_EXPIRED,   /* "expired": nothing kept any more (--history-ttl) */
    HISTORY_TRIMMED,   /* "trimmed": the oldest kept is past it (--history-size) */
    HISTORY_TOO_MANY,  /* "too_many": more missed than one read returns */
    HISTORY_OFF,       /* "history_off": the channel keeps no history */
    HISTORY_LOSS_COUNT
};

/* The reason's snake_case name, as in the list above. */
const char *history_loss_name(enum history_loss l);

/* HISTORY_COMPLETE when r, read after an offset at or before from->offset,
 * holds every message from there to r->top in from's epoch; else why not. */
enum history_loss history_gap(const struct position *from,
                              const struct history_read *r);

#define HISTORY_EPOCH_LEN 16

/* A new random epoch of HISTORY_EPOCH_LEN characters of [A-Za-z0-9_-]
 * into out (HISTORY_EPOCH_LEN + 1 bytes). */
void history_epoch_new(char *out);

#endif
