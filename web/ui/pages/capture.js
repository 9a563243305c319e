// capture.js — one captured slow call (#/captures/ID; SPEC B2, B4): its
// facts (trace, task, app, instance, interface, start, response code,
// peer, time consumed, snapshots), the timeline of its snapshots over the
// call and the flame graph of them.
//
// The timeline is an SVG drawn with d3 (window.d3): the call from its
// start to its end, the part before the task's trigger threshold shaded
// (nobody watched then), and one mark per snapshot at its offset from the
// call's start, coloured by the thread's state (running, sleeping, disk,
// other).  Hovering a mark shows its offset, state, system call, thread
// and the top of its stack; clicking it shows the whole stack below.  It
// is redrawn when its box changes width.
//
// The flame graph is flameGraph() of web/ui/flame.js over
// /api/v1/captures/ID/flamegraph: by snapshot count, or by wall time
// (each snapshot weighed by its interval), with a search.
//
// A capture still uploading its snapshots says so and the page refreshes
// every 2 s until they are in.

import { ApiError, blob, get, query } from '../api.js';
import { every, fmtMs, fmtTime, h, notice, stateBadge, toast } from '../ui.js';
import { flameGraph } from '../flame.js';
import { fmtClock, traceLink } from './task.js';

const STATES = [
  ['running', 'running (on CPU)'],
  ['sleeping', 'sleeping (blocked)'],
  ['disk', 'disk wait'],
  ['other', 'other'],
];
const stateClass = (s) => (['running', 'sleeping', 'disk'].includes(s) ? s : 'other');

function fmtOffset(ms) {
  return ms >= 1000 ? `${(ms / 1000).toFixed(3)} s` : `${ms.toFixed(1)} ms`;
}

function describe(s) {
  const what = s.state === 'sleeping' && s.syscall ? `sleeping in ${s.syscall}`
    : s.syscall ? `${s.state} in ${s.syscall}` : s.state;
  return `#${s.snapshot} at ${fmtOffset(s.offset_ms)}: ${what}`;
}

// The stack of one snapshot, leaf first.
function stackList(s) {
  return h('div', { class: 'snapshot-stack', id: 'capture-stack' },
    h('h3', null, `Snapshot ${describe(s)}`,
      h('span', { class: 'muted' }, ` · thread ${s.thread || '?'} (${s.thread_id})`)),
    s.frames.length
      ? h('ol', { class: 'frames' }, s.frames.map((f) => h('li', null, f)))
      : h('p', { class: 'muted' }, 'No frames in this snapshot.'));
}

// Draws the timeline into box (emptied first); returns nothing.  total:
// the call's time consumed; threshold: the task's (null when unknown).
function drawTimeline(box, tip, snaps, total, threshold, onpick) {
  const d3 = window.d3;
  box.replaceChildren();
  const width = Math.max(280, box.clientWidth || 600);
  const narrow = width < 500;
  const m = { left: 12, right: 16, top: 22, bottom: 26 };
  const laneH = 40;
  const height = m.top + laneH + m.bottom;
  const last = snaps.length ? snaps[snaps.length - 1].offset_ms : 0;
  const end = Math.max(total || 0, last, threshold || 0, 1);
  const x = d3.scaleLinear().domain([0, end]).range([m.left, width - m.right]);
  const svg = d3.select(box).append('svg')
    .attr('width', width).attr('height', height)
    .attr('role', 'img')
    .attr('aria-label', `${snaps.length} snapshots over a call of ${fmtMs(total)}`);
  const y0 = m.top;
  // The call, and the part before the threshold.
  svg.append('rect').attr('class', 'call')
    .attr('x', x(0)).attr('y', y0).attr('width', Math.max(1, x(total) - x(0))).attr('height', laneH);
  if (threshold) {
    const tx = x(Math.min(threshold, end));
    svg.append('rect').attr('class', 'before-threshold')
      .attr('x', x(0)).attr('y', y0).attr('width', Math.max(0, tx - x(0))).attr('height', laneH);
    svg.append('line').attr('class', 'threshold')
      .attr('x1', tx).attr('x2', tx).attr('y1', y0 - 6).attr('y2', y0 + laneH);
    svg.append('text').attr('class', 'threshold-label')
      .attr('x', tx).attr('y', y0 - 9)
      .attr('text-anchor', tx > width * 0.7 ? 'end' : 'start')
      .text(`threshold ${fmtMs(threshold)}`);
  }
  svg.append('text').attr('class', 'call-label')
    .attr('x', x(total)).attr('y', y0 - 9).attr('text-anchor', 'end')
    .text(threshold && x(total) - x(threshold) < (narrow ? 170 : 150) ? '' : `end ${fmtMs(total)}`);
  // One mark per snapshot: a tick at its offset and a bar on to the next
  // snapshot (the last: to the call's end), at least 3 px wide — the
  // thread was seen in that state there.
  const marks = svg.append('g').attr('class', 'snaps');
  snaps.forEach((s, i) => {
    const x1 = x(s.offset_ms);
    const x2 = Math.max(x1 + 3, x(i + 1 < snaps.length ? snaps[i + 1].offset_ms : total));
    const g = marks.append('g')
      .attr('class', `snap snap-${stateClass(s.state)}`)
      .attr('data-snapshot', s.snapshot)
      .attr('tabindex', 0);
    g.append('rect').attr('class', 'span')
      .attr('x', x1).attr('y', y0 + 6).attr('width', Math.max(1, x2 - x1 - 1)).attr('height', laneH - 12);
    g.append('rect').attr('class', 'tick')
      .attr('x', x1 - 1.5).attr('y', y0 + 2).attr('width', 3).attr('height', laneH - 4);
    g.append('title').text(`${describe(s)}\n${s.frames.slice(0, 3).join(' ← ')}`);
    const showTip = (ev) => {
      tip.replaceChildren(
        h('div', { class: 'tip-head' }, describe(s)),
        h('div', { class: 'muted' }, `thread ${s.thread || '?'} (${s.thread_id})`),
        h('ol', { class: 'frames' }, s.frames.slice(0, 5).map((f) => h('li', null, f)),
          s.frames.length > 5 ? h('li', { class: 'muted more' }, `… ${s.frames.length - 5} more`) : null));
      tip.hidden = false;
      const r = box.getBoundingClientRect();
      const px = (ev && ev.clientX !== undefined ? ev.clientX - r.left : x1);
      const tw = tip.offsetWidth;
      tip.style.left = `${Math.max(0, Math.min(px - tw / 2, r.width - tw))}px`;
      tip.style.top = `${height + 2}px`;
    };
    g.on('mouseenter', showTip).on('mousemove', showTip)
      .on('mouseleave', () => { tip.hidden = true; })
      .on('focus', () => showTip(null)).on('blur', () => { tip.hidden = true; })
      .on('click', () => onpick(s))
      .on('keydown', (ev) => { if (ev.key === 'Enter') onpick(s); });
  });
  const ticks = narrow ? 4 : 8;
  svg.append('g').attr('class', 'axis')
    .attr('transform', `translate(0,${y0 + laneH + 2})`)
    .call(d3.axisBottom(x).ticks(ticks).tickFormat((v) => `${v} ms`));
}

