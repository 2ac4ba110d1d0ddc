// What the browser tests share: starting and killing the real `nodb up`
// binary on a loopback port chosen at run time, and launching Debian's
// headless Chromium through playwright-core.

import { execFile, spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

/** The repository's root. */
export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** Cargo's target directory: $CARGO_TARGET_DIR, else `target/` at the root. */
const TARGET = process.env.CARGO_TARGET_DIR ? resolve(ROOT, process.env.CARGO_TARGET_DIR) : join(ROOT, 'target');

/** The `nodb` binary: $NODB_BIN, else the debug build that `cargo nextest run` makes. */
export const NODB_BIN = process.env.NODB_BIN ?? join(TARGET, 'debug', 'nodb');

/** Where test artefacts (screenshots) go. */
export const ARTIFACTS = join(TARGET, 'artifacts');

/** A free loopback port, chosen now. */
export function freePort() {
  return new Promise((ok, fail) => {
    const s = createServer();
    s.on('error', fail);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => ok(port));
    });
  });
}

/** The temporary directories made here, removed when the test process exits. */
const made = new Set();
process.on('exit', () => {
  for (const dir of made) rmSync(dir, { recursive: true, force: true });
});

/** A fresh temporary directory named `prefix…`, removed at exit. */
function tempDir(prefix) {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  made.add(dir);
  return dir;
}

/** A fresh data directory (removed when the test process exits). */
export function dataDir() {
  return tempDir('nodb-web-');
}

/**
 * Starts `nodb up --data DIR --listen 127.0.0.1:PORT [ARGS…]` and resolves
 * once it prints its ready line: `{url, proc, stderr(), link}`. With
 * `--auth-key` among `args` it also waits for the line with the browser link
 * (`open http://…/#token=<jwt> in a browser`), and `link` is that link.
 */
export function startUp(data, port, args = []) {
  const auth = args.includes('--auth-key');
  return new Promise((ok, fail) => {
    const proc = spawn(NODB_BIN, ['up', '--data', data, '--listen', `127.0.0.1:${port}`, ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let err = '';
    let out = '';
    proc.stderr.on('data', (d) => { err += d; });
    const timer = setTimeout(() => fail(new Error(`nodb up did not get ready:\n${out}\n${err}`)), 30_000);
    proc.on('error', (e) => { clearTimeout(timer); fail(new Error(`cannot start ${NODB_BIN}: ${e.message}`)); });
    proc.on('exit', (code) => { clearTimeout(timer); fail(new Error(`nodb up exited (${code}):\n${err}`)); });
    proc.stdout.on('data', (d) => {
      out += d;
      const ready = out.match(/nodb up listening on (http:\/\/\S+)/);
      const link = out.match(/open (http:\/\/\S+#token=\S+) in a browser/);
      if (ready && (!auth || link)) {
        clearTimeout(timer);
        ok({ url: ready[1], proc, stderr: () => err, link: link?.[1] ?? null });
      }
    });
  });
}

/**
 * Runs `nodb ARGS…` to its end and resolves with what it printed on stdout
 * (trimmed); rejects with its stderr if it fails.
 */
export function nodb(...args) {
  return new Promise((ok, fail) => {
    execFile(NODB_BIN, args, { timeout: 30_000 }, (e, stdout, stderr) => {
      if (e) fail(new Error(`nodb ${args.join(' ')} failed: ${e.message}\n${stderr}`));
      else ok(stdout.trim());
    });
  });
}

/** A new signing key in a fresh directory (`nodb keygen FILE`); resolves with its path. */
export async function keygen() {
  const file = join(tempDir('nodb-key-'), 'nodb.key');
  await nodb('keygen', file);
  return file;
}

/** A token signed with `key` (`nodb token --key KEY ARGS…`), e.g. `mintToken(key, '--client', 'ana', '--ttl', '10m')`. */
export function mintToken(key, ...args) {
  return nodb('token', '--key', key, ...args);
}

/** Kills a started process with `signal` and waits for it to exit. */
export function stop(up, signal = 'SIGKILL') {
  return new Promise((ok) => {
    if (up.proc.exitCode !== null || up.proc.signalCode !== null) return ok();
    up.proc.removeAllListeners('exit');
    up.proc.on('exit', () => ok());
    up.proc.kill(signal);
  });
}

/** Headless Chromium from Debian (`/usr/bin/chromium`, or $CHROMIUM). */
export function launchBrowser() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}

/**
 * The committed actions in the log, read from `GET /actions?from=1` up to
 * the head that the first heartbeat announces (with `token`, on a server
 * with auth on).
 */
export async function readLog(url, token = null) {
  const controller = new AbortController();
  const headers = token ? { authorization: `Bearer ${token}` } : {};
  const res = await fetch(`${url}/actions?from=1`, { signal: controller.signal, headers });
  if (!res.ok) throw new Error(`GET /actions: ${res.status} ${await res.text()}`);
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  const actions = [];
  let head = null;
  let buf = '';
  try {
    while (head === null || actions.length < head) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += decoder.decode(value, { stream: true });
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = JSON.parse(buf.slice(0, nl));
        buf = buf.slice(nl + 1);
        if (line.heartbeat) head ??= line.heartbeat.head;
        else actions.push(line);
      }
    }
  } finally {
    controller.abort();
  }
  return actions;
}

/** Makes the artefacts directory and returns the path of `name` in it. */
export function artifact(name) {
  mkdirSync(ARTIFACTS, { recursive: true });
  return join(ARTIFACTS, name);
}
