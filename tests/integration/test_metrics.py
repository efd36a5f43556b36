"""GET /metrics: Prometheus text format 0.0.4, parsed strictly (see
wsgate_testing/prom.py), and counters/gauges that move as the test acts:
connections, subscriptions, channels, publishes (WS and HTTP), deliveries,
bytes sent, fan-out latency, queue bytes, broker up/reconnects, invalid
payloads dropped, and each disconnect reason when provoked (client,
too_large, rate_limited here; slow_consumer in test_slow_consumers.py;
drain in test_drain.py); the process_* family against /proc, refused
upgrades by reason and HTTP API answers by status."""

import asyncio
import json
import os
import platform
from pathlib import Path

import pytest

from wsgate_testing import (WSGATE_BIN, WsClient, ascrape_metrics, async_test, await_metrics,
                            parse_prometheus)

# tests/bench/nouring, built beside wsgate (x86_64 only): io_uring forbidden.
NOURING_BIN = Path(WSGATE_BIN).parent / "tests" / "bench" / "nouring"


# counters that are not one zero sample on a fresh node (labelled, or CPU time)
OTHER_COUNTERS = ["wsgate_upgrades_refused_total", "wsgate_api_requests_total",
                  "process_cpu_seconds_total"]
COUNTERS = ["wsgate_connections_total", "wsgate_connections_refused_total",
            "wsgate_messages_published_total", "wsgate_messages_delivered_total", "wsgate_bytes_sent_total", "wsgate_writes_total",
            "wsgate_send_submits_total", "wsgate_sends_batched_total",
            "wsgate_writes_held_total",
            "wsgate_broker_reconnects_total", "wsgate_dropped_invalid_total", "wsgate_disconnects_total"]


GAUGES = ["wsgate_connections", "wsgate_subscriptions", "wsgate_channels", "wsgate_broker_up",
          "wsgate_queue_bytes", "wsgate_ready", "wsgate_max_connections", "wsgate_build_info",
          "process_start_time_seconds", "process_resident_memory_bytes", "process_virtual_memory_bytes",
          "process_open_fds", "process_max_fds"]


REASONS = ["client", "slow_consumer", "rate_limited", "too_large", "auth", "drain", "error", "timeout", "protocol"]
HIST = "wsgate_fanout_latency_seconds"
GOOD = """# HELP a_total A.
# TYPE a_total counter
a_total{x="1"} 3
a_total{x="q\\"\\\\\\n"} 0
# TYPE g gauge
g -1.5e3
# TYPE h histogram
h_bucket{le="0.1"} 1
h_bucket{le="1"} 2
h_bucket{le="+Inf"} 2
h_sum 0.7
h_count 2
"""


BAD = {
    "no TYPE": "# HELP a x\na 1\n",
    "TYPE after sample": "a 1\n# TYPE a counter\n",
    "undeclared sample": "# TYPE a counter\na 1\nb 2\n",
    "bad value": "# TYPE a gauge\na one\n",
    "bad label": '# TYPE a gauge\na{x=1} 1\n',
    "unterminated label": '# TYPE a gauge\na{x="1} 1\n',
    "bad escape": '# TYPE a gauge\na{x="\\t"} 1\n',
    "duplicate sample": "# TYPE a gauge\na 1\na 2\n",
    "two TYPEs": "# TYPE a gauge\n# TYPE a gauge\na 1\n",
    "bad type": "# TYPE a meter\na 1\n",
    "negative counter": "# TYPE a counter\na -1\n",
    "not contiguous": "# TYPE a gauge\n# TYPE b gauge\na{x=\"1\"} 1\nb 1\na{x=\"2\"} 1\n",
    "no final newline": "# TYPE a gauge\na 1",
    "not cumulative": '# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1\nh_sum 1\nh_count 1\n',
    "no +Inf": '# TYPE h histogram\nh_bucket{le="1"} 1\nh_sum 1\nh_count 1\n',
    "+Inf != count": '# TYPE h histogram\nh_bucket{le="1"} 1\nh_bucket{le="+Inf"} 1\nh_sum 1\nh_count 2\n',
    "no count": '# TYPE h histogram\nh_bucket{le="+Inf"} 1\nh_sum 1\n',
    "le out of order": '# TYPE h histogram\nh_bucket{le="2"} 1\nh_bucket{le="1"} 1\n'
                       'h_bucket{le="+Inf"} 1\nh_sum 1\nh_count 1\n',
}


