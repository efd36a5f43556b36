"""Limits: --max-message-size (close 1009) and --max-queue-bytes (a client
that stops reading is disconnected; everyone else keeps every message)."""

import asyncio
import json

import pytest
import websockets

from wsgate_testing import NO_PUBLISH_RATE, async_test


def padded_publish(size, rid=1):
    """A valid publish frame of exactly `size` bytes."""
    base = {"op": "publish", "channel": "big", "data": "", "id": rid}
    empty = len(json.dumps(base, separators=(",", ":")))
    base["data"] = "x" * (size - empty)
    text = json.dumps(base, separators=(",", ":"))
    assert len(text.encode()) == size
    return text


async def assert_closed_with(c, code, timeout=5):
    try:
        r = await c.recv(timeout)
        raise AssertionError(f"expected close {code}, got a frame: {r!r}")
    except websockets.ConnectionClosed:
        pass
    got = await c.wait_closed(timeout)
    assert got == code, f"expected close code {code}, got {got} (reason {c.ws.close_reason!r})"


@async_test(20)
async def test_max_message_size_boundary(procs):
    gw = procs.gateway("--max-message-size", "1024", node_id="n1")
    c = await gw.connect()
    await c.subscribe("big")
    await c.send_raw(padded_publish(1024, rid=1))
    r = await c.expect(lambda o: o.get("id") == 1)
    assert r == {"op": "ack", "id": 1}, f"message of exactly max size rejected: {r!r}"
    await c.next_message("big")
    await c.send_raw(padded_publish(1025, rid=2))
    await assert_closed_with(c, 1009)
    # others unaffected
    other = await gw.connect()
    await other.ping()


@async_test(20)
async def test_max_message_size_fragmented(procs):
    """A message sent in fragments that are each small but add up to more than
    the limit is still too large."""
    gw = procs.gateway("--max-message-size", "1024", node_id="n1")
    c = await gw.connect()
    text = padded_publish(1500)
    await c.ws.send([text[:500], text[500:1000], text[1000:]])
    await assert_closed_with(c, 1009)
    # a fragmented message under the limit is fine
    c2 = await gw.connect()
    text = padded_publish(900, rid=5)
    await c2.ws.send([text[:300], text[300:600], text[600:]])
    r = await c2.expect(lambda o: o.get("id") == 5)
    assert r == {"op": "ack", "id": 5}, r


@async_test(20)
async def test_default_max_message_size(gw):
    c = await gw.connect()
    await c.send_raw(padded_publish(65536, rid=1))
    r = await c.expect(lambda o: o.get("id") == 1)
    assert r == {"op": "ack", "id": 1}, r
    await c.send_raw(padded_publish(70000, rid=2))
    await assert_closed_with(c, 1009)


@async_test(20)
async def test_binary_too_large_also_closes(procs):
    gw = procs.gateway("--max-message-size", "1024", node_id="n1")
    c = await gw.connect()
    await c.send_raw(b"\0" * 2000)
    await assert_closed_with(c, 1009)


@pytest.mark.parametrize("mode", ["embedded", "redis"])
@async_test(60)
async def test_slow_consumer_is_disconnected(procs, mode):
    redis = procs.redis() if mode == "redis" else None
    gw = procs.gateway("--max-queue-bytes", "65536", *NO_PUBLISH_RATE, redis=redis, node_id="n1")

    # the slow consumer: tiny receive buffer, subscribes, then never reads
    slow = gw.raw(rcvbuf=4096)
    w = slow.recv_json()
    assert w.get("op") == "welcome", w
    slow.send_json({"op": "subscribe", "channel": "flood", "id": 1})
    r = slow.recv_json()
    assert r == {"op": "ack", "id": 1}, r

    subs = [await gw.connect(), await gw.connect()]
    for s in subs:
        await s.subscribe("flood")
    pub = await gw.connect()

    # ~6 MB in total: more than the kernel can absorb for one connection on
    # loopback (the send buffer autotunes up to tcp_wmem max = 4 MB) plus the
    # queue limit, so the gateway's own queue must overflow even if it does not
    # cap SO_SNDBUF. Published in windows so healthy subscribers never lag.
    n, window = 4000, 20
    pad = "m" * 1500
    for start in range(0, n, window):
        ids = range(start, min(n, start + window))
        for i in ids:
            await pub.send({"op": "publish", "channel": "flood", "data": {"seq": i, "pad": pad}, "id": i + 1})
        for i in ids:
            a = await pub.expect(lambda o, i=i: o.get("id") == i + 1, what=f"ack {i + 1}")
            assert a.get("op") == "ack", a
        # keep the healthy subscribers' queues short: wait until they have this window
        for s in subs:
            for i in ids:
                d = await s.next_message("flood", 10)
                assert d.get("seq") == i, f"subscriber got seq {d.get('seq')} expected {i}"

    # the slow client must have been cut off: draining it ends in EOF/reset
    res = await asyncio.to_thread(slow.drain_until_closed, 10)
    print(f"slow client: {res}")
    if res["close"] is not None:
        assert res["close"][0] == 1008, f"slow consumer closed with {res['close']!r}, expected 1008"
        assert "slow consumer" in res["close"][1], res["close"]
    # the welcome and ack were read already; it cannot have had every message
    assert res["texts"] < n, f"slow client received all {n} messages (no queue limit enforced?)"
    slow.close()

    # the gateway is alive and serving, the healthy subscribers still work
    assert gw.proc.alive()
    assert (await gw.ahttp("GET", "/healthz")).status == 200
    await pub.publish("flood", "after")
    for s in subs:
        assert await s.next_message("flood") == "after"
    fresh = await gw.connect()
    await fresh.ping()
