"""What the compose tests share: the engine (tests/compose/engine.sh), a compose
project (Stack: docker-compose -p NAME with this machine's limits, the health
checks Podman cannot schedule here, HAProxy's view of the replicas) and
protocol-v1 clients that reconnect like web/wsgate.js.

Each test module runs its own project, named after the module and this process,
and takes it down by that name (`down -v`), never by killing processes.
"""
import asyncio
import collections
import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import pytest
import websockets

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
CHANNEL = "chat"
T0 = time.monotonic()


def say(msg):
    print(f"[compose {time.monotonic() - T0:6.1f}s] {msg}", flush=True)


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- engine ------------------------------------------------------------------

@contextlib.contextmanager
def engine(*images):
    """(engine environment, state dir) with the registry images the stack needs
    pulled or, where no registry answers, built as stand-ins (engine.sh)."""
    state = Path(tempfile.mkdtemp(prefix="wsgate-compose-"))
    r = subprocess.run([str(HERE / "engine.sh"), "start", str(state), *images],
                       capture_output=True, text=True, timeout=1800)
    try:
        if r.returncode == 77:  # ctest's SKIP_RETURN_CODE for the compose tests
            pytest.exit("SKIPPED: " + r.stderr.strip().splitlines()[-1], returncode=77)
        assert r.returncode == 0, f"engine.sh start failed ({r.returncode}):\n{r.stderr}"
        env = dict(line.split("=", 1) for line in r.stdout.splitlines() if "=" in line)
        say(f"engine {env['WSGATE_ENGINE']} at {env['DOCKER_HOST']}")
        yield env, state
    finally:
        subprocess.run([str(HERE / "engine.sh"), "stop", str(state)], timeout=60)
        shutil.rmtree(state, ignore_errors=True)


