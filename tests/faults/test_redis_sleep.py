"""Redis frozen (DEBUG SLEEP 5) under steady traffic and a publish flood:
the gateway declares the broker down within 1 s (PINGs unanswered for
750 ms), refuses publishes clearly (broker_unavailable over WebSocket, 503
over HTTP), its memory stays bounded, and once Redis wakes up it is ready,
resubscribed and delivering again."""

import asyncio
import threading
import time

from faultlib import Traffic, await_resubscribed
from wsgate_testing import NO_PUBLISH_RATE, Redis, async_test, rss_kb

SLEEP = 5
READY_DEADLINE = 1.0
RSS_GROWTH_KB = 32 * 1024


@async_test(60)
async def test_redis_debug_sleep_under_traffic(procs):
    redis = Redis(procs, extra=["--enable-debug-command", "yes"])
    gw = procs.gateway(*NO_PUBLISH_RATE, redis=redis, node_id="s")
    sub = await gw.connect()
    pub = await gw.connect()
    flooder = await gw.connect()
    await sub.subscribe("steady")
    traffic = Traffic(pub, "steady")
    traffic.start()
    await traffic.await_ack_after(time.monotonic(), 2)
    rss0 = rss_kb(gw.proc.pid)

    sleeper = redis.conn(timeout=SLEEP + 5)
    done = threading.Event()
    sent = threading.Event()
    when = {}

    def freeze():
        try:
            sleeper.send("DEBUG", "SLEEP", str(SLEEP))
            when["freeze"] = time.monotonic()
            sent.set()
            sleeper.read()
        finally:
            sent.set()
            done.set()
    threading.Thread(target=freeze, daemon=True).start()
    await asyncio.to_thread(sent.wait, 5)
    t_freeze = when["freeze"]

    # A flood of publishes (no ids awaited) while Redis is frozen: what the
    # gateway holds for Redis is bounded by the 750 ms before it gives up.
    async def flood():
        blob = "x" * 1000
        while not done.is_set():
            await flooder.send({"op": "publish", "channel": "flood", "data": blob})
            await asyncio.sleep(0.001)   # about 1000 publishes/s
    flood_task = asyncio.ensure_future(flood())

    down = await gw.await_readyz(503, SLEEP, t0=t_freeze)
    r = await gw.ahttp("POST", "/api/publish", {"channel": "steady", "data": 1})
    assert r.status == 503, r
    rss_peak = rss0
    while not done.is_set():
        rss_peak = max(rss_peak, rss_kb(gw.proc.pid))
        await asyncio.sleep(0.05)   # RSS sampling period until Redis wakes up
    t_wake = time.monotonic()
    flood_task.cancel()
    sleeper.close()

    resub = await await_resubscribed(redis, sub, "steady", 5, t0=t_wake)
    ready = await gw.await_readyz(200, 5, t0=t_wake)
    await traffic.await_ack_after(time.monotonic(), 3)
    await traffic.stop()
    await pub.publish("steady", {"after": True})
    await sub.expect_message("steady", {"after": True})
    refused = traffic.outcomes(t_freeze)
    print(f"redis DEBUG SLEEP {SLEEP}: /readyz 503 after {down * 1000:.0f} ms; publishes during "
          f"the freeze {refused}; HTTP publish 503; RSS {rss0} kB -> peak {rss_peak} kB; "
          f"after wake-up resubscribed in {resub * 1000:.0f} ms, ready in {ready * 1000:.0f} ms")
    assert gw.proc.alive(), gw.proc.dump()
    assert down <= READY_DEADLINE, f"/readyz 503 only after {down:.3f}s"
    assert refused.get("broker_unavailable", 0) > 0, refused
    assert set(refused) <= {"ack", "broker_unavailable"}, refused
    assert rss_peak - rss0 < RSS_GROWTH_KB, f"RSS grew from {rss0} to {rss_peak} kB"
    assert resub <= 1.0 and ready <= 1.0, (resub, ready)
