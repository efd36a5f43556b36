/* msg.c - see msg.h. */
#include "core/msg.h"

#include <stdlib.h>
#include <string.h>

/* Every client keeps its ring while its queue is empty (freeing it would
 * cost an allocation per message to an idle subscriber): small to start, it
 * takes 32 bytes of an idle client, not 80; a queue that backs up doubles it. */
#define RING_MIN 2
#define RING_KEEP 64 /* an emptied ring larger than this is given back */

struct msg *msg_new(size_t len)
{
    if (len > UINT32_MAX)
        return NULL;
    struct msg *m = malloc(sizeof *m + MSG_HEADROOM + len);
    if (!m)
        return NULL;
    m->refs = 1;
    m->len = (uint32_t)len;
    m->born_us = 0;
    return m;
}

struct msg *msg_from_text(const char *text, size_t len)
{
    struct msg *m = msg_new(len);
    if (m)
        memcpy(msg_data(m), text, len);
    return m;
}

void msg_unref(struct msg *m)
{
    if (m && --m->refs == 0)
        free(m);
}

static int ring_grow(struct msgq *q)
{
    uint32_t cap = q->cap ? q->cap * 2 : RING_MIN;
    struct msg **ring = malloc(cap * sizeof *ring);
    if (!ring)
        return -1;
    for (uint32_t i = 0; i < q->count; i++)
        ring[i] = q->ring[(q->head + i) % q->cap];
    free(q->ring);
    q->ring = ring;
    q->head = 0;
    q->cap = cap;
    return 0;
}

int msgq_push(struct msgq *q, struct msg *m, size_t limit)
{
    if (q->bytes + m->len > limit)
        return -1;
    if (q->count == q->cap && ring_grow(q) < 0)
        return -2;
    q->ring[(q->head + q->count) % q->cap] = msg_ref(m);
    q->count++;
    q->bytes += m->len;
    return 0;
}

void msgq_pop(struct msgq *q)
{
    if (!q->count)
        return;
    struct msg *m = q->ring[q->head];
    q->head = (q->head + 1) % q->cap;
    q->count--;
    q->bytes -= m->len;
    msg_unref(m);
    if (!q->count && q->cap > RING_KEEP) {
        free(q->ring);
        q->ring = NULL;
        q->cap = q->head = 0;
    }
}

void msgq_clear(struct msgq *q)
{
    while (q->count)
        msgq_pop(q);
    free(q->ring);
    memset(q, 0, sizeof *q);
}
