/* heartbeat.h - this node's heartbeat: once a second, its stats rendered
 * as JSON (core/cluster_view.h) and stored through the broker with a TTL,
 * so that every node can show the whole cluster and a node that stops
 * vanishes from it. With --workers, each worker beats for itself, as
 * "<node id>/<worker>" (each has its own hub and broker connection).
 *
 * Ownership: main() creates it after the broker and frees it before the
 * broker; it borrows the app and the event base for its lifetime. */
#ifndef WSGATE_HEARTBEAT_H
#define WSGATE_HEARTBEAT_H

#include <stddef.h>

#include "core/app.h"

/* A heartbeat stays readable this long after it was sent: three beats, so
 * one slow beat does not make a live node blink out of the view. */
#define HEARTBEAT_TTL_MS 3000

struct event_base;
struct heartbeat;

/* Sends the first beat now (if the broker takes it), then one a second.
 * port: the bound port, for the address shown. NULL when out of memory. */
struct heartbeat *heartbeat_new(struct app *app, struct event_base *base, int port);
void heartbeat_free(struct heartbeat *hb);

/* The last beat rendered (NULL before the first), valid until the next one. */
const char *heartbeat_last(const struct heartbeat *hb, size_t *len);

#endif
