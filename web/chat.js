// The wsgate chat demo: the Socket.IO chat (everyone in a room sees every
// message) across gateway replicas, on top of wsgate.js. A room is a channel
// of the same name, so a backend can post into one with
// `PUBLISH wsgate:lobby '{"user":"bot","text":"hi"}'` or POST /api/publish.
// Messages are {"user", "text", "ts" (ms since the epoch), "cid" (the
// sending page, to mark one's own), "sid" (its session, to name it in the
// member list)}; a bare JSON string is shown as text. History, recovery and
// presence are shown by chat-room-live.js.
// The URL's #fragment names the room to open: http://host:8080/#lobby
//
// Everything from the network or the user goes into the page as textContent
// only (never innerHTML); anything the server sends that is not a chat
// message is shown as text or ignored, never trusted.
import { connect, isValidChannel } from "./wsgate.js";
import { RoomLive, publishOutcome } from "./chat-room-live.js";

const MAX_MESSAGES = 500; // per room, oldest dropped
const MAX_ROOMS = 20;
const MAX_USER = 32;
const MAX_TEXT = 2000;
const DEFAULT_ROOM = "lobby";

const $ = (id) => document.getElementById(id);
const ui = {
  status: $("status"), statusText: $("status-text"), retry: $("retry"), banner: $("banner"), nick: $("nick"),
  roomList: $("room-list"), joinForm: $("join-form"), join: $("join"),
  roomName: $("room-name"), roomState: $("room-state"), members: $("members"), logs: $("logs"),
  form: $("form"), text: $("text"), send: $("send"),
};

// ---- small helpers -------------------------------------------------------

// The rooms are remembered per browser (localStorage); the nickname per tab
// (sessionStorage, seeded from the last one chosen anywhere), so two windows
// of one browser can chat under two names.
function load(key, store = localStorage) {
  try { return store.getItem(key); } catch (e) { return null; }
}
function save(key, value, store = localStorage) {
  try { store.setItem(key, value); } catch (e) { /* private mode, quota */ }
}
function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}
function clip(s, n) {
  s = String(s);
  return s.length > n ? s.slice(0, n - 1) + "…" : s;
}
function randomId() {
  const a = new Uint32Array(2);
  crypto.getRandomValues(a);
  return a[0].toString(36) + a[1].toString(36);
}
function roomFromHash() {
  let h = location.hash.slice(1);
  try { h = decodeURIComponent(h); } catch (e) { return null; }
  return isValidChannel(h) ? h : null;
}
function fmtTime(d) {
  const sameDay = d.toDateString() === new Date().toDateString();
  const time = d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  return sameDay ? time : d.toLocaleDateString([], { month: "short", day: "numeric" }) + " " + time;
}

/** Whatever arrives on a room channel, as {user, text, time, mine}: chat
 *  messages are {user, text, ts}; a backend may publish any JSON. */
function normalize(data, myId) {
  let user = "?";
  let text;
  let ts = NaN;
  let mine = false;
  if (typeof data === "string") {
    text = data; // the seed's io.emit('chat message', msg): a bare string
  } else if (data && typeof data === "object" && !Array.isArray(data)) {
    if (typeof data.user === "string" && data.user.trim()) user = data.user.trim();
    if (typeof data.text === "string") text = data.text;
    else if (data.text !== undefined) text = JSON.stringify(data.text);
    else text = JSON.stringify(data);
    if (typeof data.ts === "number") ts = data.ts;
    mine = typeof data.cid === "string" && data.cid === myId;
  } else {
    text = JSON.stringify(data === undefined ? null : data);
  }
  let time = new Date(ts);
  if (!Number.isFinite(ts) || isNaN(time.getTime())) time = new Date();
  return { user: clip(user, MAX_USER), text: clip(text, MAX_TEXT), time, mine };
}

// ---- state ---------------------------------------------------------------

const myId = randomId(); // marks this page's own messages
const rooms = new Map(); // name → { name, li, badge, log, unsubscribe, unread, live, failed }
let active = null;
let everConnected = false;

ui.nick.value = clip(load("wsgate.nick", sessionStorage) || load("wsgate.nick") ||
  "guest-" + Math.floor(1000 + Math.random() * 9000), MAX_USER);
ui.nick.addEventListener("change", () => {
  ui.nick.value = clip(ui.nick.value.trim() || "guest", MAX_USER);
  save("wsgate.nick", ui.nick.value, sessionStorage);
  save("wsgate.nick", ui.nick.value);
});

// A deployment with --auth can hand out links carrying a connect token:
// http://host:8080/?token=<JWT>#lobby (the token is sent as ?token= on /ws).
const token = new URLSearchParams(location.search).get("token") || undefined;

const client = connect("ws", {
  token,
  on: {
    state: onState,
    close: onClose,
    welcome: onWelcome,
    refused: onRefused,
    error: (err) => notice(active, "server: " + err.code + (err.message && err.message !== err.code ? " — " + err.message : ""), "warn"),
    recovery_failed: (e) => { const r = rooms.get(e.channel); if (r) r.roomLive.lost(e.reason); },
  },
});

// ---- connection state ----------------------------------------------------

