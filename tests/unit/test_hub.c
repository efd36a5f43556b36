/* test_hub.c - channel bookkeeping and fan-out, against a stub broker that
 * answers only when the test says so (as Redis does), and once against the
 * real embedded broker. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker/broker.h"
#include "check.h"
#include "core/hub.h"
#include "log.h"
#include "core/msg.h"
#include "proto/v1.h"

#define MAX_PAYLOAD 1024

/* ---- stub broker ------------------------------------------------------ */

#define STUB_MAX_CALLS 64
#define STUB_MAX_PENDING 4096

struct stub_broker {
    struct broker base;
    int up;
    int fail_subscribe;                  /* subscribe() returns -1 */
    int sub_calls;
    size_t batch[STUB_MAX_CALLS];        /* n of each subscribe() call */
    char *pending[STUB_MAX_PENDING];     /* requested, not yet confirmed */
    size_t npending;
    size_t requested;                    /* channels over all calls */
    int unsub_calls;
    char last_unsub[256];
    int publish_calls;
    int history;                         /* every channel keeps history */
    int reads;                           /* history() calls */
    uint64_t read_since;                 /* of the one pending */
    size_t read_limit;
    broker_history_fn read_done;         /* pending read; NULL: none */
    void *read_arg;
};

static struct stub_broker *stub_of(struct broker *b)
{
    return (struct stub_broker *)((char *)b - offsetof(struct stub_broker, base));
}

static int stub_subscribe(struct broker *b, const char *const *chs,
                          const size_t *lens, size_t n)
{
    struct stub_broker *s = stub_of(b);
    if (s->fail_subscribe)
        return -1;
    if (s->sub_calls < STUB_MAX_CALLS)
        s->batch[s->sub_calls] = n;
    s->sub_calls++;
    for (size_t i = 0; i < n; i++) {
        s->requested++;
        if (s->npending < STUB_MAX_PENDING) {
            char *c = malloc(lens[i] + 1);
            memcpy(c, chs[i], lens[i]);
            c[lens[i]] = '\0';
            s->pending[s->npending++] = c;
        }
    }
    return 0;
}

static void stub_unsubscribe(struct broker *b, const char *ch, size_t len)
{
    struct stub_broker *s = stub_of(b);
    s->unsub_calls++;
    snprintf(s->last_unsub, sizeof s->last_unsub, "%.*s", (int)len, ch);
}

static int stub_publish(struct broker *b, const char *ch, size_t chlen,
                        const char *payload, size_t len, broker_done_fn done,
                        void *arg)
{
    (void)ch, (void)chlen, (void)payload, (void)len;
    struct stub_broker *s = stub_of(b);
    s->publish_calls++;
    if (!s->up)
        return -1;
    done(arg, 1, NULL);
    return 0;
}

static int stub_history_on(const struct broker *b, const char *ch, size_t len)
{
    (void)ch, (void)len;
    return ((const struct stub_broker *)((const char *)b -
                                         offsetof(struct stub_broker, base)))->history;
}

/* Reads wait for stub_answer_read(), as Redis replies later. */
static int stub_history(struct broker *b, const char *ch, size_t len, uint64_t since,
                        size_t limit, broker_history_fn done, void *arg)
{
    (void)ch, (void)len;
    struct stub_broker *s = stub_of(b);
    if (!s->up || s->read_done)
        return -1;
    s->reads++;
    s->read_since = since;
    s->read_limit = limit;
    s->read_done = done;
    s->read_arg = arg;
    return 0;
}

/* Answers the pending read: top (epoch, offset) and entries from..to
 * (payload: the offset as text); fail: r NULL. */
static void stub_answer_read(struct stub_broker *s, const char *epoch, uint64_t top,
                             uint64_t from, uint64_t to, int fail)
{
    static char texts[64][24];
    struct history_entry e[64];
    size_t n = 0;
    for (uint64_t o = from; o && o <= to && n < 64; o++, n++) {
        snprintf(texts[n], sizeof texts[n], "%llu", (unsigned long long)o);
        e[n] = (struct history_entry){o, texts[n], strlen(texts[n])};
    }
    struct history_read r = {.entries = e, .n = n};
    r.top.offset = top;
    snprintf(r.top.epoch, sizeof r.top.epoch, "%s", epoch);
    broker_history_fn done = s->read_done;
    s->read_done = NULL;
    if (done)
        done(s->read_arg, fail ? NULL : &r);
}

static unsigned stub_shards(const struct broker *b)
{
    (void)b;
    return 1;
}

static unsigned stub_shard_of(const struct broker *b, const char *ch, size_t len)
{
    (void)b, (void)ch, (void)len;
    return 0;
}

static int stub_shard_up(const struct broker *b, unsigned shard)
{
    (void)shard;
    return ((const struct stub_broker *)((const char *)b -
                                         offsetof(struct stub_broker, base)))->up;
}

static void stub_destroy(struct broker *b) { (void)b; }

static const struct broker_ops stub_ops = {
    .subscribe = stub_subscribe,
    .unsubscribe = stub_unsubscribe,
    .publish = stub_publish,
    .shards = stub_shards,
    .shard_of = stub_shard_of,
    .shard_up = stub_shard_up,
    .history_on = stub_history_on,
    .history = stub_history,
    .destroy = stub_destroy,
};

static void stub_forget_pending(struct stub_broker *s)
{
    for (size_t i = 0; i < s->npending; i++)
        free(s->pending[i]);
    s->npending = 0;
}

/* Confirms the oldest pending request (the contract: in request order). */
static int stub_confirm_next(struct stub_broker *s)
{
    if (!s->npending)
        return 0;
    char *c = s->pending[0];
    memmove(s->pending, s->pending + 1, (s->npending - 1) * sizeof *s->pending);
    s->npending--;
    s->base.ev.subscribed(s->base.ev.ctx, c, strlen(c));
    free(c);
    return 1;
}

static void stub_confirm_all(struct stub_broker *s)
{
    while (stub_confirm_next(s))
        ;
}

static void stub_message(struct stub_broker *s, const char *ch, const char *payload)
{
    s->base.ev.message(s->base.ev.ctx, ch, strlen(ch), payload, strlen(payload), NULL);
}

/* A message with a position: its payload is the offset as text. */
static void stub_message_at(struct stub_broker *s, const char *ch, const char *epoch,
                            uint64_t offset)
{
    struct position p = {.offset = offset};
    char text[24];
    snprintf(p.epoch, sizeof p.epoch, "%s", epoch);
    snprintf(text, sizeof text, "%llu", (unsigned long long)offset);
    s->base.ev.message(s->base.ev.ctx, ch, strlen(ch), text, strlen(text), &p);
}

static void stub_state(struct stub_broker *s, int up)
{
    s->up = up;
    if (!up)
        stub_forget_pending(s); /* no confirmations for requests lost */
    s->base.ev.state(s->base.ev.ctx, 0, up);
}

/* ---- stub clients ----------------------------------------------------- */

#define CLIENT_MAX 64

struct answer {
    int has_id;
    int64_t id;
    const char *code; /* NULL: ack */
    int history;      /* the ack told a position: */
    struct position top;
    int recover;
    enum history_loss loss;
};

struct tclient {
    const char *name;
    int nmsgs;
    struct msg *msgs[CLIENT_MAX];
    int nanswers;
    struct answer answers[CLIENT_MAX];
    int nlost;
    enum history_loss lost_why;
    struct position lost_top;
    struct hub_client hc; /* deliberately not first */
};

static struct tclient *tclient_of(struct hub_client *c)
{
    return (struct tclient *)((char *)c - offsetof(struct tclient, hc));
}

/* Deliveries are encoded as protocol v1 frames, in codec slot 0. */
static const struct codec v1_frames = {.slot = 0, .delivery = v1_encode_message};
static uint64_t deliveries; /* handed to any test client since the reset */

static void on_deliver(struct hub_client *c, struct delivery *d)
{
    struct tclient *t = tclient_of(c);
    struct msg *m = codec_frame(&v1_frames, d);
    if (t->nmsgs < CLIENT_MAX && m)
        t->msgs[t->nmsgs] = msg_ref(m);
    t->nmsgs++;
    deliveries++;
}

