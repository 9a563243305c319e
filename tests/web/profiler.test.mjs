// profiler.test.mjs — the Configure Profiler page (#/profiler) in
// Chromium against a real sonded: Profile Now on the demo under its agent
// with the session appearing and completing without a reload, then opening
// it; triggers and default sampling saved, persisting across a reload,
// refused at the field when out of range (nothing sent), and a per-app
// override saved and removed; a reader sees the writes disabled with the
// reason and a forged request is refused; the agents list says when an
// app's agent is gone; the sessions filters by app, time range and pages.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { noConsoleErrors, shot, waitFor, world } from './harness.mjs';

const MOBILE = [390, 844];

async function open(w, role, size) {
  const page = await w.page({ role, size });
  await page.goto(`${w.url}/#/profiler`);
  await page.waitForSelector('#profile-now');
  return page;
}

// A fake agent registered through the agent API: {id, token}.
async function fakeAgent(w, app, instance = 'i-1') {
  const token = await w.token('agent');
  const r = await w.api('POST', '/api/v1/agent/register',
    { app, instance, pid: 4000 + app.length, agent_version: 'test' }, token);
  return { id: r.agent_id, token };
}

const value = (page, sel) => page.$eval(sel, (e) => e.value);

test('writer: Profile Now, the session shows up by itself and opens', async (t) => {
  const w = await world(t);
  const d = await w.demo();
  const stopLoad = w.load(`${d.url}/cpu?ms=5`);
  t.after(stopLoad);
  const page = await open(w, 'writer');
  await page.waitForSelector('#pn-app option[value="demo"]', { state: 'attached' });
  await page.selectOption('#pn-app', 'demo');
  await waitFor(async () => /1 running agent of demo/.test(await page.textContent('#pn-reach')),
    'the count of running agents');
  await page.fill('#pn-duration', '0');
  await page.click('#pn-start');
  assert.match(await page.textContent('#pn-duration-error'), /1\.\.3600/);
  await page.fill('#pn-duration', '5');
  await page.click('#pn-start');
  const sent = await page.waitForSelector('#pn-sent .notice.ok');
  assert.match(await sent.textContent(), /reached 1 running agent of app demo/);
  assert.equal(await page.textContent('#pn-duration-error'), '');

  // The row comes without a reload: profiling, then completed.
  await page.waitForSelector('#sessions-table [data-shown="running"]', { timeout: 20000 });
  await page.waitForSelector('#pn-sessions .notice:has-text("started")', { timeout: 10000 });
  await shot(page, 'profiler-profiling');
  await page.waitForSelector('#sessions-table [data-shown="completed"]', { timeout: 40000 });
  await page.waitForSelector('#pn-sessions .notice.ok:has-text("ended")', { timeout: 10000 });
  await stopLoad();
  const [s] = (await w.api('GET', '/api/v1/sessions?app=demo')).sessions;
  assert.equal(s.triggered_by, 'profile-now');
  assert.ok(s.has_profile);
  assert.match(await page.textContent('#sessions-table tbody'), /Profile Now.*demo.*web-1/);
  await shot(page, 'profiler-completed');

  const small = await open(w, 'writer', MOBILE);
  await small.waitForSelector('#sessions-table [data-shown="completed"]');
  await shot(small, 'profiler-completed');
  noConsoleErrors(small);

  noConsoleErrors(page);
  await page.click(`#sessions-table tbody tr:has([data-session="${s.id}"])`);
  await page.waitForFunction((id) => location.hash === `#/sessions/${id}`, s.id);
});

