/* config.c - see config.h. */
#include "config.h"
#include "core/channel.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A setter validates one value; on failure it writes what was expected into
 * why (the caller prefixes the flag name). */
typedef int (*setter_fn)(struct config *cfg, const char *v, char *why,
                         size_t whylen);

struct option_def {
    const char *name;   /* flag without the leading "--" */
    const char *defval; /* NULL: no default applied */
    const char *help;
    setter_fn set;
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

/* Reads a whole file of 1..cap bytes (a secret: binary allowed) into buf,
 * minus one trailing newline. Returns its length, or -1 with why set. */
static long read_secret(const char *path, unsigned char *buf, size_t cap,
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

static int set_api_key(struct config *c, const char *v, char *why, size_t n)
{
    if (!key_sendable((const unsigned char *)v, strlen(v))) {
        snprintf(why, n, "control characters cannot be sent in an Authorization header");
        return -1;
    }
    return set_str(c->api_key, sizeof c->api_key, v, why, n);
}

static int set_api_key_file(struct config *c, const char *v, char *why, size_t n)
{
    unsigned char key[sizeof c->api_key];
    long len = read_secret(v, key, sizeof key - 1, why, n);
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
    long len = read_secret(v, c->jwt_secret, sizeof c->jwt_secret, why, n);
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

static const struct option_def options[] = {
    {"listen", "0.0.0.0:8080", "WebSocket and HTTP address (port 0: any free port)", set_listen},
    {"redis", NULL, "Redis URL redis://[[user]:password@]host[:port][/db]; unset: embedded broker", set_redis},
    {"channel-prefix", "wsgate:", "prefix of Redis channel names", set_prefix},
    {"node-id", NULL, "node name in welcome frames and logs (default hostname:port)", set_node_id},
    {"web-root", NULL, "directory of static files served at /", set_web_root},
    {"log-level", "info", "debug, info, warn or error", set_log_level},
    {"log-format", "text", "text or json (one JSON object per line)", set_log_format},
    {"max-message-size", "64k", "largest inbound frame, HTTP body or published payload", set_max_message},
    {"max-queue-bytes", "1m", "per-client send queue; beyond it the client is closed as a slow consumer", set_max_queue},
    {"drain-seconds", "10", "on SIGTERM, the window over which clients are closed (1001) before exit", set_drain},
    {"max-connections", "10000", "WebSocket connections per node; more are refused with 503", set_max_connections},
    {"max-channels", "100", "subscriptions per connection", set_max_channels},
    {"publish-rate", "100", "publishes per second per connection (token bucket); 0: unlimited", set_publish_rate},
    {"publish-burst", "200", "publishes a connection may send at once before the rate applies", set_publish_burst},
    {"queue-soft-bytes", "256k", "send queue size a client may exceed only for --queue-soft-seconds; 0: off", set_queue_soft},
    {"queue-soft-seconds", "10", "how long a send queue may stay over --queue-soft-bytes", set_queue_soft_seconds},
    {"ping-interval", "25", "ping a client that has sent nothing for this many seconds", set_ping_interval},
    {"ping-timeout", "35", "then drop it if it stays silent this many seconds more", set_ping_timeout},
    {"sndbuf", "256k", "kernel send buffer per client socket (bounds what a stuck client pins); 0: autotuning", set_sndbuf},
    {"api-key", NULL, "key required as 'Authorization: Bearer KEY' by POST /api/publish; unset: open", set_api_key},
    {"api-key-file", NULL, "file holding the API key", set_api_key_file},
    {"allowed-origins", NULL, "comma-separated browser origins allowed to connect; unset: any", set_origins},
    {"jwt-secret", NULL, "HS256 secret of connect tokens (?token= on /ws); enables --auth required", set_jwt_secret},
    {"jwt-secret-file", NULL, "file holding the HS256 secret", set_jwt_secret_file},
    {"auth", NULL, "required, optional or off (default: required with a secret, else off)", set_auth},
    {"anonymous-channels", NULL, "with --auth optional: grants of clients without a token, e.g. 'lobby,public.*'", set_anonymous},
};
#define N_OPTIONS (sizeof options / sizeof options[0])

/* "max-queue-bytes" -> "WSGATE_MAX_QUEUE_BYTES" */
static void env_name(const char *flag, char *out, size_t cap)
{
    size_t n = (size_t)snprintf(out, cap, "WSGATE_");
    for (; *flag && n + 1 < cap; flag++)
        out[n++] = *flag == '-' ? '_' : (char)toupper((unsigned char)*flag);
    out[n] = '\0';
}

/* The first 80 bytes of v for an error line, control characters as \xNN
 * so the error stays one line. */
static void quote_value(char *out, size_t cap, const char *v)
{
    size_t n = 0;
    for (size_t i = 0; v[i] && i < 80 && n + 5 < cap; i++) {
        unsigned char ch = (unsigned char)v[i];
        if (ch < 0x20 || ch == 0x7f)
            n += (size_t)snprintf(out + n, cap - n, "\\x%02x", ch);
        else
            out[n++] = (char)ch;
    }
    out[n] = '\0';
}

static int apply(struct config *cfg, const struct option_def *o,
                 const char *v, const char *source, char *err, size_t errlen)
{
    char why[160], shown[4 * 80 + 8];
    if (o->set(cfg, v, why, sizeof why) == 0)
        return 0;
    quote_value(shown, sizeof shown, v);
    snprintf(err, errlen, "%s: invalid value '%s': %s", source, shown, why);
    return -1;
}

void config_usage(const char *default_web_root)
{
    printf("Usage: wsgate [--flag value]...\n"
           "WebSocket pub/sub gateway. Every flag can also be set by the\n"
           "environment variable WSGATE_<FLAG> (upper case, '-' as '_');\n"
           "a flag beats the variable.\n\n");
    for (size_t i = 0; i < N_OPTIONS; i++) {
        const struct option_def *o = &options[i];
        const char *def = o->defval ? o->defval : "";
        if (o->set == set_web_root)
            def = default_web_root;
        printf("  --%-18s %s\n  %-20s default: %s\n", o->name, o->help, "",
               def[0] ? def : "(unset)");
    }
    printf("  --%-18s %s\n", "help", "print this help and exit");
}

enum config_result config_load(struct config *cfg, int argc, char **argv,
                               const char *default_web_root, char *err,
                               size_t errlen)
{
    memset(cfg, 0, sizeof *cfg);
    for (int a = 1; a < argc; a++)
        if (!strcmp(argv[a], "--help") || !strcmp(argv[a], "-h"))
            return CONFIG_HELP;
    for (size_t i = 0; i < N_OPTIONS; i++)
        if (options[i].defval &&
            apply(cfg, &options[i], options[i].defval, "default", err, errlen))
            return CONFIG_ERROR;
    if (copy_str(cfg->web_root, sizeof cfg->web_root, default_web_root) < 0) {
        snprintf(err, errlen, "default web root path is too long");
        return CONFIG_ERROR;
    }

    for (size_t i = 0; i < N_OPTIONS; i++) {
        char name[64];
        env_name(options[i].name, name, sizeof name);
        const char *v = getenv(name);
        if (v && apply(cfg, &options[i], v, name, err, errlen))
            return CONFIG_ERROR;
    }

    for (int a = 1; a < argc; a++) {
        const char *arg = argv[a];
        if (strncmp(arg, "--", 2) != 0) {
            char shown[4 * 80 + 8];
            quote_value(shown, sizeof shown, arg);
            snprintf(err, errlen, "unexpected argument '%s' (flags start with --)", shown);
            return CONFIG_ERROR;
        }
        const char *name = arg + 2, *eq = strchr(name, '=');
        size_t nl = eq ? (size_t)(eq - name) : strlen(name);
        const struct option_def *o = NULL;
        for (size_t i = 0; i < N_OPTIONS; i++)
            if (strlen(options[i].name) == nl && !strncmp(options[i].name, name, nl))
                o = &options[i];
        if (!o) {
            char nm[81], shown[4 * 80 + 8];
            snprintf(nm, sizeof nm, "%.*s", (int)(nl > 80 ? 80 : nl), name);
            quote_value(shown, sizeof shown, nm);
            snprintf(err, errlen, "unknown flag '--%s' (see --help)", shown);
            return CONFIG_ERROR;
        }
        const char *v = eq ? eq + 1 : (a + 1 < argc ? argv[++a] : NULL);
        char flag[80];
        snprintf(flag, sizeof flag, "--%s", o->name);
        if (!v) {
            snprintf(err, errlen, "%s: missing value", flag);
            return CONFIG_ERROR;
        }
        if (apply(cfg, o, v, flag, err, errlen))
            return CONFIG_ERROR;
    }
    if (cfg->auth_mode == AUTH_MODE_UNSET)
        cfg->auth_mode = cfg->jwt_secret_len ? AUTH_MODE_REQUIRED : AUTH_MODE_OFF;
    if (cfg->auth_mode != AUTH_MODE_OFF && !cfg->jwt_secret_len) {
        snprintf(err, errlen, "--auth: needs --jwt-secret or --jwt-secret-file");
        return CONFIG_ERROR;
    }
    return CONFIG_OK;
}
