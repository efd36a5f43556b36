"""Small helpers shared by the fault tests: steady traffic, readiness and
resubscription timing, RSS, and a redis-server with extra arguments (and an
optional command prefix, e.g. `ip netns exec NS`)."""

import asyncio
import json
import socket
import time

from wsgate_helpers import REDIS_SERVER, Redis, RespConn

TRAFFIC_PERIOD = 0.02   # one publish every 20 ms


class RedisX(Redis):
    """Redis with extra server arguments, a bind address and a command prefix."""

    def __init__(self, procs, extra=(), prefix=(), host="127.0.0.1", port=None):
        self.extra = list(extra)
        self.prefix = list(prefix)
        self.host = host
        super().__init__(procs, port=port)

    def _start(self):
        argv = self.prefix + [REDIS_SERVER, "--port", str(self.port), "--bind", self.host,
                              "--save", "", "--appendonly", "no", "--daemonize", "no",
                              "--dir", str(self.dir)] + self.extra
        self.proc = self.procs.spawn(self.procs.next_name(f"redis:{self.port}"), argv)
        self.proc.wait_line(r"Ready to accept connections")

    @property
    def url(self):
        return f"redis://{self.host}:{self.port}"

    def conn(self, timeout=5.0):
        return resp_conn(self, timeout)


def resp_conn(redis, timeout=5.0):
    """A RespConn to any Redis above (RespConn itself knows 127.0.0.1 only)."""
    c = RespConn.__new__(RespConn)
    c.sock = socket.create_connection((getattr(redis, "host", "127.0.0.1"), redis.port),
                                      timeout=timeout)
    c.f = c.sock.makefile("rb")
    return c


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


async def await_readyz(gw, status, deadline_s, t0=None):
    """Polls /readyz every 10 ms until it answers `status`; returns the
    seconds since t0 (default: now)."""
    t0 = time.monotonic() if t0 is None else t0
    last = None
    while True:
        try:
            last = await gw.ahttp("GET", "/readyz", timeout=1.0)
            if last.status == status:
                return time.monotonic() - t0
        except OSError as e:
            last = e
        if time.monotonic() - t0 > deadline_s:
            raise AssertionError(f"/readyz not {status} within {deadline_s}s; last: {last!r}")
        await asyncio.sleep(0.01)   # poll period, bounded by the deadline


async def await_resubscribed(redis, sub, channel, deadline_s, t0):
    """Publishes numbered probes straight into Redis every 20 ms until `sub`
    (a client of the gateway subscribed to `channel`) receives one: the
    gateway is subscribed again, end to end. (PUBLISH's receiver count
    would not do: after a partition Redis may still count the gateway's
    stale connection.) Returns the seconds since t0."""
    sent = set()

    def probe(i):
        try:
            c = resp_conn(redis, timeout=1.0)
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
