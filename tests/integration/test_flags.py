"""Command line: --help, bad flags/values (exit 2, one line naming the flag),
environment variables (WSGATE_<FLAG>, flag beats env), port in use (exit 1)."""

import socket

import pytest

from wsgate_testing import async_test, run_wsgate

FLAGS = ["--listen", "--redis", "--channel-prefix", "--node-id", "--web-root", "--log-level",
         "--max-message-size", "--max-queue-bytes"]


run = run_wsgate


def test_help():
    r = run(["--help"])
    out = (r.stdout + r.stderr).decode()
    assert r.returncode == 0, (r.returncode, out)
    missing = [f for f in FLAGS if f not in out]
    assert not missing, f"--help does not list {missing}:\n{out}"
    assert "WSGATE_" in out or "env" in out.lower(), f"--help does not mention environment variables:\n{out}"


BAD = [
    (["--bogus"], "bogus"),
    (["--listen", "nonsense"], "listen"),
    (["--listen", "127.0.0.1:99999"], "listen"),
    (["--log-level", "loud"], "log-level"),
    (["--redis", "http://x"], "redis"),
    (["--max-message-size", "abc"], "max-message-size"),
    (["--max-queue-bytes", "-5"], "max-queue-bytes"),
    (["--node-id"], "node-id"),
]


@pytest.mark.parametrize("args,name", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_flag_exits_2(args, name):
    # keep a listen address on a free port in case the bad flag is ignored
    full = list(args) if args[0] == "--listen" else ["--listen", "127.0.0.1:0", *args]
    r = run(full)
    err = r.stderr.decode(errors="replace")
    assert r.returncode == 2, f"wsgate {' '.join(full)} exited {r.returncode}, expected 2; stderr: {err!r}"
    lines = [l for l in err.splitlines() if l.strip()]
    assert len(lines) == 1, f"expected exactly one line on stderr, got {lines!r}"
    assert name in lines[0], f"stderr line does not name {name!r}: {lines[0]!r}"


def test_bad_env_value_exits_2():
    r = run(["--listen", "127.0.0.1:0"], env={"WSGATE_LOG_LEVEL": "loud"})
    err = r.stderr.decode(errors="replace")
    assert r.returncode == 2, (r.returncode, err)
    lines = [l for l in err.splitlines() if l.strip()]
    assert len(lines) == 1 and ("log-level" in lines[0] or "LOG_LEVEL" in lines[0]), lines


@async_test(20)
async def test_node_id_from_env(procs):
    gw = procs.gateway(env={"WSGATE_NODE_ID": "envnode"})
    c = await gw.connect()
    assert c.welcome["node"] == "envnode", c.welcome


@async_test(20)
async def test_node_id_flag_beats_env(procs):
    gw = procs.gateway(node_id="n1", env={"WSGATE_NODE_ID": "envnode"})
    c = await gw.connect()
    assert c.welcome["node"] == "n1", c.welcome


@async_test(20)
async def test_node_id_flag(procs):
    gw = procs.gateway(node_id="flagnode")
    c = await gw.connect()
    assert c.welcome["node"] == "flagnode", c.welcome


@async_test(20)
async def test_listen_from_env(procs):
    gw = procs.gateway(listen=None, node_id="n1", env={"WSGATE_LISTEN": "127.0.0.1:0"})
    assert gw.port and gw.port != 8080
    c = await gw.connect()
    await c.ping()


@async_test(20)
async def test_redis_from_env(procs, redis):
    gw = procs.gateway(node_id="n1", env={"WSGATE_REDIS": redis.url}, wait_broker=False)
    await gw.await_line(r"broker up", timeout=10)
    c = await gw.connect()
    await c.subscribe("envredis")
    assert redis.publish("wsgate:envredis", "1") >= 1
    assert await c.next_message("envredis") == 1


def test_port_in_use_exits_1():
    blocker = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen(1)
        port = blocker.getsockname()[1]
        r = run(["--listen", f"127.0.0.1:{port}"])
        err = r.stderr.decode(errors="replace")
        assert r.returncode == 1, f"exit {r.returncode}, expected 1; stderr: {err!r}"
        assert str(port) in err or "in use" in err.lower(), f"no clear line about the port: {err!r}"
    finally:
        blocker.close()
