/* redis.c - the Redis engine (hiredis async on the libevent loop).
 *
 * Two connections: one in SUBSCRIBE mode, one for PUBLISH and health PINGs.
 * They live and die together: losing either tears both down, reports the
 * broker down, and reconnects after a capped exponential backoff with
 * jitter. hiredis 0.14 has no timeouts, so one timer serves, by phase, as
 * the backoff, the connect timeout and the PING health check. See broker.h
 * for the contract the hub relies on. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <hiredis.h>
#include <async.h>
#include <adapters/libevent.h>

#include "broker/broker.h"
#include "config.h"
#include "core/channel.h"
#include "log.h"

/* Liveness: a Redis that stops answering (frozen, or a partition that
 * sends no reset) must read as down within 1 s, so /readyz can turn 503 in
 * time. A PING goes out every HEALTH_MS; one still pending after
 * HEALTH_DOWN_TICKS periods (700 ms) drops both connections. The worst case
 * is a freeze just after a reply: the next PING leaves up to one period
 * later, so down is declared at most 800 ms after the freeze. (250 ms and
 * 750 ms would make that 1 s.) A command slower than 700 ms counts as a
 * dead Redis: the price of that deadline. Reconnects back off from 100 ms
 * to at most 800 ms (with jitter), so a Redis that is back is used again
 * within 1 s. */
#define CONNECT_TIMEOUT_MS 1000
#define HEALTH_MS 100
#define HEALTH_DOWN_TICKS 7
#define BACKOFF_BASE_MS 100
#define BACKOFF_CAP_MS 800

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
};

/* A publish awaiting its reply; hiredis hands it back as privdata. */
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
            connection_lost(b, "no reply to PING within 700 ms");
            return;
        }
        if (!b->ping_out &&
            redisAsyncCommand(b->pub, on_pong, NULL, "PING") == REDIS_OK) {
            b->ping_out = 1;
            b->ping_ticks = 0;
        }
        arm(b, HEALTH_MS);
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
    if (!strcmp(kind->str, "message") && r->element[2]->type == REDIS_REPLY_STRING)
        b->base.ev.message(b->base.ev.ctx, name, len, r->element[2]->str,
                           r->element[2]->len, NULL);
    else if (!strcmp(kind->str, "subscribe"))
        b->base.ev.subscribed(b->base.ev.ctx, name, len);
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

static int rb_publish(struct broker *base, const char *ch, size_t chlen,
                      const char *payload, size_t len, broker_done_fn done,
                      void *arg)
{
    struct rbroker *b = (struct rbroker *)base;
    struct pubreq *req;
    if (b->phase != UP || chlen > CHANNEL_MAX || !(req = malloc(sizeof *req)))
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

/* One shard (shards and shard_of left NULL): the two connections live and
 * die together. */
static int rb_shard_up(const struct broker *base, unsigned shard)
{
    (void)shard;
    return ((const struct rbroker *)base)->phase == UP;
}

static void rb_destroy(struct broker *base)
{
    struct rbroker *b = (struct rbroker *)base;
    drop_ctx(&b->pub); /* pending publishes complete with ok = 0 */
    drop_ctx(&b->sub);
    event_free(b->timer);
    free(b);
}

static const struct broker_ops redis_ops = {
    .subscribe = rb_subscribe,
    .unsubscribe = rb_unsubscribe,
    .publish = rb_publish,
    .shard_up = rb_shard_up,
    .destroy = rb_destroy,
};

struct broker *broker_redis_new(struct event_base *evb,
                                const struct redis_addr *addr,
                                const char *prefix,
                                const struct broker_events *ev)
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
    b->timer = evtimer_new(evb, on_timer, b);
    if (!b->timer) {
        free(b);
        return NULL;
    }
    b->phase = WAITING;
    arm(b, 0); /* connect from the loop, not from the constructor */
    return &b->base;
}
