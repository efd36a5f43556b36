"""Owns processes: paths, free ports, child processes stopped by PID, redis-server, wsgate runs."""

import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

from .resp import RespConn

REPO = Path(__file__).resolve().parents[3]
WSGATE_BIN = os.environ.get("WSGATE_BIN") or str(REPO / "build" / "wsgate")
REDIS_SERVER = os.environ.get("REDIS_SERVER") or shutil.which("redis-server") or "/usr/bin/redis-server"

LINE_TIMEOUT = 10.0      # awaiting a log line ("listening on", "broker up", ...)
REPLY_TIMEOUT = 5.0      # awaiting a reply / message on a websocket
STOP_TIMEOUT = 5.0       # SIGTERM -> wait -> SIGKILL


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


def pid_alive(pid):
    """True while `pid` runs (a zombie, exited but not reaped, counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def cpu_seconds(pid):
    """CPU seconds `pid` has run so far, to the nanosecond (/proc/PID/schedstat;
    /proc/PID/stat counts in 10 ms ticks)."""
    with open(f"/proc/{pid}/schedstat") as f:
        return int(f.read().split()[0]) / 1e9


def rss_kb(pid):
    """Resident set size of `pid` in kB (/proc/PID/status VmRSS)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


def wait_until(pred, timeout, what, interval=0.05):
    """Polls pred() until it is truthy and returns that; fails after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


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

    def wait_lines(self, pattern, count, timeout=LINE_TIMEOUT):
        """Block until `count` lines match regex `pattern`."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self.cond:
            while sum(1 for _, t in self.lines if rx.search(t)) < count:
                remaining = deadline - time.monotonic()
                if self._eof >= 2 or remaining <= 0:
                    raise ProcError(f"{self.name}: {count} line(s) matching {pattern!r} not seen "
                                    f"(exit status {self.p.poll()})\n{self.dump()}")
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
                env=None, cwd=None, listen="127.0.0.1:0", name=None, api_insecure=True,
                prefix=()):
        from .gateway import Gateway   # gateway.py builds on this module
        return Gateway(self, args, redis=redis, node_id=node_id, wait_listen=wait_listen,
                       wait_broker=wait_broker, env=env, cwd=cwd, listen=listen, name=name,
                       api_insecure=api_insecure, prefix=prefix)

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


class Redis:
    """A redis-server on a free port (or `port`). `extra`: more server
    arguments; `prefix`: a command it runs under (e.g. ip netns exec NS);
    `host`: the address it binds and is reached at."""

    def __init__(self, procs, port=None, extra=(), prefix=(), host="127.0.0.1"):
        self.procs = procs
        self.extra = list(extra)
        self.prefix = list(prefix)
        self.host = host
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
        argv = self.prefix + [
            REDIS_SERVER, "--port", str(self.port), "--bind", self.host, "--save", "",
            "--appendonly", "no", "--daemonize", "no", "--dir", str(self.dir)] + self.extra
        self.proc = self.procs.spawn(self.procs.next_name(f"redis:{self.port}"), argv)
        self.proc.wait_line(r"Ready to accept connections")

    @property
    def url(self):
        return f"redis://{self.host}:{self.port}"

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

    def conn(self, timeout=5.0):
        return RespConn(self.port, timeout=timeout, host=self.host)

    def publish(self, channel, payload):
        c = self.conn()
        try:
            return c.call("PUBLISH", channel, payload)
        finally:
            c.close()
