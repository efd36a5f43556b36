"""Client protocol v1 on a single gateway: welcome, ping, subscribe /
unsubscribe / publish replies, id echo, error codes, channel names, data
round trips, ordering, fan-out over many clients and channels, robustness
against bad frames and vanishing clients. Tests taking `anygw` run in both
broker modes (embedded and Redis)."""

import asyncio
import json

import pytest

from wsgate_testing import MANY_CHANNELS, NO_PUBLISH_RATE, async_test, is_message


ABSENT = object()   # reply must not carry an id
ANY = object()      # id not checked (request id itself was invalid)


@async_test(20)
async def test_welcome_node_and_session(gw):
    c1 = await gw.connect()
    c2 = await gw.connect()
    for c in (c1, c2):
        assert c.welcome["node"] == "n1", c.welcome
    assert c1.welcome["session"] != c2.welcome["session"], "two connections share a session id"


@async_test(20)
async def test_welcome_on_batch_connection(gw):
    c = await gw.connect(batch=True)
    assert c.welcome["node"] == "n1"
    await c.ping()


@async_test(20)
async def test_ping_echoes_id(gw):
    c = await gw.connect()
    for rid in (1, 0, 42, 2 ** 31 - 1, -5):
        r = await c.request({"op": "ping", "id": rid})
        assert r == {"op": "pong", "id": rid}, r


@async_test(20)
async def test_replies_without_id_have_no_id(gw):
    c = await gw.connect()
    await c.send({"op": "ping"})
    r = await c.recv()
    assert r == {"op": "pong"}, r
    await c.send({"op": "subscribe", "channel": "noid"})
    r = await c.recv()
    assert r == {"op": "ack"}, r
    await c.send({"op": "publish", "channel": "noid", "data": 1})
    # ack and the message itself (we are subscribed) may come in either order
    got = [await c.recv(), await c.recv()]
    assert {"op": "ack"} in got, got
    assert {"op": "message", "channel": "noid", "data": 1} in got, got
    await c.send({"op": "unsubscribe", "channel": "noid"})
    r = await c.recv()
    assert r == {"op": "ack"}, r


@async_test(20)
async def test_websocket_level_ping(gw):
    c = await gw.connect()
    pong = await c.ws.ping(b"hello")
    await asyncio.wait_for(pong, 5)
    await c.ping()


@async_test(20)
async def test_pipelined_requests_each_get_their_reply(gw):
    c = await gw.connect()
    for i in range(1, 51):
        await c.send({"op": "ping", "id": i})
    for i in range(1, 51):
        r = await c.recv()
        assert r == {"op": "pong", "id": i}, f"reply {i} out of order or wrong: {r!r}"


@async_test(20)
async def test_subscribe_ack_and_delivery(anygw):
    sub = await anygw.connect()
    pub = await anygw.connect()
    r = await sub.request({"op": "subscribe", "channel": "news", "id": 7})
    assert r == {"op": "ack", "id": 7}, r
    r = await pub.request({"op": "publish", "channel": "news", "data": {"title": "hi"}, "id": 8})
    assert r == {"op": "ack", "id": 8}, r
    m = await sub.expect(is_message("news"), what="message on news")
    assert m == {"op": "message", "channel": "news", "data": {"title": "hi"}}, m


@async_test(20)
async def test_already_subscribed(gw):
    c = await gw.subscriber("dup")
    e = await c.error({"op": "subscribe", "channel": "dup", "id": 99}, "already_subscribed")
    assert e["id"] == 99
    await c.ping()
    # still subscribed exactly once: one publish -> one delivery
    pub = await gw.connect()
    await pub.publish("dup", 1)
    await pub.publish("dup", "sentinel")
    before = await c.before_sentinel("dup", "sentinel")
    msgs = [o for o in before if o.get("op") == "message"]
    assert msgs == [{"op": "message", "channel": "dup", "data": 1}], before


