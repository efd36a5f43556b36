"""Write-path liveness with large frames.

A frame bigger than what one send() takes (a 20 KB message, or a batch frame
coalescing many messages) is written partially; the gateway must keep the
connection writable until the rest and the following queued frames are out,
instead of progressing once per ~100 ms service tick.

On loopback, consecutive frames of a burst arrive within a few ms of each
other. Each test reads a burst frame by frame with arrival times and counts
pauses longer than 50 ms while messages are still outstanding, allowing a few
(scheduler hiccups on a loaded CI box). This is a liveness check with a 20x
margin, not a performance measurement."""

import asyncio
import time


from wsgate_testing import NO_PUBLISH_RATE, async_test

PAUSE_MS = 50
ALLOWED_PAUSES = 3


async def read_burst(c, channel, tag, n, timeout=15):
    """Read frames until n messages of burst `tag` arrived; return (frame
    arrival times, seqs)."""
    times, seqs = [], []
    deadline = time.monotonic() + timeout
    while len(seqs) < n:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"burst {tag}: only {len(seqs)}/{n} messages within {timeout}s")
        try:
            objs = await c._read(remaining)
        except asyncio.TimeoutError:
            continue
        times.append(time.monotonic())
        seqs += [o["data"]["seq"] for o in objs
                 if o.get("op") == "message" and o.get("channel") == channel and o["data"].get("tag") == tag]
    return times, seqs


async def burst_pauses(gw, batch, n, size, rounds):
    sub = await gw.connect(batch=batch)
    pub = await gw.connect()
    await sub.subscribe("big")
    pad = "z" * size
    report, pauses_total = [], 0
    for r in range(rounds):
        async def send_burst():
            for i in range(n):
                await pub.send({"op": "publish", "channel": "big", "data": {"tag": r, "seq": i, "pad": pad},
                                "id": r * n + i + 1})
        t0 = time.monotonic()
        (times, seqs), _ = await asyncio.gather(read_burst(sub, "big", r, n), send_burst())
        assert seqs == list(range(n)), f"round {r}: messages missing or out of order: {seqs!r}"
        # gaps between consecutive frames (the first frame's latency is not counted)
        gaps = [round((b - a) * 1000) for a, b in zip(times, times[1:])]
        pauses = [g for g in gaps if g > PAUSE_MS]
        pauses_total += len(pauses)
        report.append(f"round {r}: {n} x {size} B in {1000 * (times[-1] - t0):.0f} ms, {len(times)} frames; "
                      f"pauses > {PAUSE_MS} ms: {pauses}")
        for i in range(n):
            a = await pub.expect(lambda o, k=r * n + i + 1: o.get("id") == k, what="publish ack")
            assert a.get("op") == "ack", a
    print("\n".join(report))
    return pauses_total, report


@async_test(40)
async def test_large_messages_plain_client_not_stalled(mkgw):
    pauses, report = await burst_pauses(mkgw(*NO_PUBLISH_RATE), batch=False, n=30, size=20000, rounds=1)
    assert pauses <= ALLOWED_PAUSES, "delivery of large frames stalls:\n" + "\n".join(report)


@async_test(40)
async def test_batch_burst_not_stalled(mkgw):
    pauses, report = await burst_pauses(mkgw(*NO_PUBLISH_RATE), batch=True, n=100, size=4000, rounds=2)
    assert pauses <= ALLOWED_PAUSES, "batch client delivery stalls:\n" + "\n".join(report)


@async_test(40)
async def test_small_messages_plain_client_reference(mkgw):
    """Reference: the same measurement with small frames (no partial writes)."""
    pauses, report = await burst_pauses(mkgw(*NO_PUBLISH_RATE), batch=False, n=200, size=1000, rounds=1)
    assert pauses <= ALLOWED_PAUSES, "delivery stalls:\n" + "\n".join(report)
