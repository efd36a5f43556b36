"""--workers N: a supervisor and N workers sharing one port (SO_REUSEPORT).
Connections land on every worker and a publish reaches subscribers on all
of them; /metrics and /readyz answer for the whole node from any worker; a
SIGKILLed worker is restarted, its clients reconnect and the others are
untouched, and every line it logged is in the output; five deaths within 10 s stop the node with exit 1; SIGTERM drains
every worker (1001) and the supervisor exits 0; bad values exit 2."""

import asyncio
import os
import re
import signal

import pytest

from wsgate_testing import async_test, run_wsgate
from wsgate_testing.prom import ascrape_metrics, await_metrics

N = 40  # connections: with SO_REUSEPORT hashing, both workers get some


def worker_pids(gw):
    """The supervisor's children, from the kernel's own list."""
    pid = gw.proc.pid
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return sorted(int(p) for p in f.read().split())


def worker_of(client):
    """A worker's session ids share its random 8-hex-digit salt."""
    return client.welcome["session"][:8]


async def subscribers(gw, channel, n=N):
    clients = [await gw.connect() for _ in range(n)]
    for c in clients:
        await c.subscribe(channel)
    return clients


def groups(clients):
    by = {}
    for c in clients:
        by.setdefault(worker_of(c), []).append(c)
    return by


@async_test(60)
async def test_workers_share_the_port_and_deliver_everywhere(procs, redis):
    gw = procs.gateway("--workers", "2", redis=redis, node_id="n1")
    assert gw.proc.has_line(r"listening on 127\.0\.0\.1:\d+ with 2 workers"), gw.proc.text()
    assert len(worker_pids(gw)) == 2
    clients = await subscribers(gw, "news")
    by = groups(clients)
    assert len(by) == 2, f"all {N} connections on one worker: {list(by)}"

    r = await gw.publish_http("news", {"n": 1})
    assert r.status == 200, r
    for c in clients:
        await c.expect_message("news", {"n": 1})

    # the whole node's figures, whichever worker answers
    def counts(m):
        per = [m.value("wsgate_worker_connections", worker=str(i)) for i in (0, 1)]
        return m.value("wsgate_connections") == N and sorted(per) == sorted(map(len, by.values()))
    m = await await_metrics(gw, counts, timeout=5, what="both workers' connections summed")
    assert m.value("wsgate_workers") == 2
    assert m.value("wsgate_messages_delivered_total") >= N
    # every worker's descriptors, counted by the one rendering (+1: the scrape's own)
    fds = sum(len(os.listdir(f"/proc/{w}/fd")) for w in worker_pids(gw))
    assert 0 <= m.value("process_open_fds") - fds <= 1, (m.value("process_open_fds"), fds)
    assert m.value("process_open_fds") >= N, "each client holds a descriptor"
    for _ in range(6):
        assert (await gw.ahttp("GET", "/readyz")).status == 200


@async_test(60)
async def test_a_killed_worker_is_restarted_and_its_clients_reconnect(procs, redis):
    gw = procs.gateway("--workers", "2", redis=redis, node_id="n1")
    clients = await subscribers(gw, "news")
    by = groups(clients)
    assert len(by) == 2
    victim = worker_pids(gw)[0]
    mark = gw.proc.mark()
    os.kill(victim, signal.SIGKILL)
    await gw.await_line(rf"worker \d \(pid {victim}\) died: killed by signal 9", start=mark)
    await gw.await_line(r"worker \d restarted \(pid \d+\)", start=mark)
    assert victim not in worker_pids(gw) and len(worker_pids(gw)) == 2

    # exactly one worker's clients lost their connection
    gone = await asyncio.gather(*(_closes_soon(c) for c in clients))
    closed = [c for c, g in zip(clients, gone) if g]
    assert closed and {worker_of(c) for c in closed} == {worker_of(closed[0])}
    survivors = [c for c in clients if c not in closed]
    assert len(closed) == len(by[worker_of(closed[0])]) and survivors

    again = await subscribers(gw, "news", len(closed))
    r = await gw.publish_http("news", {"n": 2})
    assert r.status == 200, r
    for c in survivors + again:
        await c.expect_message("news", {"n": 2})
    m = await ascrape_metrics(gw)
    assert m.value("wsgate_worker_restarts_total") == 1


