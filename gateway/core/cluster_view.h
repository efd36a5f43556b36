/* cluster_view.h - a node's heartbeat and the cluster view, as JSON.
 *
 * Every node renders its stats once a second with cluster_beat_json() and
 * stores the text through the broker (broker_beat); GET /api/cluster reads
 * every live node's back (broker_nodes) and merges them with
 * cluster_view_json(): the nodes, totals, and the busiest channels with
 * their subscribers per node. Pure: no I/O, no clock.
 *
 * Ownership: both renderers return malloc'd text (NUL-terminated, its
 * length in *len) that the caller frees, or NULL when out of memory. Input
 * pointers are borrowed for the call. */
#ifndef WSGATE_CLUSTER_VIEW_H
#define WSGATE_CLUSTER_VIEW_H

#include <stddef.h>
#include <stdint.h>

#include "broker/broker.h"

#define CLUSTER_BEAT_CHANNELS 50  /* busiest local channels in a heartbeat */
#define CLUSTER_VIEW_CHANNELS 100 /* busiest channels in the cluster view */

struct channel_count {
    const char *name;
    size_t len;
    unsigned subscribers;
};

struct node_stats {
    const char *node, *address, *version;
    const char *engine;         /* "redis" or "embedded" */
    unsigned pid;
    unsigned workers;           /* worker processes of the node (--workers) */
    uint64_t uptime_s, time_ms; /* time_ms: Unix time of the beat */
    unsigned connections, subscriptions, channels;
    double in_per_s, out_per_s; /* publishes accepted, frames delivered */
    uint64_t published_total, delivered_total;
    uint64_t queue_bytes;
    int broker_up, draining;
    const struct channel_count *top; /* busiest local channels, any order */
    size_t ntop;
};

char *cluster_beat_json(const struct node_stats *s, size_t *len);

/* Merges the heartbeats v (malformed ones are skipped) into
 * {"self","complete","nodes":[...by id],"totals":{...},"channels":[...]};
 * complete 0 marks a view built from this node's own heartbeat only,
 * because the cluster's could not be read. */
char *cluster_view_json(const struct node_beat *v, size_t n, const char *self,
                        int complete, size_t *len);

#endif
