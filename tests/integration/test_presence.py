"""Presence (issue 10): on channels of --presence-channels, {"op":"presence"}
lists the subscribed sessions of every replica (session, sub from the
token, node) and {"op":"presence_stats"} counts them; GET /api/presence
answers the same for backends. A replica SIGKILLed leaves no ghosts beyond
--presence-ttl. Real redis-server and gateway processes."""

import asyncio
import time

from wsgate_testing import WsClient, ascrape_metrics, async_test, mint_token

SECRET = "presence-secret-0123456789abcdef0123"
PRES = ("--presence-channels", "room.*")


def tok(sub):
    return mint_token({"sub": sub, "channels": ["room.*", "lobby"], "exp": int(time.time()) + 300}, SECRET)


async def with_token(gw, token):
    return await WsClient.connect(gw.ws_url() + "?token=" + token)


async def presence(c, channel, stats=False):
    r = await c.request({"op": "presence_stats" if stats else "presence", "channel": channel})
    assert r.get("op") == ("presence_stats" if stats else "presence"), r
    return r


def sessions(r):
    return sorted(m["session"] for m in r["members"])


@async_test(30)
async def test_members_and_counts(mkgw):
    gw = mkgw(*PRES, "--jwt-secret", SECRET, "--auth", "optional", "--anonymous-channels", "room.*")
    a1 = await with_token(gw, tok("ana"))
    a2 = await with_token(gw, tok("ana"))
    anon = await gw.connect()
    for c in (a1, a2, anon):
        await c.subscribe("room.1")
    r = await presence(anon, "room.1")
    want = sorted(c.welcome["session"] for c in (a1, a2, anon))
    assert sessions(r) == want, r
    node = a1.welcome["node"]
    by = {m["session"]: m for m in r["members"]}
    assert by[a1.welcome["session"]] == {"session": a1.welcome["session"], "sub": "ana", "node": node}
    assert by[anon.welcome["session"]] == {"session": anon.welcome["session"], "node": node}
    st = await presence(a1, "room.1", stats=True)
    assert st == {"op": "presence_stats", "id": st["id"], "channel": "room.1", "sessions": 3, "users": 1}, st
    await a2.unsubscribe("room.1")
    await anon.close()
    r = await presence(a1, "room.1")
    assert sessions(r) == [a1.welcome["session"]], r
    assert (await ascrape_metrics(gw)).value("wsgate_presence_members") == 1
    h = await gw.ahttp("GET", "/api/presence?channel=room.1")
    assert h.status == 200 and h.json() == {"channel": "room.1", "sessions": 1, "users": 1, "members": [
        {"session": a1.welcome["session"], "sub": "ana", "node": node}]}, h


@async_test(30)
async def test_presence_refused(mkgw):
    gw = mkgw(*PRES, "--api-key", "k")
    c = await gw.connect()
    await c.error({"op": "presence", "channel": "lobby"}, "presence_off")
    await c.error({"op": "presence_stats", "channel": "lobby"}, "presence_off")
    await c.error({"op": "presence", "channel": "bad name"}, "bad_channel")
    await c.error({"op": "presence"}, "bad_request")
    r = await presence(c, "room.empty")   # no subscriber: an empty list
    assert r["members"] == [] and r["sessions"] == 0, r
    auth = {"Authorization": "Bearer k"}
    for path, status, code in [("/api/presence?channel=lobby", 404, "presence_off"),
                               ("/api/presence", 400, "bad_channel"),
                               ("/api/presence?channel=a%20b", 400, "bad_channel")]:
        h = await gw.ahttp("GET", path, headers=auth)
        assert h.status == status and h.json()["error"] == code, (path, h)
    assert (await gw.ahttp("GET", "/api/presence?channel=room.1")).status == 401
    assert (await gw.ahttp("POST", "/api/presence?channel=room.1", {}, headers=auth)).status == 405


@async_test(30)
async def test_presence_needs_a_grant(procs):
    gw = procs.gateway(*PRES, "--jwt-secret", SECRET, node_id="n1")
    c = await with_token(gw, mint_token({"sub": "bo", "channels": ["lobby"], "exp": int(time.time()) + 300},
                                        SECRET))
    await c.error({"op": "presence", "channel": "room.1"}, "forbidden")


