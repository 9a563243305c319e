// loadtests.js — Performance tests (#/loadtests), as in the settings
// pane's "Use web performance tests to generate traffic": *New* opens a
// form where only the target URL is needed (GET, 10 users, 60 s are the
// defaults, accepted as they are), *Run test* queues the test, and the
// list below shows every test newest first, its state updating by itself
// every 2 s (queued → in progress → completed, failed or cancelled), with
// requests, requests/s, p99, errors and when it was created.  A row opens
// the test's results (loadtest.js); queued and running tests have Cancel.
//
// The form's *Options* set the method, headers, body, users (1..10000),
// duration (1..3600 s), rate (empty: as fast as the users go), timeout and
// *Profile during test* with one of the apps the agents list knows.  Every
// field is checked here with the message at the field (the ranges of
// docs/api.md "Load tests"); what the server still refuses is shown at the
// field its message names ("field 'users' …", "url: …"), and a 403 — a
// target outside sonded's --loadtest-allow — at the URL, with what the
// allow list is for.  Readers see Run test and Cancel disabled, the reason
// on hover.
//
// `#/loadtests?from=ID` opens the form filled in from test ID (Run again).
//
// Exports the pieces loadtest.js shares: cancelTest, ENDED.

import { ApiError, api, get, query } from '../api.js';
import {
  allow, every, fieldError, fmtMs, fmtNum, fmtSeconds, fmtTime, h, notice, stateBadge, table,
  toast,
} from '../ui.js';

export const ENDED = ['completed', 'failed', 'cancelled'];
const STATES = ['queued', 'in progress', 'completed', 'failed', 'cancelled'];
const DEFAULTS = { method: 'GET', users: 10, duration_s: 60, timeout_ms: 10000 };
const RESERVED = ['host', 'content-length', 'connection', 'transfer-encoding'];
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const PAGE = 50;

// <span class="state state-in-progress">in progress</span>
// Cancels test t (POST …/cancel); the server waits up to 5 s for a
// running test to stop.  Returns the test as the server answered, or null
// (the error was shown).
export async function cancelTest(t) {
  try {
    const r = await api('POST', `/api/v1/loadtests/${t.id}/cancel`, {});
    toast(r.state === 'cancelled' ? `Load test #${t.id} cancelled.`
      : `Load test #${t.id} is stopping…`, 'ok');
    return r;
  } catch (e) {
    toast(`Load test #${t.id} could not be cancelled: ${e.message}`, 'error');
    return null;
  }
}

export function fmtRate(v) {
  if (v === null || v === undefined) return '-';
  return v >= 100 ? fmtNum(Math.round(v)) : String(Number(v.toPrecision(3)));
}

// The field a server message names: "field 'users' must …" → users,
// "url: cannot resolve host …" → url, "headers[2]: …" → headers.
function serverField(msg) {
  const m = msg.match(/^field '([a-z_]+)'/) || msg.match(/^([a-z_]+)(?:\[\d+\])?:/);
  return m ? m[1] : null;
}

function byteLength(s) {
  return new TextEncoder().encode(s).length;
}

