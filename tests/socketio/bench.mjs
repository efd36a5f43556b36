// Gateway CPU per delivered message, Socket.IO clients against v1 clients,
// side by side on one gateway (embedded broker) under the same load: N
// subscribers of each protocol (not at once), M messages published through
// POST /api/publish on the Socket.IO channel, in {event,args} form.
// Prints CPU-us per delivery (utime+stime of the gateway from /proc) and
// deliveries/s for each. A benchmark, not a test: it asserts nothing.
//
//   node tests/socketio/bench.mjs [--clients N (500)] [--messages M (200)]
import { readFileSync } from "node:fs";
import { io } from "socket.io-client";
import WebSocket from "ws";
import { startGateway, within } from "./lib/procs.mjs";

const arg = (name, def) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : def;
};
const N = arg("clients", 500), M = arg("messages", 200);
const TICK = 1e6 / 100; // us per clock tick (USER_HZ 100)

const cpuUs = (pid) => {
  const f = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
  return (Number(f[11]) + Number(f[12])) * TICK;
};

async function run(gw, proto) {
  let got = 0, done;
  const all = new Promise((r) => { done = r; });
  const onMsg = () => { if (++got === N * M) done(); };
  const conns = [];
  for (let i = 0; i < N; i++) {
    if (proto === "socketio") {
      const s = io(gw.url, { transports: ["websocket"], reconnection: false, forceNew: true });
      s.on("chat message", onMsg);
      await within(new Promise((r) => s.once("connect", r)), 10000, "connect");
      conns.push(() => s.close());
    } else {
      const ws = new WebSocket(`${gw.url.replace("http", "ws")}/ws`);
      await within(new Promise((r) => ws.once("open", r)), 10000, "open");
      ws.send(JSON.stringify({ op: "subscribe", channel: "socket.io", id: 1 }));
      await within(new Promise((r) => ws.once("message", function ack(d) {
        if (String(d).includes('"ack"')) r(); else ws.once("message", ack);
      })), 10000, "subscribed");
      ws.on("message", (d) => { if (String(d).includes('"message"')) onMsg(); });
      conns.push(() => ws.close());
    }
  }
  const cpu0 = cpuUs(gw.pid), t0 = process.hrtime.bigint();
  for (let i = 0; i < M; i++) {
    const r = await fetch(`${gw.url}/api/publish`, {
      method: "POST", body: JSON.stringify({ channel: "socket.io", data: { event: "chat message", args: [`m${i}`, { n: i }] } }),
    });
    await r.text();
  }
  await within(all, 120000, `${N * M} deliveries`);
  const secs = Number(process.hrtime.bigint() - t0) / 1e9, cpu = cpuUs(gw.pid) - cpu0;
  for (const close of conns) close();
  return { proto, deliveries: N * M, cpuUsPerDelivery: (cpu / (N * M)).toFixed(2), perSecond: Math.round((N * M) / secs) };
}

const gw = await startGateway(["--publish-rate", "0", "--max-connections", String(4 * N), "--api-insecure"]);
try {
  for (const proto of ["v1", "socketio", "v1", "socketio"]) console.log(JSON.stringify(await run(gw, proto)));
} finally {
  await gw.stop();
}
