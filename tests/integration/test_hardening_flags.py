"""Command line of the hardening flags: bad values exit 2 with one stderr
line naming the flag; good values (including the edge values) start; the
WSGATE_* variables work for them."""


import pytest

from wsgate_testing import async_test, run_wsgate

NEW_FLAGS = ["--publish-rate", "--publish-burst", "--max-channels", "--max-connections",
             "--queue-soft-bytes", "--queue-soft-seconds", "--api-key", "--api-key-file",
             "--allowed-origins", "--drain-seconds"]


run = run_wsgate


def test_help_lists_the_new_flags():
    r = run(["--help"])
    out = (r.stdout + r.stderr).decode()
    assert r.returncode == 0, (r.returncode, out)
    missing = [f for f in NEW_FLAGS if f not in out]
    assert not missing, f"--help does not list {missing}"


BAD = [
    (["--publish-rate", "-1"], "publish-rate"),
    (["--publish-rate", "fast"], "publish-rate"),
    (["--publish-burst", "0"], "publish-burst"),
    (["--publish-burst", "-3"], "publish-burst"),
    (["--publish-burst", "1.5"], "publish-burst"),
    (["--max-channels", "x"], "max-channels"),
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
]


def check_exit_2(args, name, env=None):
    full = ["--listen", "127.0.0.1:0", *args]
    r = run(full, env=env)
    err = r.stderr.decode(errors="replace")
    assert r.returncode == 2, f"wsgate {' '.join(full)} exited {r.returncode}, expected 2; stderr: {err!r}"
    lines = [l for l in err.splitlines() if l.strip()]
    assert len(lines) == 1, f"expected exactly one line on stderr, got {lines!r}"
    assert name in lines[0], f"stderr line does not name {name!r}: {lines[0]!r}"


@pytest.mark.parametrize("args,name", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_value_exits_2(args, name):
    check_exit_2(args, name)


def test_api_key_file_is_a_directory(tmp_path):
    check_exit_2(["--api-key-file", str(tmp_path)], "api-key-file")


def test_api_key_file_unreadable_from_env():
    r = run(["--listen", "127.0.0.1:0"], env={"WSGATE_API_KEY_FILE": "/nonexistent/wsgate.key"})
    err = r.stderr.decode(errors="replace")
    assert r.returncode == 2, (r.returncode, err)
    lines = [l for l in err.splitlines() if l.strip()]
    assert len(lines) == 1 and ("api-key-file" in lines[0] or "API_KEY_FILE" in lines[0]), lines


@pytest.mark.parametrize("var,value,name", [
    ("WSGATE_PUBLISH_RATE", "-1", "publish-rate"),
    ("WSGATE_MAX_CHANNELS", "x", "max-channels"),
    ("WSGATE_MAX_CONNECTIONS", "0", "max-connections"),
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
    c = await gw.connect()
    await c.subscribe("a")
    await c.error({"op": "subscribe", "channel": "b"}, "too_many_channels")


@async_test(20)
async def test_max_channels_flag_beats_env(procs):
    gw = procs.gateway("--max-channels", "2", node_id="n1", env={"WSGATE_MAX_CHANNELS": "1"})
    c = await gw.connect()
    await c.subscribe("a")
    await c.subscribe("b")
    await c.error({"op": "subscribe", "channel": "c"}, "too_many_channels")
