"""Log lines: with --log-format json every line is one JSON object carrying
the node id (libwebsockets' own lines included, and the lines logged before
the port is bound); broker lines carry the Redis address and the retry delay
as fields; dropped broker payloads are logged at info."""

import json

from wsgate_testing import async_test, free_port


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
