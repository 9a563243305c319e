// views.js — views over many sessions (#/views?…), docs/api.md "Merged and
// diff views":
//
//   Merged   #/views?app=A&range=1h (or range=custom&from=MS&to=MS)
//            [&instance=H&triggered_by=T&type=T&label=K:V]
//            one flame graph and top functions for every profile of an
//            app over a time range (GET /api/v1/views/flamegraph, /top).
//   Compare  #/views?mode=diff&base.session=17&cmp.session=18, or any
//            selection per side (base.app, base.range|from|to, …) →
//            GET /api/v1/views/diff drawn as a flame graph coloured by the
//            change (red: more in the comparison, blue: less; a legend)
//            and the functions with their deltas.
//
// The form is checked here first (app required, ranges in order, session
// ids, KEY:VALUE labels); a 400 the server still gives is shown at the
// field it names.  A view for a relative range ("last hour") keeps
// looking for new sessions every 5 s and offers to redraw (a redraw on
// its own would lose a zoom or a search).

import { ApiError, get, query } from '../api.js';
import { diffFlameGraph, diffLegend, flameGraph, fmtShare, fmtValue } from '../flame.js';
import { every, fieldError, fmtNum, fmtTime, h, localInput, notice, table } from '../ui.js';

const RANGES = [
  ['15m', 'Last 15 minutes', 15 * 60e3], ['1h', 'Last hour', 3600e3], ['6h', 'Last 6 hours', 6 * 3600e3],
  ['24h', 'Last 24 hours', 24 * 3600e3], ['7d', 'Last 7 days', 7 * 24 * 3600e3], ['custom', 'Custom range', 0],
];
const TRIGGERS = ['profile-now', 'cpu-trigger', 'memory-trigger', 'default-sampling', 'load-test'];
const TYPES = ['cpu', 'wall', 'samples'];

// ms → the value of a datetime-local input (local time), and back.
const fromLocal = (v) => (v ? new Date(v).getTime() : NaN);

function field(label, input, cls) {
  return h('div', { class: `field ${cls || ''}` }, h('label', { for: input.id }, label), input);
}

