/* test_proto.c - client protocol v1: parsing, validation, encoding. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "check.h"
#include "proto/json.h"
#include "proto/v1.h"

/* J("{'op':'ping'}") -> {"op":"ping"}: single quotes become double quotes,
 * to keep frames readable. Rotating static buffers; NUL-terminated. */
static const char *J(const char *s)
{
    static char bufs[4][4096];
    static int k;
    char *b = bufs[k++ & 3];
    size_t n = strlen(s);
    if (n >= sizeof bufs[0])
        n = sizeof bufs[0] - 1;
    for (size_t i = 0; i < n; i++)
        b[i] = s[i] == '\'' ? '"' : s[i];
    b[n] = '\0';
    return b;
}

static struct msg *ack(int has_id, int64_t id)
{
    return v1_encode_reply(&(struct req_id){has_id, id}, NULL, NULL);
}

static struct msg *message(const char *channel, size_t len, const char *data,
                           size_t data_len)
{
    struct delivery d = {.channel = channel, .channel_len = len,
                         .payload = data, .payload_len = data_len};
    return v1_encode_message(&d);
}

static char *repeat(char c, size_t n)
{
    static char bufs[2][1024];
    static int k;
    char *b = bufs[k++ & 1];
    memset(b, c, n);
    b[n] = '\0';
    return b;
}

/* ---- v1_parse_request: success paths ----------------------------- */

static int parse_ok_at(int line, const char *frame, struct v1_req *r)
{
    struct v1_error e;
    int rc = v1_parse_request(frame, strlen(frame), r, &e);
    check_record(rc == 0, __FILE__, line, "parse(%s) = %d (%s: %s), want 0",
                 check_show(frame, strlen(frame)), rc, rc ? e.code : "", rc ? e.message : "");
    return rc == 0;
}
#define PARSE_OK(frame, r) parse_ok_at(__LINE__, frame, r)

static void expect_err_at(int line, const char *frame, size_t len,
                          const char *code, int has_id, int64_t id)
{
    struct v1_req r;
    struct v1_error e;
    memset(&e, 0x5a, sizeof e);
    int rc = v1_parse_request(frame, len, &r, &e);
    if (!check_record(rc == -1, __FILE__, line, "parse(%s) = %d, want -1 (%s)",
                      check_show(frame, len), rc, code))
        return;
    check_record(e.code && !strcmp(e.code, code), __FILE__, line,
                 "parse(%s): code %s, want %s", check_show(frame, len),
                 e.code ? e.code : "(null)", code);
    check_record(e.message && e.message[0], __FILE__, line,
                 "parse(%s): no message", check_show(frame, len));
    check_record(e.id.has == has_id, __FILE__, line,
                 "parse(%s): has_id %d, want %d", check_show(frame, len), e.id.has, has_id);
    if (has_id)
        check_record(e.id.v == id, __FILE__, line, "parse(%s): id %lld, want %lld",
                     check_show(frame, len), (long long)e.id.v, (long long)id);
}
#define EXPECT_ERR(frame, code) expect_err_at(__LINE__, frame, strlen(frame), code, 0, 0)
#define EXPECT_ERR_ID(frame, code, id) expect_err_at(__LINE__, frame, strlen(frame), code, 1, id)
#define EXPECT_ERR_LEN(frame, len, code) expect_err_at(__LINE__, frame, len, code, 0, 0)

static void test_parse_ops(void)
{
    struct v1_req r;

    if (PARSE_OK(J("{'op':'subscribe','channel':'news'}"), &r)) {
        CHECK_EQ_INT(r.op, OP_SUBSCRIBE);
        CHECK_EQ_INT(r.id.has, 0);
        CHECK_STR(r.channel, "news");
        CHECK_EQ_UINT(r.channel_len, 4);
        CHECK_NULL(r.data);
    }
    if (PARSE_OK(J("{'op':'subscribe','channel':'news','id':1}"), &r)) {
        CHECK_EQ_INT(r.op, OP_SUBSCRIBE);
        CHECK_EQ_INT(r.id.has, 1);
        CHECK_EQ_INT(r.id.v, 1);
    }
    if (PARSE_OK(J("{'op':'unsubscribe','channel':'a.b:c'}"), &r)) {
        CHECK_EQ_INT(r.op, OP_UNSUBSCRIBE);
        CHECK_EQ_INT(r.id.has, 0);
        CHECK_STR(r.channel, "a.b:c");
        CHECK_EQ_UINT(r.channel_len, 5);
    }
    if (PARSE_OK(J("{'id':2,'channel':'x','op':'unsubscribe'}"), &r)) { /* any order */
        CHECK_EQ_INT(r.op, OP_UNSUBSCRIBE);
        CHECK_EQ_INT(r.id.has, 1);
        CHECK_EQ_INT(r.id.v, 2);
        CHECK_STR(r.channel, "x");
    }
    const char *pub = J("{'op':'publish','channel':'c','data':{'a':1}}");
    if (PARSE_OK(pub, &r)) {
        CHECK_EQ_INT(r.op, OP_PUBLISH);
        CHECK_EQ_INT(r.id.has, 0);
        CHECK_STR(r.channel, "c");
        CHECK_MEM(r.data, r.data_len, J("{'a':1}"));
        /* borrowed: the data points into the frame */
        CHECK_PTR_EQ(r.data, pub + strlen(pub) - 1 - r.data_len);
    }
    if (PARSE_OK(J("{'op':'publish','channel':'c','data':'hi','id':3}"), &r)) {
        CHECK_EQ_INT(r.op, OP_PUBLISH);
        CHECK_EQ_INT(r.id.has, 1);
        CHECK_EQ_INT(r.id.v, 3);
        CHECK_MEM(r.data, r.data_len, J("'hi'"));
    }
    if (PARSE_OK(J("{'op':'ping'}"), &r)) {
        CHECK_EQ_INT(r.op, OP_PING);
        CHECK_EQ_INT(r.id.has, 0);
        CHECK_NULL(r.data);
    }
    if (PARSE_OK(J("{'op':'ping','id':4}"), &r)) {
        CHECK_EQ_INT(r.op, OP_PING);
        CHECK_EQ_INT(r.id.has, 1);
        CHECK_EQ_INT(r.id.v, 4);
    }
    /* whitespace around and inside the object is fine */
    if (PARSE_OK(J(" \t\r\n{ 'op' : 'ping' , 'id' : 5 }\n "), &r)) {
        CHECK_EQ_INT(r.op, OP_PING);
        CHECK_EQ_INT(r.id.v, 5);
    }
    /* members a request does not use are ignored */
    if (PARSE_OK(J("{'op':'ping','channel':'!!','extra':[1,2]}"), &r))
        CHECK_EQ_INT(r.op, OP_PING);
    /* the frame need not be NUL-terminated: only len bytes are read */
    {
        const char *f = J("{'op':'ping','id':6}GARBAGE");
        struct v1_error e;
        int rc = v1_parse_request(f, strlen(f) - 7, &r, &e);
        CHECK_EQ_INT(rc, 0);
        if (rc == 0)
            CHECK_EQ_INT(r.id.v, 6);
    }
}

