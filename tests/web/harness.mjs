// harness.mjs — what the console's browser tests share: a real sonded on a
// free port with its own data directory, tokens of each role, the demo
// service under a real agent (`sonde run`), Debian's Chromium driven by
// playwright-core (from web/node_modules), console errors collected (a
// test fails on any it did not expect), screenshots at 1280×800 and
// 390×844 into build/check/web/, and polling with a deadline.  Every
// process is started in its own process group and killed by pid at the
// end of the test (t.after).
//
// Environment: SONDE_BUILD (default build) — the build whose sonded,
// sonde and demo_service run; CHROMIUM (default /usr/bin/chromium).

import { spawn } from 'node:child_process';
import { request } from 'node:http';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const BUILD = resolve(ROOT, process.env.SONDE_BUILD || 'build');
export const SONDED = join(BUILD, 'sonded');
export const SONDE = join(BUILD, 'sonde');
export const DEMO = join(BUILD, 'examples', 'demo_service');
export const SHOTS = join(ROOT, 'build', 'check', 'web');
const require = createRequire(join(ROOT, 'web', 'package.json'));
const { chromium } = require('playwright-core');

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Polls cond() (sync or async) until truthy; returns its value, or throws
// naming what was awaited after timeout ms.
export async function waitFor(cond, what, timeout = 15000, interval = 100) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      const v = await cond();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline)
      throw new Error(`timed out after ${timeout} ms waiting for ${what}` +
        (last ? ` (last error: ${last.message})` : ''));
    await sleep(interval);
  }
}