@async_test(20)
async def test_unsubscribe_not_subscribed(gw):
    c = await gw.connect()
    e = await c.error({"op": "unsubscribe", "channel": "never", "id": 5}, "not_subscribed")
    assert e["id"] == 5
    await c.ping()
    await c.subscribe("once")
    await c.unsubscribe("once")
    await c.error({"op": "unsubscribe", "channel": "once", "id": 6}, "not_subscribed")
    await c.ping()


@async_test(20)
async def test_unsubscribe_stops_delivery_and_resubscribe_works(pubsub):
    s, p = pubsub
    c = await s.connect()
    pub = await p.connect()
    await c.subscribe("a")
    await c.subscribe("keep")
    await pub.publish("a", 1)
    assert await c.next_message("a") == 1
    await c.unsubscribe("a")
    await pub.publish("a", 2)
    await pub.publish("keep", "sentinel")
    before = await c.before_sentinel("keep", "sentinel")
    assert not [o for o in before if o.get("channel") == "a"], f"message after unsubscribe: {before!r}"
    # last local subscriber gone and back: a Redis subscription is re-made
    await c.subscribe("a")
    await pub.publish("a", 3)
    assert await c.next_message("a") == 3


@async_test(20)
async def test_only_subscribed_channels_are_delivered(anygw):
    c = await anygw.connect()
    pub = await anygw.connect()
    await c.subscribe("x")
    await c.subscribe("y")
    await pub.publish("z", "not for you")
    await pub.publish("xx", "not for you")
    await pub.publish("x", "for x")
    await pub.publish("y", "for y")
    await c.only_before_sentinel("y", "for y", [{"op": "message", "channel": "x", "data": "for x"}])


@async_test(20)
async def test_publisher_not_subscribed_gets_only_ack(pubsub):
    s, p = pubsub
    pub = await p.connect()
    sub = await s.subscriber("one")
    await pub.publish("one", "m")
    assert await sub.next_message("one") == "m"
    # pub is not subscribed: nothing but the pong for its ping
    await pub.send({"op": "ping", "id": 1000})
    before = await pub.collect_until(lambda o: o.get("op") == "pong" and o.get("id") == 1000)
    assert before == [], before


@async_test(20)
async def test_client_receives_own_message_when_subscribed(anygw):
    c = await anygw.subscriber("self")
    await c.publish("self", {"me": True})
    assert await c.next_message("self") == {"me": True}
    await c.publish("self", "sentinel")
    before = await c.before_sentinel("self", "sentinel")
    assert not [o for o in before if o.get("op") == "message"], f"own message delivered twice: {before!r}"


@async_test(20)
async def test_many_subscribers_each_get_one_copy(pubsub):
    s, p = pubsub
    subs = [await s.connect() for _ in range(5)]
    for c in subs:
        await c.subscribe("fan")
    pub = await p.connect()
    await pub.publish("fan", "m1")
    await pub.publish("fan", "sentinel")
    for c in subs:
        await c.only_before_sentinel("fan", "sentinel", [{"op": "message", "channel": "fan", "data": "m1"}])


@async_test(20)
async def test_unsubscribe_of_one_client_keeps_others(pubsub):
    s, p = pubsub
    a = await s.connect()
    b = await s.connect()
    pub = await p.connect()
    await a.subscribe("shared")
    await b.subscribe("shared")
    await a.unsubscribe("shared")
    await pub.publish("shared", "after")
    assert await b.next_message("shared") == "after"
    # a disconnect (no unsubscribe) must not drop the other's subscription either
    c = await s.subscriber("shared")
    await c.ws.close()
    await b.ping()
    await pub.publish("shared", "again")
    assert await b.next_message("shared") == "again"


@async_test(20)
async def test_disconnected_subscriber_is_forgotten(anygw):
    a = await anygw.subscriber("gone")
    b = await anygw.subscriber("gone")
    await a.ws.close()
    pub = await anygw.connect()
    for i in range(20):
        await pub.publish("gone", i)
    for i in range(20):
        assert await b.next_message("gone") == i
    await pub.ping()


