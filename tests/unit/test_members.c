/* test_members.c - the per-channel registry of this node's present sessions. */
#include "broker/members.h"
#include "check.h"

struct seen {
    size_t n;
    char first[MEMBER_SESSION_MAX + 1], first_sub[AUTH_SUB_MAX + 1];
    size_t channels;
};

static void on_members(void *arg, const struct member *v, size_t n)
{
    struct seen *s = arg;
    s->n = n;
    if (n) {
        snprintf(s->first, sizeof s->first, "%s", v[0].session);
        snprintf(s->first_sub, sizeof s->first_sub, "%s", v[0].sub);
    }
}

static void on_channel(void *arg, const char *ch, size_t len, const struct member *v, size_t n)
{
    (void)ch, (void)len, (void)v;
    struct seen *s = arg;
    s->channels++;
    s->n += n;
}

static void test_add_remove(void)
{
    struct members *m = members_new();
    struct seen s = {0};
    members_of(m, "room", 4, on_members, &s);
    CHECK_EQ_UINT(s.n, 0);
    CHECK_EQ_INT(members_add(m, "room", 4, "s1", "ana"), 0);
    CHECK_EQ_INT(members_add(m, "room", 4, "s1", "ana"), 0); /* once */
    for (int i = 0; i < 9; i++) { /* grows past the first array */
        char id[8];
        snprintf(id, sizeof id, "x%d", i);
        CHECK_EQ_INT(members_add(m, "room", 4, id, ""), 0);
    }
    CHECK_EQ_INT(members_add(m, "roomy", 5, "s2", NULL), 0);
    members_of(m, "room", 4, on_members, &s);
    CHECK_EQ_UINT(s.n, 10);
    CHECK_STR(s.first, "s1");
    CHECK_STR(s.first_sub, "ana");
    members_remove(m, "room", 4, "s1");
    members_remove(m, "room", 4, "nobody");
    members_remove(m, "nowhere", 7, "s1");
    members_of(m, "room", 4, on_members, &s);
    CHECK_EQ_UINT(s.n, 9);
    struct seen all = {0};
    members_each(m, on_channel, &all);
    CHECK_EQ_UINT(all.channels, 2);
    CHECK_EQ_UINT(all.n, 10);
    members_remove(m, "roomy", 5, "s2"); /* its channel is forgotten */
    all = (struct seen){0};
    members_each(m, on_channel, &all);
    CHECK_EQ_UINT(all.channels, 1);
    members_free(m);
}

int main(void)
{
    RUN(test_add_remove);
    return check_summary();
}
