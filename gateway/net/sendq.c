/* sendq.c - see sendq.h. */
#include "net/sendq.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <liburing.h>

#define RING_ENTRIES 512       /* sends per io_uring_enter() at most */
#define ARENA_BYTES (1u << 16) /* their bytes; a send takes at most a quarter */

struct entry {
    void *tag;
    size_t off, len;
    int fd;
};

struct sendq {
    struct io_uring ring;
    sendq_done_fn done;
    void *arg;
    unsigned n;   /* queued, not yet submitted */
    int broken;   /* the kernel refused a submission: send() from now on */
    size_t used;  /* arena bytes they hold */
    struct entry entries[RING_ENTRIES];
    unsigned char arena[ARENA_BYTES];
};

struct sendq *sendq_new(sendq_done_fn done, void *arg, char *why, size_t whylen)
{
    struct sendq *q = malloc(sizeof *q);
    if (!q) {
        if (why)
            snprintf(why, whylen, "out of memory");
        return NULL;
    }
    /* The completion ring is twice the submission ring (the default), so
     * a full batch never overflows it. */
    int rc = io_uring_queue_init(RING_ENTRIES, &q->ring, 0);
    if (rc < 0) {
        if (why)
            snprintf(why, whylen, "%s", strerror(-rc));
        free(q);
        return NULL;
    }
    q->done = done;
    q->arg = arg;
    q->n = 0;
    q->used = 0;
    q->broken = 0;
    return q;
}

void sendq_free(struct sendq *q)
{
    if (!q)
        return;
    sendq_flush(q);
    io_uring_queue_exit(&q->ring);
    free(q);
}

int sendq_add(struct sendq *q, int fd, const unsigned char *buf, size_t len, void *tag)
{
    if (len > ARENA_BYTES / 4 || q->broken)
        return -1;
    if (q->n == RING_ENTRIES || q->used + len > ARENA_BYTES)
        sendq_flush(q);
    struct io_uring_sqe *sqe = q->broken ? NULL : io_uring_get_sqe(&q->ring);
    if (!sqe) /* only when the flush found the ring broken */
        return -1;
    struct entry *e = &q->entries[q->n];
    *e = (struct entry){tag, q->used, len, fd};
    memcpy(q->arena + e->off, buf, len);
    io_uring_prep_send(sqe, fd, q->arena + e->off, len, MSG_DONTWAIT | MSG_NOSIGNAL);
    io_uring_sqe_set_data64(sqe, q->n);
    q->n++;
    q->used += len;
    return 0;
}

/* Reports the completions posted so far, or waits for one when wait. */
static unsigned reap(struct sendq *q, int wait)
{
    struct io_uring_cqe *cqe;
    unsigned head, k = 0;
    if (wait && io_uring_wait_cqe(&q->ring, &cqe) < 0)
        return 0; /* EINTR: the caller waits again */
    io_uring_for_each_cqe(&q->ring, head, cqe) {
        const struct entry *e = &q->entries[cqe->user_data];
        q->done(q->arg, e->tag, q->arena + e->off, e->len, cqe->res);
        k++;
    }
    io_uring_cq_advance(&q->ring, k);
    return k;
}

/* Non-blocking sends complete during the submission, so one
 * io_uring_enter() usually does it all. Should the kernel refuse the ring
 * (it takes entries in order), the rest go out by send() and the sendq
 * takes no more. */
unsigned sendq_flush(struct sendq *q)
{
    unsigned n = q->n, submitted = 0, reaped = 0, tries = 0;
    while (submitted < n && !q->broken) {
        int rc = io_uring_submit(&q->ring);
        if (rc > 0)
            submitted += (unsigned)rc;
        else if ((rc != -EINTR && rc != -EAGAIN && rc != -EBUSY) || ++tries > 3)
            q->broken = 1;
        reaped += reap(q, 0);
    }
    while (reaped < submitted)
        reaped += reap(q, 1);
    for (unsigned i = submitted; i < n; i++) {
        const struct entry *e = &q->entries[i];
        ssize_t res = send(e->fd, q->arena + e->off, e->len, MSG_DONTWAIT | MSG_NOSIGNAL);
        q->done(q->arg, e->tag, q->arena + e->off, e->len, res < 0 ? -errno : res);
    }
    q->n = 0;
    q->used = 0;
    return submitted;
}
