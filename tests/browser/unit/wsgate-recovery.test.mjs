// Unit tests of web/wsgate.js on history channels (publishes whose ack a
// disconnect swallowed, the history loaded on joining, presence) and of the
// chat's view of them (web/chat-room-live.js).
//   node --test tests/browser/unit/
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { FakeClock, FakeNet, flush, loadWebModule, loadWsgate } from "./fakes.mjs";

const { Client } = await loadWsgate();

/** A connected client (node gw1) on a fake network and clock, with channel
 *  "room" subscribed at epoch E, top offset `top`; returns the messages seen. */
function joined({ top = 3, subscribeOptions = {} } = {}) {
  const clock = new FakeClock();
  const net = new FakeNet();
  const client = new Client("ws://lb.test/ws", {
    WebSocket: net.WebSocket, setTimeout: clock.setTimeout, clearTimeout: clock.clearTimeout,
    random: () => 0.5, pingInterval: 0,
  });
  const got = [];
  const subscribed = [];
  client.subscribe("room", (d, info) => got.push([d, info.offset]), { onSubscribed: (s) => subscribed.push(s), ...subscribeOptions });
  client.open();
  net.last.accept("gw1");
  const [f] = net.last.frames();
  net.last.push({ op: "ack", id: f.id, epoch: "E", offset: top });
  return { clock, net, client, got, subscribed };
}

const msg = (offset, data) => ({ op: "message", channel: "room", epoch: "E", offset, data });

/** Publish, then lose the connection before the ack; returns the settled outcome promise. */
async function publishThenDrop(j, data) {
  const outcome = j.client.publish("room", data).then((ack) => ({ ack }), (err) => ({ err }));
  const sent = j.net.last.lastFrame();
  assert.equal(sent.op, "publish");
  return { outcome, sent };
}

/** Reconnect (on gw2) and return the resubscribe frame. */
function reconnect(j) {
  j.net.last.drop();
  j.clock.tick(1000);
  j.net.last.accept("gw2");
  const [r] = j.net.last.frames();
  assert.equal(r.op, "subscribe");
  return r;
}

describe("publishes whose ack was lost", () => {
  test("found in the recovered range: resolved as delivered, never sent again", async () => {
    const j = joined();
    const data = { user: "ana", text: "hi", cid: "p1", ts: 1 };
    const { outcome } = await publishThenDrop(j, data);
    const r = reconnect(j);
    assert.deepEqual(r.recover, { epoch: "E", offset: 3 });
    j.net.last.push({ op: "ack", id: r.id, epoch: "E", offset: 5, recovered: true }, msg(4, "other"), msg(5, data));
    const { ack, err } = await outcome;
    assert.equal(err, undefined);
    assert.deepEqual(ack, { op: "ack", id: ack.id, channel: "room", confirmed: true, epoch: "E", offset: 5 });
    assert.deepEqual(j.got.map(([, o]) => o), [4, 5]);
    assert.equal(j.net.last.frames().filter((f) => f.op === "publish").length, 0);
  });

  test("not in the recovered range: rejected as not_sent once recovery reached the top", async () => {
    const j = joined();
    const { outcome } = await publishThenDrop(j, { text: "lost", cid: "p1", ts: 2 });
    const r = reconnect(j);
    j.net.last.push({ op: "ack", id: r.id, epoch: "E", offset: 5, recovered: true }, msg(4, "a"));
    let settled = false;
    outcome.then(() => { settled = true; });
    await flush();
    assert.equal(settled, false, "offset 5 is still to come");
    j.net.last.push(msg(5, "b"));
    const { err } = await outcome;
    assert.equal(err.code, "not_sent");
    assert.equal(err.channel, "room");
    assert.equal(j.net.last.frames().filter((f) => f.op === "publish").length, 0);
  });

  test("nothing missed at all: not_sent at the ack", async () => {
    const j = joined();
    const { outcome } = await publishThenDrop(j, { text: "x" });
    const r = reconnect(j);
    j.net.last.push({ op: "ack", id: r.id, epoch: "E", offset: 3, recovered: true });
    assert.equal((await outcome).err.code, "not_sent");
  });

  test("delivered before the drop, ack lost: resolved as delivered at the drop", async () => {
    const j = joined();
    const data = { text: "seen", cid: "p1", ts: 3 };
    const { outcome } = await publishThenDrop(j, data);
    j.net.last.push(msg(4, data));
    j.net.last.drop();
    const { ack } = await outcome;
    assert.equal(ack.confirmed, true);
    assert.equal(ack.offset, 4);
  });

  test("recovery refused: maybe_sent, and the caller hears why", async () => {
    const j = joined();
    const { outcome } = await publishThenDrop(j, { text: "?" });
    const r = reconnect(j);
    j.net.last.push({ op: "ack", id: r.id, epoch: "E2", offset: 0, recovered: false, reason: "epoch_changed" });
    const { err } = await outcome;
    assert.equal(err.code, "maybe_sent");
    assert.match(err.message, /could not be recovered/);
  });

  test("no reconnection within requestTimeout: maybe_sent, not a bare timeout", async () => {
    const j = joined();
    const { outcome } = await publishThenDrop(j, { text: "?" });
    j.net.last.drop();
    j.clock.tick(10000);
    assert.equal((await outcome).err.code, "maybe_sent");
  });

  test("a channel without history: disconnected, as before", async () => {
    const clock = new FakeClock();
    const net = new FakeNet();
    const client = new Client("ws://lb.test/ws", { WebSocket: net.WebSocket, setTimeout: clock.setTimeout, clearTimeout: clock.clearTimeout, pingInterval: 0 });
    client.subscribe("room", () => {});
    client.open();
    net.last.accept("gw1");
    net.last.ackAll(); // plain ack: no position
    const p = client.publish("room", "x").catch((e) => e);
    net.last.drop();
    assert.equal((await p).code, "disconnected");
  });
});

