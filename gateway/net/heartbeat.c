/* heartbeat.c - see heartbeat.h. The rates are the deltas of the node's
 * counters (metrics.h) over the time since the previous beat. */
#include "net/heartbeat.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "broker/broker.h"
#include "core/channel.h"
#include "core/clock.h"
#include "core/cluster_view.h"
#include "core/hub.h"
#include "log.h"
#include "process.h"

/* A local channel among the busiest, its name copied. */
struct busy {
    unsigned subscribers;
    size_t len;
    char name[CHANNEL_MAX];
};

struct heartbeat {
    struct app *app;
    struct event *timer;
    char address[CONFIG_HOST_MAX + 16];
    char id[CONFIG_STR_MAX + 32]; /* the node id; with --workers, "<node id>/<worker>" */
    uint64_t last_us, last_published, last_delivered;
    char *beat; /* the last one rendered */
    size_t beat_len;
    int warned; /* the broker refused a beat: said once until it takes one */
    struct busy top[CLUSTER_BEAT_CHANNELS];
    size_t ntop;
};

/* Keeps the CLUSTER_BEAT_CHANNELS busiest channels: each new one replaces
 * the quietest kept when it has more subscribers. */
static void keep_busiest(void *arg, const char *ch, size_t len, unsigned subscribers)
{
    struct heartbeat *hb = arg;
    struct busy *slot = hb->ntop < CLUSTER_BEAT_CHANNELS ? &hb->top[hb->ntop++] : NULL;
    if (!slot) {
        slot = &hb->top[0];
        for (size_t i = 1; i < hb->ntop; i++)
            if (hb->top[i].subscribers < slot->subscribers)
                slot = &hb->top[i];
        if (slot->subscribers >= subscribers)
            return;
    }
    slot->subscribers = subscribers;
    slot->len = len < CHANNEL_MAX ? len : CHANNEL_MAX;
    memcpy(slot->name, ch, slot->len);
}

static void beat(struct heartbeat *hb)
{
    struct app *app = hb->app;
    const struct hub_stats *hs = hub_stats(app->hub);
    uint64_t now = clock_us();
    double dt = hb->last_us ? (double)(now - hb->last_us) / 1e6 : 0;
    double wall = process_now();
    struct channel_count top[CLUSTER_BEAT_CHANNELS];
    hb->ntop = 0;
    hub_each_channel(app->hub, keep_busiest, hb);
    for (size_t i = 0; i < hb->ntop; i++)
        top[i] = (struct channel_count){hb->top[i].name, hb->top[i].len,
                                        hb->top[i].subscribers};
    struct node_stats s = {
        .node = hb->id,
        .workers = app->node ? app->node->nslots : 1,
        .address = hb->address,
        .version = WSGATE_VERSION,
        .engine = app->cfg.use_redis ? "redis" : "embedded",
        .pid = (unsigned)getpid(),
        .uptime_s = (uint64_t)(wall - app->metrics->start_time),
        .time_ms = (uint64_t)(wall * 1000),
        .connections = app->nclients,
        .subscriptions = hs->subscriptions,
        .channels = hs->channels,
        .in_per_s = dt > 0 ? (double)(app->metrics->published_total - hb->last_published) / dt : 0,
        .out_per_s = dt > 0 ? (double)(app->metrics->delivered_total - hb->last_delivered) / dt : 0,
        .published_total = app->metrics->published_total,
        .delivered_total = app->metrics->delivered_total,
        .queue_bytes = app->metrics->queue_bytes,
        .broker_up = hub_broker_up(app->hub),
        .draining = app->draining,
        .top = top,
        .ntop = hb->ntop,
    };
    hb->last_us = now;
    hb->last_published = app->metrics->published_total;
    hb->last_delivered = app->metrics->delivered_total;
    size_t len;
    char *text = cluster_beat_json(&s, &len);
    if (!text)
        return; /* out of memory: the previous beat stays, the next tick retries */
    free(hb->beat);
    hb->beat = text;
    hb->beat_len = len;
    if (broker_beat(app->broker, hb->id, text, len, HEARTBEAT_TTL_MS) == 0)
        hb->warned = 0;
    else if (!hb->warned++ && s.broker_up) /* down: the broker has said so */
        log_warn("the heartbeat could not be stored: this node is missing from /api/cluster");
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    beat(arg);
}

struct heartbeat *heartbeat_new(struct app *app, struct event_base *base, int port)
{
    struct heartbeat *hb = calloc(1, sizeof *hb);
    if (!hb || !(hb->timer = event_new(base, -1, EV_PERSIST, on_tick, hb))) {
        free(hb);
        return NULL;
    }
    hb->app = app;
    /* Workers share the node id but not their hubs: each beats on its own. */
    if (app->node)
        snprintf(hb->id, sizeof hb->id, "%s/%u", app->node_id, app->worker);
    else
        snprintf(hb->id, sizeof hb->id, "%s", app->node_id);
    /* A wildcard listen address says nothing: the host name does. */
    const char *host = app->cfg.listen_host;
    char name[CONFIG_HOST_MAX] = "localhost";
    if (!host[0] || !strcmp(host, "0.0.0.0") || !strcmp(host, "::")) {
        gethostname(name, sizeof name - 1);
        host = name;
    }
    snprintf(hb->address, sizeof hb->address, strchr(host, ':') ? "[%s]:%d" : "%s:%d", host,
             port);
    struct timeval second = {1, 0};
    event_add(hb->timer, &second);
    beat(hb);
    return hb;
}

void heartbeat_free(struct heartbeat *hb)
{
    if (!hb)
        return;
    event_free(hb->timer);
    free(hb->beat);
    free(hb);
}

const char *heartbeat_last(const struct heartbeat *hb, size_t *len)
{
    *len = hb->beat_len;
    return hb->beat;
}
