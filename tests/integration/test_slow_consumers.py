"""Slow consumers: a client that stops reading is cut off while everyone
else keeps every message, in order.

--max-queue-bytes: a client that never reads is disconnected at the hard limit.

Soft send-queue limit: a client whose queue stays above --queue-soft-bytes
for --queue-soft-seconds is cut off as a slow consumer although it is far
under --max-queue-bytes. The slow client is a RawWs with a tiny receive
buffer that never reads. The test publishes in windows (the healthy
subscribers receive each window before the next) and scrapes
wsgate_queue_bytes after each window; once the healthy subscribers have
everything, that gauge is the slow client's queue. Publishing stops once it
is well above the soft limit, so the queue then stays above the soft limit
and under the hard one. The cut is seen as
wsgate_disconnects_total{reason="slow_consumer"} moving (polled every 50 ms)
and must come no earlier than T after the last scrape that still showed the
queue at or under S, and no later than T + 3 s after the first one that
showed it above.

Joined writes: a subscriber that fell behind gets its queued frames in far
fewer socket writes than messages (wsgate_writes_total), in order and intact.

Throttled: a client read by a thread at about 1 KB/s through a small receive
buffer is closed by the soft limit while 200 others receive every message, in
order, and keep receiving while it is stuck."""

import asyncio
import json
import os
import signal
import socket
import threading
import time

import pytest

from wsgate_testing import (NO_PUBLISH_RATE, ascrape_metrics, async_test, await_metrics,
                            scrape_metrics)
from wsgate_testing.wsclient import encode_frame


async def publish_window(pub, subs, ids, pad, id_offset=1):
    """Publishes {"seq": i, "pad": pad} on "flood" for each i in ids, awaits
    every ack, then awaits every message at each healthy subscriber in `subs`
    (so their queues stay short)."""
    for i in ids:
        await pub.send({"op": "publish", "channel": "flood", "data": {"seq": i, "pad": pad},
                        "id": i + id_offset})
    for i in ids:
        a = await pub.expect(lambda o, i=i: o.get("id") == i + id_offset, what=f"ack {i + id_offset}")
        assert a.get("op") == "ack", a
    for s in subs:
        for i in ids:
            d = await s.next_message("flood", 10)
            assert d.get("seq") == i, f"healthy subscriber got seq {d.get('seq')}, expected {i}"


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
        await publish_window(pub, subs, ids, pad)

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


SOFT = 65536
SECONDS = 2.0
PAD = "s" * 16000
WINDOW = 8                    # ~128 KB per window
MARGIN = 4 * WINDOW * len(PAD)  # publish until the queue is this much above SOFT
MAX_BYTES = 16 * 1024 * 1024  # give up if the kernel absorbs this much


def runs(items):
    """Run-length text of a list: 'a, b x5, c'."""
    out = []
    for x in items:
        if out and out[-1][0] == x:
            out[-1][1] += 1
        else:
            out.append([x, 1])
    return ", ".join(f"{x}" + (f" x{n}" if n > 1 else "") for x, n in out)


def slow_count(m):
    return m.value("wsgate_disconnects_total", reason="slow_consumer")


