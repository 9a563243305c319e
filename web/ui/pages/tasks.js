// tasks.js — Active analysis (#/tasks): the *New task* form and the
// *Historical tasks* list (SPEC B1, B3; docs/api.md "Active profiling").
//
// New task: the five parameters of a slow-call task — app (a select of
// the apps whose agents ever registered, each saying whether one runs
// now), interface name, duration 5/10/15 min, trigger threshold
// 50–30000 ms, sampling frequency 5–1000 ms (recommended 100), maximum
// samples 1–100.  The page checks ranges and lengths before sending and
// explains each bad value at its field; whatever the server still refuses
// (a control character in a name, say) comes back as its 400 message,
// which is shown at the field it names.  Creating opens the task's page.
// Readers see the form disabled with the reason on hover.
//
// Historical tasks: the tasks overlapping a time range (last hour, day,
// week or a custom from/to), filtered by app and state, newest first; the
// list refreshes every 2 s while shown; a row opens the task.  The
// chosen range and filters live in the location's query (replaced in
// place, so a reload keeps them without a navigation).
//
// Exports for the other task pages: knownApps().

import { ApiError, api, get, query } from '../api.js';
import {
  allow, every, fieldError, fmtMs, fmtTime, h, localInput, notice, stateBadge, table, toast,
} from '../ui.js';

export const TASK_STATES = ['running', 'limit-reached', 'expired', 'cancelled'];

// [{app, running}] of every app whose agent ever registered, by name.
export async function knownApps() {
  const { agents } = await get('/api/v1/agents');
  const apps = new Map();
  for (const a of agents) apps.set(a.app, (apps.get(a.app) || 0) + (a.status === 'running' ? 1 : 0));
  return [...apps.entries()].sort((a, b) => (a[0] < b[0] ? -1 : 1))
    .map(([app, running]) => ({ app, running }));
}

// The form's fields: [api name, input id, label, check(value) → message|null].
const bytes = (s) => new TextEncoder().encode(s).length;
function intIn(lo, hi, what) {
  return (v) => (/^\d+$/.test(v) && Number(v) >= lo && Number(v) <= hi ? null
    : `${what} must be a whole number from ${lo} to ${hi}.`);
}

const RANGES = { '1h': 3600e3, '24h': 86400e3, '7d': 7 * 86400e3 };

