"""Log lines: with --log-format json every line is one JSON object carrying
the node id (libwebsockets' own lines included, and the lines logged before
the port is bound); broker lines carry the Redis address and the retry delay
as fields; dropped broker payloads are logged at info. A stderr that is
non-blocking and full is waited for, no line dropped."""

import fcntl
import json
import os
import select
import socket
import subprocess
import time

from wsgate_testing import REPO, WSGATE_BIN, async_test, free_port
from wsgate_testing.procs import child_env


def json_lines(gw):
    lines = [t for tag, t in gw.proc.lines if tag == "err"]
    assert lines, "no log lines"
    out = []
    for t in lines:
        try:
            out.append(json.loads(t))
        except ValueError:
            raise AssertionError(f"not a JSON log line: {t!r}") from None
    return out


@async_test(20)
async def test_every_json_line_names_the_node(procs):
    gw = procs.gateway("--log-format", "json", "--log-level", "debug", node_id="jn")
    c = await gw.subscriber("x")
    await c.publish("x", 1)
    await c.close()
    await gw.await_line(r'"msg":"lws: ')   # libwebsockets' lines are there too
    lines = json_lines(gw)
    assert all(l.get("node") == "jn" for l in lines), [l for l in lines if l.get("node") != "jn"]
    assert {"ts", "level", "msg"} <= set(lines[0]), lines[0]


@async_test(20)
async def test_node_without_node_id(procs):
    """Before the port is bound the node is the hostname, then hostname:port."""
    gw = procs.gateway("--log-format", "json", "--log-level", "debug")
    lines = json_lines(gw)
    host = lines[-1]["node"].rsplit(":", 1)[0]
    assert lines[-1]["node"] == f"{host}:{gw.port}", lines[-1]
    assert all(l.get("node") in (host, f"{host}:{gw.port}") for l in lines), lines


@async_test(20)
async def test_node_on_a_fixed_port_from_the_first_line(procs):
    """A port given with --listen names the node from the first line on."""
    port = free_port()
    gw = procs.gateway("--log-format", "json", "--log-level", "debug",
                       listen=f"127.0.0.1:{port}")
    lines = json_lines(gw)
    host = lines[-1]["node"].rsplit(":", 1)[0]
    assert all(l.get("node") == f"{host}:{port}" for l in lines), lines


@async_test(20)
async def test_broker_lines_carry_address_and_retry(procs):
    port = free_port()   # nothing listens: the gateway retries
    gw = procs.gateway("--log-format", "json", "--redis", f"redis://127.0.0.1:{port}",
                       node_id="b", wait_broker=False)
    await gw.await_line(r'"retry_ms":"\d+"')
    retry = [l for l in json_lines(gw) if "retry_ms" in l][0]
    assert retry["broker"] == f"127.0.0.1:{port}", retry
    assert retry["level"] == "warn" and f"retry in {retry['retry_ms']} ms" in retry["msg"], retry


@async_test(20)
async def test_broker_up_and_dropped_payload(procs, redis):
    gw = procs.gateway("--log-format", "json", redis=redis, node_id="d")
    up = [l for l in json_lines(gw) if l["msg"].startswith("broker up")]
    assert up and up[0]["broker"] == f"127.0.0.1:{redis.port}", up
    c = await gw.subscriber("bad")
    assert redis.publish("wsgate:bad", "not json") == 1
    await gw.await_line(r'"msg":"dropped an invalid broker payload"')
    dropped = [l for l in json_lines(gw) if l["msg"].startswith("dropped")][0]
    assert dropped == {**dropped, "level": "info", "channel": "bad", "bytes": "8"}, dropped
    await c.close()


def test_a_full_nonblocking_stderr_loses_no_line():
    """O_NONBLOCK belongs to the pipe, shared with whoever set it: when the
    pipe is full the gateway waits, as with a blocking one, instead of
    dropping the line. The test fills the gateway's stderr pipe itself, then
    a client connects; its "session open" line must follow the filler. (The
    welcome, sent after that line, is awaited for up to 1 s: a gateway that
    dropped the line sends it at once, one that waits for the pipe does not.)"""
    r, w = os.pipe()
    fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, 4096)
    fcntl.fcntl(w, fcntl.F_SETFL, fcntl.fcntl(w, fcntl.F_GETFL) | os.O_NONBLOCK)
    port = free_port()
    gw = subprocess.Popen([WSGATE_BIN, "--listen", f"127.0.0.1:{port}", "--node-id", "nb"],
                          stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=w,
                          env=child_env(), cwd=str(REPO))
    text, deadline, sock = b"", time.monotonic() + 10, None

    def read_until(done):
        nonlocal text
        while not done(text):
            left = deadline - time.monotonic()
            assert left > 0 and select.select([r], [], [], left)[0], text.decode()
            chunk = os.read(r, 65536)
            assert chunk, f"the gateway exited: {text.decode()}"
            text += chunk
    try:
        read_until(lambda t: b"listening on" in t)
        filler = b"#" * 4096
        try:
            while True:
                os.write(w, filler[:256])
        except BlockingIOError:
            pass
        sock = socket.create_connection(("127.0.0.1", port), timeout=1)
        sock.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                     b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     b"Sec-WebSocket-Version: 13\r\n\r\n")
        try:
            while b'"welcome"' not in sock.recv(4096):
                pass
        except socket.timeout:
            pass  # the gateway waits for the pipe: the expected case
        read_until(lambda t: b" session open " in t)
    finally:
        if sock:
            sock.close()
        gw.kill()
        gw.wait(5)
        os.close(r)
        os.close(w)
