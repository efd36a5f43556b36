"""Input that arrives all at once is all served, and lws's own replies with it.

lws reads a WebSocket at most about 530 bytes per round and the gateway's
socket events are edge-triggered: a TCP segment holding many requests raises
one edge, so the gateway must come back for the rest itself. It does so only
when the read filled lws's buffer, and it asks for a write round after a
read only when lws wanted one (a pong, a close reply). Each test sends one
segment of many publishes (several KB) and then, in the same segment, what
lws must answer or act on: a WebSocket ping, a close frame, or the end of
the stream (FIN, no close frame)."""

import json
import socket
import time

from wsgate_testing.wsclient import encode_frame

N = 60  # publishes of about 150 bytes: ~9 KB, ~17 of lws's reads
PAD = "x" * 100


def publishes(channel):
    return b"".join(
        encode_frame(0x1, json.dumps({"op": "publish", "channel": channel,
                                      "data": {"seq": i, "pad": PAD}, "id": i}))
        for i in range(1, N + 1))


def served(r, until):
    """Frames until one with opcode `until` (None: EOF) as (acks, seqs,
    pongs, last frame)."""
    acks, seqs, pongs = [], [], []
    while True:
        try:
            fin, op, payload = r.recv_frame()
        except ConnectionError:
            assert until is None, f"EOF after {len(acks)} acks, {len(seqs)} messages"
            return acks, seqs, pongs, None
        if op == 0xA:  # a control frame may come between the replies
            pongs.append(payload)
        if op == until:
            return acks, seqs, pongs, payload
        if op == 0x1:
            m = json.loads(payload)
            (acks if m["op"] == "ack" else seqs).append(
                m["id"] if m["op"] == "ack" else m["data"]["seq"])
        else:
            assert op == 0xA, f"frame {op:#x} after {len(acks)} acks, {len(seqs)} messages"


ALL = list(range(1, N + 1))


def test_one_segment_of_publishes_then_a_ping(procs):
    gw = procs.gateway("--publish-rate", "0")
    r = gw.raw_subscriber("p")
    r.sock.sendall(publishes("p") + encode_frame(0x9, b"tail"))
    r.send_json({"op": "ping", "id": 99})  # after the ping frame, in another segment
    acks, seqs, pongs = [], [], []
    while True:
        fin, op, payload = r.recv_frame()
        if op == 0xA:
            pongs.append(payload)
            continue
        m = json.loads(payload)
        if m["op"] == "pong":
            break
        (acks if m["op"] == "ack" else seqs).append(
            m["id"] if m["op"] == "ack" else m["data"]["seq"])
    assert (acks, seqs, pongs) == (ALL, ALL, [b"tail"])


def test_one_segment_of_publishes_then_a_close(procs):
    """lws answers the close frame at the end of the segment (its reply may
    overtake the last acks, which are then never sent)."""
    gw = procs.gateway("--publish-rate", "0")
    r = gw.raw_subscriber("c")
    r.sock.sendall(publishes("c") + encode_frame(0x8, (1000).to_bytes(2, "big")))
    acks, seqs, _, payload = served(r, 0x8)
    assert payload[:2] == (1000).to_bytes(2, "big"), payload
    assert acks == ALL[:len(acks)] and seqs == ALL[:len(seqs)] and len(seqs) > N // 2


def test_one_segment_of_publishes_then_eof(procs):
    """The peer's FIN comes with the data: everything is answered, then the
    gateway closes at once, not at the keepalive a stranded EOF would wait
    for."""
    gw = procs.gateway("--publish-rate", "0", "--ping-interval", "30")
    r = gw.raw_subscriber("e")
    r.sock.sendall(publishes("e"))
    r.sock.shutdown(socket.SHUT_WR)
    t0 = time.monotonic()
    acks, seqs, pongs, _ = served(r, None)
    assert (acks, seqs, pongs) == (ALL, ALL, [])
    assert time.monotonic() - t0 < 5


def first_control_frame(r):
    """The first frame that is not a text frame (the welcome), as (opcode, payload)."""
    while True:
        fin, op, payload = r.recv_frame()
        if op != 0x1:
            return op, payload


def test_control_frames_sent_with_the_upgrade_request(procs):
    """Frames in the segment of the upgrade request (a client that does not
    wait for the 101) are kept by lws until the upgrade is done and parsed in
    the write round that sends the welcome: the pong and the close reply
    they call for must leave then, not wait for the client's next frame (a
    client pinging for its keepalive would wait for the gateway's own ping,
    25 s, and give up)."""
    gw = procs.gateway()
    r = gw.raw(early=encode_frame(0x9, b"early"))
    assert first_control_frame(r) == (0xA, b"early")
    r = gw.raw(early=encode_frame(0x8, (1000).to_bytes(2, "big")))
    op, payload = first_control_frame(r)
    assert (op, payload[:2]) == (0x8, (1000).to_bytes(2, "big"))
