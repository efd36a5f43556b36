/* redis.c - the Redis engine (hiredis async on the libevent loop).
 *
 * Two connections: one in SUBSCRIBE mode, one for PUBLISH and health PINGs.
 * They live and die together: losing either tears both down, reports the
 * broker down, and reconnects after a capped exponential backoff with
 * jitter. hiredis 0.14 has no timeouts, so one timer serves, by phase, as
 * the backoff, the connect timeout and the PING health check. See broker.h
 * for the contract the hub relies on.
 *
 * History: a publish on a history channel runs history_publish.lua (loaded
 * with SCRIPT LOAD on every new connection, called with EVALSHA, sent again
 * as EVAL on NOSCRIPT) which appends to the channel's stream and publishes
 * the payload in the position envelope of broker/wire.h; reads run
 * history_read.lua the same way. Keys: <prefix>{C}:meta and
 * <prefix>{C}:stream, one hash slot per channel.
 *
 * Heartbeats: <prefix>node:<id> holds a node's, with a TTL; the set
 * <prefix>nodes names the nodes, and nodes_read.lua (sent as EVAL: an
 * operator's read, not a hot path) prunes it of those whose key expired.
 *
 * A bridge (broker.h) subscribes its raw channel on the SUBSCRIBE
 * connection each time the engine comes up, and its PUBLISH follows the
 * channel's on the publish connection. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <openssl/sha.h>
#include <hiredis.h>
#include <async.h>
#include <adapters/libevent.h>

#include "broker/broker.h"
#include "broker/members.h"
#include "broker/scripts.h"
#include "broker/wire.h"
#include "config.h"
#include "core/channel.h"
#include "core/clock.h"
#include "log.h"

/* Liveness: a Redis that stops answering (frozen, or a partition that
 * sends no reset) must read as down within 1 s, so /readyz can turn 503 in
 * time. A PING goes out every HEALTH_MS; one still pending after
 * HEALTH_DOWN_TICKS periods (600 ms) drops both connections. The worst case
 * is a freeze just after a reply: the next PING leaves up to one period
 * later, so down is declared at most 800 ms after the freeze. (250 ms and
 * 750 ms would make that 1 s.) A command slower than 600 ms counts as a
 * dead Redis: the price of that deadline. Each PING wakes an idle gateway
 * twice (the timer, the reply), which is most of its idle CPU here: 200 ms
 * rather than 100 ms halves that, and the PING is written from the timer
 * rather than from one more loop turn. Reconnects back off from 100 ms
 * to at most 800 ms (with jitter), so a Redis that is back is used again
 * within 1 s. */
#define CONNECT_TIMEOUT_MS 1000
#define HEALTH_MS 200
#define HEALTH_DOWN_TICKS 3
#define BACKOFF_BASE_MS 100
#define BACKOFF_CAP_MS 800
/* The meta hash (epoch, top offset) outlives the stream by this much, so
 * offsets do not restart when a quiet channel's messages expire. */
#define META_EXTRA_TTL_S 86400

/* A script and its SHA-1, as EVALSHA wants it. */
struct script {
    const char *text;
    char sha[2 * SHA_DIGEST_LENGTH + 1];
};

enum phase { WAITING, CONNECTING, UP };

struct rbroker {
    struct broker base;
    struct event_base *evb;
    struct redis_addr addr;
    char prefix[64];
    size_t prefix_len;
    redisAsyncContext *pub, *sub;
    unsigned char pub_ready, sub_ready;
    enum phase phase;
    unsigned attempt;     /* failures since the last success */
    unsigned ping_ticks;  /* health periods the last PING has been pending */
    unsigned char ping_out;
    struct event *timer;
    struct history_opts hist;
    struct script publish, read;
    struct presence_opts pres;
    struct script touch, present;
    struct members *members;  /* this node's, kept alive in Redis */
    uint64_t touched_us;      /* their last refresh; 0: due */
    char beat_node[CONFIG_STR_MAX + 16]; /* the node that beat; "": none */
    struct broker_bridge bridge; /* bridge.raw NULL: none */
};

/* A script call awaiting its reply (hiredis hands it back as privdata),
 * with its arguments kept to send again as EVAL on NOSCRIPT: argv[1] is
 * the SHA, argv[2..] point into buf. */
struct call {
    const struct script *script;
    union {
        broker_done_fn publish;
        broker_history_fn read;
        broker_presence_fn presence;
    } done;
    void *arg;
    int argc;
    const char **argv; /* room for the count new_call() was given */
    size_t *argl;
    char buf[];
};

/* A plain PUBLISH awaiting its reply. */
struct pubreq {
    broker_done_fn done;
    void *arg;
};

static void arm(struct rbroker *b, unsigned ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(b->timer, &tv);
}

/* Frees a context we no longer want; its callbacks then see data == NULL
 * (disconnect) or a NULL reply (pending commands). */
static void drop_ctx(redisAsyncContext **p)
{
    redisAsyncContext *ac = *p;
    if (!ac)
        return;
    *p = NULL;
    ac->data = NULL;
    redisAsyncFree(ac);
}

/* "host:port" (IPv6 in brackets) for log lines and their broker field. */
static void broker_addr(const struct rbroker *b, char *out, size_t cap)
{
    snprintf(out, cap, strchr(b->addr.host, ':') ? "[%s]:%d" : "%s:%d", b->addr.host,
             b->addr.port);
}