// While a reconnect is scheduled, the status counts down to it and offers
// "retry now" (client.reconnectNow()).
let retryAt = 0;
let countdown = null;

function onState(s) {
  const node = client.node || "";
  retryAt = (s.state === "reconnecting" || s.state === "connecting") && s.delay > 0 ? Date.now() + s.delay : 0;
  if (countdown) clearInterval(countdown);
  countdown = retryAt ? setInterval(showState, 100) : null;
  ui.status.dataset.state = s.state;
  ui.status.dataset.node = s.state === "connected" ? node : "";
  ui.send.disabled = s.state !== "connected";
  showState();
  updateRoomTitle();
}

function showState() {
  const state = client.state;
  let text;
  if (state === "connected") text = "connected · node " + (client.node || "");
  else if (state === "reconnecting" || state === "connecting") {
    const left = Math.max(0, retryAt - Date.now());
    text = state + (retryAt ? " in " + Math.ceil(left / 1000) + " s" : "…");
  } else text = state;
  ui.statusText.textContent = text;
  ui.retry.hidden = !retryAt;
}

ui.retry.addEventListener("click", () => client.reconnectNow());

/** The gateway turned the connection down (wsgate.js asks it why): say what
 *  to do, above all when a connect token is needed (--auth required). */
function onRefused(r) {
  let text;
  if (r.status === 401 && r.code === "token_missing") {
    text = "This gateway needs a connect token (it runs with --auth required). Open this page with " +
      "?token=<JWT> in its address; an operator mints one with: wsgate token --secret-file <secret> " +
      "--sub <name> --channels 'lobby' --publish 'lobby'";
  } else if (r.status === 401) {
    text = "The connect token in this page's address was refused (" + r.code + "): ask for a new one.";
  } else {
    text = "The gateway refused the connection (" + r.status + " " + r.code + ")" + (r.message ? ": " + r.message : "");
  }
  ui.banner.textContent = text;
  ui.banner.dataset.code = r.code;
  ui.banner.hidden = false;
}

function onWelcome(w) {
  ui.banner.hidden = true;
  for (const r of rooms.values()) setLive(r, false);
  notice(null, (w.resumed ? "reconnected through node " : "connected to node ") + (w.node || "?"));
  everConnected = true;
}

function onClose(c) {
  for (const r of rooms.values()) setLive(r, false);
  if (!c.wasConnected || !everConnected) return;
  const why = c.code === 1001 ? "node is going away"
    : c.code === 1008 ? "closed by policy" + (c.reason ? ": " + c.reason : "")
    : c.code === 1009 ? "message too large"
    : c.code === 1006 ? "connection lost"
    : "closed (" + c.code + (c.reason ? " " + c.reason : "") + ")";
  notice(null, "disconnected from node " + (c.node || "?") + ": " + why + " — reconnecting", "warn");
}

// ---- rooms ---------------------------------------------------------------

function savedRooms() {
  try {
    const list = JSON.parse(load("wsgate.rooms") || "[]");
    return Array.isArray(list) ? list.filter(isValidChannel).slice(0, MAX_ROOMS) : [];
  } catch (e) {
    return [];
  }
}
function saveRooms() {
  save("wsgate.rooms", JSON.stringify([...rooms.keys()]));
}

function joinRoom(name, { activate = true } = {}) {
  name = String(name || "").trim();
  if (!isValidChannel(name)) {
    notice(active, "a room name is 1–200 characters of letters, digits and _ - . : @ /", "bad");
    return false;
  }
  if (!rooms.has(name)) {
    if (rooms.size >= MAX_ROOMS) {
      notice(active, "leave a room first (" + MAX_ROOMS + " at most)", "bad");
      return false;
    }
    const r = { name, unread: 0, live: false, failed: false, joinedOnce: false };
    r.li = el("li");
    r.li.dataset.room = name;
    const btn = el("button", "room");
    btn.type = "button";
    btn.title = "#" + name;
    btn.append(el("span", "name", "#" + name));
    r.badge = el("span", "badge");
    btn.append(r.badge);
    btn.addEventListener("click", () => switchRoom(name));
    const leave = el("button", "leave", "×");
    leave.type = "button";
    leave.title = "leave #" + name;
    leave.setAttribute("aria-label", "leave #" + name);
    leave.addEventListener("click", () => leaveRoom(name));
    r.li.append(btn, leave);
    ui.roomList.append(r.li);
    r.log = el("ol", "log");
    r.log.dataset.room = name;
    r.log.hidden = true;
    r.log.setAttribute("aria-live", "polite");
    ui.logs.append(r.log);
    rooms.set(name, r);
    setLive(r, false);
    r.roomLive = new RoomLive(client, name, {
      notice: (text, kind) => notice(r, text, kind),
      onChange: () => { if (r === active) r.roomLive.render(ui.members); },
    });
    r.unsubscribe = client.subscribe(name, (data) => showMessage(r, data), {
      ...r.roomLive.options(),
      onSubscribed: (s) => {
        setLive(r, true);
        if (!r.joinedOnce) notice(r, "joined #" + name + " on node " + (s.node || "?"));
        r.joinedOnce = true;
        r.roomLive.subscribed(s);
      },
      onError: (err) => {
        r.failed = true;
        r.li.dataset.failed = "true";
        setLive(r, false);
        notice(r, "cannot join #" + name + ": " + (err.message || err.code), "bad");
      },
    });
    saveRooms();
    updateLeaveButtons();
  }
  if (activate) switchRoom(name);
  return true;
}

