/* http_api.c - see http_api.h. */
#include "net/http_api.h"

#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include <openssl/crypto.h>

#include "broker/broker.h"
#include "core/channel.h"
#include "core/cluster_view.h"
#include "core/hub.h"
#include "core/metrics.h"
#include "log.h"
#include "net/eio_poll.h"
#include "net/heartbeat.h"
#include "net/loop.h"
#include "net/ws.h"
#include "process.h"
#include "proto/v1.h"

struct http_ticket {
    struct app *app;
    struct lws *wsi;         /* NULL once the connection closed */
    struct http_state *st;   /* valid while wsi is */
    size_t len;              /* presence: the channel */
    char channel[CHANNEL_MAX];
};

/* Writes a complete response now, with an Allow header when allow is set.
 * Returns the callback's return value: -1 when the connection must close. */
static int send_reply_allow(struct lws *wsi, unsigned status, const char *ctype,
                            const char *body, size_t len, int close_after,
                            const char *allow)
{
    unsigned char buf[LWS_PRE + 1024], *start = buf + LWS_PRE, *p = start,
                                       *end = buf + sizeof buf - 1;
    if (lws_add_http_common_headers(wsi, status, ctype, len, &p, end) ||
        (allow && lws_add_http_header_by_name(wsi, (const unsigned char *)"allow:",
                                              (const unsigned char *)allow,
                                              (int)strlen(allow), &p, end)) ||
        (close_after && lws_add_http_header_by_token(
                            wsi, WSI_TOKEN_CONNECTION, (unsigned char *)"close", 5, &p, end)) ||
        lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CACHE_CONTROL,
                                     (unsigned char *)"no-store", 8, &p, end) ||
        lws_finalize_write_http_header(wsi, start, &p, end))
        return -1;
    if (len) {
        unsigned char *out = malloc(LWS_PRE + len);
        if (!out)
            return -1;
        memcpy(out + LWS_PRE, body, len);
        int n = lws_write(wsi, out + LWS_PRE, len, LWS_WRITE_HTTP_FINAL);
        free(out);
        if (n < 0)
            return -1;
    }
    if (close_after || lws_http_transaction_completed(wsi))
        return -1;
    return 0;
}

int http_send(struct lws *wsi, unsigned status, const char *ctype, const void *body,
              size_t len, int close_after)
{
    return send_reply_allow(wsi, status, ctype, body, len, close_after, NULL);
}

static int send_json_error_allow(struct lws *wsi, unsigned status, const char *code,
                                 const char *message, int close_after,
                                 const char *allow)
{
    struct msg *m = v1_encode_http_error(code, message);
    if (!m)
        return -1;
    int rc = send_reply_allow(wsi, status, "application/json", (char *)msg_data(m),
                              m->len, close_after, allow);
    msg_unref(m);
    return rc;
}

int http_send_error(struct lws *wsi, unsigned status, const char *code,
                    const char *message, int close_after)
{
    return send_json_error_allow(wsi, status, code, message, close_after, NULL);
}

/* An HTTP API error, counted by status. */
static int api_error(struct app *app, struct lws *wsi, unsigned status, const char *code,
                     const char *message, int close_after)
{
    metrics_count_api(app->metrics, status);
    return http_send_error(wsi, status, code, message, close_after);
}

/* 405 naming the methods path takes ("GET, HEAD" or "POST"). */
static int send_wrong_method(struct lws *wsi, const char *allow)
{
    char msg[64];
    snprintf(msg, sizeof msg, "use %s", allow);
    return send_json_error_allow(wsi, 405, "method_not_allowed", msg, 0, allow);
}

static int send_text(struct lws *wsi, unsigned status, const char *text)
{
    return http_send(wsi, status, "text/plain", text, strlen(text), 0);
}

static void free_body(struct http_state *st)
{
    free(st->body);
    st->body = NULL;
    st->body_len = 0;
}

void http_release(struct http_state *st)
{
    eio_poll_http_gone(st);
    if (st->pending)
        st->pending->wsi = NULL;
    st->pending = NULL;
    free_body(st);
    msg_unref(st->reply);
    st->reply = NULL;
    st->status = 0;
}

