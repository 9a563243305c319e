// loadtest.js — one performance test (#/loadtests/ID): the request it
// sends (URL, method, headers, users, duration, rate, timeout, the app it
// profiles), its state — queued (waiting for the tests before it), in
// progress (requests so far, elapsed of duration), or ended — and its
// results: requests/s and latency per second as two uPlot charts (drawn
// from result.seconds, which the server gives once the test has ended),
// latency percentiles, status codes, errors by kind and bytes.
//
// *Profile during test* links the sessions the app's agents recorded while
// the load ran (triggered by load-test), each to #/sessions/ID, with
// whether it is still profiling, uploading or completed; when none came,
// the page says whether an agent of the app was running at all.  A failed
// test shows its error.  The page refreshes itself every 2 s until the
// test has ended and its sessions are uploaded, then stops.

import { get } from '../api.js';
import {
  allow, every, fmtMs, fmtNum, fmtPct, fmtSeconds, fmtTime, h, notice, stateBadge, table,
} from '../ui.js';
import { ENDED, cancelTest, fmtRate } from './loadtests.js';

// Sessions stop arriving this long after the test's end: past it, a test
// with none says so and the page stops refreshing.
const SESSION_GRACE_MS = 20000;

function fmtBytes(n) {
  if (n === null || n === undefined) return '-';
  if (n < 1024) return `${n} B`;
  const u = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < u.length - 1) { v /= 1024; i++; }
  return `${v.toFixed(v >= 100 ? 0 : 1)} ${u[i]}`;
}

// 10000 → "10 s", 2500 → "2500 ms".
function fmtTimeout(ms) {
  return ms >= 1000 && ms % 1000 === 0 ? `${ms / 1000} s` : `${ms} ms`;
}

const kv = (pairs) => h('dl', { class: 'kv' },
  pairs.filter(Boolean).map(([k, v, id]) => [h('dt', null, k), h('dd', { id }, v)]));

// What a linked session is doing now.
function sessionState(s) {
  if (s.state === 'running')
    return Date.now() < s.start_ms + s.duration_s * 1000 ? 'still profiling' : 'uploading';
  return s.state;
}

// Did an agent of the app run while the test did?
function agentDuring(agents, t) {
  const from = t.started_ms || t.created_ms;
  const to = t.ended_ms || Date.now();
  return agents.some((a) => a.registered_ms <= to &&
    (a.stopped_ms || (a.status === 'running' ? Date.now() : a.last_seen_ms)) >= from);
}

