// tasks.test.mjs — Active analysis in the browser (issue 8 item 4; SPEC
// B1–B4): the demo under a real agent; a writer's out-of-range threshold
// is explained at its field and nothing is created, a value the server
// still refuses shows its 400 at the field, a valid task opens its page
// (running, log lines delivered/started); slow calls made by the test
// appear in Thread analysis without a reload; a capture shows its
// snapshot timeline (stack top on hover) and flame graph (demo_slow_io);
// its trace link lists it; the task reaches limit-reached and says so;
// Historical tasks lists it.  A reader sees New task and Cancel disabled
// with the reason; a writer cancels a second running task from its page;
// a task for an app with no agent says it waits for agents, then expired.
// Screenshots of every page at 1280×800 and 390×844.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { noConsoleErrors, shot, waitFor, world } from './harness.mjs';

const SIZES = [[1280, 800], [390, 844]];
const rows = (page, sel) => page.$$eval(`${sel} tbody tr`, (trs) =>
  trs.filter((tr) => !tr.querySelector('td.empty')).map((tr) => tr.textContent));
const lines = (page) => page.$$eval('#task-log li.log-line', (lis) => lis.map((li) => li.textContent));
// Screenshots at both sizes of the page as it is now.
async function shots(page, name) {
  for (const [width, height] of SIZES) {
    await page.setViewportSize({ width, height });
    await shot(page, name);
  }
  await page.setViewportSize({ width: SIZES[0][0], height: SIZES[0][1] });
}
const text = (page, sel) => page.$eval(sel, (e) => e.textContent).catch(() => '');

