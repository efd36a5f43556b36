"""wsgate_testing: the Python harness of the integration and cluster tests.

Modules, one concern each:
  procs     paths, free ports, child processes stopped by PID, redis-server, run_wsgate, CPU, RSS
  resp      tiny blocking RESP2 client (talk to redis-server directly)
  httpc     blocking HTTP requests and raw WebSocket upgrade requests
  wsclient  raw blocking WebSocket client on a plain socket, frame codec
  protocol  async protocol-v1 client (WsClient), async_test, connect_retrying
  gateway   a running wsgate process (Gateway), common flag sets
  prom      strict Prometheus text-format parser, /metrics scraping
  tokens    HS256 connect tokens (JWT) minted with hmac
  certs     a self-signed certificate for the TLS tests
  cluster   deploy/local-cluster.sh: N gateways + HAProxy + Redis
  fixtures  the shared pytest fixtures (procs, redis, gw, rgw, anygw, mkgw, cluster)

The names tests use are re-exported here: from wsgate_testing import async_test.
"""

from .certs import self_signed
from .gateway import MANY_CHANNELS, NO_PUBLISH_RATE, Gateway
from .httpc import HttpResp, http_request, raw_upgrade
from .procs import (REPO, WSGATE_BIN, Proc, ProcError, Procs, Redis, cpu_seconds, free_port, pid_alive,
                    rss_kb, run_wsgate, wait_until)
from .prom import ascrape_metrics, await_metrics, parse_prometheus, scrape_metrics
from .protocol import WsClient, async_test, close_all_clients, connect_retrying, is_message
from .resp import RespConn
from .tokens import b64url, mint_token
from .wsclient import RawWs, encode_frame, parse_frame
