// wsgate.js: a browser client for the wsgate protocol v1 (the README's "Protocol" section).
// A plain ES module with no dependencies and no build step:
//
//   import { connect } from "./wsgate.js";
//   const client = connect("/ws", { token });         // relative URLs use the page's host
//   client.on("state", (s) => console.log(s.state, s.node));
//   const unsubscribe = client.subscribe("chat", (data) => show(data));
//   await client.publish("chat", { user: "ana", text: "salut" });   // settles on ack / error
//   unsubscribe();
//
// What it does for the caller:
// - connects with ?batch=1 and splits batched frames ("\n"-separated JSON objects);
// - reconnects by itself with capped exponential backoff and jitter; a close
//   with 1001 "going away" (a draining replica) reconnects at once, and the
//   load balancer picks another replica; every other close (1006 lost or cut
//   off as a slow consumer, 1008 rate limited, 1009 too large, 4xxx such as an expired
//   token) backs off; options.token may be a function, called for every
//   connection, so a fresh token is used after one expired;
// - resubscribes every channel after each reconnect (once the new welcome arrives);
//   on a channel with history it remembers the last position (epoch, offset)
//   and asks the server to recover what was missed, so the handler sees every
//   message once, in order; when that cannot be done (or the server reports
//   messages lost for good) it emits "recovery_failed" {channel, reason,
//   epoch, offset}: the caller must reload that channel's state;
// - settles a publish whose ack a disconnect swallowed from what the channel
//   shows afterwards, never by sending it again (see "Publishes in doubt");
// - subscribe options: history (load the channel's last N messages when
//   joining), presence (join/leave events); presence() lists the members;
// - matches replies to requests by id: publish() returns a promise that the
//   ack resolves and an error rejects (a WsgateError with the server's code);
// - reports everything else through events: "state", "welcome", "close",
//   "error" (protocol errors without a waiting caller, bad server data),
//   "frame" (every parsed server object), "refused" (why the server turned
//   an upgrade down, e.g. 401 token_missing: see _probe);
// - refuses a publish larger than the server's limit (welcome.max_message)
//   before sending it, instead of being disconnected with 1009;
// - treats an error on a socket that never opened as its close (Node 20's
//   WebSocket fires no close then), so a refused attempt backs off at once
//   instead of waiting out connectTimeout.
//
// Everything environment-specific is injectable (options.WebSocket,
// options.setTimeout/clearTimeout, options.random, options.base), so the logic
// runs in Node under a fake socket and a fake clock (tests/browser/unit/).

/** Channel names: 1-200 bytes of A-Z a-z 0-9 _ - . : @ / (all ASCII); the
 *  same rule as channel_name_valid in gateway/core/channel.h, checked here so a
 *  bad name fails before a round trip. */
const CHANNEL_RE = /^[A-Za-z0-9_\-.:@/]{1,200}$/;

export function isValidChannel(channel) {
  return typeof channel === "string" && CHANNEL_RE.test(channel);
}

/** An error reported by the server ({"op":"error"}) or by this client.
 *  code: the server's snake_case code, or one of the client's own:
 *  "disconnected", "timeout", "closed", "bad_frame", "callback_error". */
export class WsgateError extends Error {
  constructor(code, message, extra) {
    super(message || code);
    this.name = "WsgateError";
    this.code = code;
    if (extra) Object.assign(this, extra);
  }
}

/** Split one server frame into JSON objects. With ?batch=1 a frame carries
 *  one or more objects separated by "\n"; blank lines are skipped. Returns
 *  { objects: [...], errors: [{ line, reason }] }; never throws. */
export function splitFrames(text) {
  const objects = [];
  const errors = [];
  if (typeof text !== "string") {
    errors.push({ line: null, reason: "binary frame" });
    return { objects, errors };
  }
  for (const line of text.split("\n")) {
    if (!line.trim()) continue;
    let value;
    try {
      value = JSON.parse(line);
    } catch (e) {
      errors.push({ line, reason: "invalid JSON" });
      continue;
    }
    if (value === null || typeof value !== "object" || Array.isArray(value)) {
      errors.push({ line, reason: "not a JSON object" });
      continue;
    }
    objects.push(value);
  }
  return { objects, errors };
}

export const DEFAULT_BACKOFF = Object.freeze({ min: 500, max: 15000, factor: 2 });

/** Delay in ms before reconnect attempt number `attempt` (0 = first retry):
 *  capped exponential backoff with "equal jitter", i.e. a uniform value in
 *  [cap/2, cap] where cap = min(max, min * factor^attempt). Never 0, so a
 *  server that keeps failing is not hammered; spread so that clients dropped
 *  together do not all come back in the same instant. */
