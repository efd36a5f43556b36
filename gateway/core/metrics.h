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
#define METRICS_REFUSALS 14   /* upgrade refusal codes known, "other" last */
#define METRICS_API_STATUSES 10 /* HTTP API statuses known, "other" last */

struct metrics {
    uint64_t connections_total;  /* WebSocket sessions opened */
    uint64_t refused_total;      /* upgrades refused: limit, draining, origin, token */
    uint64_t refused[METRICS_REFUSALS]; /* the same, by reason */
    uint64_t api_requests[METRICS_API_STATUSES]; /* /api/ answers, by status */
    unsigned capacity;           /* connections this node can hold, set at start */
    double start_time;           /* Unix time the process started */
    uint64_t published_total;    /* publishes the broker accepted from this node */
    uint64_t history_appends;    /* of those, appended to a channel's history */
    uint64_t delivered_total;    /* message frames written to clients */
    uint64_t bytes_sent_total;   /* WebSocket payload bytes written */
    uint64_t writes_total;       /* transport writes carrying them */
    uint64_t disconnects[DISC_COUNT];
    uint64_t latency_le[METRICS_LATENCY_BUCKETS]; /* per bucket, not cumulative */
    uint64_t latency_count;
    double latency_sum;
    size_t queue_bytes;          /* bytes waiting in all send queues */
};

/* The process as the kernel sees it; ok 0: not available, not rendered. */
struct metrics_process {
    int ok;
    double cpu_seconds;
    uint64_t rss_bytes, virtual_bytes;
    unsigned open_fds, max_fds;
};

struct metrics_gauges {
    unsigned connections, subscriptions, channels;
    int broker_up, ready;
    uint64_t broker_reconnects, broker_messages, dropped_invalid;
    struct metrics_process process;
    /* history, counted by the hub */
    uint64_t recovered, gap_fills, gaps_lost;
    unsigned presence_members;
    const uint64_t *unrecovered; /* HISTORY_LOSS_COUNT, by enum history_loss */
};

/* The label value of a reason: "slow_consumer", "drain", ... */
const char *metrics_reason_name(enum disconnect_reason r);

/* Counts a refused upgrade (refused_total and its reason: the code of the
 * answer, e.g. "draining"; codes not in the table count as "other"). */
void metrics_count_refusal(struct metrics *m, const char *code);

/* Counts an HTTP API answer by its status. */
void metrics_count_api(struct metrics *m, unsigned status);

/* Records one fan-out latency (broker receipt to the last local write). */
void metrics_observe_latency(struct metrics *m, double seconds);

/* Prometheus text exposition format 0.0.4; NULL when out of memory. */
char *metrics_render(const struct metrics *m, const struct metrics_gauges *g,
                     size_t *len);

#endif
