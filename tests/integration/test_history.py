"""History and recovery (issue 10): positions on deliveries, acks and HTTP
publishes; recovery on subscribe, exact or explicitly refused (trimmed,
expired, epoch changed, offset from the future, history off); holes in live
delivery filled from the Redis stream (CLIENT KILL of the pub/sub
connection, a replica SIGKILLed mid-stream); plain PUBLISH still works;
GET /api/history; bad input. Real redis-server and gateway processes."""

import asyncio
import json
import re
import threading
import time

from wsgate_testing import REPO, ascrape_metrics, async_test

HIST = ("--history-size", "100")   # explicit: the harness turns history off otherwise
FAST = ("--publish-rate", "0")
EPOCH_RE = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
PUBLISH_LUA = (REPO / "gateway" / "broker" / "history_publish.lua").read_text()


def is_msg(channel):
    return lambda o: o.get("op") == "message" and o.get("channel") == channel


async def messages(c, channel, n, timeout=10):
    return [await c.expect(is_msg(channel), timeout, what=f"message on {channel!r}") for _ in range(n)]


async def until_offset(c, channel, last, timeout=15):
    """Messages on channel up to and including offset `last`."""
    got = []
    while not got or got[-1].get("offset", 0) < last:
        got.append(await c.expect(is_msg(channel), timeout, what=f"offset {last} on {channel!r}"))
    return got


def assert_run(msgs, first, last):
    """msgs carry exactly offsets (and data) first..last, in order."""
    offs = [m.get("offset") for m in msgs]
    assert offs == list(range(first, last + 1)), f"offsets {offs[:5]}...{offs[-5:]} != {first}..{last}; " \
        f"holes/dups: {sorted(set(range(first, last + 1)) ^ set(o for o in offs if o))[:10]}"
    assert [m["data"] for m in msgs] == list(range(first, last + 1))


async def recover_ack(c, channel, epoch, offset):
    """Subscribe with recover; asserts no message on the channel precedes
    the ack and returns the ack."""
    rid = c.next_id()
    await c.send({"op": "subscribe", "channel": channel, "id": rid,
                  "recover": {"epoch": epoch, "offset": offset}})
    ack = []

    def is_reply(o):
        if o.get("id") == rid and o.get("op") in ("ack", "error"):
            ack.append(o)
            return True
        return False
    before = await c.collect_until(is_reply, what=f"the reply to subscribe {rid}")
    assert not [o for o in before if is_msg(channel)(o)], f"messages before the ack: {before[:5]}"
    c.pending.extendleft(reversed(before))   # other frames stay, in order
    return ack[0]


class Backend:
    """Publishes like a backend would: the README's EVAL of
    history_publish.lua, straight into Redis."""

    def __init__(self, redis, size=100, ttl=300, prefix="wsgate:"):
        self.conn = redis.conn()
        self.size, self.ttl, self.prefix = size, ttl, prefix

    def publish(self, channel, data, silent=False):
        """silent: into the history only, published on a pub/sub channel
        nobody listens to (a message pub/sub lost)."""
        p = self.prefix
        return self.conn.call("EVAL", PUBLISH_LUA, "2", f"{p}{{{channel}}}:meta", f"{p}{{{channel}}}:stream",
                              p + ("nowhere" if silent else channel), json.dumps(data), self.size,
                              self.ttl, self.ttl + 86400, "backendEpoch")


class Pacer(threading.Thread):
    """Backend publishes of 1, 2, 3, ... on a channel at about `rate`/s
    until `count` are out; `on_each(i)` runs after publish i; the offsets in
    `silent` go into the history only."""

    def __init__(self, redis, channel, count, rate, size=100, on_each=None, silent=()):
        super().__init__(daemon=True)
        self.backend = Backend(redis, size=size)
        self.channel, self.count, self.rate, self.on_each = channel, count, rate, on_each
        self.silent = set(silent)
        self.error = None
        self.stop_flag = threading.Event()

    def run(self):
        try:
            t0 = time.monotonic()
            for i in range(1, self.count + 1):
                if self.stop_flag.is_set():
                    return
                top, _ = self.backend.publish(self.channel, i, silent=i in self.silent)
                assert top == i, (top, i)
                if self.on_each:
                    self.on_each(i)
                ahead = t0 + i / self.rate - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)   # pacing the load, not synchronisation
        except Exception as e:   # surfaced by finish()
            self.error = e

    async def finish(self, timeout=60):
        await asyncio.to_thread(self.join, timeout)
        assert not self.is_alive(), "publisher did not finish"
        assert self.error is None, f"publisher failed: {self.error!r}"


