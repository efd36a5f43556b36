/* auth.c - see auth.h. */
#include "core/auth.h"
#include "core/channel.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include "proto/json.h"

#define SIG_LEN 32                     /* HMAC-SHA256 */
#define NUMERIC_DATE_MAX 9007199254740992.0 /* 2^53: exact in a double */

struct auth_key {
    EVP_MAC_CTX *mac; /* HMAC-SHA256 keyed with the secret; duplicated per
                       * verify, never updated itself */
    unsigned leeway;
};

/* A borrowed run of bytes. */
struct span {
    const char *p;
    size_t len;
};

/* ---- status codes ------------------------------------------------------ */

const char *auth_status_code(enum auth_status status)
{
    switch (status) {
    case AUTH_OK: return "ok";
    case AUTH_EMISSING: return "token_missing";
    case AUTH_ETOO_LARGE: return "token_too_large";
    case AUTH_EMALFORMED: return "token_malformed";
    case AUTH_EALG: return "alg_not_allowed";
    case AUTH_EHEADER: return "bad_header";
    case AUTH_ESIGNATURE: return "bad_signature";
    case AUTH_EEXPIRED: return "expired";
    case AUTH_ENOT_YET_VALID: return "not_yet_valid";
    case AUTH_ECLAIMS: return "bad_claims";
    case AUTH_ENOMEM: return "out_of_memory";
    }
    return "unknown";
}

/* Fills err and returns status, so failures read "return fail(...)". */
static int fail(struct auth_error *err, enum auth_status status,
                const char *message)
{
    err->status = status;
    err->code = auth_status_code(status);
    err->message = message;
    return status;
}

/* ---- base64url (RFC 4648 section 5, unpadded, canonical) --------------- */

static int b64url_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '-') return 62;
    if (c == '_') return 63;
    return -1; /* including '=', '+', '/' and anything else */
}

/* Decodes len characters into out (room for len * 3 / 4 bytes; NULL to
 * check only). Returns the decoded length, or -1 for a character outside
 * the alphabet, a length that no encoding has (len % 4 == 1), or nonzero
 * unused bits in the last character (so each byte string has exactly one
 * accepted encoding). */
static long b64url_decode(const char *s, size_t len, unsigned char *out)
{
    if (len % 4 == 1)
        return -1;
    unsigned acc = 0, bits = 0;
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        int v = b64url_value((unsigned char)s[i]);
        if (v < 0)
            return -1;
        acc = ((acc << 6) | (unsigned)v) & 0xFFFFFF;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (out)
                out[n] = (unsigned char)(acc >> bits);
            n++;
        }
    }
    if (acc & ((1u << bits) - 1))
        return -1;
    return (long)n;
}

/* Encodes len bytes into out (room for (len * 4 + 2) / 3 + 1), unpadded and
 * NUL-terminated; returns the characters written. */
