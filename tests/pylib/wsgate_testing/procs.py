"""Shared helpers for the wsgate integration tests.

Everything here talks to real processes: redis-server and wsgate binaries
started on free ports, driven through real sockets.

Pieces:
  * Proc        - a child process whose stdout/stderr lines are collected by
                  reader threads; wait_line() awaits a log line with a timeout.
  * Procs       - per-test registry that starts redis/gateways and stops every
                  process it started (by PID) at teardown.
  * Redis       - a redis-server on a free port, with kill()/restart() and a
                  tiny RESP client (publish, subscribe).
  * Gateway     - a wsgate process; parses its port from "listening on H:P".
  * WsClient    - async protocol client on top of the `websockets` library:
                  request()/expect()/next_message()/collect_until() buffer
                  frames that are not the awaited one.
  * RawWs       - minimal blocking WebSocket client on a plain socket (used to
                  build a consumer that stops reading, and abrupt disconnects).
  * http_request() - small blocking HTTP helper (http.client).
  * async_test  - decorator running an async test body under asyncio.run with a
                  hard overall timeout, closing every WsClient afterwards.
"""

import asyncio
import base64
import collections
import functools
import hashlib
import http.client as httpclient
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import websockets

TESTS_DIR = Path(__file__).resolve().parent
REPO = TESTS_DIR.parents[1]
WSGATE_BIN = os.environ.get("WSGATE_BIN") or str(REPO / "build" / "wsgate")
REDIS_SERVER = os.environ.get("REDIS_SERVER") or shutil.which("redis-server") or "/usr/bin/redis-server"

LINE_TIMEOUT = 10.0      # awaiting a log line ("listening on", "broker up", ...)
REPLY_TIMEOUT = 5.0      # awaiting a reply / message on a websocket
STOP_TIMEOUT = 5.0       # SIGTERM -> wait -> SIGKILL

LISTEN_RE = r"listening on [^ ]*:(\d+)"

# Tests that publish faster than the default per-connection publish rate, or
# subscribe to more channels than the default per-connection limit, start
# their gateway with these flags so they test what they are about (ordering,
# slow consumers, resubscription), not those limits.
NO_PUBLISH_RATE = ("--publish-rate", "0")
MANY_CHANNELS = ("--max-channels", "10000")


class ProcError(AssertionError):
    pass


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def child_env(extra=None):
    """Environment for children: no inherited WSGATE_* variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WSGATE_")}
    if extra:
        env.update(extra)
    return env


def require_binary():
    import pytest
    if not (os.path.isfile(WSGATE_BIN) and os.access(WSGATE_BIN, os.X_OK)):
        pytest.fail(f"wsgate binary not found at {WSGATE_BIN} (set WSGATE_BIN or build it)")


def run_wsgate(args, env=None, timeout=5):
    """Runs wsgate to completion (for flag checks): the CompletedProcess, with
    bytes stdout/stderr. A run that does not exit in time is a failure."""
    require_binary()
    try:
        return subprocess.run([WSGATE_BIN, *args], stdin=subprocess.DEVNULL, capture_output=True,
                              env=child_env(env), cwd=str(REPO), timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"wsgate {' '.join(args)} did not exit within {timeout}s "
                             f"(a bad value accepted?); stderr so far: {e.stderr!r}") from None


# --------------------------------------------------------------------------
# processes
# --------------------------------------------------------------------------

class Proc:
    """A child process; every output line is kept (tag 'err' or 'out')."""

    def __init__(self, name, argv, env=None, cwd=None):
        self.name = name
        self.argv = list(argv)
        self.lines = []
        self.cond = threading.Condition()
        self._eof = 0
        self.p = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  env=env if env is not None else child_env(), cwd=cwd)
        self.pid = self.p.pid
        self._threads = [
            threading.Thread(target=self._reader, args=(self.p.stdout, "out"), daemon=True),
            threading.Thread(target=self._reader, args=(self.p.stderr, "err"), daemon=True),
        ]
        for t in self._threads:
            t.start()

    def _reader(self, f, tag):
        try:
            for raw in iter(f.readline, b""):
                text = raw.decode("utf-8", "replace").rstrip("\r\n")
                with self.cond:
                    self.lines.append((tag, text))
                    self.cond.notify_all()
        except (ValueError, OSError):
            pass
        finally:
            with self.cond:
                self._eof += 1
                self.cond.notify_all()

    def mark(self):
        """Index to pass as `start` to only look at lines printed from now on."""
        with self.cond:
            return len(self.lines)

    def wait_line(self, pattern, timeout=LINE_TIMEOUT, start=0):
        """Block until a line (from index `start`) matches regex `pattern`."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        idx = start
        with self.cond:
            while True:
                while idx < len(self.lines):
                    m = rx.search(self.lines[idx][1])
                    idx += 1
                    if m:
                        return m
                if self._eof >= 2:
                    rc = self.p.poll()
                    raise ProcError(f"{self.name} closed its output (exit status {rc}) before printing "
                                    f"a line matching {pattern!r}\n{self.dump()}")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise ProcError(f"timed out after {timeout}s waiting for {self.name} to print a line "
                                    f"matching {pattern!r}\n{self.dump()}")
                self.cond.wait(remaining)

    def has_line(self, pattern, start=0):
        rx = re.compile(pattern)
        with self.cond:
            return any(rx.search(t) for _, t in self.lines[start:])

    def text(self, tag=None):
        with self.cond:
            return "\n".join(t for g, t in self.lines if tag is None or g == tag)

    def alive(self):
        return self.p.poll() is None

    def send_signal(self, sig):
        if self.p.poll() is None:
            self.p.send_signal(sig)

    def wait(self, timeout):
        return self.p.wait(timeout)

    def stop(self, sig=signal.SIGTERM, timeout=STOP_TIMEOUT):
        if self.p.poll() is None:
            try:
                self.p.send_signal(sig)
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(timeout)
        for t in self._threads:
            t.join(2)
        for f in (self.p.stdout, self.p.stderr):
            try:
                f.close()
            except Exception:
                pass

    def dump(self, last=150):
        with self.cond:
            lines = self.lines[-last:]
        head = f"--- {self.name} pid={self.pid} rc={self.p.poll()} argv={' '.join(self.argv)}"
        return "\n".join([head] + [f"[{g}] {t}" for g, t in lines])


