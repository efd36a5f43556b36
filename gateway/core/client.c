/* session.c - see session.h. */
#include "core/client.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <libwebsockets.h>

#include "broker/broker.h"
#include "core/bucket.h"
#include "core/clock.h"
#include "log.h"
#include "net/loop.h"
#include "core/msg.h"
#include "proto/v1.h"

struct session {
    struct hub_client hc;  /* the hub's view of this client */
    struct app *app;
    struct lws *wsi;       /* NULL after sess_closed() */
    struct session *next, *prev; /* app->sessions */
    struct msgq q;
    char *rx;              /* reassembly of a fragmented inbound message */
    size_t rx_len, rx_cap;
    unsigned refs;         /* the connection + publishes awaiting the broker */
    unsigned char batch;
    unsigned char closing; /* close once the queue is written */
    unsigned char discard; /* cut off: nothing more is queued */
    enum disconnect_reason why;
    struct bucket publishes; /* --publish-rate */
    unsigned strikes;      /* publishes refused in a row */
    uint64_t soft_since_us; /* queue over the soft limit since; 0: under */
    struct auth_claims *claims; /* NULL: anonymous (or --auth off) */
    char id[20];
    char peer[48];
};

/* A publish waiting for the broker's answer. */
struct pub_wait {
    struct session *s;
    int64_t id;
    int has_id;
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
};

static struct session *of_client(struct hub_client *c)
{
    return (struct session *)((char *)c - offsetof(struct session, hc));
}

static void release(struct session *s)
{
    if (--s->refs)
        return;
    auth_claims_free(s->claims);
    free(s->rx);
    free(s);
}

static void clear_queue(struct session *s)
{
    s->app->metrics.queue_bytes -= s->q.bytes;
    msgq_clear(&s->q);
}

/* Cuts a client off: nothing more is queued; what is queued is still
 * written before the close frame. A slow consumer's queue is dropped and it
 * is not sent a close frame (it could not pass the full
 * kernel buffer, and lws would hold the connection until it did): the
 * connection is killed on the next lws service and its socket reset, so
 * the kernel drops its unsent megabytes instead of keeping them for
 * minutes in FIN-WAIT. The reason goes to the log and the metrics. */
