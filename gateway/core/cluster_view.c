/* cluster_view.c - see cluster_view.h. */
#include "core/cluster_view.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "core/channel.h"

/* cJSON_PrintUnformatted, with its length; NULL when out of memory. */
static char *print(cJSON *o, size_t *len)
{
    char *text = o ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    if (text)
        *len = strlen(text);
    return text;
}

/* Rates with one decimal: enough for a chart, short on the wire. */
static double round1(double v) { return round(v * 10) / 10; }

char *cluster_beat_json(const struct node_stats *s, size_t *len)
{
    cJSON *o = cJSON_CreateObject(), *top;
    if (!o)
        return NULL;
    cJSON_AddStringToObject(o, "node", s->node);
    cJSON_AddStringToObject(o, "address", s->address);
    cJSON_AddStringToObject(o, "version", s->version);
    cJSON_AddStringToObject(o, "engine", s->engine);
    cJSON_AddNumberToObject(o, "pid", s->pid);
    cJSON_AddNumberToObject(o, "workers", s->workers);
    cJSON_AddNumberToObject(o, "uptime", (double)s->uptime_s);
    cJSON_AddNumberToObject(o, "time", (double)s->time_ms);
    cJSON_AddNumberToObject(o, "connections", s->connections);
    cJSON_AddNumberToObject(o, "subscriptions", s->subscriptions);
    cJSON_AddNumberToObject(o, "channels", s->channels);
    cJSON_AddNumberToObject(o, "in_per_s", round1(s->in_per_s));
    cJSON_AddNumberToObject(o, "out_per_s", round1(s->out_per_s));
    cJSON_AddNumberToObject(o, "published_total", (double)s->published_total);
    cJSON_AddNumberToObject(o, "delivered_total", (double)s->delivered_total);
    cJSON_AddNumberToObject(o, "queue_bytes", (double)s->queue_bytes);
    cJSON_AddStringToObject(o, "broker", s->broker_up ? "up" : "down");
    cJSON_AddBoolToObject(o, "draining", s->draining);
    if ((top = cJSON_AddArrayToObject(o, "top"))) {
        char name[CHANNEL_MAX + 1];
        for (size_t i = 0; i < s->ntop; i++) {
            size_t n = s->top[i].len < CHANNEL_MAX ? s->top[i].len : CHANNEL_MAX;
            memcpy(name, s->top[i].name, n);
            name[n] = '\0';
            cJSON *pair = cJSON_CreateArray();
            cJSON_AddItemToArray(pair, cJSON_CreateString(name));
            cJSON_AddItemToArray(pair, cJSON_CreateNumber(s->top[i].subscribers));
            cJSON_AddItemToArray(top, pair);
        }
    }
    return print(o, len);
}

/* One channel of one node's heartbeat: its names point into that beat. */
struct entry {
    const char *channel, *node;
    double subscribers;
};

/* A channel of the cluster: entries [first, first + n) of the sorted list. */
struct group {
    const char *channel;
    size_t first, n;
    double total;
};

static int by_channel(const void *a, const void *b)
{
    const struct entry *x = a, *y = b;
    int c = strcmp(x->channel, y->channel);
    return c ? c : strcmp(x->node, y->node);
}

static int by_total(const void *a, const void *b)
{
    const struct group *x = a, *y = b;
    if (x->total != y->total)
        return x->total < y->total ? 1 : -1;
    return strcmp(x->channel, y->channel);
}

static const char *node_of(const cJSON *beat)
{
    return cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(beat, "node"));
}

static int by_node(const void *a, const void *b)
{
    return strcmp(node_of(*(cJSON *const *)a), node_of(*(cJSON *const *)b));
}

static double num(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) ? v->valuedouble : 0;
}

/* The channels of the beats, grouped: their busiest first, at most
 * CLUSTER_VIEW_CHANNELS, each with its subscribers per node. Sets *distinct
 * to how many channels there were in all. */