static void on_subscribe_done(struct hub_client *c, const struct req_id *id,
                              const char *code, const struct hub_ack *ack)
{
    struct tclient *t = tclient_of(c);
    if (t->nanswers < CLIENT_MAX) {
        struct answer a = {id->has, id->v, code, 0, {0}, 0, HISTORY_COMPLETE};
        if (ack && ack->top)
            a.history = 1, a.top = *ack->top;
        if (ack)
            a.recover = ack->recover, a.loss = ack->loss;
        t->answers[t->nanswers] = a;
    }
    t->nanswers++;
}

static void on_lost(struct hub_client *c, const char *channel, size_t len,
                    enum history_loss why, const struct position *top)
{
    (void)channel, (void)len;
    struct tclient *t = tclient_of(c);
    t->nlost++;
    t->lost_why = why;
    t->lost_top = *top;
}

static const struct hub_callbacks callbacks = {
    .deliver = on_deliver,
    .subscribe_done = on_subscribe_done,
    .lost = on_lost,
};

static void tclient_init(struct tclient *t, const char *name)
{
    memset(t, 0, sizeof *t);
    t->name = name;
}

static void tclient_reset_msgs(struct tclient *t)
{
    for (int i = 0; i < t->nmsgs && i < CLIENT_MAX; i++)
        msg_unref(t->msgs[i]);
    t->nmsgs = 0;
}

static void tclient_free(struct tclient *t) { tclient_reset_msgs(t); }

/* The answer number i of t is an ack for id (has_id as given). */
static void answer_is_at(int line, const struct tclient *t, int i, int has_id,
                         int64_t id, const char *code)
{
    if (!check_record(t->nanswers > i, __FILE__, line, "%s has %d answers, want answer #%d",
                      t->name, t->nanswers, i))
        return;
    const struct answer *a = &t->answers[i];
    int ok = a->has_id == has_id && (!has_id || a->id == id) &&
             ((!a->code && !code) || (a->code && code && !strcmp(a->code, code)));
    check_record(ok, __FILE__, line,
                 "%s answer #%d: has_id %d id %lld code %s; want has_id %d id %lld code %s",
                 t->name, i, a->has_id, (long long)a->id, a->code ? a->code : "ack",
                 has_id, (long long)id, code ? code : "ack");
}
#define ACKED(t, i, id) answer_is_at(__LINE__, t, i, 1, id, NULL)
#define ACKED_NOID(t, i) answer_is_at(__LINE__, t, i, 0, 0, NULL)
#define FAILED(t, i, id, code) answer_is_at(__LINE__, t, i, 1, id, code)

/* ---- fixture ---------------------------------------------------------- */

struct fixture {
    struct hub *hub;
    struct stub_broker sb;
};

static void fx_init(struct fixture *f)
{
    memset(f, 0, sizeof *f);
    f->hub = hub_new(&callbacks, MAX_PAYLOAD);
    deliveries = 0;
    f->sb.base.ops = &stub_ops;
    f->sb.base.ev = hub_broker_events(f->hub);
    f->sb.up = 1;
    hub_set_broker(f->hub, &f->sb.base);
}

static void fx_free(struct fixture *f)
{
    hub_free(f->hub);
    stub_forget_pending(&f->sb);
}

/* The offsets of t's deliveries, from their v1 frames, into out. */
static int offsets(const struct tclient *t, uint64_t *out, int max)
{
    int n = 0;
    for (int i = 0; i < t->nmsgs && i < CLIENT_MAX && n < max; i++) {
        const char *f = (const char *)msg_data(t->msgs[i]);
        const char *o = strstr(f, "\"offset\":");
        out[n++] = o ? strtoull(o + 9, NULL, 10) : 0;
    }
    return n;
}

/* t got exactly the offsets first..last, in order. */
static void got_run(int line, const struct tclient *t, uint64_t first, uint64_t last)
{
    uint64_t o[CLIENT_MAX];
    int n = offsets(t, o, CLIENT_MAX), ok = n == (int)(last - first + 1);
    for (int i = 0; ok && i < n; i++)
        ok = o[i] == first + (uint64_t)i;
    check_record(ok, __FILE__, line, "%s got %d deliveries (first %llu, last %llu), want %llu..%llu",
                 t->name, n, n ? (unsigned long long)o[0] : 0ULL,
                 n ? (unsigned long long)o[n - 1] : 0ULL, (unsigned long long)first,
                 (unsigned long long)last);
}
#define GOT_RUN(t, first, last) got_run(__LINE__, t, first, last)

static int sub(struct fixture *f, struct tclient *t, const char *ch, int has_id, int64_t id)
{
    return hub_subscribe(f->hub, &t->hc, ch, strlen(ch), &(struct req_id){has_id, id}, NULL);
}

static int unsub(struct fixture *f, struct tclient *t, const char *ch)
{
    return hub_unsubscribe(f->hub, &t->hc, ch, strlen(ch));
}

static const struct hub_stats *stats(struct fixture *f) { return hub_stats(f->hub); }

/* ---- tests ------------------------------------------------------------ */

static void test_first_subscriber_waits_for_confirmation(void)
{
    struct fixture f;
    struct tclient a, b;
    fx_init(&f);
    tclient_init(&a, "a");
    tclient_init(&b, "b");
    CHECK_EQ_INT(hub_broker_up(f.hub), 1);

    CHECK_EQ_INT(sub(&f, &a, "news", 1, 1), 0);
    CHECK_EQ_INT(f.sb.sub_calls, 1);
    CHECK_EQ_UINT(f.sb.batch[0], 1);
    CHECK_EQ_UINT(f.sb.npending, 1);
    if (f.sb.npending)
        CHECK_STR(f.sb.pending[0], "news");
    CHECK_EQ_INT(a.nanswers, 0); /* not before the broker confirmed */

    CHECK_EQ_INT(sub(&f, &b, "news", 1, 2), 0);
    CHECK_EQ_INT(f.sb.sub_calls, 1); /* one request per channel in flight */
    CHECK_EQ_INT(b.nanswers, 0);
    CHECK_EQ_UINT(stats(&f)->channels, 1);
    CHECK_EQ_UINT(stats(&f)->subscriptions, 2);
    CHECK_EQ_UINT(a.hc.nsubs, 1);

    /* a message before the confirmation reaches no waiting subscriber */
    stub_message(&f.sb, "news", "1");
    CHECK_EQ_INT(a.nmsgs + b.nmsgs, 0);

    stub_confirm_all(&f.sb);
    CHECK_EQ_INT(a.nanswers, 1);
    CHECK_EQ_INT(b.nanswers, 1);
    ACKED(&a, 0, 1);
    ACKED(&b, 0, 2);
    CHECK_EQ_INT(f.sb.sub_calls, 1);
    CHECK_EQ_INT(f.sb.unsub_calls, 0);

    /* a stray second confirmation answers nobody twice */
    f.sb.base.ev.subscribed(f.sb.base.ev.ctx, "news", 4);
    CHECK_EQ_INT(a.nanswers, 1);
    CHECK_EQ_INT(b.nanswers, 1);

    stub_message(&f.sb, "news", "2");
    CHECK_EQ_INT(a.nmsgs, 1);
    CHECK_EQ_INT(b.nmsgs, 1);

    hub_drop_client(f.hub, &a.hc);
    hub_drop_client(f.hub, &b.hc);
    tclient_free(&a);
    tclient_free(&b);
    fx_free(&f);
}

static void test_subscribe_live_channel_acked_at_once(void)
{
    struct fixture f;
    struct tclient a, b, c;
    fx_init(&f);
    tclient_init(&a, "a");
    tclient_init(&b, "b");
    tclient_init(&c, "c");
    CHECK_EQ_INT(sub(&f, &a, "live", 0, 0), 0);
    stub_confirm_all(&f.sb);
    ACKED_NOID(&a, 0);

    CHECK_EQ_INT(sub(&f, &b, "live", 1, 5), 0);
    CHECK_EQ_INT(b.nanswers, 1); /* before hub_subscribe returned */
    ACKED(&b, 0, 5);
    CHECK_EQ_INT(sub(&f, &c, "live", 0, 0), 0);
    ACKED_NOID(&c, 0);
    CHECK_EQ_INT(f.sb.sub_calls, 1);
    CHECK_EQ_UINT(f.sb.npending, 0);

    hub_drop_client(f.hub, &a.hc);
    hub_drop_client(f.hub, &b.hc);
    hub_drop_client(f.hub, &c.hc);
    tclient_free(&a);
    tclient_free(&b);
    tclient_free(&c);
    fx_free(&f);
}

