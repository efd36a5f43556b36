"""docker-compose.yml's extras under a real engine, in one stack to build and start
once: HAProxy terminating TLS (docker-compose.tls.yml, with a self-signed
certificate made here by `openssl req`) and the `monitoring` profile's
Prometheus (deploy/prometheus) scraping every replica.

- TLS: wss:// clients through the balancer land on all 3 replicas and a message
  from each replica reaches every client; https:// serves /healthz, the chat
  page and POST /api/publish (with the API key) to the replicas behind it.
- Prometheus: `promtool check config` (and so the rules) in the image compose runs;
  every gateway replica (found by DNS) is a target and up, and only they are;
  the wsgate metrics are queryable and count the test's own clients; the alert
  rules are loaded and evaluate healthy; every PromQL expression of the alert
  rules and of deploy/grafana/wsgate-dashboard.json evaluates without error and
  names only metrics Prometheus has scraped; a fourth replica becomes a target.

Grafana (the profile's other service) is not started: its image cannot be
pulled here and no Debian package provides it.

Run: ctest --test-dir build -R compose_tls_monitoring --output-on-failure   (-V for the figures)
     /usr/bin/python3 -m pytest -s tests/compose/test_compose_tls_monitoring.py
"""
import asyncio
import json
import re
import secrets
import ssl
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest
import yaml

from composelib import REPO, broadcast, connect_n, engine, free_port, running, say, spread

SERVICES = ["redis", "gateway", "lb", "prometheus"]  # the monitoring profile without grafana
API_KEY = secrets.token_hex(16)


@pytest.fixture(scope="module")
def stack():
    with engine("redis:7.0", "haproxy:2.6", "prom/prometheus:v2.45.0") as (env, state):
        cert, key, pem = state / "cert.pem", state / "key.pem", state / "site.pem"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                        "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                        "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True, timeout=60)
        pem.write_text(cert.read_text() + key.read_text())
        pem.chmod(0o644)  # read by the image's haproxy user
        extra = {"WSGATE_TLS_PEM": str(pem), "WSGATE_TLS_PORT": str(free_port()),
                 "WSGATE_PROMETHEUS_PORT": str(free_port()), "WSGATE_API_KEY": API_KEY}
        with running(env, state, "tls-monitoring", files=["docker-compose.tls.yml"], env=extra,
                     profiles=["monitoring"]) as s:
            s.tls_port = int(extra["WSGATE_TLS_PORT"])
            s.prom_port = int(extra["WSGATE_PROMETHEUS_PORT"])
            s.tls = ssl.create_default_context(cafile=str(cert))
            yield s


def https(stack, method, path, body=None, headers=None):
    """(status, body) of one request to the balancer's TLS port."""
    req = urllib.request.Request(f"https://127.0.0.1:{stack.tls_port}{path}", method=method,
                                 data=body, headers=headers or {})
    try:
        with urllib.request.urlopen(req, context=stack.tls, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def prom(stack, path, **params):
    """The JSON answer of Prometheus's HTTP API; a query error is a 400 with a JSON body."""
    url = f"http://127.0.0.1:{stack.prom_port}{path}?{urllib.parse.urlencode(params)}"
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return json.load(r)
    except urllib.error.HTTPError as e:
        return json.load(e)


async def prom_until(stack, what, pred, path, timeout=90, **params):
    """Poll a Prometheus API call until pred(answer) holds; returns (answer, seconds)."""
    t, last = time.monotonic(), None
    while True:
        try:
            last = await asyncio.to_thread(prom, stack, path, **params)
            if pred(last):
                return last, time.monotonic() - t
        except OSError as e:  # Prometheus still starting
            last = repr(e)
        if time.monotonic() - t > timeout:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}: {last}")
        await asyncio.sleep(0.5)  # poll interval of a bounded wait (scrapes are 15 s apart)