class Procs:
    """Per-test process registry. close() stops everything it started."""

    def __init__(self, tmpdir):
        self.tmpdir = Path(tmpdir)
        self.all = []
        self._n = 0

    def spawn(self, name, argv, env=None, cwd=None):
        p = Proc(name, argv, env=env, cwd=cwd)
        self.all.append(p)
        return p

    def redis(self):
        return Redis(self)

    def gateway(self, *args, redis=None, node_id=None, wait_listen=True, wait_broker=True,
                env=None, cwd=None, listen="127.0.0.1:0", name=None):
        return Gateway(self, args, redis=redis, node_id=node_id, wait_listen=wait_listen,
                       wait_broker=wait_broker, env=env, cwd=cwd, listen=listen, name=name)

    def next_name(self, base):
        self._n += 1
        return f"{base}#{self._n}"

    def dump(self):
        return "\n".join(p.dump() for p in self.all)

    def close(self):
        errors = []
        for p in reversed(self.all):
            try:
                p.stop()
            except Exception as e:  # keep stopping the others
                errors.append(f"{p.name}: {e!r}")
        if errors:
            raise RuntimeError("failed to stop: " + "; ".join(errors))


# --------------------------------------------------------------------------
# redis
# --------------------------------------------------------------------------

class RespConn:
    """Minimal blocking RESP2 client."""

    def __init__(self, port, timeout=5.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.f = self.sock.makefile("rb")

    def send(self, *args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            if isinstance(a, str):
                a = a.encode()
            elif isinstance(a, int):
                a = str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        self.sock.sendall(b"".join(out))

    def read(self):
        line = self.f.readline()
        if not line:
            raise ConnectionError("redis closed the connection")
        t, rest = line[:1], line[1:-2]
        if t == b"+":
            return rest.decode()
        if t == b"-":
            raise RuntimeError("redis error: " + rest.decode())
        if t == b":":
            return int(rest)
        if t == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self.f.read(n + 2)
            return data[:-2]
        if t == b"*":
            n = int(rest)
            return None if n < 0 else [self.read() for _ in range(n)]
        raise RuntimeError(f"bad RESP line {line!r}")

    def call(self, *args):
        self.send(*args)
        return self.read()

    def settimeout(self, t):
        self.sock.settimeout(t)

    def close(self):
        try:
            self.f.close()
            self.sock.close()
        except OSError:
            pass


class Redis:
    def __init__(self, procs, port=None):
        self.procs = procs
        self.dir = procs.tmpdir / f"redis-{id(self)}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.proc = None
        fixed = port is not None
        for attempt in range(5):
            self.port = port if fixed else free_port()
            try:
                self._start()
                return
            except ProcError:
                if fixed or attempt == 4:
                    raise
                self.proc.stop()

    def _start(self):
        argv = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--daemonize", "no", "--dir", str(self.dir)]
        self.proc = self.procs.spawn(self.procs.next_name(f"redis:{self.port}"), argv)
        self.proc.wait_line(r"Ready to accept connections")

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}"

    def kill(self):
        """SIGKILL by PID and reap."""
        self.proc.p.kill()
        self.proc.p.wait(STOP_TIMEOUT)

    def restart(self):
        """Start a new redis-server on the same port."""
        assert not self.proc.alive()
        deadline = time.monotonic() + 10
        while True:
            try:
                self._start()
                return
            except ProcError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)   # back off before retrying the port

    def conn(self):
        return RespConn(self.port)

    def publish(self, channel, payload):
        c = self.conn()
        try:
            return c.call("PUBLISH", channel, payload)
        finally:
            c.close()