// Checks the URL as sonded will; returns the message or null.
function urlProblem(v) {
  if (!v) return 'Enter the URL to send requests to, e.g. http://127.0.0.1:8080/.';
  if (/^https:\/\//i.test(v))
    return 'https is not supported: the load generator speaks plain http:// only.';
  if (!/^http:\/\//i.test(v))
    return 'The URL must start with http:// (e.g. http://127.0.0.1:8080/path).';
  if (/[\s\x00-\x1f\x7f]/.test(v)) return 'The URL may not contain spaces or control characters.';
  if (byteLength(v) > 2048) return 'The URL is longer than 2048 bytes.';
  const authority = v.slice(7).split(/[/?#]/)[0];
  if (authority.includes('@'))
    return 'user:password@ is not supported: set an Authorization header in Options.';
  if (!authority || authority.startsWith(':')) return 'The URL has no host.';
  try {
    const u = new URL(v);
    if (u.port === '0') return 'Port 0 cannot be reached.';
  } catch (_) {
    return 'This is not a URL: http://host[:port][/path][?query].';
  }
  return null;
}

// An integer field: empty → the default (null: leave it out).
function intValue(input, label, min, max, unit) {
  const v = input.value.trim();
  if (v === '') return { value: null };
  if (!/^\d+$/.test(v) || Number(v) < min || Number(v) > max)
    return { error: `${label} must be a whole number from ${fmtNum(min)} to ${fmtNum(max)}${unit}.` };
  return { value: Number(v) };
}

export function render(el, ctx) {
  let rows = [];
  let total = 0;
  let limit = PAGE;
  let stateFilter = '';
  const cancelling = new Set();
  let apps = null; // [{app, running}] from GET /api/v1/agents

  // ----- the New test form -----
  const url = h('input', {
    id: 'lt-url', name: 'url', type: 'url', inputmode: 'url', autocomplete: 'off',
    spellcheck: false, placeholder: 'http://127.0.0.1:8080/path', class: 'lt-wide',
  });
  const method = h('input', {
    id: 'lt-method', name: 'method', value: DEFAULTS.method, list: 'lt-methods', size: 8,
    placeholder: 'GET (default)',
    autocomplete: 'off', spellcheck: false,
  });
  const methods = h('datalist', { id: 'lt-methods' },
    ['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD', 'OPTIONS'].map((m) => h('option', { value: m })));
  const num = (id, value, placeholder) => h('input', {
    id, name: id.slice(3), value: value === null ? '' : String(value), inputmode: 'numeric',
    autocomplete: 'off', size: 10, placeholder: placeholder || `${value} (default)`,
  });
  const users = num('lt-users', DEFAULTS.users);
  const duration = num('lt-duration', DEFAULTS.duration_s);
  const rate = num('lt-rate', null, 'as fast as the users go');
  rate.setAttribute('inputmode', 'decimal');
  rate.size = 22;
  const timeout = num('lt-timeout', DEFAULTS.timeout_ms);
  const body = h('textarea', {
    id: 'lt-body', name: 'body', rows: 3, spellcheck: false, class: 'lt-wide',
    placeholder: 'sent with every request (optional)',
  });
  const headerRows = h('div', { class: 'lt-headers', id: 'lt-headers' });
  const addHeader = h('button', {
    type: 'button', class: 'secondary', id: 'lt-add-header', onclick: () => headerRow('', '', true),
  }, 'Add header');
  let headerSeq = 0;
  function headerRow(name, value, focus) {
    const n = ++headerSeq;
    const nameIn = h('input', {
      id: `lt-h-name-${n}`, class: 'lt-h-name', placeholder: 'Name', 'aria-label': 'Header name',
      autocomplete: 'off', spellcheck: false, value: name,
    });
    const valueIn = h('input', {
      id: `lt-h-value-${n}`, class: 'lt-h-value', placeholder: 'Value', 'aria-label': 'Header value',
      autocomplete: 'off', spellcheck: false, value,
    });
    const row = h('div', { class: 'lt-header' },
      h('div', null, nameIn), h('div', null, valueIn),
      h('button', {
        type: 'button', class: 'link lt-remove', title: 'Remove this header',
        'aria-label': 'Remove this header', onclick: () => row.remove(),
      }, '✕'));
    headerRows.append(row);
    if (focus) nameIn.focus();
  }
  const profile = h('input', { id: 'lt-profile', name: 'profile', type: 'checkbox' });
  const app = h('select', { id: 'lt-app', name: 'profile_app', disabled: true },
    h('option', { value: '' }, 'Loading apps…'));
  const appHint = h('div', { class: 'muted lt-hint', id: 'lt-app-hint' });
  profile.addEventListener('change', () => {
    app.disabled = !profile.checked;
    fieldError(app, null);
    hintApp();
  });
  app.addEventListener('change', hintApp);
  const summary = h('span', { class: 'muted', id: 'lt-options-summary' });
  const options = h('details', { class: 'lt-options', id: 'lt-options' },
    h('summary', null, 'Options ', summary),
    h('div', { class: 'lt-grid' },
      h('div', null, h('label', { for: 'lt-method' }, 'Method'), method, methods),
      h('div', null, h('label', { for: 'lt-users' }, 'Users (concurrent, 1–10,000)'), users),
      h('div', null, h('label', { for: 'lt-duration' }, 'Duration (s, 1–3,600)'), duration),
      h('div', null, h('label', { for: 'lt-rate' }, 'Rate (requests/s in all)'), rate),
      h('div', null, h('label', { for: 'lt-timeout' }, 'Timeout per request (ms)'), timeout)),
    h('label', null, 'Headers'),
    headerRows,
    h('div', { class: 'actions' }, addHeader),
    h('label', { for: 'lt-body' }, 'Body'),
    body,
    h('div', { class: 'lt-profile' },
      h('label', { class: 'lt-check', for: 'lt-profile' }, profile, ' Profile during test'),
      h('div', null, h('label', { for: 'lt-app' }, 'App to profile'), app),
      appHint,
      h('p', { class: 'muted lt-hint' }, 'The app\'s running agents profile for the test\'s ',
        'duration from its start; their sessions are linked from the results.')));
  function summarize() {
    const r = rate.value.trim();
    summary.textContent = `(${method.value.trim().toUpperCase() || 'GET'}, ` +
      `${users.value.trim() || DEFAULTS.users} users, ${duration.value.trim() || DEFAULTS.duration_s} s` +
      `${r && Number(r) > 0 ? `, ${r} requests/s` : ''}` +
      `${profile.checked && app.value ? `, profile ${app.value}` : ''})`;
  }
  for (const x of [method, users, duration, rate, profile, app]) {
    x.addEventListener('input', summarize);
    x.addEventListener('change', summarize);
  }
  summarize();

  const run = h('button', { type: 'submit', id: 'lt-run' }, 'Run test');
  allow(run, ctx.readOnlyReason);
  const formError = h('div', { id: 'lt-form-error' });
  const form = h('form', { class: 'card lt-form', id: 'lt-form', novalidate: true, hidden: true },
    h('h2', null, 'New performance test'),
    h('label', { for: 'lt-url' }, 'Target URL'),
    url,
    h('p', { class: 'muted lt-hint' }, 'Plain http:// only. sonded sends the requests itself, ',
      'to the hosts its --loadtest-allow list permits (loopback unless set).'),
    options,
    formError,
    h('div', { class: 'actions' }, run,
      h('button', { type: 'button', class: 'secondary', onclick: () => openForm(false) }, 'Close')),
    ctx.readOnlyReason ? h('p', { class: 'muted' }, ctx.readOnlyReason) : null);
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    submit();
  });

  const newBtn = h('button', { id: 'lt-new', onclick: () => openForm(form.hidden) }, 'New');
  function openForm(open) {
    form.hidden = !open;
    newBtn.setAttribute('aria-expanded', open ? 'true' : 'false');
    if (open) {
      loadApps();
      url.focus();
    }
  }

  function hintApp() {
    appHint.textContent = '';
    if (!profile.checked || !app.value || !apps) return;
    const a = apps.find((x) => x.app === app.value);
    if (a && !a.running)
      appHint.textContent = `No agent of ${a.app} is running now: nothing will be profiled ` +
        'unless one starts before the test does.';
  }

  async function loadApps() {
    let agents;
    try {
      agents = (await get('/api/v1/agents')).agents;
    } catch (e) {
      if (!apps) {
        app.replaceChildren(h('option', { value: '' }, 'Apps could not be listed'));
        appHint.textContent = e.message;
      }
      return;
    }
    const m = new Map();
    for (const a of agents) {
      const x = m.get(a.app) || { app: a.app, running: 0 };
      if (a.status === 'running') x.running++;
      m.set(a.app, x);
    }
    const next = [...m.values()].sort((a, b) => a.app.localeCompare(b.app));
    if (apps && JSON.stringify(next) === JSON.stringify(apps)) return;
    apps = next;
    const keep = app.value;
    app.replaceChildren(
      h('option', { value: '' }, apps.length ? 'Choose an app…' : 'No agent has registered yet'),
      ...apps.map((a) => h('option', { value: a.app },
        `${a.app} — ${a.running ? `${a.running} agent${a.running > 1 ? 's' : ''} running`
          : 'no agent running'}`)));
    if (keep && apps.some((a) => a.app === keep)) app.value = keep;
    else if (!keep && apps.length === 1) app.value = apps[0].app;
    hintApp();
    summarize();
  }

  const optionInputs = new Set([method, users, duration, rate, timeout, body, app]);
  function showError(input, msg) {
    if (optionInputs.has(input) || input === headerRows || headerRows.contains(input))
      options.open = true;
    fieldError(input, msg);
  }

  function clearErrors() {
    for (const x of form.querySelectorAll('[aria-invalid="true"]')) fieldError(x, null);
    fieldError(headerRows, null);
    formError.replaceChildren();
  }

  // The request body from the form, or null after showing every problem
  // at its field.
  function validate() {
    const errors = [];
    const out = {};
    const u = url.value.trim();
    const up = urlProblem(u);
    if (up) errors.push([url, up]);
    else out.url = u;

    const m = method.value.trim().toUpperCase();
    if (m && !/^[A-Z]{1,15}$/.test(m))
      errors.push([method, 'The method must be 1 to 15 letters (GET, POST, …).']);
    else if (m && m !== DEFAULTS.method) out.method = m;

    const headers = {};
    const seen = new Set();
    let count = 0;
    for (const row of headerRows.querySelectorAll('.lt-header')) {
      const nameIn = row.querySelector('.lt-h-name');
      const valueIn = row.querySelector('.lt-h-value');
      const name = nameIn.value.trim();
      const value = valueIn.value;
      if (!name && !value) continue;
      count++;
      if (!name) errors.push([nameIn, 'Give the header a name.']);
      else if (!TOKEN.test(name))
        errors.push([nameIn, `"${name}" is not a header name (letters, digits and !#$%&'*+-.^_\`|~).`]);
      else if (RESERVED.includes(name.toLowerCase()))
        errors.push([nameIn, `${name} is set by the load generator.`]);
      else if (seen.has(name.toLowerCase())) errors.push([nameIn, `${name} is given twice.`]);
      else if (/[\x00-\x08\x0a-\x1f\x7f]/.test(value))
        errors.push([valueIn, 'The value must be printable text (no control characters).']);
      else if (byteLength(name) + byteLength(value) + 2 > 8192)
        errors.push([valueIn, 'This header is longer than 8192 bytes.']);
      else headers[name] = value;
      seen.add(name.toLowerCase());
    }
    if (count > 64) errors.push([headerRows, `At most 64 headers (${count} given).`]);
    if (Object.keys(headers).length) out.headers = headers;

    if (body.value) {
      if (byteLength(body.value) > 1048576) errors.push([body, 'The body may be at most 1 MiB.']);
      else out.body = body.value;
    }

    for (const [input, key, label, min, max, unit] of [
      [users, 'users', 'Users', 1, 10000, ''],
      [duration, 'duration_s', 'Duration', 1, 3600, ' s'],
      [timeout, 'timeout_ms', 'Timeout', 1, 600000, ' ms'],
    ]) {
      const r = intValue(input, label, min, max, unit);
      if (r.error) errors.push([input, r.error]);
      else if (r.value !== null) out[key] = r.value;
    }

    const rv = rate.value.trim();
    if (rv !== '') {
      const n = Number(rv);
      if (!/^\d+(\.\d+)?$/.test(rv) || !(n >= 0 && n <= 1000000))
        errors.push([rate, 'Rate must be a number of requests/s from 0 to 1,000,000 ' +
          '(empty or 0: as fast as the users go).']);
      else if (n > 0) out.rate = n;
    }

    if (profile.checked) {
      if (!app.value) errors.push([app, 'Choose the app to profile during the test.']);
      else out.profile_app = app.value;
    }

    for (const [input, msg] of errors) showError(input, msg);
    if (errors.length) {
      errors[0][0].focus();
      return null;
    }
    return out;
  }

  const inputFor = {
    url, method, headers: headerRows, body, users, duration_s: duration, duration_ms: duration,
    rate, timeout_ms: timeout, profile_app: app,
  };

  async function submit() {
    clearErrors();
    if (run.disabled) return;
    const req = validate();
    if (!req) return;
    allow(run, 'Sending…');
    try {
      const t = await api('POST', '/api/v1/loadtests', req);
      toast(`Load test #${t.id} queued.`, 'ok');
      openForm(false);
      if (!stateFilter || stateFilter === t.state) {
        rows = [t, ...rows.filter((r) => r.id !== t.id)];
        total++;
        paint();
      }
    } catch (e) {
      if (e instanceof ApiError && e.status === 403 && /loadtest-allow/.test(e.message)) {
        showError(url, `Refused: ${e.message} — sonded only sends load to the hosts its ` +
          '--loadtest-allow list names (loopback unless it was started with others): choose a ' +
          'target it allows, or ask whoever runs sonded to add this one.');
      } else if (e instanceof ApiError && e.status === 429) {
        formError.replaceChildren(notice(`${e.message}.`, 'warn'));
      } else if (e instanceof ApiError && e.status === 400 && inputFor[serverField(e.message)]) {
        showError(inputFor[serverField(e.message)], e.message);
      } else {
        formError.replaceChildren(notice(`The test was not created: ${e.message}`, 'error'));
      }
    } finally {
      allow(run, ctx.readOnlyReason);
    }
  }

  // ----- the list -----
  const cancelCell = (t) => {
    if (ENDED.includes(t.state)) return '';
    const b = h('button', {
      class: 'secondary lt-cancel', type: 'button', dataset: { id: t.id },
      onclick: async (e) => {
        e.stopPropagation();
        cancelling.add(t.id);
        paint();
        await cancelTest(t);
        cancelling.delete(t.id);
        await load();
      },
    }, cancelling.has(t.id) || t.cancel_requested ? 'Cancelling…' : 'Cancel');
    allow(b, ctx.readOnlyReason || (cancelling.has(t.id) ? 'Cancelling…' : null));
    return b;
  };

  function stateCell(t) {
    let sub = null;
    if (t.state === 'queued') {
      const ahead = rows.filter((r) => r.id < t.id && !ENDED.includes(r.state)).length;
      sub = ahead ? `${ahead} ahead` : 'starting';
    } else if (t.state === 'in progress') {
      const el = t.result ? t.result.elapsed_s : (Date.now() - t.started_ms) / 1000;
      sub = t.cancel_requested ? 'stopping…'
        : `${fmtSeconds(Math.min(el, t.duration_s))} of ${fmtSeconds(t.duration_s)}`;
    } else if (t.state === 'failed' && t.error) {
      sub = h('span', { title: t.error }, t.error.length > 40 ? `${t.error.slice(0, 40)}…` : t.error);
    }
    return h('span', { class: 'lt-state' }, stateBadge(t.state),
      sub ? h('span', { class: 'muted lt-sub' }, ' ', sub) : null);
  }

  const lat = (t) => (t.result && t.result.latency_ms ? t.result.latency_ms.p99 : null);
  const rps = (t) => (t.result ? t.result.requests_per_s : null);
  const list = table([
    {
      label: 'Test', value: (t) => t.id,
      cell: (t) => h('a', {
        href: `#/loadtests/${t.id}`, class: 'lt-id', dataset: { id: t.id },
        onclick: (e) => e.stopPropagation(),
      }, `#${t.id}`),
    },
    {
      label: 'Target', value: (t) => t.url,
      cell: (t) => {
        // http://host:port/path → host:port (hidden on a phone) and /path.
        const m = t.url.match(/^http:\/\/([^/?#]*)(.*)$/i) || [null, '', t.url];
        return h('span', { class: 'lt-target', title: `${t.method} ${t.url}` }, h('b', null, t.method),
          ' ', h('span', { class: 'lt-host' }, m[1]), h('span', null, m[2] || '/'));
      },
    },
    { label: 'State', value: (t) => STATES.indexOf(t.state), cell: stateCell },
    { label: 'Users', cls: 'num lt-wide-only', value: (t) => t.users },
    { label: 'Duration', cls: 'num lt-wide-only', value: (t) => t.duration_s, cell: (t) => fmtSeconds(t.duration_s) },
    { label: 'Requests', cls: 'num', value: (t) => t.requests, cell: (t) => fmtNum(t.requests) },
    { label: 'Requests/s', cls: 'num', value: (t) => rps(t) ?? -1, cell: (t) => fmtRate(rps(t)) },
    { label: 'p99', cls: 'num', value: (t) => lat(t) ?? -1, cell: (t) => fmtMs(lat(t)) },
    {
      label: 'Errors', cls: 'num', value: (t) => t.errors,
      cell: (t) => h('span', { class: t.errors ? 'lt-bad' : null }, fmtNum(t.errors)),
    },
    { label: 'Profile', cls: 'lt-wide-only', value: (t) => t.profile_app || '', cell: (t) => t.profile_app || '-' },
    { label: 'Created', value: (t) => t.created_ms, cell: (t) => fmtTime(t.created_ms) },
    { label: '', value: () => 0, cell: cancelCell },
  ], rows, {
    id: 'lt-list',
    onrow: (t) => ctx.go(`#/loadtests/${t.id}`),
    empty: 'No performance test yet: New → the target URL → Run test.',
  });

  const stateSel = h('select', { id: 'lt-state-filter', 'aria-label': 'Show tests in state' },
    h('option', { value: '' }, 'All states'), STATES.map((s) => h('option', { value: s }, s)));
  stateSel.addEventListener('change', () => {
    stateFilter = stateSel.value;
    limit = PAGE;
    load();
  });
  const status = h('div', { id: 'lt-status' });
  const more = h('button', {
    class: 'secondary', id: 'lt-more', hidden: true,
    onclick: () => { limit = Math.min(1000, limit + PAGE); load(); },
  }, 'Show more');
  const counts = h('span', { class: 'muted', id: 'lt-count' });

  function paint() {
    list.update(rows);
    counts.textContent = total > rows.length ? `${rows.length} of ${total} tests` :
      `${total} test${total === 1 ? '' : 's'}`;
    more.hidden = !(total > rows.length && limit < 1000);
  }

  async function load() {
    try {
      const r = await get(`/api/v1/loadtests${query({ state: stateFilter, limit })}`);
      rows = r.loadtests;
      total = r.total;
      status.replaceChildren();
      paint();
    } catch (e) {
      status.replaceChildren(notice(`The list could not be refreshed: ${e.message}`, 'error'));
    }
    if (!form.hidden) await loadApps();
  }

  el.append(
    h('div', { class: 'lt-head' },
      h('h1', null, 'Performance tests'),
      newBtn),
    h('p', { class: 'muted lt-intro' }, 'Generate traffic to your app with sonded\'s load ',
      'generator while the profiler watches it. One test runs at a time; the others wait ',
      'queued in creation order.'),
    form,
    h('section', { class: 'card' },
      h('div', { class: 'lt-head' }, h('h2', null, 'Tests'), counts, stateSel),
      status,
      h('div', { class: 'scroll' }, list),
      h('div', { class: 'actions' }, more)));

  // Run again: the form filled in from a test.
  const from = ctx.query.get('from');
  if (ctx.query.has('new') || from) openForm(true);
  if (from && /^\d+$/.test(from)) {
    get(`/api/v1/loadtests/${from}`).then((t) => {
      url.value = t.url;
      method.value = t.method;
      users.value = String(t.users);
      duration.value = String(t.duration_s);
      rate.value = t.rate ? String(t.rate) : '';
      timeout.value = String(t.timeout_ms);
      headerRows.replaceChildren();
      for (const [k, v] of Object.entries(t.headers || {})) headerRow(k, v);
      if (t.profile_app) {
        profile.checked = true;
        app.disabled = false;
        if (![...app.options].some((o) => o.value === t.profile_app))
          app.append(h('option', { value: t.profile_app }, t.profile_app));
        app.value = t.profile_app;
      }
      if (Object.keys(t.headers || {}).length || t.rate || t.profile_app ||
        t.method !== 'GET') options.open = true;
      if (t.body_bytes)
        formError.replaceChildren(notice(`Test #${t.id} sent a body of ${fmtNum(t.body_bytes)} ` +
          'bytes; sonded does not show bodies: enter it again under Options.', 'warn'));
      summarize();
    }).catch((e) => formError.replaceChildren(notice(`Test #${from}: ${e.message}`, 'error')));
  }

  return every(2000, load);
}
