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

enum member { M_OP, M_ID, M_CHANNEL, M_DATA, M_RECOVER, M_PRESENCE, M_COUNT };
static const char *const member_names[M_COUNT] = {"op", "id", "channel", "data",
                                                  "recover", "presence"};

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
        {"publish", OP_PUBLISH}, {"ping", OP_PING}, {"presence", OP_PRESENCE},
        {"presence_stats", OP_PRESENCE_STATS},
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
    return reject(err, "unknown_op",
                  "op must be subscribe, unsubscribe, publish, ping, presence or presence_stats");
}

/* "recover":{"epoch":E,"offset":N}: E a valid epoch, N a whole number
 * from 0 to 2^53-1 written in plain digits. */
static int take_recover(const struct json_span *span, struct v1_req *req,
                        struct v1_error *err)
{
    static const char *const names[2] = {"epoch", "offset"};
    static const char bad[] =
        "\"recover\" must be {\"epoch\":<epoch from an ack or message>,\"offset\":<integer>}";
    struct json_span f[2];
    if (json_object(span->text, span->len, names, f, 2) != 0 || !f[0].text ||
        !f[1].text || f[0].text[0] != '"')
        return reject(err, "bad_request", bad);
    long n = json_string_ascii(&f[0], req->recover.epoch, sizeof req->recover.epoch);
    if (n < 0 || !position_epoch_valid(req->recover.epoch, (size_t)n))
        return reject(err, "bad_request", bad);
    uint64_t v = 0;
    if (f[1].len < 1 || f[1].len > 16 || (f[1].text[0] == '0' && f[1].len > 1))
        return reject(err, "bad_request", bad);
    for (size_t i = 0; i < f[1].len; i++) {
        if (f[1].text[i] < '0' || f[1].text[i] > '9')
            return reject(err, "bad_request", bad);
        v = v * 10 + (uint64_t)(f[1].text[i] - '0');
    }
    if ((double)v > ID_LIMIT)
        return reject(err, "bad_request", bad);
    req->recover.offset = v;
    req->has_recover = 1;
    return 0;
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
    const struct json_span *pr = &m[M_PRESENCE];
    if (req->op == OP_SUBSCRIBE && pr->text) { /* "presence": true or false */
        if (pr->len == 4 && !memcmp(pr->text, "true", 4))
            req->presence_events = 1;
        else if (pr->len != 5 || memcmp(pr->text, "false", 5))
            return reject(err, "bad_request", "\"presence\" must be true or false");
    }
    if (req->op == OP_SUBSCRIBE && m[M_RECOVER].text)
        return take_recover(&m[M_RECOVER], req, err);
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

/* Epochs and reasons need no escaping: both are [A-Za-z0-9_-]. */
struct msg *v1_encode_ack(const struct req_id *id, const struct ack_position *a)
{
    char buf[256];
    int n = snprintf(buf, sizeof buf, "{\"op\":\"ack\"");
    if (id->has)
        n += snprintf(buf + n, sizeof buf - (size_t)n, ",\"id\":%lld", (long long)id->v);
    if (a->pos)
        n += snprintf(buf + n, sizeof buf - (size_t)n, ",\"epoch\":\"%s\",\"offset\":%llu",
                      a->pos->epoch, (unsigned long long)a->pos->offset);
    if (a->recover && !a->unrecovered)
        n += snprintf(buf + n, sizeof buf - (size_t)n, ",\"recovered\":true");
    else if (a->recover)
        n += snprintf(buf + n, sizeof buf - (size_t)n,
                      ",\"recovered\":false,\"reason\":\"%s\"", a->unrecovered);
    n += snprintf(buf + n, sizeof buf - (size_t)n, "}");
    return msg_from_text(buf, (size_t)n);
}

static struct msg *msg_from_json(cJSON *obj);

/* The members, and the count of distinct non-empty subs, into o. */
static void add_presence(cJSON *o, const char *channel, size_t len,
                         const struct presence_read *r, int members)
{
    char ch[CHANNEL_MAX + 1];
    snprintf(ch, sizeof ch, "%.*s", (int)len, channel);
    cJSON_AddStringToObject(o, "channel", ch);
    size_t users = 0;
    for (size_t i = 0; i < r->n; i++) {
        size_t j = 0;
        while (j < i && strcmp(r->members[j].sub, r->members[i].sub))
            j++;
        users += r->members[i].sub[0] && j == i;
    }
    cJSON_AddNumberToObject(o, "sessions", (double)r->n);
    cJSON_AddNumberToObject(o, "users", (double)users);
    if (!members)
        return;
    cJSON *a = cJSON_AddArrayToObject(o, "members");
    for (size_t i = 0; a && i < r->n; i++) {
        cJSON *m = cJSON_CreateObject();
        cJSON_AddStringToObject(m, "session", r->members[i].session);
        if (r->members[i].sub[0])
            cJSON_AddStringToObject(m, "sub", r->members[i].sub);
        cJSON_AddStringToObject(m, "node", r->members[i].node);
        cJSON_AddItemToArray(a, m);
    }
}

struct msg *v1_encode_presence(const struct req_id *id, const char *channel, size_t len,
                               const struct presence_read *r, int stats)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "op", stats ? "presence_stats" : "presence");
    if (id->has) {
        char num[24];
        snprintf(num, sizeof num, "%lld", (long long)id->v);
        cJSON_AddRawToObject(o, "id", num);
    }
    add_presence(o, channel, len, r, !stats);
    return msg_from_json(o);
}

