// The real socket.io-client (npm, pinned) against wsgate's /socket.io/:
// default options (long-polling, then the WebSocket upgrade), WebSocket
// only and polling only; one gateway, and two gateways on one redis-server;
// io.emit semantics (the sender gets its own event), acks, bridging with
// protocol v1 and POST /api/publish, heartbeats, connect tokens, and bad
// input answered clearly while other clients carry on.
//
// Run: tests/socketio/setup.sh && node --test tests/socketio/test_socketio.mjs
// (WSGATE_BIN: the binary; default build/wsgate).
import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { io } from "socket.io-client";
import WebSocket from "ws";
import { startGateway, startRedis, within } from "./lib/procs.mjs";

const EV = "chat message";
const clients = new Set();

/** A connected socket.io-client socket (options merged over no reconnection). */
async function connect(url, opts = {}) {
  const s = io(url, { reconnection: false, forceNew: true, ...opts });
  clients.add(s);
  await within(new Promise((resolve, reject) => {
    s.once("connect", resolve);
    s.once("connect_error", reject);
  }), 10000, `connect to ${url}`);
  return s;
}

/** The next n events named ev on s, as arrays of their arguments. */
function nextEvents(s, ev, n = 1, ms = 10000) {
  const got = [];
  return within(new Promise((resolve) => {
    const on = (...args) => {
      got.push(args);
      if (got.length === n) {
        s.off(ev, on);
        resolve(got);
      }
    };
    s.on(ev, on);
  }), ms, `${n} "${ev}" event(s)`);
}

function closeAll() {
  for (const s of clients) s.close();
  clients.clear();
}

/** A raw WebSocket and the text frames it gets. */
async function rawWs(url) {
  const ws = new WebSocket(url);
  ws.frames = [];
  ws.waiters = new Set();
  ws.on("message", (data, binary) => {
    ws.frames.push(binary ? data : data.toString());
    for (const w of [...ws.waiters]) w();
  });
  ws.closed = new Promise((resolve) => ws.on("close", (code, reason) => resolve({ code, reason: reason.toString() })));
  await within(new Promise((resolve, reject) => {
    ws.once("open", resolve);
    ws.once("error", reject);
    ws.once("unexpected-response", (req, res) => reject(new Error(`HTTP ${res.statusCode}`)));
  }), 5000, `websocket ${url}`);
  return ws;
}

/** The first frame (from index from) that matches pred. */
function frame(ws, pred, from = 0) {
  return within(new Promise((resolve) => {
    const check = () => {
      const f = ws.frames.slice(from).find(pred);
      if (f !== undefined) {
        ws.waiters.delete(check);
        resolve(f);
      }
    };
    ws.waiters.add(check);
    check();
  }), 5000, "a frame");
}

const eioUrl = (base, q = "") => `${base}/socket.io/?EIO=4&transport=polling${q}`;

/** A raw polling handshake: the open packet's fields. */
async function handshake(base) {
  const r = await fetch(eioUrl(base));
  assert.equal(r.status, 200);
  const body = await r.text();
  assert.equal(body[0], "0");
  return JSON.parse(body.slice(1));
}

after(closeAll);

