#!/usr/bin/env python3
"""Writes the seed corpus for fuzz_auth into corpus_auth/ beside this file.

Tokens are signed with the fuzz target's secret, so the valid ones pass the
signature check when fed as they are; "header\\npayload" seeds feed the
target's sign-it-here path; plain lists seed the --anonymous-channels parser.
Rerun after changing FUZZ_SECRET or FUZZ_NOW in fuzz_auth.c."""
import base64, hashlib, hmac, json, os

SECRET = b"wsgate-fuzz-secret"
NOW = 1700000000
HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus_auth")


def b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=")


def token(header, payload, secret=SECRET, digest=hashlib.sha256):
    h = header if isinstance(header, bytes) else json.dumps(header, separators=(",", ":")).encode()
    p = payload if isinstance(payload, bytes) else json.dumps(payload, separators=(",", ":")).encode()
    hp = b64(h) + b"." + b64(p)
    return hp + b"." + b64(hmac.new(secret, hp, digest).digest())


HS = {"alg": "HS256", "typ": "JWT"}
FULL = {"sub": "user-42", "iat": NOW - 10, "nbf": NOW - 10, "exp": NOW + 3600,
        "channels": ["lobby", "public.*", "user:42/*"], "publish": ["lobby", "*"]}
seeds = {
    "tok_valid_full": token(HS, FULL),
    "tok_valid_min": token({"alg": "HS256"}, {}),
    "tok_valid_fraction": token(HS, {"exp": NOW + 0.5, "sub": "a/b"}),
    "tok_expired": token(HS, {"exp": NOW - 100}),
    "tok_nbf_future": token(HS, {"nbf": NOW + 100}),
    "tok_bad_claims": token(HS, {"exp": "soon", "channels": "lobby"}),
    "tok_bad_grant": token(HS, {"channels": ["a*b", "ok"]}),
    "tok_wrong_secret": token(HS, FULL, secret=b"other"),
    "tok_alg_none": b64(b'{"alg":"none"}') + b"." + b64(json.dumps(FULL).encode()) + b".",
    "tok_hs512": token({"alg": "HS512"}, FULL, digest=hashlib.sha512),
    "tok_crit": token({"alg": "HS256", "crit": ["exp"]}, {}),
    "tok_dup_alg": token(b'{"alg":"HS256","alg":"none"}', b"{}"),
    "tok_nul_alg": token(b'{"alg":"HS256\\u0000"}', b"{}"),
    "tok_padded": base64.urlsafe_b64encode(b'{"alg":"HS256"}') + b"." +
                  base64.urlsafe_b64encode(b'{"sub":"abc"}') + b".AAAA",
    "tok_two_segments": b64(b'{"alg":"HS256"}') + b"." + b64(b"{}"),
    "pair_full": json.dumps(HS).encode() + b"\n" + json.dumps(FULL).encode(),
    "pair_min": b'{"alg":"HS256"}\n{}',
    "pair_types": b'{"alg":"HS256","typ":"JWT","kid":"k"}\n'
                  b'{"sub":"s","exp":1e10,"nbf":0,"channels":[],"publish":["a.*","b"]}',
    "pair_escapes": b'{"alg":"HS\\u0032\\u00356"}\n{"sub":"\\u0041","channels":["\\/x"]}',
    "list_anonymous": b"public.*,lobby",
    "list_blanks": b" public.* ,\tlobby , * ",
}

os.makedirs(HERE, exist_ok=True)
for name, data in seeds.items():
    with open(os.path.join(HERE, name), "wb") as f:
        f.write(data)