static cJSON *channels_json(cJSON *const *beats, size_t n, size_t *distinct)
{
    size_t ne = 0, cap = 0, ng = 0;
    for (size_t i = 0; i < n; i++)
        cap += (size_t)cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(beats[i], "top"));
    struct entry *e = malloc((cap ? cap : 1) * sizeof *e);
    struct group *g = malloc((cap ? cap : 1) * sizeof *g);
    cJSON *out = cJSON_CreateArray();
    *distinct = 0;
    if (!e || !g || !out)
        goto done;
    for (size_t i = 0; i < n; i++) {
        const cJSON *pair;
        cJSON_ArrayForEach(pair, cJSON_GetObjectItemCaseSensitive(beats[i], "top")) {
            const char *ch = cJSON_GetStringValue(cJSON_GetArrayItem(pair, 0));
            const cJSON *subs = cJSON_GetArrayItem(pair, 1);
            if (ch && cJSON_IsNumber(subs) && ne < cap)
                e[ne++] = (struct entry){ch, node_of(beats[i]), subs->valuedouble};
        }
    }
    qsort(e, ne, sizeof *e, by_channel);
    for (size_t i = 0; i < ne; i++) {
        if (!ng || strcmp(g[ng - 1].channel, e[i].channel))
            g[ng++] = (struct group){e[i].channel, i, 0, 0};
        g[ng - 1].n++;
        g[ng - 1].total += e[i].subscribers;
    }
    *distinct = ng;
    qsort(g, ng, sizeof *g, by_total);
    for (size_t k = 0; k < ng && k < CLUSTER_VIEW_CHANNELS; k++) {
        cJSON *c = cJSON_CreateObject(), *per;
        cJSON_AddStringToObject(c, "channel", g[k].channel);
        cJSON_AddNumberToObject(c, "subscribers", g[k].total);
        if ((per = cJSON_AddObjectToObject(c, "nodes")))
            for (size_t i = g[k].first; i < g[k].first + g[k].n; i++)
                cJSON_AddNumberToObject(per, e[i].node, e[i].subscribers);
        cJSON_AddItemToArray(out, c);
    }
done:
    free(e);
    free(g);
    return out;
}

char *cluster_view_json(const struct node_beat *v, size_t n, const char *self,
                        int complete, size_t *len)
{
    cJSON **beats = malloc((n ? n : 1) * sizeof *beats);
    cJSON *o = beats ? cJSON_CreateObject() : NULL;
    size_t nb = 0, distinct;
    if (!o) {
        free(beats);
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        cJSON *b = cJSON_ParseWithLength(v[i].json, v[i].len);
        if (cJSON_IsObject(b) && node_of(b))
            beats[nb++] = b;
        else
            cJSON_Delete(b);
    }
    qsort(beats, nb, sizeof *beats, by_node);
    cJSON_AddStringToObject(o, "self", self);
    cJSON_AddBoolToObject(o, "complete", complete);
    cJSON *channels = channels_json(beats, nb, &distinct);
    cJSON *totals = cJSON_AddObjectToObject(o, "totals");
    static const char *const summed[] = {"connections", "subscriptions", "in_per_s",
                                         "out_per_s", "queue_bytes"};
    double sum[sizeof summed / sizeof summed[0]] = {0}, broker_down = 0, draining = 0;
    cJSON *nodes = cJSON_AddArrayToObject(o, "nodes");
    for (size_t i = 0; i < nb; i++) {
        for (size_t k = 0; k < sizeof summed / sizeof summed[0]; k++)
            sum[k] += num(beats[i], summed[k]);
        const char *broker = cJSON_GetStringValue(
            cJSON_GetObjectItemCaseSensitive(beats[i], "broker"));
        broker_down += !broker || strcmp(broker, "up");
        draining += cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(beats[i], "draining"));
        cJSON_DeleteItemFromObjectCaseSensitive(beats[i], "top"); /* in "channels" now */
        cJSON_AddItemToArray(nodes, beats[i]);
    }
    cJSON_AddNumberToObject(totals, "nodes", (double)nb);
    for (size_t k = 0; k < sizeof summed / sizeof summed[0]; k++)
        cJSON_AddNumberToObject(totals, summed[k], k == 2 || k == 3 ? round1(sum[k]) : sum[k]);
    cJSON_AddNumberToObject(totals, "channels", (double)distinct);
    cJSON_AddNumberToObject(totals, "broker_down", broker_down);
    cJSON_AddNumberToObject(totals, "draining", draining);
    cJSON_AddItemToObject(o, "channels", channels);
    free(beats);
    return print(o, len);
}