# ---- positions -------------------------------------------------------------

@async_test(30)
async def test_positions_on_acks_deliveries_http(mkgw):
    gw = mkgw(*HIST)
    sub, pub = await gw.connect(), await gw.connect()
    ack = await sub.subscribe("room")
    assert set(ack) == {"op", "id", "epoch", "offset"} and ack["offset"] == 0, ack
    epoch = ack["epoch"]
    assert EPOCH_RE.match(epoch), ack
    for i in (1, 2, 3):
        r = await pub.publish("room", i)
        assert r == {"op": "ack", "id": r["id"], "epoch": epoch, "offset": i}, r
    got = await messages(sub, "room", 3)
    assert got == [{"op": "message", "channel": "room", "offset": i, "epoch": epoch, "data": i}
                   for i in (1, 2, 3)], got
    r = await gw.publish_http("room", {"x": 1})
    assert r.status == 200 and r.json() == {"ok": True, "offset": 4, "epoch": epoch}, r
    r = await gw.ahttp("GET", "/api/history?channel=room&since=2")
    assert r.status == 200 and r.json() == {"epoch": epoch, "offset": 4, "messages": [
        {"offset": 3, "data": 3}, {"offset": 4, "data": {"x": 1}}]}, r
    late = await gw.connect()
    assert await late.subscribe("room") == {"op": "ack", "id": 1, "epoch": epoch, "offset": 4}
    m = await ascrape_metrics(gw)
    assert m.value("wsgate_history_appends_total") == 4


@async_test(30)
async def test_history_channels_limit_history(mkgw):
    gw = mkgw("--history-channels", "chat.*", *HIST)
    c = await gw.connect()
    assert await c.subscribe("news") == {"op": "ack", "id": 1}
    assert (await c.subscribe("chat.a")).get("offset") == 0
    assert await c.publish("news", 1) == {"op": "ack", "id": 3}
    assert await c.expect(is_msg("news")) == {"op": "message", "channel": "news", "data": 1}
    other = await gw.connect()
    r = await other.ok({"op": "subscribe", "channel": "news", "recover": {"epoch": "e", "offset": 1}})
    assert r == {"op": "ack", "id": 1, "recovered": False, "reason": "history_off"}, r
    r = await gw.ahttp("GET", "/api/history?channel=news")
    assert r.status == 404 and r.json()["error"] == "history_off", r
    off = mkgw("--history-size", "0")
    c = await off.connect()
    assert await c.subscribe("chat.a") == {"op": "ack", "id": 1}


@async_test(30)
async def test_plain_publish_from_a_backend_has_no_position(procs, redis):
    gw = procs.gateway(*HIST, redis=redis, node_id="n1")
    c = await gw.connect()
    epoch = (await c.subscribe("room"))["epoch"]
    assert redis.publish("wsgate:room", '{"plain":1}') == 1
    assert await c.expect(is_msg("room")) == {"op": "message", "channel": "room", "data": {"plain": 1}}
    top, ep = Backend(redis).publish("room", 7)   # the documented script, run by a backend
    assert (top, ep.decode()) == (1, epoch)
    assert await c.expect(is_msg("room")) == {"op": "message", "channel": "room", "offset": 1,
                                              "epoch": epoch, "data": 7}
    assert redis.publish("wsgate:room", "#1 x") == 1   # a malformed envelope is dropped
    assert redis.publish("wsgate:room", '"after"') == 1
    assert (await c.expect(is_msg("room")))["data"] == "after"


@async_test(30)
async def test_script_cache_flushed_falls_back_to_eval(procs, redis):
    gw = procs.gateway(*HIST, redis=redis, node_id="n1")
    c = await gw.connect()
    epoch = (await c.subscribe("room"))["epoch"]
    assert (await c.publish("room", 1))["offset"] == 1
    assert redis.conn().call("SCRIPT", "FLUSH") == "OK"   # EVALSHA now gets NOSCRIPT
    r = await c.publish("room", 2)
    assert (r["epoch"], r["offset"]) == (epoch, 2), r
    assert_run(await messages(c, "room", 2), 1, 2)
    assert redis.conn().call("SCRIPT", "FLUSH") == "OK"
    other = await gw.connect()
    ack = await recover_ack(other, "room", epoch, 0)   # the read script too
    assert ack["recovered"] is True and ack["offset"] == 2, ack
    assert_run(await messages(other, "room", 2), 1, 2)


# ---- recovery --------------------------------------------------------------