static void connection_lost(struct rbroker *b, const char *why)
{
    int was_up = b->phase == UP;
    b->phase = WAITING;
    b->pub_ready = b->sub_ready = 0;
    b->ping_out = 0;
    drop_ctx(&b->pub);
    drop_ctx(&b->sub);
    unsigned delay = BACKOFF_CAP_MS;
    if (b->attempt < 6 && (BACKOFF_BASE_MS << b->attempt) < BACKOFF_CAP_MS)
        delay = BACKOFF_BASE_MS << b->attempt;
    delay = delay / 2 + (unsigned)(random() % (delay / 2 + 1));
    b->attempt++;
    evtimer_del(b->timer);
    arm(b, delay);
    char addr[CONFIG_HOST_MAX + 16], msg[CONFIG_HOST_MAX + 256], ms[16];
    broker_addr(b, addr, sizeof addr);
    snprintf(ms, sizeof ms, "%u", delay);
    if (was_up) {
        snprintf(msg, sizeof msg, "broker down: redis %s: %s", addr, why);
        log_fields(LOG_WARN, msg, "broker", addr, "retry_ms", ms, (const char *)NULL);
        b->base.ev.state(b->base.ev.ctx, 0, 0);
    } else {
        snprintf(msg, sizeof msg, "redis %s unavailable: %s (retry in %u ms)", addr, why, delay);
        log_fields(LOG_WARN, msg, "broker", addr, "retry_ms", ms, (const char *)NULL);
    }
}

static void refresh_presence(struct rbroker *b);
static void subscribe_bridge(struct rbroker *b);

static void became_ready(struct rbroker *b)
{
    if (!b->pub_ready || !b->sub_ready || b->phase == UP)
        return;
    b->phase = UP;
    b->attempt = 0;
    b->ping_ticks = 0;
    evtimer_del(b->timer);
    arm(b, HEALTH_MS);
    char addr[CONFIG_HOST_MAX + 16], msg[CONFIG_HOST_MAX + 48];
    broker_addr(b, addr, sizeof addr);
    snprintf(msg, sizeof msg, "broker up: redis %s", addr);
    log_fields(LOG_INFO, msg, "broker", addr, (const char *)NULL);
    b->touched_us = 0; /* Redis may have lost this node's members */
    refresh_presence(b);
    subscribe_bridge(b);
    b->base.ev.state(b->base.ev.ctx, 0, 1);
}

/* Setup replies (AUTH, SELECT, PING): an error reply fails the attempt;
 * the PING reply (the last one) marks its connection ready. */
static void on_setup_reply(redisAsyncContext *ac, void *reply, void *priv)
{
    struct rbroker *b = ac->data;
    redisReply *r = reply;
    if (!r || !b)
        return;
    if (r->type == REDIS_REPLY_ERROR) {
        char why[256];
        snprintf(why, sizeof why, "setup command failed: %s", r->str);
        connection_lost(b, why);
        return;
    }
    if (!priv) /* AUTH or SELECT accepted */
        return;
    if (ac == b->pub)
        b->pub_ready = 1;
    else if (ac == b->sub)
        b->sub_ready = 1;
    became_ready(b);
}

static void on_pong(redisAsyncContext *ac, void *reply, void *priv)
{
    (void)priv;
    struct rbroker *b = ac->data;
    if (reply && b)
        b->ping_out = 0;
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    struct rbroker *b = ac->data;
    if (!b || status == REDIS_OK)
        return;
    /* hiredis frees a context that failed to connect */
    if (ac == b->pub)
        b->pub = NULL;
    if (ac == b->sub)
        b->sub = NULL;
    connection_lost(b, ac->errstr[0] ? ac->errstr : "connect failed");
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    (void)status;
    struct rbroker *b = ac->data;
    if (!b)
        return; /* we freed it */
    if (ac == b->pub)
        b->pub = NULL;
    if (ac == b->sub)
        b->sub = NULL;
    connection_lost(b, ac->errstr[0] ? ac->errstr : "connection closed");
}

