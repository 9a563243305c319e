// signin.test.mjs — signing in: a wrong token is refused at the field, a
// good one shows its name and role in the header and survives a reload;
// signing out goes back to sign-in; a revoked token sends the page back to
// sign-in; sonded serves the console's files and libraries itself and
// refuses paths outside them.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { noConsoleErrors, rawGet, shot, world } from './harness.mjs';

test('sign in, role shown, reload keeps it, sign out', async (t) => {
  const w = await world(t);
  for (const size of [[1280, 800], [390, 844]]) {
    const page = await w.page({ role: null, size });
    await page.goto(`${w.url}/`);
    await page.waitForSelector('#token');
    await shot(page, 'signin');
    await page.fill('#token', 'sonde_' + '0'.repeat(64));
    await page.click('#signin');
    const err = await page.waitForSelector('#token-error:not(:empty)');
    assert.match(await err.textContent(), /not accepted/);
    page.errors = page.errors.filter((e) => e !== 'HTTP 401 /api/v1/whoami'); // refused
    await page.fill('#token', await w.token('reader'));
    await page.click('#signin');
    await page.waitForSelector('#role');
    assert.equal(await page.textContent('#role'), 'reader');
    await page.reload();
    await page.waitForSelector('#role');
    assert.equal(await page.textContent('#role'), 'reader');
    await shot(page, 'signed-in');
    await page.click('#signout');
    await page.waitForSelector('#token');
    noConsoleErrors(page);
  }
});

test('a revoked token goes back to sign-in', async (t) => {
  const w = await world(t);
  const tok = (await w.api('POST', '/api/v1/tokens', { role: 'writer', name: 'soon gone' }));
  const page = await w.page({ role: null });
  await page.goto(`${w.url}/`);
  await page.fill('#token', tok.token);
  await page.click('#signin');
  await page.waitForSelector('#role');
  await w.api('DELETE', `/api/v1/tokens/${tok.id}`);
  await page.reload();
  await page.waitForSelector('#token');
  page.errors = page.errors.filter((e) => e !== 'HTTP 401 /api/v1/whoami');
  noConsoleErrors(page);
});

test('sonded serves the console and its libraries, nothing else', async (t) => {
  const w = await world(t);
  const get = (p) => fetch(w.url + p);
  let r = await get('/');
  assert.equal(r.status, 200);
  assert.match(r.headers.get('content-type'), /text\/html/);
  assert.match(await r.text(), /\/ui\/app\.js/);
  for (const p of ['/ui/app.js', '/vendor/d3/d3.min.js',
    '/vendor/d3-flame-graph/d3-flamegraph.umd.min.js', '/vendor/uplot/uPlot.iife.min.js',
    '/speedscope/', '/speedscope/index.html']) {
    r = await get(p);
    assert.equal(r.status, 200, p);
    await r.arrayBuffer();
  }
  assert.match((await get('/ui/app.js')).headers.get('content-type'), /javascript/);
  for (const p of ['/ui/../index.html', '/ui/%2e%2e/index.html', '/ui/.hidden', '/vendor/d3',
    '/vendor/nope/x.js', '/vendor/d3/../package.json', '/vendor/d3/../../package.json',
    '/ui/pages/', '/speedscope/../../package.json', '/ui/nope.js', '/ui//app.js',
    '/ui/' + 'a'.repeat(300) + '.js']) {
    const raw = await rawGet(w.url, p);
    assert.equal(raw.status, 404, p);
    assert.match(raw.body, /"error"/, p);
  }
  // whoami needs a token like the rest of the API.
  r = await get('/api/v1/whoami');
  assert.equal(r.status, 401);
});