static size_t b64url_encode(const unsigned char *in, size_t len, char *out)
{
    static const char abc[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t n = 0;
    unsigned acc = 0, bits = 0;
    for (size_t i = 0; i < len; i++) {
        acc = (acc << 8) | in[i];
        bits += 8;
        while (bits >= 6) {
            bits -= 6;
            out[n++] = abc[(acc >> bits) & 63];
        }
    }
    if (bits)
        out[n++] = abc[(acc << (6 - bits)) & 63];
    out[n] = '\0';
    return n;
}

/* ---- JSON helpers ------------------------------------------------------ */

/* 1 when the (valid) JSON text holds a \u0000 escape in some string. cJSON
 * would cut the string there, so the token would mean something else to
 * us than to its issuer: such tokens are refused. */
static int has_escaped_nul(const char *s, size_t len)
{
    int in_string = 0;
    for (size_t i = 0; i < len; i++) {
        if (!in_string) {
            in_string = s[i] == '"';
        } else if (s[i] == '"') {
            in_string = 0;
        } else if (s[i] == '\\') {
            /* json_valid() guarantees a complete escape follows. */
            if (s[i + 1] == 'u' && !memcmp(s + i + 2, "0000", 4))
                return 1;
            i += s[i + 1] == 'u' ? 5 : 1;
        }
    }
    return 0;
}

/* 1 when obj has two members named one of names[] (a parser differential:
 * RFC 7519 lets others take the last where cJSON takes the first). */
static int has_duplicate(const cJSON *obj, const char *const *names, size_t n)
{
    for (size_t k = 0; k < n; k++) {
        int seen = 0;
        for (const cJSON *m = obj->child; m; m = m->next)
            if (m->string && !strcmp(m->string, names[k]) && seen++)
                return 1;
    }
    return 0;
}

/* Parses len bytes of strict JSON holding an object whose interesting
 * members appear once and whose strings hold no NUL; NULL otherwise. cJSON
 * also refuses what json_valid() lets through as RFC 8259 does (a lone
 * surrogate escape such as "\uD800"), and fails when out of memory: both
 * count as malformed. */
static cJSON *parse_object(const char *buf, size_t len,
                           const char *const *names, size_t nnames)
{
    if (!json_valid(buf, len) || has_escaped_nul(buf, len))
        return NULL;
    cJSON *root = cJSON_ParseWithLength(buf, len);
    if (!root)
        return NULL;
    if (!cJSON_IsObject(root) || has_duplicate(root, names, nnames)) {
        cJSON_Delete(root);
        return NULL;
    }
    return root;
}

/* ---- grants ------------------------------------------------------------ */

/* 1 when s (len bytes) is a valid grant; *name_len gets the length of the
 * name or prefix and *prefix whether it ended in '*'. */
static int grant_valid(const char *s, size_t len, size_t *name_len, int *prefix)
{
    *prefix = len > 0 && s[len - 1] == '*';
    *name_len = len - (size_t)*prefix;
    if (*name_len > AUTH_GRANT_NAME_MAX || (!*prefix && *name_len == 0))
        return 0;
    return channel_chars(s, *name_len);
}

/* Builds out from n grants already checked with grant_valid(), in one
 * allocation: the array, then the names. Returns 0 or -1 (out of memory). */
static int grants_build(const struct span *e, size_t n, struct auth_grants *out)
{
    out->v = NULL;
    out->n = 0;
    if (n == 0)
        return 0;
    size_t bytes = n * sizeof(struct auth_grant);
    for (size_t i = 0; i < n; i++)
        bytes += e[i].len + 1; /* the '*' becomes the NUL */
    struct auth_grant *v = malloc(bytes);
    if (!v)
        return -1;
    char *names = (char *)(v + n);
    for (size_t i = 0; i < n; i++) {
        size_t len;
        int prefix;
        grant_valid(e[i].p, e[i].len, &len, &prefix);
        memcpy(names, e[i].p, len);
        names[len] = '\0';
        v[i] = (struct auth_grant){.name = names, .len = len, .prefix = prefix};
        names += len + 1;
    }
    out->v = v;
    out->n = n;
    return 0;
}

int auth_grants_allow(const struct auth_grants *g, const char *channel,
                      size_t len)
{
    if (!g)
        return 0;
    for (size_t i = 0; i < g->n; i++) {
        const struct auth_grant *a = &g->v[i];
        if (a->prefix ? len >= a->len && !memcmp(channel, a->name, a->len)
                      : len == a->len && !memcmp(channel, a->name, len))
            return 1;
    }
    return 0;
}

void auth_grants_clear(struct auth_grants *g)
{
    if (!g)
        return;
    free(g->v);
    g->v = NULL;
    g->n = 0;
}

static int is_blank(char c) { return c == ' ' || c == '\t'; }

int auth_grants_parse(const char *list, struct auth_grants *out, char *err,
                      size_t errlen)
{
    struct span e[AUTH_GRANTS_MAX];
    size_t n = 0;
    out->v = NULL;
    out->n = 0;

    const char *p = list;
    while (*p && is_blank(*p))
        p++;
    if (!*p)
        return 0; /* empty list: no grants */
    for (;;) {
        const char *end = strchr(p, ',');
        if (!end)
            end = p + strlen(p);
        const char *a = p, *b = end;
        while (a < b && is_blank(*a))
            a++;
        while (b > a && is_blank(b[-1]))
            b--;
        size_t len = (size_t)(b - a), name_len;
        int prefix;
        if (n == AUTH_GRANTS_MAX) {
            snprintf(err, errlen, "more than %d entries", AUTH_GRANTS_MAX);
            return -1;
        }
        if (len == 0) {
            snprintf(err, errlen, "entry %zu is empty", n + 1);
            return -1;
        }
        if (!grant_valid(a, len, &name_len, &prefix)) {
            snprintf(err, errlen,
                     "entry %zu (\"%.*s\") is neither a channel name nor a "
                     "prefix ending in '*' (1-200 bytes of A-Z a-z 0-9 _ - . : @ /)",
                     n + 1, len > 64 ? 64 : (int)len, a);
            return -1;
        }
        e[n++] = (struct span){a, len};
        if (!*end)
            break;
        p = end + 1;
    }
    if (grants_build(e, n, out) < 0) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

/* ---- claims ------------------------------------------------------------ */

void auth_claims_free(struct auth_claims *c)
{
    if (!c)
        return;
    auth_grants_clear(&c->subscribe);
    auth_grants_clear(&c->publish);
    free(c);
}

/* An absent member gives *out = -1; a NumericDate gives it rounded up (for
 * a whole-second now, now >= t exactly when now >= ceil(t)). Returns 0,
 * or -1 when the member is not a number in [0, 2^53]. */
static int numeric_date(const cJSON *m, int64_t *out)
{
    *out = -1;
    if (!m)
        return 0;
    if (!cJSON_IsNumber(m))
        return -1;
    double d = m->valuedouble;
    if (!(d >= 0 && d <= NUMERIC_DATE_MAX)) /* also refuses NaN */
        return -1;
    *out = (int64_t)ceil(d);
    return 0;
}

/* Absent: an empty list. Returns 0, or -1 for anything but an array of at
 * most AUTH_GRANTS_MAX valid grant strings, with *nomem set when that was
 * the reason. */
static int grants_from_json(const cJSON *arr, struct auth_grants *out,
                            int *nomem)
{
    struct span e[AUTH_GRANTS_MAX];
    size_t n = 0;
    *nomem = 0;
    out->v = NULL;
    out->n = 0;
    if (!arr)
        return 0;
    if (!cJSON_IsArray(arr))
        return -1;
    for (const cJSON *it = arr->child; it; it = it->next) {
        size_t name_len;
        int prefix;
        if (n == AUTH_GRANTS_MAX || !cJSON_IsString(it))
            return -1;
        size_t len = strlen(it->valuestring);
        if (!grant_valid(it->valuestring, len, &name_len, &prefix))
            return -1;
        e[n++] = (struct span){it->valuestring, len};
    }
    if (grants_build(e, n, out) < 0) {
        *nomem = 1;
        return -1;
    }
    return 0;
}

static int sub_valid(const char *s)
{
    size_t len = strlen(s);
    if (len == 0 || len > AUTH_SUB_MAX)
        return 0;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e)
            return 0;
    return 1;
}

/* Reads the claims wsgate uses from a verified payload into c (zeroed by
 * the caller). Returns 0 or a negative status with err filled. */
static int read_claims(const struct auth_key *k, const char *buf, size_t len,
                       int64_t now, struct auth_claims *c,
                       struct auth_error *err)
{
    static const char *const names[] = {"exp", "nbf", "sub", "channels",
                                        "publish"};
    int nomem, rc = AUTH_OK;
    cJSON *root = parse_object(buf, len, names, sizeof names / sizeof *names);
    if (!root)
        return fail(err, AUTH_EMALFORMED,
                    "the payload is not a JSON object (strict JSON, no "
                    "repeated claims, no NUL or lone surrogate in strings)");

    int64_t exp, nbf;
    const cJSON *sub = cJSON_GetObjectItemCaseSensitive(root, "sub");
    if (numeric_date(cJSON_GetObjectItemCaseSensitive(root, "exp"), &exp) < 0) {
        rc = fail(err, AUTH_ECLAIMS, "\"exp\" must be a number of seconds");
    } else if (numeric_date(cJSON_GetObjectItemCaseSensitive(root, "nbf"),
                            &nbf) < 0) {
        rc = fail(err, AUTH_ECLAIMS, "\"nbf\" must be a number of seconds");
    } else if (exp >= 0 && now >= exp + (int64_t)k->leeway) {
        rc = fail(err, AUTH_EEXPIRED, "the token has expired");
    } else if (nbf >= 0 && now < nbf - (int64_t)k->leeway) {
        rc = fail(err, AUTH_ENOT_YET_VALID, "the token is not valid yet (nbf)");
    } else if (sub && !(cJSON_IsString(sub) && sub_valid(sub->valuestring))) {
        rc = fail(err, AUTH_ECLAIMS,
                  "\"sub\" must be a string of 1-128 visible ASCII characters");
    } else if (grants_from_json(cJSON_GetObjectItemCaseSensitive(root, "channels"),
                                &c->subscribe, &nomem) < 0) {
        rc = nomem ? fail(err, AUTH_ENOMEM, "out of memory")
                   : fail(err, AUTH_ECLAIMS,
                          "\"channels\" must be an array of at most 256 channel "
                          "names or prefixes ending in '*'");
    } else if (grants_from_json(cJSON_GetObjectItemCaseSensitive(root, "publish"),
                                &c->publish, &nomem) < 0) {
        rc = nomem ? fail(err, AUTH_ENOMEM, "out of memory")
                   : fail(err, AUTH_ECLAIMS,
                          "\"publish\" must be an array of at most 256 channel "
                          "names or prefixes ending in '*'");
    } else {
        if (sub)
            memcpy(c->sub, sub->valuestring, strlen(sub->valuestring) + 1);
        c->exp = exp < 0 ? 0 : exp > 0 ? exp : 1;
    }
    cJSON_Delete(root);
    return rc;
}

int auth_claims_expired(const struct auth_key *k, const struct auth_claims *c,
                        int64_t now)
{
    return c->exp > 0 && now >= auth_claims_expiry(k, c);
}

int64_t auth_claims_expiry(const struct auth_key *k, const struct auth_claims *c)
{
    return c->exp > 0 ? c->exp + (int64_t)k->leeway : 0;
}

/* ---- key and verification ---------------------------------------------- */

struct auth_key *auth_key_new(const void *secret, size_t len, unsigned leeway)
{
    if (len == 0 || len > AUTH_SECRET_MAX || leeway > AUTH_LEEWAY_MAX)
        return NULL;
    struct auth_key *k = calloc(1, sizeof *k);
    if (!k)
        return NULL;
    k->leeway = leeway;
    char digest[] = "SHA256";
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
        OSSL_PARAM_construct_end(),
    };
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    k->mac = mac ? EVP_MAC_CTX_new(mac) : NULL; /* holds its own reference */
    EVP_MAC_free(mac);
    if (!k->mac || !EVP_MAC_init(k->mac, secret, len, params)) {
        auth_key_free(k);
        return NULL;
    }
    return k;
}

