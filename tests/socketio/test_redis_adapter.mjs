// --socketio-redis-adapter: two Node Socket.IO 4 servers with
// @socket.io/redis-adapter (npm, pinned) and two wsgate replicas on one
// real redis-server, as in a migration from a Node cluster. Broadcasts from
// either side reach every client of the other side exactly once (Socket.IO
// and v1 clients of wsgate alike), Node's serverCount() and fetchSockets()
// still count Node servers only, and what wsgate cannot honour or read on
// socket.io#/# (rooms, binary, another namespace, bad MessagePack) is
// counted and skipped while other traffic goes on.
//
// "Exactly once" without sleeping: each check sends its message and then
// an end marker through the same path (same publisher, same Redis
// connection, so the same order); once every receiver has the marker, a
// duplicate would have arrived before it.
//
// Run: tests/socketio/setup.sh && node --test tests/socketio/test_redis_adapter.mjs
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import http from "node:http";
import { after, before, describe, test } from "node:test";
import { createAdapter } from "@socket.io/redis-adapter";
import notepack from "notepack.io";
import { createClient } from "redis";
import { Server } from "socket.io";
import { io } from "socket.io-client";
import WebSocket from "ws";
import { freePort, startGateway, startRedis, within, WSGATE } from "./lib/procs.mjs";

const EV = "chat message";
const ADAPTER_CHANNEL = "socket.io#/#";

/** A Node Socket.IO server with the Redis adapter: the tutorial chat
 * (io.emit of every "chat message"), plus "to others" (socket.broadcast.emit). */
async function startNode(redisUrl) {
  const pub = createClient({ url: redisUrl });
  const sub = pub.duplicate();
  await Promise.all([pub.connect(), sub.connect()]);
  const httpServer = http.createServer();
  const ioServer = new Server(httpServer, { adapter: createAdapter(pub, sub, { requestsTimeout: 5000 }) });
  ioServer.on("connection", (socket) => {
    socket.on(EV, (msg) => ioServer.emit(EV, msg));
    socket.on("to others", (msg) => socket.broadcast.emit(EV, msg));
  });
  const port = await freePort();
  await new Promise((resolve) => httpServer.listen(port, "127.0.0.1", resolve));
  return {
    io: ioServer,
    url: `http://127.0.0.1:${port}`,
    async close() {
      ioServer.close();
      await Promise.all([pub.quit(), sub.quit()]);
    },
  };
}

/** A receiver: a socket.io-client socket, or a v1 client of the channel
 * "socket.io"; got holds the first argument of each "chat message". */
async function sioReceiver(url, name) {
  const s = io(url, { reconnection: false, forceNew: true });
  const r = { name, got: [], waiters: new Set(), close: () => s.close(), socket: s };
  s.on(EV, (msg) => r._push(msg));
  await within(new Promise((resolve, reject) => {
    s.once("connect", resolve);
    s.once("connect_error", reject);
  }), 10000, `${name} to connect`);
  return receiver(r);
}

async function v1Receiver(url, name) {
  const ws = new WebSocket(`${url.replace("http", "ws")}/ws`);
  const r = { name, got: [], waiters: new Set(), close: () => ws.close() };
  const acked = new Promise((resolve, reject) => {
    ws.on("message", (data) => {
      const f = JSON.parse(data.toString());
      if (f.op === "ack" && f.id === 1) resolve();
      else if (f.op === "message" && f.data.event === EV) r._push(f.data.args[0]);
      else if (f.op === "error") reject(new Error(data.toString()));
    });
    ws.once("error", reject);
  });
  await within(new Promise((resolve, reject) => { ws.once("open", resolve); ws.once("error", reject); }),
    5000, `${name} to open`);
  ws.send(JSON.stringify({ op: "subscribe", channel: "socket.io", id: 1 }));
  await within(acked, 5000, `${name}'s subscribe ack`);
  return receiver(r);
}

