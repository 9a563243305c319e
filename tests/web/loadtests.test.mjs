// loadtests.test.mjs — the Performance tests pages (#/loadtests and
// #/loadtests/ID) against a real sonded, its real load generator and the
// demo service under a real agent:
//   - New → only the URL (and a 3 s duration for the test's sake) → Run
//     test: the list shows it queued / in progress, then completed, with
//     no reload; a second test made while the first runs waits queued and
//     then runs (sonded runs one at a time);
//   - a completed test with profile during test: the uPlot charts are
//     drawn, p99 shown, the 200 count equals the requests, the load-test
//     session is linked to #/sessions/ID and becomes completed;
//   - bad values are explained at their fields, the server's 400 and a
//     403 target refusal at the URL, and nothing is created;
//   - a queued test cancelled from its page, a running one from the list;
//   - profile during test of an app no agent runs: the results say so;
//   - a reader sees Run test disabled with the reason.
// Screenshots at 1280×800 and 390×844 into build/check/web/.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { noConsoleErrors, shot, waitFor, world } from './harness.mjs';

const PHONE = [390, 844];

// The state shown in the list for test id (null when not listed).
const listState = (page, id) => page.evaluate((id) => {
  const a = document.querySelector(`#lt-list a.lt-id[data-id="${id}"]`);
  return a ? a.closest('tr').querySelector('.state').dataset.state : null;
}, id);

const num = (s) => Number(String(s).replace(/[^\d.]/g, ''));

// The page fits its viewport: nothing sticks out sideways.
async function fits(page, what) {
  const [sw, iw] = await page.evaluate(() =>
    [document.documentElement.scrollWidth, window.innerWidth]);
  assert.ok(sw <= iw, `${what}: the page is ${sw} px wide in a ${iw} px viewport`);
}

