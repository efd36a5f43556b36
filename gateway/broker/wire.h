/* wire.h - what the Redis engine reads off the wire besides plain JSON:
 * the position envelope of a publish with history, and stream entry ids.
 * Pure, no allocation; positions are filled, payloads point into buf.
 *
 * A publish on a history channel reaches subscribers (PUBLISH <prefix>C) as
 *     #<offset> <epoch> <json>
 * offset in decimal (1 to 2^53-1, no leading zero), epoch 1-32 bytes of
 * A-Z a-z 0-9 _ -, one space after each. No JSON text starts with '#', so
 * a plain PUBLISH of JSON is always told apart (it has no position). The
 * channel's stream holds entry id <offset>-0 with field "d" = <json>.
 *
 * On a presence channel, sessions joining and leaving are announced on the
 * same Redis channel as
 *     !join <session> <node> <sub>     !leave <session> <node> <sub>
 * (sub empty when anonymous; none of the three holds a space). */
#ifndef WSGATE_WIRE_H
#define WSGATE_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "core/delivery.h"

#define WIRE_OFFSET_MAX 9007199254740991ULL /* 2^53 - 1: exact in JSON */

/* Returns 0 for a plain payload (no position), 1 for an envelope (pos
 * filled, the JSON starts at buf + *skip), -1 for a malformed envelope. */
int wire_parse(const char *buf, size_t len, struct position *pos, size_t *skip);

/* A decimal offset of len bytes: 1..WIRE_OFFSET_MAX, no sign or leading
 * zero. Returns 0 or -1. */
int wire_offset(const char *s, size_t len, uint64_t *out);

/* A presence announcement, NUL-terminated copies. */
struct wire_member {
    int join; /* 1: join, 0: leave */
    char session[33];
    char node[257];
    char sub[129];
};

/* Returns 0 when buf is no presence announcement, 1 with m filled, -1 for
 * a malformed one. */
int wire_presence(const char *buf, size_t len, struct wire_member *m);

/* A stream entry id "<offset>-0". Returns 0 or -1. */
int wire_entry_id(const char *s, size_t len, uint64_t *offset);

#endif
