// Unit tests of web/wsgate.js in Node (no browser, no server): a fake
// WebSocket and a virtual clock are injected.   node --test tests/browser/unit/
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { FakeClock, FakeFetch, FakeNet, flush, loadWsgate } from "./fakes.mjs";

const { splitFrames, backoffDelay, buildUrl, isValidChannel, connect, Client, WsgateError, DEFAULT_BACKOFF } = await loadWsgate();

/** A client on a fake network and clock, with every event recorded. */
function setup(options = {}) {
  const clock = new FakeClock();
  const net = new FakeNet();
  let r = 0.5;
  const events = [];
  const client = new Client(options.url || "ws://lb.test/ws", {
    WebSocket: net.WebSocket,
    setTimeout: clock.setTimeout,
    clearTimeout: clock.clearTimeout,
    random: () => r,
    pingInterval: 0,
    fetch: () => Promise.reject(new Error("no network in unit tests")),
    ...options,
  });
  for (const type of ["state", "welcome", "close", "error", "refused"]) client.on(type, (e) => events.push([type, e]));
  client.open();
  return {
    clock, net, client, events,
    setRandom: (v) => { r = v; },
    states: () => events.filter(([t]) => t === "state").map(([, e]) => e.state),
    errors: () => events.filter(([t]) => t === "error").map(([, e]) => e),
  };
}

describe("splitFrames", () => {
  test("one object per frame", () => {
    assert.deepEqual(splitFrames('{"op":"pong","id":1}'), { objects: [{ op: "pong", id: 1 }], errors: [] });
  });

  test("a batch: several objects separated by newlines, blank lines and CRs ignored", () => {
    const text = '{"op":"ack","id":1}\n{"op":"message","channel":"c","data":{"t":"a\\nb"}}\n\r\n{"op":"pong","id":2}\r\n';
    const { objects, errors } = splitFrames(text);
    assert.deepEqual(errors, []);
    assert.deepEqual(objects, [
      { op: "ack", id: 1 },
      { op: "message", channel: "c", data: { t: "a\nb" } },
      { op: "pong", id: 2 },
    ]);
  });

  test("a bad line is reported and the good ones are kept", () => {
    const { objects, errors } = splitFrames('{"op":"ack","id":1}\n{oops\n[1,2]\n3\nnull\n{"op":"pong","id":2}');
    assert.deepEqual(objects, [{ op: "ack", id: 1 }, { op: "pong", id: 2 }]);
    assert.deepEqual(errors.map((e) => e.reason), ["invalid JSON", "not a JSON object", "not a JSON object", "not a JSON object"]);
    assert.equal(errors[0].line, "{oops");
  });

  test("binary and empty frames", () => {
    assert.deepEqual(splitFrames(new ArrayBuffer(4)).errors, [{ line: null, reason: "binary frame" }]);
    assert.deepEqual(splitFrames(""), { objects: [], errors: [] });
    assert.deepEqual(splitFrames("\n\n"), { objects: [], errors: [] });
  });
});

describe("backoffDelay", () => {
  test("equal jitter: attempt n lies in [cap/2, cap] with cap = min * 2^n", () => {
    assert.equal(backoffDelay(0, undefined, () => 0), 250);
    assert.equal(backoffDelay(0, undefined, () => 1), 500);
    assert.equal(backoffDelay(1, undefined, () => 0), 500);
    assert.equal(backoffDelay(1, undefined, () => 1), 1000);
    assert.equal(backoffDelay(3, undefined, () => 0.5), 3000); // cap 4000
  });

  test("capped at max however many attempts", () => {
    for (const n of [5, 6, 10, 30, 64, 1000, Infinity]) {
      const lo = backoffDelay(n, undefined, () => 0);
      const hi = backoffDelay(n, undefined, () => 1);
      assert.ok(lo >= DEFAULT_BACKOFF.max / 2 && hi <= DEFAULT_BACKOFF.max, `attempt ${n}: ${lo}..${hi}`);
    }
    assert.equal(backoffDelay(50, { min: 100, max: 1000, factor: 3 }, () => 1), 1000);
  });

  test("grows monotonically up to the cap, never zero", () => {
    let prev = 0;
    for (let n = 0; n < 12; n++) {
      const d = backoffDelay(n, undefined, () => 1);
      assert.ok(d >= prev, `attempt ${n}`);
      assert.ok(backoffDelay(n, undefined, () => 0) > 0);
      prev = d;
    }
  });

  test("jitter spreads the delays", () => {
    const seen = new Set();
    for (let i = 0; i < 50; i++) seen.add(backoffDelay(4));
    assert.ok(seen.size > 10, "50 draws gave " + seen.size + " distinct delays");
  });

  test("bad inputs are clamped", () => {
    assert.equal(backoffDelay(-3, undefined, () => 0), 250);
    assert.equal(backoffDelay(NaN, undefined, () => 1), 500);
    assert.equal(backoffDelay(0, undefined, () => 7), 500);
    assert.equal(backoffDelay(0, undefined, () => NaN), 250);
  });
});

