/* frames.h - server WebSocket text frames: one framed in place in its msg's
 * headroom, or several joined into one buffer, so that a client that has
 * fallen behind gets all its queued messages in one send().
 *
 * Pure: no lws, no I/O (net/ws.c writes the result; tests/unit/test_frames.c
 * checks it byte for byte). Server frames are unmasked, so a frame is a
 * header (RFC 6455 5.2: 2 bytes, 4 from 126 payload bytes, 10 from 65536)
 * and the payload, the same bytes for every subscriber. */
#ifndef WSGATE_FRAMES_H
#define WSGATE_FRAMES_H

#include <stddef.h>

#include "core/conn.h"

struct msg;

/* The longest header: RFC 6455's 64-bit length form. */
#define FRAMES_HEADER_MAX 10

/* Writes the header of a len-byte frame right before payload (which needs
 * that much headroom: a struct msg has MSG_HEADROOM); returns its length.
 * The bytes are the same for every subscriber, so a shared msg may carry
 * them. */
size_t frames_header(unsigned char *payload, size_t len);

/* The buffer frames_join() needs for CONN_FRAMES_MAX frames of
 * CONN_FRAMES_BYTES payload bytes in all. */
#define FRAMES_JOIN_MAX (CONN_FRAMES_BYTES + CONN_FRAMES_MAX * 4)

/* Writes the n msgs (n <= CONN_FRAMES_MAX, their lengths summing to at most
 * CONN_FRAMES_BYTES) as FIN text frames, in order, to out; returns the
 * bytes written. */
size_t frames_join(unsigned char *out, struct msg *const *m, size_t n);

#endif
