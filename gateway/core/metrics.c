/* metrics.c - see metrics.h. */
#include "core/metrics.h"

#include "core/history.h"

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
    "timeout", "protocol",
};

/* The codes net/ws.c refuses upgrades with (core/auth.h's for tokens), and
 * net/eio_poll.c new Socket.IO polling sessions. */
static const char *const refusal_names[METRICS_REFUSALS] = {
    "origin_not_allowed", "draining", "connection_limit", "token_missing",
    "token_too_large", "token_malformed", "alg_not_allowed", "bad_header",
    "bad_signature", "expired", "not_yet_valid", "bad_claims", "out_of_memory",
    "unsupported_protocol", "bad_transport", "unknown_sid", /* /socket.io/ */
    "other",
};

static const char *const adapter_verdicts[ADAPTER_VERDICTS] = {
    "delivered", "from_wsgate", "rooms", "binary", "namespace", "not_event", "malformed",
};

static const unsigned api_statuses[METRICS_API_STATUSES] = {
    200, 400, 401, 403, 404, 405, 413, 500, 503, 0 /* other */
};

const char *metrics_reason_name(enum disconnect_reason r)
{
    return reason_names[r];
}

const char *metrics_adapter_verdict_name(enum adapter_verdict v)
{
    return adapter_verdicts[v];
}

void metrics_count_refusal(struct metrics *m, const char *code)
{
    int i = 0;
    while (i < METRICS_REFUSALS - 1 && strcmp(refusal_names[i], code))
        i++;
    m->refused[i]++;
    m->refused_total++;
}