describe("isValidChannel / buildUrl", () => {
  test("channel names: 1-200 of A-Z a-z 0-9 _ - . : @ /", () => {
    for (const ok of ["a", "chat", "room:lobby", "user@example.org/inbox", "A-Z_0.9", "x".repeat(200)]) assert.ok(isValidChannel(ok), ok);
    for (const bad of ["", "x".repeat(201), "has space", "é", "a\nb", "a*", null, undefined, 42, {}]) assert.ok(!isValidChannel(bad), String(bad));
  });

  test("http(s) become ws(s), batch=1 and the token are added, the query is kept", () => {
    assert.equal(buildUrl("/ws", { base: "http://h:8080/chat/" }), "ws://h:8080/ws?batch=1");
    assert.equal(buildUrl("/ws", { base: "https://h/", token: "a b&c" }), "wss://h/ws?batch=1&token=a+b%26c");
    assert.equal(buildUrl("ws://h/ws?x=1#frag", { batch: false }), "ws://h/ws?x=1");
    assert.equal(buildUrl("wss://h/ws", { token: "" }), "wss://h/ws?batch=1");
    assert.throws(() => buildUrl("ftp://h/ws"), TypeError);
    assert.throws(() => buildUrl("/ws"), TypeError); // relative, no page to resolve against
  });
});

describe("Client: connection", () => {
  test("connects to url?batch=1&token=..., connected on welcome", () => {
    const { net, client, events, states } = setup({ token: "tok" });
    assert.equal(net.sockets.length, 1);
    assert.equal(net.last.url, "ws://lb.test/ws?batch=1&token=tok");
    assert.deepEqual(states(), ["connecting"]);
    net.last.accept("gw2", "sess-9");
    assert.equal(client.state, "connected");
    assert.equal(client.node, "gw2");
    assert.equal(client.session, "sess-9");
    const welcome = events.find(([t]) => t === "welcome")[1];
    assert.deepEqual(welcome, { node: "gw2", session: "sess-9", resumed: false });
  });

  test("connect() returns an opened client; options.on listeners see the first state", () => {
    const net = new FakeNet();
    const seen = [];
    const c = connect("ws://x/ws", { WebSocket: net.WebSocket, setTimeout: () => 0, clearTimeout: () => {}, on: { state: (s) => seen.push(s.state) } });
    assert.ok(c instanceof Client);
    assert.deepEqual(seen, ["connecting"]);
    assert.equal(net.sockets.length, 1);
  });

  test("a token function is called for every connection; a promise works too", async () => {
    let n = 0;
    const { net, clock } = setup({ token: () => Promise.resolve("t" + ++n) });
    await flush();
    assert.equal(net.last.url, "ws://lb.test/ws?batch=1&token=t1");
    net.last.accept();
    net.last.drop();
    clock.tick(clock.pending()[0]);
    await flush();
    assert.equal(net.sockets.length, 2);
    assert.equal(net.last.url, "ws://lb.test/ws?batch=1&token=t2");
  });

  test("a token function that throws or rejects is reported and retried with backoff", async () => {
    let n = 0;
    const { net, clock, client, errors } = setup({
      token: () => {
        n += 1;
        if (n === 1) throw new Error("no session");
        if (n === 2) return Promise.reject(new Error("auth server down"));
        return "good";
      },
    });
    assert.equal(net.sockets.length, 0);
    assert.equal(errors()[0].code, "token_error");
    clock.tick(clock.pending()[0]);
    await flush();
    assert.equal(errors()[1].code, "token_error");
    assert.equal(client.state, "connecting");
    clock.tick(clock.pending()[0]);
    await flush();
    assert.equal(net.sockets.length, 1);
    assert.equal(net.last.url, "ws://lb.test/ws?batch=1&token=good");
  });

  test("no welcome within connectTimeout: give up on the socket and retry", () => {
    const { net, clock, client } = setup({ connectTimeout: 3000 });
    net.last.readyState = 1; // TCP and upgrade fine, but the server says nothing
    clock.tick(2999);
    assert.equal(net.sockets.length, 1);
    clock.tick(1);
    assert.deepEqual(net.sockets[0].closedWith, { code: 4000, reason: "connect timeout" });
    assert.equal(client.state, "connecting");
    clock.tick(500);
    assert.equal(net.sockets.length, 2);
  });

  test("close(): socket closed with 1000, no reconnect, waiting requests rejected", async () => {
    const { net, clock, client, states } = setup();
    net.last.accept();
    const p = client.publish("c", 1);
    client.close();
    await assert.rejects(p, { code: "closed" });
    assert.equal(net.last.closedWith.code, 1000);
    assert.equal(client.state, "closed");
    assert.equal(states().at(-1), "closed");
    clock.tick(60000);
    assert.equal(net.sockets.length, 1);
    await assert.rejects(client.publish("c", 2), { code: "closed" });
  });
});