@async_test(20)
async def test_abrupt_disconnect_does_not_hurt_gateway(gw):
    """Raw clients subscribe and vanish (RST / FIN without close frame);
    the gateway keeps serving the remaining subscriber."""
    raws = []
    for i in range(3):
        r = gw.raw()
        w = r.recv_json()
        assert w.get("op") == "welcome", w
        r.send_json({"op": "subscribe", "channel": "vanish", "id": 1})
        assert r.recv_json() == {"op": "ack", "id": 1}
        raws.append(r)
    raws[0].close(reset=True)
    raws[1].close()
    raws[2].sock.shutdown(2)
    raws[2].close()
    s = await gw.subscriber("vanish")
    pub = await gw.connect()
    for i in range(50):
        await pub.publish("vanish", i)
    for i in range(50):
        assert await s.next_message("vanish") == i
    assert gw.proc.alive()


DATA = [
    {"title": "hi"},
    [1, 2, 3],
    "plain string",
    "h\u00e9llo \u2603 \U0001F600",
    "quotes \" back\\slash \n newline \t tab \u0001 ctl",
    0,
    -17,
    3.25,
    1e-7,
    9007199254740991,
    True,
    False,
    None,
    {},
    [],
    {"nested": {"deep": [1, {"k": [None, True, "x"]}]}, "n": -0.5},
]


@pytest.mark.parametrize("data", DATA, ids=[json.dumps(d)[:30] for d in DATA])
@async_test(20)
async def test_data_round_trip(gw, data):
    sub = await gw.connect()
    pub = await gw.connect()
    await sub.subscribe("rt")
    await pub.publish("rt", data)
    got = await sub.next_message("rt")
    assert got == data and type(got) is type(data), f"sent {data!r}, got {got!r}"


@async_test(20)
async def test_data_round_trip_with_ascii_escapes(gw):
    sub = await gw.connect()
    pub = await gw.connect()
    await sub.subscribe("esc")
    # \u escapes instead of raw UTF-8 on the wire
    await pub.send_raw('{"op":"publish","channel":"esc","data":"\\u00e9\\ud83d\\ude00","id":1}')
    r = await pub.recv()
    assert r == {"op": "ack", "id": 1}, r
    assert await sub.next_message("esc") == "\u00e9\U0001F600"


@async_test(30)
async def test_order_preserved_single_publisher(mkgw):
    anygw = mkgw(*NO_PUBLISH_RATE)
    sub = await anygw.connect()
    pub = await anygw.connect()
    await sub.subscribe("ord")
    n = 300
    for i in range(n):
        await pub.send({"op": "publish", "channel": "ord", "data": i, "id": i + 1})
    acks = [await pub.recv(10) for _ in range(n)]
    assert all(a.get("op") == "ack" for a in acks), [a for a in acks if a.get("op") != "ack"][:3]
    assert sorted(a["id"] for a in acks) == list(range(1, n + 1))
    got = [await sub.next_message("ord", 10) for _ in range(n)]
    assert got == list(range(n))