static void test_duplicate_subscribe(void)
{
    struct fixture f;
    struct tclient a;
    fx_init(&f);
    tclient_init(&a, "a");
    CHECK_EQ_INT(sub(&f, &a, "dup", 1, 1), 0);
    /* while pending */
    CHECK_EQ_INT(sub(&f, &a, "dup", 1, 2), HUB_EALREADY);
    CHECK_EQ_INT(f.sb.sub_calls, 1);
    stub_confirm_all(&f.sb);
    CHECK_EQ_INT(a.nanswers, 1);
    ACKED(&a, 0, 1);
    /* while live */
    CHECK_EQ_INT(sub(&f, &a, "dup", 1, 3), HUB_EALREADY);
    CHECK_EQ_INT(a.nanswers, 1);
    CHECK_EQ_UINT(stats(&f)->subscriptions, 1);
    CHECK_EQ_UINT(a.hc.nsubs, 1);
    /* one delivery, not two */
    stub_message(&f.sb, "dup", "true");
    CHECK_EQ_INT(a.nmsgs, 1);
    /* a different channel is not a duplicate; nor is a prefix of one */
    CHECK_EQ_INT(sub(&f, &a, "du", 0, 0), 0);
    CHECK_EQ_INT(sub(&f, &a, "dupe", 0, 0), 0);
    CHECK_EQ_UINT(a.hc.nsubs, 3);

    hub_drop_client(f.hub, &a.hc);
    tclient_free(&a);
    fx_free(&f);
}

static void test_unsubscribe(void)
{
    struct fixture f;
    struct tclient a, b, c;
    fx_init(&f);
    tclient_init(&a, "a");
    tclient_init(&b, "b");
    tclient_init(&c, "c");
    CHECK_EQ_INT(sub(&f, &a, "room", 0, 0), 0);
    CHECK_EQ_INT(sub(&f, &b, "room", 0, 0), 0);
    stub_confirm_all(&f.sb);
    stub_message(&f.sb, "room", "1");
    CHECK_EQ_INT(a.nmsgs, 1);
    CHECK_EQ_INT(b.nmsgs, 1);

    CHECK_EQ_INT(unsub(&f, &a, "room"), 0);
    CHECK_EQ_INT(f.sb.unsub_calls, 0); /* b still wants it */
    CHECK_EQ_UINT(stats(&f)->subscriptions, 1);
    CHECK_EQ_UINT(a.hc.nsubs, 0);
    CHECK_NULL(a.hc.subs);
    stub_message(&f.sb, "room", "2");
    CHECK_EQ_INT(a.nmsgs, 1); /* delivery stopped at once */
    CHECK_EQ_INT(b.nmsgs, 2);

    CHECK_EQ_INT(unsub(&f, &a, "room"), HUB_ENOTSUB);
    CHECK_EQ_INT(unsub(&f, &c, "room"), HUB_ENOTSUB);   /* never subscribed */
    CHECK_EQ_INT(unsub(&f, &b, "nowhere"), HUB_ENOTSUB); /* unknown channel */

    CHECK_EQ_INT(unsub(&f, &b, "room"), 0);
    CHECK_EQ_INT(f.sb.unsub_calls, 1); /* the last one leaves the broker */
    CHECK_STR(f.sb.last_unsub, "room");
    CHECK_EQ_UINT(stats(&f)->channels, 0);
    CHECK_EQ_UINT(stats(&f)->subscriptions, 0);
    stub_message(&f.sb, "room", "3");
    CHECK_EQ_INT(b.nmsgs, 2);
    CHECK_EQ_INT(unsub(&f, &b, "room"), HUB_ENOTSUB);
    /* no answers come from unsubscribing */
    CHECK_EQ_INT(a.nanswers, 1);
    CHECK_EQ_INT(b.nanswers, 1);

    /* subscribing again asks the broker again */
    CHECK_EQ_INT(sub(&f, &a, "room", 1, 9), 0);
    CHECK_EQ_INT(f.sb.sub_calls, 2);
    CHECK_EQ_INT(a.nanswers, 1);
    stub_confirm_all(&f.sb);
    ACKED(&a, 1, 9);

    hub_drop_client(f.hub, &a.hc);
    tclient_free(&a);
    tclient_free(&b);
    tclient_free(&c);
    fx_free(&f);
}

static void test_unsubscribe_while_pending(void)
{
    struct fixture f;
    struct tclient a, b;
    fx_init(&f);
    tclient_init(&a, "a");
    tclient_init(&b, "b");
    CHECK_EQ_INT(sub(&f, &a, "p", 1, 41), 0);
    CHECK_EQ_INT(sub(&f, &b, "p", 1, 42), 0);
    CHECK_EQ_INT(a.nanswers, 0);

    /* the pending subscribe is answered first, then the unsubscribe done */
    CHECK_EQ_INT(unsub(&f, &a, "p"), 0);
    CHECK_EQ_INT(a.nanswers, 1);
    ACKED(&a, 0, 41);
    CHECK_EQ_INT(b.nanswers, 0);
    CHECK_EQ_UINT(a.hc.nsubs, 0);

    stub_confirm_all(&f.sb);
    CHECK_EQ_INT(a.nanswers, 1); /* not answered twice */
    CHECK_EQ_INT(b.nanswers, 1);
    ACKED(&b, 0, 42);
    stub_message(&f.sb, "p", "{}");
    CHECK_EQ_INT(a.nmsgs, 0);
    CHECK_EQ_INT(b.nmsgs, 1);

    hub_drop_client(f.hub, &b.hc);
    tclient_free(&a);
    tclient_free(&b);
    fx_free(&f);
}

/* The channel entry outlives its last subscriber while its SUBSCRIBE is in
 * flight, then goes (with an UNSUBSCRIBE) when the confirmation arrives. */
static void test_inflight_channel_kept_until_confirmation(void)
{
    struct fixture f;
    struct tclient a, b;
    fx_init(&f);
    tclient_init(&a, "a");
    tclient_init(&b, "b");

    CHECK_EQ_INT(sub(&f, &a, "x", 1, 1), 0);
    CHECK_EQ_INT(unsub(&f, &a, "x"), 0);
    ACKED(&a, 0, 1);
    CHECK_EQ_UINT(stats(&f)->channels, 1);     /* kept: confirmation due */
    CHECK_EQ_UINT(stats(&f)->subscriptions, 0);
    CHECK_EQ_INT(f.sb.unsub_calls, 0);        /* not before it came */

    /* a message meanwhile goes nowhere and is not "invalid" */
    stub_message(&f.sb, "x", "1");
    CHECK_EQ_UINT(deliveries, 0);
    CHECK_EQ_UINT(stats(&f)->dropped_invalid, 0);

    stub_confirm_all(&f.sb);
    CHECK_EQ_INT(f.sb.unsub_calls, 1);
    CHECK_STR(f.sb.last_unsub, "x");
    CHECK_EQ_UINT(stats(&f)->channels, 0);
    CHECK_EQ_INT(a.nanswers, 1);

    /* subscribe A, unsubscribe A, subscribe B: B waits for the one
     * confirmation in flight, and no second SUBSCRIBE goes out */
    CHECK_EQ_INT(sub(&f, &a, "y", 1, 10), 0);
    CHECK_EQ_INT(f.sb.sub_calls, 2);
    CHECK_EQ_INT(unsub(&f, &a, "y"), 0);
    ACKED(&a, 1, 10);
    CHECK_EQ_INT(sub(&f, &b, "y", 1, 20), 0);
    CHECK_EQ_INT(f.sb.sub_calls, 2);
    CHECK_EQ_INT(b.nanswers, 0); /* no early ack */
    CHECK_EQ_UINT(stats(&f)->channels, 1);
    stub_confirm_all(&f.sb);
    CHECK_EQ_INT(b.nanswers, 1);
    ACKED(&b, 0, 20);
    CHECK_EQ_INT(f.sb.unsub_calls, 1); /* y is wanted: no UNSUBSCRIBE */
    CHECK_EQ_UINT(stats(&f)->channels, 1);
    stub_message(&f.sb, "y", "\"hi\"");
    CHECK_EQ_INT(b.nmsgs, 1);
    CHECK_EQ_INT(a.nmsgs, 0);

    hub_drop_client(f.hub, &b.hc);
    CHECK_EQ_INT(f.sb.unsub_calls, 2);
    CHECK_STR(f.sb.last_unsub, "y");
    tclient_free(&a);
    tclient_free(&b);
    fx_free(&f);
}