static void test_parse_id_echo(void)
{
    static const struct { const char *frame; int64_t id; } cases[] = {
        {"{\"op\":\"ping\",\"id\":0}", 0},
        {"{\"op\":\"ping\",\"id\":-5}", -5},
        {"{\"op\":\"ping\",\"id\":123456789}", 123456789},
        {"{\"op\":\"ping\",\"id\":9007199254740991}", 9007199254740991LL},  /* 2^53-1 */
        {"{\"op\":\"ping\",\"id\":-9007199254740991}", -9007199254740991LL},
        {"{\"op\":\"ping\",\"id\":1e3}", 1000},
        {"{\"op\":\"ping\",\"id\":7.0}", 7},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct v1_req r;
        if (PARSE_OK(cases[i].frame, &r)) {
            CHECK_MSG(r.id.has == 1 && r.id.v == cases[i].id, "%s: has_id %d id %lld",
                      cases[i].frame, r.id.has, (long long)r.id.v);
        }
    }
}

static void test_parse_bad_id(void)
{
    EXPECT_ERR(J("{'op':'ping','id':'1'}"), "bad_request");
    EXPECT_ERR(J("{'op':'ping','id':null}"), "bad_request");
    EXPECT_ERR(J("{'op':'ping','id':true}"), "bad_request");
    EXPECT_ERR(J("{'op':'ping','id':[1]}"), "bad_request");
    EXPECT_ERR(J("{'op':'ping','id':{}}"), "bad_request");
    EXPECT_ERR(J("{'op':'ping','id':1.5}"), "bad_request");
    EXPECT_ERR(J("{'op':'ping','id':-0.25}"), "bad_request");
    EXPECT_ERR(J("{'op':'ping','id':9007199254740994}"), "bad_request"); /* 2^53+2 */
    EXPECT_ERR(J("{'op':'ping','id':-9007199254740994}"), "bad_request");
    EXPECT_ERR(J("{'op':'ping','id':1e300}"), "bad_request");
    EXPECT_ERR(J("{'op':'ping','id':1e999}"), "bad_request");
    /* the id check comes first: a bad id is reported even on a bad op */
    EXPECT_ERR(J("{'op':'nope','id':1.5}"), "bad_request");
}

/* 2^53 + 1 is not a double: as a double it reads as 2^53. Accepting it
 * would echo a different id than the client sent. */
static void test_parse_id_past_2_53(void)
{
    EXPECT_ERR(J("{'op':'ping','id':9007199254740993}"), "bad_request");
    EXPECT_ERR(J("{'op':'ping','id':-9007199254740993}"), "bad_request");
    EXPECT_ERR(J("{'op':'ping','id':18014398509481985}"), "bad_request");
}

static void test_parse_bad_json(void)
{
    EXPECT_ERR_LEN("", 0, "bad_json");
    EXPECT_ERR(" ", "bad_json");
    EXPECT_ERR("not json", "bad_json");
    EXPECT_ERR("{", "bad_json");
    EXPECT_ERR(J("{'op':'ping'"), "bad_json");
    EXPECT_ERR(J("{'op':'ping',}"), "bad_json");
    EXPECT_ERR(J("{op:'ping'}"), "bad_json");
    EXPECT_ERR("{'op':'ping'}", "bad_json"); /* single quotes are not JSON */
    /* trailing garbage after the object */
    EXPECT_ERR(J("{'op':'ping'} x"), "bad_json");
    EXPECT_ERR(J("{'op':'ping'}{}"), "bad_json");
    EXPECT_ERR(J("{'op':'ping'},"), "bad_json");
    EXPECT_ERR(J("{'op':'ping','id':1}1"), "bad_json");
    EXPECT_ERR_LEN("{\"op\":\"ping\"}\0", 14, "bad_json"); /* a NUL inside len */
    /* invalid UTF-8, in a string and outside one */
    EXPECT_ERR("{\"op\":\"publish\",\"channel\":\"c\",\"data\":\"\xff\"}", "bad_json");
    EXPECT_ERR("{\"op\":\"publish\",\"channel\":\"c\",\"data\":\"\xc0\xaf\"}", "bad_json");
    EXPECT_ERR("{\"op\":\"publish\",\"channel\":\"c\",\"data\":\"\xed\xa0\x80\"}", "bad_json");
    EXPECT_ERR("{\"op\":\"publish\",\"channel\":\"c\",\"data\":\"\xe2\x82\"}", "bad_json");
    EXPECT_ERR("{\"op\":\"ping\"}\xff", "bad_json");
    /* a bad frame has no usable id, even if one is visible in it */
    EXPECT_ERR(J("{'op':'ping','id':7"), "bad_json");
    EXPECT_ERR("{\"op\":\"ping\",\"id\":7,\"x\":\"\xff\"}", "bad_json");
}

