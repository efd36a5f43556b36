"""Owns the local cluster: deploy/local-cluster.sh (gateways, HAProxy, Redis) and HAProxy's stats."""

import os
import re
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

from .procs import REPO, WSGATE_BIN, free_port, pid_alive

LOCAL_CLUSTER = REPO / "deploy" / "local-cluster.sh"


def wsgate_bin():
    return Path(WSGATE_BIN)


class ClusterProc:
    def __init__(self, role, name, pid, addr):
        self.role, self.name, self.pid, self.addr = role, name, int(pid) if pid != "-" else None, addr

    def __repr__(self):
        return f"{self.role}:{self.name}(pid {self.pid}, {self.addr})"


class LocalCluster:
    """deploy/local-cluster.sh in the background, its stdout collected line by line."""

    def __init__(self, gateways=3, log_dir=None, env=None):
        """env: extra environment of the script (and so of HAProxy and the gateways)."""
        self.gateways = gateways
        self.env = dict(env or {})
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
                                         env=dict(os.environ, WSGATE_BIN=str(binary), **self.env))
            threading.Thread(target=self._read, daemon=True).start()
            line = self.await_line(r"wsgate cluster ready|local-cluster\.sh: ", timeout)
            if "cluster ready" in line:
                break
            self.proc.wait(timeout=15)
            if "already in use" in line and attempt < 2:
                continue  # another process took the free port in between: pick another
            raise AssertionError("local-cluster.sh failed: " + "".join(self.lines))
        self.state_file = Path(self.await_line(r"^state file: ", 1).split(": ", 1)[1].strip())
        self.procs = [ClusterProc(*l.split(None, 3)) for l in self.state_file.read_text().splitlines() if l.strip()]
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
