"""A second, independent Socket.IO client: Debian's python3-socketio (5.x,
Engine.IO v4) against /socket.io/ on two gateways sharing one redis-server:
the default transports (polling, then the upgrade) and WebSocket only, io.emit
semantics across nodes, acks, and a namespace that does not exist.

The client runs its own threads; every wait is on a queue or an event with a
deadline."""

import queue

import pytest

from wsgate_testing import async_test

socketio = pytest.importorskip("socketio", reason="Debian's python3-socketio is not installed")

EV = "chat message"
WAIT = 10


def client(url, transports):
    """A connected python-socketio client and the queue of its "chat message" events."""
    got = queue.Queue()
    c = socketio.Client(reconnection=False)
    c.on(EV, lambda *args: got.put(list(args)))
    c.connect(url, transports=transports, wait_timeout=WAIT)
    return c, got


def take(q, n):
    return sorted((q.get(timeout=WAIT) for _ in range(n)), key=repr)


def test_two_nodes_polling_upgrade_and_websocket(cluster):
    _, a, b = cluster
    ca, qa = client(f"http://127.0.0.1:{a.port}", ["polling", "websocket"])
    cb, qb = client(f"http://127.0.0.1:{b.port}", ["websocket"])
    try:
        assert cb.transport() == "websocket"
        acked = queue.Queue()
        ca.emit(EV, "from a", callback=lambda *args: acked.put(args))
        assert acked.get(timeout=WAIT) == ()  # 43<id>[]: acked with no arguments
        assert cb.call(EV, ["from b", 2], timeout=WAIT) is None
        for q in (qa, qb):
            assert take(q, 2) == [["from a"], [["from b", 2]]]
        assert ca.transport() == "websocket"  # upgraded by now
    finally:
        ca.disconnect()
        cb.disconnect()


@async_test(20)
async def test_socketio_channel_flag_bridges_to_v1(procs):
    """--socketio-channel names the channel: a v1 subscriber there sees the
    client's events as {"event":...,"args":[...]}."""
    g = procs.gateway("--socketio-channel", "room.1", node_id="n1")
    v1 = await g.subscriber("room.1")
    c, got = client(f"http://127.0.0.1:{g.port}", ["websocket"])
    try:
        assert c.call(EV, "hi", timeout=WAIT) is None
        assert await v1.next_message("room.1") == {"event": EV, "args": ["hi"]}
        assert got.get(timeout=WAIT) == ["hi"]
    finally:
        c.disconnect()


def test_unknown_namespace_is_refused(gw):
    c = socketio.Client(reconnection=False)
    errors = queue.Queue()
    c.on("connect_error", errors.put, namespace="/admin")
    # python-socketio 5.7 waits out wait_timeout even after the refusal: keep it short.
    with pytest.raises(socketio.exceptions.ConnectionError):
        c.connect(f"http://127.0.0.1:{gw.port}", namespaces=["/admin"], transports=["websocket"],
                  wait_timeout=1)
    assert errors.get(timeout=WAIT) == {"message": "Invalid namespace"}
    c.disconnect()
