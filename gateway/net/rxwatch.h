/* rxwatch.h - what lws's last read of one socket returned.
 *
 * The loop's socket events are edge-triggered, and lws reads a WebSocket
 * with one recv() of at most its rx buffer per service round: input beyond
 * that stays on the socket and raises no new edge. Only a read that filled
 * its buffer can leave input behind; a shorter one emptied the socket (what
 * arrives later raises an edge of its own). lws 4.1 reports neither, and has
 * no hook for its reads, so the executable defines recv() itself
 * (rxwatch.c): the dynamic linker binds lws's calls (and ours) to it, and it
 * notes the result for the one socket being watched, then behaves exactly
 * as libc's recv(). OpenSSL reads with read(): a TLS socket is never seen.
 *
 * One watch at a time; no allocation, nothing to free. */
#ifndef WSGATE_RXWATCH_H
#define WSGATE_RXWATCH_H

enum rxwatch_result {
    RXWATCH_UNSEEN,  /* no recv() on the socket, or it ended with 0 or an error */
    RXWATCH_FILLED,  /* the last recv() filled its buffer: input may be left */
    RXWATCH_DRAINED, /* the last recv() took less, or found nothing: the socket was empty */
};

/* Notes the recv() results on fd from now on (replacing any earlier watch). */
void rxwatch_begin(int fd);

/* Ends the watch; returns what the last recv() on the socket said. */
enum rxwatch_result rxwatch_end(void);

/* 1 when lws's recv() calls reach rxwatch (the executable exports recv()),
 * else 0: every watch then ends RXWATCH_UNSEEN. */
int rxwatch_active(void);

#endif