describe("Client: reconnecting", () => {
  test("a lost connection reconnects after a jittered, growing, capped delay", () => {
    const { net, clock, client, events, setRandom } = setup();
    net.last.accept("gw1");
    setRandom(1); // the top of each jitter range
    const delays = [];
    for (let i = 0; i < 8; i++) {
      net.last.drop(1006);
      const st = events.filter(([t]) => t === "state").at(-1)[1];
      assert.equal(st.state, "reconnecting");
      delays.push(st.delay);
      assert.deepEqual(clock.pending(), [st.delay]);
      const before = net.sockets.length;
      clock.tick(st.delay - 1);
      assert.equal(net.sockets.length, before, "not before the delay");
      clock.tick(1);
      assert.equal(net.sockets.length, before + 1, "right after it");
    }
    assert.deepEqual(delays, [500, 1000, 2000, 4000, 8000, 15000, 15000, 15000]);
    assert.equal(client.attempt, 8);
  });

  test("a connection that became healthy resets the backoff", () => {
    const { net, clock, client, setRandom } = setup();
    setRandom(0);
    client.subscribe("room", () => {});
    net.last.drop();
    clock.tick(10000);
    net.last.drop();
    clock.tick(10000);
    assert.equal(client.attempt, 2);
    net.last.accept();
    assert.equal(client.attempt, 2, "welcome alone is not enough: the subscriptions must be live");
    net.last.ackAll();
    assert.equal(client.attempt, 0);
    net.last.drop();
    assert.deepEqual(clock.pending(), [250]);
  });

  test("1001 going away reconnects at once; a second 1001 in a row backs off", () => {
    const { net, clock, client, events } = setup();
    net.last.accept("gw1");
    net.last.ackAll();
    net.last.drop(1001, "going away");
    const st = events.filter(([t]) => t === "state").at(-1)[1];
    assert.equal(st.state, "reconnecting");
    assert.equal(st.delay, 0);
    assert.equal(st.code, 1001);
    clock.tick(0);
    assert.equal(net.sockets.length, 2);
    net.last.drop(1001, "going away"); // landed on another draining replica
    assert.ok(clock.pending()[0] > 0, "no tight loop");
    clock.tick(DEFAULT_BACKOFF.max);
    net.last.accept("gw3");
    net.last.ackAll();
    assert.equal(client.node, "gw3");
    net.last.drop(1001, "going away");
    assert.deepEqual(clock.pending(), [0], "healthy again: the next 1001 is quick again");
  });

  test("close events carry the code and reason; 1008/1009 back off like any loss", () => {
    const { net, clock, events } = setup();
    net.last.accept("gw1");
    net.last.drop(1008, "slow consumer");
    const close = events.filter(([t]) => t === "close").at(-1)[1];
    assert.deepEqual(close, { code: 1008, reason: "slow consumer", node: "gw1", wasConnected: true, local: false });
    assert.ok(clock.pending()[0] >= 250);
  });

  test("reconnectNow() skips the wait", () => {
    const { net, client } = setup();
    net.last.drop();
    assert.equal(client.reconnectNow(), true);
    assert.equal(net.sockets.length, 2);
    assert.equal(client.reconnectNow(), false, "nothing scheduled now");
  });

  test("state sequence: connecting → connected → reconnecting → connected", () => {
    const { net, clock, states } = setup();
    net.last.accept();
    net.last.drop();
    clock.tick(1000);
    net.last.accept();
    assert.deepEqual(states().filter((s, i, a) => s !== a[i - 1]), ["connecting", "connected", "reconnecting", "connected"]);
  });
});

