/* config.c - see config.h. */
#include "config.h"
#include "core/channel.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A setter validates one value; on failure it writes what was expected into
 * why (the caller prefixes the flag name). */
typedef int (*setter_fn)(struct config *cfg, const char *v, char *why,
                         size_t whylen);

enum { OPT_BOOL = 1, OPT_SECRET = 2 };

struct option_def {
    const char *name;   /* flag without the leading "--" */
    const char *defval; /* NULL: no default applied */
    const char *help;
    setter_fn set;
    unsigned kind;      /* OPT_BOOL: "--flag" alone means true; OPT_SECRET:
                         * masked by config_print() */
    const char *unset;  /* --help's default when defval is NULL */
};

static int copy_str(char *dst, size_t cap, const char *v)
{
    size_t n = strlen(v);
    if (n >= cap)
        return -1;
    memcpy(dst, v, n + 1);
    return 0;
}

/* copy_str() with the error a setter reports. */
static int set_str(char *dst, size_t cap, const char *v, char *why, size_t n)
{
    if (copy_str(dst, cap, v) == 0)
        return 0;
    snprintf(why, n, "at most %zu bytes", cap - 1);
    return -1;
}

long config_read_secret(const char *path, unsigned char *buf, size_t cap,
                        char *why, size_t n)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(why, n, "cannot read it: %s", strerror(errno));
        return -1;
    }
    size_t len = fread(buf, 1, cap, f);
    int more = fgetc(f) != EOF;
    fclose(f);
    if (len && buf[len - 1] == '\n')
        len--;
    if (len && buf[len - 1] == '\r')
        len--;
    if (!len || more) {
        snprintf(why, n, "expected 1 to %zu bytes", cap);
        return -1;
    }
    return (long)len;
}

/* Digits only: strtol would also take signs and leading blanks. */
static int parse_port(const char *s, int *port)
{
    long p = 0;
    if (!*s || strlen(s) > 5)
        return -1;
    for (; *s; s++) {
        if (!isdigit((unsigned char)*s))
            return -1;
        p = p * 10 + (*s - '0');
    }
    if (p > 65535)
        return -1;
    *port = (int)p;
    return 0;
}

int config_parse_listen(const char *s, char *host, size_t hostlen, int *port)
{
    const char *colon = strrchr(s, ':');
    if (!colon || colon == s)
        return -1;
    const char *h = s;
    size_t hl = (size_t)(colon - s);
    if (h[0] == '[') { /* [v6addr]:port */
        if (hl < 3 || h[hl - 1] != ']')
            return -1;
        h++;
        hl -= 2;
    } else if (memchr(h, ':', hl)) { /* an IPv6 address needs brackets */
        return -1;
    }
    int p;
    if (hl >= hostlen || memchr(h, ']', hl) || memchr(h, '[', hl) ||
        parse_port(colon + 1, &p) < 0)
        return -1;
    memcpy(host, h, hl);
    host[hl] = '\0';
    *port = p;
    return 0;
}

int config_parse_redis_url(const char *s, struct redis_addr *out)
{
    static const char scheme[] = "redis://";
    memset(out, 0, sizeof *out);
    out->port = 6379;
    if (strncmp(s, scheme, sizeof scheme - 1) != 0)
        return -1;
    s += sizeof scheme - 1;

    const char *at = strrchr(s, '@');
    if (at) { /* [user]:password@ */
        const char *colon = memchr(s, ':', (size_t)(at - s));
        if (!colon)
            return -1;
        size_t ul = (size_t)(colon - s), pl = (size_t)(at - colon - 1);
        if (ul >= sizeof out->user || pl >= sizeof out->password || pl == 0)
            return -1;
        memcpy(out->user, s, ul);
        memcpy(out->password, colon + 1, pl);
        s = at + 1;
    }

    const char *slash = strchr(s, '/');
    size_t hp = slash ? (size_t)(slash - s) : strlen(s);
    char hostport[CONFIG_HOST_MAX + 8];
    if (hp == 0 || hp >= sizeof hostport)
        return -1;
    memcpy(hostport, s, hp);
    hostport[hp] = '\0';

    char *colon = strrchr(hostport, ':');
    char *close = strrchr(hostport, ']');
    if (colon && (!close || colon > close)) { /* explicit port */
        if (config_parse_listen(hostport, out->host, sizeof out->host,
                                &out->port) < 0 || out->port == 0)
            return -1;
    } else if (hostport[0] == '[') { /* [v6addr] */
        size_t hl = strlen(hostport);
        if (hl < 3 || hostport[hl - 1] != ']' || hl - 2 >= sizeof out->host ||
            memchr(hostport + 1, '[', hl - 2) || memchr(hostport + 1, ']', hl - 2))
            return -1;
        memcpy(out->host, hostport + 1, hl - 2);
        out->host[hl - 2] = '\0';
    } else if (!colon && !close && !strchr(hostport, '[') && hp < sizeof out->host) {
        memcpy(out->host, hostport, hp + 1);
    } else {
        return -1;
    }
    if (out->host[0] == '\0')
        return -1;

    if (slash && slash[1]) {
        char *end;
        errno = 0;
        long db = strtol(slash + 1, &end, 10);
        if (*end || errno || db < 0 || db > 65535)
            return -1;
        out->db = (int)db;
    }
    return 0;
}

