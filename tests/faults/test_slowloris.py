"""Slowloris: hundreds of sockets that send an upgrade request one header
byte a second never finish it. The gateway cuts each within its header
timeout (lws timeout_secs, 10 s) and, meanwhile, a normal client still
connects, subscribes and receives at once."""

import socket
import time

from wsgate_testing import async_test

SOCKETS = 300
HEADER_TIMEOUT = 10      # lws timeout_secs in net/server.c
SLACK = 3                # the 100 ms lws tick, load on a shared machine


@async_test(60)
async def test_slowloris_sockets_are_cut_and_others_unaffected(procs):
    gw = procs.gateway(node_id="sl")
    socks = []
    t0 = time.monotonic()
    for _ in range(SOCKETS):
        s = socket.create_connection(("127.0.0.1", gw.port), timeout=5)
        s.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nX-Slow: ")
        s.setblocking(False)
        socks.append(s)

    # A normal client while every slow socket holds a half-read request.
    t_c = time.monotonic()
    client = await gw.connect()
    await client.subscribe("fast")
    r = await gw.publish_http("fast", {"ok": 1})
    assert r.status == 200, r
    await client.expect_message("fast", {"ok": 1})
    normal = time.monotonic() - t_c

    # One byte a second on each until the gateway closes it.
    open_ = {s.fileno(): s for s in socks}
    cut_at = {}
    next_byte = time.monotonic()
    while open_ and time.monotonic() - t0 < HEADER_TIMEOUT + SLACK:
        now = time.monotonic()
        for fd, s in list(open_.items()):
            try:
                if s.recv(4096) == b"":
                    raise ConnectionResetError
            except BlockingIOError:
                if now >= next_byte:
                    try:
                        s.send(b"a")
                    except OSError:
                        cut_at[fd] = now - t0
                        del open_[fd]
                continue
            except OSError:
                pass
            cut_at[fd] = now - t0
            del open_[fd]
        if now >= next_byte:
            next_byte = now + 1.0
        await client.ping()          # the normal client stays served throughout
    for s in socks:
        s.close()
    latest = max(cut_at.values()) if cut_at else None
    print(f"slowloris: {len(cut_at)}/{SOCKETS} cut, the last after {latest:.1f} s; "
          f"a normal client connected, subscribed and received in {normal * 1000:.0f} ms")
    assert not open_, f"{len(open_)} slow sockets still open after {HEADER_TIMEOUT + SLACK} s"
    assert normal < 1.0, f"a normal client needed {normal:.2f}s beside the slow sockets"
    assert gw.proc.alive(), gw.proc.dump()
    await client.ping()