class Stack:
    """docker-compose -p NAME -f docker-compose.yml [-f FILE...] [-f limits override]
    [--profile P...], with free host ports for the balancer and its stats page
    (WSGATE_PORT, WSGATE_STATS_PORT) and the extra environment given."""

    def __init__(self, engine_env, state, name, files=(), env=None, profiles=()):
        self.kind = engine_env["WSGATE_ENGINE"]
        self.project = f"wsgate-{name}-{os.getpid()}"
        self.port, self.stats_port = free_port(), free_port()
        self.env = dict(os.environ, WSGATE_PORT=str(self.port),
                        WSGATE_STATS_PORT=str(self.stats_port), **engine_env, **(env or {}))
        if shutil.which("docker-compose"):
            base = ["docker-compose"]
        else:
            assert shutil.which("docker"), "no docker-compose (Debian package docker-compose)"
            base = ["docker", "compose"]
        self.cmd = base + ["-p", self.project, "--project-directory", str(REPO)]
        for f in ("docker-compose.yml", *files):
            self.cmd += ["-f", str(REPO / f)]
        for p in profiles:
            self.cmd += ["--profile", p]
        if self.kind == "podman":
            # This machine's limits only: the Docker API gives containers nofile 1024,
            # the sandbox's hard limit is far below the 40039 descriptors HAProxy asks
            # for with maxconn 20000, and raising a limit is refused (once any ulimit
            # is set, runc also needs nproc within the hard limit).
            import resource
            hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
            nofile = min(hard if hard != resource.RLIM_INFINITY else 1048576, 1048576)
            nproc = resource.getrlimit(resource.RLIMIT_NPROC)[1]
            nproc = min(nproc if nproc != resource.RLIM_INFINITY else 4096, 4096)
            override = state / f"{self.project}.limits.yml"
            override.write_text(
                "# written by tests/compose/composelib.py: this machine's limits only\n"
                "services:\n  lb:\n"
                f"    ulimits: {{nofile: {{soft: {nofile}, hard: {nofile}}}, nproc: {nproc}}}\n"
                f"    environment: {{WSGATE_LB_MAXCONN: \"{min(20000, (nofile - 200) // 2)}\"}}\n")
            self.cmd += ["-f", str(override)]
        import docker  # python3-docker, which docker-compose itself runs on
        self.api = docker.DockerClient(base_url=engine_env["DOCKER_HOST"], version="auto", timeout=60)
        self._pump_stop = threading.Event()
        self._pump = None

    def compose(self, *args, timeout=600, check=True):
        t = time.monotonic()
        r = subprocess.run(self.cmd + list(args), env=self.env, capture_output=True,
                           text=True, timeout=timeout)
        if check:
            assert r.returncode == 0, f"{' '.join(args)} -> {r.returncode}\n{r.stdout}\n{r.stderr}"
        return r, time.monotonic() - t

    async def acompose(self, *args, timeout=300):
        return await asyncio.to_thread(self.compose, *args, timeout=timeout)

    def containers(self, service, all=False):
        return self.api.containers.list(all=all, filters={"label": [
            f"com.docker.compose.project={self.project}", f"com.docker.compose.service={service}"]})

    def node_to_container(self):
        """{node id in welcome frames: container} for the running gateways."""
        return {f"{c.attrs['Config']['Hostname']}:8080": c for c in self.containers("gateway")}

    # Podman runs health checks from systemd timers; with no systemd here nothing
    # would, and `depends_on: condition: service_healthy` would wait forever.
    def start_health_pump(self):
        if self.kind != "podman":
            return

        def pump():
            env = dict(os.environ, CONTAINERS_CONF=self.env["CONTAINERS_CONF"])
            while not self._pump_stop.is_set():
                ids = subprocess.run(
                    ["podman", "ps", "-q", "--filter", f"label=com.docker.compose.project={self.project}",
                     "--filter", "label=com.docker.compose.service=redis"],
                    env=env, capture_output=True, text=True).stdout.split()
                for cid in ids:
                    subprocess.run(["podman", "healthcheck", "run", cid], env=env,
                                   capture_output=True)
                self._pump_stop.wait(1.0)

        self._pump = threading.Thread(target=pump, daemon=True)
        self._pump.start()

    def stop_health_pump(self):
        self._pump_stop.set()
        if self._pump:
            self._pump.join(timeout=30)

    def lb_servers(self):
        """{slot: status} of HAProxy's gateways backend, from the stats page (CSV)."""
        url = f"http://127.0.0.1:{self.stats_port}/;csv"
        with urllib.request.urlopen(url, timeout=3) as resp:
            rows = resp.read().decode().splitlines()
        head = rows[0].lstrip("# ").split(",")
        out = {}
        for row in rows[1:]:
            f = dict(zip(head, row.split(",")))
            if f.get("pxname") == "gateways" and f.get("svname", "").startswith("gw"):
                out[f["svname"]] = f["status"]
        return out

    async def await_lb_up(self, n, timeout=90):
        """Wait until HAProxy has exactly n replicas UP; returns seconds waited."""
        t = time.monotonic()
        last = None
        while True:
            try:
                last = await asyncio.to_thread(self.lb_servers)
                if sum(s == "UP" for s in last.values()) == n:
                    return time.monotonic() - t
            except OSError as e:
                last = repr(e)
            if time.monotonic() - t > timeout:
                raise AssertionError(f"HAProxy did not show {n} replicas UP in {timeout}s: {last}")
            await asyncio.sleep(0.2)  # poll interval of a bounded wait


@contextlib.contextmanager
def running(*args, **kwargs):
    """A Stack (arguments as Stack's) that is taken down by its project name at the end."""
    s = Stack(*args, **kwargs)
    s.start_health_pump()
    try:
        yield s
    finally:
        r, took = s.compose("down", "-v", "--remove-orphans", "--timeout", "20", check=False)
        s.stop_health_pump()
        left = [c.name for c in s.api.containers.list(
            all=True, filters={"label": f"com.docker.compose.project={s.project}"})]
        s.api.close()
        say(f"down in {took:.1f}s")
        assert r.returncode == 0 and not left, f"down left {left}:\n{r.stdout}\n{r.stderr}"


# ---- clients -------------------------------------------------------------------