int config_parse_size(const char *s, size_t *out)
{
    char *end;
    if (!isdigit((unsigned char)s[0]))
        return -1;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    unsigned long long mult = 1;
    if (*end == 'k' || *end == 'K')
        mult = 1024, end++;
    else if (*end == 'm' || *end == 'M')
        mult = 1024 * 1024, end++;
    if (*end || errno || v > (1ULL << 40) / mult)
        return -1;
    *out = (size_t)(v * mult);
    return 0;
}

static int set_listen(struct config *c, const char *v, char *why, size_t n)
{
    if (config_parse_listen(v, c->listen_host, sizeof c->listen_host,
                            &c->listen_port) == 0)
        return 0;
    snprintf(why, n, "expected HOST:PORT");
    return -1;
}

static int set_redis(struct config *c, const char *v, char *why, size_t n)
{
    if (v[0] == '\0') { /* an empty value selects the embedded broker */
        c->use_redis = 0;
        return 0;
    }
    if (config_parse_redis_url(v, &c->redis) == 0) {
        c->use_redis = 1;
        return 0;
    }
    snprintf(why, n, "expected redis://[[user]:password@]host[:port][/db]");
    return -1;
}

/* The prefix is glued to channel names, so it obeys the same rule. */
static int set_prefix(struct config *c, const char *v, char *why, size_t n)
{
    if (!channel_chars(v, strlen(v))) {
        snprintf(why, n, "only A-Z a-z 0-9 _ - . : @ / are allowed");
        return -1;
    }
    return set_str(c->channel_prefix, sizeof c->channel_prefix, v, why, n);
}

static int set_socketio_channel(struct config *c, const char *v, char *why, size_t n)
{
    if (!channel_name_valid(v, strlen(v))) {
        snprintf(why, n, "expected a channel name: 1-200 bytes of A-Z a-z 0-9 _ - . : @ /");
        return -1;
    }
    return set_str(c->socketio_channel, sizeof c->socketio_channel, v, why, n);
}

static int set_node_id(struct config *c, const char *v, char *why, size_t n)
{
    for (const char *p = v; *p; p++) {
        if (!isgraph((unsigned char)*p) || *p == '"' || *p == '\\') {
            snprintf(why, n, "printable characters without quotes only");
            return -1;
        }
    }
    return set_str(c->node_id, sizeof c->node_id, v, why, n);
}

static int set_web_root(struct config *c, const char *v, char *why, size_t n)
{
    if (v[0] && copy_str(c->web_root, sizeof c->web_root, v) == 0)
        return 0;
    snprintf(why, n, "expected a directory path");
    return -1;
}

static int set_log_level(struct config *c, const char *v, char *why, size_t n)
{
    if (log_level_parse(v, &c->log_level) == 0)
        return 0;
    snprintf(why, n, "expected debug, info, warn or error");
    return -1;
}

static int set_log_format(struct config *c, const char *v, char *why, size_t n)
{
    if (log_format_parse(v, &c->log_format) == 0)
        return 0;
    snprintf(why, n, "expected text or json");
    return -1;
}

static int set_size_in(size_t *dst, const char *v, size_t lo, size_t hi,
                       char *why, size_t n)
{
    size_t s;
    if (config_parse_size(v, &s) == 0 && s >= lo && s <= hi) {
        *dst = s;
        return 0;
    }
    snprintf(why, n, "expected a byte count from %zu to %zu (k and m suffixes allowed)",
             lo, hi);
    return -1;
}

static int set_max_message(struct config *c, const char *v, char *why, size_t n)
{
    return set_size_in(&c->max_message_size, v, 256, 16u << 20, why, n);
}

static int set_max_queue(struct config *c, const char *v, char *why, size_t n)
{
    return set_size_in(&c->max_queue_bytes, v, 1024, 1u << 30, why, n);
}

static int set_double_in(double *dst, const char *v, double lo, double hi,
                         const char *unit, char *why, size_t n)
{
    char *end;
    errno = 0;
    double d = strtod(v, &end);
    if (v[0] && !isspace((unsigned char)v[0]) && !*end && !errno && d >= lo && d <= hi) {
        *dst = d;
        return 0;
    }
    snprintf(why, n, "expected %s from %g to %g", unit, lo, hi);
    return -1;
}