function receiver(r) {
  r._push = (msg) => {
    r.got.push(msg);
    for (const w of [...r.waiters]) w();
  };
  /** Resolves once msg has arrived. */
  r.await = (msg, ms = 10000) => within(new Promise((resolve) => {
    const check = () => {
      if (r.got.includes(msg)) {
        r.waiters.delete(check);
        resolve();
      }
    };
    r.waiters.add(check);
    check();
  }), ms, `${r.name} to receive ${JSON.stringify(msg)}`);
  r.count = (msg) => r.got.filter((m) => m === msg).length;
  return r;
}

/** The value of one sample of a Prometheus text. */
async function metric(gw, sample) {
  const text = await (await fetch(`${gw.url}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(`${sample} `));
  assert.ok(line, `${sample} in /metrics of ${gw.name}`);
  return Number(line.split(" ")[1]);
}
const received = (gw, result) => metric(gw, `wsgate_socketio_adapter_received_total{result="${result}"}`);

describe("wsgate replicas in a Node Socket.IO cluster (@socket.io/redis-adapter)", () => {
  let redis, raw, n1, n2, a, b;
  let all = []; // every receiver: Node clients, wsgate Socket.IO and v1 clients
  let nodeClients, wsgateClients;
  let seq = 0;

  /** Sends msg then an end marker by send(text), and checks that each
   * receiver in want got msg once and every other receiver none, once the
   * marker reached those in markerTo. */
  async function exactlyOnce(send, want, markerTo = want) {
    const msg = `m${++seq}`, end = `end${seq}`;
    await send(msg);
    await send(end);
    await Promise.all(markerTo.map((r) => r.await(end)));
    for (const r of all) assert.equal(r.count(msg), want.includes(r) ? 1 : 0, `${r.name} got ${msg}`);
  }

  before(async () => {
    redis = await startRedis();
    raw = createClient({ url: redis.url });
    await raw.connect();
    n1 = await startNode(redis.url);
    n2 = await startNode(redis.url);
    const flags = ["--redis", redis.url, "--socketio-redis-adapter", "--api-insecure"];
    [a, b] = await Promise.all([startGateway(flags, "gw-a"), startGateway(flags, "gw-b")]);
    nodeClients = [await sioReceiver(n1.url, "node1 client"), await sioReceiver(n2.url, "node2 client")];
    wsgateClients = [
      await sioReceiver(a.url, "gw-a socket.io client"), await sioReceiver(b.url, "gw-b socket.io client"),
      await v1Receiver(a.url, "gw-a v1 client"), await v1Receiver(b.url, "gw-b v1 client"),
    ];
    all = [...nodeClients, ...wsgateClients];
  });

  after(async () => {
    for (const r of all) r.close();
    await Promise.all([n1?.close(), n2?.close(), raw?.quit()]);
    await Promise.all([a?.stop(), b?.stop()]); // exit status 0 (under ASan: no leak)
    await redis?.stop();
  });

  test("wsgate subscribes socket.io#/# and none of the adapter's request channels", async () => {
    assert.deepEqual({ ...await raw.pubSubNumSub([ADAPTER_CHANNEL, "socket.io-request#/#", "socket.io-response#/#"]) },
      { [ADAPTER_CHANNEL]: 2, "socket.io-request#/#": 2, "socket.io-response#/#": 2 });
    assert.ok(a.lines.some((l) => l.includes("socket.io redis-adapter") && l.includes(ADAPTER_CHANNEL)));
  });

  test("io.emit on Node reaches Socket.IO and v1 clients on both replicas once", async () => {
    await exactlyOnce((m) => { nodeClients[0].socket.emit(EV, m); }, all);
    await exactlyOnce((m) => { n2.io.emit(EV, m); }, all);
  });

  test("socket.broadcast.emit on Node (except the sender) reaches every wsgate client", async () => {
    await exactlyOnce((m) => { nodeClients[0].socket.emit("to others", m); }, all.slice(1));
  });

  test("a Socket.IO client's emit on wsgate reaches Node clients and both replicas once", async () => {
    const before = await received(b, "from_wsgate");
    await exactlyOnce((m) => { wsgateClients[0].socket.emit(EV, m); }, all);
    // B saw A's copy on socket.io#/# and skipped it (its clients had it
    // through wsgate's channel); A skipped its own.
    assert.equal(await received(b, "from_wsgate"), before + 2);
    assert.ok(await metric(a, "wsgate_socketio_adapter_published_total") >= 2);
    assert.equal(await metric(a, "wsgate_socketio_adapter_publish_errors_total"), 0);
  });

  test("POST /api/publish and a v1 publish on the channel reach Node clients once", async () => {
    await exactlyOnce(async (m) => {
      const r = await fetch(`${b.url}/api/publish`, {
        method: "POST", body: JSON.stringify({ channel: "socket.io", data: { event: EV, args: [m] } }),
      });
      assert.equal(r.status, 200);
    }, all);
    const ws = new WebSocket(`${a.url.replace("http", "ws")}/ws`);
    await within(new Promise((resolve, reject) => { ws.once("open", resolve); ws.once("error", reject); }), 5000, "v1 publisher");
    let id = 10;
    await exactlyOnce((m) => {
      ws.send(JSON.stringify({ op: "publish", channel: "socket.io", data: { event: EV, args: [m] }, id: ++id }));
    }, all);
    ws.close();
  });

  test("Node's serverCount() and fetchSockets() see Node servers only, promptly", async () => {
    assert.equal(await n1.io.of("/").adapter.serverCount(), 2);
    const t0 = Date.now();
    const sockets = await within(n1.io.fetchSockets(), 2000, "fetchSockets()");
    assert.ok(Date.now() - t0 < 2000);
    assert.deepEqual(sockets.map((s) => s.id).sort(), nodeClients.map((r) => r.socket.id).sort());
  });

  test("rooms, binary and other namespaces are counted and skipped", async () => {
    const verdicts = ["delivered", "rooms", "binary", "namespace", "malformed"];
    const was = {};
    for (const gw of [a, b]) was[gw.name] = Object.fromEntries(await Promise.all(verdicts.map(async (v) => [v, await received(gw, v)])));
    const linesBefore = a.lines.length;
    await exactlyOnce(async (m) => {
      if (m.startsWith("end")) return n1.io.emit(EV, m);
      n1.io.to(["r1", "r2"]).emit(EV, m); // several rooms: on socket.io#/#
      n1.io.emit(EV, Buffer.from([1, 2, 3]));
      await raw.publish(ADAPTER_CHANNEL, notepack.encode(["nodeUi", { type: 2, data: [EV, m], nsp: "/admin" }, { rooms: [], except: [] }]));
      // MessagePack, but not [uid, packet, opts] (Node's adapter skips it;
      // it would crash on bytes that are not MessagePack: see below)
      await raw.publish(ADAPTER_CHANNEL, notepack.encode([]));
    }, [], all); // Node's clients are in neither room, nor in /admin
    for (const gw of [a, b]) {
      const w = was[gw.name];
      assert.equal(await received(gw, "rooms"), w.rooms + 1, `${gw.name} rooms`);
      assert.equal(await received(gw, "binary"), w.binary + 1, `${gw.name} binary`);
      assert.equal(await received(gw, "namespace"), w.namespace + 1, `${gw.name} namespace`);
      assert.equal(await received(gw, "malformed"), w.malformed + 1, `${gw.name} malformed`);
      assert.equal(await received(gw, "delivered"), w.delivered + 1, `${gw.name} delivered (the marker)`);
    }
    // Each reason is logged (the first at info), and traffic goes on.
    await a.awaitLine(/redis-adapter message ignored: .*rooms/, 5000, linesBefore);
    await a.awaitLine(/redis-adapter message ignored: .*namespace/, 5000, linesBefore);
    await exactlyOnce((m) => { wsgateClients[1].socket.emit(EV, m); }, all);
  });
});

// Bytes that are not MessagePack on socket.io#/# make Node's adapter throw
// (notepack's "Could not parse", an uncaught exception in a Node server), so
// this part runs without Node servers: the wsgate replicas count and skip
// them, and a well-formed broadcast (encoded as the adapter does) and their
// own traffic still arrive, once.
describe("bad MessagePack on socket.io#/#", () => {
  let redis, raw, a, b, all = [];
  let seq = 0;

  before(async () => {
    redis = await startRedis();
    raw = createClient({ url: redis.url });
    raw.on("error", () => {}); // reconnects by itself after the restart below
    await raw.connect();
    const flags = ["--redis", redis.url, "--socketio-redis-adapter"];
    [a, b] = await Promise.all([startGateway(flags, "gw-a"), startGateway(flags, "gw-b")]);
    all = [await sioReceiver(a.url, "gw-a socket.io client"), await sioReceiver(b.url, "gw-b socket.io client"),
      await v1Receiver(a.url, "gw-a v1 client"), await v1Receiver(b.url, "gw-b v1 client")];
  });

  after(async () => {
    for (const r of all) r.close();
    await raw?.quit();
    await Promise.all([a?.stop(), b?.stop()]);
    await redis?.stop();
  });

  test("is counted, logged and skipped; other traffic goes on", async () => {
    const was = await Promise.all([a, b].map((gw) => received(gw, "malformed")));
    const linesBefore = b.lines.length;
    const bad = [
      Buffer.from([0xc1]), // a byte MessagePack never uses
      Buffer.from([0x93, 0xa1, 0x61]), // cut short
      Buffer.concat([notepack.encode(["nodeUi", { type: 2, data: [EV, "x"], nsp: "/" }, {}]), Buffer.from([0xc0])]),
      Buffer.from("not msgpack at all"),
    ];
    for (const m of bad) await raw.publish(ADAPTER_CHANNEL, m);
    const m = `m${++seq}`;
    await raw.publish(ADAPTER_CHANNEL, notepack.encode(["nodeUi", { type: 2, data: [EV, m], nsp: "/" }, { rooms: [], except: [], flags: {} }]));
    await Promise.all(all.map((r) => r.await(m)));
    assert.deepEqual(await Promise.all([a, b].map((gw) => received(gw, "malformed"))), was.map((n) => n + bad.length));
    await b.awaitLine(/redis-adapter message ignored: not MessagePack.*verdict=malformed|verdict.*malformed/, 5000, linesBefore);
    all[0].socket.emit(EV, "after");
    await Promise.all(all.map((r) => r.await("after")));
    for (const r of all) assert.deepEqual([r.count(m), r.count("after")], [1, 1], r.name);
  });

  test("after Redis restarts, socket.io#/# is subscribed again", async () => {
    const from = [a.lines.length, b.lines.length];
    await redis.stop();
    redis = await startRedis(redis.port);
    await Promise.all([a.awaitLine(/broker up/, 10000, from[0]), b.awaitLine(/broker up/, 10000, from[1])]);
    // The SUBSCRIBE leaves with "broker up"; wait until Redis has taken it.
    await within((async () => {
      while ((await raw.pubSubNumSub(ADAPTER_CHANNEL))[ADAPTER_CHANNEL] !== 2) await new Promise((r) => setTimeout(r, 20));
    })(), 5000, "both replicas on socket.io#/#");
    const m = `m${++seq}`;
    await raw.publish(ADAPTER_CHANNEL, notepack.encode(["nodeUi", { type: 2, data: [EV, m], nsp: "/" }, { rooms: [], except: [], flags: {} }]));
    await Promise.all(all.map((r) => r.await(m)));
    for (const r of all) assert.equal(r.count(m), 1, r.name);
  });
});

test("--socketio-redis-adapter without --redis: exit 2 with one line", async () => {
  const p = spawn(WSGATE, ["--listen", "127.0.0.1:0", "--socketio-redis-adapter"], { stdio: ["ignore", "ignore", "pipe"] });
  let err = "";
  p.stderr.on("data", (d) => { err += d; });
  const code = await within(new Promise((resolve) => p.on("exit", resolve)), 5000, "wsgate to exit");
  assert.equal(code, 2);
  assert.match(err, /^wsgate: --socketio-redis-adapter: needs --redis.*\n$/);
});
