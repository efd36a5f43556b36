/* test_sio.c - Socket.IO v5 packets: parsing (types, namespaces, ack ids,
 * data, malformed input), the EVENT <-> channel payload mapping, and the
 * packets the gateway sends. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "core/msg.h"
#include "proto/sio.h"

#define MSG_IS(m, text) CHECK_MEM(msg_data(m), (m)->len, text)

static int parse(const char *s, struct sio_packet *p, const char **why)
{
    return sio_parse(s, strlen(s), p, why);
}

static void test_parse(void)
{
    struct sio_packet p;
    const char *why;
    CHECK_EQ_INT(parse("0", &p, &why), 0);
    CHECK_EQ_INT(p.type, SIO_CONNECT);
    CHECK_MEM(p.nsp, p.nsp_len, "/");
    CHECK_NULL(p.data);
    CHECK_EQ_INT(parse("0{\"token\":\"t\"}", &p, &why), 0);
    CHECK_MEM(p.data, p.data_len, "{\"token\":\"t\"}");
    CHECK_EQ_INT(parse("0/admin,", &p, &why), 0);
    CHECK_MEM(p.nsp, p.nsp_len, "/admin");
    CHECK_EQ_INT(parse("2[\"chat message\",\"salut\"]", &p, &why), 0);
    CHECK_EQ_INT(p.type, SIO_EVENT);
    CHECK_EQ_INT(p.has_id, 0);
    CHECK_EQ_INT(parse("213[\"a\"]", &p, &why), 0);
    CHECK_EQ_INT(p.has_id, 1);
    CHECK_EQ_INT(p.id, 13);
    CHECK_MEM(p.data, p.data_len, "[\"a\"]");
    CHECK_EQ_INT(parse("2/chat,7[\"a\"]", &p, &why), 0);
    CHECK_MEM(p.nsp, p.nsp_len, "/chat");
    CHECK_EQ_INT(p.id, 7);
    CHECK_EQ_INT(parse("1", &p, &why), 0);
    CHECK_EQ_INT(p.type, SIO_DISCONNECT);
    CHECK_EQ_INT(parse("51-[\"up\",{\"_placeholder\":true,\"num\":0}]", &p, &why), 0);
    CHECK_EQ_INT(p.type, SIO_BINARY_EVENT);
    CHECK_EQ_INT(parse("9007199254740991[1]", &p, &why), -1); /* type 9 */
    CHECK_EQ_INT(parse("29007199254740991[1]", &p, &why), 0);
    CHECK_EQ_INT(p.id, 9007199254740991LL);
}

static void test_parse_bad(void)
{
    struct sio_packet p;
    const char *why = NULL;
    static const char *const bad[] = {
        "", "7", "x", "2[\"a\"", "2{bad}", "0\"str\"", "0[1]", "5[\"a\"]", "5-[\"a\"]",
        "29007199254740992[1]", "2[\"a\"]\x1e", "2/nsp,[\"\xff\"]",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        why = NULL;
        CHECK_MSG(parse(bad[i], &p, &why) == -1 && why, "accepted: %s", bad[i]);
    }
}

static void event_is(const char *data, const char *want)
{
    const char *why;
    size_t n;
    char *out = sio_event_payload(data, strlen(data), &n, &why);
    if (!want) {
        CHECK_MSG(!out && why, "accepted: %s", data);
        free(out);
        return;
    }
    CHECK_NOT_NULL(out);
    if (out)
        CHECK_MEM(out, n, want);
    free(out);
}

static void test_event_payload(void)
{
    event_is("[\"chat message\",\"salut\"]", "{\"event\":\"chat message\",\"args\":[\"salut\"]}");
    event_is("[\"e\"]", "{\"event\":\"e\",\"args\":[]}");
    event_is(" [ \"e\\\"q\" , 1 , {\"a\":[2]} ] ", "{\"event\":\"e\\\"q\",\"args\":[1 , {\"a\":[2]}]}");
    event_is("[\"\\\\\",null]", "{\"event\":\"\\\\\",\"args\":[null]}");
    event_is("[]", NULL);
    event_is("[1,2]", NULL);
    event_is("{\"event\":\"e\"}", NULL);
}

static void delivery_is(const char *payload, const char *want)
{
    struct msg *m = sio_encode_delivery(payload, strlen(payload));
    CHECK_NOT_NULL(m);
    if (m)
        MSG_IS(m, want);
    msg_unref(m);
}

static void test_delivery(void)
{
    delivery_is("{\"event\":\"chat message\",\"args\":[\"salut\"]}",
                "42[\"chat message\",\"salut\"]");
    delivery_is("{\"args\":[1, [2]],\"event\":\"e\",\"x\":0}", "42[\"e\",1, [2]]");
    delivery_is("{\"event\":\"e\",\"args\":[ ]}", "42[\"e\"]");
    delivery_is("\"hello\"", "42[\"message\",\"hello\"]");
    delivery_is("{\"event\":1,\"args\":[]}", "42[\"message\",{\"event\":1,\"args\":[]}]");
    delivery_is("{\"event\":\"e\",\"args\":{}}", "42[\"message\",{\"event\":\"e\",\"args\":{}}]");
    /* names the client keeps for itself, escaped or not */
    delivery_is("{\"event\":\"connect\",\"args\":[]}",
                "42[\"message\",{\"event\":\"connect\",\"args\":[]}]");
    delivery_is("{\"event\":\"\\u0064isconnect\",\"args\":[1]}",
                "42[\"message\",{\"event\":\"\\u0064isconnect\",\"args\":[1]}]");
    delivery_is("{\"event\":\"connection\",\"args\":[]}", "42[\"connection\"]");
}

static void test_encoders(void)
{
    struct msg *m = sio_encode_connected("0123456789abcdef");
    MSG_IS(m, "40{\"sid\":\"0123456789abcdef\"}");
    msg_unref(m);
    m = sio_encode_connect_error("/admin", 6, NULL, "Invalid namespace");
    MSG_IS(m, "44/admin,{\"message\":\"Invalid namespace\"}");
    msg_unref(m);
    m = sio_encode_connect_error("/\x1e\"", 3, "c", "m");
    MSG_IS(m, "44{\"message\":\"m\",\"data\":{\"code\":\"c\"}}"); /* unsafe name not echoed */
    msg_unref(m);
    m = sio_encode_ack(12, NULL, NULL);
    MSG_IS(m, "4312[]");
    msg_unref(m);
    m = sio_encode_ack(3, "rate_limited", "slow \"down\"");
    MSG_IS(m, "433[{\"error\":\"rate_limited\",\"message\":\"slow \\\"down\\\"\"}]");
    msg_unref(m);
    m = sio_encode_error_event("bad_request", "no");
    MSG_IS(m, "42[\"error\",{\"error\":\"bad_request\",\"message\":\"no\"}]");
    msg_unref(m);
}

int main(void)
{
    RUN(test_parse);
    RUN(test_parse_bad);
    RUN(test_event_payload);
    RUN(test_delivery);
    RUN(test_encoders);
    return check_summary();
}
