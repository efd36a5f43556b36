/* http_api.h - plain HTTP on the WebSocket port: /healthz, /readyz,
 * /metrics, POST /api/publish and static files from --web-root. With
 * several workers, /readyz and /metrics answer for the whole node.
 *
 * ws.c hands every HTTP callback reason to http_callback(). The per-
 * connection state lives inside the lws per-session data (zeroed by lws) and
 * is owned by the connection; a publish awaiting the broker holds a small
 * ticket that the connection detaches from when it closes first. */
#ifndef WSGATE_HTTP_API_H
#define WSGATE_HTTP_API_H

#include <stddef.h>

#include <libwebsockets.h>

#include "core/app.h"
#include "core/msg.h"

struct http_ticket;
struct eio_session;

struct http_state {
    char *body;            /* POST body collected so far */
    size_t body_len;
    struct http_ticket *pending; /* /api/publish awaiting the broker */
    unsigned short status;       /* reply waiting for HTTP_WRITEABLE */
    struct msg *reply;           /* its JSON body (one reference) */
    struct eio_session *eio;     /* the polling session of this request, if any */
    unsigned char eio_post;      /* that request is its POST (else its GET) */
};

/* Returns 1 when reason is an HTTP reason this module handles, with *rc set
 * to the value the lws callback must return. */
int http_callback(struct app *app, struct lws *wsi, enum lws_callback_reasons reason,
                  struct http_state *st, void *in, size_t len, int *rc);

/* With several workers (app->node): copies this worker's gauges and
 * drain state into its slot, for the others' /metrics and /readyz. The
 * server calls it every second; serving either calls it first. */
void http_publish_gauges(struct app *app);

/* Writes a complete response now: status, content type, Cache-Control:
 * no-store, the body. Returns the callback's return value: -1 when the
 * connection must close (close_after, or the client asked). */
int http_send(struct lws *wsi, unsigned status, const char *ctype, const void *body,
              size_t len, int close_after);

/* http_send() of the JSON error {"error":code,"message":message}. */
int http_send_error(struct lws *wsi, unsigned status, const char *code,
                    const char *message, int close_after);

/* 1 when the Origin header (sent by browsers) is absent or in the
 * comma-separated --allowed-origins list (empty: any): WebSocket upgrades
 * and Engine.IO polling requests check it. */
int http_origin_allowed(const struct app *app, struct lws *wsi);

/* Frees what st holds and detaches a pending publish; idempotent. Call when
 * the connection closes or lws drops the HTTP protocol binding. */
void http_release(struct http_state *st);

#endif