export async function render(el, ctx) {
  const id = ctx.params[0];
  const title = h('h1', null, `Capture #${id}`);
  const badge = h('span');
  const crumbs = h('p', { class: 'crumbs' }, h('a', { href: '#/tasks' }, '← Active analysis'));
  const status = h('div', { id: 'capture-status' });
  const facts = h('div', { id: 'capture-facts' });
  const download = h('button', { class: 'secondary', type: 'button', id: 'capture-download', hidden: true },
    'Download pprof');
  const tlBox = h('div', { class: 'timeline', id: 'capture-timeline' });
  const tip = h('div', { class: 'timeline-tip', id: 'capture-tip', hidden: true, role: 'tooltip' });
  const stack = h('div');
  const legend = h('div', { class: 'legend' }, STATES.map(([k, label]) =>
    h('span', { class: `key key-${k}` }, h('i'), label)),
  h('span', { class: 'key key-before' }, h('i'), 'before the threshold (not watched)'));
  const timelineCard = h('section', { class: 'card', hidden: true },
    h('h2', null, 'Snapshot timeline'),
    h('p', { class: 'muted', id: 'capture-timeline-note' }),
    h('div', { class: 'timeline-wrap' }, tlBox, tip), legend, stack);
  const typeSel = h('select', { id: 'capture-type' },
    h('option', { value: '' }, 'Snapshots (count)'), h('option', { value: 'wall' }, 'Wall time'));
  const search = h('input', { id: 'capture-search', type: 'search', placeholder: 'Search frames…' });
  const found = h('span', { class: 'muted', id: 'capture-found' });
  const flameBox = h('div', { id: 'capture-flame' });
  const flameNote = h('div');
  const flameCard = h('section', { class: 'card', hidden: true },
    h('h2', null, 'Flame graph of the snapshots'),
    h('div', { class: 'row' },
      h('div', null, h('label', { for: 'capture-type' }, 'Weigh by'), typeSel),
      h('div', { class: 'grow' }, h('label', { for: 'capture-search' }, 'Search'), search),
      found),
    flameNote, h('div', { class: 'flame-wrap' }, flameBox));
  el.append(crumbs, h('div', { class: 'row page-head' }, title, badge), status,
    h('section', { class: 'card' }, h('h2', null, 'The call'), facts,
      h('div', { class: 'actions' }, download)),
    timelineCard, flameCard);

  let cap = null;
  let threshold = null;
  let fg = null;
  let drawn = false;
  let gone = false;
  let ro = null;

  const kv = (pairs) => h('dl', { class: 'kv' },
    pairs.map(([k, v]) => [h('dt', null, k), h('dd', null, v)]));

  function showFacts(task) {
    title.textContent = `Capture #${cap.id}: ${cap.interface}`;
    badge.replaceChildren(stateBadge(cap.state));
    crumbs.replaceChildren(h('a', { href: '#/tasks' }, '← Active analysis'), ' / ',
      h('a', { href: `#/tasks/${cap.task_id}?tab=threads` }, `Task #${cap.task_id}`));
    facts.replaceChildren(kv([
      ['Trace id', traceLink(cap.trace_id)],
      ['Task', h('a', { href: `#/tasks/${cap.task_id}?tab=threads` },
        `#${cap.task_id}${task ? ` (${task.interface}, threshold ${fmtMs(task.threshold_ms)}, ` +
          `every ${fmtMs(task.frequency_ms)})` : ''}`)],
      ['App', cap.app],
      ['Instance', `${cap.instance} (pid ${cap.pid}, agent ${cap.agent_id})`],
      ['Interface', cap.interface],
      ['Started', fmtClock(cap.start_ms)],
      ['Response code', cap.response_code ?? 'none set'],
      ['Address', cap.peer || 'none set'],
      ['Time consumed', fmtMs(cap.total_ms)],
      ['Snapshots', cap.state === 'complete' ? String(cap.snapshots) : 'uploading…'],
      ['Capture', `slot ${cap.slot} of the task, stored ${fmtTime(cap.created_ms)}`],
    ]));
  }

  async function drawFlame() {
    const n = (drawFlame.seq = (drawFlame.seq || 0) + 1);
    flameNote.replaceChildren();
    let answer;
    try {
      answer = await get(`/api/v1/captures/${id}/flamegraph${query({ type: typeSel.value })}`);
    } catch (err) {
      if (n === drawFlame.seq)
        flameNote.replaceChildren(notice(`The flame graph could not be read: ${err.message}`, 'error'));
      return;
    }
    if (n !== drawFlame.seq) return;
    flameBox.replaceChildren();
    fg = flameGraph(flameBox, answer);
    if (search.value) found.textContent = `${fg.search(search.value)} matching frames`;
  }

  function drawAll() {
    timelineCard.hidden = false;
    const snaps = cap.timeline || [];
    document.getElementById('capture-timeline-note').textContent = snaps.length
      ? `${snaps.length} snapshot${snaps.length === 1 ? '' : 's'} of thread ${snaps[0].thread || '?'} ` +
        `over the call's ${fmtMs(cap.total_ms)}, as offsets from its start. Hover a mark for ` +
        'the top of its stack; click it for the whole stack.'
      : 'The call ended before a snapshot was taken.';
    const pick = (s) => {
      stack.replaceChildren(stackList(s));
      for (const g of tlBox.querySelectorAll('.snap'))
        g.classList.toggle('picked', Number(g.dataset.snapshot) === s.snapshot);
    };
    const draw = () => drawTimeline(tlBox, tip, snaps, cap.total_ms, threshold, pick);
    draw();
    if (snaps.length) pick(snaps[0]);
    let w = tlBox.clientWidth;
    ro = new ResizeObserver(() => {
      if (Math.abs(tlBox.clientWidth - w) < 2) return;
      w = tlBox.clientWidth;
      const picked = tlBox.querySelector('.snap.picked');
      draw();
      if (picked) {
        const s = snaps.find((x) => x.snapshot === Number(picked.dataset.snapshot));
        if (s) pick(s);
      }
    });
    ro.observe(tlBox);
    if (snaps.length) {
      flameCard.hidden = false;
      drawFlame();
    }
  }

  typeSel.addEventListener('change', drawFlame);
  search.addEventListener('input', () => {
    if (!fg) return;
    const n = fg.search(search.value.trim());
    found.textContent = search.value.trim() ? `${n} matching frame${n === 1 ? '' : 's'}` : '';
  });
  download.addEventListener('click', async () => {
    try {
      const b = await blob(`/api/v1/captures/${id}/profile`);
      const a = h('a', { href: URL.createObjectURL(b), download: `capture-${id}.pb.gz` });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(a.href), 10000);
    } catch (err) {
      toast(`The profile could not be downloaded: ${err.message}`, 'error');
    }
  });

  let task = null;
  async function refresh() {
    if (gone || drawn) return;
    try {
      cap = await get(`/api/v1/captures/${id}`);
    } catch (err) {
      if (err instanceof ApiError && err.status === 404) {
        gone = true;
        status.replaceChildren(notice(`There is no capture #${id}: ${err.message}.`, 'error'));
        return;
      }
      status.replaceChildren(notice(`The capture could not be read: ${err.message}`, 'error'));
      return;
    }
    if (!task) {
      task = await get(`/api/v1/tasks/${cap.task_id}`).catch(() => null);
      threshold = task ? task.threshold_ms : null;
    }
    showFacts(task);
    if (cap.state === 'uploading') {
      status.replaceChildren(notice(`This capture is still uploading: the agent on ${cap.instance} ` +
        `(pid ${cap.pid}) claimed the call and is sending its snapshots. The page shows them ` +
        'as soon as they arrive.', 'warn'));
      return;
    }
    status.replaceChildren();
    download.hidden = !cap.snapshots;
    drawn = true;
    drawAll();
  }

  const stop = every(2000, refresh);
  return () => {
    stop();
    if (ro) ro.disconnect();
  };
}
