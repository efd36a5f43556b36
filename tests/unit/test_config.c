/* test_config.c - flags, WSGATE_* variables and the value parsers. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <string.h>

#include "check.h"
#include "config.h"

extern char **environ;

#define WEB_DEFAULT "/default/web"

/* Unsets every WSGATE_* variable, so the caller's environment cannot leak
 * into a test and each test leaves none behind. */
static void env_clear(void)
{
    for (;;) {
        char name[256] = "";
        for (char **e = environ; e && *e; e++) {
            if (strncmp(*e, "WSGATE_", 7) == 0) {
                const char *eq = strchr(*e, '=');
                size_t n = eq ? (size_t)(eq - *e) : strlen(*e);
                if (n < sizeof name) {
                    memcpy(name, *e, n);
                    name[n] = '\0';
                }
                break;
            }
        }
        if (!name[0])
            return;
        unsetenv(name);
    }
}

/* config_load with argv = {"wsgate", args..., NULL}; args NULL-terminated. */
static enum config_result load(struct config *cfg, char *err, size_t errlen,
                               const char *const *args)
{
    char *argv[64];
    int argc = 0;
    argv[argc++] = (char *)"wsgate";
    for (; *args && argc < 63; args++)
        argv[argc++] = (char *)*args;
    argv[argc] = NULL;
    err[0] = '\0';
    return config_load(cfg, argc, argv, WEB_DEFAULT, err, errlen);
}

#define ARGS(...) ((const char *const[]){__VA_ARGS__, NULL})
#define NOARGS ((const char *const[]){NULL})

/* dst = pre + n copies of c + post, truncated to cap; returns dst. */
static char *fill(char *dst, size_t cap, const char *pre, char c, size_t n,
                  const char *post)
{
    size_t len = 0;
    for (const char *p = pre; *p && len + 1 < cap; p++)
        dst[len++] = *p;
    for (size_t i = 0; i < n && len + 1 < cap; i++)
        dst[len++] = c;
    for (const char *p = post; *p && len + 1 < cap; p++)
        dst[len++] = *p;
    dst[len] = '\0';
    return dst;
}

/* ---- config_parse_listen ------------------------------------------- */

static void listen_ok_at(int line, const char *s, const char *host, int port)
{
    char h[CONFIG_HOST_MAX] = "unset";
    int p = -7;
    int rc = config_parse_listen(s, h, sizeof h, &p);
    check_record(rc == 0, __FILE__, line, "config_parse_listen(\"%s\") = %d, want 0", s, rc);
    if (rc == 0) {
        check_str_at(__FILE__, line, "host", host, h, host);
        check_int_at(__FILE__, line, "port", "want", p, port);
    }
}
#define LISTEN_OK(s, host, port) listen_ok_at(__LINE__, s, host, port)

static void listen_bad_at(int line, const char *s)
{
    char h[CONFIG_HOST_MAX];
    int p = -7;
    int rc = config_parse_listen(s, h, sizeof h, &p);
    check_record(rc == -1, __FILE__, line,
                 "config_parse_listen(\"%s\") = %d, want -1 (got host \"%s\" port %d)",
                 s, rc, rc == 0 ? h : "", p);
}
#define LISTEN_BAD(s) listen_bad_at(__LINE__, s)

static void test_listen_valid(void)
{
    LISTEN_OK("0.0.0.0:8080", "0.0.0.0", 8080);
    LISTEN_OK("127.0.0.1:1", "127.0.0.1", 1);
    LISTEN_OK("localhost:65535", "localhost", 65535);
    LISTEN_OK("example.com:443", "example.com", 443);
    LISTEN_OK("127.0.0.1:0", "127.0.0.1", 0); /* port 0: kernel picks */
    LISTEN_OK("[::1]:8080", "::1", 8080);
    LISTEN_OK("[::]:0", "::", 0);
    LISTEN_OK("[2001:db8::17]:9000", "2001:db8::17", 9000);
    LISTEN_OK("[fe80::1%eth0]:80", "fe80::1%eth0", 80);
}

static void test_listen_bad(void)
{
    LISTEN_BAD("");
    LISTEN_BAD("8080");          /* no host */
    LISTEN_BAD("localhost");     /* no port */
    LISTEN_BAD(":8080");         /* empty host */
    LISTEN_BAD("host:");         /* empty port */
    LISTEN_BAD("host:abc");
    LISTEN_BAD("host:80x");
    LISTEN_BAD("host:8o");
    LISTEN_BAD("host:65536");
    LISTEN_BAD("host:99999999999999999999");
    LISTEN_BAD("host:-1");
    LISTEN_BAD("[::1]");         /* bracketed, no port */
    LISTEN_BAD("[::1]:");
    LISTEN_BAD("[]:80");
    LISTEN_BAD("[::1:80");       /* unclosed bracket */
    LISTEN_BAD("[::1]x:80");
}

/* A port is decimal digits only, and an IPv6 host must be bracketed:
 * "::1:8080" is ambiguous (host ::1 port 8080, or host ::1:8080 with no
 * port?), so it is refused rather than guessed. */
static void test_listen_strict(void)
{
    LISTEN_BAD("host: 80");
    LISTEN_BAD("host:+80");
    LISTEN_BAD("host:-0");
    LISTEN_BAD("::1:8080");
    LISTEN_BAD("::1");
}

