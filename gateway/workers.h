/* workers.h - --workers N: a supervisor process and N single-threaded
 * workers sharing the listening port (SO_REUSEPORT).
 *
 * main() calls workers_start() once the flags are read and the descriptor
 * limit raised, before anything else exists. With more than one worker the
 * calling process becomes the supervisor: it holds the port (so port 0 is
 * chosen once and a restarted worker binds the same one), maps the node's
 * shared figures (struct metrics_node, any worker's /metrics and /readyz
 * read them all) and forks the workers. It then only supervises: a worker
 * that dies is restarted (logged, wsgate_worker_restarts_total), unless
 * WORKERS_CRASH_DEATHS died within WORKERS_CRASH_WINDOW_S, which stops the
 * node with exit 1; SIGTERM and SIGINT are forwarded so every worker drains
 * (a second one makes them exit at once), and the supervisor exits when all
 * are gone. It logs the node's "listening on" line once every worker
 * serves. If the supervisor is killed, its workers get SIGTERM.
 *
 * Ownership: the shared mapping lives as long as the processes; app->node,
 * app->worker and app->metrics point into it in a worker. */
#ifndef WSGATE_WORKERS_H
#define WSGATE_WORKERS_H

#include "core/app.h"

#define WORKERS_CRASH_DEATHS 5
#define WORKERS_CRASH_WINDOW_S 10

/* Returns 0 with one worker configured (the process serves alone), 1 in
 * a forked worker (serve with app->cfg.listen_port set to the node's port),
 * -1 with err set when the node cannot start; in the supervisor it never
 * returns (it exits with the node's status). */
int workers_start(struct app *app, char *err, size_t errlen);

/* A worker serves: capacity is the connections it can hold. Lets the
 * supervisor log the node's startup line once every worker has said so. */
void workers_ready(const struct app *app, unsigned capacity);

#endif