def gateway_addrs(stack):
    """{'ip:8080'} of the running gateway replicas, as Prometheus's DNS discovery names them."""
    out = set()
    for c in stack.containers("gateway"):
        nets = c.attrs["NetworkSettings"]["Networks"]
        out |= {f"{n['IPAddress']}:8080" for n in nets.values() if n.get("IPAddress")}
    return out


def wsgate_targets(answer):
    """{instance: (health, last error)} of the active targets of job wsgate."""
    return {t["labels"]["instance"]: (t["health"], t["lastError"])
            for t in answer["data"]["activeTargets"] if t["labels"]["job"] == "wsgate"}


def kit_queries():
    """(where, PromQL) of every alert rule and dashboard panel."""
    rules = yaml.safe_load((REPO / "deploy/prometheus/wsgate-alerts.yml").read_text())
    out = [(f"alert {r['alert']}", r["expr"]) for g in rules["groups"] for r in g["rules"]]
    dash = json.loads((REPO / "deploy/grafana/wsgate-dashboard.json").read_text())
    out += [(f"panel {p['title']!r}", t["expr"]) for p in dash["panels"] for t in p["targets"]]
    return out


# python3-docker 5.0 compares API versions with distutils' StrictVersion
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_tls_termination_and_prometheus(stack):
    t_all = time.monotonic()
    _, took = stack.compose("build", "gateway", timeout=1800)
    say(f"image built in {took:.1f}s (the layer cache answers when compose_stack built this tree)")
    # check config also checks the rule files it loads
    r, _ = stack.compose("run", "--rm", "--no-deps", "--entrypoint", "promtool", "prometheus",
                         "check", "config", "/etc/prometheus/prometheus.yml")
    say("promtool check config: " + "; ".join(ln.strip() for ln in r.stdout.splitlines() if "SUCCESS" in ln))
    asyncio.run(scenario(stack))
    say(f"whole test {time.monotonic() - t_all:.1f}s (without down)")


async def scenario(stack):
    t = time.monotonic()
    await stack.acompose("up", "-d", "--scale", "gateway=3", *SERVICES)
    await stack.await_lb_up(3)
    say(f"up (3 gateways, HAProxy with TLS, Prometheus): 3/3 UP in HAProxy in {time.monotonic() - t:.1f}s")
    nodes = stack.node_to_container()
    clients = await connect_n(f"wss://127.0.0.1:{stack.tls_port}/ws", 6, ssl=stack.tls)
    try:
        await tls_checks(stack, nodes, clients)
        await prometheus_checks(stack, clients)
    finally:
        await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)


async def tls_checks(stack, nodes, clients):
    sp = spread(clients)
    say(f"6 wss:// clients through HAProxy's TLS port: {dict(sp)}")
    assert set(sp) == set(nodes), f"wss clients not on every replica: {dict(sp)} vs {list(nodes)}"
    senders = [next(c for c in clients if c.node == n) for n in nodes]
    got, took = await broadcast(clients, senders, "wss")
    say(f"broadcast over wss: {got}/{got} deliveries (one message from each replica) in {took * 1000:.0f} ms")

    status, body = await asyncio.to_thread(https, stack, "GET", "/healthz")
    assert status == 200, (status, body)
    status, body = await asyncio.to_thread(https, stack, "GET", "/")
    assert status == 200 and b"wsgate chat" in body, (status, body[:200])
    data = {"via": "https"}
    req = json.dumps({"channel": "chat", "data": data}).encode()
    status, body = await asyncio.to_thread(https, stack, "POST", "/api/publish", req,
                                           {"Content-Type": "application/json"})
    assert status == 401, f"the API answered without the key: {status} {body}"
    status, body = await asyncio.to_thread(https, stack, "POST", "/api/publish", req, {
        "Content-Type": "application/json", "Authorization": f"Bearer {API_KEY}"})
    assert status == 200, (status, body)
    await asyncio.gather(*(c.expect(data) for c in clients))
    say("https://: /healthz 200, the chat page, POST /api/publish 401 without the key and 200 "
        "with it, delivered to all 6 wss clients")