@pytest.mark.parametrize("mode", ["embedded", "redis"])
@async_test(90)
async def test_soft_queue_limit_cuts_slow_consumer(procs, mode):
    redis = procs.redis() if mode == "redis" else None
    gw = procs.gateway("--max-queue-bytes", "64m", "--queue-soft-bytes", str(SOFT),
                       "--queue-soft-seconds", str(SECONDS), *NO_PUBLISH_RATE, redis=redis, node_id="n1")

    slow = gw.raw(rcvbuf=4096)
    assert slow.recv_json().get("op") == "welcome"
    slow.send_json({"op": "subscribe", "channel": "flood", "id": 1})
    r = slow.recv_json()
    assert r == {"op": "ack", "id": 1}, r

    subs = [await gw.connect(), await gw.connect(batch=True), await gw.connect()]
    for s in subs:
        await s.subscribe("flood")
    pub = await gw.connect()
    t_start0 = time.monotonic()
    m0 = await ascrape_metrics(gw)
    assert m0.value("wsgate_queue_bytes") == 0, m0.value("wsgate_queue_bytes")

    # Phase A: publish a window, scrape, until a scrape shows the queue more
    # than MARGIN above SOFT (MARGIN keeps the kernel taking another window or
    # so later from bringing it back under SOFT). The scrapes of phase A
    # bracket the moment the queue last passed SOFT: t_under (start of the
    # last scrape showing <= SOFT) and t_over (end of the first one after it
    # showing > SOFT). Phase B: no more publishing; scrape every 50 ms until
    # the slow-consumer disconnect is counted, at most until t_over + T + 3 s.
    seq = 0
    sent = 0
    scrapes = []              # (t_start, t_end, queue_bytes, connections, phase)
    t_under, t_over, t_cut = t_start0, None, None
    phase = "A"
    while True:
        if phase == "A":
            ids = range(seq, seq + WINDOW)
            await publish_window(pub, subs, ids, PAD, 10)
            seq += WINDOW
            sent += WINDOW * len(PAD)
        else:
            await asyncio.sleep(0.05)
        t_start = time.monotonic()
        m = await ascrape_metrics(gw)
        t_end = time.monotonic()
        if slow_count(m) > slow_count(m0):
            t_cut = t_end
            break
        q = m.value("wsgate_queue_bytes")
        scrapes.append((t_start, t_end, q, m.value("wsgate_connections"), phase))
        if phase == "A":
            if q <= SOFT:
                t_under, t_over = t_start, None
            elif t_over is None:
                t_over = t_end
            if q > SOFT + MARGIN:
                phase = "B"
            assert sent < MAX_BYTES or t_over is not None, \
                f"{sent} bytes published and the gateway queue never exceeded {SOFT} " \
                f"(last scrapes {[x[2] for x in scrapes[-10:]]})"
        if t_over is not None and t_end - t_over > SECONDS + 3:
            since = [x for x in scrapes if x[0] >= t_under]
            raise AssertionError(
                f"slow client not disconnected {SECONDS} + 3 s after its queue passed {SOFT} bytes: "
                f"wsgate_disconnects_total{{reason=\"slow_consumer\"}} unchanged; since then "
                f"(phase, wsgate_queue_bytes, wsgate_connections): "
                f"{runs([(x[4], int(x[2]), int(x[3])) for x in since])} ({len(subs) + 2} connections = "
                f"the slow client still counted as open)")

    assert t_over is not None, f"cut before the queue was seen above {SOFT}: {[x[2] for x in scrapes[-20:]]}"
    assert max(x[2] for x in scrapes) < 64 * 1024 * 1024
    held = t_cut - t_under
    assert held >= SECONDS - 0.05, \
        f"cut at most {held:.2f}s after the queue passed the soft limit (queue bytes " \
        f"{[x[2] for x in scrapes[-20:]]}); it must stay above it for {SECONDS}s first"
    print(f"{mode}: {seq} messages, queue bytes {[int(x[2]) for x in scrapes[-12:]]}; "
          f"cut between {t_cut - t_over:.2f}s and {held:.2f}s after passing {SOFT}")

    # its socket was reset or closed; a close frame, if any, says slow consumer
    res = await asyncio.to_thread(slow.drain_until_closed, 5)
    slow.close()
    if res["close"] is not None:
        assert res["close"] == (1008, "slow consumer"), f"slow consumer closed with {res['close']!r}"
    assert res["texts"] < seq, f"slow client received all {seq} messages"

    m = await ascrape_metrics(gw)
    assert m.value("wsgate_queue_bytes") == 0, f"queue bytes after the cut: {m.value('wsgate_queue_bytes')}"
    assert m.value("wsgate_connections") == len(subs) + 1
    d = {reason: m.value("wsgate_disconnects_total", reason=reason) -
         m0.value("wsgate_disconnects_total", reason=reason)
         for reason in ("client", "slow_consumer", "rate_limited", "too_large", "auth", "drain", "error")}
    assert d == {"client": 0, "slow_consumer": 1, "rate_limited": 0, "too_large": 0, "auth": 0,
                 "drain": 0, "error": 0}, f"disconnect deltas {d}"

    # the healthy subscribers still have everything and keep receiving
    await pub.publish("flood", "after")
    for s in subs:
        assert await s.next_message("flood") == "after"
        assert not [o for o in s.pending if o.get("op") == "message"], "extra messages buffered"


