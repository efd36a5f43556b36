// Real-browser test of the chat demo (web/index.html + web/wsgate.js) across
// gateway replicas: Debian's chromium driven by playwright-core, against
// deploy/local-cluster.sh (Redis + 4 gateways + HAProxy on free ports).
//
//   tests/browser/setup.sh && node tests/browser/run-browser-test.mjs
//
// Needs: build/wsgate (or WSGATE_BIN), redis-server, haproxy, chromium
// (/usr/bin/chromium, or CHROMIUM_BIN), node >= 18 and tests/browser/node_modules
// (setup.sh: npm ci). Prints TAP ("# pass N" / "# fail N") and exits non-zero
// on failure. Screenshots and the cluster's logs go to tests/artifacts/browser/.
//
// Every wait is for an event or a DOM state, with a deadline; processes are
// stopped by PID; a watchdog ends everything if the whole run overruns.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { execFileSync } from "node:child_process";
import { LocalCluster, REPO } from "./lib/cluster.mjs";
import { WSGATE, selfSignedCert, startGateway } from "./lib/gateway.mjs";

const CHROMIUM = process.env.CHROMIUM_BIN || "/usr/bin/chromium";
const ARTIFACTS = process.env.WSGATE_BROWSER_ARTIFACTS || path.join(REPO, "tests", "artifacts", "browser");
const WAIT = 20000; // any single wait for a page state
const RUN_LIMIT = 240000; // the whole run
const verbose = !!process.env.VERBOSE;

const say = (...a) => console.log("# " + a.join(" "));

let cluster = null;
let solo = null; // a gateway of its own with --auth required (startGateway)
let tlsGw = null; // and one with --tls-cert
let browser = null;
let workdir = null;
const pages = []; // { name, ctx, page, node }
const problems = []; // uncaught page errors and console errors, from every page
// While a gateway drains, a reconnect that the LB sends back to it fails its
// handshake (503 "draining", or 502 when the gateway exits under the request)
// until HAProxy's health check has marked it down: the browser logs that
// itself, and the page retries. Counted and reported, not failed: see the
// drain test.
let draining = null;
const drainRefusals = [];
const HANDSHAKE_5XX = /^WebSocket connection to '.*' failed: Error during WebSocket handshake: Unexpected response code: 50[23]$/;
// While a page is offline (the recovery test keeps B away on purpose), its
// reconnect attempts fail and the browser logs that: counted, not failed.
let offline = null; // the browser context kept offline
const offlineRefusals = [];
const CONNECT_FAILED = /^WebSocket connection to '.*' failed: /;

// ---- prerequisites -------------------------------------------------------

let chromium;
try {
  ({ chromium } = await import("playwright-core"));
} catch (e) {
  console.error(`run-browser-test: playwright-core is not installed (${e.code || e.message}): run tests/browser/setup.sh`);
  process.exit(1);
}
if (!existsSync(CHROMIUM)) {
  console.error(`run-browser-test: ${CHROMIUM} not found (Debian: apt-get install chromium), or set CHROMIUM_BIN`);
  process.exit(1);
}

// ---- cleanup, whatever happens -----------------------------------------

function killSync() {
  if (cluster) cluster.killAllSync();
  // chromium runs on a pipe to this process: it exits when we do.
  if (workdir) {
    try { rmSync(workdir, { recursive: true, force: true }); } catch (e) { /* best effort */ }
  }
}
process.on("exit", killSync);
for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"]) {
  process.on(sig, () => {
    console.error(`run-browser-test: ${sig}, stopping`);
    killSync();
    process.exit(128 + os.constants.signals[sig]);
  });
}
const watchdog = setTimeout(() => {
  console.error(`run-browser-test: not done after ${RUN_LIMIT / 1000} s, giving up`);
  killSync();
  process.exit(1);
}, RUN_LIMIT);
watchdog.unref();

// ---- page helpers --------------------------------------------------------

/** A page in a new browser context (ctx: in that one instead, i.e. another
 *  window of the same browser). expectedErrors: console errors this page is
 *  meant to cause (the browser's own lines about a refused handshake). */
