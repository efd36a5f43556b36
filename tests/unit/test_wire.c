/* test_wire.c - the Redis position envelope and stream ids. */
#include "broker/wire.h"
#include "check.h"

static int parse(const char *s, struct position *pos, size_t *skip)
{
    return wire_parse(s, strlen(s), pos, skip);
}

static void test_envelope(void)
{
    struct position pos;
    size_t skip = 0;
    CHECK_EQ_INT(parse("#42 Ab-_9 {\"a\":1}", &pos, &skip), 1);
    CHECK_EQ_UINT(pos.offset, 42);
    CHECK_STR(pos.epoch, "Ab-_9");
    CHECK_STR("#42 Ab-_9 {\"a\":1}" + skip, "{\"a\":1}");
    CHECK_EQ_INT(parse("#9007199254740991 e  x", &pos, &skip), 1);
    CHECK_EQ_UINT(pos.offset, 9007199254740991ull);
    CHECK_STR("#9007199254740991 e  x" + skip, " x");
}

static void test_plain_and_malformed(void)
{
    struct position pos;
    size_t skip = 7;
    CHECK_EQ_INT(parse("{\"a\":1}", &pos, &skip), 0);
    CHECK_EQ_INT(parse(" #1 e 1", &pos, &skip), 0);
    CHECK_EQ_INT(parse("", &pos, &skip), 0);
    const char *bad[] = {"#", "#1", "#1 e", "#0 e 1", "#01 e 1", "#-1 e 1", "#1  1",
                         "#x e 1", "#9007199254740992 e 1", "#1 e.e 1",
                         "#1 abcdefghijklmnopqrstuvwxyz0123456 1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK_MSG(parse(bad[i], &pos, &skip) == -1, "accepted %s", bad[i]);
}

static void test_entry_id(void)
{
    uint64_t o = 0;
    CHECK_EQ_INT(wire_entry_id("17-0", 4, &o), 0);
    CHECK_EQ_UINT(o, 17);
    CHECK_EQ_INT(wire_entry_id("17-1", 4, &o), -1);
    CHECK_EQ_INT(wire_entry_id("-0", 2, &o), -1);
    CHECK_EQ_INT(wire_entry_id("0-0", 3, &o), -1);
    CHECK_EQ_INT(wire_entry_id("1700000000000-0", 15, &o), 0);
}

static void test_presence(void)
{
    struct wire_member m;
    const char *j = "!join s1 gw1 ana", *l = "!leave s2 gw-2 ";
    CHECK_EQ_INT(wire_presence(j, strlen(j), &m), 1);
    CHECK_EQ_INT(m.join, 1);
    CHECK_STR(m.session, "s1");
    CHECK_STR(m.node, "gw1");
    CHECK_STR(m.sub, "ana");
    CHECK_EQ_INT(wire_presence(l, strlen(l), &m), 1);
    CHECK_EQ_INT(m.join, 0);
    CHECK_STR(m.node, "gw-2");
    CHECK_STR(m.sub, "");
    CHECK_EQ_INT(wire_presence("{}", 2, &m), 0);
    CHECK_EQ_INT(wire_presence("#1 e 1", 6, &m), 0);
    const char *bad[] = {"!", "!join", "!join ", "!join s1", "!join s1 gw1", "!join  gw1 a",
                         "!join s1  a", "!join s1 gw1 a b", "!part s1 gw1 a",
                         "!join 0123456789012345678901234567890123 n a"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK_MSG(wire_presence(bad[i], strlen(bad[i]), &m) == -1, "accepted %s", bad[i]);
}

int main(void)
{
    RUN(test_presence);
    RUN(test_envelope);
    RUN(test_plain_and_malformed);
    RUN(test_entry_id);
    return check_summary();
}
