/* proto.c - see proto.h. */
#include "proto.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

/* Ids travel as JSON numbers: only integers a double holds exactly. */
#define ID_LIMIT 9007199254740992.0 /* 2^53 */

static int utf8_valid(const unsigned char *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        unsigned char c = s[i];
        size_t n;
        uint32_t cp;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            n = 1, cp = c & 0x1F;
        } else if ((c & 0xF0) == 0xE0) {
            n = 2, cp = c & 0x0F;
        } else if ((c & 0xF8) == 0xF0) {
            n = 3, cp = c & 0x07;
        } else {
            return 0;
        }
        if (len - i <= n) /* truncated sequence */
            return 0;
        for (size_t k = 1; k <= n; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return 0;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        /* reject overlong forms, surrogates and values past U+10FFFF */
        if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) ||
            (n == 3 && cp < 0x10000) || cp > 0x10FFFF ||
            (cp >= 0xD800 && cp <= 0xDFFF))
            return 0;
        i += n + 1;
    }
    return 1;
}

/* cJSON accepts trailing bytes after the value unless told otherwise; a
 * frame or payload must be exactly one value. */
static cJSON *parse_exact(const char *buf, size_t len)
{
    const char *end = NULL;
    cJSON *v = cJSON_ParseWithLengthOpts(buf, len, &end, 0);
    if (!v)
        return NULL;
    for (; end && end < buf + len; end++) {
        if (!strchr(" \t\r\n", *end) || *end == '\0') {
            cJSON_Delete(v);
            return NULL;
        }
    }
    return v;
}

int proto_json_valid(const char *buf, size_t len)
{
    if (!utf8_valid((const unsigned char *)buf, len))
        return 0;
    cJSON *v = parse_exact(buf, len);
    cJSON_Delete(v);
    return v != NULL;
}

int proto_channel_valid(const char *name, size_t len)
{
    if (len == 0 || len > PROTO_CHANNEL_MAX)
        return 0;
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.' ||
              c == ':' || c == '@' || c == '/'))
            return 0;
    }
    return 1;
}

static int fail(struct proto_error *err, const char *code, const char *message)
{
    err->code = code;
    err->message = message;
    return -1;
}

static int take_channel(const cJSON *obj, struct proto_req *req,
                        struct proto_error *err)
{
    const cJSON *ch = cJSON_GetObjectItemCaseSensitive(obj, "channel");
    if (!cJSON_IsString(ch))
        return fail(err, "bad_request", "\"channel\" must be a string");
    size_t n = strlen(ch->valuestring);
    if (!proto_channel_valid(ch->valuestring, n))
        return fail(err, "bad_channel",
                    "channel names are 1-200 bytes of A-Z a-z 0-9 _ - . : @ /");
    memcpy(req->channel, ch->valuestring, n + 1);
    req->channel_len = n;
    return 0;
}

static const char *skip_ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n'))
        p++;
    return p;
}

/* Finds the source text of the first member named key of the JSON object
 * in buf, which cJSON has already validated. cJSON parses each key and value
 * in turn to find where it ends. Returns 0 with the span, or -1. */
static int member_span(const char *buf, size_t len, const char *key,
                       const char **out, size_t *outlen)
{
    const char *p = skip_ws(buf, buf + len), *end = buf + len, *stop;
    if (p == end || *p != '{')
        return -1;
    for (p++;; p++) {
        p = skip_ws(p, end);
        cJSON *k = cJSON_ParseWithLengthOpts(p, (size_t)(end - p), &stop, 0);
        int match = cJSON_IsString(k) && !strcmp(k->valuestring, key);
        cJSON_Delete(k);
        if (!k)
            return -1;
        p = skip_ws(stop, end);
        if (p == end || *p != ':')
            return -1;
        p = skip_ws(p + 1, end);
        cJSON *v = cJSON_ParseWithLengthOpts(p, (size_t)(end - p), &stop, 0);
        cJSON_Delete(v);
        if (!v)
            return -1;
        if (match) {
            *out = p;
            *outlen = (size_t)(stop - p);
            return 0;
        }
        p = skip_ws(stop, end);
        if (p == end || *p != ',')
            return -1;
    }
}

/* The payload travels as the client wrote it, not re-encoded by cJSON
 * (which would round large integers and reformat numbers). */
static int take_data(const char *buf, size_t len, const cJSON *obj,
                     struct proto_req *req, struct proto_error *err)
{
    if (!cJSON_GetObjectItemCaseSensitive(obj, "data"))
        return fail(err, "bad_request", "publish needs a \"data\" member");
    if (member_span(buf, len, "data", &req->data, &req->data_len) < 0)
        return fail(err, "bad_request", "\"data\" cannot be located");
    return 0;
}

static cJSON *parse_object(const char *buf, size_t len, struct proto_error *err)
{
    if (!utf8_valid((const unsigned char *)buf, len)) {
        fail(err, "bad_json", "not valid UTF-8");
        return NULL;
    }
    cJSON *root = parse_exact(buf, len);
    if (!root) {
        fail(err, "bad_json", "not valid JSON");
        return NULL;
    }
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        fail(err, "bad_request", "must be a JSON object");
        return NULL;
    }
    return root;
}

