"""The container path: docker-compose.yml and deploy/Dockerfile, unchanged, under a
real engine (Docker when the machine has one, else Podman's Docker API; see
tests/compose/engine.sh and deploy/README.md).

One test, in steps that each print what they measured: build the image (which
runs the unit tests), `up --scale gateway=3`, 12 clients through HAProxy spread
over the replicas, a broadcast reaches all, scale to 5 and back to 3, stop one
replica (its clients get 1001 and reconnect elsewhere), `down`. Skips only when
no engine can run here.

Run: ctest --test-dir build -L compose --output-on-failure    (or -V for the figures)
     /usr/bin/python3 -m pytest -s tests/compose/test_compose.py
"""
import asyncio
import time

import pytest

from composelib import broadcast, connect_n, engine, running, say, spread, until


@pytest.fixture(scope="module")
def stack():
    with engine("redis:7.0", "haproxy:2.6") as (env, state), running(env, state, "compose") as s:
        yield s


# python3-docker 5.0 compares API versions with distutils' StrictVersion
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_compose_stack(stack):
    t_all = time.monotonic()
    _, took = stack.compose("build", "gateway", timeout=1800)
    say(f"image built (deploy/Dockerfile, unit tests included) in {took:.1f}s")
    images = stack.api.images.list(name="wsgate")
    assert any("wsgate:latest" in t for i in images for t in i.tags), images
    asyncio.run(scenario(stack))
    say(f"whole test {time.monotonic() - t_all:.1f}s (without down)")


async def scenario(stack):
    url = f"ws://127.0.0.1:{stack.port}/ws"
    t = time.monotonic()
    await stack.acompose("up", "-d", "--scale", "gateway=3")
    waited = await stack.await_lb_up(3)
    say(f"up --scale gateway=3: 3/3 replicas UP in HAProxy {time.monotonic() - t:.1f}s after up "
        f"({waited:.1f}s after compose returned)")
    nodes = stack.node_to_container()
    assert len(nodes) == 3, nodes

    clients = await connect_n(url, 12)
    try:
        # -- spread and broadcast over 3 replicas
        sp = spread(clients)
        say(f"12 clients through the LB: {dict(sp)}")
        assert set(sp) == set(nodes), f"clients not on every replica: {dict(sp)} vs {list(nodes)}"
        assert max(sp.values()) - min(sp.values()) <= 2, f"uneven spread: {dict(sp)}"
        senders = [next(c for c in clients if c.node == n) for n in nodes]
        got, took = await broadcast(clients, senders, "three")
        say(f"broadcast: {got}/{got} deliveries (one message from each replica to 12 clients) in {took * 1000:.0f} ms")

        # -- scale to 5: the new replicas get the next clients
        t = time.monotonic()
        await stack.acompose("up", "-d", "--scale", "gateway=5")
        await stack.await_lb_up(5)
        say(f"scale to 5: 5/5 UP in {time.monotonic() - t:.1f}s")
        nodes5 = stack.node_to_container()
        assert len(nodes5) == 5 and set(nodes) < set(nodes5), (list(nodes), list(nodes5))
        clients += await connect_n(url, 8, first=12)
        sp = spread(clients)
        say(f"20 clients: {dict(sp)}")
        assert set(sp) == set(nodes5), f"a new replica got no client: {dict(sp)}"
        new = [n for n in nodes5 if n not in nodes]
        got, took = await broadcast(clients, [next(c for c in clients if c.node == n) for n in new], "five")
        say(f"broadcast from the new replicas: {got}/{got} in {took * 1000:.0f} ms")

        # -- back to 3: the removed replicas drain (1001), their clients move
        t = time.monotonic()
        await stack.acompose("up", "-d", "--scale", "gateway=3")
        await stack.await_lb_up(3)
        nodes3 = stack.node_to_container()
        assert len(nodes3) == 3, list(nodes3)
        await until(lambda: all(c.ready.is_set() and c.node in nodes3 for c in clients), 30,
                    f"every client on one of {list(nodes3)}: {dict(spread(clients))}")
        gone = set(nodes5) - set(nodes3)
        moved = [c for c in clients if any(m[0] in gone for m in c.moves)]
        say(f"scale back to 3: {time.monotonic() - t:.1f}s; {len(moved)} clients of the 2 removed "
            f"replicas reconnected; now {dict(spread(clients))}")
        assert all(c.node in nodes3 for c in clients), dict(spread(clients))
        assert all(m[1] == 1001 for c in moved for m in c.moves), [c.moves for c in moved]
        got, _ = await broadcast(clients, clients[:1], "three-again")
        say(f"broadcast after scale-down: {got}/{got}")

        # -- stop one replica (SIGTERM through the engine's API, as `stop` does)
        sp = spread(clients)
        victim_node = sp.most_common(1)[0][0]
        victims = [c for c in clients if c.node == victim_node]
        for c in clients:
            c.moves.clear()
        victim = nodes3[victim_node]
        t = time.monotonic()
        await asyncio.to_thread(victim.stop, timeout=20)
        stopped = time.monotonic() - t
        await until(lambda: all(c.moves and c.ready.is_set() for c in victims), 30,
                    f"the clients of {victim_node} to reconnect")
        victim.reload()
        assert victim.status == "exited" and victim.attrs["State"]["ExitCode"] == 0, victim.attrs["State"]
        moves = [m for c in victims for m in c.moves]
        assert all(c.moves and c.moves[0][1] == 1001 for c in victims), [c.moves for c in victims]
        assert all(c.node != victim_node and c.node in nodes3 for c in victims), [c.node for c in victims]
        assert not any(c.moves for c in clients if c not in victims), "a client of another replica moved"
        say(f"stop {victim.name}: exit 0 after {stopped:.1f}s; {len(victims)} clients got 1001 and "
            f"reconnected to {dict(spread(victims))} in "
            f"{max(m[3] for m in moves) * 1000:.0f} ms at most (from close to welcome)")
        await stack.await_lb_up(2)
        got, _ = await broadcast(clients, clients[:1], "two")
        say(f"2 replicas left; broadcast {got}/{got}")
    finally:
        await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
