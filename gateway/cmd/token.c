/* cmd/token.c - see cmd/token.h. */
#include "cmd/token.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cJSON.h>

#include "config.h"
#include "core/auth.h"

#define TTL_MAX (3650LL * 86400) /* ten years: a typo, not a wish, beyond */

struct token_args {
    const char *secret_file, *sub, *channels, *publish, *ttl, *check;
};

static int usage(void)
{
    printf("Usage: wsgate token --secret-file F [--sub S] [--channels LIST] [--publish LIST]\n"
           "                    [--ttl DURATION]\n"
           "       wsgate token --check TOKEN --secret-file F\n"
           "Prints an HS256 connect token (give it to a client as ?token= on /ws), or\n"
           "explains one: its claims, its expiry, and whether the gateway would accept it.\n\n"
           "  --secret-file F   file holding the HS256 secret (the gateway's --jwt-secret-file)\n"
           "  --sub S           subject, shown in the gateway's logs\n"
           "  --channels LIST   channels it may subscribe to, e.g. 'room.*,lobby'\n"
           "  --publish LIST    channels it may publish to\n"
           "  --ttl DURATION    lifetime: N, Ns, Nm, Nh or Nd; 0: never expires (default 1h)\n"
           "  --check TOKEN     explain TOKEN instead; exit 0 accepted, 1 refused\n");
    return 0;
}