@async_test(60)
async def test_hard_queue_limit_releases_the_socket(procs):
    """Over --max-queue-bytes a client is cut off at once: its disconnect is
    counted and its socket reset (or closed) without it reading anything,
    while healthy subscribers keep every message."""
    hard = 256 * 1024
    gw = procs.gateway("--max-queue-bytes", str(hard), "--queue-soft-bytes", "0", *NO_PUBLISH_RATE,
                       node_id="n1")
    slow = gw.raw(rcvbuf=4096)
    assert slow.recv_json().get("op") == "welcome"
    slow.send_json({"op": "subscribe", "channel": "flood", "id": 1})
    assert slow.recv_json() == {"op": "ack", "id": 1}
    sub = await gw.subscriber("flood")
    pub = await gw.connect()
    m0 = await ascrape_metrics(gw)

    # Publish until the cut is counted. The queue may empty between windows
    # without a cut (the kernel takes up to twice --sndbuf, and a scrape can
    # land before the write round that moves it there), so only a queue that
    # stays empty while far more than the kernel can hold is published, with
    # the client still open, says the session was dropped but not counted.
    seq, sent, history = 0, 0, []
    while True:
        await publish_window(pub, [sub], range(seq, seq + WINDOW), PAD, 10)
        seq += WINDOW
        sent += WINDOW * len(PAD)
        m = await ascrape_metrics(gw)
        q = m.value("wsgate_queue_bytes")
        history.append((int(q), int(m.value("wsgate_connections"))))
        assert q <= hard, f"queue {q} bytes above the hard limit {hard}"
        if slow_count(m) > slow_count(m0):
            break
        assert sent < MAX_BYTES, \
            f"{sent} bytes published and the slow client was never cut: (wsgate_queue_bytes, " \
            f"wsgate_connections) {runs(history)}"
    assert m.value("wsgate_connections") == 2, m.value("wsgate_connections")
    res = await asyncio.to_thread(slow.drain_until_closed, 5)
    slow.close()
    if res["close"] is not None:
        assert res["close"] == (1008, "slow consumer"), f"slow consumer closed with {res['close']!r}"
    await pub.publish("flood", "after")
    assert await sub.next_message("flood") == "after"


HEALTHY = 200
MESSAGES = 150
THROTTLED_PAD = "p" * 2000          # ~2 KB a message: 300 KB for the throttled client


class Throttled:
    """Reads about rate bytes per second from the raw client until the
    gateway closes it; records how it ended."""

    def __init__(self, raw, rate=1024):
        self.raw, self.rate = raw, rate
        self.read = 0
        self.ended = None
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        sock = self.raw.sock
        sock.settimeout(1.0)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            t0 = time.monotonic()
            try:
                data = sock.recv(self.rate)
            except TimeoutError:
                continue
            except OSError as e:           # reset by the gateway
                self.ended = f"error: {e}"
                return
            if not data:
                self.ended = "eof"
                return
            self.read += len(data)
            time.sleep(max(0.0, 1.0 - (time.monotonic() - t0)))
        self.ended = "still open after 60 s"