async function openPage(name, { hash = "", viewport = { width: 1100, height: 720 }, mobile = false, ctx = null,
  url = cluster.url, connected = true, expectedErrors = null } = {}) {
  ctx = ctx || await browser.newContext({ viewport, isMobile: mobile, hasTouch: mobile, deviceScaleFactor: mobile ? 2 : 1 });
  const page = await ctx.newPage();
  page.setDefaultTimeout(WAIT);
  page.on("pageerror", (e) => problems.push(`${name}: uncaught ${e.name}: ${e.message}`));
  page.on("console", (m) => {
    if (m.type() === "error") {
      if (draining && HANDSHAKE_5XX.test(m.text())) drainRefusals.push(`${name}: ${m.text()}`);
      else if (offline === ctx && CONNECT_FAILED.test(m.text())) offlineRefusals.push(`${name}: ${m.text()}`);
      else if (!(expectedErrors && expectedErrors.test(m.text()))) problems.push(`${name}: console error: ${m.text()}`);
    }
    if (verbose || m.type() === "warning") say(`${name} console.${m.type()}: ${m.text()}`);
  });
  await page.goto(url + (hash ? "#" + hash : ""), { waitUntil: "load", timeout: WAIT });
  if (!connected) return { name, ctx, page, node: null };
  await page.waitForSelector('#status[data-state="connected"]');
  const p = { name, ctx, page, node: await page.getAttribute("#status", "data-node") };
  pages.push(p);
  return p;
}

async function setNick(p, nick) {
  await p.page.fill("#nick", nick);
  await p.page.locator("#nick").press("Tab"); // the change event saves it
}

const roomLive = (p, room) => p.page.waitForSelector(`#room-list li[data-room="${room}"][data-live="true"]`);

async function send(p, text) {
  await p.page.waitForSelector("#send:not([disabled])");
  await p.page.fill("#text", text);
  await p.page.press("#text", "Enter");
  await p.page.waitForFunction(() => document.getElementById("text").value === "");
}

/** Wait until room's log in page p shows a message with exactly this text; returns {user, time}. */
async function waitForMessage(p, room, text) {
  const handle = await p.page.waitForFunction(([room, text]) => {
    for (const li of document.querySelectorAll(`.log[data-room="${room}"] .msg`)) {
      if (li.querySelector(".text").textContent === text) {
        const t = li.querySelector("time");
        return { user: li.querySelector(".user").textContent, datetime: t && t.dateTime, shown: t && t.textContent };
      }
    }
    return false;
  }, [room, text]);
  return handle.jsonValue();
}

/** The sessions in page p's member list (chat-room-live.js), and its own. */
const members = (p) => p.page.evaluate(() => ({
  all: [...document.querySelectorAll("#members .member")].map((li) => li.dataset.session),
  me: document.querySelector("#members .member.me")?.dataset.session,
}));

/** Wait until page p's member list holds every session in `sessions`. */
const waitForMembers = (p, sessions) => p.page.waitForFunction((want) => {
  const have = new Set([...document.querySelectorAll("#members .member")].map((li) => li.dataset.session));
  return want.every((s) => have.has(s));
}, sessions);

/** Texts of room's log lines in page p, in order: messages and notices. */
const logLines = (p, room) => p.page.evaluate((room) =>
  [...document.querySelectorAll(`.log[data-room="${room}"] li`)].map((li) => (li.classList.contains("msg") ? "msg: " + li.querySelector(".text").textContent : "notice: " + li.textContent)), room);

const allMessageTexts = (p) => p.page.evaluate(() => [...document.querySelectorAll(".log .msg .text")].map((e) => e.textContent));

/** Record what #status shows ("state|node|text") each time it changes, in window.__states. */
const recordStates = (p) => p.page.evaluate(() => {
  const s = document.getElementById("status");
  const text = document.getElementById("status-text");
  const now = () => s.dataset.state + "|" + s.dataset.node + "|" + text.textContent.trim();
  window.__states = [now()];
  if (window.__stateObserver) window.__stateObserver.disconnect();
  window.__stateObserver = new MutationObserver(() => {
    if (now() !== window.__states[window.__states.length - 1]) window.__states.push(now());
  });
  window.__stateObserver.observe(s, { attributes: true, childList: true, characterData: true, subtree: true });
});

