/* fuzz_config.c - libFuzzer entry point for flags, WSGATE_* variables and
 * the value parsers behind them (listen address, Redis URL, byte sizes).
 *
 * The input is split at each '\0' into strings (at most FUZZ_ARGS_MAX):
 * one of the form WSGATE_NAME=value becomes an environment variable, any
 * other is the next argv element after "wsgate". config_load() then runs,
 * and the first string alone is also given to config_parse_redis_url(),
 * config_parse_listen() and config_parse_size().
 *
 * The values of --api-key-file and --jwt-secret-file (and their variables)
 * are replaced by one of a few files written here once, chosen by the
 * value's first byte: the fuzzer must not open paths of its choosing
 * (/dev/stdin would block). The value of --config (or WSGATE_CONFIG) is the
 * text of the config file itself, written to a fresh file for the run, with
 * the values of its secret-file lines replaced the same way. The files are
 * memfds, opened through /proc/self/fd, so nothing is left on disk.
 *
 * Beyond crashes, it aborts when config_load() breaks its promises: a
 * result other than OK, HELP or ERROR; an ERROR without a one-line message
 * that starts with its source (flag, variable or argument); an accepted config with a field out of its range or a
 * string not terminated in its array; a different answer on a second load.
 * A --config file line's error also starts with "--config".
 * An accepted Redis URL must give a host without the characters that
 * delimit one ([ ] / @), a port from 1 to 65535 and a db from 0 to 65535.
 * Every WSGATE_* variable it sets is unset before it returns.
 *
 * No main: link with -fsanitize=fuzzer, or with standalone.c to replay a
 * corpus under any compiler. */
#define _GNU_SOURCE /* memfd_create */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "config.h"

#define FUZZ_ARGS_MAX 32
#define FUZZ_WEB_DEFAULT "/fuzz/web"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define REQUIRE(cond) \
    do {              \
        if (!(cond))  \
            abort();  \
    } while (0)

/* Secret files, written once: empty, one line, one line with CRLF, two
 * lines, a NUL inside, and one byte too long for either flag; the last
 * path does not exist. */
#define N_FILES 7
static char files[N_FILES][64];

/* An in-memory file holding p[0..n), open for the life of the process. */
static void write_file(int i, const void *p, size_t n)
{
    int fd = memfd_create("wsgate-fuzz-secret", 0);
    REQUIRE(fd >= 0);
    REQUIRE(write(fd, p, n) == (ssize_t)n);
    snprintf(files[i], sizeof files[i], "/proc/self/fd/%d", fd);
}

static void make_files(void)
{
    static unsigned char big[4097];
    memset(big, 'k', sizeof big);
    write_file(0, "", 0);
    write_file(1, "s3cret\n", 7);
    write_file(2, "s3cret\r\n", 8);
    write_file(3, "a\nb\n", 4);
    write_file(4, "a\0b", 3);
    write_file(5, big, sizeof big);
    snprintf(files[6], sizeof files[6], "/nonexistent/wsgate-fuzz-secret");
}

enum { PLAIN = 0, SECRET_FILE, CONFIG_FILE };

/* What the value of flag s names: a secret file, the config file, neither. */
static int file_flag(const char *s)
{
    static const char *const names[] = {"--api-key-file", "--jwt-secret-file", "--config"};
    for (int i = 0; i < 3; i++) {
        size_t n = strlen(names[i]);
        if (!strncmp(s, names[i], n) && (s[n] == '\0' || s[n] == '='))
            return i < 2 ? SECRET_FILE : CONFIG_FILE;
    }
    return PLAIN;
}

static int is_file_var(const char *name)
{
    return !strcmp(name, "WSGATE_API_KEY_FILE") ||
           !strcmp(name, "WSGATE_JWT_SECRET_FILE");
}

static const char *file_for(const char *v)
{
    return files[(unsigned char)v[0] % N_FILES];
}

/* Config files of this run, closed at its end. */
static int conf_fds[FUZZ_ARGS_MAX], n_conf;
static char conf_paths[FUZZ_ARGS_MAX][64];

/* 1 when line sets a secret file: its key, blanks around, '_' for '-'. */
static int secret_line(const char *line, size_t len, size_t *eq_at)
{
    const char *eq = memchr(line, '=', len);
    if (!eq)
        return 0;
    *eq_at = (size_t)(eq - line);
    char key[32];
    size_t k = 0;
    for (const char *p = line; p < eq && k + 1 < sizeof key; p++)
        if (*p != ' ' && *p != '\t')
            key[k++] = *p == '_' ? '-' : *p;
    key[k] = '\0';
    return !strcmp(key, "api-key-file") || !strcmp(key, "jwt-secret-file");
}

