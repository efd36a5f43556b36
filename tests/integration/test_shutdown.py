"""Graceful shutdown: SIGTERM/SIGINT close every client with 1001 and the
process exits 0."""

import asyncio
import signal

import pytest

from wsgate_testing import async_test


@pytest.mark.parametrize("sig,mode", [(signal.SIGTERM, "embedded"), (signal.SIGINT, "embedded"),
                                      (signal.SIGTERM, "redis"), (signal.SIGINT, "redis")],
                         ids=["TERM-embedded", "INT-embedded", "TERM-redis", "INT-redis"])
@async_test(30)
async def test_signal_closes_clients_1001_and_exits_0(procs, sig, mode):
    redis = procs.redis() if mode == "redis" else None
    gw = procs.gateway(redis=redis, node_id="n1")
    clients = [await gw.connect(), await gw.connect(), await gw.connect(batch=True)]
    await clients[0].subscribe("a")
    await clients[1].subscribe("a")
    await clients[1].subscribe("b")
    await clients[2].subscribe("a")
    idle = await gw.connect()   # connected, no subscriptions
    clients.append(idle)
    await clients[0].publish("a", "before")
    for c in clients[:3]:
        await c.next_message("a")

    gw.proc.send_signal(sig)
    codes = await asyncio.gather(*(c.wait_closed(5) for c in clients))
    rc = await asyncio.to_thread(gw.proc.wait, 5)
    assert codes == [1001] * len(clients), f"close codes {codes}, expected 1001 each"
    assert rc == 0, f"exit status {rc} after {sig.name}"


@async_test(30)
async def test_shutdown_with_no_clients(procs):
    gw = procs.gateway(node_id="n1")
    assert gw.http("GET", "/healthz").status == 200
    gw.proc.send_signal(signal.SIGTERM)
    rc = await asyncio.to_thread(gw.proc.wait, 5)
    assert rc == 0, rc


@async_test(30)
async def test_shutdown_while_redis_is_down(procs, redis):
    gw = procs.gateway(redis=redis, node_id="n1")
    c = await gw.connect()
    await c.subscribe("x")
    mark = gw.proc.mark()
    redis.kill()
    await gw.await_line(r"broker down", timeout=5, start=mark)
    gw.proc.send_signal(signal.SIGTERM)
    assert await c.wait_closed(5) == 1001
    rc = await asyncio.to_thread(gw.proc.wait, 5)
    assert rc == 0, rc


@async_test(30)
async def test_shutdown_with_unresponsive_client(procs):
    """A client that never answers the close frame cannot hold the process:
    while draining /readyz is 503, the client finds a 1001 close frame, and
    the process exits 0 within --drain-seconds (+ margin)."""
    gw = procs.gateway("--drain-seconds", "1", node_id="n1")
    raw = gw.raw()
    assert raw.recv_json().get("op") == "welcome"
    polite = await gw.connect()
    gw.proc.send_signal(signal.SIGTERM)
    assert await polite.wait_closed(5) == 1001
    try:
        r = await gw.ahttp("GET", "/readyz", timeout=2)
        assert r.status == 503, f"/readyz while draining: {r!r}"
    except OSError:
        pass   # already stopped listening: also acceptable
    res = await asyncio.to_thread(raw.drain_until_closed, 8)
    assert res["close"] is not None and res["close"][0] == 1001, f"unresponsive client saw {res!r}"
    rc = await asyncio.to_thread(gw.proc.wait, 5)
    assert rc == 0, rc
    raw.close()
