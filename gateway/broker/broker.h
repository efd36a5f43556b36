/* broker.h - one interface, two engines: embedded (in process) and Redis.
 *
 * The hub drives a broker with subscribe/unsubscribe/publish and hears back
 * through struct broker_events. Channel names here are the client-visible
 * names; an engine adds its own prefix on the wire.
 *
 * Contract:
 * - subscribe() sends one request for n channels; each channel is confirmed
 *   by one events.subscribed() call, in request order, once messages on it
 *   will be delivered (the embedded engine confirms before returning). No confirmation arrives for requests pending when the
 *   broker goes down (events.state(0) comes instead).
 * - publish() returns 0 and later calls done(arg, ok) exactly once (it may
 *   be called before publish() returns), or returns -1 when the broker is
 *   unavailable and never calls done.
 * - events.state(1) is reported each time the broker becomes available after
 *   having been unavailable; every subscription was lost with the outage and
 *   must be requested again. events.state(0) reports the loss.
 * - Payload and channel pointers are valid only during the callback.
 * - The engine is owned by whoever created it and freed with broker_free(),
 *   which completes pending publishes with ok = 0. */
#ifndef WSGATE_BROKER_H
#define WSGATE_BROKER_H

#include <stddef.h>

struct broker_events {
    void *ctx;
    void (*message)(void *ctx, const char *channel, size_t channel_len,
                    const char *payload, size_t payload_len);
    void (*subscribed)(void *ctx, const char *channel, size_t channel_len);
    void (*state)(void *ctx, int up);
};

typedef void (*broker_done_fn)(void *arg, int ok);

struct broker;

struct broker_ops {
    int (*subscribe)(struct broker *b, const char *const *channels,
                     const size_t *lens, size_t n);
    void (*unsubscribe)(struct broker *b, const char *channel, size_t len);
    int (*publish)(struct broker *b, const char *channel, size_t channel_len,
                   const char *payload, size_t payload_len,
                   broker_done_fn done, void *arg);
    int (*is_up)(const struct broker *b);
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
static inline int broker_is_up(const struct broker *b) { return b->ops->is_up(b); }
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