static redisAsyncContext *open_ctx(struct rbroker *b)
{
    redisAsyncContext *ac = redisAsyncConnect(b->addr.host, b->addr.port);
    if (!ac)
        return NULL;
    if (ac->err) {
        char addr[CONFIG_HOST_MAX + 16], msg[CONFIG_HOST_MAX + 160];
        broker_addr(b, addr, sizeof addr);
        snprintf(msg, sizeof msg, "redis %s: %s", addr, ac->errstr);
        log_fields(LOG_WARN, msg, "broker", addr, (const char *)NULL);
        redisAsyncFree(ac);
        return NULL;
    }
    ac->data = b;
    redisLibeventAttach(ac, b->evb);
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    redisEnableKeepAlive(&ac->c);
    if (b->addr.password[0] && b->addr.user[0])
        redisAsyncCommand(ac, on_setup_reply, NULL, "AUTH %s %s", b->addr.user,
                          b->addr.password);
    else if (b->addr.password[0])
        redisAsyncCommand(ac, on_setup_reply, NULL, "AUTH %s", b->addr.password);
    /* Pub/sub ignores the database, but the history keys live in it. */
    if (b->addr.db)
        redisAsyncCommand(ac, on_setup_reply, NULL, "SELECT %d", b->addr.db);
    /* Once per connection: EVALSHA needs no text after. */
    if (b->hist.size) {
        redisAsyncCommand(ac, on_setup_reply, NULL, "SCRIPT LOAD %s", b->publish.text);
        redisAsyncCommand(ac, on_setup_reply, NULL, "SCRIPT LOAD %s", b->read.text);
    }
    if (b->pres.channels && b->pres.channels->n) {
        redisAsyncCommand(ac, on_setup_reply, NULL, "SCRIPT LOAD %s", b->touch.text);
        redisAsyncCommand(ac, on_setup_reply, NULL, "SCRIPT LOAD %s", b->present.text);
    }
    redisAsyncCommand(ac, on_setup_reply, b, "PING");
    return ac;
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct rbroker *b = arg;
    switch (b->phase) {
    case WAITING:
        b->phase = CONNECTING;
        b->pub = open_ctx(b);
        b->sub = b->pub ? open_ctx(b) : NULL;
        if (!b->pub || !b->sub) {
            connection_lost(b, "cannot create a connection");
            return;
        }
        arm(b, CONNECT_TIMEOUT_MS);
        break;
    case CONNECTING:
        connection_lost(b, "connect timed out");
        break;
    case UP:
        if (b->ping_out && ++b->ping_ticks >= HEALTH_DOWN_TICKS) {
            connection_lost(b, "no reply to PING within 600 ms");
            return;
        }
        refresh_presence(b);
        arm(b, HEALTH_MS);
        if (!b->ping_out &&
            redisAsyncCommand(b->pub, on_pong, NULL, "PING") == REDIS_OK) {
            b->ping_out = 1;
            b->ping_ticks = 0;
            redisAsyncHandleWrite(b->pub); /* a failed write calls connection_lost */
        }
        break;
    }
}

/* Redis channel names: prefix + name, written into one buffer of
 * REDIS_NAME_MAX bytes: callers pass valid channel names only. */
#define REDIS_NAME_MAX (sizeof ((struct rbroker *)0)->prefix + CHANNEL_MAX)

static char *prefixed(const struct rbroker *b, const char *name, size_t len,
                      char *out)
{
    memcpy(out, b->prefix, b->prefix_len);
    memcpy(out + b->prefix_len, name, len);
    return out;
}

/* Every reply on the SUBSCRIBE connection: confirmations and messages. */
static void on_sub_reply(redisAsyncContext *ac, void *reply, void *priv)
{
    struct rbroker *b = priv;
    redisReply *r = reply;
    if (!r || !ac->data || r->type != REDIS_REPLY_ARRAY || r->elements < 3)
        return;
    redisReply *kind = r->element[0], *ch = r->element[1];
    if (kind->type != REDIS_REPLY_STRING || ch->type != REDIS_REPLY_STRING ||
        ch->len < b->prefix_len || memcmp(ch->str, b->prefix, b->prefix_len))
        return;
    const char *name = ch->str + b->prefix_len;
    size_t len = ch->len - b->prefix_len;
    redisReply *m = r->element[2];
    struct wire_member wm;
    if (!strcmp(kind->str, "message") && m->type == REDIS_REPLY_STRING &&
        wire_presence(m->str, m->len, &wm) == 1) {
        b->base.ev.presence(b->base.ev.ctx, name, len, wm.join,
                            &(struct presence_member){wm.session, wm.sub, wm.node});
    } else if (!strcmp(kind->str, "message") && m->type == REDIS_REPLY_STRING) {
        struct position pos;
        size_t skip = 0;
        /* A malformed envelope goes on as it is: the hub drops it as invalid. */
        int env = wire_parse(m->str, m->len, &pos, &skip) == 1;
        b->base.ev.message(b->base.ev.ctx, name, len, m->str + skip, m->len - skip,
                           env ? &pos : NULL);
    } else if (!strcmp(kind->str, "subscribe"))
        b->base.ev.subscribed(b->base.ev.ctx, name, len);
}

/* Messages on the bridge's raw channel: delivered here only. */
static void on_bridge_reply(redisAsyncContext *ac, void *reply, void *priv)
{
    struct rbroker *b = priv;
    redisReply *r = reply, *m;
    size_t len;
    char *payload;
    if (!r || !ac->data || r->type != REDIS_REPLY_ARRAY || r->elements < 3 ||
        r->element[0]->type != REDIS_REPLY_STRING || strcmp(r->element[0]->str, "message") ||
        (m = r->element[2])->type != REDIS_REPLY_STRING)
        return;
    if ((payload = b->bridge.in(b->bridge.ctx, m->str, m->len, &len))) {
        b->base.ev.message(b->base.ev.ctx, b->bridge.channel, strlen(b->bridge.channel),
                           payload, len, NULL);
        free(payload);
    }
}

static void subscribe_bridge(struct rbroker *b)
{
    if (b->bridge.raw)
        redisAsyncCommand(b->sub, on_bridge_reply, b, "SUBSCRIBE %s", b->bridge.raw);
}