@pytest.mark.parametrize("mode", ["embedded", "redis"])
@async_test(120)
async def test_throttled_client_cut_while_200_others_get_everything(procs, mode):
    redis = procs.redis() if mode == "redis" else None
    # --sndbuf keeps the kernel from absorbing the whole stream for the stuck
    # client, so the gateway's own queue (and its limits) sees the backlog.
    gw = procs.gateway("--queue-soft-bytes", "65536", "--queue-soft-seconds", "2",
                       "--sndbuf", "16k", "--publish-rate", "0", redis=redis, node_id="n1")

    slow = gw.raw(rcvbuf=4096)
    assert slow.recv_json().get("op") == "welcome"
    slow.send_json({"op": "subscribe", "channel": "news", "id": 1})
    assert slow.recv_json() == {"op": "ack", "id": 1}
    throttled = Throttled(slow)

    healthy = []
    for i in range(HEALTHY):
        c = await gw.connect(batch=(i % 2 == 1))
        await c.subscribe("news")
        healthy.append(c)
    pub = await gw.connect()

    async def receive_all(c):
        got = []
        while len(got) < MESSAGES:
            got.append((await c.next_message("news", timeout=30))["seq"])
        return got

    readers = [asyncio.create_task(receive_all(c)) for c in healthy]
    for seq in range(MESSAGES):
        await pub.publish("news", {"seq": seq, "pad": THROTTLED_PAD})
    results = await asyncio.gather(*readers)
    for i, got in enumerate(results):
        assert got == list(range(MESSAGES)), f"healthy client {i} got {got[:10]}..."

    m = await await_metrics(gw, lambda m: m.value("wsgate_disconnects_total", reason="slow_consumer") == 1,
                            timeout=20, what="the throttled client cut as a slow consumer")
    assert m.value("wsgate_connections") == HEALTHY + 1, m.value("wsgate_connections")
    throttled.thread.join(10)
    assert throttled.ended and throttled.ended.startswith(("eof", "error")), throttled.ended
    assert throttled.read < MESSAGES * len(THROTTLED_PAD), f"the throttled client read {throttled.read} bytes"


def test_queued_frames_leave_together(procs):
    """A subscriber that fell behind gets its queued messages joined: far fewer
    socket writes than messages (wsgate_writes_total), each message still its
    own text frame, all in order and intact, many per recv()."""
    gw = procs.gateway("--sndbuf", "4096", node_id="n1")
    r = gw.raw(rcvbuf=4096, timeout=10)
    assert r.recv_json()["op"] == "welcome"
    r.send_json({"op": "subscribe", "channel": "lag", "id": 1})
    assert r.recv_json() == {"op": "ack", "id": 1}
    n, pad = 300, "p" * 200
    w0 = scrape_metrics(gw.port).value("wsgate_writes_total")
    for i in range(n):  # over HTTP: the reader's socket is the only one written
        resp = gw.http("POST", "/api/publish", {"channel": "lag", "data": {"seq": i, "pad": pad}})
        assert resp.status == 200, resp
    # frames beyond the two small socket buffers wait in the gateway's queue
    msgs, per_recv = r.recv_messages(n)
    for msg in msgs:
        assert msg["channel"] == "lag" and msg["data"]["pad"] == pad, msg
    assert [msg["data"]["seq"] for msg in msgs] == list(range(n)), "out of order or missing"
    writes = scrape_metrics(gw.port).value("wsgate_writes_total") - w0
    assert writes <= n / 4, f"{writes} writes carried {n} messages: not joined"
    assert max(per_recv) >= 10, per_recv
    r.close()



BEHIND = 1500  # messages of 1 KB: far beyond the socket buffers, most queued


def fallen_behind(procs):
    """A gateway and a subscriber (4 KB receive buffer) that has read none of
    BEHIND messages: its socket full, lws holding the rest of a write, the
    rest queued, the gateway waiting for room. No limit cuts it off and the
    gateway does not ping it."""
    gw = procs.gateway("--publish-rate", "0", "--queue-soft-bytes", "0", "--max-queue-bytes", "64m",
                       "--ping-interval", "60", node_id="n1")
    sub = gw.raw(rcvbuf=4096)
    assert sub.recv_json()["op"] == "welcome"
    sub.send_json({"op": "subscribe", "channel": "lag", "id": 1})
    assert sub.recv_json() == {"op": "ack", "id": 1}
    pub = gw.raw()
    assert pub.recv_json()["op"] == "welcome"
    pub.sock.sendall(b"".join(
        encode_frame(0x1, json.dumps({"op": "publish", "channel": "lag",
                                      "data": {"seq": i, "pad": "p" * 1000}, "id": i}))
        for i in range(BEHIND)))
    for i in range(BEHIND):
        assert pub.recv_json() == {"op": "ack", "id": i}
    # its writes settle: the rest queued and no longer moving
    last, deadline = None, time.monotonic() + 5
    while (q := scrape_metrics(gw.port).value("wsgate_queue_bytes")) == 0 or q != last:
        assert time.monotonic() < deadline, f"queue bytes still moving or empty: {last} then {q}"
        last = q
        time.sleep(0.05)
    return gw, sub


