// web/wsgate.js on Node's own WebSocket against a real gateway (and Redis):
// Node 20's WebSocket fires `error` and never `close` when a connection or an
// upgrade fails; the client must treat that as the close and back off at
// once, not wait out connectTimeout for every attempt. Also: the refusal
// probe (401 token_missing) and the size limit from welcome, end to end;
// and the client over wss:// against a gateway with --tls-cert (a
// self-signed certificate from `openssl req`, trusted through
// NODE_TLS_REJECT_UNAUTHORIZED=0 for this process only).
//
//   node --experimental-websocket --test tests/browser/node-client.test.mjs
//
// Needs build/wsgate (or WSGATE_BIN), redis-server and openssl.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { loadWsgate } from "./unit/fakes.mjs";
import { freePort } from "./lib/cluster.mjs";
import { WSGATE, selfSignedCert, startGateway } from "./lib/gateway.mjs";

const { connect } = await loadWsgate();
const verbose = !!process.env.VERBOSE;
const CONNECT_TIMEOUT = 10000;

assert.equal(typeof WebSocket, "function", "run with node --experimental-websocket (Node 20) or Node >= 22");

let gw = null;
let tlsGw = null;
let dir = null;
let secretFile = null;

before(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), "wsgate-node-client-"));
  secretFile = path.join(dir, "secret");
  writeFileSync(secretFile, "node-client-test-secret-0123456789abcdef\n");
  gw = await startGateway(["--jwt-secret-file", secretFile, "--max-message-size", "2k"],
    { log: verbose ? (l) => console.log("# " + l) : () => {} });
});

after(async () => {
  if (gw) await gw.stop();
  if (tlsGw) await tlsGw.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** A client on Node's WebSocket recording its events; fast backoff. */
function client(url, options = {}) {
  const events = [];
  const c = connect(url, {
    WebSocket, connectTimeout: CONNECT_TIMEOUT, pingInterval: 0, backoff: { min: 100, max: 200 }, ...options,
    on: Object.fromEntries(["state", "close", "welcome", "refused", "error"].map((t) => [t, (e) => events.push([t, e, Date.now()])])),
  });
  const waitFor = (pred, ms, what) => new Promise((resolve, reject) => {
    const t0 = Date.now();
    const poll = () => {
      const v = pred(events);
      if (v) return resolve(v);
      if (Date.now() - t0 > ms) return reject(new Error(`no ${what} in ${ms} ms: ${JSON.stringify(events.map(([t, e]) => [t, e.code ?? e.state]))}`));
      setTimeout(poll, 20);
    };
    poll();
  });
  return { c, events, waitFor };
}

const closes = (events) => events.filter(([t]) => t === "close");

test("a refused TCP connection: three attempts in well under one connect timeout", { timeout: 20000 }, async () => {
  const port = await freePort(); // nothing listens there
  const t0 = Date.now();
  const { c, waitFor } = client(`ws://127.0.0.1:${port}/ws`);
  try {
    await waitFor((ev) => closes(ev).length >= 3, CONNECT_TIMEOUT - 1000, "three failed attempts");
    const took = Date.now() - t0;
    console.log(`# 3 refused attempts in ${took} ms (connect timeout ${CONNECT_TIMEOUT} ms)`);
    assert.ok(took < 3000, `took ${took} ms`);
  } finally {
    c.close();
  }
});

test("--auth required without a token: the attempt fails at once and the client learns 401 token_missing", { timeout: 20000 }, async () => {
  const t0 = Date.now();
  const { c, events, waitFor } = client(`ws://127.0.0.1:${gw.port}/ws`);
  try {
    const [, refused, at] = await waitFor((ev) => ev.find(([t]) => t === "refused"), 5000, "refused event");
    assert.equal(refused.status, 401);
    assert.equal(refused.code, "token_missing");
    assert.match(refused.message, /wsgate token/);
    assert.ok(at - t0 < 3000, `refused after ${at - t0} ms`);
    assert.ok(closes(events)[0][2] - t0 < 2000, "the first failure was not a connect timeout");
    assert.equal(c.state, "connecting");
  } finally {
    c.close();
  }
});

test("with a minted token: connected; welcome's max_message refuses a large publish before sending, no 1009", { timeout: 20000 }, async () => {
  const token = execFileSync(WSGATE, ["token", "--secret-file", secretFile, "--sub", "node",
    "--channels", "room", "--publish", "room", "--ttl", "10m"], { encoding: "utf8" }).trim();
  const { c, events, waitFor } = client(`ws://127.0.0.1:${gw.port}/ws`, { token });
  try {
    await waitFor((ev) => ev.find(([t]) => t === "welcome"), 5000, "welcome");
    assert.equal(c.maxMessage, 2048);
    const got = [];
    await new Promise((resolve, reject) => c.subscribe("room", (d) => got.push(d), { onSubscribed: resolve, onError: reject }));
    await assert.rejects(c.publish("room", "ü".repeat(1100)), (e) => e.code === "too_large" && e.limit === 2048 && e.size > 2048);
    await c.publish("room", "x".repeat(1500));
    await waitFor(() => got.length === 1, 5000, "the message under the limit");
    assert.equal(got[0].length, 1500);
    assert.equal(c.state, "connected");
    assert.deepEqual(closes(events), [], "never disconnected");
  } finally {
    c.close();
  }
});

test("over wss:// (--tls-cert): https static files, large and bursts of small messages, /api/publish", { timeout: 60000 }, async () => {
  const { cert, key } = selfSignedCert(dir);
  tlsGw = await startGateway(["--tls-cert", cert, "--tls-key", key, "--max-message-size", "1m", "--publish-rate", "0"],
    { scheme: "https", log: verbose ? (l) => console.log("# " + l) : () => {} });
  process.env.NODE_TLS_REJECT_UNAUTHORIZED = "0"; // the self-signed certificate, in this test process only
  const page = await fetch(tlsGw.origin + "/wsgate.js");
  assert.equal(page.status, 200);
  assert.match(await page.text(), /export function connect/);
  const { c, events, waitFor } = client(tlsGw.origin.replace(/^https/, "wss") + "/ws");
  try {
    await waitFor((ev) => ev.find(([t]) => t === "welcome"), 5000, "welcome over wss");
    assert.equal(c.maxMessage, 1 << 20);
    const got = [];
    await new Promise((resolve, reject) => c.subscribe("tls", (d) => got.push(d), { onSubscribed: resolve, onError: reject }));
    const big = "y".repeat(500000);
    await c.publish("tls", { big });
    const t0 = Date.now();
    await Promise.all(Array.from({ length: 1000 }, (_, i) => c.publish("tls", i)));
    const res = await fetch(tlsGw.origin + "/api/publish", {
      method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ channel: "tls", data: "via https" }),
    });
    assert.equal(res.status, 200, await res.text());
    await waitFor(() => got.length === 1002, 10000, "every message");
    console.log(`# wss: 1000 publishes acked and delivered in ${Date.now() - t0} ms`);
    assert.equal(got[0].big, big);
    assert.deepEqual(got.slice(1, 1001), Array.from({ length: 1000 }, (_, i) => i));
    assert.equal(got[1001], "via https");
    assert.deepEqual(closes(events), []);
  } finally {
    c.close();
    delete process.env.NODE_TLS_REJECT_UNAUTHORIZED;
  }
});
