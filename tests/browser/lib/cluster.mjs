// deploy/local-cluster.sh (redis-server + N gateways + HAProxy) driven from
// Node, like tests/pylib/wsgate_testing/cluster.py: start it on a free port, read its
// state file, kill a gateway by PID, stop everything by PID.
//
// Everything waits for an event (a line printed, a process gone) with a
// deadline; nothing sleeps in place of an event.
import { spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import net from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { eachLine } from "../../lib/lines.mjs";

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..");
const SCRIPT = path.join(REPO, "deploy", "local-cluster.sh");
const SETPRIV = "/usr/bin/setpriv";

export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** True while pid runs (a zombie, exited but not reaped, counts as gone). */
export function pidAlive(pid) {
  try {
    process.kill(pid, 0);
  } catch (e) {
    return e.code === "EPERM";
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[0] !== "Z";
  } catch (e) {
    return false;
  }
}

/** Poll pred() every `every` ms until it is truthy or `ms` pass. */
export async function waitUntil(pred, ms, what, every = 50) {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await pred();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, every));
  }
}

export class LocalCluster {
  constructor({ gateways = 3, logDir, log = () => {} } = {}) {
    this.gateways = gateways;
    this.logDir = logDir;
    this.log = log;
    this.proc = null;
    this.lines = [];
    this.waiters = new Set();
    this.exited = null; // promise of the script's exit code
    this.procs = []; // { role, name, pid, addr } from the state file
    this.port = 0;
  }

  /** Start the cluster; resolves once it prints "wsgate cluster ready". */
  async start(timeoutMs = 60000) {
    if (!existsSync(SCRIPT)) throw new Error(`${SCRIPT} not found`);
    for (let attempt = 1; ; attempt++) {
      this.port = await freePort();
      const args = [SCRIPT, "--gateways", String(this.gateways), "--port", String(this.port)];
      if (this.logDir) args.push("--log-dir", this.logDir);
      // setpriv --pdeathsig: if this test process dies (even by SIGKILL, e.g. a
      // ctest timeout), the script gets SIGTERM and stops what it started.
      const [cmd, argv] = existsSync(SETPRIV) ? [SETPRIV, ["--pdeathsig", "SIGTERM", "--", ...args]] : [args[0], args.slice(1)];
      this.lines = [];
      this.proc = spawn(cmd, argv, { stdio: ["ignore", "pipe", "pipe"], cwd: REPO, env: process.env });
      this.exited = new Promise((resolve) => this.proc.on("exit", (code, signal) => resolve(code ?? signal)));
      for (const s of [this.proc.stdout, this.proc.stderr]) eachLine(s, (line) => this._line(line));
      this.exited.then((code) => this._line(`<exit ${code}>`));
      const line = await this.awaitLine(/wsgate cluster ready|local-cluster\.sh: |^<exit /, timeoutMs);
      if (line.includes("cluster ready")) break;
      await this._waitExit(15000);
      if (/already in use/.test(line) && attempt < 3) continue; // lost a race for the free port
      throw new Error("local-cluster.sh failed:\n" + this.lines.join("\n"));
    }
    const stateFile = (await this.awaitLine(/^state file: /, 1000)).slice("state file: ".length).trim();
    this.procs = readFileSync(stateFile, "utf8").split("\n").filter((l) => l.trim()).map((l) => {
      const [role, name, pid, ...addr] = l.split(/\s+/);
      return { role, name, pid: pid === "-" ? null : Number(pid), addr: addr.join(" ") };
    });
    return this;
  }

  _line(line) {
    this.lines.push(line);
    // "gateway gw2 (pid 123) exited with status 137": reaped, never signal that PID again.
    const m = /^(\w+) (\S+) \(pid (\d+)\) exited/.exec(line);
    if (m) for (const p of this.procs) if (p.pid === Number(m[3])) p.dead = true;
    this.log(line);
    for (const w of [...this.waiters]) w();
  }

  /** The first output line (from index `from`) matching re. */
  awaitLine(re, timeoutMs, from = 0) {
    return new Promise((resolve, reject) => {
      let i = from;
      const check = () => {
        for (; i < this.lines.length; i++) {
          if (re.test(this.lines[i])) {
            done();
            resolve(this.lines[i]);
            return;
          }
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`no line /${re.source}/ from local-cluster.sh in ${timeoutMs} ms; output:\n` + this.lines.join("\n")));
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        this.waiters.delete(check);
      };
      this.waiters.add(check);
      check();
    });
  }

  get url() {
    return `http://127.0.0.1:${this.port}/`;
  }

  gateway(name) {
    const p = this.procs.find((x) => x.role === "gateway" && x.name === name);
    if (!p) throw new Error(`no gateway named ${name} in the state file`);
    return p;
  }

  /** SIGKILL gateway `name` by its PID; resolves when the script reports it gone. */
  async killGateway(name, timeoutMs = 10000) {
    const gw = this.gateway(name);
    const mark = this.lines.length;
    process.kill(gw.pid, "SIGKILL");
    await this.awaitLine(new RegExp(`^gateway ${name} \\(pid ${gw.pid}\\) exited`), timeoutMs, mark);
    gw.dead = true;
  }

  /** SIGSTOP gateway `name`: it reads nothing more until killed (or SIGCONT). */
  pauseGateway(name) {
    process.kill(this.gateway(name).pid, "SIGSTOP");
  }

  /** SIGTERM gateway `name` (it drains: 1001 to its clients, then exits 0);
   *  resolves with its exit status once the script reports it gone. */
  async stopGateway(name, timeoutMs = 30000) {
    const gw = this.gateway(name);
    const mark = this.lines.length;
    process.kill(gw.pid, "SIGTERM");
    const line = await this.awaitLine(new RegExp(`^gateway ${name} \\(pid ${gw.pid}\\) exited`), timeoutMs, mark);
    gw.dead = true;
    return Number(/status (\d+)/.exec(line)?.[1]);
  }

  async _waitExit(ms) {
    let t;
    const r = await Promise.race([this.exited, new Promise((res) => { t = setTimeout(() => res("timeout"), ms); })]);
    clearTimeout(t);
    return r;
  }

  /** SIGTERM the script (it stops HAProxy, the gateways and Redis by PID);
   *  if it does not finish in time, SIGKILL what it started. Returns the
   *  processes still alive afterwards (should be none). */
  async stop(timeoutMs = 40000) {
    if (!this.proc) return [];
    if (this.running) {
      this.proc.kill("SIGTERM");
      if ((await this._waitExit(timeoutMs)) === "timeout") {
        for (const p of this.procs) if (p.pid && !p.dead && pidAlive(p.pid)) process.kill(p.pid, "SIGKILL");
        this.proc.kill("SIGKILL");
        await this._waitExit(10000);
      }
    }
    const left = this.procs.filter((p) => p.pid && !p.dead && pidAlive(p.pid));
    return left;
  }

  get running() {
    return !!this.proc && this.proc.exitCode === null && this.proc.signalCode === null;
  }

  /** Synchronous last resort (process 'exit' handler): SIGKILL by PID. Only
   *  while the script runs: then its children are not reaped and their PIDs
   *  cannot have been reused. */
  killAllSync() {
    if (!this.running) return;
    for (const p of this.procs) {
      if (p.pid && !p.dead && pidAlive(p.pid)) {
        try { process.kill(p.pid, "SIGKILL"); } catch (e) { /* gone */ }
      }
    }
    try { this.proc.kill("SIGKILL"); } catch (e) { /* gone */ }
  }
}
