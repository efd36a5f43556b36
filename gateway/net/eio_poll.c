/* eio_poll.c - see eio_poll.h. */
#include "net/eio_poll.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "net/http_api.h"
#include "net/loop.h"
#include "proto/eio.h"
#include "proto/sio_codec.h"

#define EIO_BUCKETS 4096 /* sessions hashed by sid */

/* Every polling session of the process, hashed by sid, so a request finds
 * its session in one short chain however many there are. */
struct eio_registry {
    struct eio_session *bucket[EIO_BUCKETS];
};

struct eio_session {
    struct app *app;
    char sid[EIO_SID_MAX + 1];   /* its client's id, kept for the hash */
    struct client *client;       /* NULL once gone or handed over */
    struct lws *get;             /* the held GET, or NULL */
    struct http_state *get_st;
    struct http_state *post_st;  /* the POST being read, or NULL */
    struct eio_session **probe;  /* the probing WebSocket's pointer, or NULL */
    int get_rc;                  /* the held GET's answer: callback result */
    unsigned char probing;       /* "2probe" seen: answer GETs with noop */
    unsigned char over;          /* ended: freed by the next sweep */
    unsigned char close_waits;   /* sweeps that found it closing with no GET */
    struct eio_session *next, *prev;
};

/* ---- struct conn over a session ----------------------------------------- */

static struct eio_session *of_conn(struct conn *c) { return (struct eio_session *)c; }

/* Answers the held GET with body; it is no longer held. */
static void answer(struct eio_session *s, const void *body, size_t len)
{
    struct lws *wsi = s->get;
    s->get_st->eio = NULL;
    s->get = NULL;
    s->get_st = NULL;
    s->get_rc = http_send(wsi, 200, "text/plain; charset=UTF-8", body, len, 0);
}

static int conn_write(struct conn *c, unsigned char *buf, size_t len)
{
    answer(of_conn(c), buf, len);
    return 0;
}

static int conn_write_frames(struct conn *c, struct msg *const *m, size_t n)
{
    static unsigned char out[CONN_FRAMES_BYTES + CONN_FRAMES_MAX];
    answer(of_conn(c), out, eio_payload_join(out, m, n));
    return 0;
}

static void conn_want_write(struct conn *c)
{
    struct eio_session *s = of_conn(c);
    if (s->get) /* else the next GET asks */
        loop_want_write(s->get);
}

/* The close packet goes out when client_writable() returns -1. */
static void conn_close(struct conn *c, uint16_t code, const char *reason)
{
    (void)c, (void)code, (void)reason;
}

/* The peer is gone or must go now: the session ends; a held GET gets the
 * close packet. */
static void conn_abort(struct conn *c)
{
    struct eio_session *s = of_conn(c);
    s->over = 1;
    if (s->get)
        loop_want_write(s->get);
}

/* No .ping: the Socket.IO codec pings itself (codec->ping). */
static const struct conn_ops poll_ops = {
    .write = conn_write,
    .write_frames = conn_write_frames,
    .want_write = conn_want_write,
    .close = conn_close,
    .abort = conn_abort,
};

/* ---- sessions ----------------------------------------------------------- */

/* FNV-1a */
static struct eio_session **bucket_of(struct eio_registry *r, const char *sid)
{
    uint32_t h = 2166136261u;
    for (; *sid; sid++)
        h = (h ^ (unsigned char)*sid) * 16777619u;
    return &r->bucket[h % EIO_BUCKETS];
}

static struct eio_session *find(struct app *app, const char *sid)
{
    if (!app->eio)
        return NULL;
    for (struct eio_session *s = *bucket_of(app->eio, sid); s; s = s->next)
        if (s->client && !s->over && !strcmp(s->sid, sid))
            return s;
    return NULL;
}

static void end(struct eio_session *s)
{
    if (s->client) {
        client_gone(s->client);
        s->client = NULL;
    }
    s->over = 1;
}