static int set_uint_in(unsigned *dst, const char *v, unsigned lo, unsigned hi,
                       char *why, size_t n)
{
    size_t s;
    if (config_parse_size(v, &s) == 0 && s >= lo && s <= hi && !strpbrk(v, "kKmM")) {
        *dst = (unsigned)s;
        return 0;
    }
    snprintf(why, n, "expected a whole number from %u to %u", lo, hi);
    return -1;
}

static int set_drain(struct config *c, const char *v, char *why, size_t n)
{
    return set_double_in(&c->drain_seconds, v, 0, 3600, "seconds", why, n);
}

static int set_max_connections(struct config *c, const char *v, char *why, size_t n)
{
    return set_uint_in(&c->max_connections, v, 1, 10000000, why, n);
}

static int set_workers(struct config *c, const char *v, char *why, size_t n)
{
    if (!strcmp(v, "auto")) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        c->workers = cores < 1 ? 1 : cores > CONFIG_WORKERS_MAX ? CONFIG_WORKERS_MAX
                                                                : (unsigned)cores;
        return 0;
    }
    if (set_uint_in(&c->workers, v, 1, CONFIG_WORKERS_MAX, why, n) == 0)
        return 0;
    snprintf(why, n, "expected auto or a whole number from 1 to %u", CONFIG_WORKERS_MAX);
    return -1;
}

static int set_max_channels(struct config *c, const char *v, char *why, size_t n)
{
    return set_uint_in(&c->max_channels, v, 1, 1000000, why, n);
}

static int set_publish_rate(struct config *c, const char *v, char *why, size_t n)
{
    return set_double_in(&c->publish_rate, v, 0, 1e6, "publishes per second", why, n);
}

static int set_publish_burst(struct config *c, const char *v, char *why, size_t n)
{
    return set_uint_in(&c->publish_burst, v, 1, 1000000, why, n);
}

static int set_queue_soft(struct config *c, const char *v, char *why, size_t n)
{
    return set_size_in(&c->queue_soft_bytes, v, 0, 1u << 30, why, n);
}

static int set_sndbuf(struct config *c, const char *v, char *why, size_t n)
{
    return set_size_in(&c->sndbuf, v, 0, 64u << 20, why, n);
}

static int set_write_window(struct config *c, const char *v, char *why, size_t n)
{
    return set_double_in(&c->write_window_ms, v, 0, 1000, "milliseconds", why, n);
}

static int set_queue_soft_seconds(struct config *c, const char *v, char *why, size_t n)
{
    return set_double_in(&c->queue_soft_seconds, v, 0, 3600, "seconds", why, n);
}

static int set_ping_interval(struct config *c, const char *v, char *why, size_t n)
{
    return set_double_in(&c->ping_interval, v, 0, 3600, "seconds", why, n);
}

static int set_ping_timeout(struct config *c, const char *v, char *why, size_t n)
{
    return set_double_in(&c->ping_timeout, v, 0, 3600, "seconds", why, n);
}

/* A key a client can send: an Authorization header holds no control
 * characters (a key with one would lock /api/publish for good). */
static int key_sendable(const unsigned char *k, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (k[i] < 0x20 || k[i] == 0x7f)
            return 0;
    return 1;
}

static int set_key(char *dst, size_t cap, const char *v, char *why, size_t n)
{
    if (!key_sendable((const unsigned char *)v, strlen(v))) {
        snprintf(why, n, "control characters cannot be sent in an Authorization header");
        return -1;
    }
    return set_str(dst, cap, v, why, n);
}

static int set_api_key(struct config *c, const char *v, char *why, size_t n)
{
    return set_key(c->api_key, sizeof c->api_key, v, why, n);
}

static int set_admin_key(struct config *c, const char *v, char *why, size_t n)
{
    return set_key(c->admin_key, sizeof c->admin_key, v, why, n);
}

static int set_api_key_file(struct config *c, const char *v, char *why, size_t n)
{
    unsigned char key[sizeof c->api_key];
    long len = config_read_secret(v, key, sizeof key - 1, why, n);
    if (len < 0)
        return -1;
    if (!key_sendable(key, (size_t)len)) {
        snprintf(why, n, "expected one line holding the key");
        return -1;
    }
    memcpy(c->api_key, key, (size_t)len);
    c->api_key[len] = '\0';
    return 0;
}

static int set_jwt_secret(struct config *c, const char *v, char *why, size_t n)
{
    size_t len = strlen(v);
    if (len >= 1 && len <= sizeof c->jwt_secret) {
        memcpy(c->jwt_secret, v, len);
        c->jwt_secret_len = len;
        return 0;
    }
    snprintf(why, n, "expected 1 to %zu bytes", sizeof c->jwt_secret);
    return -1;
}

static int set_jwt_secret_file(struct config *c, const char *v, char *why, size_t n)
{
    long len = config_read_secret(v, c->jwt_secret, sizeof c->jwt_secret, why, n);
    if (len < 0)
        return -1;
    c->jwt_secret_len = (size_t)len;
    return 0;
}