def test_parser_accepts_valid_text():
    m = parse_prometheus(GOOD)
    assert m.value("a_total", x="1") == 3
    assert m.value("a_total", x='q"\\\n') == 0
    assert m.value("g") == -1500
    assert m.value("h_count") == 2 and m.type_of("h") == "histogram"


@pytest.mark.parametrize("name", list(BAD))
def test_parser_rejects(name):
    with pytest.raises(AssertionError):
        parse_prometheus(BAD[name])


@pytest.mark.parametrize("mode", ["embedded", "redis"])
def test_metrics_format_on_a_fresh_node(procs, mode):
    redis = procs.redis() if mode == "redis" else None
    gw = procs.gateway(redis=redis, node_id="n1")
    r = gw.http("GET", "/metrics")
    assert r.status == 200, r
    ctype = r.headers.get("content-type", "")
    assert ctype.split(";")[0].strip() == "text/plain", f"content type {ctype!r}"
    params = dict(p.strip().split("=", 1) for p in ctype.split(";")[1:] if "=" in p)
    assert params.get("version") == "0.0.4", f"content type {ctype!r} lacks version=0.0.4"
    m = parse_prometheus(r.body.decode("utf-8"))
    for name in COUNTERS + OTHER_COUNTERS:
        assert m.families.get(name, {}).get("type") == "counter", f"{name} missing or not a counter"
    for name in GAUGES:
        assert m.families.get(name, {}).get("type") == "gauge", f"{name} missing or not a gauge"
    assert m.families.get(HIST, {}).get("type") == "histogram", f"{HIST} missing or not a histogram"
    for name in COUNTERS + OTHER_COUNTERS + GAUGES + [HIST]:
        assert m.families[name]["help"], f"{name} has no HELP text"
    for name in ("wsgate_upgrades_refused_total", "wsgate_api_requests_total"):
        assert sum(v for _, _, v in m.families[name]["samples"]) == 0, f"{name} moved on a fresh node"
    reasons = sorted(l["reason"] for _, l, _ in m.families["wsgate_disconnects_total"]["samples"])
    assert reasons == sorted(REASONS), f"disconnect reasons {reasons}"
    # a fresh node: nothing happened yet
    for name in COUNTERS:
        if name != "wsgate_disconnects_total":
            assert m.value(name) == 0, f"{name} = {m.value(name)} on a fresh node"
    for reason in REASONS:
        assert m.value("wsgate_disconnects_total", reason=reason) == 0
    for name in ("wsgate_connections", "wsgate_subscriptions", "wsgate_channels", "wsgate_queue_bytes"):
        assert m.value(name) == 0, f"{name} = {m.value(name)} on a fresh node"
    assert m.value("wsgate_broker_up") == 1
    assert m.value(HIST + "_count") == 0
    # other methods are refused
    assert gw.http("POST", "/metrics", body="").status == 405


class CountingClient(WsClient):
    """Counts the payload bytes of every frame received."""
    rx_bytes = 0

    async def _read(self, timeout):
        msg = await asyncio.wait_for(self.ws.recv(), timeout)
        self.rx_bytes += len(msg.encode() if isinstance(msg, str) else msg)
        return self._split(msg)


def delta(m1, m0, name, **labels):
    return m1.value(name, **labels) - m0.value(name, **labels)


def check(m1, m0, expected, what):
    """expected: {name or (name, reason): delta}."""
    got = {}
    for k in expected:
        if isinstance(k, tuple):
            got[k] = delta(m1, m0, k[0], reason=k[1])
        else:
            got[k] = delta(m1, m0, k)
    assert got == expected, f"{what}: deltas {got}, expected {expected}"


def gauges(m):
    return {n: m.value(n) for n in ("wsgate_connections", "wsgate_subscriptions", "wsgate_channels",
                                     "wsgate_queue_bytes")}


def reasons(m):
    return {r: m.value("wsgate_disconnects_total", reason=r) for r in REASONS}


