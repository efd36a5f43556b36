/* client.c - see client.h. */
#include "core/client.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "broker/broker.h"
#include "core/bucket.h"
#include "core/channel.h"
#include "core/clock.h"
#include "core/msg.h"
#include "log.h"

struct client {
    struct hub_client hc;  /* the hub's view of this client */
    struct app *app;
    const struct codec *codec;
    struct conn *conn;     /* NULL after client_gone() */
    const struct conn_ops *ops;
    struct client *next, *prev; /* app->clients */
    struct msgq q;
    struct bucket publishes; /* --publish-rate */
    uint64_t soft_since_us; /* queue over the soft limit since; 0: under */
    uint64_t heard_us;     /* the peer last sent something (a pong counts) */
    uint64_t ping_us;      /* the codec's last ping (codec->ping only) */
    struct wheel_timer timer; /* the next check(), at the earliest due */
    struct auth_claims *claims; /* NULL: anonymous (or --auth off) */
    /* The narrow fields together: one client per connection, and padding
     * between them took 24 bytes of each. */
    unsigned refs;         /* the connection + publishes awaiting the broker */
    unsigned strikes;      /* publishes refused in a row */
    enum disconnect_reason why;
    unsigned char batch;
    unsigned char closing; /* close once the queue is written */
    unsigned char discard; /* cut off: nothing more is queued */
    unsigned char pinged;  /* a ping went out since */
    unsigned char proto;   /* the codec's own per-connection state */
    char id[20];
    char peer[48];
};

/* A publish or presence request waiting for the broker's answer. */
struct pub_wait {
    struct client *c;
    struct req_id id;
    int stats;            /* presence_stats */
    size_t len;           /* presence: the channel */
    char channel[CHANNEL_MAX];
};

/* How each reason closes: RFC 6455 code (4xxx: ours) and reason text. */
static const struct {
    uint16_t code;
    const char *text;
} closes[DISC_COUNT] = {
    [DISC_CLIENT] = {1000, "bye"},
    [DISC_SLOW_CONSUMER] = {1008, "slow consumer"},
    [DISC_RATE_LIMITED] = {1008, "rate limited"},
    [DISC_TOO_LARGE] = {1009, "message too large"},
    [DISC_AUTH] = {4001, "token expired"},
    [DISC_DRAIN] = {1001, "going away"},
    [DISC_ERROR] = {1011, "internal error"},
    [DISC_TIMEOUT] = {1001, "ping timeout"}, /* never sent: the peer is gone */
    [DISC_PROTOCOL] = {1002, "protocol error"},
};

_Static_assert(METRICS_PROTOCOLS == DELIVERY_CODECS, "one metrics row per codec slot");

static struct client *of_hub(struct hub_client *hc)
{
    return (struct client *)((char *)hc - offsetof(struct client, hc));
}

static void release(struct client *c)
{
    if (--c->refs)
        return;
    auth_claims_free(c->claims);
    free(c);
}

static void clear_queue(struct client *c)
{
    c->app->metrics->queue_bytes -= c->q.bytes;
    msgq_clear(&c->q);
}

/* The reasons that reset the connection instead of closing it. */
static int resets(enum disconnect_reason why)
{
    return why == DISC_SLOW_CONSUMER || why == DISC_TIMEOUT;
}

/* Disconnects a client for a policy reason: nothing more is queued; what
 * is queued is still written before the close frame. A slow consumer's
 * queue is dropped and the connection reset instead (a close frame could
 * not pass its full kernel buffer, and the kernel would keep its unsent
 * megabytes for minutes in FIN-WAIT), and so is a peer that stopped
 * answering pings (nobody would read the close frame). The reason goes to the log and the
 * metrics. */
static void disconnect(struct client *c, enum disconnect_reason why)
{
    log_warn("session %s: closing: %s", c->id, closes[why].text);
    if (resets(why)) {
        clear_queue(c);
        c->closing = 1;
        c->why = why;
        c->ops->abort(c->conn);
    } else {
        client_close(c, why);
    }
    c->discard = 1;
}