async function publishHttp(channel, data) {
  const res = await fetch(cluster.url + "api/publish", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ channel, data }),
    signal: AbortSignal.timeout(WAIT),
  });
  const body = await res.text();
  assert.equal(res.status, 200, `POST /api/publish: ${res.status} ${body}`);
}

// ---- the run -------------------------------------------------------------

const stamp = Date.now().toString(36);
const msg1 = `bonjour from ana ${stamp} — héllo 👋`;
const msg2 = `sent while you were away ${stamp}`;
let A, B, C;
let killed = null;

before(async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  for (const f of readdirSync(ARTIFACTS)) if (/^(at-exit|chat)-.*\.png$/.test(f)) rmSync(path.join(ARTIFACTS, f));
  // Chromium's fresh profile (playwright passes --user-data-dir=<new temp dir>),
  // the cluster's logs and any other temp file of this run go under one dir,
  // removed at the end (the logs are copied to ARTIFACTS first).
  workdir = mkdtempSync(path.join(os.tmpdir(), "wsgate-browser-"));
  process.env.TMPDIR = workdir;
  cluster = new LocalCluster({ gateways: 4, logDir: path.join(workdir, "cluster-logs"), log: verbose ? (l) => say("cluster: " + l) : () => {} });
  await cluster.start(60000);
  say(`cluster up on ${cluster.url}: ` + cluster.procs.filter((p) => p.pid).map((p) => `${p.name}=${p.pid}`).join(" "));
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    timeout: 60000,
    // --ignore-certificate-errors: the TLS test's self-signed certificate.
    args: ["--no-sandbox", "--headless", "--disable-gpu", "--disable-quic", "--no-first-run", "--ignore-certificate-errors",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  say(`chromium ${browser.version()}`);
});

after(async () => {
  if (problems.length || process.exitCode) {
    for (const p of pages) {
      await p.page.screenshot({ path: path.join(ARTIFACTS, `at-exit-${p.name}.png`) }).catch(() => {});
    }
  }
  if (browser) {
    let t;
    await Promise.race([browser.close(), new Promise((r) => { t = setTimeout(r, 15000); })]);
    clearTimeout(t);
  }
  if (solo) await solo.stop();
  if (tlsGw) await tlsGw.stop();
  if (cluster) {
    const left = await cluster.stop(40000);
    say(left.length ? "STILL RUNNING: " + left.map((p) => `${p.name}=${p.pid}`).join(" ") : "cluster stopped, no process left");
    if (left.length) process.exitCode = 1;
  }
  if (workdir) {
    const logs = path.join(workdir, "cluster-logs");
    if (existsSync(logs)) {
      rmSync(path.join(ARTIFACTS, "cluster-logs"), { recursive: true, force: true });
      cpSync(logs, path.join(ARTIFACTS, "cluster-logs"), { recursive: true });
    }
    rmSync(workdir, { recursive: true, force: true });
  }
  clearTimeout(watchdog);
});

test("two pages through the load balancer land on different gateways", { timeout: 60000 }, async () => {
  A = await openPage("A", { hash: "lobby" });
  for (let i = 0; i < 6 && !B; i++) {
    const p = await openPage(`B${i}`, { hash: "lobby", viewport: { width: 390, height: 760 }, mobile: true });
    if (p.node !== A.node) {
      B = p;
      B.name = "B";
    }
  }
  assert.ok(B, `every page landed on ${A.node}`);
  say(`page A on ${A.node}, page B on ${B.node}`);
  assert.ok(cluster.procs.some((p) => p.role === "gateway" && p.name === B.node), `welcome node ${B.node} is not a gateway of the state file`);
  await setNick(A, "ana");
  await setNick(B, "bo");
  await roomLive(A, "lobby");
  await roomLive(B, "lobby");
});

test("the member list of #lobby shows both users, on both pages", { timeout: 30000 }, async () => {
  await A.page.waitForSelector("#members .member.me");
  await B.page.waitForSelector("#members .member.me");
  const a = (await members(A)).me;
  const b = (await members(B)).me;
  assert.ok(a && b && a !== b, `sessions ${a} ${b}`);
  await waitForMembers(A, [a, b]);
  await waitForMembers(B, [a, b]);
  assert.equal(await A.page.getAttribute("#members", "hidden"), null, "the member list is shown");
});

