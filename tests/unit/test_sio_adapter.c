/* test_sio_adapter.c - @socket.io/redis-adapter messages: what wsgate
 * publishes (read back field by field), channel payloads round-tripped, and
 * the verdict on every kind of message a Node cluster or a stranger may put
 * on socket.io#/#. Messages are built with msgpack-c's packer, as Node's
 * notepack would lay them out. */
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>

#include "check.h"
#include "proto/sio_adapter.h"

/* ---- building messages -------------------------------------------------- */

struct mb {
    msgpack_sbuffer sb;
    msgpack_packer pk;
};

static void mb_init(struct mb *m)
{
    msgpack_sbuffer_init(&m->sb);
    msgpack_packer_init(&m->pk, &m->sb, msgpack_sbuffer_write);
}

static void str(struct mb *m, const char *s)
{
    msgpack_pack_str(&m->pk, strlen(s));
    msgpack_pack_str_body(&m->pk, s, strlen(s));
}

/* [uid, {type, data:[event, "x"], nsp}, {rooms:[rooms...], except:[], flags:{}}];
 * nsp NULL: no nsp member. */
static void message(struct mb *m, const char *uid, int type, const char *nsp, int nrooms)
{
    mb_init(m);
    msgpack_pack_array(&m->pk, 3);
    str(m, uid);
    msgpack_pack_map(&m->pk, nsp ? 3 : 2);
    str(m, "type");
    msgpack_pack_int(&m->pk, type);
    str(m, "data");
    msgpack_pack_array(&m->pk, 2);
    str(m, "chat message");
    str(m, "x");
    if (nsp) {
        str(m, "nsp");
        str(m, nsp);
    }
    msgpack_pack_map(&m->pk, 3);
    str(m, "rooms");
    msgpack_pack_array(&m->pk, (size_t)nrooms);
    for (int i = 0; i < nrooms; i++)
        str(m, i ? "r2" : "r1");
    str(m, "except");
    msgpack_pack_array(&m->pk, 1);
    str(m, "someNodeSocketId");
    str(m, "flags");
    msgpack_pack_map(&m->pk, 0);
}

/* [uid, {type:2, data:<what fill packs>, nsp:"/"}, {}] */
static void event_with(struct mb *m, void (*fill)(struct mb *))
{
    mb_init(m);
    msgpack_pack_array(&m->pk, 3);
    str(m, "nodeUi");
    msgpack_pack_map(&m->pk, 3);
    str(m, "type");
    msgpack_pack_int(&m->pk, 2);
    str(m, "data");
    fill(m);
    str(m, "nsp");
    str(m, "/");
    msgpack_pack_map(&m->pk, 0);
}

static int decode(const struct mb *m, char **payload, const char **why)
{
    size_t len;
    *payload = NULL;
    *why = NULL;
    return sio_adapter_decode(m->sb.data, m->sb.size, payload, &len, why);
}

#define CHECK_VERDICT(m, want)                                              \
    do {                                                                    \
        char *p_;                                                           \
        const char *why_;                                                   \
        CHECK_EQ_INT(decode(m, &p_, &why_), want);                          \
        CHECK_NULL(p_);                                                     \
        CHECK(want == ADAPTER_FROM_WSGATE || (why_ && why_[0]));            \
        msgpack_sbuffer_destroy(&(m)->sb);                                  \
    } while (0)

/* ---- what wsgate publishes ---------------------------------------------- */

static const msgpack_object *get(const msgpack_object *map, const char *key)
{
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        const msgpack_object *k = &map->via.map.ptr[i].key;
        if (k->via.str.size == strlen(key) && !memcmp(k->via.str.ptr, key, k->via.str.size))
            return &map->via.map.ptr[i].val;
    }
    return NULL;
}

static int obj_str(const msgpack_object *o, const char *s)
{
    return o && o->type == MSGPACK_OBJECT_STR && o->via.str.size == strlen(s) &&
           !memcmp(o->via.str.ptr, s, o->via.str.size);
}