@pytest.mark.parametrize("mode", ["embedded", "redis"])
@async_test(40)
async def test_counters_follow_activity(procs, mode):
    redis = procs.redis() if mode == "redis" else None
    gw = procs.gateway(redis=redis, node_id="n1")
    m0 = await ascrape_metrics(gw)

    c1 = await CountingClient.connect(gw.ws_url())
    c2 = await CountingClient.connect(gw.ws_url())
    await c1.subscribe("a")
    await c1.subscribe("b")
    await c2.subscribe("a")
    m1 = await ascrape_metrics(gw)
    check(m1, m0, {"wsgate_connections_total": 2, "wsgate_messages_published_total": 0,
                   "wsgate_messages_delivered_total": 0}, "after 2 connects and 3 subscribes")
    assert gauges(m1) == {"wsgate_connections": 2, "wsgate_subscriptions": 3, "wsgate_channels": 2,
                          "wsgate_queue_bytes": 0}, gauges(m1)

    # one WS publish to a (2 subscribers), one HTTP publish to b (1), one HTTP
    # publish nobody receives, and refused publishes that count for nothing
    await c2.publish("a", {"x": 1})
    r = await gw.publish_http("b", [1, 2, 3])
    assert r.status == 200, r
    r = await gw.publish_http("nobody", "n")
    assert r.status == 200, r
    await c2.error({"op": "publish", "channel": "bad channel!", "data": 1}, "bad_channel")
    r = await gw.ahttp("POST", "/api/publish", {"channel": "a"})
    assert r.status == 400, r
    assert await c1.next_message("a") == {"x": 1}
    assert await c1.next_message("b") == [1, 2, 3]
    assert await c2.next_message("a") == {"x": 1}
    m2 = await ascrape_metrics(gw)
    check(m2, m1, {"wsgate_messages_published_total": 3, "wsgate_messages_delivered_total": 3,
                   HIST + "_count": 2, "wsgate_connections_total": 0, "wsgate_dropped_invalid_total": 0},
          "after 3 accepted publishes, 3 deliveries")
    lat = delta(m2, m1, HIST + "_sum")
    assert 0 < lat < 10, f"fan-out latency sum moved by {lat}s for 2 fan-outs"
    # every WebSocket payload byte the gateway wrote was received by c1/c2
    sent = delta(m2, m0, "wsgate_bytes_sent_total")
    assert sent == c1.rx_bytes + c2.rx_bytes, \
        f"wsgate_bytes_sent_total moved by {sent}, clients received {c1.rx_bytes + c2.rx_bytes} bytes"
    assert m2.value("wsgate_queue_bytes") == 0

    # unsubscribes
    await c2.unsubscribe("a")
    m3 = await ascrape_metrics(gw)
    assert gauges(m3) == {"wsgate_connections": 2, "wsgate_subscriptions": 2, "wsgate_channels": 2,
                          "wsgate_queue_bytes": 0}, gauges(m3)
    await c1.unsubscribe("b")
    m3 = await ascrape_metrics(gw)
    assert gauges(m3) == {"wsgate_connections": 2, "wsgate_subscriptions": 1, "wsgate_channels": 1,
                          "wsgate_queue_bytes": 0}, gauges(m3)

    # a client closes: gauge down, reason "client"
    await c1.close()
    m4 = await await_metrics(gw, lambda m: m.value("wsgate_connections") == 1, 5,
                             "wsgate_connections to drop to 1")
    assert gauges(m4) == {"wsgate_connections": 1, "wsgate_subscriptions": 0, "wsgate_channels": 0,
                          "wsgate_queue_bytes": 0}, gauges(m4)
    check(m4, m3, {("wsgate_disconnects_total", r): (1 if r == "client" else 0) for r in REASONS},
          "after a client closed")
    assert delta(m4, m0, "wsgate_connections_total") == 2
    # an abrupt disconnect (no close frame) is a client disconnect too
    raw = gw.raw()
    assert raw.recv_json().get("op") == "welcome"
    raw.close(reset=True)
    m5 = await await_metrics(gw, lambda m: m.value("wsgate_disconnects_total", reason="client")
                             == m4.value("wsgate_disconnects_total", reason="client") + 1, 5,
                             "a client disconnect counted for a reset connection")
    assert m5.value("wsgate_connections") == 1
    check(m5, m4, {"wsgate_connections_total": 1}, "after a raw connection")


