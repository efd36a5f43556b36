/* test_auth.c - HS256 connect tokens and channel grants.
 *
 * Tokens are minted here with OpenSSL's one-shot HMAC() and a base64url
 * encoder of our own, independently of the code under test. */
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "core/auth.h"
#include "check.h"

#define SECRET "wsgate-test-secret-0123456789abcdef"
#define NOW INT64_C(1700000000)

/* ---- minting ----------------------------------------------------------- */

static char *next_buf(void)
{
    static char bufs[8][3 * AUTH_TOKEN_MAX];
    static unsigned k;
    return bufs[k++ & 7];
}

/* F("{'a':%d}", 1) -> {"a":1}: printf, then single quotes become double
 * quotes to keep JSON readable. Rotating static buffers. */
__attribute__((format(printf, 1, 2)))
static const char *F(const char *fmt, ...)
{
    char *b = next_buf();
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b, 3 * AUTH_TOKEN_MAX, fmt, ap);
    va_end(ap);
    for (char *p = b; *p; p++)
        if (*p == '\'')
            *p = '"';
    return b;
}

/* Appends base64 of n bytes to out: url alphabet without padding, or the
 * standard alphabet with padding. Returns the new end. */
static char *b64(char *out, const void *p, size_t n, int url)
{
    const char *abc = url ? "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
                          : "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const unsigned char *s = p;
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned)s[i] << 16;
        if (i + 1 < n) v |= (unsigned)s[i + 1] << 8;
        if (i + 2 < n) v |= s[i + 2];
        *out++ = abc[v >> 18 & 63];
        *out++ = abc[v >> 12 & 63];
        if (i + 1 < n) *out++ = abc[v >> 6 & 63];
        else if (!url) *out++ = '=';
        if (i + 2 < n) *out++ = abc[v & 63];
        else if (!url) *out++ = '=';
    }
    *out = '\0';
    return out;
}

/* "<b64url(header)>.<b64url(payload)>.<b64url(HMAC(md, secret))>" */
static const char *mint_md(const EVP_MD *md, const char *secret,
                           const char *header, const char *payload)
{
    char *t = next_buf();
    char *p = b64(t, header, strlen(header), 1);
    *p++ = '.';
    p = b64(p, payload, strlen(payload), 1);
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned maclen = 0;
    HMAC(md, secret, (int)strlen(secret), (unsigned char *)t, (size_t)(p - t),
         mac, &maclen);
    *p++ = '.';
    b64(p, mac, maclen, 1);
    return t;
}

static const char *mint(const char *header, const char *payload)
{
    return mint_md(EVP_sha256(), SECRET, header, payload);
}

#define HS256 "{\"alg\":\"HS256\",\"typ\":\"JWT\"}"

/* A token of three given segments, the last the right signature of the
 * first two as written (for testing what the decoder accepts). */
static const char *signed_raw(const char *hseg, const char *pseg)
{
    char *t = next_buf();
    int n = snprintf(t, 3 * AUTH_TOKEN_MAX, "%s.%s", hseg, pseg);
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned maclen = 0;
    HMAC(EVP_sha256(), SECRET, (int)strlen(SECRET), (unsigned char *)t,
         (size_t)n, mac, &maclen);
    t[n] = '.';
    b64(t + n + 1, mac, maclen, 1);
    return t;
}

static const char *enc(const char *text, int url)
{
    char *b = next_buf();
    b64(b, text, strlen(text), url);
    return b;
}

/* ---- verifying --------------------------------------------------------- */

static struct auth_key *key(unsigned leeway)
{
    return auth_key_new(SECRET, strlen(SECRET), leeway);
}

/* Verifies token at now with a fresh key and the given leeway; returns
 * the claims (caller frees) or NULL, checking they agree with rc. */
static struct auth_claims *verify_at(int line, const char *token, int64_t now,
                                     unsigned leeway, int *rc,
                                     struct auth_error *err)
{
    struct auth_key *k = key(leeway);
    struct auth_claims *c = (struct auth_claims *)1;
    CHECK_AT(__FILE__, line, k != NULL);
    *rc = auth_verify(k, token, strlen(token), now, &c, err);
    CHECK_AT(__FILE__, line, (*rc == 0) == (c != NULL));
    check_str_at(__FILE__, line, "err->code", "auth_status_code(rc)",
                 err->code, auth_status_code(*rc));
    check_int_at(__FILE__, line, "err->status", "rc", err->status, *rc);
    CHECK_AT(__FILE__, line, err->message && *err->message);
    auth_key_free(k);
    return c;
}

static struct auth_claims *ok_at(int line, const char *token, int64_t now,
                                 unsigned leeway)
{
    int rc;
    struct auth_error err;
    struct auth_claims *c = verify_at(line, token, now, leeway, &rc, &err);
    check_record(rc == 0, __FILE__, line, "rejected %s: %s (%s)",
                 check_show(token, strlen(token)), err.code, err.message);
    return c;
}

static void fail_at(int line, const char *token, int64_t now, unsigned leeway,
                    enum auth_status want)
{
    int rc;
    struct auth_error err;
    struct auth_claims *c = verify_at(line, token, now, leeway, &rc, &err);
    check_record(rc == (int)want, __FILE__, line, "%s: got %s (%s), want %s",
                 check_show(token, strlen(token)), auth_status_code(rc),
                 err.message, auth_status_code(want));
    auth_claims_free(c);
}

#define OK(token) ok_at(__LINE__, (token), NOW, 0)
#define OK_AT(token, now, leeway) ok_at(__LINE__, (token), (now), (leeway))
#define FAIL(token, want) fail_at(__LINE__, (token), NOW, 0, (want))
#define FAIL_AT(token, now, leeway, want) fail_at(__LINE__, (token), (now), (leeway), (want))
/* A token with the standard header and the given payload. */
#define P(...) mint(HS256, F(__VA_ARGS__))
/* A token with the given header and an empty payload object. */
#define H(...) mint(F(__VA_ARGS__), "{}")

