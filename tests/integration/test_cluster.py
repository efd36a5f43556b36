"""Two gateways on one Redis: cross-node delivery, the Redis wire format,
subscribe-ack semantics, channel prefix. Unsubscribe bookkeeping and fan-out
across two nodes run in test_protocol.py (the `pubsub` fixture's two-nodes
mode); deploy/local-cluster.sh behind HAProxy is tests/cluster/."""

import json

from wsgate_testing import RespConn, async_test


@async_test(20)
async def test_cross_node_both_directions(cluster):
    redis, a, b = cluster
    ca = await a.connect()
    cb = await b.connect()
    assert ca.welcome["node"] == "a" and cb.welcome["node"] == "b"
    await ca.subscribe("x")
    await cb.subscribe("x")
    await cb.publish("x", {"from": "b"})
    assert await ca.next_message("x") == {"from": "b"}
    assert await cb.next_message("x") == {"from": "b"}
    await ca.publish("x", {"from": "a"})
    assert await cb.next_message("x") == {"from": "a"}
    assert await ca.next_message("x") == {"from": "a"}


@async_test(20)
async def test_http_publish_on_other_node(cluster):
    redis, a, b = cluster
    ca = await a.subscriber("hp")
    r = await b.publish_http("hp", {"via": "http"})
    assert r.status == 200, r
    assert r.json() == {"ok": True}, r
    assert await ca.next_message("hp") == {"via": "http"}


@async_test(20)
async def test_own_message_exactly_once_in_cluster(cluster):
    redis, a, b = cluster
    ca = await a.subscriber("own")
    cb = await b.subscriber("own")
    await ca.publish("own", "m")
    await ca.publish("own", "sentinel")
    for c in (ca, cb):
        await c.only_before_sentinel("own", "sentinel", [{"op": "message", "channel": "own", "data": "m"}])


@async_test(30)
async def test_subscribe_ack_means_live_cluster_wide(cluster):
    """Publish straight into Redis and via the other node immediately after
    the ack, many times with fresh channels: nothing may be lost."""
    redis, a, b = cluster
    ca = await a.connect()
    pb = await b.connect()
    rc = RespConn(redis.port)
    try:
        for i in range(25):
            ch = f"live{i}"
            await ca.subscribe(ch)
            receivers = rc.call("PUBLISH", "wsgate:" + ch, json.dumps({"redis": i}))
            assert receivers >= 1, f"after the ack for {ch}, no Redis subscriber on wsgate:{ch}"
            await pb.send({"op": "publish", "channel": ch, "data": {"b": i}, "id": 9000 + i})
            await ca.expect_message(ch, {"redis": i})
            await ca.expect_message(ch, {"b": i})
            r = await pb.expect(lambda o: o.get("id") == 9000 + i)
            assert r.get("op") == "ack", r
    finally:
        rc.close()


@async_test(20)
async def test_subscribe_ack_live_for_fresh_connections(cluster):
    """A new connection subscribing on a node whose Redis link is idle."""
    redis, a, b = cluster
    for i in range(10):
        c = await a.connect()
        ch = f"fresh{i}"
        await c.subscribe(ch)
        assert redis.publish("wsgate:" + ch, str(i)) >= 1
        assert await c.next_message(ch) == i
        await c.close()


# ---------------------------------------------------------------- Redis wire format

@async_test(20)
async def test_redis_publish_reaches_subscribers(cluster):
    redis, a, b = cluster
    ca = await a.subscriber("news")
    cb = await b.subscriber("news")
    n = redis.publish("wsgate:news", '{"title":"hi"}')
    assert n == 2, f"PUBLISH wsgate:news reached {n} Redis subscribers, expected 2 (one per gateway)"
    for c in (ca, cb):
        m = await c.expect(lambda o: o.get("op") == "message", what="news message")
        assert m == {"op": "message", "channel": "news", "data": {"title": "hi"}}, m


