"""Owns a running wsgate process: its port, URLs, HTTP and WebSocket clients to it."""

import asyncio
import os
import time

from .httpc import http_request
from .procs import LINE_TIMEOUT, REPO, WSGATE_BIN, child_env, require_binary
from .protocol import WsClient
from .wsclient import RawWs

LISTEN_RE = r"listening on [^ ]*:(\d+)"

# Tests that publish faster than the default per-connection publish rate, or
# subscribe to more channels than the default per-connection limit, start
# their gateway with these flags so they test what they are about (ordering,
# slow consumers, resubscription), not those limits.
NO_PUBLISH_RATE = ("--publish-rate", "0")
MANY_CHANNELS = ("--max-channels", "10000")
# History is on by default in wsgate; the suites written before it compare
# exact frames, so a gateway here keeps none unless the test passes a
# --history-* flag (tests/integration/test_history.py does).
NO_HISTORY = ("--history-size", "0")


# The HTTP API answers 403 unless a key is set or --api-insecure is given:
# test gateways on loopback open it on purpose, unless the test sets a key
# (or passes api_insecure=False to test the default).
API_KEY_SETTINGS = ("--api-key", "--api-key-file", "WSGATE_API_KEY", "WSGATE_API_KEY_FILE",
                    "WSGATE_API_INSECURE")


def wants_insecure_api(args, env):
    given = {a.split("=", 1)[0] for a in args} | set(env or {})
    return not given.intersection(API_KEY_SETTINGS)


def workers_of(args, env):
    """How many workers `--workers`/WSGATE_WORKERS ask for (auto: one per core)."""
    args = [str(a) for a in args]
    i = args.index("--workers") + 1 if "--workers" in args else len(args)
    n = args[i] if i < len(args) else (env or {}).get("WSGATE_WORKERS", "1")
    return os.cpu_count() if n == "auto" else int(n) if n.isdigit() else 1


class Gateway:
    def __init__(self, procs, args, redis=None, node_id=None, wait_listen=True, wait_broker=True,
                 env=None, cwd=None, listen="127.0.0.1:0", name=None, api_insecure=True,
                 prefix=()):
        """prefix: a command the gateway runs under (e.g. tests/bench/nouring)."""
        require_binary()
        argv = [*prefix, WSGATE_BIN]
        if api_insecure and wants_insecure_api(args, env):
            argv.append("--api-insecure")
        if listen is not None:
            argv += ["--listen", listen]
        if redis is not None:
            argv += ["--redis", redis.url]
        if node_id is not None:
            argv += ["--node-id", node_id]
        if not any(str(a).startswith("--history-") for a in args):
            argv += NO_HISTORY
        argv += list(args)
        self.redis = redis
        self.proc = procs.spawn(procs.next_name(name or f"wsgate:{node_id or ''}"), argv,
                                env=child_env(env), cwd=str(cwd or REPO))
        self.port = None
        if wait_listen:
            m = self.proc.wait_line(LISTEN_RE)
            self.port = int(m.group(1))
            if redis is not None and wait_broker:  # every worker's, or one may refuse
                self.proc.wait_lines(r"broker up", workers_of(args, env))

    # --- urls / http
    def ws_url(self, batch=False, path="/ws"):
        return f"ws://127.0.0.1:{self.port}{path}" + ("?batch=1" if batch else "")

    def http(self, method, path, body=None, headers=None, timeout=5.0):
        return http_request(self.port, method, path, body=body, headers=headers, timeout=timeout)

    async def ahttp(self, method, path, body=None, headers=None, timeout=5.0):
        return await asyncio.to_thread(self.http, method, path, body, headers, timeout)

    async def publish_http(self, channel, data):
        r = await self.ahttp("POST", "/api/publish", {"channel": channel, "data": data})
        return r

    async def await_readyz(self, status, deadline_s, t0=None):
        """Polls /readyz every 10 ms until it answers `status`; returns the
        seconds since t0 (default: now)."""
        t0 = time.monotonic() if t0 is None else t0
        last = None
        while True:
            try:
                last = await self.ahttp("GET", "/readyz", timeout=1.0)
                if last.status == status:
                    return time.monotonic() - t0
            except OSError as e:
                last = e
            if time.monotonic() - t0 > deadline_s:
                raise AssertionError(f"/readyz not {status} within {deadline_s}s; last: {last!r}")
            await asyncio.sleep(0.01)   # poll period, bounded by the deadline

    async def await_line(self, pattern, timeout=LINE_TIMEOUT, start=0):
        return await asyncio.to_thread(self.proc.wait_line, pattern, timeout, start)

    async def connect(self, batch=False, **kw):
        return await WsClient.connect(self.ws_url(batch=batch), batch=batch, **kw)

    async def subscriber(self, *channels, batch=False):
        """A protocol client connected and subscribed to `channels`."""
        c = await self.connect(batch=batch)
        for ch in channels:
            await c.subscribe(ch)
        return c

    def raw(self, **kw):
        return RawWs(self.port, **kw)

    def raw_subscriber(self, channel, timeout=10):
        """A RawWs past the welcome, subscribed to `channel`."""
        r = self.raw(timeout=timeout)
        assert r.recv_json()["op"] == "welcome"
        r.send_json({"op": "subscribe", "channel": channel, "id": 0})
        assert r.recv_json() == {"op": "ack", "id": 0}
        return r