describe("Client: subscriptions", () => {
  test("subscribe before connecting: sent after the welcome; messages reach the handler", () => {
    const { net, client } = setup();
    const got = [];
    const subscribed = [];
    client.subscribe("room:a", (data, info) => got.push([data, info.channel]), { onSubscribed: (s) => subscribed.push(s) });
    assert.deepEqual(net.last.sent, []);
    net.last.accept("gw1");
    const [f] = net.last.frames();
    assert.equal(f.op, "subscribe");
    assert.equal(f.channel, "room:a");
    assert.ok(Number.isInteger(f.id));
    net.last.push({ op: "ack", id: f.id });
    assert.deepEqual(subscribed, [{ channel: "room:a", node: "gw1", resubscribed: false }]);
    assert.deepEqual(client.subscriptions(), [{ channel: "room:a", status: "live" }]);
    net.last.push({ op: "message", channel: "room:a", data: { text: "hi" } }, { op: "message", channel: "other", data: 1 }, { op: "message", channel: "room:a", data: [2] });
    assert.deepEqual(got, [[{ text: "hi" }, "room:a"], [[2], "room:a"]]);
  });

  test("every channel is resubscribed once after a reconnect, and only those still wanted", () => {
    const { net, clock, client } = setup();
    const got = [];
    client.subscribe("a", (d) => got.push("a" + d));
    const offB = client.subscribe("b", (d) => got.push("b" + d));
    client.subscribe("c", (d) => got.push("c" + d));
    net.last.accept("gw1");
    net.last.ackAll();
    offB();
    net.last.ackAll();
    net.last.drop();
    clock.tick(1000);
    const resubs = [];
    client.subscribe("a", () => {}, { onSubscribed: (s) => resubs.push(s) }); // a second handler: no new subscribe
    net.last.accept("gw2");
    const frames = net.last.frames();
    assert.deepEqual(frames.map((f) => [f.op, f.channel]), [["subscribe", "a"], ["subscribe", "c"]]);
    assert.deepEqual(client.subscriptions().map((s) => s.status), ["pending", "pending"]);
    net.last.ackAll();
    assert.deepEqual(resubs, [{ channel: "a", node: "gw2", resubscribed: true }]);
    net.last.push({ op: "message", channel: "a", data: 1 }, { op: "message", channel: "b", data: 2 }, { op: "message", channel: "c", data: 3 });
    assert.deepEqual(got, ["a1", "c3"]);
  });

  test("unsubscribe: the channel is left when its last handler goes; idempotent", () => {
    const { net, client, errors } = setup();
    const got = [];
    const off1 = client.subscribe("ch", (d) => got.push(1 + ":" + d));
    const off2 = client.subscribe("ch", (d) => got.push(2 + ":" + d));
    net.last.accept();
    assert.equal(net.last.frames().length, 1, "one subscribe for two handlers");
    net.last.ackAll();
    off1();
    off1();
    assert.equal(net.last.frames().length, 1, "still one handler: no unsubscribe");
    net.last.push({ op: "message", channel: "ch", data: "x" });
    off2();
    const last = net.last.lastFrame();
    assert.deepEqual([last.op, last.channel], ["unsubscribe", "ch"]);
    net.last.push({ op: "error", id: last.id, code: "not_subscribed", message: "not subscribed" });
    net.last.push({ op: "message", channel: "ch", data: "late" });
    assert.deepEqual(got, ["2:x"]);
    assert.deepEqual(errors(), [], "not_subscribed on unsubscribe is not an error worth reporting");
    assert.deepEqual(client.subscriptions(), []);
  });

  test("unsubscribe while the subscribe is in flight, then subscribe again: frames go in order", () => {
    const { net, client } = setup();
    net.last.accept();
    const off = client.subscribe("x", () => {});
    off();
    client.subscribe("x", () => {});
    assert.deepEqual(net.last.frames().map((f) => f.op), ["subscribe", "unsubscribe", "subscribe"]);
    net.last.ackAll();
    assert.deepEqual(client.subscriptions(), [{ channel: "x", status: "live" }]);
  });

  test("a channel refused for good (forbidden) reaches onError and is forgotten", () => {
    const { net, clock, client } = setup();
    const errs = [];
    client.subscribe("secret", () => {}, { onError: (e) => errs.push(e) });
    client.subscribe("open", () => {});
    net.last.accept();
    const [s1, s2] = net.last.frames();
    net.last.push({ op: "error", id: s1.id, code: "forbidden", message: "no grant" }, { op: "ack", id: s2.id });
    assert.equal(errs.length, 1);
    assert.ok(errs[0] instanceof WsgateError);
    assert.equal(errs[0].code, "forbidden");
    assert.equal(errs[0].message, "no grant");
    assert.equal(errs[0].channel, "secret");
    assert.equal(client.attempt, 0, "healthy: the refused channel does not count");
    net.last.drop();
    clock.tick(1000);
    net.last.accept();
    assert.deepEqual(net.last.frames().map((f) => f.channel), ["open"]);
  });

  test("broker_unavailable on a subscribe: report it, drop the connection, back off, retry", () => {
    const { net, clock, client, errors } = setup();
    client.subscribe("room", () => {});
    net.last.accept("gw1");
    const sub = net.last.frames()[0];
    net.last.push({ op: "error", id: sub.id, code: "broker_unavailable", message: "redis is down" });
    assert.equal(errors()[0].code, "broker_unavailable");
    assert.deepEqual(net.sockets[0].closedWith, { code: 4000, reason: "subscribe failed: broker_unavailable" });
    assert.equal(client.state, "reconnecting");
    assert.equal(client.attempt, 1, "not healthy: the backoff goes on growing");
    clock.tick(1000);
    net.last.accept("gw2");
    assert.deepEqual(net.last.frames().map((f) => [f.op, f.channel]), [["subscribe", "room"]]);
  });

  test("a subscribe that is never answered counts as a broken connection", () => {
    const { net, clock, client } = setup({ requestTimeout: 5000 });
    client.subscribe("room", () => {});
    net.last.accept();
    clock.tick(5000);
    assert.equal(net.sockets[0].closedWith.reason, "subscribe timeout");
    assert.equal(client.state, "reconnecting");
  });

  test("a second handler on a live channel is told at once, without a new subscribe", () => {
    const { net, client } = setup();
    client.subscribe("c", () => {});
    net.last.accept("gw4");
    net.last.ackAll();
    const told = [];
    client.subscribe("c", () => {}, { onSubscribed: (s) => told.push(s) });
    assert.deepEqual(told, [{ channel: "c", node: "gw4", resubscribed: false }]);
    assert.equal(net.last.frames().length, 1);
  });

  test("bad channel names throw at once", () => {
    const { client } = setup();
    assert.throws(() => client.subscribe("no spaces", () => {}), { code: "bad_channel" });
    assert.throws(() => client.subscribe("ok", "not a function"), TypeError);
  });
});

