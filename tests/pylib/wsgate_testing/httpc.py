"""Owns the small blocking HTTP helpers: requests and raw WebSocket upgrade requests."""

import base64
import http.client as httpclient
import json
import os
import socket


class HttpResp:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return f"<HTTP {self.status} {self.headers.get('content-type')} {self.body[:300]!r}>"


def http_request(port, method, path, body=None, headers=None, timeout=5.0, ssl_context=None):
    """One request to 127.0.0.1:port; over TLS (https) with ssl_context."""
    if isinstance(body, (dict, list)):
        body = json.dumps(body)
    if isinstance(body, str):
        body = body.encode()
    hdrs = {"Connection": "close"}
    if body is not None:
        hdrs["Content-Type"] = "application/json"
    hdrs.update(headers or {})
    c = (httpclient.HTTPSConnection("127.0.0.1", port, timeout=timeout, context=ssl_context)
         if ssl_context else httpclient.HTTPConnection("127.0.0.1", port, timeout=timeout))
    try:
        c.request(method, path, body=body, headers=hdrs)
        r = c.getresponse()
        data = r.read()
        return HttpResp(r.status, {k.lower(): v for k, v in r.getheaders()}, data)
    finally:
        c.close()


def raw_upgrade(port, headers=None, path="/ws", timeout=5.0):
    """Sends a WebSocket upgrade request with extra `headers` and returns the
    answer's head as an HttpResp (status, lower-cased headers, body = what
    followed the head in the first reads) with `.line`, the status line. The
    socket is closed."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        key = base64.b64encode(os.urandom(16)).decode()
        req = (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n")
        for k, v in (headers or {}).items():
            req += f"{k}: {v}\r\n"
        s.sendall((req + "\r\n").encode())
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = s.recv(4096)
            if not chunk:
                raise AssertionError(f"connection closed before an HTTP answer to the upgrade: {buf!r}")
            buf += chunk
        head, _, rest = buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        assert len(parts) >= 2 and parts[0].startswith("HTTP/1.") and parts[1].isdigit(), \
            f"bad status line {lines[0]!r}"
        hdrs = {l.split(":", 1)[0].strip().lower(): l.split(":", 1)[1].strip() for l in lines[1:] if ":" in l}
        r = HttpResp(int(parts[1]), hdrs, rest)
        r.line = lines[0]
        return r
    finally:
        s.close()
