/* sio_adapter.h - the messages of Node's @socket.io/redis-adapter (8.x), no
 * I/O.
 *
 * A Node Socket.IO server with that adapter publishes every broadcast of
 * namespace "/" to no room or several rooms on the Redis channel
 * "socket.io#/#" (one room: "socket.io#/#<room>#") as the MessagePack array
 * [uid, packet, opts]: uid names the publishing server (servers ignore their
 * own), packet is {type:2, data:["E",a...], nsp:"/"} and opts is
 * {rooms:[...], except:[...], flags:{...}}. wsgate's channel payload for the
 * same event is {"event":"E","args":[a...]} (proto/sio.h).
 *
 * MessagePack goes through msgpack-c (Debian's libmsgpack-dev). Results are
 * malloc'd; the caller frees them. */
#ifndef WSGATE_SIO_ADAPTER_H
#define WSGATE_SIO_ADAPTER_H

#include <stddef.h>

#include "core/metrics.h"

/* wsgate nodes' uids start with this; Node's are 6 characters (uid2(6)). */
#define SIO_ADAPTER_UID_PREFIX "wsgate-"
#define SIO_ADAPTER_UID_MAX 32 /* bytes, NUL excluded */

/* The message announcing a channel payload (valid JSON) as a broadcast to
 * every socket of "/" by the server uid: its EVENT is what Socket.IO clients
 * get for the payload (sio_payload_event()). NULL when out of memory. */
char *sio_adapter_encode(const char *uid, const char *payload, size_t len, size_t *out_len);

/* What a message of len bytes means for wsgate's clients. ADAPTER_DELIVERED
 * sets *payload to the NUL-terminated channel payload {"event":E,"args":[...]}
 * and *plen to its length; ADAPTER_FROM_WSGATE (a uid with the prefix above)
 * sets nothing; every other verdict sets *why to one static sentence. Returns
 * -1 when out of memory. */
int sio_adapter_decode(const char *msg, size_t len, char **payload, size_t *plen,
                       const char **why);

#endif