static uint64_t seconds_us(double s) { return (uint64_t)(s * 1e6); }

static uint64_t min_u64(uint64_t a, uint64_t b) { return a < b ? a : b; }

/* Sets c's timer to the first time check() may find something to do: the
 * soft queue deadline, the ping or its timeout, the token's expiry. Other
 * events that only postpone these (the peer heard, the queue drained) leave
 * the timer alone: it fires early, finds nothing and is set again, so the
 * cost is per deadline, never per message. */
static void schedule(struct client *c, uint64_t now)
{
    const struct app *app = c->app;
    const struct config *cfg = &app->cfg;
    uint64_t due = UINT64_MAX;
    if (c->closing && resets(c->why)) { /* reset already: nothing to check */
        wheel_cancel(&c->timer);
        return;
    }
    if (c->soft_since_us && !c->discard)
        due = c->soft_since_us + seconds_us(cfg->queue_soft_seconds);
    /* A codec that pings itself counts from its last ping, others from
     * the last thing heard. */
    uint64_t since = c->codec->ping ? c->ping_us : c->heard_us;
    if (c->pinged)
        due = min_u64(due, since + (c->codec->ping ? 0 : seconds_us(cfg->ping_interval)) +
                               seconds_us(cfg->ping_timeout));
    else if (!c->closing)
        due = min_u64(due, since + seconds_us(cfg->ping_interval));
    int64_t expiry = c->claims && app->auth ? auth_claims_expiry(app->auth, c->claims) : 0;
    if (expiry && !c->closing) {
        int64_t left = expiry - (int64_t)time(NULL);
        due = min_u64(due, now + (left > 0 ? (uint64_t)left * 1000000u : 0));
    }
    if (due == UINT64_MAX)
        wheel_cancel(&c->timer);
    else
        wheel_set(&c->app->timers, &c->timer, due);
}

/* Queues m (borrowed). A queue over its hard bound closes the client. */
static void enqueue(struct client *c, struct msg *m)
{
    if (!c->conn || c->discard)
        return;
    const struct config *cfg = &c->app->cfg;
    int was_empty = c->q.count == 0;
    int rc = msgq_push(&c->q, m, cfg->max_queue_bytes);
    if (rc == -1) {
        disconnect(c, DISC_SLOW_CONSUMER);
        return;
    }
    if (rc < 0) {
        log_error("session %s: out of memory queueing a frame", c->id);
        disconnect(c, DISC_ERROR);
        return;
    }
    c->app->metrics->queue_bytes += m->len;
    if (cfg->queue_soft_bytes && !c->soft_since_us && c->q.bytes > cfg->queue_soft_bytes) {
        c->soft_since_us = clock_us();
        schedule(c, c->soft_since_us);
    }
    if (was_empty)
        c->ops->want_write(c->conn);
}

void client_send(struct client *c, struct msg *m)
{
    if (!m) {
        log_error("session %s: out of memory encoding a frame", c->id);
        return;
    }
    enqueue(c, m);
    msg_unref(m);
}

void client_reply(struct client *c, const struct req_id *id, const char *code,
                  const char *message)
{
    if (!code && !id->has && c->codec->quiet_acks)
        return;
    client_send(c, c->codec->reply(c->id, id, code, message));
}

static void hub_deliver(struct hub_client *hc, struct delivery *d)
{
    struct client *c = of_hub(hc);
    struct msg *m = codec_frame(c->codec, d);
    if (m)
        enqueue(c, m);
    else
        log_error("out of memory encoding a message for %.*s", (int)d->channel_len,
                  d->channel);
}

/* An ack that tells positions when the codec can say them. */
static void reply_ack(struct client *c, const struct req_id *id,
                      const struct ack_position *a)
{
    if (c->codec->ack)
        client_send(c, c->codec->ack(id, a));
    else
        client_reply(c, id, NULL, NULL);
}

