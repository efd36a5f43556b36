/* sendq.h - the send()s of one loop turn, submitted to the kernel at once.
 *
 * Fanning a message out costs one send() per subscriber, and on a
 * virtualised host the syscall entry and exit alone is about 1 µs of the
 * ~7 each costs (measured on the 2-core reference VM). A sendq collects a
 * turn's writes and hands them to io_uring in one io_uring_enter(): each is
 * a non-blocking send (MSG_DONTWAIT: a full socket completes with -EAGAIN
 * at once, a short write with its count, exactly what send() would say),
 * and each result goes to the done callback.
 *
 * The bytes are copied into the sendq's arena when queued, so callers may
 * reuse or free their buffer at once.
 *
 * Ownership: the loop owns its sendq. sendq_new() returns NULL where
 * io_uring cannot be used (an old kernel, a seccomp profile that forbids
 * it): the caller then calls send() itself. */
#ifndef WSGATE_SENDQ_H
#define WSGATE_SENDQ_H

#include <stddef.h>
#include <sys/types.h>

struct sendq;

/* res: bytes the socket took, or -errno. buf/len: what was queued, valid
 * during the call only. */
typedef void (*sendq_done_fn)(void *arg, void *tag, const unsigned char *buf, size_t len,
                              ssize_t res);

/* why (may be NULL) gets the reason when it returns NULL. */
struct sendq *sendq_new(sendq_done_fn done, void *arg, char *why, size_t whylen);
void sendq_free(struct sendq *q);

/* Queues len bytes for fd, reported with tag. Submits what is queued
 * first when the ring or the arena is full. -1: not queued (larger than
 * the arena takes): send it yourself. */
int sendq_add(struct sendq *q, int fd, const unsigned char *buf, size_t len, void *tag);

/* Submits what is queued and reports every result before returning.
 * Returns how many sends were submitted. */
unsigned sendq_flush(struct sendq *q);

#endif
