"""Engine.IO's upgrade probe, when it never completes: a WebSocket that
probes a polling session ("2probe" -> "3probe") and never sends "5" is closed
after --ping-timeout seconds (capped at Engine.IO's 10 s; 2 s here), polls
are answered with a noop only while the probe lasts, and the polling session
carries on after it: its next held GET takes the next event."""

import json
import time
from concurrent.futures import ThreadPoolExecutor

from wsgate_testing.httpc import http_request
from wsgate_testing.wsclient import RawWs

PROBE_TIMEOUT = 2  # --ping-timeout below


def poll(port, sid=None, body=None, timeout=5.0):
    """One polling request (a POST when body is given); its 200 body."""
    path = "/socket.io/?EIO=4&transport=polling" + (f"&sid={sid}" if sid else "")
    r = http_request(port, "POST" if body is not None else "GET", path, body=body,
                     headers={"Content-Type": "text/plain;charset=UTF-8"}, timeout=timeout)
    assert r.status == 200, r
    return r.body.decode()


def test_a_probe_that_never_upgrades_is_closed_and_polling_goes_on(procs):
    # --ping-interval 60: no ping falls inside the test, so the raw client
    # need not answer one
    g = procs.gateway("--ping-interval", "60", "--ping-timeout", str(PROBE_TIMEOUT), node_id="n1")
    opened = poll(g.port)
    assert opened[0] == "0", opened
    sid = json.loads(opened[1:])["sid"]
    assert poll(g.port, sid, "40") == "ok"
    assert poll(g.port, sid).startswith('40{"sid":')

    probe = RawWs(g.port, path=f"/socket.io/?EIO=4&transport=websocket&sid={sid}")
    probe.send_text("2probe")
    assert probe.recv_frame()[2] == b"3probe"
    assert poll(g.port, sid) == "6"  # probing: a GET is answered with noop at once
    probe.drain_until_closed(timeout=PROBE_TIMEOUT + 4)
    waited = time.monotonic() - probe.t_request
    # lws checks its timeouts once a second
    assert PROBE_TIMEOUT - 0.5 <= waited <= PROBE_TIMEOUT + 2.5, waited
    probe.close()

    with ThreadPoolExecutor(1) as pool:
        # the next GET is held again (a noop now would fail below) and takes
        # the event, which reaches its sender as io.emit does
        held = pool.submit(poll, g.port, sid, None, 10.0)
        assert poll(g.port, sid, '42["chat message","after the probe"]') == "ok"
        assert held.result(timeout=10) == '42["chat message","after the probe"]'
    assert g.proc.alive()
