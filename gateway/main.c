/* main.c - flags, wiring, signals and shutdown.
 *
 * Start-up order matters: the lws context (whose user pointer is the app)
 * exists before the listener adopts into it; the hub exists before the
 * broker that reports to it. Shutdown runs the other way round. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <unistd.h>

#include <event2/event.h>
#include <libwebsockets.h>

#include "core/app.h"
#include "core/auth.h"
#include "broker/broker.h"
#include "core/clock.h"
#include "config.h"
#include "core/hub.h"
#include "log.h"
#include "net/loop.h"
#include "core/client.h"
#include "net/ws.h"

/* Run from the build tree: serve the source tree's web/; installed: the
 * share directory. */
static const char *default_web_root(void)
{
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash && (*slash = '\0', !strcmp(exe, WSGATE_BUILD_DIR)))
            return WSGATE_SOURCE_WEB;
    }
    return WSGATE_INSTALL_WEB;
}

static void lws_log_emit(int level, const char *line)
{
    size_t n = strlen(line);
    while (n && line[n - 1] == '\n')
        n--;
    log_msg(level == LLL_ERR ? LOG_ERROR : LOG_DEBUG, "lws: %.*s", (int)n, line);
}

/* More descriptors than the default 1024: one per client. */
static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

#define DRAIN_TICK_USEC 100000
#define DRAIN_GRACE_USEC 200000

/* SIGTERM drain. /readyz answers 503 at once; closes (1001) start after 10%
 * of --drain-seconds, so a load balancer has seen the 503 and sends new
 * clients elsewhere, and are spread in slices up to 80% of it, so clients
 * do not all reconnect at once; the rest lets close handshakes finish. Once
 * every client is gone the listener closes and the process exits after a
 * short grace for requests already accepted. */
struct drain {
    struct app *app;
    struct event *tick, *deadline;
    uint64_t start_us;
    unsigned per_tick;
    int finishing;
};

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct app *app = arg;
    if (app->nsessions)
        log_warn("drain window over with %u clients still open", app->nsessions);
    event_base_loopbreak(app->base);
}

static void finish(struct drain *d)
{
    struct timeval grace = {0, DRAIN_GRACE_USEC};
    d->finishing = 1;
    event_del(d->tick);
    loop_stop_accepting(d->app->loop);
    evtimer_add(d->deadline, &grace);
}

static void on_drain_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct drain *d = arg;
    struct app *app = d->app;
    if (app->nsessions == 0) {
        finish(d);
        return;
    }
    double window_us = app->cfg.shutdown_seconds * 1e6;
    if ((double)(clock_us() - d->start_us) >= 0.1 * window_us)
        sess_close_some(app, DISC_DRAIN, d->per_tick);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    struct drain *d = arg;
    struct app *app = d->app;
    if (app->draining) { /* a second signal: stop now */
        log_warn("second signal %d, exiting now", (int)sig);
        event_base_loopbreak(app->base);
        return;
    }
    app->draining = 1;
    double window = app->cfg.shutdown_seconds;
    log_info("signal %d: draining %u clients over %.1f s", (int)sig, app->nsessions, window);
    d->start_us = clock_us();
    double ticks = window * 0.7 * 1e6 / DRAIN_TICK_USEC;
    d->per_tick = ticks < 1 ? app->nsessions : (unsigned)ceil(app->nsessions / ticks);
    struct timeval tick = {0, DRAIN_TICK_USEC};
    struct timeval end = {(time_t)window, (suseconds_t)((window - (double)(time_t)window) * 1e6)};
    evtimer_add(d->deadline, &end);
    event_add(d->tick, &tick);
    on_drain_tick(-1, 0, d);
}

static void on_sweep(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    sess_sweep(arg);
}

static struct lws_context *create_lws(struct app *app)
{
    static const lws_retry_bo_t retry = {
        .secs_since_valid_ping = 25,   /* ping an idle client */
        .secs_since_valid_hangup = 60, /* drop one that stays silent */
    };
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    info.port = CONTEXT_PORT_NO_LISTEN_SERVER;
    info.protocols = ws_protocols;
    info.user = app;
    info.options = LWS_SERVER_OPTION_VALIDATE_UTF8;
    info.retry_and_idle_policy = &retry;
    info.timeout_secs = 10;
    info.max_http_header_data = AUTH_TOKEN_MAX + 4096; /* ?token= is long */
    info.vhost_name = "default";
    return lws_create_context(&info);
}

