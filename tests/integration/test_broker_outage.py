"""The broker: losing Redis and getting it back: /readyz turns 503 within
~1 s, 'broker down' is logged, publishes fail with broker_unavailable (WS) /
503 (HTTP); after redis-server restarts on the same port the gateway logs
'broker up' and resubscribes, so existing subscribers receive new messages
without doing anything. The Redis db of --redis redis://host:port/N is
selected on both connections; the embedded broker never reports a lost
broker."""

import asyncio
import time

from wsgate_testing import MANY_CHANNELS, async_test


READYZ_DEADLINE = 1.0    # product requirement: 503 within 1 s of losing Redis
POLL_SLACK = 0.25        # allowance for the poll interval and HTTP round trip


async def await_readyz(gw, status, deadline_s):
    """Poll /readyz until it returns `status`; return (elapsed, response)."""
    t0 = time.monotonic()
    last = None
    while True:
        try:
            last = await gw.ahttp("GET", "/readyz", timeout=1.0)
            if last.status == status:
                return time.monotonic() - t0, last
        except OSError as e:
            last = e
        if time.monotonic() - t0 > deadline_s:
            raise AssertionError(f"/readyz not {status} within {deadline_s}s; last: {last!r}")
        await asyncio.sleep(0.02)   # poll interval, bounded by the deadline above


async def await_delivery(gw, client, channel, tag, tries=25, wait=0.4):
    """After 'broker up', publish via HTTP until one probe arrives at
    `client` (each try awaits arrival for `wait` s). Returns the probe data."""
    sent = []
    for i in range(tries):
        data = {"probe": tag, "try": i}
        r = await gw.publish_http(channel, data)
        if r.status == 200:
            sent.append(data)
        try:
            m = await client.expect(lambda o: o.get("op") == "message" and o.get("channel") == channel
                                    and o.get("data") in sent, timeout=wait,
                                    what=f"a probe on {channel!r}")
            return m["data"]
        except AssertionError:
            continue
    raise AssertionError(f"delivery on {channel!r} did not resume after {tries} probes "
                         f"({len(sent)} accepted with 200)")


async def go_down(redis, gw):
    mark = gw.proc.mark()
    redis.kill()
    elapsed, r = await await_readyz(gw, 503, READYZ_DEADLINE + POLL_SLACK)
    assert elapsed <= READYZ_DEADLINE + POLL_SLACK, f"/readyz turned 503 only after {elapsed:.2f}s"
    body = r.body.decode("utf-8", "replace").strip()
    assert body and "\n" not in body, f"/readyz 503 body should be a one-line reason: {r.body!r}"
    await gw.await_line(r"broker down", timeout=5, start=mark)
    return elapsed


@async_test(60)
async def test_redis_outage_and_recovery(procs, redis):
    gw = procs.gateway(redis=redis, node_id="n1")
    sub = await gw.connect()
    batch_sub = await gw.connect(batch=True)
    pub = await gw.connect()
    await sub.subscribe("room")
    await sub.subscribe("other")
    await batch_sub.subscribe("room")
    r = await gw.ahttp("GET", "/readyz")
    assert r.status == 200, r

    elapsed = await go_down(redis, gw)
    print(f"/readyz 503 after {elapsed:.3f}s")

    assert (await gw.ahttp("GET", "/healthz")).status == 200, "healthz must stay 200 while serving"
    e = await pub.error({"op": "publish", "channel": "room", "data": {"x": 1}, "id": 31}, "broker_unavailable")
    assert e["id"] == 31, e
    r = await gw.publish_http("room", {"x": 2})
    assert r.status == 503, r
    assert r.json().get("error") == "broker_unavailable", r
    # clients stay connected during the outage
    await sub.ping()
    await pub.ping()

    mark = gw.proc.mark()
    redis.restart()
    await gw.await_line(r"broker up", timeout=15, start=mark)

    # existing subscriptions resume without any client action
    await await_delivery(gw, sub, "room", "room")
    await await_delivery(gw, sub, "other", "other")
    await batch_sub.expect(lambda o: o.get("op") == "message" and o.get("channel") == "room",
                           what="room message on the batch client")
    await await_readyz(gw, 200, 5)

    # websocket publish works again and reaches everyone
    await pub.publish("room", "after")
    await sub.expect_message("room", "after")
    await batch_sub.expect_message("room", "after")
    # new subscriptions work too
    await pub.subscribe("new-after")
    assert redis.publish("wsgate:new-after", '"x"') >= 1
    await pub.expect_message("new-after", "x")


