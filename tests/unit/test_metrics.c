/* test_metrics.c - latency buckets and the Prometheus text rendering. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "core/metrics.h"

/* The value of the first line starting with name (followed by a space). */
static double value_of(const char *text, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        if (!strncmp(p, name, n) && p[n] == ' ')
            return strtod(p + n + 1, NULL);
    return -1;
}

static void test_render(void)
{
    struct metrics m = {0};
    m.connections_total = 7;
    m.published_total = 3;
    m.disconnects[DISC_SLOW_CONSUMER] = 2;
    m.queue_bytes = 1234;
    metrics_observe_latency(&m, 0.00005);  /* first bucket */
    metrics_observe_latency(&m, 0.003);    /* le 0.005 */
    metrics_observe_latency(&m, 99);       /* only +Inf */
    struct metrics_gauges g = {.connections = 5, .subscriptions = 9, .channels = 4,
                               .broker_up = 1, .broker_reconnects = 2,
                               .dropped_invalid = 6};
    size_t len = 0;
    char *t = metrics_render(&m, &g, &len);
    CHECK_NOT_NULL(t);
    if (!t)
        return;
    CHECK_EQ_UINT(len, strlen(t));
    CHECK(value_of(t, "wsgate_connections") == 5);
    CHECK(value_of(t, "wsgate_connections_total") == 7);
    CHECK(value_of(t, "wsgate_subscriptions") == 9);
    CHECK(value_of(t, "wsgate_channels") == 4);
    CHECK(value_of(t, "wsgate_messages_published_total") == 3);
    CHECK(value_of(t, "wsgate_broker_up") == 1);
    CHECK(value_of(t, "wsgate_broker_reconnects_total") == 2);
    CHECK(value_of(t, "wsgate_dropped_invalid_total") == 6);
    CHECK(value_of(t, "wsgate_queue_bytes") == 1234);
    CHECK(value_of(t, "wsgate_disconnects_total{reason=\"slow_consumer\"}") == 2);
    CHECK(value_of(t, "wsgate_disconnects_total{reason=\"drain\"}") == 0);
    /* cumulative buckets */
    CHECK(value_of(t, "wsgate_fanout_latency_seconds_bucket{le=\"0.0001\"}") == 1);
    CHECK(value_of(t, "wsgate_fanout_latency_seconds_bucket{le=\"0.0025\"}") == 1);
    CHECK(value_of(t, "wsgate_fanout_latency_seconds_bucket{le=\"0.005\"}") == 2);
    CHECK(value_of(t, "wsgate_fanout_latency_seconds_bucket{le=\"2.5\"}") == 2);
    CHECK(value_of(t, "wsgate_fanout_latency_seconds_bucket{le=\"+Inf\"}") == 3);
    CHECK(value_of(t, "wsgate_fanout_latency_seconds_count") == 3);
    CHECK(value_of(t, "wsgate_fanout_latency_seconds_sum") > 99);
    /* every sample line belongs to a declared metric */
    CHECK_CONTAINS(t, "# TYPE wsgate_fanout_latency_seconds histogram\n");
    CHECK_CONTAINS(t, "# TYPE wsgate_connections gauge\n");
    CHECK(t[len - 1] == '\n');
    free(t);
}

