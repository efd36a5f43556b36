/* memory.c - the embedded engine: publish hands the payload straight
 * back to the hub of this process, after appending it to the channel's
 * history ring (broker/ring.h) when the channel keeps one. One random epoch
 * per process: a restart starts every channel's history anew. See broker.h
 * for the contract. */
#include <stdlib.h>
#include <string.h>

#include "broker/broker.h"
#include "broker/members.h"
#include "broker/ring.h"
#include "core/channel.h"
#include "core/clock.h"

#define HIST_BUCKETS 1024 /* chains grow past this; still correct */

/* A channel that keeps history: kept for the process lifetime so offsets
 * never restart (its ring's payloads expire with --history-ttl). */
struct hist {
    struct hist *next;
    struct ring *ring;
    size_t len;
    char name[];
};

struct mbroker {
    struct broker base;
    struct history_opts opts;
    struct presence_opts pres;
    struct members *members; /* the only node: presence is local */
    char epoch[HISTORY_EPOCH_LEN + 1];
    struct history_entry *scratch; /* opts.size entries for reads */
    struct hist *buckets[HIST_BUCKETS];
    char *beat; /* this node's last heartbeat (the cluster is this node) */
    size_t beat_len;
};

static struct hist *hist_find(struct mbroker *b, const char *ch, size_t len)
{
    for (struct hist *h = b->buckets[channel_hash(ch, len) % HIST_BUCKETS]; h; h = h->next)
        if (h->len == len && !memcmp(h->name, ch, len))
            return h;
    return NULL;
}

/* The channel's history, created by its first publish; NULL when out of
 * memory. */
static struct hist *hist_of(struct mbroker *b, const char *ch, size_t len)
{
    struct hist *h = hist_find(b, ch, len);
    if (h)
        return h;
    struct hist **head = &b->buckets[channel_hash(ch, len) % HIST_BUCKETS];
    h = malloc(sizeof *h + len);
    if (!h)
        return NULL;
    if (!(h->ring = ring_new(b->opts.size))) {
        free(h);
        return NULL;
    }
    memcpy(h->name, ch, len);
    h->len = len;
    h->next = *head;
    *head = h;
    return h;
}

static int mem_subscribe(struct broker *b, const char *const *chs,
                         const size_t *lens, size_t n)
{
    for (size_t i = 0; i < n; i++)
        b->ev.subscribed(b->ev.ctx, chs[i], lens[i]);
    return 0;
}

static void mem_unsubscribe(struct broker *b, const char *ch, size_t len)
{
    (void)b, (void)ch, (void)len;
}

static int mem_history_on(const struct broker *base, const char *ch, size_t len)
{
    return history_opts_on(&((const struct mbroker *)base)->opts, ch, len);
}

static int mem_publish(struct broker *base, const char *ch, size_t chlen,
                       const char *payload, size_t len, broker_done_fn done,
                       void *arg)
{
    struct mbroker *b = (struct mbroker *)base;
    struct position pos, *p = NULL;
    if (mem_history_on(base, ch, chlen)) {
        struct hist *h = hist_of(b, ch, chlen);
        if (!h || !(pos.offset = ring_append(h->ring, payload, len, clock_us())))
            return -1;
        memcpy(pos.epoch, b->epoch, sizeof b->epoch);
        p = &pos;
    }
    base->ev.message(base->ev.ctx, ch, chlen, payload, len, p);
    done(arg, 1, p);
    return 0;
}

static int mem_history(struct broker *base, const char *ch, size_t len,
                       uint64_t since, size_t limit, broker_history_fn done,
                       void *arg)
{
    struct mbroker *b = (struct mbroker *)base;
    if (!mem_history_on(base, ch, len))
        return -1;
    /* A channel never published to reads as empty, in the process's epoch
     * (its first publish will be offset 1 of it): reads create nothing. */
    struct hist *h = hist_find(b, ch, len);
    struct history_read r = {.entries = b->scratch};
    memcpy(r.top.epoch, b->epoch, sizeof b->epoch);
    if (h) {
        r.top.offset = ring_top(h->ring);
        r.n = ring_read(h->ring, since, clock_us(), (uint64_t)b->opts.ttl * 1000000,
                        b->scratch, limit < b->opts.size ? limit : b->opts.size);
    }
    done(arg, &r);
    return 0;
}

static int mem_presence_on(const struct broker *base, const char *ch, size_t len)
{
    return auth_grants_allow(((const struct mbroker *)base)->pres.channels, ch, len);
}