export function backoffDelay(attempt, backoff = DEFAULT_BACKOFF, random = Math.random) {
  const { min, max, factor } = { ...DEFAULT_BACKOFF, ...backoff };
  const n = Math.max(0, Math.min(64, Math.floor(Number(attempt)) || 0));
  const cap = Math.min(max, min * Math.pow(factor, n));
  let r = Number(random());
  if (!(r >= 0)) r = 0;
  if (r > 1) r = 1;
  return Math.round(cap / 2 + (r * cap) / 2);
}

/** The WebSocket URL for url (absolute, or relative to base / the page):
 *  http(s) becomes ws(s), and batch=1 and token=... are added to the query. */
export function buildUrl(url, { token, batch = true, base } = {}) {
  if (base === undefined && typeof location !== "undefined" && location && location.href) {
    base = location.href;
  }
  const u = base ? new URL(url, base) : new URL(url);
  if (u.protocol === "http:") u.protocol = "ws:";
  else if (u.protocol === "https:") u.protocol = "wss:";
  if (u.protocol !== "ws:" && u.protocol !== "wss:") {
    throw new TypeError("wsgate: not a ws/wss/http/https URL: " + String(url));
  }
  if (batch) u.searchParams.set("batch", "1");
  if (token !== undefined && token !== null && token !== "") u.searchParams.set("token", String(token));
  u.hash = "";
  return u.toString();
}

const OPEN = 1;

const utf8 = new TextEncoder();
function utf8Length(text) {
  return utf8.encode(text).length;
}

/** {epoch, offset} of a message, ack or lost frame that carries a valid
 *  position, else null. */
function position(frame) {
  const { epoch, offset } = frame;
  return typeof epoch === "string" && /^[A-Za-z0-9_-]{1,32}$/.test(epoch) && Number.isSafeInteger(offset) && offset >= 0
    ? { epoch, offset }
    : null;
}

const DEFAULTS = {
  batch: true, // ask for batched frames (?batch=1)
  token: undefined, // string, or a function returning a string or a promise (called per connect)
  requestTimeout: 10000, // publish/subscribe/ping reply deadline, including time spent queued offline
  connectTimeout: 10000, // from opening the socket to the welcome
  probe: true, // after a refused upgrade, ask the server why with a plain GET (the "refused" event)
  pingInterval: 25000, // idle ping period while connected (0 = never)
  pingTimeout: 10000, // no pong by then: the connection is dead, reconnect
  queueWhileOffline: true, // publish() while disconnected waits for the next connection
  backoff: DEFAULT_BACKOFF,
};

// Errors on a subscribe that a new connection (maybe on another replica) can fix.
const TRANSIENT = new Set(["broker_unavailable", "rate_limited", "timeout"]);

/** A publish in doubt that no one can settle. */
function maybeSent(req, why) {
  return new WsgateError("maybe_sent", "the connection dropped before the ack and " + why + ": it may or may not have been delivered",
    { id: req.id, channel: req.publish.channel });
}

export class Client {
  /** url: "/ws", "ws://host/ws", "https://host/ws", ... See DEFAULTS for options;
   *  options.on = { state: fn, error: fn, ... } registers listeners before anything happens. */
  constructor(url, options = {}) {
    this.options = { ...DEFAULTS, ...options, backoff: { ...DEFAULT_BACKOFF, ...(options.backoff || {}) } };
    this._WebSocket = options.WebSocket || globalThis.WebSocket;
    if (typeof this._WebSocket !== "function") {
      throw new TypeError("wsgate: no WebSocket implementation (pass options.WebSocket)");
    }
    this._setTimeout = options.setTimeout || ((fn, ms) => setTimeout(fn, ms));
    this._clearTimeout = options.clearTimeout || ((t) => clearTimeout(t));
    this._random = options.random || Math.random;
    // Called as a plain function: a browser's fetch throws "Illegal invocation" as a method of another object.
    this._fetch = options.fetch || (typeof fetch === "function" ? (url, init) => fetch(url, init) : null);
    this.url = url;
    buildUrl(url, { base: this.options.base }); // throws now on a bad URL, not on a later reconnect

    this.state = "idle"; // idle → connecting → connected ⇄ reconnecting; closed after close()
    this.node = null; // the node of the current (or last) connection, from welcome
    this.session = null;
    this.maxMessage = 0; // the server's largest inbound frame in bytes, from welcome (0: unknown)
    this.attempt = 0; // consecutive connection attempts that did not become healthy
    this._listeners = new Map();
    this._subs = new Map(); // channel → { channel, handlers: Set, status, reqId }
    this._pending = new Map(); // id → request sent on the current socket
    this._outbox = []; // requests waiting for a connection
    this._nextId = 1;
    this._ws = null;
    this._everConnected = false;
    this._healthy = false;
    this._retryTimer = null;
    this._connectTimer = null;
    this._pingTimer = null;
    this._closed = false;
    this._quickRetryUsed = false;
    for (const [type, fn] of Object.entries(options.on || {})) this.on(type, fn);
  }

  // ---- events ------------------------------------------------------------