/* The broker answered: reply from the next HTTP_WRITEABLE. */
static void answer(struct http_ticket *t, unsigned status, struct msg *reply)
{
    metrics_count_api(t->app->metrics, status);
    if (t->wsi) {
        struct http_state *st = t->st;
        st->pending = NULL;
        st->status = (unsigned short)status;
        st->reply = reply;
        loop_want_write(t->wsi);
    } else {
        msg_unref(reply);
    }
    free(t);
}

/* Publishes over HTTP are rarer than over WebSocket and come from backends:
 * each one handed to the broker is worth a line. */
static void log_publish(struct lws *wsi, const struct v1_req *req)
{
    if (!log_enabled(LOG_INFO))
        return;
    char ch[256], bytes[24], remote[64] = "";
    snprintf(ch, sizeof ch, "%.*s", (int)req->channel_len, req->channel);
    snprintf(bytes, sizeof bytes, "%zu", req->data_len);
    lws_get_peer_simple(wsi, remote, sizeof remote);
    log_fields(LOG_INFO, "api publish", "channel", ch, "bytes", bytes, "remote", remote,
               (const char *)NULL);
}

static void on_published(void *arg, int ok, const struct position *pos)
{
    struct http_ticket *t = arg;
    if (ok) {
        t->app->metrics->published_total++;
        t->app->metrics->history_appends += pos != NULL;
    }
    answer(t, ok ? 200 : 503,
           ok ? v1_encode_published(pos)
              : v1_encode_http_error("broker_unavailable",
                                     "the broker did not accept the message"));
}

static void on_history(void *arg, const struct history_read *r)
{
    answer(arg, r ? 200 : 503,
           r ? v1_encode_history(r)
             : v1_encode_http_error("broker_unavailable", "the history read failed"));
}

static int publish_body(struct app *app, struct lws *wsi, struct http_state *st)
{
    struct v1_req req;
    struct v1_error err;
    int rc;
    struct http_ticket *t = NULL;
    if (v1_parse_publish_body(st->body ? st->body : "", st->body_len, &req, &err) < 0) {
        rc = api_error(app, wsi, 400, err.code, err.message, 0);
    } else if (!(t = malloc(sizeof *t))) {
        rc = api_error(app, wsi, 500, "internal", "out of memory", 1);
    } else {
        *t = (struct http_ticket){.app = app, .wsi = wsi, .st = st};
        st->pending = t; /* the broker may answer before publish returns */
        rc = 0;
        if (broker_publish(app->broker, req.channel, req.channel_len, req.data,
                           req.data_len, on_published, t) < 0) {
            st->pending = NULL;
            free(t);
            rc = api_error(app, wsi, 503, "broker_unavailable",
                           "the broker is unavailable, try again", 0);
        } else {
            log_publish(wsi, &req);
        }
    }
    free_body(st); /* req.data pointed into it */
    return rc;
}

int http_origin_allowed(const struct app *app, struct lws *wsi)
{
    const char *list = app->cfg.allowed_origins;
    char origin[256];
    if (!list[0] || lws_hdr_copy(wsi, origin, sizeof origin, WSI_TOKEN_ORIGIN) <= 0)
        return 1;
    size_t n = strlen(origin);
    for (const char *p = list; *p;) {
        size_t len = strcspn(p, ",");
        if (len == n && !strncasecmp(p, origin, n))
            return 1;
        p += len + (p[len] == ',');
    }
    return 0;
}

/* 1 when the request carries "Authorization: Bearer <key>" and key is set;
 * compared in constant time. */
static int bearer_is(struct lws *wsi, const char *key)
{
    char got[CONFIG_STR_MAX + 16];
    size_t klen = strlen(key);
    if (!klen)
        return 0;
    int n = lws_hdr_copy(wsi, got, sizeof got, WSI_TOKEN_HTTP_AUTHORIZATION);
    return n > 7 && !strncasecmp(got, "Bearer ", 7) && (size_t)n - 7 == klen &&
           CRYPTO_memcmp(got + 7, key, klen) == 0;
}