static void on_bridge_sent(redisAsyncContext *ac, void *reply, void *priv)
{
    struct rbroker *b = ac->data;
    const redisReply *r = reply;
    (void)priv;
    if (b)
        b->bridge.sent(b->bridge.ctx, r && r->type == REDIS_REPLY_INTEGER);
}

/* The bridge's copy of a publish on its channel. */
static void publish_bridge(struct rbroker *b, const char *ch, size_t chlen,
                           const char *payload, size_t len)
{
    size_t n;
    char *msg;
    if (!b->bridge.raw || chlen != strlen(b->bridge.channel) ||
        memcmp(ch, b->bridge.channel, chlen))
        return;
    if (!(msg = b->bridge.out(b->bridge.ctx, payload, len, &n))) {
        b->bridge.sent(b->bridge.ctx, 0);
        return;
    }
    if (redisAsyncCommand(b->pub, on_bridge_sent, NULL, "PUBLISH %s %b", b->bridge.raw, msg,
                          n) != REDIS_OK)
        b->bridge.sent(b->bridge.ctx, 0);
    free(msg);
}

static int rb_subscribe(struct broker *base, const char *const *chs,
                        const size_t *lens, size_t n)
{
    struct rbroker *b = (struct rbroker *)base;
    if (b->phase != UP || n == 0)
        return -1;
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += b->prefix_len + lens[i];
    const char **argv = malloc((n + 1) * sizeof *argv);
    size_t *argl = malloc((n + 1) * sizeof *argl);
    char *names = malloc(total ? total : 1);
    int rc = -1;
    if (argv && argl && names) {
        argv[0] = "SUBSCRIBE";
        argl[0] = 9;
        char *p = names;
        for (size_t i = 0; i < n; i++) {
            argv[i + 1] = prefixed(b, chs[i], lens[i], p);
            argl[i + 1] = b->prefix_len + lens[i];
            p += argl[i + 1];
        }
        rc = redisAsyncCommandArgv(b->sub, on_sub_reply, b, (int)n + 1, argv,
                                   argl) == REDIS_OK ? 0 : -1;
    }
    free(argv);
    free(argl);
    free(names);
    return rc;
}

static void rb_unsubscribe(struct broker *base, const char *ch, size_t len)
{
    struct rbroker *b = (struct rbroker *)base;
    if (b->phase != UP)
        return;
    char name[REDIS_NAME_MAX];
    if (len > CHANNEL_MAX)
        return;
    const char *argv[2] = {"UNSUBSCRIBE", prefixed(b, ch, len, name)};
    size_t argl[2] = {11, b->prefix_len + len};
    /* hiredis routes the confirmation to the channel's SUBSCRIBE callback */
    redisAsyncCommandArgv(b->sub, NULL, NULL, 2, argv, argl);
}

static void on_pub_reply(redisAsyncContext *ac, void *reply, void *priv)
{
    (void)ac;
    struct pubreq *req = priv;
    redisReply *r = reply;
    req->done(req->arg, r && r->type == REDIS_REPLY_INTEGER, NULL);
    free(req);
}

static int rb_history_on(const struct broker *base, const char *ch, size_t len)
{
    return history_opts_on(&((const struct rbroker *)base)->hist, ch, len);
}

/* Sends c on the publish connection; fn gets the reply. */
static int send_call(struct rbroker *b, struct call *c, redisCallbackFn *fn)
{
    return redisAsyncCommandArgv(b->pub, fn, c, c->argc, c->argv, c->argl) == REDIS_OK
               ? 0 : -1;
}

/* 1 when r is NOSCRIPT to c's EVALSHA (Redis lost its script cache) and c
 * went again as EVAL, which also reloads the script: wait for that reply. */
static int retried_as_eval(redisAsyncContext *ac, struct call *c,
                           const redisReply *r, redisCallbackFn *fn)
{
    struct rbroker *b = ac->data;
    if (!r || !b || r->type != REDIS_REPLY_ERROR || strncmp(r->str, "NOSCRIPT", 8) ||
        c->argl[0] == 4)
        return 0;
    c->argv[0] = "EVAL";
    c->argl[0] = 4;
    c->argv[1] = c->script->text;
    c->argl[1] = strlen(c->script->text);
    return send_call(b, c, fn) == 0;
}

/* Appends one argument, copied into c->buf at *p. */
static void call_arg(struct call *c, char **p, const char *s, size_t len)
{
    memcpy(*p, s, len);
    c->argv[c->argc] = *p;
    c->argl[c->argc++] = len;
    *p += len;
}

static void call_num(struct call *c, char **p, unsigned long long v)
{
    char num[24];
    call_arg(c, p, num, (size_t)snprintf(num, sizeof num, "%llu", v));
}

/* EVALSHA <sha> 2 <prefix>{C}:<key1> <prefix>{C}:<key2>, with room for
 * nargs more arguments of extra bytes in all. NULL when out of memory. */
