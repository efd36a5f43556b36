/* ws.c - see ws.h. */
#include "net/ws.h"

#include <math.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "core/app.h"
#include "core/client.h"
#include "core/conn.h"
#include "core/msg.h"
#include "log.h"
#include "net/eio_poll.h"
#include "net/frames.h"
#include "net/http_api.h"
#include "net/loop.h"
#include "proto/eio.h"
#include "proto/sio_codec.h"
#include "proto/v1.h"
#include "proto/v1_codec.h"

_Static_assert(FRAMES_HEADER_MAX <= MSG_HEADROOM, "struct msg headroom cannot hold a frame header");

/* A probing WebSocket has no client (it is not counted nor swept): it must
 * finish the upgrade ("2probe", then "5") in the time a Socket.IO client
 * gets to answer a ping (--ping-timeout: the same kind of round trip), at
 * most Engine.IO's own upgradeTimeout of 10 s and at least 1 s (lws counts
 * whole seconds), or be closed; polling goes on. */
#define PROBE_TIMEOUT_MAX_S 10

static int probe_timeout_s(const struct app *app)
{
    double t = ceil(app->cfg.ping_timeout);
    return t < 1 ? 1 : t > PROBE_TIMEOUT_MAX_S ? PROBE_TIMEOUT_MAX_S : (int)t;
}

/* The upgrade paths, each with the codec that speaks on it. Engine.IO
 * routes check their query (EIO=4, transport, sid) and take the connect
 * token in the Socket.IO CONNECT rather than in ?token=. */
static const struct route {
    const char *path;
    const struct codec *codec;
    int engineio;
} routes[] = {
    {"/ws", &codec_v1, 0},
    {"/socket.io/", &codec_sio, 1},
};

/* lws per-session data: zeroed by lws, freed after LWS_CALLBACK_WSI_DESTROY. */
struct pss {
    struct client *client;
    const struct route *route;  /* from the upgrade on */
    struct eio_session *eio;    /* the polling session this one probes */
    struct http_state http;
    struct auth_claims *claims; /* from the upgrade until the client takes them */
    unsigned char probe_due;    /* "3probe" owed */
    unsigned char batch;
    unsigned char ping_due;     /* the client asked for a ping */
    unsigned char closing;      /* the close is lws's: writable does nothing */
    char *rx;                   /* reassembly of a fragmented inbound message */
    size_t rx_len, rx_cap;
};

/* ---- struct conn over lws: a conn is its wsi ---------------------------- */

static struct lws *wsi_of(struct conn *c) { return (struct lws *)c; }

/* Frames are ours, not lws's (lws frames one message per lws_write()), and
 * go out as raw bytes: see loop_send(). The header goes into the msg's
 * headroom, as lws would put it. */
static int conn_write(struct conn *c, unsigned char *buf, size_t len)
{
    size_t h = frames_header(buf, len);
    return loop_send(wsi_of(c), buf - h, h + len);
}

static int conn_write_frames(struct conn *c, struct msg *const *m, size_t n)
{
    static unsigned char out[FRAMES_JOIN_MAX];
    size_t len = frames_join(out, m, n);
    return loop_send(wsi_of(c), out, len);
}

static int write_ping(struct lws *wsi, struct pss *pss);

/* Frames or a ping for an idle client are written without a writable
 * callback (loop_write_soon); a close under way or a write already pending
 * take the callback's path, which keeps their order. */
static int write_soon(struct lws *wsi)
{
    struct pss *pss = lws_wsi_user(wsi);
    if (!pss->client || pss->closing || client_closing(pss->client)) {
        loop_want_write(wsi);
        return 0;
    }
    if ((pss->ping_due ? write_ping(wsi, pss) : client_writable(pss->client)) == 0)
        return 0;
    pss->closing = 1; /* the write failed: lws closes, writable does nothing */
    return -1;
}