  /** Listen to "state", "welcome", "close", "error", "recovery_failed" or "frame".
   *  Returns an off function. */
  on(type, fn) {
    if (typeof fn !== "function") throw new TypeError("wsgate: listener must be a function");
    if (!this._listeners.has(type)) this._listeners.set(type, new Set());
    this._listeners.get(type).add(fn);
    return () => this.off(type, fn);
  }

  off(type, fn) {
    const set = this._listeners.get(type);
    if (set) set.delete(fn);
  }

  _emit(type, payload) {
    const set = this._listeners.get(type);
    if (!set || set.size === 0) return false;
    for (const fn of [...set]) this._call(fn, payload, type);
    return true;
  }

  // Run a caller's callback; its exceptions must not break the client.
  _call(fn, arg, what, arg2) {
    try {
      fn(arg, arg2);
    } catch (e) {
      const err = new WsgateError("callback_error", "wsgate: " + what + " callback threw: " + (e && e.message), { cause: e });
      if (what === "error" || !this._emit("error", err)) console.error(err, e);
    }
  }

  _protocolError(err) {
    if (!this._emit("error", err)) console.warn("wsgate:", err.code, err.message);
  }

  _setState(state, extra) {
    const prev = this.state;
    this.state = state;
    this._emit("state", { state, prev, node: this.node, attempt: this.attempt, ...extra });
  }

  // ---- lifecycle ---------------------------------------------------------

  /** Start connecting (connect() calls this). */
  open() {
    if (this._closed || this.state !== "idle") return this;
    this._openSocket();
    return this;
  }

  /** Stop for good: close the socket, cancel timers, reject what is waiting. */
  close(code = 1000, reason = "client closed") {
    if (this._closed) return;
    this._closed = true;
    this._clearTimers();
    const ws = this._ws;
    this._ws = null;
    if (ws) {
      this._detach(ws);
      try { ws.close(code, reason); } catch (e) { /* already closing */ }
    }
    const err = new WsgateError("closed", "the client was closed");
    this._failAll(err, true);
    for (const sub of this._subs.values()) this._settleDoubts(sub, () => err);
    this._setState("closed");
  }

  /** Skip the wait of a scheduled reconnect (e.g. on the browser's "online" event). */
  reconnectNow() {
    if (this._closed || !this._retryTimer) return false;
    this._clearTimeout(this._retryTimer);
    this._retryTimer = null;
    this._openSocket();
    return true;
  }

  get connected() {
    return this.state === "connected";
  }

  _clearTimers() {
    for (const k of ["_retryTimer", "_connectTimer", "_pingTimer"]) {
      if (this[k]) this._clearTimeout(this[k]);
      this[k] = null;
    }
  }

  _openSocket() {
    this._retryTimer = null;
    const first = !this._everConnected;
    this._setState(first ? "connecting" : "reconnecting", { delay: 0, retrying: true });
    let token = this.options.token;
    if (typeof token === "function") {
      try {
        token = token();
      } catch (e) {
        this._protocolError(new WsgateError("token_error", "token function threw: " + (e && e.message), { cause: e }));
        this._scheduleReconnect(false);
        return;
      }
    }
    if (token && typeof token.then === "function") {
      this._connectTimer = this._setTimeout(() => {
        this._connectTimer = null;
        this._scheduleReconnect(false);
      }, this.options.connectTimeout);
      token.then(
        (t) => {
          if (this._closed || !this._connectTimer) return;
          this._clearTimeout(this._connectTimer);
          this._connectTimer = null;
          this._openWith(t);
        },
        (e) => {
          if (this._closed || !this._connectTimer) return;
          this._clearTimeout(this._connectTimer);
          this._connectTimer = null;
          this._protocolError(new WsgateError("token_error", "token promise rejected: " + (e && e.message), { cause: e }));
          this._scheduleReconnect(false);
        },
      );
      return;
    }
    this._openWith(token);
  }

  _openWith(token) {
    let ws;
    try {
      const url = buildUrl(this.url, { token, batch: this.options.batch, base: this.options.base });
      ws = new this._WebSocket(url);
    } catch (e) {
      this._protocolError(new WsgateError("connect_failed", "cannot open the WebSocket: " + (e && e.message), { cause: e }));
      this._scheduleReconnect(false);
      return;
    }
    this._ws = ws;
    this._healthy = false;
    let opened = false;
    ws.onopen = () => { opened = true; };
    ws.onmessage = (ev) => this._onData(ws, ev.data);
    ws.onclose = (ev) => this._onClose(ws, ev.code, ev.reason, false, opened ? null : { token });
    // Browsers follow an error with a close; Node 20's WebSocket does not when
    // the connection or the upgrade fails. Before the socket opened an error
    // can only mean that failure (close code 1006 in browsers too).
    ws.onerror = () => { if (!opened) this._onClose(ws, 1006, "", false, { token }); };
    this._connectTimer = this._setTimeout(() => {
      this._connectTimer = null;
      this._drop(ws, "connect timeout");
    }, this.options.connectTimeout);
  }

