/* history.c - see history.h. */
#include "core/history.h"

#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

enum history_admit history_admit(const struct position *last,
                                 const struct position *pos)
{
    if (strcmp(last->epoch, pos->epoch))
        return HISTORY_GAP;
    if (pos->offset <= last->offset)
        return HISTORY_DUPLICATE;
    return pos->offset == last->offset + 1 ? HISTORY_NEXT : HISTORY_GAP;
}

const char *history_loss_name(enum history_loss l)
{
    static const char *const names[HISTORY_LOSS_COUNT] = {
        [HISTORY_COMPLETE] = "complete",   [HISTORY_EPOCH] = "epoch_changed",
        [HISTORY_FUTURE] = "future_offset", [HISTORY_EXPIRED] = "expired",
        [HISTORY_TRIMMED] = "trimmed",     [HISTORY_TOO_MANY] = "too_many",
        [HISTORY_OFF] = "history_off",
    };
    return (unsigned)l < HISTORY_LOSS_COUNT ? names[l] : "unknown";
}

enum history_loss history_gap(const struct position *from,
                              const struct history_read *r)
{
    if (strcmp(from->epoch, r->top.epoch))
        return HISTORY_EPOCH;
    if (from->offset > r->top.offset)
        return HISTORY_FUTURE;
    if (from->offset == r->top.offset)
        return HISTORY_COMPLETE;
    if (r->n == 0)
        return HISTORY_EXPIRED;
    size_t i = 0; /* a read shared with others may start before from */
    while (i < r->n && r->entries[i].offset <= from->offset)
        i++;
    if (i == r->n) /* it stopped before from */
        return HISTORY_TOO_MANY;
    if (r->entries[i].offset != from->offset + 1)
        return HISTORY_TRIMMED;
    if (r->entries[r->n - 1].offset != r->top.offset)
        return HISTORY_TOO_MANY;
    return HISTORY_COMPLETE;
}

void history_epoch_new(char *out)
{
    static const char abc[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    unsigned char r[HISTORY_EPOCH_LEN];
    if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r)
        for (size_t i = 0; i < sizeof r; i++) /* no entropy: still differs by time */
            r[i] = (unsigned char)random();
    for (size_t i = 0; i < sizeof r; i++)
        out[i] = abc[r[i] & 63];
    out[HISTORY_EPOCH_LEN] = '\0';
}
