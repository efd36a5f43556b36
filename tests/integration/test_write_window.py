"""The write window (--write-window): a client written less than a window ago
gets the messages that come meanwhile together, in one send(), after the
window; a message after a quiet spell leaves at once.

The publishes go over HTTP one at a time, each answered before the next, so
each message reaches the gateway in its own loop turn while the subscriber's
socket is idle: without a window every one is its own write (the control);
with one, all but the first wait for the window and share a write. The proof
is the gateway's own counters (wsgate_writes_held_total,
wsgate_writes_total), not a time bound; the messages must arrive in order,
intact, one text frame each."""

import time

from wsgate_testing import scrape_metrics

N = 20


def publish(gw, channel, seqs):
    for seq in seqs:
        resp = gw.http("POST", "/api/publish", {"channel": channel, "data": {"seq": seq}})
        assert resp.status == 200, resp


def receive(r, n):
    """n messages, as (seqs, frames per recv())."""
    msgs, per_recv = r.recv_messages(n)
    return [m["data"]["seq"] for m in msgs], per_recv


class Counters:
    """wsgate_writes_total and wsgate_writes_held_total since the last call."""

    def __init__(self, gw):
        self.gw, self.last = gw, (0, 0)
        self.delta()

    def delta(self):
        m = scrape_metrics(self.gw.port)
        now = (m.value("wsgate_writes_total"), m.value("wsgate_writes_held_total"))
        d = (now[0] - self.last[0], now[1] - self.last[1])
        self.last = now
        return d


def test_without_window_each_message_is_a_write(procs):
    gw = procs.gateway("--write-window", "0", "--publish-rate", "0", node_id="n1")
    r = gw.raw_subscriber("w")
    c = Counters(gw)
    publish(gw, "w", range(N))
    assert receive(r, N)[0] == list(range(N)), "out of order or missing"
    assert c.delta() == (N, 0)
    r.close()


def test_window_joins_a_stream(procs):
    window = 1.0  # outlasts the publishes by far, even on a slow machine
    gw = procs.gateway("--write-window", str(int(window * 1000)), "--publish-rate", "0",
                       node_id="n1")
    r = gw.raw_subscriber("w")
    time.sleep(window + 0.2)  # a quiet spell after the ack
    c = Counters(gw)
    # The first message finds the socket quiet: written at once, not held.
    publish(gw, "w", [0])
    assert receive(r, 1)[0] == [0]
    assert c.delta() == (1, 0)
    # The others come within the window of that write: held, then written
    # together, each still its own frame, in order.
    publish(gw, "w", range(1, N))
    seqs, per_recv = receive(r, N - 1)
    assert seqs == list(range(1, N)), "out of order or missing"
    writes, held = c.delta()
    assert held >= 1 and writes <= 3, (writes, held)
    assert max(per_recv) >= 5, per_recv
    r.close()


def test_default_window_leaves_slow_streams_alone(procs):
    """At the default window, messages further apart than it are never held:
    each is its own write, as without a window."""
    gw = procs.gateway("--publish-rate", "0", node_id="n1")
    r = gw.raw_subscriber("q")
    time.sleep(0.1)
    c = Counters(gw)
    for i in range(3):
        publish(gw, "q", [i])
        assert receive(r, 1)[0] == [i]
        time.sleep(0.1)  # a quiet spell: longer than the default window (30 ms)
    assert c.delta() == (3, 0)
    r.close()

