/* delivery.h - a message on its way from the broker to local subscribers,
 * protocol-neutral: channel, payload, and its position when the channel
 * has one.
 *
 * The hub builds one struct delivery per broker message on its stack and
 * hands it to every subscriber. Each wire protocol encodes it at most once,
 * into the slot of frames[] that its codec owns (see proto/codec.h), and
 * every subscriber speaking that protocol queues the same frame. The hub
 * drops the frames' references when the fan-out is done. Everything here is
 * borrowed for the duration of the fan-out only. */
#ifndef WSGATE_DELIVERY_H
#define WSGATE_DELIVERY_H

#include <stddef.h>
#include <stdint.h>

#include "core/msg.h"

#define POSITION_EPOCH_MAX 32 /* bytes, [A-Za-z0-9_-] only */
#define DELIVERY_CODECS 4     /* frame slots: one per wire protocol */

/* Where a message stands in its channel's history: offsets 1, 2, 3, ...
 * without holes within one epoch. offset 0: no position. */
struct position {
    uint64_t offset;
    char epoch[POSITION_EPOCH_MAX + 1];
};

struct delivery {
    const char *channel; /* a valid channel name, not NUL-terminated */
    size_t channel_len;
    const char *payload; /* valid JSON, as published */
    size_t payload_len;
    const struct position *pos; /* NULL: published without a position */
    uint64_t born_us;           /* broker receipt, monotonic us */
    struct msg *frames[DELIVERY_CODECS]; /* encoded once per protocol */
};

/* 1 when s (len bytes) may be an epoch: 1-32 bytes of A-Z a-z 0-9 _ -. */
static inline int position_epoch_valid(const char *s, size_t len)
{
    if (len < 1 || len > POSITION_EPOCH_MAX)
        return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

#endif
