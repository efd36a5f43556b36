/* auth.h - HS256 connect tokens (JWT) and channel grants; pure, no I/O.
 *
 * A client connects with ?token=<JWT>. auth_verify() accepts only a compact
 * JWS signed with HMAC-SHA256 ("alg":"HS256" exactly) under the configured
 * secret, checks "exp" and "nbf" against a time the caller passes in, and
 * returns the claims wsgate uses: "sub" (for logs), "channels" (subscribe
 * grants) and "publish" (publish grants). Everything else in the token is
 * ignored ("iat", "iss", "aud", "jti", "kid", ...).
 *
 * Checks, in order (the first failure is reported):
 *   token_missing    no token (NULL or empty)
 *   token_too_large  more than AUTH_TOKEN_MAX bytes
 *   token_malformed  not three non-empty base64url segments (RFC 4648 s5,
 *                    no '=' padding, zero trailing bits), or a header or
 *                    payload that is not a strict JSON object, or one that
 *                    repeats a member wsgate reads, or a string with an
 *                    escaped NUL (\u0000) or a lone surrogate escape
 *                    (\uD800) anywhere in header or payload
 *   alg_not_allowed  header "alg" missing, not a string, or not "HS256"
 *   bad_header       a "crit" member, or a "typ" other than "JWT"
 *   bad_signature    signature not 32 bytes, or not the HMAC-SHA256 of
 *                    "<header>.<payload>" (compared in constant time)
 *   expired          now >= exp + leeway
 *   not_yet_valid    now + leeway < nbf
 *   bad_claims       wrong types or bad values: exp/nbf not a number in
 *                    [0, 2^53]; sub not 1..AUTH_SUB_MAX bytes of visible
 *                    ASCII (0x21-0x7e); channels/publish not an array of at
 *                    most AUTH_GRANTS_MAX valid grants (see below)
 * The header is checked before the signature (a token with "alg":"none"
 * and an empty signature reports alg_not_allowed), the payload only after
 * it. An exp or nbf of the wrong type is bad_claims before any time check;
 * the other claims are checked after the times.
 *
 * A grant is an exact channel name (1-200 bytes of A-Z a-z 0-9 _ - . : @ /,
 * the rule of channel_name_valid in core/channel.h) or a prefix: 0-200 of those bytes
 * followed by one '*', which matches every name that starts with the
 * prefix ("public.*" matches "public.a" and "public." but not "public").
 * A lone "*" matches every name. '*' anywhere but last is refused.
 *
 * Ownership: struct auth_key is opaque and owns a copy of the secret
 * (wiped on free); it is never modified by auth_verify() and may be shared
 * by every connection. A struct auth_claims returned by auth_verify() is
 * owned by the caller, independent of the token buffer and the key, and
 * freed with auth_claims_free(). A struct auth_grants filled by
 * auth_grants_parse() is owned by the caller and released with
 * auth_grants_clear(). Error codes and messages are static strings. */
#ifndef WSGATE_AUTH_H
#define WSGATE_AUTH_H

#include <stddef.h>
#include <stdint.h>

#define AUTH_TOKEN_MAX 8192         /* bytes of compact token */
#define AUTH_SECRET_MAX 4096        /* bytes of HMAC secret */
#define AUTH_SECRET_RECOMMENDED 32  /* RFC 7518 s3.2: >= 256 bits; warn below */
#define AUTH_LEEWAY_MAX 86400       /* seconds */
#define AUTH_SUB_MAX 128            /* bytes of "sub" */
#define AUTH_GRANTS_MAX 256         /* entries per grant list */
#define AUTH_GRANT_NAME_MAX 200     /* bytes of a name or prefix (no '*') */

enum auth_status {
    AUTH_OK = 0,
    AUTH_EMISSING = -1,        /* token_missing */
    AUTH_ETOO_LARGE = -2,      /* token_too_large */
    AUTH_EMALFORMED = -3,      /* token_malformed */
    AUTH_EALG = -4,            /* alg_not_allowed */
    AUTH_EHEADER = -5,         /* bad_header */
    AUTH_ESIGNATURE = -6,      /* bad_signature */
    AUTH_EEXPIRED = -7,        /* expired */
    AUTH_ENOT_YET_VALID = -8,  /* not_yet_valid */
    AUTH_ECLAIMS = -9,         /* bad_claims */
    AUTH_ENOMEM = -10,         /* out_of_memory */
};

