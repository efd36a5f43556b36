/* app.h - the one context struct passed down to every module.
 *
 * main() owns it and everything it points to; modules borrow it for the
 * process lifetime. There is no other mutable global state (see log.h for
 * the one exception). */
#ifndef WSGATE_APP_H
#define WSGATE_APP_H

#include <stdint.h>

#include "config.h"
#include "core/auth.h"
#include "core/metrics.h"
#include "core/wheel.h"

struct hub;
struct broker;
struct client;
struct msg;
struct eio_registry;
struct heartbeat;

#define APP_BATCH_MAX 65536 /* bytes of one batched frame (?batch=1) */

struct app {
    struct config cfg;
    const char *node_id;          /* cfg.node_id, or hostname:port */
    struct hub *hub;
    struct broker *broker;
    struct client *clients;       /* every open client (client.c) */
    struct eio_registry *eio;     /* Engine.IO polling sessions (net/eio_poll.c) */
    unsigned nclients;
    struct wheel timers;          /* clients' keepalive, queue and token checks */
    uint32_t session_salt;        /* random per process: ids differ across nodes */
    uint32_t session_seq;
    int draining;                 /* SIGTERM seen: not ready, closing clients */
    struct msg *batch;            /* APP_BATCH_MAX scratch frame for batching */
    struct metrics *metrics;      /* this process's counters (a worker's: shared) */
    struct metrics_node *node;    /* with --workers > 1: every worker's figures */
    unsigned worker;              /* this worker's slot in node */
    int ready_fd;                 /* a worker's pipe to its supervisor */
    struct heartbeat *heartbeat;  /* this process's, for /api/cluster */
    struct auth_key *auth;        /* NULL: --auth off */
    struct auth_grants anonymous; /* grants of clients without a token */
    struct auth_grants history_channels; /* --history-channels */
    struct auth_grants presence_channels; /* --presence-channels */
};

#endif
