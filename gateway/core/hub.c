/* hub.c - see hub.h. */
#include "core/hub.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "log.h"
#include "proto/json.h"

#define RESUBSCRIBE_BATCH 256

struct channel {
    struct channel *next;  /* hash bucket chain */
    struct sub *subs;      /* subscribers, newest first */
    unsigned nsubs;
    unsigned inflight;     /* SUBSCRIBE requests awaiting confirmation */
    unsigned char live;    /* confirmed since the broker last came up */
    uint32_t hash;
    size_t len;
    char name[];           /* NUL-terminated */
};

/* One client on one channel: a node in both the channel's and the client's
 * doubly linked lists. */
struct sub {
    struct sub *cnext, *cprev;
    struct sub *snext, *sprev;
    struct channel *ch;
    struct hub_client *client;
    struct req_id ack_id;
    unsigned char waiting; /* subscribe not yet answered */
};

struct hub {
    struct hub_callbacks cb;
    struct broker *broker;
    struct channel **buckets;
    size_t nbuckets; /* power of two */
    size_t max_payload;
    unsigned char *shard_up; /* per broker shard */
    unsigned shards, shards_up;
    struct hub_stats stats;
};

static uint32_t hash_name(const char *s, size_t len)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h;
}

static struct channel *lookup(const struct hub *h, const char *name,
                              size_t len, uint32_t hash)
{
    for (struct channel *c = h->buckets[hash & (h->nbuckets - 1)]; c; c = c->next)
        if (c->hash == hash && c->len == len && !memcmp(c->name, name, len))
            return c;
    return NULL;
}

static void grow(struct hub *h)
{
    size_t n = h->nbuckets * 2;
    struct channel **b = calloc(n, sizeof *b);
    if (!b)
        return; /* longer chains, still correct */
    for (size_t i = 0; i < h->nbuckets; i++) {
        for (struct channel *c = h->buckets[i], *next; c; c = next) {
            next = c->next;
            c->next = b[c->hash & (n - 1)];
            b[c->hash & (n - 1)] = c;
        }
    }
    free(h->buckets);
    h->buckets = b;
    h->nbuckets = n;
}

static struct channel *channel_add(struct hub *h, const char *name, size_t len,
                                   uint32_t hash)
{
    struct channel *c = calloc(1, sizeof *c + len + 1);
    if (!c)
        return NULL;
    memcpy(c->name, name, len);
    c->len = len;
    c->hash = hash;
    if (h->stats.channels >= h->nbuckets)
        grow(h);
    struct channel **b = &h->buckets[hash & (h->nbuckets - 1)];
    c->next = *b;
    *b = c;
    h->stats.channels++;
    return c;
}

static void channel_remove(struct hub *h, struct channel *c)
{
    struct channel **p = &h->buckets[c->hash & (h->nbuckets - 1)];
    while (*p != c)
        p = &(*p)->next;
    *p = c->next;
    h->stats.channels--;
    free(c);
}

/* Drops a channel nobody wants any more, unless a confirmation is still on
 * its way (on_subscribed finishes the job then). */
/* 1 when the broker shard serving the channel is up. */
static int shard_up(const struct hub *h, const char *name, size_t len)
{
    return h->broker && h->shard_up[broker_shard_of(h->broker, name, len)];
}

static void channel_release_if_idle(struct hub *h, struct channel *c)
{
    if (c->nsubs || c->inflight)
        return;
    if (shard_up(h, c->name, c->len))
        broker_unsubscribe(h->broker, c->name, c->len);
    channel_remove(h, c);
}

static void sub_unlink(struct hub *h, struct sub *s)
{
    struct channel *c = s->ch;
    struct hub_client *cl = s->client;
    if (s->cprev) s->cprev->cnext = s->cnext; else c->subs = s->cnext;
    if (s->cnext) s->cnext->cprev = s->cprev;
    if (s->sprev) s->sprev->snext = s->snext; else cl->subs = s->snext;
    if (s->snext) s->snext->sprev = s->sprev;
    c->nsubs--;
    cl->nsubs--;
    h->stats.subscriptions--;
    free(s);
}