describe("Client: history and recovery", () => {
  test("the last position is remembered and recovered from after a reconnect", () => {
    const { net, clock, client } = setup();
    const got = [];
    const subscribed = [];
    client.subscribe("a", (d, info) => got.push([d, info.offset, info.epoch]), { onSubscribed: (s) => subscribed.push(s) });
    net.last.accept("gw1");
    const [f] = net.last.frames();
    assert.equal(f.recover, undefined); // a first subscribe has nothing to recover
    net.last.push({ op: "ack", id: f.id, epoch: "E1", offset: 3 });
    net.last.push({ op: "message", channel: "a", offset: 4, epoch: "E1", data: "m4" });
    net.last.drop();
    clock.tick(1000);
    net.last.accept("gw2");
    const [r] = net.last.frames();
    assert.deepEqual(r.recover, { epoch: "E1", offset: 4 });
    net.last.push({ op: "ack", id: r.id, epoch: "E1", offset: 6, recovered: true },
      { op: "message", channel: "a", offset: 5, epoch: "E1", data: "m5" },
      { op: "message", channel: "a", offset: 6, epoch: "E1", data: "m6" });
    assert.deepEqual(got, [["m4", 4, "E1"], ["m5", 5, "E1"], ["m6", 6, "E1"]]);
    assert.deepEqual(subscribed[1], { channel: "a", node: "gw2", resubscribed: true, recovered: true });
    net.last.drop();
    clock.tick(1000);
    net.last.accept("gw1");
    assert.deepEqual(net.last.frames()[0].recover, { epoch: "E1", offset: 6 });
  });

  test("a recovery refused, or messages lost, emits recovery_failed and moves to the new position", () => {
    const { net, clock, client } = setup();
    const failed = [];
    const subscribed = [];
    client.on("recovery_failed", (e) => failed.push(e));
    client.subscribe("a", () => {}, { onSubscribed: (s) => subscribed.push(s) });
    net.last.accept("gw1");
    net.last.push({ op: "ack", id: net.last.frames()[0].id, epoch: "E1", offset: 2 });
    net.last.drop();
    clock.tick(1000);
    net.last.accept("gw1");
    const [r] = net.last.frames();
    assert.deepEqual(r.recover, { epoch: "E1", offset: 2 });
    net.last.push({ op: "ack", id: r.id, epoch: "E2", offset: 9, recovered: false, reason: "epoch_changed" });
    assert.deepEqual(failed, [{ channel: "a", reason: "epoch_changed", epoch: "E2", offset: 9 }]);
    assert.equal(subscribed[1].recovered, false);
    assert.equal(subscribed[1].reason, "epoch_changed");
    net.last.push({ op: "lost", channel: "a", reason: "trimmed", epoch: "E2", offset: 20 });
    assert.deepEqual(failed[1], { channel: "a", reason: "trimmed", epoch: "E2", offset: 20 });
    net.last.push({ op: "lost", channel: "zzz", reason: "trimmed", epoch: "E2", offset: 1 }); // not subscribed: ignored
    assert.equal(failed.length, 2);
    net.last.drop();
    clock.tick(1000);
    net.last.accept("gw1");
    assert.deepEqual(net.last.frames()[0].recover, { epoch: "E2", offset: 20 });
  });

  test("a channel without history (plain acks and messages) never asks to recover", () => {
    const { net, clock, client } = setup();
    client.subscribe("a", () => {});
    net.last.accept("gw1");
    net.last.ackAll();
    net.last.push({ op: "message", channel: "a", data: 1 }, { op: "message", channel: "a", offset: "x", epoch: "E", data: 2 });
    net.last.drop();
    clock.tick(1000);
    net.last.accept("gw1");
    assert.equal(net.last.frames()[0].recover, undefined);
  });
});

