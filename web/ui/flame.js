// flame.js — the console's flame graphs (icicles: root on top), drawn by
// d3-flame-graph (window.flamegraph, loaded by index.html with d3) from
// the API's answers (docs/api.md "Views of one session", "Merged and diff
// views").
//
//   const fg = flameGraph(container, answer, options)
//       answer: {type, unit, total, tree: {name, value, self, children}}
//   const fg = diffFlameGraph(container, diffAnswer, {normalize, ...options})
//       diffAnswer: {unit, base_total, comparison_total, tree: {name, base,
//       comparison, delta, base_self, comparison_self, children}}; frames
//       are as wide as base + comparison (so a frame only one side has is
//       still seen) and coloured by how much more (red) or less (blue) the
//       comparison spends in them; normalize compares shares of each
//       side's total instead of raw values (two selections of different
//       lengths).
//
//   fg.search(text) → how many frames' names contain text (case-insensitive,
//                     plain text, not a pattern); they are highlighted;
//                     fg.searchSum then holds their value (outermost
//                     matches only), fg.total the root's.  "" clears.
//   fg.reset()      → zoom back out to the root
//   fg.zoomed       → the frame zoomed into (null at the root)
//   fg.frames       → frames in the tree; fg.drawn → frames drawn (wider
//                     than 1 px; the rest are too thin to see)
//   fg.destroy()    → stop following the container's width, remove the svg
//
// Options: details (an element that shows the hovered frame: name, total
// and self as value and %; without it each frame has that as its <title>
// tooltip), onzoom(frame or null), height.  Click a frame to zoom into it.
// The graph follows the container's width (scaled for a small change,
// redrawn for a real one); drawing again in the same container replaces
// the last graph.  Built for large graphs: the first drawing is complete
// at once (no transition), frames have no <title> when details is given,
// and only frames wide enough for a label get one (see relabel below);
// bench/console_bench.mjs times 10,000 frames.

const d3 = () => window.d3;
const interrupt = (node) => window.d3.interrupt(node);
const SVG_NS = 'http://www.w3.org/2000/svg';
const XHTML_NS = 'http://www.w3.org/1999/xhtml';
const LABEL_MIN = 35;    // px: d3-flame-graph shows a frame's label from this width
const RESIZE_SLACK = 40; // px: a change of width up to this scales, more redraws

export function fmtValue(v, unit) {
  if (!v) return '0';
  if (unit === 'nanoseconds') {
    const a = Math.abs(v);
    if (a >= 1e9) return `${(v / 1e9).toFixed(2)} s`;
    if (a >= 1e6) return `${(v / 1e6).toFixed(1)} ms`;
    return `${(v / 1e3).toFixed(0)} µs`;
  }
  if (unit === 'bytes') {
    const a = Math.abs(v);
    if (a >= 1 << 30) return `${(v / (1 << 30)).toFixed(2)} GiB`;
    if (a >= 1 << 20) return `${(v / (1 << 20)).toFixed(1)} MiB`;
    if (a >= 1 << 10) return `${(v / (1 << 10)).toFixed(1)} KiB`;
    return `${v} B`;
  }
  const n = Number.isInteger(v) ? v : Number(v.toPrecision(4));
  return `${n.toLocaleString('en-US')}${unit && unit !== 'count' ? ` ${unit}` : ' samples'}`;
}

export function fmtShare(v, total) {
  return `${((total ? v / total : 0) * 100).toFixed(2)} %`;
}

function countNodes(tree) {
  let n = 0;
  const stack = [tree];
  while (stack.length) {
    const t = stack.pop();
    n++;
    if (t.children) for (const c of t.children) stack.push(c);
  }
  return n;
}