/* A fresh file holding text, with each secret-file line's value replaced
 * by one of files[]; returns its path. */
static const char *config_for(const char *text)
{
    int fd = memfd_create("wsgate-fuzz-config", 0);
    REQUIRE(fd >= 0 && n_conf < FUZZ_ARGS_MAX);
    for (const char *line = text; *line;) {
        const char *nl = strchr(line, '\n');
        size_t len = nl ? (size_t)(nl - line + 1) : strlen(line), eq;
        if (secret_line(line, len, &eq)) {
            const char *f = file_for(line + eq + 1 < line + len ? line + eq + 1 : "");
            REQUIRE(write(fd, line, eq + 1) == (ssize_t)(eq + 1));
            REQUIRE(write(fd, f, strlen(f)) == (ssize_t)strlen(f));
            REQUIRE(write(fd, "\n", 1) == 1);
        } else {
            REQUIRE(write(fd, line, len) == (ssize_t)len);
        }
        line += len;
    }
    conf_fds[n_conf] = fd;
    snprintf(conf_paths[n_conf], sizeof conf_paths[n_conf], "/proc/self/fd/%d", fd);
    return conf_paths[n_conf++];
}

static const char *value_file(int kind, const char *v)
{
    return kind == CONFIG_FILE ? config_for(v) : file_for(v);
}

/* Copies s with the value of a file flag replaced: "--x-file=v" in place,
 * "--x-file" by marking the next element (returned through next_file). */
static char *arg_copy(const char *s, int *next_file)
{
    char buf[128];
    int kind = file_flag(s);
    *next_file = PLAIN;
    if (kind) {
        const char *eq = strchr(s, '=');
        if (!eq) {
            *next_file = kind;
            return strdup(s);
        }
        snprintf(buf, sizeof buf, "%.*s=%s", (int)(eq - s), s, value_file(kind, eq + 1));
        return strdup(buf);
    }
    return strdup(s);
}

static void check_str(const char *s, size_t cap)
{
    REQUIRE(memchr(s, '\0', cap) != NULL);
}

static void check_redis(const struct redis_addr *r)
{
    check_str(r->host, sizeof r->host);
    check_str(r->user, sizeof r->user);
    check_str(r->password, sizeof r->password);
    REQUIRE(r->host[0] && !strpbrk(r->host, "[]/@"));
    REQUIRE(r->port >= 1 && r->port <= 65535);
    REQUIRE(r->db >= 0 && r->db <= 65535);
}

static void check_config(const struct config *c)
{
    check_str(c->listen_host, sizeof c->listen_host);
    REQUIRE(c->listen_port >= 0 && c->listen_port <= 65535);
    REQUIRE(!strpbrk(c->listen_host, "[]"));
    if (c->use_redis)
        check_redis(&c->redis);
    check_str(c->channel_prefix, sizeof c->channel_prefix);
    check_str(c->node_id, sizeof c->node_id);
    check_str(c->web_root, sizeof c->web_root);
    REQUIRE(c->web_root[0]);
    check_str(c->api_key, sizeof c->api_key);
    for (const char *k = c->api_key; *k; k++) /* sendable in a header */
        REQUIRE((unsigned char)*k >= 0x20 && *k != 0x7f);
    check_str(c->allowed_origins, sizeof c->allowed_origins);
    check_str(c->anonymous_channels, sizeof c->anonymous_channels);
    check_str(c->config_file, sizeof c->config_file);
    REQUIRE(c->api_insecure == 0 || c->api_insecure == 1);
    REQUIRE(!(c->api_insecure && c->api_key[0]));
    REQUIRE(!c->anonymous_channels[0] || c->auth_mode == AUTH_MODE_OPTIONAL);
    for (size_t i = 0; i < CONFIG_OPTIONS_MAX; i++) {
        check_str(c->shown[i], sizeof c->shown[i]);
        check_str(c->origin[i], sizeof c->origin[i]);
    }
    REQUIRE(c->max_message_size >= 256 && c->max_message_size <= 16u << 20);
    REQUIRE(c->max_queue_bytes >= 1024 && c->max_queue_bytes <= 1u << 30);
    REQUIRE(c->drain_seconds >= 0 && c->drain_seconds <= 3600);
    REQUIRE(c->max_connections >= 1 && c->max_connections <= 10000000);
    REQUIRE(c->max_channels >= 1 && c->max_channels <= 1000000);
    REQUIRE(c->publish_rate >= 0 && c->publish_rate <= 1e6);
    REQUIRE(c->publish_burst >= 1 && c->publish_burst <= 1000000);
    REQUIRE(c->queue_soft_bytes <= 1u << 30);
    REQUIRE(c->sndbuf <= 64u << 20);
    REQUIRE(c->queue_soft_seconds >= 0 && c->queue_soft_seconds <= 3600);
    REQUIRE(c->jwt_secret_len <= sizeof c->jwt_secret);
    REQUIRE(c->auth_mode >= AUTH_MODE_OFF && c->auth_mode <= AUTH_MODE_REQUIRED);
    REQUIRE(c->auth_mode == AUTH_MODE_OFF || c->jwt_secret_len > 0);
}