static void test_node_sums_workers(void)
{
    static struct metrics_node node; /* zeroed, as mmap gives it */
    node.nslots = 3;
    node.restarts = 2;
    for (unsigned i = 0; i < 3; i++) {
        struct metrics_slot *s = &node.slot[i];
        s->pid = i == 2 ? 0 : 100 + (int)i; /* worker 2 is down */
        s->m.delivered_total = 10 * (i + 1);
        s->m.disconnects[DISC_DRAIN] = 1;
        metrics_observe_latency(&s->m, 0.002);
        s->m.capacity = 100;
        s->unrecovered[HISTORY_EXPIRED] = 2; /* copied from the worker's hub */
        s->g = (struct metrics_gauges){.connections = 5, .broker_up = 1, .broker_messages = 7,
                                       .reads_gap = 1, .process = {.ok = 1}};
    }
    static const unsigned fds[METRICS_WORKERS_MAX] = {10, 10, 10}; /* as counted */
    size_t len;
    char *t = metrics_render_node(&node, fds, &len);
    CHECK_NOT_NULL(t);
    if (!t)
        return;
    CHECK_EQ_UINT(strlen(t), len);
    /* counters of every slot, gauges of running workers only */
    CHECK_CONTAINS(t, "\nwsgate_messages_delivered_total 60\n");
    CHECK_CONTAINS(t, "\nwsgate_disconnects_total{reason=\"drain\"} 3\n");
    CHECK_CONTAINS(t, "\nwsgate_fanout_latency_seconds_count 3\n");
    CHECK_CONTAINS(t, "\nwsgate_broker_messages_total 21\n");
    CHECK_CONTAINS(t, "\nwsgate_connections 10\n");
    CHECK_CONTAINS(t, "\nwsgate_broker_up 1\n");
    CHECK_CONTAINS(t, "\nwsgate_ready 1\n");
    CHECK_CONTAINS(t, "\nwsgate_recoveries_total{result=\"not_recovered\",reason=\"expired\"} 6\n");
    CHECK_CONTAINS(t, "\nwsgate_history_reads_total{reason=\"gap\"} 3\n");
    CHECK_CONTAINS(t, "\nwsgate_history_reads_total{reason=\"subscribe\"} 0\n");
    CHECK_CONTAINS(t, "\nwsgate_max_connections 200\n");
    CHECK_CONTAINS(t, "\nprocess_open_fds 20\n");
    CHECK_CONTAINS(t, "\nwsgate_workers 2\n");
    CHECK_CONTAINS(t, "\nwsgate_worker_restarts_total 2\n");
    CHECK_CONTAINS(t, "\nwsgate_worker_connections{worker=\"1\"} 5\n");
    CHECK_CONTAINS(t, "\nwsgate_worker_connections{worker=\"2\"} 0\n");
    CHECK_CONTAINS(t, "\nwsgate_worker_up{worker=\"2\"} 0\n");
    free(t);

    CHECK_EQ_INT(metrics_node_ready(&node), 1);
    node.slot[1].g.broker_up = 0; /* one worker without its broker */
    CHECK_EQ_INT(metrics_node_ready(&node), 0);
    t = metrics_render_node(&node, fds, &len);
    CHECK_CONTAINS(t, "\nwsgate_broker_up 0\n");
    free(t);
    node.slot[1].g.broker_up = 1;
    node.slot[0].draining = 1;
    CHECK_EQ_INT(metrics_node_ready(&node), 0);
    node.slot[0].pid = node.slot[1].pid = 0; /* nobody runs */
    CHECK_EQ_INT(metrics_node_ready(&node), 0);
}

static void test_reason_names(void)
{
    CHECK_STR(metrics_reason_name(DISC_CLIENT), "client");
    CHECK_STR(metrics_reason_name(DISC_RATE_LIMITED), "rate_limited");
    CHECK_STR(metrics_reason_name(DISC_TOO_LARGE), "too_large");
    CHECK_STR(metrics_reason_name(DISC_DRAIN), "drain");
}

/* Refusals and API answers by label, the process family only when read. */
static void test_labelled_and_process(void)
{
    struct metrics m = {.capacity = 42, .start_time = 1700000000.5};
    metrics_count_refusal(&m, "draining");
    metrics_count_refusal(&m, "draining");
    metrics_count_refusal(&m, "expired");
    metrics_count_refusal(&m, "no_such_code");
    metrics_count_api(&m, 200);
    metrics_count_api(&m, 403);
    metrics_count_api(&m, 418);
    struct metrics_gauges g = {.ready = 1};
    size_t len;
    char *t = metrics_render(&m, &g, &len);
    CHECK_NOT_NULL(t);
    if (!t)
        return;
    CHECK(value_of(t, "wsgate_connections_refused_total") == 4);
    CHECK(value_of(t, "wsgate_upgrades_refused_total{reason=\"draining\"}") == 2);
    CHECK(value_of(t, "wsgate_upgrades_refused_total{reason=\"expired\"}") == 1);
    CHECK(value_of(t, "wsgate_upgrades_refused_total{reason=\"other\"}") == 1);
    CHECK(value_of(t, "wsgate_api_requests_total{code=\"200\"}") == 1);
    CHECK(value_of(t, "wsgate_api_requests_total{code=\"403\"}") == 1);
    CHECK(value_of(t, "wsgate_api_requests_total{code=\"other\"}") == 1);
    CHECK(value_of(t, "wsgate_max_connections") == 42);
    CHECK(value_of(t, "wsgate_ready") == 1);
    CHECK(value_of(t, "process_start_time_seconds") == 1700000000.5);
    CHECK(!strstr(t, "process_open_fds")); /* not read: not rendered */
    free(t);

    g.process = (struct metrics_process){.ok = 1, .cpu_seconds = 1.25, .rss_bytes = 4096,
                                         .virtual_bytes = 8192, .open_fds = 7, .max_fds = 1024};
    t = metrics_render(&m, &g, &len);
    CHECK_NOT_NULL(t);
    if (!t)
        return;
    CHECK(value_of(t, "process_cpu_seconds_total") == 1.25);
    CHECK(value_of(t, "process_resident_memory_bytes") == 4096);
    CHECK(value_of(t, "process_virtual_memory_bytes") == 8192);
    CHECK(value_of(t, "process_open_fds") == 7);
    CHECK(value_of(t, "process_max_fds") == 1024);
    CHECK_CONTAINS(t, "# TYPE process_cpu_seconds_total counter\n");
    free(t);
}

int main(void)
{
    RUN(test_render);
    RUN(test_labelled_and_process);
    RUN(test_node_sums_workers);
    RUN(test_reason_names);
    return check_summary();
}
