// flame.js — the console's flame graph (an icicle: root on top), drawn by
// d3-flame-graph (window.flamegraph, loaded by index.html with d3) from
// the API's flame graph answer ({type, unit, total, tree: {name, value,
// self, children}}, docs/api.md "Views of one session").
//
//   const fg = flameGraph(container, answer, options)
//   fg.search(text) → number of frames whose name contains text (highlighted)
//   fg.reset()      → zoom back out
//
// Click a frame to zoom into it; hover shows its self and total.

export function fmtValue(v, unit) {
  if (unit === 'nanoseconds') {
    if (v >= 1e9) return `${(v / 1e9).toFixed(2)} s`;
    if (v >= 1e6) return `${(v / 1e6).toFixed(1)} ms`;
    return `${(v / 1e3).toFixed(0)} µs`;
  }
  return `${Number(v).toLocaleString('en-US')}${unit && unit !== 'count' ? ` ${unit}` : ''}`;
}

export function flameGraph(container, answer, { height = null } = {}) {
  const total = answer.total || answer.tree.value || 1;
  const width = Math.max(320, container.clientWidth || 960);
  const chart = window.flamegraph.flamegraph()
    .width(width)
    .cellHeight(18)
    .minFrameSize(1)
    .transitionDuration(200)
    .sort(false)
    .title('')
    .selfValue(false)
    .setDetailsElement(null)
    .label((d) => {
      const self = d.data.self || 0;
      return `${d.data.name}\ntotal ${fmtValue(d.value, answer.unit)} ` +
        `(${((d.value / total) * 100).toFixed(2)} %), self ${fmtValue(self, answer.unit)} ` +
        `(${((self / total) * 100).toFixed(2)} %)`;
    });
  if (height) chart.height(height);
  container.classList.add('flame');
  window.d3.select(container).datum(answer.tree).call(chart);
  return {
    chart,
    search(text) {
      if (!text) {
        chart.clear();
        return 0;
      }
      let n = 0;
      chart.search(text);
      window.d3.select(container).selectAll('g').each((d) => {
        if (d && d.highlight) n++;
      });
      return n;
    },
    reset() {
      chart.resetZoom();
    },
  };
}