// The shared part: a chart on container with label(d) as hover text and
// an optional colour mapper.
function draw(container, tree, { total, label, color, details, onzoom, height }) {
  // The UMD build sets window.flamegraph = {default: flamegraph, …}.
  const make = window.flamegraph.default || window.flamegraph.flamegraph;
  let width = Math.max(280, Math.floor(container.clientWidth || 960));
  const fg = {
    chart: null, zoomed: null, searchSum: 0, total, frames: countNodes(tree), drawn: 0,
  };
  const chart = make()
    .width(width)
    .cellHeight(18)
    .minFrameSize(1)
    .transitionDuration(0)
    .inverted(true)
    .sort(false)
    .title('')
    .selfValue(false)
    .setDetailsElement(details || null)
    .setDetailsHandler((text) => {
      if (details) details.textContent = text || details.dataset.idle || '';
    })
    .setSearchHandler(() => {})
    .setSearchMatch((d, term) => !!term &&
      String(d.data.name).toLowerCase().includes(term.toLowerCase()))
    .label(label)
    .onClick((d) => {
      fg.zoomed = d.parent ? d : null;
      if (onzoom) onzoom(fg.zoomed);
    });
  if (details) {
    // The hover text goes to details (detailsHandler): a tooltip that does
    // nothing spares the chart a <title> per frame (10,000 frames: 10,000
    // elements and labels made up front).
    const tip = () => {};
    tip.show = () => {};
    tip.hide = () => {};
    chart.tooltip(tip);
  }
  if (color) chart.setColorMapper(color);
  if (height) chart.height(height);
  fg.chart = chart;
  // A graph drawn again in the same container replaces the last one (which
  // stops following the width).
  if (container.sondeFlame) container.sondeFlame.destroy();
  container.sondeFlame = fg;
  container.classList.add('flame');
  container.replaceChildren();
  const sel = d3().select(container);
  sel.datum(tree).call(chart);
  chart.transitionDuration(200);
  const svg = container.querySelector('svg');

  // Labels only where they fit.  d3-flame-graph gives every frame a
  // <foreignObject><div> label and hides the div below 35 px; with 10,000
  // frames those are 20,000 elements to style and lay out for nothing.  So
  // after each drawing the frames too narrow lose theirs, and frames that a
  // zoom made wide enough get one (the chart's later updates then manage
  // it as its own: it selects g > foreignObject > div).  The first drawing
  // also sets widths and names at once instead of a transition later, so
  // the first paint is the whole graph.
  const relabel = (first) => {
    for (const g of svg.querySelectorAll('g.frame')) {
      const w = Number(g.getAttribute('width')) || 0;
      let fo = g.lastElementChild;
      if (fo && fo.localName !== 'foreignObject') fo = null;
      if (w < LABEL_MIN) {
        if (fo) {
          if (first) interrupt(fo.firstChild);
          fo.remove();
        }
        fo = null;
      } else if (!fo) {
        fo = document.createElementNS(SVG_NS, 'foreignObject');
        fo.setAttribute('height', '18');
        fo.style.pointerEvents = 'none';
        const div = document.createElementNS(XHTML_NS, 'div');
        div.className = 'd3-flame-graph-label';
        div.style.display = 'block';
        div.textContent = g.__data__ ? g.__data__.data.name : '';
        fo.append(div);
        g.append(fo);
      }
      if (fo) fo.setAttribute('width', String(w));
      if (first) {
        // What the chart's zero-length transitions would do a frame later.
        const rect = g.firstElementChild;
        interrupt(rect);
        rect.setAttribute('width', String(w));
        if (fo && g.__data__) {
          interrupt(fo.firstChild);
          fo.firstChild.textContent = g.__data__.data.name;
        }
      }
    }
  };
  // The svg scales to the container (viewBox): a small change of width (a
  // scroll bar coming) costs no redrawing; a real one redraws.
  const fit = () => svg.setAttribute('viewBox', `0 0 ${chart.width()} ${svg.getAttribute('height')}`);
  const count = () => {
    fg.drawn = svg.querySelectorAll('g.frame').length;
    container.dataset.frames = String(fg.frames);
    container.dataset.drawn = String(fg.drawn);
  };
  relabel(true);
  fit();
  count();
  // After the chart's own updates (zoom: its click handler runs after).
  const onClick = chart.onClick();
  chart.onClick((d) => {
    relabel(false);
    count();
    onClick(d);
  });

  let ro = null;
  let timer = null;
  if (window.ResizeObserver) {
    ro = new ResizeObserver(() => {
      clearTimeout(timer);
      timer = setTimeout(() => {
        if (container.sondeFlame !== fg || !container.isConnected) {
          ro.disconnect(); // replaced, or its page left
          return;
        }
        const w = Math.max(280, Math.floor(container.clientWidth));
        if (!w || Math.abs(w - width) <= RESIZE_SLACK) return;
        width = w;
        chart.width(w).transitionDuration(0);
        chart.update();
        chart.transitionDuration(200);
        relabel(true);
        fit();
        count();
      }, 150);
    });
    ro.observe(container);
  }

  fg.search = (text) => {
    const root = sel.datum();
    if (!text) {
      chart.clear();
      fg.searchSum = 0;
      return 0;
    }
    chart.search(text);
    let n = 0;
    let sum = 0;
    const walk = (d, inside) => {
      const hit = !!d.highlight;
      if (hit) {
        n++;
        if (!inside) sum += d.data.value;
      }
      if (d.children) for (const c of d.children) walk(c, inside || hit);
    };
    walk(root, false);
    fg.searchSum = sum;
    count();
    return n;
  };
  fg.reset = () => {
    chart.resetZoom();
    fg.zoomed = null;
    if (onzoom) onzoom(null);
    count();
  };
  fg.destroy = () => {
    clearTimeout(timer);
    if (ro) ro.disconnect();
    if (container.sondeFlame === fg) {
      delete container.sondeFlame;
      chart.destroy();
    }
  };
  return fg;
}

