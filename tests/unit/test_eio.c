/* test_eio.c - Engine.IO v4 framing: packet types, the open packet, and
 * polling payloads split and joined on 0x1e. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "core/msg.h"
#include "proto/eio.h"

#define MSG_IS(m, text) CHECK_MEM(msg_data(m), (m)->len, text)

static void test_types(void)
{
    CHECK_EQ_INT(eio_type("", 0), EIO_INVALID);
    CHECK_EQ_INT(eio_type("0{}", 3), EIO_OPEN);
    CHECK_EQ_INT(eio_type("2probe", 6), EIO_PING);
    CHECK_EQ_INT(eio_type("42[\"a\"]", 7), EIO_MESSAGE);
    CHECK_EQ_INT(eio_type("6", 1), EIO_NOOP);
    CHECK_EQ_INT(eio_type("7", 1), EIO_INVALID);
    CHECK_EQ_INT(eio_type("x", 1), EIO_INVALID);
    CHECK_EQ_INT(eio_type("bAQI=", 5), EIO_BINARY);
}

static void test_open(void)
{
    struct msg *m = eio_encode_open("0123456789abcdef", 1, 25, 20, 1000000);
    MSG_IS(m, "0{\"sid\":\"0123456789abcdef\",\"upgrades\":[\"websocket\"],"
              "\"pingInterval\":25000,\"pingTimeout\":20000,\"maxPayload\":1000000}");
    msg_unref(m);
    m = eio_encode_open("s", 0, 0.5, 1.25, 10);
    MSG_IS(m, "0{\"sid\":\"s\",\"upgrades\":[],\"pingInterval\":500,"
              "\"pingTimeout\":1250,\"maxPayload\":10}");
    msg_unref(m);
    m = eio_encode_bare(EIO_PING);
    MSG_IS(m, "2");
    msg_unref(m);
}

static void test_payload_split(void)
{
    static const char p[] = "40\x1e" "42[\"a\"]\x1e\x1e" "3";
    const char *cur = p, *end = p + sizeof p - 1, *pkt;
    size_t len;
    const char *want[] = {"40", "42[\"a\"]", "", "3"};
    for (size_t i = 0; i < 4; i++) {
        CHECK_EQ_INT(eio_payload_next(&cur, end, &pkt, &len), 0);
        CHECK_MEM(pkt, len, want[i]);
    }
    CHECK_EQ_INT(eio_payload_next(&cur, end, &pkt, &len), -1);
    cur = end;
    CHECK_EQ_INT(eio_payload_next(&cur, end, &pkt, &len), -1); /* empty payload */
    const char one[] = "2";
    cur = one;
    CHECK_EQ_INT(eio_payload_next(&cur, one + 1, &pkt, &len), 0);
    CHECK_MEM(pkt, len, "2");
    CHECK_EQ_INT(eio_payload_next(&cur, one + 1, &pkt, &len), -1);
}

static void test_payload_join(void)
{
    struct msg *m[3] = {msg_from_text("2", 1), msg_from_text("42[1]", 5),
                        msg_from_text("6", 1)};
    unsigned char out[16];
    size_t n = eio_payload_join(out, m, 3);
    CHECK_MEM(out, n, "2\x1e" "42[1]\x1e" "6");
    CHECK_EQ_UINT(eio_payload_join(out, m, 1), 1);
    for (int i = 0; i < 3; i++)
        msg_unref(m[i]);
}

int main(void)
{
    RUN(test_types);
    RUN(test_open);
    RUN(test_payload_split);
    RUN(test_payload_join);
    return check_summary();
}