function newTaskForm(ctx) {
  const appSel = h('select', { id: 'task-app', name: 'app' },
    h('option', { value: '' }, 'Loading apps…'));
  const appHint = h('div', { class: 'muted hint', id: 'task-app-hint' });
  const iface = h('input', {
    id: 'task-interface', name: 'interface', type: 'text', placeholder: 'GET /slow',
    autocomplete: 'off', spellcheck: false, maxlength: 95, list: 'task-interfaces',
  });
  const ifaceList = h('datalist', { id: 'task-interfaces' });
  const duration = h('select', { id: 'task-duration', name: 'duration_min' },
    [5, 10, 15].map((m) => h('option', { value: String(m) }, `${m} min`)));
  const num = (id, name, value, min, max) => h('input', {
    id, name, type: 'number', inputmode: 'numeric', value: String(value), min: String(min),
    max: String(max), step: '1',
  });
  const threshold = num('task-threshold', 'threshold_ms', 500, 50, 30000);
  const frequency = num('task-frequency', 'frequency_ms', 100, 5, 1000);
  const maxSamples = num('task-max', 'max_samples', 10, 1, 100);
  const create = h('button', { type: 'submit', id: 'task-create' }, 'Create task');
  const formError = h('div', { id: 'task-form-error' });

  const fields = [
    ['app', appSel, (v) => (!v ? 'Choose the app to watch.'
      : bytes(v) > 127 ? 'An app name is 1 to 127 bytes.' : null)],
    ['interface', iface, (v) => (!v.trim() ? 'Name the interface to watch, e.g. "GET /slow".'
      : bytes(v) > 95 ? `An interface name is 1 to 95 bytes (this one is ${bytes(v)}).` : null)],
    ['duration_min', duration, (v) => (['5', '10', '15'].includes(v) ? null
      : 'The duration is 5, 10 or 15 minutes.')],
    ['threshold_ms', threshold, intIn(50, 30000, 'The trigger threshold (ms)')],
    ['frequency_ms', frequency, intIn(5, 1000, 'The sampling frequency (ms)')],
    ['max_samples', maxSamples, intIn(1, 100, 'The maximum number of samples')],
  ];

  const field = (input, label, hint) => h('div', { class: 'field' },
    h('label', { for: input.id }, label), input, hint ? h('div', { class: 'muted hint' }, hint) : null);
  const fieldset = h('fieldset', { class: 'task-fields' },
    field(appSel, 'App', null), appHint,
    field(iface, 'Interface name', 'The span name of the calls to watch.'), ifaceList,
    field(duration, 'Thread profiling duration', 'How long the task listens.'),
    field(threshold, 'Trigger threshold (ms)',
      '50–30000. A call still running this long is captured from then until it ends.'),
    field(frequency, 'Sampling frequency (ms)',
      '5–1000, recommended 100. Smaller is finer and costs the app more.'),
    field(maxSamples, 'Maximum number of samples', '1–100 slow calls, over all agents of the app.'));
  const form = h('form', { class: 'card task-new', id: 'task-form', novalidate: true },
    h('h2', null, 'New task'),
    ctx.canWrite ? null : notice(ctx.readOnlyReason, 'warn'),
    fieldset, formError, h('div', { class: 'actions' }, create));
  if (!ctx.canWrite) {
    fieldset.disabled = true;
    fieldset.title = ctx.readOnlyReason;
    allow(create, ctx.readOnlyReason);
  }

  // The interfaces of the tasks listed below, offered as suggestions.
  form.setInterfaces = (names) => {
    const have = [...ifaceList.options].map((o) => o.value);
    if (names.length === have.length && names.every((x, i) => x === have[i])) return;
    ifaceList.replaceChildren(...names.map((n) => h('option', { value: n })));
  };

  let apps = null;
  const showHint = () => {
    if (!apps) return;
    const a = apps.find((x) => x.app === appSel.value);
    appHint.textContent = !apps.length
      ? 'No agent has registered yet: start an app under the agent (sonde run --app NAME …).'
      : a && !a.running ? `No agent of ${a.app} is running now: the task will wait for one.`
        : a ? `${a.running} agent${a.running > 1 ? 's' : ''} of ${a.app} running.` : '';
    appHint.classList.toggle('warn', !apps.length || (!!a && !a.running));
  };
  appSel.addEventListener('change', showHint);
  form.setApps = (list) => {
    const same = apps && list.length === apps.length
      && list.every((x, i) => x.app === apps[i].app && x.running === apps[i].running);
    if (same) return;
    const chosen = appSel.value;
    apps = list;
    appSel.replaceChildren(
      h('option', { value: '' }, list.length ? 'Choose an app…' : 'No app known yet'),
      ...list.map((a) => h('option', { value: a.app },
        a.running ? a.app : `${a.app} (no agent running)`)));
    if (list.some((a) => a.app === chosen)) appSel.value = chosen;
    else if (!chosen) {
      const first = list.find((a) => a.running) || list[0];
      if (first) appSel.value = first.app;
    }
    showHint();
  };

  // A field marked wrong is checked again as it is edited (as one types,
  // not on blur: a message vanishing on blur would move the button away
  // from under the click that caused the blur).
  for (const [, input, check] of fields)
    input.addEventListener(input.tagName === 'SELECT' ? 'change' : 'input', () => {
      if (input.getAttribute('aria-invalid') === 'true') fieldError(input, check(input.value));
    });

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    if (!ctx.canWrite) return;
    formError.replaceChildren();
    let bad = null;
    for (const [, input, check] of fields) {
      const msg = check(input.value);
      fieldError(input, msg);
      if (msg && !bad) bad = input;
    }
    if (bad) {
      bad.focus();
      return;
    }
    const body = {
      app: appSel.value,
      interface: iface.value.trim(),
      duration_min: Number(duration.value),
      threshold_ms: Number(threshold.value),
      frequency_ms: Number(frequency.value),
      max_samples: Number(maxSamples.value),
    };
    create.disabled = true;
    try {
      const task = await api('POST', '/api/v1/tasks', body);
      toast(`Task ${task.id} created: watching ${task.interface} on ${task.app}.`, 'ok');
      ctx.go(`#/tasks/${task.id}`);
    } catch (err) {
      // The server names the field first ("threshold_ms must be …",
      // "unknown field 'x'"): show it there, else above the button.
      const at = err instanceof ApiError && err.status === 400
        && fields.find(([name]) => new RegExp(`^(field ')?${name}\\b`).test(err.message));
      if (at) {
        fieldError(at[1], `Refused by the server: ${err.message}`);
        at[1].focus();
      } else {
        formError.replaceChildren(notice(`The task was not created: ${err.message}`, 'error'));
      }
    } finally {
      create.disabled = false;
    }
  });
  return form;
}

