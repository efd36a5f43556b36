"""Who may connect and publish.

JWT connect tokens (--jwt-secret, --jwt-secret-file, --auth, and
--anonymous-channels): the upgrade is refused with 401 for a missing (when
required), expired, not-yet-valid, badly signed, wrong-algorithm or malformed
token; grants (exact names and prefixes ending in '*') decide subscribe and
publish, a denied one gets `forbidden`; a token that expires while connected
closes the connection with 4001 "token expired"; `sub` shows in the logs.
Tokens are minted with hmac/hashlib (wsgate_testing.tokens), so the test needs no JWT library and
can sign things a library would refuse to (alg "none", HS512 headers).

Access control: the HTTP API key (--api-key, --api-key-file, and the
WSGATE_API_KEY variable) guarding POST /api/publish, and --allowed-origins
checked at the WebSocket upgrade (403 for a foreign browser origin)."""

import asyncio
import json
import time

import pytest
import websockets

from wsgate_testing import WsClient, ascrape_metrics, async_test, mint_token, raw_upgrade, run_wsgate


SECRET = "test-secret-0123456789abcdef-0123456789"


def token(claims, secret=SECRET, header=None, sign=True):
    return mint_token(claims, secret, header, sign)


def good(**extra):
    claims = {"sub": "ana", "channels": ["room.*", "lobby"], "publish": ["room.1"],
              "exp": int(time.time()) + 300}
    claims.update(extra)
    return token(claims)


def url(gw, tok=None, batch=False):
    q = [f"token={tok}"] if tok is not None else []
    if batch:
        q.append("batch=1")
    return f"ws://127.0.0.1:{gw.port}/ws" + ("?" + "&".join(q) if q else "")


async def refused_with(gw, tok, status=401):
    with pytest.raises(websockets.InvalidStatusCode) as e:
        await WsClient.connect(url(gw, tok))
    assert e.value.status_code == status, f"expected {status}, got {e.value.status_code}"


@pytest.fixture
def authgw(mkgw):
    return mkgw("--jwt-secret", SECRET)


@async_test(30)
async def test_valid_token_grants(authgw):
    c = await WsClient.connect(url(authgw, good()))
    await c.subscribe("room.7")            # prefix grant
    await c.subscribe("lobby")             # exact grant
    await c.error({"op": "subscribe", "channel": "roomx"}, "forbidden")
    await c.error({"op": "subscribe", "channel": "lobby2"}, "forbidden")
    await c.error({"op": "publish", "channel": "room.7", "data": 1}, "forbidden")
    await c.subscribe("room.1")
    await c.publish("room.1", {"hi": 1})   # exact publish grant
    assert await c.next_message("room.1") == {"hi": 1}
    await c.ping()                         # still usable after the refusals
    assert await authgw.await_line(r"session open .*sub=ana")


@async_test(30)
async def test_bad_tokens_are_refused(authgw):
    now = int(time.time())
    before = (await ascrape_metrics(authgw)).value("wsgate_connections_refused_total")
    bad = {
        "missing": None,
        "empty": "",
        "expired": good(exp=now - 1),
        "expired now": token({"sub": "x", "exp": now}),
        "not yet valid": good(nbf=now + 600),
        "badly signed": token({"sub": "x"}, secret="another-secret-0123456789abcdef"),
        "tampered payload": good()[:-3] + ("A" if good()[-3] != "A" else "B") + good()[-2:],
        "alg none": token({"sub": "x"}, header={"alg": "none"}, sign=False),
        "alg HS512": token({"sub": "x"}, header={"alg": "HS512", "typ": "JWT"}),
        "alg lowercase": token({"sub": "x"}, header={"alg": "hs256"}),
        "two segments": ".".join(good().split(".")[:2]),
        "garbage": "not-a-token",
        "bad grant": token({"sub": "x", "channels": ["a*b"]}),
    }
    for what, tok in bad.items():
        try:
            await refused_with(authgw, tok)
        except AssertionError as e:
            raise AssertionError(f"{what}: {e}") from None
    after = (await ascrape_metrics(authgw)).value("wsgate_connections_refused_total")
    assert after - before == len(bad), (before, after)
    # the refusal is a real HTTP answer with a JSON body naming the reason
    r = await asyncio.to_thread(raw_upgrade, authgw.port, None, "/ws?token=" + bad["expired"])
    assert r.status == 401 and json.loads(r.body)["error"] == "expired", r