/* With --api-key or --admin-key, the request must carry either as a
 * bearer; with no API key (--api-insecure), anyone may use the API. */
static int authorized(const struct app *app, struct lws *wsi)
{
    const struct config *c = &app->cfg;
    return (!c->api_key[0] && c->api_insecure) || bearer_is(wsi, c->api_key) ||
           bearer_is(wsi, c->admin_key);
}

static void on_presence(void *arg, const struct presence_read *r)
{
    struct http_ticket *t = arg;
    answer(t, r ? 200 : 503,
           r ? v1_encode_presence_http(t->channel, t->len, r)
             : v1_encode_http_error("broker_unavailable", "the presence read failed"));
}

/* ?channel=C into buf (lws copies "name=value" and points past the name);
 * NULL when missing or not a valid name. */
static const char *channel_arg(struct lws *wsi, char *buf, int len)
{
    const char *ch = lws_get_urlarg_by_name(wsi, "channel=", buf, len);
    return ch && channel_name_valid(ch, strlen(ch)) ? ch : NULL;
}

static int bad_channel(struct app *app, struct lws *wsi)
{
    return api_error(app, wsi, 400, "bad_channel",
                           "?channel= must be 1-200 bytes of A-Z a-z 0-9 _ - . : @ /", 0);
}

/* GET /api/presence?channel=C: who is subscribed, on every node. */
static int serve_presence(struct app *app, struct lws *wsi, struct http_state *st)
{
    char chbuf[CHANNEL_MAX + 16];
    const char *ch = channel_arg(wsi, chbuf, sizeof chbuf);
    if (!ch)
        return bad_channel(app, wsi);
    if (!broker_presence_on(app->broker, ch, strlen(ch)))
        return api_error(app, wsi, 404, "presence_off", "this channel keeps no presence", 0);
    struct http_ticket *t = malloc(sizeof *t);
    if (!t)
        return api_error(app, wsi, 500, "internal", "out of memory", 1);
    *t = (struct http_ticket){.app = app, .wsi = wsi, .st = st, .len = strlen(ch)};
    memcpy(t->channel, ch, t->len);
    st->pending = t; /* the broker may answer before presence() returns */
    if (broker_presence(app->broker, ch, t->len, on_presence, t) < 0) {
        st->pending = NULL;
        free(t);
        return api_error(app, wsi, 503, "broker_unavailable",
                               "the broker is unavailable, try again", 0);
    }
    return 0;
}

/* GET /api/history?channel=C[&since=N]: the kept messages after offset N
 * (default 0: all), with the channel's epoch and top offset. */
static int serve_history(struct app *app, struct lws *wsi, struct http_state *st)
{
    char chbuf[CHANNEL_MAX + 16], sincebuf[40];
    const char *ch = channel_arg(wsi, chbuf, sizeof chbuf);
    const char *since_s = lws_get_urlarg_by_name(wsi, "since=", sincebuf, sizeof sincebuf);
    uint64_t since = 0;
    if (!ch)
        return bad_channel(app, wsi);
    if (since_s) {
        char *end;
        since = strtoull(since_s, &end, 10);
        if (!since_s[0] || *end || since_s[0] < '0' || since_s[0] > '9' ||
            since > 9007199254740991ULL)
            return api_error(app, wsi, 400, "bad_request",
                                   "?since= must be an offset from 0 to 2^53-1", 0);
    }
    if (!broker_history_on(app->broker, ch, strlen(ch)))
        return api_error(app, wsi, 404, "history_off", "this channel keeps no history", 0);
    struct http_ticket *t = malloc(sizeof *t);
    if (!t)
        return api_error(app, wsi, 500, "internal", "out of memory", 1);
    *t = (struct http_ticket){.app = app, .wsi = wsi, .st = st};
    st->pending = t; /* the broker may answer before history() returns */
    if (broker_history(app->broker, ch, strlen(ch), since, SIZE_MAX, on_history, t) < 0) {
        st->pending = NULL;
        free(t);
        return api_error(app, wsi, 503, "broker_unavailable",
                               "the broker is unavailable, try again", 0);
    }
    return 0;
}