static struct sub *find_sub(const struct channel *c, const struct hub_client *cl)
{
    if (cl->nsubs <= c->nsubs) {
        for (struct sub *s = cl->subs; s; s = s->snext)
            if (s->ch == c)
                return s;
    } else {
        for (struct sub *s = c->subs; s; s = s->cnext)
            if (s->client == cl)
                return s;
    }
    return NULL;
}

int hub_subscribe(struct hub *h, struct hub_client *cl, const char *name,
                  size_t len, const struct req_id *id)
{
    if (!shard_up(h, name, len))
        return HUB_EUNAVAILABLE;
    uint32_t hash = hash_name(name, len);
    struct channel *c = lookup(h, name, len, hash);
    if (c && find_sub(c, cl))
        return HUB_EALREADY;
    if (!c && !(c = channel_add(h, name, len, hash)))
        return HUB_ENOMEM;
    struct sub *s = calloc(1, sizeof *s);
    if (!s) {
        channel_release_if_idle(h, c);
        return HUB_ENOMEM;
    }
    s->ch = c;
    s->client = cl;
    s->cnext = c->subs;
    if (c->subs) c->subs->cprev = s;
    c->subs = s;
    s->snext = cl->subs;
    if (cl->subs) cl->subs->sprev = s;
    cl->subs = s;
    c->nsubs++;
    cl->nsubs++;
    h->stats.subscriptions++;

    if (c->live) {
        h->cb.subscribe_done(cl, id, NULL);
        return 0;
    }
    s->waiting = 1;
    s->ack_id = *id;
    if (c->inflight == 0) {
        c->inflight = 1;
        const char *names[1] = {c->name};
        size_t lens[1] = {c->len};
        /* The embedded broker confirms (and so acks) before this returns. */
        if (broker_subscribe(h->broker, names, lens, 1) < 0) {
            c->inflight = 0;
            sub_unlink(h, s);
            channel_release_if_idle(h, c);
            return HUB_EUNAVAILABLE;
        }
    }
    return 0;
}

int hub_unsubscribe(struct hub *h, struct hub_client *cl, const char *name,
                    size_t len)
{
    struct channel *c = lookup(h, name, len, hash_name(name, len));
    struct sub *s = c ? find_sub(c, cl) : NULL;
    if (!s)
        return HUB_ENOTSUB;
    if (s->waiting) /* its subscribe still gets its answer, first */
        h->cb.subscribe_done(cl, &s->ack_id, NULL);
    sub_unlink(h, s);
    channel_release_if_idle(h, c);
    return 0;
}

void hub_drop_client(struct hub *h, struct hub_client *cl)
{
    while (cl->subs) {
        struct channel *c = cl->subs->ch;
        sub_unlink(h, cl->subs);
        channel_release_if_idle(h, c);
    }
}

static void on_message(void *ctx, const char *name, size_t len,
                       const char *payload, size_t plen,
                       const struct position *pos)
{
    struct hub *h = ctx;
    h->stats.messages_in++;
    struct channel *c = lookup(h, name, len, hash_name(name, len));
    if (!c || !c->nsubs)
        return;
    if (plen > h->max_payload || !json_valid(payload, plen)) {
        h->stats.dropped_invalid++;
        if (log_enabled(LOG_INFO)) { /* a publisher bypassing the gateway is misbehaving */
            char bytes[24];
            snprintf(bytes, sizeof bytes, "%zu", plen);
            log_fields(LOG_INFO, plen > h->max_payload ? "dropped a too large broker payload"
                                                       : "dropped an invalid broker payload",
                       "channel", c->name, "bytes", bytes, (const char *)NULL);
        }
        return;
    }
    struct delivery d = {.channel = c->name, .channel_len = c->len,
                         .payload = payload, .payload_len = plen,
                         .pos = pos, .born_us = clock_us()};
    for (struct sub *s = c->subs; s; s = s->cnext)
        if (!s->waiting)
            h->cb.deliver(s->client, &d);
    for (size_t i = 0; i < DELIVERY_CODECS; i++)
        msg_unref(d.frames[i]);
}

