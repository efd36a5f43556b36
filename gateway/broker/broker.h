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
 * - History (optional; engines without it leave both ops NULL):
 *   history_on() says whether a channel keeps one (--history-channels).
 *   history() reads the channel's epoch, top offset and up to limit
 *   messages after offset since (capped at --history-size), creating the
 *   channel's epoch if it has none yet; it returns 0 and later calls
 *   done(arg, r) exactly once (perhaps before returning), r NULL when the
 *   read failed (never before history() returns), or returns -1 when unavailable and never calls done. A
 *   read sent after a channel's subscription was confirmed sees every
 *   message that subscription has not delivered yet, or later ones too.
 * - Presence (optional, NULL ops: none): presence_on() says whether a
 *   channel keeps one (--presence-channels); presence_join()/leave() add
 *   and remove one session of this node (the engine keeps it alive, e.g.
 *   refreshed in Redis every --presence-ttl / 3, so a dead node's members
 *   go within the TTL); presence() reads the channel's members on every
 *   node with the same completion rules as history(). Joins and leaves on
 *   every node (a dead node's members leave when their TTL has passed) are
 *   reported through events.presence().
 * - Heartbeats (optional, NULL ops: none): beat() stores this node's
 *   heartbeat, a JSON object, for ttl_ms (the node sends one every second,
 *   so a node that stops vanishes within the TTL); returns -1 when the
 *   engine is unavailable. nodes() reads the live heartbeats of every node
 *   with the same completion rules as history(): v NULL when the read
 *   failed. The embedded engine answers its own from memory.
 *   broker_free() deletes this node's heartbeat where it can, so a node
 *   that stops cleanly leaves the view at once.
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

#include "core/auth.h"
#include "core/delivery.h"
#include "core/history.h"
#include "core/presence.h"

/* --history-*: which channels keep a history, and how much. */
struct history_opts {
    unsigned size; /* messages per channel; 0: history off */
    unsigned ttl;  /* seconds kept after the channel's last publish */
    const struct auth_grants *channels; /* borrowed; which channels */
};

/* --presence-*: which channels keep presence, and this node's name. */
struct presence_opts {
    unsigned ttl; /* seconds a member outlives its node's last refresh */
    const struct auth_grants *channels; /* borrowed; empty: presence off */
    const char *node;                   /* borrowed; this node's id */
};

static inline int history_opts_on(const struct history_opts *o,
                                  const char *ch, size_t len)
{
    return o->size && auth_grants_allow(o->channels, ch, len);
}

struct broker_events {
    void *ctx;
    void (*message)(void *ctx, const char *channel, size_t channel_len,
                    const char *payload, size_t payload_len,
                    const struct position *pos);
    void (*subscribed)(void *ctx, const char *channel, size_t channel_len);
    void (*state)(void *ctx, unsigned shard, int up);
    /* A session joined (join 1) or left a channel's presence. */
    void (*presence)(void *ctx, const char *channel, size_t channel_len, int join,
                     const struct presence_member *m);
};

typedef void (*broker_done_fn)(void *arg, int ok, const struct position *pos);
typedef void (*broker_history_fn)(void *arg, const struct history_read *r);
typedef void (*broker_presence_fn)(void *arg, const struct presence_read *r);

/* One node's heartbeat: the JSON text it stored, borrowed. */
struct node_beat {
    const char *json;
    size_t len;
};
typedef void (*broker_nodes_fn)(void *arg, const struct node_beat *v, size_t n);

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
    int (*history_on)(const struct broker *b, const char *channel, size_t len);
    int (*history)(struct broker *b, const char *channel, size_t len,
                   uint64_t since, size_t limit, broker_history_fn done,
                   void *arg);
    int (*presence_on)(const struct broker *b, const char *channel, size_t len);
    void (*presence_join)(struct broker *b, const char *channel, size_t len,
                          const char *session, const char *sub);
    void (*presence_leave)(struct broker *b, const char *channel, size_t len,
                           const char *session);
    int (*presence)(struct broker *b, const char *channel, size_t len,
                    broker_presence_fn done, void *arg);
    int (*beat)(struct broker *b, const char *node, const char *json, size_t len,
                unsigned ttl_ms);
    int (*nodes)(struct broker *b, broker_nodes_fn done, void *arg);
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
static inline int broker_history_on(const struct broker *b, const char *ch,
                                    size_t len)
{
    return b->ops->history_on ? b->ops->history_on(b, ch, len) : 0;
}
static inline int broker_history(struct broker *b, const char *ch, size_t len,
                                 uint64_t since, size_t limit,
                                 broker_history_fn done, void *arg)
{
    return b->ops->history ? b->ops->history(b, ch, len, since, limit, done, arg)
                           : -1;
}
static inline int broker_presence_on(const struct broker *b, const char *ch,
                                     size_t len)
{
    return b->ops->presence_on ? b->ops->presence_on(b, ch, len) : 0;
}
static inline void broker_presence_join(struct broker *b, const char *ch, size_t len,
                                        const char *session, const char *sub)
{
    if (b->ops->presence_join)
        b->ops->presence_join(b, ch, len, session, sub);
}
static inline void broker_presence_leave(struct broker *b, const char *ch, size_t len,
                                         const char *session)
{
    if (b->ops->presence_leave)
        b->ops->presence_leave(b, ch, len, session);
}
static inline int broker_presence(struct broker *b, const char *ch, size_t len,
                                  broker_presence_fn done, void *arg)
{
    return b->ops->presence ? b->ops->presence(b, ch, len, done, arg) : -1;
}
static inline int broker_beat(struct broker *b, const char *node, const char *json,
                              size_t len, unsigned ttl_ms)
{
    return b->ops->beat ? b->ops->beat(b, node, json, len, ttl_ms) : -1;
}
static inline int broker_nodes(struct broker *b, broker_nodes_fn done, void *arg)
{
    return b->ops->nodes ? b->ops->nodes(b, done, arg) : -1;
}
static inline void broker_free(struct broker *b)
{
    if (b)
        b->ops->destroy(b);
}

/* The embedded engine: single node, always up; history in memory, one
 * random epoch per process. hist is copied (its grants stay borrowed). */
struct broker *broker_memory_new(const struct broker_events *ev,
                                 const struct history_opts *hist,
                                 const struct presence_opts *pres);

/* A bridge between one channel and a Redis channel outside wsgate's naming
 * (the Socket.IO redis-adapter's "socket.io#/#"), for the Redis engine.
 * While up, the engine stays subscribed to raw (used as is, no prefix) and
 * hands each message there to in(), which returns the payload to deliver
 * to this node's subscribers of channel (malloc'd, freed by the engine) or
 * NULL to drop it (in() counts and logs why); what arrives on raw is
 * delivered locally only, never published again. Each publish on channel
 * the engine sends also goes to raw, as out() encodes it (malloc'd; NULL:
 * not sent), and sent() hears whether Redis took it. */
struct broker_bridge {
    const char *channel; /* client-visible name; borrowed */
    const char *raw;     /* borrowed */
    char *(*in)(void *ctx, const char *msg, size_t len, size_t *payload_len);
    char *(*out)(void *ctx, const char *payload, size_t len, size_t *msg_len);
    void (*sent)(void *ctx, int ok);
    void *ctx;
};

struct event_base;
struct redis_addr;
/* The Redis engine: connects in the background and reconnects by itself.
 * bridge: copied (its strings and ctx borrowed), or NULL: none. */
struct broker *broker_redis_new(struct event_base *base,
                                const struct redis_addr *addr,
                                const char *prefix,
                                const struct broker_events *ev,
                                const struct history_opts *hist,
                                const struct presence_opts *pres,
                                const struct broker_bridge *bridge);

#endif
