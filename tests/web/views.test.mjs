// views.test.mjs — the session view and the views pages in a real browser,
// against a real sonded and the demo under a real agent with load on
// /cpu?ms=5: a Profile Now's session page says "still profiling" and shows
// the flame graph by itself when the profile is uploaded; the flame graph
// has demo_checksum_work, a click zooms into it, reset zooms out, search
// highlights and counts, hover shows total and self; the pprof download is
// read by `go tool pprof`; speedscope opens the profile in a new tab
// (through a blob: URL, no token in any URL); the top table sorts; type
// and label filters; the merged view of the app; the diff of two sessions
// with its legend; bad inputs (unknown session, a type the profile lacks,
// malformed label, no app, unknown app, unknown session in a diff) each
// say what is wrong.  Screenshots at 1280×800 and 390×844.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';

import { noConsoleErrors, shot, waitFor, world } from './harness.mjs';

const run = promisify(execFile);
const FN = 'demo_checksum_work';

// Profile Now of app for duration_s: the session it started (maybe still
// running).
async function profileNow(w, app, duration_s) {
  const req = await w.api('POST', '/api/v1/profile-now', { app, duration_s });
  return waitFor(async () => (await w.api('GET', `/api/v1/sessions?app=${app}`)).sessions
    .find((s) => s.request_id === req.id), `the session of Profile Now ${req.id}`, 20000, 200);
}

async function uploaded(w, id) {
  return waitFor(async () => {
    const s = await w.api('GET', `/api/v1/sessions/${id}`);
    return s.has_profile && s;
  }, `session ${id}'s profile`, 45000, 250);
}

const frame = (page, name) => page.locator(`#flame g.frame[name="${name}"]`).first();
const rectWidth = (loc) => loc.locator('rect').evaluate((r) => Number(r.getAttribute('width')));
const svgWidth = (page) => page.locator('#flame svg').evaluate((s) => Number(s.getAttribute('width')));

// The query of the page's location hash (#/page?…).
const hashQuery = (page) => new URLSearchParams(new URL(page.url()).hash.split('?')[1] || '');

async function showsFrame(page, name, timeout = 15000) {
  await frame(page, name).waitFor({ state: 'attached', timeout });
}