/* ---- valid tokens ------------------------------------------------------ */

static void test_valid(void)
{
    struct auth_claims *c = OK(P("{'sub':'user-42','exp':%lld,'iat':%lld,"
                                 "'channels':['lobby','public.*'],'publish':['lobby'],"
                                 "'iss':'x','aud':['y'],'extra':{'a':[1,{}]}}",
                                 (long long)NOW + 60, (long long)NOW - 5));
    if (c) {
        CHECK_STR(c->sub, "user-42");
        CHECK_EQ_INT(c->exp, NOW + 60);
        CHECK_EQ_UINT(c->subscribe.n, 2);
        CHECK_EQ_UINT(c->publish.n, 1);
        CHECK(auth_grants_allow(&c->subscribe, "lobby", 5));
        CHECK(auth_grants_allow(&c->subscribe, "public.news", 11));
        CHECK(!auth_grants_allow(&c->subscribe, "private", 7));
        CHECK(auth_grants_allow(&c->publish, "lobby", 5));
        CHECK(!auth_grants_allow(&c->publish, "public.news", 11));
    }
    auth_claims_free(c);

    /* Nothing but a header and {}: no sub, no exp, no grants. */
    c = OK(mint(F("{'alg':'HS256'}"), "{}"));
    if (c) {
        CHECK_STR(c->sub, "");
        CHECK_EQ_INT(c->exp, 0);
        CHECK_EQ_UINT(c->subscribe.n, 0);
        CHECK_EQ_UINT(c->publish.n, 0);
        CHECK(!auth_grants_allow(&c->subscribe, "lobby", 5));
    }
    auth_claims_free(c);

    /* Whitespace, escapes and a kid in the header are fine. */
    c = OK(mint(F(" { 'typ' : 'JWT' , 'kid':'k1', 'alg' : 'HS\\u0032\\u00356' }\n"),
                F("{ 'sub' : 'a\\/b', 'channels' : [ ] }")));
    if (c)
        CHECK_STR(c->sub, "a/b");
    auth_claims_free(c);

    /* A fractional exp is rounded up; empty arrays give no grants. */
    c = OK(P("{'exp':%lld.25,'channels':[],'publish':[]}", (long long)NOW));
    if (c)
        CHECK_EQ_INT(c->exp, NOW + 1);
    auth_claims_free(c);

    /* The length is what counts, not a NUL. */
    const char *t = P("{'sub':'u'}");
    char buf[2048];
    snprintf(buf, sizeof buf, "%s.trailing garbage", t);
    struct auth_key *k = key(0);
    struct auth_claims *c2 = NULL;
    CHECK_EQ_INT(auth_verify(k, buf, strlen(t), NOW, &c2, NULL), 0);
    auth_claims_free(c2);
    /* One key verifies many tokens; err may be NULL on failure too. */
    CHECK_EQ_INT(auth_verify(k, buf, strlen(buf), NOW, &c2, NULL), AUTH_EMALFORMED);
    CHECK_NULL(c2);
    CHECK_EQ_INT(auth_verify(k, t, strlen(t), NOW, &c2, NULL), 0);
    auth_claims_free(c2);
    auth_key_free(k);
}

static void test_key(void)
{
    CHECK_NULL(auth_key_new("", 0, 0));
    static char big[AUTH_SECRET_MAX + 1];
    CHECK_NULL(auth_key_new(big, sizeof big, 0));
    CHECK_NULL(auth_key_new(big, AUTH_SECRET_MAX, AUTH_LEEWAY_MAX + 1));
    struct auth_key *k = auth_key_new(big, AUTH_SECRET_MAX, AUTH_LEEWAY_MAX);
    CHECK_NOT_NULL(k);
    auth_key_free(k);
    auth_key_free(NULL);

    /* A binary secret with NUL bytes signs as its full length. */
    static const unsigned char bin[] = {0, 1, 2, 0, 0xff, 0x80, 0};
    const char *hp = "eyJhbGciOiJIUzI1NiJ9.e30"; /* {"alg":"HS256"} . {} */
    unsigned char mac[32];
    unsigned maclen;
    HMAC(EVP_sha256(), bin, sizeof bin, (const unsigned char *)hp, strlen(hp),
         mac, &maclen);
    char t[128];
    char *p = t + sprintf(t, "%s.", hp);
    b64(p, mac, maclen, 1);
    k = auth_key_new(bin, sizeof bin, 0);
    struct auth_claims *c = NULL;
    CHECK_EQ_INT(auth_verify(k, t, strlen(t), NOW, &c, NULL), 0);
    auth_claims_free(c);
    auth_key_free(k);
    k = auth_key_new(bin, 1, 0); /* a different secret */
    CHECK_EQ_INT(auth_verify(k, t, strlen(t), NOW, &c, NULL), AUTH_ESIGNATURE);
    auth_key_free(k);
}

/* ---- time -------------------------------------------------------------- */