test("a third page in another room", { timeout: 30000 }, async () => {
  C = await openPage("C", { hash: "other" });
  await setNick(C, "cy");
  await roomLive(C, "other");
  assert.equal(await C.page.$('#room-list li[data-room="lobby"]'), null, "C joined only #other");
  say(`page C on ${C.node} in #other`);
});

test("A's message shows on B with sender and time, not on C", { timeout: 30000 }, async () => {
  const before = Date.now();
  await send(A, msg1);
  const onB = await waitForMessage(B, "lobby", msg1);
  assert.equal(onB.user, "ana");
  const t = Date.parse(onB.datetime);
  assert.ok(t >= before - 60000 && t <= Date.now() + 60000, `time ${onB.datetime}`);
  assert.match(onB.shown, /\d/);
  const onA = await waitForMessage(A, "lobby", msg1);
  assert.equal(onA.user, "ana");
  assert.ok(await A.page.$('.log[data-room="lobby"] .msg.mine'), "A sees its own message marked as its own");
  const tags = (p) => p.page.evaluate((text) => [...document.querySelectorAll('.log[data-room="lobby"] .msg')]
    .filter((li) => li.querySelector(".text").textContent === text)
    .map((li) => (li.querySelector(".you") || {}).textContent || ""), msg1);
  assert.deepEqual(await tags(A), ["you"], "A's own message carries a visible 'you' tag");
  assert.deepEqual(await tags(B), [""], "B sees ana's message without the tag");
  // C: a message in #other published after msg1 has reached C, so msg1 would have too.
  await send(C, `marker in other ${stamp}`);
  await waitForMessage(C, "other", `marker in other ${stamp}`);
  assert.ok(!(await allMessageTexts(C)).includes(msg1), "C (in #other) got the #lobby message");
});

test("bad data from the server is shown as text and breaks nothing (page C)", { timeout: 30000 }, async () => {
  const inject = `<img src=x onerror="window.__xss=1">`;
  const odd = [
    "a bare string from a backend",
    42,
    [1, "two"],
    null,
    { user: { nested: true }, text: inject },
    { user: "<b>bold</b>", text: 12345, ts: "yesterday" },
    { user: "big", text: "y".repeat(5000), ts: 1e300 },
    { no: "fields" },
  ];
  // A backend posts odd things into #other (POST /api/publish through the LB).
  for (const d of odd) await publishHttp("other", d);
  await publishHttp("other", { user: "bot", text: `end of odd data ${stamp}` });
  await waitForMessage(C, "other", `end of odd data ${stamp}`);
  const texts = await allMessageTexts(C);
  for (const want of ["a bare string from a backend", "42", '[1,"two"]', "null", inject, "12345", '{"no":"fields"}']) {
    assert.ok(texts.includes(want), `C shows ${JSON.stringify(want)} as text`);
  }
  assert.ok(texts.some((t) => t.startsWith("yyyy") && t.length <= 2000), "a huge text is clipped");
  const { imgs, xss, bold } = await C.page.evaluate(() => ({
    imgs: document.querySelectorAll("#logs img, #logs b").length,
    xss: window.__xss,
    bold: [...document.querySelectorAll(".msg .user")].some((u) => u.textContent === "<b>bold</b>"),
  }));
  assert.equal(imgs, 0, "server data became markup");
  assert.equal(xss, undefined);
  assert.ok(bold, "an HTML-looking nickname is shown as text");
  assert.equal(await C.page.getAttribute("#status", "data-state"), "connected");
  await send(C, `still fine ${stamp}`);
  await waitForMessage(C, "other", `still fine ${stamp}`);
});

