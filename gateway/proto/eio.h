/* eio.h - Engine.IO v4 packets and polling payloads, no I/O.
 *
 * An Engine.IO packet is one type digit and its data: "0{...}" open,
 * "1" close, "2" ping, "3" pong, "4<data>" message, "5" upgrade, "6" noop.
 * Over WebSocket each frame is one packet; over HTTP long-polling a payload
 * joins packets with the record separator 0x1e. Binary packets (raw binary
 * frames, or "b<base64>" in a polling payload) are not supported by wsgate
 * and are reported as such. Encoders return a new struct msg with one
 * reference owned by the caller, or NULL when out of memory. */
#ifndef WSGATE_EIO_H
#define WSGATE_EIO_H

#include <stddef.h>

#include "core/msg.h"

#define EIO_SEP '\x1e' /* between packets of a polling payload */
#define EIO_SID_MAX 32 /* bytes of a session id, NUL excluded */

enum eio_type {
    EIO_OPEN = 0,
    EIO_CLOSE,
    EIO_PING,
    EIO_PONG,
    EIO_MESSAGE,
    EIO_UPGRADE,
    EIO_NOOP,
    EIO_BINARY = -2, /* "b...": a base64 binary packet */
    EIO_INVALID = -1
};

/* The type of the packet at buf (len bytes): an enum eio_type. */
int eio_type(const char *buf, size_t len);

/* The open packet: 0{"sid":S,"upgrades":["websocket"] or [],"pingInterval":
 * ms,"pingTimeout":ms,"maxPayload":bytes}. sid: at most EIO_SID_MAX bytes
 * of [A-Za-z0-9_-]. */
struct msg *eio_encode_open(const char *sid, int upgradable, double ping_interval_s,
                            double ping_timeout_s, size_t max_payload);

/* One packet with no data: "2" ping, "6" noop, "1" close... */
struct msg *eio_encode_bare(enum eio_type t);

/* Takes the next packet of a polling payload: sets *pkt and *len and moves
 * *cur past it and its separator. Returns 0, or -1 at the end. An empty
 * payload has no packets; an empty packet between separators is returned
 * (eio_type() says it is invalid). */
int eio_payload_next(const char **cur, const char *end, const char **pkt, size_t *len);

/* The polling payload of n msgs (n >= 1): their bytes joined by EIO_SEP,
 * written to out, which holds at least the sum of their lengths plus n.
 * Returns the bytes written. */
size_t eio_payload_join(unsigned char *out, struct msg *const *m, size_t n);

#endif
