/* config.h - command-line flags, WSGATE_* environment variables and the
 * --config file.
 *
 * Every flag FOO-BAR also reads WSGATE_FOO_BAR and the file line
 * "foo-bar = value"; a flag beats the variable, which beats the file.
 * config_load() fills a caller-owned struct config whose strings are fixed
 * arrays, so it owns nothing on the heap and needs no free. */
#ifndef WSGATE_CONFIG_H
#define WSGATE_CONFIG_H

#include <stddef.h>
#include <stdio.h>

#include "log.h"

#define CONFIG_HOST_MAX 256
#define CONFIG_STR_MAX 256
#define CONFIG_OPTIONS_MAX 40 /* flags with a value */
#define CONFIG_SHOWN_MAX 512  /* bytes of a value config_print() shows */

enum auth_mode { AUTH_MODE_UNSET = 0, AUTH_MODE_OFF, AUTH_MODE_OPTIONAL, AUTH_MODE_REQUIRED };

struct redis_addr {
    char host[CONFIG_HOST_MAX];
    int port;
    char user[CONFIG_STR_MAX];     /* empty: AUTH with password only */
    char password[CONFIG_STR_MAX]; /* empty: no AUTH */
    int db;
};

struct config {
    char listen_host[CONFIG_HOST_MAX];
    int listen_port; /* 0: the kernel picks one */
    int use_redis;   /* 0: embedded broker */
    struct redis_addr redis;
    char channel_prefix[64];
    char node_id[CONFIG_STR_MAX]; /* empty: hostname:port, set once bound */
    char web_root[4096];
    enum log_level log_level;
    enum log_format log_format;
    size_t max_message_size; /* inbound frame, HTTP body and payload cap */
    size_t max_queue_bytes;  /* per-client send queue before "slow consumer" */
    double drain_seconds; /* SIGTERM: window over which clients are closed */
    unsigned max_connections;  /* WebSocket sessions per node */
    unsigned max_channels;     /* subscriptions per connection */
    double publish_rate;       /* publishes/s per connection; 0: unlimited */
    unsigned publish_burst;    /* token bucket depth */
    size_t queue_soft_bytes;   /* 0: no soft queue limit */
    size_t sndbuf;             /* SO_SNDBUF of client sockets; 0: kernel autotuning */
    double write_window_ms;    /* least gap between a client's writes; 0: off */
    double queue_soft_seconds; /* how long a queue may stay over the soft limit */
    double ping_interval; /* ping a client silent this long (seconds) */
    double ping_timeout;  /* drop it if still silent this much later */
    char config_file[4096];    /* --config; empty: none */
    char api_key[CONFIG_STR_MAX];          /* empty: see api_insecure */
    int api_insecure;          /* no key: 1 serves the HTTP API, 0 answers 403 */
    char admin_key[CONFIG_STR_MAX];        /* empty: the API key opens /api/cluster */
    char allowed_origins[4 * CONFIG_STR_MAX]; /* comma-separated; empty: any */
    unsigned char jwt_secret[4096]; /* HS256 key; jwt_secret_len 0: none */
    size_t jwt_secret_len;
    enum auth_mode auth_mode;  /* resolved: required with a secret, else off */
    char anonymous_channels[4 * CONFIG_STR_MAX]; /* grants without a token */
    unsigned history_size;     /* messages kept per channel; 0: history off */
    unsigned history_ttl;      /* seconds a channel's history outlives its last publish */
    char history_channels[4 * CONFIG_STR_MAX]; /* channels with history (grant syntax) */
    unsigned presence_ttl;     /* seconds a dead node's members stay listed at most */
    char presence_channels[4 * CONFIG_STR_MAX]; /* channels with presence; "": none */
    char socketio_channel[201]; /* where Socket.IO events travel */
    int socketio_adapter;      /* bridge to @socket.io/redis-adapter's socket.io#/# */
    char tls_cert[4096];       /* PEM certificate (chain); empty with tls_key: no TLS */
    char tls_key[4096];        /* its PEM private key */
    /* Per option, in --help order: the value that won as config_print()
     * shows it (secrets masked, long values cut) and where it came from
     * ("default", "--flag", "WSGATE_FLAG", "config file line N"); origin ""
     * when unset. */
    char shown[CONFIG_OPTIONS_MAX][CONFIG_SHOWN_MAX];
    char origin[CONFIG_OPTIONS_MAX][64];
    unsigned workers;          /* worker processes; "auto": one per core */
};

#define CONFIG_WORKERS_MAX 64

enum config_result { CONFIG_OK = 0, CONFIG_HELP = 1, CONFIG_VERSION = 2, CONFIG_ERROR = -1 };

/* Applies defaults, then the --config file (named by --config or
 * WSGATE_CONFIG), then the environment, then argv, then checks settings
 * that depend on each other. On CONFIG_ERROR, err holds one line naming the
 * flag, variable or file line and what is wrong with it. default_web_root
 * is used when nothing sets one. --help anywhere gives CONFIG_HELP,
 * --version CONFIG_VERSION. */
enum config_result config_load(struct config *cfg, int argc, char **argv,
                               const char *default_web_root, char *err,
                               size_t errlen);

/* Writes the --help text, listing every flag with its default. */
void config_usage(const char *default_web_root);

/* Writes the effective settings of a loaded cfg as "flag = value  # origin"
 * lines (a config file, but for the masked secrets); unset and derived ones
 * and the config file's own name as comments. */
void config_print(const struct config *cfg, FILE *out);

/* Reads a whole file of 1..cap bytes (a secret: binary allowed) into buf,
 * minus one trailing newline. Returns its length, or -1 with why set. */
long config_read_secret(const char *path, unsigned char *buf, size_t cap,
                        char *why, size_t n);

/* Parsers the flags use, exposed for unit tests. Return 0 or -1. */
int config_parse_listen(const char *s, char *host, size_t hostlen, int *port);
int config_parse_redis_url(const char *s, struct redis_addr *out);
int config_parse_size(const char *s, size_t *out);

#endif