static void test_listen_host_length(void)
{
    char s[400], h[16];
    int p = 0;
    /* 15 bytes + NUL fit a 16-byte buffer; 16 do not. */
    char want[32];
    fill(s, sizeof s, "", 'a', 15, ":80");
    CHECK_EQ_INT(config_parse_listen(s, h, sizeof h, &p), 0);
    CHECK_STR(h, fill(want, sizeof want, "", 'a', 15, ""));
    CHECK_EQ_INT(p, 80);
    fill(s, sizeof s, "", 'a', 16, ":80");
    CHECK_EQ_INT(config_parse_listen(s, h, sizeof h, &p), -1);
    fill(s, sizeof s, "[", 'a', 16, "]:80");
    CHECK_EQ_INT(config_parse_listen(s, h, sizeof h, &p), -1);
}

/* ---- config_parse_redis_url ---------------------------------------- */

static void redis_ok_at(int line, const char *s, const char *host, int port,
                        const char *user, const char *password, int db)
{
    struct redis_addr a;
    memset(&a, 0x5a, sizeof a);
    int rc = config_parse_redis_url(s, &a);
    check_record(rc == 0, __FILE__, line, "config_parse_redis_url(\"%s\") = %d, want 0", s, rc);
    if (rc != 0)
        return;
    check_str_at(__FILE__, line, "host", host, a.host, host);
    check_int_at(__FILE__, line, "port", "want", a.port, port);
    check_str_at(__FILE__, line, "user", user, a.user, user);
    check_str_at(__FILE__, line, "password", password, a.password, password);
    check_int_at(__FILE__, line, "db", "want", a.db, db);
}
#define REDIS_OK(s, host, port, user, pw, db) redis_ok_at(__LINE__, s, host, port, user, pw, db)

static void redis_bad_at(int line, const char *s)
{
    struct redis_addr a;
    int rc = config_parse_redis_url(s, &a);
    check_record(rc == -1, __FILE__, line,
                 "config_parse_redis_url(\"%s\") = %d, want -1 (got host \"%s\" port %d)",
                 s, rc, rc == 0 ? a.host : "", rc == 0 ? a.port : 0);
}
#define REDIS_BAD(s) redis_bad_at(__LINE__, s)

static void test_redis_url_valid(void)
{
    REDIS_OK("redis://localhost", "localhost", 6379, "", "", 0);
    REDIS_OK("redis://10.0.0.5", "10.0.0.5", 6379, "", "", 0);
    REDIS_OK("redis://r.example:6380", "r.example", 6380, "", "", 0);
    REDIS_OK("redis://r:1", "r", 1, "", "", 0);
    REDIS_OK("redis://r:65535", "r", 65535, "", "", 0);
    REDIS_OK("redis://:secret@r", "r", 6379, "", "secret", 0);
    REDIS_OK("redis://:secret@r:7000", "r", 7000, "", "secret", 0);
    REDIS_OK("redis://alice:secret@r", "r", 6379, "alice", "secret", 0);
    REDIS_OK("redis://alice:secret@r:7000/3", "r", 7000, "alice", "secret", 3);
    REDIS_OK("redis://:p@ss@r", "r", 6379, "", "p@ss", 0);  /* '@' in password */
    REDIS_OK("redis://:pa:ss@r", "r", 6379, "", "pa:ss", 0); /* ':' in password */
    REDIS_OK("redis://r/0", "r", 6379, "", "", 0);
    REDIS_OK("redis://r/15", "r", 6379, "", "", 15);
    REDIS_OK("redis://r:6380/2", "r", 6380, "", "", 2);
    REDIS_OK("redis://r/", "r", 6379, "", "", 0);
    REDIS_OK("redis://[::1]", "::1", 6379, "", "", 0);
    REDIS_OK("redis://[::1]:6380", "::1", 6380, "", "", 0);
    REDIS_OK("redis://[2001:db8::1]:6380/4", "2001:db8::1", 6380, "", "", 4);
    REDIS_OK("redis://:pw@[::1]:6380/1", "::1", 6380, "", "pw", 1);
}

static void test_redis_url_bad(void)
{
    REDIS_BAD("");
    REDIS_BAD("localhost");
    REDIS_BAD("localhost:6379");
    REDIS_BAD("http://r");
    REDIS_BAD("rediss://r");
    REDIS_BAD("redis:/r");
    REDIS_BAD("redis:r");
    REDIS_BAD("redis://");            /* empty host */
    REDIS_BAD("redis:///0");
    REDIS_BAD("redis://:6379");
    REDIS_BAD("redis://:pw@");
    REDIS_BAD("redis://:pw@:6379");
    REDIS_BAD("redis://:pw@/0");
    REDIS_BAD("redis://[]");
    REDIS_BAD("redis://[]:6379");
    REDIS_BAD("redis://[::1");
    REDIS_BAD("redis://r[fe");        /* a stray bracket (found by fuzz_config) */
    REDIS_BAD("redis://[a]b]");
    REDIS_BAD("redis://[[::1]");
    REDIS_BAD("redis://r:0");         /* bad ports */
    REDIS_BAD("redis://r:65536");
    REDIS_BAD("redis://r:-1");
    REDIS_BAD("redis://r:abc");
    REDIS_BAD("redis://r:");
    REDIS_BAD("redis://r:63 79");
    REDIS_BAD("redis://r/abc");       /* bad db */
    REDIS_BAD("redis://r/-1");
    REDIS_BAD("redis://r/1/2");
    REDIS_BAD("redis://r/1x");
    REDIS_BAD("redis://user@r");      /* userinfo without ':' */
    REDIS_BAD("redis://user:@r");     /* empty password */
}

