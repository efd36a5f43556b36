"""Redis killed (SIGKILL) under steady traffic and restarted on its port:
/readyz turns 503 within 1 s, publishes are refused with
broker_unavailable meanwhile, the gateway resubscribes within 1 s of Redis
being back, subscribers receive again, and nothing crashes. Prints the
figures (readiness delay, resubscribe delay, outage window seen by the
publisher)."""

import asyncio
import time

from faultlib import Traffic, await_backoff_cap, await_refusals, await_resubscribed
from wsgate_testing import NO_PUBLISH_RATE, async_test

READY_DEADLINE = 1.0
RESUB_DEADLINE = 1.0


@async_test(60)
async def test_redis_kill9_and_restart_under_traffic(procs):
    redis = procs.redis()
    gw = procs.gateway(*NO_PUBLISH_RATE, redis=redis, node_id="k")
    sub = await gw.connect()
    pub = await gw.connect()
    await sub.subscribe("steady")
    traffic = Traffic(pub, "steady")
    traffic.start()
    await traffic.await_ack_after(time.monotonic(), 2)

    mark = gw.proc.mark()
    t_kill = time.monotonic()
    redis.kill()
    down = await gw.await_readyz(503, 3, t0=t_kill)
    # publishes are refused clearly while Redis is gone
    await await_refusals(traffic, t_kill + down, 3)
    # Stay down until the reconnect backoff reaches its cap: the restart then
    # meets the slowest retry.
    await await_backoff_cap(gw, mark)
    redis.restart()
    t_back = time.monotonic()
    resub = await await_resubscribed(redis, sub, "steady", 5, t0=t_back)
    ready = await gw.await_readyz(200, 5, t0=t_back)
    await traffic.await_ack_after(time.monotonic(), 3)
    await traffic.stop()
    # the subscriber receives what is published after the recovery
    await pub.publish("steady", {"after": True})
    await sub.expect_message("steady", {"after": True})

    first, last = traffic.outage()
    print(f"redis kill -9: /readyz 503 after {down * 1000:.0f} ms; redis back -> "
          f"resubscribed after {resub * 1000:.0f} ms, /readyz 200 after {ready * 1000:.0f} ms; "
          f"publisher outage window {(last - first) * 1000:.0f} ms "
          f"(redis down {(t_back - t_kill) * 1000:.0f} ms); outcomes {traffic.outcomes()}")
    assert gw.proc.alive(), gw.proc.dump()
    assert down <= READY_DEADLINE, f"/readyz 503 only after {down:.3f}s"
    assert resub <= RESUB_DEADLINE, f"resubscribed only {resub:.3f}s after Redis was back"
    assert set(traffic.outcomes()) <= {"ack", "broker_unavailable"}, traffic.outcomes()