class Client:
    """A protocol-v1 client that, like web/wsgate.js, reconnects at once after a
    1001 from a draining replica and subscribes again. ssl: the SSLContext of a
    wss:// url."""

    def __init__(self, url, label, ssl=None):
        self.url, self.label, self.ssl = url, label, ssl
        self.node = None
        self.ws = None
        self.messages = asyncio.Queue()
        self.acks = {}
        self.ids = 0
        self.ready = asyncio.Event()
        self.closing = False
        self.moves = []  # (from node, close code, to node, seconds from close to welcome)

    async def connect(self, timeout=30):
        deadline = time.monotonic() + timeout
        delay, last = 0.05, None
        while True:
            left = deadline - time.monotonic()
            try:
                ws = await asyncio.wait_for(websockets.connect(self.url, ssl=self.ssl, close_timeout=2), left)
                welcome = json.loads(await asyncio.wait_for(ws.recv(), left))
                assert welcome.get("op") == "welcome", welcome
                break
            except (OSError, asyncio.TimeoutError, websockets.WebSocketException) as e:
                last = e
            if time.monotonic() + delay > deadline:
                raise AssertionError(f"{self.label}: no connection through the LB in {timeout}s: {last!r}")
            await asyncio.sleep(delay)  # the client's backoff between attempts
            delay = min(delay * 2, 1.0)
        self.ws, self.node = ws, welcome["node"]
        asyncio.create_task(self._read(ws))
        await self.request({"op": "subscribe", "channel": CHANNEL})
        self.ready.set()
        return self

    async def _read(self, ws):
        try:
            async for raw in ws:
                for line in raw.split("\n"):
                    if not line:
                        continue
                    frame = json.loads(line)
                    if frame.get("op") in ("ack", "error") and frame.get("id") in self.acks:
                        self.acks.pop(frame["id"]).set_result(frame)
                    elif frame.get("op") == "message":
                        self.messages.put_nowait(frame["data"])
        except websockets.ConnectionClosed:
            pass
        for fut in self.acks.values():
            if not fut.done():
                fut.set_exception(ConnectionError("closed"))
        self.acks = {}
        if self.closing:
            return
        closed_at, old, code = time.monotonic(), self.node, ws.close_code
        self.ready.clear()
        await self.connect()
        self.moves.append((old, code, self.node, time.monotonic() - closed_at))

    async def request(self, frame, timeout=10):
        self.ids += 1
        fut = asyncio.get_running_loop().create_future()
        self.acks[self.ids] = fut
        await self.ws.send(json.dumps(dict(frame, id=self.ids)))
        reply = await asyncio.wait_for(fut, timeout)
        assert reply.get("op") == "ack", f"{self.label}: {frame} -> {reply}"

    async def expect(self, data, timeout=10):
        deadline = time.monotonic() + timeout
        while True:
            try:
                got = await asyncio.wait_for(self.messages.get(), max(0.01, deadline - time.monotonic()))
            except asyncio.TimeoutError:
                raise AssertionError(f"{self.label} on {self.node}: {data} not received in {timeout}s")
            if got == data:
                return

    async def close(self):
        self.closing = True
        if self.ws is not None:
            await self.ws.close()


async def connect_n(url, n, first=0, ssl=None):
    clients = []
    for i in range(first, first + n):  # one after the other, as leastconn sees them
        clients.append(await Client(url, f"c{i}", ssl).connect())
    return clients


async def broadcast(clients, senders, tag):
    """Each sender publishes once; every client must receive every message."""
    await asyncio.wait_for(asyncio.gather(*(c.ready.wait() for c in clients)), 30)
    t = time.monotonic()
    for i, s in enumerate(senders):
        data = {"tag": tag, "from": s.label, "node": s.node, "n": i}
        await s.request({"op": "publish", "channel": CHANNEL, "data": data})
        await asyncio.gather(*(c.expect(data) for c in clients))
    return len(senders) * len(clients), time.monotonic() - t


async def until(pred, timeout, what):
    """Poll pred() until it holds; fail after timeout seconds."""
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.05)  # poll interval of a bounded wait


def spread(clients):
    return collections.Counter(c.node for c in clients)


