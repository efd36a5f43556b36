/* v1.c - see v1.h. */
#include "proto/v1.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "proto/json.h"

/* Ids travel as JSON numbers: only integers a double holds exactly. */
#define ID_LIMIT 9007199254740991.0 /* 2^53 - 1 */

static int reject(struct v1_error *err, const char *code, const char *message)
{
    err->code = code;
    err->message = message;
    return -1;
}

enum member { M_OP, M_ID, M_CHANNEL, M_DATA, M_COUNT };
static const char *const member_names[M_COUNT] = {"op", "id", "channel", "data"};

/* One pass: strict validation and the members a request uses. */
static int scan(const char *buf, size_t len, struct json_span *m,
                struct v1_error *err)
{
    switch (json_object(buf, len, member_names, m, M_COUNT)) {
    case 0:
        return 0;
    case JSON_NOT_OBJECT:
        return reject(err, "bad_request", "must be a JSON object");
    default:
        return reject(err, "bad_json", "not valid JSON (RFC 8259, UTF-8)");
    }
}

/* An id is a JSON number holding an integer (7.0 and 1e3 count) that a
 * double represents exactly. */
static int take_id(const struct json_span *span, struct v1_req *req,
                   struct v1_error *err)
{
    if (!span->text)
        return 0;
    char num[64]; /* as cJSON reads numbers */
    char c = span->text[0];
    double d = 0.5;
    if ((c == '-' || (c >= '0' && c <= '9')) && span->len < sizeof num) {
        memcpy(num, span->text, span->len);
        num[span->len] = '\0';
        d = strtod(num, NULL);
    }
    if (d != floor(d) || fabs(d) > ID_LIMIT)
        return reject(err, "bad_request", "\"id\" must be an integer");
    req->id = err->id = (struct req_id){1, (int64_t)d};
    return 0;
}

static int take_op(const struct json_span *span, struct v1_req *req,
                   struct v1_error *err)
{
    static const struct { const char *name; enum v1_op op; } ops[] = {
        {"subscribe", OP_SUBSCRIBE}, {"unsubscribe", OP_UNSUBSCRIBE},
        {"publish", OP_PUBLISH}, {"ping", OP_PING},
    };
    if (!span->text || span->text[0] != '"')
        return reject(err, "bad_request", "\"op\" must be a string");
    char name[16];
    long n = json_string_ascii(span, name, sizeof name);
    for (size_t i = 0; n >= 0 && i < sizeof ops / sizeof ops[0]; i++) {
        if ((size_t)n == strlen(ops[i].name) && !strcmp(name, ops[i].name)) {
            req->op = ops[i].op;
            return 0;
        }
    }
    return reject(err, "unknown_op", "op must be subscribe, unsubscribe, publish or ping");
}

/* Publish and channel fields are taken from the source text: data travels
 * exactly as the client wrote it (a JSON library would round large integers
 * and reformat numbers), and the channel is decoded with its length, so an
 * escaped NUL cannot cut it short past the name check. */
static int take_fields(const struct json_span *m, struct v1_req *req,
                       struct v1_error *err)
{
    const struct json_span *ch = &m[M_CHANNEL], *data = &m[M_DATA];
    if (!ch->text || ch->text[0] != '"')
        return reject(err, "bad_request", "\"channel\" must be a string");
    long n = json_string_ascii(ch, req->channel, sizeof req->channel);
    if (n < 0 || !channel_name_valid(req->channel, (size_t)n))
        return reject(err, "bad_channel",
                      "channel names are 1-200 bytes of A-Z a-z 0-9 _ - . : @ /");
    req->channel_len = (size_t)n;
    if (req->op != OP_PUBLISH)
        return 0;
    if (!data->text)
        return reject(err, "bad_request", "publish needs a \"data\" member");
    req->data = data->text;
    req->data_len = data->len;
    return 0;
}

int v1_parse_request(const char *buf, size_t len, struct v1_req *req,
                     struct v1_error *err)
{
    struct json_span m[M_COUNT];
    memset(req, 0, sizeof *req);
    memset(err, 0, sizeof *err);
    if (scan(buf, len, m, err) < 0 || take_id(&m[M_ID], req, err) < 0 ||
        take_op(&m[M_OP], req, err) < 0)
        return -1;
    return req->op == OP_PING ? 0 : take_fields(m, req, err);
}

int v1_parse_publish_body(const char *buf, size_t len, struct v1_req *req,
                          struct v1_error *err)
{
    struct json_span m[M_COUNT];
    memset(req, 0, sizeof *req);
    memset(err, 0, sizeof *err);
    req->op = OP_PUBLISH;
    if (scan(buf, len, m, err) < 0)
        return -1;
    return take_fields(m, req, err);
}

struct msg *v1_encode_message(const struct delivery *d)
{
    static const char a[] = "{\"op\":\"message\",\"channel\":\"";
    static const char b[] = "\",\"data\":";
    char pos[96] = "";
    size_t poslen = 0;
    if (d->pos && d->pos->offset)
        poslen = (size_t)snprintf(pos, sizeof pos, "\",\"offset\":%llu,\"epoch\":\"%s",
                                  (unsigned long long)d->pos->offset, d->pos->epoch);
    size_t len = sizeof a - 1 + d->channel_len + poslen + sizeof b - 1 +
                 d->payload_len + 1;
    struct msg *m = msg_new(len);
    if (!m)
        return NULL;
    unsigned char *p = msg_data(m);
    memcpy(p, a, sizeof a - 1), p += sizeof a - 1;
    memcpy(p, d->channel, d->channel_len), p += d->channel_len;
    memcpy(p, pos, poslen), p += poslen;
    memcpy(p, b, sizeof b - 1), p += sizeof b - 1;
    memcpy(p, d->payload, d->payload_len);
    /* A raw newline in valid JSON is whitespace: blank it so batched frames
     * (objects joined by '\n') still split cleanly. */
    size_t n = d->payload_len;
    for (unsigned char *nl = p; (nl = memchr(nl, '\n', n - (size_t)(nl - p)));)
        *nl = ' ';
    p[n] = '}';
    return m;
}

static struct msg *encode_simple(const char *op, const struct req_id *id)
{
    char buf[64];
    int n = id->has ? snprintf(buf, sizeof buf, "{\"op\":\"%s\",\"id\":%lld}", op,
                               (long long)id->v)
                    : snprintf(buf, sizeof buf, "{\"op\":\"%s\"}", op);
    return msg_from_text(buf, (size_t)n);
}

struct msg *v1_encode_pong(const struct req_id *id)
{
    return encode_simple("pong", id);
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

struct msg *v1_encode_reply(const struct req_id *id, const char *code,
                            const char *message)
{
    if (!code)
        return encode_simple("ack", id);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "op", "error");
    if (id->has) { /* raw, so a large id is not printed in exponent form */
        char num[24];
        snprintf(num, sizeof num, "%lld", (long long)id->v);
        cJSON_AddRawToObject(o, "id", num);
    }
    cJSON_AddStringToObject(o, "code", code);
    cJSON_AddStringToObject(o, "message", message);
    return msg_from_json(o);
}

struct msg *v1_encode_http_error(const char *code, const char *message)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "error", code);
    cJSON_AddStringToObject(o, "message", message);
    return msg_from_json(o);
}

struct msg *v1_encode_welcome(const char *node, const char *session)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "op", "welcome");
    cJSON_AddStringToObject(o, "node", node);
    cJSON_AddStringToObject(o, "session", session);
    return msg_from_json(o);
}
