/* json.h - strict RFC 8259 validation and top-level member spans, in one
 * pass.
 *
 * cJSON (used to read request fields) is lenient: it takes leading zeros,
 * raw control bytes in strings and more. wsgate forwards payloads byte for
 * byte to browsers, whose JSON.parse is strict, so everything forwarded is
 * first checked here. No allocation; recursion is bounded by JSON_MAX_DEPTH.
 * Spans point into the caller's buffer. */
#ifndef WSGATE_JSON_H
#define WSGATE_JSON_H

#include <stddef.h>

#define JSON_MAX_DEPTH 256

/* 1 when buf holds exactly one JSON value, optionally surrounded by JSON
 * whitespace, in valid UTF-8; else 0. buf need not be NUL-terminated. */
int json_valid(const char *buf, size_t len);

struct json_span {
    const char *text; /* NULL when the member is absent */
    size_t len;
};

#define JSON_INVALID -1    /* not one strict JSON value in UTF-8 */
#define JSON_NOT_OBJECT -2 /* valid, but not an object */

/* One pass over buf: validates it as json_valid() does and, when its value
 * is an object, fills out[i] with the source text of the first top-level
 * member named keys[i] (names compared after decoding escapes, as cJSON
 * does; keys are at most 31 bytes). Returns 0, JSON_INVALID or
 * JSON_NOT_OBJECT; out is only meaningful on 0. */
int json_object(const char *buf, size_t len, const char *const *keys,
                struct json_span *out, size_t nkeys);

/* Decodes a span holding a JSON string into out, NUL-terminated. Returns
 * its length (an escaped NUL is kept and counted), or -1 when the span is
 * not a string, decodes to a byte past 0x7F, or needs more than cap bytes. */
long json_string_ascii(const struct json_span *span, char *out, size_t cap);

#endif
