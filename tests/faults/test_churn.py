"""Connect/close churn: several threads open and drop connections as fast
as they can (bare TCP, half-sent requests, full WebSocket upgrades dropped
without a close frame, clean WebSocket closes) for CHURN_SECONDS. The
gateway stays up, connected bystanders keep publishing, receiving and
answering pings throughout (a new connection may wait in the accept backlog
behind the churn: that is overload, not a fault), and afterwards the gateway's descriptor count is back to
its baseline (nothing leaked: sessions, lingering closes, HTTP sockets).

The bystander's round trips are judged against a control run on the same
machine at the same moment: the same churn aimed at another gateway for
CONTROL_SECONDS first, so a loaded machine (every process slower) raises the
bound, while a gateway that lets the churn hold its established clients
(before the accept loop yielded: up to 1.7 s) still fails."""

import base64
import multiprocessing
import os
import socket
import struct
import time

from wsgate_testing import NO_PUBLISH_RATE, async_test, cpu_seconds, encode_frame

CHURN_SECONDS = 20     # the issue asks for 20 s
CONTROL_SECONDS = 10   # the same churn at another gateway, for the bounds
THREADS = 4           # churning processes


def churn(port, stop, out, kind):
    """One churning process (not a thread: the GIL would slow the bystander
    and make the gateway look slow)."""
    key = base64.b64encode(os.urandom(16)).decode()
    upgrade = (f"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode()
    n = 0
    while not stop.is_set():
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=2)
            if kind == 1:
                s.sendall(b"GET /ws HTTP/1.1\r\nHost:")
            elif kind >= 2:
                s.sendall(upgrade)
                s.recv(4096)
                if kind == 3:
                    s.sendall(encode_frame(0x8, b"\x03\xe8"))
            if kind in (0, 2):   # drop with a reset
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()
            n += 1
        except OSError:
            out.put(("errors", 1))
    out.put((kind, n))


def fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


async def bystand(port, bystander, publisher, seconds):
    """Churns at port for `seconds` while the bystander pings, publishes and
    receives; returns the sorted round trips and the churn counts."""
    ctx = multiprocessing.get_context("fork")
    stop, out = ctx.Event(), ctx.Queue()
    threads = [ctx.Process(target=churn, args=(port, stop, out, k % 4), daemon=True)
               for k in range(THREADS)]
    for t in threads:
        t.start()
    t0 = time.monotonic()
    rtts = []
    while time.monotonic() - t0 < seconds:
        p0 = time.monotonic()
        await bystander.ping()
        await publisher.publish("calm", {"t": p0})
        await bystander.expect_message("calm", {"t": p0})
        rtts.append(time.monotonic() - p0)
    stop.set()
    counts = {}
    for t in threads:
        t.join(10)
        if t.is_alive():
            t.kill()   # by PID, never by name
    while not out.empty():
        k, n = out.get()
        counts[k] = counts.get(k, 0) + n
    return sorted(rtts), counts


def pct(xs, q):
    return xs[min(len(xs) - 1, int(len(xs) * q))]


@async_test(120)
async def test_connect_close_churn(procs):
    gw = procs.gateway(*NO_PUBLISH_RATE, node_id="ch")
    other = procs.gateway(*NO_PUBLISH_RATE, node_id="ct")
    bystander = await gw.connect()
    publisher = await gw.connect()
    await bystander.subscribe("calm")
    control, _ = await bystand(other.port, bystander, publisher, CONTROL_SECONDS)
    base = fds(gw.proc.pid)
    t0, c0 = time.monotonic(), cpu_seconds(gw.proc.pid)
    rtts, counts = await bystand(gw.port, bystander, publisher, CHURN_SECONDS)
    elapsed = time.monotonic() - t0
    cpu = (cpu_seconds(gw.proc.pid) - c0) / elapsed
    p50, p90, p99, worst = pct(rtts, 0.5), pct(rtts, 0.9), pct(rtts, 0.99), rtts[-1]
    # The bounds on a quiet box: 100 ms, 250 ms and 1 s (the control's p90
    # is about 1 ms there); a loaded one raises them with the control. One
    # round trip may exceed the last, by less than as much again: a process
    # the scheduler put aside on a loaded box (seen: 1.3 s once in 1,900,
    # control max 161 ms). An accept loop that does not yield held the
    # bystander 3.1 s in one go (and up to 1.7 s, repeatedly, before).
    p90_bound = max(0.1, 3 * pct(control, 0.9))
    p99_bound = max(0.25, 3 * pct(control, 0.99))
    worst_bound = max(1.0, 3 * control[-1])
    total = sum(v for k, v in counts.items() if k != "errors")
    deadline = time.monotonic() + 15   # lingering closes end within 2 s on a quiet box
    while fds(gw.proc.pid) > base and time.monotonic() < deadline:
        time.sleep(0.05)   # closes and lingering sockets finishing, bounded
    left = fds(gw.proc.pid)
    print(f"churn: {total} connections in {elapsed:.1f} s ({total / elapsed:.0f}/s), "
          f"{counts.get('errors', 0)} client errors, gateway CPU {cpu * 100:.0f}%, bystander ping+publish+delivery "
          f"p50 {p50 * 1000:.1f} ms p90 {p90 * 1000:.1f} ms p99 {p99 * 1000:.1f} ms max {worst * 1000:.0f} ms "
          f"({len(rtts)} pings; churn at another gateway: p90 {pct(control, 0.9) * 1000:.1f} ms "
          f"p99 {pct(control, 0.99) * 1000:.1f} ms max {control[-1] * 1000:.0f} ms), "
          f"descriptors {base} before, {left} after")
    assert gw.proc.alive(), gw.proc.dump()
    assert left <= base, f"descriptors leaked: {base} before, {left} after"
    # Before the accept loop yielded (32 accepts a turn) a flood of
    # connects held established clients for up to 1.7 s.
    assert p90 < p90_bound, \
        f"bystander p90 round trip {p90 * 1000:.0f} ms during churn (bound {p90_bound * 1000:.0f} ms)"
    assert p99 < p99_bound, \
        f"bystander p99 round trip {p99 * 1000:.0f} ms during churn (bound {p99_bound * 1000:.0f} ms)"
    slow = [r for r in rtts if r >= worst_bound]
    assert len(slow) <= 1 and worst < 2 * worst_bound, \
        f"bystander round trips of {slow} s during churn (bound {worst_bound:.2f}s, one up to twice that)"
    await bystander.ping()
