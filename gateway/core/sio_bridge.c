/* sio_bridge.c - see sio_bridge.h. */
#include "core/sio_bridge.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/random.h>
#include <unistd.h>

#include "log.h"
#include "proto/sio_adapter.h"

struct sio_bridge {
    struct app *app;
    char uid[SIO_ADAPTER_UID_MAX + 1];
    unsigned char logged[ADAPTER_VERDICTS]; /* verdicts already logged at info */
};

struct sio_bridge *sio_bridge_new(struct app *app)
{
    struct sio_bridge *b = calloc(1, sizeof *b);
    uint32_t r[2];
    if (!b)
        return NULL;
    if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r) {
        r[0] = (uint32_t)getpid();
        r[1] = (uint32_t)random();
    }
    snprintf(b->uid, sizeof b->uid, SIO_ADAPTER_UID_PREFIX "%08x%08x", r[0], r[1]);
    b->app = app;
    return b;
}

void sio_bridge_free(struct sio_bridge *b)
{
    free(b);
}

static char *in(void *ctx, const char *msg, size_t len, size_t *payload_len)
{
    struct sio_bridge *b = ctx;
    const char *why = NULL;
    char *payload = NULL;
    int v = sio_adapter_decode(msg, len, &payload, payload_len, &why);
    if (v < 0) {
        log_warn("socket.io redis-adapter: out of memory decoding a message");
        return NULL;
    }
    b->app->metrics->adapter_received[v]++;
    if (v != ADAPTER_DELIVERED && v != ADAPTER_FROM_WSGATE) {
        enum log_level level = b->logged[v] ? LOG_DEBUG : LOG_INFO;
        b->logged[v] = 1;
        if (log_enabled(level)) {
            char bytes[24];
            snprintf(bytes, sizeof bytes, "%zu", len);
            char line[256];
            snprintf(line, sizeof line, "socket.io redis-adapter message ignored: %s%s", why,
                     level == LOG_INFO ? " (more like it are logged at debug)" : "");
            log_fields(level, line, "verdict", metrics_adapter_verdict_name(v), "bytes", bytes,
                       (const char *)NULL);
        }
    }
    return payload;
}

static char *out(void *ctx, const char *payload, size_t len, size_t *msg_len)
{
    struct sio_bridge *b = ctx;
    return sio_adapter_encode(b->uid, payload, len, msg_len);
}

static void sent(void *ctx, int ok)
{
    struct sio_bridge *b = ctx;
    if (ok)
        b->app->metrics->adapter_published++;
    else
        b->app->metrics->adapter_publish_errors++;
}

struct broker_bridge sio_bridge_hooks(struct sio_bridge *b)
{
    return (struct broker_bridge){.channel = b->app->cfg.socketio_channel,
                                  .raw = SIO_BRIDGE_CHANNEL,
                                  .in = in,
                                  .out = out,
                                  .sent = sent,
                                  .ctx = b};
}
