/* ws.c - see ws.h. */
#include "net/ws.h"

#include <string.h>
#include <strings.h>
#include <time.h>

#include "core/app.h"
#include "net/http_api.h"
#include "log.h"
#include "net/loop.h"
#include "proto/v1.h"
#include "core/client.h"

/* lws per-session data: zeroed by lws, freed after LWS_CALLBACK_WSI_DESTROY
 * (and replaced, zeroed again, when an HTTP connection upgrades). */
struct pss {
    struct session *sess;
    struct http_state http;
    struct auth_claims *claims; /* from the upgrade until the session takes it */
    unsigned char batch;
};

/* 1 when the Origin header (sent by browsers) is absent or in the
 * comma-separated --allowed-origins list (empty: any). */
static int origin_allowed(const struct app *app, struct lws *wsi)
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

/* Answers a refused upgrade itself: lws_return_http_status() would say
 * "HTTP/1.0" here (the request version is not parsed yet on this path),
 * which WebSocket clients reject as invalid. Returns -1 to close. */
static int reject(struct lws *wsi, unsigned status, const char *code)
{
    static const struct { unsigned status; const char *text; } texts[] = {
        {401, "Unauthorized"}, {403, "Forbidden"}, {404, "Not Found"},
        {503, "Service Unavailable"},
    };
    const char *text = "Error";
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++)
        if (texts[i].status == status)
            text = texts[i].text;
    struct msg *body = proto_encode_http_error(code, text);
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
    app->metrics.refused_total++;
    log_info("upgrade refused with %u: %s", status, code);
    return reject(wsi, status, code);
}

/* Verifies ?token= and keeps its claims for the session; a client without
 * one is anonymous unless --auth required. A bad token is refused in either
 * mode: it is a client error worth seeing. */
static int authenticate(struct app *app, struct lws *wsi, struct pss *pss)
{
    char buf[AUTH_TOKEN_MAX + 16];
    const char *tok = lws_get_urlarg_by_name(wsi, "token=", buf, sizeof buf);
    if (!tok || !*tok) {
        if (app->cfg.auth_mode == AUTH_MODE_REQUIRED)
            return refuse(app, wsi, HTTP_STATUS_UNAUTHORIZED, "token_missing");
        return 0;
    }
    struct auth_error err;
    if (auth_verify(app->auth, tok, strlen(tok), (int64_t)time(NULL), &pss->claims, &err) < 0)
        return refuse(app, wsi, HTTP_STATUS_UNAUTHORIZED, err.code);
    return 0;
}

/* Accepts the upgrade only on /ws, from an allowed origin, while not
 * draining and under the connection limit. */
static int filter(struct app *app, struct lws *wsi, struct pss *pss)
{
    char uri[64], arg[8];
    if (lws_hdr_copy(wsi, uri, sizeof uri, WSI_TOKEN_GET_URI) <= 0 ||
        strcmp(uri, "/ws") != 0)
        return reject(wsi, HTTP_STATUS_NOT_FOUND, "not_found");
    if (!origin_allowed(app, wsi))
        return refuse(app, wsi, HTTP_STATUS_FORBIDDEN, "origin_not_allowed");
    if (app->draining)
        return refuse(app, wsi, HTTP_STATUS_SERVICE_UNAVAILABLE, "draining");
    if (app->nsessions >= app->cfg.max_connections)
        return refuse(app, wsi, HTTP_STATUS_SERVICE_UNAVAILABLE, "connection_limit");
    if (app->auth && authenticate(app, wsi, pss) < 0)
        return -1;
    const char *v = lws_get_urlarg_by_name(wsi, "batch=", arg, sizeof arg);
    pss->batch = v && !strcmp(v, "1");
    return 0;
}

static void end_session(struct pss *pss)
{
    if (!pss)
        return;
    if (pss->sess) {
        sess_closed(pss->sess);
        pss->sess = NULL;
    }
    auth_claims_free(pss->claims); /* an upgrade that never got its session */
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
        pss->sess = sess_open(app, wsi, pss->batch, pss->claims);
        if (pss->sess)
            pss->claims = NULL; /* the session owns them now */
        return pss->sess ? 0 : -1;
    case LWS_CALLBACK_RECEIVE:
        return pss->sess ? sess_receive(pss->sess, in, len) : -1;
    case LWS_CALLBACK_SERVER_WRITEABLE:
        return pss->sess ? sess_writable(pss->sess) : -1;
    case LWS_CALLBACK_CLOSED:
        end_session(pss);
        loop_wsi_closed(wsi);
        return 0;
    case LWS_CALLBACK_CLOSED_HTTP:
        loop_wsi_closed(wsi);
        /* fallthrough */
    case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
        if (pss)
            http_release(&pss->http);
        return 0;
    case LWS_CALLBACK_WSI_DESTROY:
        end_session(pss);
        if (pss)
            http_release(&pss->http);
        loop_wsi_destroyed(wsi);
        return 0;
    default:
        if (pss && http_callback(app, wsi, reason, &pss->http, in, len, &rc))
            return rc;
        return lws_callback_http_dummy(wsi, reason, user, in, len);
    }
}

const struct lws_protocols ws_protocols[] = {
    /* rx_buffer_size: lws allocates it per connection; bigger messages
     * arrive in several RECEIVE callbacks and session.c joins them.
     * tx_packet_size: lws sends at most this much per send() and buffers the
     * rest; left at 0 it would follow rx_buffer_size and cut every batch
     * into 1 KiB pieces. */
    {"wsgate", callback, sizeof(struct pss), 1024, 0, NULL, APP_BATCH_MAX},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};