static struct call *new_call(const struct rbroker *b, const struct script *sc,
                             const char *ch, size_t len, const char *key1,
                             const char *key2, size_t nargs, size_t extra, char **p)
{
    size_t keys = 2 * (b->prefix_len + len + 24), n = nargs + 5;
    struct call *c = malloc(sizeof *c + keys + extra + n * (sizeof *c->argv + sizeof *c->argl));
    if (!c)
        return NULL;
    c->argv = (const char **)(void *)c->buf; /* buf is pointer-aligned: arrays first */
    c->argl = (size_t *)(c->argv + n);
    c->script = sc;
    c->argc = 0;
    c->argv[c->argc] = "EVALSHA";
    c->argl[c->argc++] = 7;
    c->argv[c->argc] = sc->sha;
    c->argl[c->argc++] = sizeof sc->sha - 1;
    c->argv[c->argc] = "2";
    c->argl[c->argc++] = 1;
    *p = (char *)(c->argl + n);
    for (int k = 0; k < 2; k++) {
        char *start = *p;
        *p += (size_t)sprintf(*p, "%s{%.*s}:%s", b->prefix, (int)len, ch, k ? key2 : key1);
        c->argv[c->argc] = start;
        c->argl[c->argc++] = (size_t)(*p - start);
    }
    return c;
}

static void on_publish_script(redisAsyncContext *ac, void *reply, void *priv)
{
    struct call *c = priv;
    const redisReply *r = reply;
    if (retried_as_eval(ac, c, r, on_publish_script))
        return;
    struct position pos;
    int ok = r && r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
             r->element[0]->type == REDIS_REPLY_INTEGER && r->element[0]->integer > 0 &&
             r->element[1]->type == REDIS_REPLY_STRING &&
             position_epoch_valid(r->element[1]->str, r->element[1]->len);
    if (ok) {
        pos.offset = (uint64_t)r->element[0]->integer;
        memcpy(pos.epoch, r->element[1]->str, r->element[1]->len);
        pos.epoch[r->element[1]->len] = '\0';
    } else if (r && r->type == REDIS_REPLY_ERROR) {
        log_warn("redis history publish failed: %s", r->str);
    }
    c->done.publish(c->arg, ok, ok ? &pos : NULL);
    free(c);
}

static int publish_history(struct rbroker *b, const char *ch, size_t chlen,
                           const char *payload, size_t len, broker_done_fn done,
                           void *arg)
{
    char *p, epoch[HISTORY_EPOCH_LEN + 1], name[REDIS_NAME_MAX];
    struct call *c = new_call(b, &b->publish, ch, chlen, "meta", "stream", 6,
                              b->prefix_len + chlen + len + 3 * 24 + sizeof epoch, &p);
    if (!c)
        return -1;
    c->done.publish = done;
    c->arg = arg;
    history_epoch_new(epoch);
    call_arg(c, &p, prefixed(b, ch, chlen, name), b->prefix_len + chlen);
    call_arg(c, &p, payload, len);
    call_num(c, &p, b->hist.size);
    call_num(c, &p, b->hist.ttl);
    call_num(c, &p, (unsigned long long)b->hist.ttl + META_EXTRA_TTL_S);
    call_arg(c, &p, epoch, HISTORY_EPOCH_LEN);
    if (send_call(b, c, on_publish_script) < 0) {
        free(c);
        return -1;
    }
    return 0;
}

/* [epoch, top, [[id, [field, value, ...]], ...]] from history_read.lua. */
static void on_read_script(redisAsyncContext *ac, void *reply, void *priv)
{
    struct call *c = priv;
    const redisReply *r = reply;
    if (retried_as_eval(ac, c, r, on_read_script))
        return;
    struct history_read hr = {0};
    struct history_entry *e = NULL;
    int ok = r && r->type == REDIS_REPLY_ARRAY && r->elements == 3 &&
             r->element[0]->type == REDIS_REPLY_STRING &&
             position_epoch_valid(r->element[0]->str, r->element[0]->len) &&
             r->element[1]->type == REDIS_REPLY_INTEGER && r->element[1]->integer >= 0 &&
             r->element[2]->type == REDIS_REPLY_ARRAY;
    if (ok) {
        memcpy(hr.top.epoch, r->element[0]->str, r->element[0]->len);
        hr.top.epoch[r->element[0]->len] = '\0';
        hr.top.offset = (uint64_t)r->element[1]->integer;
        const redisReply *list = r->element[2];
        if (list->elements && !(e = malloc(list->elements * sizeof *e)))
            ok = 0;
        for (size_t i = 0; ok && i < list->elements; i++) {
            const redisReply *it = list->element[i], *f;
            ok = it->type == REDIS_REPLY_ARRAY && it->elements == 2 &&
                 it->element[0]->type == REDIS_REPLY_STRING &&
                 wire_entry_id(it->element[0]->str, it->element[0]->len, &e[i].offset) == 0 &&
                 (f = it->element[1])->type == REDIS_REPLY_ARRAY && f->elements == 2 &&
                 f->element[1]->type == REDIS_REPLY_STRING;
            if (ok) {
                e[i].payload = f->element[1]->str;
                e[i].len = f->element[1]->len;
            }
        }
        hr.entries = e;
        hr.n = list->elements;
    }
    if (!ok && r)
        log_warn("redis history read failed%s%s", r->type == REDIS_REPLY_ERROR ? ": " : "",
                 r->type == REDIS_REPLY_ERROR ? r->str : "");
    c->done.read(c->arg, ok ? &hr : NULL);
    free(e);
    free(c);
}