static void test_fanout(void)
{
    struct fixture f;
    struct tclient c[3], w;
    fx_init(&f);
    for (int i = 0; i < 3; i++) {
        tclient_init(&c[i], "subscriber");
        CHECK_EQ_INT(sub(&f, &c[i], "fan", 0, 0), 0);
    }
    stub_confirm_all(&f.sb);

    /* make a waiting subscriber beside established ones: an outage and a
     * reconnection leave the channel resubscribing */
    stub_state(&f.sb, 0);
    stub_state(&f.sb, 1);
    CHECK_EQ_UINT(f.sb.npending, 1);
    tclient_init(&w, "waiting");
    CHECK_EQ_INT(sub(&f, &w, "fan", 1, 99), 0);
    CHECK_EQ_INT(w.nanswers, 0);

    uint64_t deliveries0 = deliveries;
    stub_message(&f.sb, "fan", "{\"x\":1}");
    CHECK_EQ_INT(w.nmsgs, 0); /* waiting: skipped */
    for (int i = 0; i < 3; i++)
        CHECK_EQ_INT(c[i].nmsgs, 1);
    CHECK_EQ_UINT(deliveries - deliveries0, 3);
    if (c[0].nmsgs && c[1].nmsgs && c[2].nmsgs) {
        struct msg *m = c[0].msgs[0];
        /* one msg shared by every subscriber, not a copy each */
        CHECK_PTR_EQ(c[1].msgs[0], m);
        CHECK_PTR_EQ(c[2].msgs[0], m);
        /* the hub kept no reference: only ours remain */
        CHECK_EQ_UINT(m->refs, 3);
        CHECK_MEM(msg_data(m), m->len, "{\"op\":\"message\",\"channel\":\"fan\",\"data\":{\"x\":1}}");
        CHECK_EQ_INT(msg_data(m) - m->buf, MSG_HEADROOM);
    }

    stub_confirm_all(&f.sb);
    ACKED(&w, 0, 99);
    stub_message(&f.sb, "fan", "[1,2]");
    CHECK_EQ_INT(w.nmsgs, 1);
    for (int i = 0; i < 3; i++)
        CHECK_EQ_INT(c[i].nmsgs, 2);
    if (w.nmsgs && c[0].nmsgs == 2) {
        CHECK_PTR_EQ(w.msgs[0], c[0].msgs[1]);
        CHECK_EQ_UINT(w.msgs[0]->refs, 4);
        CHECK_MEM(msg_data(w.msgs[0]), w.msgs[0]->len,
                  "{\"op\":\"message\",\"channel\":\"fan\",\"data\":[1,2]}");
    }
    /* the payload is wrapped as published (whitespace and all) */
    stub_message(&f.sb, "fan", "\"caf\xc3\xa9\"");
    if (w.nmsgs == 2)
        CHECK_MEM(msg_data(w.msgs[1]), w.msgs[1]->len,
                  "{\"op\":\"message\",\"channel\":\"fan\",\"data\":\"caf\xc3\xa9\"}");

    for (int i = 0; i < 3; i++) {
        hub_drop_client(f.hub, &c[i].hc);
        tclient_free(&c[i]);
    }
    hub_drop_client(f.hub, &w.hc);
    tclient_free(&w);
    fx_free(&f);
}