static void test_parse_not_object(void)
{
    EXPECT_ERR("[]", "bad_request");
    EXPECT_ERR(J("[{'op':'ping'}]"), "bad_request");
    EXPECT_ERR(J("'ping'"), "bad_request");
    EXPECT_ERR("1", "bad_request");
    EXPECT_ERR("null", "bad_request");
    EXPECT_ERR("true", "bad_request");
}

static void test_parse_op(void)
{
    EXPECT_ERR("{}", "bad_request");
    EXPECT_ERR(J("{'channel':'c'}"), "bad_request");
    EXPECT_ERR(J("{'op':1}"), "bad_request");
    EXPECT_ERR(J("{'op':null}"), "bad_request");
    EXPECT_ERR(J("{'op':['ping']}"), "bad_request");
    EXPECT_ERR(J("{'op':{'x':'ping'}}"), "bad_request");
    EXPECT_ERR_ID(J("{'op':true,'id':8}"), "bad_request", 8);
    EXPECT_ERR(J("{'OP':'ping'}"), "bad_request"); /* names are case-sensitive */

    EXPECT_ERR(J("{'op':'nope'}"), "unknown_op");
    EXPECT_ERR(J("{'op':''}"), "unknown_op");
    EXPECT_ERR(J("{'op':'SUBSCRIBE','channel':'c'}"), "unknown_op");
    EXPECT_ERR(J("{'op':'ping '}"), "unknown_op");
    EXPECT_ERR(J("{'op':'message','channel':'c'}"), "unknown_op");
    EXPECT_ERR_ID(J("{'op':'nope','id':9}"), "unknown_op", 9);
}

static void test_parse_channel_missing(void)
{
    static const char *const ops[] = {"subscribe", "unsubscribe", "publish"};
    for (int i = 0; i < 3; i++) {
        char f[256];
        snprintf(f, sizeof f, "{\"op\":\"%s\",\"data\":1}", ops[i]);
        EXPECT_ERR(f, "bad_request");
        snprintf(f, sizeof f, "{\"op\":\"%s\",\"channel\":1,\"data\":1}", ops[i]);
        EXPECT_ERR(f, "bad_request");
        snprintf(f, sizeof f, "{\"op\":\"%s\",\"channel\":null,\"data\":1}", ops[i]);
        EXPECT_ERR(f, "bad_request");
        snprintf(f, sizeof f, "{\"op\":\"%s\",\"channel\":[\"c\"],\"data\":1}", ops[i]);
        EXPECT_ERR(f, "bad_request");
        snprintf(f, sizeof f, "{\"op\":\"%s\",\"channel\":{},\"data\":1,\"id\":10}", ops[i]);
        EXPECT_ERR_ID(f, "bad_request", 10);
        snprintf(f, sizeof f, "{\"op\":\"%s\",\"Channel\":\"c\",\"data\":1}", ops[i]);
        EXPECT_ERR(f, "bad_request");
    }
}

static void test_parse_channel_invalid(void)
{
    static const char *const ops[] = {"subscribe", "unsubscribe", "publish"};
    const char *bad[] = {
        "", "a b", "a*", "a#b", "a\\\"b", "a,b", "caf\\u00e9", "caf\xc3\xa9",
        "a\\nb", "a\\tb", "a\\u007fb", "a+b", "a?b", "a%20b", "[x]", "~"};
    for (int i = 0; i < 3; i++) {
        char f[512];
        for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
            snprintf(f, sizeof f, "{\"op\":\"%s\",\"channel\":\"%s\",\"data\":1}", ops[i], bad[k]);
            EXPECT_ERR(f, "bad_channel");
        }
        snprintf(f, sizeof f, "{\"op\":\"%s\",\"channel\":\"%s\",\"data\":1}", ops[i],
                 repeat('a', 201));
        EXPECT_ERR(f, "bad_channel");
        snprintf(f, sizeof f, "{\"op\":\"%s\",\"channel\":\"\",\"data\":1,\"id\":11}", ops[i]);
        EXPECT_ERR_ID(f, "bad_channel", 11);
    }
}

/* "\u0000" inside a JSON string is a NUL byte: the name "ab\0cd" is not a
 * valid channel and must not be shortened to "ab". */
static void test_parse_channel_embedded_nul(void)
{
    EXPECT_ERR(J("{'op':'subscribe','channel':'ab\\u0000cd'}"), "bad_channel");
    EXPECT_ERR(J("{'op':'publish','channel':'ab\\u0000','data':1}"), "bad_channel");
}

static void test_parse_channel_valid(void)
{
    struct v1_req r;
    char f[512];
    const char *c200 = repeat('z', 200);
    snprintf(f, sizeof f, "{\"op\":\"subscribe\",\"channel\":\"%s\"}", c200);
    if (PARSE_OK(f, &r)) {
        CHECK_EQ_UINT(r.channel_len, 200);
        CHECK_STR(r.channel, c200);
    }
    const char *all = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-.:@/";
    snprintf(f, sizeof f, "{\"op\":\"publish\",\"channel\":\"%s\",\"data\":0}", all);
    if (PARSE_OK(f, &r)) {
        CHECK_STR(r.channel, all);
        CHECK_EQ_UINT(r.channel_len, strlen(all));
    }
    /* escapes that decode to allowed bytes are fine: the name is decoded */
    if (PARSE_OK(J("{'op':'subscribe','channel':'a\\/b\\u0041'}"), &r)) {
        CHECK_STR(r.channel, "a/bA");
    }
    if (PARSE_OK(J("{'op':'subscribe','channel':'1'}"), &r)) {
        CHECK_STR(r.channel, "1");
    }
}