describe("one gateway", () => {
  let gw;
  before(async () => { gw = await startGateway(["--ping-interval", "1", "--ping-timeout", "2"]); });
  after(async () => { closeAll(); await gw.stop(); });

  test("serves the pinned socket.io-client bundle", async () => {
    const r = await fetch(`${gw.url}/socket.io/socket.io.js`);
    assert.equal(r.status, 200);
    assert.match(r.headers.get("content-type"), /javascript/);
    assert.match(r.headers.get("cache-control"), /max-age=\d+/);
    const text = await r.text();
    assert.match(text, /^\/\*!\n \* Socket\.IO v4\.\d+\.\d+/);
  });

  test("the open packet", async () => {
    const open = await handshake(gw.url);
    assert.match(open.sid, /^[0-9a-f]{16}$/);
    assert.deepEqual(open.upgrades, ["websocket"]);
    assert.equal(open.pingInterval, 1000);
    assert.equal(open.pingTimeout, 2000);
    assert.equal(open.maxPayload, 65536);
  });

  test("default client: polling, upgraded to WebSocket; io.emit reaches the sender; acks", async () => {
    const a = io(gw.url, { reconnection: false, forceNew: true });
    clients.add(a);
    const upgraded = within(new Promise((resolve) => a.io.once("open", () => {
      const first = a.io.engine.transport.name;
      a.io.engine.once("upgrade", (t) => resolve([first, t.name]));
    })), 10000, "the upgrade");
    await within(new Promise((r) => a.once("connect", r)), 10000, "connect");
    const b = await connect(gw.url, { transports: ["websocket"] });
    assert.deepEqual(await upgraded, ["polling", "websocket"]);
    const toA = nextEvents(a, EV), toB = nextEvents(b, EV);
    const ack = await a.timeout(5000).emitWithAck(EV, "salut", { n: 1 });
    assert.equal(ack, undefined); // 43<id>[]: acked with no arguments
    assert.deepEqual(await toA, [["salut", { n: 1 }]]);
    assert.deepEqual(await toB, [["salut", { n: 1 }]]);
  });

  test("a polling-only client sends and receives in order", async () => {
    const p = await connect(gw.url, { transports: ["polling"] });
    const got = nextEvents(p, EV, 20);
    for (let i = 0; i < 19; i++) p.emit(EV, `m${i}`);
    await p.timeout(5000).emitWithAck(EV, "m19");
    assert.deepEqual((await got).map((a) => a[0]), Array.from({ length: 20 }, (_, i) => `m${i}`));
    assert.equal(p.io.engine.transport.name, "polling");
  });

  test("heartbeats: pings every second keep polling and WebSocket clients connected", async () => {
    const w = await connect(gw.url, { transports: ["websocket"] });
    const p = await connect(gw.url, { transports: ["polling"] });
    let dropped = false;
    for (const s of [w, p]) s.on("disconnect", () => { dropped = true; });
    const pings = (s) => within(new Promise((resolve) => {
      let n = 0;
      s.io.engine.on("ping", () => { if (++n === 4) resolve(); });
    }), 15000, "4 pings");
    await Promise.all([pings(w), pings(p)]);
    assert.equal(dropped, false);
    assert.ok(w.connected && p.connected);
  });

  test("a polling session that stops polling is closed after pingInterval + pingTimeout", async () => {
    const from = gw.lines.length;
    const { sid } = await handshake(gw.url);
    await gw.awaitLine(new RegExp(`session closed session=${sid} .*reason=timeout`), 10000, from);
    const r = await fetch(eioUrl(gw.url, `&sid=${sid}`));
    assert.equal(r.status, 400);
    assert.equal((await r.json()).error, "unknown_sid");
  });

  test("bad requests: unknown sid, EIO=3, concurrent GET, oversized POST", async () => {
    let r = await fetch(eioUrl(gw.url, "&sid=0123456789abcdef"));
    assert.equal(r.status, 400);
    r = await fetch(`${gw.url}/socket.io/?EIO=3&transport=polling`);
    assert.equal(r.status, 400);
    assert.equal((await r.json()).error, "unsupported_protocol");
    const { sid } = await handshake(gw.url);
    r = await fetch(eioUrl(gw.url, `&sid=${sid}`), { method: "POST", body: "40" });
    assert.equal(await r.text(), "ok");
    const first = fetch(eioUrl(gw.url, `&sid=${sid}`)); // answered with 40{"sid":...}
    const held = await first;
    assert.match(await held.text(), /^40\{"sid":"[0-9a-f]{16}"\}$/);
    // Two GETs at once: whichever comes second gets 400 at once, the other
    // is held (nothing is queued).
    const polls = [fetch(eioUrl(gw.url, `&sid=${sid}`)), fetch(eioUrl(gw.url, `&sid=${sid}`))];
    r = await Promise.race(polls);
    assert.equal(r.status, 400);
    assert.equal((await r.json()).error, "concurrent_poll");
    const hold = Promise.all(polls).then((rs) => rs.find((x) => x.status === 200));
    r = await fetch(eioUrl(gw.url, `&sid=${sid}`), { method: "POST", body: "42" + JSON.stringify([EV, "x".repeat(70000)]) });
    assert.equal(r.status, 413);
    r = await fetch(eioUrl(gw.url, `&sid=${sid}`), { method: "POST", body: "1" }); // close
    assert.equal(await r.text(), "ok");
    assert.equal(await (await hold).text(), "1");
  });

  test("bad packets: a clear answer, and other clients carry on", async () => {
    const other = await connect(gw.url, { transports: ["websocket"] });
    // Another namespace: CONNECT_ERROR "Invalid namespace".
    const nsp = io(`${gw.url}/admin`, { reconnection: false, forceNew: true });
    clients.add(nsp);
    const err = await within(new Promise((r) => nsp.once("connect_error", r)), 5000, "connect_error");
    assert.equal(err.message, "Invalid namespace");
    // Binary events are refused: the ack carries the error.
    const s = await connect(gw.url, { transports: ["websocket"] });
    const [res] = await s.timeout(5000).emitWithAck(EV, Buffer.from([1, 2, 3])).then((a) => [a]);
    assert.equal(res.error, "binary_unsupported");
    // Raw: an event that is not an array, one before CONNECT, a malformed packet.
    const ws = await rawWs(`${gw.url.replace("http", "ws")}/socket.io/?EIO=4&transport=websocket`);
    assert.match(await frame(ws, (f) => f[0] === "0"), /^0\{"sid":/);
    ws.send("421[\"x\"]");
    assert.equal(await frame(ws, (f) => f.startsWith("431")), '431[{"error":"not_connected","message":"send CONNECT (40) before events"}]');
    ws.send("40");
    await frame(ws, (f) => f.startsWith("40{"));
    ws.send('422{"not":"an array"}');
    assert.match(await frame(ws, (f) => f.startsWith("432")), /"error":"bad_request"/);
    ws.send(Buffer.from([0xde, 0xad]));
    assert.match(await frame(ws, (f) => f.startsWith('42["error"')), /binary_unsupported/);
    ws.send("4x{");
    assert.deepEqual(await ws.closed, { code: 1002, reason: "protocol error" });
    // One probe at a time per session: a second upgrade of the same sid is refused.
    const { sid } = await handshake(gw.url);
    const probe = await rawWs(`${gw.url.replace("http", "ws")}/socket.io/?EIO=4&transport=websocket&sid=${sid}`);
    await assert.rejects(rawWs(`${gw.url.replace("http", "ws")}/socket.io/?EIO=4&transport=websocket&sid=${sid}`), /HTTP 400/);
    probe.send("2probe");
    assert.equal(await frame(probe, (f) => f === "3probe"), "3probe");
    probe.close();
    // A WebSocket upgrade for an unknown sid, or with EIO=3, is refused.
    await assert.rejects(rawWs(`${gw.url.replace("http", "ws")}/socket.io/?EIO=4&transport=websocket&sid=nope`), /HTTP 400/);
    await assert.rejects(rawWs(`${gw.url.replace("http", "ws")}/socket.io/?EIO=3&transport=websocket`), /HTTP 400/);
    // The bystander still works.
    const got = nextEvents(other, EV);
    await other.timeout(5000).emitWithAck(EV, "still here");
    assert.deepEqual(await got, [["still here"]]);
  });
});

describe("two gateways on one redis-server", () => {
  let redis, gw1, gw2;
  before(async () => {
    redis = await startRedis();
    // --api-insecure: the bridging test publishes through POST /api/publish.
    gw1 = await startGateway(["--redis", redis.url, "--api-insecure"], "gw1");
    gw2 = await startGateway(["--redis", redis.url, "--api-insecure"], "gw2");
  });
  after(async () => {
    closeAll();
    for (const p of [gw1, gw2, redis]) if (p) await p.stop();
  });

  test("an event emitted on one replica reaches every client on both, the sender included", async () => {
    const a = await connect(gw1.url); // polling, then upgraded
    const b = await connect(gw2.url, { transports: ["websocket"] });
    const c = await connect(gw2.url, { transports: ["polling"] });
    const all = [a, b, c].map((s) => nextEvents(s, EV, 2));
    await a.timeout(5000).emitWithAck(EV, "from gw1");
    await b.timeout(5000).emitWithAck(EV, "from gw2");
    for (const got of all) {
      const texts = (await got).map((x) => x[0]).sort();
      assert.deepEqual(texts, ["from gw1", "from gw2"]);
    }
  });

  test("bridged: v1 clients, POST /api/publish and Socket.IO clients share the channel", async () => {
    const s = await connect(gw2.url, { transports: ["websocket"] });
    const v1 = await rawWs(`${gw1.url.replace("http", "ws")}/ws`);
    v1.send(JSON.stringify({ op: "subscribe", channel: "socket.io", id: 1 }));
    const json = (f) => JSON.parse(f);
    await frame(v1, (f) => json(f).op === "ack" && json(f).id === 1);
    // Socket.IO -> v1 (and back to the sender, like io.emit: await that echo
    // too, or it could land in the next step's wait)
    let from = v1.frames.length;
    const echo = nextEvents(s, EV);
    await s.timeout(5000).emitWithAck(EV, "salut");
    assert.deepEqual(await echo, [["salut"]]);
    const m = json(await frame(v1, (f) => json(f).op === "message", from));
    assert.equal(m.channel, "socket.io");
    assert.deepEqual(m.data, { event: "chat message", args: ["salut"] });
    // v1 -> Socket.IO
    let got = nextEvents(s, EV);
    v1.send(JSON.stringify({ op: "publish", channel: "socket.io", data: { event: EV, args: ["from v1", 2] }, id: 2 }));
    assert.deepEqual(await got, [["from v1", 2]]);
    // HTTP -> Socket.IO; a payload not in {event,args} form arrives as "message"
    got = nextEvents(s, EV);
    const r = await fetch(`${gw1.url}/api/publish`, { method: "POST", body: JSON.stringify({ channel: "socket.io", data: { event: EV, args: ["from http"] } }) });
    assert.equal(r.status, 200);
    assert.deepEqual(await got, [["from http"]]);
    const plain = nextEvents(s, "message");
    await fetch(`${gw1.url}/api/publish`, { method: "POST", body: JSON.stringify({ channel: "socket.io", data: "hello" }) });
    assert.deepEqual(await plain, [["hello"]]);
    v1.close();
  });
});

describe("connect tokens", () => {
  const secret = "socketio-test-secret";
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
  const token = (claims) => {
    const head = b64({ alg: "HS256", typ: "JWT" }), body = b64(claims);
    return `${head}.${body}.${createHmac("sha256", secret).update(`${head}.${body}`).digest("base64url")}`;
  };
  let gw;
  before(async () => {
    gw = await startGateway(["--jwt-secret", secret, "--allowed-origins", "http://good.example"]);
  });
  after(async () => { closeAll(); await gw.stop(); });

  test("auth.token is checked like /ws?token=: missing, bad, no grant, good", async () => {
    const refusal = (auth) => {
      const s = io(gw.url, { reconnection: false, forceNew: true, transports: ["websocket"], auth });
      clients.add(s);
      return within(new Promise((r) => s.once("connect_error", r)), 5000, "connect_error");
    };
    assert.equal((await refusal({})).data.code, "token_missing");
    assert.equal((await refusal({ token: "not.a.token" })).data.code, "token_malformed");
    assert.equal((await refusal({ token: token({ sub: "u", channels: ["other"] }) })).data.code, "forbidden");
    const s = await connect(gw.url, { auth: { token: token({ sub: "u", channels: ["socket.io"], publish: ["socket.io"] }) } });
    const got = nextEvents(s, EV);
    await s.timeout(5000).emitWithAck(EV, "with a token");
    assert.deepEqual(await got, [["with a token"]]);
  });

  test("--allowed-origins applies to polling requests", async () => {
    let r = await fetch(eioUrl(gw.url), { headers: { origin: "http://evil.example" } });
    assert.equal(r.status, 403);
    assert.equal((await r.json()).error, "origin_not_allowed");
    r = await fetch(eioUrl(gw.url), { headers: { origin: "http://good.example" } });
    assert.equal(r.status, 200);
    const { sid } = JSON.parse((await r.text()).slice(1));
    const from = gw.lines.length;
    r = await fetch(eioUrl(gw.url, `&sid=${sid}`), { method: "POST", body: "1" }); // close it
    assert.equal(await r.text(), "ok");
    // No GET comes to take a close packet: the session still ends, in seconds.
    await gw.awaitLine(new RegExp(`session closed session=${sid} .*reason=client`), 5000, from);
  });

  test("metrics count connections by protocol", async () => {
    const text = await (await fetch(`${gw.url}/metrics`)).text();
    assert.match(text, /^wsgate_protocol_connections_total\{protocol="socketio"\} [1-9]/m);
    assert.match(text, /^wsgate_protocol_connections\{protocol="socketio"\} \d+$/m);
  });
});

describe("limits and drain", () => {
  let gw;
  before(async () => {
    gw = await startGateway(["--publish-rate", "1", "--publish-burst", "2", "--drain-seconds", "2"]);
  });
  after(async () => { closeAll(); if (gw) await gw.stop(); });

  test("the publish rate limit answers in the ack", async () => {
    const s = await connect(gw.url, { transports: ["websocket"] });
    const acks = await Promise.all([1, 2, 3].map((i) => s.timeout(5000).emitWithAck(EV, `r${i}`)));
    assert.deepEqual(acks.slice(0, 2), [undefined, undefined]);
    assert.equal(acks[2].error, "rate_limited");
  });

  test("draining: WebSocket and polling clients are closed to reconnect elsewhere; new sessions get 503", async () => {
    const w = await connect(gw.url, { transports: ["websocket"] });
    const p = await connect(gw.url, { transports: ["polling"] });
    await handshake(gw.url); // a session that never polls keeps the node up for the window
    const reasons = Promise.all([w, p].map((s) => within(new Promise((r) => s.once("disconnect", r)), 10000, "disconnect")));
    process.kill(gw.pid, "SIGTERM");
    await gw.awaitLine(/draining/);
    // "transport close": the client reconnects by itself ("io server disconnect" would not).
    assert.deepEqual(await reasons, ["transport close", "transport close"]);
    const r = await fetch(eioUrl(gw.url));
    assert.equal(r.status, 503);
    assert.equal((await r.json()).error, "draining");
    await gw.stop();
    assert.match(gw.lines.join("\n"), /session closed .*reason=drain protocol=socketio/);
    gw = null;
  });
});

describe("slow consumers", () => {
  let gw;
  before(async () => {
    gw = await startGateway(["--max-queue-bytes", "32k", "--sndbuf", "4k", "--publish-rate", "0"]);
  });
  after(async () => { closeAll(); if (gw) await gw.stop(); });

  test("a Socket.IO client that stops reading, over WebSocket or polling, is cut off; others carry on", async () => {
    const wsBase = gw.url.replace("http", "ws");
    // WebSocket: connected, then its socket is no longer read.
    const stuck = await rawWs(`${wsBase}/socket.io/?EIO=4&transport=websocket`);
    const sidWs = JSON.parse((await frame(stuck, (f) => f[0] === "0")).slice(1)).sid;
    stuck.send("40");
    await frame(stuck, (f) => f.startsWith("40{"));
    stuck._socket.pause();
    // Polling: connected, then it never polls again.
    const { sid: sidPoll } = await handshake(gw.url);
    await fetch(eioUrl(gw.url, `&sid=${sidPoll}`), { method: "POST", body: "40" }).then((r) => r.text());
    assert.match(await (await fetch(eioUrl(gw.url, `&sid=${sidPoll}`))).text(), /^40\{"sid"/);
    const healthy = await connect(gw.url, { transports: ["websocket"] });
    let last = 0, wake = () => {};
    healthy.on(EV, (i) => { last = i; wake(); });
    const from = gw.lines.length;
    const pub = await rawWs(`${wsBase}/ws`);
    const pad = "x".repeat(1000);
    const cut = (sid) => gw.awaitLine(new RegExp(`session closed session=${sid} .*reason=slow_consumer protocol=socketio`), 30000, from);
    const cuts = Promise.all([cut(sidWs), cut(sidPoll)]);
    let done = false;
    cuts.then(() => { done = true; }, () => {});
    // 20 at a time, each batch read by the healthy client before the next:
    // its queue stays short while the others' grow.
    for (let i = 1; !done && i <= 3000; i += 20) {
      for (let k = i; k < i + 20; k++) {
        pub.send(JSON.stringify({ op: "publish", channel: "socket.io", data: { event: EV, args: [k, pad] } }));
      }
      await within(new Promise((resolve) => {
        wake = () => { if (last >= i + 19) resolve(); };
        wake();
      }), 10000, `the healthy client's event ${i + 19}`);
    }
    await cuts;
    assert.ok(healthy.connected);
    pub.close();
    stuck.terminate();
  });
});
