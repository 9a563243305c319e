// session.js — one profiling session (#/sessions/ID?type=T&label=K:V…):
// its facts (who triggered it, app, instance, pid, when, how long, samples,
// traces, CPU and memory at the time, state), its flame graph (icicle:
// click to zoom, reset, search with a count of matches, hover for self and
// total), its top functions (sortable), the sample type to show (the types
// the profile has), filters by the profile's string labels (interface and
// thread as the agent writes them, any KEY:VALUE by hand), the pprof as a
// download, and speedscope on the same profile.
//
// A session still profiling, or finished but not uploaded, says so and the
// page looks again every 2 s until the profile is there.
//
// The profile's sample types and label values come from the profile
// itself: the page reads the pprof it fetches for Download (gunzip with
// DecompressionStream, a small protobuf walk) after the flame graph is
// drawn, so the first view never waits for it.
//
// Speedscope (served by sonded at /speedscope/) loads a profile from the
// URL in its #profileURL=… parameter.  The profile needs the token, which
// must not go into a URL: the page fetches it with the token, makes a
// blob: URL of the bytes (same origin, so speedscope's fetch can read it)
// and opens /speedscope/#profileURL=<blob URL>&title=session-ID.  The
// blob URL lives as long as this console tab (a reload of the speedscope
// tab still finds it); the last few are kept, older ones revoked.
//
// Type and labels live in the location (replaceState, no reload), so a
// link or a reload shows the same view.

import { ApiError, blob, get, query } from '../api.js';
import { fmtValue, fmtShare, flameGraph } from '../flame.js';
import {
  every, fieldError, fmtNum, fmtPct, fmtSeconds, fmtTime, h, notice, table, toast,
} from '../ui.js';

const LABEL_MAX = 511;
const PICK_KEYS = ['interface', 'thread', 'state']; // offered as lists when the profile has them
const KEEP_URLS = 8;
const READ_MAX = 8 << 20; // bytes: larger profiles are not fetched just for their labels
const blobUrls = new Map(); // session id → blob: URL kept for speedscope tabs

// ---- pprof: sample types and string labels ---------------------------