/* An IPv6 literal must be bracketed in a URL (RFC 3986): without brackets
 * "redis://::1" is not host "::1" and certainly not host ":" port 1. */
static void test_redis_url_unbracketed_ipv6(void)
{
    REDIS_BAD("redis://::1");
    REDIS_BAD("redis://::1:6379");
    REDIS_BAD("redis://2001:db8::1");
}

static void test_redis_url_lengths(void)
{
    char s[1024];
    struct redis_addr a;
    fill(s, sizeof s, "redis://", 'h', CONFIG_HOST_MAX - 1, ":6379");
    CHECK_EQ_INT(config_parse_redis_url(s, &a), 0);
    CHECK_EQ_UINT(strlen(a.host), CONFIG_HOST_MAX - 1);
    fill(s, sizeof s, "redis://", 'h', CONFIG_HOST_MAX, ":6379");
    CHECK_EQ_INT(config_parse_redis_url(s, &a), -1);
    fill(s, sizeof s, "redis://", 'h', CONFIG_HOST_MAX, "");
    CHECK_EQ_INT(config_parse_redis_url(s, &a), -1);
    fill(s, sizeof s, "redis://:", 'p', CONFIG_STR_MAX - 1, "@r");
    CHECK_EQ_INT(config_parse_redis_url(s, &a), 0);
    CHECK_EQ_UINT(strlen(a.password), CONFIG_STR_MAX - 1);
    fill(s, sizeof s, "redis://:", 'p', CONFIG_STR_MAX, "@r");
    CHECK_EQ_INT(config_parse_redis_url(s, &a), -1);
    fill(s, sizeof s, "redis://", 'u', CONFIG_STR_MAX, ":pw@r");
    CHECK_EQ_INT(config_parse_redis_url(s, &a), -1);
}

/* ---- config_parse_size --------------------------------------------- */

static void size_ok_at(int line, const char *s, size_t want)
{
    size_t v = 12345;
    int rc = config_parse_size(s, &v);
    check_record(rc == 0, __FILE__, line, "config_parse_size(\"%s\") = %d, want 0", s, rc);
    if (rc == 0)
        check_uint_at(__FILE__, line, s, "want", v, want);
}
#define SIZE_OK(s, want) size_ok_at(__LINE__, s, want)

static void size_bad_at(int line, const char *s)
{
    size_t v = 12345;
    int rc = config_parse_size(s, &v);
    check_record(rc == -1, __FILE__, line, "config_parse_size(\"%s\") = %d (value %zu), want -1",
                 s, rc, v);
    check_record(v == 12345, __FILE__, line, "config_parse_size(\"%s\") wrote %zu on failure", s, v);
}
#define SIZE_BAD(s) size_bad_at(__LINE__, s)

static void test_parse_size(void)
{
    SIZE_OK("0", 0);
    SIZE_OK("1", 1);
    SIZE_OK("65536", 65536);
    SIZE_OK("64k", 65536);
    SIZE_OK("64K", 65536);
    SIZE_OK("1m", 1048576);
    SIZE_OK("3M", 3u << 20);
    SIZE_OK("0k", 0);
    SIZE_OK("1024m", 1u << 30);

    /* overflow: the multiplication, and strtoull itself */
    SIZE_BAD("18446744073709551615k");
    SIZE_BAD("18014398509481984k");     /* 2^54 k = 2^64: wraps to 0 */
    SIZE_BAD("17592186044416m");        /* 2^44 m = 2^64 */
    SIZE_BAD("18446744073709551616");   /* > ULLONG_MAX */
    SIZE_BAD("99999999999999999999999999");

    /* garbage */
    SIZE_BAD("");
    SIZE_BAD("k");
    SIZE_BAD("m");
    SIZE_BAD("abc");
    SIZE_BAD("12x");
    SIZE_BAD("12kb");
    SIZE_BAD("12km");
    SIZE_BAD("12g");
    SIZE_BAD("-1");
    SIZE_BAD("+1");
    SIZE_BAD(" 1");
    SIZE_BAD("1 ");
    SIZE_BAD("1 k");
    SIZE_BAD("1.5k");
    SIZE_BAD("0x10");
}

/* ---- config_load ---------------------------------------------------- */