void metrics_count_api(struct metrics *m, unsigned status)
{
    int i = 0;
    while (i < METRICS_API_STATUSES - 1 && api_statuses[i] != status)
        i++;
    m->api_requests[i]++;
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

static void metric_f(struct out *o, const char *name, const char *type,
                     const char *help, double v)
{
    put(o, "# HELP %s %s\n# TYPE %s %s\n%s %.6f\n", name, help, name, type, name, v);
}

/* The standard process_* family (the names every Prometheus client uses). */
static void process_metrics(struct out *o, const struct metrics *m,
                            const struct metrics_process *p)
{
    metric_f(o, "process_start_time_seconds", "gauge",
             "Start time of the process since the Unix epoch in seconds.", m->start_time);
    if (!p->ok)
        return;
    metric_f(o, "process_cpu_seconds_total", "counter",
             "Total user and system CPU time spent in seconds.", p->cpu_seconds);
    metric(o, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.",
           p->rss_bytes);
    metric(o, "process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.",
           p->virtual_bytes);
    metric(o, "process_open_fds", "gauge", "Number of open file descriptors.", p->open_fds);
    metric(o, "process_max_fds", "gauge", "Maximum number of open file descriptors.",
           p->max_fds);
}

static void render(struct out *o, const struct metrics *m, const struct metrics_gauges *g);

static char *finish(struct out *o, size_t *len)
{
    if (o->failed) {
        free(o->buf);
        return NULL;
    }
    *len = o->len;
    return o->buf;
}

char *metrics_render(const struct metrics *m, const struct metrics_gauges *g,
                     size_t *len)
{
    struct out o = {.buf = malloc(4096), .cap = 4096};
    if (!o.buf)
        return NULL;
    render(&o, m, g);
    return finish(&o, len);
}

static void add(struct metrics *sum, const struct metrics *m)
{
    sum->connections_total += m->connections_total;
    sum->refused_total += m->refused_total;
    for (int i = 0; i < METRICS_REFUSALS; i++)
        sum->refused[i] += m->refused[i];
    for (int i = 0; i < METRICS_API_STATUSES; i++)
        sum->api_requests[i] += m->api_requests[i];
    sum->published_total += m->published_total;
    sum->history_appends += m->history_appends;
    sum->delivered_total += m->delivered_total;
    sum->bytes_sent_total += m->bytes_sent_total;
    sum->writes_total += m->writes_total;
    sum->send_submits_total += m->send_submits_total;
    sum->sends_batched_total += m->sends_batched_total;
    sum->writes_held_total += m->writes_held_total;
    for (int r = 0; r < DISC_COUNT; r++)
        sum->disconnects[r] += m->disconnects[r];
    for (int i = 0; i < METRICS_LATENCY_BUCKETS; i++)
        sum->latency_le[i] += m->latency_le[i];
    sum->latency_count += m->latency_count;
    sum->latency_sum += m->latency_sum;
    sum->queue_bytes += m->queue_bytes;
    for (int i = 0; i < METRICS_PROTOCOLS; i++) {
        if (m->protocols[i].name)
            sum->protocols[i].name = m->protocols[i].name;
        sum->protocols[i].open += m->protocols[i].open;
        sum->protocols[i].opened += m->protocols[i].opened;
    }
    for (int i = 0; i < ADAPTER_VERDICTS; i++)
        sum->adapter_received[i] += m->adapter_received[i];
    sum->adapter_published += m->adapter_published;
    sum->adapter_publish_errors += m->adapter_publish_errors;
}

/* A running worker's live figures: summed, so process_* is the node's. */
static void add_live(struct metrics *sum, struct metrics_gauges *g, const struct metrics_slot *s,
                     unsigned open_fds)
{
    sum->capacity += s->m.capacity;
    if (!sum->start_time || (s->m.start_time && s->m.start_time < sum->start_time))
        sum->start_time = s->m.start_time;
    g->connections += s->g.connections;
    g->subscriptions += s->g.subscriptions;
    g->channels += s->g.channels;
    g->presence_members += s->g.presence_members;
    g->broker_up &= s->g.broker_up;
    if (s->g.process.ok) {
        g->process.ok = 1;
        g->process.cpu_seconds += s->g.process.cpu_seconds;
        g->process.rss_bytes += s->g.process.rss_bytes;
        g->process.virtual_bytes += s->g.process.virtual_bytes;
        g->process.open_fds += open_fds;
        g->process.max_fds += s->g.process.max_fds;
    }
}

char *metrics_render_node(const struct metrics_node *node,
                          const unsigned open_fds[METRICS_WORKERS_MAX], size_t *len)
{
    struct metrics sum = {0};
    uint64_t unrecovered[HISTORY_LOSS_COUNT] = {0};
    struct metrics_gauges g = {.broker_up = 1, .unrecovered = unrecovered};
    unsigned running = 0;
    for (unsigned i = 0; i < node->nslots; i++) {
        const struct metrics_slot *s = &node->slot[i];
        add(&sum, &s->m);
        g.broker_reconnects += s->g.broker_reconnects;
        g.broker_messages += s->g.broker_messages;
        g.dropped_invalid += s->g.dropped_invalid;
        g.recovered += s->g.recovered;
        g.gap_fills += s->g.gap_fills;
        g.gaps_lost += s->g.gaps_lost;
        g.reads_subscribe += s->g.reads_subscribe;
        g.reads_gap += s->g.reads_gap;
        for (int r = 0; r < HISTORY_LOSS_COUNT; r++)
            unrecovered[r] += s->unrecovered[r];
        if (s->pid) {
            running++;
            add_live(&sum, &g, s, open_fds[i]);
        }
    }
    if (!running)
        g.broker_up = 0;
    g.ready = metrics_node_ready(node);
    struct out o = {.buf = malloc(8192), .cap = 8192};
    if (!o.buf)
        return NULL;
    render(&o, &sum, &g);
    metric(&o, "wsgate_workers", "gauge", "Worker processes running.", running);
    metric(&o, "wsgate_worker_restarts_total", "counter",
           "Workers restarted by the supervisor after dying.", node->restarts);
    put(&o, "# HELP wsgate_worker_connections Open WebSocket connections, by worker.\n"
           "# TYPE wsgate_worker_connections gauge\n");
    for (unsigned i = 0; i < node->nslots; i++)
        put(&o, "wsgate_worker_connections{worker=\"%u\"} %u\n", i,
            node->slot[i].pid ? node->slot[i].g.connections : 0);
    put(&o, "# HELP wsgate_worker_up 1 while the worker runs.\n"
           "# TYPE wsgate_worker_up gauge\n");
    for (unsigned i = 0; i < node->nslots; i++)
        put(&o, "wsgate_worker_up{worker=\"%u\"} %d\n", i, node->slot[i].pid != 0);
    return finish(&o, len);
}

int metrics_node_ready(const struct metrics_node *node)
{
    unsigned running = 0;
    for (unsigned i = 0; i < node->nslots; i++) {
        const struct metrics_slot *s = &node->slot[i];
        if (!s->pid)
            continue;
        if (s->draining || !s->g.broker_up)
            return 0;
        running++;
    }
    return running > 0;
}

static void render(struct out *o, const struct metrics *m, const struct metrics_gauges *g)
{
    put(o, "# HELP wsgate_build_info The running build: always 1, labelled with its version.\n"
            "# TYPE wsgate_build_info gauge\nwsgate_build_info{version=\"%s\"} 1\n",
        WSGATE_VERSION);
    metric(o, "wsgate_connections", "gauge", "Open WebSocket connections.", g->connections);
    metric(o, "wsgate_connections_total", "counter", "WebSocket connections accepted.",
           m->connections_total);
    metric(o, "wsgate_connections_refused_total", "counter",
           "WebSocket upgrades refused (connection limit, draining, origin, token).",
           m->refused_total);
    put(o, "# HELP wsgate_upgrades_refused_total WebSocket upgrades refused, by the "
            "error code of the answer.\n# TYPE wsgate_upgrades_refused_total counter\n");
    for (int i = 0; i < METRICS_REFUSALS; i++)
        put(o, "wsgate_upgrades_refused_total{reason=\"%s\"} %llu\n", refusal_names[i],
            (unsigned long long)m->refused[i]);
    metric(o, "wsgate_max_connections", "gauge",
           "Connections this node can hold: --max-connections or the descriptor limit.",
           m->capacity);
    metric(o, "wsgate_ready", "gauge",
           "1 while /readyz answers 200 (broker connected, not draining).",
           (unsigned long long)g->ready);
    put(o, "# HELP wsgate_api_requests_total HTTP API (/api/...) answers, by status.\n"
            "# TYPE wsgate_api_requests_total counter\n");
    for (int i = 0; i < METRICS_API_STATUSES; i++) {
        if (api_statuses[i])
            put(o, "wsgate_api_requests_total{code=\"%u\"} %llu\n", api_statuses[i],
                (unsigned long long)m->api_requests[i]);
        else
            put(o, "wsgate_api_requests_total{code=\"other\"} %llu\n",
                (unsigned long long)m->api_requests[i]);
    }
    metric(o, "wsgate_subscriptions", "gauge", "Client subscriptions on this node.",
           g->subscriptions);
    metric(o, "wsgate_channels", "gauge", "Channels with local subscribers.", g->channels);
    metric(o, "wsgate_messages_published_total", "counter",
           "Publishes from this node's clients and HTTP API accepted by the broker.",
           m->published_total);
    metric(o, "wsgate_messages_delivered_total", "counter",
           "Message frames written to clients.", m->delivered_total);
    metric(o, "wsgate_bytes_sent_total", "counter", "WebSocket payload bytes written.",
           m->bytes_sent_total);
    metric(o, "wsgate_writes_total", "counter",
           "Transport writes: frames queued for a client leave together.", m->writes_total);
    metric(o, "wsgate_send_submits_total", "counter",
           "io_uring submissions, each carrying one loop turn's writes to many sockets.",
           m->send_submits_total);
    metric(o, "wsgate_sends_batched_total", "counter",
           "Transport writes that left through those submissions, not a send() each.",
           m->sends_batched_total);
    metric(o, "wsgate_writes_held_total", "counter",
           "Writes the write window held back so later frames leave with them.",
           m->writes_held_total);
    metric(o, "wsgate_broker_up", "gauge", "1 while the broker is connected.",
           (unsigned long long)g->broker_up);
    metric(o, "wsgate_broker_reconnects_total", "counter",
           "Times the broker came back after an outage.", g->broker_reconnects);
    metric(o, "wsgate_broker_messages_total", "counter",
           "Messages the broker delivered to this node.", g->broker_messages);
    metric(o, "wsgate_dropped_invalid_total", "counter",
           "Broker payloads dropped as invalid JSON or too large.", g->dropped_invalid);
    metric(o, "wsgate_queue_bytes", "gauge", "Bytes waiting in client send queues.",
           m->queue_bytes);
    metric(o, "wsgate_presence_members", "gauge",
           "This node's subscribers listed in their channel's presence.", g->presence_members);
    metric(o, "wsgate_history_appends_total", "counter",
           "Publishes from this node appended to a channel's history.", m->history_appends);
    metric(o, "wsgate_history_gap_fills_total", "counter",
           "Holes in live delivery filled from history.", g->gap_fills);
    metric(o, "wsgate_history_gaps_lost_total", "counter",
           "Holes in live delivery that history could not fill.", g->gaps_lost);
    put(o, "# HELP wsgate_history_reads_total History reads sent to the broker, by what "
           "asked: subscribes, or holes in live delivery (one read per channel serves every "
           "subscriber waiting on it).\n"
           "# TYPE wsgate_history_reads_total counter\n"
           "wsgate_history_reads_total{reason=\"subscribe\"} %llu\n"
           "wsgate_history_reads_total{reason=\"gap\"} %llu\n",
        (unsigned long long)g->reads_subscribe, (unsigned long long)g->reads_gap);
    put(o, "# HELP wsgate_recoveries_total Subscribes that asked to recover, by result.\n"
            "# TYPE wsgate_recoveries_total counter\n"
            "wsgate_recoveries_total{result=\"recovered\",reason=\"\"} %llu\n",
        (unsigned long long)g->recovered);
    for (int r = HISTORY_COMPLETE + 1; g->unrecovered && r < HISTORY_LOSS_COUNT; r++)
        put(o, "wsgate_recoveries_total{result=\"not_recovered\",reason=\"%s\"} %llu\n",
            history_loss_name((enum history_loss)r), (unsigned long long)g->unrecovered[r]);

    put(o, "# HELP wsgate_protocol_connections Open connections, by wire protocol.\n"
            "# TYPE wsgate_protocol_connections gauge\n");
    for (int i = 0; i < METRICS_PROTOCOLS; i++)
        if (m->protocols[i].name)
            put(o, "wsgate_protocol_connections{protocol=\"%s\"} %llu\n",
                m->protocols[i].name, (unsigned long long)m->protocols[i].open);
    put(o, "# HELP wsgate_protocol_connections_total Connections opened, by wire protocol.\n"
            "# TYPE wsgate_protocol_connections_total counter\n");
    for (int i = 0; i < METRICS_PROTOCOLS; i++)
        if (m->protocols[i].name)
            put(o, "wsgate_protocol_connections_total{protocol=\"%s\"} %llu\n",
                m->protocols[i].name, (unsigned long long)m->protocols[i].opened);

    put(o, "# HELP wsgate_socketio_adapter_received_total Messages on the Socket.IO "
            "redis-adapter channel (--socketio-redis-adapter), by what became of them.\n"
            "# TYPE wsgate_socketio_adapter_received_total counter\n");
    for (int i = 0; i < ADAPTER_VERDICTS; i++)
        put(o, "wsgate_socketio_adapter_received_total{result=\"%s\"} %llu\n",
            adapter_verdicts[i], (unsigned long long)m->adapter_received[i]);
    metric(o, "wsgate_socketio_adapter_published_total", "counter",
           "Socket.IO events this node published to the redis-adapter channel.",
           m->adapter_published);
    metric(o, "wsgate_socketio_adapter_publish_errors_total", "counter",
           "Events for the redis-adapter channel that Redis refused or that could not be "
           "encoded.", m->adapter_publish_errors);

    put(o, "# HELP wsgate_disconnects_total Connections closed, by reason.\n"
            "# TYPE wsgate_disconnects_total counter\n");
    for (int r = 0; r < DISC_COUNT; r++)
        put(o, "wsgate_disconnects_total{reason=\"%s\"} %llu\n", reason_names[r],
            (unsigned long long)m->disconnects[r]);

    put(o, "# HELP wsgate_fanout_latency_seconds Broker receipt to the last local write.\n"
            "# TYPE wsgate_fanout_latency_seconds histogram\n");
    unsigned long long cum = 0;
    for (int i = 0; i < METRICS_LATENCY_BUCKETS; i++) {
        cum += m->latency_le[i];
        put(o, "wsgate_fanout_latency_seconds_bucket{le=\"%g\"} %llu\n", bounds[i], cum);
    }
    put(o, "wsgate_fanout_latency_seconds_bucket{le=\"+Inf\"} %llu\n"
            "wsgate_fanout_latency_seconds_sum %.9f\n"
            "wsgate_fanout_latency_seconds_count %llu\n",
        (unsigned long long)m->latency_count, m->latency_sum,
        (unsigned long long)m->latency_count);
    process_metrics(o, m, &g->process);
}
