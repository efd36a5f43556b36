"""Static checks of the deployment files (no Docker engine needed).

- docker-compose.yml parses (`docker-compose config -q`, Debian's docker-compose)
- deploy/haproxy.cfg passes `haproxy -c` as Docker runs it and with every option on
- deploy/Dockerfile: its apt package lists are real, installable Debian 12 names;
  the build list is what .ci/run installs; the runtime list covers every shared
  library build/wsgate links; non-root, EXPOSE, STOPSIGNAL, HEALTHCHECK
- the HEALTHCHECK command itself works (against a stub and the real binary)
- deploy/local-cluster.sh: shellcheck, clear one-line failures
- deploy/k8s builds with kustomize and has the probes; deploy/wsgate.service verifies
- web/index.html loads nothing external and never uses innerHTML

Run: /usr/bin/python3 -m pytest tests/cluster/test_deploy_static.py
"""
import http.server
import json
import os
import re
import shutil
import socket
import subprocess
import threading

import pytest
import yaml

from wsgate_testing import REPO, free_port
from wsgate_testing.cluster import wsgate_bin

DOCKERFILE = REPO / "deploy" / "Dockerfile"
HAPROXY_CFG = REPO / "deploy" / "haproxy.cfg"


def run(cmd, **kw):
    kw.setdefault("timeout", 120)
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


def need(tool, package):
    path = shutil.which(tool) or shutil.which(tool, path="/usr/sbin:/sbin")
    assert path, f"{tool} not found (Debian package {package})"
    return path


def optional(tool):
    path = shutil.which(tool)
    if not path:
        pytest.skip(f"{tool} not installed")
    return path


# ---- docker-compose ------------------------------------------------------

def test_compose_config_valid():
    r = run([need("docker-compose", "docker-compose"), "config", "-q"], cwd=REPO)
    assert r.returncode == 0, r.stderr


def test_compose_shape():
    doc = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    s = doc["services"]
    assert set(s) == {"redis", "gateway", "lb", "prometheus", "grafana"}
    # monitoring only with --profile monitoring; the default stack is unchanged
    assert {n for n, v in s.items() if v.get("profiles") == ["monitoring"]} == {"prometheus", "grafana"}
    assert "healthcheck" in s["redis"]
    gw = s["gateway"]
    assert gw["build"]["dockerfile"] == "deploy/Dockerfile"
    assert "ports" not in gw and "container_name" not in gw, "gateway must be scalable"
    assert all(k.startswith("WSGATE_") for k in gw["environment"])
    lb = s["lb"]
    # host ports default to 8080 / 127.0.0.1:8404; tests/compose picks free ones
    assert "${WSGATE_PORT:-8080}:8080" in lb["ports"], lb["ports"]
    assert "127.0.0.1:${WSGATE_STATS_PORT:-8404}:8404" in lb["ports"], lb["ports"]
    assert any(v.startswith("./deploy/haproxy.cfg:") for v in lb["volumes"])


# ---- haproxy -------------------------------------------------------------