@async_test(40)
async def test_broker_up_and_reconnects(procs, redis):
    gw = procs.gateway(redis=redis, node_id="n1")
    c = await gw.subscriber("x")
    m0 = await ascrape_metrics(gw)
    assert m0.value("wsgate_broker_up") == 1
    assert m0.value("wsgate_broker_reconnects_total") == 0

    # each outage and recovery counts one reconnect
    for outage in (1, 2):
        redis.kill()
        m1 = await await_metrics(gw, lambda m: m.value("wsgate_broker_up") == 0, 5, "wsgate_broker_up 0")
        assert m1.value("wsgate_broker_reconnects_total") == outage - 1
        redis.restart()
        m2 = await await_metrics(gw, lambda m: m.value("wsgate_broker_up") == 1, 10, "wsgate_broker_up 1")
        reconnects = m2.value("wsgate_broker_reconnects_total")
        assert reconnects == outage, reconnects
        # the subscription is back: a publish straight into Redis arrives
        await await_metrics(gw, lambda m: m.value("wsgate_subscriptions") == 1, 5, "subscription restored")
        for _ in range(50):
            if redis.publish("wsgate:x", f'"back{outage}"') >= 1:
                break
            await asyncio.sleep(0.1)
        assert await c.next_message("x") == f"back{outage}"


@async_test(30)
async def test_dropped_invalid(procs, redis):
    gw = procs.gateway(redis=redis, node_id="n1")
    c = await gw.subscriber("d")
    m0 = await ascrape_metrics(gw)
    assert redis.publish("wsgate:d", "{not json") == 1
    assert redis.publish("wsgate:d", "[1,") == 1
    assert redis.publish("wsgate:d", '"ok"') == 1
    await c.only_before_sentinel("d", "ok")
    m1 = await ascrape_metrics(gw)
    check(m1, m0, {"wsgate_dropped_invalid_total": 2, "wsgate_messages_delivered_total": 1,
                   "wsgate_messages_published_total": 0}, "after 2 invalid and 1 valid payload from Redis")


def reply_or_message(o):
    return o.get("op") in ("ack", "error", "message")


@async_test(40)
async def test_disconnect_reasons(procs):
    """Each provoked close moves exactly its reason by one."""
    gw = procs.gateway("--max-message-size", "1024", "--publish-rate", "1", "--publish-burst", "2",
                       node_id="n1")
    witness = await gw.connect()
    m = await ascrape_metrics(gw)

    async def step(reason, provoke):
        nonlocal m
        before = reasons(m)
        await provoke()
        m = await await_metrics(gw, lambda x: reasons(x)[reason] == before[reason] + 1, 5,
                                f"disconnects_total{{reason={reason!r}}} to move")
        moved = {r: v - before[r] for r, v in reasons(m).items() if v != before[r]}
        assert moved == {reason: 1}, f"provoking {reason}: moved {moved}"
        assert m.value("wsgate_connections") == 1, m.value("wsgate_connections")

    async def client_close():
        c = await gw.connect()
        await c.ping()
        await c.close()

    async def too_large():
        c = await gw.connect()
        await c.send_raw(json.dumps({"op": "publish", "channel": "x", "data": "y" * 2000}))
        await c.expect_close(1009, allowed=reply_or_message)

    async def rate_limited():
        c = await gw.connect()
        for i in range(1, 6):        # 2 accepted, 2 refused, the 3rd refusal closes
            await c.send({"op": "publish", "channel": "x", "data": i, "id": i})
        await c.expect_close(1008, "rate limited", allowed=reply_or_message)

    await step("client", client_close)
    await step("too_large", too_large)
    await step("rate_limited", rate_limited)
    await witness.ping()


@async_test(20)
async def test_process_metrics_match_proc(procs):
    import os
    import time
    from wsgate_testing import cpu_seconds, rss_kb
    t0 = time.time()
    gw = procs.gateway(node_id="p")
    clients = [await gw.connect() for _ in range(5)]
    pid = gw.proc.pid
    m = await ascrape_metrics(gw)
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    assert abs(m.value("process_open_fds") - fds) <= 1, (m.value("process_open_fds"), fds)
    assert m.value("process_open_fds") >= 5 + 3, "each client holds a descriptor"
    with open(f"/proc/{pid}/limits") as f:
        soft = next(int(l.split()[3]) for l in f if l.startswith("Max open files"))
    assert m.value("process_max_fds") == soft
    rss = rss_kb(pid) * 1024
    assert 0.5 * rss <= m.value("process_resident_memory_bytes") <= 2 * rss, (m.value("process_resident_memory_bytes"), rss)
    assert m.value("process_virtual_memory_bytes") >= m.value("process_resident_memory_bytes")
    assert 0 < m.value("process_cpu_seconds_total") <= cpu_seconds(pid) + 0.05
    assert t0 - 1 <= m.value("process_start_time_seconds") <= time.time(), (t0, m.value("process_start_time_seconds"))
    assert m.value("wsgate_ready") == 1
    assert m.value("wsgate_max_connections") == 10000
    for c in clients:
        await c.close()


