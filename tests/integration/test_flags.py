"""Command line: --help, bad flags/values (exit 2, one stderr line naming the
flag), good values (including the edge values) start, environment variables
(WSGATE_<FLAG>, flag beats env), port in use (exit 1)."""

import socket

import pytest

from wsgate_testing import async_test, run_wsgate


FLAGS = ["--listen", "--redis", "--channel-prefix", "--node-id", "--web-root", "--log-level",
         "--max-message-size", "--max-queue-bytes", "--publish-rate", "--publish-burst",
         "--max-channels", "--max-connections", "--queue-soft-bytes", "--queue-soft-seconds",
         "--api-key", "--api-key-file", "--allowed-origins", "--drain-seconds", "--sndbuf",
         "--write-window",
         "--api-insecure", "--config", "--version", "--history-size", "--history-ttl",
         "--history-channels", "--presence-channels", "--presence-ttl", "--workers",
         "--socketio-channel", "--socketio-redis-adapter"]


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
    (["--redis", "redis://127.0.0.1:6379/abc"], "redis"),
    (["--redis", "redis://127.0.0.1:6379/99999"], "redis"),
    (["--publish-rate", "-1"], "publish-rate"),
    (["--publish-rate", "fast"], "publish-rate"),
    (["--publish-burst", "0"], "publish-burst"),
    (["--publish-burst", "-3"], "publish-burst"),
    (["--publish-burst", "1.5"], "publish-burst"),
    (["--max-channels", "x"], "max-channels"),
    (["--socketio-channel", "bad channel!"], "socketio-channel"),
    (["--socketio-channel", ""], "socketio-channel"),
    (["--max-channels", "0"], "max-channels"),
    (["--max-connections", "0"], "max-connections"),
    (["--max-connections", "-1"], "max-connections"),
    (["--max-connections", "many"], "max-connections"),
    (["--queue-soft-seconds", "abc"], "queue-soft-seconds"),
    (["--queue-soft-seconds", "-1"], "queue-soft-seconds"),
    (["--queue-soft-bytes", "lots"], "queue-soft-bytes"),
    (["--queue-soft-bytes", "-1"], "queue-soft-bytes"),
    (["--drain-seconds", "-1"], "drain-seconds"),
    (["--drain-seconds", "soon"], "drain-seconds"),
    (["--api-key-file", "/nonexistent/wsgate.key"], "api-key-file"),
    (["--publish-rate"], "publish-rate"),
    (["--api-key"], "api-key"),
    (["--web-root", "/nonexistent/web"], "web-root"),
    (["--anonymous-channels", "lobby"], "anonymous-channels"),
    (["--jwt-secret", "s", "--anonymous-channels", "lobby"], "anonymous-channels"),
    (["--api-insecure", "--api-key", "k"], "api-insecure"),
    (["--api-insecure=maybe"], "api-insecure"),
    (["--config", "/nonexistent/wsgate.conf"], "config"),
    (["--sndbuf", "65m"], "sndbuf"),
    (["--write-window", "-1"], "write-window"),
    (["--write-window", "1001"], "write-window"),
    (["--write-window", "soon"], "write-window"),
    (["--history-size", "-1"], "history-size"),
    (["--history-size", "lots"], "history-size"),
    (["--history-size", "100001"], "history-size"),
    (["--history-ttl", "0"], "history-ttl"),
    (["--history-ttl", "1.5"], "history-ttl"),
    (["--history-channels", "a*b"], "history-channels"),
    (["--history-channels", "news,bad name"], "history-channels"),
    (["--history-channels", "a,,b"], "history-channels"),
    (["--presence-ttl", "0"], "presence-ttl"),
    (["--presence-ttl", "86401"], "presence-ttl"),
    (["--presence-channels", "room*x"], "presence-channels"),
    (["--socketio-redis-adapter"], "socketio-redis-adapter"),  # without --redis
    (["--socketio-redis-adapter=maybe", "--redis", "redis://127.0.0.1:1"], "socketio-redis-adapter"),
]


