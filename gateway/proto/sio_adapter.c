/* sio_adapter.c - see sio_adapter.h. */
#include "proto/sio_adapter.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>
#include <msgpack.h>

#include "proto/json.h"
#include "proto/sio.h"

/* ---- JSON payload -> MessagePack --------------------------------------- */

static void pack_str(msgpack_packer *pk, const char *s, size_t len)
{
    msgpack_pack_str(pk, len);
    msgpack_pack_str_body(pk, s, len);
}

#define PACK_LIT(pk, s) pack_str(pk, s, sizeof s - 1)

/* Integral numbers as integers, as notepack (the adapter's encoder) does:
 * Node reads both as a Number. */
static void pack_json(msgpack_packer *pk, const cJSON *v)
{
    if (cJSON_IsString(v)) {
        pack_str(pk, v->valuestring, strlen(v->valuestring));
    } else if (cJSON_IsNumber(v)) {
        double d = v->valuedouble;
        if (d == floor(d) && fabs(d) <= 9007199254740991.0)
            msgpack_pack_int64(pk, (int64_t)d);
        else
            msgpack_pack_double(pk, d);
    } else if (cJSON_IsTrue(v)) {
        msgpack_pack_true(pk);
    } else if (cJSON_IsFalse(v)) {
        msgpack_pack_false(pk);
    } else if (cJSON_IsArray(v) || cJSON_IsObject(v)) {
        int n = cJSON_GetArraySize(v);
        if (cJSON_IsArray(v))
            msgpack_pack_array(pk, (size_t)n);
        else
            msgpack_pack_map(pk, (size_t)n);
        for (const cJSON *e = v->child; e; e = e->next) {
            if (cJSON_IsObject(v))
                pack_str(pk, e->string, strlen(e->string));
            pack_json(pk, e);
        }
    } else {
        msgpack_pack_nil(pk);
    }
}

/* msgpack_sbuffer that remembers a failed write (out of memory). */
struct sink {
    msgpack_sbuffer sb;
    int failed;
};

static int sink_write(void *data, const char *buf, size_t len)
{
    struct sink *s = data;
    if (msgpack_sbuffer_write(&s->sb, buf, len) < 0)
        s->failed = 1;
    return 0;
}

char *sio_adapter_encode(const char *uid, const char *payload, size_t len, size_t *out_len)
{
    struct json_span name, args;
    int event = sio_payload_event(payload, len, &name, &args);
    cJSON *root = cJSON_ParseWithLength(payload, len);
    if (!root)
        return NULL; /* valid JSON: only memory can fail */
    const cJSON *ev = event ? cJSON_GetObjectItemCaseSensitive(root, "event") : NULL;
    const cJSON *av = event ? cJSON_GetObjectItemCaseSensitive(root, "args") : NULL;
    struct sink out = {.failed = 0};
    msgpack_packer pk;
    msgpack_sbuffer_init(&out.sb);
    msgpack_packer_init(&pk, &out, sink_write);
    msgpack_pack_array(&pk, 3);
    pack_str(&pk, uid, strlen(uid));
    msgpack_pack_map(&pk, 3);
    PACK_LIT(&pk, "type");
    msgpack_pack_int(&pk, SIO_EVENT);
    PACK_LIT(&pk, "data");
    if (event) { /* ["E", a...] */
        msgpack_pack_array(&pk, 1 + (size_t)cJSON_GetArraySize(av));
        pack_str(&pk, ev->valuestring, strlen(ev->valuestring));
        for (const cJSON *e = av->child; e; e = e->next)
            pack_json(&pk, e);
    } else { /* ["message", payload] */
        msgpack_pack_array(&pk, 2);
        PACK_LIT(&pk, "message");
        pack_json(&pk, root);
    }
    PACK_LIT(&pk, "nsp");
    PACK_LIT(&pk, "/");
    msgpack_pack_map(&pk, 3); /* every socket: no rooms, no exceptions */
    PACK_LIT(&pk, "rooms");
    msgpack_pack_array(&pk, 0);
    PACK_LIT(&pk, "except");
    msgpack_pack_array(&pk, 0);
    PACK_LIT(&pk, "flags");
    msgpack_pack_map(&pk, 0);
    cJSON_Delete(root);
    if (out.failed) {
        msgpack_sbuffer_destroy(&out.sb);
        return NULL;
    }
    *out_len = out.sb.size;
    return msgpack_sbuffer_release(&out.sb);
}