test("B's gateway is killed while A sends: B comes back through another replica and recovers the message in place", { timeout: 60000 }, async () => {
  killed = B.node;
  assert.notEqual(A.node, killed);
  await recordStates(A);
  await recordStates(B);
  // B is kept offline until A's message is out, so that it can only get it by
  // recovery (it would otherwise be back within half a second).
  await B.ctx.setOffline(true);
  offline = B.ctx;
  const t0 = Date.now();
  await cluster.killGateway(killed);
  say(`SIGKILLed gateway ${killed} (pid ${cluster.gateway(killed).pid})`);
  await B.page.waitForFunction(() => window.__states.some((s) => s.startsWith("reconnecting")));
  await send(A, msg2);
  await waitForMessage(A, "lobby", msg2);
  // A reconnect attempt of B failed after the message was out: B's
  // subscription on the new replica cannot have seen it live.
  const failedSoFar = await B.page.evaluate(() => window.__states.filter((s) => /^reconnecting\|\|reconnecting in/.test(s)).length);
  await B.page.waitForFunction((n) => window.__states.filter((s) => /^reconnecting\|\|reconnecting in/.test(s)).length > n, failedSoFar);
  assert.ok(!(await allMessageTexts(B)).includes(msg2), "B got the message while its gateway was dead");
  await B.ctx.setOffline(false); // the page's "online" handler reconnects at once
  offline = null;
  await B.page.waitForFunction((dead) => {
    const s = document.getElementById("status");
    return s.dataset.state === "connected" && s.dataset.node && s.dataset.node !== dead;
  }, killed);
  const t1 = Date.now();
  B.node = await B.page.getAttribute("#status", "data-node");
  await roomLive(B, "lobby");
  say(`B back on ${B.node} ${t1 - t0} ms after the kill; states: ${(await B.page.evaluate(() => window.__states)).join(" → ")}`);
  assert.ok(cluster.procs.some((p) => p.role === "gateway" && p.name === B.node && !p.dead));
  const got = await waitForMessage(B, "lobby", msg2);
  assert.equal(got.user, "ana");
  // In place: after the reconnect notices, before anything B sends now; once.
  const lines = await logLines(B, "lobby");
  const at = (pred) => lines.findIndex(pred);
  const iDisc = at((l) => l.startsWith(`notice: disconnected from node ${killed}`));
  const iBack = at((l) => l === `notice: reconnected through node ${B.node}`);
  const iRec = at((l) => l === "notice: anything missed while reconnecting follows:");
  const iMsg = at((l) => l === "msg: " + msg2);
  assert.ok(iDisc >= 0 && iBack > iDisc && iRec > iBack && iMsg > iRec, "B's log: " + lines.join(" | "));
  assert.equal(lines.filter((l) => l === "msg: " + msg2).length, 1, "shown once");
  assert.ok(!lines.some((l) => l.includes("could not be recovered")), "B's log: " + lines.join(" | "));
  say(`${offlineRefusals.length} reconnect attempt(s) of B failed while it was offline, as intended`);

  await send(B, `bo is back via ${B.node}`);
  await waitForMessage(A, "lobby", `bo is back via ${B.node}`);
  const aStates = await A.page.evaluate(() => window.__states);
  assert.deepEqual(aStates.filter((s) => !s.startsWith("connected")), [], "A, on a live gateway, was not disturbed");
  // Presence: B's new session is listed on both pages, and A's on B's.
  const a = (await members(A)).me;
  const b = (await members(B)).me;
  await waitForMembers(A, [a, b]);
  await waitForMembers(B, [a, b]);
  for (const p of [A, B]) {
    const file = path.join(ARTIFACTS, `chat-recovered-${p.name}.png`);
    await p.page.screenshot({ path: file });
    say(`screenshot: ${path.relative(REPO, file)}`);
  }
  if (C.node === killed) {
    await C.page.waitForFunction((dead) => document.getElementById("status").dataset.node && document.getElementById("status").dataset.node !== dead, killed);
    await roomLive(C, "other");
  }
});