static void on_nodes(void *arg, const struct node_beat *v, size_t n)
{
    struct http_ticket *t = arg;
    struct node_beat own = {0};
    int complete = v != NULL;
    if (!complete) { /* the cluster's heartbeats are out of reach: show this node's */
        own.json = heartbeat_last(t->app->heartbeat, &own.len);
        v = &own;
        n = own.json != NULL;
    }
    size_t len;
    char *text = cluster_view_json(v, n, t->app->node_id, complete, &len);
    struct msg *m = text ? msg_from_text(text, len) : NULL;
    free(text);
    answer(t, m ? 200 : 500, m ? m : v1_encode_http_error("internal", "out of memory"));
}

/* GET /api/cluster: every live node's heartbeat, merged. It maps the
 * cluster, so it needs a key even with --api-insecure: the admin key, or
 * the API key when there is none; off (403) with neither. */
static int serve_cluster(struct app *app, struct lws *wsi, struct http_state *st, int get)
{
    const char *key = app->cfg.admin_key[0] ? app->cfg.admin_key : app->cfg.api_key;
    if (!key[0])
        return api_error(app, wsi, 403, "forbidden",
                         "the cluster view is off: start wsgate with --admin-key "
                         "(or --api-key)", 1);
    if (!get) {
        metrics_count_api(app->metrics, 405);
        return send_wrong_method(wsi, "GET, HEAD");
    }
    if (!bearer_is(wsi, key))
        return api_error(app, wsi, 401, "unauthorized",
                         app->cfg.admin_key[0] ? "send Authorization: Bearer <admin key>"
                                               : "send Authorization: Bearer <api key>", 1);
    struct http_ticket *t = malloc(sizeof *t);
    if (!t)
        return api_error(app, wsi, 500, "internal", "out of memory", 1);
    *t = (struct http_ticket){.app = app, .wsi = wsi, .st = st};
    st->pending = t; /* the broker may answer before nodes() returns */
    if (broker_nodes(app->broker, on_nodes, t) < 0)
        on_nodes(t, NULL, 0);
    return 0;
}

static struct metrics_gauges gauges(struct app *app)
{
    const struct hub_stats *hs = hub_stats(app->hub);
    struct metrics_gauges g = {
        .connections = app->nclients,
        .subscriptions = hs->subscriptions,
        .channels = hs->channels,
        .broker_up = hub_broker_up(app->hub),
        .broker_reconnects = hs->broker_ups ? hs->broker_ups - 1 : 0,
        .broker_messages = hs->messages_in,
        .dropped_invalid = hs->dropped_invalid,
        .ready = !app->draining && hub_broker_up(app->hub),
        .recovered = hs->recovered,
        .gap_fills = hs->gap_fills,
        .gaps_lost = hs->gaps_lost,
        .reads_subscribe = hs->reads_subscribe,
        .reads_gap = hs->reads_gap,
        .unrecovered = hs->unrecovered,
        .presence_members = hs->presence_members,
    };
    process_read(&g.process);
    return g;
}

void http_publish_gauges(struct app *app)
{
    if (!app->node)
        return;
    struct metrics_slot *slot = &app->node->slot[app->worker];
    slot->g = gauges(app);
    if (slot->g.unrecovered) /* points into this process: copied */
        memcpy(slot->unrecovered, slot->g.unrecovered, sizeof slot->unrecovered);
    slot->g.unrecovered = NULL;
    slot->draining = app->draining;
}

static int serve_metrics(struct app *app, struct lws *wsi)
{
    size_t len;
    char *text;
    if (app->node) {
        http_publish_gauges(app);
        unsigned fds[METRICS_WORKERS_MAX] = {0};
        for (unsigned i = 0; i < app->node->nslots; i++)
            if (app->node->slot[i].pid)
                process_open_fds(i == app->worker ? 0 : app->node->slot[i].pid, &fds[i]);
        text = metrics_render_node(app->node, fds, &len);
    } else {
        struct metrics_gauges g = gauges(app);
        if (g.process.ok && process_open_fds(0, &g.process.open_fds) < 0)
            g.process.ok = 0;
        text = metrics_render(app->metrics, &g, &len);
    }
    if (!text)
        return http_send_error(wsi, 500, "internal", "out of memory", 1);
    int rc = http_send(wsi, 200, "text/plain; version=0.0.4", text, len, 0);
    free(text);
    return rc;
}

