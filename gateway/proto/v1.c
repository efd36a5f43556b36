/* proto.c - see proto.h. */
#include "proto/v1.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "core/channel.h"
#include "proto/json.h"

/* Ids travel as JSON numbers: only integers a double holds exactly. */
#define ID_LIMIT 9007199254740991.0 /* 2^53 - 1 */

int proto_json_valid(const char *buf, size_t len)
{
    return json_valid(buf, len);
}

int proto_channel_valid(const char *name, size_t len)
{
    return channel_name_valid(name, len);
}

static int fail(struct proto_error *err, const char *code, const char *message)
{
    err->code = code;
    err->message = message;
    return -1;
}

/* Publish and channel fields are taken from the source text: data travels
 * exactly as the client wrote it (cJSON would round large integers and
 * reformat numbers), and the channel is decoded with its length, so an
 * escaped NUL cannot cut it short past the name check. */
static int take_fields(const char *buf, size_t len, struct proto_req *req,
                       struct proto_error *err)
{
    static const char *const keys[] = {"channel", "data"};
    struct json_span span[2];
    json_members(buf, len, keys, span, 2);
    const struct json_span *ch = &span[0], *data = &span[1];
    if (!ch->text || ch->text[0] != '"')
        return fail(err, "bad_request", "\"channel\" must be a string");
    long n = json_string_ascii(ch, req->channel, sizeof req->channel);
    if (n < 0 || !proto_channel_valid(req->channel, (size_t)n))
        return fail(err, "bad_channel",
                    "channel names are 1-200 bytes of A-Z a-z 0-9 _ - . : @ /");
    req->channel_len = (size_t)n;
    if (req->op != OP_PUBLISH)
        return 0;
    if (!data->text)
        return fail(err, "bad_request", "publish needs a \"data\" member");
    req->data = data->text;
    req->data_len = data->len;
    return 0;
}

static cJSON *parse_object(const char *buf, size_t len, struct proto_error *err)
{
    if (!json_valid(buf, len)) {
        fail(err, "bad_json", "not valid JSON (RFC 8259, UTF-8)");
        return NULL;
    }
    cJSON *root = cJSON_ParseWithLength(buf, len);
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

    if (req->op != OP_PING && take_fields(buf, len, req, err) < 0)
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
    cJSON_Delete(root);
    return take_fields(buf, len, req, err);
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
