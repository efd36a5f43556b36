/* metrics.c - see metrics.h. */
#include "core/metrics.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const double bounds[METRICS_LATENCY_BUCKETS] = {
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
    0.025,  0.05,    0.1,    0.25,  0.5,    1,     2.5,
};

static const char *const reason_names[DISC_COUNT] = {
    "client", "slow_consumer", "rate_limited", "too_large", "auth", "drain", "error",
    "timeout",
};

const char *metrics_reason_name(enum disconnect_reason r)
{
    return reason_names[r];
}

void metrics_observe_latency(struct metrics *m, double seconds)
{
    m->latency_count++;
    m->latency_sum += seconds;
    for (int i = 0; i < METRICS_LATENCY_BUCKETS; i++) {
        if (seconds <= bounds[i]) {
            m->latency_le[i]++;
            return;
        }
    }
}

struct out {
    char *buf;
    size_t len, cap;
    int failed;
};

__attribute__((format(printf, 2, 3)))
static void put(struct out *o, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = o->failed ? 0 : vsnprintf(o->buf + o->len, o->cap - o->len, fmt, ap);
        va_end(ap);
        if (o->failed || n < 0) {
            o->failed = 1;
            return;
        }
        if ((size_t)n < o->cap - o->len) {
            o->len += (size_t)n;
            return;
        }
        char *b = realloc(o->buf, o->cap * 2);
        if (!b) {
            o->failed = 1;
            return;
        }
        o->buf = b;
        o->cap *= 2;
    }
}

static void metric(struct out *o, const char *name, const char *type,
                   const char *help, unsigned long long v)
{
    put(o, "# HELP %s %s\n# TYPE %s %s\n%s %llu\n", name, help, name, type, name, v);
}

char *metrics_render(const struct metrics *m, const struct metrics_gauges *g,
                     size_t *len)
{
    struct out o = {.buf = malloc(4096), .cap = 4096};
    if (!o.buf)
        return NULL;
    put(&o, "# HELP wsgate_build_info The running build: always 1, labelled with its version.\n"
            "# TYPE wsgate_build_info gauge\nwsgate_build_info{version=\"%s\"} 1\n",
        WSGATE_VERSION);
    metric(&o, "wsgate_connections", "gauge", "Open WebSocket connections.", g->connections);
    metric(&o, "wsgate_connections_total", "counter", "WebSocket connections accepted.",
           m->connections_total);
    metric(&o, "wsgate_connections_refused_total", "counter",
           "WebSocket upgrades refused (connection limit, draining, origin, token).",
           m->refused_total);
    metric(&o, "wsgate_subscriptions", "gauge", "Client subscriptions on this node.",
           g->subscriptions);
    metric(&o, "wsgate_channels", "gauge", "Channels with local subscribers.", g->channels);
    metric(&o, "wsgate_messages_published_total", "counter",
           "Publishes from this node's clients and HTTP API accepted by the broker.",
           m->published_total);
    metric(&o, "wsgate_messages_delivered_total", "counter",
           "Message frames written to clients.", m->delivered_total);
    metric(&o, "wsgate_bytes_sent_total", "counter", "WebSocket payload bytes written.",
           m->bytes_sent_total);
    metric(&o, "wsgate_writes_total", "counter",
           "Transport writes: frames queued for a client leave together.", m->writes_total);
    metric(&o, "wsgate_broker_up", "gauge", "1 while the broker is connected.",
           (unsigned long long)g->broker_up);
    metric(&o, "wsgate_broker_reconnects_total", "counter",
           "Times the broker came back after an outage.", g->broker_reconnects);
    metric(&o, "wsgate_broker_messages_total", "counter",
           "Messages the broker delivered to this node.", g->broker_messages);
    metric(&o, "wsgate_dropped_invalid_total", "counter",
           "Broker payloads dropped as invalid JSON or too large.", g->dropped_invalid);
    metric(&o, "wsgate_queue_bytes", "gauge", "Bytes waiting in client send queues.",
           m->queue_bytes);

    put(&o, "# HELP wsgate_disconnects_total Connections closed, by reason.\n"
            "# TYPE wsgate_disconnects_total counter\n");
    for (int r = 0; r < DISC_COUNT; r++)
        put(&o, "wsgate_disconnects_total{reason=\"%s\"} %llu\n", reason_names[r],
            (unsigned long long)m->disconnects[r]);

    put(&o, "# HELP wsgate_fanout_latency_seconds Broker receipt to the last local write.\n"
            "# TYPE wsgate_fanout_latency_seconds histogram\n");
    unsigned long long cum = 0;
    for (int i = 0; i < METRICS_LATENCY_BUCKETS; i++) {
        cum += m->latency_le[i];
        put(&o, "wsgate_fanout_latency_seconds_bucket{le=\"%g\"} %llu\n", bounds[i], cum);
    }
    put(&o, "wsgate_fanout_latency_seconds_bucket{le=\"+Inf\"} %llu\n"
            "wsgate_fanout_latency_seconds_sum %.9f\n"
            "wsgate_fanout_latency_seconds_count %llu\n",
        (unsigned long long)m->latency_count, m->latency_sum,
        (unsigned long long)m->latency_count);
    if (o.failed) {
        free(o.buf);
        return NULL;
    }
    *len = o.len;
    return o.buf;
}