static void test_encode_layout(void)
{
    const char *payload = "{\"event\":\"chat message\",\"args\":[\"salut\",2,1.5,null,true]}";
    size_t n;
    char *msg = sio_adapter_encode("wsgate-0123", payload, strlen(payload), &n);
    CHECK_NOT_NULL(msg);
    msgpack_unpacked u;
    size_t off = 0;
    msgpack_unpacked_init(&u);
    CHECK_EQ_INT(msgpack_unpack_next(&u, msg, n, &off), MSGPACK_UNPACK_SUCCESS);
    CHECK_EQ_UINT(off, n);
    const msgpack_object *root = &u.data;
    CHECK_EQ_INT(root->type, MSGPACK_OBJECT_ARRAY);
    CHECK_EQ_UINT(root->via.array.size, 3);
    const msgpack_object *v = root->via.array.ptr;
    CHECK(obj_str(&v[0], "wsgate-0123"));
    const msgpack_object *type = get(&v[1], "type"), *data = get(&v[1], "data");
    CHECK(type && type->type == MSGPACK_OBJECT_POSITIVE_INTEGER && type->via.u64 == 2);
    CHECK(obj_str(get(&v[1], "nsp"), "/"));
    CHECK(data && data->type == MSGPACK_OBJECT_ARRAY && data->via.array.size == 6);
    if (data && data->via.array.size == 6) {
        const msgpack_object *d = data->via.array.ptr;
        CHECK(obj_str(&d[0], "chat message"));
        CHECK(obj_str(&d[1], "salut"));
        CHECK(d[2].type == MSGPACK_OBJECT_POSITIVE_INTEGER && d[2].via.u64 == 2);
        CHECK(d[3].type == MSGPACK_OBJECT_FLOAT64 && d[3].via.f64 == 1.5);
        CHECK(d[4].type == MSGPACK_OBJECT_NIL);
        CHECK(d[5].type == MSGPACK_OBJECT_BOOLEAN && d[5].via.boolean);
    }
    const msgpack_object *rooms = get(&v[2], "rooms"), *except = get(&v[2], "except"),
                         *flags = get(&v[2], "flags");
    CHECK(rooms && rooms->type == MSGPACK_OBJECT_ARRAY && rooms->via.array.size == 0);
    CHECK(except && except->type == MSGPACK_OBJECT_ARRAY && except->via.array.size == 0);
    CHECK(flags && flags->type == MSGPACK_OBJECT_MAP && flags->via.map.size == 0);
    msgpack_unpacked_destroy(&u);

    /* a wsgate node skips what a wsgate node published, its own included */
    char *p;
    size_t plen;
    const char *why;
    CHECK_EQ_INT(sio_adapter_decode(msg, n, &p, &plen, &why), ADAPTER_FROM_WSGATE);
    free(msg);
}

/* Encoded under a Node-like uid, decoded back: the payload Socket.IO
 * clients would see. */
static void check_round_trip_at(int line, const char *payload, const char *want)
{
    size_t n, plen = 0;
    char *msg = sio_adapter_encode("nodeUi", payload, strlen(payload), &n), *p = NULL;
    const char *why = NULL;
    int v = msg ? sio_adapter_decode(msg, n, &p, &plen, &why) : -1;
    CHECK_AT(__FILE__, line, v == ADAPTER_DELIVERED);
    CHECK_AT(__FILE__, line, p && plen == strlen(want) && !memcmp(p, want, plen));
    if (p && strcmp(p, want))
        fprintf(stderr, "  got %s\n  want %s\n", p, want);
    free(msg);
    free(p);
}
#define CHECK_ROUND_TRIP(payload, want) check_round_trip_at(__LINE__, payload, want)

static void test_round_trip(void)
{
    CHECK_ROUND_TRIP("{\"event\":\"chat message\",\"args\":[\"salut\"]}",
                     "{\"event\":\"chat message\",\"args\":[\"salut\"]}");
    CHECK_ROUND_TRIP("{\"event\":\"ping\",\"args\":[]}", "{\"event\":\"ping\",\"args\":[]}");
    CHECK_ROUND_TRIP("{ \"args\" : [ 1 , -2 , 0.1, 1e300, -9007199254740991, 18446744073709551615 ],"
                     " \"event\" : \"n\" }",
                     "{\"event\":\"n\",\"args\":[1,-2,0.1,1e+300,-9007199254740991,"
                     "1.8446744073709552e+19]}");
    CHECK_ROUND_TRIP("{\"event\":\"s\",\"args\":[\"q\\\"b\\\\ \\n\\u0001 \\u00e9 \\ud83d\\ude00\"]}",
                     "{\"event\":\"s\",\"args\":[\"q\\\"b\\\\ \\u000a\\u0001 \xc3\xa9 "
                     "\xf0\x9f\x98\x80\"]}");
    CHECK_ROUND_TRIP("{\"event\":\"o\",\"args\":[{\"a\":[{}, []],\"b\":false}]}",
                     "{\"event\":\"o\",\"args\":[{\"a\":[{},[]],\"b\":false}]}");
    /* anything else travels whole as the event "message", as Socket.IO
     * clients of wsgate get it; so do events the client reserves */
    CHECK_ROUND_TRIP("\"hello\"", "{\"event\":\"message\",\"args\":[\"hello\"]}");
    CHECK_ROUND_TRIP("{\"title\":\"hi\"}", "{\"event\":\"message\",\"args\":[{\"title\":\"hi\"}]}");
    CHECK_ROUND_TRIP("{\"event\":\"connect\",\"args\":[]}",
                     "{\"event\":\"message\",\"args\":[{\"event\":\"connect\",\"args\":[]}]}");
}

/* ---- verdicts ----------------------------------------------------------- */