@async_test(60)
async def test_the_lines_of_killed_workers_are_all_there(procs, redis):
    """A line is written whole when it is logged: the "session open" line of
    every client is in the shared output although both workers were
    SIGKILLed right after (a stdio buffer would have died with them)."""
    gw = procs.gateway("--workers", "2", redis=redis, node_id="n1")
    clients = [await gw.connect() for _ in range(8)]
    pids = worker_pids(gw)
    mark = gw.proc.mark()
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    for pid in pids:  # the supervisor's line follows the worker's in the pipe
        await gw.await_line(rf"worker \d \(pid {pid}\) died: killed by signal 9", start=mark)
    text = gw.proc.text("err")
    for c in clients:
        assert re.search(rf"^\S+Z info  session open session={c.welcome['session']} ", text,
                         re.M), c.welcome


async def _closes_soon(client):
    try:
        await client.wait_closed(2)
        return True
    except AssertionError:
        return False


@async_test(60)
async def test_a_crash_loop_stops_the_node(procs, redis):
    gw = procs.gateway("--workers", "2", redis=redis, node_id="n1")
    for death in range(5):
        mark = gw.proc.mark()
        pid = worker_pids(gw)[0]
        os.kill(pid, signal.SIGKILL)
        await gw.await_line(rf"worker \d \(pid {pid}\) died", start=mark)
        if death < 4:
            await gw.await_line(r"worker \d restarted", start=mark)
    await gw.await_line(r"workers keep dying \(5 deaths within 10 s\): stopping the node")
    rc = await asyncio.to_thread(gw.proc.wait, 15)
    assert rc == 1, rc


@async_test(60)
async def test_sigterm_drains_every_worker_and_exits_0(procs, redis):
    gw = procs.gateway("--workers", "2", "--drain-seconds", "2", redis=redis, node_id="n1")
    clients = await subscribers(gw, "news")
    assert len(groups(clients)) == 2
    pids = worker_pids(gw)
    gw.proc.send_signal(signal.SIGTERM)
    codes = await asyncio.gather(*(c.wait_closed(5) for c in clients))
    assert codes == [1001] * N, codes
    rc = await asyncio.to_thread(gw.proc.wait, 10)
    assert rc == 0, rc
    assert gw.proc.has_line(r"all workers done, shut down cleanly")
    for pid in pids:
        assert not os.path.exists(f"/proc/{pid}") or \
            re.search(r"State:\s+Z", open(f"/proc/{pid}/status").read())


def test_auto_is_one_per_core_and_the_env_twin_works(procs, redis):
    cores = min(os.sysconf("SC_NPROCESSORS_ONLN"), 64)
    gw = procs.gateway(redis=redis, node_id="n1", env={"WSGATE_WORKERS": "auto"})
    assert gw.proc.has_line(rf"listening on 127\.0\.0\.1:\d+ with {cores} workers .*"
                            rf"holds up to \d+ connections") or cores == 1, gw.proc.text()
    assert len(worker_pids(gw)) == (cores if cores > 1 else 0)


@pytest.mark.parametrize("args,text", [
    (["--workers", "0"], "--workers"),
    (["--workers", "65"], "--workers"),
    (["--workers", "many"], "--workers"),
    (["--workers", "-2"], "--workers"),
    (["--workers", "2"], "needs --redis"),   # the embedded broker is per process
], ids=["zero", "too-many", "word", "negative", "embedded"])
def test_bad_values_exit_2(args, text):
    r = run_wsgate(args)
    err = r.stderr.decode()
    assert r.returncode == 2, (r.returncode, err)
    assert text in err and err.count("\n") == 1, err


def test_env_twin():
    r = run_wsgate([], env={"WSGATE_WORKERS": "lots"})
    assert r.returncode == 2 and "WORKERS" in r.stderr.decode(), r
