"""Helpers of the fault tests only: steady publish traffic with its outcomes,
and resubscription timing (the general harness is tests/pylib/wsgate_testing)."""

import asyncio
import json
import time

TRAFFIC_PERIOD = 0.02   # one publish every 20 ms


async def await_resubscribed(redis, sub, channel, deadline_s, t0):
    """Publishes numbered probes straight into Redis every 20 ms until `sub`
    (a client of the gateway subscribed to `channel`) receives one: the
    gateway is subscribed again, end to end. (PUBLISH's receiver count
    would not do: after a partition Redis may still count the gateway's
    stale connection.) Returns the seconds since t0."""
    sent = set()

    def probe(i):
        try:
            c = redis.conn(timeout=1.0)
        except OSError:
            return
        try:
            c.call("PUBLISH", "wsgate:" + channel, json.dumps({"probe": i}))
            sent.add(i)
        except (OSError, ConnectionError, RuntimeError):
            pass
        finally:
            c.close()

    def is_probe(o):
        return (o.get("op") == "message" and o.get("channel") == channel
                and isinstance(o.get("data"), dict) and o["data"].get("probe") in sent)
    i = 0
    while True:
        i += 1
        await asyncio.to_thread(probe, i)
        try:
            await sub.expect(is_probe, timeout=0.02, what="a probe")
            return time.monotonic() - t0
        except AssertionError:
            pass
        if time.monotonic() - t0 > deadline_s:
            raise AssertionError(f"gateway not resubscribed to {channel!r} within {deadline_s}s")


async def await_refusals(traffic, since, timeout, n=3):
    """Until traffic has seen n publishes refused with broker_unavailable
    since `since` (monotonic seconds); fails after timeout seconds."""
    t = time.monotonic()
    while traffic.outcomes(since).get("broker_unavailable", 0) < n:
        assert time.monotonic() - t < timeout, traffic.outcomes(since)
        await asyncio.sleep(0.02)   # poll period, bounded above


async def await_backoff_cap(gw, mark, retries=5):
    """Until the gateway has logged `retries` reconnect attempts since log
    line `mark` (100 ms doubling to its cap): a recovery then meets the
    slowest retry."""
    while True:
        n = len(gw.proc.lines)
        if sum(1 for _, t in gw.proc.lines[mark:n] if "retry in" in t) >= retries:
            return
        await gw.await_line(r"retry in", timeout=5, start=n)


class Traffic:
    """A publisher sending one publish every TRAFFIC_PERIOD over its
    WebSocket, recording (time, outcome) with outcome 'ack' or an error
    code; a subscriber on the same channel counts what it receives."""

    def __init__(self, pub, channel):
        self.pub = pub
        self.channel = channel
        self.results = []
        self.task = None
        self.n = 0

    def start(self):
        self.task = asyncio.ensure_future(self._run())

    async def _run(self):
        while True:
            self.n += 1
            r = await self.pub.request({"op": "publish", "channel": self.channel,
                                        "data": {"n": self.n}}, timeout=5.0)
            self.results.append((time.monotonic(), "ack" if r["op"] == "ack" else r.get("code")))
            await asyncio.sleep(TRAFFIC_PERIOD)   # the traffic's pace

    async def stop(self):
        self.task.cancel()
        try:
            await self.task
        except asyncio.CancelledError:
            pass

    def outcomes(self, since=0.0):
        out = {}
        for t, o in self.results:
            if t >= since:
                out[o] = out.get(o, 0) + 1
        return out

    def outage(self):
        """(first refused, first ack after it) times, or None."""
        first = None
        for t, o in self.results:
            if o != "ack" and first is None:
                first = t
            elif o == "ack" and first is not None:
                return first, t
        return (first, None) if first else None

    async def await_ack_after(self, t0, deadline_s):
        while True:
            if any(t >= t0 and o == "ack" for t, o in self.results):
                return
            if time.monotonic() - t0 > deadline_s:
                raise AssertionError(f"no publish acked within {deadline_s}s: {self.outcomes(t0)}")
            await asyncio.sleep(0.02)   # poll period, bounded by the deadline
