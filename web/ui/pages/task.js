// task.js — one active-profiling task (#/tasks/ID; SPEC B3, B4): what it
// is doing in one plain sentence (waiting for agents — and whether any
// agent of the app runs at all —, listening, task limit reached, expired,
// cancelled), a Cancel button for writers while it runs, and three tabs:
//
//   Details          its parameters, state, creator, start, end, and the
//                    agents it reached with their captures
//   Logs             its log lines in order (created, delivered, started,
//                    each capture, limit reached, expired, cancelled,
//                    errors); new lines appear by themselves
//   Thread analysis  its captures (trace id, time, interface, response
//                    code, address, time consumed); a row opens the
//                    capture, the trace id the trace
//
// Everything refreshes every 2 s while the task runs or a capture is
// still uploading, and stops once the task has ended and settled.  The
// chosen tab is kept in the location's query (?tab=logs).

import { ApiError, api, get } from '../api.js';
import {
  allow, every, fmtMs, fmtSeconds, fmtTime, h, notice, stateBadge, table, toast,
} from '../ui.js';

const pad = (n, w = 2) => String(n).padStart(w, '0');

// "14:03:12.345" — log lines come in bursts within one second.
export function fmtClock(ms) {
  if (!ms) return '-';
  const d = new Date(ms);
  return `${fmtTime(ms).slice(0, 10)} ${pad(d.getHours())}:${pad(d.getMinutes())}:` +
    `${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

// A time cell whose date part a phone leaves out (the clock is what
// tells one call from the next).
export function clockCell(ms) {
  if (!ms) return '-';
  const s = fmtClock(ms);
  return h('span', { class: 'clock', title: s }, h('span', { class: 'date' }, s.slice(0, 11)), s.slice(11));
}

export function traceLink(id) {
  if (!id) return h('span', { class: 'muted' }, '-');
  return h('a', {
    href: `#/traces/${encodeURIComponent(id)}`, class: 'trace-id', title: `Everything of trace ${id}`,
    onclick: (e) => e.stopPropagation(),
  }, id);
}