void auth_key_free(struct auth_key *k)
{
    if (!k)
        return;
    EVP_MAC_CTX_free(k->mac); /* clears the key material it holds */
    free(k);
}

/* HMAC-SHA256 of len bytes under k's secret. Returns 0 or -1. */
static int hmac_sha256(const struct auth_key *k, const char *data, size_t len,
                       unsigned char out[SIG_LEN])
{
    EVP_MAC_CTX *c = EVP_MAC_CTX_dup(k->mac);
    size_t n = 0;
    int ok = c && EVP_MAC_update(c, (const unsigned char *)data, len) &&
             EVP_MAC_final(c, out, &n, SIG_LEN) && n == SIG_LEN;
    EVP_MAC_CTX_free(c);
    return ok ? 0 : -1;
}

/* Checks the decoded JOSE header. Returns 0 or a negative status. */
static int check_header(const char *buf, size_t len, struct auth_error *err)
{
    static const char *const names[] = {"alg", "typ", "crit"};
    int rc = AUTH_OK;
    cJSON *h = parse_object(buf, len, names, sizeof names / sizeof *names);
    if (!h)
        return fail(err, AUTH_EMALFORMED,
                    "the header is not a JSON object (strict JSON, no "
                    "repeated members, no NUL or lone surrogate in strings)");
    const cJSON *alg = cJSON_GetObjectItemCaseSensitive(h, "alg");
    const cJSON *typ = cJSON_GetObjectItemCaseSensitive(h, "typ");
    if (!cJSON_IsString(alg) || strcmp(alg->valuestring, "HS256"))
        rc = fail(err, AUTH_EALG, "only \"alg\":\"HS256\" tokens are accepted");
    else if (cJSON_GetObjectItemCaseSensitive(h, "crit"))
        rc = fail(err, AUTH_EHEADER, "\"crit\" header parameters are not supported");
    else if (typ && !(cJSON_IsString(typ) && !strcmp(typ->valuestring, "JWT")))
        rc = fail(err, AUTH_EHEADER, "\"typ\" must be \"JWT\" when present");
    cJSON_Delete(h);
    return rc;
}

