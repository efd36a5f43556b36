/* broker.h - one interface, two engines: embedded (in process) and Redis.
 *
 * The hub drives a broker with subscribe/unsubscribe/publish and hears back
 * through struct broker_events. Channel names here are the client-visible
 * names; an engine adds its own prefix on the wire.
 *
 * Contract:
 * - An engine serves its channels from one or more shards (a Redis
 *   connection, a cluster node); shard_of() says which one serves a
 *   channel, and each shard comes and goes on its own.
 * - subscribe() sends one request for n channels of one shard; each channel
 *   is confirmed by one events.subscribed() call, in request order, once
 *   messages on it will be delivered (the embedded engine confirms before
 *   returning). No confirmation arrives for requests pending when their
 *   shard goes down (events.state(shard, 0) comes instead).
 * - publish() returns 0 and later calls done(arg, ok, pos) exactly once (it
 *   may be called before publish() returns), or returns -1 when the shard
 *   is unavailable and never calls done. pos is the message's position in
 *   its channel's history, or NULL when the channel keeps none.
 * - events.message() carries the message's position, or NULL when it has
 *   none (history off, or a plain PUBLISH from a backend).
 * - events.state(shard, 1) is reported each time a shard becomes available
 *   after having been unavailable; every subscription it served was lost
 *   with the outage and must be requested again. state(shard, 0) reports
 *   the loss.
 * - Payload, channel and position pointers are valid only during the
 *   callback.
 * - The engine is owned by whoever created it and freed with broker_free(),
 *   which completes pending publishes with ok = 0. */
#ifndef WSGATE_BROKER_H
#define WSGATE_BROKER_H

#include <stddef.h>

#include "core/delivery.h"

struct broker_events {
    void *ctx;
    void (*message)(void *ctx, const char *channel, size_t channel_len,
                    const char *payload, size_t payload_len,
                    const struct position *pos);
    void (*subscribed)(void *ctx, const char *channel, size_t channel_len);
    void (*state)(void *ctx, unsigned shard, int up);
};

typedef void (*broker_done_fn)(void *arg, int ok, const struct position *pos);

struct broker;

struct broker_ops {
    int (*subscribe)(struct broker *b, const char *const *channels,
                     const size_t *lens, size_t n);
    void (*unsubscribe)(struct broker *b, const char *channel, size_t len);
    int (*publish)(struct broker *b, const char *channel, size_t channel_len,
                   const char *payload, size_t payload_len,
                   broker_done_fn done, void *arg);
    /* Optional: an engine without shards leaves these NULL and serves every
     * channel from one shard, 0, which shard_up (NULL: always up) reports. */
    unsigned (*shards)(const struct broker *b);
    unsigned (*shard_of)(const struct broker *b, const char *channel, size_t len);
    int (*shard_up)(const struct broker *b, unsigned shard);
    void (*destroy)(struct broker *b);
};

struct broker {
    const struct broker_ops *ops;
    struct broker_events ev;
};

static inline int broker_subscribe(struct broker *b, const char *const *chs,
                                   const size_t *lens, size_t n)
{
    return b->ops->subscribe(b, chs, lens, n);
}
static inline void broker_unsubscribe(struct broker *b, const char *ch, size_t len)
{
    b->ops->unsubscribe(b, ch, len);
}
static inline int broker_publish(struct broker *b, const char *ch, size_t chlen,
                                 const char *payload, size_t len,
                                 broker_done_fn done, void *arg)
{
    return b->ops->publish(b, ch, chlen, payload, len, done, arg);
}
static inline unsigned broker_shards(const struct broker *b)
{
    return b->ops->shards ? b->ops->shards(b) : 1;
}
static inline unsigned broker_shard_of(const struct broker *b, const char *ch,
                                       size_t len)
{
    return b->ops->shard_of ? b->ops->shard_of(b, ch, len) : 0;
}
static inline int broker_shard_up(const struct broker *b, unsigned shard)
{
    return b->ops->shard_up ? b->ops->shard_up(b, shard) : 1;
}
static inline void broker_free(struct broker *b)
{
    if (b)
        b->ops->destroy(b);
}

/* The embedded engine: single node, always up. */
struct broker *broker_memory_new(const struct broker_events *ev);

struct event_base;
struct redis_addr;
/* The Redis engine: connects in the background and reconnects by itself. */
struct broker *broker_redis_new(struct event_base *base,
                                const struct redis_addr *addr,
                                const char *prefix,
                                const struct broker_events *ev);

#endif
