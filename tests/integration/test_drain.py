"""Shutdown and drain: SIGTERM/SIGINT close every client with 1001 and the
process exits 0 (also with no clients, Redis down, or a client that stops
reading). The drain: /readyz 503 at once while the listener stays open, new
upgrades refused with 503, clients closed with 1001 "going away" spread over
--drain-seconds, exit 0 within the window; a second signal during the drain
ends the process at once with status 0."""

import asyncio
import signal
import time

import pytest

from wsgate_testing import ascrape_metrics, async_test, raw_upgrade


@pytest.mark.parametrize("sig,mode", [(signal.SIGTERM, "embedded"), (signal.SIGINT, "embedded"),
                                      (signal.SIGTERM, "redis"), (signal.SIGINT, "redis")],
                         ids=["TERM-embedded", "INT-embedded", "TERM-redis", "INT-redis"])
@async_test(30)
async def test_signal_closes_clients_1001_and_exits_0(procs, sig, mode):
    redis = procs.redis() if mode == "redis" else None
    gw = procs.gateway(redis=redis, node_id="n1")
    clients = [await gw.connect(), await gw.connect(), await gw.connect(batch=True)]
    await clients[0].subscribe("a")
    await clients[1].subscribe("a")
    await clients[1].subscribe("b")
    await clients[2].subscribe("a")
    idle = await gw.connect()   # connected, no subscriptions
    clients.append(idle)
    await clients[0].publish("a", "before")
    for c in clients[:3]:
        await c.next_message("a")

    gw.proc.send_signal(sig)
    codes = await asyncio.gather(*(c.wait_closed(5) for c in clients))
    rc = await asyncio.to_thread(gw.proc.wait, 5)
    assert codes == [1001] * len(clients), f"close codes {codes}, expected 1001 each"
    assert rc == 0, f"exit status {rc} after {sig.name}"


@async_test(30)
async def test_shutdown_with_no_clients(procs):
    gw = procs.gateway(node_id="n1")
    assert gw.http("GET", "/healthz").status == 200
    gw.proc.send_signal(signal.SIGTERM)
    rc = await asyncio.to_thread(gw.proc.wait, 5)
    assert rc == 0, rc


@async_test(30)
async def test_shutdown_while_redis_is_down(procs, redis):
    gw = procs.gateway(redis=redis, node_id="n1")
    c = await gw.subscriber("x")
    mark = gw.proc.mark()
    redis.kill()
    await gw.await_line(r"broker down", timeout=5, start=mark)
    gw.proc.send_signal(signal.SIGTERM)
    assert await c.wait_closed(5) == 1001
    rc = await asyncio.to_thread(gw.proc.wait, 5)
    assert rc == 0, rc


@async_test(30)
async def test_shutdown_with_unresponsive_client(procs):
    """A client that never answers the close frame cannot hold the process:
    while draining /readyz is 503, the client finds a 1001 close frame, and
    the process exits 0 within --drain-seconds (+ margin)."""
    gw = procs.gateway("--drain-seconds", "1", node_id="n1")
    raw = gw.raw()
    assert raw.recv_json().get("op") == "welcome"
    polite = await gw.connect()
    gw.proc.send_signal(signal.SIGTERM)
    assert await polite.wait_closed(5) == 1001
    try:
        r = await gw.ahttp("GET", "/readyz", timeout=2)
        assert r.status == 503, f"/readyz while draining: {r!r}"
    except OSError:
        pass   # already stopped listening: also acceptable
    res = await asyncio.to_thread(raw.drain_until_closed, 8)
    assert res["close"] is not None and res["close"][0] == 1001, f"unresponsive client saw {res!r}"
    rc = await asyncio.to_thread(gw.proc.wait, 5)
    assert rc == 0, rc
    raw.close()


async def closed_at(c, timeout):
    """(monotonic time the close arrived, code, reason)."""
    try:
        await asyncio.wait_for(c.ws.wait_closed(), timeout)
    except asyncio.TimeoutError:
        return None, None, None
    return time.monotonic(), c.ws.close_code, c.ws.close_reason