@async_test(20)
async def test_client_publish_payload_on_redis(cluster):
    """A client's publish appears on Redis channel wsgate:C with the JSON
    text of data as the whole payload."""
    redis, a, b = cluster
    rc = RespConn(redis.port)
    try:
        assert rc.call("SUBSCRIBE", "wsgate:wire") == [b"subscribe", b"wsgate:wire", 1]
        ca = await a.connect()
        samples = [{"title": "hi", "n": [1, 2.5, None]}, "str", 42, None, [], "h\u00e9llo \U0001F600"]
        for d in samples:
            await ca.publish("wire", d)
        for d in samples:
            rc.settimeout(5)
            msg = rc.read()
            assert msg[0] == b"message" and msg[1] == b"wsgate:wire", msg
            payload = msg[2].decode("utf-8")
            assert json.loads(payload) == d, f"payload {payload!r} is not the JSON of {d!r}"
            assert payload == payload.strip(), f"payload has surrounding whitespace: {payload!r}"
    finally:
        rc.close()


@async_test(20)
async def test_http_publish_payload_on_redis(cluster):
    redis, a, b = cluster
    rc = RespConn(redis.port)
    try:
        rc.call("SUBSCRIBE", "wsgate:hwire")
        r = await a.publish_http("hwire", {"k": [1, "v"]})
        assert r.status == 200, r
        rc.settimeout(5)
        msg = rc.read()
        assert msg[1] == b"wsgate:hwire" and json.loads(msg[2]) == {"k": [1, "v"]}, msg
    finally:
        rc.close()


@async_test(20)
async def test_non_json_redis_payload_is_dropped(cluster):
    redis, a, b = cluster
    ca = await a.subscriber("news")
    for bad in ["not json", "{", "", '{"a":1} trailing', b"\xff\xfe"]:
        redis.publish("wsgate:news", bad)
    redis.publish("wsgate:news", '{"sentinel":true}')
    await ca.only_before_sentinel("news", {"sentinel": True})
    assert a.proc.alive()
    await ca.ping()


@async_test(20)
async def test_invalid_utf8_redis_payload_is_dropped(cluster):
    """JSON text must be UTF-8 (RFC 8259); forwarding invalid UTF-8 in a text
    frame would make clients fail the connection (1007)."""
    redis, a, b = cluster
    ca = await a.subscriber("utf")
    redis.publish("wsgate:utf", b'"\xff\xfe"')
    redis.publish("wsgate:utf", b'{"k":"\xc3"}')
    redis.publish("wsgate:utf", '"sentinel"')
    await ca.only_before_sentinel("utf", "sentinel")
    await ca.ping()


@async_test(20)
async def test_redis_scalar_payloads(cluster):
    redis, a, b = cluster
    ca = await a.subscriber("scalars")
    cases = [("1", 1), ('"s"', "s"), ("null", None), ("true", True), ("[1,2]", [1, 2]), ("  {\"w\": 1}  ", {"w": 1})]
    for payload, _ in cases:
        redis.publish("wsgate:scalars", payload)
    for _, data in cases:
        got = await ca.next_message("scalars")
        assert got == data and type(got) is type(data), f"expected {data!r}, got {got!r}"


@async_test(20)
async def test_channel_prefix_flag(procs, redis):
    gw = procs.gateway("--channel-prefix", "custom:", redis=redis, node_id="p")
    c = await gw.subscriber("news")
    assert redis.publish("custom:news", '"via custom"') >= 1
    assert await c.next_message("news") == "via custom"
    assert redis.publish("wsgate:news", '"via default"') == 0, "subscribed with the default prefix too"
    redis.publish("custom:news", '"sentinel"')
    await c.only_before_sentinel("news", "sentinel")
    rc = RespConn(redis.port)
    try:
        rc.call("SUBSCRIBE", "custom:out")
        await c.publish("out", {"x": 1})
        rc.settimeout(5)
        msg = rc.read()
        assert msg[1] == b"custom:out" and json.loads(msg[2]) == {"x": 1}, msg
    finally:
        rc.close()


@async_test(20)
async def test_gateways_with_different_prefixes_are_isolated(procs, redis):
    g1 = procs.gateway(redis=redis, node_id="g1")
    g2 = procs.gateway("--channel-prefix", "other:", redis=redis, node_id="g2")
    c1 = await g1.subscriber("room")
    c2 = await g2.subscriber("room")
    await c2.publish("room", "from g2")
    assert await c2.next_message("room") == "from g2"
    await c1.publish("room", "sentinel")
    await c1.only_before_sentinel("room", "sentinel")
