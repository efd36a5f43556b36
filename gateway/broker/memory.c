/* memory.c - the embedded engine: publish hands the payload straight
 * back to the hub of this process. See broker.h for the contract. */
#include <stdlib.h>

#include "broker/broker.h"

static int mem_subscribe(struct broker *b, const char *const *chs,
                         const size_t *lens, size_t n)
{
    for (size_t i = 0; i < n; i++)
        b->ev.subscribed(b->ev.ctx, chs[i], lens[i]);
    return 0;
}

static void mem_unsubscribe(struct broker *b, const char *ch, size_t len)
{
    (void)b, (void)ch, (void)len;
}

static int mem_publish(struct broker *b, const char *ch, size_t chlen,
                       const char *payload, size_t len, broker_done_fn done,
                       void *arg)
{
    b->ev.message(b->ev.ctx, ch, chlen, payload, len, NULL);
    done(arg, 1, NULL);
    return 0;
}

static void mem_destroy(struct broker *b) { free(b); }

static const struct broker_ops memory_ops = {
    .subscribe = mem_subscribe,
    .unsubscribe = mem_unsubscribe,
    .publish = mem_publish,
    .destroy = mem_destroy,
};

struct broker *broker_memory_new(const struct broker_events *ev)
{
    struct broker *b = calloc(1, sizeof *b);
    if (!b)
        return NULL;
    b->ops = &memory_ops;
    b->ev = *ev;
    return b;
}