  _detach(ws) {
    ws.onmessage = ws.onclose = ws.onerror = ws.onopen = null;
  }

  // Give up on a socket that is alive at the TCP level but useless (no welcome,
  // no pong): do not wait for a close handshake that may never come.
  _drop(ws, reason) {
    if (ws !== this._ws) return;
    this._detach(ws);
    try { ws.close(4000, reason); } catch (e) { /* ignore */ }
    this._onClose(ws, 4000, reason, true);
  }

  /** failed: { token } when the socket never opened (the upgrade was refused
   *  or the server is unreachable), with the token that attempt used. */
  _onClose(ws, code, reason, local = false, failed = null) {
    if (ws !== this._ws) return; // a socket we already gave up on
    this._ws = null;
    this._detach(ws);
    this._clearTimers();
    const wasConnected = this.state === "connected";
    this._healthy = false;
    for (const sub of this._subs.values()) {
      sub.status = "idle";
      if (sub.loading) { // cut off while loading history: recover it on the next connection
        sub.loading = null;
        sub.pos = sub.loadFrom;
      }
    }
    this._holdInDoubt();
    this._failAll(new WsgateError("disconnected", "connection closed before the reply" +
      (code ? " (" + code + (reason ? " " + reason : "") + ")" : ""), { closeCode: code, closeReason: reason }), false);
    this._emit("close", { code, reason: reason || "", node: this.node, wasConnected, local });
    if (this._closed) return;
    // 1001 "going away": the replica is draining and the load balancer has a
    // ready one, so come back at once -- but only once in a row, so a replica
    // that keeps answering 1001 falls back to the normal backoff.
    const quick = code === 1001 && !this._quickRetryUsed;
    this._scheduleReconnect(quick, { code, reason: reason || "" });
    if (failed) this._probe(failed.token);
  }

  // A browser hides the HTTP status of a refused upgrade from scripts. Ask the
  // same URL with a plain GET: the gateway answers with the verdict the
  // upgrade got ({"error":"token_missing",...} with 401, 403, 503), or 426
  // when an upgrade would be accepted. Reported as a "refused" event
  // {status, code, message}; nothing when the server cannot be reached.
  _probe(token) {
    if (!this.options.probe || typeof this._fetch !== "function") return;
    // Offline (the browser knows): no server to ask.
    if (typeof navigator !== "undefined" && navigator && navigator.onLine === false) return;
    let url;
    try {
      url = buildUrl(this.url, { token, batch: false, base: this.options.base }).replace(/^ws/, "http");
    } catch (e) {
      return;
    }
    const attempt = this.attempt;
    Promise.resolve()
      .then(() => this._fetch(url, { cache: "no-store" }))
      .then(async (res) => {
        if (res.ok || res.status === 426) return;
        let body = null;
        try { body = await res.json(); } catch (e) { /* not JSON: not a wsgate answer */ }
        if (this._closed || this.state === "connected" || this.attempt !== attempt) return; // stale
        const code = body && typeof body.error === "string" ? body.error : "http_" + res.status;
        const message = body && typeof body.message === "string" ? body.message : "";
        this._emit("refused", { status: res.status, code, message });
      })
      .catch(() => { /* unreachable: the close event said enough */ });
  }

  _scheduleReconnect(quick, extra) {
    if (this._closed || this._retryTimer) return;
    let delay;
    if (quick) {
      delay = 0;
      this._quickRetryUsed = true;
    } else {
      delay = backoffDelay(this.attempt, this.options.backoff, this._random);
    }
    this.attempt += 1;
    const first = !this._everConnected;
    this._setState(first ? "connecting" : "reconnecting", { delay, ...extra });
    this._retryTimer = this._setTimeout(() => this._openSocket(), delay);
  }

  // ---- incoming ----------------------------------------------------------

  _onData(ws, data) {
    if (ws !== this._ws) return;
    const { objects, errors } = splitFrames(data);
    for (const e of errors) {
      this._protocolError(new WsgateError("bad_frame", "unreadable server frame: " + e.reason, { line: e.line }));
    }
    for (const frame of objects) {
      if (ws !== this._ws) return; // a handler closed or replaced the socket
      this._emit("frame", frame);
      this._onFrame(ws, frame);
    }
  }

