"""Owns minting HS256 connect tokens (JWT) with hmac/hashlib, no JWT library."""

import base64
import hashlib
import hmac
import json


def b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def mint_token(claims, secret, header=None, sign=True):
    """A compact JWS of claims signed with secret (header and an empty
    signature can be forced, for tests of bad tokens)."""
    header = header or {"alg": "HS256", "typ": "JWT"}
    signing = b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(claims).encode())
    sig = hmac.new(secret.encode(), signing.encode(), hashlib.sha256).digest() if sign else b""
    return signing + "." + b64url(sig)
