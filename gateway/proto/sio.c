/* sio.c - see sio.h. */
#include "proto/sio.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "core/channel.h"
#include "proto/json.h"

static int fail(const char **why, const char *sentence)
{
    *why = sentence;
    return -1;
}

static int is_digit(char c) { return c >= '0' && c <= '9'; }

static int is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

int sio_parse(const char *buf, size_t len, struct sio_packet *p, const char **why)
{
    memset(p, 0, sizeof *p);
    p->nsp = "/";
    p->nsp_len = 1;
    if (len == 0 || buf[0] < '0' || buf[0] > '6')
        return fail(why, "a Socket.IO packet starts with a type digit 0-6");
    p->type = (enum sio_type)(buf[0] - '0');
    size_t i = 1;
    if (p->type == SIO_BINARY_EVENT || p->type == SIO_BINARY_ACK) {
        while (i < len && is_digit(buf[i]))
            i++;
        if (i == 1 || i >= len || buf[i] != '-')
            return fail(why, "a binary packet needs its attachment count");
        i++;
    }
    if (i < len && buf[i] == '/') {
        const char *comma = memchr(buf + i, ',', len - i);
        p->nsp = buf + i;
        p->nsp_len = (size_t)((comma ? comma : buf + len) - p->nsp);
        i += p->nsp_len + (comma != NULL);
    }
    if (i < len && is_digit(buf[i])) {
        int64_t id = 0;
        for (; i < len && is_digit(buf[i]); i++) {
            id = id * 10 + (buf[i] - '0');
            if (id > SIO_ID_MAX)
                return fail(why, "the ack id is too large");
        }
        p->has_id = 1;
        p->id = id;
    }
    if (i < len) {
        if (!json_valid(buf + i, len - i))
            return fail(why, "the packet data is not valid JSON");
        p->data = buf + i;
        p->data_len = len - i;
    }
    if (p->type == SIO_CONNECT && p->data && p->data[0] != '{')
        return fail(why, "CONNECT data must be an object");
    return 0;
}

/* The end of the JSON string that starts at s[0] == '"' (validated JSON):
 * the index just past its closing quote. */
static size_t string_end(const char *s, size_t len)
{
    size_t i = 1;
    while (i < len && s[i] != '"')
        i += s[i] == '\\' ? 2 : 1;
    return i + 1;
}

/* Trims JSON whitespace off both ends of [*s, *s + *len). */
static void trim(const char **s, size_t *len)
{
    while (*len && is_ws(**s))
        (*s)++, (*len)--;
    while (*len && is_ws((*s)[*len - 1]))
        (*len)--;
}

/* Splits validated JSON data ["E",a,b...] into the name's text ("E" with
 * its quotes) and the rest "a,b..." (maybe empty). Returns 0 or -1. */
static int split_event(const char *data, size_t len, const char **name, size_t *name_len,
                       const char **rest, size_t *rest_len)
{
    trim(&data, &len);
    if (len < 2 || data[0] != '[')
        return -1;
    const char *in = data + 1;
    size_t in_len = len - 2; /* between the brackets */
    trim(&in, &in_len);
    if (!in_len || in[0] != '"')
        return -1;
    *name = in;
    *name_len = string_end(in, in_len);
    *rest = in + *name_len;
    *rest_len = in_len - *name_len;
    trim(rest, rest_len);
    if (*rest_len) { /* skip the comma after the name */
        (*rest)++, (*rest_len)--;
        trim(rest, rest_len);
    }
    return 0;
}

char *sio_event_payload(const char *data, size_t len, size_t *out_len, const char **why)
{
    static const char a[] = "{\"event\":", b[] = ",\"args\":[", c[] = "]}";
    const char *name, *rest;
    size_t name_len, rest_len;
    *why = NULL;
    if (!data || split_event(data, len, &name, &name_len, &rest, &rest_len) < 0) {
        *why = "an EVENT is an array starting with the event name";
        return NULL;
    }
    size_t n = sizeof a - 1 + name_len + sizeof b - 1 + rest_len + sizeof c - 1;
    char *out = malloc(n + 1), *p = out;
    if (!out)
        return NULL;
    memcpy(p, a, sizeof a - 1), p += sizeof a - 1;
    memcpy(p, name, name_len), p += name_len;
    memcpy(p, b, sizeof b - 1), p += sizeof b - 1;
    memcpy(p, rest, rest_len), p += rest_len;
    memcpy(p, c, sizeof c);
    *out_len = n;
    return out;
}