async def prometheus_checks(stack, clients):
    # every replica is a target, found by DNS, and up; nothing else is (not the balancer)
    want = gateway_addrs(stack)
    assert len(want) == 3, want
    answer, took = await prom_until(
        stack, f"the 3 gateways {sorted(want)} as targets, up",
        lambda a: (set(wsgate_targets(a)) == want
                   and all(h == "up" for h, _ in wsgate_targets(a).values())),
        "/api/v1/targets", state="active")
    say(f"Prometheus: targets {sorted(want)} all up {took:.1f}s after HAProxy had them")
    assert {t["labels"]["job"] for t in answer["data"]["activeTargets"]} == {"wsgate"}, answer

    # the wsgate metrics are there and count this test's clients (scrapes are 15 s apart)
    answer, took = await prom_until(
        stack, "sum(wsgate_connections) == the 6 clients",
        lambda a: a["data"]["result"] and float(a["data"]["result"][0]["value"][1]) == len(clients),
        "/api/v1/query", query="sum(wsgate_connections)")
    per_node = prom(stack, "/api/v1/query", query="wsgate_connections")["data"]["result"]
    assert {r["metric"]["instance"] for r in per_node} == want, per_node
    say(f"wsgate_connections per replica: "
        f"{ {r['metric']['instance']: r['value'][1] for r in per_node} } (sum = 6 after {took:.1f}s)")

    # the alert rules are loaded and have been evaluated without error
    answer, took = await prom_until(
        stack, "every alert rule evaluated",
        lambda a: a["data"]["groups"] and all(
            r["health"] != "unknown" for g in a["data"]["groups"] for r in g["rules"]),
        "/api/v1/rules", type="alert")
    rules = [r for g in answer["data"]["groups"] for r in g["rules"]]
    declared = {w.split(" ", 1)[1] for w, _ in kit_queries() if w.startswith("alert ")}
    assert {r["name"] for r in rules} == declared, (sorted(r["name"] for r in rules), sorted(declared))
    bad = [(r["name"], r["health"], r.get("lastError")) for r in rules if r["health"] != "ok"]
    assert not bad, bad
    say(f"{len(rules)} alert rules loaded and evaluated healthy ({took:.1f}s); firing: "
        f"{[r['name'] for r in rules if r['state'] == 'firing'] or 'none'}")

    # every expression of the kit evaluates, on metric names Prometheus has scraped
    scraped = set(prom(stack, "/api/v1/label/__name__/values")["data"])
    with_data = 0
    for where, expr in kit_queries():
        a = await asyncio.to_thread(prom, stack, "/api/v1/query", query=expr)
        assert a["status"] == "success" and not a.get("warnings"), f"{where}: {expr} -> {a}"
        with_data += bool(a["data"]["result"])
        missing = set(re.findall(r"\b(?:wsgate|process)_\w+", expr)) - scraped
        assert not missing, f"{where}: {expr} names metrics Prometheus never scraped: {missing}"
    say(f"{len(kit_queries())} PromQL expressions (alert rules + dashboard panels) evaluate; "
        f"{with_data} return series now")

    # a new replica is found by DNS and scraped, like the others
    t = time.monotonic()
    await stack.acompose("up", "-d", "--scale", "gateway=4", *SERVICES)
    want = gateway_addrs(stack)
    assert len(want) == 4, want
    await prom_until(stack, f"the 4 gateways {sorted(want)} as targets, up",
                     lambda a: (set(wsgate_targets(a)) == want
                                and all(h == "up" for h, _ in wsgate_targets(a).values())),
                     "/api/v1/targets", timeout=120, state="active")
    say(f"scale to 4: the new replica is a target and up {time.monotonic() - t:.1f}s after up")
