/* metrics.h - the node's counters and their Prometheus text rendering.
 *
 * struct metrics lives inside the app context; modules bump its counters
 * directly (single-threaded). Gauges that mirror live state (connections,
 * channels, broker up) are read at render time and passed in, so nothing is
 * counted twice. metrics_render() returns a malloc'd text the caller frees. */
#ifndef WSGATE_METRICS_H
#define WSGATE_METRICS_H

#include <stddef.h>
#include <stdint.h>

enum disconnect_reason {
    DISC_CLIENT,        /* the client closed or the connection dropped */
    DISC_SLOW_CONSUMER,
    DISC_RATE_LIMITED,
    DISC_TOO_LARGE,
    DISC_AUTH,
    DISC_DRAIN,
    DISC_ERROR,
    DISC_TIMEOUT,       /* nothing heard, not even a pong, for too long */
    DISC_COUNT
};

#define METRICS_LATENCY_BUCKETS 14

struct metrics {
    uint64_t connections_total;  /* WebSocket sessions opened */
    uint64_t refused_total;      /* upgrades refused: limit, draining, origin, token */
    uint64_t published_total;    /* publishes the broker accepted from this node */
    uint64_t delivered_total;    /* message frames written to clients */
    uint64_t bytes_sent_total;   /* WebSocket payload bytes written */
    uint64_t writes_total;       /* transport writes carrying them */
    uint64_t disconnects[DISC_COUNT];
    uint64_t latency_le[METRICS_LATENCY_BUCKETS]; /* per bucket, not cumulative */
    uint64_t latency_count;
    double latency_sum;
    size_t queue_bytes;          /* bytes waiting in all send queues */
};

struct metrics_gauges {
    unsigned connections, subscriptions, channels;
    int broker_up;
    uint64_t broker_reconnects, broker_messages, dropped_invalid;
};

/* The label value of a reason: "slow_consumer", "drain", ... */
const char *metrics_reason_name(enum disconnect_reason r);

/* Records one fan-out latency (broker receipt to the last local write). */
void metrics_observe_latency(struct metrics *m, double seconds);

/* Prometheus text exposition format 0.0.4; NULL when out of memory. */
char *metrics_render(const struct metrics *m, const struct metrics_gauges *g,
                     size_t *len);

#endif
