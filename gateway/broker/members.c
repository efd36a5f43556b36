/* members.c - see members.h. Channels in a fixed hash table (chains grow
 * past it, still correct), each with an array of members: lookups happen on
 * subscribe, unsubscribe and presence queries, not per message. */
#include "broker/members.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/channel.h"

#define BUCKETS 1024

struct chan {
    struct chan *next;
    struct member *v;
    size_t n, cap;
    size_t len;
    char name[];
};

struct members {
    struct chan *buckets[BUCKETS];
};

struct members *members_new(void) { return calloc(1, sizeof(struct members)); }

void members_free(struct members *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < BUCKETS; i++) {
        for (struct chan *c = m->buckets[i], *next; c; c = next) {
            next = c->next;
            free(c->v);
            free(c);
        }
    }
    free(m);
}

static struct chan **find(struct members *m, const char *ch, size_t len)
{
    struct chan **p = &m->buckets[channel_hash(ch, len) % BUCKETS];
    while (*p && ((*p)->len != len || memcmp((*p)->name, ch, len)))
        p = &(*p)->next;
    return p;
}

int members_add(struct members *m, const char *ch, size_t len, const char *session,
                const char *sub)
{
    struct chan **p = find(m, ch, len), *c = *p;
    if (!c) {
        if (!(c = calloc(1, sizeof *c + len)))
            return -1;
        memcpy(c->name, ch, len);
        c->len = len;
        *p = c;
    }
    for (size_t i = 0; i < c->n; i++)
        if (!strcmp(c->v[i].session, session))
            return 0;
    if (c->n == c->cap) {
        size_t cap = c->cap ? 2 * c->cap : 4;
        struct member *v = realloc(c->v, cap * sizeof *v);
        if (!v)
            return -1;
        c->v = v;
        c->cap = cap;
    }
    struct member *e = &c->v[c->n++];
    snprintf(e->session, sizeof e->session, "%s", session);
    snprintf(e->sub, sizeof e->sub, "%s", sub ? sub : "");
    return 0;
}

void members_remove(struct members *m, const char *ch, size_t len, const char *session)
{
    struct chan **p = find(m, ch, len), *c = *p;
    if (!c)
        return;
    for (size_t i = 0; i < c->n; i++) {
        if (!strcmp(c->v[i].session, session)) {
            c->v[i] = c->v[--c->n];
            break;
        }
    }
    if (c->n)
        return;
    *p = c->next;
    free(c->v);
    free(c);
}

void members_of(const struct members *m, const char *ch, size_t len,
                void (*fn)(void *arg, const struct member *v, size_t n), void *arg)
{
    struct chan *c = *find((struct members *)m, ch, len);
    fn(arg, c ? c->v : NULL, c ? c->n : 0);
}

void members_each(const struct members *m,
                  void (*fn)(void *arg, const char *channel, size_t len,
                             const struct member *v, size_t n),
                  void *arg)
{
    for (size_t i = 0; i < BUCKETS; i++)
        for (struct chan *c = m->buckets[i]; c; c = c->next)
            fn(arg, c->name, c->len, c->v, c->n);
}
