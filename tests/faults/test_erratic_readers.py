"""Erratic readers: subscribers that read in random sizes at random moments,
pause and ping (two at once at times), over plain TCP and over TLS, each
get every message in order without a stall, and their connection still
answers a ping at the end.

What it guards: the gateway's write rounds (net/loop.c). lws spends a round
on a pong or on flushing a partial write without calling us back, and the
writable callback it owes must follow, whatever the reads do meanwhile;
two of the stalls fixed on 2026-12-03 were found with a mix like this one.

One gateway (embedded broker, queue limits off, no keepalive pings in the
test's time), SUBS subscribers with a 4 KB receive buffer, each a thread
with its own seeded random sequence (the seeds are printed on failure), and
MESSAGES messages of about 1 KB published by one client as fast as the
gateway takes them. A reader fails when nothing arrives for STALL_S while
it still misses messages; it pings again only PING_GAP messages later, so
its own next ping (a read, which gives the gateway a write round) does not
hide such a stall. Gateways built before 9db4f70 or before 2864b05 failed it
over TLS in each of three runs, readers stalling after 450 to 2,000
messages."""

import json
import random
import ssl
import threading
import time

import pytest

from wsgate_testing import NO_PUBLISH_RATE, encode_frame, parse_frame, self_signed

SUBS = 8
MESSAGES = 2000
PAD = "e" * 1000
STALL_S = 5.0
READS = (1, 7, 100, 1500, 4096, 16384, 65536)  # recv() sizes
PING_GAP = 50     # messages between a reader's pings: a stall after one is not rescued by the next


class Reader(threading.Thread):
    def __init__(self, raw, seed):
        super().__init__(daemon=True)
        self.raw, self.seed = raw, seed
        self.rng = random.Random(seed)
        self.seqs, self.pings, self.pongs = [], [], []
        self.error = None

    def frames(self):
        """Parses what is buffered: messages and pongs."""
        while r := parse_frame(self.raw.buf):
            fin, op, payload, used = r
            del self.raw.buf[:used]
            if op == 0xA:
                self.pongs.append(payload)
            elif op == 0x1:
                self.seqs.append(json.loads(payload)["data"]["seq"])
            else:
                raise AssertionError(f"unexpected frame opcode {op:#x} {payload[:60]!r}")

    def read(self, n, until):
        """One recv() of up to n bytes; False once `until` passed with none."""
        try:
            chunk = self.raw.sock.recv(n)
        except (TimeoutError, ssl.SSLWantReadError):
            return time.monotonic() < until
        if not chunk:
            raise AssertionError("EOF from the gateway")
        self.raw.buf += chunk
        self.frames()
        return True

    def ping(self):
        payload = b"%d" % len(self.pings)
        self.pings.append(payload)
        self.raw.sock.sendall(encode_frame(0x9, payload))

    def run(self):
        try:
            self.raw.sock.settimeout(0.05)
            last, pinged = time.monotonic(), -PING_GAP
            while len(self.seqs) < MESSAGES:
                had = len(self.seqs), len(self.raw.buf)
                x = self.rng.random()
                if x < 0.08:
                    time.sleep(self.rng.uniform(0, 0.03))  # the reader's pace, not a wait
                elif x < 0.14 and len(self.seqs) >= pinged + PING_GAP:
                    pinged = len(self.seqs)
                    for _ in range(self.rng.choice((1, 1, 2))):
                        self.ping()
                elif not self.read(self.rng.choice(READS), last + STALL_S):
                    raise AssertionError(f"stalled: nothing for {STALL_S}s after message "
                                         f"{len(self.seqs)} of {MESSAGES}")
                if (len(self.seqs), len(self.raw.buf)) != had:
                    last = time.monotonic()
            assert self.seqs == list(range(MESSAGES)), "out of order, duplicated or missing"
            self.end()
        except BaseException as e:  # reported by the test
            self.error = e

    def end(self):
        """A ping with nothing else in flight is answered. lws keeps one
        pong pending and drops a ping read meanwhile (it answers the first,
        in order), so when an earlier ping's pong comes after ours went out,
        ours may have been dropped: a second later it pings again. A ping
        that brings no pong at all in STALL_S is a stall."""
        while len(self.pings) < 1000:
            self.ping()
            want, seen = self.pings[-1], len(self.pongs)
            deadline = time.monotonic() + STALL_S
            while want not in self.pongs[seen:]:
                n = len(self.pongs)
                if not self.read(65536, deadline):
                    assert n > seen, f"no pong for the ping {want!r} in {STALL_S}s"
                    break  # dropped behind an earlier ping's pong: again
                if len(self.pongs) > n:
                    deadline = min(deadline, time.monotonic() + 1.0)
            else:
                # lws answers the pings it keeps, in the order they came
                kept = [p for p in self.pings if p in self.pongs]
                assert self.pongs == kept, f"pongs {self.pongs} for pings {self.pings}"
                return
        raise AssertionError(f"the last ping was never answered: pongs {self.pongs[-5:]}")


def publish_all(gw, ctx):
    pub = gw.raw(tls=ctx)
    assert pub.recv_json()["op"] == "welcome"
    pub.sock.sendall(b"".join(
        encode_frame(0x1, json.dumps({"op": "publish", "channel": "erratic",
                                      "data": {"seq": i, "pad": PAD}, "id": i}))
        for i in range(MESSAGES)))
    for i in range(MESSAGES):
        assert pub.recv_json() == {"op": "ack", "id": i}
    pub.sock.close()


@pytest.mark.parametrize("mode", ["plain", "tls"])
def test_erratic_readers_get_everything(procs, tmp_path, mode):
    tls_args, ctx = (), None
    if mode == "tls":
        c, k, ctx = self_signed(tmp_path)
        tls_args = ("--tls-cert", str(c), "--tls-key", str(k))
    gw = procs.gateway(*tls_args, *NO_PUBLISH_RATE, "--queue-soft-bytes", "0",
                       "--max-queue-bytes", "64m", "--ping-interval", "60", node_id="e1")
    base = random.randrange(1 << 30)
    readers = []
    for i in range(SUBS):
        raw = gw.raw(rcvbuf=4096, tls=ctx, timeout=10)
        assert raw.recv_json()["op"] == "welcome"
        raw.send_json({"op": "subscribe", "channel": "erratic", "id": 0})
        assert raw.recv_json() == {"op": "ack", "id": 0}
        readers.append(Reader(raw, base + i))
    for r in readers:
        r.start()
    publish_all(gw, ctx)
    for r in readers:
        r.join(MESSAGES * 0.01 + 60)
        assert not r.is_alive(), f"reader (seed {r.seed}) still running"
    failed = [(r.seed, len(r.seqs), repr(r.error)) for r in readers if r.error]
    assert not failed, f"{mode}: readers (seed, messages, error) {failed}"
    for r in readers:
        r.raw.sock.close()