describe("Client: requests", () => {
  test("publish resolves on its ack; replies are matched by id, in any order", async () => {
    const { net, client } = setup();
    net.last.accept();
    const p1 = client.publish("c", { n: 1 });
    const p2 = client.publish("c", { n: 2 });
    const [f1, f2] = net.last.frames();
    assert.deepEqual([f1.op, f1.channel, f1.data], ["publish", "c", { n: 1 }]);
    assert.notEqual(f1.id, f2.id);
    net.last.push({ op: "error", id: f2.id, code: "rate_limited", message: "slow down" }, { op: "ack", id: f1.id });
    assert.deepEqual(await p1, { op: "ack", id: f1.id });
    await assert.rejects(p2, (e) => e instanceof WsgateError && e.code === "rate_limited" && e.message === "slow down" && e.channel === "c");
  });

  test("publish rejects bad input without sending", async () => {
    const { net, client } = setup();
    net.last.accept();
    await assert.rejects(client.publish("bad channel", 1), { code: "bad_channel" });
    await assert.rejects(client.publish("c", undefined), { code: "bad_request" });
    await assert.rejects(client.publish("c", 10n), { code: "bad_request" });
    const circular = {};
    circular.self = circular;
    await assert.rejects(client.publish("c", circular), { code: "bad_request" });
    assert.deepEqual(net.last.sent, []);
  });

  test("publish while offline waits for the connection, after the resubscribes", async () => {
    const { net, clock, client } = setup();
    client.subscribe("c", () => {});
    const p = client.publish("c", "queued");
    assert.deepEqual(net.last.sent, []);
    clock.tick(100);
    net.last.accept();
    assert.deepEqual(net.last.frames().map((f) => f.op), ["subscribe", "publish"]);
    net.last.ackAll();
    assert.equal((await p).op, "ack");
  });

  test("an offline publish times out after requestTimeout", async () => {
    const { net, clock, client } = setup({ requestTimeout: 2000 });
    net.last.drop();
    const p = client.publish("c", 1);
    clock.tick(2000);
    await assert.rejects(p, { code: "timeout" });
    clock.tick(20000);
    net.sockets.at(-1).accept();
    assert.deepEqual(net.sockets.at(-1).sent, [], "a timed-out request is not sent later");
  });

  test("publish in flight when the connection drops rejects with disconnected", async () => {
    const { net, client } = setup();
    net.last.accept();
    const p = client.publish("c", 1);
    net.last.drop(1006);
    await assert.rejects(p, (e) => e.code === "disconnected" && e.closeCode === 1006);
  });

  test("queueWhileOffline: false rejects at once", async () => {
    const { client } = setup({ queueWhileOffline: false });
    await assert.rejects(client.publish("c", 1), { code: "disconnected" });
  });

  test("idle pings; no pong in time means a dead connection", async () => {
    const { net, clock, client } = setup({ pingInterval: 1000, pingTimeout: 500 });
    net.last.accept();
    clock.tick(1000);
    assert.equal(net.last.lastFrame().op, "ping");
    net.last.ackAll(); // pong
    await flush();
    clock.tick(1000);
    assert.equal(net.last.frames().filter((f) => f.op === "ping").length, 2);
    clock.tick(500);
    await flush(); // the ping promise rejects, then the client drops the socket
    assert.equal(net.sockets[0].closedWith.reason, "ping timeout");
    assert.equal(client.state, "reconnecting");
  });

  test("ping() measures a round trip", async () => {
    const { net, client } = setup();
    net.last.accept();
    const p = client.ping();
    net.last.ackAll();
    assert.ok((await p) >= 0);
  });
});