  _onFrame(ws, frame) {
    switch (frame.op) {
      case "welcome":
        return this._onWelcome(ws, frame);
      case "message": {
        const sub = typeof frame.channel === "string" ? this._subs.get(frame.channel) : undefined;
        if (!sub) return; // not (or no longer) subscribed: drop
        if (sub.loading) return sub.loading.push(frame); // see _loadHistory
        const info = { channel: frame.channel, node: this.node };
        const pos = position(frame);
        if (pos) {
          sub.pos = pos;
          Object.assign(info, pos);
        }
        this._noteDelivery(sub, frame.data, pos);
        for (const h of [...sub.handlers]) {
          if (sub.handlers.has(h)) this._call(h.onMessage, frame.data, "message", info);
        }
        return;
      }
      case "ack":
      case "pong":
      case "presence":
      case "presence_stats":
      case "error": {
        const req = Number.isInteger(frame.id) ? this._pending.get(frame.id) : undefined;
        if (req) {
          this._pending.delete(frame.id);
          if (req.timer) this._clearTimeout(req.timer);
          req.settle(frame);
        } else if (frame.op === "error") {
          this._protocolError(new WsgateError(String(frame.code || "error"), String(frame.message || frame.code || "server error"), { frame }));
        }
        return;
      }
      case "lost": {
        // Messages on a live subscription were lost for good; delivery goes
        // on after the position given.
        const sub = typeof frame.channel === "string" ? this._subs.get(frame.channel) : undefined;
        const pos = position(frame);
        if (!sub || !pos) return;
        sub.pos = pos;
        this._emit("recovery_failed", { channel: sub.channel, reason: String(frame.reason || "lost"), ...pos });
        return;
      }
      case "join":
      case "leave": {
        const sub = typeof frame.channel === "string" ? this._subs.get(frame.channel) : undefined;
        if (!sub || typeof frame.session !== "string") return;
        const ev = { type: frame.op, channel: sub.channel, session: frame.session };
        if (typeof frame.sub === "string") ev.sub = frame.sub;
        if (typeof frame.node === "string") ev.node = frame.node;
        for (const h of [...sub.handlers]) if (h.onPresence) this._call(h.onPresence, ev, "onPresence");
        return;
      }
      default:
        return; // unknown ops are for newer clients
    }
  }

  _onWelcome(ws, frame) {
    if (this._connectTimer) this._clearTimeout(this._connectTimer);
    this._connectTimer = null;
    this.node = typeof frame.node === "string" ? frame.node : null;
    this.session = typeof frame.session === "string" ? frame.session : null;
    this.maxMessage = Number.isSafeInteger(frame.max_message) && frame.max_message > 0 ? frame.max_message : 0;
    const resumed = this._everConnected;
    this._everConnected = true;
    this._setState("connected", { session: this.session, resumed });
    if (ws !== this._ws) return;
    this._emit("welcome", { node: this.node, session: this.session, resumed });
    if (ws !== this._ws) return;
    for (const sub of this._subs.values()) this._sendSubscribe(sub, resumed);
    const queued = this._outbox;
    this._outbox = [];
    for (const req of queued) this._transmit(req);
    this._armPing();
    this._checkHealthy();
  }

  // The connection is healthy once every subscription is live again: only then
  // does the backoff start over (a server that welcomes and then fails keeps
  // backing off).
  _checkHealthy() {
    if (this.state !== "connected" || this._healthy) return;
    for (const sub of this._subs.values()) if (sub.status !== "live") return;
    this._healthy = true;
    this.attempt = 0;
    this._quickRetryUsed = false;
  }

  // ---- requests ----------------------------------------------------------

  _newRequest(frame, settle, timeout) {
    const id = this._nextId++;
    const req = { id, text: JSON.stringify({ ...frame, id }), settle, timer: null };
    req.timer = this._setTimeout(() => {
      req.timer = null;
      this._pending.delete(id);
      const i = this._outbox.indexOf(req);
      if (i >= 0) this._outbox.splice(i, 1);
      if (req.doubt) {
        req.doubt.delete(req);
        return req.settle(null, maybeSent(req, "no recovery in " + timeout + " ms"));
      }
      req.settle(null, new WsgateError("timeout", "no reply in " + timeout + " ms", { id }));
    }, timeout);
    return req;
  }

  /** Sends req on the open socket, or refuses it at once when it exceeds the
   *  server's limit (the server would close the connection with 1009).
   *  false: not connected, nothing done. */
  _transmit(req) {
    const ws = this._ws;
    if (!ws || this.state !== "connected" || ws.readyState !== OPEN) return false;
    const size = this.maxMessage ? utf8Length(req.text) : 0;
    if (size > this.maxMessage) {
      if (req.timer) this._clearTimeout(req.timer);
      req.timer = null;
      req.settle(null, new WsgateError("too_large", "the message is " + size + " bytes, the server takes at most " +
        this.maxMessage, { size, limit: this.maxMessage }));
      return true;
    }
    this._pending.set(req.id, req);
    try {
      ws.send(req.text);
    } catch (e) {
      this._pending.delete(req.id);
      return false;
    }
    return true;
  }

  _failAll(err, includeOutbox) {
    const reqs = [...this._pending.values()];
    this._pending.clear();
    if (includeOutbox) {
      reqs.push(...this._outbox);
      this._outbox = [];
    }
    for (const req of reqs) {
      if (req.timer) this._clearTimeout(req.timer);
      req.timer = null;
      req.settle(null, err);
    }
  }