static void session_free(struct eio_session *s)
{
    struct app *app = s->app;
    end(s);
    if (s->get_st)
        s->get_st->eio = NULL;
    if (s->post_st)
        s->post_st->eio = NULL;
    if (s->get) /* an answer is owed: drop the connection */
        lws_set_timeout(s->get, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
    if (s->probe)
        *s->probe = NULL;
    if (s->prev) s->prev->next = s->next; else *bucket_of(app->eio, s->sid) = s->next;
    if (s->next) s->next->prev = s->prev;
    free(s);
}

static struct eio_session *session_new(struct app *app, struct lws *wsi)
{
    if (!app->eio && !(app->eio = calloc(1, sizeof *app->eio)))
        return NULL;
    struct eio_session *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    char peer[48] = "";
    lws_get_peer_simple(wsi, peer, sizeof peer);
    s->app = app;
    struct client_opts o = {.codec = &codec_sio, .conn = (struct conn *)s, .ops = &poll_ops,
                            .peer = peer, .transport = "polling"};
    if (!(s->client = client_open(app, &o))) {
        free(s);
        return NULL;
    }
    snprintf(s->sid, sizeof s->sid, "%s", client_id(s->client));
    struct eio_session **head = bucket_of(app->eio, s->sid);
    s->next = *head;
    if (s->next)
        s->next->prev = s;
    *head = s;
    return s;
}

/* ---- requests ----------------------------------------------------------- */

static int bad(struct lws *wsi, const char *code, const char *message)
{
    log_info("engine.io polling request refused: %s", message);
    return http_send_error(wsi, 400, code, message, 0);
}

static int hold_get(struct eio_session *s, struct lws *wsi, struct http_state *st)
{
    if (s->get)
        return bad(wsi, "concurrent_poll", "a GET is already pending for this session");
    s->get = wsi;
    s->get_st = st;
    st->eio = s;
    st->eio_post = 0;
    loop_want_write(wsi); /* answers now if anything is queued */
    return 0;
}

int eio_poll_request(struct app *app, struct lws *wsi, struct http_state *st, int method)
{
    char v[40];
    const char *eio = lws_get_urlarg_by_name(wsi, "EIO=", v, sizeof v);
    if (!eio || strcmp(eio, "4"))
        return bad(wsi, "unsupported_protocol", "only Engine.IO v4 (EIO=4) is served");
    const char *t = lws_get_urlarg_by_name(wsi, "transport=", v, sizeof v);
    if (!t || strcmp(t, "polling"))
        return bad(wsi, "bad_transport", "HTTP requests need transport=polling");
    if (!http_origin_allowed(app, wsi)) {
        metrics_count_refusal(app->metrics, "origin_not_allowed");
        return http_send_error(wsi, 403, "origin_not_allowed", "this origin may not connect", 0);
    }
    const char *sid = lws_get_urlarg_by_name(wsi, "sid=", v, sizeof v);
    if (!sid) {
        if (method != LWSHUMETH_GET)
            return bad(wsi, "bad_handshake", "a session opens with a GET");
        if (app->draining || app->nclients >= app->cfg.max_connections) {
            const char *code = app->draining ? "draining" : "connection_limit";
            metrics_count_refusal(app->metrics, code);
            return http_send_error(wsi, 503, code,
                                   app->draining ? "this node is draining"
                                                 : "connection limit reached", 0);
        }
        struct eio_session *s = session_new(app, wsi);
        if (!s)
            return http_send_error(wsi, 500, "internal", "out of memory", 1);
        return hold_get(s, wsi, st);
    }
    struct eio_session *s = find(app, sid);
    if (!s)
        return bad(wsi, "unknown_sid", "Session ID unknown");
    if (method == LWSHUMETH_GET)
        return hold_get(s, wsi, st);
    if (method != LWSHUMETH_POST)
        return http_send_error(wsi, 405, "method_not_allowed", "use GET or POST", 0);
    if (s->post_st)
        return bad(wsi, "concurrent_post", "a POST is already pending for this session");
    s->post_st = st;
    st->eio = s;
    st->eio_post = 1;
    return 0; /* the body arrives through HTTP_BODY */
}

int eio_poll_body_done(struct lws *wsi, struct http_state *st)
{
    struct eio_session *s = st->eio;
    const char *cur = st->body ? st->body : "", *end = cur + st->body_len, *pkt;
    size_t len;
    s->post_st = NULL;
    st->eio = NULL;
    while (s->client && eio_payload_next(&cur, end, &pkt, &len) == 0)
        client_receive(s->client, pkt, len, 0);
    return http_send(wsi, 200, "text/html", "ok", 2, 0);
}

int eio_poll_writable(struct lws *wsi, struct http_state *st)
{
    static const char noop = '0' + EIO_NOOP, close_pkt = '0' + EIO_CLOSE;
    struct eio_session *s = st->eio;
    lws_set_timeout(wsi, NO_PENDING_TIMEOUT, 0); /* a held GET waits for data */
    if (s->probing || s->over || !s->client) {
        answer(s, s->probing ? &noop : &close_pkt, 1);
        return s->get_rc;
    }
    if (client_writable(s->client) < 0) { /* closing: the close packet */
        if (s->get)
            answer(s, &close_pkt, 1);
        end(s);
    }
    return s->get ? 0 : s->get_rc;
}

void eio_poll_http_gone(struct http_state *st)
{
    struct eio_session *s = st->eio;
    if (!s)
        return;
    if (st->eio_post) {
        s->post_st = NULL;
    } else {
        s->get = NULL;
        s->get_st = NULL;
    }
    st->eio = NULL;
}

/* ---- the upgrade -------------------------------------------------------- */

struct eio_session *eio_poll_probe_begin(struct app *app, const char *sid,
                                         struct eio_session **ref)
{
    struct eio_session *s = find(app, sid);
    if (!s || s->probe)
        return NULL;
    s->probe = ref;
    return s;
}

void eio_poll_probing(struct eio_session *s)
{
    s->probing = 1;
    if (s->get)
        loop_want_write(s->get);
}

void eio_poll_probe_end(struct eio_session *s)
{
    s->probe = NULL;
    s->probing = 0;
}

struct client *eio_poll_hand_over(struct eio_session *s)
{
    struct client *c = s->client;
    s->client = NULL;
    s->over = 1;
    s->probe = NULL;
    if (s->get) /* the client waits for it before upgrading */
        loop_want_write(s->get);
    return c;
}

/* ---- sweep -------------------------------------------------------------- */

void eio_poll_sweep(struct app *app)
{
    for (size_t i = 0; app->eio && i < EIO_BUCKETS; i++) {
        struct eio_session *next;
        for (struct eio_session *s = app->eio->bucket[i]; s; s = next) {
            next = s->next;
            /* Closing, but no GET came for a second to take the close
             * packet: the client has left (it sent "1") or is not polling;
             * its next request, if any, gets 400 and it reconnects. */
            if (!s->over && s->client && client_closing(s->client) && !s->get &&
                s->close_waits++)
                end(s);
            if (s->over && !s->get)
                session_free(s);
        }
    }
}

void eio_poll_free_all(struct app *app)
{
    for (size_t i = 0; app->eio && i < EIO_BUCKETS; i++)
        while (app->eio->bucket[i])
            session_free(app->eio->bucket[i]);
    free(app->eio);
    app->eio = NULL;
}