test("A's gateway drains (SIGTERM): A gets 1001 going away and is back at once through another replica", { timeout: 60000 }, async () => {
  draining = A.node;
  await recordStates(A);
  const t0 = Date.now();
  const exited = cluster.stopGateway(draining);
  await A.page.waitForFunction(() => window.__states.some((s) => s.startsWith("reconnecting")));
  await A.page.waitForFunction((gone) => {
    const s = document.getElementById("status");
    return s.dataset.state === "connected" && s.dataset.node && s.dataset.node !== gone;
  }, draining);
  const t1 = Date.now();
  A.node = await A.page.getAttribute("#status", "data-node");
  await roomLive(A, "lobby");
  const { notices, states } = await A.page.evaluate(() => ({
    notices: [...document.querySelectorAll('.log[data-room="lobby"] .notice')].map((n) => n.textContent),
    states: window.__states,
  }));
  say(`A back on ${A.node} ${t1 - t0} ms after SIGTERM to ${draining}; states: ${states.join(" → ")}`);
  assert.ok(notices.some((n) => n === `disconnected from node ${draining}: node is going away — reconnecting`), notices.join(" | "));
  assert.equal(await exited, 0, `${draining} exit status after draining`);
  for (const p of [B, C]) {
    if (p.node === draining) {
      await p.page.waitForFunction((gone) => document.getElementById("status").dataset.node && document.getElementById("status").dataset.node !== gone, draining);
      p.node = await p.page.getAttribute("#status", "data-node");
    }
  }
  await send(A, `A after the drain ${stamp}`);
  await waitForMessage(B, "lobby", `A after the drain ${stamp}`);
  draining = null;
  if (drainRefusals.length) {
    say(`NOTE: ${drainRefusals.length} reconnect(s) during the drain were refused by the LB/gateway before ` +
      `HAProxy marked the draining node down (the page retried): ${drainRefusals.join(" | ")}`);
  }
});

test("rooms can be switched, with unread counts", { timeout: 30000 }, async () => {
  // B joins #other too, switches to it, and gets C's message there while
  // #lobby counts what it misses.
  await B.page.fill("#join", "other");
  await B.page.press("#join", "Enter");
  await roomLive(B, "other");
  await B.page.waitForSelector('#room-list li[data-room="other"][aria-current="true"]');
  await send(C, `hi other room ${stamp}`);
  await waitForMessage(B, "other", `hi other room ${stamp}`);
  await send(A, `you are away ${stamp}`);
  await B.page.waitForSelector('#room-list li[data-room="lobby"] .badge:text("1")');
  await B.page.click('#room-list li[data-room="lobby"] .room');
  await B.page.waitForSelector('.log[data-room="lobby"]:not([hidden])');
  await waitForMessage(B, "lobby", `you are away ${stamp}`);
  assert.equal(await B.page.textContent('#room-list li[data-room="lobby"] .badge'), "");
  await send(B, `see you ${stamp}`);
  await waitForMessage(A, "lobby", `see you ${stamp}`);
});

test("a message in flight when B's gateway dies is reported not sent and comes back to resend, never duplicated", { timeout: 60000 }, async () => {
  // The gateway is stopped first, so the publish sits unread in its socket
  // and dies with it: the server never took it.
  const lost = `in flight when the gateway died ${stamp}`;
  const dying = B.node;
  const others = pages.filter((p) => p.node === dying);
  cluster.pauseGateway(dying);
  await send(B, lost);
  await cluster.killGateway(dying);
  say(`SIGSTOPped then SIGKILLed gateway ${dying} with a publish of B in flight`);
  await B.page.waitForFunction((dead) => {
    const s = document.getElementById("status");
    return s.dataset.state === "connected" && s.dataset.node && s.dataset.node !== dead;
  }, dying);
  B.node = await B.page.getAttribute("#status", "data-node");
  for (const p of others) {
    await p.page.waitForFunction((dead) => document.getElementById("status").dataset.node && document.getElementById("status").dataset.node !== dead, dying);
    p.node = await p.page.getAttribute("#status", "data-node");
  }
  await B.page.waitForFunction((t) => [...document.querySelectorAll('.log[data-room="lobby"] .notice')]
    .some((n) => n.textContent === "not sent (the connection dropped before the server took it): " + t), lost);
  assert.equal(await B.page.inputValue("#text"), lost, "the text is back in the input to resend");
  await B.page.press("#text", "Enter");
  await waitForMessage(A, "lobby", lost);
  await waitForMessage(B, "lobby", lost);
  const marker = `after the resend ${stamp}`;
  await send(A, marker);
  await waitForMessage(B, "lobby", marker);
  for (const p of [A, B]) {
    const n = (await allMessageTexts(p)).filter((t) => t === lost).length;
    assert.equal(n, 1, `${p.name} shows the resent message ${n} times`);
  }
});