export function flameGraph(container, answer, { details = null, onzoom = null, height = null } = {}) {
  const total = answer.total || answer.tree.value || 1;
  const label = (d) => {
    const self = d.data.self || 0;
    return `${d.data.name}\ntotal ${fmtValue(d.data.value, answer.unit)} (${fmtShare(d.data.value, total)})` +
      ` · self ${fmtValue(self, answer.unit)} (${fmtShare(self, total)})`;
  };
  if (details) details.dataset.idle = 'Hover a frame for its total and self; click to zoom.';
  const fg = draw(container, answer.tree, { total, label, details, onzoom, height });
  if (details) details.textContent = details.dataset.idle;
  return fg;
}

// Diff colours: red for more in the comparison, blue for less, grey for
// the same; the stronger, the larger the change relative to the frame.
export const DIFF_MORE = [197, 48, 48];
export const DIFF_LESS = [43, 108, 176];
const DIFF_SAME = [214, 218, 226];

export function diffColor(ratio) {
  const r = Math.max(-1, Math.min(1, ratio || 0));
  const to = r > 0 ? DIFF_MORE : DIFF_LESS;
  const k = Math.sqrt(Math.abs(r)); // small changes still show
  const c = DIFF_SAME.map((s, i) => Math.round(s + (to[i] - s) * k));
  return `rgb(${c[0]},${c[1]},${c[2]})`;
}

// The diff tree in the chart's shape: value (width) = base + comparison
// (as shares of each total when normalize), sideBase/sideCmp the two sides and the
// change in the same measure.
function diffTree(tree, bt, ct, normalize) {
  const conv = (t) => {
    const b = normalize ? (bt ? t.base / bt : 0) : t.base;
    const c = normalize ? (ct ? t.comparison / ct : 0) : t.comparison;
    const bs = normalize ? (bt ? t.base_self / bt : 0) : t.base_self;
    const cs = normalize ? (ct ? t.comparison_self / ct : 0) : t.comparison_self;
    // (d3-flame-graph reads n, v, c, d, l as short names: none used here.)
    return {
      name: t.name, value: b + c, sideBase: b, sideCmp: c, selfBase: bs, selfCmp: cs,
      change: c - b, raw: t, children: (t.children || []).map(conv),
    };
  };
  return conv(tree);
}

export function diffFlameGraph(container, answer, {
  normalize = false, details = null, onzoom = null, height = null,
} = {}) {
  const bt = answer.base_total || 0;
  const ct = answer.comparison_total || 0;
  const tree = diffTree(answer.tree, bt, ct, normalize);
  const unit = answer.unit;
  const label = (d) => {
    const r = d.data.raw;
    const sign = r.delta > 0 ? '+' : '';
    const shares = `base ${fmtShare(r.base, bt)} → comparison ${fmtShare(r.comparison, ct)}`;
    return `${r.name}\nbase ${fmtValue(r.base, unit)} → comparison ${fmtValue(r.comparison, unit)}` +
      ` (${sign}${fmtValue(r.delta, unit)}) · ${shares}` +
      ` · self ${fmtValue(r.base_self, unit)} → ${fmtValue(r.comparison_self, unit)}`;
  };
  const color = (d, original) => {
    if (d.highlight) return original;
    const m = Math.max(d.data.sideBase, d.data.sideCmp);
    return diffColor(m ? d.data.change / m : 0);
  };
  if (details) details.dataset.idle = 'Hover a frame for base, comparison and change; click to zoom.';
  const fg = draw(container, tree, { total: tree.value, label, color, details, onzoom, height });
  if (details) details.textContent = details.dataset.idle;
  return fg;
}

// A legend for diff colours: less … same … more.
export function diffLegend(h) {
  const stops = [-1, -0.5, -0.15, 0, 0.15, 0.5, 1].map((r) => diffColor(r));
  return h('div', { class: 'diff-legend', role: 'note', 'aria-label': 'Colour legend' },
    h('span', { class: 'legend-label' }, 'less in comparison'),
    h('span', {
      class: 'legend-bar',
      style: `background: linear-gradient(to right, ${stops.join(', ')})`,
    }),
    h('span', { class: 'legend-label' }, 'more in comparison'),
    h('span', { class: 'legend-note muted' }, 'grey: about the same; width: base + comparison'));
}