static void test_invalid_payloads_dropped(void)
{
    struct fixture f;
    struct tclient a;
    fx_init(&f);
    tclient_init(&a, "a");
    CHECK_EQ_INT(sub(&f, &a, "v", 0, 0), 0);
    stub_confirm_all(&f.sb);

    static const char *const bad[] = {"", "not json", "{", "{}{}", "{\"a\":1} x",
                                      "'single'", "\"\xff\"", "\"\xc0\xaf\""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        stub_message(&f.sb, "v", bad[i]);
    CHECK_EQ_INT(a.nmsgs, 0);
    CHECK_EQ_UINT(stats(&f)->dropped_invalid, sizeof bad / sizeof bad[0]);
    CHECK_EQ_UINT(stats(&f)->messages_in, sizeof bad / sizeof bad[0]);
    CHECK_EQ_UINT(deliveries, 0);

    /* size: exactly max_payload is fine, one byte more is dropped */
    char big[MAX_PAYLOAD + 2];
    memset(big, ' ', sizeof big);
    big[0] = '[';
    big[MAX_PAYLOAD - 1] = ']';
    big[MAX_PAYLOAD] = '\0';
    stub_message(&f.sb, "v", big);
    CHECK_EQ_INT(a.nmsgs, 1);
    big[MAX_PAYLOAD - 1] = ' ';
    big[MAX_PAYLOAD] = ']';
    big[MAX_PAYLOAD + 1] = '\0';
    stub_message(&f.sb, "v", big);
    CHECK_EQ_INT(a.nmsgs, 1);
    CHECK_EQ_UINT(stats(&f)->dropped_invalid, sizeof bad / sizeof bad[0] + 1);
    CHECK_EQ_UINT(deliveries, 1);

    hub_drop_client(f.hub, &a.hc);
    tclient_free(&a);
    fx_free(&f);
}

/* DESIGN "Redis wire format": a payload that is not valid JSON is dropped
 * and counted, never delivered. These are not JSON by RFC 8259 (raw control
 * characters in a string, leading zeros, a bare fraction dot, control
 * bytes or a byte order mark as whitespace), and a
 * browser's JSON.parse rejects the frame they would be wrapped into. */
static void test_non_rfc_payloads_dropped(void)
{
    struct fixture f;
    struct tclient a;
    fx_init(&f);
    tclient_init(&a, "a");
    CHECK_EQ_INT(sub(&f, &a, "rfc", 0, 0), 0);
    stub_confirm_all(&f.sb);
    static const char *const bad[] = {"\"a\tb\"", "\"\x01\"", "01", "[1.]", "\x01{}",
                                      "\xef\xbb\xbf{}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int before = a.nmsgs;
        stub_message(&f.sb, "rfc", bad[i]);
        CHECK_MSG(a.nmsgs == before, "payload \"%s\" was delivered",
                  check_show(bad[i], strlen(bad[i])));
    }
    CHECK_EQ_UINT(stats(&f)->dropped_invalid, sizeof bad / sizeof bad[0]);
    hub_drop_client(f.hub, &a.hc);
    tclient_free(&a);
    fx_free(&f);
}

/* Every delivered frame must be exactly one line: batch=1 clients split a
 * frame on '\n' (DESIGN "Batching"; web/index.html splits on "\n"). A
 * backend publishing pretty-printed JSON must not break that framing: the
 * payload is either compacted or dropped, never forwarded with raw newlines. */
static void test_payload_newlines_not_forwarded(void)
{
    struct fixture f;
    struct tclient a;
    fx_init(&f);
    tclient_init(&a, "a");
    CHECK_EQ_INT(sub(&f, &a, "nl", 0, 0), 0);
    stub_confirm_all(&f.sb);
    stub_message(&f.sb, "nl", "{\n  \"a\": 1\n}\n");
    for (int i = 0; i < a.nmsgs && i < CLIENT_MAX; i++)
        CHECK_MSG(!memchr(msg_data(a.msgs[i]), '\n', a.msgs[i]->len),
                  "delivered frame has a raw newline: %s",
                  check_show(msg_data(a.msgs[i]), a.msgs[i]->len));
    hub_drop_client(f.hub, &a.hc);
    tclient_free(&a);
    fx_free(&f);
}

static void test_unknown_channel_ignored(void)
{
    struct fixture f;
    struct tclient a;
    fx_init(&f);
    tclient_init(&a, "a");
    CHECK_EQ_INT(sub(&f, &a, "known", 0, 0), 0);
    stub_confirm_all(&f.sb);
    stub_message(&f.sb, "unknown", "1");
    stub_message(&f.sb, "know", "1");
    stub_message(&f.sb, "knownx", "1");
    stub_message(&f.sb, "unknown", "not json"); /* not even validated */
    CHECK_EQ_INT(a.nmsgs, 0);
    CHECK_EQ_UINT(stats(&f)->messages_in, 4);
    CHECK_EQ_UINT(deliveries, 0);
    CHECK_EQ_UINT(stats(&f)->dropped_invalid, 0);
    CHECK_EQ_UINT(stats(&f)->channels, 1);
    /* a confirmation for a channel nobody asked for is ignored too */
    f.sb.base.ev.subscribed(f.sb.base.ev.ctx, "stranger", 8);
    CHECK_EQ_UINT(stats(&f)->channels, 1);
    CHECK_EQ_INT(a.nanswers, 1);
    hub_drop_client(f.hub, &a.hc);
    tclient_free(&a);
    fx_free(&f);
}

static void test_broker_down_and_up(void)
{
    struct fixture f;
    struct tclient est, pend, late;
    fx_init(&f);
    tclient_init(&est, "established");
    tclient_init(&pend, "pending");
    tclient_init(&late, "late");

    CHECK_EQ_INT(sub(&f, &est, "e", 1, 1), 0);
    stub_confirm_all(&f.sb);
    ACKED(&est, 0, 1);
    CHECK_EQ_INT(sub(&f, &pend, "p", 1, 2), 0);
    CHECK_EQ_INT(sub(&f, &pend, "e2", 0, 0), 0);
    CHECK_EQ_INT(sub(&f, &est, "p", 1, 3), 0); /* est waits on p too */
    CHECK_EQ_UINT(stats(&f)->channels, 3);
    CHECK_EQ_UINT(stats(&f)->subscriptions, 4);

    stub_state(&f.sb, 0);
    CHECK_EQ_INT(hub_broker_up(f.hub), 0);
    /* pending subscribes fail with broker_unavailable and are removed */
    CHECK_EQ_INT(pend.nanswers, 2);
    int p_ok = 0, e2_ok = 0;
    for (int i = 0; i < pend.nanswers && i < CLIENT_MAX; i++) {
        const struct answer *an = &pend.answers[i];
        if (an->has_id && an->id == 2 && an->code && !strcmp(an->code, "broker_unavailable"))
            p_ok = 1;
        if (!an->has_id && an->code && !strcmp(an->code, "broker_unavailable"))
            e2_ok = 1;
    }
    CHECK(p_ok);
    CHECK(e2_ok);
    CHECK_EQ_INT(est.nanswers, 2);
    FAILED(&est, 1, 3, "broker_unavailable");
    CHECK_EQ_UINT(pend.hc.nsubs, 0);
    CHECK_NULL(pend.hc.subs);
    CHECK_EQ_UINT(est.hc.nsubs, 1); /* the established one stays */
    CHECK_EQ_UINT(stats(&f)->subscriptions, 1);
    CHECK_EQ_UINT(stats(&f)->channels, 1);
    CHECK_EQ_INT(f.sb.unsub_calls, 0); /* nothing to say to a dead broker */

    /* while down: no new subscriptions, and no broker calls or answers */
    int calls = f.sb.sub_calls;
    CHECK_EQ_INT(sub(&f, &late, "e", 1, 4), HUB_EUNAVAILABLE);
    CHECK_EQ_INT(sub(&f, &late, "new", 1, 5), HUB_EUNAVAILABLE);
    CHECK_EQ_INT(f.sb.sub_calls, calls);
    CHECK_EQ_INT(late.nanswers, 0);
    CHECK_EQ_UINT(late.hc.nsubs, 0);
    CHECK_EQ_UINT(stats(&f)->channels, 1);
    CHECK_EQ_UINT(stats(&f)->subscriptions, 1);

    /* back up: the established channel is requested again */
    stub_state(&f.sb, 1);
    CHECK_EQ_INT(hub_broker_up(f.hub), 1);
    CHECK_EQ_INT(f.sb.sub_calls, calls + 1);
    CHECK_EQ_UINT(f.sb.npending, 1);
    if (f.sb.npending)
        CHECK_STR(f.sb.pending[0], "e");
    /* a newcomer waits for that confirmation; no second SUBSCRIBE */
    CHECK_EQ_INT(sub(&f, &late, "e", 1, 6), 0);
    CHECK_EQ_INT(late.nanswers, 0);
    CHECK_EQ_INT(f.sb.sub_calls, calls + 1);
    stub_confirm_all(&f.sb);
    ACKED(&late, 0, 6);
    CHECK_EQ_INT(est.nanswers, 2); /* established: not answered again */
    stub_message(&f.sb, "e", "0");
    CHECK_EQ_INT(est.nmsgs, 1);
    CHECK_EQ_INT(late.nmsgs, 1);

    /* and now live again: acked at once */
    CHECK_EQ_INT(sub(&f, &pend, "e", 1, 7), 0);
    ACKED(&pend, 2, 7);

    hub_drop_client(f.hub, &est.hc);
    hub_drop_client(f.hub, &pend.hc);
    hub_drop_client(f.hub, &late.hc);
    tclient_free(&est);
    tclient_free(&pend);
    tclient_free(&late);
    fx_free(&f);
}

/* A channel whose SUBSCRIBE is in flight with nobody left on it is dropped by
 * an outage, and nothing is requested for it on reconnection. */
static void test_outage_drops_orphan_inflight(void)
{
    struct fixture f;
    struct tclient a;
    fx_init(&f);
    tclient_init(&a, "a");
    CHECK_EQ_INT(sub(&f, &a, "o", 0, 0), 0);
    CHECK_EQ_INT(unsub(&f, &a, "o"), 0);
    CHECK_EQ_UINT(stats(&f)->channels, 1);
    stub_state(&f.sb, 0);
    CHECK_EQ_UINT(stats(&f)->channels, 0);
    int calls = f.sb.sub_calls;
    stub_state(&f.sb, 1);
    CHECK_EQ_INT(f.sb.sub_calls, calls);
    CHECK_EQ_INT(a.nanswers, 1);
    tclient_free(&a);
    fx_free(&f);
}

static void test_resubscribe_batches(void)
{
    enum { N = 600 };
    struct fixture f;
    static struct tclient a;
    fx_init(&f);
    tclient_init(&a, "a");
    char name[32];
    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof name, "ch.%d", i);
        CHECK_EQ_INT(sub(&f, &a, name, 0, 0), 0);
    }
    CHECK_EQ_INT(f.sb.sub_calls, N);
    stub_confirm_all(&f.sb);
    CHECK_EQ_INT(a.nanswers, N);
    CHECK_EQ_UINT(stats(&f)->channels, N);
    CHECK_EQ_UINT(stats(&f)->subscriptions, N);

    stub_state(&f.sb, 0);
    CHECK_EQ_UINT(stats(&f)->channels, N);
    f.sb.sub_calls = 0;
    f.sb.requested = 0;
    stub_state(&f.sb, 1);
    /* 600 channels: batches of at most 256 */
    CHECK_EQ_INT(f.sb.sub_calls, 3);
    CHECK_EQ_UINT(f.sb.batch[0], 256);
    CHECK_EQ_UINT(f.sb.batch[1], 256);
    CHECK_EQ_UINT(f.sb.batch[2], N - 512);
    CHECK_EQ_UINT(f.sb.requested, N);
    /* every channel exactly once */
    static unsigned char seen[N];
    memset(seen, 0, sizeof seen);
    int dup_or_bad = 0;
    for (size_t i = 0; i < f.sb.npending; i++) {
        int k = -1;
        if (sscanf(f.sb.pending[i], "ch.%d", &k) != 1 || k < 0 || k >= N || seen[k]++)
            dup_or_bad++;
    }
    CHECK_EQ_INT(dup_or_bad, 0);
    CHECK_EQ_UINT(f.sb.npending, N);

    stub_confirm_all(&f.sb);
    CHECK_EQ_INT(a.nanswers, N); /* established: no new answers */
    stub_message(&f.sb, "ch.599", "1");
    stub_message(&f.sb, "ch.0", "2");
    CHECK_EQ_INT(a.nmsgs, 2);

    /* exactly 256: one batch */
    hub_drop_client(f.hub, &a.hc);
    CHECK_EQ_UINT(stats(&f)->channels, 0);
    for (int i = 0; i < 256; i++) {
        snprintf(name, sizeof name, "b.%d", i);
        CHECK_EQ_INT(sub(&f, &a, name, 0, 0), 0);
    }
    stub_confirm_all(&f.sb);
    stub_state(&f.sb, 0);
    f.sb.sub_calls = 0;
    stub_state(&f.sb, 1);
    CHECK_EQ_INT(f.sb.sub_calls, 1);
    CHECK_EQ_UINT(f.sb.batch[0], 256);

    hub_drop_client(f.hub, &a.hc);
    tclient_free(&a);
    fx_free(&f);
}

