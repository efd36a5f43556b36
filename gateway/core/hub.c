/* hub.c - see hub.h. */
#include "core/hub.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/channel.h"
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
    unsigned char need;    /* a subscriber wants the next history read */
    struct fetch *fetch;   /* the channel's history read in flight, or NULL */
    uint32_t hash;
    size_t len;
    char name[];           /* NUL-terminated */
};

/* A live message held while its subscriber reads history. */
struct held {
    struct held *next;
    struct position pos; /* offset 0: it had none */
    uint64_t born_us;
    size_t len;
    char payload[];
};

/* A channel's history read in flight, shared by every subscriber with
 * reading set; detached (ch = NULL) when its channel goes first. */
struct fetch {
    struct hub *h;
    struct channel *ch;
    uint64_t since; /* the read holds every message after it */
    int entries;    /* 0: only the top was asked for */
};

/* One client on one channel: a node in both the channel's and the client's
 * doubly linked lists. */
struct sub {
    struct sub *cnext, *cprev;
    struct sub *snext, *sprev;
    struct channel *ch;
    struct hub_client *client;
    struct req_id ack_id;
    unsigned char waiting; /* the broker has not confirmed the channel yet */
    unsigned char acked;   /* the subscribe has been answered */
    unsigned char history; /* the channel keeps history: pos is tracked */
    unsigned char recover; /* the subscribe asked to recover from pos */
    unsigned char holding; /* waiting on history: live messages go to held */
    unsigned char reading; /* served by the channel's read in flight */
    unsigned char want;    /* needs the channel's next read */
    unsigned char joined;  /* in the channel's presence */
    unsigned char events;  /* wants presence events */
    struct position pos;   /* delivered up to; epoch "": not known yet */
    struct held *held, *held_tail;
    unsigned nheld;
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
    if (c->fetch) /* its answer is dropped */
        c->fetch->ch = NULL;
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

static void free_held(struct held *m)
{
    while (m) {
        struct held *next = m->next;
        free(m);
        m = next;
    }
}

static void sub_unlink(struct hub *h, struct sub *s)
{
    struct channel *c = s->ch;
    struct hub_client *cl = s->client;
    int joined = s->joined;
    free_held(s->held);
    if (s->cprev) s->cprev->cnext = s->cnext; else c->subs = s->cnext;
    if (s->cnext) s->cnext->cprev = s->cprev;
    if (s->sprev) s->sprev->snext = s->snext; else cl->subs = s->snext;
    if (s->snext) s->snext->sprev = s->sprev;
    c->nsubs--;
    cl->nsubs--;
    h->stats.subscriptions--;
    free(s);
    if (joined) { /* announced to the others only: s is out of the lists */
        h->stats.presence_members--;
        broker_presence_leave(h->broker, c->name, c->len, cl->session);
    }
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

/* Hands one message to one subscriber. */
static void deliver_one(struct hub *h, struct sub *s, const char *payload,
                        size_t len, const struct position *pos, uint64_t born_us)
{
    struct delivery d = {.channel = s->ch->name, .channel_len = s->ch->len,
                         .payload = payload, .payload_len = len,
                         .pos = pos && pos->offset ? pos : NULL, .born_us = born_us};
    h->cb.deliver(s->client, &d);
    for (size_t i = 0; i < DELIVERY_CODECS; i++)
        msg_unref(d.frames[i]);
}

/* 1 when a broker payload (live or read from history) may be delivered:
 * valid JSON within --max-message-size; else it is counted and logged. */
static int payload_ok(struct hub *h, const char *channel, const char *payload, size_t len)
{
    if (len <= h->max_payload && json_valid(payload, len))
        return 1;
    h->stats.dropped_invalid++;
    if (log_enabled(LOG_INFO)) { /* a publisher bypassing the gateway is misbehaving */
        char bytes[24];
        snprintf(bytes, sizeof bytes, "%zu", len);
        log_fields(LOG_INFO, len > h->max_payload ? "dropped a too large broker payload"
                                                  : "dropped an invalid broker payload",
                   "channel", channel, "bytes", bytes, (const char *)NULL);
    }
    return 0;
}

static void hold(struct hub *h, struct sub *s, const char *payload, size_t len,
                 const struct position *pos, uint64_t born_us)
{
    struct held *m;
    if (s->nheld >= HUB_HELD_MAX || !(m = malloc(sizeof *m + len))) {
        h->stats.held_dropped++;
        return;
    }
    m->next = NULL;
    m->pos = pos ? *pos : (struct position){0};
    m->born_us = born_us;
    m->len = len;
    memcpy(m->payload, payload, len);
    if (s->held_tail) s->held_tail->next = m; else s->held = m;
    s->held_tail = m;
    s->nheld++;
}

/* 1 when the read f in flight holds what s waits for: the top for a
 * subscriber that knows no epoch yet, else every message after its own. */
static int covers(const struct fetch *f, const struct sub *s)
{
    return !s->pos.epoch[0] || (f->entries && f->since <= s->pos.offset);
}

/* s waits on history and holds live messages meanwhile: it joins the
 * channel's read in flight when that read covers it, else it wants the next
 * one (read_wanted() starts it). */
static void request_read(struct sub *s)
{
    struct channel *c = s->ch;
    s->holding = 1;
    if (s->reading)
        return;
    if (!s->want && c->fetch && covers(c->fetch, s)) {
        s->reading = 1;
        return;
    }
    s->want = 1;
    c->need = 1;
}

/* The channel's read failed, or could not be sent: a pending subscribe
 * fails; an established subscriber keeps holding and reads again when the
 * broker is back. */
static void read_failed(struct hub *h, struct channel *c)
{
    for (struct sub *s = c->subs, *next; s; s = next) {
        next = s->cnext;
        if (!s->reading)
            continue;
        s->reading = 0;
        if (s->acked) {
            s->want = 1;
            continue;
        }
        s->acked = 1;
        h->cb.subscribe_done(s->client, &s->ack_id, "broker_unavailable", NULL);
        sub_unlink(h, s);
    }
}

static void on_fetched(void *arg, const struct history_read *r);

/* Starts one read for every subscriber of c that wants one, from the
 * oldest position among them (or just the top when none knows an epoch). */
static void start_read(struct hub *h, struct channel *c)
{
    struct fetch *f = malloc(sizeof *f);
    int subscribe = 0;
    c->need = 0;
    if (f)
        *f = (struct fetch){.h = h, .ch = c, .since = UINT64_MAX};
    for (struct sub *s = c->subs; s; s = s->cnext) {
        if (!s->want)
            continue;
        s->want = 0;
        s->reading = 1;
        subscribe |= !s->acked;
        if (f && s->pos.epoch[0]) {
            f->entries = 1;
            if (s->pos.offset < f->since)
                f->since = s->pos.offset;
        }
    }
    if (f && !f->entries)
        f->since = 0;
    c->fetch = f;
    /* The embedded engine answers before this returns: f is gone then. */
    if (f && broker_history(h->broker, c->name, c->len, f->since, f->entries ? SIZE_MAX : 0,
                            on_fetched, f) == 0) {
        if (subscribe) h->stats.reads_subscribe++; else h->stats.reads_gap++;
        return;
    }
    c->fetch = NULL;
    free(f);
    read_failed(h, c);
}

/* Starts the read subscribers of c want unless one is in flight (its answer
 * starts the next), then drops c if a failed read left it idle. */
static void read_wanted(struct hub *h, struct channel *c)
{
    if (c->need && !c->fetch)
        start_read(h, c);
    channel_release_if_idle(h, c);
}

/* Delivers what s held in arrival order, merged by offset; a hole stops
 * the flush and asks for a read, holding the rest again. */
static void flush_held(struct hub *h, struct sub *s)
{
    struct held *m = s->held;
    s->held = s->held_tail = NULL;
    s->nheld = 0;
    s->holding = 0;
    while (m) {
        struct held *next = m->next;
        m->next = NULL;
        enum history_admit a = HISTORY_NEXT;
        if (!s->holding && m->pos.offset)
            a = history_admit(&s->pos, &m->pos);
        if (s->holding || a == HISTORY_GAP) {
            if (s->held_tail) s->held_tail->next = m; else s->held = m;
            s->held_tail = m;
            s->nheld++;
            if (!s->holding)
                request_read(s);
        } else {
            if (a == HISTORY_NEXT) {
                if (m->pos.offset)
                    s->pos.offset = m->pos.offset;
                deliver_one(h, s, m->payload, m->len, &m->pos, m->born_us);
            }
            free(m);
        }
        m = next;
    }
}

/* Acks the subscribe of s (a: what the ack tells, or NULL) and joins the
 * channel's presence when it keeps one. */
static void ack(struct hub *h, struct sub *s, const struct hub_ack *a)
{
    s->acked = 1;
    h->cb.subscribe_done(s->client, &s->ack_id, NULL, a);
    if (broker_presence_on(h->broker, s->ch->name, s->ch->len) && s->client->session) {
        s->joined = 1;
        h->stats.presence_members++;
        broker_presence_join(h->broker, s->ch->name, s->ch->len, s->client->session,
                             s->client->sub ? s->client->sub : "");
    }
}

/* The channel of s is confirmed: ack at once when it keeps no history,
 * else read where it stands first (the caller calls read_wanted()). */
static void confirmed(struct hub *h, struct sub *s)
{
    if (!s->history) {
        struct hub_ack a = {.recover = s->recover, .loss = HISTORY_OFF};
        if (s->recover)
            h->stats.unrecovered[HISTORY_OFF]++;
        ack(h, s, s->recover ? &a : NULL);
        return;
    }
    request_read(s);
}

/* The read s waited on is answered: ack a pending subscribe, deliver what
 * was missed (or report why it cannot be), then what was held meanwhile. */
static void serve(struct hub *h, struct sub *s, const struct history_read *r)
{
    int fresh = !s->pos.epoch[0], filling = s->acked;
    enum history_loss loss = fresh ? HISTORY_COMPLETE : history_gap(&s->pos, r);
    if (!filling) {
        if (s->recover && loss == HISTORY_COMPLETE)
            h->stats.recovered++;
        else if (s->recover)
            h->stats.unrecovered[loss]++;
        ack(h, s, &(struct hub_ack){.top = &r->top, .recover = s->recover, .loss = loss});
    } else if (loss != HISTORY_COMPLETE) {
        h->stats.gaps_lost++;
        h->cb.lost(s->client, s->ch->name, s->ch->len, loss, &r->top);
    }
    if (fresh || loss != HISTORY_COMPLETE) {
        s->pos = r->top;
    } else {
        if (filling && s->pos.offset < r->top.offset)
            h->stats.gap_fills++;
        for (size_t i = 0; i < r->n; i++) {
            const struct history_entry *e = &r->entries[i];
            if (e->offset <= s->pos.offset)
                continue;
            s->pos.offset = e->offset;
            if (payload_ok(h, s->ch->name, e->payload, e->len))
                deliver_one(h, s, e->payload, e->len, &s->pos, clock_us());
        }
    }
    flush_held(h, s); /* may want another read */
}

/* A channel's read is answered: it serves every subscriber that waited on
 * it (the batch r is the broker's, valid during this call only); those
 * that found another hole, or came while it was in flight and were not
 * covered, share the next read. */
static void on_fetched(void *arg, const struct history_read *r)
{
    struct fetch *f = arg;
    struct hub *h = f->h;
    struct channel *c = f->ch;
    free(f);
    if (!c)
        return;
    c->fetch = NULL;
    if (!r) {
        read_failed(h, c);
    } else {
        for (struct sub *s = c->subs; s; s = s->cnext) {
            if (!s->reading)
                continue;
            s->reading = 0;
            serve(h, s, r);
        }
    }
    read_wanted(h, c);
}

int hub_subscribe(struct hub *h, struct hub_client *cl, const char *name,
                  size_t len, const struct req_id *id, const struct hub_sub_opts *o)
{
    if (!shard_up(h, name, len))
        return HUB_EUNAVAILABLE;
    uint32_t hash = channel_hash(name, len);
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
    s->ack_id = *id;
    s->history = (unsigned char)broker_history_on(h->broker, name, len);
    if (o && o->recover) {
        s->recover = 1;
        s->pos = *o->recover;
    }
    s->events = o && o->presence_events;

    if (c->live) {
        confirmed(h, s);
        read_wanted(h, c);
        return 0;
    }
    s->waiting = 1;
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
    struct channel *c = lookup(h, name, len, channel_hash(name, len));
    struct sub *s = c ? find_sub(c, cl) : NULL;
    if (!s)
        return HUB_ENOTSUB;
    if (!s->acked) /* its subscribe still gets its answer, first */
        h->cb.subscribe_done(cl, &s->ack_id, NULL, NULL);
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
    struct channel *c = lookup(h, name, len, channel_hash(name, len));
    if (!c || !c->nsubs || !payload_ok(h, c->name, payload, plen))
        return;
    struct delivery d = {.channel = c->name, .channel_len = c->len,
                         .payload = payload, .payload_len = plen,
                         .pos = pos, .born_us = clock_us()};
    /* Subscribers that find a hole share one read, started after the loop. */
    for (struct sub *s = c->subs; s; s = s->cnext) {
        if (s->waiting)
            continue;
        if (s->history && pos && !s->holding) {
            enum history_admit a = history_admit(&s->pos, pos);
            if (a == HISTORY_DUPLICATE)
                continue;
            if (a == HISTORY_GAP) { /* hold this, read what is missing */
                hold(h, s, payload, plen, pos, d.born_us);
                request_read(s);
                continue;
            }
            s->pos.offset = pos->offset;
        }
        if (s->holding)
            hold(h, s, payload, plen, pos, d.born_us);
        else
            h->cb.deliver(s->client, &d);
    }
    for (size_t i = 0; i < DELIVERY_CODECS; i++)
        msg_unref(d.frames[i]);
    if (c->need)
        read_wanted(h, c);
}

static void on_subscribed(void *ctx, const char *name, size_t len)
{
    struct hub *h = ctx;
    struct channel *c = lookup(h, name, len, channel_hash(name, len));
    if (!c || !c->inflight || --c->inflight)
        return;
    c->live = 1;
    for (struct sub *s = c->subs; s; s = s->cnext) {
        if (s->waiting) {
            s->waiting = 0;
            confirmed(h, s);
        } else if (s->history) {
            /* resubscribed after an outage: read what pub/sub missed */
            request_read(s);
        }
    }
    read_wanted(h, c); /* one read for them all */
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
                if (!s->acked) {
                    h->cb.subscribe_done(s->client, &s->ack_id, "broker_unavailable",
                                         NULL);
                    sub_unlink(h, s);
                }
            }
            if (!c->nsubs)
                channel_remove(h, c);
            c = next;
        }
    }
}

