// Real-browser test of the cluster dashboard (web/admin/): Debian's chromium
// driven by playwright-core against deploy/local-cluster.sh (Redis + 3
// gateways + HAProxy on free ports), with an admin key.
//
//   tests/browser/setup.sh && node tests/browser/run-admin-test.mjs
//
// The page is loaded from gateway gw1 directly (every replica serves it) so
// that stopping other gateways never touches the page's own requests. It
// checks: a wrong key is refused in the page; every node is listed with the
// connections and subscriptions this test opened (from a second page, on
// each gateway directly); a publish from the form reaches those subscribers;
// the inspector shows subscribers per node and the history; a gateway
// started later appears, and disappears at once when stopped (SIGTERM) and
// within the heartbeat TTL when killed (SIGKILL); no page error. Prints TAP.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { LocalCluster, REPO, pidAlive } from "./lib/cluster.mjs";

const CHROMIUM = process.env.CHROMIUM_BIN || "/usr/bin/chromium";
const WSGATE = process.env.WSGATE_BIN || path.join(REPO, "build", "wsgate");
const ARTIFACTS = process.env.WSGATE_BROWSER_ARTIFACTS || path.join(REPO, "tests", "artifacts", "browser");
const KEY = "dashboard-test-key-0123456789";
const WAIT = 20000;
const TTL_MS = 3000; // HEARTBEAT_TTL_MS in gateway/net/heartbeat.h
const RUN_LIMIT = 180000;
const say = (...a) => console.log("# " + a.join(" "));

let chromium;
try {
  ({ chromium } = await import("playwright-core"));
} catch (e) {
  console.error(`run-admin-test: playwright-core is not installed (${e.code || e.message}): run tests/browser/setup.sh`);
  process.exit(1);
}
if (!existsSync(CHROMIUM)) {
  console.error(`run-admin-test: ${CHROMIUM} not found (Debian: apt-get install chromium), or set CHROMIUM_BIN`);
  process.exit(1);
}

let cluster = null, browser = null, workdir = null, extra = null;
let admin = null, clients = null;
const problems = [];

function killSync() {
  if (extra && extra.exitCode === null && pidAlive(extra.pid)) extra.kill("SIGKILL");
  if (cluster) cluster.killAllSync();
  if (workdir) rmSync(workdir, { recursive: true, force: true });
}
process.on("exit", killSync);
for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"]) {
  process.on(sig, () => { killSync(); process.exit(128 + os.constants.signals[sig]); });
}
const watchdog = setTimeout(() => {
  console.error(`run-admin-test: not done after ${RUN_LIMIT / 1000} s, giving up`);
  killSync();
  process.exit(1);
}, RUN_LIMIT);
watchdog.unref();

/** The dashboard's node table: { node: { connections, subscriptions, ... } }. */
const nodeTable = () => admin.evaluate(() => Object.fromEntries(
  [...document.querySelectorAll("#nodes tbody tr")].map((tr) => [tr.dataset.node,
    Object.fromEntries([...tr.querySelectorAll("td[data-k]")].map((td) => [td.dataset.k, td.textContent]))])));

/** Waits until the node table lists exactly `names`; returns the ms it took. */
async function awaitNodes(names, timeout = WAIT) {
  const t0 = Date.now();
  await admin.waitForFunction((want) => {
    const got = [...document.querySelectorAll("#nodes tbody tr")].map((tr) => tr.dataset.node);
    return JSON.stringify(got) === JSON.stringify(want);
  }, [...names].sort(), { timeout });
  return Date.now() - t0;
}

/** Starts one more gateway on the cluster's Redis; resolves with its node id once its broker is up. */
function startExtraGateway(redisAddr) {
  const node = "gw-extra";
  extra = spawn(WSGATE, ["--listen", "127.0.0.1:0", "--redis", `redis://${redisAddr}`, "--node-id", node],
    { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, WSGATE_ADMIN_KEY: KEY } });
  return new Promise((resolve, reject) => {
    let out = "";
    const t = setTimeout(() => reject(new Error("extra gateway: no 'broker up' in 10 s:\n" + out)), 10000);
    const onData = (d) => {
      out += d;
      if (/broker up/.test(out)) { clearTimeout(t); resolve(node); }
    };
    extra.stdout.on("data", onData);
    extra.stderr.on("data", onData);
    extra.on("exit", (code) => { clearTimeout(t); reject(new Error(`extra gateway exited (${code}):\n` + out)); });
  });
}