test('triggers and default sampling: validated, saved, per-app override', async (t) => {
  const w = await world(t);
  await fakeAgent(w, 'shop');
  const page = await open(w, 'writer');
  const puts = [];
  page.on('request', (r) => { if (r.method() !== 'GET') puts.push(`${r.method()} ${r.url()}`); });
  await page.waitForFunction(() => document.querySelector('#trig-cpu-threshold')?.value === '80');

  await page.fill('#trig-cpu-threshold', '65');
  await page.fill('#trig-memory-cooldown_s', '900');
  await page.click('#trig-save');
  await page.waitForSelector('#trig-msg .notice.ok');
  await page.reload();
  await page.waitForFunction(() => document.querySelector('#trig-cpu-threshold')?.value === '65');
  assert.equal(await value(page, '#trig-memory-cooldown_s'), '900');
  let doc = await w.api('GET', '/api/v1/triggers');
  assert.equal(doc.cpu.threshold, 65);
  assert.equal(doc.memory.cooldown_s, 900);
  assert.equal(doc.memory.threshold, 80);

  // Out of range: the message at the field, nothing sent.
  puts.length = 0;
  await page.fill('#trig-cpu-threshold', '150');
  await page.fill('#trig-memory-duration_s', '5');
  await page.click('#trig-save');
  await page.waitForSelector('#trig-cpu-threshold-error:has-text("1..100")');
  assert.match(await page.textContent('#trig-memory-duration_s-error'), /10\.\.3600/);
  assert.match(await page.textContent('#trig-msg'), /Not saved/);
  await shot(page, 'profiler-trigger-error');
  assert.deepEqual(puts, []);
  doc = await w.api('GET', '/api/v1/triggers');
  assert.equal(doc.cpu.threshold, 65);
  assert.equal(doc.memory.duration_s, 120);

  // Default sampling: window longer than period refused, then saved.
  await page.fill('#ds-window_s', '600');
  await page.fill('#ds-period_s', '300');
  await page.click('#ds-save');
  await page.waitForSelector('#ds-window_s-error:has-text("longer than the period")');
  assert.deepEqual(puts, []);
  await page.fill('#ds-period_s', '1800');
  await page.uncheck('#ds-enabled');
  await page.click('#ds-save');
  await page.waitForSelector('#ds-msg .notice.ok');
  assert.equal(await page.textContent('#ds-window_s-error'), '');
  assert.deepEqual(await w.api('GET', '/api/v1/default-sampling'),
    { app: null, overridden: false, enabled: false, window_s: 600, period_s: 1800 });

  // A per-app override: saved, shown as such, removed.
  await page.reload();
  await page.waitForSelector('#set-scope option[value="shop"]', { state: 'attached' });
  await page.selectOption('#set-scope', 'shop');
  await page.waitForSelector('#trig-scope[data-overridden="no"]:has-text("uses the workspace")');
  assert.equal(await value(page, '#trig-cpu-threshold'), '65');
  assert.ok(await page.isHidden('#trig-reset'));
  await page.fill('#trig-cpu-threshold', '95');
  await page.uncheck('#trig-memory-enabled');
  await page.click('#trig-save');
  await page.waitForSelector('#trig-scope[data-overridden="yes"]:has-text("its own settings")');
  doc = await w.api('GET', '/api/v1/triggers?app=shop');
  assert.equal(doc.overridden, true);
  assert.equal(doc.cpu.threshold, 95);
  assert.equal(doc.memory.enabled, false);
  assert.equal((await w.api('GET', '/api/v1/triggers')).cpu.threshold, 65);
  await shot(page, 'profiler-override');
  await page.click('#trig-reset');
  await page.waitForSelector('#trig-scope[data-overridden="no"]');
  assert.equal(await value(page, '#trig-cpu-threshold'), '65');
  assert.ok(await page.isChecked('#trig-memory-enabled'));
  assert.equal((await w.api('GET', '/api/v1/triggers?app=shop')).overridden, false);
  noConsoleErrors(page);

  const small = await open(w, 'writer', MOBILE);
  await small.waitForFunction(() => document.querySelector('#trig-cpu-threshold')?.value === '65');
  await small.fill('#trig-cpu-threshold', '150');
  await small.click('#trig-save');
  await small.waitForSelector('#trig-cpu-threshold-error:has-text("1..100")');
  await small.$eval('#settings', (e) => e.scrollIntoView());
  await shot(small, 'profiler-trigger-error');
  noConsoleErrors(small);
  assert.equal((await w.api('GET', '/api/v1/triggers')).cpu.threshold, 65);
});

test('reader: writes disabled with the reason, a forged request refused', async (t) => {
  const w = await world(t);
  for (const size of [[1280, 800], MOBILE]) {
    const page = await open(w, 'reader', size);
    await page.waitForFunction(() => document.querySelector('#trig-cpu-threshold')?.value === '80');
    for (const sel of ['#pn-start', '#trig-save', '#ds-save', '#trig-cpu-threshold', '#ds-enabled']) {
      assert.ok(await page.isDisabled(sel), `${sel} disabled`);
      assert.match(await page.getAttribute(sel, 'title'), /role is reader: this needs writer/, sel);
    }
    assert.ok(await page.isEnabled('#set-scope'));
    await page.hover('#pn-start', { force: true });
    await shot(page, 'profiler-reader');
    const status = await page.evaluate(async () => (await fetch('/api/v1/profile-now', {
      method: 'POST',
      headers: {
        Authorization: `Bearer ${localStorage.getItem('sonde.token')}`,
        'Content-Type': 'application/json',
      },
      body: JSON.stringify({ duration_s: 5 }),
    })).status);
    assert.equal(status, 403);
    noConsoleErrors(page, [/^HTTP 403 \/api\/v1\/profile-now$/]);
  }
  assert.deepEqual((await w.api('GET', '/api/v1/profile-now')).requests, []);
});