async function gunzip(b) {
  const head = new Uint8Array(await b.slice(0, 2).arrayBuffer());
  if (head[0] !== 0x1f || head[1] !== 0x8b) return new Uint8Array(await b.arrayBuffer());
  const stream = b.stream().pipeThrough(new DecompressionStream('gzip'));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

// A protobuf reader over buf[pos..end).
function reader(buf, pos = 0, end = buf.length) {
  return {
    more: () => pos < end,
    varint() {
      let v = 0;
      let mul = 1;
      for (;;) {
        if (pos >= end) throw new Error('truncated varint');
        const b = buf[pos++];
        v += (b & 0x7f) * mul;
        if (b < 0x80) return v;
        mul *= 128;
      }
    },
    sub() {
      const n = this.varint();
      if (pos + n > end) throw new Error('truncated field');
      const r = reader(buf, pos, pos + n);
      pos += n;
      return r;
    },
    bytes() {
      const n = this.varint();
      const s = buf.subarray(pos, pos + n);
      pos += n;
      return s;
    },
    skip(wire) {
      if (wire === 0) this.varint();
      else if (wire === 1) pos += 8;
      else if (wire === 2) {
        const n = this.varint(); // read before pos is (pos += … would use the old pos)
        pos += n;
      }
      else if (wire === 5) pos += 4;
      else throw new Error(`wire type ${wire}`);
    },
    // Repeated varints, packed or not.
    ints(wire, out) {
      if (wire === 2) {
        const r = this.sub();
        while (r.more()) out.push(r.varint());
      } else {
        out.push(this.varint());
      }
    },
  };
}

// {types: [{type, unit}], defaultType, labels: Map key → Map value → weight}
// where weight counts samples (the first count-typed value, else 1 each).
export function readProfile(buf) {
  const r = reader(buf);
  const typeIdx = [];
  const samples = []; // [values, [[key, str]...]]
  const strings = [];
  let defaultIdx = 0;
  while (r.more()) {
    const tag = r.varint();
    const field = Math.floor(tag / 8);
    const wire = tag & 7;
    if (field === 1 && wire === 2) {
      const t = r.sub();
      const vt = [0, 0];
      while (t.more()) {
        const tg = t.varint();
        if ((tg >> 3) === 1 || (tg >> 3) === 2) vt[(tg >> 3) - 1] = t.varint();
        else t.skip(tg & 7);
      }
      typeIdx.push(vt);
    } else if (field === 2 && wire === 2) {
      const s = r.sub();
      const values = [];
      const labels = [];
      while (s.more()) {
        const tg = s.varint();
        const f = tg >> 3;
        if (f === 2) s.ints(tg & 7, values);
        else if (f === 3 && (tg & 7) === 2) {
          const l = s.sub();
          let key = 0;
          let str = 0;
          while (l.more()) {
            const lt = l.varint();
            if ((lt >> 3) === 1) key = l.varint();
            else if ((lt >> 3) === 2) str = l.varint();
            else l.skip(lt & 7);
          }
          if (key && str) labels.push([key, str]);
        } else s.skip(tg & 7);
      }
      samples.push([values, labels]);
    } else if (field === 6 && wire === 2) {
      strings.push(new TextDecoder().decode(r.bytes()));
    } else if (field === 14 && wire === 0) {
      defaultIdx = r.varint();
    } else {
      r.skip(wire);
    }
  }
  const str = (i) => strings[i] || '';
  const types = typeIdx.map(([t, u]) => ({ type: str(t), unit: str(u) }));
  const countCol = types.findIndex((t) => t.unit === 'count');
  const labels = new Map();
  for (const [values, ls] of samples) {
    const wgt = countCol >= 0 ? (values[countCol] || 0) : 1;
    for (const [k, s] of ls) {
      const key = str(k);
      if (!labels.has(key)) labels.set(key, new Map());
      const m = labels.get(key);
      m.set(str(s), (m.get(str(s)) || 0) + wgt);
    }
  }
  return { types, defaultType: defaultIdx ? str(defaultIdx) : null, labels };
}

// ---- the page ---------------------------------------------------------

function fact(dl, name, value) {
  dl.append(h('dt', null, name), h('dd', null, value));
}

function stateText(s) {
  if (s.state === 'failed') return ['This session failed: the agent sent no profile.', 'error'];
  if (s.has_profile) return null;
  const end = s.start_ms + s.duration_s * 1000;
  if (s.state === 'running' && Date.now() < end) {
    const left = Math.max(1, Math.round((end - Date.now()) / 1000));
    return [`Still profiling: about ${fmtSeconds(left)} left. The flame graph appears here ` +
      'when the agent has uploaded the profile.', 'info'];
  }
  return ['Profiling has ended; the profile is not uploaded yet. This page looks again ' +
    'every 2 s.', 'warn'];
}

export async function render(el, ctx) {
  const id = ctx.params[0];
  const base = `/api/v1/sessions/${id}`;
  const stops = [];
  let fg = null;
  let left = false;
  let profileBlob = null;
  let profileInfo = null;

  // View state, kept in the location.
  let type = ctx.query.get('type') || '';
  let labels = ctx.query.getAll('label').filter(Boolean);

  const title = h('h1', null, `Session ${id}`);
  const badge = h('span', { class: 'state', id: 'session-state' });
  const facts = h('dl', { class: 'kv session-facts', id: 'session-facts' });
  const status = h('div', { id: 'session-status' });
  const btnDownload = h('button', { id: 'download', type: 'button', disabled: true }, 'Download pprof');
  const btnSpeedscope = h('button', {
    id: 'speedscope', type: 'button', class: 'secondary', disabled: true,
  }, 'Open in speedscope');
  const linkCompare = h('a', { id: 'compare', class: 'button-link', href: `#/views?mode=diff&cmp.session=${id}` },
    'Compare with…');
  const linkMerged = h('a', { id: 'merged', class: 'button-link', href: '#/views' }, 'Merged view of this app');
  const header = h('section', { class: 'card session-head' },
    h('div', { class: 'title-row' }, title, badge),
    facts, status,
    h('div', { class: 'actions' }, btnDownload, btnSpeedscope, linkCompare, linkMerged));

  const typeSel = h('select', { id: 'type', name: 'type' });
  const labelBox = h('div', { class: 'label-picks row' });
  const labelInput = h('input', {
    id: 'label', name: 'label', placeholder: 'KEY:VALUE, e.g. thread:worker-1', size: 28,
    autocomplete: 'off', spellcheck: false,
  });
  const btnApply = h('button', { type: 'submit', id: 'apply', class: 'secondary' }, 'Apply');
  const labelChips = h('div', { class: 'chips', id: 'label-chips' });
  const searchInput = h('input', {
    id: 'search', type: 'search', placeholder: 'Search functions', autocomplete: 'off', size: 22,
  });
  const searchCount = h('span', { id: 'search-count', class: 'muted', 'aria-live': 'polite' });
  const btnReset = h('button', { id: 'reset-zoom', type: 'button', class: 'secondary', disabled: true },
    'Reset zoom');
  const controls = h('form', { class: 'card view-controls', novalidate: true },
    h('div', { class: 'row' },
      h('div', null, h('label', { for: 'type' }, 'Type'), typeSel),
      labelBox,
      h('div', null, h('label', { for: 'label' }, 'Filter by label'), labelInput),
      h('div', null, btnApply)),
    labelChips);
  const details = h('div', { class: 'flame-details', id: 'flame-details' });
  const flameBox = h('div', { id: 'flame', class: 'flame-box' });
  const totalLine = h('span', { class: 'muted', id: 'flame-total' });
  const viewStatus = h('div', { id: 'view-status' });
  const flameCard = h('section', { class: 'card flame-card' },
    h('div', { class: 'row flame-bar' },
      h('h2', null, 'Flame graph'), totalLine,
      h('div', { class: 'search-box' }, searchInput, searchCount),
      btnReset),
    viewStatus, details, flameBox);
  const topRows = [];
  const topTable = table([
    { label: 'Function', value: (r) => r.name, cls: 'fn' },
    { label: 'Self', value: (r) => r.self, cell: (r) => fmtValue(r.self, r.unit), cls: 'num' },
    { label: 'Self %', value: (r) => r.self, cell: (r) => fmtShare(r.self, r.sum), cls: 'num' },
    { label: 'Total', value: (r) => r.total, cell: (r) => fmtValue(r.total, r.unit), cls: 'num' },
    { label: 'Total %', value: (r) => r.total, cell: (r) => fmtShare(r.total, r.sum), cls: 'num' },
  ], topRows, {
    id: 'top', sort: { key: 1, dir: -1 }, empty: 'No samples.',
    onrow: (r) => { searchInput.value = r.name; doSearch(); flameCard.scrollIntoView({ block: 'start' }); },
  });
  const topCard = h('section', { class: 'card' },
    h('h2', null, 'Top functions'),
    h('p', { class: 'muted small' }, 'Self: time in the function itself; total: with what it calls. ' +
      'Click a row to find it in the flame graph.'),
    h('div', { class: 'scroll' }, topTable));
  const body = h('div', { class: 'session-views', hidden: true }, controls, flameCard, topCard);
  el.append(header, body);

  // ---- facts

  let session = null;
  try {
    session = await get(base);
  } catch (e) {
    el.replaceChildren(h('section', { class: 'card' }, h('h1', null, `Session ${id}`),
      notice(e.status === 404 ? `${e.message}: it may have been deleted, or the link is wrong.`
        : `The session could not be loaded: ${e.message}`, 'error'),
      h('p', null, h('a', { href: '#/profiler' }, 'Recent profiling sessions'))));
    return () => {};
  }

  function showFacts(s) {
    badge.textContent = s.state;
    badge.className = `state state-${s.state}`;
    title.textContent = `Session ${s.id} · ${s.app}`;
    facts.replaceChildren();
    fact(facts, 'Triggered by', s.triggered_by + (s.request_id ? ` (request ${s.request_id})` : ''));
    fact(facts, 'App', s.app);
    fact(facts, 'Instance', s.instance);
    fact(facts, 'PID', String(s.pid));
    fact(facts, 'Start', fmtTime(s.start_ms));
    fact(facts, 'Duration', fmtSeconds(s.duration_s));
    fact(facts, 'Samples', fmtNum(s.samples));
    fact(facts, 'Traces', fmtNum(s.traces));
    fact(facts, 'CPU', fmtPct(s.cpu_pct));
    fact(facts, 'Memory', fmtPct(s.mem_pct));
    fact(facts, 'Profile', s.has_profile
      ? `${(s.profile_types || []).join(', ') || '-'} · ${fmtNum(s.profile_bytes)} bytes` : 'not uploaded yet');
    const st = stateText(s);
    status.replaceChildren(...(st ? [notice(st[0], st[1])] : []));
    linkMerged.href = `#/views${query({ app: s.app, range: '24h' })}`;
    const ok = s.has_profile;
    btnDownload.disabled = !ok;
    btnSpeedscope.disabled = !ok;
    btnDownload.title = ok ? '' : 'No profile yet';
    btnSpeedscope.title = ok ? '' : 'No profile yet';
  }
  showFacts(session);

  // The previous session of the same app and instance, for "Compare with…".
  get(`/api/v1/sessions${query({ app: session.app, instance: session.instance, to: session.start_ms, limit: 10 })}`)
    .then((r) => {
      const prev = r.sessions.find((x) => x.id !== session.id && x.has_profile);
      if (prev && !left) {
        linkCompare.href = `#/views${query({ mode: 'diff', 'base.session': prev.id, 'cmp.session': session.id })}`;
        linkCompare.title = `With session ${prev.id} of ${fmtTime(prev.start_ms)} as the base`;
      }
    })
    .catch(() => {});

  // ---- the views

  function setLocation() {
    const q = query({ type, label: labels });
    history.replaceState(null, '', `#/sessions/${id}${q}`);
  }

  function typeOptions(types, current) {
    const list = types.slice();
    if (current && !list.includes(current)) list.push(current);
    typeSel.replaceChildren(...list.map((t) => h('option', { value: t }, t)));
    typeSel.value = current || list[0] || '';
  }
  // Until the profile is read: the session's types and "samples".
  typeOptions([...(session.profile_types || []), 'samples'], type);

  function showChips() {
    labelChips.replaceChildren(...labels.map((l) => h('span', { class: 'chip' }, l,
      h('button', {
        type: 'button', class: 'link', 'aria-label': `Remove filter ${l}`, title: 'Remove this filter',
        onclick: () => { labels = labels.filter((x) => x !== l); reload(); },
      }, '×'))));
  }

  function labelPicks(info) {
    const selects = [];
    for (const key of PICK_KEYS) {
      const m = info.labels.get(key);
      if (!m || !m.size) continue;
      const vals = [...m.entries()].sort((a, b) => b[1] - a[1]).slice(0, 50);
      const current = labels.find((l) => l.startsWith(`${key}:`));
      const known = current && vals.some(([v]) => `${key}:${v}` === current);
      const sel = h('select', { id: `label-${key}`, name: key },
        h('option', { value: '' }, `any ${key}`),
        vals.map(([v, n]) => h('option', { value: `${key}:${v}` }, `${v} (${fmtNum(n)} samples)`)),
        current && !known ? h('option', { value: current }, `${current.slice(key.length + 1)} (no samples)`) : null);
      sel.value = current || '';
      sel.addEventListener('change', () => {
        labels = labels.filter((l) => !l.startsWith(`${key}:`));
        if (sel.value) labels.push(sel.value);
        reload();
      });
      selects.push(h('div', null, h('label', { for: `label-${key}` }, key === 'interface'
        ? 'Endpoint (interface)' : key[0].toUpperCase() + key.slice(1)), sel));
    }
    labelBox.replaceChildren(...selects);
  }

  let viewSeq = 0;
  async function loadViews() {
    const seq = ++viewSeq;
    const q = query({ type, label: labels });
    fieldError(typeSel, null);
    fieldError(labelInput, null);
    viewStatus.replaceChildren(h('p', { class: 'loading' }, 'Loading the flame graph…'));
    let flame;
    let top;
    try {
      [flame, top] = await Promise.all([
        get(`${base}/flamegraph${q}`),
        get(`${base}/top${query({ type, label: labels, limit: 500 })}`),
      ]);
    } catch (e) {
      if (seq !== viewSeq || left) return;
      const msg = e instanceof ApiError ? e.message : String(e);
      if (fg) { fg.destroy(); fg = null; }
      flameBox.replaceChildren();
      totalLine.textContent = '';
      topTable.update([]);
      if (/'type'/.test(msg)) fieldError(typeSel, msg);
      else if (/'label'/.test(msg)) fieldError(labelInput, msg);
      viewStatus.replaceChildren(notice(msg, 'error'));
      return;
    }
    if (seq !== viewSeq || left) return;
    performance.mark('sonde:views-answered'); // read by bench/console_bench.mjs
    viewStatus.replaceChildren();
    if (!type) typeOptions([...typeSel.options].map((o) => o.value), flame.type);
    if (fg) fg.destroy();
    if (!flame.total) {
      flameBox.replaceChildren();
      viewStatus.replaceChildren(notice(labels.length
        ? 'No samples carry these labels. Remove a filter to see more.'
        : 'This profile has no samples of this type.', 'warn'));
      fg = null;
    } else {
      fg = flameGraph(flameBox, flame, {
        details,
        onzoom: (d) => { btnReset.disabled = !d; },
      });
    }
    performance.mark('sonde:flame-built');
    btnReset.disabled = true;
    totalLine.textContent = `${flame.type}: ${fmtValue(flame.total, flame.unit)} in all`;
    topTable.update(top.functions.map((f) => ({ ...f, unit: top.unit, sum: top.total })));
    performance.mark('sonde:top-built');
    if (searchInput.value) doSearch();
    else searchCount.textContent = '';
  }

  function reload() {
    setLocation();
    showChips();
    if (profileInfo) labelPicks(profileInfo);
    return loadViews();
  }

  async function profile() {
    if (!profileBlob) profileBlob = await blob(`${base}/profile`);
    return profileBlob;
  }

  async function readLabels() {
    if (session.profile_bytes > READ_MAX) return; // not worth the download: KEY:VALUE by hand
    try {
      profileInfo = readProfile(await gunzip(await profile()));
    } catch (e) {
      console.warn('the profile could not be read for its types and labels', e);
      return;
    }
    if (left) return;
    if (profileInfo.types.length)
      typeOptions(profileInfo.types.map((t) => t.type), typeSel.value);
    labelPicks(profileInfo);
    const keys = [...profileInfo.labels.keys()].filter((k) => k !== 'trace_id');
    labelInput.placeholder = keys.length ? `KEY:VALUE (keys: ${keys.join(', ')})` : 'KEY:VALUE';
  }

  function doSearch() {
    if (!fg) return;
    const text = searchInput.value.trim();
    const n = fg.search(text);
    searchCount.textContent = text
      ? `${n} ${n === 1 ? 'frame matches' : 'frames match'}${n ? ` · ${fmtShare(fg.searchSum, fg.total)} of total` : ''}`
      : '';
    searchCount.dataset.count = String(n);
  }

  searchInput.addEventListener('input', doSearch);
  btnReset.addEventListener('click', () => { if (fg) fg.reset(); btnReset.disabled = true; });
  typeSel.addEventListener('change', () => { type = typeSel.value; reload(); });
  controls.addEventListener('submit', (e) => {
    e.preventDefault();
    const v = labelInput.value.trim();
    fieldError(labelInput, null);
    if (!v) return;
    const i = v.indexOf(':');
    if (i <= 0 || i === v.length - 1) {
      fieldError(labelInput, 'A label filter is KEY:VALUE, e.g. interface:GET /cpu or thread:worker-1.');
      return;
    }
    if (new TextEncoder().encode(v).length > LABEL_MAX) {
      fieldError(labelInput, `A label filter is at most ${LABEL_MAX} bytes.`);
      return;
    }
    if (labels.length >= 16) {
      fieldError(labelInput, 'At most 16 label filters.');
      return;
    }
    if (!labels.includes(v)) labels.push(v);
    labelInput.value = '';
    reload();
  });

  btnDownload.addEventListener('click', async () => {
    btnDownload.disabled = true;
    try {
      const b = await profile();
      const url = URL.createObjectURL(b);
      const a = h('a', { href: url, download: `session-${id}.pb.gz`, hidden: true });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 60000);
    } catch (e) {
      toast(`Download failed: ${e.message}`, 'error');
    } finally {
      btnDownload.disabled = false;
    }
  });

  btnSpeedscope.addEventListener('click', async () => {
    // Open the tab now, in the click (a pop-up blocker allows that), and
    // point it at speedscope when the profile is here.
    const win = window.open('', '_blank');
    if (!win) {
      toast('The browser blocked the new tab: allow pop-ups for this site.', 'error');
      return;
    }
    try {
      win.document.title = `session-${id} — speedscope`;
      win.document.body.textContent = 'Loading the profile…';
    } catch (_) { /* not ready: speedscope replaces it anyway */ }
    try {
      let url = blobUrls.get(id);
      if (!url) {
        url = URL.createObjectURL(await profile());
        blobUrls.set(id, url);
        while (blobUrls.size > KEEP_URLS) {
          const [oldId, old] = blobUrls.entries().next().value;
          URL.revokeObjectURL(old);
          blobUrls.delete(oldId);
        }
      }
      win.location.href = `/speedscope/#profileURL=${encodeURIComponent(url)}` +
        `&title=${encodeURIComponent(`session-${id}`)}`;
    } catch (e) {
      win.close();
      toast(`Speedscope could not be opened: ${e.message}`, 'error');
    }
  });

  // ---- until the profile is there, look again

  let started = false;
  function start() {
    if (started) return;
    started = true;
    body.hidden = false;
    showChips();
    loadViews().then(() => { if (!left) readLabels(); });
  }

  if (session.has_profile) {
    start();
  } else if (session.state !== 'failed') {
    const stop = every(2000, async () => {
      const s = await get(base);
      if (left) return;
      session = s;
      showFacts(s);
      if (s.has_profile || s.state === 'failed') {
        stop();
        if (s.has_profile) start();
      }
    });
    stops.push(stop);
  }

  return () => {
    left = true;
    for (const s of stops) s();
    if (fg) fg.destroy();
  };
}
