/* test_cluster_view.c - heartbeat rendering and the merge of the cluster
 * view: totals, channels grouped across nodes, busiest first, bad beats
 * skipped. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "core/cluster_view.h"

static char *beat(const char *node, unsigned conns, double in, const struct channel_count *top,
                  size_t ntop, int broker_up, size_t *len)
{
    struct node_stats s = {.node = node, .address = "h:1", .version = "v", .engine = "redis",
                           .pid = 7, .uptime_s = 3, .time_ms = 1000, .connections = conns,
                           .subscriptions = 2 * conns, .channels = (unsigned)ntop,
                           .in_per_s = in, .out_per_s = 2 * in, .queue_bytes = 10,
                           .broker_up = broker_up, .top = top, .ntop = ntop};
    return cluster_beat_json(&s, len);
}

static void test_beat(void)
{
    struct channel_count top[] = {{"room.1xxx", 6, 3}};
    size_t len;
    char *b = beat("a", 4, 1.26, top, 1, 1, &len);
    CHECK_EQ_UINT(len, strlen(b));
    CHECK_CONTAINS(b, "\"node\":\"a\"");
    CHECK_CONTAINS(b, "\"in_per_s\":1.3");           /* one decimal */
    CHECK_CONTAINS(b, "\"top\":[[\"room.1\",3]]");   /* the name's len bytes */
    CHECK_CONTAINS(b, "\"broker\":\"up\",\"draining\":false");
    free(b);
}

static void test_merge(void)
{
    struct channel_count ta[] = {{"room.1", 6, 3}, {"room.2", 6, 1}};
    struct channel_count tb[] = {{"lobby", 5, 2}, {"room.1", 6, 2}};
    size_t la, lb, lc, len;
    char *a = beat("a", 3, 1, ta, 2, 1, &la), *b = beat("b", 2, 0.5, tb, 2, 0, &lb);
    char *c = beat("c", 1, 0, NULL, 0, 1, &lc);
    struct node_beat v[] = {{c, lc}, {"not json", 8}, {b, lb}, {"{\"no\":1}", 8}, {a, la}};
    char *out = cluster_view_json(v, 5, "b", 1, &len);
    CHECK_EQ_UINT(len, strlen(out));
    CHECK_CONTAINS(out, "\"self\":\"b\",\"complete\":true");
    CHECK_CONTAINS(out, "\"totals\":{\"nodes\":3,\"connections\":6,\"subscriptions\":12,"
                        "\"in_per_s\":1.5,\"out_per_s\":3,\"queue_bytes\":30,\"channels\":3,"
                        "\"broker_down\":1,\"draining\":0}");
    /* sorted by node id, without their channel lists */
    const char *pa = strstr(out, "{\"node\":\"a\""), *pb = strstr(out, "{\"node\":\"b\""),
               *pc = strstr(out, "{\"node\":\"c\"");
    CHECK(pa && pb && pc && pa < pb && pb < pc);
    CHECK(!strstr(out, "\"top\""));
    CHECK_CONTAINS(out, "\"channels\":[{\"channel\":\"room.1\",\"subscribers\":5,"
                        "\"nodes\":{\"a\":3,\"b\":2}},"
                        "{\"channel\":\"lobby\",\"subscribers\":2,\"nodes\":{\"b\":2}},"
                        "{\"channel\":\"room.2\",\"subscribers\":1,\"nodes\":{\"a\":1}}]");
    free(out);
    free(a);
    free(b);
    free(c);
}

static void test_empty(void)
{
    size_t len;
    char *out = cluster_view_json(NULL, 0, "x", 0, &len);
    CHECK_CONTAINS(out, "\"complete\":false");
    CHECK_CONTAINS(out, "\"nodes\":[]");
    CHECK_CONTAINS(out, "\"channels\":[]");
    free(out);
}

int main(void)
{
    RUN(test_beat);
    RUN(test_merge);
    RUN(test_empty);
    return check_summary();
}