test("a page entering #lobby is shown the room's recent messages", { timeout: 30000 }, async () => {
  const D = await openPage("D", { hash: "lobby" });
  await roomLive(D, "lobby");
  await waitForMessage(D, "lobby", msg1);
  await waitForMessage(D, "lobby", msg2);
  const lines = await logLines(D, "lobby");
  const iHist = lines.indexOf("notice: the room's recent messages:");
  assert.ok(iHist >= 0 && iHist < lines.indexOf("msg: " + msg1) && lines.indexOf("msg: " + msg1) < lines.indexOf("msg: " + msg2), lines.join(" | "));
});

test("an oversized message is refused in the page, before sending: no 1009, the text is kept", { timeout: 30000 }, async () => {
  await recordStates(A);
  const limit = 65536; // the cluster's gateways run with the default --max-message-size
  const big = "é".repeat(limit / 2); // 65536 bytes of text alone
  await A.page.fill("#text", big);
  await A.page.press("#text", "Enter");
  const note = await A.page.waitForFunction(() => [...document.querySelectorAll('.log[data-room="lobby"] .notice.bad')]
    .map((n) => n.textContent).find((t) => t.startsWith("not sent (too long: ")));
  const text = await note.jsonValue();
  assert.match(text, new RegExp(`the gateway takes at most ${limit}\\)`), text);
  assert.equal(await A.page.inputValue("#text"), big, "the text stays in the input, to shorten");
  await A.page.screenshot({ path: path.join(ARTIFACTS, "chat-A-too-large.png") });
  await A.page.fill("#text", "");
  await send(A, `short again ${stamp}`);
  await waitForMessage(B, "lobby", `short again ${stamp}`);
  const states = await A.page.evaluate(() => window.__states);
  assert.deepEqual(states.filter((st) => !st.startsWith("connected")), [], "A was never disconnected");
});

test("two windows of one browser keep two nicknames, across reloads", { timeout: 30000 }, async () => {
  const A2 = await openPage("A2", { hash: "lobby", ctx: A.ctx });
  assert.equal(await A2.page.inputValue("#nick"), "ana", "a new window starts with the last nickname chosen");
  await setNick(A2, "ana-2");
  await roomLive(A2, "lobby");
  await send(A2, `from the second window ${stamp}`);
  assert.equal((await waitForMessage(B, "lobby", `from the second window ${stamp}`)).user, "ana-2");
  await Promise.all([A.page.reload({ waitUntil: "load" }), A2.page.reload({ waitUntil: "load" })]);
  await A.page.waitForSelector('#status[data-state="connected"]');
  A.node = await A.page.getAttribute("#status", "data-node");
  assert.equal(await A.page.inputValue("#nick"), "ana", "window 1 kept its nickname");
  assert.equal(await A2.page.inputValue("#nick"), "ana-2", "window 2 kept its nickname");
  await roomLive(A, "lobby");
  await send(A, `first window again ${stamp}`);
  assert.equal((await waitForMessage(B, "lobby", `first window again ${stamp}`)).user, "ana");
  await A2.page.screenshot({ path: path.join(ARTIFACTS, "chat-A2-second-window.png") });
  await A2.page.close();
});