ERROR_CASES = [
    # (raw frame, expected code, expected id)
    ("not json", "bad_json", ABSENT),
    ('{"op":"ping"', "bad_json", ABSENT),
    ('{"op":"ping",}', "bad_json", ABSENT),
    ("", "bad_json", ABSENT),
    ("[1,2,3]", "bad_request", ABSENT),
    ('"hello"', "bad_request", ABSENT),
    ("42", "bad_request", ABSENT),
    ("null", "bad_request", ABSENT),
    ("{}", "bad_request", ABSENT),
    ('{"id":7}', "bad_request", 7),
    ('{"op":5,"id":7}', "bad_request", 7),
    ('{"op":null,"id":7}', "bad_request", 7),
    ('{"op":["ping"],"id":7}', "bad_request", 7),
    ('{"op":"subscribe","id":7}', "bad_request", 7),
    ('{"op":"subscribe","channel":5,"id":7}', "bad_request", 7),
    ('{"op":"subscribe","channel":null,"id":7}', "bad_request", 7),
    ('{"op":"subscribe","channel":["a"],"id":7}', "bad_request", 7),
    ('{"op":"unsubscribe","id":7}', "bad_request", 7),
    ('{"op":"unsubscribe","channel":{},"id":7}', "bad_request", 7),
    ('{"op":"publish","channel":"c","id":7}', "bad_request", 7),
    ('{"op":"publish","data":1,"id":7}', "bad_request", 7),
    ('{"op":"publish","channel":1,"data":1,"id":7}', "bad_request", 7),
    ('{"op":"publish","channel":"c"}', "bad_request", ABSENT),
    ('{"op":"ping","id":"7"}', "bad_request", ANY),
    ('{"op":"ping","id":1.5}', "bad_request", ANY),
    ('{"op":"ping","id":true}', "bad_request", ANY),
    ('{"op":"ping","id":null}', "bad_request", ANY),
    ('{"op":"subscribe","channel":"c","id":[1]}', "bad_request", ANY),
    ('{"op":"dance","id":7}', "unknown_op", 7),
    ('{"op":"dance"}', "unknown_op", ABSENT),
    ('{"op":"","id":7}', "unknown_op", 7),
    ('{"op":"welcome","id":7}', "unknown_op", 7),
    ('{"op":"message","channel":"c","data":1,"id":7}', "unknown_op", 7),
]


@pytest.mark.parametrize("frame,code,rid", ERROR_CASES, ids=[c[0][:40] or "empty" for c in ERROR_CASES])
@async_test(20)
async def test_error_codes(gw, frame, code, rid):
    c = await gw.connect()
    await c.send_raw(frame)
    r = await c.recv()
    assert r.get("op") == "error", f"sent {frame!r}, got {r!r}"
    assert r.get("code") == code, f"sent {frame!r}, expected {code}, got {r!r}"
    assert isinstance(r.get("message"), str) and r["message"], f"error without message: {r!r}"
    if rid is ABSENT:
        assert "id" not in r, f"sent {frame!r} (no valid id), reply has an id: {r!r}"
    elif rid is not ANY:
        assert r.get("id") == rid, f"sent {frame!r}, reply does not echo id {rid}: {r!r}"
    # the connection still works
    r = await c.request({"op": "ping", "id": 1234})
    assert r == {"op": "pong", "id": 1234}, r


@async_test(20)
async def test_binary_frame_is_bad_request(gw):
    c = await gw.connect()
    await c.send_raw(b'{"op":"ping","id":1}')
    r = await c.recv()
    assert r.get("op") == "error" and r.get("code") == "bad_request", f"binary frame -> {r!r}"
    await c.ping()


@async_test(20)
async def test_many_errors_then_normal_use(gw):
    c = await gw.connect()
    for _ in range(100):
        await c.send_raw("garbage")
    for _ in range(100):
        r = await c.recv()
        assert r.get("code") == "bad_json", r
    await c.subscribe("after-errors")
    await c.publish("after-errors", "ok")
    assert await c.next_message("after-errors") == "ok"


BAD_CHANNELS = ["", "a" * 201, "has space", "semi;colon", "caf\u00e9", "a#b", "star*", "new\nline",
                "tab\t", 'quote"', "back\\slash", "percent%", "comma,", "pl+us", "q?", "\u2603"]


@pytest.mark.parametrize("channel", BAD_CHANNELS, ids=[repr(c)[:20] for c in BAD_CHANNELS])
@async_test(20)
async def test_bad_channel(gw, channel):
    c = await gw.connect()
    for op in ("subscribe", "unsubscribe", "publish"):
        req = {"op": op, "channel": channel, "id": 11}
        if op == "publish":
            req["data"] = 1
        e = await c.error(req, "bad_channel")
        assert e["id"] == 11, e
        await c.ping()


