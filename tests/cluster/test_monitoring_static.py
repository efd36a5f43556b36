"""Static checks of the monitoring kit (no Prometheus or Grafana needed):

- deploy/prometheus/prometheus.yml scrapes every gateway (DNS A records of the
  compose service, its port), not the balancer, and loads the alert rules
  where docker-compose.yml mounts them
- deploy/prometheus/wsgate-alerts.yml has the alerts the runbook needs, each
  with a severity and a summary; `promtool check` when promtool is installed
- deploy/grafana: the dashboard JSON and the provisioning agree on the
  datasource uid and on the dashboards path compose mounts
- every metric an alert or a panel queries is one a real gateway exports
  (scraped from build/wsgate), and every `by (...)` label is one it carries

Run: /usr/bin/python3 -m pytest tests/cluster/test_monitoring_static.py
"""
import json
import re
import shutil
import subprocess

import pytest
import yaml

from wsgate_testing import REPO, Procs, scrape_metrics
from wsgate_testing.gateway import Gateway

PROM = REPO / "deploy" / "prometheus"
GRAFANA = REPO / "deploy" / "grafana"
COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())


def mounts(service):
    return dict(v.split(":")[:2] for v in COMPOSE["services"][service]["volumes"])


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """{metric family: set of label names} of a live gateway on Redis."""
    procs = Procs(tmp_path_factory.mktemp("mon"))
    try:
        redis = procs.redis()
        gw = Gateway(procs, [], redis=redis, node_id="mon")
        m = scrape_metrics(gw.port)
        return {name: {k for _, labels, _ in f["samples"] for k in dict(labels)}
                for name, f in m.families.items()}
    finally:
        procs.close()


def alert_rules():
    doc = yaml.safe_load((PROM / "wsgate-alerts.yml").read_text())
    return [r for g in doc["groups"] for r in g["rules"]]


def dashboard():
    return json.loads((GRAFANA / "wsgate-dashboard.json").read_text())


def queries():
    out = [("alert " + r["alert"], r["expr"]) for r in alert_rules()]
    for p in dashboard()["panels"]:
        out += [(f"panel {p['title']!r}", t["expr"]) for t in p["targets"]]
    return out


def test_prometheus_scrapes_each_gateway():
    cfg = yaml.safe_load((PROM / "prometheus.yml").read_text())
    jobs = {j["job_name"]: j for j in cfg["scrape_configs"]}
    sd = jobs["wsgate"]["dns_sd_configs"][0]
    assert sd["type"] == "A" and sd["names"] == ["gateway"], sd
    listen = COMPOSE["services"]["gateway"]["environment"]["WSGATE_LISTEN"]
    assert sd["port"] == int(listen.rsplit(":", 1)[1]), (sd, listen)
    assert "lb" not in json.dumps(cfg), "scrape the gateways, not the balancer"
    m = mounts("prometheus")
    assert m["./deploy/prometheus/prometheus.yml"] == "/etc/prometheus/prometheus.yml"
    for f in cfg["rule_files"]:
        assert f in m.values(), f"rule file {f} is not mounted by docker-compose.yml"


def test_alerts_cover_the_runbook():
    rules = {r["alert"]: r for r in alert_rules()}
    needed = {"WsgateBrokerDown": "wsgate_broker_up", "WsgateNotReady": "wsgate_ready",
              "WsgateSlowConsumerDisconnects": 'reason="slow_consumer"',
              "WsgateFanoutLatencyHigh": "histogram_quantile(0.99",
              "WsgateConnectionsNearLimit": "wsgate_max_connections"}
    for name, needle in needed.items():
        assert name in rules and needle in rules[name]["expr"], (name, rules.get(name))
    for r in rules.values():
        assert r["labels"]["severity"] in ("critical", "warning", "info"), r
        assert r["annotations"]["summary"] and re.fullmatch(r"\d+[smh]", r["for"]), r


def test_queries_use_exported_metrics_and_labels(exported):
    for where, expr in queries():
        assert expr.count("(") == expr.count(")") and expr.count("{") == expr.count("}"), (where, expr)
        names = set(re.findall(r"\b(wsgate_\w+|process_\w+)\b", expr))
        assert names or expr.startswith('up{job="wsgate"}'), f"{where} queries no wsgate metric: {expr}"
        labels = {"instance", "job"}
        for n in names:
            family = re.sub(r"_bucket$", "", n)
            assert family in exported, f"{where}: {n} is not exported by wsgate"
            labels |= exported[family]
        for group in re.findall(r"\bby \(([^)]*)\)", expr):
            used = {x.strip() for x in group.split(",")}
            assert used <= labels, f"{where}: by ({group}) uses labels wsgate does not set"
        for sel in re.findall(r"\{([^}]*)\}", expr):
            used = {kv.split("=")[0].strip() for kv in sel.split(",") if kv.strip()}
            assert used <= labels, f"{where}: selector {{{sel}}} uses unknown labels"


def test_grafana_dashboard_and_provisioning():
    d = dashboard()
    ds = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    uid = ds["datasources"][0]["uid"]
    assert ds["datasources"][0]["url"] == "http://prometheus:9090"
    assert d["uid"] and d["title"] and d["panels"]
    cells = set()
    for p in d["panels"]:
        assert p["datasource"]["uid"] == uid and p["targets"], p["title"]
        assert all(t["datasource"]["uid"] == uid and t["expr"] for t in p["targets"]), p["title"]
        g = p["gridPos"]
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert g["x"] + g["w"] <= 24 and not mine & cells, f"panel {p['title']!r} overlaps another"
        cells |= mine
    assert len({p["id"] for p in d["panels"]}) == len(d["panels"])
    prov = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "wsgate.yml").read_text())
    path = prov["providers"][0]["options"]["path"]
    m = mounts("grafana")
    assert m["./deploy/grafana/wsgate-dashboard.json"] == f"{path}/wsgate-dashboard.json"
    assert m["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"


def test_promtool_accepts_the_files(tmp_path):
    promtool = shutil.which("promtool")
    if not promtool:
        pytest.skip("promtool not installed (Debian package prometheus)")
    r = subprocess.run([promtool, "check", "rules", str(PROM / "wsgate-alerts.yml")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