static void hub_subscribe_done(struct hub_client *hc, const struct req_id *id,
                               const char *code, const struct hub_ack *ack)
{
    struct client *c = of_hub(hc);
    if (code || !ack) {
        client_reply(c, id, code, code ? "the broker is unavailable, try again" : NULL);
        return;
    }
    struct ack_position a = {
        .pos = ack->top, .recover = ack->recover,
        .unrecovered = ack->loss == HISTORY_COMPLETE ? NULL : history_loss_name(ack->loss),
    };
    reply_ack(c, id, &a);
}

static void hub_lost(struct hub_client *hc, const char *channel, size_t len,
                     enum history_loss why, const struct position *top)
{
    struct client *c = of_hub(hc);
    log_info("session %s: messages on %.*s lost: %s", c->id, (int)len, channel,
             history_loss_name(why));
    if (c->codec->lost)
        client_send(c, c->codec->lost(channel, len, history_loss_name(why), top));
}

static void hub_presence(struct hub_client *hc, const char *channel, size_t len, int join,
                         const struct presence_member *m)
{
    struct client *c = of_hub(hc);
    if (c->codec->presence_event)
        client_send(c, c->codec->presence_event(channel, len, join, m));
}

const struct hub_callbacks client_hub_callbacks = {
    .deliver = hub_deliver,
    .subscribe_done = hub_subscribe_done,
    .lost = hub_lost,
    .presence = hub_presence,
};

static void on_published(void *arg, int ok, const struct position *pos)
{
    struct pub_wait *w = arg;
    struct client *c = w->c;
    if (ok) {
        c->app->metrics->published_total++;
        c->app->metrics->history_appends += pos != NULL;
    }
    if (ok)
        reply_ack(c, &w->id, &(struct ack_position){.pos = pos});
    else
        client_reply(c, &w->id, "broker_unavailable",
                     "the broker did not accept the message, try again");
    free(w);
    release(c);
}

/* With --auth, a channel needs a grant: the token's, or the anonymous
 * list for a client without one. */
static int granted(const struct client *c, const char *channel, size_t len,
                   int publish)
{
    const struct app *app = c->app;
    if (!app->auth)
        return 1;
    const struct auth_grants *g = !c->claims ? &app->anonymous
                                  : publish  ? &c->claims->publish
                                             : &c->claims->subscribe;
    return auth_grants_allow(g, channel, len);
}

static void reply_forbidden(struct client *c, const struct req_id *id)
{
    client_reply(c, id, "forbidden", "no grant for this channel");
}

void client_publish(struct client *c, const char *channel, size_t len,
                    const char *data, size_t data_len, const struct req_id *id)
{
    if (!granted(c, channel, len, 1)) {
        reply_forbidden(c, id);
        return;
    }
    const struct config *cfg = &c->app->cfg;
    if (!bucket_take(&c->publishes, cfg->publish_rate, cfg->publish_burst, clock_us())) {
        /* A client that ignores a whole burst of refusals is cut off. */
        if (++c->strikes > cfg->publish_burst) {
            disconnect(c, DISC_RATE_LIMITED);
            return;
        }
        client_reply(c, id, "rate_limited", "publishing too fast, slow down");
        return;
    }
    c->strikes = 0;
    struct pub_wait *w = malloc(sizeof *w);
    if (!w) {
        client_reply(c, id, "internal", "out of memory");
        return;
    }
    *w = (struct pub_wait){.c = c, .id = *id};
    c->refs++;
    if (broker_publish(c->app->broker, channel, len, data, data_len, on_published, w) < 0) {
        free(w);
        c->refs--;
        client_reply(c, id, "broker_unavailable", "the broker is unavailable, try again");
    }
}

static void on_presence(void *arg, const struct presence_read *r)
{
    struct pub_wait *w = arg;
    struct client *c = w->c;
    if (!r)
        client_reply(c, &w->id, "broker_unavailable", "the presence read failed, try again");
    else if (c->codec->presence)
        client_send(c, c->codec->presence(&w->id, w->channel, w->len, r, w->stats));
    else
        client_reply(c, &w->id, NULL, NULL);
    free(w);
    release(c);
}