  /** Publish data (any JSON value) to channel. Resolves with the ack frame once
   *  the broker accepted it; rejects with a WsgateError: the server's code
   *  (bad_channel, broker_unavailable, rate_limited, forbidden, ...), or
   *  "too_large" (bigger than the server's max_message: not sent; err.size
   *  and err.limit in bytes), "timeout", "closed", or when the connection
   *  dropped before the ack: on a
   *  channel this client follows with history, "not_sent" (recovery shows it
   *  never went out: send it again) or "maybe_sent" (recovery failed, so no
   *  one can tell), and it resolves with {op:"ack", confirmed:true, ...} when
   *  it did go out; elsewhere "disconnected" (it may or may not have gone out).
   *  While disconnected the request waits for the next connection (up to
   *  requestTimeout). */
  publish(channel, data, { timeout = this.options.requestTimeout } = {}) {
    return new Promise((resolve, reject) => {
      if (this._closed) return reject(new WsgateError("closed", "the client was closed"));
      if (!isValidChannel(channel)) {
        return reject(new WsgateError("bad_channel", "channel names are 1-200 characters of A-Z a-z 0-9 _ - . : @ /", { channel }));
      }
      let req;
      try {
        if (data === undefined || JSON.stringify(data) === undefined) throw new TypeError("data is not JSON");
        req = this._newRequest({ op: "publish", channel, data }, (frame, err) => {
          if (err) return reject(err);
          if (frame.op === "ack") return resolve(frame);
          reject(new WsgateError(String(frame.code || "error"), String(frame.message || frame.code || "publish failed"), { frame, channel }));
        }, timeout);
        req.publish = { channel, text: JSON.stringify(data) };
      } catch (e) {
        return reject(new WsgateError("bad_request", "cannot encode data as JSON: " + (e && e.message), { cause: e }));
      }
      if (!this._transmit(req)) {
        if (this.options.queueWhileOffline) {
          this._outbox.push(req);
        } else {
          this._clearTimeout(req.timer);
          reject(new WsgateError("disconnected", "not connected"));
        }
      }
    });
  }

  /** Round trip to the server; resolves with the time in ms. */
  ping({ timeout = this.options.pingTimeout } = {}) {
    return new Promise((resolve, reject) => {
      if (this.state !== "connected") return reject(new WsgateError("disconnected", "not connected"));
      const t0 = Date.now();
      const req = this._newRequest({ op: "ping" }, (frame, err) => (err ? reject(err) : resolve(Date.now() - t0)), timeout);
      if (!this._transmit(req)) {
        this._clearTimeout(req.timer);
        reject(new WsgateError("disconnected", "not connected"));
      }
    });
  }

  /** Who is subscribed to channel, on every replica (a presence channel):
   *  resolves with the server's {sessions, users, members:[{session, sub?, node}]};
   *  rejects with a WsgateError (presence_off, forbidden, disconnected, ...). */
  presence(channel, { timeout = this.options.requestTimeout } = {}) {
    return new Promise((resolve, reject) => {
      if (this.state !== "connected") return reject(new WsgateError("disconnected", "not connected"));
      const req = this._newRequest({ op: "presence", channel }, (frame, err) => {
        if (err) return reject(err);
        if (frame.op === "presence" && Array.isArray(frame.members)) return resolve(frame);
        reject(new WsgateError(String(frame.code || "error"), String(frame.message || frame.code || "presence failed"), { frame, channel }));
      }, timeout);
      if (!this._transmit(req)) {
        this._clearTimeout(req.timer);
        reject(new WsgateError("disconnected", "not connected"));
      }
    });
  }

  _armPing() {
    const every = this.options.pingInterval;
    if (!every || every <= 0) return;
    if (this._pingTimer) this._clearTimeout(this._pingTimer);
    const ws = this._ws;
    this._pingTimer = this._setTimeout(() => {
      this._pingTimer = null;
      if (ws !== this._ws || this.state !== "connected") return;
      this.ping().then(
        () => { if (ws === this._ws) this._armPing(); },
        (e) => { if (e.code === "timeout") this._drop(ws, "ping timeout"); },
      );
    }, every);
  }

  // ---- subscriptions -----------------------------------------------------