static void cut_off(struct session *s, enum disconnect_reason why)
{
    log_warn("session %s: closing: %s", s->id, closes[why].text);
    if (why == DISC_SLOW_CONSUMER) {
        clear_queue(s);
        struct linger lg = {1, 0};
        setsockopt(lws_get_socket_fd(s->wsi), SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        s->closing = 1;
        s->why = why;
        lws_set_timeout(s->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
    } else {
        sess_close(s, why);
    }
    s->discard = 1;
}

/* Queues m (borrowed). A queue over its hard bound closes the client. */
static void send_msg(struct session *s, struct msg *m)
{
    if (!s->wsi || s->discard)
        return;
    const struct config *cfg = &s->app->cfg;
    int was_empty = s->q.count == 0;
    int rc = msgq_push(&s->q, m, cfg->max_queue_bytes);
    if (rc == -1) {
        cut_off(s, DISC_SLOW_CONSUMER);
        return;
    }
    if (rc < 0) {
        log_error("session %s: out of memory queueing a frame", s->id);
        cut_off(s, DISC_ERROR);
        return;
    }
    s->app->metrics.queue_bytes += m->len;
    if (cfg->queue_soft_bytes && !s->soft_since_us && s->q.bytes > cfg->queue_soft_bytes)
        s->soft_since_us = clock_us();
    if (was_empty)
        loop_want_write(s->wsi);
}

/* Queues a frame the caller built and owns one reference to. */
static void send_owned(struct session *s, struct msg *m)
{
    if (!m) {
        log_error("session %s: out of memory encoding a reply", s->id);
        return;
    }
    send_msg(s, m);
    msg_unref(m);
}

static void send_error(struct session *s, int has_id, int64_t id,
                       const char *code, const char *message)
{
    send_owned(s, proto_encode_error(has_id, id, code, message));
}

static void hub_deliver(struct hub_client *c, struct msg *m)
{
    send_msg(of_client(c), m);
}

static void hub_subscribe_done(struct hub_client *c, int has_id, int64_t id,
                               const char *code)
{
    struct session *s = of_client(c);
    if (!code)
        send_owned(s, proto_encode_ack(has_id, id));
    else
        send_error(s, has_id, id, code, "the broker is unavailable, try again");
}

const struct hub_callbacks sess_hub_callbacks = {
    .deliver = hub_deliver,
    .subscribe_done = hub_subscribe_done,
};

static void on_published(void *arg, int ok)
{
    struct pub_wait *w = arg;
    struct session *s = w->s;
    if (ok) {
        s->app->metrics.published_total++;
        send_owned(s, proto_encode_ack(w->has_id, w->id));
    } else {
        send_error(s, w->has_id, w->id, "broker_unavailable",
                   "the broker did not accept the message, try again");
    }
    free(w);
    release(s);
}

/* With --auth, a channel needs a grant: the token's, or the anonymous
 * list for a client without one. */
static int granted(const struct session *s, const struct proto_req *req, int publish)
{
    const struct app *app = s->app;
    if (!app->auth)
        return 1;
    const struct auth_grants *g = !s->claims ? &app->anonymous
                                  : publish  ? &s->claims->publish
                                             : &s->claims->subscribe;
    return auth_grants_allow(g, req->channel, req->channel_len);
}

static void send_forbidden(struct session *s, const struct proto_req *req)
{
    send_error(s, req->has_id, req->id, "forbidden", "no grant for this channel");
}

static void do_publish(struct session *s, struct proto_req *req)
{
    if (!granted(s, req, 1)) {
        send_forbidden(s, req);
        return;
    }
    const struct config *cfg = &s->app->cfg;
    if (!bucket_take(&s->publishes, cfg->publish_rate, cfg->publish_burst, clock_us())) {
        /* A client that ignores a whole burst of refusals is cut off. */
        if (++s->strikes > cfg->publish_burst) {
            cut_off(s, DISC_RATE_LIMITED);
            return;
        }
        send_error(s, req->has_id, req->id, "rate_limited",
                   "publishing too fast, slow down");
        return;
    }
    s->strikes = 0;
    struct pub_wait *w = malloc(sizeof *w);
    if (!w) {
        send_error(s, req->has_id, req->id, "internal", "out of memory");
        return;
    }
    *w = (struct pub_wait){.s = s, .id = req->id, .has_id = req->has_id};
    s->refs++;
    if (broker_publish(s->app->broker, req->channel, req->channel_len,
                       req->data, req->data_len, on_published, w) < 0) {
        free(w);
        s->refs--;
        send_error(s, req->has_id, req->id, "broker_unavailable",
                   "the broker is unavailable, try again");
    }
}

static void do_subscribe(struct session *s, struct proto_req *req)
{
    if (!granted(s, req, 0)) {
        send_forbidden(s, req);
        return;
    }
    if (s->hc.nsubs >= s->app->cfg.max_channels) {
        send_error(s, req->has_id, req->id, "too_many_channels",
                   "subscription limit of this connection reached");
        return;
    }
    int rc = hub_subscribe(s->app->hub, &s->hc, req->channel, req->channel_len,
                           req->has_id, req->id);
    if (rc == HUB_EALREADY)
        send_error(s, req->has_id, req->id, "already_subscribed",
                   "already subscribed to this channel");
    else if (rc == HUB_EUNAVAILABLE)
        send_error(s, req->has_id, req->id, "broker_unavailable",
                   "the broker is unavailable, try again");
    else if (rc < 0)
        send_error(s, req->has_id, req->id, "internal", "out of memory");
}

static void handle_frame(struct session *s, const char *buf, size_t len)
{
    struct proto_req req;
    struct proto_error err;
    if (s->closing) /* shutting down or cut off: no new work */
        return;
    if (proto_parse_request(buf, len, &req, &err) < 0) {
        send_error(s, err.has_id, err.id, err.code, err.message);
        return;
    }
    switch (req.op) {
    case OP_PING:
        send_owned(s, proto_encode_pong(req.has_id, req.id));
        break;
    case OP_SUBSCRIBE:
        do_subscribe(s, &req);
        break;
    case OP_UNSUBSCRIBE:
        if (hub_unsubscribe(s->app->hub, &s->hc, req.channel, req.channel_len) == 0)
            send_owned(s, proto_encode_ack(req.has_id, req.id));
        else
            send_error(s, req.has_id, req.id, "not_subscribed",
                       "not subscribed to this channel");
        break;
    case OP_PUBLISH:
        do_publish(s, &req);
        break;
    }
}

static void handle_message(struct session *s, const char *buf, size_t len)
{
    if (lws_frame_is_binary(s->wsi))
        send_error(s, 0, 0, "bad_request", "binary frames are not supported");
    else
        handle_frame(s, buf, len);
}

int sess_receive(struct session *s, const void *in, size_t len)
{
    struct lws *wsi = s->wsi;
    size_t max = s->app->cfg.max_message_size;
    size_t still = lws_remaining_packet_payload(wsi);
    if (s->rx_len + len + still > max) {
        log_info("session %s: inbound message over %zu bytes, closing", s->id, max);
        s->closing = 1;
        s->why = DISC_TOO_LARGE;
        lws_close_reason(wsi, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE,
                         (unsigned char *)closes[DISC_TOO_LARGE].text,
                         strlen(closes[DISC_TOO_LARGE].text));
        return -1;
    }
    int final = lws_is_final_fragment(wsi);
    if (final && s->rx_len == 0) { /* whole message in one piece: no copy */
        handle_message(s, in, len);
        return 0;
    }
    if (s->rx_len + len > s->rx_cap) {
        size_t cap = s->rx_cap ? s->rx_cap : 4096;
        while (cap < s->rx_len + len)
            cap *= 2;
        char *rx = realloc(s->rx, cap);
        if (!rx) {
            log_error("session %s: out of memory reassembling a message", s->id);
            return -1;
        }
        s->rx = rx;
        s->rx_cap = cap;
    }
    memcpy(s->rx + s->rx_len, in, len);
    s->rx_len += len;
    if (final) {
        handle_message(s, s->rx, s->rx_len);
        s->rx_len = 0;
        if (s->rx_cap > 65536) { /* do not keep a big buffer per idle client */
            free(s->rx);
            s->rx = NULL;
            s->rx_cap = 0;
        }
    }
    return 0;
}

/* Accounts for the oldest queued frame, written, and drops it. */
static void written(struct session *s, uint64_t now)
{
    struct msg *m = msgq_peek(&s->q);
    struct metrics *mt = &s->app->metrics;
    if (m->born_us) {
        mt->delivered_total++;
        if (m->refs == 1) /* the last subscriber written: fan-out complete */
            metrics_observe_latency(mt, (double)(now - m->born_us) / 1e6);
    }
    mt->queue_bytes -= m->len;
    msgq_pop(&s->q);
}

/* Joins queued frames with '\n' into the app's scratch buffer, up to
 * APP_BATCH_MAX bytes; returns the length (0 if the first alone is larger). */
static size_t gather_batch(struct session *s, uint64_t now)
{
    unsigned char *out = s->app->batch_buf + LWS_PRE;
    size_t n = 0;
    struct msg *m;
    while ((m = msgq_peek(&s->q)) && n + (n > 0) + m->len <= APP_BATCH_MAX) {
        if (n)
            out[n++] = '\n';
        memcpy(out + n, msg_data(m), m->len);
        n += m->len;
        written(s, now);
    }
    return n;
}

int sess_writable(struct session *s)
{
    struct lws *wsi = s->wsi;
    if (!s->q.count) {
        if (!s->closing)
            return 0;
        lws_close_reason(wsi, (enum lws_close_status)closes[s->why].code,
                         (unsigned char *)closes[s->why].text,
                         strlen(closes[s->why].text));
        loop_want_write(wsi); /* lws sends the close frame on the next POLLOUT */
        return -1;
    }
    uint64_t now = clock_us();
    int rc;
    size_t n;
    if (s->batch && s->q.count > 1 && (n = gather_batch(s, now)) > 0) {
        rc = lws_write(wsi, s->app->batch_buf + LWS_PRE, n, LWS_WRITE_TEXT);
    } else {
        struct msg *m = msgq_peek(&s->q);
        n = m->len;
        rc = lws_write(wsi, msg_data(m), n, LWS_WRITE_TEXT);
        written(s, now);
    }
    if (rc < 0)
        return -1;
    s->app->metrics.bytes_sent_total += n;
    if (s->soft_since_us && s->q.bytes <= s->app->cfg.queue_soft_bytes)
        s->soft_since_us = 0;
    if (s->q.count || s->closing)
        loop_want_write(wsi);
    return 0;
}

struct session *sess_open(struct app *app, struct lws *wsi, int batch,
                          struct auth_claims *claims)
{
    struct session *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->app = app;
    s->wsi = wsi;
    s->refs = 1;
    s->batch = (unsigned char)batch;
    s->claims = claims;
    bucket_init(&s->publishes, app->cfg.publish_burst, clock_us());
    snprintf(s->id, sizeof s->id, "%08x%08x", app->session_salt, ++app->session_seq);
    lws_get_peer_simple(wsi, s->peer, sizeof s->peer);
    s->next = app->sessions;
    if (app->sessions)
        app->sessions->prev = s;
    app->sessions = s;
    app->nsessions++;
    app->metrics.connections_total++;
    log_fields(LOG_INFO, "session open", "session", s->id, "remote", s->peer,
               "sub", claims ? claims->sub : NULL, "batch", batch ? "1" : NULL,
               (const char *)NULL);
    send_owned(s, proto_encode_welcome(app->node_id, s->id));
    return s;
}

void sess_close(struct session *s, enum disconnect_reason why)
{
    if (!s->wsi || s->closing)
        return;
    s->closing = 1;
    s->why = why;
    loop_want_write(s->wsi);
}

unsigned sess_close_some(struct app *app, enum disconnect_reason why, unsigned n)
{
    unsigned done = 0;
    for (struct session *s = app->sessions; s && done < n; s = s->next) {
        if (!s->closing) {
            sess_close(s, why);
            done++;
        }
    }
    return done;
}

void sess_sweep(struct app *app)
{
    uint64_t now = clock_us(), soft = (uint64_t)(app->cfg.queue_soft_seconds * 1e6);
    int64_t wall = (int64_t)time(NULL);
    for (struct session *s = app->sessions; s; s = s->next) {
        if (s->soft_since_us && !s->discard && now - s->soft_since_us >= soft)
            cut_off(s, DISC_SLOW_CONSUMER);
        else if (s->claims && auth_claims_expired(app->auth, s->claims, wall))
            sess_close(s, DISC_AUTH);
    }
}

void sess_closed(struct session *s)
{
    struct app *app = s->app;
    enum disconnect_reason why = s->closing ? s->why : DISC_CLIENT;
    app->metrics.disconnects[why]++;
    log_fields(LOG_INFO, "session closed", "session", s->id, "remote", s->peer,
               "sub", s->claims ? s->claims->sub : NULL,
               "reason", metrics_reason_name(why), (const char *)NULL);
    hub_drop_client(app->hub, &s->hc);
    clear_queue(s);
    if (s->prev) s->prev->next = s->next; else app->sessions = s->next;
    if (s->next) s->next->prev = s->prev;
    app->nsessions--;
    s->wsi = NULL;
    release(s);
}
