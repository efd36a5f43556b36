/* json.c - see json.h. */
#include "proto/json.h"

#include <stdint.h>
#include <string.h>

struct scan {
    const unsigned char *p, *end;
    int depth;
    /* json_object(): spans of the top-level members named keys[i] */
    const char *const *keys;
    struct json_span *out;
    size_t nkeys;
};

static void skip_ws(struct scan *s)
{
    while (s->p < s->end &&
           (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
        s->p++;
}

static int hex(unsigned char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* One UTF-8 sequence of two to four bytes; rejects overlong forms,
 * surrogates and code points past U+10FFFF. */
static int utf8_seq(struct scan *s)
{
    unsigned char c = *s->p;
    size_t n;
    uint32_t cp, min;
    if ((c & 0xE0) == 0xC0) n = 1, cp = c & 0x1F, min = 0x80;
    else if ((c & 0xF0) == 0xE0) n = 2, cp = c & 0x0F, min = 0x800;
    else if ((c & 0xF8) == 0xF0) n = 3, cp = c & 0x07, min = 0x10000;
    else return 0;
    if ((size_t)(s->end - s->p) <= n)
        return 0;
    for (size_t k = 1; k <= n; k++) {
        if ((s->p[k] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s->p[k] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    s->p += n + 1;
    return 1;
}

static int string(struct scan *s)
{
    s->p++; /* opening quote */
    while (s->p < s->end) {
        unsigned char c = *s->p;
        if (c == '"') {
            s->p++;
            return 1;
        }
        if (c < 0x20)
            return 0;
        if (c == '\\') {
            if (s->end - s->p < 2)
                return 0;
            c = s->p[1];
            if (c == 'u') {
                if (s->end - s->p < 6 || hex(s->p[2]) < 0 || hex(s->p[3]) < 0 ||
                    hex(s->p[4]) < 0 || hex(s->p[5]) < 0)
                    return 0;
                s->p += 6;
            } else if (strchr("\"\\/bfnrt", c) && c) {
                s->p += 2;
            } else {
                return 0;
            }
        } else if (c < 0x80) {
            s->p++;
        } else if (!utf8_seq(s)) {
            return 0;
        }
    }
    return 0;
}

static int digits(struct scan *s)
{
    const unsigned char *start = s->p;
    while (s->p < s->end && *s->p >= '0' && *s->p <= '9')
        s->p++;
    return s->p > start;
}

static int number(struct scan *s)
{
    if (*s->p == '-')
        s->p++;
    if (s->p < s->end && *s->p == '0')
        s->p++;
    else if (!digits(s))
        return 0;
    if (s->p < s->end && *s->p == '.') {
        s->p++;
        if (!digits(s))
            return 0;
    }
    if (s->p < s->end && (*s->p == 'e' || *s->p == 'E')) {
        s->p++;
        if (s->p < s->end && (*s->p == '+' || *s->p == '-'))
            s->p++;
        if (!digits(s))
            return 0;
    }
    return 1;
}

static int literal(struct scan *s, const char *word)
{
    size_t n = strlen(word);
    if ((size_t)(s->end - s->p) < n || memcmp(s->p, word, n))
        return 0;
    s->p += n;
    return 1;
}

static int value(struct scan *s);
static long decode_ascii(const unsigned char *p, char *out, size_t cap);

/* At the top level of json_object(): keeps the span of value v when the
 * member's name is one of the wanted keys and was not seen before (the
 * first member wins, as with cJSON). */
static void capture(struct scan *s, const unsigned char *key,
                    const unsigned char *v)
{
    char name[32];
    long n = decode_ascii(key, name, sizeof name);
    for (size_t i = 0; n >= 0 && i < s->nkeys; i++) {
        if (!s->out[i].text && strlen(s->keys[i]) == (size_t)n &&
            !strcmp(name, s->keys[i])) {
            s->out[i].text = (const char *)v;
            s->out[i].len = (size_t)(s->p - v);
        }
    }
}

/* Object or array: open, members separated by commas, close. */
static int container(struct scan *s, unsigned char close)
{
    if (++s->depth > JSON_MAX_DEPTH)
        return 0;
    int top = s->depth == 1 && close == '}' && s->nkeys;
    s->p++;
    skip_ws(s);
    if (s->p < s->end && *s->p == close) {
        s->p++;
        s->depth--;
        return 1;
    }
    for (;;) {
        const unsigned char *key = s->p;
        if (close == '}') {
            if (s->p == s->end || *s->p != '"' || !string(s))
                return 0;
            skip_ws(s);
            if (s->p == s->end || *s->p != ':')
                return 0;
            s->p++;
            skip_ws(s);
        }
        const unsigned char *v = s->p;
        if (!value(s))
            return 0;
        if (top)
            capture(s, key, v);
        skip_ws(s);
        if (s->p == s->end)
            return 0;
        if (*s->p == close) {
            s->p++;
            s->depth--;
            return 1;
        }
        if (*s->p != ',')
            return 0;
        s->p++;
        skip_ws(s);
    }
}

static int value(struct scan *s)
{
    if (s->p == s->end)
        return 0;
    switch (*s->p) {
    case '{': return container(s, '}');
    case '[': return container(s, ']');
    case '"': return string(s);
    case 't': return literal(s, "true");
    case 'f': return literal(s, "false");
    case 'n': return literal(s, "null");
    default:
        return (*s->p == '-' || (*s->p >= '0' && *s->p <= '9')) && number(s);
    }
}

static int document(struct scan *s)
{
    skip_ws(s);
    if (!value(s))
        return 0;
    skip_ws(s);
    return s->p == s->end;
}

int json_valid(const char *buf, size_t len)
{
    struct scan s = {(const unsigned char *)buf, (const unsigned char *)buf + len, 0,
                     NULL, NULL, 0};
    return document(&s);
}

int json_object(const char *buf, size_t len, const char *const *keys,
                struct json_span *out, size_t nkeys)
{
    struct scan s = {(const unsigned char *)buf, (const unsigned char *)buf + len, 0,
                     keys, out, nkeys};
    for (size_t i = 0; i < nkeys; i++)
        out[i] = (struct json_span){NULL, 0};
    if (!document(&s))
        return JSON_INVALID;
    const unsigned char *p = (const unsigned char *)buf;
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
        p++;
    return *p == '{' ? 0 : JSON_NOT_OBJECT;
}

/* Decodes a valid JSON string token (p at its opening quote) into out as
 * ASCII. Returns the length, or -1 when it decodes to a byte past 0x7F or
 * does not fit in cap bytes (a NUL terminator included). */
static long decode_ascii(const unsigned char *p, char *out, size_t cap)
{
    static const char from[] = "bfnrt", to[] = "\b\f\n\r\t";
    size_t n = 0;
    for (p++; *p != '"'; n++) {
        unsigned c = *p;
        if (c == '\\') {
            c = p[1];
            if (c == 'u') {
                c = (unsigned)(hex(p[2]) << 12 | hex(p[3]) << 8 | hex(p[4]) << 4 | hex(p[5]));
                p += 6;
            } else {
                const char *f = strchr(from, (int)c);
                c = f && c ? (unsigned char)to[f - from] : c;
                p += 2;
            }
        } else {
            p++;
        }
        if (c > 0x7F || n + 1 >= cap)
            return -1;
        out[n] = (char)c;
    }
    out[n] = '\0';
    return (long)n;
}

long json_string_ascii(const struct json_span *span, char *out, size_t cap)
{
    if (!span->text || span->text[0] != '"')
        return -1;
    return decode_ascii((const unsigned char *)span->text, out, cap);
}