# --------------------------------------------------------------------------
# gateway
# --------------------------------------------------------------------------

class HttpResp:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return f"<HTTP {self.status} {self.headers.get('content-type')} {self.body[:300]!r}>"


def http_request(port, method, path, body=None, headers=None, timeout=5.0):
    if isinstance(body, (dict, list)):
        body = json.dumps(body)
    if isinstance(body, str):
        body = body.encode()
    hdrs = {"Connection": "close"}
    if body is not None:
        hdrs["Content-Type"] = "application/json"
    hdrs.update(headers or {})
    c = httpclient.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request(method, path, body=body, headers=hdrs)
        r = c.getresponse()
        data = r.read()
        return HttpResp(r.status, {k.lower(): v for k, v in r.getheaders()}, data)
    finally:
        c.close()


class Gateway:
    def __init__(self, procs, args, redis=None, node_id=None, wait_listen=True, wait_broker=True,
                 env=None, cwd=None, listen="127.0.0.1:0", name=None):
        require_binary()
        argv = [WSGATE_BIN]
        if listen is not None:
            argv += ["--listen", listen]
        if redis is not None:
            argv += ["--redis", redis.url]
        if node_id is not None:
            argv += ["--node-id", node_id]
        argv += list(args)
        self.redis = redis
        self.proc = procs.spawn(procs.next_name(name or f"wsgate:{node_id or ''}"), argv,
                                env=child_env(env), cwd=str(cwd or REPO))
        self.port = None
        if wait_listen:
            m = self.proc.wait_line(LISTEN_RE)
            self.port = int(m.group(1))
            if redis is not None and wait_broker:
                self.proc.wait_line(r"broker up")

    # --- urls / http
    def ws_url(self, batch=False, path="/ws"):
        return f"ws://127.0.0.1:{self.port}{path}" + ("?batch=1" if batch else "")

    def http(self, method, path, body=None, headers=None, timeout=5.0):
        return http_request(self.port, method, path, body=body, headers=headers, timeout=timeout)

    async def ahttp(self, method, path, body=None, headers=None, timeout=5.0):
        return await asyncio.to_thread(self.http, method, path, body, headers, timeout)

    async def publish_http(self, channel, data):
        r = await self.ahttp("POST", "/api/publish", {"channel": channel, "data": data})
        return r

    async def await_line(self, pattern, timeout=LINE_TIMEOUT, start=0):
        return await asyncio.to_thread(self.proc.wait_line, pattern, timeout, start)

    async def connect(self, batch=False, **kw):
        return await WsClient.connect(self.ws_url(batch=batch), batch=batch, **kw)

    def raw(self, **kw):
        return RawWs(self.port, **kw)


# --------------------------------------------------------------------------
# async websocket client
# --------------------------------------------------------------------------

_open_clients = []