@async_test(20)
async def test_refusals_by_reason(procs):
    from wsgate_testing import raw_upgrade
    gw = procs.gateway("--allowed-origins", "http://ok.example", "--max-connections", "1", node_id="r")
    m0 = await ascrape_metrics(gw)
    r = await asyncio.to_thread(raw_upgrade, gw.port, {"Origin": "http://evil.example"})
    assert r.status == 403, r
    c = await gw.connect(origin="http://ok.example")
    r = await asyncio.to_thread(raw_upgrade, gw.port, {"Origin": "http://ok.example"})
    assert r.status == 503, r
    m1 = await ascrape_metrics(gw)
    moved = lambda reason: (m1.value("wsgate_upgrades_refused_total", reason=reason)
                            - m0.value("wsgate_upgrades_refused_total", reason=reason))
    assert moved("origin_not_allowed") == 1 and moved("connection_limit") == 1
    assert moved("draining") == 0
    assert (m1.value("wsgate_connections_refused_total")
            - m0.value("wsgate_connections_refused_total")) == 2
    await c.close()


@async_test(20)
async def test_api_requests_by_status(procs):
    gw = procs.gateway(node_id="a")
    off = procs.gateway(node_id="o", api_insecure=False)
    await gw.publish_http("c", 1)
    await gw.publish_http("c", 2)
    await gw.ahttp("POST", "/api/publish", body=b"nope")
    await gw.ahttp("GET", "/api/publish")
    await gw.ahttp("GET", "/healthz")          # not the API: not counted
    await off.publish_http("c", 1)
    m, mo = await ascrape_metrics(gw), await ascrape_metrics(off)
    code = lambda metrics, c: metrics.value("wsgate_api_requests_total", code=c)
    assert (code(m, "200"), code(m, "400"), code(m, "405"), code(m, "403")) == (2, 1, 1, 0)
    assert code(mo, "403") == 1 and code(mo, "200") == 0


@async_test(40)
async def test_one_submission_carries_a_fanout(procs):
    """A broadcast to 40 idle subscribers leaves in one io_uring submission
    (net/sendq.h), not 40 send()s, and every subscriber gets it intact."""
    gw = procs.gateway(node_id="n1")
    if "io_uring unavailable" in gw.proc.text():
        pytest.skip("io_uring is unavailable here: the gateway sends one send() per write")
    await broadcast_to_40(gw, {"wsgate_send_submits_total": 1, "wsgate_sends_batched_total": 40,
                               "wsgate_writes_total": 40})


@async_test(40)
async def test_fanout_without_io_uring(procs):
    """Under a seccomp filter that refuses io_uring as Docker's and Podman's
    default profiles do (tests/bench/nouring), the gateway says so and sends
    each write by send(): the broadcast arrives, no submission is counted."""
    if platform.machine() != "x86_64":
        pytest.skip("tests/bench/nouring holds x86_64's syscall numbers")
    assert os.access(NOURING_BIN, os.X_OK), f"{NOURING_BIN} not built"
    gw = procs.gateway(node_id="n1", prefix=[str(NOURING_BIN)])
    await gw.await_line(r"io_uring unavailable \(Operation not permitted\): one send\(\) per write")
    m = await broadcast_to_40(gw, {"wsgate_send_submits_total": 0,
                                   "wsgate_sends_batched_total": 0, "wsgate_writes_total": 40})
    assert m.value("wsgate_send_submits_total") == 0


async def broadcast_to_40(gw, expected):
    """One broadcast to 40 idle subscribers of gw, which each get it intact;
    expected: the counters' deltas. Returns the metrics after it."""
    subs = [await gw.subscriber("fan") for _ in range(40)]
    await asyncio.sleep(0.1)  # idle: past the write window of their subscribe acks
    m0 = await ascrape_metrics(gw)
    r = await gw.publish_http("fan", {"n": 1, "pad": "x" * 200})
    assert r.status == 200, r
    for s in subs:
        assert await s.next_message("fan") == {"n": 1, "pad": "x" * 200}
    m1 = await ascrape_metrics(gw)
    check(m1, m0, expected, "after one broadcast to 40 subscribers")
    for s in subs:
        await s.close()
    return m1