const plural = (n, one, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;

// The one sentence that says what the task is doing: [text, kind].
function statusOf(task, logs, runningAgents) {
  const caps = `${task.captures} of ${task.max_samples} capture${task.max_samples === 1 ? '' : 's'}`;
  const ends = `${fmtTime(task.ends_ms)} (in ${fmtSeconds(Math.max(0, (task.ends_ms - Date.now()) / 1000))})`;
  switch (task.state) {
    case 'running': {
      const agents = task.agents || [];
      const started = agents.filter((a) => a.started_ms && !a.stopped_ms);
      if (started.length)
        return [`Listening on ${plural(started.length, 'agent')} of ${task.app} for ${task.interface} ` +
          `calls still running after ${fmtMs(task.threshold_ms)}: ${caps} taken. ` +
          `Ends at ${ends}.`, 'ok'];
      if (agents.length)
        return [`Delivered to ${plural(agents.length, 'agent')} of ${task.app}; waiting for ` +
          `${agents.length === 1 ? 'it' : 'them'} to start listening. Ends at ${ends}.`, 'info'];
      if (runningAgents === 0)
        return [`Waiting for agents: no agent of ${task.app} is running. The task starts on the ` +
          `first one that comes up, until it expires at ${ends}.`, 'warn'];
      return [`Waiting for agents: handing the task to the ${runningAgents === null ? ''
        : `${plural(runningAgents, 'running agent')} `}of ${task.app}… Ends at ${ends}.`, 'info'];
    }
    case 'limit-reached':
      return [`Task limit reached: all ${plural(task.max_samples, 'capture')} were taken; the task ` +
        `ended at ${fmtTime(task.ended_ms)}.`, 'ok'];
    case 'expired':
      return [`Expired: its ${task.duration_min} minutes ran out at ${fmtTime(task.ended_ms)} with ` +
        `${caps}${task.captures ? '' : ` — no ${task.interface} call of ${task.app} was still ` +
        `running after ${fmtMs(task.threshold_ms)}`}.`, 'info'];
    case 'cancelled': {
      const line = logs.find((l) => l.event === 'cancelled');
      return [`Cancelled at ${fmtTime(task.ended_ms)}: ${line ? line.message : `with ${caps}`}.`, 'info'];
    }
    default:
      return [`State: ${task.state}.`, 'info'];
  }
}

function details(task) {
  const kv = (pairs) => h('dl', { class: 'kv' },
    pairs.map(([k, v]) => [h('dt', null, k), h('dd', null, v)]));
  return [
    kv([
      ['App', task.app],
      ['Interface', task.interface],
      ['State', stateBadge(task.state)],
      ['Duration', `${task.duration_min} min`],
      ['Trigger threshold', fmtMs(task.threshold_ms)],
      ['Sampling frequency', `every ${fmtMs(task.frequency_ms)}`],
      ['Maximum samples', String(task.max_samples)],
      ['Captures', `${task.captures} / ${task.max_samples}`],
      ['Creator', (task.creator && task.creator.name) ||
        (task.creator && task.creator.token_id ? `token ${task.creator.token_id}` : 'unknown')],
      ['Created', fmtTime(task.created_ms)],
      ['Started', task.started_ms ? fmtTime(task.started_ms) : 'not yet (no agent started it)'],
      [task.ended_ms ? 'Ended' : 'Ends', fmtTime(task.ended_ms || task.ends_ms)],
    ]),
    h('h3', null, 'Captures per agent'),
    (task.agents || []).length ? h('div', { class: 'scroll' }, table([
      { label: 'Agent', value: (a) => a.agent_id, cls: 'num' },
      { label: 'Instance', value: (a) => a.instance || '' },
      { label: 'PID', value: (a) => a.pid, cls: 'num' },
      { label: 'Delivered', value: (a) => a.delivered_ms, cell: (a) => fmtTime(a.delivered_ms) },
      { label: 'Started', value: (a) => a.started_ms || 0, cell: (a) => fmtTime(a.started_ms) },
      { label: 'Stopped', value: (a) => a.stopped_ms || 0, cell: (a) => fmtTime(a.stopped_ms) },
      { label: 'Captures', value: (a) => a.captures, cls: 'num' },
    ], task.agents, { id: 'task-agents' }))
      : h('p', { class: 'muted', id: 'task-agents' }, 'No agent has received this task yet.'),
  ];
}

export async function render(el, ctx) {
  const id = ctx.params[0];
  const title = h('h1', null, `Task #${id}`);
  const badge = h('span');
  const status = h('div', { id: 'task-status' });
  const problem = h('div');
  const cancel = h('button', { class: 'danger', id: 'task-cancel', type: 'button' }, 'Cancel task');
  const confirmBox = h('span', { class: 'confirm', hidden: true },
    h('span', null, 'Stop listening now?'),
    h('button', { class: 'danger', id: 'task-cancel-yes', type: 'button' }, 'Yes, cancel it'),
    h('button', { class: 'secondary', id: 'task-cancel-no', type: 'button' }, 'Keep it running'));
  allow(cancel, ctx.readOnlyReason);
  const actions = h('div', { class: 'actions task-actions', hidden: true }, cancel, confirmBox);

  const tabs = [['details', 'Details'], ['logs', 'Logs'], ['threads', 'Thread analysis']];
  let tab = tabs.some(([k]) => k === ctx.query.get('tab')) ? ctx.query.get('tab') : 'details';
  const tabButtons = {};
  const panels = {};
  for (const [k, label] of tabs) {
    tabButtons[k] = h('button', {
      type: 'button', role: 'tab', id: `tab-${k}`, 'aria-controls': `task-${k}`,
      onclick: () => choose(k),
    }, label);
    panels[k] = h('section', { id: `task-${k}`, role: 'tabpanel', class: 'tab-panel' });
  }
  function choose(k) {
    tab = k;
    for (const [key] of tabs) {
      tabButtons[key].setAttribute('aria-selected', String(key === k));
      panels[key].hidden = key !== k;
    }
    history.replaceState(null, '', `#/tasks/${id}${k === 'details' ? '' : `?tab=${k}`}`);
  }

  // The log as a list, not a table: its messages are long, and on a phone
  // each line's message wraps under its time and event.
  const logList = h('ol', { class: 'task-log', id: 'task-log' });
  let shownLogs = '';
  const showLogs = () => {
    const key = logs.map((l) => l.id).join(',');
    if (key === shownLogs) return;
    shownLogs = key;
    logList.replaceChildren(...(logs.length ? logs.map((l) => h('li', { class: 'log-line' },
      h('time', { class: 'log-time', datetime: new Date(l.ts_ms).toISOString() }, clockCell(l.ts_ms)),
      h('span', { class: `event event-${l.event}` }, l.event),
      h('span', { class: 'log-agent muted' },
        l.agent_id ? `${l.instance || `agent ${l.agent_id}`} (pid ${l.pid})` : ''),
      h('span', { class: 'log-message' }, l.message)))
      : [h('li', { class: 'muted empty' }, 'No log line yet.')]));
  };
  const logNote = h('p', { class: 'muted' });
  panels.logs.append(logNote, logList);

  const captureTable = table([
    { label: 'Trace id', value: (c) => c.trace_id || '', cell: (c) => traceLink(c.trace_id) },
    { label: 'Time', value: (c) => c.start_ms, cell: (c) => clockCell(c.start_ms) },
    { label: 'Interface', value: (c) => c.interface },
    { label: 'Response code', value: (c) => c.response_code ?? -1,
      cell: (c) => (c.response_code ?? '-'), cls: 'num' },
    { label: 'Address', value: (c) => c.peer || '', cell: (c) => c.peer || '-' },
    { label: 'Time consumed', value: (c) => c.total_ms, cell: (c) => fmtMs(c.total_ms), cls: 'num' },
    { label: 'Snapshots', value: (c) => c.snapshots, cls: 'num' },
    { label: 'Instance', value: (c) => `${c.instance} ${c.pid}`, cell: (c) => `${c.instance} (pid ${c.pid})` },
    { label: 'State', value: (c) => c.state, cell: (c) => stateBadge(c.state) },
  ], [], {
    id: 'task-captures',
    empty: 'No slow call captured yet.',
    onrow: (c) => ctx.go(`#/captures/${c.id}`),
  });
  const captureNote = h('p', { class: 'muted' });
  panels.threads.append(captureNote, h('div', { class: 'scroll' }, captureTable));

  el.append(
    h('p', { class: 'crumbs' }, h('a', { href: '#/tasks' }, '← Active analysis')),
    h('div', { class: 'row page-head' }, title, badge),
    problem, status, actions,
    h('div', { class: 'tabs', role: 'tablist' }, tabs.map(([k]) => tabButtons[k])),
    ...tabs.map(([k]) => panels[k]));
  choose(tab);

  let task = null;
  let logs = [];
  let captures = [];
  let settledAt = 0;
  let shownTask = '';
  let gone = false;

  async function refresh() {
    if (gone) return;
    // Once ended with every capture complete, one more round picks up the
    // agents' last "stopped" lines; then nothing changes any more.
    if (settledAt && Date.now() - settledAt > 6000) return;
    let t;
    try {
      t = await get(`/api/v1/tasks/${id}`);
    } catch (err) {
      if (err instanceof ApiError && err.status === 404) {
        gone = true;
        problem.replaceChildren(notice(`There is no task #${id}: ${err.message}.`, 'error'));
        status.replaceChildren();
        return;
      }
      problem.replaceChildren(notice(`The task could not be read: ${err.message}`, 'error'));
      return;
    }
    const [l, c] = await Promise.all([
      get(`/api/v1/tasks/${id}/logs`), get(`/api/v1/tasks/${id}/captures`)]).catch((err) => {
      problem.replaceChildren(notice(`The task's log or captures could not be read: ${err.message}`, 'error'));
      return [null, null];
    });
    if (!l) return;
    problem.replaceChildren();
    task = t;
    logs = l.logs;
    captures = c.captures;
    let runningAgents = null;
    if (task.state === 'running' && !(task.agents || []).length) {
      runningAgents = (await get(`/api/v1/agents?app=${encodeURIComponent(task.app)}&status=running`)
        .catch(() => ({ agents: [] }))).agents.length;
    }
    show(runningAgents);
    const uploading = captures.filter((x) => x.state === 'uploading').length;
    if (task.state !== 'running' && !uploading && !settledAt) settledAt = Date.now();
  }

  function show(runningAgents) {
    title.textContent = `Task #${task.id}: ${task.interface} on ${task.app}`;
    badge.replaceChildren(stateBadge(task.state));
    const [text, kind] = statusOf(task, logs, runningAgents);
    const cur = status.firstChild;
    if (!cur || cur.textContent !== text || !cur.classList.contains(kind))
      status.replaceChildren(notice(text, kind));
    actions.hidden = task.state !== 'running';
    const json = JSON.stringify(task);
    if (json !== shownTask) {
      shownTask = json;
      panels.details.replaceChildren(...details(task));
    }
    showLogs();
    logNote.textContent = `${plural(logs.length, 'line')}` +
      `${task.state === 'running' ? '; new lines appear as they come.' : '.'}`;
    captureTable.update(captures);
    const uploading = captures.filter((x) => x.state === 'uploading').length;
    captureNote.textContent = `${plural(captures.length, 'slow call')} captured of at most ` +
      `${task.max_samples}${uploading ? `; ${uploading} still uploading its snapshots` : ''}. ` +
      'Open a row for its snapshot timeline and flame graph.';
    tabButtons.logs.textContent = `Logs (${logs.length})`;
    tabButtons.threads.textContent = `Thread analysis (${captures.length})`;
  }

  cancel.addEventListener('click', () => {
    cancel.hidden = true;
    confirmBox.hidden = false;
  });
  confirmBox.querySelector('#task-cancel-no').addEventListener('click', () => {
    confirmBox.hidden = true;
    cancel.hidden = false;
  });
  const yes = confirmBox.querySelector('#task-cancel-yes');
  yes.addEventListener('click', async () => {
    yes.disabled = true;
    try {
      await api('POST', `/api/v1/tasks/${id}/cancel`, {});
      toast(`Task ${id} cancelled.`, 'ok');
    } catch (err) {
      toast(`The task was not cancelled: ${err.message}`, 'error');
    } finally {
      yes.disabled = false;
      confirmBox.hidden = true;
      cancel.hidden = false;
      settledAt = 0;
      await refresh();
    }
  });

  return every(2000, refresh);
}