def gateway_queues(sub):
    """(unacknowledged, unread) bytes of the gateway's end of sub's IPv4
    loopback connection: what the kernel still holds of what it sent, and
    what the client sent that it has yet to read."""
    def hexaddr(addr):
        return f"{int.from_bytes(socket.inet_aton(addr[0]), 'little'):08X}:{addr[1]:04X}"
    local, remote = hexaddr(sub.sock.getpeername()), hexaddr(sub.sock.getsockname())
    with open("/proc/net/tcp") as f:
        for line in f:
            fields = line.split()
            if fields[1:3] == [local, remote]:
                tx, rx = fields[4].split(":")
                return int(tx, 16), int(rx, 16)
    raise AssertionError(f"no {local} -> {remote} in /proc/net/tcp")


def await_gateway_unread(sub, n):
    deadline = time.monotonic() + 5
    while (left := gateway_queues(sub)[1]) != n:
        assert time.monotonic() < deadline, f"{left} bytes unread by the gateway, awaiting {n}"
        time.sleep(0.01)


def receive_everything(sub, pong):
    """Reads every message, in order, and the pongs up to `pong`; returns
    the pongs. A stall fails on the socket's 5 s timeout."""
    seqs, got = [], []
    while len(seqs) < BEHIND or pong not in got:
        fin, op, payload = sub.recv_frame()
        if op == 0xA:
            got.append(payload)
        else:
            seqs.append(json.loads(payload)["data"]["seq"])
    assert seqs == list(range(BEHIND)), "out of order or missing"
    return got


def test_subscriber_that_fell_behind_and_pings_gets_everything(procs):
    """A WebSocket ping from a subscriber that fell behind is answered in the
    write round after lws sent the rest of its write, which lws does without
    calling us back: the writable callback it still owes must follow, or the
    queue waits for the client's next frame or the gateway's own ping."""
    gw, sub = fallen_behind(procs)
    sub.sock.sendall(encode_frame(0x9, b"behind"))
    await_gateway_unread(sub, 0)  # the gateway read it while the socket is still full
    assert receive_everything(sub, b"behind") == [b"behind"]


def test_subscriber_that_fell_behind_and_pings_twice_gets_everything(procs):
    """The same when a second ping is read after the first pong took the
    owed round, before the callback came: its pong takes the next round, and
    the callback is still owed. The gateway is stopped while the subscriber
    empties its socket and sends both pings, with 5 pongs of padding between
    them so that lws (about 530 bytes a read) reads them apart, in the order
    above: the room and the first ping, then the second."""
    gw, sub = fallen_behind(procs)
    os.kill(gw.proc.pid, signal.SIGSTOP)
    try:
        # everything the kernel took from it, until its end holds none: a
        # loaded machine may move the rest slower than a read times out
        sub.sock.settimeout(0.05)
        deadline = time.monotonic() + 5
        while gateway_queues(sub)[0]:
            assert time.monotonic() < deadline, f"gateway still holds {gateway_queues(sub)[0]} bytes"
            try:
                sub.buf += sub.sock.recv(65536)
            except TimeoutError:
                pass
        sub.sock.setblocking(False)
        try:
            while chunk := sub.sock.recv(65536):
                sub.buf += chunk
        except BlockingIOError:
            pass
        sub.sock.settimeout(5)
        pings = (encode_frame(0x9, b"one") +
                 b"".join(encode_frame(0xA, b"x" * 125) for _ in range(5)) +
                 encode_frame(0x9, b"two"))
        sub.sock.sendall(pings)
        await_gateway_unread(sub, len(pings))
    finally:
        os.kill(gw.proc.pid, signal.SIGCONT)
    assert receive_everything(sub, b"two") == [b"one", b"two"]
