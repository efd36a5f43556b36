/* hub.h - channel -> local subscribers, and the fan-out.
 *
 * The hub keeps one entry per channel with local subscribers and asks the
 * broker to subscribe on the first and unsubscribe after the last. A message
 * from the broker is validated once and handed, as one protocol-neutral
 * struct delivery (core/delivery.h), to every subscriber's deliver
 * callback; each wire protocol encodes it at most once.
 *
 * A subscribe is answered (subscribe_done) only when the broker confirmed
 * the channel, so a message published after the ack is never missed. At most
 * one wave of SUBSCRIBE requests per channel is in flight, and the channel
 * entry outlives its last subscriber until that wave is answered, so a quick
 * unsubscribe/subscribe cannot be acked on a stale confirmation.
 *
 * The broker's shards come and go independently: a channel whose shard is
 * down refuses new subscribers, and keeps its established ones, which are
 * resubscribed when the shard returns.
 *
 * Ownership: the hub owns channels and subscription nodes; each client embeds
 * a struct hub_client (zeroed) and must call hub_drop_client() before freeing
 * it. Callbacks must not call back into the hub. */
#ifndef WSGATE_HUB_H
#define WSGATE_HUB_H

#include <stddef.h>
#include <stdint.h>

#include "broker/broker.h"
#include "core/delivery.h"
#include "proto/codec.h"

struct sub;

struct hub_client {
    struct sub *subs; /* this client's subscriptions */
    unsigned nsubs;
};

struct hub_callbacks {
    /* Queue d for c; d and its frames are borrowed (take a reference to a
     * frame to keep it). */
    void (*deliver)(struct hub_client *c, struct delivery *d);
    /* Answer a subscribe: code NULL for an ack, else an error code. */
    void (*subscribe_done)(struct hub_client *c, const struct req_id *id,
                           const char *code);
};

struct hub_stats {
    uint64_t messages_in;     /* messages the broker handed us */
    uint64_t dropped_invalid; /* payloads that were not valid JSON or too big */
    uint64_t broker_ups;      /* times a broker shard reported itself up */
    unsigned channels;
    unsigned subscriptions;
};

enum hub_error {
    HUB_EALREADY = -1,    /* already subscribed */
    HUB_EUNAVAILABLE = -2, /* the channel's broker shard is down */
    HUB_ENOMEM = -3,
    HUB_ENOTSUB = -4,     /* unsubscribe from a channel not subscribed */
};

/* max_payload: larger broker payloads are dropped as invalid. */
struct hub *hub_new(const struct hub_callbacks *cb, size_t max_payload);
void hub_free(struct hub *h);

/* The events a broker engine must report to this hub. */
struct broker_events hub_broker_events(struct hub *h);
/* Attaches the broker (borrowed; must outlive the hub's use of it).
 * Returns 0, or HUB_ENOMEM. */
int hub_set_broker(struct hub *h, struct broker *b);

/* Returns 0 when subscribe_done() has been or will be called for this
 * request, else a negative enum hub_error (and no callback). */
int hub_subscribe(struct hub *h, struct hub_client *c, const char *channel,
                  size_t len, const struct req_id *id);
/* Returns 0 or HUB_ENOTSUB. Delivery stops at once. */
int hub_unsubscribe(struct hub *h, struct hub_client *c, const char *channel,
                    size_t len);
/* Removes every subscription of c without calling its callbacks. */
void hub_drop_client(struct hub *h, struct hub_client *c);

/* 1 when every broker shard is up. */
int hub_broker_up(const struct hub *h);
const struct hub_stats *hub_stats(const struct hub *h);

#endif