static void mem_presence_join(struct broker *base, const char *ch, size_t len,
                              const char *session, const char *sub)
{
    struct mbroker *b = (struct mbroker *)base;
    if (members_add(b->members, ch, len, session, sub) == 0)
        base->ev.presence(base->ev.ctx, ch, len, 1,
                          &(struct presence_member){session, sub, b->pres.node});
}

struct leaving {
    struct mbroker *b;
    const char *ch;
    size_t len;
    const char *session;
};

/* Announces the member leaving, while its sub is still known. */
static void announce_leave(void *arg, const struct member *v, size_t n)
{
    struct leaving *l = arg;
    for (size_t i = 0; i < n; i++)
        if (!strcmp(v[i].session, l->session))
            l->b->base.ev.presence(l->b->base.ev.ctx, l->ch, l->len, 0,
                                   &(struct presence_member){v[i].session, v[i].sub,
                                                             l->b->pres.node});
}

static void mem_presence_leave(struct broker *base, const char *ch, size_t len,
                               const char *session)
{
    struct mbroker *b = (struct mbroker *)base;
    members_of(b->members, ch, len, announce_leave, &(struct leaving){b, ch, len, session});
    members_remove(b->members, ch, len, session);
}

struct presence_call {
    const struct mbroker *b;
    broker_presence_fn done;
    void *arg;
};

static void answer_presence(void *arg, const struct member *v, size_t n)
{
    struct presence_call *pc = arg;
    struct presence_member *out = calloc(n ? n : 1, sizeof *out);
    if (!out) {
        pc->done(pc->arg, NULL);
        return;
    }
    for (size_t i = 0; i < n; i++)
        out[i] = (struct presence_member){v[i].session, v[i].sub, pc->b->pres.node};
    pc->done(pc->arg, &(struct presence_read){out, n});
    free(out);
}

static int mem_presence(struct broker *base, const char *ch, size_t len,
                        broker_presence_fn done, void *arg)
{
    struct mbroker *b = (struct mbroker *)base;
    if (!mem_presence_on(base, ch, len))
        return -1;
    members_of(b->members, ch, len, answer_presence,
               &(struct presence_call){b, done, arg});
    return 0;
}

/* One node, always up: its heartbeat never expires. */
static int mem_beat(struct broker *base, const char *node, const char *json, size_t len,
                    unsigned ttl_ms)
{
    (void)node, (void)ttl_ms;
    struct mbroker *b = (struct mbroker *)base;
    char *copy = malloc(len ? len : 1);
    if (!copy)
        return -1;
    memcpy(copy, json, len);
    free(b->beat);
    b->beat = copy;
    b->beat_len = len;
    return 0;
}

static int mem_nodes(struct broker *base, broker_nodes_fn done, void *arg)
{
    struct mbroker *b = (struct mbroker *)base;
    struct node_beat v = {b->beat, b->beat_len};
    done(arg, &v, b->beat ? 1 : 0);
    return 0;
}

static void mem_destroy(struct broker *base)
{
    struct mbroker *b = (struct mbroker *)base;
    free(b->beat);
    members_free(b->members);
    for (size_t i = 0; i < HIST_BUCKETS; i++) {
        for (struct hist *h = b->buckets[i], *next; h; h = next) {
            next = h->next;
            ring_free(h->ring);
            free(h);
        }
    }
    free(b->scratch);
    free(b);
}

static const struct broker_ops memory_ops = {
    .subscribe = mem_subscribe,
    .unsubscribe = mem_unsubscribe,
    .publish = mem_publish,
    .history_on = mem_history_on,
    .history = mem_history,
    .presence_on = mem_presence_on,
    .presence_join = mem_presence_join,
    .presence_leave = mem_presence_leave,
    .presence = mem_presence,
    .beat = mem_beat,
    .nodes = mem_nodes,
    .destroy = mem_destroy,
};

struct broker *broker_memory_new(const struct broker_events *ev,
                                 const struct history_opts *hist,
                                 const struct presence_opts *pres)
{
    struct mbroker *b = calloc(1, sizeof *b);
    if (!b || !(b->scratch = calloc(hist->size ? hist->size : 1, sizeof *b->scratch)) ||
        !(b->members = members_new())) {
        if (b)
            free(b->scratch);
        free(b);
        return NULL;
    }
    b->pres = *pres;
    b->base.ops = &memory_ops;
    b->base.ev = *ev;
    b->opts = *hist;
    history_epoch_new(b->epoch);
    return &b->base;
}