static int rb_history(struct broker *base, const char *ch, size_t len,
                      uint64_t since, size_t limit, broker_history_fn done, void *arg)
{
    struct rbroker *b = (struct rbroker *)base;
    char *p, epoch[HISTORY_EPOCH_LEN + 1];
    struct call *c;
    if (b->phase != UP || len > CHANNEL_MAX || !rb_history_on(base, ch, len) ||
        !(c = new_call(b, &b->read, ch, len, "meta", "stream", 4, 4 * 24 + sizeof epoch, &p)))
        return -1;
    c->done.read = done;
    c->arg = arg;
    history_epoch_new(epoch);
    call_num(c, &p, since);
    call_num(c, &p, limit < b->hist.size ? limit : b->hist.size);
    call_arg(c, &p, epoch, HISTORY_EPOCH_LEN);
    call_num(c, &p, (unsigned long long)b->hist.ttl + META_EXTRA_TTL_S);
    if (send_call(b, c, on_read_script) < 0) {
        free(c);
        return -1;
    }
    return 0;
}

/* PUBLISH <prefix>C payload. */
static int publish_plain(struct rbroker *b, const char *ch, size_t chlen,
                         const char *payload, size_t len, broker_done_fn done, void *arg)
{
    struct pubreq *req = malloc(sizeof *req);
    if (!req)
        return -1;
    req->done = done;
    req->arg = arg;
    char name[REDIS_NAME_MAX];
    const char *argv[3] = {"PUBLISH", prefixed(b, ch, chlen, name), payload};
    size_t argl[3] = {7, b->prefix_len + chlen, len};
    if (redisAsyncCommandArgv(b->pub, on_pub_reply, req, 3, argv, argl) != REDIS_OK) {
        free(req);
        return -1;
    }
    return 0;
}

static int rb_publish(struct broker *base, const char *ch, size_t chlen,
                      const char *payload, size_t len, broker_done_fn done,
                      void *arg)
{
    struct rbroker *b = (struct rbroker *)base;
    if (b->phase != UP || chlen > CHANNEL_MAX)
        return -1;
    int rc = rb_history_on(base, ch, chlen)
                 ? publish_history(b, ch, chlen, payload, len, done, arg)
                 : publish_plain(b, ch, chlen, payload, len, done, arg);
    if (rc == 0)
        publish_bridge(b, ch, chlen, payload, len);
    return rc;
}

/* One shard (shards and shard_of left NULL): the two connections live and
 * die together. */
static int rb_shard_up(const struct broker *base, unsigned shard)
{
    (void)shard;
    return ((const struct rbroker *)base)->phase == UP;
}

static void forget_beat(struct rbroker *b);

static void rb_destroy(struct broker *base)
{
    struct rbroker *b = (struct rbroker *)base;
    if (b->phase == UP)
        forget_beat(b);
    b->phase = WAITING; /* what the pending callbacks do sends nothing more */
    drop_ctx(&b->pub); /* pending publishes complete with ok = 0 */
    drop_ctx(&b->sub);
    event_free(b->timer);
    members_free(b->members);
    free(b);
}

/* ---- presence -------------------------------------------------------- */

static int rb_presence_on(const struct broker *base, const char *ch, size_t len)
{
    return auth_grants_allow(((const struct rbroker *)base)->pres.channels, ch, len);
}

static void on_touched(redisAsyncContext *ac, void *reply, void *priv)
{
    struct call *c = priv;
    const redisReply *r = reply;
    if (retried_as_eval(ac, c, r, on_touched))
        return;
    if (r && r->type == REDIS_REPLY_ERROR)
        log_warn("redis presence refresh failed: %s", r->str);
    free(c);
}

/* Adds or keeps alive the members v of one channel in Redis. */
static void touch(void *arg, const char *ch, size_t len, const struct member *v, size_t n)
{
    struct rbroker *b = arg;
    char *p;
    size_t node = strlen(b->pres.node), extra = 24 + n * (sizeof v->session + node + sizeof v->sub + 2);
    struct call *c = n ? new_call(b, &b->touch, ch, len, "presence", "presence:info", 1 + 2 * n,
                                  extra, &p) : NULL;
    if (!c)
        return; /* nothing to do, or out of memory: the next refresh retries */
    call_num(c, &p, (unsigned long long)b->pres.ttl * 1000);
    for (size_t i = 0; i < n; i++) {
        call_arg(c, &p, v[i].session, strlen(v[i].session));
        char *info = p; /* "<node> <sub>": neither holds a space */
        p += sprintf(p, "%s %s", b->pres.node, v[i].sub);
        c->argv[c->argc] = info;
        c->argl[c->argc++] = (size_t)(p - info);
    }
    if (send_call(b, c, on_touched) < 0)
        free(c);
}

struct touch_one {
    struct rbroker *b;
    const char *ch;
    size_t len;
    const char *session;
};

static void announce(struct rbroker *b, const char *ch, size_t len, int join,
                     const char *session, const char *sub);

/* Announces the session leaving, while its sub is still known. */
static void announce_leave(void *arg, const struct member *v, size_t n)
{
    struct touch_one *t = arg;
    for (size_t i = 0; i < n; i++)
        if (!strcmp(v[i].session, t->session))
            announce(t->b, t->ch, t->len, 0, v[i].session, v[i].sub);
}

