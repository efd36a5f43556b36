/* drain.h - how a SIGTERM'd node lets its clients go.
 *
 * /readyz answers 503 at once (app->draining); closes (1001) start after
 * 10% of --drain-seconds, so a load balancer has seen the 503 and sends new
 * clients elsewhere, and are spread in even slices up to 80% of it, so
 * clients do not all reconnect at once; the rest of the window lets close
 * handshakes finish. Pure arithmetic over the clients list: the caller
 * (net/server.c) runs the timers and passes the time. */
#ifndef WSGATE_DRAIN_H
#define WSGATE_DRAIN_H

#include <stdint.h>

#include "core/app.h"

#define DRAIN_SLICE_US 100000 /* the caller calls drain_slice() this often */

struct drain {
    uint64_t start_us;
    unsigned per_slice; /* clients closed per slice */
};

/* Marks the app draining and plans the slices for its current clients. */
void drain_begin(struct drain *d, struct app *app, uint64_t now_us);

/* One slice: closes the next clients once 10% of the window has passed.
 * Returns 1 when no client is left, else 0. */
int drain_slice(struct drain *d, struct app *app, uint64_t now_us);

#endif
