"""Helpers for the cluster tests: run deploy/local-cluster.sh, read its state,
query HAProxy's stats socket, and drive protocol-v1 WebSocket clients.

Everything waits on an event (a line printed, a frame received, a state seen)
with a bounded deadline; nothing sleeps in place of an event. Processes are
stopped by PID only.
"""
import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import websockets

REPO = Path(__file__).resolve().parents[2]
LOCAL_CLUSTER = REPO / "deploy" / "local-cluster.sh"


def wsgate_bin():
    return Path(os.environ.get("WSGATE_BIN", REPO / "build" / "wsgate"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not reaped yet) counts as gone.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_until(pred, timeout, what, interval=0.05):
    """Poll pred() until it is truthy; fail after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class Proc:
    def __init__(self, role, name, pid, addr):
        self.role, self.name, self.pid, self.addr = role, name, int(pid) if pid != "-" else None, addr

    def __repr__(self):
        return f"{self.role}:{self.name}(pid {self.pid}, {self.addr})"


class LocalCluster:
    """deploy/local-cluster.sh in the background, its stdout collected line by line."""

    def __init__(self, gateways=3, log_dir=None):
        self.gateways = gateways
        self.log_dir = Path(log_dir) if log_dir else None
        self.port = None
        self.proc = None
        self.lines = []
        self._cv = threading.Condition()
        self.state_file = None
        self.procs = []

    # -- lifecycle -------------------------------------------------------
    def start(self, timeout=30):
        binary = wsgate_bin()
        if not binary.exists():
            raise AssertionError(f"{binary} not found: build first (cmake -S . -B build && cmake --build build)")
        for attempt in range(3):
            self.port = free_port()
            args = [str(LOCAL_CLUSTER), "--gateways", str(self.gateways), "--port", str(self.port)]
            if self.log_dir:
                args += ["--log-dir", str(self.log_dir)]
            self.lines = []
            self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, text=True, bufsize=1,
                                         env=dict(os.environ, WSGATE_BIN=str(binary)))
            threading.Thread(target=self._read, daemon=True).start()
            line = self.await_line(r"wsgate cluster ready|local-cluster\.sh: ", timeout)
            if "cluster ready" in line:
                break
            self.proc.wait(timeout=15)
            if "already in use" in line and attempt < 2:
                continue  # another process took the free port in between: pick another
            raise AssertionError("local-cluster.sh failed: " + "".join(self.lines))
        self.state_file = Path(self.await_line(r"^state file: ", 1).split(": ", 1)[1].strip())
        self.procs = [Proc(*l.split(None, 3)) for l in self.state_file.read_text().splitlines() if l.strip()]
        return self

    def _read(self):
        for line in self.proc.stdout:
            with self._cv:
                self.lines.append(line)
                self._cv.notify_all()
        with self._cv:
            self.lines.append("<eof>\n")
            self._cv.notify_all()

    def await_line(self, pattern, timeout, start=0):
        """Return the first output line at index >= start matching pattern."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cv:
            i = start
            while True:
                while i < len(self.lines):
                    if rx.search(self.lines[i]):
                        return self.lines[i]
                    if self.lines[i] == "<eof>\n":
                        raise AssertionError(f"local-cluster.sh ended before /{pattern}/:\n" + "".join(self.lines))
                    i += 1
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no line /{pattern}/ in {timeout}s; output:\n" + "".join(self.lines))
                self._cv.wait(left)

    def mark(self):
        with self._cv:
            return len(self.lines)

    def stop(self, timeout=30):
        """SIGTERM the script and wait; if that fails, kill what it started by PID.
        Returns the PIDs still alive afterwards (should be none)."""
        if self.proc is None:
            return []
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                for p in self.procs:
                    if p.pid and pid_alive(p.pid):
                        os.kill(p.pid, signal.SIGKILL)
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self.proc.stdout:
            self.proc.stdout.close()
        return [p for p in self.procs if p.pid and pid_alive(p.pid)]

    # -- state -------------------------------------------------------------
    @property
    def url(self):
        return f"ws://127.0.0.1:{self.port}/ws"

    def gateway(self, name):
        return next(p for p in self.procs if p.role == "gateway" and p.name == name)

    @property
    def gateway_names(self):
        return [p.name for p in self.procs if p.role == "gateway"]

    @property
    def stats_socket(self):
        return next(p.addr for p in self.procs if p.role == "stats")

    def server_status(self):
        """{server name: status} of the gateways backend, from HAProxy's 'show stat'."""
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(5)
            s.connect(self.stats_socket)
            s.sendall(b"show stat\n")
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        rows = data.decode().splitlines()
        head = rows[0].lstrip("# ").split(",")
        out = {}
        for row in rows[1:]:
            f = dict(zip(head, row.split(",")))
            if f.get("pxname") == "gateways" and f.get("svname") not in ("BACKEND", None):
                out[f["svname"]] = f["status"]
        return out


class Client:
    """A protocol-v1 client: a reader task files acks by id and queues messages."""

    def __init__(self, url, label=""):
        self.url, self.label = url, label
        self.ws = None
        self.node = None
        self.messages = asyncio.Queue()
        self.acks = {}
        self.closed = None  # asyncio.Future -> (code, reason)
        self._ids = 0
        self._reader = None

    async def connect(self, timeout=10):
        loop = asyncio.get_running_loop()
        self.ws = await asyncio.wait_for(websockets.connect(self.url, close_timeout=2), timeout)
        self.closed = loop.create_future()
        welcome = json.loads(await asyncio.wait_for(self.ws.recv(), timeout))
        assert welcome.get("op") == "welcome", welcome
        self.node = welcome["node"]
        self._reader = asyncio.create_task(self._read())
        return self

    async def _read(self):
        try:
            async for raw in self.ws:
                for line in raw.split("\n"):
                    if not line:
                        continue
                    frame = json.loads(line)
                    op = frame.get("op")
                    if op in ("ack", "error", "pong") and frame.get("id") in self.acks:
                        fut = self.acks.pop(frame["id"])
                        if not fut.done():
                            fut.set_result(frame)
                    elif op == "message":
                        self.messages.put_nowait(frame)
        except websockets.ConnectionClosed:
            pass
        finally:
            if not self.closed.done():
                self.closed.set_result((self.ws.close_code, self.ws.close_reason))
            for fut in self.acks.values():
                if not fut.done():
                    fut.set_exception(ConnectionError("closed"))

    async def request(self, frame, timeout=10):
        self._ids += 1
        frame = dict(frame, id=self._ids)
        fut = asyncio.get_running_loop().create_future()
        self.acks[self._ids] = fut
        await self.ws.send(json.dumps(frame))
        reply = await asyncio.wait_for(fut, timeout)
        assert reply.get("op") == "ack", f"{self.label}: {frame} -> {reply}"
        return reply

    async def subscribe(self, channel):
        return await self.request({"op": "subscribe", "channel": channel})

    async def publish(self, channel, data):
        return await self.request({"op": "publish", "channel": channel, "data": data})

    async def expect(self, predicate, timeout=10):
        """Return the first queued message for which predicate(data) holds."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                raise AssertionError(f"{self.label} on {self.node}: no matching message in {timeout}s")
            try:
                msg = await asyncio.wait_for(self.messages.get(), left)
            except asyncio.TimeoutError:
                continue
            if predicate(msg["data"]):
                return msg

    async def close(self):
        if self.ws is not None:
            await self.ws.close()
        if self._reader is not None:
            await asyncio.wait_for(self._reader, 5)


async def connect_retrying(url, label, timeout=15):
    """Connect like a real client after losing its gateway: retry with a short,
    growing backoff until a welcome arrives or timeout passes."""
    deadline = time.monotonic() + timeout
    delay = 0.05
    last = None
    while time.monotonic() < deadline:
        try:
            return await Client(url, label).connect(timeout=max(0.5, deadline - time.monotonic()))
        except (OSError, asyncio.TimeoutError, websockets.WebSocketException, AssertionError) as e:
            last = e
        await asyncio.sleep(delay)  # client backoff between attempts, not a wait for an event
        delay = min(delay * 2, 1.0)
    raise AssertionError(f"{label}: could not reconnect through the LB in {timeout}s: {last!r}")