GOOD_CHANNELS = ["a", "a" * 200, "AZaz09_-.:@/", "user@example.com/room:1", "..", "/", "-_-"]


@pytest.mark.parametrize("channel", GOOD_CHANNELS, ids=[c[:20] for c in GOOD_CHANNELS])
@async_test(20)
async def test_good_channel(anygw, channel):
    c = await anygw.subscriber(channel)
    await c.publish(channel, {"ch": channel})
    assert await c.next_message(channel) == {"ch": channel}
    await c.unsubscribe(channel)


@pytest.mark.parametrize("depth", [1000, 30000])
@async_test(20)
async def test_deeply_nested_data_does_not_crash(anygw, depth):
    """Valid but deeply nested JSON (within the 64 KB message limit): the
    gateway may accept it or refuse it with an error, but must answer and
    keep serving. A raw subscriber (no JSON parsing on our side) checks that
    whatever is delivered does not break its connection."""
    raw = anygw.raw()
    assert raw.recv_json().get("op") == "welcome"
    raw.send_json({"op": "subscribe", "channel": "deep", "id": 1})
    assert raw.recv_json() == {"op": "ack", "id": 1}
    c = await anygw.connect()
    text = '{"op":"publish","channel":"deep","id":1,"data":' + "[" * depth + "]" * depth + "}"
    assert len(text) <= 65536
    await c.send_raw(text)
    # an ack echoing the id, or an error (without id if the frame was refused
    # as a whole, e.g. for exceeding a nesting limit)
    r = await c.expect(lambda o: o.get("id") == 1 or (o.get("op") == "error" and "id" not in o),
                       what="reply to the nested publish")
    assert r.get("op") in ("ack", "error"), r
    await c.ping()
    await c.publish("deep", "sentinel")
    while True:
        fin, op, payload = raw.recv_frame()
        assert op == 1, f"raw subscriber got opcode {op}: {payload[:100]!r}"
        if b"sentinel" in payload:
            break
    raw.close()
    assert anygw.proc.alive()


@async_test(20)
async def test_deeply_nested_redis_payload_does_not_crash(rgw):
    raw = rgw.raw()
    assert raw.recv_json().get("op") == "welcome"
    raw.send_json({"op": "subscribe", "channel": "deep", "id": 1})
    assert raw.recv_json() == {"op": "ack", "id": 1}
    rgw.redis.publish("wsgate:deep", "[" * 30000 + "]" * 30000)
    rgw.redis.publish("wsgate:deep", '"sentinel"')
    while True:
        fin, op, payload = raw.recv_frame()
        assert op == 1, f"raw subscriber got opcode {op}: {payload[:100]!r}"
        if b"sentinel" in payload:
            break
    raw.close()
    assert rgw.proc.alive()
    c = await rgw.connect()
    await c.ping()


@async_test(30)
async def test_many_subscriptions_then_disconnect(mkgw):
    anygw = mkgw(*MANY_CHANNELS)
    c = await anygw.connect()
    for i in range(300):
        await c.send({"op": "subscribe", "channel": f"m{i}", "id": i + 1})
    for i in range(300):
        r = await c.expect(lambda o, k=i + 1: o.get("id") == k)
        assert r == {"op": "ack", "id": i + 1}, r
    pub = await anygw.connect()
    await pub.publish("m299", "last")
    assert await c.next_message("m299") == "last"
    await c.ws.close()
    other = await anygw.subscriber("m5")
    await pub.publish("m5", "x")
    assert await other.next_message("m5") == "x"
    assert anygw.proc.alive()


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
        await c.only_before_sentinel("all", "sentinel",
                                     [{"op": "message", "channel": f"ch{i % 4}", "data": i % 4}])