class WsClient:
    """Protocol client. Frames are split into JSON objects (one per frame
    unless batch=True, then '\\n'-separated) and buffered in arrival order;
    expect() takes the first buffered or arriving object matching a predicate
    and leaves the others buffered, in order."""

    def __init__(self, ws, batch):
        self.ws = ws
        self.batch = batch
        self.pending = collections.deque()
        self.frames = 0          # number of text frames received
        self.objects = 0         # number of objects received
        self.welcome = None
        self._id = 0

    @classmethod
    async def connect(cls, url, batch=False, timeout=REPLY_TIMEOUT, welcome=True, **kw):
        opts = dict(max_size=None, max_queue=None, ping_interval=None, close_timeout=2,
                    compression=None, open_timeout=timeout)
        opts.update(kw)
        ws = await asyncio.wait_for(websockets.connect(url, **opts), timeout)
        c = cls(ws, batch)
        _open_clients.append(c)
        if welcome:
            w = await c.recv(timeout)
            assert w.get("op") == "welcome", f"first frame is not a welcome: {w!r}"
            assert isinstance(w.get("node"), str) and w["node"], f"bad welcome node: {w!r}"
            assert isinstance(w.get("session"), str) and w["session"], f"bad welcome session: {w!r}"
            c.welcome = w
        return c

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

    async def expect(self, pred, timeout=REPLY_TIMEOUT, what="a matching object"):
        for i, o in enumerate(self.pending):
            if pred(o):
                del self.pending[i]
                return o
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}; "
                                     f"buffered (last 10): {list(self.pending)[-10:]!r}")
            try:
                objs = await self._read(remaining)
            except asyncio.TimeoutError:
                continue
            except websockets.ConnectionClosed as e:
                raise AssertionError(f"connection closed ({e}) while waiting for {what}; "
                                     f"buffered (last 10): {list(self.pending)[-10:]!r}") from None
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
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}; "
                                     f"received before it: {before[-10:]!r}")
            try:
                objs = await self._read(remaining)
            except asyncio.TimeoutError:
                continue
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
        return await self.expect(lambda o: o.get("op") in ("ack", "pong", "error") and o.get("id") == rid
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
        assert m == {"op": "message", "channel": channel, "data": m.get("data")} and "data" in m, \
            f"malformed message frame: {m!r}"
        return m["data"]

    async def expect_message(self, channel, data, timeout=REPLY_TIMEOUT):
        """Wait for the message on `channel` whose data equals `data`."""
        m = await self.expect(lambda o: o.get("op") == "message" and o.get("channel") == channel
                              and o.get("data") == data, timeout,
                              what=f"message {data!r} on {channel!r}")
        assert m == {"op": "message", "channel": channel, "data": data}, f"malformed message frame: {m!r}"
        return m

    async def before_sentinel(self, channel, data, timeout=REPLY_TIMEOUT):
        """All objects received before the sentinel message (channel, data)."""
        return await self.collect_until(
            lambda o: o.get("op") == "message" and o.get("channel") == channel and o.get("data") == data,
            timeout, what=f"sentinel {data!r} on {channel!r}")

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


def is_message(channel, data=None):
    def pred(o):
        return o.get("op") == "message" and o.get("channel") == channel and (data is None or o.get("data") == data)
    return pred


# --------------------------------------------------------------------------
# raw websocket client (blocking)
# --------------------------------------------------------------------------

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def encode_frame(opcode, payload, fin=True, mask=True):
    if isinstance(payload, str):
        payload = payload.encode()
    b0 = (0x80 if fin else 0) | opcode
    n = len(payload)
    mbit = 0x80 if mask else 0
    if n < 126:
        hdr = bytes([b0, mbit | n])
    elif n < 65536:
        hdr = bytes([b0, mbit | 126]) + n.to_bytes(2, "big")
    else:
        hdr = bytes([b0, mbit | 127]) + n.to_bytes(8, "big")
    if not mask:
        return hdr + payload
    key = os.urandom(4)
    k = (key * (n // 4 + 1))[:n]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(k, "big")).to_bytes(n, "big") if n else b""
    return hdr + key + masked


def parse_frame(buf):
    """(fin, opcode, payload, consumed) or None if buf holds no full frame."""
    if len(buf) < 2:
        return None
    fin = bool(buf[0] & 0x80)
    opcode = buf[0] & 0x0F
    masked = bool(buf[1] & 0x80)
    n = buf[1] & 0x7F
    pos = 2
    if n == 126:
        if len(buf) < 4:
            return None
        n = int.from_bytes(buf[2:4], "big")
        pos = 4
    elif n == 127:
        if len(buf) < 10:
            return None
        n = int.from_bytes(buf[2:10], "big")
        pos = 10
    key = None
    if masked:
        if len(buf) < pos + 4:
            return None
        key = buf[pos:pos + 4]
        pos += 4
    if len(buf) < pos + n:
        return None
    payload = bytes(buf[pos:pos + n])
    if key:
        payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return fin, opcode, payload, pos + n


class RawWs:
    """Blocking minimal WebSocket client on a plain socket."""

    def __init__(self, port, path="/ws", rcvbuf=None, timeout=5.0):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            # must be set before connect() so the advertised window stays small
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        req = (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n")
        self.sock.sendall(req.encode())
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise AssertionError(f"connection closed during handshake: {buf!r}")
            buf += chunk
        head, _, rest = buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        assert " 101 " in lines[0] + " ", f"handshake failed: {head!r}"
        hdrs = {l.split(":", 1)[0].strip().lower(): l.split(":", 1)[1].strip() for l in lines[1:] if ":" in l}
        expect = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
        assert hdrs.get("sec-websocket-accept") == expect, f"bad Sec-WebSocket-Accept: {head!r}"
        self.buf = bytearray(rest)

    def send_text(self, text):
        self.sock.sendall(encode_frame(0x1, text))

    def send_json(self, obj):
        self.send_text(json.dumps(obj))

    def recv_frame(self):
        while True:
            r = parse_frame(self.buf)
            if r:
                fin, op, payload, used = r
                del self.buf[:used]
                return fin, op, payload
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("EOF")
            self.buf += chunk

    def recv_json(self):
        while True:
            fin, op, payload = self.recv_frame()
            if op == 0x1:
                assert fin, "fragmented server text frame not supported by RawWs"
                return json.loads(payload)
            if op == 0x8:
                raise ConnectionError(f"close frame {payload!r}")
            # ignore ping/pong

    def drain_until_closed(self, timeout):
        """Read (and discard) until EOF/reset. Returns a dict with the number of
        bytes read, the text frames parsed, the close code/reason if a close
        frame was seen, and how the stream ended. Raises AssertionError if the
        server has not closed within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        total = 0
        texts = 0
        close = None
        ended = None
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"server did not close the connection within {timeout}s "
                                     f"(read {total} bytes, {texts} text frames)")
            self.sock.settimeout(min(remaining, 1.0))
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                continue
            except ConnectionResetError:
                ended = "reset"
                break
            if not chunk:
                ended = "eof"
                break
            total += len(chunk)
            self.buf += chunk
            while True:
                r = parse_frame(self.buf)
                if not r:
                    break
                fin, op, payload, used = r
                del self.buf[:used]
                if op == 0x1:
                    texts += 1
                elif op == 0x8 and close is None:
                    code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else None
                    close = (code, payload[2:].decode("utf-8", "replace"))
        return {"bytes": total, "texts": texts, "close": close, "ended": ended}

    def close(self, reset=False):
        try:
            if reset:
                import struct
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.sock.close()
        except OSError:
            pass


# --------------------------------------------------------------------------
# Prometheus text format (0.0.4) and raw upgrade requests (hardening tests)
# --------------------------------------------------------------------------

_PROM_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_PROM_LABEL = r"[a-zA-Z_][a-zA-Z0-9_]*"
_PROM_TYPES = ("counter", "gauge", "histogram", "summary", "untyped")
_PROM_FLOAT = re.compile(r"^[+-]?(?:Inf|NaN|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)$")


def _prom_float(s, where):
    if not _PROM_FLOAT.match(s):
        raise AssertionError(f"bad sample value {s!r} in {where!r}")
    return float(s)


def _prom_labels(s, where):
    """Parses the inside of {...}: name="value",... with \\\\, \\" and \\n escapes."""
    labels = {}
    i = 0
    rx_name = re.compile(_PROM_LABEL)
    while i < len(s):
        m = rx_name.match(s, i)
        if not m:
            raise AssertionError(f"bad label name at {s[i:]!r} in {where!r}")
        name = m.group(0)
        i = m.end()
        if s[i:i + 2] != '="':
            raise AssertionError(f"expected =\" after label {name!r} in {where!r}")
        i += 2
        val = []
        while True:
            if i >= len(s):
                raise AssertionError(f"unterminated label value in {where!r}")
            ch = s[i]
            if ch == "\\":
                nxt = s[i + 1:i + 2]
                if nxt not in ("\\", '"', "n"):
                    raise AssertionError(f"bad escape \\{nxt} in label value in {where!r}")
                val.append("\n" if nxt == "n" else nxt)
                i += 2
            elif ch == '"':
                i += 1
                break
            elif ch == "\n":
                raise AssertionError(f"raw newline in label value in {where!r}")
            else:
                val.append(ch)
                i += 1
        if name in labels:
            raise AssertionError(f"label {name!r} twice in {where!r}")
        labels[name] = "".join(val)
        if i < len(s):
            if s[i] != ",":
                raise AssertionError(f"expected ',' between labels in {where!r}")
            i += 1
    return labels


class PromMetrics:
    """Result of parse_prometheus(): families {name: {"type", "help",
    "samples": [(sample_name, labels, value)]}} and a sample lookup."""

    def __init__(self, families, samples):
        self.families = families
        self.samples = samples       # {(sample_name, frozenset(labels.items())): value}

    def value(self, name, **labels):
        key = (name, frozenset(labels.items()))
        if key not in self.samples:
            have = sorted(f"{n}{dict(l)}" for n, l in self.samples if n == name)
            raise AssertionError(f"no sample {name}{labels or ''} in /metrics (samples of that name: {have})")
        return self.samples[key]

    def type_of(self, name):
        return self.families[name]["type"]


def parse_prometheus(text):
    """Strict parser of the Prometheus text exposition format 0.0.4. Raises
    AssertionError on anything malformed: syntax, a sample whose metric has
    no TYPE line (declared before its first sample), HELP/TYPE twice, a
    family's samples not contiguous, duplicate samples, counters < 0, and
    histograms whose buckets are not cumulative, do not end in le="+Inf" or
    whose +Inf bucket differs from _count (or lack _sum/_count)."""
    assert text.endswith("\n"), "exposition does not end with a newline"
    families = {}
    samples = {}
    finished = set()          # families whose sample block is over
    current = None            # family of the previous sample
    rx_sample = re.compile(rf"^({_PROM_NAME})(?:\{{(.*)\}})?[ \t]+(\S+)(?:[ \t]+(-?\d+))?$")

    def family_of(sample_name):
        if sample_name in families and families[sample_name]["type"] not in ("histogram", "summary"):
            return sample_name
        for suffix in ("_bucket", "_sum", "_count"):
            if sample_name.endswith(suffix):
                base = sample_name[:-len(suffix)]
                if base in families and families[base]["type"] == "histogram":
                    return base
                if base in families and families[base]["type"] == "summary" and suffix != "_bucket":
                    return base
        if sample_name in families and families[sample_name]["type"] == "summary":
            return sample_name
        return None

    for lineno, line in enumerate(text[:-1].split("\n"), 1):
        where = f"line {lineno}: {line}"
        if line == "":
            continue
        if line.startswith("#"):
            parts = line.split(None, 3)
            if len(parts) >= 2 and parts[1] in ("HELP", "TYPE"):
                if len(parts) < 3 or not re.fullmatch(_PROM_NAME, parts[2]):
                    raise AssertionError(f"bad {parts[1]} line ({where})")
                name = parts[2]
                fam = families.setdefault(name, {"type": None, "help": None, "samples": []})
                if fam["samples"]:
                    raise AssertionError(f"{parts[1]} for {name} after its samples ({where})")
                if parts[1] == "HELP":
                    if fam["help"] is not None:
                        raise AssertionError(f"second HELP for {name} ({where})")
                    fam["help"] = parts[3] if len(parts) > 3 else ""
                else:
                    if fam["type"] is not None:
                        raise AssertionError(f"second TYPE for {name} ({where})")
                    if len(parts) != 4 or parts[3] not in _PROM_TYPES:
                        raise AssertionError(f"bad TYPE line ({where})")
                    fam["type"] = parts[3]
            continue     # other comments are allowed
        m = rx_sample.match(line)
        if not m:
            raise AssertionError(f"malformed sample ({where})")
        sname, lbl, val = m.group(1), m.group(2), m.group(3)
        labels = _prom_labels(lbl, where) if lbl else {}
        value = _prom_float(val, where)
        fname = family_of(sname)
        if fname is None or families[fname]["type"] is None:
            raise AssertionError(f"sample {sname} has no TYPE line declaring its metric ({where})")
        if fname != current:
            if fname in finished:
                raise AssertionError(f"samples of {fname} are not contiguous ({where})")
            if current is not None:
                finished.add(current)
            current = fname
        key = (sname, frozenset(labels.items()))
        if key in samples:
            raise AssertionError(f"duplicate sample ({where})")
        samples[key] = value
        families[fname]["samples"].append((sname, labels, value))
        if families[fname]["type"] == "counter" and not value >= 0:
            raise AssertionError(f"counter below 0 ({where})")

    for fname, fam in families.items():
        if fam["type"] != "histogram":
            continue
        series = {}
        for sname, labels, value in fam["samples"]:
            rest = frozenset((k, v) for k, v in labels.items() if k != "le")
            s = series.setdefault(rest, {"buckets": [], "sum": None, "count": None})
            if sname == fname + "_bucket":
                if "le" not in labels:
                    raise AssertionError(f"{fname}_bucket without le label")
                s["buckets"].append((_prom_float(labels["le"], f"le of {fname}"), labels["le"], value))
            elif sname == fname + "_sum":
                s["sum"] = value
            elif sname == fname + "_count":
                s["count"] = value
        if not series:
            raise AssertionError(f"histogram {fname} has no samples")
        for rest, s in series.items():
            b = s["buckets"]
            if not b:
                raise AssertionError(f"histogram {fname}{dict(rest)} has no buckets")
            les = [x[0] for x in b]
            if les != sorted(les) or len(set(les)) != len(les):
                raise AssertionError(f"histogram {fname} buckets not in increasing le order: {les}")
            if b[-1][1] != "+Inf":
                raise AssertionError(f"histogram {fname} does not end with le=\"+Inf\": {b[-1]}")
            vals = [x[2] for x in b]
            if any(v2 < v1 for v1, v2 in zip(vals, vals[1:])):
                raise AssertionError(f"histogram {fname} buckets not cumulative: {vals}")
            if s["count"] is None or s["sum"] is None:
                raise AssertionError(f"histogram {fname} lacks _count or _sum")
            if vals[-1] != s["count"]:
                raise AssertionError(f"histogram {fname}: +Inf bucket {vals[-1]} != _count {s['count']}")
    return PromMetrics(families, samples)


def scrape_metrics(port, timeout=5.0):
    """GET /metrics and parse it strictly."""
    r = http_request(port, "GET", "/metrics", timeout=timeout)
    assert r.status == 200, f"/metrics: {r!r}"
    return parse_prometheus(r.body.decode("utf-8"))


async def ascrape_metrics(gw, timeout=5.0):
    return await asyncio.to_thread(scrape_metrics, gw.port, timeout)


def raw_upgrade(port, headers=None, path="/ws", timeout=5.0):
    """Sends a WebSocket upgrade request with extra `headers` and returns the
    answer's head as an HttpResp (status, lower-cased headers, body = what
    followed the head in the first reads) with `.line`, the status line. The
    socket is closed."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        key = base64.b64encode(os.urandom(16)).decode()
        req = (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n")
        for k, v in (headers or {}).items():
            req += f"{k}: {v}\r\n"
        s.sendall((req + "\r\n").encode())
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = s.recv(4096)
            if not chunk:
                raise AssertionError(f"connection closed before an HTTP answer to the upgrade: {buf!r}")
            buf += chunk
        head, _, rest = buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        assert len(parts) >= 2 and parts[0].startswith("HTTP/1.") and parts[1].isdigit(), \
            f"bad status line {lines[0]!r}"
        hdrs = {l.split(":", 1)[0].strip().lower(): l.split(":", 1)[1].strip() for l in lines[1:] if ":" in l}
        r = HttpResp(int(parts[1]), hdrs, rest)
        r.line = lines[0]
        return r
    finally:
        s.close()


async def await_metrics(gw, pred, timeout=5.0, what="a /metrics condition", interval=0.05):
    """Scrapes /metrics until pred(metrics) is true; returns those metrics.
    For state the gateway reaches asynchronously (a close it has to notice)."""
    deadline = time.monotonic() + timeout
    while True:
        m = await ascrape_metrics(gw)
        if pred(m):
            return m
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(interval)