static long content_length(struct lws *wsi)
{
    char v[32];
    if (lws_hdr_copy(wsi, v, sizeof v, WSI_TOKEN_HTTP_CONTENT_LENGTH) <= 0)
        return -1;
    return strtol(v, NULL, 10);
}

/* The Socket.IO bundle is pinned with the build and may be cached a
 * while; the rest of the web root is the chat being worked on: no caching
 * headers. */
static const char bundle_headers[] = "cache-control: public, max-age=3600\r\n";

static int serve_static(struct app *app, struct lws *wsi, const char *path)
{
    /* lws has already decoded %xx and collapsed "/../"; refuse what is left
     * and then check the resolved file really lies under the web root. */
    if (path[0] != '/' || strstr(path, ".."))
        return http_send_error(wsi, 404, "not_found", "no such file", 0);
    char want[PATH_MAX], real[PATH_MAX], root[PATH_MAX];
    int n = snprintf(want, sizeof want, "%s%s%s", app->cfg.web_root, path,
                     path[strlen(path) - 1] == '/' ? "index.html" : "");
    struct stat sb;
    if (n < 0 || (size_t)n >= sizeof want || !realpath(app->cfg.web_root, root) ||
        !realpath(want, real) || strncmp(real, root, strlen(root)) != 0 ||
        real[strlen(root)] != '/' || stat(real, &sb) < 0 || !S_ISREG(sb.st_mode))
        return http_send_error(wsi, 404, "not_found", "no such file", 0);
    const char *mime = lws_get_mimetype(real, NULL);
    int bundle = !strncmp(path, "/socket.io/", 11);
    n = lws_serve_http_file(wsi, real, mime ? mime : "application/octet-stream",
                            bundle ? bundle_headers : NULL,
                            bundle ? (int)sizeof bundle_headers - 1 : 0);
    if (n < 0)
        return -1;
    if (n == 0)
        loop_keep_writable(wsi, 1);
    return 0;
}

/* The sentence for a plain GET on an upgrade route (ws_probe). */
static const char *probe_message(unsigned status)
{
    switch (status) {
    case 401:
        return "an upgrade here needs a valid connect token in ?token= "
               "(mint one with: wsgate token --secret-file F --sub NAME ...)";
    case 403:
        return "the Origin is not in --allowed-origins";
    case 503:
        return "not accepting connections now (draining or full)";
    default:
        return "this is a WebSocket endpoint: an upgrade would be accepted";
    }
}