static void test_subscribe_request_fails(void)
{
    struct fixture f;
    struct tclient a;
    fx_init(&f);
    tclient_init(&a, "a");
    f.sb.fail_subscribe = 1;
    CHECK_EQ_INT(sub(&f, &a, "f", 1, 1), HUB_EUNAVAILABLE);
    CHECK_EQ_INT(a.nanswers, 0); /* an error return means no callback */
    CHECK_EQ_UINT(a.hc.nsubs, 0);
    CHECK_EQ_UINT(stats(&f)->channels, 0);
    CHECK_EQ_UINT(stats(&f)->subscriptions, 0);
    f.sb.fail_subscribe = 0;
    CHECK_EQ_INT(sub(&f, &a, "f", 1, 2), 0);
    stub_confirm_all(&f.sb);
    ACKED(&a, 0, 2);
    hub_drop_client(f.hub, &a.hc);
    tclient_free(&a);
    fx_free(&f);
}

static void test_no_broker(void)
{
    struct hub *h = hub_new(&callbacks, MAX_PAYLOAD);
    struct tclient a;
    tclient_init(&a, "a");
    CHECK_EQ_INT(hub_broker_up(h), 0);
    CHECK_EQ_INT(hub_subscribe(h, &a.hc, "c", 1, &(struct req_id){0, 0}, NULL), HUB_EUNAVAILABLE);
    CHECK_EQ_INT(hub_unsubscribe(h, &a.hc, "c", 1), HUB_ENOTSUB);
    hub_drop_client(h, &a.hc);
    CHECK_EQ_INT(a.nanswers, 0);
    hub_free(h);
}

static void test_drop_client(void)
{
    struct fixture f;
    struct tclient a, b;
    fx_init(&f);
    tclient_init(&a, "a");
    tclient_init(&b, "b");
    CHECK_EQ_INT(sub(&f, &a, "shared", 0, 0), 0);
    CHECK_EQ_INT(sub(&f, &b, "shared", 0, 0), 0);
    CHECK_EQ_INT(sub(&f, &a, "mine", 0, 0), 0);
    stub_confirm_all(&f.sb);
    CHECK_EQ_INT(sub(&f, &a, "pending", 1, 5), 0);
    CHECK_EQ_UINT(stats(&f)->channels, 3);
    CHECK_EQ_UINT(stats(&f)->subscriptions, 4);
    CHECK_EQ_UINT(a.hc.nsubs, 3);
    int answers = a.nanswers;

    hub_drop_client(f.hub, &a.hc);
    CHECK_EQ_UINT(a.hc.nsubs, 0);
    CHECK_NULL(a.hc.subs);
    CHECK_EQ_INT(a.nanswers, answers); /* no callbacks, not even the pending one */
    CHECK_EQ_UINT(stats(&f)->subscriptions, 1);
    /* "mine" left the broker; "pending" stays until its confirmation */
    CHECK_EQ_INT(f.sb.unsub_calls, 1);
    CHECK_STR(f.sb.last_unsub, "mine");
    CHECK_EQ_UINT(stats(&f)->channels, 2);
    stub_confirm_all(&f.sb);
    CHECK_EQ_INT(a.nanswers, answers);
    CHECK_EQ_INT(f.sb.unsub_calls, 2);
    CHECK_STR(f.sb.last_unsub, "pending");
    CHECK_EQ_UINT(stats(&f)->channels, 1);

    stub_message(&f.sb, "shared", "1");
    stub_message(&f.sb, "mine", "1");
    CHECK_EQ_INT(a.nmsgs, 0);
    CHECK_EQ_INT(b.nmsgs, 1);
    /* dropping twice, or an unsubscribed client, is harmless */
    hub_drop_client(f.hub, &a.hc);
    CHECK_EQ_INT(unsub(&f, &a, "shared"), HUB_ENOTSUB);
    /* and the client may subscribe again */
    CHECK_EQ_INT(sub(&f, &a, "shared", 1, 6), 0);
    ACKED(&a, answers, 6);

    hub_drop_client(f.hub, &a.hc);
    hub_drop_client(f.hub, &b.hc);
    CHECK_EQ_UINT(stats(&f)->channels, 0);
    CHECK_EQ_UINT(stats(&f)->subscriptions, 0);
    tclient_free(&a);
    tclient_free(&b);
    fx_free(&f);
}

/* Many clients on many channels, subscribed and dropped in mixed order:
 * the counters and the lists stay consistent. */
static void test_stats_many(void)
{
    enum { NC = 20, NCH = 50 };
    struct fixture f;
    static struct tclient cl[NC];
    fx_init(&f);
    char name[32];
    for (int i = 0; i < NC; i++) {
        tclient_init(&cl[i], "c");
        for (int k = 0; k < NCH; k++) {
            if ((k + i) % 3 == 0) {
                snprintf(name, sizeof name, "s%d", k);
                CHECK_EQ_INT(sub(&f, &cl[i], name, 0, 0), 0);
            }
        }
    }
    unsigned want_subs = 0;
    for (int i = 0; i < NC; i++)
        want_subs += cl[i].hc.nsubs;
    CHECK_EQ_UINT(stats(&f)->subscriptions, want_subs);
    CHECK_EQ_UINT(stats(&f)->channels, NCH);
    CHECK_EQ_INT(f.sb.sub_calls, NCH);
    stub_confirm_all(&f.sb);

    uint64_t in0 = stats(&f)->messages_in;
    for (int k = 0; k < NCH; k++) {
        snprintf(name, sizeof name, "s%d", k);
        stub_message(&f.sb, name, "{}");
    }
    CHECK_EQ_UINT(stats(&f)->messages_in - in0, NCH);
    CHECK_EQ_UINT(deliveries, want_subs);
    int got = 0;
    for (int i = 0; i < NC; i++) {
        CHECK_EQ_INT(cl[i].nmsgs, (int)cl[i].hc.nsubs);
        got += cl[i].nmsgs;
    }
    CHECK_EQ_INT(got, (int)want_subs);

    for (int i = 0; i < NC; i += 2) {
        want_subs -= cl[i].hc.nsubs;
        hub_drop_client(f.hub, &cl[i].hc);
    }
    CHECK_EQ_UINT(stats(&f)->subscriptions, want_subs);
    for (int i = 1; i < NC; i += 2) {
        for (int k = 0; k < NCH; k++) {
            snprintf(name, sizeof name, "s%d", k);
            int rc = unsub(&f, &cl[i], name);
            CHECK_EQ_INT(rc, (k + i) % 3 == 0 ? 0 : HUB_ENOTSUB);
        }
    }
    CHECK_EQ_UINT(stats(&f)->subscriptions, 0);
    CHECK_EQ_UINT(stats(&f)->channels, 0);
    CHECK_EQ_INT(f.sb.unsub_calls, NCH);
    for (int i = 0; i < NC; i++)
        tclient_free(&cl[i]);
    fx_free(&f);
}

/* ---- the real embedded broker ----------------------------------------- */

struct done_rec {
    int calls, ok;
};

static void on_done(void *arg, int ok, const struct position *pos)
{
    (void)pos; /* the embedded engine keeps no history */
    struct done_rec *d = arg;
    d->calls++;
    d->ok = ok;
}