struct msg *v1_encode_presence_event(const char *channel, size_t len, int join,
                                     const struct presence_member *m)
{
    char ch[CHANNEL_MAX + 1];
    snprintf(ch, sizeof ch, "%.*s", (int)len, channel);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "op", join ? "join" : "leave");
    cJSON_AddStringToObject(o, "channel", ch);
    cJSON_AddStringToObject(o, "session", m->session);
    if (m->sub[0])
        cJSON_AddStringToObject(o, "sub", m->sub);
    cJSON_AddStringToObject(o, "node", m->node);
    return msg_from_json(o);
}

struct msg *v1_encode_presence_http(const char *channel, size_t len,
                                    const struct presence_read *r)
{
    cJSON *o = cJSON_CreateObject();
    add_presence(o, channel, len, r, 1);
    return msg_from_json(o);
}

struct msg *v1_encode_lost(const char *channel, size_t len, const char *why,
                           const struct position *top)
{
    char buf[CHANNEL_MAX + 192];
    int n = snprintf(buf, sizeof buf,
                     "{\"op\":\"lost\",\"channel\":\"%.*s\",\"reason\":\"%s\","
                     "\"epoch\":\"%s\",\"offset\":%llu}",
                     (int)len, channel, why, top->epoch, (unsigned long long)top->offset);
    return msg_from_text(buf, (size_t)n);
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

struct msg *v1_encode_published(const struct position *pos)
{
    char buf[128];
    int n = pos ? snprintf(buf, sizeof buf, "{\"ok\":true,\"offset\":%llu,\"epoch\":\"%s\"}",
                           (unsigned long long)pos->offset, pos->epoch)
                : snprintf(buf, sizeof buf, "{\"ok\":true}");
    return msg_from_text(buf, (size_t)n);
}

struct msg *v1_encode_history(const struct history_read *r)
{
    char head[128];
    int hn = snprintf(head, sizeof head, "{\"epoch\":\"%s\",\"offset\":%llu,\"messages\":[",
                      r->top.epoch, (unsigned long long)r->top.offset);
    size_t len = (size_t)hn + 2;
    for (size_t i = 0; i < r->n; i++)
        len += r->entries[i].len + 40;
    struct msg *m = msg_new(len);
    if (!m)
        return NULL;
    char *p = (char *)msg_data(m), *start = p;
    memcpy(p, head, (size_t)hn), p += hn;
    int first = 1;
    for (size_t i = 0; i < r->n; i++) {
        const struct history_entry *e = &r->entries[i];
        if (!json_valid(e->payload, e->len))
            continue;
        p += sprintf(p, "%s{\"offset\":%llu,\"data\":", first ? "" : ",",
                     (unsigned long long)e->offset);
        memcpy(p, e->payload, e->len), p += e->len;
        *p++ = '}';
        first = 0;
    }
    *p++ = ']';
    *p++ = '}';
    m->len = (uint32_t)(p - start);
    return m;
}

struct msg *v1_encode_http_error(const char *code, const char *message)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "error", code);
    cJSON_AddStringToObject(o, "message", message);
    return msg_from_json(o);
}

struct msg *v1_encode_welcome(const char *node, const char *session, size_t max_message)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "op", "welcome");
    cJSON_AddStringToObject(o, "node", node);
    cJSON_AddStringToObject(o, "session", session);
    cJSON_AddNumberToObject(o, "max_message", (double)max_message);
    return msg_from_json(o);
}