describe("history on joining", () => {
  test("the last N messages come first, then live ones, each once and in order", () => {
    const j = joined({ top: 10, subscribeOptions: { history: 3 } });
    const frames = j.net.last.frames();
    assert.deepEqual(frames.slice(1).map((f) => [f.op, f.recover]), [["unsubscribe", undefined], ["subscribe", { epoch: "E", offset: 7 }]]);
    assert.equal(j.subscribed.length, 0, "not live before the history is there");
    j.net.last.push(msg(11, "live 11")); // from the first subscription: held
    j.net.last.push({ op: "ack", id: frames[1].id }, { op: "ack", id: frames[2].id, epoch: "E", offset: 11, recovered: true },
      msg(8, "m8"), msg(9, "m9"), msg(10, "m10"), msg(11, "live 11"), msg(12, "live 12"));
    assert.deepEqual(j.got.map(([, o]) => o), [8, 9, 10, 11, 12]);
    assert.deepEqual(j.subscribed, [{ channel: "room", node: "gw1", resubscribed: false, history: true }]);
  });

  test("history gone (trimmed): what arrived meanwhile is delivered, no recovery_failed", () => {
    const j = joined({ top: 10, subscribeOptions: { history: 50 } });
    const failed = [];
    j.client.on("recovery_failed", (e) => failed.push(e));
    const frames = j.net.last.frames();
    j.net.last.push(msg(11, "live 11"));
    j.net.last.push({ op: "ack", id: frames[1].id }, { op: "ack", id: frames[2].id, epoch: "E", offset: 11, recovered: false, reason: "trimmed" },
      msg(12, "live 12"));
    assert.deepEqual(j.got.map(([, o]) => o), [11, 12]);
    assert.equal(j.subscribed[0].history, false);
    assert.deepEqual(failed, []);
  });

  test("an empty channel loads nothing; a reconnect recovers, it does not reload", () => {
    const j = joined({ top: 0, subscribeOptions: { history: 5 } });
    assert.equal(j.net.last.frames().length, 1);
    j.net.last.push(msg(1, "m1"));
    const r = reconnect(j);
    assert.deepEqual(r.recover, { epoch: "E", offset: 1 });
  });

  test("cut off while loading: the next connection recovers from where the history starts", () => {
    const j = joined({ top: 10, subscribeOptions: { history: 4 } });
    j.net.last.push(msg(11, "held"));
    const r = reconnect(j);
    assert.deepEqual(r.recover, { epoch: "E", offset: 6 });
  });
});

