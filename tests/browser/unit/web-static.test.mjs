// Static checks of web/ (what the gateway serves at /): self-contained, no
// HTML built from strings, every script a valid ES module.
//   node --test tests/browser/unit/web-static.test.mjs
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const WEB = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../../web");
const files = readdirSync(WEB).filter((f) => /\.(html|js|css)$/.test(f));
const read = (f) => readFileSync(path.join(WEB, f), "utf8");

test("web/ holds the page, its script, its style and the client library, and no npm project", () => {
  for (const f of ["index.html", "chat.js", "chat.css", "wsgate.js"]) assert.ok(files.includes(f), f);
  const all = readdirSync(WEB);
  for (const f of ["package.json", "package-lock.json", "node_modules"]) assert.ok(!all.includes(f), f + " belongs in tests/browser/");
});

test("nothing is loaded from another origin", () => {
  for (const f of files) {
    const text = read(f);
    assert.doesNotMatch(text, /\b(src|href|action)\s*=\s*["']?(https?:)?\/\//i, f);
    assert.doesNotMatch(text, /url\(\s*["']?(https?:)?\/\//i, f);
    assert.doesNotMatch(text, /@import/i, f);
    assert.doesNotMatch(text, /\bimport\b[^;\n]*\bfrom\s*["'](https?:)?\/\//, f);
  }
});

test("no HTML is built from strings", () => {
  for (const f of files.filter((x) => /\.(js|html)$/.test(x))) {
    const code = read(f).replace(/^\s*\/\/.*$/gm, ""); // comments may name what is avoided
    for (const bad of ["innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function", "setAttribute(\"on"]) {
      assert.ok(!code.includes(bad), `${f} uses ${bad}`);
    }
  }
});

test("index.html: a strict CSP, the module script, no inline script or style", () => {
  const html = read("index.html");
  assert.match(html, /<meta http-equiv="Content-Security-Policy" content="default-src 'self';[^"]*script-src 'self'/);
  assert.match(html, /<script type="module" src="chat.js"><\/script>/);
  assert.doesNotMatch(html, /<script(?![^>]*\bsrc=)[^>]*>/, "inline script");
  assert.doesNotMatch(html, /<style|\sstyle=|\son[a-z]+=/i, "inline style or handler");
  assert.match(html, /<meta name="viewport" content="width=device-width/);
  assert.match(read("chat.js"), /from "\.\/wsgate\.js"/);
  assert.match(read("chat.js"), /connect\("ws"/);
});

test("every script parses as an ES module", () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), "wsgate-web-check-"));
  try {
    for (const f of files.filter((x) => x.endsWith(".js"))) {
      const copy = path.join(dir, f.replace(/\.js$/, ".mjs")); // .mjs: a module whatever the Node version
      writeFileSync(copy, read(f));
      const r = spawnSync(process.execPath, ["--check", copy], { encoding: "utf8" });
      assert.equal(r.status, 0, `${f}: ${r.stderr}`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
