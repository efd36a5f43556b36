/* server.h - the process's network side: the libevent base, the lws
 * context, the listener, signals and the periodic timers (the 1 s client
 * sweep, the drain slices).
 *
 * main() owns the server and the app it serves; the server borrows the app
 * for its lifetime. SIGTERM or SIGINT starts the drain (core/drain.h); once
 * every client is gone, or the window ends, the listener closes and
 * server_run() returns after a short grace for requests already accepted.
 * A second signal returns at once. */
#ifndef WSGATE_SERVER_H
#define WSGATE_SERVER_H

#include <stddef.h>

#include "core/app.h"

struct server;
struct event_base;

/* Creates the loop and the lws context and binds the listener. Returns
 * NULL with err set (e.g. the port is in use). */
struct server *server_new(struct app *app, char *err, size_t errlen);

/* The bound port (the kernel's choice when 0 was asked for). */
int server_port(const struct server *s);

/* Client sockets the descriptor limit allows (see loop_max_sockets). */
unsigned server_max_sockets(const struct server *s);

/* The loop, for engines that run on it (the Redis broker). */
struct event_base *server_base(struct server *s);

/* Serves until drained or stopped by a second signal. Returns 0, or -1
 * when the loop or its timers failed. */
int server_run(struct server *s);

/* Closes every connection that is left (clients leave the hub); the loop
 * stays, for the broker's own teardown. Call before freeing the broker and
 * the hub. NULL is fine. */
void server_shutdown(struct server *s);

/* Frees the server and the loop; call last. NULL is fine. */
void server_free(struct server *s);

#endif