static void conn_want_write(struct conn *c)
{
    struct lws *wsi = wsi_of(c);
    struct pss *pss = lws_wsi_user(wsi);
    if (pss->client && !pss->closing && !client_closing(pss->client) &&
        loop_write_soon(wsi, write_soon))
        return;
    loop_want_write(wsi);
}

/* The close frame goes out on the next POLLOUT; lws then awaits the peer's
 * close (discarding what else arrives) and the loop lingers after it. */
static void conn_close(struct conn *c, uint16_t code, const char *reason)
{
    lws_close_reason(wsi_of(c), (enum lws_close_status)code,
                     (unsigned char *)reason, strlen(reason));
    loop_want_write(wsi_of(c));
}

static void conn_abort(struct conn *c)
{
    loop_abort(wsi_of(c));
}

/* The ping owed, ahead of the queue, which follows in the next writable
 * round. A frame of our own, like the data frames (loop_send()); lws 4.1
 * does not report a pong without payload, so the ping has one (the peer
 * echoes it). */
static int write_ping(struct lws *wsi, struct pss *pss)
{
    static const unsigned char frame[] = {0x89, 1, 'k'};
    pss->ping_due = 0;
    if (loop_send(wsi, (unsigned char *)frame, sizeof frame) < 0)
        return -1;
    if (client_owes_write(pss->client))
        loop_want_write(wsi);
    return 0;
}

/* An idle connection (the usual one to ping) gets its ping like a message
 * (loop_write_soon): the pings due at one sweep leave together, with no
 * writable rounds. Otherwise the ping leaves at the next writable callback. */
static void conn_ping(struct conn *c)
{
    struct lws *wsi = wsi_of(c);
    struct pss *pss = lws_wsi_user(wsi);
    pss->ping_due = 1;
    if (pss->closing || !loop_write_soon(wsi, write_soon))
        loop_want_write(wsi);
}

static const struct conn_ops lws_conn_ops = {
    .write = conn_write,
    .write_frames = conn_write_frames,
    .want_write = conn_want_write,
    .close = conn_close,
    .abort = conn_abort,
    .ping = conn_ping,
};

/* A probing WebSocket (no client yet) answers "2probe" with "3probe". */
static int probe_writable(struct lws *wsi, struct pss *pss)
{
    unsigned char frame[LWS_PRE + 6];
    if (!pss->eio || !pss->probe_due)
        return pss->eio ? 0 : -1;
    pss->probe_due = 0;
    memcpy(frame + LWS_PRE, "3probe", 6);
    return lws_write(wsi, frame + LWS_PRE, 6, LWS_WRITE_TEXT) < 0 ? -1 : 0;
}

/* What a probing WebSocket may send: "2probe", then "5" when the client
 * moves over. Returns -1 to close. */
static int probe_receive(struct lws *wsi, struct pss *pss, const char *in, size_t len)
{
    if (len == 6 && !memcmp(in, "2probe", 6)) {
        eio_poll_probing(pss->eio);
        pss->probe_due = 1;
        loop_want_write(wsi);
        return 0;
    }
    if (eio_type(in, len) != EIO_UPGRADE) {
        log_info("engine.io upgrade: unexpected packet during the probe");
        return -1;
    }
    struct eio_session *s = pss->eio;
    pss->eio = NULL;
    if (!(pss->client = eio_poll_hand_over(s)))
        return -1;
    lws_set_timeout(wsi, NO_PENDING_TIMEOUT, 0);
    client_rebind(pss->client, (struct conn *)wsi, &lws_conn_ops);
    return 0;
}

static int writable(struct lws *wsi, struct pss *pss)
{
    if (!pss->client)
        return probe_writable(wsi, pss);
    return pss->ping_due ? write_ping(wsi, pss) : client_writable(pss->client);
}

/* ---- upgrade ----------------------------------------------------------- */

/* Answers a refused upgrade itself: lws_return_http_status() would say
 * "HTTP/1.0" here (the request version is not parsed yet on this path),
 * which WebSocket clients reject as invalid. Returns -1 to close. */
