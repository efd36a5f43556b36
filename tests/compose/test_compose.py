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
import collections
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
PROJECT = "wsgate-compose-test"
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

@pytest.fixture(scope="module")
def engine():
    state = Path(tempfile.mkdtemp(prefix="wsgate-compose-"))
    r = subprocess.run([str(HERE / "engine.sh"), "start", str(state)],
                       capture_output=True, text=True, timeout=1800)
    try:
        if r.returncode == 77:  # ctest's SKIP_RETURN_CODE for compose_stack
            pytest.exit("SKIPPED: " + r.stderr.strip().splitlines()[-1], returncode=77)
        assert r.returncode == 0, f"engine.sh start failed ({r.returncode}):\n{r.stderr}"
        env = dict(line.split("=", 1) for line in r.stdout.splitlines() if "=" in line)
        say(f"engine {env['WSGATE_ENGINE']} at {env['DOCKER_HOST']}")
        yield env, state
    finally:
        subprocess.run([str(HERE / "engine.sh"), "stop", str(state)], timeout=60)
        shutil.rmtree(state, ignore_errors=True)


class Stack:
    """docker-compose -p PROJECT -f docker-compose.yml [-f limits override] ..."""

    def __init__(self, engine_env, state):
        self.kind = engine_env["WSGATE_ENGINE"]
        self.port, self.stats_port = free_port(), free_port()
        self.env = dict(os.environ, WSGATE_PORT=str(self.port),
                        WSGATE_STATS_PORT=str(self.stats_port), **engine_env)
        if shutil.which("docker-compose"):
            base = ["docker-compose"]
        else:
            assert shutil.which("docker"), "no docker-compose (Debian package docker-compose)"
            base = ["docker", "compose"]
        self.cmd = base + ["-p", PROJECT, "--project-directory", str(REPO),
                           "-f", str(REPO / "docker-compose.yml")]
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
            override = state / "limits.override.yml"
            override.write_text(
                "# written by tests/compose/test_compose.py: this machine's limits only\n"
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
            f"com.docker.compose.project={PROJECT}", f"com.docker.compose.service={service}"]})

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
                    ["podman", "ps", "-q", "--filter", f"label=com.docker.compose.project={PROJECT}",
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


@pytest.fixture(scope="module")
def stack(engine):
    s = Stack(*engine)
    s.compose("down", "-v", "--remove-orphans", "--timeout", "5", check=False)  # a failed earlier run
    s.start_health_pump()
    try:
        yield s
    finally:
        r, took = s.compose("down", "-v", "--remove-orphans", "--timeout", "20", check=False)
        s.stop_health_pump()
        left = [c.name for c in s.api.containers.list(
            all=True, filters={"label": f"com.docker.compose.project={PROJECT}"})]
        s.api.close()
        say(f"down in {took:.1f}s")
        assert r.returncode == 0 and not left, f"down left {left}:\n{r.stdout}\n{r.stderr}"


# ---- clients -------------------------------------------------------------------

class Client:
    """A protocol-v1 client that, like web/wsgate.js, reconnects at once after a
    1001 from a draining replica and subscribes again."""

    def __init__(self, url, label):
        self.url, self.label = url, label
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
                ws = await asyncio.wait_for(websockets.connect(self.url, close_timeout=2), left)
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


async def connect_n(url, n, first=0):
    clients = []
    for i in range(first, first + n):  # one after the other, as leastconn sees them
        clients.append(await Client(url, f"c{i}").connect())
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


# ---- the test --------------------------------------------------------------------

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
