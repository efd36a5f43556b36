// wsgate cluster dashboard: polls GET /api/cluster every second with the
// key entered (sent as a Bearer header, kept for this tab in sessionStorage)
// and shows the nodes, totals, busiest channels and a chart of the rates;
// publishes through POST /api/publish and reads history through
// GET /api/history. Text only goes into the page through textContent.
const POLL_MS = 1000;
const HISTORY_POINTS = 300; // 5 minutes of one-second samples
const HISTORY_SHOWN = 20;   // recent messages in the inspector

const $ = (id) => document.getElementById(id);
let key = sessionStorage.getItem("wsgate-admin-key") || "";
let timer = null;
let last = null; // the last cluster view
const rates = []; // { in, out } per poll, oldest first

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

function setStatus(state, text) {
  $("status").dataset.state = state;
  $("status").textContent = text;
}

async function api(method, path, body) {
  const headers = { Authorization: "Bearer " + key };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const r = await fetch(path, { method, headers, body, cache: "no-store", signal: AbortSignal.timeout(5000) });
  let json = null;
  try { json = await r.json(); } catch (e) { /* not JSON: reported by status */ }
  return { status: r.status, json };
}

// "1d 2h", "3h 4m", "5m 6s", "7s"
function duration(s) {
  const d = Math.floor(s / 86400), h = Math.floor(s / 3600) % 24, m = Math.floor(s / 60) % 60;
  if (d) return `${d}d ${h}h`;
  if (h) return `${h}h ${m}m`;
  if (m) return `${m}m ${s % 60}s`;
  return `${s}s`;
}

function bytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1048576) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1048576).toFixed(1)} MiB`;
}

function renderTotals(t) {
  for (const k of ["nodes", "connections", "subscriptions", "channels", "in_per_s", "out_per_s"]) $("t-" + k).textContent = t[k];
  $("t-queue_bytes").textContent = bytes(t.queue_bytes);
}

function renderNodes(nodes) {
  const body = $("nodes").tBodies[0];
  const rows = nodes.map((n) => {
    const tr = el("tr");
    tr.dataset.node = n.node;
    const cells = [
      [n.node], [n.address], [n.version], [duration(n.uptime)],
      [n.connections, "num", "connections"], [n.subscriptions, "num", "subscriptions"],
      [n.channels, "num", "channels"], [n.in_per_s, "num", "in_per_s"], [n.out_per_s, "num", "out_per_s"],
      [bytes(n.queue_bytes), "num", "queue_bytes"],
      [n.broker, n.broker === "up" ? "" : "down", "broker"],
      [n.draining ? "draining" : "serving", n.draining ? "draining" : "", "state"],
    ];
    for (const [text, cls, k] of cells) {
      const td = el("td", text, cls);
      if (k) td.dataset.k = k;
      tr.append(td);
    }
    return tr;
  });
  body.replaceChildren(...rows);
}

function renderChannels(channels) {
  const rows = channels.map((c) => {
    const tr = el("tr");
    tr.dataset.channel = c.channel;
    const name = el("td", c.channel);
    name.title = "inspect";
    name.addEventListener("click", () => { $("inspect-channel").value = c.channel; inspect(c.channel); });
    const per = Object.entries(c.nodes).map(([n, k]) => `${n}: ${k}`).join(", ");
    tr.append(name, el("td", c.subscribers, "num"), el("td", per));
    return tr;
  });
  $("channels").tBodies[0].replaceChildren(...rows);
}

function drawChart() {
  const cv = $("chart");
  const ratio = window.devicePixelRatio || 1;
  const w = cv.clientWidth || cv.width, h = cv.clientHeight || cv.height;
  if (cv.width !== Math.round(w * ratio)) { cv.width = Math.round(w * ratio); cv.height = Math.round(h * ratio); }
  const g = cv.getContext("2d");
  g.setTransform(ratio, 0, 0, ratio, 0, 0);
  g.clearRect(0, 0, w, h);
  const css = getComputedStyle(document.documentElement);
  const top = Math.max(1, ...rates.map((r) => Math.max(r.in, r.out)));
  const pad = 18, x = (i) => w - (rates.length - 1 - i) * (w / (HISTORY_POINTS - 1));
  const y = (v) => h - pad - (v / top) * (h - 2 * pad);
  g.fillStyle = css.getPropertyValue("--muted");
  g.font = "11px system-ui, sans-serif";
  g.fillText(`${top} /s`, 4, 12);
  g.strokeStyle = css.getPropertyValue("--line");
  g.beginPath(); g.moveTo(0, y(0)); g.lineTo(w, y(0)); g.stroke();
  for (const [k, color] of [["in", "--in"], ["out", "--out"]]) {
    g.strokeStyle = css.getPropertyValue(color);
    g.lineWidth = 1.5;
    g.beginPath();
    rates.forEach((r, i) => (i ? g.lineTo(x(i), y(r[k])) : g.moveTo(x(i), y(r[k]))));
    g.stroke();
  }
}

function renderInspectorNodes(channel) {
  if ($("inspect").hidden || $("inspect").dataset.channel !== channel || !last) return;
  const c = last.channels.find((x) => x.channel === channel);
  const items = c ? Object.entries(c.nodes).map(([n, k]) => el("li", `${n}: ${k}`))
    : [el("li", "no subscribers among the busiest channels of any node")];
  $("inspect-nodes").replaceChildren(...items);
}

async function inspect(channel) {
  if (!channel) return;
  $("inspect").hidden = false;
  $("inspect").dataset.channel = channel;
  renderInspectorNodes(channel);
  $("inspect-history-state").textContent = "reading…";
  $("inspect-history").replaceChildren();
  try {
    const r = await api("GET", "/api/history?channel=" + encodeURIComponent(channel));
    if (r.status !== 200) {
      $("inspect-history-state").textContent = r.json?.message || `HTTP ${r.status}`;
      return;
    }
    const msgs = r.json.messages.slice(-HISTORY_SHOWN);
    $("inspect-history-state").textContent = `epoch ${r.json.epoch}, offset ${r.json.offset}, ${r.json.messages.length} kept`;
    $("inspect-history").replaceChildren(...msgs.map((m) => el("li", `#${m.offset} ${JSON.stringify(m.data)}`)));
  } catch (e) {
    $("inspect-history-state").textContent = "history read failed: " + e.message;
  }
}