static int reject(struct lws *wsi, unsigned status, const char *code)
{
    static const struct { unsigned status; const char *text; } texts[] = {
        {400, "Bad Request"}, {401, "Unauthorized"}, {403, "Forbidden"}, {404, "Not Found"},
        {503, "Service Unavailable"},
    };
    const char *text = "Error";
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++)
        if (texts[i].status == status)
            text = texts[i].text;
    struct msg *body = v1_encode_http_error(code, text);
    unsigned char buf[LWS_PRE + 512];
    char *p = (char *)buf + LWS_PRE;
    int n = body ? snprintf(p, sizeof buf - LWS_PRE,
                            "HTTP/1.1 %u %s\r\ncontent-type: application/json\r\n"
                            "content-length: %u\r\nconnection: close\r\n\r\n%.*s",
                            status, text, (unsigned)body->len, (int)body->len,
                            (const char *)msg_data(body))
                 : -1;
    msg_unref(body);
    if (n > 0 && (size_t)n < sizeof buf - LWS_PRE)
        lws_write(wsi, (unsigned char *)p, (size_t)n, LWS_WRITE_RAW);
    return -1;
}

static int refuse(struct app *app, struct lws *wsi, unsigned status,
                  const char *code)
{
    metrics_count_refusal(app->metrics, code);
    log_info("upgrade refused with %u: %s", status, code);
    return reject(wsi, status, code);
}

/* Verifies ?token= into *claims; a client without one is anonymous unless
 * --auth required. A bad token is refused in either mode: it is a client
 * error worth seeing. Returns 0, or 401 with *code set. */
static unsigned authenticate(struct app *app, struct lws *wsi,
                             struct auth_claims **claims, const char **code)
{
    char buf[AUTH_TOKEN_MAX + 16];
    const char *tok = lws_get_urlarg_by_name(wsi, "token=", buf, sizeof buf);
    if (!tok || !*tok) {
        *code = "token_missing";
        return app->cfg.auth_mode == AUTH_MODE_REQUIRED ? HTTP_STATUS_UNAUTHORIZED : 0;
    }
    struct auth_error err;
    if (auth_verify(app->auth, tok, strlen(tok), (int64_t)time(NULL), claims, &err) < 0) {
        *code = err.code;
        return HTTP_STATUS_UNAUTHORIZED;
    }
    return 0;
}

static const struct route *route_of(struct lws *wsi)
{
    char uri[64];
    if (lws_hdr_copy(wsi, uri, sizeof uri, WSI_TOKEN_GET_URI) <= 0)
        return NULL;
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++)
        if (!strcmp(uri, routes[i].path))
            return &routes[i];
    return NULL;
}

/* ?EIO=4&transport=websocket[&sid=S]: with a sid, this WebSocket probes
 * to take over that polling session. Returns 0 or -1 (refused). */
static int engineio_filter(struct app *app, struct lws *wsi, struct pss *pss)
{
    char v[40];
    const char *eio = lws_get_urlarg_by_name(wsi, "EIO=", v, sizeof v);
    if (!eio || strcmp(eio, "4"))
        return refuse(app, wsi, HTTP_STATUS_BAD_REQUEST, "unsupported_protocol");
    const char *t = lws_get_urlarg_by_name(wsi, "transport=", v, sizeof v);
    if (!t || strcmp(t, "websocket"))
        return refuse(app, wsi, HTTP_STATUS_BAD_REQUEST, "bad_transport");
    const char *sid = lws_get_urlarg_by_name(wsi, "sid=", v, sizeof v);
    if (sid && !(pss->eio = eio_poll_probe_begin(app, sid, &pss->eio)))
        return refuse(app, wsi, HTTP_STATUS_BAD_REQUEST, "unknown_sid");
    return 0;
}

/* Why an upgrade of this request would be refused: 0 when it would be
 * accepted (on a route, from an allowed origin, while not draining, under
 * the connection limit, with a token if one is needed), else the HTTP status
 * with *code set. Verified claims land in *claims. Socket.IO clients bring
 * their token in CONNECT, not in the URL: their route skips it here. */