static int on_request(struct app *app, struct lws *wsi, struct http_state *st,
                      const char *path)
{
    char *uri;
    int urilen;
    int method = lws_http_get_uri_and_method(wsi, &uri, &urilen);
    int get = method == LWSHUMETH_GET || method == LWSHUMETH_HEAD;

    st->eio_post = 0;
    if (!strcmp(path, "/socket.io/")) {
        free_body(st);
        return eio_poll_request(app, wsi, st, method);
    }
    if (!strcmp(path, "/healthz"))
        return get ? send_text(wsi, 200, "ok\n") : send_wrong_method(wsi, "GET, HEAD");
    if (!strcmp(path, "/readyz")) {
        if (!get)
            return send_wrong_method(wsi, "GET, HEAD");
        if (app->draining)
            return send_text(wsi, 503, "draining\n");
        if (!hub_broker_up(app->hub))
            return send_text(wsi, 503, "broker unavailable\n");
        http_publish_gauges(app);
        if (app->node && !metrics_node_ready(app->node))
            return send_text(wsi, 503, "a worker is not ready\n");
        return send_text(wsi, 200, "ready\n");
    }
    if (!strcmp(path, "/metrics"))
        return get ? serve_metrics(app, wsi) : send_wrong_method(wsi, "GET, HEAD");
    if (!strcmp(path, "/api/cluster"))
        return serve_cluster(app, wsi, st, get);
    if (!strncmp(path, "/api/", 5)) {
        /* Safe by default: a node reachable from anywhere must not take
         * publishes from anyone because nobody thought of a key. */
        if (!app->cfg.api_key[0] && !app->cfg.admin_key[0] && !app->cfg.api_insecure)
            return api_error(app, wsi, 403, "forbidden",
                             "the HTTP API is off: start wsgate with --api-key "
                             "(or --api-key-file), or with --api-insecure to "
                             "serve it without a key", 1);
        int publish = !strcmp(path, "/api/publish");
        int (*serve)(struct app *, struct lws *, struct http_state *) =
            !strcmp(path, "/api/history")    ? serve_history
            : !strcmp(path, "/api/presence") ? serve_presence
                                             : NULL;
        if (!publish && !serve)
            return api_error(app, wsi, 404, "not_found", "no such API endpoint", 0);
        if (publish ? method != LWSHUMETH_POST : !get) {
            metrics_count_api(app->metrics, 405);
            return send_wrong_method(wsi, publish ? "POST" : "GET, HEAD");
        }
        if (!authorized(app, wsi))
            return api_error(app, wsi, 401, "unauthorized",
                             "send Authorization: Bearer <api key>", 1);
        if (serve)
            return serve(app, wsi, st);
        long cl = content_length(wsi);
        if (cl > (long)app->cfg.max_message_size)
            return api_error(app, wsi, 413, "too_large",
                             "body exceeds --max-message-size", 1);
        free_body(st);
        return 0; /* the body arrives through HTTP_BODY */
    }
    if (!get)
        return send_wrong_method(wsi, "GET, HEAD");
    const char *code;
    unsigned status = ws_probe(app, wsi, &code);
    if (status)
        return http_send_error(wsi, status, code, probe_message(status), 0);
    return serve_static(app, wsi, path);
}

static int on_body(struct app *app, struct lws *wsi, struct http_state *st,
                   const void *in, size_t len)
{
    if (st->body_len + len > app->cfg.max_message_size) {
        free_body(st);
        return api_error(app, wsi, 413, "too_large",
                         "body exceeds --max-message-size", 1);
    }
    char *b = realloc(st->body, st->body_len + len + 1);
    if (!b)
        return -1;
    if (len) /* lws may pass in == NULL for an empty body */
        memcpy(b + st->body_len, in, len);
    st->body = b;
    st->body_len += len;
    b[st->body_len] = '\0';
    return 0;
}

static int on_writable(struct lws *wsi, struct http_state *st)
{
    if (!st->status)
        return 0;
    unsigned status = st->status;
    struct msg *reply = st->reply;
    st->status = 0;
    st->reply = NULL;
    int rc = reply ? http_send(wsi, status, "application/json",
                                (const char *)msg_data(reply), reply->len, 0)
                   : -1;
    msg_unref(reply);
    return rc;
}

int http_callback(struct app *app, struct lws *wsi,
                  enum lws_callback_reasons reason, struct http_state *st,
                  void *in, size_t len, int *rc)
{
    switch (reason) {
    case LWS_CALLBACK_HTTP:
        *rc = on_request(app, wsi, st, in);
        return 1;
    case LWS_CALLBACK_HTTP_BODY:
        *rc = on_body(app, wsi, st, in, len);
        return 1;
    case LWS_CALLBACK_HTTP_BODY_COMPLETION:
        if (st->eio_post)
            *rc = st->eio ? eio_poll_body_done(wsi, st)
                          : http_send_error(wsi, 400, "unknown_sid", "Session ID unknown", 0);
        else
            *rc = publish_body(app, wsi, st);
        return 1;
    case LWS_CALLBACK_HTTP_WRITEABLE:
        *rc = st->eio && !st->eio_post ? eio_poll_writable(wsi, st) : on_writable(wsi, st);
        return 1;
    case LWS_CALLBACK_HTTP_FILE_COMPLETION:
        loop_keep_writable(wsi, 0);
        *rc = lws_http_transaction_completed(wsi) ? -1 : 0;
        return 1;
    default:
        return 0;
    }
}