static void test_load_defaults(void)
{
    env_clear();
    struct config c;
    char err[256];
    CHECK_EQ_INT(load(&c, err, sizeof err, NOARGS), CONFIG_OK);
    CHECK_STR(c.listen_host, "0.0.0.0");
    CHECK_EQ_INT(c.listen_port, 8080);
    CHECK_EQ_INT(c.use_redis, 0);
    CHECK_STR(c.channel_prefix, "wsgate:");
    CHECK_STR(c.node_id, "");
    CHECK_STR(c.web_root, WEB_DEFAULT);
    CHECK_EQ_INT(c.log_level, LOG_INFO);
    CHECK_EQ_UINT(c.max_message_size, 64 * 1024);
    CHECK_EQ_UINT(c.max_queue_bytes, 1024 * 1024);
    CHECK(c.drain_seconds == 10.0);
}

static void test_load_env(void)
{
    env_clear();
    setenv("WSGATE_LISTEN", "127.0.0.1:9000", 1);
    setenv("WSGATE_REDIS", "redis://:pw@r.example:6380/2", 1);
    setenv("WSGATE_CHANNEL_PREFIX", "app:", 1);
    setenv("WSGATE_NODE_ID", "node-7", 1);
    setenv("WSGATE_WEB_ROOT", "/srv/web", 1);
    setenv("WSGATE_LOG_LEVEL", "debug", 1);
    setenv("WSGATE_MAX_MESSAGE_SIZE", "1k", 1);
    setenv("WSGATE_MAX_QUEUE_BYTES", "2m", 1);
    setenv("WSGATE_DRAIN_SECONDS", "2.5", 1);
    struct config c;
    char err[256];
    CHECK_EQ_INT(load(&c, err, sizeof err, NOARGS), CONFIG_OK);
    CHECK_STR(err, "");
    CHECK_STR(c.listen_host, "127.0.0.1");
    CHECK_EQ_INT(c.listen_port, 9000);
    CHECK_EQ_INT(c.use_redis, 1);
    CHECK_STR(c.redis.host, "r.example");
    CHECK_EQ_INT(c.redis.port, 6380);
    CHECK_STR(c.redis.password, "pw");
    CHECK_EQ_INT(c.redis.db, 2);
    CHECK_STR(c.channel_prefix, "app:");
    CHECK_STR(c.node_id, "node-7");
    CHECK_STR(c.web_root, "/srv/web");
    CHECK_EQ_INT(c.log_level, LOG_DEBUG);
    CHECK_EQ_UINT(c.max_message_size, 1024);
    CHECK_EQ_UINT(c.max_queue_bytes, 2u << 20);
    CHECK(c.drain_seconds == 2.5);
    env_clear();
}

static void test_load_flag_beats_env(void)
{
    env_clear();
    setenv("WSGATE_LISTEN", "127.0.0.1:9000", 1);
    setenv("WSGATE_LOG_LEVEL", "debug", 1);
    setenv("WSGATE_REDIS", "redis://r", 1);
    setenv("WSGATE_NODE_ID", "from-env", 1);
    struct config c;
    char err[256];
    CHECK_EQ_INT(load(&c, err, sizeof err,
                      ARGS("--listen", "127.0.0.1:9001", "--log-level=error",
                           "--redis=")),
                 CONFIG_OK);
    CHECK_EQ_INT(c.listen_port, 9001);
    CHECK_EQ_INT(c.log_level, LOG_ERROR);
    CHECK_EQ_INT(c.use_redis, 0); /* empty --redis: embedded broker */
    CHECK_STR(c.node_id, "from-env"); /* no flag: the variable stays */

    /* and the other way round: an empty variable (embedded), a flag URL */
    setenv("WSGATE_REDIS", "", 1);
    CHECK_EQ_INT(load(&c, err, sizeof err, ARGS("--redis", "redis://x:1")), CONFIG_OK);
    CHECK_EQ_INT(c.use_redis, 1);
    CHECK_STR(c.redis.host, "x");
    CHECK_EQ_INT(c.redis.port, 1);
    env_clear();
}

static void test_load_flag_forms(void)
{
    env_clear();
    struct config c;
    char err[256];
    static const char *const spaced[] = {
        "--listen", "[::1]:7000", "--redis", "redis://alice:pw@r:7001/3",
        "--channel-prefix", "p.", "--node-id", "n1", "--web-root", "/w",
        "--log-level", "warn", "--max-message-size", "300",
        "--max-queue-bytes", "4k", "--drain-seconds", "0", NULL};
    static const char *const joined[] = {
        "--listen=[::1]:7000", "--redis=redis://alice:pw@r:7001/3",
        "--channel-prefix=p.", "--node-id=n1", "--web-root=/w",
        "--log-level=warn", "--max-message-size=300", "--max-queue-bytes=4k",
        "--drain-seconds=0", NULL};
    const char *const *forms[] = {spaced, joined};
    for (int i = 0; i < 2; i++) {
        memset(&c, 0, sizeof c);
        CHECK_EQ_INT(load(&c, err, sizeof err, forms[i]), CONFIG_OK);
        CHECK_STR(err, "");
        CHECK_STR(c.listen_host, "::1");
        CHECK_EQ_INT(c.listen_port, 7000);
        CHECK_EQ_INT(c.use_redis, 1);
        CHECK_STR(c.redis.host, "r");
        CHECK_EQ_INT(c.redis.port, 7001);
        CHECK_STR(c.redis.user, "alice");
        CHECK_STR(c.redis.password, "pw");
        CHECK_EQ_INT(c.redis.db, 3);
        CHECK_STR(c.channel_prefix, "p.");
        CHECK_STR(c.node_id, "n1");
        CHECK_STR(c.web_root, "/w");
        CHECK_EQ_INT(c.log_level, LOG_WARN);
        CHECK_EQ_UINT(c.max_message_size, 300);
        CHECK_EQ_UINT(c.max_queue_bytes, 4096);
        CHECK(c.drain_seconds == 0.0);
    }
    /* A value may contain '=' after the first one, and the last flag wins. */
    CHECK_EQ_INT(load(&c, err, sizeof err,
                      ARGS("--node-id=a", "--node-id", "b=c")),
                 CONFIG_OK);
    CHECK_STR(c.node_id, "b=c");
}

