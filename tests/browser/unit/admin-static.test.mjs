// Static checks of web/admin/ (the cluster dashboard), the rules of
// web-static.test.mjs for the chat: self-contained, a strict CSP, no HTML
// built from strings, the script a valid ES module.
//   node --test tests/browser/unit/admin-static.test.mjs
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const ADMIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../../web/admin");
const files = readdirSync(ADMIN);
const read = (f) => readFileSync(path.join(ADMIN, f), "utf8");

test("web/admin/ holds the page, its script and its style only", () => {
  assert.deepEqual(files.sort(), ["admin.css", "admin.js", "index.html"]);
});

test("nothing is loaded from another origin", () => {
  for (const f of files) {
    const text = read(f);
    assert.doesNotMatch(text, /\b(src|href|action)\s*=\s*["']?(https?:)?\/\//i, f);
    assert.doesNotMatch(text, /url\(\s*["']?(https?:)?\/\//i, f);
    assert.doesNotMatch(text, /@import|\bimport\b/i, f);
  }
});

test("no HTML is built from strings", () => {
  for (const f of ["admin.js", "index.html"]) {
    const code = read(f).replace(/^\s*\/\/.*$/gm, "");
    for (const bad of ["innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function", "setAttribute(\"on"]) {
      assert.ok(!code.includes(bad), `${f} uses ${bad}`);
    }
  }
});

test("index.html: a strict CSP, the module script, no inline script or style", () => {
  const html = read("index.html");
  assert.match(html, /<meta http-equiv="Content-Security-Policy" content="default-src 'self'; connect-src 'self';[^"]*script-src 'self'/);
  assert.match(html, /<script type="module" src="admin.js"><\/script>/);
  assert.doesNotMatch(html, /<script(?![^>]*\bsrc=)[^>]*>/, "inline script");
  assert.doesNotMatch(html, /<style|\sstyle=|\son[a-z]+=/i, "inline style or handler");
});

test("admin.js parses as an ES module and sends the key as a Bearer header", () => {
  const js = read("admin.js");
  assert.match(js, /Authorization: "Bearer " \+ key/);
  const dir = mkdtempSync(path.join(os.tmpdir(), "wsgate-admin-check-"));
  try {
    const copy = path.join(dir, "admin.mjs");
    writeFileSync(copy, js);
    const r = spawnSync(process.execPath, ["--check", copy], { encoding: "utf8" });
    assert.equal(r.status, 0, r.stderr);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
