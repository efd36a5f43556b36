/* metrics.h - the node's counters and their Prometheus text rendering.
 *
 * struct metrics lives inside the app context; modules bump its counters
 * directly (single-threaded). Gauges that mirror live state (connections,
 * channels, broker up) are read at render time and passed in, so nothing is
 * counted twice. metrics_render() returns a malloc'd text the caller frees.
 * With several workers, each one's struct metrics lives in a shared
 * struct metrics_node, owned by the supervisor. */
#ifndef WSGATE_METRICS_H
#define WSGATE_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "core/history.h"

enum disconnect_reason {
    DISC_CLIENT,        /* the client closed or the connection dropped */
    DISC_SLOW_CONSUMER,
    DISC_RATE_LIMITED,
    DISC_TOO_LARGE,
    DISC_AUTH,
    DISC_DRAIN,
    DISC_ERROR,
    DISC_TIMEOUT,       /* nothing heard, not even a pong, for too long */
    DISC_PROTOCOL,      /* a malformed packet the protocol cannot skip */
    DISC_COUNT
};

/* What became of a message on the Socket.IO redis-adapter channel
 * (--socketio-redis-adapter, proto/sio_adapter.h). */
enum adapter_verdict {
    ADAPTER_DELIVERED,   /* to this node's Socket.IO and v1 clients */
    ADAPTER_FROM_WSGATE, /* a wsgate node's: its clients had it on wsgate's channel */
    ADAPTER_ROOMS,       /* to rooms: no wsgate client is in one */
    ADAPTER_BINARY,      /* binary attachments, or values JSON cannot carry */
    ADAPTER_NAMESPACE,   /* for a namespace other than "/" */
    ADAPTER_NOT_EVENT,   /* not an EVENT packet ["name", ...] */
    ADAPTER_MALFORMED,   /* not MessagePack [uid, packet, opts] */
    ADAPTER_VERDICTS
};

#define METRICS_LATENCY_BUCKETS 14
#define METRICS_REFUSALS 17   /* upgrade refusal codes known, "other" last */
#define METRICS_API_STATUSES 10 /* HTTP API statuses known, "other" last */
#define METRICS_PROTOCOLS 4 /* one per codec frame slot (DELIVERY_CODECS) */

/* Connections of one wire protocol; name NULL until its first client. */
struct metrics_protocol {
    const char *name; /* the codec's, static */
    uint64_t open, opened;
};

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
    uint64_t send_submits_total; /* io_uring submissions of writes (net/sendq.h) */
    uint64_t sends_batched_total; /* writes that left through them */
    uint64_t writes_held_total;  /* writes the write window held back */
    uint64_t disconnects[DISC_COUNT];
    uint64_t latency_le[METRICS_LATENCY_BUCKETS]; /* per bucket, not cumulative */
    uint64_t latency_count;
    double latency_sum;
    size_t queue_bytes;          /* bytes waiting in all send queues */
    struct metrics_protocol protocols[METRICS_PROTOCOLS]; /* by codec slot */
    uint64_t adapter_received[ADAPTER_VERDICTS]; /* socket.io#/# messages, by verdict */
    uint64_t adapter_published;  /* events this node published to socket.io#/# */
    uint64_t adapter_publish_errors; /* those Redis refused or that could not be encoded */
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
    uint64_t reads_subscribe, reads_gap; /* history reads, by what asked */
    unsigned presence_members;
    const uint64_t *unrecovered; /* HISTORY_LOSS_COUNT, by enum history_loss */
};

#define METRICS_WORKERS_MAX 64

/* One worker's figures in a node of several (--workers): counters written
 * live, gauges published by the worker every second and at each render
 * (but for g.process.open_fds: the renderer counts those, see below). */
struct metrics_slot {
    struct metrics m;
    struct metrics_gauges g; /* g.unrecovered unset: the copy below */
    uint64_t unrecovered[HISTORY_LOSS_COUNT];
    int pid;      /* 0: no worker runs in this slot now */
    int draining;
};

/* Every worker's figures, in memory the supervisor maps shared before it
 * forks: any worker renders and judges readiness for the whole node. */
struct metrics_node {
    unsigned nslots;
    uint64_t restarts; /* workers restarted after dying (the supervisor's) */
    struct metrics_slot slot[METRICS_WORKERS_MAX];
};

/* The label value of a reason: "slow_consumer", "drain", ... */
const char *metrics_reason_name(enum disconnect_reason r);

/* The label value of a verdict: "delivered", "rooms", ... */
const char *metrics_adapter_verdict_name(enum adapter_verdict v);

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

/* The same for a whole node: the sum of its slots (gauges, capacity and
 * process_* of running workers only; broker_up only when every one is up,
 * ready as metrics_node_ready()), then per-worker series labelled
 * worker="i". open_fds[i] is slot i's descriptors, counted by the caller
 * when it renders: a count costs O(descriptors) on older kernels, too much
 * for a worker to publish every second. */
char *metrics_render_node(const struct metrics_node *node,
                          const unsigned open_fds[METRICS_WORKERS_MAX], size_t *len);

/* 1 when every running worker of node publishes broker_up and none is
 * draining. */
int metrics_node_ready(const struct metrics_node *node);

#endif