int auth_verify(const struct auth_key *k, const char *token, size_t len,
                int64_t now, struct auth_claims **out, struct auth_error *err)
{
    struct auth_error spare;
    if (!err)
        err = &spare;
    *out = NULL;
    if (!token || len == 0)
        return fail(err, AUTH_EMISSING, "no token");
    if (len > AUTH_TOKEN_MAX)
        return fail(err, AUTH_ETOO_LARGE, "the token is longer than 8192 bytes");

    /* header '.' payload '.' signature, each canonical unpadded base64url */
    const char *d1 = memchr(token, '.', len);
    const char *d2 = d1 ? memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - token)) : NULL;
    if (!d2 || memchr(d2 + 1, '.', len - (size_t)(d2 + 1 - token)))
        return fail(err, AUTH_EMALFORMED, "a token has three segments separated by '.'");
    struct span hs = {token, (size_t)(d1 - token)};
    struct span ps = {d1 + 1, (size_t)(d2 - d1 - 1)};
    struct span ss = {d2 + 1, (size_t)(token + len - d2 - 1)};
    if (hs.len == 0 || ps.len == 0)
        return fail(err, AUTH_EMALFORMED, "the header and payload must not be empty");
    if (b64url_decode(hs.p, hs.len, NULL) < 0 || b64url_decode(ps.p, ps.len, NULL) < 0 ||
        b64url_decode(ss.p, ss.len, NULL) < 0)
        return fail(err, AUTH_EMALFORMED,
                    "segments must be base64url without padding (A-Z a-z 0-9 - _)");

    /* Decoded header then payload: together at most 3/4 of len. */
    unsigned char buf[AUTH_TOKEN_MAX / 4 * 3];
    long hlen = b64url_decode(hs.p, hs.len, buf);
    int rc = check_header((const char *)buf, (size_t)hlen, err);
    if (rc < 0)
        return rc;

    if (ss.len == 0)
        return fail(err, AUTH_EMALFORMED, "the signature must not be empty");
    unsigned char sig[SIG_LEN], want[SIG_LEN];
    if (ss.len != (SIG_LEN * 4 + 2) / 3) /* 43 characters */
        return fail(err, AUTH_ESIGNATURE, "the signature is not 32 bytes");
    b64url_decode(ss.p, ss.len, sig);
    if (hmac_sha256(k, token, (size_t)(d2 - token), want) < 0)
        return fail(err, AUTH_ENOMEM, "out of memory");
    if (CRYPTO_memcmp(sig, want, SIG_LEN))
        return fail(err, AUTH_ESIGNATURE, "the signature does not match");

    unsigned char *payload = buf + hlen;
    long plen = b64url_decode(ps.p, ps.len, payload);
    struct auth_claims *c = calloc(1, sizeof *c);
    if (!c)
        return fail(err, AUTH_ENOMEM, "out of memory");
    rc = read_claims(k, (const char *)payload, (size_t)plen, now, c, err);
    if (rc < 0) {
        auth_claims_free(c);
        return rc;
    }
    fail(err, AUTH_OK, "ok");
    *out = c;
    return 0;
}

