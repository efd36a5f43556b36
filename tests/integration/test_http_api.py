"""HTTP on the WebSocket port: /healthz, /readyz, POST /api/publish and its
error replies, static files from the web root, path traversal."""

import http.client
import json
import re
import socket

import pytest

from wsgate_testing import REPO, async_test


def test_healthz(gw):
    r = gw.http("GET", "/healthz")
    assert r.status == 200, r


def test_readyz_embedded(gw):
    r = gw.http("GET", "/readyz")
    assert r.status == 200, r


def test_readyz_redis_connected(rgw):
    r = rgw.http("GET", "/readyz")
    assert r.status == 200, r
    assert rgw.http("GET", "/healthz").status == 200


@async_test(20)
async def test_api_publish_delivers(anygw):
    c = await anygw.subscriber("h")
    for data in [{"title": "hi"}, [1, 2], [1, {"two": 2}], "s", 5, None, True]:
        r = await anygw.publish_http("h", data)
        assert r.status == 200, r
        assert r.json() == {"ok": True}, r
        got = await c.next_message("h")
        assert got == data, f"posted {data!r}, got {got!r}"


@async_test(20)
async def test_api_publish_to_channel_without_subscribers(anygw):
    r = await anygw.publish_http("nobody-listens", {"a": 1})
    assert r.status == 200 and r.json() == {"ok": True}, r


@async_test(20)
async def test_api_publish_keepalive_connection(gw):
    """Several POSTs on one keep-alive HTTP/1.1 connection."""
    c = await gw.subscriber("ka")

    def posts():
        conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=5)
        try:
            out = []
            for i in range(3):
                conn.request("POST", "/api/publish", body=json.dumps({"channel": "ka", "data": i}),
                             headers={"Content-Type": "application/json"})
                r = conn.getresponse()
                out.append((r.status, r.read()))
            return out
        finally:
            conn.close()
    import asyncio
    res = await asyncio.to_thread(posts)
    assert [s for s, _ in res] == [200, 200, 200], res
    for i in range(3):
        assert await c.next_message("ka") == i