static void test_channel_valid_fn(void)
{
    CHECK_EQ_INT(channel_name_valid("a", 1), 1);
    CHECK_EQ_INT(channel_name_valid("a", 0), 0);
    CHECK_EQ_INT(channel_name_valid("ab cd", 2), 1); /* only len bytes count */
    CHECK_EQ_INT(channel_name_valid("ab cd", 3), 0);
    CHECK_EQ_INT(channel_name_valid("a\0b", 3), 0);
    CHECK_EQ_INT(channel_name_valid(repeat('q', 200), 200), 1);
    CHECK_EQ_INT(channel_name_valid(repeat('q', 201), 201), 0);
    for (int c = 1; c < 256; c++) {
        char s[2] = {(char)c, 0};
        int want = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                   (c >= '0' && c <= '9') || strchr("_-.:@/", c) != NULL;
        int got = channel_name_valid(s, 1);
        CHECK_MSG(got == want, "channel_name_valid(byte 0x%02x) = %d, want %d", c, got, want);
    }
}

static void test_parse_publish_data_missing(void)
{
    EXPECT_ERR(J("{'op':'publish','channel':'c'}"), "bad_request");
    EXPECT_ERR_ID(J("{'op':'publish','channel':'c','id':12}"), "bad_request", 12);
    EXPECT_ERR(J("{'op':'publish','channel':'c','Data':1}"), "bad_request");
}

/* The payload travels as the client wrote it: req->data is the exact text
 * of the "data" member, borrowed from the frame (proto.h). */
static void data_exact_at(int line, const char *data)
{
    char f[4096];
    snprintf(f, sizeof f, "{\"op\":\"publish\",\"channel\":\"c\",\"data\":%s,\"id\":1}", data);
    struct v1_req r;
    if (!parse_ok_at(line, f, &r))
        return;
    check_record(r.data >= f && r.data + r.data_len <= f + strlen(f), __FILE__, line,
                 "data %s: not borrowed from the frame", data);
    check_mem_at(__FILE__, line, "data", data, r.data, r.data_len, data);
    check_record(json_valid(r.data, r.data_len), __FILE__, line,
                 "data %s: span is not valid JSON", data);
    check_record(r.id.has && r.id.v == 1, __FILE__, line, "data %s: id lost", data);
}
#define DATA_EXACT(data) data_exact_at(__LINE__, data)

