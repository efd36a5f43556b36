/* session.h - one WebSocket client: its send queue, its requests, its close.
 *
 * ws.c creates a session on LWS_CALLBACK_ESTABLISHED and forwards RECEIVE,
 * SERVER_WRITEABLE and CLOSED to it. The session answers requests, talks to
 * the hub and the broker, and queues outbound frames (bounded by
 * --max-queue-bytes; a client over the bound is closed as a slow consumer).
 * It writes only in sess_writable(), one lws_write() per call.
 *
 * Ownership: the session is owned by its connection until sess_closed(),
 * and also by each of its publishes still awaiting the broker; it is freed
 * when the last of these lets go. After sess_closed() it never touches the
 * wsi again. */
#ifndef WSGATE_SESSION_H
#define WSGATE_SESSION_H

#include <stddef.h>
#include <stdint.h>

#include "core/app.h"
#include "core/hub.h"
#include "core/metrics.h"

struct lws;
struct session;

/* The callbacks the hub uses to reach sessions. */
extern const struct hub_callbacks sess_hub_callbacks;

/* claims: the verified token's, or NULL for an anonymous client; the
 * session takes them over on success. Returns NULL when out of memory (the
 * caller refuses the connection and keeps the claims). */
struct session *sess_open(struct app *app, struct lws *wsi, int batch,
                          struct auth_claims *claims);

/* One fragment of an inbound message. Returns -1 to close the connection
 * (a close reason has been set). */
int sess_receive(struct session *s, const void *in, size_t len);

/* Writes the next queued frame (or batch). Returns -1 to close. */
int sess_writable(struct session *s);

/* The connection is gone: drops subscriptions and the queue. */
void sess_closed(struct session *s);

/* Asks for a close, with the code and reason of why, once the queue has
 * been written. */
void sess_close(struct session *s, enum disconnect_reason why);

/* sess_close() on up to n sessions not already closing; returns how many. */
unsigned sess_close_some(struct app *app, enum disconnect_reason why, unsigned n);

/* The once-a-second sweep: cuts off clients whose queue stayed over
 * --queue-soft-bytes for --queue-soft-seconds, and closes those whose token
 * has expired (4001). */
void sess_sweep(struct app *app);

#endif