static void on_presence(void *ctx, const char *name, size_t len, int join,
                        const struct presence_member *m)
{
    struct hub *h = ctx;
    struct channel *c = lookup(h, name, len, channel_hash(name, len));
    for (struct sub *s = c ? c->subs : NULL; s; s = s->cnext)
        if (s->events && s->acked && h->cb.presence)
            h->cb.presence(s->client, c->name, c->len, join, m);
}

struct broker_events hub_broker_events(struct hub *h)
{
    return (struct broker_events){.ctx = h,
                                  .message = on_message,
                                  .subscribed = on_subscribed,
                                  .state = on_state,
                                  .presence = on_presence};
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
                free_held(s->held);
                free(s);
            }
            if (c->fetch)
                c->fetch->ch = NULL;
            free(c);
        }
    }
    free(h->buckets);
    free(h->shard_up);
    free(h);
}

int hub_broker_up(const struct hub *h) { return h->shards && h->shards_up == h->shards; }

const struct hub_stats *hub_stats(const struct hub *h) { return &h->stats; }

void hub_each_channel(const struct hub *h,
                      void (*fn)(void *arg, const char *channel, size_t len,
                                 unsigned subscribers),
                      void *arg)
{
    for (size_t i = 0; i < h->nbuckets; i++)
        for (const struct channel *c = h->buckets[i]; c; c = c->next)
            if (c->nsubs)
                fn(arg, c->name, c->len, c->nsubs);
}