static void test_load_unknown_flag(void)
{
    env_clear();
    struct config c;
    char err[256];
    CHECK_EQ_INT(load(&c, err, sizeof err, ARGS("--bogus", "1")), CONFIG_ERROR);
    CHECK_CONTAINS(err, "--bogus");
    CHECK(!strchr(err, '\n'));
    CHECK_EQ_INT(load(&c, err, sizeof err, ARGS("--listen", "1.2.3.4:5", "--frobnicate=yes")),
                 CONFIG_ERROR);
    CHECK_CONTAINS(err, "--frobnicate");
    /* a prefix of a real flag is not that flag */
    CHECK_EQ_INT(load(&c, err, sizeof err, ARGS("--list", "1.2.3.4:5")), CONFIG_ERROR);
    CHECK_CONTAINS(err, "--list");
    CHECK_EQ_INT(load(&c, err, sizeof err, ARGS("--listenx=1.2.3.4:5")), CONFIG_ERROR);
    CHECK_CONTAINS(err, "--listenx");
    /* positional arguments and single-dash flags are refused */
    CHECK_EQ_INT(load(&c, err, sizeof err, ARGS("extra")), CONFIG_ERROR);
    CHECK_CONTAINS(err, "extra");
    CHECK_EQ_INT(load(&c, err, sizeof err, ARGS("-listen", "1.2.3.4:5")), CONFIG_ERROR);
    CHECK_CONTAINS(err, "-listen");
    /* a short error buffer is filled, not overrun (ASan watches) */
    char small[8];
    CHECK_EQ_INT(load(&c, small, sizeof small, ARGS("--a-very-long-unknown-flag")),
                 CONFIG_ERROR);
    CHECK(strlen(small) < sizeof small);
    CHECK_EQ_INT(load(&c, small, sizeof small, ARGS("--listen", "nope")), CONFIG_ERROR);
    CHECK(strlen(small) < sizeof small);
}

static void test_load_missing_value(void)
{
    env_clear();
    static const char *const flags[] = {
        "--listen", "--redis", "--channel-prefix", "--node-id", "--web-root",
        "--log-level", "--max-message-size", "--max-queue-bytes",
        "--drain-seconds"};
    for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++) {
        struct config c;
        char err[256];
        int rc = load(&c, err, sizeof err, ARGS(flags[i]));
        CHECK_MSG(rc == CONFIG_ERROR, "%s without a value: rc %d", flags[i], rc);
        CHECK_CONTAINS(err, flags[i]);
        CHECK_CONTAINS(err, "missing");
        CHECK(!strchr(err, '\n'));
    }
}

struct bad_value {
    const char *flag; /* without "--" */
    const char *env;
    const char *value;
};

