"""Descriptor exhaustion: a gateway under a low RLIMIT_NOFILE, held open by
more idle TCP connections than it has descriptors. It must not spin (CPU
stays low, a handful of log lines), it refuses new connections with an
HTTP 503 (or closes them) while full, and once the connections go a new
WebSocket client works again. Raw sockets that never upgrade count: the cap
is on every client socket, not only on WebSocket sessions."""

import os
import shutil
import socket
import time

import pytest

from wsgate_testing import WSGATE_BIN, RawWs, cpu_seconds
from wsgate_testing.gateway import LISTEN_RE
from wsgate_testing.procs import child_env, require_binary

NOFILE = 64
HOLD = 120            # idle connections, about twice the descriptor limit
WINDOW = 2.0          # seconds of CPU measured while full


def open_fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def try_http(port):
    """'ok', '503' or 'refused' (closed or reset without an answer)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = b""
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
    except (ConnectionResetError, BrokenPipeError, socket.timeout):
        return "refused"
    if data.startswith(b"HTTP/1.1 200"):
        return "ok"
    if data.startswith(b"HTTP/1.1 503"):
        return "503"
    return "refused" if not data else data[:40].decode("latin-1")


def test_descriptor_exhaustion_no_spin_then_recovery(procs):
    require_binary()
    prlimit = shutil.which("prlimit")
    if not prlimit:
        pytest.skip("prlimit (util-linux) not found")
    argv = [prlimit, f"--nofile={NOFILE}:{NOFILE}", "--", WSGATE_BIN,
            "--listen", "127.0.0.1:0", "--node-id", "fd"]
    gw = procs.spawn("wsgate:fd", argv, env=child_env())
    m = gw.wait_line(LISTEN_RE + r".* holds up to (\d+) connections .* (\d+) client sockets")
    port = int(m.group(1))
    # the startup line says what the descriptor limit allows: half of a tiny one
    assert int(m.group(2)) == int(m.group(3)) == NOFILE // 2, m.group(0)

    held = []
    try:
        for _ in range(HOLD):
            s = socket.create_connection(("127.0.0.1", port), timeout=2)
            held.append(s)
        # The gateway has taken what it can hold (the rest were answered and
        # closed): wait until its descriptor count stops growing.
        deadline = time.monotonic() + 5
        last = -1
        while time.monotonic() < deadline:
            n = open_fds(gw.pid)
            if n == last:
                break
            last = n
            time.sleep(0.1)   # poll the count, bounded by the deadline
        assert open_fds(gw.pid) <= NOFILE

        mark = gw.mark()
        c0, t0 = cpu_seconds(gw.pid), time.monotonic()
        answers = [try_http(port) for _ in range(5)]
        # the window: the gateway holds every descriptor it may
        time.sleep(max(0.0, WINDOW - (time.monotonic() - t0)))   # measuring CPU over a fixed window
        cpu = (cpu_seconds(gw.pid) - c0) / (time.monotonic() - t0)
        lines = len(gw.lines) - mark
        print(f"fd exhaustion: cpu {cpu * 100:.1f}% over {WINDOW}s, {lines} log lines, "
              f"new connections: {answers}, fds {open_fds(gw.pid)}/{NOFILE}")
        assert gw.alive(), gw.dump()
        assert cpu < 0.10, f"gateway used {cpu * 100:.0f}% of a core while out of descriptors"
        assert lines <= 5, f"{lines} log lines in {WINDOW}s:\n{gw.dump(20)}"
        assert all(a in ("503", "refused") for a in answers), answers
        assert "503" in answers, f"no new connection got a 503: {answers}"
        assert gw.has_line(r"descriptor limit"), gw.dump(20)
    finally:
        for s in held:
            s.close()

    # Recovery: once the idle sockets are gone a WebSocket client works.
    deadline = time.monotonic() + 5
    while True:
        try:
            ws = RawWs(port, timeout=2)
            break
        except (AssertionError, OSError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)   # retry until the gateway has seen the closes
    try:
        assert ws.recv_json()["op"] == "welcome"
        ws.send_json({"op": "ping", "id": 1})
        assert ws.recv_json() == {"op": "pong", "id": 1}
    finally:
        ws.close()
    assert try_http(port) == "ok"


def test_accept_emfile_pauses_the_listener(procs):
    """Static downloads that stall (the client does not read) hold a file
    descriptor each beside their socket, so accept() itself meets EMFILE
    before the socket cap: the listener pauses (100 ms doubling to 1 s)
    instead of spinning, one warning line says so, and service resumes once
    the descriptors are free."""
    require_binary()
    prlimit = shutil.which("prlimit")
    if not prlimit:
        pytest.skip("prlimit (util-linux) not found")
    root = procs.tmpdir / "web"
    root.mkdir()
    (root / "big.bin").write_bytes(os.urandom(8 << 20))
    argv = [prlimit, f"--nofile={NOFILE}:{NOFILE}", "--", WSGATE_BIN,
            "--listen", "127.0.0.1:0", "--node-id", "fd", "--web-root", str(root)]
    gw = procs.spawn("wsgate:fd", argv, env=child_env())
    port = int(gw.wait_line(LISTEN_RE).group(1))
    held = []
    try:
        for _ in range(40):
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.connect(("127.0.0.1", port))
            s.sendall(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
            held.append(s)
        for _ in range(40):
            held.append(socket.create_connection(("127.0.0.1", port), timeout=2))
        gw.wait_line(r"accept failed \(Too many open files\), pausing the listener", timeout=5)
        mark = gw.mark()
        c0, t0 = cpu_seconds(gw.pid), time.monotonic()
        time.sleep(WINDOW)   # measuring CPU over a fixed window
        cpu = (cpu_seconds(gw.pid) - c0) / (time.monotonic() - t0)
        lines = len(gw.lines) - mark
        print(f"accept EMFILE: cpu {cpu * 100:.1f}% over {WINDOW}s, {lines} log lines, "
              f"fds {open_fds(gw.pid)}/{NOFILE}")
        assert gw.alive(), gw.dump()
        assert cpu < 0.10, f"gateway used {cpu * 100:.0f}% of a core while accept() failed"
        assert lines <= 2, f"{lines} log lines in {WINDOW}s:\n{gw.dump(20)}"
    finally:
        for s in held:
            s.close()
    deadline = time.monotonic() + 5
    while try_http(port) != "ok":
        assert time.monotonic() < deadline, "no recovery after the descriptors were freed"
        time.sleep(0.05)   # retry until the listener has resumed