describe("Client: bad data and errors", () => {
  test("errors without a waiting caller and unreadable frames go to the error event; nothing breaks", () => {
    const { net, client, errors } = setup();
    const got = [];
    client.subscribe("c", (d) => got.push(d));
    net.last.accept();
    net.last.ackAll();
    net.last.push({ op: "error", code: "bad_json", message: "not JSON" });
    net.last.push({ op: "error", id: 999, code: "unknown_op", message: "?" });
    net.last.pushRaw("garbage\n{\"op\":\"message\",\"channel\":\"c\",\"data\":1}");
    net.last.pushRaw(new Uint8Array([1, 2]).buffer);
    net.last.push({ op: "future_op", x: 1 }, { op: "message" }, { op: "message", channel: 5 }, { op: "ack", id: "nope" }, { op: "message", channel: "c", data: 2 });
    assert.deepEqual(errors().map((e) => e.code), ["bad_json", "unknown_op", "bad_frame", "bad_frame"]);
    assert.deepEqual(got, [1, 2]);
    assert.equal(client.state, "connected");
  });

  test("a handler that throws does not stop the others or the client", () => {
    const { net, client, errors } = setup();
    const got = [];
    client.subscribe("c", () => { throw new Error("app bug"); });
    client.subscribe("c", (d) => got.push(d));
    net.last.accept();
    net.last.ackAll();
    net.last.push({ op: "message", channel: "c", data: 1 }, { op: "message", channel: "c", data: 2 });
    assert.deepEqual(got, [1, 2]);
    assert.deepEqual(errors().map((e) => e.code), ["callback_error", "callback_error"]);
    assert.equal(errors()[0].cause.message, "app bug");
  });

  test("a state listener that closes the client mid-welcome is safe", () => {
    const net = new FakeNet();
    const clock = new FakeClock();
    const c = new Client("ws://x/ws", { WebSocket: net.WebSocket, setTimeout: clock.setTimeout, clearTimeout: clock.clearTimeout, pingInterval: 0 });
    c.subscribe("a", () => {});
    c.on("state", (s) => { if (s.state === "connected") c.close(); });
    c.open();
    net.last.accept();
    assert.equal(c.state, "closed");
    assert.deepEqual(net.last.sent, []);
    assert.deepEqual(clock.pending(), []);
  });

  test("frames from a socket the client gave up on are ignored", () => {
    const { net, clock, client } = setup({ connectTimeout: 100 });
    const old = net.last;
    old.readyState = 1;
    clock.tick(100); // connect timeout: dropped
    clock.tick(clock.pending()[0]); // the retry
    const fresh = net.last;
    assert.notEqual(fresh, old);
    old.push({ op: "welcome", node: "ghost", session: "x" });
    assert.notEqual(client.node, "ghost");
    fresh.accept("gw2");
    assert.equal(client.node, "gw2");
  });
});

describe("Client: refused and failed connections", () => {
  test("Node 20: an error without a close on a socket that never opened backs off at once", () => {
    const { net, clock, client, events } = setup();
    net.last.failWithoutClose();
    assert.equal(client.state, "connecting");
    const close = events.filter(([t]) => t === "close");
    assert.equal(close.length, 1);
    assert.equal(close[0][1].code, 1006);
    const wait = clock.pending();
    assert.equal(wait.length, 1, "only the retry timer, no connect timeout left");
    assert.ok(wait[0] <= DEFAULT_BACKOFF.min, `retry in ${wait[0]} ms, not after the 10 s connect timeout`);
    clock.tick(wait[0]);
    assert.equal(net.sockets.length, 2, "the next attempt started");
    net.last.failWithoutClose();
    assert.ok(clock.pending()[0] <= 2 * DEFAULT_BACKOFF.min, "the backoff grows from the failure, not from the timeout");
  });

  test("browsers: error then close on a refused upgrade is one close, one retry", () => {
    const { net, clock, events } = setup();
    net.last.drop(1006);
    assert.equal(events.filter(([t]) => t === "close").length, 1);
    assert.equal(clock.pending().length, 1);
  });

  test("an error on an open socket waits for its close (the close code matters)", () => {
    const { net, events } = setup();
    net.last.accept();
    net.last.onerror({});
    assert.equal(events.filter(([t]) => t === "close").length, 0);
    net.last.drop(1009, "message too large");
    assert.equal(events.filter(([t]) => t === "close").at(-1)[1].code, 1009);
  });

  test("a refused upgrade is probed with a plain GET: 401 token_missing becomes a refused event", async () => {
    const f = new FakeFetch();
    const { net, events } = setup({ url: "wss://lb.test/ws", fetch: f.fetch, token: "T0K" });
    net.last.failWithoutClose();
    await flush();
    assert.equal(f.calls.length, 1);
    assert.equal(f.calls[0].url, "https://lb.test/ws?token=T0K", "same URL and token, http(s), no batch");
    f.reply(401, { error: "token_missing", message: "an upgrade here needs a valid connect token" });
    await flush();
    const refused = events.filter(([t]) => t === "refused").map(([, e]) => e);
    assert.deepEqual(refused, [{ status: 401, code: "token_missing", message: "an upgrade here needs a valid connect token" }]);
  });

  test("no refused event when the probe says an upgrade would work (426), or for a socket that had opened", async () => {
    const f = new FakeFetch();
    const { net, clock, events } = setup({ fetch: f.fetch });
    net.last.drop(1006);
    await flush();
    f.reply(426, { error: "upgrade_required" });
    await flush();
    clock.tick(clock.pending()[0]);
    net.last.accept();
    net.last.drop(1006);
    await flush();
    assert.equal(f.calls.length, 1, "an open socket that dropped is not probed");
    assert.equal(events.filter(([t]) => t === "refused").length, 0);
  });

  test("a probe answered after the client connected is stale and ignored; probe: false never fetches", async () => {
    const f = new FakeFetch();
    const { net, clock, events } = setup({ fetch: f.fetch });
    net.last.drop(1006);
    await flush();
    clock.tick(clock.pending()[0]);
    net.last.accept();
    f.reply(401, { error: "token_missing" });
    await flush();
    assert.equal(events.filter(([t]) => t === "refused").length, 0);
    const g = new FakeFetch();
    const off = setup({ fetch: g.fetch, probe: false });
    off.net.last.failWithoutClose();
    await flush();
    assert.equal(g.calls.length, 0);
  });
});

