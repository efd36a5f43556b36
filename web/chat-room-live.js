// The chat's view of a room's history, recovery and presence (chat.js owns
// the rooms, the log and the notices; this module owns what a room shows
// about who is there and what was missed):
// - joining loads the room's recent history (wsgate.js's history option,
//   marked with an "earlier messages" line), and what a reconnect recovers
//   arrives in place, in order, through the room's message handler;
// - "some messages could not be recovered" when the server says so
//   (recovery_failed, either at the resubscribe or as a "lost" frame);
// - who is in the room (presence members across every replica), with
//   join/leave notices; a member is named by its token's sub, or by the nick
//   of the chat messages it sent (messages carry the sender's session), else
//   "guest";
// - what became of a message whose ack a disconnect swallowed.
// Everything goes into the page as textContent.

export const HISTORY = 50; // messages loaded when joining a room
const MAX_NAMES = 1000; // sessions remembered per room

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

/** Per-room presence and history state. notice(text, kind) writes a line in
 *  the room's log; onChange() runs when the member list changed. */
export class RoomLive {
  constructor(client, name, { notice, onChange }) {
    this.client = client;
    this.name = name;
    this.notice = notice;
    this.onChange = onChange;
    this.members = new Map(); // session → {session, sub, node}
    this.names = new Map(); // session → nick seen in its messages
    this.past = new Set(); // this page's earlier sessions: dead, listed until the server's presence TTL
    this.presence = false; // the server keeps presence for this room
    this.loads = 0; // presence reads in flight, newest wins
  }

  /** Subscribe options for client.subscribe (merged with chat.js's own). */
  options() {
    return { history: HISTORY, presence: true, onPresence: (ev) => this._onPresence(ev) };
  }

  /** The subscription is live (first join or after a reconnect). */
  subscribed(s) {
    if (this.client.session) this.past.add(this.client.session);
    if (s.history) this.notice("the room's recent messages:", "history");
    else if (s.recovered === true && s.resubscribed) this.notice("anything missed while reconnecting follows:", "history");
    this.presence = s.presence !== false;
    if (this.presence) this._reload();
    else this._set([]);
  }

  /** Messages lost for good (recovery_failed {reason}). */
  lost(reason) {
    this.notice("some messages could not be recovered (" + reason + ")", "bad lost");
  }

  /** A chat message arrived: learn the nick of its session. */
  learn(data) {
    if (!data || typeof data !== "object" || typeof data.sid !== "string" || typeof data.user !== "string") return;
    if (!this.names.has(data.sid) && this.names.size >= MAX_NAMES) this.names.delete(this.names.keys().next().value);
    this.names.set(data.sid, data.user.trim().slice(0, 32) || "guest");
    if (this.members.has(data.sid)) this.onChange();
  }

  label(m) {
    const who = m.sub || this.names.get(m.session) || "guest";
    return m.session === this.client.session ? who + " (you)" : who;
  }

  /** Fill ul with this room's members, sorted by name. */
  render(ul) {
    ul.replaceChildren();
    ul.hidden = !this.presence;
    const list = [...this.members.values()].filter((m) => !this._ghost(m.session)).map((m) => [this.label(m), m]).sort((a, b) => a[0].localeCompare(b[0]));
    for (const [text, m] of list) {
      const li = el("li", m.session === this.client.session ? "member me" : "member", text);
      li.dataset.session = m.session;
      li.title = "session " + m.session + (m.node ? " on node " + m.node : "");
      ul.append(li);
    }
    ul.dataset.count = String(list.length);
  }

  // An earlier session of this page: its connection is gone for sure.
  _ghost(session) {
    return session !== this.client.session && this.past.has(session);
  }

  _set(members) {
    this.members = new Map(members.filter((m) => m && typeof m.session === "string").map((m) => [m.session, m]));
    this.onChange();
  }

  async _reload() {
    const n = ++this.loads;
    try {
      const r = await this.client.presence(this.name);
      if (n === this.loads) this._set(r.members);
    } catch (e) {
      if (n === this.loads && e.code !== "disconnected") this.notice("who is here: " + (e.message || e.code), "warn");
    }
  }

  _onPresence(ev) {
    const mine = ev.session === this.client.session || this._ghost(ev.session);
    if (ev.type === "join") {
      if (this.members.has(ev.session)) return;
      this.members.set(ev.session, { session: ev.session, sub: ev.sub, node: ev.node });
      if (!mine) this.notice(this.label(ev) + " joined", "presence");
    } else {
      if (!this.members.delete(ev.session)) return;
      if (!mine) this.notice(this.label(ev) + " left", "presence");
    }
    this.onChange();
  }
}

/** How a publish ended, as a line for the room (null: nothing to say), and
 *  whether the text should go back into the input to be sent again. */
export function publishOutcome(ack, err) {
  if (!err) return ack && ack.confirmed ? { text: "delivered (confirmed after reconnecting)", kind: "history", resend: false } : null;
  if (err.code === "maybe_sent") return { text: "may not have been sent (the connection dropped and what was missed could not be recovered)", kind: "warn", resend: true };
  if (err.code === "not_sent") return { text: "not sent (the connection dropped before the server took it)", kind: "bad", resend: true };
  return { text: "not sent (" + (err.message || err.code) + ")", kind: "bad", resend: true };
}
