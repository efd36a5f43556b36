// Test doubles for web/wsgate.js: a virtual clock and a scriptable WebSocket.
import { pathToFileURL } from "node:url";
import { readFile } from "node:fs/promises";
import path from "node:path";

const here = path.dirname(new URL(import.meta.url).pathname);

/** Import web/<name>, an ES module. web/ has no package.json (it is served
 *  as is), so Node >= 20.19 detects its files as ESM; older Node (Debian 12's
 *  18.x) would take them for CommonJS: load the text as a data: URL module
 *  instead (equivalent for a module that imports nothing). */
export async function loadWebModule(name) {
  const file = path.resolve(here, "../../../web", name);
  try {
    return await import(pathToFileURL(file).href);
  } catch (e) {
    if (!(e instanceof SyntaxError)) throw e;
    const src = await readFile(file, "utf8");
    return await import("data:text/javascript;base64," + Buffer.from(src).toString("base64"));
  }
}

export const loadWsgate = () => loadWebModule("wsgate.js");

/** A virtual clock: setTimeout/clearTimeout for the client, tick()/next() for the test. */
export class FakeClock {
  constructor() {
    this.now = 0;
    this.timers = new Map();
    this.seq = 0;
    this.setTimeout = (fn, ms) => {
      const id = ++this.seq;
      this.timers.set(id, { id, at: this.now + Math.max(0, Number(ms) || 0), fn });
      return id;
    };
    this.clearTimeout = (id) => {
      this.timers.delete(id);
    };
  }

  _earliest(limit) {
    let best = null;
    for (const t of this.timers.values()) {
      if (t.at <= limit && (!best || t.at < best.at || (t.at === best.at && t.id < best.id))) best = t;
    }
    return best;
  }

  /** Advance by ms, running every timer that falls due, in order. */
  tick(ms) {
    const end = this.now + ms;
    for (let t; (t = this._earliest(end)); ) {
      this.timers.delete(t.id);
      this.now = t.at;
      t.fn();
    }
    this.now = end;
  }

  /** Delays (from now) of the pending timers, soonest first. */
  pending() {
    return [...this.timers.values()].map((t) => t.at - this.now).sort((a, b) => a - b);
  }
}

/** A fake network: every `new WebSocket(url)` the client makes is recorded in
 *  net.sockets; the test plays the server through the socket's methods. */
export class FakeNet {
  constructor() {
    const net = this;
    this.sockets = [];
    this.WebSocket = class FakeWebSocket {
      constructor(url) {
        this.url = url;
        this.readyState = 0;
        this.sent = [];
        this.closedWith = null;
        this.onopen = this.onmessage = this.onclose = this.onerror = null;
        net.sockets.push(this);
      }
      send(text) {
        if (this.readyState !== 1) throw new Error("InvalidStateError: not open");
        if (typeof text !== "string") throw new Error("client must send text");
        this.sent.push(text);
      }
      close(code, reason) {
        if (code !== undefined && code !== 1000 && !(code >= 3000 && code <= 4999)) {
          throw new Error("InvalidAccessError: close code " + code);
        }
        this.closedWith = { code, reason };
        if (this.readyState < 2) this.readyState = 2;
      }

      // ---- the server's side ----
      /** The upgrade succeeds and the server sends its welcome. */
      accept(node = "gw1", session = "s-" + net.sockets.indexOf(this), extra = {}) {
        this.readyState = 1;
        if (this.onopen) this.onopen({});
        this.push({ op: "welcome", node, session, ...extra });
        return this;
      }
      /** One server frame: objects are JSON-encoded and joined with "\n" (a batch). */
      push(...objects) {
        const data = objects.map((o) => (typeof o === "string" ? o : JSON.stringify(o))).join("\n");
        if (this.onmessage) this.onmessage({ data });
      }
      pushRaw(data) {
        if (this.onmessage) this.onmessage({ data });
      }
      /** Node 20's WebSocket on a refused connection or upgrade: an error
       *  event and no close event ever. */
      failWithoutClose() {
        this.readyState = 3;
        if (this.onerror) this.onerror({});
      }
      /** The connection ends (1006 = dropped without a close frame). */
      drop(code = 1006, reason = "") {
        this.readyState = 3;
        if (code === 1006 && this.onerror) this.onerror({});
        if (this.onclose) this.onclose({ code, reason, wasClean: code !== 1006 });
      }
      /** Frames the client sent, parsed. */
      frames() {
        return this.sent.map((t) => JSON.parse(t));
      }
      lastFrame() {
        return JSON.parse(this.sent[this.sent.length - 1]);
      }
      /** Acknowledge every request the client sent that has not been answered yet. */
      ackAll() {
        this._answered = this._answered || 0;
        const todo = this.frames().slice(this._answered);
        this._answered = this.sent.length;
        const replies = todo.filter((f) => Number.isInteger(f.id)).map((f) => (f.op === "ping" ? { op: "pong", id: f.id } : { op: "ack", id: f.id }));
        if (replies.length) this.push(...replies);
        return todo;
      }
    };
  }

  get last() {
    return this.sockets[this.sockets.length - 1];
  }
}

/** A scriptable fetch for the client's refusal probe: every call is recorded
 *  in calls; reply(status, body) answers the oldest unanswered one. */
export class FakeFetch {
  constructor() {
    this.calls = [];
    this.fetch = (url, init) => new Promise((resolve, reject) => this.calls.push({ url, init, resolve, reject }));
  }
  reply(status, body) {
    const call = this.calls.find((c) => !c.done);
    call.done = true;
    call.resolve({ ok: status >= 200 && status < 300, status, json: async () => body });
  }
}

/** Let pending promise callbacks run. */
export const flush = () => new Promise((resolve) => setImmediate(resolve));
