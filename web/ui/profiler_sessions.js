// profiler_sessions.js — Recent profiling sessions on the Configure
// Profiler page (SPEC A4): GET /api/v1/sessions filtered by app and time
// range (last 15 min / 1 h / 24 h / 7 d / all, or from..to), a page of
// LIMIT rows with Newer / Older when there are more, refreshed every 2 s
// so that new sessions and state changes show by themselves.  A row
// opens #/sessions/ID; its state says "profiling" (time left) while the
// agent profiles, "uploading" until the profile is stored.
//
// sessionsCard(ctx) → {el, agents(list), refresh(), stop()}.

import { api, query } from './api.js';
import { field, sessionBadge, setOptions, TRIGGERED_BY } from './profiler_common.js';
import {
  every, fieldError, fmtNum, fmtPct, fmtSeconds, fmtTime, h, localInput, table,
} from './ui.js';

const LIMIT = 50;
const RANGES = [
  ['15m', 'Last 15 minutes', 15 * 60e3],
  ['1h', 'Last hour', 3600e3],
  ['24h', 'Last 24 hours', 24 * 3600e3],
  ['7d', 'Last 7 days', 7 * 24 * 3600e3],
  ['all', 'All time', null],
  ['custom', 'From … to …', null],
];

export function sessionsCard(ctx) {
  const app = h('select', { id: 'sess-app', name: 'app' }, h('option', { value: '' }, 'All apps'));
  const range = h('select', { id: 'sess-range', name: 'range' },
    RANGES.map(([v, label]) => h('option', { value: v }, label)));
  range.value = '24h';
  const from = h('input', { id: 'sess-from', name: 'from', type: 'datetime-local' });
  const to = h('input', { id: 'sess-to', name: 'to', type: 'datetime-local' });
  const custom = h('div', { class: 'row pf-custom' }, field('From', from), field('To', to));
  custom.hidden = true;
  const prev = h('button', { id: 'sess-prev', type: 'button', class: 'secondary' }, '‹ Newer');
  const next = h('button', { id: 'sess-next', type: 'button', class: 'secondary' }, 'Older ›');
  const count = h('span', { id: 'sess-count', class: 'muted' });
  const pager = h('div', { class: 'pf-pager' }, prev, count, next);
  const msg = h('div', { id: 'sess-msg' });
  let offset = 0;
  let seq = 0;

  // State first: on a phone it is what one looks for, and the rest scrolls.
  const grid = table([
    { label: 'State', value: (s) => s.state, cell: sessionBadge },
    {
      label: 'Triggered by', value: (s) => s.triggered_by,
      cell: (s) => h('span', { dataset: { session: s.id } },
        TRIGGERED_BY[s.triggered_by] || s.triggered_by),
    },
    { label: 'App', value: (s) => s.app },
    { label: 'Instance', value: (s) => s.instance },
    { label: 'Timestamp', value: (s) => s.start_ms, cell: (s) => fmtTime(s.start_ms) },
    { label: 'Duration', value: (s) => s.duration_s, cell: (s) => fmtSeconds(s.duration_s), cls: 'num' },
    { label: 'Traces', value: (s) => s.traces, cell: (s) => fmtNum(s.traces), cls: 'num' },
    { label: 'CPU %', value: (s) => s.cpu_pct ?? -1, cell: (s) => fmtPct(s.cpu_pct), cls: 'num' },
    { label: 'Memory %', value: (s) => s.mem_pct ?? -1, cell: (s) => fmtPct(s.mem_pct), cls: 'num' },
  ], [], {
    id: 'sessions-table',
    empty: 'No profiling session in this range yet.',
    onrow: (s) => ctx.go(`#/sessions/${s.id}`),
  });

  // The query of the filters, or null when from..to is wrong.
  function params() {
    const p = { app: app.value, limit: LIMIT, offset };
    const r = RANGES.find(([v]) => v === range.value);
    if (r && r[2]) p.from = Date.now() - r[2];
    if (range.value === 'custom') {
      fieldError(to, null);
      const f = from.value ? new Date(from.value).getTime() : null;
      const t = to.value ? new Date(to.value).getTime() : null;
      if (f !== null && t !== null && f >= t) {
        fieldError(to, 'The end must be after the start.');
        return null;
      }
      if (f !== null) p.from = f;
      if (t !== null) p.to = t;
    }
    return p;
  }

  async function refresh() {
    const p = params();
    if (!p) return;
    const n = ++seq;
    let ans;
    try {
      ans = await api('GET', `/api/v1/sessions${query(p)}`);
    } catch (err) {
      if (n === seq) msg.replaceChildren(h('div', { class: 'notice error', role: 'alert' },
        `Sessions could not be read: ${err.message}`));
      return;
    }
    if (n !== seq) return;   // a newer filter's answer wins
    msg.replaceChildren();
    if (ans.total && offset >= ans.total) {
      offset = Math.max(0, Math.floor((ans.total - 1) / LIMIT) * LIMIT);
      refresh();
      return;
    }
    // The rows are rebuilt: keep the keyboard on the row it was on.
    const at = grid.tBodies[0].contains(document.activeElement)
      ? document.activeElement.querySelector('[data-session]') : null;
    grid.update(ans.sessions);
    if (at) {
      const row = grid.querySelector(`[data-session="${at.dataset.session}"]`);
      if (row) row.closest('tr').focus();
    }
    const shown = ans.sessions.length;
    count.textContent = shown ? `${offset + 1}–${offset + shown} of ${ans.total}` : '';
    pager.hidden = ans.total <= LIMIT && offset === 0;
    prev.disabled = offset === 0;
    next.disabled = offset + shown >= ans.total;
  }

  const changed = () => { offset = 0; refresh(); };
  app.addEventListener('change', changed);
  range.addEventListener('change', () => {
    custom.hidden = range.value !== 'custom';
    if (range.value === 'custom' && !from.value) {
      from.value = localInput(Date.now() - 3600e3);
      to.value = localInput(Date.now() + 60e3);
    }
    changed();
  });
  from.addEventListener('change', changed);
  to.addEventListener('change', changed);
  prev.addEventListener('click', () => { offset = Math.max(0, offset - LIMIT); refresh(); });
  next.addEventListener('click', () => { offset += LIMIT; refresh(); });
  pager.hidden = true;

  const el = h('section', { class: 'card', id: 'sessions' },
    h('div', { class: 'pf-head' }, h('h2', null, 'Recent profiling sessions'),
      h('div', { class: 'row' }, field('App', app), field('Time range', range))),
    custom, msg,
    h('div', { class: 'scroll' }, grid), pager,
    h('p', { class: 'muted pf-foot' }, 'Click a session to open its profile. ',
      'The list updates by itself.'));

  const stop = every(2000, refresh);
  return {
    el,
    refresh,
    stop,
    agents(list) { setOptions(app, 'All apps', list.map((a) => a.app)); },
  };
}