@async_test(60)
async def test_across_replicas_and_a_dead_one_leaves_within_the_ttl(procs, redis):
    ttl = 2
    a = procs.gateway(*PRES, "--presence-ttl", str(ttl), redis=redis, node_id="a")
    b = procs.gateway(*PRES, "--presence-ttl", str(ttl), redis=redis, node_id="b")
    ca, cb1, cb2 = await a.connect(), await b.connect(), await b.connect()
    for c in (ca, cb1, cb2):
        await c.subscribe("room.x")
    want = sorted([("a", ca.welcome["session"]), ("b", cb1.welcome["session"]), ("b", cb2.welcome["session"])])
    t0 = time.monotonic()
    while True:   # b's joins reach Redis as its acks reach the clients: ask until they are there
        r = await presence(ca, "room.x")
        if sorted((m["node"], m["session"]) for m in r["members"]) == want:
            break
        assert time.monotonic() - t0 < 2, f"members of b not listed on a: {r}"
        await asyncio.sleep(0.02)
    await asyncio.sleep(ttl * 1.5)   # past one TTL: the refreshes keep every member
    assert len((await presence(cb1, "room.x"))["members"]) == 3
    b.proc.p.kill()
    t0 = time.monotonic()
    while True:   # the members of b expire in Redis on its own clock
        r = await presence(ca, "room.x")
        if sessions(r) == [ca.welcome["session"]]:
            break
        assert time.monotonic() - t0 < ttl + 1.5, f"ghosts of the dead replica after {ttl + 1.5}s: {r}"
        await asyncio.sleep(0.1)
    print(f"members of the killed replica gone after {time.monotonic() - t0:.2f}s (--presence-ttl {ttl})")


def is_event(op, session):
    return lambda o: o.get("op") == op and o.get("session") == session


@async_test(30)
async def test_join_and_leave_events(mkgw):
    gw = mkgw(*PRES, "--jwt-secret", SECRET, "--auth", "optional", "--anonymous-channels", "room.*,lobby")
    watcher, quiet = await gw.connect(), await gw.connect()
    await watcher.ok({"op": "subscribe", "channel": "room.1", "presence": True})
    await quiet.subscribe("room.1")   # no presence events asked
    ana = await with_token(gw, tok("ana"))
    await ana.subscribe("room.1")
    s = ana.welcome["session"]
    j = await watcher.expect(is_event("join", s))
    assert j == {"op": "join", "channel": "room.1", "session": s, "sub": "ana", "node": ana.welcome["node"]}, j
    await ana.unsubscribe("room.1")
    l = await watcher.expect(is_event("leave", s))
    assert l == dict(j, op="leave"), l
    other = await gw.connect()
    await other.subscribe("room.1")
    await other.close()   # a connection that goes leaves too
    await watcher.expect(is_event("join", other.welcome["session"]))
    await watcher.expect(is_event("leave", other.welcome["session"]))
    await quiet.ping()
    assert not [o for o in quiet.pending if o.get("op") in ("join", "leave")], list(quiet.pending)
    await watcher.error({"op": "subscribe", "channel": "lobby", "presence": True}, "presence_off")
    await watcher.error({"op": "subscribe", "channel": "room.2", "presence": 1}, "bad_request")


@async_test(60)
async def test_events_across_replicas_and_a_dead_one_leaves(procs, redis):
    ttl = 2
    a = procs.gateway(*PRES, "--presence-ttl", str(ttl), redis=redis, node_id="a")
    b = procs.gateway(*PRES, "--presence-ttl", str(ttl), redis=redis, node_id="b")
    watcher = await a.connect()
    await watcher.ok({"op": "subscribe", "channel": "room.x", "presence": True})
    cb = await b.connect()
    await cb.subscribe("room.x")
    s = cb.welcome["session"]
    assert (await watcher.expect(is_event("join", s)))["node"] == "b"
    b.proc.p.kill()
    t0 = time.monotonic()
    # a's refresh (every ttl/3) prunes what b stopped refreshing, announcing it
    l = await watcher.expect(is_event("leave", s), timeout=ttl + ttl / 3 + 2)
    assert l == {"op": "leave", "channel": "room.x", "session": s, "node": "b"}, l
    print(f"leave of the killed replica's member after {time.monotonic() - t0:.2f}s (--presence-ttl {ttl})")