function historical(ctx) {
  const q = ctx.query;
  const range = h('select', { id: 'tasks-range' },
    [['1h', 'Last hour'], ['24h', 'Last 24 hours'], ['7d', 'Last 7 days'], ['custom', 'Custom…']]
      .map(([v, l]) => h('option', { value: v }, l)));
  const asked = q.get('range');
  range.value = asked === 'custom' || Object.hasOwn(RANGES, asked || '') ? asked : '24h';
  const now = Date.now();
  const from = h('input', { id: 'tasks-from', type: 'datetime-local' });
  const to = h('input', { id: 'tasks-to', type: 'datetime-local' });
  from.value = localInput(Number(q.get('from')) || now - 86400e3);
  to.value = localInput(Number(q.get('to')) || now + 60e3);
  const custom = h('div', { class: 'row custom-range' },
    h('div', null, h('label', { for: 'tasks-from' }, 'From'), from),
    h('div', null, h('label', { for: 'tasks-to' }, 'To'), to));
  const appSel = h('select', { id: 'tasks-app' }, h('option', { value: '' }, 'All apps'));
  const stateSel = h('select', { id: 'tasks-state' }, h('option', { value: '' }, 'All states'),
    TASK_STATES.map((s) => h('option', { value: s }, s)));
  stateSel.value = TASK_STATES.includes(q.get('state')) ? q.get('state') : '';
  let wantApp = q.get('app') || '';
  const status = h('div', { class: 'muted', id: 'tasks-status' });
  const listError = h('div');

  const list = table([
    { label: 'Task', value: (t) => t.id, cell: (t) => `#${t.id}`, cls: 'num' },
    { label: 'State', value: (t) => t.state, cell: (t) => stateBadge(t.state) },
    { label: 'App', value: (t) => t.app },
    { label: 'Interface', value: (t) => t.interface },
    { label: 'Captures', value: (t) => t.captures, cell: (t) => `${t.captures} / ${t.max_samples}`, cls: 'num' },
    { label: 'Threshold', value: (t) => t.threshold_ms, cell: (t) => fmtMs(t.threshold_ms), cls: 'num' },
    { label: 'Every', value: (t) => t.frequency_ms, cell: (t) => fmtMs(t.frequency_ms), cls: 'num' },
    { label: 'Duration', value: (t) => t.duration_min, cell: (t) => `${t.duration_min} min`, cls: 'num' },
    { label: 'Creator', value: (t) => (t.creator && t.creator.name) || '' },
    { label: 'Created', value: (t) => t.created_ms, cell: (t) => fmtTime(t.created_ms) },
    { label: 'Ended', value: (t) => t.ended_ms || t.ends_ms,
      cell: (t) => (t.ended_ms ? fmtTime(t.ended_ms) : `ends ${fmtTime(t.ends_ms)}`) },
  ], [], {
    id: 'tasks-list',
    empty: 'No task in this range.',
    onrow: (t) => ctx.go(`#/tasks/${t.id}`),
  });

  const card = h('section', { class: 'card task-history' },
    h('div', { class: 'row head' }, h('h2', null, 'Historical tasks'), status),
    h('div', { class: 'row filters' },
      h('div', null, h('label', { for: 'tasks-range' }, 'Time range'), range),
      custom,
      h('div', null, h('label', { for: 'tasks-app' }, 'App'), appSel),
      h('div', null, h('label', { for: 'tasks-state' }, 'State'), stateSel)),
    listError,
    h('div', { class: 'scroll' }, list));

  const keepQuery = () => {
    const p = { range: range.value, app: appSel.value, state: stateSel.value };
    if (range.value === 'custom') {
      p.from = new Date(from.value).getTime();
      p.to = new Date(to.value).getTime();
    }
    history.replaceState(null, '', `#/tasks${query(p)}`);
  };

  let seq = 0;
  card.refresh = async () => {
    custom.hidden = range.value !== 'custom';
    let p;
    fieldError(to, null);
    if (range.value === 'custom') {
      const f = new Date(from.value).getTime();
      const t = new Date(to.value).getTime();
      if (!Number.isFinite(f) || !Number.isFinite(t) || t <= f) {
        fieldError(to, 'Choose a "to" time after the "from" time.');
        return;
      }
      p = { from: f, to: t };
    } else {
      p = { from: Date.now() - RANGES[range.value] };
    }
    p.app = appSel.value;
    p.state = stateSel.value;
    p.limit = 1000;
    const n = ++seq;
    try {
      const { tasks } = await get(`/api/v1/tasks${query(p)}`);
      if (n !== seq) return;
      listError.replaceChildren();
      list.update(tasks);
      if (card.ontasks) card.ontasks(tasks);
      const running = tasks.filter((t) => t.state === 'running').length;
      status.textContent = `${tasks.length} task${tasks.length === 1 ? '' : 's'}` +
        `${running ? `, ${running} running` : ''}`;
    } catch (err) {
      if (n !== seq) return;
      listError.replaceChildren(notice(`Tasks could not be read: ${err.message}`, 'error'));
    }
  };
  card.setApps = (apps) => {
    const names = apps.map((a) => a.app);
    if (wantApp && !names.includes(wantApp)) names.push(wantApp);
    const have = [...appSel.options].slice(1).map((o) => o.value);
    if (names.length === have.length && names.every((x, i) => x === have[i])) return;
    const chosen = appSel.value || wantApp;
    appSel.replaceChildren(h('option', { value: '' }, 'All apps'),
      ...names.map((a) => h('option', { value: a }, a)));
    appSel.value = names.includes(chosen) ? chosen : '';
    wantApp = '';
  };
  for (const el of [range, from, to, appSel, stateSel])
    el.addEventListener('change', () => {
      keepQuery();
      card.refresh();
    });
  return card;
}

export async function render(el, ctx) {
  const form = newTaskForm(ctx);
  const history = historical(ctx);
  const appsError = h('div');
  el.append(
    h('div', { class: 'row page-head' }, h('h1', null, 'Active analysis'),
      h('span', { class: 'muted' }, 'Capture slow calls of one interface: the stack of the ' +
        'thread handling each call, every few milliseconds, until it ends.')),
    appsError,
    h('div', { class: 'tasks-layout' }, form, history));
  const stopApps = every(5000, async () => {
    try {
      const apps = await knownApps();
      appsError.replaceChildren();
      form.setApps(apps);
      history.setApps(apps);
    } catch (err) {
      appsError.replaceChildren(notice(`The apps could not be read: ${err.message}`, 'error'));
    }
  });
  history.ontasks = (tasks) => form.setInterfaces([...new Set(tasks.map((t) => t.interface))].sort());
  const stopList = every(2000, () => history.refresh());
  return () => {
    stopApps();
    stopList();
  };
}