@async_test(30)
async def test_token_expiring_while_connected_closes_4001(authgw):
    c = await WsClient.connect(url(authgw, good(exp=int(time.time()) + 2)))
    await c.subscribe("lobby")
    code = await c.wait_closed(timeout=6)
    assert code == 4001 and c.ws.close_reason == "token expired", (code, c.ws.close_reason)
    m = await ascrape_metrics(authgw)
    assert m.value("wsgate_disconnects_total", reason="auth") == 1


@async_test(30)
async def test_optional_auth_with_anonymous_grants(mkgw):
    gw = mkgw("--jwt-secret", SECRET, "--auth", "optional", "--anonymous-channels", "public.*, lobby")
    anon = await WsClient.connect(url(gw))
    await anon.subscribe("public.news")
    await anon.subscribe("lobby")
    await anon.error({"op": "subscribe", "channel": "room.1"}, "forbidden")
    await anon.publish("lobby", "anonymous hello")   # anonymous grants cover publish too
    assert await anon.next_message("lobby") == "anonymous hello"
    user = await WsClient.connect(url(gw, good()))
    await user.subscribe("room.1")
    await refused_with(gw, token({"sub": "x"}, secret="wrong-secret-0123456789abcdefgh"))


@async_test(30)
async def test_secret_file_and_auth_off(mkgw, tmp_path):
    f = tmp_path / "secret"
    f.write_text(SECRET + "\n")
    gw = mkgw("--jwt-secret-file", str(f))
    await refused_with(gw, None)
    c = await WsClient.connect(url(gw, good()))
    await c.subscribe("lobby")
    off = mkgw("--jwt-secret", SECRET, "--auth", "off", node_id="n2")
    anyone = await WsClient.connect(url(off))
    await anyone.subscribe("anything.at.all")


def test_auth_flag_errors(tmp_path):
    cases = [
        (["--auth", "required"], "--auth"),
        (["--auth", "maybe", "--jwt-secret", SECRET], "--auth"),
        (["--jwt-secret-file", str(tmp_path / "missing")], "--jwt-secret-file"),
        (["--jwt-secret", SECRET, "--auth", "optional", "--anonymous-channels", "a*b"],
         "--anonymous-channels"),
    ]
    for args, flag in cases:
        r = run_wsgate(["--listen", "127.0.0.1:0", *args], timeout=10)
        lines = r.stderr.decode().strip().splitlines()
        assert r.returncode == 2 and len(lines) == 1 and flag in lines[0], (args, r.returncode, r.stderr)


KEY = "s3cr3t-Key_0123456789"


async def post(gw, headers=None, data="x", channel="k"):
    return await gw.ahttp("POST", "/api/publish", {"channel": channel, "data": data}, headers=headers)


def assert_unauthorized(r, what):
    assert r.status == 401, f"{what}: expected 401, got {r!r}"
    assert r.headers.get("content-type", "").startswith("application/json"), f"{what}: {r!r}"
    body = r.json()
    assert isinstance(body, dict) and body.get("error") == "unauthorized", f"{what}: body {body!r}"