int main(int argc, char **argv)
{
    static struct app app; /* zeroed; lives as long as the process */
    char err[512];
    const char *web_default = default_web_root();
    switch (config_load(&app.cfg, argc, argv, web_default, err, sizeof err)) {
    case CONFIG_HELP:
        config_usage(web_default);
        return 0;
    case CONFIG_ERROR:
        fprintf(stderr, "wsgate: %s\n", err);
        return 2;
    case CONFIG_OK:
        break;
    }
    log_set_level(app.cfg.log_level);
    log_set_format(app.cfg.log_format);
    lws_set_log_level(LLL_ERR | (log_enabled(LOG_DEBUG) ? LLL_WARN | LLL_NOTICE : 0),
                      lws_log_emit);
    signal(SIGPIPE, SIG_IGN); /* hiredis writes with write(2) */
    raise_fd_limit();
    if (getrandom(&app.session_salt, sizeof app.session_salt, 0) < 0)
        app.session_salt = (uint32_t)getpid();
    srandom(app.session_salt);

    int status = 1;
    char node[CONFIG_STR_MAX + 16];
    struct drain drain = {.app = &app};
    struct event *sigterm = NULL, *sigint = NULL, *sweep = NULL;

    app.base = loop_base_new();
    app.batch_buf = malloc(LWS_PRE + APP_BATCH_MAX);
    if (!app.base || !app.batch_buf) {
        log_error("out of memory at start-up");
        goto out;
    }
    app.lws = create_lws(&app);
    struct lws_vhost *vh = app.lws ? lws_get_vhost_by_name(app.lws, "default") : NULL;
    if (!vh) {
        log_error("cannot create the libwebsockets context");
        goto out;
    }
    app.loop = loop_new(app.base, app.lws, vh, app.cfg.listen_host,
                        app.cfg.listen_port, app.cfg.sndbuf, err, sizeof err);
    if (!app.loop) {
        log_error("%s", err);
        goto out;
    }
    if (app.cfg.node_id[0]) {
        app.node_id = app.cfg.node_id;
    } else {
        char host[CONFIG_STR_MAX] = "wsgate";
        gethostname(host, sizeof host - 1);
        snprintf(node, sizeof node, "%s:%d", host, loop_port(app.loop));
        app.node_id = node;
    }
    log_set_node(app.node_id);

    if (app.cfg.auth_mode != AUTH_MODE_OFF) {
        app.auth = auth_key_new(app.cfg.jwt_secret, app.cfg.jwt_secret_len);
        if (app.cfg.jwt_secret_len < AUTH_SECRET_RECOMMENDED)
            log_warn("the JWT secret is shorter than %d bytes: easy to guess",
                     AUTH_SECRET_RECOMMENDED);
        if (!app.auth) {
            log_error("cannot set up the JWT verifier");
            goto out;
        }
    }
    if (app.cfg.anonymous_channels[0] &&
        auth_grants_parse(app.cfg.anonymous_channels, &app.anonymous, err, sizeof err) < 0) {
        fprintf(stderr, "wsgate: --anonymous-channels: %s\n", err);
        status = 2;
        goto out;
    }

    app.hub = hub_new(&sess_hub_callbacks, app.cfg.max_message_size);
    if (!app.hub) {
        log_error("out of memory at start-up");
        goto out;
    }
    struct broker_events ev = hub_broker_events(app.hub);
    app.broker = app.cfg.use_redis
                     ? broker_redis_new(app.base, &app.cfg.redis,
                                        app.cfg.channel_prefix, &ev)
                     : broker_memory_new(&ev);
    if (!app.broker) {
        log_error("cannot create the broker");
        goto out;
    }
    hub_set_broker(app.hub, app.broker);

    struct timeval second = {1, 0};
    drain.deadline = evtimer_new(app.base, on_deadline, &app);
    drain.tick = event_new(app.base, -1, EV_PERSIST, on_drain_tick, &drain);
    sweep = event_new(app.base, -1, EV_PERSIST, on_sweep, &app);
    sigterm = evsignal_new(app.base, SIGTERM, on_signal, &drain);
    sigint = evsignal_new(app.base, SIGINT, on_signal, &drain);
    if (!drain.deadline || !drain.tick || !sweep || !sigterm || !sigint ||
        evsignal_add(sigterm, NULL) || evsignal_add(sigint, NULL) ||
        event_add(sweep, &second)) {
        log_error("cannot install signal handlers and timers");
        goto out;
    }

    log_info("listening on %s:%d (node %s, broker %s)", app.cfg.listen_host,
             loop_port(app.loop), app.node_id,
             app.cfg.use_redis ? "redis" : "embedded");
    if (event_base_dispatch(app.base) < 0) {
        log_error("event loop failed");
        goto out;
    }
    log_info("shut down cleanly");
    status = 0;

out:
    /* lws closes what is left (sessions leave the hub), then pending
     * publishes fail as the broker goes, then the rest. */
    if (app.lws)
        lws_context_destroy(app.lws);
    broker_free(app.broker);
    hub_free(app.hub);
    loop_free(app.loop);
    if (sigterm) event_free(sigterm);
    if (sigint) event_free(sigint);
    if (sweep) event_free(sweep);
    if (drain.tick) event_free(drain.tick);
    if (drain.deadline) event_free(drain.deadline);
    if (app.base) event_base_free(app.base);
    free(app.batch_buf);
    auth_key_free(app.auth);
    auth_grants_clear(&app.anonymous);
    return status;
}
