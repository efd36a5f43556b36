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
    RUN(test_reason_names);
    return check_summary();
}
