/* main.c - flags, wiring and shutdown order.
 *
 * Start-up order matters: the server (whose lws context points to the app)
 * binds first, so the node id can name the port; the hub exists before the
 * broker that reports to it. Shutdown runs the other way round. */
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "broker/broker.h"
#include "cmd/token.h"
#include "config.h"
#include "core/app.h"
#include "core/auth.h"
#include "core/client.h"
#include "core/hub.h"
#include "core/msg.h"
#include "core/sio_bridge.h"
#include "log.h"
#include "net/heartbeat.h"
#include "net/server.h"
#include "process.h"
#include "workers.h"

/* Run from the build tree: serve the source tree's web/; installed: the
 * share directory beside the binary's bin/ (WSGATE_INSTALL_WEB is relative
 * to it), wherever the install prefix put both. */
static const char *default_web_root(void)
{
    static char web[PATH_MAX];
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    char *slash = n > 0 ? (exe[n] = '\0', strrchr(exe, '/')) : NULL;
    if (!slash)
        return WSGATE_INSTALL_WEB; /* no /proc: relative to the working directory */
    *slash = '\0';
    if (!strcmp(exe, WSGATE_BUILD_DIR))
        return WSGATE_SOURCE_WEB;
    char joined[2 * PATH_MAX];
    snprintf(joined, sizeof joined, "%s/%s", exe, WSGATE_INSTALL_WEB);
    if (!realpath(joined, web)) /* missing: show the path it looked at */
        snprintf(web, sizeof web, "%.*s", PATH_MAX - 1, joined);
    return web;
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

/* Node id: --node-id, else hostname:port (port 0, i.e. --port 0 before the
 * kernel picked one: the hostname alone, for the lines logged before). */
static const char *node_id(const struct config *cfg, int port, char *buf, size_t len)
{
    if (cfg->node_id[0])
        return cfg->node_id;
    char host[CONFIG_STR_MAX] = "wsgate";
    gethostname(host, sizeof host - 1);
    snprintf(buf, len, port ? "%s:%d" : "%s", host, port);
    return buf;
}

/* What config_load() cannot check: the file system and the grant syntax of
 * core/auth.c. Returns 0, or -1 with one line in err. A missing default web
 * root only sets *no_web (a binary copied without its share directory still
 * serves /ws); one that was asked for is an error. */
static int check_settings(struct app *app, const char *web_default, int *no_web,
                          char *err, size_t errlen)
{
    struct stat sb;
    *no_web = stat(app->cfg.web_root, &sb) < 0 || !S_ISDIR(sb.st_mode);
    if (*no_web && strcmp(app->cfg.web_root, web_default)) {
        snprintf(err, errlen, "--web-root: '%.200s' is not a directory", app->cfg.web_root);
        return -1;
    }
    /* The grant lists: an empty one grants nothing. */
    const struct { const char *flag, *list; struct auth_grants *out; } lists[] = {
        {"--anonymous-channels", app->cfg.anonymous_channels, &app->anonymous},
        {"--history-channels", app->cfg.history_channels, &app->history_channels},
        {"--presence-channels", app->cfg.presence_channels, &app->presence_channels},
    };
    char why[256];
    for (size_t i = 0; i < sizeof lists / sizeof lists[0]; i++) {
        if (lists[i].list[0] && auth_grants_parse(lists[i].list, lists[i].out, why, sizeof why) < 0) {
            snprintf(err, errlen, "%s: %s", lists[i].flag, why);
            return -1;
        }
    }
    return 0;
}

static void clear_grants(struct app *app)
{
    auth_grants_clear(&app->anonymous);
    auth_grants_clear(&app->history_channels);
    auth_grants_clear(&app->presence_channels);
}

/* `wsgate config --check [flags]`: the effective settings, or the error. */
static int config_check(struct app *app, int no_web)
{
    config_print(&app->cfg, stdout);
    if (no_web)
        printf("# note: no web root at %s: static files will not be served\n",
               app->cfg.web_root);
    if (!app->cfg.api_key[0] && !app->cfg.admin_key[0] && !app->cfg.api_insecure)
        printf("# note: the HTTP API (/api/...) answers 403: no --api-key, no --api-insecure\n");
    printf("# configuration OK\n");
    return 0;
}

int main(int argc, char **argv)
{
    static struct app app; /* zeroed; lives as long as the process */
    static struct metrics metrics; /* a worker's are shared instead */
    app.metrics = &metrics;
    char err[512];
    if (argc > 1 && !strcmp(argv[1], "token"))
        return cmd_token(argc - 1, argv + 1);
    int check_only = argc > 1 && !strcmp(argv[1], "config");
    if (check_only) {
        if (argc < 3 || strcmp(argv[2], "--check")) {
            fprintf(stderr, "wsgate: config: expected 'wsgate config --check [--flag value]...'\n");
            return 2;
        }
        argc -= 2; /* argv[0] is now "--check", which config_load() skips */
        argv += 2;
    }
    const char *web_default = default_web_root();
    switch (config_load(&app.cfg, argc, argv, web_default, err, sizeof err)) {
    case CONFIG_HELP:
        config_usage(web_default);
        return 0;
    case CONFIG_VERSION:
        printf("wsgate %s\n", WSGATE_VERSION);
        return 0;
    case CONFIG_ERROR:
        fprintf(stderr, "wsgate: %s\n", err);
        return 2;
    case CONFIG_OK:
        break;
    }
    int no_web;
    if (check_settings(&app, web_default, &no_web, err, sizeof err) < 0) {
        fprintf(stderr, "wsgate: %s\n", err);
        clear_grants(&app);
        return 2;
    }
    if (check_only) {
        clear_grants(&app);
        return config_check(&app, no_web);
    }
    struct history_opts hist = {.size = app.cfg.history_size,
                                .ttl = app.cfg.history_ttl,
                                .channels = &app.history_channels};
    struct presence_opts pres = {.ttl = app.cfg.presence_ttl,
                                 .channels = &app.presence_channels};
    log_set_level(app.cfg.log_level);
    log_set_format(app.cfg.log_format);
    signal(SIGPIPE, SIG_IGN); /* hiredis writes with write(2) */
    raise_fd_limit();
    if (workers_start(&app, err, sizeof err) < 0) {
        log_error("%s", err);
        return 1;
    }
    if (getrandom(&app.session_salt, sizeof app.session_salt, 0) < 0)
        app.session_salt = (uint32_t)getpid();
    srandom(app.session_salt);

    app.metrics->start_time = process_now();
    int status = 1;
    char node[CONFIG_STR_MAX + 16];
    struct server *server = NULL;
    struct sio_bridge *bridge = NULL;
    log_set_node(node_id(&app.cfg, app.cfg.listen_port, node, sizeof node));
    if (no_web)
        log_warn("no web root at %s: static files are not served", app.cfg.web_root);
    if (!app.cfg.api_key[0] && !app.cfg.admin_key[0] && !app.cfg.api_insecure)
        log_info("the HTTP API (/api/...) is off: it needs --api-key or --api-insecure");
    if (!(app.batch = msg_new(APP_BATCH_MAX))) {
        log_error("out of memory at start-up");
        goto out;
    }
    if (!(server = server_new(&app, err, sizeof err))) {
        log_error("%s", err);
        goto out;
    }
    app.node_id = node_id(&app.cfg, server_port(server), node, sizeof node);
    pres.node = app.node_id;
    log_set_node(app.node_id);

    if (app.cfg.auth_mode != AUTH_MODE_OFF) {
        /* No clock-skew leeway: a token expires when it says. */
        app.auth = auth_key_new(app.cfg.jwt_secret, app.cfg.jwt_secret_len, 0);
        if (app.cfg.jwt_secret_len < AUTH_SECRET_RECOMMENDED)
            log_warn("the JWT secret is shorter than %d bytes: easy to guess",
                     AUTH_SECRET_RECOMMENDED);
        if (!app.auth) {
            log_error("cannot set up the JWT verifier");
            goto out;
        }
    }

    app.hub = hub_new(&client_hub_callbacks, app.cfg.max_message_size);
    if (!app.hub) {
        log_error("out of memory at start-up");
        goto out;
    }
    struct broker_events ev = hub_broker_events(app.hub);
    struct broker_bridge hooks;
    if (app.cfg.socketio_adapter) {
        if (!(bridge = sio_bridge_new(&app))) {
            log_error("out of memory at start-up");
            goto out;
        }
        hooks = sio_bridge_hooks(bridge);
        log_info("socket.io redis-adapter: --socketio-channel %s meets Node servers on %s",
                 app.cfg.socketio_channel, hooks.raw);
    }
    app.broker = app.cfg.use_redis
                     ? broker_redis_new(server_base(server), &app.cfg.redis,
                                        app.cfg.channel_prefix, &ev, &hist, &pres,
                                        bridge ? &hooks : NULL)
                     : broker_memory_new(&ev, &hist, &pres);
    if (!app.broker || hub_set_broker(app.hub, app.broker) < 0) {
        log_error("cannot create the broker");
        goto out;
    }

    if (!(app.heartbeat = heartbeat_new(&app, server_base(server), server_port(server)))) {
        log_error("out of memory at start-up");
        goto out;
    }

    unsigned sockets = server_max_sockets(server);
    app.metrics->capacity = sockets < app.cfg.max_connections ? sockets : app.cfg.max_connections;
    if (app.node) { /* the supervisor says "listening on" for the node */
        log_info("worker %u (pid %d) serves on %s:%d (node %s); holds up to %u "
                 "connections (%u client sockets under the descriptor limit)",
                 app.worker, (int)getpid(), app.cfg.listen_host, server_port(server),
                 app.node_id, app.metrics->capacity, sockets);
        workers_ready(&app, app.metrics->capacity);
    } else {
        log_info("listening on %s:%d (node %s, broker %s); holds up to %u connections "
                 "(--max-connections %u, %u client sockets under the descriptor limit)",
                 app.cfg.listen_host, server_port(server), app.node_id,
                 app.cfg.use_redis ? "redis" : "embedded", app.metrics->capacity,
                 app.cfg.max_connections, sockets);
    }
    if (server_run(server) < 0)
        goto out;
    log_info("shut down cleanly");
    status = 0;

out:
    /* Connections close (clients leave the hub), then pending publishes
     * fail as the broker goes, then the rest. */
    server_shutdown(server);
    heartbeat_free(app.heartbeat);
    broker_free(app.broker);
    sio_bridge_free(bridge);
    hub_free(app.hub);
    server_free(server);
    msg_unref(app.batch);
    auth_key_free(app.auth);
    clear_grants(&app);
    return status;
}