static void on_subscribed(void *ctx, const char *name, size_t len)
{
    struct hub *h = ctx;
    struct channel *c = lookup(h, name, len, hash_name(name, len));
    if (!c || !c->inflight || --c->inflight)
        return;
    c->live = 1;
    for (struct sub *s = c->subs; s; s = s->cnext) {
        if (s->waiting) {
            s->waiting = 0;
            h->cb.subscribe_done(s->client, &s->ack_id, NULL);
        }
    }
    channel_release_if_idle(h, c);
}

/* Asks the shard that came back for every channel it serves. */
static void resubscribe_shard(struct hub *h, unsigned shard)
{
    const char *names[RESUBSCRIBE_BATCH];
    size_t lens[RESUBSCRIBE_BATCH];
    size_t n = 0, total = 0;
    for (size_t i = 0; i < h->nbuckets; i++) {
        for (struct channel *c = h->buckets[i]; c; c = c->next) {
            if (broker_shard_of(h->broker, c->name, c->len) != shard)
                continue;
            c->inflight = 1;
            names[n] = c->name;
            lens[n++] = c->len;
            if (n == RESUBSCRIBE_BATCH) {
                broker_subscribe(h->broker, names, lens, n);
                total += n, n = 0;
            }
        }
    }
    if (n)
        broker_subscribe(h->broker, names, lens, n);
    total += n;
    if (total)
        log_info("resubscribing %zu channels", total);
}

static void on_state(void *ctx, unsigned shard, int up)
{
    struct hub *h = ctx;
    if (shard >= h->shards || h->shard_up[shard] == !!up)
        return;
    h->shard_up[shard] = (unsigned char)!!up;
    if (up) {
        h->shards_up++;
        h->stats.broker_ups++;
        resubscribe_shard(h, shard);
        return;
    }
    h->shards_up--;
    /* Everything pending on the shard fails; established subscribers stay
     * and are resubscribed when it returns. */
    for (size_t i = 0; i < h->nbuckets; i++) {
        struct channel *c = h->buckets[i];
        while (c) {
            struct channel *next = c->next;
            if (broker_shard_of(h->broker, c->name, c->len) != shard) {
                c = next;
                continue;
            }
            c->live = 0;
            c->inflight = 0;
            for (struct sub *s = c->subs, *sn; s; s = sn) {
                sn = s->cnext;
                if (s->waiting) {
                    h->cb.subscribe_done(s->client, &s->ack_id, "broker_unavailable");
                    sub_unlink(h, s);
                }
            }
            if (!c->nsubs)
                channel_remove(h, c);
            c = next;
        }
    }
}

struct broker_events hub_broker_events(struct hub *h)
{
    return (struct broker_events){.ctx = h,
                                  .message = on_message,
                                  .subscribed = on_subscribed,
                                  .state = on_state};
}

int hub_set_broker(struct hub *h, struct broker *b)
{
    unsigned n = broker_shards(b);
    unsigned char *up = calloc(n ? n : 1, 1);
    if (!up)
        return HUB_ENOMEM;
    free(h->shard_up);
    h->broker = b;
    h->shard_up = up;
    h->shards = n;
    h->shards_up = 0;
    for (unsigned i = 0; i < n; i++)
        if ((up[i] = (unsigned char)!!broker_shard_up(b, i)))
            h->shards_up++;
    return 0;
}

struct hub *hub_new(const struct hub_callbacks *cb, size_t max_payload)
{
    struct hub *h = calloc(1, sizeof *h);
    if (!h)
        return NULL;
    h->nbuckets = 64;
    h->buckets = calloc(h->nbuckets, sizeof *h->buckets);
    if (!h->buckets) {
        free(h);
        return NULL;
    }
    h->cb = *cb;
    h->max_payload = max_payload;
    return h;
}

void hub_free(struct hub *h)
{
    if (!h)
        return;
    for (size_t i = 0; i < h->nbuckets; i++) {
        for (struct channel *c = h->buckets[i], *next; c; c = next) {
            next = c->next;
            while (c->subs) { /* clients should have been dropped already */
                struct sub *s = c->subs;
                c->subs = s->cnext;
                free(s);
            }
            free(c);
        }
    }
    free(h->buckets);
    free(h->shard_up);
    free(h);
}

int hub_broker_up(const struct hub *h) { return h->shards && h->shards_up == h->shards; }

const struct hub_stats *hub_stats(const struct hub *h) { return &h->stats; }