static void touch_session(void *arg, const struct member *v, size_t n)
{
    struct touch_one *t = arg;
    for (size_t i = 0; i < n; i++)
        if (!strcmp(v[i].session, t->session))
            touch(t->b, t->ch, t->len, &v[i], 1);
}

static void on_present(redisAsyncContext *ac, void *reply, void *priv);

/* presence_read.lua on a channel: prunes (announcing leaves), and answers
 * done(arg, r) unless done is NULL. Returns 0 or -1. */
static int read_presence(struct rbroker *b, const char *ch, size_t len,
                         broker_presence_fn done, void *arg)
{
    char *p, name[REDIS_NAME_MAX];
    struct call *c = new_call(b, &b->present, ch, len, "presence", "presence:info", 1,
                              b->prefix_len + len, &p);
    if (!c)
        return -1;
    c->done.presence = done;
    c->arg = arg;
    call_arg(c, &p, prefixed(b, ch, len, name), b->prefix_len + len);
    if (send_call(b, c, on_present) < 0) {
        free(c);
        return -1;
    }
    return 0;
}

/* Keeps one channel's members of this node alive, and has the members a
 * dead node left behind pruned and announced. */
static void refresh_channel(void *arg, const char *ch, size_t len, const struct member *v,
                            size_t n)
{
    touch(arg, ch, len, v, n);
    read_presence(arg, ch, len, NULL, NULL);
}

/* Refreshes every member of this node when due (every --presence-ttl / 3,
 * and at once after a reconnect: Redis may have lost them). */
static void refresh_presence(struct rbroker *b)
{
    uint64_t now = clock_us();
    if (b->touched_us && now - b->touched_us < (uint64_t)b->pres.ttl * 1000000 / 3)
        return;
    b->touched_us = now;
    members_each(b->members, refresh_channel, b);
}

/* Announces on the channel: "!join|!leave <session> <node> <sub>". */
static void announce(struct rbroker *b, const char *ch, size_t len, int join,
                     const char *session, const char *sub)
{
    char name[REDIS_NAME_MAX], msg[512];
    int n = snprintf(msg, sizeof msg, "!%s %s %s %s", join ? "join" : "leave", session,
                     b->pres.node, sub);
    if (n > 0 && (size_t)n < sizeof msg) /* one argument: spaces would split a format */
        redisAsyncCommand(b->pub, NULL, NULL, "PUBLISH %b %b", prefixed(b, ch, len, name),
                          b->prefix_len + len, msg, (size_t)n);
}

static void rb_presence_join(struct broker *base, const char *ch, size_t len,
                             const char *session, const char *sub)
{
    struct rbroker *b = (struct rbroker *)base;
    if (members_add(b->members, ch, len, session, sub) < 0 || b->phase != UP)
        return;
    members_of(b->members, ch, len, touch_session, &(struct touch_one){b, ch, len, session});
    announce(b, ch, len, 1, session, sub);
}

static void rb_presence_leave(struct broker *base, const char *ch, size_t len,
                              const char *session)
{
    struct rbroker *b = (struct rbroker *)base;
    if (b->phase == UP)
        members_of(b->members, ch, len, announce_leave,
                   &(struct touch_one){b, ch, len, session});
    members_remove(b->members, ch, len, session);
    if (b->phase != UP)
        return; /* it expires from Redis within the TTL, announced then */
    char key[sizeof b->prefix + CHANNEL_MAX + 32];
    int n = snprintf(key, sizeof key, "%s{%.*s}:presence", b->prefix, (int)len, ch);
    redisAsyncCommand(b->pub, NULL, NULL, "ZREM %b %s", key, (size_t)n, session);
    redisAsyncCommand(b->pub, NULL, NULL, "HDEL %b:info %s", key, (size_t)n, session);
}

/* [session, "<node> <sub>", ...] from presence_read.lua. */
static void on_present(redisAsyncContext *ac, void *reply, void *priv)
{
    struct call *c = priv;
    const redisReply *r = reply;
    if (retried_as_eval(ac, c, r, on_present))
        return;
    int ok = r && r->type == REDIS_REPLY_ARRAY && r->elements % 2 == 0;
    size_t n = ok ? r->elements / 2 : 0, total = 1;
    for (size_t i = 0; ok && i < r->elements; i++) {
        ok = r->element[i]->type == REDIS_REPLY_STRING;
        total += ok ? r->element[i]->len + 1 : 0;
    }
    struct presence_member *v = ok ? calloc(n ? n : 1, sizeof *v) : NULL;
    char *text = v ? malloc(total) : NULL, *t = text; /* NUL-terminated copies */
    for (size_t i = 0; text && i < n; i++) {
        const redisReply *id = r->element[2 * i], *info = r->element[2 * i + 1];
        v[i].session = t;
        memcpy(t, id->str, id->len);
        t += id->len;
        *t++ = '\0';
        char *node = t, *sp;
        memcpy(t, info->str, info->len);
        t += info->len;
        *t++ = '\0';
        if ((sp = strchr(node, ' ')))
            *sp = '\0';
        v[i].node = node;
        v[i].sub = sp ? sp + 1 : "";
    }
    if (c->done.presence) /* NULL: a prune by the refresh */
        c->done.presence(c->arg, text ? &(struct presence_read){v, n} : NULL);
    free(text);
    free(v);
    free(c);
}

