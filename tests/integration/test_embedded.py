"""Embedded mode (no --redis): a single process is a complete pub/sub server."""

from wsgate_testing import async_test


def test_readyz_and_healthz(gw):
    assert gw.http("GET", "/readyz").status == 200
    assert gw.http("GET", "/healthz").status == 200


def test_no_broker_log_needed(gw):
    """Embedded mode never reports a lost broker."""
    assert not gw.proc.has_line(r"broker down")


@async_test(20)
async def test_pubsub_within_one_process(gw):
    a = await gw.connect()
    b = await gw.connect()
    c = await gw.connect()
    await a.subscribe("chat")
    await b.subscribe("chat")
    await c.publish("chat", {"user": "c", "text": "hello"})
    for s in (a, b):
        assert await s.next_message("chat") == {"user": "c", "text": "hello"}
    await a.publish("chat", "from a")
    assert await a.next_message("chat") == "from a"
    assert await b.next_message("chat") == "from a"


@async_test(20)
async def test_http_publish_embedded(gw):
    a = await gw.connect()
    await a.subscribe("e")
    r = await gw.publish_http("e", [1, {"two": 2}])
    assert r.status == 200 and r.json() == {"ok": True}, r
    assert await a.next_message("e") == [1, {"two": 2}]


@async_test(20)
async def test_unsubscribe_embedded(gw):
    a = await gw.connect()
    p = await gw.connect()
    await a.subscribe("u")
    await a.subscribe("s")
    await a.unsubscribe("u")
    await p.publish("u", "nope")
    await p.publish("s", "sentinel")
    before = await a.before_sentinel("s", "sentinel")
    assert before == [], before


@async_test(30)
async def test_many_clients_many_channels(gw):
    clients = [await gw.connect() for _ in range(20)]
    for i, c in enumerate(clients):
        await c.subscribe(f"ch{i % 4}")
        await c.subscribe("all")
    p = await gw.connect()
    for k in range(4):
        await p.publish(f"ch{k}", k)
    await p.publish("all", "sentinel")
    for i, c in enumerate(clients):
        before = await c.before_sentinel("all", "sentinel")
        assert before == [{"op": "message", "channel": f"ch{i % 4}", "data": i % 4}], (i, before)
