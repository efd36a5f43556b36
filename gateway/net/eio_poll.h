/* eio_poll.h - Engine.IO v4 HTTP long-polling at /socket.io/, and the
 * hand-over of a polling session to a WebSocket (the upgrade).
 *
 * A polling session is the struct conn of its client (core/conn.h): the
 * client's queued packets leave as the body of the session's held GET,
 * joined with 0x1e; a POST's packets go to client_receive() one by one. At
 * most one GET and one POST per session at a time (another gets 400). A
 * WebSocket opened with ?sid= probes ("2probe" -> "3probe"), which turns
 * held and later GETs into "6" (noop) answers, then sends "5": the client
 * moves to the WebSocket (client_rebind) and the session is done.
 *
 * Ownership: sessions live in app->eio (allocated with the first session,
 * freed by eio_poll_free_all) and are owned by this module; a session owns its client until it is handed over or gone. A
 * session is never freed inside a callback that uses it: sessions that
 * ended (closed, aborted, timed out, handed over) are freed by
 * eio_poll_sweep(), once a second. HTTP connections and the probing
 * WebSocket hold back-pointers that the session clears when it is freed. */
#ifndef WSGATE_EIO_POLL_H
#define WSGATE_EIO_POLL_H

#include <libwebsockets.h>

#include "core/app.h"
#include "core/client.h"

struct eio_session;
struct http_state;

/* LWS_CALLBACK_HTTP for /socket.io/ (method: lws_http_get_uri_and_method's).
 * Returns the callback's return value. */
int eio_poll_request(struct app *app, struct lws *wsi, struct http_state *st, int method);

/* LWS_CALLBACK_HTTP_BODY_COMPLETION of a POST this module took. */
int eio_poll_body_done(struct lws *wsi, struct http_state *st);

/* LWS_CALLBACK_HTTP_WRITEABLE of a GET this module holds. */
int eio_poll_writable(struct lws *wsi, struct http_state *st);

/* The HTTP connection st closed or moved on: its session forgets it. */
void eio_poll_http_gone(struct http_state *st);

/* The session of sid that a WebSocket may upgrade, or NULL (unknown, over,
 * or another probe is under way). On success the session records ref
 * (cleared to NULL if the session ends first) as its probe. */
struct eio_session *eio_poll_probe_begin(struct app *app, const char *sid,
                                         struct eio_session **ref);

/* The probe's "2probe" arrived: GETs are now answered with noop. */
void eio_poll_probing(struct eio_session *s);

/* The probe failed (its WebSocket closed before "5"): polling goes on. */
void eio_poll_probe_end(struct eio_session *s);

/* "5" arrived: returns the client, now the caller's to rebind; the session
 * is over. NULL when the client is already gone. */
struct client *eio_poll_hand_over(struct eio_session *s);

/* Frees sessions that ended, and ends those closing with no GET held for
 * a second; run once a second after client_sweep(). */
void eio_poll_sweep(struct app *app);

/* Ends every session (shutdown). */
void eio_poll_free_all(struct app *app);

#endif