test("without options.fetch the global fetch is called as a function, as a browser's requires", async () => {
  const saved = globalThis.fetch;
  const calls = [];
  // A browser's fetch throws "Illegal invocation" when called as a method of another object.
  globalThis.fetch = function (url) {
    if (this !== undefined && this !== globalThis) throw new TypeError("Illegal invocation");
    calls.push(url);
    return Promise.resolve({ ok: false, status: 401, json: async () => ({ error: "token_missing" }) });
  };
  try {
    const clock = new FakeClock();
    const net = new FakeNet();
    const refused = [];
    const client = new Client("ws://lb.test/ws", { WebSocket: net.WebSocket, setTimeout: clock.setTimeout, clearTimeout: clock.clearTimeout });
    client.on("refused", (r) => refused.push(r.code));
    client.open();
    net.last.failWithoutClose();
    await flush();
    await flush();
    assert.deepEqual(calls, ["http://lb.test/ws"]);
    assert.deepEqual(refused, ["token_missing"]);
    client.close();
  } finally {
    globalThis.fetch = saved;
  }
});

test("no probe while the browser says it is offline (navigator.onLine false)", async () => {
  const saved = Object.getOwnPropertyDescriptor(globalThis, "navigator");
  Object.defineProperty(globalThis, "navigator", { value: { onLine: false }, configurable: true, writable: true });
  try {
    const f = new FakeFetch();
    const { net } = setup({ fetch: f.fetch });
    net.last.failWithoutClose();
    await flush();
    assert.equal(f.calls.length, 0);
  } finally {
    if (saved) Object.defineProperty(globalThis, "navigator", saved);
    else delete globalThis.navigator;
  }
});

describe("Client: message size limit", () => {
  test("welcome.max_message: a larger publish is refused before sending, the connection stays", async () => {
    const { net, client } = setup();
    net.last.accept("gw1", "s", { max_message: 120 });
    assert.equal(client.maxMessage, 120);
    const big = client.publish("room", { text: "é".repeat(40) }); // 80 bytes of text: over 120 with the frame
    await assert.rejects(big, (e) => e instanceof WsgateError && e.code === "too_large" && e.limit === 120 && e.size > 120);
    assert.equal(net.last.sent.length, 0, "nothing was sent");
    assert.equal(client.state, "connected");
    const small = client.publish("room", { text: "hi" });
    net.last.ackAll();
    await small;
    assert.equal(net.last.frames()[0].data.text, "hi");
  });

  test("the exact limit passes (bytes, not characters); no limit in welcome means none", async () => {
    const { net, client } = setup();
    const frame = JSON.stringify({ op: "publish", channel: "c", data: "ü".repeat(10), id: 1 });
    const limit = Buffer.byteLength(frame);
    assert.equal(limit, frame.length + 10, "ü is two bytes");
    net.last.accept("gw1", "s", { max_message: limit });
    const p = client.publish("c", "ü".repeat(10));
    net.last.ackAll();
    await p;
    await assert.rejects(client.publish("c", "ü".repeat(11)), { code: "too_large" });
    net.last.drop();
    const other = setup();
    other.net.last.accept();
    assert.equal(other.client.maxMessage, 0);
    const q = other.client.publish("c", "x".repeat(100000));
    other.net.last.ackAll();
    await q;
  });

  test("a publish queued offline is checked against the limit of the connection it goes out on", async () => {
    const { net, client, clock } = setup();
    const p = client.publish("c", "x".repeat(500));
    net.last.accept("gw1", "s", { max_message: 256 });
    await assert.rejects(p, { code: "too_large" });
    assert.equal(net.last.sent.length, 0);
    assert.equal(clock.pending().length, 0, "its timeout timer is gone");
  });
});