static void test_expiry(void)
{
    long long now = (long long)NOW;
    FAIL(P("{'exp':%lld}", now), AUTH_EEXPIRED); /* exp == now */
    FAIL(P("{'exp':%lld}", now - 1), AUTH_EEXPIRED);
    FAIL(P("{'exp':0}"), AUTH_EEXPIRED);
    FAIL(P("{'exp':%lld.5}", now - 1), AUTH_EEXPIRED);
    auth_claims_free(OK(P("{'exp':%lld}", now + 1)));
    auth_claims_free(OK(P("{'exp':%lld.001}", now)));

    /* Leeway: expired once now >= exp + leeway. */
    auth_claims_free(OK_AT(P("{'exp':%lld}", now - 10), NOW, 30));
    auth_claims_free(OK_AT(P("{'exp':%lld}", now - 29), NOW, 30));
    FAIL_AT(P("{'exp':%lld}", now - 30), NOW, 30, AUTH_EEXPIRED);

    /* auth_claims_expired() applies the same rule later. */
    struct auth_key *k = key(30);
    const char *t = P("{'exp':%lld}", now + 100);
    struct auth_claims *c = NULL;
    CHECK_EQ_INT(auth_verify(k, t, strlen(t), NOW, &c, NULL), 0);
    if (c) {
        CHECK(!auth_claims_expired(k, c, NOW));
        CHECK(!auth_claims_expired(k, c, NOW + 129));
        CHECK(auth_claims_expired(k, c, NOW + 130));
    }
    auth_claims_free(c);
    t = P("{'sub':'forever'}");
    CHECK_EQ_INT(auth_verify(k, t, strlen(t), NOW, &c, NULL), 0);
    if (c)
        CHECK(!auth_claims_expired(k, c, INT64_MAX));
    auth_claims_free(c);
    auth_key_free(k);

    /* exp equal to now is expired even at the far end of time. */
    FAIL_AT(P("{'exp':9007199254740992}"), INT64_MAX, 0, AUTH_EEXPIRED);
}

static void test_not_before(void)
{
    long long now = (long long)NOW;
    FAIL(P("{'nbf':%lld}", now + 1), AUTH_ENOT_YET_VALID);
    FAIL(P("{'nbf':%lld.5}", now), AUTH_ENOT_YET_VALID);
    FAIL(P("{'nbf':9007199254740992}"), AUTH_ENOT_YET_VALID);
    auth_claims_free(OK(P("{'nbf':%lld}", now)));
    auth_claims_free(OK(P("{'nbf':%lld}", now - 100)));
    auth_claims_free(OK(P("{'nbf':0}")));
    auth_claims_free(OK_AT(P("{'nbf':%lld}", now + 30), NOW, 30));
    FAIL_AT(P("{'nbf':%lld}", now + 31), NOW, 30, AUTH_ENOT_YET_VALID);
    FAIL_AT(P("{'nbf':1}"), INT64_MIN, AUTH_LEEWAY_MAX, AUTH_ENOT_YET_VALID);
    /* Expiry is checked first. */
    FAIL(P("{'nbf':%lld,'exp':%lld}", now + 10, now - 10), AUTH_EEXPIRED);
    /* A window that holds now. */
    auth_claims_free(OK(P("{'nbf':%lld,'exp':%lld}", now - 10, now + 10)));
}

/* ---- signatures -------------------------------------------------------- */