test('run tests from the page; queue; results with chart and linked session', async (t) => {
  const w = await world(t);
  const demo = await w.demo({ app: 'demo' });
  const page = await w.page({ role: 'writer' });
  await page.goto(`${w.url}/#/loadtests`);
  await page.waitForSelector('#lt-list td.empty');
  await page.evaluate(() => { window.ltNoReload = true; });

  // New → the URL → Options: only the duration → Run test.
  await page.click('#lt-new');
  await page.fill('#lt-url', `${demo.url}/fast`);
  assert.equal(await page.inputValue('#lt-users'), '10');
  assert.equal(await page.inputValue('#lt-method'), 'GET');
  await page.click('#lt-options summary');
  await page.fill('#lt-duration', '3');
  await shot(page, 'loadtests-new');
  await page.click('#lt-run');
  const seen1 = new Set();
  const seen2 = new Set();
  await waitFor(async () => {
    const s = await listState(page, 1);
    if (s) seen1.add(s);
    return s;
  }, 'test 1 in the list');
  assert.ok(seen1.has('queued') || seen1.has('in progress'), [...seen1].join());
  assert.equal(await page.isHidden('#lt-form'), true);

  // A second test while the first runs: profile during test, app demo.
  await page.click('#lt-new');
  await page.fill('#lt-url', `${demo.url}/cpu?ms=2`);
  await page.fill('#lt-duration', '4');
  await page.check('#lt-profile');
  await page.waitForSelector('#lt-app option[value="demo"]', { state: 'attached' });
  await page.selectOption('#lt-app', 'demo');
  assert.match(await page.textContent('#lt-options-summary'), /4 s, profile demo/);
  await page.click('#lt-run');
  await waitFor(async () => {
    const s = await listState(page, 2);
    if (s) seen2.add(s);
    return s;
  }, 'test 2 in the list');
  assert.ok(seen2.has('queued'), [...seen2].join());
  await shot(page, 'loadtests-running');

  // Both end by themselves, no reload.
  await waitFor(async () => {
    const [a, b] = [await listState(page, 1), await listState(page, 2)];
    if (a) seen1.add(a);
    if (b) seen2.add(b);
    return a === 'completed' && b === 'completed';
  }, 'both tests completed in the list', 60000, 150);
  assert.ok(seen1.has('in progress') || seen2.has('in progress'),
    `in progress shown: ${[...seen1]} / ${[...seen2]}`);
  assert.equal(await page.evaluate(() => window.ltNoReload), true, 'the page was not reloaded');
  const t1 = await w.api('GET', '/api/v1/loadtests/1');
  const t2 = await w.api('GET', '/api/v1/loadtests/2');
  assert.equal(t1.duration_s, 3);
  assert.equal(t1.users, 10);
  assert.equal(t1.method, 'GET');
  assert.ok(t2.started_ms >= t1.ended_ms, 'the second test waited for the first');
  assert.equal(t2.profile_app, 'demo');
  const row2 = page.locator('#lt-list tr', { has: page.locator('a.lt-id[data-id="2"]') });
  assert.equal(num(await row2.locator('td').nth(5).textContent()), t2.requests);
  assert.match(await row2.locator('td').nth(7).textContent(), /ms$/);
  await shot(page, 'loadtests-list');

  // Open the profiled test: its chart, figures and linked session.
  await row2.locator('td').nth(1).click();
  await waitFor(async () => page.evaluate(() => location.hash === '#/loadtests/2'), 'test 2 opened');
  const size = await waitFor(() => page.evaluate(() => {
    const c = document.querySelector('#lt-chart-rps canvas');
    const d = document.querySelector('#lt-chart-latency canvas');
    return c && d && c.width > 100 && c.height > 100 && d.width > 100 ? [c.width, c.height] : null;
  }), 'the uPlot charts');
  assert.ok(size[0] > 100 && size[1] > 100);
  assert.match(await page.textContent('#lt-lat-p99'), /\d ms$/);
  assert.match(await page.textContent('#lt-lat-mean'), /\d ms$/);
  const requests = num(await page.textContent('#lt-requests'));
  assert.ok(requests > 0);
  assert.equal(requests, t2.result.requests);
  assert.equal(num(await page.textContent('#lt-status-200')), requests);
  assert.equal(await page.textContent('#lt-req-profile'), 'demo');
  const link = await page.waitForSelector('#lt-session-list a.lt-session', { timeout: 30000 });
  const sid = await link.getAttribute('data-id');
  assert.equal(await link.getAttribute('href'), `#/sessions/${sid}`);
  const srow = page.locator('#lt-session-list tbody tr').first();
  assert.equal(await srow.locator('td.lt-trigger').textContent(), 'load-test');
  const s = await w.api('GET', `/api/v1/sessions/${sid}`);
  assert.equal(s.triggered_by, 'load-test');
  assert.equal(s.request_id, t2.profile_now_id);
  await waitFor(async () => (await srow.locator('.state').getAttribute('data-state')) === 'completed',
    'the linked session completed (uploaded)', 40000);
  await shot(page, 'loadtest-result');
  await fits(page, 'results at 1280');

  // The phone size: the list and the results fit.
  const phone = await w.page({ role: 'writer', size: PHONE });
  await phone.goto(`${w.url}/#/loadtests`);
  await phone.waitForSelector('#lt-list a.lt-id[data-id="2"]');
  await shot(phone, 'loadtests-list');
  await fits(phone, 'list at 390');
  await phone.click('#lt-new');
  await shot(phone, 'loadtests-new');
  await phone.goto(`${w.url}/#/loadtests/2`);
  await phone.waitForSelector('#lt-chart-latency canvas');
  await phone.waitForSelector('#lt-session-list a.lt-session');
  await shot(phone, 'loadtest-result');
  await fits(phone, 'results at 390');
  noConsoleErrors(phone);
  noConsoleErrors(page);

  // The session link leads to the session page.
  await page.click(`#lt-session-list a.lt-session[data-id="${sid}"]`);
  await waitFor(() => page.evaluate((sid) => location.hash === `#/sessions/${sid}`, sid),
    'the session page');
});