// A child process in its own group; its output kept for failure reports.
class Proc {
  constructor(argv, env, name) {
    this.name = name;
    this.out = '';
    this.p = spawn(argv[0], argv.slice(1), {
      env: { ...process.env, ...env }, detached: true, stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.exited = new Promise((r) => this.p.on('exit', (code, sig) => r({ code, sig })));
    for (const s of [this.p.stdout, this.p.stderr]) s.on('data', (d) => { this.out += d; });
  }

  // Waits for a line matching re in the output; returns the match.
  async line(re, what, timeout = 20000) {
    return waitFor(() => this.out.match(re), `${this.name}: ${what}\n${this.out.slice(-2000)}`,
      timeout);
  }

  async kill(signal = 'SIGKILL') {
    if (this.p.exitCode !== null || this.p.signalCode !== null) return;
    try { process.kill(-this.p.pid, signal); } catch (_) { /* gone */ }
    await Promise.race([this.exited, sleep(5000)]);
  }
}

// One test's world: create with `const w = await world(t)`.
export async function world(t, opts = {}) {
  const procs = [];
  const dirs = [];
  const browsers = [];
  t.after(async () => {
    for (const b of browsers) await b.close().catch(() => {});
    for (const p of procs.reverse()) await p.kill();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });
  const w = {
    procs,
    tmp() {
      const d = mkdtempSync(join(tmpdir(), 'sonde-web-'));
      dirs.push(d);
      return d;
    },
  };

  // sonded on a free port; w.url, w.admin.
  const data = w.tmp();
  const sonded = new Proc([SONDED, '--listen', '127.0.0.1:0', '--data', data,
    '--heartbeat-s', '2', ...(opts.sondedArgs || [])], {}, 'sonded');
  procs.push(sonded);
  w.admin = (await sonded.line(/admin token: (sonde_[0-9a-f]{64})/, 'its admin token'))[1];
  w.url = (await sonded.line(/sonded listening on (http:\/\/[\d.]+:\d+)/, 'listening'))[1];
  w.sonded = sonded;

  // The API, as a test (not the page) calls it.
  w.api = async (method, path, body, token = w.admin) => {
    const res = await fetch(w.url + path, {
      method,
      headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    let json = null;
    try { json = JSON.parse(text); } catch (_) { /* not JSON */ }
    if (!res.ok) {
      const e = new Error(`${method} ${path}: HTTP ${res.status} ${text}`);
      e.status = res.status;
      e.body = json;
      throw e;
    }
    return json;
  };
  const tokens = {};
  w.token = async (role) => {
    if (!tokens[role])
      tokens[role] = (await w.api('POST', '/api/v1/tokens', { role, name: `${role}-web` })).token;
    return tokens[role];
  };

  // The demo service under the agent: {url, proc, pid}.
  w.demo = async ({ app = 'demo', instance = 'web-1', agent = true } = {}) => {
    const argv = agent
      ? [SONDE, 'run', '--server', w.url, '--app', app, '--instance', instance,
        '--token', await w.token('agent'), '--', DEMO, '--port', '0']
      : [DEMO, '--port', '0'];
    const p = new Proc(argv, {}, `demo ${app}`);
    procs.push(p);
    const url = (await p.line(/demo listening on (http:\/\/[\w.]+:\d+)/, 'listening'))[1];
    if (agent)
      await waitFor(async () => (await w.api('GET', `/api/v1/agents?app=${app}`)).agents
        .some((a) => a.status === 'running' && a.pid === p.p.pid), `a running agent of ${app}`);
    return { url, proc: p, pid: p.p.pid };
  };

  // Load on a demo URL from the test itself (keep-alive fetches) until
  // stop() is called.
  w.load = (url, concurrency = 2) => {
    let stop = false;
    const loops = Array.from({ length: concurrency }, async () => {
      while (!stop) {
        try { await (await fetch(url)).arrayBuffer(); } catch (_) { await sleep(50); }
      }
    });
    return async () => { stop = true; await Promise.all(loops); };
  };

  // A browser page at size [w, h] with console errors collected in
  // page.errors (expected ones may be removed by the test); signed in
  // with role's token when role is given.
  w.page = async ({ role = 'writer', size = [1280, 800] } = {}) => {
    if (!browsers.length)
      browsers.push(await chromium.launch({
        executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
        headless: true,
        args: ['--no-sandbox', '--disable-dev-shm-usage', '--disable-gpu'],
      }));
    const context = await browsers[0].newContext({
      viewport: { width: size[0], height: size[1] }, acceptDownloads: true,
    });
    const page = await context.newPage();
    // Console errors, and every answer >= 400 with its URL (Chromium's own
    // "Failed to load resource" line has none, so the answer stands in
    // for it and a test can allow an expected one by status and path).
    page.errors = [];
    page.on('console', (m) => {
      if (m.type() === 'error' && !/^Failed to load resource/.test(m.text()))
        page.errors.push(m.text());
    });
    page.on('response', (r) => {
      if (r.status() >= 400) page.errors.push(`HTTP ${r.status()} ${new URL(r.url()).pathname}`);
    });
    page.on('pageerror', (e) => page.errors.push(`page error: ${e.message}`));
    if (role) {
      const tok = role === 'admin' ? w.admin : await w.token(role);
      await page.goto(`${w.url}/#/signin`);
      await page.fill('#token', tok);
      await page.click('#signin');
      await page.waitForSelector('#role');
    }
    return page;
  };
  return w;
}

// Saves the page as build/check/web/NAME-WxH.png (the viewport as set).
export async function shot(page, name) {
  mkdirSync(SHOTS, { recursive: true });
  const { width, height } = page.viewportSize();
  const path = join(SHOTS, `${name}-${width}x${height}.png`);
  await page.screenshot({ path, fullPage: true });
  return path;
}

// Fails when the page logged console errors other than those matching
// one of the allowed regexps.
export function noConsoleErrors(page, allowed = []) {
  const bad = page.errors.filter((e) => !allowed.some((re) => re.test(e)));
  if (bad.length) throw new Error(`console errors in the browser:\n${bad.join('\n')}`);
}

// GET path exactly as written (no URL normalisation, unlike fetch):
// {status, body}.
export function rawGet(base, path) {
  const u = new URL(base);
  return new Promise((resolve, reject) => {
    const req = request({ host: u.hostname, port: u.port, path, method: 'GET' }, (res) => {
      let body = '';
      res.on('data', (d) => { body += d; });
      res.on('end', () => resolve({ status: res.statusCode, body }));
    });
    req.on('error', reject);
    req.end();
  });
}
