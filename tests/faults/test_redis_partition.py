"""A network partition between a gateway and Redis: Redis runs in its own
network namespace behind a veth pair; the test cuts the link (`ip link set
<host end> down`, so nothing answers and no reset arrives) and restores it.
Same guarantees as a Redis kill: /readyz 503 within 1 s (found by the
PING health check, nothing else tells), publishes refused meanwhile,
resubscribed within about 1 s of the link coming back, and no half-open
connection left (Redis ends up with exactly the gateway's two connections,
the host with exactly two established ones). Needs root and `ip netns`;
skips with a message otherwise."""

import asyncio
import os
import shutil
import subprocess
import time

import pytest

from faultlib import Traffic, await_backoff_cap, await_refusals, await_resubscribed
from wsgate_testing import NO_PUBLISH_RATE, Redis, async_test

READY_DEADLINE = 1.0
RESUB_DEADLINE = 1.0


def ip(*args, check=True):
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=10)


@pytest.fixture
def netns():
    """(namespace, host interface, host address, namespace address); the
    namespace and the veth pair are deleted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    if not shutil.which("ip"):
        pytest.skip("iproute2 `ip` not found")
    n = os.getpid() % 100000
    ns, host_if, ns_if = f"wsgf{n}", f"wgh{n}", f"wgr{n}"
    net = f"10.231.{n % 250}"
    r = ip("netns", "add", ns, check=False)
    if r.returncode != 0:
        pytest.skip(f"`ip netns add` unavailable here: {r.stderr.strip()}")
    try:
        ip("link", "add", host_if, "type", "veth", "peer", "name", ns_if)
        ip("link", "set", ns_if, "netns", ns)
        ip("addr", "add", f"{net}.1/30", "dev", host_if)
        ip("link", "set", host_if, "up")
        ip("-n", ns, "addr", "add", f"{net}.2/30", "dev", ns_if)
        ip("-n", ns, "link", "set", ns_if, "up")
        ip("-n", ns, "link", "set", "lo", "up")
        yield ns, host_if, f"{net}.1", f"{net}.2"
    finally:
        ip("link", "del", host_if, check=False)
        ip("netns", "del", ns, check=False)


def redis_clients(redis):
    """CLIENT LIST lines other than our own connection."""
    c = redis.conn(timeout=2)
    try:
        text = c.call("CLIENT", "LIST").decode()
    finally:
        c.close()
    return [l for l in text.splitlines() if l and "cmd=client" not in l]


def established_to(addr):
    out = subprocess.run(["ss", "-Htn", "state", "established", "dst", addr],
                         capture_output=True, text=True, timeout=10).stdout
    return [l for l in out.splitlines() if l.strip()]


@async_test(90)
async def test_redis_partition_cut_and_restore(netns, procs):
    ns, host_if, _, redis_addr = netns
    redis = Redis(procs, prefix=["ip", "netns", "exec", ns], host=redis_addr, port=6379,
                   extra=["--protected-mode", "no"])   # reached from outside its namespace
    gw = procs.gateway(*NO_PUBLISH_RATE, redis=redis, node_id="p")
    sub = await gw.connect()
    pub = await gw.connect()
    await sub.subscribe("steady")
    traffic = Traffic(pub, "steady")
    traffic.start()
    await traffic.await_ack_after(time.monotonic(), 2)
    assert len(redis_clients(redis)) == 2

    mark = gw.proc.mark()
    t_cut = time.monotonic()
    ip("link", "set", host_if, "down")
    down = await gw.await_readyz(503, 5, t0=t_cut)
    await gw.await_line(r"broker down", timeout=5, start=mark)
    await await_refusals(traffic, t_cut + down, 5)
    # Stay cut until the reconnect backoff has reached its cap.
    await await_backoff_cap(gw, mark)

    ip("link", "set", host_if, "up")
    t_back = time.monotonic()
    resub = await await_resubscribed(redis, sub, "steady", 10, t0=t_back)
    ready = await gw.await_readyz(200, 10, t0=t_back)
    await traffic.await_ack_after(time.monotonic(), 3)
    await traffic.stop()
    await pub.publish("steady", {"after": True})
    await sub.expect_message("steady", {"after": True})

    # The connections dropped during the cut: the gateway's FINs reach Redis
    # once the link is back (retransmitted), so Redis keeps no stale client.
    t0 = time.monotonic()
    while True:
        clients, est = redis_clients(redis), established_to(redis_addr)
        if len(clients) == 2 and len(est) == 2:
            break
        if time.monotonic() - t0 > 20:
            raise AssertionError(f"half-open connections left: redis clients {clients}, "
                                 f"established {est}")
        await asyncio.sleep(0.1)   # poll period, bounded above
    stale_gone = time.monotonic() - t0
    first, last = traffic.outage()
    print(f"partition: /readyz 503 after {down * 1000:.0f} ms; link back -> resubscribed after "
          f"{resub * 1000:.0f} ms, /readyz 200 after {ready * 1000:.0f} ms; publisher outage "
          f"{(last - first) * 1000:.0f} ms (cut {(t_back - t_cut) * 1000:.0f} ms); stale "
          f"connections gone {stale_gone * 1000:.0f} ms after recovery; outcomes {traffic.outcomes()}")
    assert gw.proc.alive(), gw.proc.dump()
    assert down <= READY_DEADLINE, f"/readyz 503 only after {down:.3f}s"
    assert resub <= RESUB_DEADLINE, f"resubscribed only {resub:.3f}s after the link came back"
    assert set(traffic.outcomes()) <= {"ack", "broker_unavailable"}, traffic.outcomes()