static int rb_presence(struct broker *base, const char *ch, size_t len,
                       broker_presence_fn done, void *arg)
{
    struct rbroker *b = (struct rbroker *)base;
    if (b->phase != UP || len > CHANNEL_MAX || !rb_presence_on(base, ch, len))
        return -1;
    return read_presence(b, ch, len, done, arg);
}

/* ---- heartbeats ------------------------------------------------------- */

static int rb_beat(struct broker *base, const char *node, const char *json, size_t len,
                   unsigned ttl_ms)
{
    struct rbroker *b = (struct rbroker *)base;
    if (b->phase != UP)
        return -1;
    redisAsyncCommand(b->pub, NULL, NULL, "SET %snode:%s %b PX %u", b->prefix, node, json,
                      len, ttl_ms);
    redisAsyncCommand(b->pub, NULL, NULL, "SADD %snodes %s", b->prefix, node);
    snprintf(b->beat_node, sizeof b->beat_node, "%s", node);
    return 0;
}

/* A node that stops cleanly leaves the cluster view at once, not after the
 * TTL: its heartbeat is deleted, and the commands written out now, since
 * freeing the context drops what it has not sent. */
static void forget_beat(struct rbroker *b)
{
    if (!b->beat_node[0])
        return;
    redisAsyncCommand(b->pub, NULL, NULL, "DEL %snode:%s", b->prefix, b->beat_node);
    redisAsyncCommand(b->pub, NULL, NULL, "SREM %snodes %s", b->prefix, b->beat_node);
    redisAsyncHandleWrite(b->pub); /* a failed write frees it: on_disconnect clears b->pub */
}

struct nodes_req {
    broker_nodes_fn done;
    void *arg;
};

static void on_nodes(redisAsyncContext *ac, void *reply, void *priv)
{
    (void)ac;
    struct nodes_req *q = priv;
    const redisReply *r = reply;
    struct node_beat *v = NULL;
    size_t n = 0;
    if (r && r->type == REDIS_REPLY_ARRAY && (v = calloc(r->elements + 1, sizeof *v)))
        for (size_t i = 0; i < r->elements; i++)
            if (r->element[i]->type == REDIS_REPLY_STRING)
                v[n++] = (struct node_beat){r->element[i]->str, r->element[i]->len};
    if (r && r->type == REDIS_REPLY_ERROR)
        log_warn("redis heartbeat read failed: %s", r->str);
    q->done(q->arg, v, n);
    free(v);
    free(q);
}

static int rb_nodes(struct broker *base, broker_nodes_fn done, void *arg)
{
    struct rbroker *b = (struct rbroker *)base;
    struct nodes_req *q;
    if (b->phase != UP || !(q = malloc(sizeof *q)))
        return -1;
    *q = (struct nodes_req){done, arg};
    if (redisAsyncCommand(b->pub, on_nodes, q, "EVAL %s 1 %snodes %snode:", script_nodes_read,
                          b->prefix, b->prefix) != REDIS_OK) {
        free(q);
        return -1;
    }
    return 0;
}

static void script_init(struct script *s, const char *text)
{
    unsigned char md[SHA_DIGEST_LENGTH];
    SHA1((const unsigned char *)text, strlen(text), md);
    for (int i = 0; i < SHA_DIGEST_LENGTH; i++)
        sprintf(s->sha + 2 * i, "%02x", md[i]);
    s->text = text;
}

static const struct broker_ops redis_ops = {
    .subscribe = rb_subscribe,
    .unsubscribe = rb_unsubscribe,
    .publish = rb_publish,
    .shard_up = rb_shard_up,
    .history_on = rb_history_on,
    .history = rb_history,
    .presence_on = rb_presence_on,
    .presence_join = rb_presence_join,
    .presence_leave = rb_presence_leave,
    .presence = rb_presence,
    .beat = rb_beat,
    .nodes = rb_nodes,
    .destroy = rb_destroy,
};

struct broker *broker_redis_new(struct event_base *evb,
                                const struct redis_addr *addr,
                                const char *prefix,
                                const struct broker_events *ev,
                                const struct history_opts *hist,
                                const struct presence_opts *pres,
                                const struct broker_bridge *bridge)
{
    struct rbroker *b = calloc(1, sizeof *b);
    if (!b)
        return NULL;
    b->base.ops = &redis_ops;
    b->base.ev = *ev;
    b->evb = evb;
    b->addr = *addr;
    b->prefix_len = strlen(prefix);
    if (b->prefix_len >= sizeof b->prefix) {
        free(b);
        return NULL;
    }
    memcpy(b->prefix, prefix, b->prefix_len + 1);
    b->hist = *hist;
    b->pres = *pres;
    if (bridge)
        b->bridge = *bridge;
    script_init(&b->publish, script_publish);
    script_init(&b->read, script_read);
    script_init(&b->touch, script_presence_touch);
    script_init(&b->present, script_presence_read);
    b->timer = evtimer_new(evb, on_timer, b);
    if (!b->timer || !(b->members = members_new())) {
        if (b->timer)
            event_free(b->timer);
        free(b);
        return NULL;
    }
    b->phase = WAITING;
    arm(b, 0); /* connect from the loop, not from the constructor */
    return &b->base;
}