static int set_auth(struct config *c, const char *v, char *why, size_t n)
{
    static const char *const modes[] = {"off", "optional", "required"};
    for (int i = 0; i < 3; i++) {
        if (!strcmp(v, modes[i])) {
            c->auth_mode = (enum auth_mode)(AUTH_MODE_OFF + i);
            return 0;
        }
    }
    snprintf(why, n, "expected required, optional or off");
    return -1;
}

static int set_anonymous(struct config *c, const char *v, char *why, size_t n)
{
    return set_str(c->anonymous_channels, sizeof c->anonymous_channels, v, why, n);
}

static int set_history_size(struct config *c, const char *v, char *why, size_t n)
{
    return set_uint_in(&c->history_size, v, 0, 100000, why, n);
}

static int set_history_ttl(struct config *c, const char *v, char *why, size_t n)
{
    return set_uint_in(&c->history_ttl, v, 1, 30 * 86400, why, n);
}

/* Checked as a grant list by main (core/auth.h owns that syntax). */
static int set_history_channels(struct config *c, const char *v, char *why, size_t n)
{
    return set_str(c->history_channels, sizeof c->history_channels, v, why, n);
}

static int set_presence_ttl(struct config *c, const char *v, char *why, size_t n)
{
    return set_uint_in(&c->presence_ttl, v, 1, 86400, why, n);
}

static int set_presence_channels(struct config *c, const char *v, char *why, size_t n)
{
    return set_str(c->presence_channels, sizeof c->presence_channels, v, why, n);
}

static int set_origins(struct config *c, const char *v, char *why, size_t n)
{
    for (const char *p = v; *p; p++) {
        if (!isgraph((unsigned char)*p) || *p == '"') {
            snprintf(why, n, "expected comma-separated origins like https://example.com");
            return -1;
        }
    }
    return set_str(c->allowed_origins, sizeof c->allowed_origins, v, why, n);
}

/* Booleans from a flag value, a variable or a file: the usual spellings. */
static int parse_bool(const char *v, int *out)
{
    static const char *const yes[] = {"1", "true", "yes", "on"};
    static const char *const no[] = {"0", "false", "no", "off", ""};
    for (size_t i = 0; i < 4; i++)
        if (!strcmp(v, yes[i]))
            return *out = 1, 0;
    for (size_t i = 0; i < 5; i++)
        if (!strcmp(v, no[i]))
            return *out = 0, 0;
    return -1;
}

static int set_bool(int *dst, const char *v, char *why, size_t n)
{
    if (parse_bool(v, dst) == 0)
        return 0;
    snprintf(why, n, "expected true or false");
    return -1;
}

static int set_api_insecure(struct config *c, const char *v, char *why, size_t n)
{
    return set_bool(&c->api_insecure, v, why, n);
}

static int set_socketio_adapter(struct config *c, const char *v, char *why, size_t n)
{
    return set_bool(&c->socketio_adapter, v, why, n);
}

/* A file the gateway reads at start (TLS certificate, key): refused now,
 * with the reason, when it cannot be read. */
static int set_readable(char *dst, size_t cap, const char *v, char *why, size_t n)
{
    FILE *f = v[0] ? fopen(v, "r") : NULL;
    if (!f || fgetc(f) == EOF) { /* a directory opens, but reads EISDIR */
        if (f && !ferror(f))
            snprintf(why, n, "the file is empty");
        else
            snprintf(why, n, "cannot read it: %s", v[0] ? strerror(errno) : "no path");
        if (f)
            fclose(f);
        return -1;
    }
    fclose(f);
    return set_str(dst, cap, v, why, n);
}

static int set_tls_cert(struct config *c, const char *v, char *why, size_t n)
{
    return set_readable(c->tls_cert, sizeof c->tls_cert, v, why, n);
}

static int set_tls_key(struct config *c, const char *v, char *why, size_t n)
{
    return set_readable(c->tls_key, sizeof c->tls_key, v, why, n);
}

/* Only records the path: config_load() reads the file before the
 * variables and flags that beat it. */
static int set_config_file(struct config *c, const char *v, char *why, size_t n)
{
    if (v[0] && copy_str(c->config_file, sizeof c->config_file, v) == 0)
        return 0;
    snprintf(why, n, "expected a file path");
    return -1;
}