int proto_parse_request(const char *buf, size_t len, struct proto_req *req,
                        struct proto_error *err)
{
    memset(req, 0, sizeof *req);
    memset(err, 0, sizeof *err);
    cJSON *root = parse_object(buf, len, err);
    if (!root)
        return -1;

    int rc = -1;
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(root, "id");
    if (id) {
        double d = cJSON_IsNumber(id) ? id->valuedouble : 0.5;
        if (d != floor(d) || fabs(d) > ID_LIMIT) {
            fail(err, "bad_request", "\"id\" must be an integer");
            goto out;
        }
        req->has_id = err->has_id = 1;
        req->id = err->id = (int64_t)d;
    }

    const cJSON *op = cJSON_GetObjectItemCaseSensitive(root, "op");
    if (!cJSON_IsString(op)) {
        fail(err, "bad_request", "\"op\" must be a string");
        goto out;
    }
    const char *o = op->valuestring;
    if (!strcmp(o, "subscribe"))
        req->op = OP_SUBSCRIBE;
    else if (!strcmp(o, "unsubscribe"))
        req->op = OP_UNSUBSCRIBE;
    else if (!strcmp(o, "publish"))
        req->op = OP_PUBLISH;
    else if (!strcmp(o, "ping"))
        req->op = OP_PING;
    else {
        fail(err, "unknown_op", "op must be subscribe, unsubscribe, publish or ping");
        goto out;
    }

    if (req->op != OP_PING && take_channel(root, req, err) < 0)
        goto out;
    if (req->op == OP_PUBLISH && take_data(buf, len, root, req, err) < 0)
        goto out;
    rc = 0;
out:
    cJSON_Delete(root);
    return rc;
}

int proto_parse_publish_body(const char *buf, size_t len,
                             struct proto_req *req, struct proto_error *err)
{
    memset(req, 0, sizeof *req);
    memset(err, 0, sizeof *err);
    req->op = OP_PUBLISH;
    cJSON *root = parse_object(buf, len, err);
    if (!root)
        return -1;
    int rc = take_channel(root, req, err) < 0 ||
                     take_data(buf, len, root, req, err) < 0 ? -1 : 0;
    cJSON_Delete(root);
    return rc;
}

struct msg *proto_encode_message(const char *channel, size_t channel_len,
                                 const char *data, size_t data_len)
{
    static const char a[] = "{\"op\":\"message\",\"channel\":\"";
    static const char b[] = "\",\"data\":";
    size_t len = sizeof a - 1 + channel_len + sizeof b - 1 + data_len + 1;
    struct msg *m = msg_new(len);
    if (!m)
        return NULL;
    unsigned char *p = msg_data(m);
    memcpy(p, a, sizeof a - 1), p += sizeof a - 1;
    memcpy(p, channel, channel_len), p += channel_len;
    memcpy(p, b, sizeof b - 1), p += sizeof b - 1;
    memcpy(p, data, data_len);
    /* A raw newline in valid JSON is whitespace: blank it so batched frames
     * (objects joined by '\n') still split cleanly. */
    for (unsigned char *nl = p; (nl = memchr(nl, '\n', data_len - (size_t)(nl - p)));)
        *nl = ' ';
    p[data_len] = '}';
    return m;
}

static struct msg *msg_from_text(const char *text, size_t len)
{
    struct msg *m = msg_new(len);
    if (m)
        memcpy(msg_data(m), text, len);
    return m;
}

static struct msg *encode_reply(const char *op, int has_id, int64_t id)
{
    char buf[64];
    int n = has_id ? snprintf(buf, sizeof buf, "{\"op\":\"%s\",\"id\":%lld}", op, (long long)id)
                   : snprintf(buf, sizeof buf, "{\"op\":\"%s\"}", op);
    return msg_from_text(buf, (size_t)n);
}

struct msg *proto_encode_ack(int has_id, int64_t id)
{
    return encode_reply("ack", has_id, id);
}

struct msg *proto_encode_pong(int has_id, int64_t id)
{
    return encode_reply("pong", has_id, id);
}

/* Rare frames carrying free text: cJSON does the escaping. */
static struct msg *msg_from_json(cJSON *obj)
{
    char *text = obj ? cJSON_PrintUnformatted(obj) : NULL;
    struct msg *m = text ? msg_from_text(text, strlen(text)) : NULL;
    cJSON_free(text);
    cJSON_Delete(obj);
    return m;
}

struct msg *proto_encode_error(int has_id, int64_t id, const char *code,
                               const char *message)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "op", "error");
    if (has_id) { /* raw, so a large id is not printed in exponent form */
        char num[24];
        snprintf(num, sizeof num, "%lld", (long long)id);
        cJSON_AddRawToObject(o, "id", num);
    }
    cJSON_AddStringToObject(o, "code", code);
    cJSON_AddStringToObject(o, "message", message);
    return msg_from_json(o);
}

struct msg *proto_encode_http_error(const char *code, const char *message)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "error", code);
    cJSON_AddStringToObject(o, "message", message);
    return msg_from_json(o);
}

struct msg *proto_encode_welcome(const char *node, const char *session)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "op", "welcome");
    cJSON_AddStringToObject(o, "node", node);
    cJSON_AddStringToObject(o, "session", session);
    return msg_from_json(o);
}