static void test_load_bad_values(void)
{
    static const struct bad_value bad[] = {
        {"listen", "WSGATE_LISTEN", "nope"},
        {"listen", "WSGATE_LISTEN", ""},
        {"listen", "WSGATE_LISTEN", "1.2.3.4:70000"},
        {"redis", "WSGATE_REDIS", "http://r"},
        {"redis", "WSGATE_REDIS", "redis://r:0"},
        {"channel-prefix", "WSGATE_CHANNEL_PREFIX", "a b"},
        {"channel-prefix", "WSGATE_CHANNEL_PREFIX", "a*"},
        {"node-id", "WSGATE_NODE_ID", "a b"},
        {"node-id", "WSGATE_NODE_ID", "a\"b"},
        {"node-id", "WSGATE_NODE_ID", "a\\b"},
        {"web-root", "WSGATE_WEB_ROOT", ""},
        {"api-key", "WSGATE_API_KEY", "a\nb"}, /* found by fuzz_config */
        {"api-key", "WSGATE_API_KEY", "\tk"},
        {"log-level", "WSGATE_LOG_LEVEL", "verbose"},
        {"log-level", "WSGATE_LOG_LEVEL", ""},
        {"max-message-size", "WSGATE_MAX_MESSAGE_SIZE", "abc"},
        {"max-message-size", "WSGATE_MAX_MESSAGE_SIZE", "255"},
        {"max-message-size", "WSGATE_MAX_MESSAGE_SIZE", "16777217"},
        {"max-message-size", "WSGATE_MAX_MESSAGE_SIZE", "17m"},
        {"max-queue-bytes", "WSGATE_MAX_QUEUE_BYTES", "1023"},
        {"max-queue-bytes", "WSGATE_MAX_QUEUE_BYTES", "1025m"},
        {"max-queue-bytes", "WSGATE_MAX_QUEUE_BYTES", "lots"},
        {"drain-seconds", "WSGATE_DRAIN_SECONDS", ""},
        {"drain-seconds", "WSGATE_DRAIN_SECONDS", "abc"},
        {"drain-seconds", "WSGATE_DRAIN_SECONDS", "-1"},
        {"drain-seconds", "WSGATE_DRAIN_SECONDS", "3600.5"},
        {"drain-seconds", "WSGATE_DRAIN_SECONDS", "5s"},
        {"drain-seconds", "WSGATE_DRAIN_SECONDS", "nan"},
        {"drain-seconds", "WSGATE_DRAIN_SECONDS", "inf"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const struct bad_value *b = &bad[i];
        struct config c;
        char err[256], flag[64], joined[128];
        snprintf(flag, sizeof flag, "--%s", b->flag);
        snprintf(joined, sizeof joined, "--%s=%s", b->flag, b->value);

        env_clear();
        int rc = load(&c, err, sizeof err, ARGS(flag, b->value));
        CHECK_MSG(rc == CONFIG_ERROR, "%s '%s': rc %d, want CONFIG_ERROR", flag, b->value, rc);
        CHECK_CONTAINS(err, flag);
        CHECK(!strchr(err, '\n'));

        rc = load(&c, err, sizeof err, ARGS(joined));
        CHECK_MSG(rc == CONFIG_ERROR, "%s: rc %d, want CONFIG_ERROR", joined, rc);
        CHECK_CONTAINS(err, flag);

        /* the same value from the environment names the variable */
        setenv(b->env, b->value, 1);
        rc = load(&c, err, sizeof err, NOARGS);
        CHECK_MSG(rc == CONFIG_ERROR, "%s='%s': rc %d, want CONFIG_ERROR", b->env, b->value, rc);
        CHECK_CONTAINS(err, b->env);
        unsetenv(b->env);
    }
    env_clear();
}

static void test_load_value_bounds(void)
{
    env_clear();
    struct config c;
    char err[256];
    char prefix63[64], prefix64[65], node255[256], node256[257];
    fill(prefix63, sizeof prefix63, "", 'p', 63, "");
    fill(prefix64, sizeof prefix64, "", 'p', 64, "");
    fill(node255, sizeof node255, "", 'n', 255, "");
    fill(node256, sizeof node256, "", 'n', 256, "");

    CHECK_EQ_INT(load(&c, err, sizeof err, ARGS("--channel-prefix", prefix63)), CONFIG_OK);
    CHECK_STR(c.channel_prefix, prefix63);
    CHECK_EQ_INT(load(&c, err, sizeof err, ARGS("--channel-prefix", prefix64)), CONFIG_ERROR);
    CHECK_CONTAINS(err, "--channel-prefix");
    CHECK_EQ_INT(load(&c, err, sizeof err,
                      ARGS("--channel-prefix", "Az09_-.:@/")), CONFIG_OK);
    CHECK_STR(c.channel_prefix, "Az09_-.:@/");

    CHECK_EQ_INT(load(&c, err, sizeof err, ARGS("--node-id", node255)), CONFIG_OK);
    CHECK_STR(c.node_id, node255);
    CHECK_EQ_INT(load(&c, err, sizeof err, ARGS("--node-id", node256)), CONFIG_ERROR);
    CHECK_CONTAINS(err, "--node-id");

    CHECK_EQ_INT(load(&c, err, sizeof err, ARGS("--max-message-size", "256")), CONFIG_OK);
    CHECK_EQ_UINT(c.max_message_size, 256);
    CHECK_EQ_INT(load(&c, err, sizeof err, ARGS("--max-message-size", "16m")), CONFIG_OK);
    CHECK_EQ_UINT(c.max_message_size, 16u << 20);
    CHECK_EQ_INT(load(&c, err, sizeof err, ARGS("--max-queue-bytes", "1k")), CONFIG_OK);
    CHECK_EQ_UINT(c.max_queue_bytes, 1024);
    CHECK_EQ_INT(load(&c, err, sizeof err, ARGS("--max-queue-bytes", "1024m")), CONFIG_OK);
    CHECK_EQ_UINT(c.max_queue_bytes, 1u << 30);
    CHECK_EQ_INT(load(&c, err, sizeof err, ARGS("--drain-seconds", "3600")), CONFIG_OK);
    CHECK(c.drain_seconds == 3600.0);
    CHECK_EQ_INT(load(&c, err, sizeof err, ARGS("--drain-seconds", "0.25")), CONFIG_OK);
    CHECK(c.drain_seconds == 0.25);

    static const char *const levels[] = {"debug", "info", "warn", "error"};
    for (int i = 0; i < 4; i++) {
        CHECK_EQ_INT(load(&c, err, sizeof err, ARGS("--log-level", levels[i])), CONFIG_OK);
        CHECK_EQ_INT(c.log_level, LOG_DEBUG + i);
    }
}

static void test_load_help(void)
{
    env_clear();
    struct config c;
    char err[256];
    CHECK_EQ_INT(load(&c, err, sizeof err, ARGS("--help")), CONFIG_HELP);
    CHECK_EQ_INT(load(&c, err, sizeof err, ARGS("-h")), CONFIG_HELP);
    CHECK_EQ_INT(load(&c, err, sizeof err, ARGS("--listen", "1.2.3.4:5", "--help")),
                 CONFIG_HELP);
}

/* config_load fills the whole struct: nothing from a previous call leaks. */
static void test_load_resets(void)
{
    env_clear();
    struct config c;
    char err[256];
    CHECK_EQ_INT(load(&c, err, sizeof err,
                      ARGS("--redis", "redis://r", "--node-id", "x")), CONFIG_OK);
    CHECK_EQ_INT(c.use_redis, 1);
    CHECK_EQ_INT(load(&c, err, sizeof err, NOARGS), CONFIG_OK);
    CHECK_EQ_INT(c.use_redis, 0);
    CHECK_STR(c.node_id, "");
}

/* A temporary file holding text; returns its path (static buffer). */
static const char *conf_file(const char *text)
{
    static char path[64];
    snprintf(path, sizeof path, "/tmp/wsgate-test-config-XXXXXX");
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    FILE *f = fdopen(fd, "w");
    fputs(text, f);
    fclose(f);
    return path;
}

/* The file sets what flags set; variables beat it, flags beat both. */
static void test_load_file(void)
{
    env_clear();
    struct config c;
    char err[512];
    const char *path = conf_file("# comment\n\n  listen = 127.0.0.1:9100  \n"
                                 "max_channels=5\nnode-id = \"from-file\"\n"
                                 "redis = redis://u:pw@r:7/1\napi-insecure = yes\n"
                                 "max-connections = 9\n");
    CHECK_EQ_INT(load(&c, err, sizeof err, ARGS("--config", path)), CONFIG_OK);
    CHECK_EQ_INT(c.listen_port, 9100);
    CHECK_EQ_UINT(c.max_channels, 5);
    CHECK_STR(c.node_id, "from-file");
    CHECK_EQ_INT(c.api_insecure, 1);
    CHECK_STR(c.redis.password, "pw");

    setenv("WSGATE_MAX_CHANNELS", "6", 1);
    setenv("WSGATE_CONFIG", path, 1);
    CHECK_EQ_INT(load(&c, err, sizeof err, ARGS("--max-connections", "11")), CONFIG_OK);
    CHECK_EQ_UINT(c.max_channels, 6);     /* variable beats file */
    CHECK_EQ_UINT(c.max_connections, 11); /* flag beats file */
    CHECK_STR(c.node_id, "from-file");    /* WSGATE_CONFIG named it */

    /* effective settings: origins, secrets and the password masked */
    char out[8192] = "";
    FILE *f = fmemopen(out, sizeof out - 1, "w");
    config_print(&c, f);
    fclose(f);
    CHECK_CONTAINS(out, "max-channels = 6  # WSGATE_MAX_CHANNELS");
    CHECK_CONTAINS(out, "max-connections = 11  # --max-connections");
    CHECK_CONTAINS(out, "listen = 127.0.0.1:9100  # config file line 3");
    CHECK_CONTAINS(out, "redis = redis://u:****@r:7/1");
    CHECK_CONTAINS(out, "publish-rate = 100  # default");
    CHECK_CONTAINS(out, "# jwt-secret: none");
    CHECK(!strstr(out, "pw@"));
    env_clear();
    unlink(path);

    CHECK_EQ_INT(load(&c, err, sizeof err, ARGS("--jwt-secret", "topsecret", "--api-key", "k3y",
                                                 "--redis", "redis://:p@ss@[::1]:6380")),
                 CONFIG_OK);
    f = fmemopen(out, sizeof out - 1, "w");
    config_print(&c, f);
    fclose(f);
    CHECK(!strstr(out, "topsecret") && !strstr(out, "k3y") && !strstr(out, "ss@"));
    CHECK_CONTAINS(out, "redis = redis://:****@[::1]:6380/0  # --redis");
    CHECK_CONTAINS(out, "jwt-secret = ****  # --jwt-secret, 9 bytes");
    CHECK_CONTAINS(out, "# auth: required  (derived");
}

/* Comments after a value, and quotes that keep a '#' or blanks. */
static void test_load_file_quotes(void)
{
    env_clear();
    struct config c;
    char err[512];
    const char *path = conf_file("channel-prefix = app:   # the app's channels\n"
                                 "node-id = n#1\n"
                                 "jwt-secret = \"  a #b \"  # kept whole\n"
                                 "allowed-origins = \"http://x\"\n");
    CHECK_EQ_INT(load(&c, err, sizeof err, ARGS("--config", path)), CONFIG_OK);
    CHECK_STR(c.channel_prefix, "app:");
    CHECK_STR(c.node_id, "n#1"); /* '#' after no blank is part of the value */
    CHECK_MEM(c.jwt_secret, c.jwt_secret_len, "  a #b ");
    CHECK_STR(c.allowed_origins, "http://x");
    unlink(path);
    path = conf_file("node-id = \"n1\" x\n");
    CHECK_EQ_INT(load(&c, err, sizeof err, ARGS("--config", path)), CONFIG_ERROR);
    CHECK_CONTAINS(err, ":1: text after the closing quote");
    unlink(path);
}

static void test_load_file_errors(void)
{
    static const struct {
        const char *text, *want;
    } bad[] = {
        {"bogus = 1\n", ":1: unknown setting 'bogus'"},
        {"\nlisten\n", ":2: expected 'key = value'"},
        {"max-channels = x\n", ":1: max-channels: invalid value 'x'"},
        {"config = /x\n", "cannot hold the setting 'config'"},
        {"api-insecure = maybe\n", "api-insecure: invalid value 'maybe'"},
    };
    env_clear();
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        struct config c;
        char err[512];
        const char *path = conf_file(bad[i].text);
        CHECK_EQ_INT(load(&c, err, sizeof err, ARGS("--config", path)), CONFIG_ERROR);
        CHECK_CONTAINS(err, "--config ");
        CHECK_CONTAINS(err, bad[i].want);
        unlink(path);
    }
    struct config c;
    char err[512];
    CHECK_EQ_INT(load(&c, err, sizeof err, ARGS("--config", "/nonexistent/w.conf")), CONFIG_ERROR);
    CHECK_CONTAINS(err, "--config: cannot read '/nonexistent/w.conf'");
}

