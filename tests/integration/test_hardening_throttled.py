"""A client throttled to about 1 KB/s is closed as a slow consumer while 200
others receive every message, in order (issue: slow consumers).

The throttled client is a raw socket with a small receive buffer, read by a
thread 1 KB per second. The gateway's soft limit (--queue-soft-bytes held for
--queue-soft-seconds) must cut it; nobody else may lose or reorder a message,
and the healthy clients keep receiving while the throttled one is stuck."""

import asyncio
import threading
import time

import pytest

from wsgate_testing import async_test, await_metrics

HEALTHY = 200
MESSAGES = 150
PAD = "p" * 2000          # ~2 KB a message: 300 KB for the throttled client


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
        await pub.publish("news", {"seq": seq, "pad": PAD})
    results = await asyncio.gather(*readers)
    for i, got in enumerate(results):
        assert got == list(range(MESSAGES)), f"healthy client {i} got {got[:10]}..."

    m = await await_metrics(gw, lambda m: m.value("wsgate_disconnects_total", reason="slow_consumer") == 1,
                            timeout=20, what="the throttled client cut as a slow consumer")
    assert m.value("wsgate_connections") == HEALTHY + 1, m.value("wsgate_connections")
    throttled.thread.join(10)
    assert throttled.ended and throttled.ended.startswith(("eof", "error")), throttled.ended
    assert throttled.read < MESSAGES * len(PAD), f"the throttled client read {throttled.read} bytes"