static const struct option_def options[] = {
    {"config", NULL, "file of 'key = value' lines setting these flags (flags and WSGATE_* beat it)", set_config_file, 0, "none"},
    {"listen", "0.0.0.0:8080", "WebSocket and HTTP address (port 0: any free port)", set_listen, 0, NULL},
    {"redis", NULL, "Redis URL redis://[[user]:password@]host[:port][/db]", set_redis, 0, "none (embedded broker)"},
    {"channel-prefix", "wsgate:", "prefix of Redis channel names", set_prefix, 0, NULL},
    {"node-id", NULL, "node name in welcome frames and logs", set_node_id, 0, "hostname:port"},
    {"web-root", NULL, "directory of static files served at / (must exist)", set_web_root, 0, NULL},
    {"log-level", "info", "debug, info, warn or error", set_log_level, 0, NULL},
    {"log-format", "text", "text or json (one JSON object per line)", set_log_format, 0, NULL},
    {"max-message-size", "64k", "largest inbound frame, HTTP body or published payload", set_max_message, 0, NULL},
    {"max-queue-bytes", "1m", "per-client send queue; beyond it the client is closed as a slow consumer", set_max_queue, 0, NULL},
    {"drain-seconds", "10", "on SIGTERM, the window over which clients are closed (1001) before exit", set_drain, 0, NULL},
    {"max-connections", "10000", "WebSocket connections per worker process; more are refused with 503", set_max_connections, 0, NULL},
    {"workers", "1", "worker processes sharing the port (SO_REUSEPORT), under a supervisor when more than 1; auto: one per core; more than 1 needs --redis", set_workers, 0, NULL},
    {"max-channels", "100", "subscriptions per connection", set_max_channels, 0, NULL},
    {"publish-rate", "100", "publishes per second per connection (token bucket); 0: unlimited", set_publish_rate, 0, NULL},
    {"publish-burst", "200", "publishes a connection may send at once before the rate applies", set_publish_burst, 0, NULL},
    {"queue-soft-bytes", "256k", "send queue size a client may exceed only for --queue-soft-seconds; 0: off", set_queue_soft, 0, NULL},
    {"queue-soft-seconds", "10", "how long a send queue may stay over --queue-soft-bytes", set_queue_soft_seconds, 0, NULL},
    {"ping-interval", "25", "ping a client that has sent nothing for this many seconds", set_ping_interval, 0, NULL},
    {"ping-timeout", "35", "then drop it if it stays silent this many seconds more", set_ping_timeout, 0, NULL},
    {"sndbuf", "256k", "kernel send buffer per client socket (bounds what a stuck client pins); 0: autotuning", set_sndbuf, 0, NULL},
    {"write-window", "30", "a client written less than this many milliseconds ago waits until then, so the messages that come meanwhile share one send(); a message after a quieter spell leaves at once; 0: off", set_write_window, 0, NULL},
    {"api-key", NULL, "key the HTTP API (/api/...) requires as 'Authorization: Bearer KEY'", set_api_key, OPT_SECRET, "none (the API answers 403)"},
    {"api-key-file", NULL, "file holding the API key", set_api_key_file, 0, "none"},
    {"api-insecure", "false", "serve the HTTP API without a key (only behind a trusted network)", set_api_insecure, OPT_BOOL, NULL},
    {"admin-key", NULL, "key of the cluster dashboard (/admin/, GET /api/cluster), also good for the whole HTTP API", set_admin_key, OPT_SECRET, "none (the API key opens the dashboard)"},
    {"allowed-origins", NULL, "comma-separated browser origins allowed to connect", set_origins, 0, "none (any origin)"},
    {"jwt-secret", NULL, "HS256 secret of connect tokens (?token= on /ws); enables --auth required", set_jwt_secret, OPT_SECRET, "none"},
    {"jwt-secret-file", NULL, "file holding the HS256 secret", set_jwt_secret_file, 0, "none"},
    {"auth", NULL, "required, optional or off", set_auth, 0, "required with a secret, else off"},
    {"socketio-channel", "socket.io", "channel of Socket.IO events at /socket.io/, as {\"event\":E,\"args\":[...]}", set_socketio_channel, 0, NULL},
    {"socketio-redis-adapter", "false", "also join a Node Socket.IO cluster using @socket.io/redis-adapter on the same --redis (its channel socket.io#/#)", set_socketio_adapter, OPT_BOOL, NULL},
    {"anonymous-channels", NULL, "with --auth optional: grants of clients without a token, e.g. 'lobby,public.*'", set_anonymous, 0, "none"},
    {"history-size", "100", "messages of history kept per channel for recovery; 0: history off", set_history_size, 0, NULL},
    {"history-ttl", "300", "seconds a channel's history is kept after its last publish", set_history_ttl, 0, NULL},
    {"history-channels", "*", "channels with history: exact names and prefixes ending in '*'", set_history_channels, 0, NULL},
    {"presence-channels", NULL, "channels with presence (who is subscribed), e.g. 'room.*'", set_presence_channels, 0, "none"},
    {"presence-ttl", "60", "seconds a replica that died stays listed in presence at most", set_presence_ttl, 0, NULL},
    {"tls-cert", NULL, "PEM certificate (chain): serve wss:// and https:// on --listen (with --tls-key)", set_tls_cert, 0, "none (plain ws:// and http://)"},
    {"tls-key", NULL, "PEM private key of --tls-cert", set_tls_key, 0, "none"},
};
#define N_OPTIONS (sizeof options / sizeof options[0])
_Static_assert(N_OPTIONS <= CONFIG_OPTIONS_MAX, "raise CONFIG_OPTIONS_MAX");