void client_presence(struct client *c, const char *channel, size_t len,
                     const struct req_id *id, int stats)
{
    if (!granted(c, channel, len, 0)) {
        reply_forbidden(c, id);
        return;
    }
    if (!broker_presence_on(c->app->broker, channel, len)) {
        client_reply(c, id, "presence_off", "this channel keeps no presence (--presence-channels)");
        return;
    }
    struct pub_wait *w = malloc(sizeof *w);
    if (!w) {
        client_reply(c, id, "internal", "out of memory");
        return;
    }
    *w = (struct pub_wait){.c = c, .id = *id, .stats = stats, .len = len};
    memcpy(w->channel, channel, len);
    c->refs++;
    if (broker_presence(c->app->broker, channel, len, on_presence, w) < 0) {
        free(w);
        c->refs--;
        client_reply(c, id, "broker_unavailable", "the broker is unavailable, try again");
    }
}

void client_subscribe(struct client *c, const char *channel, size_t len,
                      const struct req_id *id, const struct hub_sub_opts *o)
{
    if (!granted(c, channel, len, 0)) {
        reply_forbidden(c, id);
        return;
    }
    if (c->hc.nsubs >= c->app->cfg.max_channels) {
        client_reply(c, id, "too_many_channels",
                     "subscription limit of this connection reached");
        return;
    }
    if (o && o->presence_events && !broker_presence_on(c->app->broker, channel, len)) {
        client_reply(c, id, "presence_off", "this channel keeps no presence (--presence-channels)");
        return;
    }
    int rc = hub_subscribe(c->app->hub, &c->hc, channel, len, id, o);
    if (rc == HUB_EALREADY)
        client_reply(c, id, "already_subscribed", "already subscribed to this channel");
    else if (rc == HUB_EUNAVAILABLE)
        client_reply(c, id, "broker_unavailable", "the broker is unavailable, try again");
    else if (rc < 0)
        client_reply(c, id, "internal", "out of memory");
}

void client_unsubscribe(struct client *c, const char *channel, size_t len,
                        const struct req_id *id)
{
    if (hub_unsubscribe(c->app->hub, &c->hc, channel, len) == 0)
        client_reply(c, id, NULL, NULL);
    else
        client_reply(c, id, "not_subscribed", "not subscribed to this channel");
}

int client_closing(const struct client *c)
{
    return c->closing;
}

int client_owes_write(const struct client *c)
{
    return c->q.count || c->closing;
}

void client_receive(struct client *c, const char *buf, size_t len, int binary)
{
    client_heard(c);
    if (c->closing) /* shutting down or cut off: no new work */
        return;
    c->codec->receive(c, buf, len, binary);
}

void client_too_large(struct client *c)
{
    log_info("session %s: inbound message over %zu bytes, closing", c->id,
             c->app->cfg.max_message_size);
    c->closing = 1;
    c->discard = 1;
    c->why = DISC_TOO_LARGE;
    c->ops->close(c->conn, closes[DISC_TOO_LARGE].code, closes[DISC_TOO_LARGE].text);
}

/* Accounts for the oldest queued frame, written, and drops it. */
static void written(struct client *c, uint64_t now)
{
    struct msg *m = msgq_peek(&c->q);
    struct metrics *mt = c->app->metrics;
    if (m->born_us) {
        mt->delivered_total++;
        if (m->refs == 1) /* the last subscriber written: fan-out complete */
            metrics_observe_latency(mt, (double)(now - m->born_us) / 1e6);
    }
    mt->queue_bytes -= m->len;
    msgq_pop(&c->q);
}

/* Joins queued frames with the codec's separator into the app's scratch
 * msg, up to APP_BATCH_MAX bytes; returns the length (0 if the first alone
 * is larger). */