/* ---- MessagePack -> JSON payload --------------------------------------- */

/* A growing JSON text; failed once an allocation failed. */
struct jbuf {
    char *p;
    size_t len, cap;
    int failed;
};

static void put(struct jbuf *b, const char *s, size_t n)
{
    if (b->failed)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->failed = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

#define PUT_LIT(b, s) put(b, s, sizeof s - 1)

/* A JSON string: quotes, backslashes and control bytes escaped; other bytes
 * as they are (the result is checked for UTF-8 at the end). */
static void put_string(struct jbuf *b, const char *s, size_t n)
{
    PUT_LIT(b, "\"");
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        char esc[8];
        put(b, s + run, i - run);
        put(b, esc, (size_t)snprintf(esc, sizeof esc, c < 0x20 ? "\\u%04x" : "\\%c", c));
        run = i + 1;
    }
    put(b, s + run, n - run);
    PUT_LIT(b, "\"");
}

/* The shortest %g text that reads back as d; non-finite numbers as null,
 * as JSON.stringify writes them. */
static void put_double(struct jbuf *b, double d)
{
    char num[32];
    if (!isfinite(d)) {
        PUT_LIT(b, "null");
        return;
    }
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(num, sizeof num, "%.*g", prec, d);
        if (strtod(num, NULL) == d)
            break;
    }
    put(b, num, strlen(num));
}

/* Appends o as JSON. Returns 0, ADAPTER_BINARY for a value JSON cannot
 * carry, or ADAPTER_MALFORMED (why set) for a map key that is no string. */
static int put_value(struct jbuf *b, const msgpack_object *o, int depth, const char **why)
{
    char num[24];
    int rc = 0;
    if (depth > JSON_MAX_DEPTH) {
        *why = "the packet nests too deeply";
        return ADAPTER_MALFORMED;
    }
    switch (o->type) {
    case MSGPACK_OBJECT_NIL:
        PUT_LIT(b, "null");
        break;
    case MSGPACK_OBJECT_BOOLEAN:
        put(b, o->via.boolean ? "true" : "false", o->via.boolean ? 4 : 5);
        break;
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        put(b, num, (size_t)snprintf(num, sizeof num, "%llu", (unsigned long long)o->via.u64));
        break;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        put(b, num, (size_t)snprintf(num, sizeof num, "%lld", (long long)o->via.i64));
        break;
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        put_double(b, o->via.f64);
        break;
    case MSGPACK_OBJECT_STR:
        put_string(b, o->via.str.ptr, o->via.str.size);
        break;
    case MSGPACK_OBJECT_ARRAY:
        PUT_LIT(b, "[");
        for (uint32_t i = 0; !rc && i < o->via.array.size; i++) {
            if (i)
                PUT_LIT(b, ",");
            rc = put_value(b, &o->via.array.ptr[i], depth + 1, why);
        }
        PUT_LIT(b, "]");
        break;
    case MSGPACK_OBJECT_MAP:
        PUT_LIT(b, "{");
        for (uint32_t i = 0; !rc && i < o->via.map.size; i++) {
            const msgpack_object_kv *kv = &o->via.map.ptr[i];
            if (kv->key.type != MSGPACK_OBJECT_STR) {
                *why = "a map key is not a string";
                return ADAPTER_MALFORMED;
            }
            if (i)
                PUT_LIT(b, ",");
            put_string(b, kv->key.via.str.ptr, kv->key.via.str.size);
            PUT_LIT(b, ":");
            rc = put_value(b, &kv->val, depth + 1, why);
        }
        PUT_LIT(b, "}");
        break;
    default: /* BIN, EXT (a Buffer, a Date) */
        *why = "binary or extension values (Buffer, Date) have no JSON form";
        return ADAPTER_BINARY;
    }
    return rc;
}

/* The member of map m named key, or NULL. */
static const msgpack_object *member(const msgpack_object *m, const char *key)
{
    size_t n = strlen(key);
    for (uint32_t i = 0; i < m->via.map.size; i++) {
        const msgpack_object *k = &m->via.map.ptr[i].key;
        if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == n &&
            !memcmp(k->via.str.ptr, key, n))
            return &m->via.map.ptr[i].val;
    }
    return NULL;
}

static int str_is(const msgpack_object *o, const char *s)
{
    size_t n = strlen(s);
    return o->type == MSGPACK_OBJECT_STR && o->via.str.size == n && !memcmp(o->via.str.ptr, s, n);
}

