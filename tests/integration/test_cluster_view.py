"""The cluster view (issue 13, item 1): every node stores a heartbeat with its
stats in Redis each second (a key with a TTL), and GET /api/cluster on any node
merges them: the nodes, the totals and the busiest channels with their
subscribers per node. Protected by --admin-key, or by the API key when there
is none; off (403) with neither. Real redis-server and gateway processes."""

import asyncio
import signal
import time

from wsgate_testing import async_test, run_wsgate

ADMIN = "admin-key-0123456789"
API = "api-key-0123456789"
TTL_S = 3.0  # HEARTBEAT_TTL_MS in gateway/net/heartbeat.h


def bearer(key):
    return {"Authorization": "Bearer " + key}


async def view(gw, key=ADMIN):
    r = await gw.ahttp("GET", "/api/cluster", headers=bearer(key))
    assert r.status == 200 and r.headers["content-type"] == "application/json", r
    return r.json()


async def await_view(gw, pred, what, timeout=8.0):
    """Polls /api/cluster (the heartbeats are refreshed every second) until
    pred(view) holds; returns that view."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = await view(gw)
        if pred(last):
            return last
        await asyncio.sleep(0.1)  # poll period, bounded by the deadline
    raise AssertionError(f"/api/cluster never showed {what}; last: {last}")


def by_node(v):
    return {n["node"]: n for n in v["nodes"]}


def counts(v):
    return {n["node"]: (n["connections"], n["subscriptions"], n["channels"]) for n in v["nodes"]}


@async_test(40)
async def test_every_node_with_the_counts_the_test_opened(procs, redis):
    gws = {n: procs.gateway("--admin-key", ADMIN, redis=redis, node_id=n) for n in ("a", "b", "c")}
    clients = []
    for _ in range(3):  # a: 3 clients on room.1, one of them also on room.2
        clients.append(await gws["a"].subscriber("room.1"))
    await clients[0].subscribe("room.2")
    for _ in range(2):  # b: 2 clients on room.1 and lobby
        clients.append(await gws["b"].subscriber("room.1", "lobby"))
    clients.append(await gws["c"].connect())  # c: one idle client
    want = {"a": (3, 4, 2), "b": (2, 4, 2), "c": (1, 0, 0)}
    for name, gw in gws.items():  # every node shows the same cluster
        v = await await_view(gw, lambda v: counts(v) == want, f"counts {want} on {name}")
        assert v["self"] == name and v["complete"] is True, v
        assert v["totals"] == {"nodes": 3, "connections": 6, "subscriptions": 8, "channels": 3,
                               "in_per_s": 0, "out_per_s": 0, "queue_bytes": 0, "broker_down": 0,
                               "draining": 0}, v["totals"]
        assert v["channels"] == [
            {"channel": "room.1", "subscribers": 5, "nodes": {"a": 3, "b": 2}},
            {"channel": "lobby", "subscribers": 2, "nodes": {"b": 2}},
            {"channel": "room.2", "subscribers": 1, "nodes": {"a": 1}},
        ], v["channels"]
        n = by_node(v)["a"]
        assert n["engine"] == "redis" and n["broker"] == "up" and n["draining"] is False, n
        assert n["address"] == f"127.0.0.1:{gws['a'].port}" and n["pid"] == gws["a"].proc.pid, n
        assert isinstance(n["uptime"], int) and n["version"], n
    # Traffic: 10 publishes on a reach 5 subscribers each, on two nodes.
    for i in range(10):
        await clients[3].publish("room.1", i)
    v = await await_view(gws["c"], lambda v: by_node(v)["b"]["published_total"] == 10 and
                         by_node(v)["a"]["delivered_total"] == 30 and
                         by_node(v)["b"]["delivered_total"] == 20, "10 publishes delivered 50 times")
    # The heartbeat in Redis is what the view showed, with its TTL.
    r = redis.conn()
    assert sorted(r.call("SMEMBERS", "wsgate:nodes")) == [b"a", b"b", b"c"]
    assert 0 < r.call("PTTL", "wsgate:node:b") <= TTL_S * 1000
    r.close()
    # A subscriber leaves: its node's counts follow.
    await clients[4].close()
    await await_view(gws["a"], lambda v: counts(v)["b"] == (1, 2, 2), "b down to one client")


@async_test(40)
async def test_a_stopped_node_vanishes_within_the_ttl_and_comes_back(procs, redis):
    a = procs.gateway("--admin-key", ADMIN, redis=redis, node_id="a")
    b = procs.gateway("--admin-key", ADMIN, redis=redis, node_id="b")
    await await_view(a, lambda v: sorted(by_node(v)) == ["a", "b"], "both nodes")
    b.proc.send_signal(signal.SIGKILL)
    t0 = time.monotonic()
    b.proc.wait(5)
    await await_view(a, lambda v: sorted(by_node(v)) == ["a"], "b gone", timeout=TTL_S + 3)
    gone = time.monotonic() - t0
    # The last beat can be up to one period old when the node dies, and the
    # poll adds 0.1 s: gone within the TTL (plus that slack).
    assert gone <= TTL_S + 0.5, f"b still listed {gone:.2f}s after SIGKILL"
    b2 = procs.gateway("--admin-key", ADMIN, redis=redis, node_id="b")
    v = await await_view(a, lambda v: sorted(by_node(v)) == ["a", "b"], "b back")
    assert by_node(v)["b"]["pid"] == b2.proc.pid


@async_test(30)
async def test_a_draining_node_says_so_and_leaves_at_once(procs, redis):
    a = procs.gateway("--admin-key", ADMIN, "--drain-seconds", "5", redis=redis, node_id="a")
    b = procs.gateway("--admin-key", ADMIN, redis=redis, node_id="b")
    keep = await b.subscriber("room.1")  # gives the drain something to do
    await await_view(a, lambda v: len(v["nodes"]) == 2, "both nodes")
    b.proc.send_signal(signal.SIGTERM)
    v = await await_view(a, lambda v: by_node(v).get("b", {}).get("draining") is True, "b draining")
    assert v["totals"]["draining"] == 1
    await keep.close()
    # Stopped cleanly, b deletes its heartbeat: gone at once, not after the TTL.
    assert await asyncio.to_thread(b.proc.wait, 10) == 0
    t0 = time.monotonic()
    await await_view(a, lambda v: sorted(by_node(v)) == ["a"], "b gone after its clean exit", timeout=TTL_S)
    gone = time.monotonic() - t0
    assert gone < 1.0, f"b still listed {gone:.2f}s after it exited"
    r = redis.conn()
    assert r.call("SMEMBERS", "wsgate:nodes") == [b"a"]
    r.close()


@async_test(30)
async def test_broker_down_shows_this_node_alone(procs, redis):
    a = procs.gateway("--admin-key", ADMIN, redis=redis, node_id="a")
    procs.gateway("--admin-key", ADMIN, redis=redis, node_id="b")
    await await_view(a, lambda v: len(v["nodes"]) == 2, "both nodes")
    redis.kill()
    v = await await_view(a, lambda v: v["complete"] is False and
                         [n["broker"] for n in v["nodes"]] == ["down"], "a alone, broker down")
    assert [n["node"] for n in v["nodes"]] == ["a"] and v["totals"]["broker_down"] == 1, v


@async_test(30)
async def test_embedded_engine_shows_one_node(procs):
    gw = procs.gateway("--admin-key", ADMIN, node_id="solo")
    c = await gw.subscriber("room.1")
    await c.publish("room.1", {"x": 1})
    v = await await_view(gw, lambda v: v["nodes"] and v["nodes"][0]["delivered_total"] == 1, "one delivery")
    assert v["complete"] is True and [n["node"] for n in v["nodes"]] == ["solo"], v
    n = v["nodes"][0]
    assert (n["engine"], n["broker"], n["connections"], n["subscriptions"], n["published_total"]) == \
        ("embedded", "up", 1, 1, 1), n
    assert v["channels"] == [{"channel": "room.1", "subscribers": 1, "nodes": {"solo": 1}}]


@async_test(30)
async def test_auth_rules(procs):
    # Neither key: off, even with --api-insecure (the view maps the cluster).
    open_gw = procs.gateway(node_id="n1")
    r = await open_gw.ahttp("GET", "/api/cluster")
    assert r.status == 403 and r.json()["error"] == "forbidden" and "--admin-key" in r.json()["message"], r
    # The API key alone opens it.
    api = procs.gateway("--api-key", API, node_id="n2")
    assert (await api.ahttp("GET", "/api/cluster")).status == 401
    assert (await view(api, API))["nodes"][0]["node"] == "n2"
    # With an admin key, only it opens the view; both keys open the rest of the API.
    both = procs.gateway("--api-key", API, "--admin-key", ADMIN, node_id="n3")
    for headers in ({}, bearer(API), bearer(ADMIN + "x"), {"Authorization": ADMIN}):
        r = await both.ahttp("GET", "/api/cluster", headers=headers)
        assert r.status == 401 and r.json() == {"error": "unauthorized",
                                                 "message": "send Authorization: Bearer <admin key>"}, r
    assert (await view(both, ADMIN))["self"] == "n3"
    for key in (API, ADMIN):
        r = await both.ahttp("POST", "/api/publish", {"channel": "c", "data": 1}, headers=bearer(key))
        assert r.status == 200, r
    # The admin key alone opens the whole API for its holder, to nobody else.
    admin = procs.gateway("--admin-key", ADMIN, node_id="n4", api_insecure=False)
    r = await admin.ahttp("POST", "/api/publish", {"channel": "c", "data": 1}, headers=bearer(ADMIN))
    assert r.status == 200, r
    r = await admin.ahttp("POST", "/api/publish", {"channel": "c", "data": 1})
    assert r.status == 401 and r.json()["error"] == "unauthorized", r
    # Wrong method: 405 naming the right ones, a JSON body.
    r = await admin.ahttp("POST", "/api/cluster", {}, headers=bearer(ADMIN))
    assert r.status == 405 and r.headers["allow"] == "GET, HEAD" and \
        r.json()["error"] == "method_not_allowed", r


def test_admin_key_flag():
    r = run_wsgate(["--admin-key", "a\x01b"])
    assert r.returncode == 2 and r.stderr.decode().startswith("wsgate: --admin-key: "), r
    r = run_wsgate([], env={"WSGATE_ADMIN_KEY": "a\tb"})
    assert r.returncode == 2 and b"WSGATE_ADMIN_KEY" in r.stderr, r
    help_text = run_wsgate(["--help"]).stdout.decode()
    assert "--admin-key" in help_text
    shown = run_wsgate(["config", "--check", "--admin-key", ADMIN]).stdout.decode()
    assert ADMIN not in shown and "admin-key = ****" in shown, shown


@async_test(60)
async def test_workers_beat_each_for_itself(procs, redis):
    # Workers share the node id but each has its own hub: one row each.
    gw = procs.gateway("--workers", "2", "--admin-key", ADMIN, redis=redis, node_id="w")
    clients = [await gw.subscriber("room.1") for _ in range(20)]
    with open(f"/proc/{gw.proc.pid}/task/{gw.proc.pid}/children") as f:
        pids = sorted(int(p) for p in f.read().split())
    v = await await_view(gw, lambda v: sum(n["connections"] for n in v["nodes"]) == 20, "20 connections")
    assert sorted(by_node(v)) == ["w/0", "w/1"], v
    assert sorted(n["pid"] for n in v["nodes"]) == pids
    assert all(n["workers"] == 2 and n["subscriptions"] == n["connections"] for n in v["nodes"]), v
    assert v["channels"][0]["channel"] == "room.1" and v["channels"][0]["subscribers"] == 20, v
    for c in clients:
        await c.close()