static size_t gather_batch(struct client *c, uint64_t now)
{
    unsigned char *out = msg_data(c->app->batch);
    size_t n = 0;
    struct msg *m;
    while ((m = msgq_peek(&c->q)) && n + (n > 0) + m->len <= APP_BATCH_MAX) {
        if (n)
            out[n++] = (unsigned char)c->codec->batch_sep;
        memcpy(out + n, msg_data(m), m->len);
        n += m->len;
        written(c, now);
    }
    return n;
}

/* Gathers the oldest queued msgs that one write_frames() may take; returns
 * how many (1: the first alone, write it as it is). */
static size_t gather_frames(const struct client *c, struct msg **v)
{
    size_t n = 0, bytes = 0;
    while (n < c->q.count && n < CONN_FRAMES_MAX) {
        struct msg *m = msgq_at(&c->q, (uint32_t)n);
        if (n && bytes + m->len > CONN_FRAMES_BYTES)
            break;
        bytes += m->len;
        v[n++] = m;
    }
    return n;
}

int client_writable(struct client *c)
{
    if (!c->q.count) {
        if (!c->closing)
            return 0;
        c->ops->close(c->conn, closes[c->why].code, closes[c->why].text);
        return -1;
    }
    uint64_t now = clock_us();
    int rc;
    size_t n;
    if (c->batch && c->q.count > 1 && (n = gather_batch(c, now)) > 0) {
        rc = c->ops->write(c->conn, msg_data(c->app->batch), n);
    } else {
        struct msg *v[CONN_FRAMES_MAX];
        size_t k = gather_frames(c, v);
        n = 0;
        for (size_t i = 0; i < k; i++)
            n += v[i]->len;
        rc = k > 1 ? c->ops->write_frames(c->conn, v, k)
                   : c->ops->write(c->conn, msg_data(v[0]), n);
        while (k--)
            written(c, now);
    }
    if (rc < 0)
        return -1;
    c->app->metrics->bytes_sent_total += n;
    c->app->metrics->writes_total++;
    if (c->soft_since_us && c->q.bytes <= c->app->cfg.queue_soft_bytes)
        c->soft_since_us = 0;
    if (c->q.count || c->closing)
        c->ops->want_write(c->conn);
    return 0;
}

struct client *client_open(struct app *app, const struct client_opts *o)
{
    struct client *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->app = app;
    c->codec = o->codec;
    c->conn = o->conn;
    c->ops = o->ops;
    c->refs = 1;
    c->heard_us = c->ping_us = clock_us();
    c->batch = o->batch && o->codec->batch_sep;
    c->claims = o->claims;
    c->hc.session = c->id;
    c->hc.sub = c->claims ? c->claims->sub : "";
    bucket_init(&c->publishes, app->cfg.publish_burst, clock_us());
    snprintf(c->id, sizeof c->id, "%08x%08x", app->session_salt, ++app->session_seq);
    snprintf(c->peer, sizeof c->peer, "%s", o->peer ? o->peer : "");
    c->next = app->clients;
    if (app->clients)
        app->clients->prev = c;
    app->clients = c;
    app->nclients++;
    app->metrics->connections_total++;
    struct metrics_protocol *mp = &app->metrics->protocols[c->codec->slot];
    mp->name = c->codec->name;
    mp->open++;
    mp->opened++;
    schedule(c, c->heard_us);
    log_fields(LOG_INFO, "session open", "session", c->id, "remote", c->peer,
               "sub", c->claims ? c->claims->sub : NULL,
               "batch", c->batch ? "1" : NULL, "protocol", c->codec->name,
               (const char *)NULL);
    client_send(c, c->codec->welcome(app, c->id, o->transport ? o->transport : "websocket"));
    return c;
}

void client_rebind(struct client *c, struct conn *conn, const struct conn_ops *ops)
{
    c->conn = conn;
    c->ops = ops;
    if (c->q.count || c->closing)
        ops->want_write(conn);
}

const struct app *client_app(const struct client *c) { return c->app; }