// One selection's inputs (prefix '' for merged, 'base.' / 'cmp.' for a
// side of a comparison): {el, fields: param → input, read() → params or
// null after showing field errors, set(query)}.
function selection(prefix, { sessionKind = false, apps, sessions }) {
  const idp = prefix.replace('.', '-');
  const mk = (tag, name, attrs, ...kids) => h(tag, { id: `${idp}${name}`, name: `${prefix}${name}`, ...attrs }, ...kids);
  const kind = sessionKind ? mk('select', 'kind', null,
    h('option', { value: 'session' }, 'One session'),
    h('option', { value: 'app' }, 'An app over a time range')) : null;
  const session = sessionKind ? mk('input', 'session', {
    type: 'number', min: '1', step: '1', placeholder: 'session id', list: sessions, inputmode: 'numeric',
  }) : null;
  const app = mk('input', 'app', { placeholder: 'app', list: apps, autocomplete: 'off', spellcheck: false });
  const range = mk('select', 'range', null, RANGES.map(([v, l]) => h('option', { value: v }, l)));
  const from = mk('input', 'from', { type: 'datetime-local' });
  const to = mk('input', 'to', { type: 'datetime-local' });
  const instance = mk('input', 'instance', { placeholder: 'any', autocomplete: 'off' });
  const trig = mk('select', 'triggered_by', null, h('option', { value: '' }, 'any'),
    TRIGGERS.map((t) => h('option', { value: t }, t)));
  const custom = h('div', { class: 'row custom-range' }, field('From', from), field('To', to));
  const appPart = h('div', { class: 'app-part' },
    h('div', { class: 'row' }, field('App', app), field('Time range', range),
      field('Instance', instance), field('Triggered by', trig)),
    custom);
  const sessionPart = sessionKind ? h('div', { class: 'row session-part' }, field('Session', session)) : null;
  const el = h('div', { class: 'selection' },
    sessionKind ? h('div', { class: 'row' }, field('Selection', kind)) : null, sessionPart, appPart);
  const sync = () => {
    custom.hidden = range.value !== 'custom';
    if (sessionKind) {
      sessionPart.hidden = kind.value !== 'session';
      appPart.hidden = kind.value !== 'app';
    }
  };
  range.addEventListener('change', () => {
    if (range.value === 'custom' && !from.value) {
      from.value = localInput(Date.now() - 3600e3);
      to.value = localInput(Date.now() + 60e3);
    }
    sync();
  });
  if (kind) kind.addEventListener('change', sync);
  const fields = {
    [`${prefix}session`]: session, [`${prefix}app`]: app, [`${prefix}from`]: from,
    [`${prefix}to`]: to, [`${prefix}instance`]: instance, [`${prefix}triggered_by`]: trig,
    [`${prefix}range`]: range,
  };
  const all = [session, app, range, from, to, instance, trig].filter(Boolean);
  return {
    el,
    fields,
    set(q) {
      const g = (k) => q.get(`${prefix}${k}`) || '';
      if (kind) kind.value = g('app') ? 'app' : 'session';
      if (session) session.value = g('session');
      app.value = g('app');
      instance.value = g('instance');
      trig.value = TRIGGERS.includes(g('triggered_by')) ? g('triggered_by') : '';
      const r = g('range') || (g('from') || g('to') ? 'custom' : '24h');
      range.value = RANGES.some(([v]) => v === r) ? r : '24h';
      if (range.value === 'custom') {
        from.value = g('from') ? localInput(Number(g('from'))) : localInput(Date.now() - 3600e3);
        to.value = g('to') ? localInput(Number(g('to'))) : localInput(Date.now() + 60e3);
      }
      sync();
    },
    // The URL parameters of this selection, or null (errors shown).
    read() {
      for (const i of all) fieldError(i, null);
      const p = {};
      if (kind && kind.value === 'session') {
        const v = session.value.trim();
        if (!/^[1-9]\d{0,17}$/.test(v)) {
          fieldError(session, 'Enter a session id (a whole number ≥ 1).');
          return null;
        }
        p[`${prefix}session`] = v;
        return p;
      }
      const a = app.value.trim();
      if (!a) {
        fieldError(app, 'Enter the app to view.');
        return null;
      }
      if (new TextEncoder().encode(a).length > 127) {
        fieldError(app, 'An app name is at most 127 bytes.');
        return null;
      }
      p[`${prefix}app`] = a;
      p[`${prefix}range`] = range.value;
      if (range.value === 'custom') {
        const f = fromLocal(from.value);
        const t = fromLocal(to.value);
        if (Number.isNaN(f)) { fieldError(from, 'Enter the start of the range.'); return null; }
        if (Number.isNaN(t)) { fieldError(to, 'Enter the end of the range.'); return null; }
        if (t <= f) { fieldError(to, 'The end must be after the start.'); return null; }
        p[`${prefix}from`] = f;
        p[`${prefix}to`] = t;
      }
      if (instance.value.trim()) p[`${prefix}instance`] = instance.value.trim();
      if (trig.value) p[`${prefix}triggered_by`] = trig.value;
      return p;
    },
  };
}

// The API parameters for a selection read from the location: a preset
// range becomes from/to now.
function apiSelection(q, prefix) {
  const out = {};
  const g = (k) => q.get(`${prefix}${k}`);
  if (g('session')) {
    out[`${prefix}session`] = g('session');
    return out;
  }
  out[`${prefix}app`] = g('app');
  const r = RANGES.find(([v]) => v === g('range'));
  if (r && r[2]) {
    out[`${prefix}from`] = Date.now() - r[2];
    out[`${prefix}to`] = Date.now() + 60e3;
  } else {
    if (g('from')) out[`${prefix}from`] = g('from');
    if (g('to')) out[`${prefix}to`] = g('to');
  }
  for (const k of ['instance', 'triggered_by']) if (g(k)) out[`${prefix}${k}`] = g(k);
  return out;
}

