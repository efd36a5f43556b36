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
 * On a channel that keeps history (broker_history_on) every subscriber
 * tracks the position it has delivered up to. Once the broker confirmed the
 * channel, the subscriber reads the history (from its recover position, or
 * just the channel's top) and holds the live messages that arrive
 * meanwhile; the ack carries the channel's epoch and top, the read messages
 * follow, then the held ones merged by offset (duplicates skipped). A live
 * message past a hole (pub/sub lost some, or the epoch changed) is held and
 * the hole read from history the same way; a hole that cannot be filled is
 * reported through lost(). After a broker outage every such subscriber reads
 * what it missed once the channel is confirmed again. A channel has at most
 * one read in flight, from the oldest position among the subscribers that
 * wait on it, and its answer serves them all: a hole seen by every
 * subscriber costs one read, not one per subscriber. A subscriber that
 * needs a read the one in flight does not cover waits for the next.
 *
 * On a channel with presence (broker_presence_on) a subscriber joins the
 * channel's presence once its subscribe is acked and leaves it when it goes;
 * subscribers that asked for presence events hear every join and leave.
 *
 * The broker's shards come and go independently: a channel whose shard is
 * down refuses new subscribers, and keeps its established ones, which are
 * resubscribed when the shard returns.
 *
 * Ownership: the hub owns channels, subscription nodes and each channel's
 * read in flight (freed by its answer; a channel that goes first detaches
 * it, and a subscriber that goes is simply not served); each client embeds
 * a struct hub_client (zeroed) and must call hub_drop_client() before freeing
 * it. Callbacks must not call back into the hub. */
#ifndef WSGATE_HUB_H
#define WSGATE_HUB_H

#include <stddef.h>
#include <stdint.h>

#include "broker/broker.h"
#include "core/delivery.h"
#include "core/history.h"
#include "proto/codec.h"

struct sub;

struct hub_client {
    struct sub *subs; /* this client's subscriptions */
    unsigned nsubs;
    const char *session; /* for presence: the client's, borrowed */
    const char *sub;     /* its token's "sub", "" when anonymous */
};

/* What a subscribe ack tells about the channel's history. */
struct hub_ack {
    const struct position *top; /* epoch and top offset; NULL: no history */
    int recover;                /* the subscribe asked to recover */
    enum history_loss loss;     /* with recover: HISTORY_COMPLETE, or why not */
};

struct hub_callbacks {
    /* Queue d for c; d and its frames are borrowed (take a reference to a
     * frame to keep it). */
    void (*deliver)(struct hub_client *c, struct delivery *d);
    /* Answer a subscribe: code NULL for an ack (ack: what it tells, NULL
     * for a plain ack), else an error code. */
    void (*subscribe_done)(struct hub_client *c, const struct req_id *id,
                           const char *code, const struct hub_ack *ack);
    /* Messages on a subscribed channel were lost and cannot be read back:
     * delivery goes on after top (the channel's position now). */
    void (*lost)(struct hub_client *c, const char *channel, size_t len,
                 enum history_loss why, const struct position *top);
    /* A session joined (join 1) or left the presence of a channel c
     * subscribed to with presence events. */
    void (*presence)(struct hub_client *c, const char *channel, size_t len, int join,
                     const struct presence_member *m);
};

/* Options of a subscribe. */
struct hub_sub_opts {
    const struct position *recover; /* deliver from here (epoch valid), or NULL */
    int presence_events;            /* report joins and leaves (presence channels) */
};

struct hub_stats {
    uint64_t messages_in;     /* messages the broker handed us */
    uint64_t dropped_invalid; /* payloads that were not valid JSON or too big */
    uint64_t broker_ups;      /* times a broker shard reported itself up */
    uint64_t recovered;       /* subscribes with recover that got everything */
    uint64_t unrecovered[HISTORY_LOSS_COUNT]; /* those that did not, by reason */
    uint64_t gap_fills;       /* holes in live delivery filled from history */
    uint64_t gaps_lost;       /* holes that could not be filled */
    uint64_t held_dropped;    /* held messages dropped over HUB_HELD_MAX */
    uint64_t reads_subscribe; /* history reads answering subscribes */
    uint64_t reads_gap;       /* history reads filling holes (or outages) */
    unsigned channels;
    unsigned subscriptions;
    unsigned presence_members; /* subscribers in their channel's presence */
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

/* Live messages one subscriber may hold while it reads history; past it,
 * the newest are dropped (read back from history when they had a
 * position). */
#define HUB_HELD_MAX 10000

/* Returns 0 when subscribe_done() has been or will be called for this
 * request, else a negative enum hub_error (and no callback). o may be
 * NULL (no options). */
int hub_subscribe(struct hub *h, struct hub_client *c, const char *channel,
                  size_t len, const struct req_id *id, const struct hub_sub_opts *o);
/* Returns 0 or HUB_ENOTSUB. Delivery stops at once. */
int hub_unsubscribe(struct hub *h, struct hub_client *c, const char *channel,
                    size_t len);
/* Removes every subscription of c without calling its callbacks. */
void hub_drop_client(struct hub *h, struct hub_client *c);

/* 1 when every broker shard is up. */
int hub_broker_up(const struct hub *h);
const struct hub_stats *hub_stats(const struct hub *h);

/* Calls fn once per channel with local subscribers, with their count (the
 * name is valid during the call only). */
void hub_each_channel(const struct hub *h,
                      void (*fn)(void *arg, const char *channel, size_t len,
                                 unsigned subscribers),
                      void *arg);

#endif