char *auth_sign(const struct auth_key *k, const char *claims, size_t len)
{
    static const char header[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
    size_t hl = sizeof header - 1;
    size_t cap = (hl * 4 + 2) / 3 + (len * 4 + 2) / 3 + (SIG_LEN * 4 + 2) / 3 + 3;
    if (len > AUTH_TOKEN_MAX)
        return NULL;
    char *out = malloc(cap);
    if (!out)
        return NULL;
    size_t n = b64url_encode((const unsigned char *)header, hl, out);
    out[n++] = '.';
    n += b64url_encode((const unsigned char *)claims, len, out + n);
    unsigned char sig[SIG_LEN];
    if (hmac_sha256(k, out, n, sig) < 0) {
        free(out);
        return NULL;
    }
    out[n++] = '.';
    b64url_encode(sig, SIG_LEN, out + n);
    return out;
}

char *auth_segment(const char *token, size_t len, int index)
{
    const char *p = token, *end = token + len;
    for (int i = 0; i < index && p; i++) {
        p = memchr(p, '.', (size_t)(end - p));
        p = p ? p + 1 : NULL;
    }
    if (!p)
        return NULL;
    const char *dot = memchr(p, '.', (size_t)(end - p));
    size_t sl = (size_t)((dot ? dot : end) - p);
    long n = b64url_decode(p, sl, NULL);
    char *out = n < 0 ? NULL : malloc((size_t)n + 1);
    if (!out)
        return NULL;
    b64url_decode(p, sl, (unsigned char *)out);
    out[n] = '\0';
    return out;
}
