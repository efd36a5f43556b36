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
#include <unistd.h>

#include "broker/broker.h"
#include "config.h"
#include "core/app.h"
#include "core/auth.h"
#include "core/client.h"
#include "core/hub.h"
#include "core/msg.h"
#include "log.h"
#include "net/server.h"

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

/* More descriptors than the default 1024: one per client. */
static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

/* Node id: --node-id, else hostname:port once the port is bound. */
static const char *node_id(const struct config *cfg, int port, char *buf, size_t len)
{
    if (cfg->node_id[0])
        return cfg->node_id;
    char host[CONFIG_STR_MAX] = "wsgate";
    gethostname(host, sizeof host - 1);
    snprintf(buf, len, "%s:%d", host, port);
    return buf;
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
    if (app.cfg.anonymous_channels[0] &&
        auth_grants_parse(app.cfg.anonymous_channels, &app.anonymous, err, sizeof err) < 0) {
        fprintf(stderr, "wsgate: --anonymous-channels: %s\n", err);
        return 2;
    }
    log_set_level(app.cfg.log_level);
    log_set_format(app.cfg.log_format);
    signal(SIGPIPE, SIG_IGN); /* hiredis writes with write(2) */
    raise_fd_limit();
    if (getrandom(&app.session_salt, sizeof app.session_salt, 0) < 0)
        app.session_salt = (uint32_t)getpid();
    srandom(app.session_salt);

    int status = 1;
    char node[CONFIG_STR_MAX + 16];
    struct server *server = NULL;
    if (!(app.batch = msg_new(APP_BATCH_MAX))) {
        log_error("out of memory at start-up");
        goto out;
    }
    if (!(server = server_new(&app, err, sizeof err))) {
        log_error("%s", err);
        goto out;
    }
    app.node_id = node_id(&app.cfg, server_port(server), node, sizeof node);
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
    app.broker = app.cfg.use_redis
                     ? broker_redis_new(server_base(server), &app.cfg.redis,
                                        app.cfg.channel_prefix, &ev)
                     : broker_memory_new(&ev);
    if (!app.broker || hub_set_broker(app.hub, app.broker) < 0) {
        log_error("cannot create the broker");
        goto out;
    }

    unsigned sockets = server_max_sockets(server);
    log_info("listening on %s:%d (node %s, broker %s); holds up to %u connections "
             "(--max-connections %u, %u client sockets under the descriptor limit)",
             app.cfg.listen_host, server_port(server), app.node_id,
             app.cfg.use_redis ? "redis" : "embedded",
             sockets < app.cfg.max_connections ? sockets : app.cfg.max_connections,
             app.cfg.max_connections, sockets);
    if (server_run(server) < 0)
        goto out;
    log_info("shut down cleanly");
    status = 0;

out:
    /* Connections close (clients leave the hub), then pending publishes
     * fail as the broker goes, then the rest. */
    server_shutdown(server);
    broker_free(app.broker);
    hub_free(app.hub);
    server_free(server);
    msg_unref(app.batch);
    auth_key_free(app.auth);
    auth_grants_clear(&app.anonymous);
    return status;
}
