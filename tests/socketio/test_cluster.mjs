// The real socket.io-client through deploy/local-cluster.sh (Redis, three
// gateways, HAProxy with the replica cookie of deploy/haproxy.cfg): default
// clients (long-polling, then the upgrade) stay on one replica for the whole
// session while new clients spread; an event reaches every client on every
// replica; clients of a SIGKILLed replica come back through the others.
//
// Run: tests/socketio/setup.sh && node --test tests/socketio/test_cluster.mjs
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { io } from "socket.io-client";
import { LocalCluster } from "../browser/lib/cluster.mjs";
import { within } from "./lib/procs.mjs";

const EV = "chat message";
const N = 6;
let cluster;
const clients = [];

before(async () => {
  cluster = new LocalCluster({ gateways: 3, log: process.env.SIO_TEST_VERBOSE ? (l) => console.error(l) : () => {} });
  await cluster.start(60000);
});

after(async () => {
  for (const s of clients) s.close();
  const left = cluster ? await cluster.stop() : [];
  assert.deepEqual(left, [], "processes left running");
});

/** Socket.IO connections per live gateway, from each one's /metrics. */
async function spread() {
  const out = {};
  for (const p of cluster.procs.filter((x) => x.role === "gateway" && !x.dead)) {
    const text = await (await fetch(`http://${p.addr}/metrics`)).text();
    out[p.name] = Number(/^wsgate_protocol_connections\{protocol="socketio"\} (\d+)$/m.exec(text)?.[1] ?? 0);
  }
  return out;
}

function nextEvents(s, n) {
  const got = [];
  return within(new Promise((resolve) => {
    const on = (m) => {
      got.push(m);
      if (got.length === n) {
        s.off(EV, on);
        resolve(got.sort());
      }
    };
    s.on(EV, on);
  }), 15000, `${n} events`);
}

test("default clients upgrade through the balancer, spread over replicas, and all get every event", async () => {
  for (let i = 0; i < N; i++) {
    // withCredentials: Node's client then keeps cookies, as a browser does.
    const s = io(cluster.url, { withCredentials: true, reconnectionDelay: 100, reconnectionDelayMax: 500 });
    clients.push(s);
    const upgraded = within(new Promise((resolve) => s.io.once("open", () => {
      const first = s.io.engine.transport.name;
      s.io.engine.once("upgrade", (t) => resolve(`${first}->${t.name}`));
    })), 15000, "the upgrade");
    await within(new Promise((r) => s.once("connect", r)), 15000, "connect");
    assert.equal(await upgraded, "polling->websocket");
  }
  const counts = await spread();
  assert.equal(Object.values(counts).reduce((a, b) => a + b, 0), N, JSON.stringify(counts));
  assert.ok(Object.values(counts).filter((n) => n > 0).length >= 2, `not spread: ${JSON.stringify(counts)}`);
  const all = clients.map((s) => nextEvents(s, N));
  await Promise.all(clients.map((s, i) => s.timeout(5000).emitWithAck(EV, `c${i}`)));
  const want = clients.map((_, i) => `c${i}`).sort();
  for (const got of all) assert.deepEqual(await got, want);
});

test("clients of a killed replica reconnect through the others and still get every event", async () => {
  const counts = await spread();
  const victim = Object.keys(counts).find((k) => counts[k] > 0);
  const dropped = [];
  for (const s of clients) s.once("disconnect", () => dropped.push(s));
  const back = within(new Promise((resolve) => {
    const check = () => { if (dropped.length === counts[victim] && dropped.every((s) => s.connected)) resolve(); };
    for (const s of clients) s.on("connect", check);
  }), 20000, "the victim's clients back");
  await cluster.killGateway(victim);
  await back;
  const all = clients.map((s) => nextEvents(s, 1));
  await clients[0].timeout(5000).emitWithAck(EV, "after the kill");
  for (const got of all) assert.deepEqual(await got, ["after the kill"]);
});