struct piece {
    const char *s;
    size_t len;
};

/* "4" and the n pieces, one msg. */
static struct msg *cat(const struct piece *v, size_t n)
{
    size_t len = 1;
    for (size_t i = 0; i < n; i++)
        len += v[i].len;
    struct msg *m = msg_new(len);
    if (!m)
        return NULL;
    unsigned char *p = msg_data(m);
    *p++ = '4';
    for (size_t i = 0; i < n; i++)
        memcpy(p, v[i].s, v[i].len), p += v[i].len;
    return m;
}

#define LIT(s) {s, sizeof s - 1}

/* 1 for the names socket.io-client keeps for itself: an event of that name
 * would pass for the client's own "connect" or "disconnect" (Node's server
 * refuses to emit them). name: a JSON string span, compared decoded. */
static int reserved(const struct json_span *name)
{
    static const char *const names[] = {"connect", "connect_error", "disconnect",
                                        "disconnecting", "newListener", "removeListener"};
    char decoded[16];
    long n = json_string_ascii(name, decoded, sizeof decoded);
    for (size_t i = 0; n > 0 && i < sizeof names / sizeof names[0]; i++)
        if (!strcmp(decoded, names[i]))
            return 1;
    return 0;
}

int sio_payload_event(const char *payload, size_t len, struct json_span *name,
                      struct json_span *args)
{
    static const char *const keys[] = {"event", "args"};
    struct json_span m[2];
    if (json_object(payload, len, keys, m, 2) == 0 && m[0].text && m[0].text[0] == '"' &&
        m[1].text && m[1].text[0] == '[' && !reserved(&m[0])) {
        *name = m[0];
        *args = m[1];
        return 1;
    }
    return 0;
}

struct msg *sio_encode_delivery(const char *payload, size_t len)
{
    struct json_span name, array;
    if (sio_payload_event(payload, len, &name, &array)) {
        const char *args = array.text + 1;
        size_t args_len = array.len - 2;
        trim(&args, &args_len);
        struct piece v[] = {LIT("2["), {name.text, name.len}, {",", args_len ? 1 : 0},
                            {args, args_len}, LIT("]")};
        return cat(v, sizeof v / sizeof v[0]);
    }
    struct piece v[] = {LIT("2[\"message\","), {payload, len}, LIT("]")};
    return cat(v, sizeof v / sizeof v[0]);
}

/* Rare packets carrying free text: cJSON does the escaping. */
static struct msg *with_json(const char *prefix, cJSON *obj)
{
    char *text = obj ? cJSON_PrintUnformatted(obj) : NULL;
    struct msg *m = NULL;
    if (text) {
        struct piece v[] = {{prefix, strlen(prefix)}, {text, strlen(text)}};
        m = cat(v, 2);
    }
    cJSON_free(text);
    cJSON_Delete(obj);
    return m;
}

static cJSON *error_object(const char *code, const char *message)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "error", code);
    cJSON_AddStringToObject(o, "message", message);
    return o;
}

struct msg *sio_encode_connected(const char *sid)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "sid", sid);
    return with_json("0", o);
}

struct msg *sio_encode_connect_error(const char *nsp, size_t nsp_len,
                                     const char *code, const char *message)
{
    char prefix[64];
    /* "/" goes unnamed, and so does a name unsafe to echo. */
    if (nsp_len == 1 || nsp_len > sizeof prefix - 3 || !channel_chars(nsp, nsp_len))
        snprintf(prefix, sizeof prefix, "4");
    else
        snprintf(prefix, sizeof prefix, "4%.*s,", (int)nsp_len, nsp);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "message", message);
    if (code)
        cJSON_AddStringToObject(cJSON_AddObjectToObject(o, "data"), "code", code);
    return with_json(prefix, o);
}

struct msg *sio_encode_ack(int64_t id, const char *code, const char *message)
{
    char prefix[32];
    snprintf(prefix, sizeof prefix, "3%lld", (long long)id);
    if (!code) {
        struct piece v[] = {{prefix, strlen(prefix)}, LIT("[]")};
        return cat(v, 2);
    }
    cJSON *a = cJSON_CreateArray();
    cJSON_AddItemToArray(a, error_object(code, message));
    return with_json(prefix, a);
}

struct msg *sio_encode_error_event(const char *code, const char *message)
{
    cJSON *a = cJSON_CreateArray();
    cJSON_AddItemToArray(a, cJSON_CreateString("error"));
    cJSON_AddItemToArray(a, error_object(code, message));
    return with_json("2", a);
}