const char *client_id(const struct client *c) { return c->id; }

unsigned char *client_proto_state(struct client *c) { return &c->proto; }

int client_has_claims(const struct client *c) { return c->claims != NULL; }

void client_set_claims(struct client *c, struct auth_claims *claims)
{
    auth_claims_free(c->claims);
    c->claims = claims;
}

void client_close(struct client *c, enum disconnect_reason why)
{
    if (!c->conn || c->closing)
        return;
    c->closing = 1;
    c->why = why;
    c->ops->want_write(c->conn);
}

unsigned client_close_some(struct app *app, enum disconnect_reason why, unsigned n)
{
    unsigned done = 0;
    for (struct client *c = app->clients; c && done < n; c = c->next) {
        if (!c->closing) {
            client_close(c, why);
            done++;
        }
    }
    return done;
}

void client_heard(struct client *c)
{
    c->heard_us = clock_us();
    if (c->pinged) { /* the pong: the next ping is due sooner than its timeout */
        c->pinged = 0;
        schedule(c, c->heard_us);
    }
}

/* A codec that pings itself (Engine.IO) pings every --ping-interval
 * whatever the client sends: its peer gives up when it hears no ping for
 * interval + timeout. */
static void codec_ping(struct client *c, uint64_t now, uint64_t ping)
{
    if (c->pinged || c->closing || now - c->ping_us < ping)
        return;
    c->ping_us = now;
    c->pinged = 1;
    client_send(c, c->codec->ping());
}

/* A client's timer fired: what the deadlines in schedule() call for. */
static void check(struct wheel_timer *t, void *arg)
{
    struct client *c = (struct client *)((char *)t - offsetof(struct client, timer));
    const struct config *cfg = &c->app->cfg;
    uint64_t now = *(const uint64_t *)arg;
    uint64_t ping = seconds_us(cfg->ping_interval);
    if (c->soft_since_us && !c->discard &&
        now - c->soft_since_us >= seconds_us(cfg->queue_soft_seconds))
        disconnect(c, DISC_SLOW_CONSUMER);
    else if (c->pinged && (c->codec->ping ? now - c->ping_us >= seconds_us(cfg->ping_timeout)
                                          : now - c->heard_us >= ping + seconds_us(cfg->ping_timeout)))
        disconnect(c, DISC_TIMEOUT);
    else if (c->claims && auth_claims_expired(c->app->auth, c->claims, (int64_t)time(NULL)))
        client_close(c, DISC_AUTH);
    else if (c->codec->ping)
        codec_ping(c, now, ping);
    else if (!c->pinged && !c->closing && now - c->heard_us >= ping) {
        c->pinged = 1;
        c->ops->ping(c->conn);
    }
    schedule(c, now);
}

/* Keepalive is ours rather than lws's: lws 4.1 keeps one timer per
 * connection in a sorted list and re-inserts it on every pong, a walk over
 * every connection each time. Ours sit on a timing wheel: a sweep looks
 * only at the clients with something due. */
void client_sweep(struct app *app)
{
    uint64_t now = clock_us();
    wheel_expire(&app->timers, now, check, &now);
}

void client_gone(struct client *c)
{
    struct app *app = c->app;
    enum disconnect_reason why = c->closing ? c->why : DISC_CLIENT;
    app->metrics->disconnects[why]++;
    log_fields(LOG_INFO, "session closed", "session", c->id, "remote", c->peer,
               "sub", c->claims ? c->claims->sub : NULL,
               "reason", metrics_reason_name(why), "protocol", c->codec->name,
               (const char *)NULL);
    hub_drop_client(app->hub, &c->hc);
    wheel_cancel(&c->timer);
    clear_queue(c);
    if (c->prev) c->prev->next = c->next; else app->clients = c->next;
    if (c->next) c->next->prev = c->prev;
    app->nclients--;
    app->metrics->protocols[c->codec->slot].open--;
    c->conn = NULL;
    release(c);
}