@async_test(30)
async def test_recover_what_was_missed_then_live(mkgw):
    gw = mkgw(*HIST, *FAST)
    pub = await gw.connect()
    a = await gw.connect()
    epoch = (await a.subscribe("room"))["epoch"]
    for i in range(1, 6):
        await pub.publish("room", i)
    assert_run(await messages(a, "room", 5), 1, 5)
    await a.close()
    for i in range(6, 11):
        await pub.publish("room", i)
    b = await gw.connect()
    ack = await recover_ack(b, "room", epoch, 5)
    assert ack == {"op": "ack", "id": ack["id"], "epoch": epoch, "offset": 10, "recovered": True}, ack
    await pub.publish("room", 11)
    assert_run(await messages(b, "room", 6), 6, 11)
    # recovering from the top misses nothing and delivers nothing twice
    c = await gw.connect()
    assert (await recover_ack(c, "room", epoch, 11))["recovered"] is True
    await pub.publish("room", 12)
    assert_run(await messages(c, "room", 1), 12, 12)
    m = await ascrape_metrics(gw)
    assert m.value("wsgate_recoveries_total", result="recovered", reason="") == 2


@async_test(40)
async def test_recovery_refused_explicitly(mkgw):
    gw = mkgw("--history-size", "50", *FAST)
    pub = await gw.connect()
    epoch = (await pub.subscribe("room"))["epoch"]
    for i in range(1, 201):
        await pub.publish("room", i)
    c = await gw.connect()
    for since, want in [(0, "trimmed"), (149, "trimmed"), (9999, "future_offset")]:
        ack = await recover_ack(c, "room", epoch, since)
        assert ack == {"op": "ack", "id": ack["id"], "epoch": epoch, "offset": 200,
                       "recovered": False, "reason": want}, (since, ack)
        await c.unsubscribe("room")
    ack = await recover_ack(c, "room", "someOtherEpoch", 150)
    assert ack["recovered"] is False and ack["reason"] == "epoch_changed" and ack["epoch"] == epoch, ack
    await c.unsubscribe("room")
    ack = await recover_ack(c, "room", epoch, 150)   # exactly --history-size missed
    assert ack["recovered"] is True, ack
    assert_run(await messages(c, "room", 50), 151, 200)
    # after a refused recovery (future offset) live delivery goes on, no hang
    d = await gw.connect()
    assert (await recover_ack(d, "room", epoch, 10**15))["reason"] == "future_offset"
    await pub.publish("room", 201)
    assert_run(await messages(d, "room", 1), 201, 201)
    m = await ascrape_metrics(gw)
    assert m.value("wsgate_recoveries_total", result="not_recovered", reason="trimmed") == 2
    assert m.value("wsgate_recoveries_total", result="not_recovered", reason="future_offset") == 2
    assert m.value("wsgate_recoveries_total", result="not_recovered", reason="epoch_changed") == 1


@async_test(30)
async def test_meta_deleted_means_epoch_changed(procs, redis):
    gw = procs.gateway(*HIST, redis=redis, node_id="n1")
    live, pub = await gw.connect(), await gw.connect()
    epoch = (await live.subscribe("room"))["epoch"]
    for i in (1, 2, 3):
        await pub.publish("room", i)
    assert_run(await messages(live, "room", 3), 1, 3)
    assert redis.conn().call("DEL", "wsgate:{room}:meta") == 1
    r = await pub.publish("room", 1)
    new = r["epoch"]
    assert new != epoch and r["offset"] == 1, r
    # the live subscriber is told, then goes on in the new epoch
    lost = await live.expect(lambda o: o.get("op") == "lost")
    assert lost == {"op": "lost", "channel": "room", "reason": "epoch_changed", "epoch": new, "offset": 1}, lost
    await pub.publish("room", 2)
    m = await live.expect(is_msg("room"))
    assert (m["epoch"], m["offset"], m["data"]) == (new, 2, 2), m
    c = await gw.connect()
    ack = await recover_ack(c, "room", epoch, 3)
    assert ack == {"op": "ack", "id": ack["id"], "epoch": new, "offset": 2, "recovered": False,
                   "reason": "epoch_changed"}, ack


@async_test(30)
async def test_ttl_expired_is_explicit_and_offsets_go_on(procs, redis):
    gw = procs.gateway("--history-ttl", "1", *HIST, redis=redis, node_id="n1")
    pub = await gw.connect()
    r = await pub.publish("room", 1)
    await pub.publish("room", 2)
    conn = redis.conn()
    deadline = time.monotonic() + 5
    while conn.call("EXISTS", "wsgate:{room}:stream"):   # Redis expires it on its own clock
        assert time.monotonic() < deadline, "stream did not expire"
        await asyncio.sleep(0.05)
    assert conn.call("EXISTS", "wsgate:{room}:meta") == 1, "meta must outlive the stream"
    c = await gw.connect()
    ack = await recover_ack(c, "room", r["epoch"], 1)
    assert ack["recovered"] is False and ack["reason"] == "expired" and ack["offset"] == 2, ack
    r3 = await pub.publish("room", 3)
    assert (r3["epoch"], r3["offset"]) == (r["epoch"], 3), r3