static void test_memory_broker(void)
{
    struct hub *h = hub_new(&callbacks, MAX_PAYLOAD);
    struct broker_events ev = hub_broker_events(h);
    struct broker *b = broker_memory_new(&ev, &(struct history_opts){0}, &(struct presence_opts){0});
    CHECK_NOT_NULL(b);
    if (!b) {
        hub_free(h);
        return;
    }
    hub_set_broker(h, b);
    CHECK_EQ_INT(hub_broker_up(h), 1);

    struct tclient a, c;
    tclient_init(&a, "a");
    tclient_init(&c, "c");
    deliveries = 0;
    CHECK_EQ_INT(hub_subscribe(h, &a.hc, "room", 4, &(struct req_id){1, 1}, NULL), 0);
    CHECK_EQ_INT(a.nanswers, 1); /* confirmed synchronously */
    ACKED(&a, 0, 1);
    CHECK_EQ_INT(hub_subscribe(h, &c.hc, "room", 4, &(struct req_id){1, 2}, NULL), 0);
    ACKED(&c, 0, 2);
    CHECK_EQ_INT(hub_subscribe(h, &c.hc, "room", 4, &(struct req_id){1, 3}, NULL), HUB_EALREADY);

    struct done_rec d = {0, -1};
    CHECK_EQ_INT(broker_publish(b, "room", 4, "{\"t\":\"hi\"}", 10, on_done, &d), 0);
    CHECK_EQ_INT(d.calls, 1);
    CHECK_EQ_INT(d.ok, 1);
    CHECK_EQ_INT(a.nmsgs, 1);
    CHECK_EQ_INT(c.nmsgs, 1);
    if (a.nmsgs && c.nmsgs) {
        CHECK_PTR_EQ(a.msgs[0], c.msgs[0]);
        CHECK_MEM(msg_data(a.msgs[0]), a.msgs[0]->len,
                  "{\"op\":\"message\",\"channel\":\"room\",\"data\":{\"t\":\"hi\"}}");
    }
    CHECK_EQ_UINT(hub_stats(h)->messages_in, 1);
    CHECK_EQ_UINT(deliveries, 2);

    /* publish to a channel nobody is on: accepted, delivered to nobody */
    d.calls = 0;
    CHECK_EQ_INT(broker_publish(b, "empty", 5, "1", 1, on_done, &d), 0);
    CHECK_EQ_INT(d.calls, 1);
    CHECK_EQ_INT(a.nmsgs + c.nmsgs, 2);

    CHECK_EQ_INT(hub_unsubscribe(h, &a.hc, "room", 4), 0);
    d.calls = 0;
    CHECK_EQ_INT(broker_publish(b, "room", 4, "2", 1, on_done, &d), 0);
    CHECK_EQ_INT(d.calls, 1);
    CHECK_EQ_INT(a.nmsgs, 1);
    CHECK_EQ_INT(c.nmsgs, 2);

    hub_drop_client(h, &c.hc);
    CHECK_EQ_UINT(hub_stats(h)->channels, 0);
    /* resubscribe after the channel went: synchronous again */
    CHECK_EQ_INT(hub_subscribe(h, &a.hc, "room", 4, &(struct req_id){0, 0}, NULL), 0);
    ACKED_NOID(&a, 1);
    hub_drop_client(h, &a.hc);

    tclient_free(&a);
    tclient_free(&c);
    hub_free(h);
    broker_free(b);
}

/* ---- history ---------------------------------------------------------- */

static void fx_history(struct fixture *f)
{
    fx_init(f);
    f->sb.history = 1;
}

static int sub_recover(struct fixture *f, struct tclient *t, const char *ch, int64_t id,
                       const char *epoch, uint64_t offset)
{
    struct position p = {.offset = offset};
    snprintf(p.epoch, sizeof p.epoch, "%s", epoch);
    return hub_subscribe(f->hub, &t->hc, ch, strlen(ch), &(struct req_id){1, id},
                         &(struct hub_sub_opts){&p, 0});
}

static void test_history_recover_merges_live(void)
{
    struct fixture f;
    struct tclient a;
    fx_history(&f);
    tclient_init(&a, "a");
    CHECK_EQ_INT(sub_recover(&f, &a, "c", 1, "e1", 41), 0);
    stub_confirm_all(&f.sb);
    CHECK_EQ_INT(f.sb.reads, 1); /* confirmed: the read starts, no ack yet */
    CHECK_EQ_UINT(f.sb.read_since, 41);
    CHECK(f.sb.read_limit > 0);
    CHECK_EQ_INT(a.nanswers, 0);
    stub_message_at(&f.sb, "c", "e1", 43); /* live while reading: held */
    stub_message_at(&f.sb, "c", "e1", 44);
    CHECK_EQ_INT(a.nmsgs, 0);
    stub_answer_read(&f.sb, "e1", 43, 42, 43, 0);
    ACKED(&a, 0, 1);
    CHECK(a.answers[0].history && a.answers[0].recover);
    CHECK_EQ_UINT(a.answers[0].top.offset, 43);
    CHECK_EQ_INT(a.answers[0].loss, HISTORY_COMPLETE);
    GOT_RUN(&a, 42, 44); /* read 42, 43; held 43 skipped; 44 */
    stub_message_at(&f.sb, "c", "e1", 44); /* a duplicate from pub/sub */
    stub_message_at(&f.sb, "c", "e1", 45);
    GOT_RUN(&a, 42, 45);
    CHECK_EQ_UINT(stats(&f)->recovered, 1);
    hub_drop_client(f.hub, &a.hc);
    tclient_free(&a);
    fx_free(&f);
}

static void test_history_gap_filled(void)
{
    struct fixture f;
    struct tclient a;
    fx_history(&f);
    tclient_init(&a, "a");
    CHECK_EQ_INT(sub(&f, &a, "c", 1, 1), 0);
    stub_confirm_all(&f.sb);
    CHECK_EQ_UINT(f.sb.read_limit, 0); /* fresh: only the top */
    stub_answer_read(&f.sb, "e1", 10, 0, 0, 0);
    CHECK(a.answers[0].history && !a.answers[0].recover);
    CHECK_EQ_UINT(a.answers[0].top.offset, 10);
    stub_message_at(&f.sb, "c", "e1", 11);
    stub_message_at(&f.sb, "c", "e1", 14); /* 12, 13 lost by pub/sub */
    CHECK_EQ_INT(f.sb.reads, 2);
    CHECK_EQ_UINT(f.sb.read_since, 11);
    stub_message_at(&f.sb, "c", "e1", 15);
    GOT_RUN(&a, 11, 11);
    stub_answer_read(&f.sb, "e1", 14, 12, 14, 0);
    GOT_RUN(&a, 11, 15);
    CHECK_EQ_INT(a.nlost, 0);
    CHECK_EQ_UINT(stats(&f)->gap_fills, 1);
    /* a failed fill keeps holding until the broker is back */
    stub_message_at(&f.sb, "c", "e1", 17);
    stub_answer_read(&f.sb, "", 0, 0, 0, 1);
    stub_message_at(&f.sb, "c", "e1", 18);
    GOT_RUN(&a, 11, 15);
    stub_state(&f.sb, 0);
    stub_state(&f.sb, 1);
    stub_confirm_all(&f.sb);
    CHECK_EQ_UINT(f.sb.read_since, 15); /* resubscribed: read what was missed */
    stub_answer_read(&f.sb, "e1", 18, 16, 18, 0);
    GOT_RUN(&a, 11, 18);
    hub_drop_client(f.hub, &a.hc);
    tclient_free(&a);
    fx_free(&f);
}

static void test_history_lost_and_refused(void)
{
    struct fixture f;
    struct tclient a, b, c;
    fx_history(&f);
    tclient_init(&a, "a");
    tclient_init(&b, "b");
    tclient_init(&c, "c");
    CHECK_EQ_INT(sub(&f, &a, "c", 1, 1), 0);
    stub_confirm_all(&f.sb);
    stub_answer_read(&f.sb, "e1", 5, 0, 0, 0);
    stub_message_at(&f.sb, "c", "e2", 1); /* the history restarted */
    stub_answer_read(&f.sb, "e2", 1, 1, 1, 0);
    CHECK_EQ_INT(a.nlost, 1);
    CHECK_EQ_INT(a.lost_why, HISTORY_EPOCH);
    CHECK_STR(a.lost_top.epoch, "e2");
    stub_message_at(&f.sb, "c", "e2", 2);
    GOT_RUN(&a, 2, 2); /* delivery goes on after the top told */
    /* a recovery that cannot be done is acked with why, then live only */
    CHECK_EQ_INT(sub_recover(&f, &b, "c", 7, "e2", 0), 0);
    stub_message_at(&f.sb, "c", "e2", 3);
    stub_answer_read(&f.sb, "e2", 3, 2, 3, 0); /* offset 1 is gone */
    ACKED(&b, 0, 7);
    CHECK_EQ_INT(b.answers[0].loss, HISTORY_TRIMMED);
    CHECK_EQ_INT(b.nmsgs, 0); /* 3 was held, and is within the top acked */
    CHECK_EQ_UINT(stats(&f)->unrecovered[HISTORY_TRIMMED], 1);
    /* a read that fails fails the subscribe */
    CHECK_EQ_INT(sub(&f, &c, "c", 1, 9), 0);
    stub_answer_read(&f.sb, "", 0, 0, 0, 1);
    FAILED(&c, 0, 9, "broker_unavailable");
    CHECK_EQ_UINT(c.hc.nsubs, 0);
    /* unsubscribing while the read is pending answers first, then ignores it */
    CHECK_EQ_INT(sub(&f, &c, "c", 1, 10), 0);
    CHECK_EQ_INT(unsub(&f, &c, "c"), 0);
    ACKED(&c, 1, 10);
    stub_answer_read(&f.sb, "e2", 3, 0, 0, 0);
    CHECK_EQ_INT(c.nanswers, 2);
    hub_drop_client(f.hub, &a.hc);
    hub_drop_client(f.hub, &b.hc);
    tclient_free(&a);
    tclient_free(&b);
    tclient_free(&c);
    fx_free(&f);
}