static void fill_binary(struct mb *m)
{
    msgpack_pack_array(&m->pk, 2);
    str(m, "file");
    msgpack_pack_bin(&m->pk, 3);
    msgpack_pack_bin_body(&m->pk, "\x01\x02\x03", 3);
}

static void fill_date(struct mb *m)
{
    msgpack_pack_array(&m->pk, 2);
    str(m, "when");
    msgpack_pack_ext(&m->pk, 4, -1);
    msgpack_pack_ext_body(&m->pk, "\x00\x00\x00\x01", 4);
}

static void fill_number_name(struct mb *m)
{
    msgpack_pack_array(&m->pk, 1);
    msgpack_pack_int(&m->pk, 7);
}

static void fill_int_key(struct mb *m)
{
    msgpack_pack_array(&m->pk, 2);
    str(m, "e");
    msgpack_pack_map(&m->pk, 1);
    msgpack_pack_int(&m->pk, 1);
    str(m, "v");
}

static void fill_bad_utf8(struct mb *m)
{
    msgpack_pack_array(&m->pk, 2);
    str(m, "e");
    msgpack_pack_str(&m->pk, 2);
    msgpack_pack_str_body(&m->pk, "\xff\xfe", 2);
}

static void fill_deep(struct mb *m)
{
    msgpack_pack_array(&m->pk, 2);
    str(m, "e");
    for (int i = 0; i < 300; i++)
        msgpack_pack_array(&m->pk, 1);
    msgpack_pack_nil(&m->pk);
}

static void test_verdicts(void)
{
    struct mb m;
    char *p;
    const char *why;

    /* io.emit and socket.broadcast.emit (except names Node sockets, none of
     * them wsgate's): delivered; nsp may be left out, as "/" */
    message(&m, "nodeUi", 2, NULL, 0);
    CHECK_EQ_INT(decode(&m, &p, &why), ADAPTER_DELIVERED);
    CHECK_STR(p, "{\"event\":\"chat message\",\"args\":[\"x\"]}");
    free(p);
    msgpack_sbuffer_destroy(&m.sb);

    message(&m, "wsgate-deadbeef", 2, "/", 0);
    CHECK_VERDICT(&m, ADAPTER_FROM_WSGATE);
    message(&m, "nodeUi", 2, "/", 2);
    CHECK_VERDICT(&m, ADAPTER_ROOMS);
    message(&m, "nodeUi", 2, "/admin", 0);
    CHECK_VERDICT(&m, ADAPTER_NAMESPACE);
    message(&m, "nodeUi", 5, "/", 0);
    CHECK_VERDICT(&m, ADAPTER_BINARY);
    message(&m, "nodeUi", 3, "/", 0);
    CHECK_VERDICT(&m, ADAPTER_NOT_EVENT);
    event_with(&m, fill_binary);
    CHECK_VERDICT(&m, ADAPTER_BINARY);
    event_with(&m, fill_date);
    CHECK_VERDICT(&m, ADAPTER_BINARY);
    event_with(&m, fill_number_name);
    CHECK_VERDICT(&m, ADAPTER_NOT_EVENT);
    event_with(&m, fill_int_key);
    CHECK_VERDICT(&m, ADAPTER_MALFORMED);
    event_with(&m, fill_bad_utf8);
    CHECK_VERDICT(&m, ADAPTER_MALFORMED);
    event_with(&m, fill_deep);
    CHECK_VERDICT(&m, ADAPTER_MALFORMED);

    /* not [uid, packet, opts] */
    mb_init(&m);
    str(&m, "hello");
    CHECK_VERDICT(&m, ADAPTER_MALFORMED);
    mb_init(&m);
    msgpack_pack_array(&m.pk, 2);
    str(&m, "nodeUi");
    msgpack_pack_map(&m.pk, 0);
    CHECK_VERDICT(&m, ADAPTER_MALFORMED);
    message(&m, "nodeUi", 2, "/", 0); /* then cut short, or followed by more */
    m.sb.size--;
    CHECK_VERDICT(&m, ADAPTER_MALFORMED);
    message(&m, "nodeUi", 2, "/", 0);
    msgpack_pack_nil(&m.pk);
    CHECK_VERDICT(&m, ADAPTER_MALFORMED);
    static const char garbage[][4] = {{'\xc1'}, {'{', '}'}, {'\x93', '\xa1', 'a'}};
    for (size_t i = 0; i < sizeof garbage / sizeof garbage[0]; i++) {
        size_t len;
        p = NULL;
        CHECK_EQ_INT(sio_adapter_decode(garbage[i], strlen(garbage[i]), &p, &len, &why),
                     ADAPTER_MALFORMED);
        CHECK_NULL(p);
    }
    CHECK_EQ_INT(sio_adapter_decode("", 0, &p, &(size_t){0}, &why), ADAPTER_MALFORMED);
}

int main(void)
{
    RUN(test_encode_layout);
    RUN(test_round_trip);
    RUN(test_verdicts);
    return check_summary();
}
