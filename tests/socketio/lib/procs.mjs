// Processes for the Socket.IO tests: redis-server and wsgate on free ports,
// each awaited on the line it prints when ready and stopped by its PID.
// Nothing sleeps in place of an event: every wait is for a line, an exit
// or a client event, with a deadline.
import { spawn } from "node:child_process";
import net from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { eachLine } from "../../lib/lines.mjs";

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..");
export const WSGATE = process.env.WSGATE_BIN || path.join(REPO, "build", "wsgate");

export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** Resolves with p, or rejects after ms naming what was awaited. */
export function within(p, ms, what) {
  let t;
  const timeout = new Promise((_, reject) => {
    t = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(t));
}

/** A child process whose output lines are kept and can be awaited. */
export class Proc {
  constructor(name, cmd, args) {
    this.name = name;
    this.lines = [];
    this.waiters = new Set();
    this.child = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"] });
    this.pid = this.child.pid;
    this.exited = new Promise((resolve) => this.child.on("exit", (code, sig) => resolve(code ?? sig)));
    this.exited.then((code) => this._line(`<exit ${code}>`));
    for (const s of [this.child.stdout, this.child.stderr]) eachLine(s, (line) => this._line(line));
  }

  _line(line) {
    this.lines.push(line);
    if (process.env.SIO_TEST_VERBOSE) console.error(`[${this.name}] ${line}`);
    for (const w of [...this.waiters]) w();
  }

  /** The first line from index `from` on that matches re. */
  awaitLine(re, ms = 10000, from = 0) {
    return within(new Promise((resolve, reject) => {
      const check = () => {
        for (let i = from; i < this.lines.length; i++) {
          if (re.test(this.lines[i])) {
            this.waiters.delete(check);
            return resolve(this.lines[i]);
          }
          if (this.lines[i].startsWith("<exit ")) {
            this.waiters.delete(check);
            return reject(new Error(`${this.name} exited:\n${this.lines.join("\n")}`));
          }
        }
      };
      this.waiters.add(check);
      check();
    }), ms, `${this.name}: ${re}`);
  }

  /** SIGTERM, then the exit status: 0 expected (under ASan a leak or an
   * error makes it non-zero). */
  async stop() {
    if (this.child.exitCode === null && this.child.signalCode === null) process.kill(this.pid, "SIGTERM");
    const code = await within(this.exited, 15000, `${this.name} to exit`);
    if (code !== 0) throw new Error(`${this.name} exited with ${code}:\n${this.lines.slice(-30).join("\n")}`);
  }
}

/** A redis-server on a free port, or on port (a restart). */
export async function startRedis(port) {
  port ??= await freePort();
  const p = new Proc("redis", "redis-server",
    ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]);
  await p.awaitLine(/Ready to accept connections/);
  p.url = `redis://127.0.0.1:${port}`;
  p.port = port;
  return p;
}

/** A wsgate on a free port; extra: more flags. */
export async function startGateway(extra = [], name = "wsgate") {
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    const p = new Proc(name, WSGATE, ["--listen", `127.0.0.1:${port}`, "--node-id", name, ...extra]);
    try {
      await p.awaitLine(/listening on/);
      p.url = `http://127.0.0.1:${port}`;
      p.port = port;
      return p;
    } catch (e) {
      if (attempt < 3 && p.lines.some((l) => /in use/.test(l))) continue; // lost a port race
      throw e;
    }
  }
}