/* "max-queue-bytes" -> "WSGATE_MAX_QUEUE_BYTES" */
static void env_name(const char *flag, char *out, size_t cap)
{
    size_t n = (size_t)snprintf(out, cap, "WSGATE_");
    for (; *flag && n + 1 < cap; flag++)
        out[n++] = *flag == '-' ? '_' : (char)toupper((unsigned char)*flag);
    out[n] = '\0';
}

/* The first bytes of v that fit in cap (at most 80: an error line quotes
 * a value, not a file), control characters as \xNN so it stays one line. */
static void show_value(char *out, size_t cap, const char *v, size_t max)
{
    size_t n = 0;
    for (size_t i = 0; v[i] && i < max && n + 5 < cap; i++) {
        unsigned char ch = (unsigned char)v[i];
        if (ch < 0x20 || ch == 0x7f)
            n += (size_t)snprintf(out + n, cap - n, "\\x%02x", ch);
        else
            out[n++] = (char)ch;
    }
    out[n] = '\0';
}

static void quote_value(char *out, size_t cap, const char *v)
{
    show_value(out, cap, v, 80);
}

/* The option named by len bytes at name ('_' matches '-'), or NULL. */
static const struct option_def *find_option(const char *name, size_t len)
{
    for (size_t i = 0; i < N_OPTIONS; i++) {
        const char *o = options[i].name;
        size_t k = 0;
        while (k < len && o[k] && (o[k] == name[k] || (o[k] == '-' && name[k] == '_')))
            k++;
        if (k == len && !o[k])
            return &options[i];
    }
    return NULL;
}

/* What config_print() shows of v: secrets and a Redis password masked. */
static void record(struct config *cfg, const struct option_def *o, const char *v,
                   const char *origin)
{
    size_t i = (size_t)(o - options);
    char *dst = cfg->shown[i];
    int b;
    if (o->kind & OPT_SECRET) {
        snprintf(dst, CONFIG_SHOWN_MAX, "****");
        snprintf(cfg->origin[i], sizeof cfg->origin[i], "%.32s, %zu bytes", origin, strlen(v));
        return;
    } else if ((o->kind & OPT_BOOL) && parse_bool(v, &b) == 0) {
        snprintf(dst, CONFIG_SHOWN_MAX, "%s", b ? "true" : "false");
    } else if (o->set == set_redis && cfg->use_redis && cfg->redis.password[0]) {
        const struct redis_addr *r = &cfg->redis; /* rebuilt: the password never shows */
        snprintf(dst, CONFIG_SHOWN_MAX, strchr(r->host, ':') ? "redis://%s:****@[%s]:%d/%d"
                                                             : "redis://%s:****@%s:%d/%d",
                 r->user, r->host, r->port, r->db);
    } else {
        show_value(dst, CONFIG_SHOWN_MAX, v, CONFIG_SHOWN_MAX);
    }
    snprintf(cfg->origin[i], sizeof cfg->origin[i], "%s", origin);
}

/* Sets o from v; source names where v came from in an error line, origin
 * in config_print(). */
static int apply(struct config *cfg, const struct option_def *o, const char *v,
                 const char *source, const char *origin, char *err, size_t errlen)
{
    char why[160], shown[4 * 80 + 8];
    if (o->set(cfg, v, why, sizeof why) == 0) {
        record(cfg, o, v, origin);
        return 0;
    }
    quote_value(shown, sizeof shown, v);
    snprintf(err, errlen, "%s: invalid value '%s': %s", source, shown, why);
    return -1;
}

void config_usage(const char *default_web_root)
{
    printf("Usage: wsgate [--flag value]...\n"
           "       wsgate config --check [--flag value]...   validate, print the settings\n"
           "       wsgate token ...                           mint or check a connect token\n"
           "                                                  (wsgate token --help)\n"
           "WebSocket pub/sub gateway. Every flag can also be set by the\n"
           "environment variable WSGATE_<FLAG> (upper case, '-' as '_') or by a\n"
           "line 'flag = value' in the --config file; a flag beats the variable,\n"
           "which beats the file. Boolean flags need no value.\n\n");
    for (size_t i = 0; i < N_OPTIONS; i++) {
        const struct option_def *o = &options[i];
        const char *def = o->defval ? o->defval : o->unset ? o->unset : "none";
        if (o->set == set_web_root)
            def = default_web_root;
        printf("  --%-22s %s\n  %-24s default: %s\n", o->name, o->help, "", def);
    }
    printf("  --%-22s %s\n", "version", "print the version and exit");
    printf("  --%-22s %s\n", "help", "print this help and exit");
}

