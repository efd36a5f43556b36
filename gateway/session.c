/* session.c - see session.h. */
#include "session.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/event.h>
#include <libwebsockets.h>

#include "broker.h"
#include "log.h"
#include "loop.h"
#include "msg.h"
#include "proto.h"

#define CLOSE_SLOW_CONSUMER 1008

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
    uint16_t close_code;
    const char *close_reason; /* static string */
    char id[20];
};

/* A publish waiting for the broker's answer. */
struct pub_wait {
    struct session *s;
    int64_t id;
    int has_id;
};

static struct session *of_client(struct hub_client *c)
{
    return (struct session *)((char *)c - offsetof(struct session, hc));
}

static void release(struct session *s)
{
    if (--s->refs)
        return;
    free(s->rx);
    free(s);
}

/* The kernel would otherwise keep a stuck client's unsent megabytes for
 * minutes in FIN-WAIT: reset instead of a graceful close. */
static void reset_on_close(struct session *s)
{
    struct linger lg = {1, 0};
    setsockopt(lws_get_socket_fd(s->wsi), SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
}

/* Queues m (borrowed). A queue over its bound closes the client. */
static void send_msg(struct session *s, struct msg *m)
{
    if (!s->wsi || s->closing == 2)
        return;
    int was_empty = s->q.count == 0;
    int rc = msgq_push(&s->q, m, s->app->cfg.max_queue_bytes);
    if (rc == -1) {
        log_warn("session %s: send queue over %zu bytes, closing slow consumer",
                 s->id, s->app->cfg.max_queue_bytes);
        msgq_clear(&s->q);
        reset_on_close(s);
        sess_close(s, CLOSE_SLOW_CONSUMER, "slow consumer");
        s->closing = 2; /* nothing more is queued */
        return;
    }
    if (rc < 0) {
        log_error("session %s: out of memory queueing a frame", s->id);
        sess_close(s, LWS_CLOSE_STATUS_UNEXPECTED_CONDITION, "out of memory");
        return;
    }
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
    if (ok)
        send_owned(s, proto_encode_ack(w->has_id, w->id));
    else
        send_error(s, w->has_id, w->id, "broker_unavailable",
                   "the broker did not accept the message, try again");
    free(w);
    release(s);
}

static void do_publish(struct session *s, struct proto_req *req)
{
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
    int rc;
    switch (req.op) {
    case OP_PING:
        send_owned(s, proto_encode_pong(req.has_id, req.id));
        break;
    case OP_SUBSCRIBE:
        rc = hub_subscribe(s->app->hub, &s->hc, req.channel, req.channel_len,
                           req.has_id, req.id);
        if (rc == HUB_EALREADY)
            send_error(s, req.has_id, req.id, "already_subscribed",
                       "already subscribed to this channel");
        else if (rc == HUB_EUNAVAILABLE)
            send_error(s, req.has_id, req.id, "broker_unavailable",
                       "the broker is unavailable, try again");
        else if (rc < 0)
            send_error(s, req.has_id, req.id, "internal", "out of memory");
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

int sess_receive(struct session *s, const void *in, size_t len)
{
    struct lws *wsi = s->wsi;
    size_t max = s->app->cfg.max_message_size;
    size_t still = lws_remaining_packet_payload(wsi);
    if (s->rx_len + len + still > max) {
        const char why[] = "message too large";
        log_info("session %s: inbound message over %zu bytes, closing", s->id, max);
        lws_close_reason(wsi, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE,
                         (unsigned char *)why, sizeof why - 1);
        return -1;
    }
    int final = lws_is_final_fragment(wsi);
    if (final && s->rx_len == 0) { /* whole message in one piece: no copy */
        if (lws_frame_is_binary(wsi))
            send_error(s, 0, 0, "bad_request", "binary frames are not supported");
        else
            handle_frame(s, in, len);
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
        if (lws_frame_is_binary(wsi))
            send_error(s, 0, 0, "bad_request", "binary frames are not supported");
        else
            handle_frame(s, s->rx, s->rx_len);
        s->rx_len = 0;
        if (s->rx_cap > 65536) { /* do not keep a big buffer per idle client */
            free(s->rx);
            s->rx = NULL;
            s->rx_cap = 0;
        }
    }
    return 0;
}

/* Joins queued frames with '\n' into the app's scratch buffer, up to
 * APP_BATCH_MAX bytes; returns the length (0 if the first alone is larger). */
static size_t gather_batch(struct session *s)
{
    unsigned char *out = s->app->batch_buf + LWS_PRE;
    size_t n = 0;
    struct msg *m;
    while ((m = msgq_peek(&s->q)) && n + (n > 0) + m->len <= APP_BATCH_MAX) {
        if (n)
            out[n++] = '\n';
        memcpy(out + n, msg_data(m), m->len);
        n += m->len;
        msgq_pop(&s->q);
    }
    return n;
}

int sess_writable(struct session *s)
{
    struct lws *wsi = s->wsi;
    if (!s->q.count) {
        if (!s->closing)
            return 0;
        lws_close_reason(wsi, (enum lws_close_status)s->close_code,
                         (unsigned char *)s->close_reason, strlen(s->close_reason));
        loop_want_write(wsi); /* lws sends the close frame on the next POLLOUT */
        return -1;
    }
    int rc;
    size_t n;
    if (s->batch && s->q.count > 1 && (n = gather_batch(s)) > 0) {
        rc = lws_write(wsi, s->app->batch_buf + LWS_PRE, n, LWS_WRITE_TEXT);
    } else {
        struct msg *m = msgq_peek(&s->q);
        rc = lws_write(wsi, msg_data(m), m->len, LWS_WRITE_TEXT);
        msgq_pop(&s->q);
    }
    if (rc < 0)
        return -1;
    if (s->q.count || s->closing)
        loop_want_write(wsi);
    return 0;
}

struct session *sess_open(struct app *app, struct lws *wsi, int batch)
{
    struct session *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->app = app;
    s->wsi = wsi;
    s->refs = 1;
    s->batch = (unsigned char)batch;
    snprintf(s->id, sizeof s->id, "%08x%08x", app->session_salt, ++app->session_seq);
    s->next = app->sessions;
    if (app->sessions)
        app->sessions->prev = s;
    app->sessions = s;
    app->nsessions++;

    char peer[64] = "?";
    lws_get_peer_simple(wsi, peer, sizeof peer);
    log_info("session %s open from %s%s", s->id, peer, batch ? " (batch)" : "");
    send_owned(s, proto_encode_welcome(app->node_id, s->id));
    return s;
}

void sess_close(struct session *s, uint16_t code, const char *reason)
{
    if (!s->wsi || s->closing)
        return;
    s->closing = 1;
    s->close_code = code;
    s->close_reason = reason;
    loop_want_write(s->wsi);
}

void sess_close_all(struct app *app, uint16_t code, const char *reason)
{
    for (struct session *s = app->sessions; s; s = s->next)
        sess_close(s, code, reason);
}

void sess_closed(struct session *s)
{
    struct app *app = s->app;
    log_info("session %s closed%s%s", s->id, s->closing ? ": " : "",
             s->closing ? s->close_reason : "");
    hub_drop_client(app->hub, &s->hc);
    msgq_clear(&s->q);
    if (s->prev) s->prev->next = s->next; else app->sessions = s->next;
    if (s->next) s->next->prev = s->prev;
    app->nsessions--;
    s->wsi = NULL;
    release(s);
    if (app->draining && app->nsessions == 0)
        event_base_loopbreak(app->base);
}