  /** Call onMessage(data, {channel, node[, offset, epoch]}) for every message
   *  on channel, from now on and across reconnects (on a history channel the
   *  ones missed while reconnecting too, once each, in order). Returns a
   *  function that unsubscribes (only this handler; the channel is left when
   *  its last handler goes).
   *  options.onSubscribed({channel, node, resubscribed[, recovered, reason]})
   *  runs on each ack (after every reconnect too; recovered: whether what was
   *  missed will be delivered, reason: why not); options.onError(err) if the server refuses
   *  the channel for good (bad_channel, forbidden, ...): the handler is then
   *  dropped. Transient refusals (broker_unavailable) reconnect and retry.
   *  Channel options (taken from the channel's first subscribe):
   *  options.history = N: on joining, the last N kept messages (fewer if the
   *  server keeps fewer) are delivered first, then live ones, once each;
   *  options.presence = true: options.onPresence({type: "join"|"leave",
   *  channel, session, sub?, node}) for members coming and going; on a channel
   *  without presence the subscription goes on without (onSubscribed gets
   *  presence: false). */
  subscribe(channel, onMessage, options = {}) {
    if (!isValidChannel(channel)) {
      throw new WsgateError("bad_channel", "channel names are 1-200 characters of A-Z a-z 0-9 _ - . : @ /", { channel });
    }
    if (typeof onMessage !== "function") throw new TypeError("wsgate: onMessage must be a function");
    const handler = { onMessage, onSubscribed: options.onSubscribed, onError: options.onError, onPresence: options.onPresence };
    let sub = this._subs.get(channel);
    if (!sub) {
      sub = {
        channel, handlers: new Set(), status: "idle", reqId: 0, pos: null,
        history: Math.max(0, Math.floor(Number(options.history)) || 0), presence: options.presence === true,
        loading: null, loadFrom: null, doubt: new Set(), doubtUntil: null,
      };
      this._subs.set(channel, sub);
      sub.handlers.add(handler);
      if (this.state === "connected") this._sendSubscribe(sub, false);
    } else {
      sub.handlers.add(handler);
      if (sub.status === "live" && handler.onSubscribed) {
        this._call(handler.onSubscribed, { channel, node: this.node, resubscribed: false }, "onSubscribed");
      }
    }
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this._removeHandler(sub, handler);
    };
  }

  /** Channels with at least one handler, and whether each is live now. */
  subscriptions() {
    return [...this._subs.values()].map((s) => ({ channel: s.channel, status: s.status }));
  }

  _removeHandler(sub, handler) {
    sub.handlers.delete(handler);
    if (sub.handlers.size > 0 || this._subs.get(sub.channel) !== sub) return;
    this._subs.delete(sub.channel);
    const wasSent = sub.status === "pending" || sub.status === "live";
    sub.status = "gone";
    this._settleDoubts(sub, (req) => maybeSent(req, "the channel was left before recovery"));
    if (wasSent && this.state === "connected") this._sendUnsubscribe(sub.channel);
    this._checkHealthy();
  }

  // The server handles frames in order: this unsubscribe follows the
  // subscribe even if its ack has not arrived yet.
  _sendUnsubscribe(channel) {
    const req = this._newRequest({ op: "unsubscribe", channel }, (frame, err) => {
      if (err || frame.op === "ack" || frame.code === "not_subscribed") return;
      this._protocolError(new WsgateError(String(frame.code || "error"), String(frame.message || "unsubscribe failed"), { frame, channel }));
    }, this.options.requestTimeout);
    if (!this._transmit(req)) this._clearTimeout(req.timer);
  }

  _sendSubscribe(sub, resubscribed) {
    const ws = this._ws;
    sub.status = "pending";
    const request = { op: "subscribe", channel: sub.channel };
    if (sub.presence) request.presence = true;
    if (sub.loading) request.recover = { ...sub.loadFrom };
    else if (resubscribed && sub.pos) request.recover = { ...sub.pos };
    const req = this._newRequest(request, (frame, err) => {
      if (this._subs.get(sub.channel) !== sub || ws !== this._ws) return; // left, or an old connection
      if (err) {
        // No reply in time: treat the connection as broken.
        if (err.code === "timeout") this._drop(ws, "subscribe timeout");
        return;
      }
      if (frame.op === "ack" || frame.code === "already_subscribed") {
        const pos = position(frame);
        if (!resubscribed && !sub.loading && sub.history > 0 && pos && pos.offset > 0 && !sub.loadFrom) {
          return this._loadHistory(sub, pos);
        }
        sub.status = "live";
        const info = { channel: sub.channel, node: this.node, resubscribed };
        if (sub.presence || sub.presenceOff) info.presence = sub.presence;
        const loaded = sub.loading;
        sub.loading = null;
        // Recovered: the missed messages follow and move the position on.
        if (pos && frame.recovered !== true) sub.pos = pos;
        if (loaded) {
          info.history = frame.recovered === true;
          // No history after all: what arrived meanwhile is all there is.
          if (!info.history) for (const f of loaded) this._onFrame(ws, f);
        } else if (typeof frame.recovered === "boolean") {
          info.recovered = frame.recovered;
          if (!frame.recovered) info.reason = String(frame.reason || "unknown");
        }
        for (const h of [...sub.handlers]) {
          if (h.onSubscribed) this._call(h.onSubscribed, info, "onSubscribed");
        }
        if (!loaded && frame.recovered === false) {
          this._emit("recovery_failed", { channel: sub.channel, reason: info.reason, ...pos });
        }
        if (resubscribed) this._resolveDoubts(sub, frame.recovered === true ? pos : null);
        this._checkHealthy();
        return;
      }
      if (frame.code === "presence_off" && sub.presence) {
        // Presence is opt-in per channel on the server: go on without it.
        sub.presence = false;
        sub.presenceOff = true;
        return this._sendSubscribe(sub, resubscribed);
      }
      const error = new WsgateError(String(frame.code || "error"), String(frame.message || "subscribe failed"), { frame, channel: sub.channel });
      if (TRANSIENT.has(error.code)) {
        // e.g. this replica lost Redis: another connection (through the LB,
        // which now avoids it) will do better. Back off and reconnect.
        sub.status = "idle";
        this._protocolError(error);
        this._drop(ws, "subscribe failed: " + error.code);
        return;
      }
      // Refused for good: tell the handlers and forget the channel.
      this._subs.delete(sub.channel);
      sub.status = "failed";
      let told = false;
      for (const h of [...sub.handlers]) {
        if (h.onError) {
          told = true;
          this._call(h.onError, error, "onError");
        }
      }
      if (!told) this._protocolError(error);
      this._checkHealthy();
    }, this.options.requestTimeout);
    sub.reqId = req.id;
    if (!this._transmit(req)) {
      this._clearTimeout(req.timer);
      sub.status = "idle";
    }
  }

  // ---- history on joining ------------------------------------------------

  // The first ack gave the channel's epoch and top offset: leave and subscribe
  // again recovering from N messages back. Live messages that arrive until the
  // second ack are held: the recovery delivers them again, in order.
  _loadHistory(sub, pos) {
    sub.loading = [];
    sub.loadFrom = { epoch: pos.epoch, offset: Math.max(0, pos.offset - sub.history) };
    this._sendUnsubscribe(sub.channel);
    this._sendSubscribe(sub, false);
  }

  // ---- publishes in doubt -----------------------------------------------
  //
  // A publish sent but not acked when the connection dropped may or may not
  // have reached the broker. Sending it again could duplicate it; failing it
  // could drop it. On a channel this client follows with history the answer is
  // in the channel itself: the publish is held until the resubscription's
  // recovery has delivered everything up to the ack's top offset. If a message
  // with the same JSON text arrived (before the drop or in the recovered range)
  // it went out; if recovery completed without it, it did not; if recovery
  // failed, no one can tell and the caller is told exactly that. Messages are
  // matched by content, so callers should make them unique (the chat adds its
  // page id and a timestamp).

  // On a close: publishes on followed history channels wait for recovery.
  _holdInDoubt() {
    for (const [id, req] of this._pending) {
      const sub = req.publish && this._subs.get(req.publish.channel);
      if (!sub || sub.handlers.size === 0) continue;
      if (req.seen) {
        this._pending.delete(id);
        if (req.timer) this._clearTimeout(req.timer);
        req.settle({ op: "ack", id, channel: sub.channel, confirmed: true, ...req.seen });
      } else if (sub.pos) {
        this._pending.delete(id);
        req.doubt = sub.doubt;
        sub.doubt.add(req);
      }
    }
  }

  // A delivery on sub: settles what it answers.
  _noteDelivery(sub, data, pos) {
    if (this._pending.size === 0 && sub.doubt.size === 0) return;
    const text = JSON.stringify(data);
    const same = (req) => req.publish && req.publish.channel === sub.channel && req.publish.text === text;
    for (const req of this._pending.values()) if (!req.seen && same(req)) req.seen = pos || {};
    for (const req of sub.doubt) {
      if (!same(req)) continue;
      sub.doubt.delete(req);
      if (req.timer) this._clearTimeout(req.timer);
      req.settle({ op: "ack", id: req.id, channel: sub.channel, confirmed: true, ...pos });
      break;
    }
    if (sub.doubtUntil && pos && pos.epoch === sub.doubtUntil.epoch && pos.offset >= sub.doubtUntil.offset) {
      this._resolveDoubts(sub, null, true);
    }
  }

  // After a resubscription: top is the recovered ack's position (the missed
  // messages up to it follow), or null when recovery failed. done: recovery
  // has delivered up to the top.
  _resolveDoubts(sub, top, done = false) {
    sub.doubtUntil = null;
    if (sub.doubt.size === 0) return;
    if (done || (top && sub.pos && sub.pos.epoch === top.epoch && sub.pos.offset >= top.offset)) {
      return this._settleDoubts(sub, (req) => new WsgateError("not_sent",
        "the connection dropped before the server took it; it was not delivered", { id: req.id, channel: sub.channel }));
    }
    if (top) sub.doubtUntil = top;
    else this._settleDoubts(sub, (req) => maybeSent(req, "the missed messages could not be recovered"));
  }

  _settleDoubts(sub, makeError) {
    const reqs = [...sub.doubt];
    sub.doubt.clear();
    sub.doubtUntil = null;
    for (const req of reqs) {
      if (req.timer) this._clearTimeout(req.timer);
      req.timer = null;
      req.settle(null, makeError(req));
    }
  }
}

/** Create a client and start connecting. See Client for the options. */
export function connect(url, options = {}) {
  return new Client(url, options).open();
}
