/* json.h - strict RFC 8259 validation and top-level member spans.
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

/* For a buf that json_valid() accepted and whose value is an object: fills
 * out[i] with the source text of the first member named keys[i] (names are
 * compared after decoding escapes, as cJSON does). Returns 0, or -1 when the
 * value is not an object. Keys are at most 31 bytes. */
int json_members(const char *buf, size_t len, const char *const *keys,
                 struct json_span *out, size_t nkeys);

/* Decodes a span holding a JSON string into out, NUL-terminated. Returns
 * its length (an escaped NUL is kept and counted), or -1 when the span is
 * not a string, decodes to a byte past 0x7F, or needs more than cap bytes. */
long json_string_ascii(const struct json_span *span, char *out, size_t cap);

#endif