/* An error is one line (no control characters) that starts with where the
 * bad value came from: a flag, a variable, or the argument itself. */
static void check_error(const char *err, size_t cap)
{
    REQUIRE(memchr(err, '\0', cap) && err[0]);
    for (const char *p = err; *p; p++)
        REQUIRE((unsigned char)*p >= 0x20 && *p != 0x7f);
    REQUIRE(!strncmp(err, "--", 2) || !strncmp(err, "WSGATE_", 7) ||
            !strncmp(err, "unexpected argument", 19) ||
            !strncmp(err, "unknown flag", 12));
}

static void parsers(const char *s)
{
    struct redis_addr r;
    if (config_parse_redis_url(s, &r) == 0)
        check_redis(&r);
    char host[CONFIG_HOST_MAX];
    int port = -1;
    if (config_parse_listen(s, host, sizeof host, &port) == 0) {
        check_str(host, sizeof host);
        REQUIRE(port >= 0 && port <= 65535 && !strpbrk(host, "[]"));
    }
    size_t n;
    (void)config_parse_size(s, &n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready;
    if (!ready) {
        make_files();
        ready = 1;
    }
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    if (size)
        memcpy(text, data, size);
    text[size] = '\0';

    char *argv[FUZZ_ARGS_MAX + 2], *vars[FUZZ_ARGS_MAX];
    int argc = 0, nvars = 0, next_file = 0;
    argv[argc++] = "wsgate";
    for (size_t off = 0; off < size && argc + nvars <= FUZZ_ARGS_MAX;) {
        const char *s = text + off;
        off += strlen(s) + 1;
        const char *eq = strchr(s, '=');
        if (!strncmp(s, "WSGATE_", 7) && eq && eq > s + 7) {
            char *name = strndup(s, (size_t)(eq - s));
            REQUIRE(name);
            const char *v = is_file_var(name) ? file_for(eq + 1)
                            : !strcmp(name, "WSGATE_CONFIG") ? config_for(eq + 1)
                            : eq + 1;
            REQUIRE(setenv(name, v, 1) == 0);
            vars[nvars++] = name;
        } else if (next_file) {
            argv[argc++] = strdup(value_file(next_file, s));
            next_file = PLAIN;
        } else {
            argv[argc++] = arg_copy(s, &next_file);
        }
        REQUIRE(argv[argc - 1]);
    }
    argv[argc] = NULL;

    static struct config cfg, again;
    char err[256], err2[256];
    memset(err, 0x55, sizeof err);
    enum config_result rc =
        config_load(&cfg, argc, argv, FUZZ_WEB_DEFAULT, err, sizeof err);
    REQUIRE(rc == CONFIG_OK || rc == CONFIG_HELP || rc == CONFIG_VERSION ||
            rc == CONFIG_ERROR);
    if (rc == CONFIG_OK)
        check_config(&cfg);
    else if (rc == CONFIG_ERROR)
        check_error(err, sizeof err);
    REQUIRE(config_load(&again, argc, argv, FUZZ_WEB_DEFAULT, err2, sizeof err2) == rc);
    if (rc == CONFIG_OK)
        REQUIRE(!memcmp(&cfg, &again, sizeof cfg));
    else if (rc == CONFIG_ERROR)
        REQUIRE(!strcmp(err, err2));

    parsers(text);

    for (int i = 0; i < n_conf; i++)
        close(conf_fds[i]);
    n_conf = 0;
    for (int i = 0; i < nvars; i++) {
        unsetenv(vars[i]);
        free(vars[i]);
    }
    for (int i = 1; i < argc; i++)
        free(argv[i]);
    free(text);
    return 0;
}