@pytest.mark.parametrize("env", [
    {},  # as docker-compose runs it, defaults
    {"WSGATE_LB_BIND": "127.0.0.1:18080", "WSGATE_LB_STATS_BIND": "127.0.0.1:18404",
     "WSGATE_LB_STATS_SOCKET": "/tmp/wsgate-check.sock", "WSGATE_LB_CHECK_INTER": "500ms",
     "WSGATE_LB_SLOTS": "3", "WSGATE_LB_MAXCONN": "1000"},
], ids=["defaults", "all-options"])
def test_haproxy_config_valid(env):
    r = run([need("haproxy", "haproxy"), "-c", "-f", str(HAPROXY_CFG)],
            env={k: v for k, v in os.environ.items() if not k.startswith("WSGATE_LB_")} | env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "[WARNING]" not in r.stdout + r.stderr, r.stdout + r.stderr


def test_haproxy_config_contract():
    cfg = HAPROXY_CFG.read_text()
    # The engine's DNS from /etc/resolv.conf: Docker's 127.0.0.11 and Podman's
    # aardvark-dns alike (a fixed 127.0.0.11 finds no replica under Podman).
    section = re.search(r"^resolvers docker\n((?:[ \t]+\S.*\n)+)", cfg, re.M)
    assert section and "parse-resolv-conf" in section.group(1), "resolvers docker: parse-resolv-conf"
    assert "nameserver" not in section.group(1), section.group(1)
    for needle in ("balance leastconn", "uri /readyz",
                   "timeout tunnel", "server-template gw", "resolvers docker",
                   "# >>> servers", "# <<< servers"):
        assert needle in cfg, needle


# ---- Dockerfile ----------------------------------------------------------

def dockerfile_arg(name):
    m = re.search(rf'^ARG {name}="([^"]*)"', DOCKERFILE.read_text(), re.M)
    assert m, f"ARG {name} not found in {DOCKERFILE}"
    return m.group(1).split()


def test_dockerfile_shape():
    text = DOCKERFILE.read_text()
    assert re.search(r"^ARG DEBIAN_IMAGE=debian:bookworm-slim$", text, re.M)
    assert len(re.findall(r"^FROM \$\{DEBIAN_IMAGE\} AS (build|runtime)$", text, re.M)) == 2
    assert "ctest --test-dir build -L unit" in text
    runtime = text.split("AS runtime", 1)[1]
    user = re.search(r"^USER (\S+)", runtime, re.M)
    assert user and not user.group(1).startswith(("root", "0")), "runtime must not run as root"
    assert re.search(r"^EXPOSE 8080$", runtime, re.M)
    assert re.search(r"^STOPSIGNAL SIGTERM$", runtime, re.M)
    assert "HEALTHCHECK" in runtime
    assert "-dev" not in " ".join(dockerfile_arg("RUNTIME_PACKAGES"))


@pytest.mark.parametrize("arg", ["BUILD_PACKAGES", "RUNTIME_PACKAGES"])
def test_dockerfile_packages_installable(arg):
    """Every name is a real Debian 12 package that apt can install with its
    dependencies (needs `apt-get update` to have run, as .ci/run does)."""
    pkgs = dockerfile_arg(arg)
    for p in pkgs:
        r = run(["apt-cache", "show", "--no-all-versions", p])
        assert r.returncode == 0 and f"Package: {p}" in r.stdout, f"{arg}: no Debian package {p!r}"
    r = run(["apt-get", "install", "--simulate", "--no-install-recommends", "-q", *pkgs])
    assert r.returncode == 0, f"{arg} not installable:\n{r.stdout}\n{r.stderr}"


def test_dockerfile_build_packages_match_ci():
    ci = REPO / ".ci" / "run"
    if not ci.exists():
        pytest.skip(".ci/run does not exist yet")
    words = set(re.findall(r"[A-Za-z0-9.+-]+", ci.read_text()))
    build = dockerfile_arg("BUILD_PACKAGES")
    missing = [p for p in build if p not in words]
    assert not missing, f".ci/run does not install {missing} that deploy/Dockerfile builds with"
    # and the other way: a library the CI build needs must be in the image build too
    extra = sorted(w for w in words if w.startswith("lib") and w.endswith("-dev") and w not in build)
    assert not extra, f"deploy/Dockerfile BUILD_PACKAGES lacks {extra} that .ci/run installs"


def test_runtime_packages_cover_binary():
    """Each shared library build/wsgate links comes from RUNTIME_PACKAGES or their
    dependencies (or the slim base image), so the image's ldd check will pass."""
    binary = wsgate_bin()
    if not binary.exists():
        pytest.skip(f"{binary} not built")
    runtime = dockerfile_arg("RUNTIME_PACKAGES")
    r = run(["apt-cache", "depends", "--recurse", "--no-recommends", "--no-suggests",
             "--no-conflicts", "--no-breaks", "--no-replaces", "--no-enhances", *runtime])
    closure = {l.strip().split(":")[0] for l in r.stdout.splitlines() if l and not l.startswith(" ")}
    closure |= {l.split(":", 1)[1].strip() for l in r.stdout.splitlines() if "Depends:" in l}
    closure |= {"libc6", "libgcc-s1", "libstdc++6"}  # in every Debian image
    libs = re.findall(r"=> (/\S+)", run(["ldd", str(binary)]).stdout)
    assert libs
    # A sanitizer build (tests/run.sh pass 2) links its runtimes; the image never does.
    libs = [l for l in libs if not re.search(r"/lib(a|ub|l|t)san\.so", l)]
    missing = {}
    for lib in libs:
        real = os.path.realpath(lib)
        owner = run(["dpkg", "-S", lib]).stdout or run(["dpkg", "-S", real]).stdout
        if not owner:  # /lib is a symlink to /usr/lib on Debian 12
            owner = run(["dpkg", "-S", real.replace("/lib/", "/usr/lib/", 1)]).stdout
        pkg = owner.split(":")[0].split(",")[0].strip()
        if pkg not in closure:
            missing[lib] = pkg or "?"
    assert not missing, f"RUNTIME_PACKAGES misses: {missing}"


# ---- HEALTHCHECK ---------------------------------------------------------

def healthcheck_cmd():
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    m = re.search(r"^HEALTHCHECK .*? CMD (\[.*\])$", text, re.M)
    assert m, "HEALTHCHECK ... CMD [json] not found"
    return json.loads(m.group(1))


class _Stub(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self):
        self.send_response(self.status if self.path == "/healthz" else 404)
        self.send_header("Content-Length", "3")
        self.end_headers()
        self.wfile.write(b"ok\n")

    def log_message(self, *a):
        pass


@pytest.mark.parametrize("status,ok", [(200, True), (503, False)])
def test_healthcheck_command_against_stub(status, ok):
    cmd = healthcheck_cmd()
    assert cmd[0] == "/bin/bash", "the slim image has bash (Essential), not curl/wget"
    handler = type("H", (_Stub,), {"status": status})
    srv = http.server.HTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        env = dict(os.environ, WSGATE_LISTEN=f"0.0.0.0:{srv.server_port}")
        r = run(cmd, env=env, timeout=10)
        assert (r.returncode == 0) == ok, r.stderr
    finally:
        srv.shutdown()
        srv.server_close()


def test_healthcheck_command_fails_when_nothing_listens():
    r = run(healthcheck_cmd(), env=dict(os.environ, WSGATE_LISTEN=f"0.0.0.0:{free_port()}"), timeout=10)
    assert r.returncode != 0


def test_healthcheck_command_against_wsgate():
    binary = wsgate_bin()
    if not binary.exists():
        pytest.skip(f"{binary} not built")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("WSGATE_")}
    env["WSGATE_LISTEN"] = f"127.0.0.1:{port}"
    gw = subprocess.Popen([str(binary)], env=env, stdin=subprocess.DEVNULL,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        line = ""
        for line in gw.stderr:  # embedded broker: up once it listens
            if "listening on" in line:
                break
        assert "listening on" in line, "wsgate did not start"
        r = run(healthcheck_cmd(), env=env, timeout=10)
        assert r.returncode == 0, r.stderr
        assert run([str(binary), "--help"]).returncode == 0, \
            "deploy/Dockerfile runs `wsgate --help` as a smoke test: it must exit 0"
    finally:
        gw.terminate()
        assert gw.wait(timeout=10) == 0
        gw.stderr.close()


# ---- local-cluster.sh ----------------------------------------------------

def test_local_cluster_script_lint():
    r = run([optional("shellcheck"), str(REPO / "deploy" / "local-cluster.sh")])
    assert r.returncode == 0, r.stdout


def test_local_cluster_missing_binary_is_one_clear_line(tmp_path):
    r = run([str(REPO / "deploy" / "local-cluster.sh")],
            env=dict(os.environ, WSGATE_BIN=str(tmp_path / "nope")), timeout=10)
    assert r.returncode == 1
    assert r.stdout == "" and len(r.stderr.splitlines()) == 1 and "not found" in r.stderr, r.stderr


def test_local_cluster_busy_port_is_one_clear_line(tmp_path):
    fake = tmp_path / "wsgate"
    fake.write_text("#!/bin/sh\nexit 1\n")
    fake.chmod(0o755)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        r = run([str(REPO / "deploy" / "local-cluster.sh"), "--port", str(s.getsockname()[1])],
                env=dict(os.environ, WSGATE_BIN=str(fake)), timeout=10)
    assert r.returncode == 1
    assert len(r.stderr.splitlines()) == 1 and "already in use" in r.stderr, r.stderr


def test_local_cluster_bad_flag_exits_2():
    r = run([str(REPO / "deploy" / "local-cluster.sh"), "--gateways", "zero"], timeout=10)
    assert r.returncode == 2 and "--gateways" in r.stderr


# ---- kubernetes, systemd ---------------------------------------------------

def k8s_docs():
    docs = []
    for f in sorted((REPO / "deploy" / "k8s").glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(f.read_text()) if d]
    return docs


def test_k8s_manifests():
    docs = k8s_docs()
    kinds = sorted((d["kind"], d["metadata"]["name"]) for d in docs if d["kind"] != "Kustomization")
    assert kinds == [("Deployment", "redis"), ("Deployment", "wsgate"),
                     ("Service", "redis"), ("Service", "wsgate")], kinds
    gw = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "wsgate")
    pod = gw["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert pod["terminationGracePeriodSeconds"] >= 10
    assert pod["securityContext"]["runAsNonRoot"] is True
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["WSGATE_REDIS"] == "redis://redis:6379"
    for d in docs:
        if d["kind"] in ("Deployment",):
            sel = d["spec"]["selector"]["matchLabels"]
            assert sel.items() <= d["spec"]["template"]["metadata"]["labels"].items()


def test_k8s_kustomize_builds():
    r = run([optional("kubectl"), "kustomize", str(REPO / "deploy" / "k8s")])
    assert r.returncode == 0, r.stderr
    assert len(re.findall(r"^kind: ", r.stdout, re.M)) == 4, r.stdout


def test_systemd_unit_verifies(tmp_path):
    analyze = optional("systemd-analyze")
    binary = wsgate_bin()
    exe = str(binary) if binary.exists() else "/bin/true"
    unit = tmp_path / "wsgate.service"
    text = (REPO / "deploy" / "wsgate.service").read_text()
    assert "ExecStart=/usr/local/bin/wsgate" in text
    unit.write_text(text.replace("ExecStart=/usr/local/bin/wsgate", f"ExecStart={exe}"))
    r = run([analyze, "verify", str(unit)])
    assert r.returncode == 0 and not r.stderr.strip(), r.stderr


# ---- web page --------------------------------------------------------------

def test_web_page_self_contained_and_safe(tmp_path):
    """The pages load nothing from elsewhere and never build HTML from
    strings; every script parses (tests/browser/unit/web-static.test.mjs
    checks the page in more depth)."""
    web = REPO / "web"
    for f in sorted(web.glob("*.html")) + sorted(web.glob("*.js")):
        text = f.read_text()
        assert not re.search(r'(src|href)\s*=\s*"(https?:)?//', text), f"{f.name}: external resource"
        assert not re.search(r"\.(inner|outer)HTML\s*\+?=|insertAdjacentHTML\s*\(|document\.write", text), \
            f"{f.name}: builds HTML from strings"
    node = shutil.which("node")
    if node:
        for f in sorted(web.glob("*.js")):
            r = run([node, "--check", str(f)])
            assert r.returncode == 0, f"{f.name}: {r.stderr}"