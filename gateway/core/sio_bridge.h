/* sio_bridge.h - --socketio-redis-adapter: wsgate nodes as servers of a Node
 * Socket.IO cluster that runs @socket.io/redis-adapter on the same Redis.
 *
 * The bridge hooks the Redis engine (struct broker_bridge) to the adapter's
 * broadcast channel of namespace "/", "socket.io#/#": what a Node server
 * broadcasts there to every socket reaches this node's subscribers of
 * --socketio-channel (Socket.IO and v1 clients alike), and each event this
 * node accepts on that channel is published there once, under this
 * process's uid, so Node's clients get it. wsgate nodes skip each other's
 * messages there: their clients already had them on wsgate's own channel.
 * The adapter's request and response channels are never touched, so Node's
 * serverCount() and fetchSockets() count Node servers only. What wsgate
 * cannot honour (rooms, binary, other namespaces) or read is dropped,
 * counted by verdict in the metrics and logged: the first of each verdict
 * at info, the rest at debug.
 *
 * Ownership: the caller owns the bridge (sio_bridge_free); it borrows the
 * app, whose config and metrics must outlive it. */
#ifndef WSGATE_SIO_BRIDGE_H
#define WSGATE_SIO_BRIDGE_H

#include "broker/broker.h"
#include "core/app.h"

#define SIO_BRIDGE_CHANNEL "socket.io#/#" /* the adapter's default key, namespace "/" */

struct sio_bridge;

/* A bridge with a random uid for this process; NULL when out of memory. */
struct sio_bridge *sio_bridge_new(struct app *app);
void sio_bridge_free(struct sio_bridge *b);

/* The hooks to give broker_redis_new() (ctx: b). */
struct broker_bridge sio_bridge_hooks(struct sio_bridge *b);

#endif
