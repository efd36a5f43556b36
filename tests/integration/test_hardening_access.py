"""Access control: the HTTP API key (--api-key, --api-key-file, and the
WSGATE_API_KEY variable) guarding POST /api/publish, and --allowed-origins
checked at the WebSocket upgrade (403 for a foreign browser origin)."""

import asyncio

import pytest
import websockets

from wsgate_testing import WsClient, ascrape_metrics, async_test, raw_upgrade

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
    c = await gw.connect()
    await c.subscribe("k")
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
    c = await gw.connect()
    await c.subscribe("k")
    r = await post(gw, None, data="open")
    assert r.status == 200 and r.json() == {"ok": True}, r
    r = await post(gw, {"Authorization": "Bearer whatever"}, data="open2")
    assert r.status == 200 and r.json() == {"ok": True}, r
    assert await c.next_message("k") == "open"
    assert await c.next_message("k") == "open2"


# --------------------------------------------------------------------------
# origins
# --------------------------------------------------------------------------

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
    c = await gw.connect()
    await c.subscribe("o")
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