struct auth_error {
    enum auth_status status;
    const char *code;    /* stable snake_case, as listed above; "ok" on success */
    const char *message; /* one human sentence; never contains token bytes */
};

/* One grant. For a prefix grant, name holds the part before the '*'
 * (possibly empty: then it matches everything). */
struct auth_grant {
    char *name; /* NUL-terminated, owned by the list */
    size_t len;
    int prefix; /* 1: matches names that start with name; 0: exact */
};

/* A list of grants. All-zero is a valid empty list (allows nothing). */
struct auth_grants {
    struct auth_grant *v; /* owned */
    size_t n;
};

struct auth_claims {
    char sub[AUTH_SUB_MAX + 1]; /* "" when the token has none */
    int64_t exp;                /* exp rounded up to a whole second, at
                                 * least 1; 0 when the token has none */
    struct auth_grants subscribe; /* "channels"; empty when absent */
    struct auth_grants publish;   /* "publish"; empty when absent */
};

/* The snake_case code for a status ("ok" for AUTH_OK, "unknown" for a
 * value not in the enum). */
const char *auth_status_code(enum auth_status status);

/* A verifier for tokens signed with secret (len bytes, any content; the
 * caller reads --jwt-secret-file), tolerating leeway seconds of clock skew
 * on exp and nbf. NULL when len is 0 or more than AUTH_SECRET_MAX, leeway
 * more than AUTH_LEEWAY_MAX, or out of memory. The caller may wipe its copy
 * after. */
struct auth_key *auth_key_new(const void *secret, size_t len, unsigned leeway);
/* Frees k and wipes its secret; NULL is fine. */
void auth_key_free(struct auth_key *k);

/* Verifies the len bytes at token (need not be NUL-terminated) at time now
 * (Unix seconds). Returns 0 with *out set to new claims, or a negative
 * enum auth_status with *out NULL and err filled. err may be NULL. */
int auth_verify(const struct auth_key *k, const char *token, size_t len,
                int64_t now, struct auth_claims **out, struct auth_error *err);

/* 1 when claims verified with k have expired at now (now >= exp + leeway),
 * for closing a connection whose token runs out; 0 when not, or when the
 * token had no exp. */
int auth_claims_expired(const struct auth_key *k, const struct auth_claims *c,
                        int64_t now);

/* The compact HS256 token ({"alg":"HS256","typ":"JWT"} header) signing the
 * len bytes of claims (a JSON object) under k's secret: a malloc'd string
 * the caller frees; NULL when len exceeds AUTH_TOKEN_MAX or out of memory.
 * It does not check the claims: verify the result to know it is accepted. */
char *auth_sign(const struct auth_key *k, const char *claims, size_t len);

/* Segment index (0: header, 1: payload) of the len bytes at token, decoded
 * from base64url WITHOUT any verification (for explaining a token): a
 * malloc'd NUL-terminated string the caller frees, NULL when the segment is
 * missing, not canonical base64url, or out of memory. */
char *auth_segment(const char *token, size_t len, int index);

/* The Unix time at which auth_claims_expired() turns 1 (exp + leeway), or
 * 0 when the token had no exp. */
int64_t auth_claims_expiry(const struct auth_key *k, const struct auth_claims *c);

/* Frees claims from auth_verify(); NULL is fine. */
void auth_claims_free(struct auth_claims *c);

/* 1 when some grant in g matches the channel name (len bytes), else 0.
 * NULL g allows nothing. The name is compared byte for byte: validate it
 * as a channel name first (channel_name_valid). */
int auth_grants_allow(const struct auth_grants *g, const char *channel,
                      size_t len);

/* Fills out from a comma-separated list such as "public.*,lobby" (the
 * --anonymous-channels flag); blanks around entries are ignored and an
 * empty or all-blank list gives no grants. Returns 0, or -1 with out empty
 * and one line in err (naming the bad entry) for an empty entry, an
 * invalid grant, more than AUTH_GRANTS_MAX entries, or out of memory. */
int auth_grants_parse(const char *list, struct auth_grants *out, char *err,
                      size_t errlen);

/* Frees what g owns and leaves it empty; NULL is fine. */
void auth_grants_clear(struct auth_grants *g);

#endif