WRONG = [
    ("no header", None),
    ("wrong key", {"Authorization": "Bearer wrong"}),
    ("empty bearer", {"Authorization": "Bearer "}),
    ("key prefix", {"Authorization": "Bearer " + KEY[:-1]}),
    ("key plus a char", {"Authorization": "Bearer " + KEY + "x"}),
    ("other case", {"Authorization": "Bearer " + KEY.upper()}),
    ("basic scheme", {"Authorization": "Basic " + KEY}),
    ("no scheme", {"Authorization": KEY}),
    ("token scheme", {"Authorization": "Token " + KEY}),
]


async def check_api_key(gw, key):
    """Every wrong variant is refused and not delivered; the right one is
    accepted and delivered; other endpoints and WebSocket publishing do not
    need the key."""
    c = await gw.subscriber("k")
    m0 = await ascrape_metrics(gw)
    for what, headers in WRONG:
        assert_unauthorized(await post(gw, headers, data=what), what)
    r = await post(gw, {"Authorization": f"Bearer {key}"}, data="good")
    assert r.status == 200 and r.json() == {"ok": True}, f"right key refused: {r!r}"
    # only the authorized publish arrives (nothing refused before it)
    objs = await c.before_sentinel("k", "good")
    assert objs == [], f"refused publishes delivered: {objs!r}"
    # other endpoints are not affected
    for path, status in (("/healthz", 200), ("/readyz", 200), ("/metrics", 200)):
        r = await gw.ahttp("GET", path)
        assert r.status == status, f"GET {path} with an API key configured: {r!r}"
    # the WebSocket protocol does not use the HTTP key
    await c.publish("k", "ws")
    assert await c.next_message("k") == "ws"
    m1 = await ascrape_metrics(gw)
    d = m1.value("wsgate_messages_published_total") - m0.value("wsgate_messages_published_total")
    assert d == 2, f"wsgate_messages_published_total moved by {d}, expected 2 (refused ones not counted)"


@pytest.mark.parametrize("mode", ["embedded", "redis"])
@async_test(30)
async def test_api_key_flag(procs, mode):
    redis = procs.redis() if mode == "redis" else None
    gw = procs.gateway("--api-key", KEY, redis=redis, node_id="n1")
    await check_api_key(gw, KEY)


@async_test(30)
async def test_api_key_env(procs):
    gw = procs.gateway(node_id="n1", env={"WSGATE_API_KEY": KEY})
    await check_api_key(gw, KEY)


@pytest.mark.parametrize("ending", ["\n", ""], ids=["newline", "no-newline"])
@async_test(30)
async def test_api_key_file(procs, tmp_path, ending):
    f = tmp_path / "api.key"
    f.write_bytes((KEY + ending).encode())
    gw = procs.gateway("--api-key-file", str(f), node_id="n1")
    await check_api_key(gw, KEY)


@async_test(30)
async def test_no_api_key_means_open(procs):
    gw = procs.gateway(node_id="n1")
    c = await gw.subscriber("k")
    r = await post(gw, None, data="open")
    assert r.status == 200 and r.json() == {"ok": True}, r
    r = await post(gw, {"Authorization": "Bearer whatever"}, data="open2")
    assert r.status == 200 and r.json() == {"ok": True}, r
    assert await c.next_message("k") == "open"
    assert await c.next_message("k") == "open2"


ORIGINS = "http://a.example,https://b.example"
ACCEPTED = ["http://a.example", "https://b.example", "HTTP://A.EXAMPLE", "https://B.Example"]
REFUSED = ["http://evil.example", "https://a.example", "http://b.example", "http://a.example:8080",
           "http://a.example.evil", "http://a.exampl", "null", "http://a.example,https://b.example"]