@async_test(30)
async def test_embedded_ttl_expired(procs):
    gw = procs.gateway("--history-ttl", "1", *HIST, node_id="n1")
    pub = await gw.connect()
    r = await pub.publish("room", 1)
    c = await gw.connect()
    deadline = time.monotonic() + 5
    while True:   # the ring expires on the gateway's clock: ask until it has
        ack = await recover_ack(c, "room", r["epoch"], 0)
        await c.unsubscribe("room")
        c.pending.clear()   # the recovered message, if any
        if not ack["recovered"]:
            break
        assert time.monotonic() < deadline, "history did not expire"
        await asyncio.sleep(0.1)
    assert ack["reason"] == "expired" and ack["offset"] == 1, ack


# ---- holes in live delivery --------------------------------------------------

@async_test(60)
async def test_replica_killed_client_recovers_exactly(procs, redis):
    n = 1000
    a = procs.gateway("--history-size", "2000", *FAST, redis=redis, node_id="a")
    b = procs.gateway("--history-size", "2000", *FAST, redis=redis, node_id="b")
    client = await a.connect()
    epoch = (await client.subscribe("feed"))["epoch"]
    pub = await b.connect()

    async def publish_all():
        t0 = time.monotonic()
        for i in range(1, n + 1):
            r = await pub.publish("feed", i)
            assert r["offset"] == i, r
            ahead = t0 + i / 1000 - time.monotonic()
            if ahead > 0:
                await asyncio.sleep(ahead)   # a steady 1000 msg/s
    publisher = asyncio.create_task(publish_all())
    got = []
    while len(got) < 300:
        got.append(await client.expect(is_msg("feed")))
    a.proc.p.kill()   # SIGKILL mid-stream
    kill_at = got[-1]["offset"]
    while True:   # what was already in the socket still counts
        try:
            got.append(await client.expect(is_msg("feed"), timeout=2))
        except AssertionError:
            break
    again = await b.connect()
    ack = await recover_ack(again, "feed", epoch, got[-1]["offset"])
    assert ack["recovered"] is True, ack
    await publisher
    got += await until_offset(again, "feed", n)
    assert_run(got, 1, n)
    print(f"replica killed after message {kill_at}; recovered from {ack}")


@async_test(60)
async def test_client_kill_pubsub_keeps_sequences_contiguous(procs, redis):
    n = 600
    gws = [procs.gateway("--history-size", "1000", redis=redis, node_id=x) for x in ("a", "b")]
    clients = []
    for gw in gws:
        for _ in range(2):
            c = await gw.connect()
            await c.subscribe("feed")
            clients.append(c)
    killer = redis.conn()
    killed = []
    pacer = Pacer(redis, "feed", n, rate=500, size=1000,
                  on_each=lambda i: i == 200 and killed.append(killer.call("CLIENT", "KILL", "TYPE", "pubsub")))
    pacer.start()
    await pacer.finish()
    assert killed and killed[0] >= 2, f"CLIENT KILL TYPE pubsub killed {killed}"
    for c in clients:
        got = await until_offset(c, "feed", n)
        assert_run(got, 1, n)
        assert not [o for o in c.pending if o.get("op") == "lost"], list(c.pending)
    for gw in gws:
        m = await ascrape_metrics(gw)
        assert m.value("wsgate_broker_reconnects_total") >= 1
        assert m.value("wsgate_history_gap_fills_total") >= 1, "nothing was read back"
        assert m.value("wsgate_history_gaps_lost_total") == 0