test('agents: none, then running, then gone without a reload', async (t) => {
  const w = await world(t);
  const page = await open(w, 'writer');
  const none = await page.waitForSelector('#agents-none');
  assert.match(await none.textContent(), /sonde run --server http/);
  const small = await open(w, 'writer', MOBILE);
  await small.waitForSelector('#agents-none');
  await small.$eval('#agents', (e) => e.scrollIntoView());
  await shot(small, 'profiler-no-agent');

  const d = await w.demo();
  await page.waitForSelector('#agents-running:has-text("demo (1)")');
  await page.waitForSelector('#agents-table [data-agent]:has-text("running")');
  assert.equal(await page.$('#agents-none'), null);
  await shot(page, 'profiler-agents');

  await d.proc.kill('SIGKILL');
  const msg = await page.waitForSelector('#agents-msgs [data-app="demo"]', { timeout: 30000 });
  assert.match(await msg.textContent(), /No running agent of app demo: profiling cannot run there\. Last seen/);
  assert.match(await page.textContent('#agents-table tbody'), /stale|stopped/);
  await page.selectOption('#pn-app', 'demo');
  assert.match(await page.textContent('#pn-reach'), /No agent of demo is running/);
  await page.click('#pn-start');
  const sent = await page.waitForSelector('#pn-sent .notice.warn');
  assert.match(await sent.textContent(),
    /no agent of app demo is running, so nothing will be profiled\. .*sonde run/);
  await page.$eval('#agents', (e) => e.scrollIntoView());
  await shot(page, 'profiler-agent-gone');
  await small.waitForSelector('#agents-msgs [data-app="demo"]', { timeout: 30000 });
  await small.$eval('#agents', (e) => e.scrollIntoView());
  await shot(small, 'profiler-agent-gone');
  noConsoleErrors(page);
  noConsoleErrors(small);
});

test('sessions: filter by app and time range, pages, new rows by themselves', async (t) => {
  const w = await world(t);
  const alpha = await fakeAgent(w, 'alpha');
  const beta = await fakeAgent(w, 'beta');
  const now = Date.now();
  const session = async (a, i, triggered_by = 'cpu-trigger') => {
    const s = await w.api('POST', '/api/v1/agent/sessions', {
      agent_id: a.id, triggered_by, profile_types: ['cpu'],
      start_ms: now - 600000 + i * 1000, duration_s: 30,
    }, a.token);
    await w.api('PATCH', `/api/v1/agent/sessions/${s.id}`,
      { state: i % 7 === 3 ? 'failed' : 'completed', samples: 100 + i, traces: i, cpu_pct: 40 + i, mem_pct: 3.5 },
      a.token);
    return s;
  };
  for (let i = 0; i < 52; i++) await session(alpha, i, i % 2 ? 'cpu-trigger' : 'default-sampling');
  await session(beta, 0);
  await session(beta, 1, 'memory-trigger');

  const page = await open(w, 'writer');
  await page.waitForSelector('#sess-count:has-text("1–50 of 54")');
  assert.ok(await page.isDisabled('#sess-prev'));
  await page.click('#sess-next');
  await page.waitForSelector('#sess-count:has-text("51–54 of 54")');
  assert.equal(await page.$$eval('#sessions-table tbody tr', (r) => r.length), 4);

  await page.waitForSelector('#sess-app option[value="beta"]', { state: 'attached' });
  await page.selectOption('#sess-app', 'beta');
  await waitFor(async () => {
    const apps = await page.$$eval('#sessions-table tbody tr td:nth-child(3)', (c) => c.map((x) => x.textContent));
    return apps.length === 2 && apps.every((a) => a === 'beta');
  }, 'only beta sessions');
  assert.ok(await page.isHidden('#sess-count'));
  assert.match(await page.textContent('#sessions-table tbody'), /Memory trigger/);
  await page.$eval('#sessions', (e) => e.scrollIntoView());
  await shot(page, 'profiler-sessions-filtered');

  // A new session of beta appears by itself, running.
  const fresh = await w.api('POST', '/api/v1/agent/sessions', {
    agent_id: beta.id, triggered_by: 'profile-now', profile_types: ['cpu'], duration_s: 60,
  }, beta.token);
  await page.waitForSelector(`#sessions-table tr:has([data-session="${fresh.id}"]) [data-shown="running"]`);
  assert.match(await page.textContent(`#sessions-table tr:has([data-session="${fresh.id}"])`), /profiling.*left/);

  // Time ranges: the last 15 minutes has them, a custom range a day ago none.
  await page.selectOption('#sess-app', '');
  await page.selectOption('#sess-range', '15m');
  await page.waitForSelector('#sess-count:has-text("of 55")');
  await page.selectOption('#sess-range', 'custom');
  await page.fill('#sess-from', '2020-01-01T00:00');
  await page.fill('#sess-to', '2020-01-02T00:00');
  await page.waitForSelector('#sessions-table td.empty');
  await page.fill('#sess-to', '2019-01-01T00:00');
  await page.waitForSelector('#sess-to-error:has-text("after the start")');
  noConsoleErrors(page);

  const small = await open(w, 'writer', MOBILE);
  await small.waitForSelector('#sess-count:has-text("of 55")');
  await small.$eval('#sessions', (e) => e.scrollIntoView());
  await shot(small, 'profiler-sessions');
  noConsoleErrors(small);
});
