// trace.js — everything of one trace id (#/traces/ID; SPEC B4): the slow
// calls captured by active-profiling tasks and the profiling sessions
// with samples taken inside the trace's spans (GET /api/v1/traces/ID).
// A capture row opens the capture, a session row the session.
// Refreshes every 2 s while shown: a capture may still be uploading, and
// a session holding the trace's samples uploads when it ends.

import { ApiError, get } from '../api.js';
import { every, fmtMs, fmtSeconds, fmtTime, h, notice, stateBadge, table } from '../ui.js';
import { clockCell } from './task.js';

export async function render(el, ctx) {
  const id = decodeURIComponent(ctx.params[0]);
  const status = h('div', { id: 'trace-status' });
  const captures = table([
    { label: 'Capture', value: (c) => c.id, cell: (c) => `#${c.id}`, cls: 'num' },
    { label: 'Time', value: (c) => c.start_ms, cell: (c) => clockCell(c.start_ms) },
    { label: 'Interface', value: (c) => c.interface },
    { label: 'App', value: (c) => c.app },
    { label: 'Instance', value: (c) => `${c.instance} ${c.pid}`, cell: (c) => `${c.instance} (pid ${c.pid})` },
    { label: 'Response code', value: (c) => c.response_code ?? -1, cell: (c) => c.response_code ?? '-', cls: 'num' },
    { label: 'Address', value: (c) => c.peer || '', cell: (c) => c.peer || '-' },
    { label: 'Time consumed', value: (c) => c.total_ms, cell: (c) => fmtMs(c.total_ms), cls: 'num' },
    { label: 'Snapshots', value: (c) => c.snapshots, cls: 'num' },
    { label: 'Task', value: (c) => c.task_id, cell: (c) => h('a', {
      href: `#/tasks/${c.task_id}?tab=threads`, onclick: (e) => e.stopPropagation(),
    }, `#${c.task_id}`) },
    { label: 'State', value: (c) => c.state, cell: (c) => stateBadge(c.state) },
  ], [], {
    id: 'trace-captures',
    empty: 'No slow call of this trace was captured.',
    onrow: (c) => ctx.go(`#/captures/${c.id}`),
  });
  const sessions = table([
    { label: 'Session', value: (s) => s.session_id, cell: (s) => `#${s.session_id}`, cls: 'num' },
    { label: 'Interface', value: (s) => s.interface || '' },
    { label: 'Samples in the trace', value: (s) => s.samples, cls: 'num' },
    { label: 'App', value: (s) => (s.session ? s.session.app : '') },
    { label: 'Instance', value: (s) => (s.session ? `${s.session.instance} ${s.session.pid}` : ''),
      cell: (s) => (s.session ? `${s.session.instance} (pid ${s.session.pid})` : '-') },
    { label: 'Triggered by', value: (s) => (s.session ? s.session.triggered_by : '') },
    { label: 'Session start', value: (s) => (s.session ? s.session.start_ms : 0),
      cell: (s) => (s.session ? fmtTime(s.session.start_ms) : '-') },
    { label: 'Duration', value: (s) => (s.session ? s.session.duration_s : 0),
      cell: (s) => (s.session ? fmtSeconds(s.session.duration_s) : '-'), cls: 'num' },
  ], [], {
    id: 'trace-sessions',
    empty: 'No profiling session has samples in this trace.',
    onrow: (s) => ctx.go(`#/sessions/${s.session_id}`),
  });
  // An empty list is a sentence, not an empty table (cut off on a phone).
  const capturesBox = h('div', { class: 'scroll', hidden: true }, captures);
  const capturesNone = h('p', { class: 'muted' }, 'No slow call of this trace was captured.');
  const sessionsBox = h('div', { class: 'scroll', hidden: true }, sessions);
  const sessionsNone = h('p', { class: 'muted' }, 'No profiling session has samples in this trace.');
  el.append(
    h('p', { class: 'crumbs' }, h('a', { href: '#/tasks' }, '← Active analysis')),
    h('h1', { class: 'trace-title' }, 'Trace ', h('code', { id: 'trace-id' }, id)),
    status,
    h('section', { class: 'card' }, h('h2', { id: 'trace-captures-head' }, 'Captured slow calls'),
      capturesNone, capturesBox),
    h('section', { class: 'card' }, h('h2', { id: 'trace-sessions-head' }, 'Session spans'),
      h('p', { class: 'muted' }, 'Profiling sessions that took samples inside this trace\'s spans; ' +
        'a row opens the session.'),
      sessionsNone, sessionsBox));

  let settled = false;
  async function refresh() {
    if (settled) return;
    let t;
    try {
      t = await get(`/api/v1/traces/${encodeURIComponent(id)}`);
    } catch (err) {
      if (err instanceof ApiError && err.status === 400) settled = true;
      status.replaceChildren(notice(`This trace could not be read: ${err.message}`, 'error'));
      return;
    }
    captures.update(t.captures);
    sessions.update(t.sessions);
    capturesBox.hidden = !t.captures.length;
    capturesNone.hidden = !!t.captures.length;
    sessionsBox.hidden = !t.sessions.length;
    sessionsNone.hidden = !!t.sessions.length;
    document.getElementById('trace-captures-head').textContent =
      `Captured slow calls (${t.captures.length})`;
    document.getElementById('trace-sessions-head').textContent =
      `Session spans (${t.sessions.length})`;
    const uploading = t.captures.some((c) => c.state === 'uploading');
    if (!t.captures.length && !t.sessions.length)
      status.replaceChildren(notice('Nothing of this trace yet: no capture and no session span. ' +
        'The page looks again every few seconds.', 'warn'));
    else if (uploading)
      status.replaceChildren(notice('A capture of this trace is still uploading its snapshots.', 'info'));
    else status.replaceChildren();
  }
  return every(2000, refresh);
}