/* One read per channel serves every subscriber waiting on it; one that the
 * read in flight does not cover waits for the next. */
static void test_history_read_shared(void)
{
    struct fixture f;
    struct tclient t[4];
    const char *names[4] = {"a", "b", "c", "d"};
    fx_history(&f);
    for (int i = 0; i < 4; i++)
        tclient_init(&t[i], names[i]);
    CHECK_EQ_INT(sub(&f, &t[0], "c", 1, 1), 0);
    CHECK_EQ_INT(sub(&f, &t[1], "c", 1, 2), 0);
    stub_confirm_all(&f.sb);
    CHECK_EQ_INT(f.sb.reads, 1); /* both subscribes, one read of the top */
    CHECK_EQ_UINT(f.sb.read_limit, 0);
    stub_answer_read(&f.sb, "e1", 10, 0, 0, 0);
    ACKED(&t[0], 0, 1);
    ACKED(&t[1], 0, 2);
    CHECK_EQ_UINT(stats(&f)->reads_subscribe, 1);
    stub_message_at(&f.sb, "c", "e1", 11);
    stub_message_at(&f.sb, "c", "e1", 14); /* both see the hole: one read */
    CHECK_EQ_INT(f.sb.reads, 2);
    CHECK_EQ_UINT(f.sb.read_since, 11);
    CHECK(f.sb.read_limit > 0);
    CHECK_EQ_UINT(stats(&f)->reads_gap, 1);
    /* while it is in flight: a recovery from before 11 waits for the next
     * read, a fresh subscribe joins this one, b goes */
    CHECK_EQ_INT(sub_recover(&f, &t[2], "c", 3, "e1", 5), 0);
    CHECK_EQ_INT(sub(&f, &t[3], "c", 1, 4), 0);
    CHECK_EQ_INT(f.sb.reads, 2);
    CHECK_EQ_INT(unsub(&f, &t[1], "c"), 0);
    stub_message_at(&f.sb, "c", "e1", 15);
    stub_answer_read(&f.sb, "e1", 14, 12, 14, 0);
    GOT_RUN(&t[0], 11, 15);
    GOT_RUN(&t[1], 11, 11);
    ACKED(&t[3], 0, 4);
    CHECK_EQ_UINT(t[3].answers[0].top.offset, 14);
    GOT_RUN(&t[3], 15, 15);
    CHECK_EQ_INT(t[2].nanswers, 0);
    CHECK_EQ_INT(f.sb.reads, 3); /* the next read, for c */
    CHECK_EQ_UINT(f.sb.read_since, 5);
    CHECK_EQ_UINT(stats(&f)->reads_subscribe, 2);
    /* a and d, past 15, find a hole at 17: the read in flight, from 5,
     * covers them, so they join it */
    stub_message_at(&f.sb, "c", "e1", 17);
    CHECK_EQ_INT(f.sb.reads, 3);
    stub_answer_read(&f.sb, "e1", 17, 6, 17, 0);
    ACKED(&t[2], 0, 3);
    CHECK_EQ_INT(t[2].answers[0].loss, HISTORY_COMPLETE);
    GOT_RUN(&t[2], 6, 17);
    GOT_RUN(&t[0], 11, 17);
    GOT_RUN(&t[3], 15, 17);
    CHECK_EQ_INT(f.sb.reads, 3);
    CHECK_EQ_UINT(stats(&f)->gap_fills, 3); /* a twice, d once */
    /* a failed read fails nothing established; every sub reads again once
     * the broker is back, in one read */
    stub_message_at(&f.sb, "c", "e1", 19);
    CHECK_EQ_INT(f.sb.reads, 4);
    stub_answer_read(&f.sb, "", 0, 0, 0, 1);
    stub_state(&f.sb, 0);
    stub_state(&f.sb, 1);
    stub_confirm_all(&f.sb);
    CHECK_EQ_INT(f.sb.reads, 5);
    CHECK_EQ_UINT(f.sb.read_since, 17);
    stub_answer_read(&f.sb, "e1", 19, 18, 19, 0);
    GOT_RUN(&t[0], 11, 19);
    GOT_RUN(&t[2], 6, 19);
    GOT_RUN(&t[3], 15, 19);
    CHECK_EQ_UINT(stats(&f)->reads_gap, 3);
    CHECK_EQ_INT(t[0].nlost + t[2].nlost + t[3].nlost, 0);
    for (int i = 0; i < 4; i++) {
        hub_drop_client(f.hub, &t[i].hc);
        tclient_free(&t[i]);
    }
    CHECK_EQ_UINT(stats(&f)->channels, 0);
    fx_free(&f);
}

static void test_history_memory_engine(void)
{
    struct hub *h = hub_new(&callbacks, MAX_PAYLOAD);
    struct broker_events ev = hub_broker_events(h);
    struct auth_grants all = {0};
    char err[128];
    CHECK_EQ_INT(auth_grants_parse("*", &all, err, sizeof err), 0);
    struct broker *b = broker_memory_new(&ev, &(struct history_opts){3, 60, &all}, &(struct presence_opts){0});
    struct tclient a, r;
    tclient_init(&a, "a");
    tclient_init(&r, "r");
    hub_set_broker(h, b);
    CHECK_EQ_INT(hub_subscribe(h, &a.hc, "room", 4, &(struct req_id){1, 1}, NULL), 0);
    ACKED(&a, 0, 1);
    struct position top = a.answers[0].top;
    CHECK_EQ_UINT(top.offset, 0);
    struct done_rec d = {0};
    for (int i = 0; i < 5; i++)
        broker_publish(b, "room", 4, "1", 1, on_done, &d);
    GOT_RUN(&a, 1, 5);
    top.offset = 2;
    CHECK_EQ_INT(hub_subscribe(h, &r.hc, "room", 4, &(struct req_id){1, 2}, &(struct hub_sub_opts){&top, 0}), 0);
    CHECK_EQ_INT(r.answers[0].loss, HISTORY_COMPLETE); /* 3..5: the ring's 3 */
    GOT_RUN(&r, 3, 5);
    hub_drop_client(h, &r.hc);
    tclient_free(&r);
    tclient_init(&r, "r");
    top.offset = 1;
    CHECK_EQ_INT(hub_subscribe(h, &r.hc, "room", 4, &(struct req_id){1, 3}, &(struct hub_sub_opts){&top, 0}), 0);
    CHECK_EQ_INT(r.answers[0].loss, HISTORY_TRIMMED);
    CHECK_EQ_UINT(r.answers[0].top.offset, 5);
    hub_drop_client(h, &a.hc);
    hub_drop_client(h, &r.hc);
    tclient_free(&a);
    tclient_free(&r);
    broker_free(b);
    hub_free(h);
    auth_grants_clear(&all);
}

int main(void)
{
    log_set_level(LOG_ERROR); /* keep "resubscribing N channels" quiet */
    RUN(test_first_subscriber_waits_for_confirmation);
    RUN(test_subscribe_live_channel_acked_at_once);
    RUN(test_duplicate_subscribe);
    RUN(test_unsubscribe);
    RUN(test_unsubscribe_while_pending);
    RUN(test_inflight_channel_kept_until_confirmation);
    RUN(test_fanout);
    RUN(test_invalid_payloads_dropped);
    RUN(test_non_rfc_payloads_dropped);
    RUN(test_payload_newlines_not_forwarded);
    RUN(test_unknown_channel_ignored);
    RUN(test_broker_down_and_up);
    RUN(test_outage_drops_orphan_inflight);
    RUN(test_resubscribe_batches);
    RUN(test_subscribe_request_fails);
    RUN(test_no_broker);
    RUN(test_drop_client);
    RUN(test_stats_many);
    RUN(test_memory_broker);
    RUN(test_history_recover_merges_live);
    RUN(test_history_gap_filled);
    RUN(test_history_lost_and_refused);
    RUN(test_history_read_shared);
    RUN(test_history_memory_engine);
    return check_summary();
}