def check_exit_2(args, name, env=None):
    """Exit 2 with exactly one stderr line naming `name`. A listen address on
    a free port is added in case the bad flag is ignored."""
    full = list(args) if args[:1] == ["--listen"] else ["--listen", "127.0.0.1:0", *args]
    r = run(full, env=env)
    err = r.stderr.decode(errors="replace")
    assert r.returncode == 2, f"wsgate {' '.join(full)} exited {r.returncode}, expected 2; stderr: {err!r}"
    lines = [l for l in err.splitlines() if l.strip()]
    assert len(lines) == 1, f"expected exactly one line on stderr, got {lines!r}"
    assert name in lines[0], f"stderr line does not name {name!r}: {lines[0]!r}"


@pytest.mark.parametrize("args,name", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_flag_exits_2(args, name):
    check_exit_2(args, name)


def test_api_key_file_is_a_directory(tmp_path):
    check_exit_2(["--api-key-file", str(tmp_path)], "api-key-file")


def test_web_root_a_file_exits_2(tmp_path):
    f = tmp_path / "index.html"
    f.write_text("x")
    check_exit_2(["--web-root", str(f)], "web-root")


@pytest.mark.parametrize("var,value,name", [
    ("WSGATE_PUBLISH_RATE", "-1", "publish-rate"),
    ("WSGATE_MAX_CHANNELS", "x", "max-channels"),
    ("WSGATE_MAX_CONNECTIONS", "0", "max-connections"),
    ("WSGATE_LOG_LEVEL", "loud", "log-level"),
    ("WSGATE_SOCKETIO_CHANNEL", "a#b", "socketio-channel"),
    ("WSGATE_API_KEY_FILE", "/nonexistent/wsgate.key", "api-key-file"),
    ("WSGATE_API_INSECURE", "maybe", "api-insecure"),
    ("WSGATE_WEB_ROOT", "/nonexistent/web", "web-root"),
    ("WSGATE_HISTORY_SIZE", "x", "history-size"),
    ("WSGATE_HISTORY_TTL", "-5", "history-ttl"),
    ("WSGATE_HISTORY_CHANNELS", "*x", "history-channels"),
    ("WSGATE_PRESENCE_TTL", "soon", "presence-ttl"),
    ("WSGATE_SOCKETIO_REDIS_ADAPTER", "1", "socketio-redis-adapter"),  # without --redis
])
def test_bad_env_value_exits_2(var, value, name):
    r = run(["--listen", "127.0.0.1:0"], env={var: value})
    err = r.stderr.decode(errors="replace")
    assert r.returncode == 2, (r.returncode, err)
    lines = [l for l in err.splitlines() if l.strip()]
    assert len(lines) == 1 and (name in lines[0] or var[len("WSGATE_"):] in lines[0]), lines


GOOD = [
    ["--publish-rate", "0"],
    ["--publish-rate", "2.5", "--publish-burst", "1"],
    ["--max-channels", "1"],
    ["--max-connections", "1"],
    ["--queue-soft-bytes", "0"],
    ["--queue-soft-bytes", "64k", "--queue-soft-seconds", "0.5"],
    ["--drain-seconds", "0"],
    ["--api-key", "k"],
    ["--allowed-origins", "http://a.example"],
    ["--sndbuf", "0"],
    ["--write-window", "2.5"],
    ["--api-insecure=false"],
    ["--history-size", "0"],
    ["--history-size", "100000", "--history-ttl", "1", "--history-channels", "chat.*,news"],
    ["--presence-channels", "room.*,lobby", "--presence-ttl", "1"],
]


@pytest.mark.parametrize("args", GOOD, ids=[" ".join(a) for a in GOOD])
@async_test(20)
async def test_good_values_start(procs, args):
    gw = procs.gateway(*args, node_id="n1")
    c = await gw.connect()
    await c.ping()


@async_test(20)
async def test_max_channels_from_env(procs):
    gw = procs.gateway(node_id="n1", env={"WSGATE_MAX_CHANNELS": "1"})
    c = await gw.subscriber("a")
    await c.error({"op": "subscribe", "channel": "b"}, "too_many_channels")


@async_test(20)
async def test_max_channels_flag_beats_env(procs):
    gw = procs.gateway("--max-channels", "2", node_id="n1", env={"WSGATE_MAX_CHANNELS": "1"})
    c = await gw.subscriber("a")
    await c.subscribe("b")
    await c.error({"op": "subscribe", "channel": "c"}, "too_many_channels")

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
    c = await gw.subscriber("envredis")
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