test('active analysis: new task, slow calls, captures, timeline, flame graph, trace', async (t) => {
  const w = await world(t);
  const demo = await w.demo();
  const page = await w.page({ role: 'writer' });
  const writer = await w.token('writer');

  // New task: an out-of-range threshold is explained at its field.
  await page.goto(`${w.url}/#/tasks`);
  await page.waitForSelector('#task-app option[value="demo"]', { state: 'attached' });
  assert.equal(await page.inputValue('#task-app'), 'demo');
  await page.fill('#task-interface', 'GET /slow');
  await page.fill('#task-threshold', '20');
  await page.fill('#task-max', '3');
  await page.click('#task-create');
  const err = await page.waitForSelector('#task-threshold-error:not(:empty)');
  assert.match(await err.textContent(), /threshold.*50 to 30000/);
  assert.equal(await page.getAttribute('#task-threshold', 'aria-invalid'), 'true');
  await shot(page, 'tasks-field-error');
  assert.deepEqual((await w.api('GET', '/api/v1/tasks')).tasks, []);

  // What the page lets through but the server refuses: its 400 at the field.
  await page.fill('#task-threshold', '100');
  await page.fill('#task-interface', 'GET /\u0001slow');
  await page.click('#task-create');
  await waitFor(async () => /Refused by the server: interface must be printable/
    .test(await text(page, '#task-interface-error')), 'the server\'s 400 at the interface field');
  assert.equal(await text(page, '#task-threshold-error'), '');
  assert.deepEqual((await w.api('GET', '/api/v1/tasks')).tasks, []);
  page.errors = page.errors.filter((e) => e !== 'HTTP 400 /api/v1/tasks');

  // A valid task opens its page: running, delivered and started in its log.
  await page.fill('#task-interface', 'GET /slow');
  await page.click('#task-create');
  await waitFor(async () => /#\/tasks\/\d+/.test(page.url()) ||
    Promise.reject(new Error(await text(page, '#task-form'))), 'the new task\'s page');
  const id = Number(page.url().match(/#\/tasks\/(\d+)/)[1]);
  const task = await w.api('GET', `/api/v1/tasks/${id}`);
  assert.deepEqual([task.app, task.interface, task.threshold_ms, task.frequency_ms, task.max_samples,
    task.duration_min], ['demo', 'GET /slow', 100, 100, 3, 5]);
  await page.waitForSelector('#task-status .notice');
  await waitFor(async () => /Listening on 1 agent of demo/.test(await text(page, '#task-status')),
    'the task page saying it listens');
  assert.match(await text(page, '.page-head .state'), /running/);
  await page.click('#tab-logs');
  await waitFor(async () => {
    const r = await lines(page);
    return r.some((x) => /delivered/.test(x)) && r.some((x) => /started/.test(x));
  }, 'delivered and started in the task log');
  await shot(page, 'task-logs');

  // Slow calls from the test; Thread analysis shows them without reload.
  await page.click('#tab-threads');
  assert.equal((await rows(page, '#task-captures')).length, 0);
  for (let i = 0; i < 4; i++) {
    const r = await fetch(`${demo.url}/slow?ms=400`);
    assert.equal(r.status, 200);
    await r.text();
  }
  await waitFor(async () => (await rows(page, '#task-captures')).length === 3,
    'three captures in Thread analysis', 20000);
  await waitFor(async () => /Task limit reached/.test(await text(page, '#task-status')),
    'the task saying its limit is reached', 20000);
  assert.match(await text(page, '.page-head .state'), /limit-reached/);
  assert.equal(await page.isVisible('#task-cancel'), false);
  await waitFor(async () => !(await rows(page, '#task-captures')).some((x) => /uploading/.test(x)),
    'every capture complete');
  const first = (await rows(page, '#task-captures'))[0];
  assert.match(first, /GET \/slow/);
  assert.match(first, /200/);
  assert.match(first, /127\.0\.0\.1:\d+/);
  await shot(page, 'task-threads');
  await page.click('#tab-details');
  await waitFor(async () => (await rows(page, '#task-agents')).length === 1, 'the agents table');
  assert.match((await rows(page, '#task-agents'))[0], /web-1/);
  await shot(page, 'task-details');

  // One capture: facts, timeline with its snapshots, flame graph.
  await page.click('#tab-threads');
  await page.click('#task-captures tbody tr:first-child td:nth-child(2)');
  await waitFor(() => /#\/captures\/\d+/.test(page.url()), 'the capture\'s page');
  const capId = Number(page.url().match(/#\/captures\/(\d+)/)[1]);
  const cap = await w.api('GET', `/api/v1/captures/${capId}`);
  assert.ok(cap.snapshots >= 2, `snapshots: ${cap.snapshots}`);
  await waitFor(async () => (await page.$$('#capture-timeline .snap')).length === cap.snapshots,
    `${cap.snapshots} snapshot marks in the timeline`);
  await page.hover('#capture-timeline .snap:nth-child(2) .span');
  await page.waitForSelector('#capture-tip:not([hidden])');
  assert.match(await text(page, '#capture-tip'), /#2 at .*sleeping in poll/);
  assert.match(await text(page, '#capture-tip'), /demo_slow_poll/);
  await shot(page, 'task-capture-hover');
  await page.click('#capture-timeline .snap:nth-child(3) .span');
  assert.match(await text(page, '#capture-stack'), /Snapshot #3 at.*demo_slow_io/s);
  await waitFor(() => page.$$eval('#capture-flame svg g', (gs) =>
    gs.some((g) => /demo_slow_io/.test(g.textContent))), 'a demo_slow_io frame in the flame graph');
  await page.selectOption('#capture-type', 'wall');
  await waitFor(() => page.$$eval('#capture-flame svg g', (gs) =>
    gs.some((g) => /demo_slow_io\s*total [\d.]+ ms/.test(g.textContent))), 'the flame graph in wall time');
  await page.fill('#capture-search', 'demo_slow');
  await waitFor(async () => /^[1-9]\d* matching frames?$/.test(await text(page, '#capture-found')),
    'search highlights');
  await page.fill('#capture-search', '');
  await page.mouse.move(0, 0);
  await shot(page, 'task-capture');
  assert.match(await text(page, '#capture-facts'), new RegExp(cap.trace_id));

  // The trace link lists the capture.
  await page.click('#capture-facts a.trace-id');
  await waitFor(() => /#\/traces\//.test(page.url()), 'the trace\'s page');
  await waitFor(async () => (await rows(page, '#trace-captures')).some((x) => x.startsWith(`#${capId}`)),
    'the capture on its trace page');
  assert.equal(await text(page, '#trace-id'), cap.trace_id);
  await shot(page, 'task-trace');
  await page.click('#trace-captures tbody tr:first-child td:nth-child(3)');
  await waitFor(() => page.url().endsWith(`#/captures/${capId}`), 'the capture from its trace');

  // Historical tasks lists it, limit reached.
  await page.goto(`${w.url}/#/tasks?range=1h&state=limit-reached`);
  await waitFor(async () => (await rows(page, '#tasks-list')).some((x) =>
    x.startsWith(`#${id}`) && /limit-reached/.test(x) && /3 \/ 3/.test(x)), 'the task in the history');
  await page.selectOption('#tasks-state', 'running');
  await waitFor(async () => (await rows(page, '#tasks-list')).length === 0, 'no running task');
  assert.match(page.url(), /state=running/);
  await page.selectOption('#tasks-state', '');
  await page.selectOption('#tasks-range', 'custom');
  await page.fill('#tasks-from', '2030-01-02T00:00');
  await page.fill('#tasks-to', '2030-01-01T00:00');
  await page.waitForSelector('#tasks-to-error:not(:empty)');
  await page.fill('#tasks-from', '2020-01-01T00:00');
  await waitFor(async () => (await rows(page, '#tasks-list')).length === 1, 'the task in a custom range');
  assert.equal(await text(page, '#tasks-to-error'), '');
  assert.match(page.url(), /range=custom&.*from=\d+&to=\d+/);
  assert.equal(await page.$eval('#task-interfaces option', (o) => o.value), 'GET /slow');

  // A second running task, on GET /cpu: a reader may not cancel it (nor
  // create one); a CPU-bound call under a Profile Now session is both
  // captured and a session span of its trace; the writer cancels the task.
  const second = await w.api('POST', '/api/v1/tasks', {
    app: 'demo', interface: 'GET /cpu', duration_min: 10, threshold_ms: 50,
  }, writer);
  const reader = await w.page({ role: 'reader' });
  await reader.goto(`${w.url}/#/tasks`);
  await reader.waitForSelector('#task-app option[value="demo"]', { state: 'attached' });
  assert.equal(await reader.isDisabled('#task-create'), true);
  assert.match(await reader.getAttribute('#task-create', 'title'), /role is reader.*writer or admin/);
  await waitFor(async () => (await rows(reader, '#tasks-list')).length === 2, 'two tasks for the reader');
  await shots(reader, 'tasks-reader');
  await reader.goto(`${w.url}/#/tasks/${second.id}`);
  await waitFor(async () => /Listening/.test(await text(reader, '#task-status')),
    'the second task running');
  assert.equal(await reader.isDisabled('#task-cancel'), true);
  assert.match(await reader.getAttribute('#task-cancel', 'title'), /role is reader/);
  noConsoleErrors(reader);

  await w.api('POST', '/api/v1/profile-now', { app: 'demo', duration_s: 3 }, writer);
  await waitFor(async () => (await w.api('GET', '/api/v1/sessions?app=demo')).sessions
    .some((x) => x.state === 'running'), 'a Profile Now session running');
  await (await fetch(`${demo.url}/cpu?ms=300`)).text();
  await page.goto(`${w.url}/#/tasks/${second.id}?tab=threads`);
  await waitFor(async () => (await rows(page, '#task-captures')).length === 1, 'the /cpu capture');
  await page.click('#task-captures tbody tr:first-child a.trace-id');
  await waitFor(async () => (await rows(page, '#trace-sessions')).length === 1,
    'the session span on the trace page', 20000);
  assert.match((await rows(page, '#trace-sessions'))[0], /GET \/cpu/);
  assert.equal((await rows(page, '#trace-captures')).length, 1);
  await shots(page, 'task-trace-session');
  await page.click('#trace-sessions tbody tr:first-child');
  await waitFor(() => /#\/sessions\/\d+$/.test(page.url()), 'the session from its trace');

  await page.goto(`${w.url}/#/tasks/${second.id}`);
  await page.waitForSelector('#task-cancel:visible');
  await page.click('#task-cancel');
  await page.click('#task-cancel-yes');
  await waitFor(async () => /Cancelled at .*cancelled by writer-web/.test(await text(page, '#task-status')),
    'the task saying it was cancelled');
  assert.equal((await w.api('GET', `/api/v1/tasks/${second.id}`)).state, 'cancelled');
  assert.equal(await page.isVisible('#task-cancel'), false);
  await page.click('#tab-logs');
  await waitFor(async () => (await lines(page)).some((x) => /cancelled by writer-web/.test(x)),
    'the cancel in the log');
  await shot(page, 'task-cancelled');
  noConsoleErrors(page);

  // The same pages at phone size.
  const phone = await w.page({ role: 'writer', size: SIZES[1] });
  await phone.goto(`${w.url}/#/tasks`);
  await waitFor(async () => (await rows(phone, '#tasks-list')).length === 2, 'the list on a phone');
  await phone.waitForSelector('#task-app option[value="demo"]', { state: 'attached' });
  await shot(phone, 'tasks');
  await phone.fill('#task-threshold', '20');
  await phone.click('#task-create');
  await phone.waitForSelector('#task-threshold-error:not(:empty)');
  await shot(phone, 'tasks-field-error');
  for (const tab of ['details', 'logs', 'threads']) {
    await phone.goto(`${w.url}/#/tasks/${id}?tab=${tab}`);
    await waitFor(async () => /Task limit reached/.test(await text(phone, '#task-status')),
      `the task's ${tab} on a phone`);
    if (tab === 'threads')
      await waitFor(async () => (await rows(phone, '#task-captures')).length === 3, 'captures on a phone');
    await shot(phone, `task-${tab}`);
  }
  await phone.goto(`${w.url}/#/captures/${capId}`);
  await waitFor(async () => (await phone.$$('#capture-timeline .snap')).length === cap.snapshots,
    'the timeline on a phone');
  await waitFor(() => phone.$$eval('#capture-flame svg g', (gs) =>
    gs.some((g) => /demo_slow_io/.test(g.textContent))), 'the flame graph on a phone');
  const svgWidth = await phone.$eval('#capture-timeline svg', (s) => s.getBoundingClientRect().right);
  assert.ok(svgWidth <= 390, `the timeline fits the phone (right edge ${svgWidth})`);
  await shot(phone, 'task-capture');
  await phone.goto(`${w.url}/#/traces/${cap.trace_id}`);
  await waitFor(async () => (await rows(phone, '#trace-captures')).length === 1, 'the trace on a phone');
  await shot(phone, 'task-trace');
  await phone.goto(`${w.url}/#/tasks/${second.id}?tab=logs`);
  await waitFor(async () => /Cancelled/.test(await text(phone, '#task-status')), 'cancelled on a phone');
  await shot(phone, 'task-cancelled');
  noConsoleErrors(phone);
});

test('a task for an app with no agent waits for agents, then expires', async (t) => {
  // A task minute of 3 s: the 5-minute task ends 15 s after creation.
  const w = await world(t, { sondedArgs: ['--task-minute-ms', '3000'] });
  const task = await w.api('POST', '/api/v1/tasks', {
    app: 'ghost', interface: 'GET /slow', duration_min: 5, threshold_ms: 200, max_samples: 2,
  });
  for (const size of SIZES) {
    const page = await w.page({ role: 'reader', size });
    await page.goto(`${w.url}/#/tasks/${task.id}`);
    if (size === SIZES[0]) {
      await waitFor(async () => /Waiting for agents: no agent of ghost is running/
        .test(await text(page, '#task-status')), 'the task waiting for agents');
      await shots(page, 'task-waiting');
      await page.goto(`${w.url}/#/tasks`);
      await waitFor(async () => /No agent has registered yet/.test(await text(page, '#task-app-hint')),
        'the form saying no agent has registered');
      await page.goto(`${w.url}/#/tasks/${task.id}`);
    }
    await waitFor(async () => /Expired: its 5 minutes ran out .* with 0 of 2 captures — no GET \/slow call/
      .test(await text(page, '#task-status')), 'the task saying it expired', 30000);
    assert.match(await text(page, '.page-head .state'), /expired/);
    await page.click('#tab-logs');
    await waitFor(async () => (await lines(page)).some((x) => /expired/.test(x)),
      'expired in the log');
    await shot(page, 'task-expired');
    // A capture or task that does not exist says so.
    await page.goto(`${w.url}/#/captures/999`);
    await waitFor(async () => /no capture #999/.test(await text(page, '#capture-status')), 'capture 999');
    await page.goto(`${w.url}/#/tasks/999`);
    await waitFor(async () => /no task #999/.test(await text(page, '.page-task')), 'task 999');
    await page.goto(`${w.url}/#/traces/nothing-here`);
    await waitFor(async () => /Nothing of this trace yet/.test(await text(page, '#trace-status')),
      'an empty trace');
    noConsoleErrors(page, [/^HTTP 404 \/api\/v1\/(captures|tasks)\/999$/]);
  }
});