test("--auth required without a token: the page says a token is needed, counts down, retries now; a minted token works", { timeout: 90000 }, async () => {
  const secret = path.join(workdir, "jwt-secret");
  writeFileSync(secret, "browser-test-secret-0123456789abcdef\n");
  solo = await startGateway(["--jwt-secret-file", secret], { log: verbose ? (l) => say(l) : () => {} });
  // Chromium logs the refused handshake (and the probe's 401) as console errors.
  const P = await openPage("auth", { url: solo.origin + "/", hash: "lobby", connected: false,
    expectedErrors: /(Unexpected response code: 401|status of 401|HTTP Authentication failed)/ });
  await P.page.waitForSelector("#banner:not([hidden])");
  const banner = await P.page.textContent("#banner");
  assert.match(banner, /needs a connect token/);
  assert.match(banner, /wsgate token --secret-file/);
  assert.equal(await P.page.getAttribute("#banner", "data-code"), "token_missing");
  // The backoff grows: wait for a wait of 3 s or more, then see it count down.
  await P.page.waitForFunction(() => /in ([3-9]|1\d) s$/.test(document.getElementById("status-text").textContent), null, { timeout: 30000 });
  await recordStates(P);
  const first = Number(/in (\d+) s$/.exec(await P.page.textContent("#status-text"))[1]);
  await P.page.waitForFunction((n) => document.getElementById("status-text").textContent.endsWith(`in ${n - 1} s`), first);
  assert.equal(await P.page.isVisible("#retry"), true, "the retry button shows while waiting");
  await P.page.screenshot({ path: path.join(ARTIFACTS, "chat-auth-token-needed.png") });
  // "retry now": one more refused upgrade at once, well before the countdown ends.
  const refusals = () => solo.gateway.lines.filter((l) => /upgrade refused with 401: token_missing/.test(l)).length;
  const before = refusals();
  const mark = solo.gateway.lines.length;
  const left = Number(/in (\d+) s$/.exec(await P.page.textContent("#status-text"))[1]);
  const t0 = Date.now();
  await P.page.click("#retry");
  await solo.gateway.awaitLine(/upgrade refused with 401: token_missing/, 5000, mark);
  const took = Date.now() - t0;
  assert.ok(refusals() === before + 1, `one more refusal (${before} → ${refusals()})`);
  assert.ok(took < Math.max(1, left - 1) * 1000, `retry now took ${took} ms with ${left} s left on the countdown`);
  const shown = await P.page.evaluate(() => window.__states);
  say(`countdown: ${shown.map((st) => st.split("|")[2]).join(" → ")}`);
  // The operator mints a token; the page opened with it connects.
  const token = execFileSync(WSGATE, ["token", "--secret-file", secret, "--sub", "ana", "--channels", "lobby",
    "--publish", "lobby", "--ttl", "10m"], { encoding: "utf8" }).trim();
  await P.page.goto(`${solo.origin}/?token=${token}#lobby`, { waitUntil: "load" });
  await P.page.waitForSelector('#status[data-state="connected"]');
  assert.equal(await P.page.isHidden("#banner"), true);
  await roomLive(P, "lobby");
  await send(P, `with a token ${stamp}`);
  await P.page.waitForSelector('.log[data-room="lobby"] .msg.mine .you');
  await P.page.screenshot({ path: path.join(ARTIFACTS, "chat-auth-with-token.png") });
  await P.ctx.close();
});

test("the chat over https:// and wss:// (--tls-cert, a self-signed certificate)", { timeout: 60000 }, async () => {
  const { cert, key } = selfSignedCert(workdir);
  tlsGw = await startGateway(["--tls-cert", cert, "--tls-key", key], { scheme: "https", log: verbose ? (l) => say(l) : () => {} });
  const T1 = await openPage("tls1", { url: tlsGw.origin + "/", hash: "lobby" });
  const T2 = await openPage("tls2", { url: tlsGw.origin + "/", hash: "lobby", viewport: { width: 390, height: 760 }, mobile: true });
  assert.equal(T1.node, "solo");
  const resources = await T1.page.evaluate(() => performance.getEntriesByType("resource").map((e) => e.name));
  assert.ok(resources.every((u) => u.startsWith("https://")), resources.join(" "));
  await setNick(T1, "tess");
  await roomLive(T1, "lobby");
  await roomLive(T2, "lobby");
  await send(T1, `over wss ${stamp}`);
  assert.equal((await waitForMessage(T2, "lobby", `over wss ${stamp}`)).user, "tess");
  const res = await fetch(tlsGw.origin + "/healthz", { signal: AbortSignal.timeout(WAIT) }).catch((e) => e);
  assert.ok(res instanceof Error, "the test process does not trust the certificate: only the browser was told to ignore it");
  await T2.page.screenshot({ path: path.join(ARTIFACTS, "chat-tls-phone.png") });
  say(`chat over ${tlsGw.origin} (wss) between two pages`);
  await T1.ctx.close();
  await T2.ctx.close();
});

test("screenshots of the chat", { timeout: 30000 }, async () => {
  for (const p of [A, B, C]) {
    const file = path.join(ARTIFACTS, `chat-${p.name}-${p === B ? "phone" : "desktop"}.png`);
    await p.page.screenshot({ path: file });
    say(`screenshot: ${path.relative(REPO, file)}`);
  }
  writeFileSync(path.join(ARTIFACTS, "pages.json"), JSON.stringify(pages.map((p) => ({ name: p.name, node: p.node })), null, 1));
});

test("no uncaught page errors and no console errors", () => {
  assert.deepEqual(problems, []);
});
