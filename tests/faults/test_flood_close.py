"""A client that floods publishes through its rate limit is closed with 1008
"rate limited", and it receives that close frame before the TCP connection
ends. The gateway stops handing its data to the application, lws sends the
close frame and awaits the client's close (dropping data frames meanwhile,
at most 5 s), and after lws closes the gateway keeps the socket half-open
(FIN sent) discarding input until the client's EOF or 2 s: the client's data
still in flight never turns the close into a reset that destroys the close
frame. The raw clients here never answer the close, so each of them ends on
lws's 5 s close-ack timeout."""

import asyncio
import json
import socket
import threading
import time

import websockets

from wsgate_testing import async_test, encode_frame, parse_frame


def flood(sock, frame, stop, stats):
    """Sends frame as fast as the socket takes it until stop is set or the
    send fails."""
    try:
        while not stop.is_set():
            sock.sendall(frame * 64)
            stats["sent"] += 64
    except OSError as e:
        stats["send_error"] = repr(e)


def run_flood(gw, keep_sending_after_close):
    """Floods publishes while reading; returns the close frame seen (code,
    reason), how the stream ended and the error frames counted. A client
    that keeps sending goes on for 1 s after the close frame."""
    raw = gw.raw(timeout=5.0)
    stop = threading.Event()
    stats = {"sent": 0, "send_error": None}
    frame = encode_frame(0x1, json.dumps({"op": "publish", "channel": "flood", "data": "x" * 64}))
    t = threading.Thread(target=flood, args=(raw.sock, frame, stop, stats), daemon=True)
    t.start()
    try:
        res = {"close": None, "ended": None, "errors": 0}
        deadline = time.monotonic() + 10
        close_at = None
        raw.sock.settimeout(0.5)
        while time.monotonic() < deadline:
            if close_at is not None and not keep_sending_after_close:
                stop.set()
            if close_at is not None and time.monotonic() - close_at > 1.0:
                stop.set()
            try:
                chunk = raw.sock.recv(65536)
            except socket.timeout:
                continue
            except ConnectionResetError:
                res["ended"] = "reset"
                break
            if not chunk:
                res["ended"] = "eof"
                break
            raw.buf += chunk
            while (r := parse_frame(raw.buf)):
                fin, op, payload, used = r
                del raw.buf[:used]
                if op == 0x1:
                    o = json.loads(payload)
                    if o.get("op") == "error":
                        res["errors"] += 1
                elif op == 0x8 and res["close"] is None:
                    res["close"] = (int.from_bytes(payload[:2], "big"), payload[2:].decode())
                    close_at = time.monotonic()
        res["ended"] = res["ended"] or "timeout"
        res.update(stats)
        return res
    finally:
        stop.set()
        t.join(5)
        raw.close()


def test_flood_sees_1008_then_eof(procs):
    gw = procs.gateway("--publish-rate", "10", "--publish-burst", "20", node_id="n1")
    res = run_flood(gw, keep_sending_after_close=False)
    print("flood result:", res)
    assert res["close"] == (1008, "rate limited"), res
    assert res["ended"] in ("eof", "reset"), res
    gw.proc.wait_line(r"rate limited")


def test_flood_that_ignores_the_close_still_sees_1008(procs):
    gw = procs.gateway("--publish-rate", "10", "--publish-burst", "20", node_id="n1")
    res = run_flood(gw, keep_sending_after_close=True)
    print("flood result:", res)
    assert res["close"] == (1008, "rate limited"), res
    assert res["ended"] in ("eof", "reset"), res


def test_flood_that_reads_late_still_sees_1008(procs):
    """The harshest client: it only sends until the gateway has cut it off
    (and 300 ms beyond), then reads. Before the lingering close, the server
    closed with that client's data unread; the kernel answered with a reset
    and the reset discarded the close frame waiting in the client's receive
    buffer (1006)."""
    gw = procs.gateway("--publish-rate", "10", "--publish-burst", "20", node_id="n1")
    raw = gw.raw(timeout=5.0)
    frame = encode_frame(0x1, json.dumps({"op": "publish", "channel": "flood", "data": "x" * 64}))
    mark = gw.proc.mark()
    cut = None
    raw.sock.settimeout(0.2)
    try:
        while cut is None or time.monotonic() - cut < 0.3:
            try:
                raw.sock.sendall(frame * 16)
            except socket.timeout:
                pass            # our send buffer is full: the server stopped reading
            except OSError:
                break           # reset: what the old server did
            if cut is None and gw.proc.has_line(r"closing: rate limited", start=mark):
                cut = time.monotonic()
        res = raw.drain_until_closed(10)
    finally:
        raw.close()
    print("late reader:", res)
    assert res["close"] == (1008, "rate limited"), res


@async_test(60)
async def test_flooding_websockets_clients_see_1008(procs):
    """The common client: a WebSocket library (python websockets) sending
    publishes in a loop while a task reads. Each of 20 must end with 1008
    "rate limited": lws sends the close frame and awaits the client's own
    (dropping its data frames meanwhile) before the TCP connection closes.
    (Before, a second close request cut the connection right after the close
    frame, and these clients saw 1006 in about one run in four.)"""
    gw = procs.gateway("--publish-rate", "10", "--publish-burst", "20", node_id="n1")
    msg = json.dumps({"op": "publish", "channel": "flood", "data": "x" * 64})
    codes = []
    for _ in range(20):
        async with websockets.connect(gw.ws_url(), ping_interval=None, compression=None,
                                      close_timeout=2) as ws:
            async def reader():
                try:
                    async for _ in ws:
                        pass
                except websockets.ConnectionClosed:
                    pass
            task = asyncio.ensure_future(reader())
            try:
                while True:
                    await ws.send(msg)
                    await asyncio.sleep(0)   # let the reader run, as any real client does
            except websockets.ConnectionClosed:
                pass
            await asyncio.wait_for(task, 5)
            codes.append((ws.close_code, ws.close_reason))
    print("websockets clients:", codes)
    assert codes == [(1008, "rate limited")] * 20, codes