def test_request_pipelined_behind_a_post(gw):
    """A request sent right behind a POST, in one segment, is read with it;
    lws serves it once the POST's reply has completed the transaction and a
    write round has followed (keep-alive). Without that round it went
    unanswered until lws's keep-alive timeout closed the connection (5 s)."""
    body = json.dumps({"channel": "pl", "data": 1}).encode()
    post = (b"POST /api/publish HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    get = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    with socket.create_connection(("127.0.0.1", gw.port), timeout=5) as s:
        s.sendall(post + get)
        data = b""
        while len(re.findall(rb"HTTP/1\.1 \d+", data)) < 2:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                raise AssertionError(f"the pipelined GET is unanswered after 5 s: {data!r}")
            assert chunk, f"EOF: {data!r}"
            data += chunk
    assert re.findall(rb"HTTP/1\.1 (\d+)", data) == [b"200", b"200"], data


BAD_BODIES = [
    ("not json", 400, "bad_json"),
    ('{"channel":"c","data":', 400, "bad_json"),
    ("", 400, "bad_json"),
    ("[1,2]", 400, "bad_request"),
    ('"str"', 400, "bad_request"),
    ("{}", 400, "bad_request"),
    ('{"data":1}', 400, "bad_request"),
    ('{"channel":"c"}', 400, "bad_request"),
    ('{"channel":5,"data":1}', 400, "bad_request"),
    ('{"channel":null,"data":1}', 400, "bad_request"),
    ('{"channel":"","data":1}', 400, "bad_channel"),
    ('{"channel":"bad channel","data":1}', 400, "bad_channel"),
    ('{"channel":"' + "a" * 201 + '","data":1}', 400, "bad_channel"),
    ('{"channel":"caf\\u00e9","data":1}', 400, "bad_channel"),
]


@pytest.mark.parametrize("body,status,code", BAD_BODIES, ids=[b[0][:30] or "empty" for b in BAD_BODIES])
def test_api_publish_bad_input(gw, body, status, code):
    r = gw.http("POST", "/api/publish", body=body.encode())
    assert r.status == status, f"POST {body!r} -> {r!r}"
    try:
        j = r.json()
    except ValueError:
        raise AssertionError(f"error body is not JSON: {r!r}")
    assert j.get("error") == code, f"POST {body!r} -> {j!r}"
    assert isinstance(j.get("message"), str), f"error body without message: {j!r}"
    # still serving
    assert gw.http("GET", "/healthz").status == 200


@async_test(20)
async def test_api_publish_bad_input_delivers_nothing(gw):
    c = await gw.subscriber("c")
    for body, _, _ in BAD_BODIES:
        await gw.ahttp("POST", "/api/publish", body=body.encode())
    await gw.publish_http("c", "sentinel")
    await c.only_before_sentinel("c", "sentinel")


def test_api_publish_too_large(procs):
    gw = procs.gateway("--max-message-size", "1024", node_id="n1")
    small = json.dumps({"channel": "c", "data": "x" * 900})
    assert len(small) <= 1024
    r = gw.http("POST", "/api/publish", body=small)
    assert r.status == 200, r
    big = json.dumps({"channel": "c", "data": "x" * 3000})
    r = gw.http("POST", "/api/publish", body=big)
    assert r.status == 413, r
    assert r.json().get("error") == "too_large", r
    assert gw.http("GET", "/healthz").status == 200


@pytest.mark.parametrize("method,path,allow", [
    ("GET", "/api/publish", "POST"), ("PUT", "/api/publish", "POST"),
    ("POST", "/healthz", "GET, HEAD"), ("POST", "/readyz", "GET, HEAD"),
    ("DELETE", "/metrics", "GET, HEAD"), ("POST", "/index.html", "GET, HEAD"),
])
def test_wrong_method_405_with_allow(gw, method, path, allow):
    r = gw.http(method, path, body=b"{}" if method != "GET" else None)
    assert r.status == 405, r
    assert r.headers.get("allow") == allow, r.headers
    assert r.json()["error"] == "method_not_allowed" and allow in r.json()["message"], r
    assert gw.http("GET", "/healthz").status == 200


def test_unknown_api_path_404(gw):
    r = gw.http("POST", "/api/nothing", body=b"{}")
    assert r.status == 404 and r.json()["error"] == "not_found", r


API_OFF = ("POST", "/api/publish"), ("GET", "/api/publish"), ("POST", "/api/nothing")


@async_test(20)
async def test_api_off_by_default(procs):
    """No key and no --api-insecure: every /api/ request is refused with 403
    and a body saying how to enable it; nothing is published."""
    gw = procs.gateway(node_id="n1", api_insecure=False)
    c = await gw.subscriber("c")
    for method, path in API_OFF:
        r = await gw.ahttp(method, path, {"channel": "c", "data": "leak"})
        assert r.status == 403, (method, path, r)
        j = r.json()
        assert j["error"] == "forbidden", j
        assert "--api-key" in j["message"] and "--api-insecure" in j["message"], j
    await c.publish("c", "sentinel")
    await c.only_before_sentinel("c", "sentinel")
    assert gw.proc.has_line(r"HTTP API .*is off"), "the start-up log does not say the API is off"


@async_test(20)
async def test_api_insecure_from_env(procs):
    gw = procs.gateway(node_id="n1", env={"WSGATE_API_INSECURE": "1"})
    assert "--api-insecure" not in gw.proc.argv
    c = await gw.subscriber("c")
    r = await gw.publish_http("c", 1)
    assert r.status == 200, r
    assert await c.next_message("c") == 1


@async_test(20)
async def test_api_publish_logged_at_info(gw):
    r = await gw.publish_http("logged.ch", {"x": 1})
    assert r.status == 200, r
    await gw.await_line(r"info +api publish channel=logged\.ch bytes=8 remote=127\.0\.0\.1")


def test_index_served_from_default_web_root(gw):
    index = REPO / "web" / "index.html"
    assert index.is_file(), f"{index} missing"
    r = gw.http("GET", "/")
    assert r.status == 200, r
    assert r.headers.get("content-type", "").startswith("text/html"), r.headers
    assert r.body == index.read_bytes(), "GET / is not web/index.html"


def test_not_found(gw):
    r = gw.http("GET", "/nonexistent")
    assert r.status == 404, r
    r = gw.http("GET", "/no/such/dir/file.js")
    assert r.status == 404, r


@pytest.fixture
def webroot_gw(procs, tmp_path):
    root = tmp_path / "www"
    (root / "sub").mkdir(parents=True)
    (root / "index.html").write_text("<!doctype html><title>T</title>INDEX-MARKER\n")
    (root / "sub" / "page.html").write_text("<p>SUB-MARKER</p>\n")
    (tmp_path / "secret.txt").write_text("TOP-SECRET-MARKER\n")
    gw = procs.gateway("--web-root", str(root), node_id="w")
    return gw


def test_custom_web_root(webroot_gw):
    r = webroot_gw.http("GET", "/")
    assert r.status == 200 and b"INDEX-MARKER" in r.body, r
    assert r.headers.get("content-type", "").startswith("text/html"), r.headers
    r = webroot_gw.http("GET", "/sub/page.html")
    assert r.status == 200 and b"SUB-MARKER" in r.body, r
    assert webroot_gw.http("GET", "/nonexistent").status == 404


def raw_get(port, path, timeout=5.0):
    """Send a GET with the path bytes exactly as given; return (status or None, raw response)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        data = b""
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            except socket.timeout:
                break   # keep-alive despite Connection: close; we have what was sent
            if not chunk:
                break
            data += chunk
    finally:
        s.close()
    status = None
    if data.startswith(b"HTTP/"):
        status = int(data.split(b" ", 2)[1])
    return status, data


TRAVERSALS = ["/../secret.txt", "/%2e%2e/secret.txt", "/%2E%2E/secret.txt", "/..%2fsecret.txt",
              "/%2e%2e%2fsecret.txt", "/sub/../../secret.txt", "/sub/%2e%2e/%2e%2e/secret.txt",
              "/./../secret.txt", "//../secret.txt", "/..\\secret.txt", "/sub/..%2f..%2fsecret.txt",
              "/%252e%252e/secret.txt", "/....//secret.txt"]


@pytest.mark.parametrize("path", TRAVERSALS)
def test_path_traversal_custom_root(webroot_gw, path):
    status, data = raw_get(webroot_gw.port, path)
    assert b"TOP-SECRET-MARKER" not in data, f"GET {path} served a file outside the web root: {data[:300]!r}"
    assert status is None or 400 <= status < 500, f"GET {path} -> {data[:300]!r}"
    assert webroot_gw.http("GET", "/healthz").status == 200


@pytest.mark.parametrize("path", ["/../CMakeLists.txt", "/%2e%2e/CMakeLists.txt", "/..%2fCMakeLists.txt",
                                  "/%2e%2e%2fCMakeLists.txt", "/../gateway/main.c", "/../../etc/passwd",
                                  "/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd"])
def test_path_traversal_default_root(gw, path):
    status, data = raw_get(gw.port, path)
    assert status is None or 400 <= status < 500, f"GET {path} -> {data[:300]!r}"
    assert b"root:" not in data and b"cmake_minimum_required" not in data.lower(), \
        f"GET {path} served a file outside the web root: {data[:300]!r}"
