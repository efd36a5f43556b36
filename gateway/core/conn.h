/* conn.h - the connection a client sits on, as the client sees it.
 *
 * A client (core/client.h) never touches a socket or a WebSocket library:
 * the network layer (net/ws.c) implements these operations over lws, and
 * unit tests implement them over a fake. struct conn is opaque here; each
 * implementation defines what it points to. The network layer owns the
 * connection; the client borrows it until client_gone(). */
#ifndef WSGATE_CONN_H
#define WSGATE_CONN_H

#include <stddef.h>
#include <stdint.h>

struct conn;
struct msg;

/* What one write_frames() call takes at most: frames, and their bytes. */
#define CONN_FRAMES_MAX 64
#define CONN_FRAMES_BYTES 65536

struct conn_ops {
    /* Sends one complete text frame holding len bytes at buf. The
     * MSG_HEADROOM bytes before buf belong to the caller's struct msg and
     * may be used for the frame header. Called only from client_writable(),
     * at most once per call. Returns 0, or -1 when the connection failed. */
    int (*write)(struct conn *c, unsigned char *buf, size_t len);
    /* Sends n (2..CONN_FRAMES_MAX) queued msgs as n text frames, in order,
     * in as few socket writes as the transport can: a subscriber that fell
     * behind catches up in one send() rather than one per message. Same
     * calling rules and result as write. */
    int (*write_frames)(struct conn *c, struct msg *const *m, size_t n);
    /* Asks for one client_writable() call once the peer can take more. */
    void (*want_write)(struct conn *c);
    /* Sets the close frame (RFC 6455 code and reason) that goes out when
     * client_writable() next returns -1. */
    void (*close)(struct conn *c, uint16_t code, const char *reason);
    /* Drops the connection at once with a TCP reset: no close frame, the
     * kernel discards unsent bytes (a slow consumer's megabytes). */
    void (*abort)(struct conn *c);
    /* Sends a transport-level ping soon; the peer's answer comes back as
     * client_heard(). */
    void (*ping)(struct conn *c);
};

#endif