async def wait_exit(proc, timeout):
    """(exit status, monotonic time it was seen) or (None, None)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rc = proc.p.poll()
        if rc is not None:
            return rc, time.monotonic()
        await asyncio.sleep(0.02)
    return None, None


async def readyz_503(gw, t_sig, within=0.5):
    """/readyz must answer 503 right away after the signal: poll it (an
    answer to a request that raced the signal handler may still be 200)."""
    answers = []
    while True:
        r = await gw.ahttp("GET", "/readyz", timeout=3)
        answers.append((round(time.monotonic() - t_sig, 3), r.status))
        if r.status == 503:
            return r
        assert r.status == 200, f"/readyz answered {r!r}"
        assert time.monotonic() - t_sig < within, f"/readyz not 503 within {within}s of SIGTERM: {answers}"
        await asyncio.sleep(0.02)


@pytest.mark.parametrize("mode", ["embedded", "redis"])
@async_test(40)
async def test_drain_spreads_closes_and_exits_0(procs, mode):
    window, n = 2.0, 20
    redis = procs.redis() if mode == "redis" else None
    gw = procs.gateway("--drain-seconds", str(window), redis=redis, node_id="n1")
    clients = [await gw.connect() for _ in range(n)]
    for i, c in enumerate(clients):
        await c.subscribe(f"c{i % 3}")
    assert (await gw.ahttp("GET", "/readyz")).status == 200

    closes = [asyncio.ensure_future(closed_at(c, window + 5)) for c in clients]
    exited = asyncio.ensure_future(wait_exit(gw.proc, window + 6))
    t_sig = time.monotonic()
    gw.proc.send_signal(signal.SIGTERM)
    await readyz_503(gw, t_sig)
    upgrade = await asyncio.to_thread(raw_upgrade, gw.port, None, "/ws", 3)
    assert upgrade.status == 503, f"upgrade while draining answered {upgrade.line!r}, expected 503"

    results = await asyncio.gather(*closes)
    rc, t_exit = await exited
    missing = [i for i, (t, _, _) in enumerate(results) if t is None]
    assert not missing, f"clients {missing} not closed within {window + 5}s"
    bad = [(i, code, reason) for i, (_, code, reason) in enumerate(results) if (code, reason) != (1001, "going away")]
    assert not bad, f"closes other than 1001 'going away': {bad}"
    times = sorted(t - t_sig for t, _, _ in results)
    spread = times[-1] - times[0]
    print(f"close offsets after SIGTERM: {[round(x, 3) for x in times]}; exit after {t_exit - t_sig:.3f}s")
    assert spread >= 0.5, f"closes not spread: all {n} within {spread:.3f}s (offsets {[round(x, 3) for x in times]})"
    assert times[-1] <= window + 0.5, \
        f"last close {times[-1]:.2f}s after SIGTERM, window {window}s (offsets {[round(x, 3) for x in times]})"
    assert rc is not None, f"process still running {window + 6}s after SIGTERM"
    assert rc == 0, f"exit status {rc}"
    assert t_exit - t_sig <= window + 2, f"exited {t_exit - t_sig:.2f}s after SIGTERM, window {window}s"


@pytest.mark.parametrize("second", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
@async_test(60)
async def test_second_signal_ends_a_long_drain(procs, second):
    """--drain-seconds 30 with 50 clients closes them one slice at a time
    (several seconds); during it /readyz is 503, upgrades are refused and
    counted, every client closed so far is counted as a drain disconnect;
    a second signal makes the process exit 0 within 2 s."""
    n = 50
    gw = procs.gateway("--drain-seconds", "30", node_id="n1")
    clients = [await gw.connect() for _ in range(n)]
    m0 = await ascrape_metrics(gw)
    assert m0.value("wsgate_connections") == n

    closes = [asyncio.ensure_future(closed_at(c, 40)) for c in clients]
    gw.proc.send_signal(signal.SIGTERM)
    first = await asyncio.wait(closes, timeout=10, return_when=asyncio.FIRST_COMPLETED)
    assert first[0], "no client closed within 10 s of SIGTERM"
    await readyz_503(gw, time.monotonic())
    up = await asyncio.to_thread(raw_upgrade, gw.port)
    assert up.status == 503, f"upgrade while draining answered {up.line!r}"
    m1 = await ascrape_metrics(gw)
    drained = m1.value("wsgate_disconnects_total", reason="drain") - \
        m0.value("wsgate_disconnects_total", reason="drain")
    conns = m1.value("wsgate_connections")
    assert conns + drained == n, \
        f"wsgate_connections {conns} + drain disconnects {drained} != {n} (other reasons counted?)"
    assert conns > 0, "all clients gone already: the drain was not spread"
    others = {reason: m1.value("wsgate_disconnects_total", reason=reason) -
              m0.value("wsgate_disconnects_total", reason=reason)
              for reason in ("client", "slow_consumer", "rate_limited", "too_large", "auth", "error")}
    assert not any(others.values()), f"drain closes counted under other reasons: {others}"
    refused = m1.value("wsgate_connections_refused_total") - m0.value("wsgate_connections_refused_total")
    assert refused == 1, f"wsgate_connections_refused_total moved by {refused}, expected 1"

    open_before = sum(1 for f in closes if not f.done())
    assert open_before > 0, "every client closed before the second signal"
    t2 = time.monotonic()
    gw.proc.send_signal(second)
    rc, t_exit = await wait_exit(gw.proc, 5)
    assert rc is not None, f"still running 5 s after a second {second.name}"
    assert t_exit - t2 <= 2.0, f"exited {t_exit - t2:.2f}s after a second {second.name}, expected at once"
    assert rc == 0, f"exit status {rc} after a second {second.name}"
    await asyncio.gather(*closes)
