// The Socket.IO chat page (web/socketio-chat.html: the tutorial page, with
// <script src="/socket.io/socket.io.js"> and io()) in Debian's chromium,
// two pages on two replicas of deploy/local-cluster.sh behind HAProxy: each
// message reaches both pages, the sender's included.
//
//   tests/browser/setup.sh && node tests/browser/run-socketio-chat.mjs
//
// Needs what run-browser-test.mjs needs. Screenshots go to
// tests/artifacts/browser/socketio-chat-*.png. Every wait is for a page
// state, with a deadline; processes are stopped by PID.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdirSync } from "node:fs";
import path from "node:path";
import { chromium } from "playwright-core";
import { LocalCluster, REPO } from "./lib/cluster.mjs";

const CHROMIUM = process.env.CHROMIUM_BIN || "/usr/bin/chromium";
const ARTIFACTS = process.env.WSGATE_BROWSER_ARTIFACTS || path.join(REPO, "tests", "artifacts", "browser");
const WAIT = 20000;

let cluster, browser;
const problems = [];

before(async () => {
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} not found (apt-get install chromium, or set CHROMIUM_BIN)`);
  mkdirSync(ARTIFACTS, { recursive: true });
  cluster = new LocalCluster({ gateways: 3 });
  await cluster.start(60000);
  browser = await chromium.launch({
    executablePath: CHROMIUM, headless: true, timeout: 60000,
    args: ["--no-sandbox", "--headless", "--disable-gpu", "--no-first-run", "--disable-background-networking"],
  });
});

after(async () => {
  if (browser) await browser.close();
  const left = cluster ? await cluster.stop(40000) : [];
  assert.deepEqual(left, [], "processes left running");
});

/** A page in its own browser context (own cookies, so its own replica),
 *  connected and upgraded; with the replica cookie HAProxy gave it. */
async function openPage(name) {
  const ctx = await browser.newContext();
  const page = await ctx.newPage();
  page.on("pageerror", (e) => problems.push(`${name}: ${e.message}`));
  // The tutorial page names no icon: the browser's /favicon.ico 404 is its own.
  page.on("console", (m) => {
    if (m.type() === "error" && !/favicon\.ico/.test(m.location().url)) problems.push(`${name}: ${m.text()} (${m.location().url})`);
  });
  await page.goto(cluster.url + "socketio-chat.html", { waitUntil: "load", timeout: WAIT });
  await page.waitForFunction(() => window.socket && window.socket.connected &&
    window.socket.io.engine.transport.name === "websocket", null, { timeout: WAIT });
  const cookie = (await ctx.cookies()).find((c) => c.name === "wsgate_srv");
  assert.ok(cookie, `${name}: no replica cookie`);
  return { name, page, replica: cookie.value };
}

async function say(p, text) {
  await p.page.fill("#input", text);
  await p.page.press("#input", "Enter");
}

const shows = (p, text) => p.page.waitForFunction(
  (t) => [...document.querySelectorAll("#messages > li")].some((li) => li.textContent === t), text, { timeout: WAIT });

test("two pages on two replicas chat; every message reaches both", async () => {
  const A = await openPage("A");
  let B;
  for (let i = 0; i < 6 && (!B || B.replica === A.replica); i++) B = await openPage(`B${i}`);
  assert.notEqual(B.replica, A.replica, "no second page landed on another replica");
  await say(A, "salut from A");
  await Promise.all([shows(A, "salut from A"), shows(B, "salut from A")]);
  await say(B, "<b>hi</b> from B");
  await Promise.all([shows(A, "<b>hi</b> from B"), shows(B, "<b>hi</b> from B")]);
  for (const p of [A, B]) await p.page.screenshot({ path: path.join(ARTIFACTS, `socketio-chat-${p.name}.png`) });
  assert.equal(await A.page.locator("#messages b").count(), 0, "a message became markup");
  assert.deepEqual(problems, []);
});