test('bad values at their fields, refused target, cancel, reader', async (t) => {
  const w = await world(t);
  const demo = await w.demo({ agent: false });
  const page = await w.page({ role: 'writer' });
  await page.goto(`${w.url}/#/loadtests`);
  await page.waitForSelector('#lt-list td.empty');
  await page.click('#lt-new');

  // Checked in the page: nothing is sent.
  await page.fill('#lt-url', '127.0.0.1/fast');
  await page.click('#lt-options summary');
  await page.fill('#lt-users', '0');
  await page.fill('#lt-duration', '4000');
  await page.fill('#lt-rate', '-1');
  await page.click('#lt-run');
  assert.match(await page.textContent('#lt-url-error'), /must start with http:\/\//);
  assert.match(await page.textContent('#lt-users-error'), /Users must be a whole number from 1 to 10,000/);
  assert.match(await page.textContent('#lt-duration-error'), /from 1 to 3,600 s/);
  assert.match(await page.textContent('#lt-rate-error'), /from 0 to 1,000,000/);
  assert.equal(await page.getAttribute('#lt-users', 'aria-invalid'), 'true');
  await page.fill('#lt-url', 'https://127.0.0.1/');
  await page.click('#lt-run');
  assert.match(await page.textContent('#lt-url-error'), /https is not supported/);
  await page.click('#lt-add-header');
  await page.fill('.lt-h-name >> nth=0', 'Host');
  await page.fill('.lt-h-value >> nth=0', 'x');
  await page.click('#lt-run');
  assert.match(await page.textContent('.lt-header .field-error'), /Host is set by the load generator/);
  await shot(page, 'loadtests-errors');
  await page.click('.lt-remove');

  // Fixed values; the server still refuses: its message at the URL.
  await page.fill('#lt-users', '');
  await page.fill('#lt-duration', '3');
  await page.fill('#lt-rate', '');
  await page.fill('#lt-url', 'http://no-such-host.invalid/');
  await page.click('#lt-run');
  await waitFor(async () => /cannot resolve host/.test(await page.textContent('#lt-url-error')),
    'the server\'s 400 at the URL');
  assert.equal(await page.textContent('#lt-users-error'), '');

  // A target outside --loadtest-allow: 403 at the URL, explained.
  await page.fill('#lt-url', 'http://10.255.255.1/');
  await page.click('#lt-run');
  await waitFor(async () => /not allowed/.test(await page.textContent('#lt-url-error')),
    'the 403 at the URL');
  const refused = await page.textContent('#lt-url-error');
  assert.match(refused, /target 10\.255\.255\.1 .*--loadtest-allow permits 127\.0\.0\.0\/8/);
  assert.match(refused, /^Refused: .*only sends load to the hosts/);
  await shot(page, 'loadtests-refused');
  assert.equal((await w.api('GET', '/api/v1/loadtests')).total, 0, 'nothing was created');

  // One running (60 s at 20 requests/s), one queued behind it.
  await page.fill('#lt-url', `${demo.url}/fast`);
  await page.fill('#lt-duration', '60');
  await page.fill('#lt-rate', '20');
  await page.click('#lt-run');
  await waitFor(async () => (await listState(page, 1)) === 'in progress', 'test 1 in progress',
    20000);
  await page.click('#lt-new');
  await page.click('#lt-run');
  await waitFor(async () => (await listState(page, 2)) === 'queued', 'test 2 queued');
  assert.match(await page.textContent('#lt-list tr:has(a.lt-id[data-id="2"]) .lt-sub'), /1 ahead/);

  // The running one's page: progress so far, results so far.
  await page.click('#lt-list a.lt-id[data-id="1"]');
  await page.waitForSelector('#lt-progress');
  await waitFor(async () => /\d+ requests so far/.test(await page.textContent('#lt-progress-text')),
    'progress of test 1');
  await page.waitForSelector('#lt-requests');
  assert.match(await page.textContent('#lt-over-time'), /drawn when the test has ended/);
  await shot(page, 'loadtest-in-progress');
  await page.click('text=← Performance tests');

  // The queued one cancelled from its page: nothing ran.
  await page.click('#lt-list a.lt-id[data-id="2"]');
  await page.waitForSelector('#lt-state .state[data-state="queued"]');
  assert.match(await page.textContent('#lt-status'), /Queued: sonded runs one test at a time/);
  await shot(page, 'loadtest-queued');
  await page.click('#lt-cancel');
  await page.waitForSelector('#lt-state .state[data-state="cancelled"]');
  assert.match(await page.textContent('#lt-status'), /Cancelled before it started/);
  assert.equal(await page.isHidden('#lt-cancel'), true);

  // The running one cancelled from the list: results so far kept.
  await page.click('text=← Performance tests');
  await page.waitForSelector('button.lt-cancel[data-id="1"]');
  await page.click('button.lt-cancel[data-id="1"]');
  await waitFor(async () => (await listState(page, 1)) === 'cancelled', 'test 1 cancelled', 20000);
  const t1 = await w.api('GET', '/api/v1/loadtests/1');
  assert.equal(t1.state, 'cancelled');
  assert.equal((await w.api('GET', '/api/v1/loadtests/2')).started_ms, null);
  assert.equal(await page.isVisible('button.lt-cancel'), false);
  await shot(page, 'loadtests-cancelled');

  // Profile during test of an app no agent runs: the results say so.
  const ghost = await w.api('POST', '/api/v1/loadtests',
    { url: `${demo.url}/fast`, duration_s: 1, rate: 20, profile_app: 'ghost' });
  await page.goto(`${w.url}/#/loadtests/${ghost.id}`);
  await waitFor(async () => /no agent of ghost was running during the test/
    .test(await page.textContent('#lt-sessions')), 'the no-agent note', 20000);
  assert.equal(await page.getAttribute('#lt-state .state', 'data-state'), 'completed');
  assert.doesNotMatch(await page.textContent('#lt-sessions'), /null|undefined/);
  await shot(page, 'loadtest-no-agent');

  // Run again: the form filled in from the test.
  await page.click('#lt-again');
  await waitFor(async () => (await page.inputValue('#lt-url')) === `${demo.url}/fast`,
    'the form filled in');
  assert.equal(await page.inputValue('#lt-duration'), '1');
  assert.equal(await page.inputValue('#lt-rate'), '20');
  assert.equal(await page.isChecked('#lt-profile'), true);
  assert.equal(await page.inputValue('#lt-app'), 'ghost');
  noConsoleErrors(page, [/^HTTP 403 \/api\/v1\/loadtests$/, /^HTTP 400 \/api\/v1\/loadtests$/]);

  // The phone size: the form with its errors.
  const phone = await w.page({ role: 'writer', size: PHONE });
  await phone.goto(`${w.url}/#/loadtests?new=1`);
  await phone.waitForSelector('#lt-url');
  await phone.click('#lt-options summary');
  await phone.fill('#lt-users', '0');
  await phone.click('#lt-run');
  await phone.waitForSelector('#lt-url-error:not(:empty)');
  await shot(phone, 'loadtests-errors');
  await fits(phone, 'the form at 390');
  await phone.goto(`${w.url}/#/loadtests/1`);
  await phone.waitForSelector('#lt-state .state[data-state="cancelled"]');
  await shot(phone, 'loadtest-cancelled');
  await fits(phone, 'a cancelled test at 390');
  await phone.goto(`${w.url}/#/loadtests/${ghost.id}`);
  await phone.waitForSelector('#lt-sessions .notice.warn');
  await shot(phone, 'loadtest-no-agent');
  noConsoleErrors(phone);

  // A reader: Run test disabled with the reason.
  for (const size of [[1280, 800], PHONE]) {
    const reader = await w.page({ role: 'reader', size });
    await reader.goto(`${w.url}/#/loadtests`);
    await reader.waitForSelector('#lt-list a.lt-id[data-id="1"]');
    await reader.click('#lt-new');
    assert.equal(await reader.isDisabled('#lt-run'), true);
    assert.match(await reader.getAttribute('#lt-run', 'title'), /role is reader: this needs writer/);
    await shot(reader, 'loadtests-reader');
    noConsoleErrors(reader);
  }
});