static unsigned verdict(struct app *app, struct lws *wsi, const struct route **route,
                        struct auth_claims **claims, const char **code)
{
    if (!(*route = route_of(wsi))) {
        *code = "not_found";
        return HTTP_STATUS_NOT_FOUND;
    }
    if (!http_origin_allowed(app, wsi)) {
        *code = "origin_not_allowed";
        return HTTP_STATUS_FORBIDDEN;
    }
    if (app->draining) {
        *code = "draining";
        return HTTP_STATUS_SERVICE_UNAVAILABLE;
    }
    if (app->nclients >= app->cfg.max_connections) {
        *code = "connection_limit";
        return HTTP_STATUS_SERVICE_UNAVAILABLE;
    }
    return app->auth && !(*route)->engineio ? authenticate(app, wsi, claims, code) : 0;
}

static int filter(struct app *app, struct lws *wsi, struct pss *pss)
{
    char arg[8];
    const char *code;
    unsigned status = verdict(app, wsi, &pss->route, &pss->claims, &code);
    if (status == HTTP_STATUS_NOT_FOUND)
        return reject(wsi, status, code);
    if (status)
        return refuse(app, wsi, status, code);
    if (pss->route->engineio)
        return engineio_filter(app, wsi, pss);
    const char *v = lws_get_urlarg_by_name(wsi, "batch=", arg, sizeof arg);
    pss->batch = v && !strcmp(v, "1");
    return 0;
}

unsigned ws_probe(struct app *app, struct lws *wsi, const char **code)
{
    const struct route *route;
    struct auth_claims *claims = NULL;
    unsigned status = verdict(app, wsi, &route, &claims, code);
    auth_claims_free(claims);
    if (status == HTTP_STATUS_NOT_FOUND)
        return 0;
    if (!status)
        *code = "upgrade_required";
    return status ? status : 426;
}

static int established(struct app *app, struct lws *wsi, struct pss *pss)
{
    if (pss->eio) { /* a probe: the client comes with "5", within a bound */
        lws_set_timeout(wsi, PENDING_TIMEOUT_USER_OK, probe_timeout_s(app));
        return 0;
    }
    char peer[48] = "";
    lws_get_peer_simple(wsi, peer, sizeof peer);
    struct client_opts o = {.codec = pss->route->codec, .conn = (struct conn *)wsi,
                            .ops = &lws_conn_ops, .peer = peer,
                            .batch = pss->batch, .claims = pss->claims};
    if (!(pss->client = client_open(app, &o)))
        return -1;
    pss->claims = NULL; /* the client owns them now */
    return 0;
}

/* ---- inbound messages: lws hands them over in fragments ----------------- */

static void rx_reset(struct pss *pss)
{
    free(pss->rx);
    pss->rx = NULL;
    pss->rx_len = pss->rx_cap = 0;
}

static int receive(struct app *app, struct lws *wsi, struct pss *pss,
                   const void *in, size_t len)
{
    struct client *c = pss->client;
    size_t still = lws_remaining_packet_payload(wsi);
    if (pss->rx_len + len + still > app->cfg.max_message_size) {
        client_too_large(c);
        return -1;
    }
    int final = lws_is_final_fragment(wsi), binary = lws_frame_is_binary(wsi);
    if (final && pss->rx_len == 0) { /* whole message in one piece: no copy */
        client_receive(c, in, len, binary);
        return 0;
    }
    if (pss->rx_len + len > pss->rx_cap) {
        /* Room for the rest of the frame too (its header gave its length):
         * a message in one frame takes one allocation, not a doubling per
         * piece; one sent as many frames doubles. */
        size_t cap = pss->rx_len + len + still;
        if (cap < pss->rx_cap * 2)
            cap = pss->rx_cap * 2;
        char *rx = realloc(pss->rx, cap);
        if (!rx) {
            log_error("out of memory reassembling a message");
            return -1;
        }
        pss->rx = rx;
        pss->rx_cap = cap;
    }
    memcpy(pss->rx + pss->rx_len, in, len);
    pss->rx_len += len;
    if (final) {
        client_receive(c, pss->rx, pss->rx_len, binary);
        pss->rx_len = 0;
        if (pss->rx_cap > 65536) /* do not keep a big buffer per idle client */
            rx_reset(pss);
    }
    return 0;
}