void config_print(const struct config *cfg, FILE *out)
{
    for (size_t i = 0; i < N_OPTIONS; i++) {
        const struct option_def *o = &options[i];
        /* neither the file's own name nor a derived value is a setting */
        if (cfg->origin[i][0] && (o->set == set_config_file ||
                                  !strncmp(cfg->origin[i], "derived", 7)))
            fprintf(out, "# %s: %s  (%s)\n", o->name, cfg->shown[i], cfg->origin[i]);
        else if (cfg->origin[i][0])
            fprintf(out, strpbrk(cfg->shown[i], "#\" ") ? "%s = \"%s\"  # %s\n"
                                                       : "%s = %s  # %s\n",
                    o->name, cfg->shown[i], cfg->origin[i]);
        else
            fprintf(out, "# %s: %s\n", o->name, o->unset ? o->unset : "none");
    }
}

/* Applies every flag in argv, or with only set, that flag alone and quietly
 * (the pre-pass that finds --config: the full pass reports errors). */
static int walk_argv(struct config *cfg, int argc, char **argv,
                     const struct option_def *only, char *err, size_t errlen)
{
    for (int a = 1; a < argc; a++) {
        const char *arg = argv[a];
        if (strncmp(arg, "--", 2) != 0) {
            if (only)
                return 0;
            char shown[4 * 80 + 8];
            quote_value(shown, sizeof shown, arg);
            snprintf(err, errlen, "unexpected argument '%s' (flags start with --)", shown);
            return -1;
        }
        const char *name = arg + 2, *eq = strchr(name, '=');
        size_t nl = eq ? (size_t)(eq - name) : strlen(name);
        const struct option_def *o = memchr(name, '_', nl) ? NULL : find_option(name, nl);
        if (!o) {
            if (only)
                return 0;
            char nm[81], shown[4 * 80 + 8];
            snprintf(nm, sizeof nm, "%.*s", (int)(nl > 80 ? 80 : nl), name);
            quote_value(shown, sizeof shown, nm);
            snprintf(err, errlen, "unknown flag '--%s' (see --help)", shown);
            return -1;
        }
        const char *v = eq ? eq + 1
                        : (o->kind & OPT_BOOL) ? "true"
                        : (a + 1 < argc ? argv[++a] : NULL);
        char flag[80];
        snprintf(flag, sizeof flag, "--%s", o->name);
        if (!v) {
            if (only)
                return 0;
            snprintf(err, errlen, "%s: missing value", flag);
            return -1;
        }
        if ((!only || o == only) && apply(cfg, o, v, flag, flag, err, errlen))
            return -1;
    }
    return 0;
}

/* Drops surrounding blanks in place. */
static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' || s[n - 1] == '\n'))
        s[--n] = '\0';
    return s;
}

/* A file value in place: "quoted" is taken as is between the first and the
 * last quote; else a blank followed by '#' starts a comment. Either way a
 * comment may follow. Returns 0, or -1 for other text after a quote. */
static int unquote(char **v)
{
    char *p = *v, *end;
    if (p[0] == '"' && (end = strrchr(p + 1, '"'))) {
        char *rest = trim(end + 1);
        if (rest[0] && rest[0] != '#')
            return -1;
        *end = '\0';
        *v = p + 1;
        return 0;
    }
    for (char *c = p; (c = strchr(c, '#')); c++)
        if (c > p && (c[-1] == ' ' || c[-1] == '\t')) {
            *c = '\0';
            break;
        }
    *v = trim(p);
    return 0;
}

/* Applies the --config file: "key = value" lines, key a flag name without
 * "--" ('_' for '-' allowed), value the rest of the line without
 * surrounding blanks (see unquote() for quotes and comments); '#' starts a
 * comment line. */
static int load_file(struct config *cfg, char *err, size_t errlen)
{
    char path[4 * 80 + 8];
    quote_value(path, sizeof path, cfg->config_file);
    FILE *f = fopen(cfg->config_file, "r");
    if (!f) {
        snprintf(err, errlen, "--config: cannot read '%s': %s", path, strerror(errno));
        return -1;
    }
    char buf[8192];
    int lineno = 0, rc = 0;
    while (rc == 0 && fgets(buf, sizeof buf, f)) {
        lineno++;
        size_t len = strlen(buf);
        if (len == sizeof buf - 1 && buf[len - 1] != '\n') {
            snprintf(err, errlen, "--config %s:%d: line longer than %zu bytes", path,
                     lineno, sizeof buf - 2);
            rc = -1;
            break;
        }
        char *line = trim(buf);
        if (!line[0] || line[0] == '#')
            continue;
        char *eq = strchr(line, '=');
        if (!eq) {
            snprintf(err, errlen, "--config %s:%d: expected 'key = value'", path, lineno);
            rc = -1;
            break;
        }
        *eq = '\0';
        char *key = trim(line), *v = trim(eq + 1);
        if (unquote(&v) < 0) {
            snprintf(err, errlen, "--config %s:%d: text after the closing quote", path, lineno);
            rc = -1;
            break;
        }
        const struct option_def *o = find_option(key, strlen(key));
        char shown[4 * 80 + 8], source[4 * 80 + 48], origin[32];
        quote_value(shown, sizeof shown, key);
        if (!o || o->set == set_config_file) {
            snprintf(err, errlen, "--config %s:%d: %s setting '%s' (see --help)", path,
                     lineno, o ? "a config file cannot hold the" : "unknown", shown);
            rc = -1;
            break;
        }
        snprintf(source, sizeof source, "--config %s:%d: %s", path, lineno, o->name);
        snprintf(origin, sizeof origin, "config file line %d", lineno);
        rc = apply(cfg, o, v, source, origin, err, errlen);
    }
    if (rc == 0 && ferror(f)) {
        snprintf(err, errlen, "--config: cannot read '%s'", path);
        rc = -1;
    }
    fclose(f);
    return rc;
}