static void test_parse_data_types(void)
{
    DATA_EXACT("{}");
    DATA_EXACT("[]");
    DATA_EXACT("{\"a\":1,\"b\":[true,false,null],\"c\":{\"d\":\"e\"}}");
    DATA_EXACT("{ \"a\" : [ 1 , 2 ] ,\n \"b\" : { } }");
    DATA_EXACT("[1,\"two\",[3],{\"four\":4}]");
    DATA_EXACT("\"hello\"");
    DATA_EXACT("\"\"");
    DATA_EXACT("\"q\\\"b\\\\s\\/n\\nt\\tr\\r\\b\\f\"");
    DATA_EXACT("\"caf\\u00e9 \\u20ac \\ud83d\\ude00\"");
    DATA_EXACT("\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"");
    DATA_EXACT("\"\\u0001\\u001f\"");
    DATA_EXACT("\"a\\u0000b\"");           /* a NUL escape is not a terminator */
    DATA_EXACT("\"}\\\",\\\"data\\\":1\""); /* looks like more members */
    DATA_EXACT("0");
    DATA_EXACT("42");
    DATA_EXACT("-17");
    DATA_EXACT("3.25");
    DATA_EXACT("-0.5");
    DATA_EXACT("-0");
    DATA_EXACT("1.0");
    DATA_EXACT("1e10");
    DATA_EXACT("6.02E+23");
    DATA_EXACT("12345678901234567890");    /* not rounded to a double */
    DATA_EXACT("0.1000000000000000055511151231257827");
    DATA_EXACT("true");
    DATA_EXACT("false");
    DATA_EXACT("null");
    DATA_EXACT("[[[[[[[[[[1]]]]]]]]]]");
}

/* "data" is found as a top-level member wherever it is, whatever precedes
 * it, and only there. */
static void data_in_at(int line, const char *frame, const char *want)
{
    struct v1_req r;
    if (parse_ok_at(line, frame, &r))
        check_mem_at(__FILE__, line, "data", want, r.data, r.data_len, want);
}
#define DATA_IN(frame, want) data_in_at(__LINE__, frame, want)

static void test_parse_data_location(void)
{
    DATA_IN(J("{'data':[1],'op':'publish','channel':'c'}"), "[1]");
    DATA_IN(J("{'op':'publish','data':2,'channel':'c'}"), "2");
    DATA_IN(J("{'op':'publish','x':'data','channel':'c','data':3}"), "3");
    DATA_IN(J("{'meta':{'data':0},'op':'publish','channel':'c','data':4}"), "4");
    DATA_IN(J("{'op':'publish','channel':'c','list':['data',{'data':0}],'data':5}"), "5");
    DATA_IN(J("{'op':'publish','channel':'c','data' \t:\n 6 }"), "6");
    DATA_IN(J("{'op':'publish','channel':'c','d\\u0061ta':7}"), "7");
    DATA_IN(J("{'op':'publish','channel':'c','k\\'':'\\'data\\':0','data':8}"), "8");
    DATA_IN(J("{'op':'publish','channel':'c','data':{'data':9}}"), J("{'data':9}"));
    DATA_IN(J("{'op':'publish','channel':'c','caf\xc3\xa9':1,'data':'\xc3\xa9'}"),
            "\"\xc3\xa9\"");
    DATA_IN(J("{'op':'publish','channel':'c','Data':0,'data':10}"), "10");
    /* a duplicate key: the same (first) member cJSON would report */
    DATA_IN(J("{'op':'publish','channel':'c','data':11,'data':12}"), "11");
}
static void test_parse_err_id(void)
{
    /* a valid id is reported with every error that follows its check */
    EXPECT_ERR_ID(J("{'op':'nope','id':21}"), "unknown_op", 21);
    EXPECT_ERR_ID(J("{'op':'subscribe','id':22}"), "bad_request", 22);
    EXPECT_ERR_ID(J("{'op':'subscribe','channel':'a b','id':23}"), "bad_channel", 23);
    EXPECT_ERR_ID(J("{'op':'publish','channel':'c','id':24}"), "bad_request", 24);
    EXPECT_ERR_ID(J("{'id':-25}"), "bad_request", -25);
    EXPECT_ERR_ID(J("{'op':'unsubscribe','channel':'','id':0}"), "bad_channel", 0);
    /* and none when the frame had none */
    EXPECT_ERR(J("{'op':'subscribe','channel':'a b'}"), "bad_channel");
}

/* ---- v1_parse_publish_body ---------------------------------------- */

static void body_err_at(int line, const char *body, const char *code)
{
    struct v1_req r;
    struct v1_error e;
    int rc = v1_parse_publish_body(body, strlen(body), &r, &e);
    check_record(rc == -1, __FILE__, line, "body %s: rc %d, want -1", body, rc);
    if (rc == 0)
        return;
    check_record(e.code && !strcmp(e.code, code), __FILE__, line,
                 "body %s: code %s, want %s", body, e.code ? e.code : "(null)", code);
    check_record(e.message && e.message[0], __FILE__, line, "body %s: no message", body);
}
#define BODY_ERR(body, code) body_err_at(__LINE__, body, code)

static void test_publish_body(void)
{
    struct v1_req r;
    struct v1_error e;
    const char *b = J("{'channel':'room/1','data':{'x':[1,'y']}}");
    int rc = v1_parse_publish_body(b, strlen(b), &r, &e);
    CHECK_EQ_INT(rc, 0);
    if (rc == 0) {
        CHECK_EQ_INT(r.op, OP_PUBLISH);
        CHECK_STR(r.channel, "room/1");
        CHECK_EQ_UINT(r.channel_len, 6);
        CHECK_MEM(r.data, r.data_len, J("{'x':[1,'y']}"));
        CHECK(r.data > b && r.data < b + strlen(b));
        CHECK_EQ_INT(r.id.has, 0);
    }
    b = J(" {'data':null,'channel':'c'} \n");
    rc = v1_parse_publish_body(b, strlen(b), &r, &e);
    CHECK_EQ_INT(rc, 0);
    if (rc == 0)
        CHECK_MEM(r.data, r.data_len, "null");
    b = J("{'channel':'c','data':12345678901234567890}");
    rc = v1_parse_publish_body(b, strlen(b), &r, &e);
    CHECK_EQ_INT(rc, 0);
    if (rc == 0)
        CHECK_MEM(r.data, r.data_len, "12345678901234567890");

    BODY_ERR("", "bad_json");
    BODY_ERR("nope", "bad_json");
    BODY_ERR(J("{'channel':'c','data':1} x"), "bad_json");
    BODY_ERR("{\"channel\":\"c\",\"data\":\"\xff\"}", "bad_json");
    BODY_ERR(J("[{'channel':'c','data':1}]"), "bad_request");
    BODY_ERR("42", "bad_request");
    BODY_ERR(J("{'data':1}"), "bad_request");
    BODY_ERR(J("{'channel':5,'data':1}"), "bad_request");
    BODY_ERR(J("{'channel':'','data':1}"), "bad_channel");
    BODY_ERR(J("{'channel':'a b','data':1}"), "bad_channel");
    BODY_ERR(J("{'channel':'c'}"), "bad_request");
}

/* ---- json_valid ------------------------------------------------- */

static void json_at(int line, const char *s, size_t len, int want)
{
    int got = json_valid(s, len);
    check_record(got == want, __FILE__, line, "json_valid(\"%s\") = %d, want %d",
                 check_show(s, len), got, want);
}
#define VALID(s) json_at(__LINE__, s, strlen(s), 1)
#define INVALID(s) json_at(__LINE__, s, strlen(s), 0)
#define INVALID_LEN(s, len) json_at(__LINE__, s, len, 0)

static void test_json_valid(void)
{
    VALID("{}");
    VALID("[]");
    VALID("0");
    VALID("-1.5e-3");
    VALID("true");
    VALID("false");
    VALID("null");
    VALID("\"\"");
    VALID("\"x\\\"y\\\\z\\u00e9\"");
    VALID("{\"a\":[1,{\"b\":null}],\"c\":\"d\"}");
    VALID(" {} ");
    VALID("\t\r\n[1, 2]\n");
    VALID("\"\\ud83d\\ude00\"");
    /* only len bytes count: the buffer need not be NUL-terminated */
    json_at(__LINE__, "1234", 2, 1);
    json_at(__LINE__, "{}xyz", 2, 1);
    json_at(__LINE__, "[1]]", 3, 1);

    INVALID_LEN("", 0);
    INVALID(" ");
    INVALID("{");
    INVALID("}");
    INVALID("[1,]");
    INVALID("{\"a\"}");
    INVALID("{\"a\":}");
    INVALID("nul");
    INVALID("True");
    INVALID("'x'");
    INVALID("\"unterminated");
    INVALID("abc");
    INVALID(".5");
    INVALID("+1");
    INVALID("0x10");
    INVALID("NaN");
    /* two values */
    INVALID("{}{}");
    INVALID("1 2");
    INVALID("[] []");
    INVALID("\"a\" \"b\"");
    INVALID("{} x");
    INVALID_LEN("{}\0", 3);
    INVALID_LEN("1\0 2", 4);
}

static void test_json_utf8(void)
{
    /* valid multibyte: 2, 3 and 4 bytes, and the edges of each range */
    VALID("\"\xc3\xa9\"");               /* U+00E9 */
    VALID("\"\xc2\x80\"");               /* U+0080 */
    VALID("\"\xdf\xbf\"");               /* U+07FF */
    VALID("\"\xe0\xa0\x80\"");           /* U+0800 */
    VALID("\"\xe2\x82\xac\"");           /* U+20AC */
    VALID("\"\xed\x9f\xbf\"");           /* U+D7FF */
    VALID("\"\xee\x80\x80\"");           /* U+E000 */
    VALID("\"\xef\xbf\xbf\"");           /* U+FFFF */
    VALID("\"\xf0\x90\x80\x80\"");       /* U+10000 */
    VALID("\"\xf0\x9f\x98\x80\"");       /* U+1F600 */
    VALID("\"\xf4\x8f\xbf\xbf\"");       /* U+10FFFF */
    VALID("{\"\xe6\x97\xa5\xe6\x9c\xac\":\"\xd0\xb4\xd0\xb0\"}");

    /* overlong forms */
    INVALID("\"\xc0\x80\"");
    INVALID("\"\xc0\xaf\"");
    INVALID("\"\xc1\xbf\"");
    INVALID("\"\xe0\x80\xaf\"");
    INVALID("\"\xe0\x9f\xbf\"");
    INVALID("\"\xf0\x80\x80\xaf\"");
    INVALID("\"\xf0\x8f\xbf\xbf\"");
    /* UTF-16 surrogates encoded in UTF-8 */
    INVALID("\"\xed\xa0\x80\"");         /* U+D800 */
    INVALID("\"\xed\xbf\xbf\"");         /* U+DFFF */
    INVALID("\"\xed\xa0\xbd\xed\xb8\x80\""); /* a CESU-8 pair */
    /* past U+10FFFF */
    INVALID("\"\xf4\x90\x80\x80\"");     /* U+110000 */
    INVALID("\"\xf5\x80\x80\x80\"");
    INVALID("\"\xf7\xbf\xbf\xbf\"");
    INVALID("\"\xf8\x88\x80\x80\x80\"");
    INVALID("\"\xfc\x84\x80\x80\x80\x80\"");
    INVALID("\"\xfe\"");
    INVALID("\"\xff\"");
    /* truncated sequences, at the end and before other bytes */
    INVALID("\"\xc3\"");
    INVALID("\"\xe2\x82\"");
    INVALID("\"\xf0\x9f\x98\"");
    INVALID("\"\xe2\x82x\"");
    INVALID("\"\xf0\x9f\"");
    INVALID("\xc3");
    INVALID("\"x\"\xc3");
    INVALID_LEN("\"\xe2\x82\xac\"", 4); /* cut by len inside a sequence */
    /* stray continuation bytes */
    INVALID("\"\x80\"");
    INVALID("\"\xbf\"");
    INVALID("\"a\x80\x80\"");
}

/* RFC 8259 grammar. A payload from Redis is forwarded to clients verbatim
 * (hub.c), so whatever json_valid() lets through reaches browsers'
 * JSON.parse; cJSON's parser is more lenient than the RFC here. */
static void test_json_strict_rfc8259(void)
{
    INVALID("\"a\nb\"");                 /* raw control characters in strings */
    INVALID("\"a\tb\"");
    INVALID("\"\x01\"");
    INVALID_LEN("\"a\0b\"", 5);
    INVALID("01");                       /* leading zeros */
    INVALID("-01");
    INVALID("[00]");
    INVALID("1.");                       /* a fraction needs digits */
    INVALID("1.e5");
    INVALID("\x01{}");                   /* whitespace is SP, HT, LF, CR only */
    INVALID("[1,\x0b 2]");
    INVALID("{}\x0c");
    INVALID_LEN("\0{}", 3);
    /* a byte order mark is not whitespace; mid-frame it breaks JSON.parse */
    INVALID("\xef\xbb\xbf{}");
}

/* The same for a publish frame: its data is forwarded to every subscriber
 * byte for byte, so a frame whose data is not RFC 8259 JSON must be refused
 * as bad_json, not relayed. */
static void test_parse_strict_rfc8259(void)
{
    EXPECT_ERR(J("{'op':'publish','channel':'c','data':'a\tb'}"), "bad_json");
    EXPECT_ERR(J("{'op':'publish','channel':'c','data':'a\x01" "b'}"), "bad_json");
    EXPECT_ERR(J("{'op':'publish','channel':'c','data':01}"), "bad_json");
    EXPECT_ERR(J("{'op':'publish','channel':'c','data':[1.]}"), "bad_json");
    EXPECT_ERR(J("{'op':'publish','channel':'c','data':[1,\x01 2]}"), "bad_json");
    EXPECT_ERR(J("{'op':'publish',\x0b'channel':'c','data':1}"), "bad_json");
}

/* ---- encoders ---------------------------------------------------------- */

static int headroom_ok(struct msg *m)
{
    return m && m->refs == 1 && msg_data(m) - m->buf == MSG_HEADROOM;
}

static void test_encode_message(void)
{
    struct msg *m = message("news", 4, "{\"a\":1}", 7);
    CHECK(headroom_ok(m));
    if (m) {
        CHECK_MEM(msg_data(m), m->len, "{\"op\":\"message\",\"channel\":\"news\",\"data\":{\"a\":1}}");
        msg_unref(m);
    }
    /* lengths are honoured: neither argument need be NUL-terminated */
    m = message("a/b:c@d", 3, "\"xyz\"!!", 5);
    if (m) {
        CHECK_MEM(msg_data(m), m->len, "{\"op\":\"message\",\"channel\":\"a/b\",\"data\":\"xyz\"}");
        msg_unref(m);
    }
    m = message("c", 1, "null", 4);
    if (m) {
        CHECK_MEM(msg_data(m), m->len, "{\"op\":\"message\",\"channel\":\"c\",\"data\":null}");
        CHECK(json_valid((const char *)msg_data(m), m->len));
        msg_unref(m);
    }
    /* batch=1 frames are split on '\n': a frame never carries a raw one,
     * and what it carries is still the same JSON */
    const char *pretty = "{\n  \"a\": [1,\n 2],\n  \"s\": \"x\\ny\"\n}\n";
    m = message("c", 1, pretty, strlen(pretty));
    if (m) {
        CHECK(!memchr(msg_data(m), '\n', m->len));
        cJSON *o = cJSON_ParseWithLength((const char *)msg_data(m), m->len);
        cJSON *want = cJSON_Parse(pretty);
        const cJSON *d = cJSON_GetObjectItemCaseSensitive(o, "data");
        CHECK(d && want && cJSON_Compare(d, want, 1));
        cJSON_Delete(o);
        cJSON_Delete(want);
        msg_unref(m);
    }
    char big[5000];
    memset(big, ' ', sizeof big);
    big[0] = '[';
    big[sizeof big - 1] = ']';
    m = message("c", 1, big, sizeof big);
    if (m) {
        CHECK_EQ_UINT(m->len, strlen("{\"op\":\"message\",\"channel\":\"c\",\"data\":}") + sizeof big);
        CHECK(json_valid((const char *)msg_data(m), m->len));
        msg_unref(m);
    }
}

static void test_encode_ack_pong(void)
{
    struct msg *m;
    m = ack(1, 7);
    CHECK(headroom_ok(m));
    if (m) { CHECK_MEM(msg_data(m), m->len, "{\"op\":\"ack\",\"id\":7}"); msg_unref(m); }
    m = ack(0, 7);
    if (m) { CHECK_MEM(msg_data(m), m->len, "{\"op\":\"ack\"}"); msg_unref(m); }
    m = ack(1, 0);
    if (m) { CHECK_MEM(msg_data(m), m->len, "{\"op\":\"ack\",\"id\":0}"); msg_unref(m); }
    m = ack(1, -42);
    if (m) { CHECK_MEM(msg_data(m), m->len, "{\"op\":\"ack\",\"id\":-42}"); msg_unref(m); }
    m = ack(1, 9007199254740991LL);
    if (m) { CHECK_MEM(msg_data(m), m->len, "{\"op\":\"ack\",\"id\":9007199254740991}"); msg_unref(m); }
    m = ack(1, INT64_MIN);
    if (m) { CHECK_MEM(msg_data(m), m->len, "{\"op\":\"ack\",\"id\":-9223372036854775808}"); msg_unref(m); }

    m = v1_encode_pong(&(struct req_id){1, 4});
    CHECK(headroom_ok(m));
    if (m) { CHECK_MEM(msg_data(m), m->len, "{\"op\":\"pong\",\"id\":4}"); msg_unref(m); }
    m = v1_encode_pong(&(struct req_id){0, 4});
    if (m) { CHECK_MEM(msg_data(m), m->len, "{\"op\":\"pong\"}"); msg_unref(m); }
    m = v1_encode_pong(&(struct req_id){1, -9007199254740991LL});
    if (m) { CHECK_MEM(msg_data(m), m->len, "{\"op\":\"pong\",\"id\":-9007199254740991}"); msg_unref(m); }
}

/* Parses a msg as JSON (NULL if it is not). */
static cJSON *parse_msg(struct msg *m)
{
    if (!m || !json_valid((const char *)msg_data(m), m->len))
        return NULL;
    return cJSON_ParseWithLength((const char *)msg_data(m), m->len);
}

static void test_encode_error(void)
{
    struct msg *m = v1_encode_reply(&(struct req_id){1, 5}, "bad_json", "frame is not valid JSON");
    CHECK(headroom_ok(m));
    if (m) {
        CHECK_MEM(msg_data(m), m->len,
                  "{\"op\":\"error\",\"id\":5,\"code\":\"bad_json\",\"message\":\"frame is not valid JSON\"}");
        msg_unref(m);
    }
    m = v1_encode_reply(&(struct req_id){0, 5}, "unknown_op", "no such op");
    if (m) {
        CHECK_MEM(msg_data(m), m->len,
                  "{\"op\":\"error\",\"code\":\"unknown_op\",\"message\":\"no such op\"}");
        msg_unref(m);
    }
    /* a large id is printed as an integer, never in exponent form */
    m = v1_encode_reply(&(struct req_id){1, 9007199254740991LL}, "bad_request", "x");
    if (m) {
        CHECK_MEM(msg_data(m), m->len,
                  "{\"op\":\"error\",\"id\":9007199254740991,\"code\":\"bad_request\",\"message\":\"x\"}");
        msg_unref(m);
    }
    m = v1_encode_reply(&(struct req_id){1, -3}, "bad_request", "x");
    if (m) {
        CHECK_MEM(msg_data(m), m->len,
                  "{\"op\":\"error\",\"id\":-3,\"code\":\"bad_request\",\"message\":\"x\"}");
        msg_unref(m);
    }
    /* free text is escaped: the frame parses back to the same strings */
    const char *text = "say \"hi\" \\ back\n\ttab \x01 caf\xc3\xa9 </script>";
    m = v1_encode_reply(&(struct req_id){1, 77}, "too_large", text);
    cJSON *o = parse_msg(m);
    CHECK_NOT_NULL(o);
    if (o) {
        const cJSON *op = cJSON_GetObjectItemCaseSensitive(o, "op");
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(o, "id");
        const cJSON *code = cJSON_GetObjectItemCaseSensitive(o, "code");
        const cJSON *msgi = cJSON_GetObjectItemCaseSensitive(o, "message");
        CHECK(cJSON_IsString(op) && !strcmp(op->valuestring, "error"));
        CHECK(cJSON_IsNumber(id) && id->valuedouble == 77);
        CHECK(cJSON_IsString(code) && !strcmp(code->valuestring, "too_large"));
        CHECK(cJSON_IsString(msgi) && !strcmp(msgi->valuestring, text));
        CHECK_EQ_INT(cJSON_GetArraySize(o), 4);
    }
    if (m)
        CHECK(!memchr(msg_data(m), '\n', m->len)); /* one line: batch-safe */
    cJSON_Delete(o);
    msg_unref(m);
}

static void test_encode_welcome(void)
{
    struct msg *m = v1_encode_welcome("node-1", "s3ss10n", 65536);
    CHECK(headroom_ok(m));
    if (m) {
        CHECK_MEM(msg_data(m), m->len,
                  "{\"op\":\"welcome\",\"node\":\"node-1\",\"session\":\"s3ss10n\","
                  "\"max_message\":65536}");
        msg_unref(m);
    }
    m = v1_encode_welcome("host:8080", "", 256);
    if (m) {
        CHECK_MEM(msg_data(m), m->len,
                  "{\"op\":\"welcome\",\"node\":\"host:8080\",\"session\":\"\","
                  "\"max_message\":256}");
        msg_unref(m);
    }
    m = v1_encode_welcome("we\"ird\\", "a\nb", 16u << 20);
    cJSON *o = parse_msg(m);
    CHECK_NOT_NULL(o);
    if (o) {
        const cJSON *node = cJSON_GetObjectItemCaseSensitive(o, "node");
        const cJSON *sess = cJSON_GetObjectItemCaseSensitive(o, "session");
        CHECK(cJSON_IsString(node) && !strcmp(node->valuestring, "we\"ird\\"));
        CHECK(cJSON_IsString(sess) && !strcmp(sess->valuestring, "a\nb"));
    }
    cJSON_Delete(o);
    msg_unref(m);
}

static void test_encode_http_error(void)
{
    struct msg *m = v1_encode_http_error("bad_channel", "no such channel");
    CHECK(headroom_ok(m));
    if (m) {
        CHECK_MEM(msg_data(m), m->len,
                  "{\"error\":\"bad_channel\",\"message\":\"no such channel\"}");
        msg_unref(m);
    }
    const char *text = "a \"quoted\" \\ line\nbreak";
    m = v1_encode_http_error("too_large", text);
    cJSON *o = parse_msg(m);
    CHECK_NOT_NULL(o);
    if (o) {
        const cJSON *err = cJSON_GetObjectItemCaseSensitive(o, "error");
        const cJSON *msgi = cJSON_GetObjectItemCaseSensitive(o, "message");
        CHECK(cJSON_IsString(err) && !strcmp(err->valuestring, "too_large"));
        CHECK(cJSON_IsString(msgi) && !strcmp(msgi->valuestring, text));
        CHECK_EQ_INT(cJSON_GetArraySize(o), 2);
    }
    cJSON_Delete(o);
    msg_unref(m);
}

/* A frame parsed and answered: the reply texts are what a client expects. */
static void test_parse_then_encode(void)
{
    struct v1_req r;
    struct v1_error e;
    const char *f = J("{'op':'publish','channel':'chat','data':{'t':'hi'},'id':31}");
    if (v1_parse_request(f, strlen(f), &r, &e) == 0) {
        struct msg *m = message(r.channel, r.channel_len, r.data, r.data_len);
        if (m) {
            CHECK_MEM(msg_data(m), m->len, J("{'op':'message','channel':'chat','data':{'t':'hi'}}"));
            msg_unref(m);
        }
        m = ack(r.id.has, r.id.v);
        if (m) {
            CHECK_MEM(msg_data(m), m->len, J("{'op':'ack','id':31}"));
            msg_unref(m);
        }
    } else {
        CHECK_MSG(0, "parse failed: %s", e.code);
    }
    f = J("{'op':'subscribe','channel':'a b','id':32}");
    if (v1_parse_request(f, strlen(f), &r, &e) < 0) {
        struct msg *m = v1_encode_reply(&(struct req_id){e.id.has, e.id.v}, e.code, e.message);
        cJSON *o = parse_msg(m);
        CHECK_NOT_NULL(o);
        if (o) {
            const cJSON *id = cJSON_GetObjectItemCaseSensitive(o, "id");
            CHECK(cJSON_IsNumber(id) && id->valuedouble == 32);
        }
        cJSON_Delete(o);
        msg_unref(m);
    } else {
        CHECK_MSG(0, "a bad channel parsed");
    }
}

int main(void)
{
    RUN(test_parse_ops);
    RUN(test_parse_id_echo);
    RUN(test_parse_bad_id);
    RUN(test_parse_id_past_2_53);
    RUN(test_parse_bad_json);
    RUN(test_parse_not_object);
    RUN(test_parse_op);
    RUN(test_parse_channel_missing);
    RUN(test_parse_channel_invalid);
    RUN(test_parse_channel_embedded_nul);
    RUN(test_parse_channel_valid);
    RUN(test_channel_valid_fn);
    RUN(test_parse_publish_data_missing);
    RUN(test_parse_data_types);
    RUN(test_parse_data_location);
    RUN(test_parse_err_id);
    RUN(test_publish_body);
    RUN(test_json_valid);
    RUN(test_json_utf8);
    RUN(test_json_strict_rfc8259);
    RUN(test_parse_strict_rfc8259);
    RUN(test_encode_message);
    RUN(test_encode_ack_pong);
    RUN(test_encode_error);
    RUN(test_encode_welcome);
    RUN(test_encode_http_error);
    RUN(test_parse_then_encode);
    return check_summary();
}
