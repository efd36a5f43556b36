/* msg.h - refcounted, encoded-once outbound frames and per-client queues.
 *
 * A struct msg holds one complete server frame (JSON text) behind
 * MSG_HEADROOM bytes of headroom, so the network layer can prepend the
 * WebSocket header in place (it checks that its library's need fits). The fan-out path builds one msg per broker message and queues the
 * same pointer on every subscriber: each queue holds one reference, and the
 * msg is freed when the last queue drops it. Single-threaded: plain counts.
 *
 * A struct msgq is a bounded FIFO of msg pointers owned by one client. It
 * owns one reference per queued msg and counts their bytes. */
#ifndef WSGATE_MSG_H
#define WSGATE_MSG_H

#include <stddef.h>
#include <stdint.h>

/* Room for the longest server frame header (10 bytes), rounded up as
 * libwebsockets' LWS_PRE is. */
#define MSG_HEADROOM 16

struct msg {
    uint32_t refs;
    uint32_t len;          /* frame bytes after the headroom */
    uint64_t born_us;      /* message frames: broker receipt (monotonic us);
                              0 for replies */
    unsigned char buf[];   /* MSG_HEADROOM bytes, then len bytes */
};

/* A msg with one reference and len bytes of uninitialised frame; NULL when
 * out of memory. */
struct msg *msg_new(size_t len);

/* A msg holding a copy of the len bytes at text; NULL when out of memory. */
struct msg *msg_from_text(const char *text, size_t len);

static inline unsigned char *msg_data(struct msg *m) { return m->buf + MSG_HEADROOM; }
static inline struct msg *msg_ref(struct msg *m) { m->refs++; return m; }
void msg_unref(struct msg *m);

struct msgq {
    struct msg **ring; /* NULL until the first push */
    uint32_t head, count, cap;
    size_t bytes;      /* sum of len over queued msgs */
};

/* Queues m, taking a new reference, unless that would put the queue over
 * limit bytes (a msg alone larger than the limit is still refused).
 * Returns 0, -1 when over the limit (nothing queued), -2 out of memory. */
int msgq_push(struct msgq *q, struct msg *m, size_t limit);

/* The oldest msg, still owned by the queue, or NULL when empty. */
static inline struct msg *msgq_peek(const struct msgq *q)
{
    return q->count ? q->ring[q->head] : NULL;
}

/* The i-th oldest msg (i < count), still owned by the queue. */
static inline struct msg *msgq_at(const struct msgq *q, uint32_t i)
{
    return q->ring[(q->head + i) % q->cap];
}

/* Removes the oldest msg and drops the queue's reference to it. */
void msgq_pop(struct msgq *q);

/* Drops every queued msg and the ring itself. */
void msgq_clear(struct msgq *q);

#endif
