// One redis-server and one build/wsgate on free ports, for the tests that
// need a gateway of their own (flags the local cluster does not set, such as
// --jwt-secret-file or --tls-cert). Started and stopped by PID; every wait is
// for a printed line, with a deadline.
import { execFileSync, spawn } from "node:child_process";
import path from "node:path";
import { eachLine } from "../../lib/lines.mjs";
import { REPO, freePort, pidAlive } from "./cluster.mjs";

export const WSGATE = process.env.WSGATE_BIN || path.join(REPO, "build", "wsgate");
const SETPRIV = "/usr/bin/setpriv";

/** A child process whose output lines are kept and can be awaited. */
class Proc {
  constructor(name, cmd, args, log) {
    this.name = name;
    this.lines = [];
    this.waiters = new Set();
    // --pdeathsig: the child stops even if this test process is SIGKILLed.
    this.proc = spawn(SETPRIV, ["--pdeathsig", "SIGKILL", "--", cmd, ...args],
      { stdio: ["ignore", "pipe", "pipe"], cwd: REPO });
    this.pid = this.proc.pid;
    this.exited = new Promise((resolve) => this.proc.on("exit", (code, sig) => resolve(code ?? sig)));
    for (const s of [this.proc.stdout, this.proc.stderr]) {
      eachLine(s, (line) => {
        this.lines.push(line);
        log(`${name}: ${line}`);
        for (const w of [...this.waiters]) w();
      });
    }
  }

  /** The first line matching re (from line index `from`), or a rejection after ms. */
  awaitLine(re, ms, from = 0) {
    return new Promise((resolve, reject) => {
      let i = from;
      const check = () => {
        for (; i < this.lines.length; i++) if (re.test(this.lines[i])) return done(() => resolve(this.lines[i]));
      };
      const timer = setTimeout(() => done(() => reject(new Error(
        `${this.name}: no line /${re.source}/ in ${ms} ms; output:\n${this.lines.join("\n")}`))), ms);
      const done = (then) => {
        clearTimeout(timer);
        this.waiters.delete(check);
        then();
      };
      this.waiters.add(check);
      this.exited.then(() => check());
      check();
    });
  }

  async stop(ms = 15000) {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    this.proc.kill("SIGTERM");
    let t;
    const r = await Promise.race([this.exited, new Promise((res) => { t = setTimeout(() => res("timeout"), ms); })]);
    clearTimeout(t);
    if (r === "timeout" && pidAlive(this.pid)) {
      this.proc.kill("SIGKILL");
      await this.exited;
    }
  }
}

/** Starts redis-server and a gateway with extra args; resolves once both
 *  listen. .port, .origin ("http://127.0.0.1:port"), .stop(). */
export async function startGateway(args = [], { log = () => {}, scheme = "http" } = {}) {
  const redisPort = await freePort();
  const redis = new Proc("redis", "redis-server", ["--port", String(redisPort), "--bind", "127.0.0.1",
    "--save", "", "--appendonly", "no"], log);
  try {
    await redis.awaitLine(/Ready to accept connections|^<exit/, 15000);
  } catch (e) {
    await redis.stop();
    throw e;
  }
  const gw = new Proc("gateway", WSGATE, ["--listen", "127.0.0.1:0", "--redis", `redis://127.0.0.1:${redisPort}`,
    "--web-root", path.join(REPO, "web"), "--node-id", "solo", "--api-insecure", ...args], log);
  const stop = async () => {
    await gw.stop();
    await redis.stop();
  };
  try {
    const line = await gw.awaitLine(/listening on [^ ]*:(\d+)/, 15000);
    await gw.awaitLine(/broker up/, 15000);
    const port = Number(/listening on [^ ]*:(\d+)/.exec(line)[1]);
    return { port, origin: `${scheme}://127.0.0.1:${port}`, gateway: gw, redis, stop };
  } catch (e) {
    await stop();
    throw e;
  }
}

/** A self-signed certificate for 127.0.0.1 and localhost, made with
 *  `openssl req` in dir: { cert, key } paths. */
export function selfSignedCert(dir) {
  const cert = path.join(dir, "cert.pem");
  const key = path.join(dir, "key.pem");
  execFileSync("openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=localhost",
    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", key, "-out", cert], { stdio: "ignore", timeout: 60000 });
  return { cert, key };
}
