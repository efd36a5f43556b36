"""Batching: /ws?batch=1 clients may get several '\\n'-separated JSON objects
per frame; plain clients always get exactly one JSON object per frame
(WsClient enforces that: a plain frame must parse as a single JSON object)."""

import json

from wsgate_testing import NO_PUBLISH_RATE, async_test


async def burst(pub, channel, n):
    """Publish n messages as fast as possible (pipelined), then check acks."""
    for i in range(n):
        await pub.send({"op": "publish", "channel": channel, "data": {"seq": i, "pad": "p" * 50}, "id": i + 1})
    acks = [await pub.recv(10) for _ in range(n)]
    bad = [a for a in acks if a.get("op") != "ack"]
    assert not bad, f"publish not acked: {bad[:3]!r}"


@async_test(30)
async def test_batch_client_gets_whole_burst_in_order(mkgw):
    anygw = mkgw(*NO_PUBLISH_RATE)
    bsub = await anygw.connect(batch=True)
    plain = await anygw.connect()
    pub = await anygw.connect()
    await bsub.subscribe("burst")
    await plain.subscribe("burst")
    n = 200
    await burst(pub, "burst", n)
    got = [(await bsub.next_message("burst", 10))["seq"] for _ in range(n)]
    assert got == list(range(n)), "batch client: messages missing or out of order"
    got = [(await plain.next_message("burst", 10))["seq"] for _ in range(n)]
    assert got == list(range(n)), "plain client: messages missing or out of order"
    # plain client: one object per frame (welcome + ack + n messages)
    assert plain.frames == plain.objects == n + 2, (plain.frames, plain.objects)
    print(f"batch client: {bsub.objects} objects in {bsub.frames} frames")


@async_test(20)
async def test_batch_client_requests_and_replies(gw):
    c = await gw.connect(batch=True)
    for i in range(1, 21):
        await c.send({"op": "ping", "id": i})
    for i in range(1, 21):
        r = await c.recv()
        assert r == {"op": "pong", "id": i}, r
    await c.subscribe("b")
    await c.error({"op": "subscribe", "channel": "b", "id": 77}, "already_subscribed")
    await c.send_raw("nope")
    r = await c.recv()
    assert r.get("code") == "bad_json", r
    await c.publish("b", [1, "two", {"three": 3}])
    assert await c.next_message("b") == [1, "two", {"three": 3}]


@async_test(20)
async def test_batch_frames_split_even_for_multiline_redis_payload(rgw):
    """A backend may PUBLISH pretty-printed JSON (with newlines) into Redis.
    A batch client splits frames on '\\n', so every object it gets must still
    be valid JSON on its own, and a plain client must get the same data."""
    bsub = await rgw.connect(batch=True)
    plain = await rgw.connect()
    await bsub.subscribe("pretty")
    await plain.subscribe("pretty")
    data = {"a": 1, "list": [1, 2], "s": "x"}
    payload = json.dumps(data, indent=2)
    assert "\n" in payload
    n = rgw.redis.publish("wsgate:pretty", payload)
    assert n >= 1, "gateway not subscribed in Redis after ack"
    rgw.redis.publish("wsgate:pretty", '"sentinel"')
    assert await plain.next_message("pretty") == data
    assert await bsub.next_message("pretty") == data
    await bsub.only_before_sentinel("pretty", "sentinel")