before(async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  workdir = mkdtempSync(path.join(os.tmpdir(), "wsgate-admin-"));
  process.env.TMPDIR = workdir;
  process.env.WSGATE_ADMIN_KEY = KEY; // local-cluster.sh passes WSGATE_* on to the gateways
  cluster = new LocalCluster({ gateways: 3, logDir: path.join(workdir, "logs") });
  await cluster.start(60000);
  browser = await chromium.launch({
    executablePath: CHROMIUM, headless: true, timeout: 60000,
    args: ["--no-sandbox", "--headless", "--disable-gpu", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  const watch = (name, page) => {
    page.setDefaultTimeout(WAIT);
    page.on("pageerror", (e) => problems.push(`${name}: uncaught ${e.name}: ${e.message}`));
    page.on("console", (m) => {
      // The wrong-key step makes the browser log the 401 it got, on purpose.
      if (m.type() === "error" && !/status of 401/.test(m.text())) problems.push(`${name}: ${m.text()}`);
    });
  };
  admin = await (await browser.newContext({ viewport: { width: 1200, height: 900 } })).newPage();
  watch("admin", admin);
  clients = await (await browser.newContext()).newPage();
  watch("clients", clients);
});

after(async () => {
  if (admin && (problems.length || process.exitCode)) await admin.screenshot({ path: path.join(ARTIFACTS, "at-exit-admin.png") }).catch(() => {});
  if (browser) await browser.close().catch(() => {});
  if (extra && extra.exitCode === null) { extra.kill("SIGKILL"); await new Promise((r) => extra.once("exit", r)); }
  if (cluster) {
    const left = await cluster.stop(40000);
    say(left.length ? "STILL RUNNING: " + left.map((p) => `${p.name}=${p.pid}`).join(" ") : "cluster stopped, no process left");
    if (left.length) process.exitCode = 1;
  }
  if (workdir) rmSync(workdir, { recursive: true, force: true });
  clearTimeout(watchdog);
});

test("a wrong key is refused in the page, the right one lists every node", { timeout: 60000 }, async () => {
  await admin.goto(`http://${cluster.gateway("gw1").addr}/admin/`, { waitUntil: "load" });
  await admin.fill("#key", "not-the-key");
  await admin.click("#key-form button");
  await admin.waitForSelector('#status[data-state="error"]');
  assert.equal(await admin.textContent("#status"), "send Authorization: Bearer <admin key>");
  await admin.fill("#key", KEY);
  await admin.click("#key-form button");
  await awaitNodes(["gw1", "gw2", "gw3"]);
  await admin.waitForSelector('#status[data-state="ok"]');
  assert.equal(await admin.textContent("#t-nodes"), "3");
  const t = await nodeTable();
  for (const n of ["gw1", "gw2", "gw3"]) assert.deepEqual([t[n].broker, t[n].state], ["up", "serving"], n);
});

test("counts match the connections and subscriptions the test opened", { timeout: 60000 }, async () => {
  // gw1: two clients on dash.a; gw2: one client on dash.a and dash.b; gw3: none.
  const plan = [[cluster.gateway("gw1").addr, ["dash.a"]], [cluster.gateway("gw1").addr, ["dash.a"]],
    [cluster.gateway("gw2").addr, ["dash.a", "dash.b"]]];
  await clients.evaluate(async (plan) => {
    window.received = [];
    window.sockets = await Promise.all(plan.map(([addr, channels]) => new Promise((resolve, reject) => {
      const ws = new WebSocket(`ws://${addr}/ws`);
      let acks = 0;
      ws.onopen = () => channels.forEach((channel, i) => ws.send(JSON.stringify({ op: "subscribe", channel, id: i + 1 })));
      ws.onmessage = (ev) => {
        const m = JSON.parse(ev.data);
        if (m.op === "ack" && ++acks === channels.length) resolve(ws);
        if (m.op === "message") window.received.push(m);
        if (m.op === "error") reject(new Error(ev.data));
      };
      ws.onerror = () => reject(new Error("socket error to " + addr));
    })));
  }, plan);
  await admin.waitForFunction(() => {
    const row = (n) => document.querySelector(`#nodes tr[data-node="${n}"]`);
    const cell = (n, k) => row(n)?.querySelector(`td[data-k="${k}"]`)?.textContent;
    return cell("gw1", "connections") === "2" && cell("gw1", "subscriptions") === "2" &&
      cell("gw2", "connections") === "1" && cell("gw2", "subscriptions") === "2" &&
      cell("gw3", "connections") === "0";
  });
  assert.equal(await admin.textContent("#t-connections"), "3");
  assert.equal(await admin.textContent("#t-subscriptions"), "4");
  const rows = await admin.$$eval("#channels tbody tr", (trs) => trs.map((tr) => [...tr.cells].map((td) => td.textContent)));
  assert.deepEqual(rows, [["dash.a", "3", "gw1: 2, gw2: 1"], ["dash.b", "1", "gw2: 1"]]);
});

test("the publish form reaches the subscribers; the inspector shows them and the history", { timeout: 60000 }, async () => {
  await admin.fill("#publish-channel", "dash.a");
  await admin.fill("#publish-data", "not json");
  await admin.click("#publish-form button");
  await admin.waitForSelector('#publish-result[data-ok="false"]');
  assert.match(await admin.textContent("#publish-result"), /^data is not JSON/);
  await admin.fill("#publish-data", '{"hello":"<b>dash</b>"}');
  await admin.click("#publish-form button");
  await admin.waitForSelector('#publish-result[data-ok="true"]');
  await clients.waitForFunction(() => window.received.length === 3);
  assert.deepEqual(await clients.evaluate(() => window.received.map((m) => [m.channel, m.data.hello])),
    Array(3).fill(["dash.a", "<b>dash</b>"]));
  await admin.click('#channels tr[data-channel="dash.a"] td');
  await admin.waitForFunction(() => document.querySelectorAll("#inspect-history li").length === 1);
  assert.deepEqual(await admin.$$eval("#inspect-nodes li", (l) => l.map((e) => e.textContent)), ["gw1: 2", "gw2: 1"]);
  assert.match(await admin.textContent("#inspect-history li"), /^#1 \{"hello":"<b>dash<\/b>"\}$/);
  assert.equal(await admin.$$eval("#inspect-history b", (b) => b.length), 0, "data shown as text");
  await admin.waitForFunction(() => Number(document.getElementById("t-in_per_s").textContent) >= 0);
  await admin.screenshot({ path: path.join(ARTIFACTS, "admin-dashboard.png"), fullPage: true });
});

test("a gateway started later appears; stopped (SIGTERM) it disappears at once", { timeout: 60000 }, async () => {
  const redis = cluster.procs.find((p) => p.role === "redis").addr;
  const node = await startExtraGateway(redis);
  await awaitNodes(["gw1", "gw2", "gw3", node]);
  extra.kill("SIGTERM");
  await new Promise((r) => (extra.exitCode === null ? extra.once("exit", r) : r()));
  const ms = await awaitNodes(["gw1", "gw2", "gw3"], TTL_MS + 3000);
  say(`${node} gone from the page ${ms} ms after it exited`);
  // A clean exit deletes the heartbeat: gone by the next poll, before the TTL.
  assert.ok(ms <= 1800, `${node} still shown ${ms} ms after its clean exit`);
});

test("a killed gateway (SIGKILL) disappears within the heartbeat TTL", { timeout: 60000 }, async () => {
  await cluster.killGateway("gw3");
  const ms = await awaitNodes(["gw1", "gw2"], TTL_MS + 3000);
  say(`gw3 gone from the page ${ms} ms after SIGKILL`);
  assert.ok(ms <= TTL_MS + 1500, `gw3 still shown ${ms} ms after SIGKILL`);
  assert.equal(await admin.textContent("#t-nodes"), "2");
});

test("no uncaught page errors and no console errors", () => {
  assert.deepEqual(problems, []);
});