/* The verdict on a decoded [uid, packet, opts] (what Node's onmessage reads
 * of it); on ADAPTER_DELIVERED, the payload written to b. */
static int judge(const msgpack_object *root, struct jbuf *b, const char **why)
{
    const msgpack_object *v = root->type == MSGPACK_OBJECT_ARRAY && root->via.array.size >= 3
                                  ? root->via.array.ptr : NULL;
    if (!v || v[0].type != MSGPACK_OBJECT_STR || v[1].type != MSGPACK_OBJECT_MAP ||
        v[2].type != MSGPACK_OBJECT_MAP) {
        *why = "not an array [uid, packet, opts] of a string and two maps";
        return ADAPTER_MALFORMED;
    }
    size_t plen = sizeof SIO_ADAPTER_UID_PREFIX - 1;
    if (v[0].via.str.size >= plen && !memcmp(v[0].via.str.ptr, SIO_ADAPTER_UID_PREFIX, plen))
        return ADAPTER_FROM_WSGATE;
    const msgpack_object *type = member(&v[1], "type"), *data = member(&v[1], "data"),
                         *nsp = member(&v[1], "nsp"), *rooms = member(&v[2], "rooms");
    if (nsp && !str_is(nsp, "/")) {
        *why = "the packet is for a namespace other than \"/\"";
        return ADAPTER_NAMESPACE;
    }
    if (rooms && rooms->type != MSGPACK_OBJECT_NIL && rooms->type != MSGPACK_OBJECT_ARRAY) {
        *why = "opts.rooms is not an array";
        return ADAPTER_MALFORMED;
    }
    if (rooms && rooms->type == MSGPACK_OBJECT_ARRAY && rooms->via.array.size) {
        *why = "the broadcast is to rooms, and no wsgate client is in one";
        return ADAPTER_ROOMS;
    }
    if (type && type->type == MSGPACK_OBJECT_POSITIVE_INTEGER &&
        type->via.u64 == SIO_BINARY_EVENT) {
        *why = "binary events are not supported";
        return ADAPTER_BINARY;
    }
    if (!type || type->type != MSGPACK_OBJECT_POSITIVE_INTEGER || type->via.u64 != SIO_EVENT ||
        !data || data->type != MSGPACK_OBJECT_ARRAY || !data->via.array.size ||
        data->via.array.ptr[0].type != MSGPACK_OBJECT_STR) {
        *why = "the packet is not an EVENT [\"name\", ...]";
        return ADAPTER_NOT_EVENT;
    }
    const msgpack_object *d = data->via.array.ptr;
    PUT_LIT(b, "{\"event\":");
    put_string(b, d[0].via.str.ptr, d[0].via.str.size);
    PUT_LIT(b, ",\"args\":[");
    int rc = 0;
    for (uint32_t i = 1; !rc && i < data->via.array.size; i++) {
        if (i > 1)
            PUT_LIT(b, ",");
        rc = put_value(b, &d[i], 1, why);
    }
    PUT_LIT(b, "]}");
    if (rc)
        return rc;
    if (!b->failed && !json_valid(b->p, b->len)) {
        *why = "a string is not valid UTF-8";
        return ADAPTER_MALFORMED;
    }
    return ADAPTER_DELIVERED;
}

int sio_adapter_decode(const char *msg, size_t len, char **payload, size_t *plen,
                       const char **why)
{
    msgpack_unpacked u;
    size_t off = 0;
    struct jbuf b = {0};
    int rc;
    msgpack_unpacked_init(&u);
    msgpack_unpack_return r = msgpack_unpack_next(&u, msg, len, &off);
    /* msgpack-c reports nesting past its stack (32 levels) as NOMEM too */
    if (r != MSGPACK_UNPACK_SUCCESS || off != len) {
        *why = r != MSGPACK_UNPACK_SUCCESS ? "not MessagePack, or nested too deeply"
                                           : "bytes follow the MessagePack value";
        rc = ADAPTER_MALFORMED;
    } else {
        rc = judge(&u.data, &b, why);
        if (rc == ADAPTER_DELIVERED && b.failed)
            rc = -1;
    }
    msgpack_unpacked_destroy(&u);
    if (rc == ADAPTER_DELIVERED) {
        *payload = b.p;
        *plen = b.len;
    } else {
        free(b.p);
    }
    return rc;
}