__attribute__((format(printf, 1, 2))) static int bad(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("wsgate token: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return 2;
}

/* "90", "90s", "15m", "1h", "7d" -> seconds; -1 when not one of those. */
static long long parse_ttl(const char *s)
{
    char *end;
    if (s[0] < '0' || s[0] > '9')
        return -1;
    long long v = strtoll(s, &end, 10), mult = 1;
    switch (*end) {
    case 'd': mult *= 24; /* fall through */
    case 'h': mult *= 60; /* fall through */
    case 'm': mult *= 60; /* fall through */
    case 's': end++; break;
    case '\0': break;
    default: return -1;
    }
    if (*end || v > TTL_MAX / mult)
        return -1;
    return v * mult;
}

/* A JSON array of the grants in list (checked by the gateway's own parser),
 * added to o as name; returns 0 or 2 with the error printed. */
static int add_grants(cJSON *o, const char *name, const char *flag, const char *list)
{
    struct auth_grants g;
    char err[256];
    if (auth_grants_parse(list, &g, err, sizeof err) < 0)
        return bad("%s: %s", flag, err);
    cJSON *arr = cJSON_AddArrayToObject(o, name);
    for (size_t i = 0; arr && i < g.n; i++) {
        char grant[AUTH_GRANT_NAME_MAX + 2];
        snprintf(grant, sizeof grant, "%s%s", g.v[i].name, g.v[i].prefix ? "*" : "");
        cJSON_AddItemToArray(arr, cJSON_CreateString(grant));
    }
    auth_grants_clear(&g);
    return arr ? 0 : bad("out of memory");
}

static void print_time(const char *label, long long t, long long now)
{
    char when[32];
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    long long d = t - now;
    if (d > 0)
        printf("%-9s %s (in %lld s)\n", label, when, d);
    else
        printf("%-9s %s (%lld s ago)\n", label, when, -d);
}

/* Prints s, a decoded segment, with control bytes as '?': one line each. */
static void print_segment(const char *label, const char *s)
{
    printf("%-9s ", label);
    if (!s) {
        puts("(missing or not base64url)");
        return;
    }
    for (; *s; s++)
        putchar((unsigned char)*s < 0x20 || *s == 0x7f ? '?' : *s);
    putchar('\n');
}

static void print_grants(const char *label, const struct auth_grants *g)
{
    printf("%-9s", label);
    if (!g->n)
        printf(" (none)");
    for (size_t i = 0; i < g->n; i++)
        printf(" %s%s", g->v[i].name, g->v[i].prefix ? "*" : "");
    putchar('\n');
}

static int check(const struct auth_key *k, const char *token, long long now)
{
    size_t len = strlen(token);
    char *header = auth_segment(token, len, 0), *payload = auth_segment(token, len, 1);
    print_segment("header:", header);
    print_segment("claims:", payload);
    cJSON *p = payload ? cJSON_Parse(payload) : NULL;
    const cJSON *iat = cJSON_GetObjectItemCaseSensitive(p, "iat");
    const cJSON *nbf = cJSON_GetObjectItemCaseSensitive(p, "nbf");
    const cJSON *exp = cJSON_GetObjectItemCaseSensitive(p, "exp");
    if (cJSON_IsNumber(iat))
        print_time("issued:", (long long)iat->valuedouble, now);
    if (cJSON_IsNumber(nbf))
        print_time("from:", (long long)nbf->valuedouble, now);
    if (cJSON_IsNumber(exp))
        print_time("expires:", (long long)exp->valuedouble, now);
    else if (cJSON_IsObject(p))
        printf("%-9s never\n", "expires:");
    cJSON_Delete(p);
    free(header);
    free(payload);

    struct auth_claims *c;
    struct auth_error err;
    if (auth_verify(k, token, len, now, &c, &err) < 0) {
        printf("%-9s refused: %s: %s\n", "verdict:", err.code, err.message);
        return 1;
    }
    print_grants("channels:", &c->subscribe);
    print_grants("publish:", &c->publish);
    printf("%-9s accepted (sub %s)\n", "verdict:", c->sub[0] ? c->sub : "none");
    auth_claims_free(c);
    return 0;
}

static int mint(const struct auth_key *k, const struct token_args *a, long long now)
{
    long long ttl = parse_ttl(a->ttl ? a->ttl : "1h");
    if (ttl < 0)
        return bad("--ttl: invalid value '%.40s': expected N, Ns, Nm, Nh or Nd up to 3650d",
                   a->ttl);
    cJSON *o = cJSON_CreateObject();
    int rc = o ? 0 : bad("out of memory");
    if (!rc && a->sub)
        rc = cJSON_AddStringToObject(o, "sub", a->sub) ? 0 : bad("out of memory");
    if (!rc && a->channels)
        rc = add_grants(o, "channels", "--channels", a->channels);
    if (!rc && a->publish)
        rc = add_grants(o, "publish", "--publish", a->publish);
    if (!rc && (!cJSON_AddNumberToObject(o, "iat", (double)now) ||
                (ttl && !cJSON_AddNumberToObject(o, "exp", (double)(now + ttl)))))
        rc = bad("out of memory");
    char *claims = rc ? NULL : cJSON_PrintUnformatted(o);
    char *token = claims ? auth_sign(k, claims, strlen(claims)) : NULL;
    if (!rc && !token)
        rc = bad("out of memory");
    /* The gateway's verifier decides what a good token is (sub rules...). */
    struct auth_claims *c = NULL;
    struct auth_error err;
    if (!rc && auth_verify(k, token, strlen(token), now, &c, &err) < 0)
        rc = bad("the gateway would refuse this token: %s: %s", err.code, err.message);
    if (!rc)
        puts(token);
    auth_claims_free(c);
    free(token);
    cJSON_free(claims);
    cJSON_Delete(o);
    return rc;
}

int cmd_token(int argc, char **argv)
{
    struct token_args a = {0};
    static const struct {
        const char *flag;
        size_t off;
    } flags[] = {
        {"--secret-file", offsetof(struct token_args, secret_file)},
        {"--sub", offsetof(struct token_args, sub)},
        {"--channels", offsetof(struct token_args, channels)},
        {"--publish", offsetof(struct token_args, publish)},
        {"--ttl", offsetof(struct token_args, ttl)},
        {"--check", offsetof(struct token_args, check)},
    };
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h"))
            return usage();
        size_t f = 0, n = sizeof flags / sizeof flags[0];
        const char *eq = strchr(argv[i], '=');
        size_t nl = eq ? (size_t)(eq - argv[i]) : strlen(argv[i]);
        while (f < n && (strlen(flags[f].flag) != nl || strncmp(flags[f].flag, argv[i], nl)))
            f++;
        if (f == n)
            return bad("unknown argument '%.*s' (see wsgate token --help)",
                       (int)(nl > 60 ? 60 : nl), argv[i]);
        const char *v = eq ? eq + 1 : i + 1 < argc ? argv[++i] : NULL;
        if (!v)
            return bad("%s: missing value", flags[f].flag);
        *(const char **)((char *)&a + flags[f].off) = v;
    }
    if (!a.secret_file)
        return bad("--secret-file: missing (the file the gateway reads with --jwt-secret-file)");
    if (a.check && (a.sub || a.channels || a.publish || a.ttl))
        return bad("--check: takes only --secret-file");

    unsigned char secret[AUTH_SECRET_MAX];
    char why[160];
    long len = config_read_secret(a.secret_file, secret, sizeof secret, why, sizeof why);
    if (len < 0)
        return bad("--secret-file: %s", why);
    struct auth_key *k = auth_key_new(secret, (size_t)len, 0);
    memset(secret, 0, sizeof secret);
    if (!k)
        return bad("out of memory");
    long long now = (long long)time(NULL);
    int rc = a.check ? check(k, a.check, now) : mint(k, &a, now);
    auth_key_free(k);
    return rc;
}
