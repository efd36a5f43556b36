/* members.h - the sessions of this node present on each channel (opt-in
 * presence): what the embedded engine answers from, and what the Redis
 * engine keeps refreshing in Redis. Pure bookkeeping, no I/O.
 *
 * Ownership: the caller owns the registry (members_free); the registry
 * owns copies of channel names, session ids and subs. Pointers handed to a
 * visit callback are valid during the call only. */
#ifndef WSGATE_MEMBERS_H
#define WSGATE_MEMBERS_H

#include <stddef.h>

#include "core/auth.h"

#define MEMBER_SESSION_MAX 32

struct member {
    char session[MEMBER_SESSION_MAX + 1];
    char sub[AUTH_SUB_MAX + 1]; /* "" for an anonymous session */
};

struct members;

struct members *members_new(void);
void members_free(struct members *m);

/* Adds session (with its sub, "" for none) to channel; a session already
 * there is kept once. Returns 0, or -1 when out of memory. */
int members_add(struct members *m, const char *channel, size_t len,
                const char *session, const char *sub);
/* Removes it; a channel left empty is forgotten. */
void members_remove(struct members *m, const char *channel, size_t len,
                    const char *session);

/* Calls fn with the channel's members (n may be 0). */
void members_of(const struct members *m, const char *channel, size_t len,
                void (*fn)(void *arg, const struct member *v, size_t n), void *arg);

/* Calls fn once per channel with members. */
void members_each(const struct members *m,
                  void (*fn)(void *arg, const char *channel, size_t len,
                             const struct member *v, size_t n),
                  void *arg);

#endif
