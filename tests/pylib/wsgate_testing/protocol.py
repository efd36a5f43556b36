"""Owns the async protocol-v1 client (on `websockets`) and the async_test decorator."""

import asyncio
import collections
import functools
import json
import time

import websockets

from .procs import REPLY_TIMEOUT


_open_clients = []

# The ops of frames that answer a request (and echo its id).
REPLY_OPS = ("ack", "pong", "error", "presence", "presence_stats")


class WsClient:
    """Protocol client. Frames are split into JSON objects (one per frame
    unless batch=True, then '\\n'-separated) and buffered in arrival order;
    expect() takes the first buffered or arriving object matching a predicate
    and leaves the others buffered, in order."""

    def __init__(self, ws, batch, label=""):
        self.ws = ws
        self.batch = batch
        self.label = label       # a name for messages, e.g. "client3"
        self.pending = collections.deque()
        self.frames = 0          # number of text frames received
        self.objects = 0         # number of objects received
        self.welcome = None
        self._id = 0

    @classmethod
    async def connect(cls, url, batch=False, timeout=REPLY_TIMEOUT, welcome=True, label="", **kw):
        opts = dict(max_size=None, max_queue=None, ping_interval=None, close_timeout=2,
                    compression=None, open_timeout=timeout)
        opts.update(kw)
        ws = await asyncio.wait_for(websockets.connect(url, **opts), timeout)
        c = cls(ws, batch, label)
        _open_clients.append(c)
        if welcome:
            w = await c.recv(timeout)
            assert w.get("op") == "welcome", f"first frame is not a welcome: {w!r}"
            assert isinstance(w.get("node"), str) and w["node"], f"bad welcome node: {w!r}"
            assert isinstance(w.get("session"), str) and w["session"], f"bad welcome session: {w!r}"
            c.welcome = w
        return c

    @property
    def node(self):
        """Node id from the welcome."""
        return self.welcome["node"]

    def next_id(self):
        self._id += 1
        return self._id

    # --- sending
    async def send(self, obj):
        await self.ws.send(json.dumps(obj, ensure_ascii=False, separators=(",", ":")))

    async def send_raw(self, data):
        await self.ws.send(data)

    # --- receiving
    def _split(self, msg):
        if isinstance(msg, bytes):
            raise AssertionError(f"server sent a binary frame: {msg[:200]!r}")
        self.frames += 1
        parts = [p for p in msg.split("\n") if p.strip()] if self.batch else [msg]
        objs = []
        for p in parts:
            try:
                o = json.loads(p)
            except ValueError as e:
                raise AssertionError(f"server frame is not valid JSON ({e}): {msg[:500]!r}")
            if not isinstance(o, dict) or not isinstance(o.get("op"), str):
                raise AssertionError(f"server frame object without string op: {p[:500]!r}")
            objs.append(o)
        if not objs:
            raise AssertionError(f"empty server frame: {msg!r}")
        self.objects += len(objs)
        return objs

    async def _read(self, timeout):
        msg = await asyncio.wait_for(self.ws.recv(), timeout)
        return self._split(msg)

    async def recv(self, timeout=REPLY_TIMEOUT):
        """Next object (buffered first)."""
        if not self.pending:
            try:
                self.pending.extend(await self._read(timeout))
            except asyncio.TimeoutError:
                raise AssertionError(f"no frame within {timeout}s") from None
        return self.pending.popleft()

    async def _frames(self, timeout, what, seen):
        """Yields the objects of each frame arriving within `timeout`; fails
        naming `what` and the last of `seen` on timeout or a close."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}; "
                                     f"seen (last 10): {list(seen)[-10:]!r}")
            try:
                objs = await self._read(remaining)
            except asyncio.TimeoutError:
                continue
            except websockets.ConnectionClosed as e:
                raise AssertionError(f"connection closed ({e}) while waiting for {what}; "
                                     f"seen (last 10): {list(seen)[-10:]!r}") from None
            yield objs

    async def expect(self, pred, timeout=REPLY_TIMEOUT, what="a matching object"):
        """The first buffered or arriving object matching `pred`; the others
        stay buffered, in order."""
        for i, o in enumerate(self.pending):
            if pred(o):
                del self.pending[i]
                return o
        async for objs in self._frames(timeout, what, self.pending):
            found = None
            for o in objs:
                if found is None and pred(o):
                    found = o
                else:
                    self.pending.append(o)
            if found is not None:
                return found

    async def collect_until(self, pred, timeout=REPLY_TIMEOUT, what="the sentinel"):
        """Return every object that arrives before the first one matching
        `pred` (which is consumed). Objects after it stay buffered."""
        before = []
        while self.pending:
            o = self.pending.popleft()
            if pred(o):
                return before
            before.append(o)
        async for objs in self._frames(timeout, what, before):
            for i, o in enumerate(objs):
                if pred(o):
                    self.pending.extend(objs[i + 1:])
                    return before
                before.append(o)

    # --- requests
    async def request(self, obj, timeout=REPLY_TIMEOUT):
        """Send obj with an id (added if missing) and return the reply that
        echoes it; other frames stay buffered."""
        obj = dict(obj)
        if "id" not in obj:
            obj["id"] = self.next_id()
        rid = obj["id"]
        await self.send(obj)
        return await self.expect(lambda o: o.get("op") in REPLY_OPS and o.get("id") == rid
                                 and type(o.get("id")) is type(rid),
                                 timeout, what=f"reply to {obj!r}")

    async def ok(self, obj, timeout=REPLY_TIMEOUT):
        r = await self.request(obj, timeout)
        assert r.get("op") == "ack", f"expected ack for {obj!r}, got {r!r}"
        return r

    async def subscribe(self, channel):
        return await self.ok({"op": "subscribe", "channel": channel})

    async def unsubscribe(self, channel):
        return await self.ok({"op": "unsubscribe", "channel": channel})

    async def publish(self, channel, data):
        return await self.ok({"op": "publish", "channel": channel, "data": data})

    async def ping(self, timeout=REPLY_TIMEOUT):
        r = await self.request({"op": "ping"}, timeout)
        assert r.get("op") == "pong", f"expected pong, got {r!r}"
        return r

    async def error(self, obj, code, timeout=REPLY_TIMEOUT):
        """Send a request expected to fail with `code`; return the error."""
        r = await self.request(obj, timeout)
        assert r.get("op") == "error" and r.get("code") == code, \
            f"expected error {code!r} for {obj!r}, got {r!r}"
        assert isinstance(r.get("message"), str), f"error without a message text: {r!r}"
        return r

    async def next_message(self, channel, timeout=REPLY_TIMEOUT):
        """Data of the next message on `channel` (other objects stay buffered)."""
        m = await self.expect(lambda o: o.get("op") == "message" and o.get("channel") == channel,
                              timeout, what=f"a message on {channel!r}")
        assert "data" in m and well_formed_message(m, channel, m["data"]), f"malformed message frame: {m!r}"
        return m["data"]

    async def expect_message(self, channel, data, timeout=REPLY_TIMEOUT):
        """Wait for the message on `channel` whose data equals `data`."""
        m = await self.expect(lambda o: o.get("op") == "message" and o.get("channel") == channel
                              and o.get("data") == data, timeout,
                              what=f"message {data!r} on {channel!r}")
        assert well_formed_message(m, channel, data), f"malformed message frame: {m!r}"
        return m

    async def before_sentinel(self, channel, data, timeout=REPLY_TIMEOUT):
        """All objects received before the sentinel message (channel, data)."""
        return await self.collect_until(
            lambda o: o.get("op") == "message" and o.get("channel") == channel and o.get("data") == data,
            timeout, what=f"sentinel {data!r} on {channel!r}")

    async def only_before_sentinel(self, channel, data, expected=(), timeout=REPLY_TIMEOUT):
        """Asserts that exactly the objects `expected` arrive before the
        sentinel message (channel, data)."""
        before = await self.before_sentinel(channel, data, timeout)
        assert before == list(expected), \
            f"before sentinel {data!r} on {channel!r}: expected {list(expected)!r}, got {before!r}"

    async def expect_close(self, code, reason=None, allowed=lambda o: False, timeout=REPLY_TIMEOUT):
        """Reads until the server closes; every frame before the close (the
        buffered ones too) must satisfy `allowed`. Checks the close code and,
        unless None, the reason."""
        seen = list(self.pending)
        self.pending.clear()
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"connection not closed within {timeout}s; frames: {seen[-10:]!r}")
            try:
                seen.extend(await self._read(remaining))
            except asyncio.TimeoutError:
                continue
            except websockets.ConnectionClosed:
                break
        bad = [o for o in seen if not allowed(o)]
        assert not bad, f"unexpected frames before the close: {bad[:10]!r}"
        await self.wait_closed(3)
        got = (self.ws.close_code, self.ws.close_reason)
        assert got[0] == code and reason in (None, got[1]), \
            f"closed with {got[0]} {got[1]!r}, expected {code} {reason!r}"

    async def wait_closed(self, timeout=REPLY_TIMEOUT):
        """Wait until the server closes; return the close code seen."""
        try:
            await asyncio.wait_for(self.ws.wait_closed(), timeout)
        except asyncio.TimeoutError:
            raise AssertionError(f"connection not closed within {timeout}s") from None
        return self.ws.close_code

    async def close(self):
        try:
            await asyncio.wait_for(self.ws.close(), 3)
        except Exception:
            pass


async def connect_retrying(url, label, timeout=15):
    """Connects like a real client after losing its gateway: retries with a
    short, growing backoff until a welcome arrives or timeout passes."""
    deadline = time.monotonic() + timeout
    delay = 0.05
    last = None
    while time.monotonic() < deadline:
        try:
            return await WsClient.connect(url, label=label, timeout=max(0.5, deadline - time.monotonic()))
        except (OSError, asyncio.TimeoutError, websockets.WebSocketException, AssertionError) as e:
            last = e
        await asyncio.sleep(delay)  # client backoff between attempts, not a wait for an event
        delay = min(delay * 2, 1.0)
    raise AssertionError(f"{label}: could not reconnect in {timeout}s: {last!r}")


async def close_all_clients():
    cs = list(_open_clients)
    _open_clients.clear()
    await asyncio.gather(*(c.close() for c in cs), return_exceptions=True)


def async_test(timeout=30):
    """Decorator: run an `async def` test with asyncio.run and a hard timeout."""
    def deco(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            async def main():
                try:
                    return await asyncio.wait_for(fn(*args, **kwargs), timeout)
                except asyncio.TimeoutError:
                    raise AssertionError(f"test exceeded its overall timeout of {timeout}s") from None
                finally:
                    await close_all_clients()
            return asyncio.run(main())
        return wrapper
    return deco


def well_formed_message(m, channel, data):
    """m is the delivery of data on channel: op, channel and data, plus a
    position (offset and epoch) when the channel keeps history."""
    plain = {"op": "message", "channel": channel, "data": data}
    pos = {k: v for k, v in m.items() if k not in plain}
    return {k: m.get(k) for k in plain} == plain and "data" in m and (
        not pos or (set(pos) == {"offset", "epoch"} and isinstance(pos["offset"], int)
                    and pos["offset"] > 0 and isinstance(pos["epoch"], str)))


def is_message(channel, data=None):
    def pred(o):
        return o.get("op") == "message" and o.get("channel") == channel and (data is None or o.get("data") == data)
    return pred
