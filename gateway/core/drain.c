/* drain.c - see drain.h. */
#include "core/drain.h"

#include <math.h>

#include "core/client.h"

void drain_begin(struct drain *d, struct app *app, uint64_t now_us)
{
    app->draining = 1;
    d->start_us = now_us;
    double slices = app->cfg.drain_seconds * 0.7 * 1e6 / DRAIN_SLICE_US;
    d->per_slice = slices < 1 ? app->nclients : (unsigned)ceil(app->nclients / slices);
}

int drain_slice(struct drain *d, struct app *app, uint64_t now_us)
{
    if (app->nclients == 0)
        return 1;
    if ((double)(now_us - d->start_us) >= 0.1 * app->cfg.drain_seconds * 1e6)
        client_close_some(app, DISC_DRAIN, d->per_slice);
    return 0;
}
