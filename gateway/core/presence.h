/* presence.h - who is subscribed to a channel, as a presence read returns
 * it (broker.h: presence()). Everything is borrowed for the duration of
 * the read's callback. */
#ifndef WSGATE_PRESENCE_H
#define WSGATE_PRESENCE_H

#include <stddef.h>

/* One session present on a channel, on some node. */
struct presence_member {
    const char *session;
    const char *sub;  /* the token's "sub"; "" when anonymous */
    const char *node;
};

struct presence_read {
    const struct presence_member *members;
    size_t n;
};

#endif
