/* fuzz_auth.c - libFuzzer entry point for the connect-token verifier.
 *
 * Each input is used three ways, with a fixed secret, time and leeway:
 *  1. as a token, verified as it is: reaches everything in front of the
 *     signature check (splitting, base64url, header JSON, alg/typ/crit);
 *  2. split at its first '\n' into header and payload text, which are
 *     base64url-encoded and signed here, then verified: reaches the claims
 *     parser behind the signature (fuzzing cannot forge an HMAC);
 *  3. as a --anonymous-channels list for auth_grants_parse().
 * Beyond crashes, it aborts when a result breaks the module's promises:
 * an accepted token or list whose grants, sub or exp are out of bounds, a
 * status without its code, out_of_memory (allocations do not fail here, so
 * it would be a misclassified input), or a different answer on a second
 * verify.
 *
 * No main: link with -fsanitize=fuzzer, or with standalone.c to replay a
 * corpus under any compiler. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "core/auth.h"

#define FUZZ_SECRET "wsgate-fuzz-secret"
#define FUZZ_NOW INT64_C(1700000000)
#define FUZZ_LEEWAY 5

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define REQUIRE(cond) \
    do {              \
        if (!(cond))  \
            abort();  \
    } while (0)

static int channel_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.' ||
           c == ':' || c == '@' || c == '/';
}

static void check_grants(const struct auth_grants *g)
{
    REQUIRE(g->n <= AUTH_GRANTS_MAX);
    REQUIRE((g->n == 0) == (g->v == NULL));
    for (size_t i = 0; i < g->n; i++) {
        const struct auth_grant *a = &g->v[i];
        REQUIRE(a->len <= AUTH_GRANT_NAME_MAX && strlen(a->name) == a->len);
        REQUIRE(a->prefix == 0 || a->prefix == 1);
        REQUIRE(a->prefix || a->len > 0);
        for (size_t j = 0; j < a->len; j++)
            REQUIRE(channel_char((unsigned char)a->name[j]));
        /* A grant allows its own name (a prefix: when not empty). */
        if (a->len)
            REQUIRE(auth_grants_allow(g, a->name, a->len));
    }
    if (g->n == 0)
        REQUIRE(!auth_grants_allow(g, "x", 1));
}

static void check_claims(const struct auth_key *k, const struct auth_claims *c)
{
    size_t n = strlen(c->sub);
    REQUIRE(n <= AUTH_SUB_MAX);
    for (size_t i = 0; i < n; i++)
        REQUIRE(c->sub[i] > 0x20 && c->sub[i] < 0x7f);
    REQUIRE(c->exp >= 0);
    REQUIRE(!auth_claims_expired(k, c, FUZZ_NOW));
    check_grants(&c->subscribe);
    check_grants(&c->publish);
}

/* Verifies twice (the answer must not change) and checks what comes back. */
static void verify(const struct auth_key *k, const char *token, size_t len)
{
    struct auth_claims *c = NULL, *again = NULL;
    struct auth_error err;
    int rc = auth_verify(k, token, len, FUZZ_NOW, &c, &err);
    REQUIRE(rc <= 0 && (rc == 0) == (c != NULL));
    REQUIRE(err.status == rc && err.code && err.message);
    REQUIRE(!strcmp(err.code, auth_status_code(rc)));
    REQUIRE(strcmp(err.code, "unknown"));
    REQUIRE(rc != AUTH_ENOMEM); /* allocations do not fail here */
    REQUIRE(auth_verify(k, token, len, FUZZ_NOW, &again, NULL) == rc);
    if (c) {
        check_claims(k, c);
        REQUIRE(!strcmp(c->sub, again->sub) && c->exp == again->exp);
    }
    auth_claims_free(c);
    auth_claims_free(again);
}

static char *b64url(char *out, const uint8_t *p, size_t n)
{
    static const char abc[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned)p[i] << 16;
        if (i + 1 < n) v |= (unsigned)p[i + 1] << 8;
        if (i + 2 < n) v |= p[i + 2];
        *out++ = abc[v >> 18 & 63];
        *out++ = abc[v >> 12 & 63];
        if (i + 1 < n) *out++ = abc[v >> 6 & 63];
        if (i + 2 < n) *out++ = abc[v & 63];
    }
    return out;
}

/* header '\n' payload -> a token signed with the fuzz secret. */
static void verify_signed(const struct auth_key *k, const uint8_t *data,
                          size_t size)
{
    const uint8_t *nl = size ? memchr(data, '\n', size) : NULL;
    size_t hlen = nl ? (size_t)(nl - data) : size;
    const uint8_t *payload = nl ? nl + 1 : data + size;
    size_t plen = size - hlen - (nl != NULL);
    char *t = malloc(size / 3 * 4 + 64);
    if (!t)
        return;
    char *p = b64url(t, data, hlen);
    *p++ = '.';
    p = b64url(p, payload, plen);
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned maclen = 0;
    HMAC(EVP_sha256(), FUZZ_SECRET, sizeof FUZZ_SECRET - 1, (unsigned char *)t,
         (size_t)(p - t), mac, &maclen);
    *p++ = '.';
    p = b64url(p, mac, maclen);
    verify(k, t, (size_t)(p - t));
    free(t);
}

static void parse_list(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    if (!s)
        return;
    if (size)
        memcpy(s, data, size);
    s[size] = '\0';
    struct auth_grants g = {0};
    char err[128];
    err[0] = '\0';
    if (auth_grants_parse(s, &g, err, sizeof err) == 0)
        check_grants(&g);
    else
        REQUIRE(err[0] && g.v == NULL && g.n == 0);
    auth_grants_clear(&g);
    free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct auth_key *key; /* one per process, like the gateway's */
    if (!key) {
        key = auth_key_new(FUZZ_SECRET, sizeof FUZZ_SECRET - 1, FUZZ_LEEWAY);
        REQUIRE(key);
    }
    verify(key, (const char *)data, size);
    verify_signed(key, data, size);
    parse_list(data, size);
    return 0;
}
