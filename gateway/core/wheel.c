/* wheel.c - see wheel.h. */
#include "core/wheel.h"

#include <stddef.h>

static void link_at(struct wheel_timer **head, struct wheel_timer *t)
{
    t->next = *head;
    if (t->next)
        t->next->pprev = &t->next;
    t->pprev = head;
    *head = t;
}

void wheel_cancel(struct wheel_timer *t)
{
    if (!t->pprev)
        return;
    *t->pprev = t->next;
    if (t->next)
        t->next->pprev = t->pprev;
    t->next = NULL;
    t->pprev = NULL;
}

void wheel_set(struct wheel *w, struct wheel_timer *t, uint64_t due_us)
{
    uint64_t slot = due_us / WHEEL_RES_US;
    wheel_cancel(t);
    t->due_us = due_us;
    /* A slot already passed would wait a whole revolution: the current one
     * is looked at again by the next wheel_expire(). */
    if (slot < w->next)
        slot = w->next;
    link_at(&w->slots[slot % WHEEL_SLOTS], t);
}

void wheel_expire(struct wheel *w, uint64_t now_us,
                  void (*fn)(struct wheel_timer *t, void *arg), void *arg)
{
    uint64_t last = now_us / WHEEL_RES_US;
    if (last < w->next)
        return;
    uint64_t first = last - w->next >= WHEEL_SLOTS ? last - WHEEL_SLOTS + 1 : w->next;
    /* The slot holding now_us stays current: what is due later in its span
     * is looked at again next time. */
    w->next = last;
    /* What is due moves to a list of its own before fn runs, so a timer fn
     * sets again waits for the next call, and one fn cancels is skipped. */
    struct wheel_timer *due = NULL;
    for (uint64_t s = first; s <= last; s++) {
        for (struct wheel_timer *t = w->slots[s % WHEEL_SLOTS], *next; t; t = next) {
            next = t->next;
            if (t->due_us <= now_us) {
                wheel_cancel(t);
                link_at(&due, t);
            }
        }
    }
    while (due) {
        struct wheel_timer *t = due;
        wheel_cancel(t);
        fn(t, arg);
    }
}