@async_test(30)
async def test_allowed_origins(procs):
    gw = procs.gateway("--allowed-origins", ORIGINS, node_id="n1")
    for origin in REFUSED:
        r = await asyncio.to_thread(raw_upgrade, gw.port, {"Origin": origin})
        assert r.status == 403, f"Origin {origin!r}: upgrade answered {r.line!r}, expected 403"
    for origin in ACCEPTED:
        r = await asyncio.to_thread(raw_upgrade, gw.port, {"Origin": origin})
        assert r.status == 101, f"Origin {origin!r}: upgrade answered {r.line!r}, expected 101"
        c = await WsClient.connect(gw.ws_url(), origin=origin)
        await c.ping()
    # no Origin header: a non-browser client
    r = await asyncio.to_thread(raw_upgrade, gw.port)
    assert r.status == 101, f"upgrade without Origin answered {r.line!r}"
    c = await gw.subscriber("o")
    await c.publish("o", 1)
    assert await c.next_message("o") == 1
    # plain HTTP with a foreign Origin is not an upgrade: unaffected
    r = await gw.ahttp("GET", "/healthz", headers={"Origin": "http://evil.example"})
    assert r.status == 200, r


@async_test(30)
async def test_foreign_origin_client_sees_403(procs):
    """A standard WebSocket client sending a foreign Origin sees its
    handshake fail with status 403."""
    gw = procs.gateway("--allowed-origins", ORIGINS, node_id="n1")
    try:
        c = await WsClient.connect(gw.ws_url(), origin="http://evil.example", timeout=5)
    except websockets.InvalidStatusCode as e:
        assert e.status_code == 403, f"handshake refused with {e.status_code}, expected 403"
        return
    except websockets.InvalidMessage as e:
        r = await asyncio.to_thread(raw_upgrade, gw.port, {"Origin": "http://evil.example"})
        raise AssertionError(f"the client could not read the refusal as an HTTP response ({e}: "
                             f"{e.__cause__!r}); the gateway answers the upgrade with {r.line!r}") from None
    await c.close()
    raise AssertionError("upgrade from a foreign origin accepted")


@async_test(30)
async def test_any_origin_when_unset(procs):
    gw = procs.gateway(node_id="n1")
    for origin in ("http://evil.example", "null", "https://anything.example:9999"):
        r = await asyncio.to_thread(raw_upgrade, gw.port, {"Origin": origin})
        assert r.status == 101, f"Origin {origin!r} without --allowed-origins: {r.line!r}"
    c = await WsClient.connect(gw.ws_url(), origin="http://evil.example")
    await c.ping()


@async_test(30)
async def test_plain_get_on_ws_says_why_an_upgrade_is_refused(mkgw):
    """Browsers hide a refused handshake's status from scripts: a plain GET
    on /ws with the same query answers the verdict the upgrade gets, as
    JSON (what web/wsgate.js shows as its "refused" event)."""
    gw = mkgw("--jwt-secret", SECRET)
    cases = {
        "/ws": (401, "token_missing"),
        "/ws?token=not-a-token": (401, "token_malformed"),
        "/ws?token=" + good(exp=int(time.time()) - 1): (401, "expired"),
        "/ws?token=" + good() + "&batch=1": (426, "upgrade_required"),
    }
    before = (await ascrape_metrics(gw)).value("wsgate_connections_refused_total")
    for path, (status, code) in cases.items():
        r = await gw.ahttp("GET", path)
        body = json.loads(r.body)
        assert (r.status, body["error"]) == (status, code), (path, r)
        assert body["message"], r
        up = await asyncio.to_thread(raw_upgrade, gw.port, None, path)
        assert up.status == (101 if status == 426 else status), (path, up)
    r = await gw.ahttp("GET", "/ws")
    assert "wsgate token" in json.loads(r.body)["message"], r
    # a probe is no refusal: only the three refused upgrades count
    after = (await ascrape_metrics(gw)).value("wsgate_connections_refused_total")
    assert after - before == 3, (before, after)
    # without auth an upgrade would be accepted; other paths stay static files
    open_gw = mkgw(node_id="n2")
    r = await open_gw.ahttp("GET", "/ws")
    assert r.status == 426 and json.loads(r.body)["error"] == "upgrade_required", r
    r = await open_gw.ahttp("GET", "/wsx")
    assert r.status == 404, r