function describe(q, prefix) {
  const g = (k) => q.get(`${prefix}${k}`);
  if (g('session')) return `session ${g('session')}`;
  const r = RANGES.find(([v]) => v === g('range'));
  const when = r && r[2] ? r[1].toLowerCase()
    : `${fmtTime(Number(g('from')))} – ${fmtTime(Number(g('to')))}`;
  return `${g('app')}, ${when}${g('instance') ? `, instance ${g('instance')}` : ''}` +
    `${g('triggered_by') ? `, ${g('triggered_by')}` : ''}`;
}

function deltaCell(v, unit) {
  const cls = v > 0 ? 'delta more' : v < 0 ? 'delta less' : 'delta';
  return h('span', { class: cls }, `${v > 0 ? '+' : ''}${fmtValue(v, unit)}`);
}

export async function render(el, ctx) {
  const q = ctx.query;
  const diff = q.get('mode') === 'diff';
  const stops = [];
  let fg = null;
  let left = false;

  // Datalists: apps seen (agents, recent sessions) and recent sessions.
  const apps = h('datalist', { id: 'apps-list' });
  const sessions = h('datalist', { id: 'sessions-list' });
  Promise.all([get('/api/v1/agents').catch(() => ({ agents: [] })),
    get('/api/v1/sessions?limit=100').catch(() => ({ sessions: [] }))]).then(([a, s]) => {
    if (left) return;
    const names = [...new Set([...a.agents.map((x) => x.app), ...s.sessions.map((x) => x.app)])].sort();
    apps.replaceChildren(...names.map((n) => h('option', { value: n })));
    sessions.replaceChildren(...s.sessions.filter((x) => x.has_profile).map((x) => h('option', {
      value: String(x.id),
      label: `${x.app} · ${x.instance} · ${fmtTime(x.start_ms)} · ${x.triggered_by}`,
    })));
  });

  const tabs = h('div', { class: 'tabs', role: 'tablist' },
    h('button', {
      type: 'button', role: 'tab', id: 'tab-merged', 'aria-selected': String(!diff),
      onclick: () => ctx.go(`#/views${query({ app: q.get('app') || q.get('cmp.app') || q.get('base.app'), range: q.get('range') || '24h' })}`),
    }, 'Merged view'),
    h('button', {
      type: 'button', role: 'tab', id: 'tab-diff', 'aria-selected': String(diff),
      onclick: () => ctx.go(`#/views${query({ mode: 'diff', 'base.app': q.get('app'), 'base.range': q.get('app') ? q.get('range') || '24h' : null })}`),
    }, 'Compare'));

  const typeSel = h('select', { id: 'type', name: 'type' }, h('option', { value: '' }, 'default'),
    TYPES.map((t) => h('option', { value: t }, t)));
  const typeNow = q.get('type') || '';
  if (typeNow && !TYPES.includes(typeNow)) typeSel.append(h('option', { value: typeNow }, typeNow));
  typeSel.value = typeNow;
  const labelInput = h('input', {
    id: 'label', name: 'label', placeholder: 'KEY:VALUE, e.g. interface:GET /cpu', autocomplete: 'off',
    spellcheck: false, value: q.getAll('label').join(' ; ') || null,
  });
  const normalize = h('input', { type: 'checkbox', id: 'normalize', name: 'normalize' });
  normalize.checked = q.get('normalize') !== '0';
  const submit = h('button', { type: 'submit', id: 'show' }, diff ? 'Compare' : 'Show');

  const sels = diff
    ? [selection('base.', { sessionKind: true, apps: 'apps-list', sessions: 'sessions-list' }),
      selection('cmp.', { sessionKind: true, apps: 'apps-list', sessions: 'sessions-list' })]
    : [selection('', { apps: 'apps-list' })];
  for (const s of sels) s.set(q);
  const fields = Object.assign({ type: typeSel, label: labelInput }, ...sels.map((s) => s.fields));

  const form = h('form', { class: 'card views-form', novalidate: true, id: 'views-form' },
    h('h1', null, diff ? 'Compare two selections' : 'Merged view'),
    h('p', { class: 'muted' }, diff
      ? 'The comparison against the base: red frames take more in the comparison, blue ones less.'
      : 'Every profile of an app over a time range, merged into one flame graph.'),
    diff ? h('div', { class: 'cols sides' },
      h('fieldset', { class: 'side' }, h('legend', null, 'Base'), sels[0].el),
      h('fieldset', { class: 'side' }, h('legend', null, 'Comparison'), sels[1].el))
      : sels[0].el,
    h('div', { class: 'row' },
      field('Type', typeSel),
      field('Label filter', labelInput, 'grow'),
      diff ? h('div', { class: 'field check' },
        h('label', { for: 'normalize' }, normalize, ' Compare shares of each total')) : null,
      h('div', { class: 'field' }, submit)),
    apps, sessions);

  const results = h('div', { id: 'views-results' });
  el.append(tabs, form, results);

  form.addEventListener('submit', (e) => {
    e.preventDefault();
    fieldError(labelInput, null);
    const params = {};
    for (const s of sels) {
      const p = s.read();
      if (!p) return;
      Object.assign(params, p);
    }
    const ls = labelInput.value.split(';').map((x) => x.trim()).filter(Boolean);
    for (const l of ls) {
      const i = l.indexOf(':');
      if (i <= 0 || i === l.length - 1) {
        fieldError(labelInput, `"${l}" is not KEY:VALUE (e.g. interface:GET /cpu); separate several with ;`);
        return;
      }
    }
    if (ls.length > 16) {
      fieldError(labelInput, 'At most 16 label filters.');
      return;
    }
    const next = `#/views${query({
      mode: diff ? 'diff' : null, ...params, type: typeSel.value, label: ls,
      normalize: diff && !normalize.checked ? '0' : null,
    })}`;
    ctx.go(next);
  });

  // ---- results

  const ready = diff
    ? ['base.', 'cmp.'].every((p) => q.get(`${p}session`) || q.get(`${p}app`))
    : !!q.get('app');
  if (!ready) {
    if (diff) {
      const empty = sels.find((s, i) => !q.get(`${['base.', 'cmp.'][i]}session`) && !q.get(`${['base.', 'cmp.'][i]}app`));
      const first = empty && Object.values(empty.fields).find((x) => x && x.name.endsWith('session'));
      if (first) first.focus();
    }
    results.append(notice(diff
      ? 'Choose the base and the comparison: a session each (its id), or an app over a time range.'
      : 'Choose an app and a time range.', 'info'));
    return () => { left = true; };
  }

  const labels = q.getAll('label').filter(Boolean);
  const common = { type: q.get('type'), label: labels };
  const details = h('div', { class: 'flame-details', id: 'flame-details' });
  const flameBox = h('div', { id: 'flame', class: 'flame-box' });
  const searchInput = h('input', {
    id: 'search', type: 'search', placeholder: 'Search functions', autocomplete: 'off', size: 22,
  });
  const searchCount = h('span', { id: 'search-count', class: 'muted', 'aria-live': 'polite' });
  const btnReset = h('button', { id: 'reset-zoom', type: 'button', class: 'secondary', disabled: true },
    'Reset zoom');
  const summary = h('div', { id: 'views-summary', class: 'muted' });
  const fresh = h('div', { id: 'views-fresh' });
  const doSearch = () => {
    if (!fg) return;
    const text = searchInput.value.trim();
    const n = fg.search(text);
    searchCount.textContent = text ? `${n} ${n === 1 ? 'frame matches' : 'frames match'}` : '';
    searchCount.dataset.count = String(n);
  };
  searchInput.addEventListener('input', doSearch);
  btnReset.addEventListener('click', () => { if (fg) fg.reset(); btnReset.disabled = true; });
  const onzoom = (d) => { btnReset.disabled = !d; };

  results.append(h('p', { class: 'loading' }, 'Loading…'));
  let answer;
  let top = null;
  try {
    if (diff) {
      answer = await get(`/api/v1/views/diff${query({
        ...apiSelection(q, 'base.'), ...apiSelection(q, 'cmp.'), ...common, limit: 500,
      })}`);
    } else {
      const sel = { ...apiSelection(q, ''), ...common };
      [answer, top] = await Promise.all([
        get(`/api/v1/views/flamegraph${query(sel)}`),
        get(`/api/v1/views/top${query({ ...sel, limit: 500 })}`),
      ]);
    }
  } catch (e) {
    if (left) return () => {};
    const msg = e instanceof ApiError ? e.message : String(e);
    const m = msg.match(/query parameter '([\w.]+)'/);
    let at = m && fields[m[1]];
    if (m && !at && /^(base\.|cmp\.)?(from|to)$/.test(m[1]))
      at = fields[m[1].replace(/(from|to)$/, 'range')];
    const nf = msg.match(/^session (\d+) not found/);
    if (nf) at = Object.values(fields).find((x) => x && x.name.endsWith('session') && x.value === nf[1]);
    if (at) fieldError(at, msg);
    // The server names times in ms: shown as dates too.
    const shown = msg.replace(/\b(from|to) (\d{12,})\b/g, (_, w, ms) => `${w} ${fmtTime(Number(ms))}`);
    results.replaceChildren(notice(e.status === 404 && !nf
      ? `${shown}. Widen the time range or check the app's name.` : shown, 'error'));
    return () => { left = true; };
  }
  if (left) return () => {};

  const unit = answer.unit;
  const bar = h('div', { class: 'row flame-bar' },
    h('h2', null, diff ? 'Difference' : 'Flame graph'), summary,
    h('div', { class: 'search-box' }, searchInput, searchCount), btnReset);
  let tableEl;
  if (diff) {
    const bt = answer.base_total;
    const ct = answer.comparison_total;
    summary.textContent = `${answer.type}: base ${describe(q, 'base.')} (${fmtNum(answer.base_sessions)} ` +
      `session${answer.base_sessions === 1 ? '' : 's'}, ${fmtValue(bt, unit)}) → comparison ` +
      `${describe(q, 'cmp.')} (${fmtNum(answer.comparison_sessions)} session` +
      `${answer.comparison_sessions === 1 ? '' : 's'}, ${fmtValue(ct, unit)})`;
    const share = (v, t) => (t ? v / t : 0);
    // Largest changes first, more or less; a heading sorts by its column.
    const rows = answer.functions.map((f) => ({ ...f, dshare: share(f.comparison_self, ct) - share(f.base_self, bt) }))
      .sort((a, b) => Math.abs(b.delta_self) - Math.abs(a.delta_self) ||
        Math.abs(b.delta_total) - Math.abs(a.delta_total));
    tableEl = table([
      { label: 'Function', value: (r) => r.name, cls: 'fn' },
      { label: 'Base self', value: (r) => r.base_self, cell: (r) => fmtValue(r.base_self, unit), cls: 'num' },
      { label: 'Comparison self', value: (r) => r.comparison_self, cell: (r) => fmtValue(r.comparison_self, unit), cls: 'num' },
      { label: 'Δ self', value: (r) => r.delta_self, cell: (r) => deltaCell(r.delta_self, unit), cls: 'num' },
      {
        label: 'Δ self share', value: (r) => r.dshare, cls: 'num',
        cell: (r) => h('span', { class: `delta ${r.dshare > 0 ? 'more' : r.dshare < 0 ? 'less' : ''}` },
          `${r.dshare > 0 ? '+' : ''}${(r.dshare * 100).toFixed(2)} pp`),
      },
      { label: 'Base total', value: (r) => r.base_total, cell: (r) => fmtValue(r.base_total, unit), cls: 'num' },
      { label: 'Comparison total', value: (r) => r.comparison_total, cell: (r) => fmtValue(r.comparison_total, unit), cls: 'num' },
      { label: 'Δ total', value: (r) => r.delta_total, cell: (r) => deltaCell(r.delta_total, unit), cls: 'num' },
    ], rows, {
      id: 'diff-functions', empty: 'No functions.',
      onrow: (r) => { searchInput.value = r.name; doSearch(); },
    });
    results.replaceChildren(
      h('section', { class: 'card flame-card' }, bar, diffLegend(h), fresh, details, flameBox),
      h('section', { class: 'card' }, h('h2', null, 'Functions'),
        h('p', { class: 'muted small' }, 'Largest changes first. Δ = comparison − base; Δ self share: ' +
          'the change in each side\'s share of its total, in percentage points.'),
        h('div', { class: 'scroll' }, tableEl)));
    fg = diffFlameGraph(flameBox, answer, { normalize: normalize.checked, details, onzoom });
  } else {
    summary.textContent = `${answer.type}: ${fmtNum(answer.sessions)} session${answer.sessions === 1 ? '' : 's'} ` +
      `merged (${describe(q, '')}) · ${fmtValue(answer.total, unit)} in all`;
    tableEl = table([
      { label: 'Function', value: (r) => r.name, cls: 'fn' },
      { label: 'Self', value: (r) => r.self, cell: (r) => fmtValue(r.self, unit), cls: 'num' },
      { label: 'Self %', value: (r) => r.self, cell: (r) => fmtShare(r.self, top.total), cls: 'num' },
      { label: 'Total', value: (r) => r.total, cell: (r) => fmtValue(r.total, unit), cls: 'num' },
      { label: 'Total %', value: (r) => r.total, cell: (r) => fmtShare(r.total, top.total), cls: 'num' },
    ], top.functions, {
      id: 'top', sort: { key: 1, dir: -1 }, empty: 'No samples.',
      onrow: (r) => { searchInput.value = r.name; doSearch(); },
    });
    results.replaceChildren(
      h('section', { class: 'card flame-card' }, bar, fresh, details, flameBox),
      h('section', { class: 'card' }, h('h2', null, 'Top functions'), h('div', { class: 'scroll' }, tableEl)));
    if (answer.total) fg = flameGraph(flameBox, answer, { details, onzoom });
    else flameBox.replaceChildren(notice('No samples of this type match.', 'warn'));
  }

  // New sessions in a relative range: offer to redraw.
  const relative = (p) => !q.get(`${p}session`) && RANGES.some(([v, , ms]) => ms && v === q.get(`${p}range`));
  const watch = (diff ? ['base.', 'cmp.'] : ['']).filter(relative);
  if (watch.length) {
    // From the range's start as drawn: the count only grows.
    const drawnSel = watch.map((p) => [p, apiSelection(q, p)]);
    const count = async () => {
      let n = 0;
      for (const [p, s] of drawnSel) {
        const r = await get(`/api/v1/sessions${query({
          app: s[`${p}app`], instance: s[`${p}instance`], triggered_by: s[`${p}triggered_by`],
          from: s[`${p}from`], limit: 1,
        })}`);
        n += r.total;
      }
      return n;
    };
    let first = null;
    stops.push(every(5000, async () => {
      const n = await count();
      if (left) return;
      if (first === null) first = n;
      else if (n > first) {
        fresh.replaceChildren(h('div', { class: 'notice info fresh', role: 'status' },
          `${n - first} new session${n - first === 1 ? '' : 's'} since this view was drawn. `,
          h('button', { type: 'button', class: 'link', id: 'redraw', onclick: () => ctx.go(location.hash) }, 'Redraw')));
      }
    }));
  }

  return () => {
    left = true;
    for (const s of stops) s();
    if (fg) fg.destroy();
  };
}