function leaveRoom(name) {
  const r = rooms.get(name);
  if (!r || rooms.size <= 1) return;
  r.unsubscribe();
  r.li.remove();
  r.log.remove();
  rooms.delete(name);
  saveRooms();
  updateLeaveButtons();
  if (active === r) switchRoom(rooms.keys().next().value);
}

function switchRoom(name) {
  const r = rooms.get(name);
  if (!r) return;
  if (active && active !== r) {
    active.log.hidden = true;
    active.li.removeAttribute("aria-current");
  }
  active = r;
  r.log.hidden = false;
  r.li.setAttribute("aria-current", "true");
  r.unread = 0;
  r.badge.textContent = "";
  r.roomLive.render(ui.members);
  updateRoomTitle();
  if (roomFromHash() !== name) history.replaceState(null, "", "#" + name);
  r.log.scrollTop = r.log.scrollHeight;
  document.title = "#" + name + " · wsgate chat";
}

function setLive(r, live) {
  r.live = live;
  r.li.dataset.live = String(live);
  if (r === active) updateRoomTitle();
}

function updateRoomTitle() {
  if (!active) return;
  ui.roomName.textContent = "#" + active.name;
  ui.roomState.textContent = active.failed ? "not joined"
    : active.live ? "" : client.state === "connected" ? "joining…" : "offline";
}

function updateLeaveButtons() {
  const one = rooms.size <= 1;
  for (const r of rooms.values()) r.li.querySelector(".leave").hidden = one;
}

// ---- messages ------------------------------------------------------------

function append(r, li) {
  const log = r.log;
  const atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 48;
  log.append(li);
  while (log.children.length > MAX_MESSAGES) log.firstElementChild.remove();
  if (atBottom || log.hidden) log.scrollTop = log.scrollHeight;
}

function showMessage(r, data) {
  r.roomLive.learn(data);
  const m = normalize(data, myId);
  const li = el("li", m.mine ? "msg mine" : "msg");
  const meta = el("span", "meta");
  meta.append(el("span", "user", m.user));
  if (m.mine) meta.append(el("span", "you", "you"));
  const time = el("time", "", fmtTime(m.time));
  time.dateTime = m.time.toISOString();
  time.title = m.time.toLocaleString();
  meta.append(time);
  li.append(meta, el("span", "text", m.text));
  append(r, li);
  if (r !== active) {
    r.unread += 1;
    r.badge.textContent = r.unread > 99 ? "99+" : String(r.unread);
  }
}

/** A line in room r, or in every room when r is null; a notice equal to the
 *  room's last line is not repeated (no spam while the network flaps). */
function notice(r, text, kind) {
  const targets = r ? [r] : [...rooms.values()];
  for (const t of targets) {
    const last = t.log.lastElementChild;
    if (last && last.classList.contains("notice") && last.textContent === text) continue;
    append(t, el("li", "notice" + (kind ? " " + kind : ""), text));
  }
}

// ---- sending -------------------------------------------------------------

ui.form.addEventListener("submit", (ev) => {
  ev.preventDefault();
  const text = ui.text.value.trim();
  if (!text || !active || client.state !== "connected") return;
  const room = active;
  const user = clip(ui.nick.value.trim() || "guest", MAX_USER);
  ui.text.value = "";
  const done = (ack, err) => {
    // too_large: wsgate.js refused it before sending (the gateway would
    // have closed the connection with 1009); the text is kept to shorten.
    const o = err && err.code === "too_large"
      ? { text: "not sent (too long: " + err.size + " bytes, the gateway takes at most " + err.limit + ")", kind: "bad", resend: true }
      : publishOutcome(ack, err);
    if (!o) return;
    notice(room, o.text + ": " + clip(text, 80), o.kind);
    if (o.resend && !ui.text.value) ui.text.value = text;
  };
  client.publish(room.name, { user, text, ts: Date.now(), cid: myId, sid: client.session }).then((ack) => done(ack), (err) => done(null, err));
});

ui.joinForm.addEventListener("submit", (ev) => {
  ev.preventDefault();
  const name = ui.join.value.trim().replace(/^#/, "");
  if (name && joinRoom(name)) ui.join.value = "";
});

window.addEventListener("hashchange", () => {
  const name = roomFromHash();
  if (name) joinRoom(name);
});
// Back online: do not wait for the backoff.
window.addEventListener("online", () => client.reconnectNow());

// ---- start ---------------------------------------------------------------

{
  const fromHash = roomFromHash();
  const saved = savedRooms();
  const initial = saved.length ? saved : fromHash ? [] : [DEFAULT_ROOM];
  for (const name of initial) joinRoom(name, { activate: false });
  if (fromHash) joinRoom(fromHash);
  else switchRoom(initial[0]);
}