@async_test(120)
async def test_one_history_read_per_channel_fills_every_subscriber(procs, redis):
    """50 subscribers on one channel on one gateway: messages pub/sub never
    delivered (history only) and a CLIENT KILL TYPE pubsub mid-stream each
    make a hole every subscriber sees; each hole costs one history read for
    the channel, not one per subscriber, and every subscriber still gets the
    whole sequence."""
    n, subs, silent = 600, 50, (100, 200, 300)
    gw = procs.gateway("--history-size", "1000", redis=redis, node_id="a")
    clients = [await gw.subscriber("feed") for _ in range(subs)]
    before = await ascrape_metrics(gw)
    assert 1 <= before.value("wsgate_history_reads_total", reason="subscribe") <= subs
    assert before.value("wsgate_history_reads_total", reason="gap") == 0
    killer = redis.conn()
    killed = []
    pacer = Pacer(redis, "feed", n, rate=500, size=1000, silent=silent,
                  on_each=lambda i: i == 450 and killed.append(killer.call("CLIENT", "KILL", "TYPE", "pubsub")))
    pacer.start()
    await pacer.finish()
    assert killed and killed[0] >= 1, f"CLIENT KILL TYPE pubsub killed {killed}"
    for c in clients:
        got = await until_offset(c, "feed", n, timeout=30)
        assert_run(got, 1, n)
        assert not [o for o in c.pending if o.get("op") == "lost"], list(c.pending)
    m = await ascrape_metrics(gw)
    reconnects = m.value("wsgate_broker_reconnects_total")
    gap_reads = m.value("wsgate_history_reads_total", reason="gap")
    fills = m.value("wsgate_history_gap_fills_total")
    print(f"{subs} subscribers: {gap_reads} gap reads for {len(silent)} silent holes and "
          f"{reconnects} reconnects; {fills} subscriber gap fills")
    assert reconnects >= 1
    assert m.value("wsgate_history_gaps_lost_total") == 0
    assert fills >= subs, "every subscriber had a hole to fill"
    assert 1 <= gap_reads <= len(silent) + reconnects, "history read per subscriber, not per channel"


@async_test(90)
async def test_recover_subscribe_races_fast_publishing(procs, redis):
    gw = procs.gateway("--history-size", "2000", redis=redis, node_id="n1")
    c = await gw.connect()
    epoch = (await c.subscribe("race"))["epoch"]
    await c.unsubscribe("race")
    pacer = Pacer(redis, "race", 30000, rate=1000, size=2000)
    pacer.start()
    last = 0
    try:
        for k in range(100):
            since = max(0, last - 7)
            ack = await recover_ack(c, "race", epoch, since)
            assert ack.get("recovered") is True, (k, ack)
            got = await until_offset(c, "race", max(ack["offset"], since) + 3)
            assert_run(got, since + 1, got[-1]["offset"])
            last = got[-1]["offset"]
            await c.unsubscribe("race")
            c.pending.clear()   # what arrived before the unsubscribe ack
    finally:
        pacer.stop_flag.set()
        await pacer.finish()
    assert last > 50, f"publishing did not progress during the races (last offset {last})"


# ---- bad input ---------------------------------------------------------------

BAD_RECOVER = [5, "x", None, [], {}, {"epoch": "e"}, {"offset": 1}, {"epoch": "bad epoch", "offset": 1},
               {"epoch": "", "offset": 1}, {"epoch": "e" * 33, "offset": 1}, {"epoch": 7, "offset": 1},
               {"epoch": "e", "offset": -1}, {"epoch": "e", "offset": 1.5}, {"epoch": "e", "offset": "1"},
               {"epoch": "e", "offset": 2 ** 53}, {"epoch": "e", "offset": 1e3}, {"epoch": "e", "offset": None}]


@async_test(30)
async def test_malformed_recover_is_bad_request(anygw):
    c = await anygw.connect()
    for bad in BAD_RECOVER:
        e = await c.error({"op": "subscribe", "channel": "room", "recover": bad}, "bad_request")
        assert "recover" in e["message"], e
    await c.ping()
    assert await c.subscribe("room") == {"op": "ack", "id": c._id}


@async_test(30)
async def test_history_http_bad_input(procs):
    gw = procs.gateway(*HIST, "--api-key", "k", node_id="n1")
    auth = {"Authorization": "Bearer k"}
    for path, status, code in [("/api/history", 400, "bad_channel"),
                               ("/api/history?channel=bad%20name", 400, "bad_channel"),
                               ("/api/history?channel=a&since=x", 400, "bad_request"),
                               ("/api/history?channel=a&since=-1", 400, "bad_request"),
                               ("/api/history?channel=a&since=9007199254740992", 400, "bad_request")]:
        r = await gw.ahttp("GET", path, headers=auth)
        assert r.status == status and r.json()["error"] == code, (path, r)
    r = await gw.ahttp("GET", "/api/history?channel=a")
    assert r.status == 401, r
    r = await gw.ahttp("POST", "/api/history?channel=a", {"x": 1}, headers=auth)
    assert r.status == 405, r
    r = await gw.ahttp("GET", "/api/history?channel=a&since=0", headers=auth)
    assert r.status == 200 and r.json()["messages"] == [] and r.json()["offset"] == 0, r