static const char b64url_abc[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static void test_bad_signature(void)
{
    const char *payload = "{\"sub\":\"u\",\"channels\":[\"a\"]}";
    FAIL(mint_md(EVP_sha256(), "another-secret", HS256, payload), AUTH_ESIGNATURE);
    FAIL(mint_md(EVP_sha256(), SECRET "x", HS256, payload), AUTH_ESIGNATURE);
    FAIL(mint_md(EVP_sha256(), "wsgate-test-secret", HS256, payload), AUTH_ESIGNATURE);

    /* Swap in another valid header or payload, keep the signature. */
    char good[1024], t[2048];
    snprintf(good, sizeof good, "%s", mint(HS256, payload));
    const char *d1 = strchr(good, '.'), *d2 = strchr(d1 + 1, '.');
    snprintf(t, sizeof t, "%s%s", enc("{\"alg\":\"HS256\",\"kid\":\"2\"}", 1), d1);
    FAIL(t, AUTH_ESIGNATURE);
    snprintf(t, sizeof t, "%.*s.%s%s", (int)(d1 - good), good,
             enc("{\"sub\":\"u\",\"channels\":[\"*\"]}", 1), d2);
    FAIL(t, AUTH_ESIGNATURE);

    /* Truncated, extended, and a signature from another token. */
    snprintf(t, sizeof t, "%.*s", (int)strlen(good) - 3, good);
    FAIL(t, AUTH_ESIGNATURE); /* 40 characters, 30 bytes */
    snprintf(t, sizeof t, "%sAAAA", good);
    FAIL(t, AUTH_ESIGNATURE); /* 47 characters, 35 bytes */
    snprintf(t, sizeof t, "%.*s.AAAA", (int)(d2 - good), good);
    FAIL(t, AUTH_ESIGNATURE); /* 4 */
    const char *other = mint(HS256, "{}");
    snprintf(t, sizeof t, "%.*s%s", (int)(d2 - good), good, strrchr(other, '.'));
    FAIL(t, AUTH_ESIGNATURE);

    /* Every single-character change, anywhere, is refused: a signature
     * change as bad_signature (or malformed for non-canonical last bits),
     * elsewhere whatever breaks first, but never accepted. */
    size_t len = strlen(good), sig = (size_t)(d2 + 1 - good);
    struct auth_key *k = key(0);
    unsigned accepted = 0, sig_wrong = 0;
    for (size_t i = 0; i < len; i++) {
        for (size_t j = 0; j < sizeof b64url_abc - 1; j += 7) {
            if (b64url_abc[j] == good[i])
                continue;
            memcpy(t, good, len + 1);
            t[i] = b64url_abc[j];
            struct auth_claims *c = NULL;
            int rc = auth_verify(k, t, len, NOW, &c, NULL);
            accepted += rc == 0;
            if (i >= sig && rc != AUTH_ESIGNATURE &&
                !(i == len - 1 && rc == AUTH_EMALFORMED))
                sig_wrong++;
            auth_claims_free(c);
        }
    }
    CHECK_EQ_UINT(accepted, 0);
    CHECK_EQ_UINT(sig_wrong, 0);
    auth_key_free(k);

    /* Flip one bit of each segment's first byte (a different character). */
    for (const char *seg = good; seg; seg = strchr(seg, '.') ? strchr(seg, '.') + 1 : NULL) {
        memcpy(t, good, len + 1);
        t[seg - good] ^= 1; /* 'e' <-> 'd' etc.: still in the alphabet here */
        int rc;
        struct auth_error err;
        auth_claims_free(verify_at(__LINE__, t, NOW, 0, &rc, &err));
        CHECK_MSG(rc < 0, "flipped segment at %d accepted", (int)(seg - good));
    }
}

/* ---- algorithms and header -------------------------------------------- */

static void test_algorithm(void)
{
    const char *none_hp = F("%s.%s", enc("{\"alg\":\"none\",\"typ\":\"JWT\"}", 1),
                            enc("{\"sub\":\"admin\",\"channels\":[\"*\"]}", 1));
    FAIL(F("%s.", none_hp), AUTH_EALG);   /* unsecured JWT, empty signature */
    FAIL(F("%s.AAAA", none_hp), AUTH_EALG);
    FAIL(mint("{\"alg\":\"none\"}", "{}"), AUTH_EALG);
    FAIL(mint_md(EVP_sha512(), SECRET, "{\"alg\":\"HS512\"}", "{}"), AUTH_EALG);
    FAIL(mint_md(EVP_sha384(), SECRET, "{\"alg\":\"HS384\"}", "{}"), AUTH_EALG);
    FAIL(H("{'alg':'HS512'}"), AUTH_EALG); /* even signed with SHA-256 */
    FAIL(H("{'alg':'hs256'}"), AUTH_EALG);
    FAIL(H("{'alg':'Hs256'}"), AUTH_EALG);
    FAIL(H("{'alg':'HS256 '}"), AUTH_EALG);
    FAIL(H("{'alg':'RS256'}"), AUTH_EALG);
    FAIL(H("{'alg':''}"), AUTH_EALG);
    FAIL(H("{'typ':'JWT'}"), AUTH_EALG); /* missing */
    FAIL(H("{}"), AUTH_EALG);
    FAIL(H("{'ALG':'HS256'}"), AUTH_EALG); /* names are case-sensitive */
    FAIL(H("{'alg':256}"), AUTH_EALG);
    FAIL(H("{'alg':null}"), AUTH_EALG);
    FAIL(H("{'alg':['HS256']}"), AUTH_EALG);
    FAIL(H("{'alg':{'HS256':1}}"), AUTH_EALG);
    /* A wrong algorithm is reported before the signature is looked at. */
    FAIL(mint_md(EVP_sha256(), "other", "{\"alg\":\"none\"}", "{}"), AUTH_EALG);
}

static void test_header(void)
{
    FAIL(H("{'alg':'HS256','crit':['exp']}"), AUTH_EHEADER);
    FAIL(H("{'alg':'HS256','crit':[]}"), AUTH_EHEADER);
    FAIL(H("{'crit':null,'alg':'HS256'}"), AUTH_EHEADER);
    FAIL(H("{'alg':'HS256','typ':'JWS'}"), AUTH_EHEADER);
    FAIL(H("{'alg':'HS256','typ':'jwt '}"), AUTH_EHEADER);
    FAIL(H("{'alg':'HS256','typ':1}"), AUTH_EHEADER);
    FAIL(H("{'alg':'HS256','typ':null}"), AUTH_EHEADER);
    auth_claims_free(OK(H("{'alg':'HS256','typ':'JWT','cty':'x','kid':'1'}")));
    /* Header members are checked before the signature too. */
    FAIL(mint_md(EVP_sha256(), "other", "{\"alg\":\"HS256\",\"crit\":[]}", "{}"),
         AUTH_EHEADER);
}

/* ---- malformed tokens -------------------------------------------------- */

static void test_malformed(void)
{
    char good[1024];
    snprintf(good, sizeof good, "%s", P("{'sub':'u'}"));
    const char *d1 = strchr(good, '.'), *d2 = strchr(d1 + 1, '.');
    int hl = (int)(d1 - good);

    FAIL("", AUTH_EMISSING);
    struct auth_key *k = key(0);
    struct auth_claims *c = (struct auth_claims *)1;
    struct auth_error err;
    CHECK_EQ_INT(auth_verify(k, NULL, 0, NOW, &c, &err), AUTH_EMISSING);
    CHECK_NULL(c);
    CHECK_STR(err.code, "token_missing");
    /* An embedded NUL is just a bad character. */
    CHECK_EQ_INT(auth_verify(k, "a\0b.c.d", 7, NOW, &c, &err), AUTH_EMALFORMED);
    auth_key_free(k);

    /* Segment counts. */
    FAIL("abc", AUTH_EMALFORMED);
    FAIL(F("%.*s", (int)(d2 - good), good), AUTH_EMALFORMED);        /* two */
    FAIL(F("%s.%s", good, d2 + 1), AUTH_EMALFORMED);                 /* four */
    FAIL(F("%s.", good), AUTH_EMALFORMED);                           /* empty fourth */
    FAIL("...", AUTH_EMALFORMED);
    FAIL("..", AUTH_EMALFORMED);
    FAIL(F(".%s", d1 + 1), AUTH_EMALFORMED);                         /* empty header */
    FAIL(F("%.*s.%s", hl, good, d2), AUTH_EMALFORMED);               /* empty payload */
    FAIL(F("%.*s.", (int)(d2 - good), good), AUTH_EMALFORMED);       /* empty signature */

    /* Padding and the standard alphabet, each correctly signed as written. */
    const char *hdr = "{\"alg\":\"HS256\"}"; /* 15 bytes: no padding needed */
    const char *pad1 = "{\"sub\":\"ab\"}";   /* 12 bytes: none either */
    const char *pad2 = "{\"sub\":\"abc\"}";  /* 13 bytes: "==" in standard */
    CHECK(strchr(enc(pad2, 0), '=') != NULL);
    auth_claims_free(OK(signed_raw(enc(hdr, 1), enc(pad1, 1))));
    auth_claims_free(OK(signed_raw(enc(hdr, 1), enc(pad2, 1))));
    FAIL(signed_raw(enc(hdr, 1), enc(pad2, 0)), AUTH_EMALFORMED);
    FAIL(signed_raw(F("%s=", enc(hdr, 1)), enc(pad1, 1)), AUTH_EMALFORMED);
    FAIL(F("%s=", good), AUTH_EMALFORMED); /* padded signature (44 chars) */
    /* Here "???" and "~~~" encode to '/' and '+' in the standard alphabet
     * (15 bytes each: no padding either way). */
    const char *slash = "{\"sub\":\"ab???\"}", *plus = "{\"sub\":\"ab~~~\"}";
    CHECK(strchr(enc(slash, 0), '/') && strchr(enc(plus, 0), '+'));
    auth_claims_free(OK(signed_raw(enc(hdr, 1), enc(slash, 1))));
    auth_claims_free(OK(signed_raw(enc(hdr, 1), enc(plus, 1))));
    FAIL(signed_raw(enc(hdr, 1), enc(slash, 0)), AUTH_EMALFORMED);
    FAIL(signed_raw(enc(hdr, 1), enc(plus, 0)), AUTH_EMALFORMED);
    /* Other characters: blanks, '%' escapes, non-ASCII. */
    FAIL(F(" %s", good), AUTH_EMALFORMED);
    FAIL(F("%s\n", good), AUTH_EMALFORMED);
    FAIL(F("%.*s%%3D.%s", hl, good, d1 + 1), AUTH_EMALFORMED);
    FAIL(F("%.*s\xc3\xa9%s", hl, good, d1), AUTH_EMALFORMED);
    /* "e30" is {}; "e30A" adds a NUL byte; five characters is a length
     * no encoding has; "e31" and "e3-" have nonzero unused bits. */
    FAIL(signed_raw(enc(hdr, 1), "e30A"), AUTH_EMALFORMED);
    FAIL(signed_raw(enc(hdr, 1), "e30AB"), AUTH_EMALFORMED);
    /* A lone 'A' after a whole group adds no byte, but is not base64url. */
    CHECK_EQ_UINT(strlen(enc(hdr, 1)) % 4, 0);
    FAIL(signed_raw(F("%sA", enc(hdr, 1)), "e30"), AUTH_EMALFORMED);
    auth_claims_free(OK(signed_raw(enc(hdr, 1), "e30")));
    FAIL(signed_raw(enc(hdr, 1), "e31"), AUTH_EMALFORMED);
    FAIL(signed_raw(enc(hdr, 1), "e3-"), AUTH_EMALFORMED);

    /* Header: not JSON, not strict JSON, not an object, ambiguous. */
    FAIL(H("not json"), AUTH_EMALFORMED);
    FAIL(H("{'alg':'HS256'"), AUTH_EMALFORMED);
    FAIL(H("{'alg':'HS256',}"), AUTH_EMALFORMED);
    FAIL(H("{'alg':'HS256','x':01}"), AUTH_EMALFORMED);   /* cJSON would take it */
    FAIL(H("{'alg':'HS256'} {}"), AUTH_EMALFORMED);
    FAIL(H("['alg','HS256']"), AUTH_EMALFORMED);
    FAIL(H("'HS256'"), AUTH_EMALFORMED);
    FAIL(H("{'alg':'HS256','alg':'none'}"), AUTH_EMALFORMED);
    FAIL(H("{'alg':'none','alg':'HS256'}"), AUTH_EMALFORMED);
    FAIL(H("{'alg':'HS256','\\u0061lg':'HS256'}"), AUTH_EMALFORMED);
    FAIL(H("{'alg':'HS256\\u0000x'}"), AUTH_EMALFORMED);  /* cJSON: "HS256" */
    FAIL(H("{'alg\\u0000':'HS256'}"), AUTH_EMALFORMED);
    FAIL(H("{'alg':'HS256','typ':'JWT','typ':'JWT'}"), AUTH_EMALFORMED);
    FAIL(H("{'alg':'HS256','x':'\xff'}"), AUTH_EMALFORMED); /* not UTF-8 */
    /* Lone surrogates pass RFC 8259 but not cJSON: malformed, not OOM. */
    FAIL(H("{'alg':'HS256','x':'\\uD800'}"), AUTH_EMALFORMED);
    FAIL(H("{'alg':'HS256','x':'\\udc00\\ud83d'}"), AUTH_EMALFORMED);
    auth_claims_free(OK(H("{'alg':'HS256','x':'\\ud83d\\ude00'}"))); /* a pair */
    auth_claims_free(OK(H("{'alg':'HS256','x':'\\\\u0000'}"))); /* a backslash, then text */

    /* Payload: same rules, checked after the signature. */
    FAIL(P("not json"), AUTH_EMALFORMED);
    FAIL(P("[1,2]"), AUTH_EMALFORMED);
    FAIL(P("'sub'"), AUTH_EMALFORMED);
    FAIL(P("null"), AUTH_EMALFORMED);
    FAIL(P("{'sub':'u',}"), AUTH_EMALFORMED);
    FAIL(P("{'exp':%lld,'exp':1}", (long long)NOW + 10), AUTH_EMALFORMED);
    FAIL(P("{'channels':['a'],'channels':['*']}"), AUTH_EMALFORMED);
    FAIL(P("{'sub':'a','sub':'b'}"), AUTH_EMALFORMED);
    FAIL(P("{'channels':['a\\u0000*']}"), AUTH_EMALFORMED);
    FAIL(P("{'sub':'\\uDBFF'}"), AUTH_EMALFORMED);
    auth_claims_free(OK(P("{'iat':1,'iat':2,'x':null,'x':0}"))); /* unread: fine */
    /* ...so a payload that is not JSON under the wrong secret is a bad
     * signature, not malformed. */
    FAIL(mint_md(EVP_sha256(), "other", HS256, "not json"), AUTH_ESIGNATURE);

    /* Size: AUTH_TOKEN_MAX bytes pass, one more does not. */
    static char filler[AUTH_TOKEN_MAX];
    size_t base = strlen(P("{'f':''}"));
    size_t fill = (AUTH_TOKEN_MAX - base) / 4 * 3; /* payload bytes added */
    memset(filler, 'x', fill);
    filler[fill] = '\0';
    const char *big = P("{'f':'%s'}", filler);
    CHECK(strlen(big) <= AUTH_TOKEN_MAX);
    while (strlen(big) < AUTH_TOKEN_MAX) {
        filler[fill++] = 'x';
        filler[fill] = '\0';
        big = P("{'f':'%s'}", filler);
    }
    CHECK_EQ_UINT(strlen(big), AUTH_TOKEN_MAX);
    auth_claims_free(OK(big));
    filler[fill++] = 'x';
    filler[fill] = '\0';
    big = P("{'f':'%s'}", filler);
    CHECK(strlen(big) > AUTH_TOKEN_MAX);
    FAIL(big, AUTH_ETOO_LARGE);
    char *junk = next_buf();
    memset(junk, '.', AUTH_TOKEN_MAX + 1);
    junk[AUTH_TOKEN_MAX + 1] = '\0';
    FAIL(junk, AUTH_ETOO_LARGE);
}

/* ---- claims ------------------------------------------------------------ */

static void test_claim_types(void)
{
    FAIL(P("{'exp':'%lld'}", (long long)NOW + 60), AUTH_ECLAIMS);
    FAIL(P("{'exp':true}"), AUTH_ECLAIMS);
    FAIL(P("{'exp':null}"), AUTH_ECLAIMS);
    FAIL(P("{'exp':[1]}"), AUTH_ECLAIMS);
    FAIL(P("{'exp':-1}"), AUTH_ECLAIMS);
    FAIL(P("{'exp':1e300}"), AUTH_ECLAIMS);
    FAIL(P("{'exp':1e999}"), AUTH_ECLAIMS); /* cJSON: inf */
    FAIL(P("{'exp':9007199254740994}"), AUTH_ECLAIMS); /* 2^53 + 2 */
    FAIL(P("{'nbf':'0'}"), AUTH_ECLAIMS);
    FAIL(P("{'nbf':-0.5}"), AUTH_ECLAIMS);
    auth_claims_free(OK(P("{'exp':1e10}")));

    FAIL(P("{'sub':42}"), AUTH_ECLAIMS);
    FAIL(P("{'sub':null}"), AUTH_ECLAIMS);
    FAIL(P("{'sub':''}"), AUTH_ECLAIMS);
    FAIL(P("{'sub':'a b'}"), AUTH_ECLAIMS);
    FAIL(P("{'sub':'a\\nb'}"), AUTH_ECLAIMS);
    FAIL(P("{'sub':'\\u007f'}"), AUTH_ECLAIMS);
    FAIL(P("{'sub':'caf\xc3\xa9'}"), AUTH_ECLAIMS);
    char sub[AUTH_SUB_MAX + 2];
    memset(sub, 's', sizeof sub - 1);
    sub[AUTH_SUB_MAX + 1] = '\0';
    FAIL(P("{'sub':'%s'}", sub), AUTH_ECLAIMS);
    sub[AUTH_SUB_MAX] = '\0';
    struct auth_claims *c = OK(P("{'sub':'%s'}", sub));
    if (c)
        CHECK_STR(c->sub, sub);
    auth_claims_free(c);
    c = OK(P("{'sub':'u@example.com|\\\"x\\\"\\\\~'}"));
    if (c)
        CHECK_STR(c->sub, "u@example.com|\"x\"\\~");
    auth_claims_free(c);

    const char *lists[] = {"channels", "publish"};
    for (int i = 0; i < 2; i++) {
        const char *l = lists[i];
        FAIL(P("{'%s':'lobby'}", l), AUTH_ECLAIMS);
        FAIL(P("{'%s':{'lobby':1}}", l), AUTH_ECLAIMS);
        FAIL(P("{'%s':null}", l), AUTH_ECLAIMS);
        FAIL(P("{'%s':true}", l), AUTH_ECLAIMS);
        FAIL(P("{'%s':['lobby',1]}", l), AUTH_ECLAIMS);
        FAIL(P("{'%s':[null]}", l), AUTH_ECLAIMS);
        FAIL(P("{'%s':[['lobby']]}", l), AUTH_ECLAIMS);
        FAIL(P("{'%s':['']}", l), AUTH_ECLAIMS);
        FAIL(P("{'%s':['a b']}", l), AUTH_ECLAIMS);
        FAIL(P("{'%s':['ch#1']}", l), AUTH_ECLAIMS);
        FAIL(P("{'%s':['caf\xc3\xa9']}", l), AUTH_ECLAIMS);
        FAIL(P("{'%s':['a\\tb']}", l), AUTH_ECLAIMS);
        FAIL(P("{'%s':['a*b']}", l), AUTH_ECLAIMS);
        FAIL(P("{'%s':['*a']}", l), AUTH_ECLAIMS);
        FAIL(P("{'%s':['**']}", l), AUTH_ECLAIMS);
        FAIL(P("{'%s':['a**']}", l), AUTH_ECLAIMS);
        FAIL(P("{'%s':['ok','pre*fix*']}", l), AUTH_ECLAIMS);
    }

    /* Lengths: names up to 200 bytes, prefixes up to 200 plus '*'. */
    char name[AUTH_GRANT_NAME_MAX + 2];
    memset(name, 'n', sizeof name - 1);
    name[AUTH_GRANT_NAME_MAX + 1] = '\0';
    FAIL(P("{'channels':['%s']}", name), AUTH_ECLAIMS);
    FAIL(P("{'channels':['%s*']}", name), AUTH_ECLAIMS);
    name[AUTH_GRANT_NAME_MAX] = '\0';
    auth_claims_free(OK(P("{'channels':['%s','%s*']}", name, name)));

    /* Counts: AUTH_GRANTS_MAX entries pass, one more does not. */
    static char list[16 * AUTH_GRANTS_MAX];
    size_t n = 0;
    for (int i = 0; i < AUTH_GRANTS_MAX; i++)
        n += (size_t)sprintf(list + n, "%s'c%d'", i ? "," : "", i % 10);
    c = OK(P("{'publish':[%s]}", list));
    if (c)
        CHECK_EQ_UINT(c->publish.n, AUTH_GRANTS_MAX);
    auth_claims_free(c);
    FAIL(P("{'publish':[%s,'one-more']}", list), AUTH_ECLAIMS);
}

/* ---- grants ------------------------------------------------------------ */

static int allows(const struct auth_grants *g, const char *name)
{
    return auth_grants_allow(g, name, strlen(name));
}

static void test_grant_matching(void)
{
    struct auth_claims *c = OK(P("{'channels':['lobby','public.*','user:42/*','a'],"
                                 "'publish':['*']}"));
    if (!c)
        return;
    const struct auth_grants *s = &c->subscribe;
    CHECK_EQ_UINT(s->n, 4);
    CHECK_STR(s->v[1].name, "public.");
    CHECK_EQ_UINT(s->v[1].len, 7);
    CHECK_EQ_INT(s->v[1].prefix, 1);
    CHECK_EQ_INT(s->v[0].prefix, 0);
    /* exact */
    CHECK(allows(s, "lobby"));
    CHECK(!allows(s, "lobby2"));
    CHECK(!allows(s, "lobb"));
    CHECK(!allows(s, "Lobby"));
    CHECK(allows(s, "a"));
    CHECK(!allows(s, "ab"));
    CHECK(!allows(s, ""));
    /* prefix */
    CHECK(allows(s, "public.news"));
    CHECK(allows(s, "public.a.b/c"));
    CHECK(allows(s, "public."));
    CHECK(!allows(s, "public"));   /* shorter than the prefix */
    CHECK(!allows(s, "publi"));
    CHECK(!allows(s, "public_x"));
    CHECK(!allows(s, "xpublic.news"));
    CHECK(allows(s, "user:42/inbox"));
    CHECK(!allows(s, "user:421/inbox"));
    /* The length is what counts. */
    CHECK(auth_grants_allow(s, "lobbyXYZ", 5));
    CHECK(!auth_grants_allow(s, "public.news", 6));
    /* lone '*' */
    CHECK_EQ_UINT(c->publish.n, 1);
    CHECK_EQ_UINT(c->publish.v[0].len, 0);
    CHECK(allows(&c->publish, "anything"));
    CHECK(allows(&c->publish, "x"));
    auth_claims_free(c);

    CHECK(!allows(NULL, "lobby"));
    struct auth_grants empty = {0};
    CHECK(!allows(&empty, "lobby"));
    auth_grants_clear(&empty);
    auth_grants_clear(NULL);
    auth_claims_free(NULL);
}

static void test_grants_parse(void)
{
    struct auth_grants g;
    char err[256];

    CHECK_EQ_INT(auth_grants_parse("public.*,lobby", &g, err, sizeof err), 0);
    CHECK_EQ_UINT(g.n, 2);
    CHECK(allows(&g, "public.room1"));
    CHECK(allows(&g, "lobby"));
    CHECK(!allows(&g, "public"));
    CHECK(!allows(&g, "lobby.x"));
    CHECK(!allows(&g, "private"));
    auth_grants_clear(&g);
    CHECK_NULL(g.v);
    CHECK_EQ_UINT(g.n, 0);
    auth_grants_clear(&g); /* twice is fine */

    CHECK_EQ_INT(auth_grants_parse(" public.* ,\tlobby ", &g, err, sizeof err), 0);
    CHECK_EQ_UINT(g.n, 2);
    CHECK(allows(&g, "lobby"));
    CHECK_STR(g.v[0].name, "public.");
    auth_grants_clear(&g);

    CHECK_EQ_INT(auth_grants_parse("*", &g, err, sizeof err), 0);
    CHECK(allows(&g, "anything/at:all"));
    auth_grants_clear(&g);

    CHECK_EQ_INT(auth_grants_parse("", &g, err, sizeof err), 0);
    CHECK_EQ_UINT(g.n, 0);
    CHECK(!allows(&g, "lobby"));
    CHECK_EQ_INT(auth_grants_parse(" \t ", &g, err, sizeof err), 0);
    CHECK_EQ_UINT(g.n, 0);

    static const struct { const char *list, *want; } bad[] = {
        {"a,,b", "entry 2 is empty"},
        {"a,", "entry 2 is empty"},
        {",a", "entry 1 is empty"},
        {"a, ,b", "entry 2 is empty"},
        {"lobby,a b", "entry 2 (\"a b\")"},
        {"a*b", "entry 1 (\"a*b\")"},
        {"**", "entry 1 (\"**\")"},
        {"*a", "entry 1 (\"*a\")"},
        {"ok,caf\xc3\xa9", "entry 2"},
        {"ok;bad", "entry 1 (\"ok;bad\")"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        g.n = 99;
        err[0] = '\0';
        CHECK_EQ_INT(auth_grants_parse(bad[i].list, &g, err, sizeof err), -1);
        CHECK_CONTAINS(err, bad[i].want);
        CHECK_NULL(g.v);
        CHECK_EQ_UINT(g.n, 0);
    }

    /* Long entries are cut in the message; the message fits any buffer. */
    char *longest = next_buf();
    memset(longest, 'z', 300);
    strcpy(longest + 300, "#");
    CHECK_EQ_INT(auth_grants_parse(longest, &g, err, sizeof err), -1);
    CHECK(strlen(err) < sizeof err - 1);
    char tiny[8];
    CHECK_EQ_INT(auth_grants_parse("a b", &g, tiny, sizeof tiny), -1);
    CHECK_EQ_UINT(strlen(tiny), 7);

    /* AUTH_GRANTS_MAX entries pass, one more does not. */
    char *list = next_buf();
    size_t n = 0;
    for (int i = 0; i < AUTH_GRANTS_MAX; i++)
        n += (size_t)sprintf(list + n, "%sroom%d", i ? "," : "", i);
    CHECK_EQ_INT(auth_grants_parse(list, &g, err, sizeof err), 0);
    CHECK_EQ_UINT(g.n, AUTH_GRANTS_MAX);
    CHECK(allows(&g, "room255"));
    CHECK(!allows(&g, "room256"));
    auth_grants_clear(&g);
    strcat(list, ",room256");
    CHECK_EQ_INT(auth_grants_parse(list, &g, err, sizeof err), -1);
    CHECK_CONTAINS(err, "more than 256 entries");
}

static void test_status_codes(void)
{
    static const struct { enum auth_status s; const char *code; } codes[] = {
        {AUTH_OK, "ok"},
        {AUTH_EMISSING, "token_missing"},
        {AUTH_ETOO_LARGE, "token_too_large"},
        {AUTH_EMALFORMED, "token_malformed"},
        {AUTH_EALG, "alg_not_allowed"},
        {AUTH_EHEADER, "bad_header"},
        {AUTH_ESIGNATURE, "bad_signature"},
        {AUTH_EEXPIRED, "expired"},
        {AUTH_ENOT_YET_VALID, "not_yet_valid"},
        {AUTH_ECLAIMS, "bad_claims"},
        {AUTH_ENOMEM, "out_of_memory"},
    };
    for (size_t i = 0; i < sizeof codes / sizeof *codes; i++)
        CHECK_STR(auth_status_code(codes[i].s), codes[i].code);
    CHECK_STR(auth_status_code((enum auth_status)-99), "unknown");

    /* Success fills err with "ok" too. */
    struct auth_key *k = key(0);
    const char *t = P("{}");
    struct auth_claims *c = NULL;
    struct auth_error err = {0};
    CHECK_EQ_INT(auth_verify(k, t, strlen(t), NOW, &c, &err), 0);
    CHECK_EQ_INT(err.status, AUTH_OK);
    CHECK_STR(err.code, "ok");
    auth_claims_free(c);
    auth_key_free(k);
}

/* auth_sign gives byte for byte the token this test mints with OpenSSL's
 * one-shot HMAC, for payloads of every length mod 3 (base64 tails). */
static void test_sign(void)
{
    static const char *const payloads[] = {
        "{}", "{\"a\":1}", "{\"sub\":\"ana\"}",
        "{\"sub\":\"ana\",\"channels\":[\"room.*\"],\"exp\":4102444800}",
    };
    struct auth_key *k = key(0);
    for (size_t i = 0; i < sizeof payloads / sizeof *payloads; i++) {
        char *t = auth_sign(k, payloads[i], strlen(payloads[i]));
        CHECK(t != NULL);
        if (!t)
            continue;
        CHECK_STR(t, mint(HS256, payloads[i]));
        struct auth_claims *c;
        CHECK_EQ_INT(auth_verify(k, t, strlen(t), 0, &c, NULL), 0);
        auth_claims_free(c);
        char *h = auth_segment(t, strlen(t), 0), *p = auth_segment(t, strlen(t), 1);
        CHECK_STR(h, HS256);
        CHECK_STR(p, payloads[i]);
        free(h);
        free(p);
        free(t);
    }
    char big[AUTH_TOKEN_MAX + 2];
    memset(big, ' ', sizeof big);
    CHECK_NULL(auth_sign(k, big, sizeof big));
    auth_key_free(k);
}

/* auth_segment decodes without verifying, and refuses what is not there or
 * not canonical base64url. */
static void test_segment(void)
{
    const char *t = mint(HS256, "{\"sub\":\"x\"}");
    char *s = auth_segment(t, strlen(t), 1);
    CHECK_STR(s, "{\"sub\":\"x\"}");
    free(s);
    CHECK_NULL(auth_segment("abc", 3, 1));          /* no second segment */
    CHECK_NULL(auth_segment("a+b.c", 5, 0));        /* not base64url */
    CHECK_NULL(auth_segment("x", 1, 0));            /* no encoding has 1 char */
    s = auth_segment("e30.x.y", 7, 0);              /* "{}" */
    CHECK_STR(s, "{}");
    free(s);
}

int main(void)
{
    RUN(test_sign);
    RUN(test_segment);
    RUN(test_valid);
    RUN(test_key);
    RUN(test_expiry);
    RUN(test_not_before);
    RUN(test_bad_signature);
    RUN(test_algorithm);
    RUN(test_header);
    RUN(test_malformed);
    RUN(test_claim_types);
    RUN(test_grant_matching);
    RUN(test_grants_parse);
    RUN(test_status_codes);
    return check_summary();
}
