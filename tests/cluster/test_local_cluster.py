"""Cluster integration test (issue 3): deploy/local-cluster.sh with 3 gateways,
HAProxy and Redis on free ports; clients connect only through the LB.

Run: /usr/bin/python3 -m pytest tests/cluster/test_local_cluster.py   (needs build/wsgate, redis-server, haproxy)
"""
import asyncio
import collections
import os
import signal

import pytest

from wsgate_testing import WsClient, async_test, connect_retrying, pid_alive, wait_until
from wsgate_testing.cluster import LocalCluster

N_CLIENTS = 6


@pytest.fixture
def cluster(tmp_path):
    c = LocalCluster(gateways=3, log_dir=tmp_path / "logs")
    try:
        c.start()
        yield c
    finally:
        left = c.stop()
        out = "".join(c.lines)
        assert not left, f"still running after local-cluster.sh stopped: {left}\n{out}"
        if c.state_file is not None:
            assert not c.state_file.parent.exists(), f"temp dir {c.state_file.parent} not removed"
        if c.proc is not None:
            assert c.proc.returncode == 0, f"local-cluster.sh exit {c.proc.returncode}\n{out}"


async def connect_all(cluster, n=N_CLIENTS, channel="chat"):
    clients = []
    for i in range(n):
        c = await WsClient.connect(cluster.url, label=f"client{i}", timeout=10)
        await c.subscribe(channel)
        clients.append(c)
    return clients


async def publish_and_expect_everywhere(sender, receivers, text, channel="chat"):
    data = {"user": sender.label, "text": text, "ts": 1}
    await sender.publish(channel, data)
    await asyncio.gather(*(r.expect_message(channel, data, timeout=10) for r in receivers))


def spread(clients):
    return collections.Counter(c.node for c in clients)


def pick_victim(cluster, clients):
    """The gateway with the most clients: (its name, its process, its
    clients, the other clients)."""
    victim = spread(clients).most_common(1)[0][0]
    return (victim, cluster.gateway(victim), [c for c in clients if c.node == victim],
            [c for c in clients if c.node != victim])


@async_test(120)
async def test_clients_spread_and_every_message_reaches_all(cluster):
    clients = await connect_all(cluster)
    nodes = spread(clients)
    print("clients per node:", dict(nodes))
    assert set(nodes) <= set(cluster.gateway_names), nodes
    assert len(nodes) >= 2, f"all clients landed on one node: {nodes}"
    # A message from any client reaches all (including its sender).
    for c in clients:
        await publish_and_expect_everywhere(c, clients, f"hello from {c.label}")


@async_test(120)
async def test_sigkill_gateway_clients_reconnect_elsewhere(cluster):
    clients = await connect_all(cluster)
    victim, gw, orphans, others = pick_victim(cluster, clients)
    print(f"SIGKILL {gw}; clients per node before: {dict(spread(clients))}")
    mark = cluster.mark()
    os.kill(gw.pid, signal.SIGKILL)
    cluster.await_line(rf"gateway {victim} \(pid {gw.pid}\) exited with status 137", 10, mark)

    # The LB closes the killed gateway's client connections.
    await asyncio.gather(*(c.wait_closed(10) for c in orphans))
    # They reconnect through the LB to the remaining gateways and resubscribe.
    back = []
    for c in orphans:
        nc = await connect_retrying(cluster.url, c.label + "'")
        assert nc.node != victim, f"{nc.label} reconnected to the killed node {victim}"
        await nc.subscribe("chat")
        back.append(nc)
    print("reconnected to:", dict(spread(back)))
    survivors = others + back
    assert all(not c.ws.closed for c in others), "clients of live gateways were dropped"
    # The next messages reach everyone, whichever side sends them.
    await publish_and_expect_everywhere(others[0], survivors, "after kill, from a survivor")
    await publish_and_expect_everywhere(back[0], survivors, "after kill, from a reconnected one")
    # HAProxy marks the dead gateway down.
    wait_until(lambda: cluster.server_status().get(victim, "").startswith(("DOWN", "MAINT")),
               10, f"HAProxy to mark {victim} down")


@async_test(120)
async def test_sigterm_gateway_drains_and_gets_no_new_clients(cluster):
    clients = await connect_all(cluster)
    fresh = []
    victim, gw, drained, others = pick_victim(cluster, clients)
    print(f"SIGTERM {gw}; clients per node before: {dict(spread(clients))}")
    mark = cluster.mark()
    os.kill(gw.pid, signal.SIGTERM)

    # Its clients are told "going away" (1001) and the process exits 0.
    for c in drained:
        code = await c.wait_closed(10)
        assert code == 1001, f"{c.label}: close {code} {c.ws.close_reason!r}, want 1001"
    cluster.await_line(rf"gateway {victim} \(pid {gw.pid}\) exited with status 0\b", 15, mark)
    assert not pid_alive(gw.pid)

    # HAProxy takes it out of rotation (readyz 503, then refused checks).
    wait_until(lambda: not cluster.server_status().get(victim, "").startswith("UP"),
               10, f"HAProxy to stop routing to {victim}")
    # New clients only land on the other gateways, and they all work.
    for i in range(N_CLIENTS):
        c = await WsClient.connect(cluster.url, label=f"new{i}", timeout=10)
        assert c.node != victim, f"new client routed to drained node {victim}"
        await c.subscribe("chat")
        fresh.append(c)
    print("new clients per node:", dict(spread(fresh)))
    assert len(spread(fresh)) == 2, spread(fresh)
    # The drained clients come back elsewhere too.
    for c in drained:
        nc = await connect_retrying(cluster.url, c.label + "'")
        assert nc.node != victim
        await nc.subscribe("chat")
        fresh.append(nc)
    await publish_and_expect_everywhere(fresh[0], others + fresh, "after drain")