static void test_load_bool_and_checks(void)
{
    env_clear();
    struct config c;
    char err[512];
    CHECK_EQ_INT(load(&c, err, sizeof err, NOARGS), CONFIG_OK);
    CHECK_EQ_INT(c.api_insecure, 0);
    /* a boolean flag takes no value: the next argument is a flag again */
    CHECK_EQ_INT(load(&c, err, sizeof err, ARGS("--api-insecure", "--max-channels", "3")),
                 CONFIG_OK);
    CHECK_EQ_INT(c.api_insecure, 1);
    CHECK_EQ_UINT(c.max_channels, 3);
    CHECK_EQ_INT(load(&c, err, sizeof err, ARGS("--api-insecure=false")), CONFIG_OK);
    CHECK_EQ_INT(c.api_insecure, 0);
    setenv("WSGATE_API_INSECURE", "1", 1);
    CHECK_EQ_INT(load(&c, err, sizeof err, NOARGS), CONFIG_OK);
    CHECK_EQ_INT(c.api_insecure, 1);
    CHECK_EQ_INT(load(&c, err, sizeof err, ARGS("--api-key", "k")), CONFIG_ERROR);
    CHECK_CONTAINS(err, "--api-insecure: contradicts --api-key");
    setenv("WSGATE_API_INSECURE", "sure", 1);
    CHECK_EQ_INT(load(&c, err, sizeof err, NOARGS), CONFIG_ERROR);
    CHECK_CONTAINS(err, "WSGATE_API_INSECURE");
    env_clear();

    /* the Socket.IO redis-adapter bridge lives on Redis */
    CHECK_EQ_INT(load(&c, err, sizeof err, ARGS("--socketio-redis-adapter")), CONFIG_ERROR);
    CHECK_CONTAINS(err, "--socketio-redis-adapter: needs --redis");
    CHECK_EQ_INT(load(&c, err, sizeof err,
                      ARGS("--socketio-redis-adapter", "--redis", "redis://r:7")), CONFIG_OK);
    CHECK_EQ_INT(c.socketio_adapter, 1);
    const char *conf = conf_file("redis = redis://r:7\nsocketio-redis-adapter = on\n");
    CHECK_EQ_INT(load(&c, err, sizeof err, ARGS("--config", conf)), CONFIG_OK);
    CHECK_EQ_INT(c.socketio_adapter, 1);
    unlink(conf);

    CHECK_EQ_INT(load(&c, err, sizeof err, ARGS("--anonymous-channels", "lobby")), CONFIG_ERROR);
    CHECK_CONTAINS(err, "--anonymous-channels: needs --auth optional");
    CHECK_EQ_INT(load(&c, err, sizeof err, ARGS("--jwt-secret", "s", "--anonymous-channels", "lobby")),
                 CONFIG_ERROR);
    CHECK_EQ_INT(load(&c, err, sizeof err, ARGS("--jwt-secret", "s", "--auth", "optional",
                                                 "--anonymous-channels", "lobby")), CONFIG_OK);
    CHECK_EQ_INT(load(&c, err, sizeof err, ARGS("--listen", "1.2.3.4:5", "--version")),
                 CONFIG_VERSION);
}

int main(void)
{
    env_clear();
    RUN(test_load_file);
    RUN(test_load_file_quotes);
    RUN(test_load_file_errors);
    RUN(test_load_bool_and_checks);
    RUN(test_listen_valid);
    RUN(test_listen_bad);
    RUN(test_listen_strict);
    RUN(test_listen_host_length);
    RUN(test_redis_url_valid);
    RUN(test_redis_url_bad);
    RUN(test_redis_url_unbracketed_ipv6);
    RUN(test_redis_url_lengths);
    RUN(test_parse_size);
    RUN(test_load_defaults);
    RUN(test_load_env);
    RUN(test_load_flag_beats_env);
    RUN(test_load_flag_forms);
    RUN(test_load_unknown_flag);
    RUN(test_load_missing_value);
    RUN(test_load_bad_values);
    RUN(test_load_value_bounds);
    RUN(test_load_help);
    RUN(test_load_resets);
    env_clear();
    return check_summary();
}
