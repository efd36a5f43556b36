/* test_json.c - strict RFC 8259 validation, member spans, string decoding. */
#include <string.h>

#include "check.h"
#include "proto/json.h"

static int valid(const char *s) { return json_valid(s, strlen(s)); }

static void test_valid_values(void)
{
    const char *ok[] = {
        "0", "-0", "1", "-12", "1.5", "1e5", "1E+5", "1.25e-3", "123456789012345678901234567890",
        "true", "false", "null", "\"\"", "\"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\t\"",
        "\"\\u00e9\\uD83D\\uDE00\"", "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"",
        "[]", "{}", "[1,[2,[3]],{\"a\":{}}]", "{\"a\":1,\"a\":2}",
        " \t\r\n{ \"k\" : [ 1 , 2 ] } \n",
    };
    for (size_t i = 0; i < sizeof ok / sizeof *ok; i++)
        CHECK_MSG(valid(ok[i]), "rejected valid %s", ok[i]);
}

static void test_invalid_values(void)
{
    const char *bad[] = {
        "", " ", "01", "-01", "[00]", "1.", "1.e5", ".5", "+1", "1e", "1e+", "-",
        "tru", "True", "nul", "NaN", "Infinity", "'a'", "\"a", "\"\\x\"", "\"\\u12\"",
        "\"\\u12G4\"", "\"a\tb\"", "\"a\nb\"", "[1,]", "[,1]", "{\"a\"}", "{\"a\":}",
        "{\"a\":1,}", "{a:1}", "{\"a\" 1}", "[1 2]", "1 2", "{} {}", "[", "]", "{",
        "\xef\xbb\xbf{}",            /* byte-order mark */
        "\v1", "1\f",                /* not JSON whitespace */
        "\"\xc0\xaf\"",              /* overlong '/' */
        "\"\xed\xa0\x80\"",          /* UTF-16 surrogate encoded in UTF-8 */
        "\"\xf4\x90\x80\x80\"",      /* past U+10FFFF */
        "\"\xe2\x82\"",              /* truncated */
        "\"\x80\"",                  /* stray continuation byte */
        "\xc3\xa9",                  /* non-ASCII outside a string */
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        CHECK_MSG(!valid(bad[i]), "accepted invalid %s", check_show(bad[i], strlen(bad[i])));
    CHECK(!json_valid("1\0", 2)); /* an embedded NUL is not whitespace */
    CHECK(json_valid("[1]xyz", 3)); /* only len bytes count */
}

static void test_depth_limit(void)
{
    char buf[2 * (JSON_MAX_DEPTH + 1) + 1];
    for (int depth = JSON_MAX_DEPTH; depth <= JSON_MAX_DEPTH + 1; depth++) {
        memset(buf, '[', (size_t)depth);
        memset(buf + depth, ']', (size_t)depth);
        CHECK_EQ_INT(json_valid(buf, 2 * (size_t)depth), depth <= JSON_MAX_DEPTH);
    }
}

static void test_object(void)
{
    const char *doc = "{ \"x\" : {\"data\":0}, \"d\\u0061ta\" : [1, \"}\"] ,"
                      "\"channel\":\"c\",\"data\":2 }";
    static const char *const keys[] = {"data", "channel", "missing"};
    struct json_span sp[3];
    CHECK_EQ_INT(json_object(doc, strlen(doc), keys, sp, 3), 0);
    CHECK_MEM(sp[0].text, sp[0].len, "[1, \"}\"]"); /* first match, escaped key */
    CHECK_MEM(sp[1].text, sp[1].len, "\"c\"");
    CHECK_NULL(sp[2].text);
    CHECK_EQ_INT(json_object(" [1]", 4, keys, sp, 3), JSON_NOT_OBJECT);
    CHECK_EQ_INT(json_object("7", 1, keys, sp, 3), JSON_NOT_OBJECT);
    CHECK_EQ_INT(json_object("{}", 2, keys, sp, 1), 0);
    CHECK_NULL(sp[0].text);
    /* nested members of the same name are not top-level members */
    const char *nested = "{\"a\":{\"channel\":\"inner\"}}";
    CHECK_EQ_INT(json_object(nested, strlen(nested), keys, sp, 3), 0);
    CHECK_NULL(sp[1].text);
    /* validation and capture are one pass: any defect fails the whole */
    const char *bad[] = {"{\"channel\":\"c\",}", "{\"channel\":01}",
                         "{\"channel\":\"c\"} x", "{\"channel\":\"\x01\"}", ""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK_MSG(json_object(bad[i], strlen(bad[i]), keys, sp, 3) == JSON_INVALID,
                  "json_object(%s) accepted", bad[i]);
    /* without keys it is json_valid() plus the object check */
    CHECK_EQ_INT(json_object("{\"a\":1}", 7, NULL, NULL, 0), 0);
}

static void test_string_ascii(void)
{
    char out[8];
    struct json_span s = {"\"a\\/\\u0041\"", 11};
    CHECK_EQ_INT(json_string_ascii(&s, out, sizeof out), 3);
    CHECK_STR(out, "a/A");
    s = (struct json_span){"\"a\\u0000b\"", 10};
    CHECK_EQ_INT(json_string_ascii(&s, out, sizeof out), 3); /* the NUL counts */
    CHECK_EQ_INT(out[1], 0);
    s = (struct json_span){"\"\\u00e9\"", 8};
    CHECK_EQ_INT(json_string_ascii(&s, out, sizeof out), -1); /* not ASCII */
    s = (struct json_span){"\"abcdefgh\"", 10};
    CHECK_EQ_INT(json_string_ascii(&s, out, sizeof out), -1); /* too long */
    s = (struct json_span){"12", 2};
    CHECK_EQ_INT(json_string_ascii(&s, out, sizeof out), -1); /* not a string */
}

int main(void)
{
    RUN(test_valid_values);
    RUN(test_invalid_values);
    RUN(test_depth_limit);
    RUN(test_object);
    RUN(test_string_ascii);
    return check_summary();
}