@async_test(60)
async def test_cluster_recovers_after_redis_restart(procs, redis):
    a = procs.gateway(redis=redis, node_id="a")
    b = procs.gateway(redis=redis, node_id="b")
    ca = await a.connect()
    cb = await b.connect()
    await ca.subscribe("x")
    await cb.subscribe("y")

    ma, mb = a.proc.mark(), b.proc.mark()
    redis.kill()
    await await_readyz(a, 503, READYZ_DEADLINE + POLL_SLACK)
    await await_readyz(b, 503, READYZ_DEADLINE + POLL_SLACK)
    await a.await_line(r"broker down", timeout=5, start=ma)
    await b.await_line(r"broker down", timeout=5, start=mb)
    r = await b.publish_http("x", 1)
    assert r.status == 503 and r.json().get("error") == "broker_unavailable", r

    ma, mb = a.proc.mark(), b.proc.mark()
    redis.restart()
    await a.await_line(r"broker up", timeout=15, start=ma)
    await b.await_line(r"broker up", timeout=15, start=mb)
    # B publishes, A's old subscriber receives; and the other way
    await await_delivery(b, ca, "x", "b->a")
    await await_delivery(a, cb, "y", "a->b")
    await cb.publish("x", "ws b->a")
    await ca.expect_message("x", "ws b->a")


@async_test(60)
async def test_repeated_outages(procs, redis):
    gw = procs.gateway(redis=redis, node_id="n1")
    sub = await gw.subscriber("r")
    for round_ in range(3):
        await go_down(redis, gw)
        mark = gw.proc.mark()
        redis.restart()
        await gw.await_line(r"broker up", timeout=15, start=mark)
        await await_delivery(gw, sub, "r", f"round{round_}")
    assert gw.proc.alive()


@async_test(60)
async def test_many_channels_resubscribed(procs, redis):
    gw = procs.gateway(*MANY_CHANNELS, redis=redis, node_id="n1")
    c = await gw.connect()
    nch = 200
    for i in range(nch):
        await c.send({"op": "subscribe", "channel": f"ch{i}", "id": i + 1})
    for i in range(nch):
        r = await c.expect(lambda o, k=i + 1: o.get("id") == k)
        assert r.get("op") == "ack", r
    await go_down(redis, gw)
    mark = gw.proc.mark()
    redis.restart()
    await gw.await_line(r"broker up", timeout=15, start=mark)
    await await_delivery(gw, c, f"ch{nch - 1}", "last")
    rc = redis.conn()
    try:
        missing = [i for i in range(nch) if rc.call("PUBLISH", f"wsgate:ch{i}", str(i)) < 1]
    finally:
        rc.close()
    assert not missing, f"not resubscribed after the restart: {missing[:20]}"
    for i in range(nch):
        await c.expect_message(f"ch{i}", i)


def test_no_broker_log_needed(gw):
    """Embedded mode never reports a lost broker."""
    assert not gw.proc.has_line(r"broker down")


def gateway_clients(redis):
    """CLIENT LIST of redis-server as dicts, without the connection asking."""
    c = redis.conn()
    try:
        text = c.call("CLIENT", "LIST").decode()
        me = c.call("CLIENT", "ID")
    finally:
        c.close()
    rows = [dict(f.split("=", 1) for f in line.split() if "=" in f) for line in text.splitlines() if line]
    return [r for r in rows if int(r["id"]) != me]


@async_test(20)
async def test_redis_db_in_url_is_selected(procs, redis):
    """--redis redis://host:port/2: both of the gateway's connections (publish
    and subscribe) are on db 2, and publish/subscribe works end to end."""
    gw = procs.gateway("--redis", f"{redis.url}/2", node_id="n1", wait_broker=False)
    await gw.await_line(r"broker up")
    sub = await gw.connect()
    pub = await gw.connect()
    await sub.subscribe("db2")
    conns = gateway_clients(redis)
    assert len(conns) == 2, f"expected the gateway's publish and subscribe connections: {conns}"
    assert all(r["db"] == "2" for r in conns), f"a gateway connection is not on db 2: {conns}"
    subscribing = [r for r in conns if int(r["sub"]) + int(r["psub"]) > 0]
    assert len(subscribing) == 1, f"expected one subscribe connection: {conns}"
    await pub.publish("db2", {"via": "gateway"})
    assert await sub.next_message("db2") == {"via": "gateway"}
    assert redis.publish("wsgate:db2", '{"via":"redis"}') >= 1
    assert await sub.next_message("db2") == {"via": "redis"}


@async_test(20)
async def test_redis_db_out_of_range_is_reported(procs, redis):
    """A db index the server refuses (redis-server has 16 by default): the
    broker never comes up, the failure is logged with Redis's reason, and
    /readyz answers 503."""
    gw = procs.gateway("--redis", f"{redis.url}/20", node_id="n1", wait_broker=False)
    await gw.await_line(r"redis \S+ unavailable: setup command failed: .*DB index is out of range")
    assert not gw.proc.has_line(r"broker up")
    assert gw.http("GET", "/readyz").status == 503