async function poll() {
  timer = null;
  try {
    const r = await api("GET", "/api/cluster");
    if (r.status !== 200) {
      setStatus("error", r.json?.message || `HTTP ${r.status}`);
    } else {
      last = r.json;
      renderTotals(last.totals);
      renderNodes(last.nodes);
      renderChannels(last.channels);
      rates.push({ in: last.totals.in_per_s, out: last.totals.out_per_s });
      if (rates.length > HISTORY_POINTS) rates.shift();
      drawChart();
      renderInspectorNodes($("inspect").dataset.channel);
      const note = last.complete ? "" : " (the broker is unreachable: this node only)";
      setStatus("ok", `${last.totals.nodes} node(s), via ${last.self}, ${new Date().toLocaleTimeString()}${note}`);
    }
  } catch (e) {
    setStatus("error", "cannot reach the gateway: " + e.message);
  }
  if (key) timer = setTimeout(poll, POLL_MS);
}

function start() {
  if (timer) clearTimeout(timer);
  timer = null;
  rates.length = 0;
  if (key) {
    setStatus("idle", "loading…");
    poll();
  }
}

$("key-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  key = $("key").value.trim();
  sessionStorage.setItem("wsgate-admin-key", key);
  start();
});

$("inspect-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  inspect($("inspect-channel").value.trim());
});

$("publish-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const out = $("publish-result");
  let data;
  try {
    data = JSON.parse($("publish-data").value);
  } catch (e) {
    out.dataset.ok = "false";
    out.textContent = "data is not JSON: " + e.message;
    return;
  }
  try {
    const channel = $("publish-channel").value.trim();
    const r = await api("POST", "/api/publish", JSON.stringify({ channel, data }));
    out.dataset.ok = String(r.status === 200);
    out.textContent = r.status === 200 ? `published on ${channel}` + (r.json.offset ? ` at offset ${r.json.offset}` : "")
      : `${r.status}: ${r.json?.message || "refused"}`;
  } catch (e) {
    out.dataset.ok = "false";
    out.textContent = "publish failed: " + e.message;
  }
});

$("key").value = key;
start();