enum config_result config_load(struct config *cfg, int argc, char **argv,
                               const char *default_web_root, char *err,
                               size_t errlen)
{
    memset(cfg, 0, sizeof *cfg);
    for (int a = 1; a < argc; a++) {
        if (!strcmp(argv[a], "--help") || !strcmp(argv[a], "-h"))
            return CONFIG_HELP;
        if (!strcmp(argv[a], "--version"))
            return CONFIG_VERSION;
    }
    for (size_t i = 0; i < N_OPTIONS; i++)
        if (options[i].defval &&
            apply(cfg, &options[i], options[i].defval, "default", "default", err, errlen))
            return CONFIG_ERROR;
    const struct option_def *web = find_option("web-root", 8), *conf = options;
    if (copy_str(cfg->web_root, sizeof cfg->web_root, default_web_root) < 0) {
        snprintf(err, errlen, "--web-root: the default path is too long");
        return CONFIG_ERROR;
    }
    record(cfg, web, default_web_root, "default");

    /* The file first: variables and flags beat it. */
    const char *path = getenv("WSGATE_CONFIG");
    if (walk_argv(cfg, argc, argv, conf, err, errlen) < 0 ||
        (!cfg->config_file[0] && path &&
         apply(cfg, conf, path, "WSGATE_CONFIG", "WSGATE_CONFIG", err, errlen) < 0) ||
        (cfg->config_file[0] && load_file(cfg, err, errlen) < 0))
        return CONFIG_ERROR;

    for (size_t i = 0; i < N_OPTIONS; i++) {
        char name[64];
        env_name(options[i].name, name, sizeof name);
        const char *v = getenv(name);
        if (v && apply(cfg, &options[i], v, name, name, err, errlen))
            return CONFIG_ERROR;
    }
    if (walk_argv(cfg, argc, argv, NULL, err, errlen) < 0)
        return CONFIG_ERROR;

    if (cfg->auth_mode == AUTH_MODE_UNSET) {
        cfg->auth_mode = cfg->jwt_secret_len ? AUTH_MODE_REQUIRED : AUTH_MODE_OFF;
        record(cfg, find_option("auth", 4), cfg->jwt_secret_len ? "required" : "off",
               "derived from the JWT secret");
    }
    if (cfg->auth_mode != AUTH_MODE_OFF && !cfg->jwt_secret_len) {
        snprintf(err, errlen, "--auth: needs --jwt-secret or --jwt-secret-file");
        return CONFIG_ERROR;
    }
    if (cfg->anonymous_channels[0] && cfg->auth_mode != AUTH_MODE_OPTIONAL) {
        snprintf(err, errlen, "--anonymous-channels: needs --auth optional (it has no effect "
                 "with --auth %s)", cfg->auth_mode == AUTH_MODE_OFF ? "off" : "required");
        return CONFIG_ERROR;
    }
    if (!cfg->tls_cert[0] != !cfg->tls_key[0]) {
        snprintf(err, errlen, "%s: needs %s too", cfg->tls_cert[0] ? "--tls-cert" : "--tls-key",
                 cfg->tls_cert[0] ? "--tls-key" : "--tls-cert");
        return CONFIG_ERROR;
    }
    if (cfg->api_insecure && cfg->api_key[0]) {
        snprintf(err, errlen, "--api-insecure: contradicts --api-key (the key protects the API)");
        return CONFIG_ERROR;
    }
    if (cfg->socketio_adapter && !cfg->use_redis) {
        snprintf(err, errlen, "--socketio-redis-adapter: needs --redis (the Node cluster "
                              "meets wsgate there)");
        return CONFIG_ERROR;
    }
    if (cfg->workers > 1 && !cfg->use_redis) {
        snprintf(err, errlen, "--workers: more than 1 needs --redis (the embedded "
                              "broker lives in one process)");
        return CONFIG_ERROR;
    }
    return CONFIG_OK;
}