test('session view, merged view and diff', async (t) => {
  const w = await world(t);
  const demo = await w.demo();
  const stopLoad = w.load(`${demo.url}/cpu?ms=5`);
  t.after(stopLoad);
  const readerToken = await w.token('reader');

  // A session still profiling: the page says so, then draws the flame
  // graph by itself once the profile is there.
  const s1 = await profileNow(w, 'demo', 4);
  const page = await w.page({ role: 'reader' });
  await page.goto(`${w.url}/#/sessions/${s1.id}`);
  await page.waitForSelector('#session-facts');
  await page.evaluate(() => { window.notReloaded = true; });
  if (!(await w.api('GET', `/api/v1/sessions/${s1.id}`)).has_profile) {
    const st = await page.textContent('#session-status');
    assert.match(st, /Still profiling|not uploaded yet/);
    await shot(page, 'session-running');
  }
  await uploaded(w, s1.id);
  await showsFrame(page, FN, 30000);
  assert.equal(await page.evaluate(() => window.notReloaded), true, 'the page was not reloaded');
  assert.equal(await page.textContent('#session-state'), 'completed');
  const facts = await page.textContent('#session-facts');
  for (const k of ['Triggered by', 'profile-now', 'App', 'demo', 'Instance', 'web-1', 'PID',
    String(demo.pid), 'Start', 'Duration', '4s', 'Samples', 'Traces', 'CPU', 'Memory'])
    assert.ok(facts.includes(k), `facts show ${k}: ${facts}`);

  // The second session for the diff, recorded while the first is looked
  // at; a phone-sized page opens it at once (still profiling).
  const s2p = profileNow(w, 'demo', 3);
  const phoneP = (async () => {
    const s = await s2p;
    const phone = await w.page({ role: 'reader', size: [390, 844] });
    await phone.goto(`${w.url}/#/sessions/${s.id}`);
    await phone.waitForSelector('#session-facts');
    await phone.evaluate(() => { window.notReloaded = true; });
    if (!(await w.api('GET', `/api/v1/sessions/${s.id}`)).has_profile) {
      assert.match(await phone.textContent('#session-status'), /Still profiling|not uploaded yet/);
      await shot(phone, 'session-running');
    }
    return phone;
  })();

  await t.test('flame graph: zoom, reset, hover, search', async () => {
    const total = await svgWidth(page);
    const root = page.locator('#flame g.frame[name="root"]');
    assert.ok(!/fade/.test(await root.getAttribute('class')));
    await frame(page, FN).locator('rect').click();
    await waitFor(async () => (await rectWidth(frame(page, FN))) >= total - 1 &&
      /fade/.test(await root.getAttribute('class')), 'the zoom into demo_checksum_work');
    assert.equal(await page.isEnabled('#reset-zoom'), true);
    await shot(page, 'session-zoomed');
    await page.click('#reset-zoom');
    await waitFor(async () => !/fade/.test(await root.getAttribute('class')), 'the zoom reset');
    assert.equal(await page.isDisabled('#reset-zoom'), true);

    await frame(page, FN).hover();
    const det = await page.textContent('#flame-details');
    assert.match(det, new RegExp(`${FN}\\s+total [\\d.]+ (ms|s) \\([\\d.]+ %\\) · self [\\d.]+ (ms|s|µs) \\([\\d.]+ %\\)`));

    await page.fill('#search', 'checksum');
    const n = await waitFor(async () => Number(await page.getAttribute('#search-count', 'data-count')),
      'a search count');
    assert.ok(n >= 1, `${n} matches`);
    assert.match(await page.textContent('#search-count'), /frames? match/);
    assert.ok(await page.locator('#flame rect[fill="#E600E6"]').count() >= 1, 'highlighted frames');
    await shot(page, 'session');
    await page.fill('#search', 'no_such_function_here');
    assert.equal(await page.getAttribute('#search-count', 'data-count'), '0');
    await page.fill('#search', '');
  });

  await t.test('download gives a pprof go tool pprof reads', async () => {
    const [dl] = await Promise.all([page.waitForEvent('download'), page.click('#download')]);
    assert.equal(dl.suggestedFilename(), `session-${s1.id}.pb.gz`);
    const dir = w.tmp();
    const file = join(dir, dl.suggestedFilename());
    await dl.saveAs(file);
    const { stdout } = await run('go', ['tool', 'pprof', '-top', file], {
      env: { ...process.env, GOCACHE: join(dir, 'gocache'), PPROF_TMPDIR: dir, HOME: dir },
      timeout: 60000,
    });
    assert.match(stdout, new RegExp(FN));
  });

  await t.test('speedscope opens the profile, no token in its URL', async () => {
    const [sp] = await Promise.all([page.context().waitForEvent('page'), page.click('#speedscope')]);
    const errors = [];
    sp.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
    sp.on('pageerror', (e) => errors.push(e.message));
    await sp.waitForURL(/\/speedscope\/#profileURL=blob%3A/, { timeout: 15000 });
    assert.ok(!sp.url().includes(readerToken) && !sp.url().includes('sonde_'), sp.url());
    await waitFor(async () => (await sp.title()).includes(`session-${s1.id}`), 'speedscope\'s title');
    await waitFor(async () => (await sp.textContent('body')).includes(`session-${s1.id}`),
      'the profile\'s name in speedscope\'s toolbar');
    const text = await sp.textContent('body');
    assert.ok(!/Something went wrong|Unrecognized format|Failed to/.test(text), text);
    await sp.waitForSelector('canvas');
    await shot(sp, 'speedscope');
    assert.deepEqual(errors, []);
    await sp.close();
  });

  await t.test('top functions sort by a heading', async () => {
    const names = () => page.$$eval('#top tbody tr td:first-child', (tds) => tds.map((x) => x.textContent));
    assert.equal((await names())[0], FN, 'sorted by self: the hot function first');
    await page.click('#top th:has-text("Function")');
    assert.equal(await page.getAttribute('#top th:has-text("Function")', 'aria-sort'), 'ascending');
    let got = await names();
    assert.deepEqual(got, [...got].sort());
    await page.click('#top th:has-text("Function")');
    got = await names();
    assert.deepEqual(got, [...got].sort().reverse());
    await page.click('#top th:text-is("Total")');
    assert.equal(await page.getAttribute('#top th:text-is("Total")', 'aria-sort'), 'ascending');
    // A row finds its function in the flame graph.
    await page.click(`#top tbody tr:has-text("${FN}")`);
    assert.equal(await page.inputValue('#search'), FN);
    await page.fill('#search', '');
  });

  await t.test('type and label filters', async () => {
    // The profile's own types, read from it.
    await waitFor(async () => (await page.$$eval('#type option', (o) => o.map((x) => x.value)))
      .includes('samples'), 'the profile\'s sample types');
    await page.selectOption('#type', 'samples');
    await waitFor(async () => /^samples:/.test(await page.textContent('#flame-total')), 'the samples view');
    assert.equal(hashQuery(page).get('type'), 'samples');
    await showsFrame(page, FN);
    // The endpoints the profile's samples carry.
    await page.waitForSelector('#label-interface option[value="interface:GET /cpu"]', { state: 'attached' });
    await page.selectOption('#label-interface', 'interface:GET /cpu');
    await page.waitForSelector('#label-chips .chip:has-text("interface:GET /cpu")');
    assert.deepEqual(hashQuery(page).getAll('label'), ['interface:GET /cpu']);
    await showsFrame(page, FN);
    // By hand: malformed, then one that matches nothing.
    await page.fill('#label', 'nocolon');
    await page.click('#apply');
    assert.match(await page.textContent('#label-error'), /KEY:VALUE/);
    await page.fill('#label', 'thread:no-such-thread');
    await page.click('#apply');
    await page.waitForSelector('#view-status .notice:has-text("No samples carry these labels")');
    await shot(page, 'session-filtered');
    // A reload keeps type and labels.
    await page.reload();
    await page.waitForSelector('#view-status .notice:has-text("No samples carry these labels")');
    assert.equal(await page.inputValue('#type'), 'samples');
    await page.click('#label-chips .chip:has-text("thread:no-such-thread") button');
    await showsFrame(page, FN);
  });

  await t.test('a type the profile lacks, an unknown session', async () => {
    await page.goto(`${w.url}/#/sessions/${s1.id}?type=wall`);
    const err = await page.waitForSelector('#type-error:not(:empty)');
    assert.match(await err.textContent(), /sample type 'wall' \(types: .*cpu/);
    assert.match(await page.textContent('#view-status'), /sample type 'wall'/);
    await shot(page, 'session-badtype');
    await page.goto(`${w.url}/#/sessions/999999`);
    await page.waitForSelector('.notice.error:has-text("session 999999 not found")');
    await shot(page, 'session-notfound');
    page.errors = page.errors.filter((e) => !/^HTTP 400 \/api\/v1\/sessions\/\d+\/(flamegraph|top)$/.test(e) &&
      e !== 'HTTP 404 /api/v1/sessions/999999');
  });

  const s2 = await uploaded(w, (await s2p).id);

  await t.test('merged view of the app over the last hour', async () => {
    await page.goto(`${w.url}/#/views`);
    await page.click('#show');
    assert.match(await page.textContent('#app-error'), /Enter the app/);
    await page.fill('#app', 'demo');
    await page.selectOption('#range', '1h');
    await page.click('#show');
    await showsFrame(page, FN);
    assert.match(page.url(), /#\/views\?app=demo&range=1h/);
    assert.match(await page.textContent('#views-summary'), /2 sessions merged/);
    assert.ok(await page.locator('#top tbody tr').count() > 1);
    await page.fill('#search', 'checksum');
    assert.ok(Number(await page.getAttribute('#search-count', 'data-count')) >= 1);
    await shot(page, 'views-merged');
    // A new session of the app: the view offers to redraw, and then has it.
    const s3 = await profileNow(w, 'demo', 2);
    await page.waitForSelector('#views-fresh .notice:has-text("1 new session since this view was drawn")',
      { timeout: 20000 });
    await uploaded(w, s3.id);
    await page.click('#redraw');
    await waitFor(async () => /3 sessions merged/.test(await page.textContent('#views-summary')),
      'the redrawn view of 3 sessions');
    // Custom range: the end before the start is refused in the page.
    await page.selectOption('#range', 'custom');
    await page.fill('#from', '2026-01-02T10:00');
    await page.fill('#to', '2026-01-01T10:00');
    await page.click('#show');
    assert.match(await page.textContent('#to-error'), /after the start/);
    // An app without profiles: the server's message.
    await page.goto(`${w.url}/#/views?app=nope&range=1h`);
    await page.waitForSelector('#views-results .notice.error:has-text("no profiles match app \'nope\'")');
    page.errors = page.errors.filter((e) => !/^HTTP 404 \/api\/v1\/views\/(flamegraph|top)$/.test(e));
  });

  await t.test('diff of two sessions, from the session page', async () => {
    await page.goto(`${w.url}/#/sessions/${s2.id}`);
    await showsFrame(page, FN);
    await waitFor(async () => /base\.session=\d+/.test(await page.getAttribute('#compare', 'href')),
      'the compare link with the previous session');
    await page.click('#compare');
    await page.waitForSelector('.diff-legend');
    await showsFrame(page, FN);
    assert.equal(await page.inputValue('#base-session'), String(s1.id));
    assert.equal(await page.inputValue('#cmp-session'), String(s2.id));
    assert.match(await page.textContent('.diff-legend'), /less in comparison.*more in comparison/);
    assert.ok(await page.locator('#diff-functions tbody tr').count() > 1);
    await frame(page, FN).hover();
    assert.match(await page.textContent('#flame-details'), /base .* → comparison .*/);
    await shot(page, 'views-diff');
    // An unknown session on one side: said at its field.
    await page.fill('#cmp-session', '999999');
    await page.click('#show');
    await page.waitForSelector('#cmp-session-error:has-text("session 999999 not found")');
    page.errors = page.errors.filter((e) => e !== 'HTTP 404 /api/v1/views/diff');
    noConsoleErrors(page);
  });

  await t.test('phone size', async () => {
    const phone = await phoneP;
    await showsFrame(phone, FN); // the running session's page, by itself
    assert.equal(await phone.evaluate(() => window.notReloaded), true);
    await phone.goto(`${w.url}/#/sessions/${s1.id}`);
    await showsFrame(phone, FN);
    await phone.fill('#search', 'checksum');
    await shot(phone, 'session');
    await phone.goto(`${w.url}/#/sessions/${s1.id}?type=wall`);
    await phone.waitForSelector('#type-error:not(:empty)');
    await shot(phone, 'session-badtype');
    await phone.goto(`${w.url}/#/sessions/999999`);
    await phone.waitForSelector('.notice.error');
    await shot(phone, 'session-notfound');
    await phone.goto(`${w.url}/#/views?app=demo&range=1h`);
    await showsFrame(phone, FN);
    await shot(phone, 'views-merged');
    await phone.goto(`${w.url}/#/views?mode=diff&base.session=${s1.id}&cmp.session=${s2.id}`);
    await phone.waitForSelector('.diff-legend');
    await showsFrame(phone, FN);
    await shot(phone, 'views-diff');
    phone.errors = phone.errors.filter((e) => !/^HTTP 400 \/api\/v1\/sessions\/\d+\/(flamegraph|top)$/.test(e) &&
      e !== 'HTTP 404 /api/v1/sessions/999999');
    noConsoleErrors(phone);
  });
});
