"""HAProxy TLS termination in front of the local cluster (deploy/haproxy.cfg
with WSGATE_LB_TLS_PEM): wss:// and https:// to HAProxy, plain HTTP and
WebSocket to the gateways, with a self-signed certificate made by `openssl
req` for the run.

Run: /usr/bin/python3 -m pytest tests/cluster/test_tls_termination.py   (needs build/wsgate, redis-server, haproxy, openssl)
"""
import asyncio
import json
import ssl
import subprocess

import pytest
import websockets

from wsgate_testing import async_test, free_port
from wsgate_testing.httpc import http_request
from wsgate_testing.cluster import LocalCluster


def is_ack(o, rid):
    """An ack of request rid (a subscribe ack may carry the channel's history position)."""
    return o.get("op") == "ack" and o.get("id") == rid


@pytest.fixture
def tls_cluster(tmp_path):
    cert, key, pem = tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "site.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True, timeout=60)
    pem.write_text(cert.read_text() + key.read_text())  # HAProxy's crt: certificate and key in one file
    tls_port = free_port()
    c = LocalCluster(gateways=2, log_dir=tmp_path / "logs",
                     env={"WSGATE_LB_TLS_PEM": str(pem), "WSGATE_LB_TLS_BIND": f"127.0.0.1:{tls_port}"})
    try:
        c.start()
        yield c, tls_port, ssl.create_default_context(cafile=str(cert))
    finally:
        left = c.stop()
        assert not left, f"still running after local-cluster.sh stopped: {left}\n{''.join(c.lines)}"




@async_test(90)
async def test_wss_and_https_through_haproxy_tls_termination(tls_cluster):
    cluster, port, ctx = tls_cluster
    r = await asyncio.to_thread(http_request, port, "GET", "/", ssl_context=ctx)
    status, body = r.status, r.body
    assert status == 200 and b"wsgate chat" in body
    # Clients over wss land on both gateways (leastconn) and share messages.
    clients, nodes = [], set()
    for _ in range(4):
        ws = await websockets.connect(f"wss://127.0.0.1:{port}/ws", ssl=ctx)
        welcome = json.loads(await ws.recv())
        nodes.add(welcome["node"])
        await ws.send(json.dumps({"op": "subscribe", "channel": "tls", "id": 1}))
        assert is_ack(json.loads(await ws.recv()), 1)
        clients.append(ws)
    assert len(nodes) == 2, f"every wss client landed on {nodes}"
    await clients[0].send(json.dumps({"op": "publish", "channel": "tls", "data": "x" * 50000, "id": 2}))
    r = await asyncio.to_thread(http_request, port, "POST", "/api/publish",
                                {"channel": "tls", "data": "via https"}, ssl_context=ctx)
    status, body = r.status, r.body
    assert status == 200, body
    for ws in clients:
        got = []
        while len(got) < 2:
            o = json.loads(await asyncio.wait_for(ws.recv(), 10))
            if o.get("op") == "message":
                got.append(o["data"])
        assert sorted(got) == ["via https", "x" * 50000], [g[:20] for g in got]  # two publishers: any order
    for ws in clients:
        await ws.close()
    # the plain port still serves
    plain = await websockets.connect(cluster.url)
    assert json.loads(await plain.recv())["op"] == "welcome"
    await plain.close()
