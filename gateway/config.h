/* config.h - command-line flags and WSGATE_* environment variables.
 *
 * Every flag FOO-BAR also reads WSGATE_FOO_BAR; a flag beats the variable.
 * config_load() fills a caller-owned struct config whose strings are fixed
 * arrays, so it owns nothing on the heap and needs no free. */
#ifndef WSGATE_CONFIG_H
#define WSGATE_CONFIG_H

#include <stddef.h>

#include "log.h"

#define CONFIG_HOST_MAX 256
#define CONFIG_STR_MAX 256

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
    double queue_soft_seconds; /* how long a queue may stay over the soft limit */
    double ping_interval; /* ping a client silent this long (seconds) */
    double ping_timeout;  /* drop it if still silent this much later */
    char api_key[CONFIG_STR_MAX];          /* empty: /api/publish is open */
    char allowed_origins[4 * CONFIG_STR_MAX]; /* comma-separated; empty: any */
    unsigned char jwt_secret[4096]; /* HS256 key; jwt_secret_len 0: none */
    size_t jwt_secret_len;
    enum auth_mode auth_mode;  /* resolved: required with a secret, else off */
    char anonymous_channels[4 * CONFIG_STR_MAX]; /* grants without a token */
};

enum config_result { CONFIG_OK = 0, CONFIG_HELP = 1, CONFIG_ERROR = -1 };

/* Applies defaults, then the environment, then argv. On CONFIG_ERROR, err
 * holds one line naming the flag (or variable) and what is wrong with it.
 * default_web_root is used when neither flag nor variable sets one. */
enum config_result config_load(struct config *cfg, int argc, char **argv,
                               const char *default_web_root, char *err,
                               size_t errlen);

/* Writes the --help text, listing every flag with its default. */
void config_usage(const char *default_web_root);

/* Parsers the flags use, exposed for unit tests. Return 0 or -1. */
int config_parse_listen(const char *s, char *host, size_t hostlen, int *port);
int config_parse_redis_url(const char *s, struct redis_addr *out);
int config_parse_size(const char *s, size_t *out);

#endif