describe("presence", () => {
  test("join/leave events reach onPresence; presence() lists the members", async () => {
    const events = [];
    const j = joined({ subscribeOptions: { presence: true, onPresence: (e) => events.push(e) } });
    assert.equal(j.net.last.frames()[0].presence, true);
    j.net.last.push({ op: "join", channel: "room", session: "s9", node: "gw2" },
      { op: "leave", channel: "room", session: "s8", sub: "ana", node: "gw3" },
      { op: "join", channel: "other", session: "s7", node: "gw2" }, // not subscribed: ignored
      { op: "join", channel: "room" }); // no session: ignored
    assert.deepEqual(events, [
      { type: "join", channel: "room", session: "s9", node: "gw2" },
      { type: "leave", channel: "room", session: "s8", sub: "ana", node: "gw3" },
    ]);
    const p = j.client.presence("room");
    const q = j.net.last.lastFrame();
    assert.deepEqual([q.op, q.channel], ["presence", "room"]);
    const reply = { op: "presence", id: q.id, channel: "room", sessions: 1, users: 0, members: [{ session: "s9", node: "gw2" }] };
    j.net.last.push(reply);
    assert.deepEqual(await p, reply);
  });

  test("a channel without presence: the subscription goes on without it", async () => {
    const clock = new FakeClock();
    const net = new FakeNet();
    const client = new Client("ws://lb.test/ws", { WebSocket: net.WebSocket, setTimeout: clock.setTimeout, clearTimeout: clock.clearTimeout, pingInterval: 0 });
    const subscribed = [];
    const errors = [];
    client.on("error", (e) => errors.push(e));
    client.subscribe("room", () => {}, { presence: true, onSubscribed: (s) => subscribed.push(s), onError: (e) => errors.push(e) });
    client.open();
    net.last.accept("gw1");
    const [f] = net.last.frames();
    net.last.push({ op: "error", id: f.id, code: "presence_off", message: "no presence on this channel" });
    const [, g] = net.last.frames();
    assert.equal(g.op, "subscribe");
    assert.equal(g.presence, undefined);
    net.last.push({ op: "ack", id: g.id });
    assert.deepEqual(subscribed, [{ channel: "room", node: "gw1", resubscribed: false, presence: false }]);
    assert.deepEqual(errors, []);
    const p = client.presence("room").catch((e) => e);
    net.last.push({ op: "error", id: net.last.lastFrame().id, code: "presence_off", message: "no presence" });
    assert.equal((await p).code, "presence_off");
  });
});

describe("the chat's room view (web/chat-room-live.js)", async () => {
  const { RoomLive, publishOutcome } = await loadWebModule("chat-room-live.js");

  /** A RoomLive on a stand-in client whose presence() answers `members`. */
  function room(members) {
    const client = { session: "me1", presence: async () => ({ op: "presence", members }) };
    const notices = [];
    let changes = 0;
    const r = new RoomLive(client, "lobby", { notice: (t, k) => notices.push([t, k]), onChange: () => { changes += 1; } });
    return { client, r, notices, changes: () => changes };
  }

  test("members from presence(), join/leave notices named by the nick of their messages", async () => {
    const { r, notices } = room([{ session: "me1", node: "gw1" }, { session: "s2", node: "gw2" }]);
    assert.deepEqual(r.options().presence, true);
    r.subscribed({ channel: "lobby", resubscribed: false, presence: true });
    await flush();
    assert.deepEqual([...r.members.keys()], ["me1", "s2"]);
    r.learn({ user: "bo", text: "hi", sid: "s2" });
    assert.equal(r.label(r.members.get("s2")), "bo");
    assert.equal(r.label(r.members.get("me1")), "guest (you)");
    r.options().onPresence({ type: "join", channel: "lobby", session: "s3", sub: "cy", node: "gw3" });
    r.options().onPresence({ type: "leave", channel: "lobby", session: "s2", node: "gw2" });
    r.options().onPresence({ type: "leave", channel: "lobby", session: "s2", node: "gw2" }); // twice: once
    assert.deepEqual(notices, [["cy joined", "presence"], ["bo left", "presence"]]);
  });

  test("after a reconnect the page's dead session is neither listed nor announced", async () => {
    const { client, r, notices } = room([{ session: "me1" }]);
    r.subscribed({ presence: true });
    await flush();
    client.session = "me2";
    r.subscribed({ resubscribed: true, recovered: true, presence: true });
    r.options().onPresence({ type: "join", channel: "lobby", session: "me2" });
    r.options().onPresence({ type: "leave", channel: "lobby", session: "me1" });
    assert.deepEqual(notices, [["anything missed while reconnecting follows:", "history"]]);
    assert.equal(r._ghost("me1"), true);
    assert.equal(r._ghost("me2"), false);
  });

  test("history and lost lines; no presence on the server: an empty, hidden list", async () => {
    const { r, notices } = room([]);
    r.subscribed({ history: true, presence: false });
    r.lost("trimmed");
    assert.equal(r.presence, false);
    assert.deepEqual(notices, [["the room's recent messages:", "history"], ["some messages could not be recovered (trimmed)", "bad lost"]]);
  });

  test("publishOutcome: what the user is told, and whether the text comes back to resend", () => {
    assert.equal(publishOutcome({ op: "ack", id: 1 }), null);
    assert.deepEqual(publishOutcome({ op: "ack", confirmed: true }), { text: "delivered (confirmed after reconnecting)", kind: "history", resend: false });
    assert.equal(publishOutcome(null, { code: "not_sent" }).resend, true);
    assert.match(publishOutcome(null, { code: "not_sent" }).text, /^not sent/);
    assert.match(publishOutcome(null, { code: "maybe_sent" }).text, /^may not have been sent/);
    assert.match(publishOutcome(null, { code: "rate_limited", message: "slow down" }).text, /slow down/);
  });
});
