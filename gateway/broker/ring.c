/* ring.c - see ring.h. */
#include "broker/ring.h"

#include <stdlib.h>
#include <string.h>

struct slot {
    char *payload;
    size_t len;
};

struct ring {
    uint64_t top;     /* offset of the newest slot */
    uint64_t last_us; /* time of the last append */
    unsigned cap, count;
    struct slot slots[]; /* offset o lives at slots[o % cap] */
};

struct ring *ring_new(unsigned cap)
{
    struct ring *r = calloc(1, sizeof *r + (size_t)cap * sizeof(struct slot));
    if (r)
        r->cap = cap;
    return r;
}

void ring_free(struct ring *r)
{
    if (!r)
        return;
    for (unsigned i = 0; i < r->cap; i++)
        free(r->slots[i].payload);
    free(r);
}

uint64_t ring_append(struct ring *r, const char *payload, size_t len, uint64_t now_us)
{
    char *copy = malloc(len ? len : 1);
    if (!copy)
        return 0;
    memcpy(copy, payload, len);
    struct slot *s = &r->slots[(r->top + 1) % r->cap];
    free(s->payload); /* NULL until the ring wraps */
    *s = (struct slot){copy, len};
    r->top++;
    r->last_us = now_us;
    if (r->count < r->cap)
        r->count++;
    return r->top;
}

uint64_t ring_top(const struct ring *r) { return r->top; }

size_t ring_read(const struct ring *r, uint64_t since, uint64_t now_us,
                 uint64_t ttl_us, struct history_entry *out, size_t max)
{
    if (!r->count || now_us - r->last_us >= ttl_us)
        return 0;
    uint64_t first = r->top - r->count + 1;
    if (since + 1 > first)
        first = since + 1;
    size_t n = 0;
    for (uint64_t o = first; o <= r->top && n < max; o++, n++) {
        const struct slot *s = &r->slots[o % r->cap];
        out[n] = (struct history_entry){o, s->payload, s->len};
    }
    return n;
}