export async function render(el, ctx) {
  const id = ctx.params[0];
  const badge = h('span', { id: 'lt-state' });
  const cancel = h('button', { class: 'danger', id: 'lt-cancel', hidden: true }, 'Cancel test');
  const again = h('button', {
    class: 'secondary', id: 'lt-again', onclick: () => ctx.go(`#/loadtests?from=${id}`),
  }, 'Run again');
  allow(again, ctx.readOnlyReason);
  const status = h('div', { id: 'lt-status' });
  const request = h('section', { class: 'card', id: 'lt-request' });
  const results = h('section', { class: 'card', id: 'lt-results', hidden: true });
  const chartBox = h('section', { class: 'card', id: 'lt-over-time', hidden: true });
  const sessions = h('section', { class: 'card', id: 'lt-sessions' });
  el.append(
    h('p', null, h('a', { href: '#/loadtests' }, '← Performance tests')),
    h('div', { class: 'lt-head' }, h('h1', null, `Load test #${id}`), badge,
      h('span', { class: 'lt-spacer' }), cancel, again),
    status, request, results, chartBox, sessions);

  let t = null;
  let done = false;
  let charts = [];
  let drawn = -1;
  let cancelling = false;

  cancel.addEventListener('click', async () => {
    cancelling = true;
    allow(cancel, 'Cancelling…');
    cancel.textContent = 'Cancelling…';
    await cancelTest(t);
    cancelling = false;
    cancel.textContent = 'Cancel test';
    await refresh();
  });

  const ro = new ResizeObserver(() => {
    const w = chartWidth();
    for (const c of charts) if (Math.abs(c.width - w) > 2) c.setSize({ width: w, height: c.height });
  });
  ro.observe(chartBox);
  function chartWidth() {
    return Math.max(240, chartBox.clientWidth - 34);
  }

  function paintRequest() {
    const hdrs = Object.entries(t.headers || {});
    request.replaceChildren(
      h('h2', null, 'Request'),
      kv([
        ['URL', h('span', { class: 'lt-break' }, t.url), 'lt-req-url'],
        ['Method', t.method, 'lt-req-method'],
        hdrs.length ? ['Headers', hdrs.map(([k, v]) => h('div', { class: 'lt-break' }, `${k}: ${v}`))] : null,
        t.body_bytes ? ['Body', `${fmtNum(t.body_bytes)} bytes`] : null,
        ['Users', fmtNum(t.users), 'lt-req-users'],
        ['Duration', fmtSeconds(t.duration_s), 'lt-req-duration'],
        ['Rate', t.rate ? `${fmtRate(t.rate)} requests/s in all` : 'as fast as the users go', 'lt-req-rate'],
        ['Timeout', fmtTimeout(t.timeout_ms)],
        ['Profile during test', t.profile_app || 'no', 'lt-req-profile'],
        ['Created', `${fmtTime(t.created_ms)} by ${t.creator && t.creator.name ? t.creator.name : 'unknown'}`],
        ['Started', fmtTime(t.started_ms)],
        ['Ended', fmtTime(t.ended_ms)],
      ]));
  }

  function paintStatus() {
    badge.replaceChildren(stateBadge(t.state));
    const active = !ENDED.includes(t.state);
    cancel.hidden = !active;
    if (active && !cancelling) allow(cancel, ctx.readOnlyReason || (t.cancel_requested ? 'Stopping…' : null));
    const parts = [];
    if (t.state === 'queued') {
      parts.push(notice('Queued: sonded runs one test at a time and starts this one when the ' +
        'tests created before it have ended.', 'warn'));
    } else if (t.state === 'in progress') {
      const r = t.result;
      const elapsed = Math.min(t.duration_s, r ? r.elapsed_s : (Date.now() - t.started_ms) / 1000);
      parts.push(h('div', { class: 'lt-progress' },
        h('progress', { id: 'lt-progress', max: t.duration_s, value: elapsed }),
        h('div', { id: 'lt-progress-text' },
          t.cancel_requested ? 'Stopping… ' : 'In progress: ',
          `${fmtNum(t.requests)} requests so far`,
          t.errors ? `, ${fmtNum(t.errors)} errors` : '',
          ` — ${fmtSeconds(elapsed)} of ${fmtSeconds(t.duration_s)}.`)));
    } else if (t.state === 'failed') {
      parts.push(notice(`The test failed: ${t.error || 'no reason given'}`, 'error'));
    } else if (t.state === 'cancelled') {
      parts.push(notice(t.started_ms ? 'Cancelled while it ran: the results below are those ' +
        'of the time it ran.' : 'Cancelled before it started: nothing was sent.', 'info'));
    }
    status.replaceChildren(...parts);
  }

  function tile(label, value, id, extra) {
    return h('div', { class: 'lt-tile' }, h('div', { class: 'muted' }, label),
      h('div', { class: 'lt-big', id }, value), extra ? h('div', { class: 'muted' }, extra) : null);
  }

  function paintResults() {
    const r = t.result;
    results.hidden = !r;
    if (!r) return;
    const sofar = t.state === 'in progress' ? ' so far' : '';
    const L = r.latency_ms;
    const statusRows = Object.entries(r.status || {}).map(([code, n]) => ({ code, n }));
    const e = r.errors || {};
    const errRows = [
      { kind: 'connect', what: 'refused, unreachable or connect timeout' },
      { kind: 'timeout', what: `no whole response within ${fmtTimeout(t.timeout_ms)}` },
      { kind: 'reset', what: 'closed before the whole response' },
      { kind: 'other', what: 'anything else' },
    ].map((x) => ({ ...x, n: e[x.kind] || 0 }));
    const sent = r.requests + (e.total || 0);
    results.replaceChildren(
      h('h2', null, `Results${sofar}`),
      h('div', { class: 'lt-tiles' },
        tile('Requests', fmtNum(r.requests), 'lt-requests', 'answered'),
        tile('Requests/s', fmtRate(r.requests_per_s), 'lt-rps'),
        tile('Errors', fmtNum(e.total || 0), 'lt-errors',
          sent ? fmtPct((100 * (e.total || 0)) / sent) : null),
        tile('Latency p99', fmtMs(L ? L.p99 : null), 'lt-p99'),
        tile('Elapsed', `${Number(r.elapsed_s).toFixed(1)} s`, 'lt-elapsed'),
        tile('Read', fmtBytes(r.bytes_read), 'lt-bytes-read', 'responses'),
        tile('Sent', fmtBytes(r.bytes_written), 'lt-bytes-sent', 'requests')),
      h('div', { class: 'cols' },
        h('div', null, h('h3', null, 'Latency'),
          L ? h('table', { class: 'grid lt-small', id: 'lt-latency' },
            h('tbody', null, ['min', 'mean', 'p50', 'p90', 'p99', 'max'].map((k) =>
              h('tr', null, h('th', { scope: 'row' }, k),
                h('td', { class: 'num', id: `lt-lat-${k}` }, fmtMs(L[k]))))))
            : h('p', { class: 'muted' }, 'No response came: no latencies.'),
          h('p', { class: 'muted lt-hint' }, t.rate ? 'Counted from each request\'s scheduled ' +
            'time (fixed rate).' : 'Counted from each request\'s send.')),
        h('div', null, h('h3', null, 'Status codes'),
          table([
            { label: 'Status', value: (x) => x.code, cell: (x) => h('span', { dataset: { code: x.code } }, x.code) },
            {
              label: 'Responses', cls: 'num', value: (x) => x.n,
              cell: (x) => h('span', { id: `lt-status-${x.code}` }, fmtNum(x.n)),
            },
            { label: 'Share', cls: 'num', value: (x) => x.n, cell: (x) => fmtPct(r.requests ? (100 * x.n) / r.requests : null) },
          ], statusRows, { id: 'lt-status-codes', empty: 'No response.' })),
        h('div', null, h('h3', null, 'Errors by kind'),
          table([
            { label: 'Kind', value: (x) => x.kind, cell: (x) => h('span', { title: x.what }, x.kind) },
            {
              label: 'Errors', cls: 'num', value: (x) => x.n,
              cell: (x) => h('span', { id: `lt-err-${x.kind}`, class: x.n ? 'lt-bad' : null }, fmtNum(x.n)),
            },
            { label: 'Meaning', value: (x) => x.what, cls: 'lt-wrap' },
          ], errRows, { id: 'lt-error-kinds' }))));
  }

  function paintCharts() {
    const r = t.result;
    const seconds = r && r.seconds;
    chartBox.hidden = !r;
    if (!r) return;
    if (!seconds) {
      if (drawn !== -2) {
        chartBox.replaceChildren(h('h2', null, 'Over time'),
          h('p', { class: 'muted' }, 'The per-second charts are drawn when the test has ended.'));
        drawn = -2;
      }
      return;
    }
    if (drawn === seconds.length) return;
    drawn = seconds.length;
    for (const c of charts) c.destroy();
    charts = [];
    if (!seconds.length) {
      chartBox.replaceChildren(h('h2', null, 'Over time'),
        h('p', { class: 'muted' }, 'The test ended before its first whole second: no series.'));
      return;
    }
    const rpsBox = h('div', { class: 'lt-chart', id: 'lt-chart-rps' });
    const latBox = h('div', { class: 'lt-chart', id: 'lt-chart-latency' });
    chartBox.replaceChildren(h('h2', null, 'Over time'), rpsBox, latBox);
    const xs = seconds.map((_, i) => i + 1);
    const width = chartWidth();
    const sync = { key: `loadtest-${id}` };
    const xAxis = {
      label: 'second of the test', stroke: '#5b6475', grid: { stroke: '#eef0f4' },
      incrs: [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600],
      values: (u, v) => v.map((x) => `${x}s`),
    };
    const yAxis = (label) => ({ label, stroke: '#5b6475', grid: { stroke: '#eef0f4' }, size: 60 });
    const common = { width, height: 220, scales: { x: { time: false } }, cursor: { sync } };
    const U = window.uPlot;
    charts.push(new U({
      ...common,
      title: 'Requests per second',
      series: [{ label: 'second' },
        { label: 'requests/s', stroke: '#2f5fd0', fill: 'rgba(47,95,208,.08)', width: 2 },
        { label: 'errors/s', stroke: '#c53030', width: 1.5 }],
      axes: [xAxis, yAxis('requests/s')],
    }, [xs, seconds.map((s) => s.requests), seconds.map((s) => s.errors)], rpsBox));
    charts.push(new U({
      ...common,
      title: 'Latency per second (ms)',
      series: [{ label: 'second' },
        { label: 'mean ms', stroke: '#1f8a4c', width: 2 },
        { label: 'max ms', stroke: '#b7791f', width: 1.5, dash: [5, 4] }],
      axes: [xAxis, yAxis('ms')],
    }, [xs, seconds.map((s) => s.latency_mean_ms), seconds.map((s) => s.latency_max_ms)], latBox));
  }

  // The linked sessions, and a note when profiling did not (yet) happen.
  // Returns whether nothing more is to come.
  async function paintSessions() {
    const list = t.sessions || [];
    const head = h('h2', null, 'Profiling sessions');
    if (!t.profile_app) {
      sessions.replaceChildren(head, h('p', { class: 'muted', id: 'lt-sessions-note' },
        'Profile during test was not asked for this test. Run it again with Options → ',
        'Profile during test to record what the app does under this load.'));
      return true;
    }
    const notes = [];
    let settled = list.length > 0 && list.every((s) => s.state !== 'running');
    const ended = ENDED.includes(t.state);
    if (!list.length) {
      let agents = [];
      try {
        agents = (await get(`/api/v1/agents?app=${encodeURIComponent(t.profile_app)}`)).agents;
      } catch (e) {
        notes.push(notice(`The agents of ${t.profile_app} could not be listed: ${e.message}`, 'error'));
      }
      const app = t.profile_app;
      if (t.state === 'queued') {
        notes.push(notice(`When the test starts, the running agents of ${app} profile for its ` +
          'duration; their sessions appear here.', 'info'));
      } else if (!t.started_ms) {
        notes.push(notice('The test never started: nothing was profiled.', 'info'));
        settled = true;
      } else if (!agentDuring(agents, t)) {
        notes.push(notice(ended
          ? `Profile during test was asked for ${app}, but no agent of ${app} was running during ` +
            'the test: no session was recorded. Start the app under the agent (sonde run --app ' +
            `${app} …) and run the test again.`
          : `No agent of ${app} is running: nothing is being profiled during this test.`, 'warn'));
        settled = ended;
      } else if (ended && Date.now() - t.ended_ms > SESSION_GRACE_MS) {
        notes.push(notice(`No session of ${app} arrived for this test (an agent was running, but ` +
          'none started profiling).', 'warn'));
        settled = true;
      } else {
        notes.push(notice(`Waiting for the agents of ${app} to start profiling (they poll every ` +
          'couple of seconds)…', 'info'));
      }
    } else if (!settled) {
      notes.push(h('p', { class: 'muted' }, `The agents of ${t.profile_app} are profiling for the `,
        'test\'s duration, then upload; this page refreshes until they have.'));
    }
    const tbl = table([
      {
        label: 'Session', value: (s) => s.id,
        cell: (s) => h('a', {
          href: `#/sessions/${s.id}`, class: 'lt-session', dataset: { id: s.id },
          onclick: (e) => e.stopPropagation(),
        }, `#${s.id}`),
      },
      { label: 'Triggered by', value: (s) => s.triggered_by, cls: 'lt-trigger' },
      { label: 'App', value: (s) => s.app },
      { label: 'Instance', value: (s) => s.instance },
      { label: 'PID', cls: 'num', value: (s) => s.pid },
      { label: 'Started', value: (s) => s.start_ms, cell: (s) => fmtTime(s.start_ms) },
      { label: 'Duration', cls: 'num', value: (s) => s.duration_s, cell: (s) => fmtSeconds(s.duration_s) },
      { label: 'Samples', cls: 'num', value: (s) => s.samples, cell: (s) => fmtNum(s.samples) },
      { label: 'CPU %', cls: 'num', value: (s) => s.cpu_pct ?? -1, cell: (s) => fmtPct(s.cpu_pct) },
      {
        label: 'State', value: sessionState,
        cell: (s) => {
          const st = sessionState(s);
          return h('span', {
            class: `state state-${st === 'still profiling' ? 'running' : st}`,
            dataset: { state: st },
          }, st);
        },
      },
    ], list, { id: 'lt-session-list', onrow: (s) => ctx.go(`#/sessions/${s.id}`) });
    sessions.replaceChildren(head, ...notes, ...(list.length ? [h('div', { class: 'scroll' }, tbl)] : []));
    return settled;
  }

  async function refresh() {
    try {
      t = await get(`/api/v1/loadtests/${id}`);
    } catch (e) {
      if (e.status === 404) {
        done = true;
        el.replaceChildren(h('p', null, h('a', { href: '#/loadtests' }, '← Performance tests')),
          notice(e.message, 'error'));
      } else {
        status.replaceChildren(notice(`The test could not be refreshed: ${e.message}`, 'error'));
      }
      return;
    }
    paintStatus();
    paintRequest();
    paintResults();
    paintCharts();
    const settled = await paintSessions();
    if (ENDED.includes(t.state) && settled) done = true;
  }

  let stop = null;
  stop = every(2000, async () => {
    if (done) {
      if (stop) stop();
      return;
    }
    await refresh();
  });
  return () => {
    stop();
    ro.disconnect();
    for (const c of charts) c.destroy();
  };
}