static void end_client(struct pss *pss)
{
    if (!pss)
        return;
    if (pss->eio) /* a probe that failed: polling goes on */
        eio_poll_probe_end(pss->eio);
    pss->eio = NULL;
    if (pss->client) {
        client_gone(pss->client);
        pss->client = NULL;
    }
    rx_reset(pss);
    auth_claims_free(pss->claims); /* an upgrade that never got its client */
    pss->claims = NULL;
}

static int callback(struct lws *wsi, enum lws_callback_reasons reason,
                    void *user, void *in, size_t len)
{
    struct pss *pss = user;
    struct app *app = lws_context_user(lws_get_context(wsi));
    int rc;

    switch (reason) {
    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
        return filter(app, wsi, pss);
    case LWS_CALLBACK_ESTABLISHED:
        return established(app, wsi, pss);
    case LWS_CALLBACK_RECEIVE:
        if (pss->client)
            return receive(app, wsi, pss, in, len);
        return pss->eio ? probe_receive(wsi, pss, in, len) : -1;
    case LWS_CALLBACK_SERVER_WRITEABLE:
        loop_lws_writeable(wsi, 1);
        /* Once the close is handed over, lws sends the close frame and
         * awaits the peer's (dropping its data frames meanwhile); a second
         * -1 would make lws give up on that handshake and cut the TCP
         * connection at once, the close frame maybe still unread. */
        if (pss->closing || writable(wsi, pss) == 0)
            return 0;
        pss->closing = 1;
        /* lws now queues the close frame and asks for POLLOUT itself,
         * which the loop only hears about through its wrapper. */
        loop_want_write(wsi);
        return -1;
    case LWS_CALLBACK_RECEIVE_PONG:
        if (pss->client)
            client_heard(pss->client);
        return 0;
    case LWS_CALLBACK_CLOSED:
        end_client(pss);
        loop_wsi_closed(wsi, 1);
        return 0;
    case LWS_CALLBACK_CLOSED_HTTP:
        loop_wsi_closed(wsi, 0);
        /* fallthrough */
    case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
        if (pss)
            http_release(&pss->http);
        return 0;
    case LWS_CALLBACK_GET_THREAD_ID:
        return loop_lws_thread_id(wsi);
    case LWS_CALLBACK_WSI_DESTROY:
        end_client(pss);
        if (pss)
            http_release(&pss->http);
        loop_wsi_destroyed(wsi);
        return 0;
    case LWS_CALLBACK_HTTP_WRITEABLE:
        loop_lws_writeable(wsi, 0);
        /* fallthrough */
    default:
        if (pss && http_callback(app, wsi, reason, &pss->http, in, len, &rc))
            return rc;
        return lws_callback_http_dummy(wsi, reason, user, in, len);
    }
}

const struct lws_protocols ws_protocols[] = {
    /* rx_buffer_size: lws allocates it per connection (it holds control
     * frames, at most 125 bytes, and bounds each read of the socket, data
     * frames being parsed in place), the largest single piece of an idle
     * connection; bigger messages arrive in several RECEIVE callbacks and
     * are joined above. 512: a typical publish still comes in one read.
     * tx_packet_size: lws sends at most this much per send() and buffers the
     * rest; left at 0 it would follow rx_buffer_size and cut every batch
     * into 512-byte pieces. */
    {"wsgate", callback, sizeof(struct pss), 512, 0, NULL, APP_BATCH_MAX},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};
