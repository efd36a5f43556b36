"""A gateway SIGKILLed behind the balancer (deploy/local-cluster.sh: three
gateways, HAProxy, Redis): its clients see their connection end, reconnect
through the balancer to the others and resubscribe within 2 s of the kill,
and the clients of the other gateways see no change in delivery latency.
Prints the figures."""

import asyncio
import collections
import os
import signal
import time

import pytest

from wsgate_testing import WsClient, async_test, connect_retrying
from wsgate_testing.cluster import LocalCluster

CLIENTS = 30
PROBES = 20
RECONNECT_DEADLINE = 2.0


@pytest.fixture
def cluster(tmp_path):
    c = LocalCluster(gateways=3, log_dir=tmp_path / "logs")
    try:
        c.start()
        yield c
    finally:
        left = c.stop()
        assert not left, f"still running after local-cluster.sh stopped: {left}"


async def latencies(sender, receivers, tag, n=PROBES):
    """Publish→delivery times (the slowest receiver per probe), in seconds."""
    out = []
    for i in range(n):
        data = {"probe": tag, "i": i}
        t0 = time.monotonic()
        await sender.publish("lat", data)
        await asyncio.gather(*(r.expect_message("lat", data, timeout=5) for r in receivers))
        out.append(time.monotonic() - t0)
    return sorted(out)


@async_test(120)
async def test_gateway_sigkill_clients_back_within_2s(cluster):
    clients = []
    for i in range(CLIENTS):
        c = await WsClient.connect(cluster.url, label=f"c{i}", timeout=10)
        await c.subscribe("lat")
        clients.append(c)
    nodes = collections.Counter(c.node for c in clients)
    victim = nodes.most_common(1)[0][0]
    gw = cluster.gateway(victim)
    orphans = [c for c in clients if c.node == victim]
    others = [c for c in clients if c.node != victim]
    assert orphans and len(others) >= 2, nodes
    before = await latencies(others[0], others[1:], "before")

    async def come_back(c):
        await c.wait_closed(5)
        nc = await connect_retrying(cluster.url, c.label + "'", timeout=10)
        await nc.subscribe("lat")
        return nc, time.monotonic()

    t_kill = time.monotonic()
    os.kill(gw.pid, signal.SIGKILL)
    returning = asyncio.gather(*(come_back(c) for c in orphans))
    during = await latencies(others[0], others[1:], "during")
    back = await returning
    worst = max(t for _, t in back) - t_kill
    assert all(nc.node != victim for nc, _ in back)
    # the reconnected clients receive like the others
    await latencies(others[0], others[1:] + [nc for nc, _ in back], "after", n=3)
    p50 = lambda xs: xs[len(xs) // 2] * 1000  # noqa: E731
    print(f"gateway SIGKILL: {len(orphans)} clients of {victim} back and resubscribed through "
          f"the balancer, the last {worst * 1000:.0f} ms after the kill; others' delivery "
          f"p50 {p50(before):.1f} ms max {before[-1] * 1000:.1f} ms before, p50 {p50(during):.1f} ms "
          f"max {during[-1] * 1000:.1f} ms during the recovery")
    assert worst <= RECONNECT_DEADLINE, f"the last client was back only after {worst:.2f}s"
    assert all(not c.ws.closed for c in others), "clients of live gateways were dropped"
    assert p50(during) <= p50(before) + 20 and during[-1] < 0.5, (before, during)
