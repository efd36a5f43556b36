/* server.c - see server.h. */
#include "net/server.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <libwebsockets.h>

#include "core/client.h"
#include "core/clock.h"
#include "core/drain.h"
#include "log.h"
#include "net/eio_poll.h"
#include "net/http_api.h"
#include "net/loop.h"
#include "net/ws.h"

#define DRAIN_GRACE_USEC 200000

struct server {
    struct app *app;
    struct event_base *base;
    struct lws_context *lws;
    struct loop *loop;
    struct event *sigterm, *sigint, *sweep, *slice, *deadline;
    struct drain drain;
};

static void lws_log_emit(int level, const char *line)
{
    size_t n = strlen(line);
    while (n && line[n - 1] == '\n')
        n--;
    log_msg(level == LLL_ERR ? LOG_ERROR : LOG_DEBUG, "lws: %.*s", (int)n, line);
}

static struct lws_context *create_lws(struct app *app)
{
    /* No lws keepalive timers (client_sweep pings; see there why). */
    static const lws_retry_bo_t retry = {.secs_since_valid_hangup = 0};
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
    if (app->cfg.tls_cert[0]) {
        info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
        info.ssl_cert_filepath = app->cfg.tls_cert;
        info.ssl_private_key_filepath = app->cfg.tls_key;
        info.alpn = "http/1.1"; /* lws would offer h2, which ws.c and http_api.c do not speak */
    }
    return lws_create_context(&info);
}

struct server *server_new(struct app *app, char *err, size_t errlen)
{
    lws_set_log_level(LLL_ERR | (log_enabled(LOG_DEBUG) ? LLL_WARN | LLL_NOTICE : 0),
                      lws_log_emit);
    struct server *s = calloc(1, sizeof *s);
    if (!s || !(s->base = loop_base_new())) {
        snprintf(err, errlen, "out of memory at start-up");
        server_free(s);
        return NULL;
    }
    s->app = app;
    s->lws = create_lws(app);
    struct lws_vhost *vh = s->lws ? lws_get_vhost_by_name(s->lws, "default") : NULL;
    if (!vh) {
        snprintf(err, errlen, app->cfg.tls_cert[0]
                     ? "cannot create the libwebsockets context: check that --tls-cert "
                       "and --tls-key hold a PEM certificate and its key"
                     : "cannot create the libwebsockets context");
        server_free(s);
        return NULL;
    }
    s->loop = loop_new(s->base, s->lws, vh, app->cfg.listen_host,
                       app->cfg.listen_port, app->node != NULL, app->cfg.sndbuf,
                       err, errlen);
    if (!s->loop) {
        server_free(s);
        return NULL;
    }
    if (app->cfg.tls_cert[0])
        loop_use_tls(s->loop);
    loop_count_sends(s->loop, &app->metrics->send_submits_total,
                     &app->metrics->sends_batched_total);
    loop_set_write_window(s->loop, (unsigned)(app->cfg.write_window_ms * 1000),
                          &app->metrics->writes_held_total);
    return s;
}

int server_port(const struct server *s) { return loop_port(s->loop); }

unsigned server_max_sockets(const struct server *s) { return loop_max_sockets(s->loop); }

struct event_base *server_base(struct server *s) { return s->base; }

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct server *s = arg;
    if (s->app->nclients)
        log_warn("drain window over with %u clients still open", s->app->nclients);
    event_base_loopbreak(s->base);
}

/* Every client is gone: stop accepting and exit after a short grace. */
static void finish(struct server *s)
{
    struct timeval grace = {0, DRAIN_GRACE_USEC};
    event_del(s->slice);
    loop_stop_accepting(s->loop);
    evtimer_add(s->deadline, &grace);
}

static void on_slice(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct server *s = arg;
    if (drain_slice(&s->drain, s->app, clock_us()))
        finish(s);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    struct server *s = arg;
    struct app *app = s->app;
    if (app->draining) {
        log_warn("second signal %d, exiting now", (int)sig);
        event_base_loopbreak(s->base);
        return;
    }
    double window = app->cfg.drain_seconds;
    log_info("signal %d: draining %u clients over %.1f s", (int)sig, app->nclients, window);
    drain_begin(&s->drain, app, clock_us());
    http_publish_gauges(app); /* the other workers' /readyz says 503 too */
    struct timeval slice = {0, DRAIN_SLICE_US};
    struct timeval end = {(time_t)window,
                          (suseconds_t)((window - (double)(time_t)window) * 1e6)};
    evtimer_add(s->deadline, &end);
    event_add(s->slice, &slice);
    on_slice(-1, 0, s);
}

static void on_sweep(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    client_sweep(arg);
    http_publish_gauges(arg);
    eio_poll_sweep(arg);
}

int server_run(struct server *s)
{
    struct timeval second = {1, 0};
    s->deadline = evtimer_new(s->base, on_deadline, s);
    s->slice = event_new(s->base, -1, EV_PERSIST, on_slice, s);
    s->sweep = event_new(s->base, -1, EV_PERSIST, on_sweep, s->app);
    s->sigterm = evsignal_new(s->base, SIGTERM, on_signal, s);
    s->sigint = evsignal_new(s->base, SIGINT, on_signal, s);
    if (!s->deadline || !s->slice || !s->sweep || !s->sigterm || !s->sigint ||
        evsignal_add(s->sigterm, NULL) || evsignal_add(s->sigint, NULL) ||
        event_add(s->sweep, &second)) {
        log_error("cannot install signal handlers and timers");
        return -1;
    }
    if (event_base_dispatch(s->base) < 0) {
        log_error("event loop failed");
        return -1;
    }
    return 0;
}

void server_shutdown(struct server *s)
{
    if (s && s->lws) {
        lws_context_destroy(s->lws);
        s->lws = NULL;
        eio_poll_free_all(s->app); /* after their HTTP connections let go */
    }
}

void server_free(struct server *s)
{
    if (!s)
        return;
    server_shutdown(s);
    loop_free(s->loop);
    struct event *evs[] = {s->sigterm, s->sigint, s->sweep, s->slice, s->deadline};
    for (size_t i = 0; i < sizeof evs / sizeof evs[0]; i++)
        if (evs[i])
            event_free(evs[i]);
    if (s->base)
        event_base_free(s->base);
    free(s);
}
