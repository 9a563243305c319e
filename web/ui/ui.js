// ui.js — what every page of the console shares: building elements
// (text is always set as text, never parsed as HTML: names come from
// agents and people), formatting times, durations and percentages the
// same way everywhere, tables with sortable columns, buttons disabled
// with the reason on hover, field errors, notices, and refreshing a
// page's data while it is shown.

// h('div', {class: 'x', onclick: f}, 'text', child, [children…])
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k in el && typeof v !== 'string') el[k] = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

const pad = (n, w = 2) => String(n).padStart(w, '0');

// "2026-12-06 14:03:12" local time; "-" for none.
export function fmtTime(ms) {
  if (!ms) return '-';
  const d = new Date(ms);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

// "45s", "2m", "2m30s", "1h5m".
export function fmtSeconds(s) {
  if (s === null || s === undefined) return '-';
  s = Math.round(s);
  if (s < 60) return `${s}s`;
  if (s < 3600) return s % 60 ? `${Math.floor(s / 60)}m${s % 60}s` : `${s / 60}m`;
  const m = Math.floor((s % 3600) / 60);
  return m ? `${Math.floor(s / 3600)}h${m}m` : `${Math.floor(s / 3600)}h`;
}

export function fmtAgo(ms) {
  if (!ms) return '-';
  const s = Math.max(0, (Date.now() - ms) / 1000);
  return s < 5 ? 'just now' : `${fmtSeconds(s)} ago`;
}

export function fmtPct(v) {
  return v === null || v === undefined || v < 0 ? '-' : `${v.toFixed(1)} %`;
}

export function fmtMs(v) {
  if (v === null || v === undefined) return '-';
  return v >= 100 ? `${Math.round(v)} ms` : `${Number(v.toPrecision(3))} ms`;
}

export function fmtNum(v) {
  return v === null || v === undefined ? '-' : Number(v).toLocaleString('en-US');
}

// A table of rows with columns [{label, value(row) → sortable value,
// cell(row) → node or text (default value), cls}]; clicking a heading
// sorts by it (again: reverse).  onrow(row) makes rows clickable.
export function table(columns, rows, { onrow, empty = 'Nothing yet.', sort, id } = {}) {
  let key = sort ? sort.key : null;
  let dir = sort ? sort.dir : 1;
  const tbody = h('tbody');
  const head = h('tr', null, columns.map((c, i) => h('th', {
    class: c.cls, scope: 'col', tabindex: '0', 'aria-sort': 'none',
    onclick: () => { dir = key === i ? -dir : 1; key = i; fill(); },
  }, c.label)));
  const el = h('table', { class: 'grid', id }, h('thead', null, head), tbody);
  function fill() {
    const sorted = rows.slice();
    if (key !== null) {
      const v = columns[key].value;
      sorted.sort((a, b) => {
        const x = v(a), y = v(b);
        return (x < y ? -1 : x > y ? 1 : 0) * dir;
      });
    }
    [...head.children].forEach((th, i) =>
      th.setAttribute('aria-sort', i === key ? (dir > 0 ? 'ascending' : 'descending') : 'none'));
    tbody.replaceChildren(...(sorted.length ? sorted.map((r) => h('tr', {
      class: onrow ? 'link' : null,
      tabindex: onrow ? '0' : null,
      onclick: onrow ? () => onrow(r) : null,
      onkeydown: onrow ? (e) => { if (e.key === 'Enter') onrow(r); } : null,
    }, columns.map((c) => h('td', { class: c.cls }, c.cell ? c.cell(r) : c.value(r)))))
      : [h('tr', null, h('td', { colspan: columns.length, class: 'empty' }, empty))]));
  }
  fill();
  el.update = (newRows) => { rows = newRows; fill(); };
  return el;
}

// Disables el (a button or input) with the reason shown on hover, or
// enables it again (reason null).
export function allow(el, reason) {
  el.disabled = !!reason;
  el.title = reason || '';
  if (reason) el.dataset.reason = reason;
  else delete el.dataset.reason;
  return el;
}

// Shows msg under the input (null clears it) and marks it invalid.
export function fieldError(input, msg) {
  const id = `${input.id || input.name}-error`;
  let el = document.getElementById(id);
  if (!el) {
    el = h('div', { id, class: 'field-error', role: 'alert' });
    input.insertAdjacentElement('afterend', el);
  }
  el.textContent = msg || '';
  input.setAttribute('aria-invalid', msg ? 'true' : 'false');
  if (msg) input.setAttribute('aria-describedby', id);
}

// A notice at the top right for a few seconds (kind: info, ok, error).
export function toast(msg, kind = 'info') {
  const el = h('div', { class: `toast ${kind}` }, msg);
  document.getElementById('toasts').append(el);
  setTimeout(() => el.remove(), kind === 'error' ? 8000 : 5000);
  return el;
}

// A message block inside a page (kind: info, warn, error).
export function notice(msg, kind = 'info') {
  return h('div', { class: `notice ${kind}`, role: kind === 'error' ? 'alert' : 'status' }, msg);
}

// Calls fn now and every ms while the page is shown; returns the stop
// function (app.js calls the page's cleanup when it leaves).  A failing
// call does not stop the refresh: fn shows its own error.
export function every(ms, fn) {
  let timer = null;
  let stopped = false;
  const tick = async () => {
    try { await fn(); } catch (e) { console.warn(e); }
    if (!stopped) timer = setTimeout(tick, ms);
  };
  tick();
  return () => { stopped = true; clearTimeout(timer); };
}

// A state's badge ("in progress" → class state-in-progress); id optional.
export function stateBadge(state, id) {
  const s = String(state);
  return h('span', { class: `state state-${s.replace(/[^a-z-]/g, '-')}`, id, dataset: { state: s } },
    s);
}

// "2026-12-06T14:03" (local time) for a datetime-local input.
export function localInput(ms) {
  const d = new Date(ms);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

// The role names allowed to write (Profile Now, triggers, tasks, tests).
export const WRITE_ROLES = ['writer', 'admin'];
