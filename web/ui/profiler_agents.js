// profiler_agents.js — the Agents card of the Configure Profiler page
// (SPEC A5): every agent with its status (running / stale / stopped), and
// for each app with no running agent a plain message that profiling
// cannot run there and when its agent was last seen; with no agent at
// all, how to start one.  The page feeds it each GET /api/v1/agents.
//
// agentsCard(ctx) → {el, agents(list), error(err)}.

import { runCommand } from './profiler_common.js';
import { fmtAgo, fmtNum, fmtPct, fmtTime, h, table } from './ui.js';

const ORDER = { running: 0, stale: 1, stopped: 2 };

function why(a) {
  if (a.status === 'stale')
    return `${a.instance} (pid ${a.pid}) stopped answering: no heartbeat for two intervals — ` +
      'the process may have died or lost its way to sonded';
  return `${a.instance} (pid ${a.pid}) stopped${a.stopped_ms ? ` at ${fmtTime(a.stopped_ms)}` : ''}`;
}

export function agentsCard() {
  const msgs = h('div', { id: 'agents-msgs' });
  let said = null;   // what msgs says, less the times "ago"

  const grid = table([
    {
      label: 'Status', value: (a) => ORDER[a.status] ?? 3,
      cell: (a) => h('span', { class: `state state-${a.status}`, dataset: { agent: a.id } }, a.status),
    },
    { label: 'App', value: (a) => a.app },
    { label: 'Instance', value: (a) => a.instance, cell: (a) => h('span', { title: a.cmdline || '' }, a.instance) },
    { label: 'PID', value: (a) => a.pid, cls: 'num' },
    { label: 'Last seen', value: (a) => a.last_seen_ms, cell: (a) => h('span', { title: fmtTime(a.last_seen_ms) }, fmtAgo(a.last_seen_ms)) },
    { label: 'CPU %', value: (a) => a.cpu_pct ?? -1, cell: (a) => fmtPct(a.cpu_pct), cls: 'num' },
    { label: 'Memory %', value: (a) => a.mem_pct ?? -1, cell: (a) => fmtPct(a.mem_pct), cls: 'num' },
    { label: 'Dropped uploads', value: (a) => a.dropped_uploads, cell: (a) => fmtNum(a.dropped_uploads), cls: 'num' },
    { label: 'Started', value: (a) => a.started_ms, cell: (a) => fmtTime(a.started_ms) },
    { label: 'Version', value: (a) => a.agent_version },
  ], [], { id: 'agents-table', empty: 'No agent has registered.' });

  const el = h('section', { class: 'card', id: 'agents' },
    h('h2', null, 'Agents'), msgs, h('div', { class: 'scroll' }, grid));

  return {
    el,
    agents(list) {
      const rows = list.slice().sort((a, b) => (ORDER[a.status] ?? 3) - (ORDER[b.status] ?? 3)
        || a.app.localeCompare(b.app) || b.last_seen_ms - a.last_seen_ms);
      grid.update(rows);
      const out = [];
      if (!list.length) {
        out.push(h('div', { class: 'notice warn', role: 'status', id: 'agents-none' },
          'No agent has registered with this server, so nothing can be profiled. ',
          'Start a service under the agent with an agent token ',
          h('span', { class: 'muted' }, '(sonde token create --role agent)'), ':',
          runCommand(null, true)));
      }
      const apps = [...new Set(list.map((a) => a.app))].sort();
      for (const app of apps) {
        const mine = rows.filter((a) => a.app === app);
        const up = mine.filter((a) => a.status === 'running').length;
        if (up) continue;
        const last = mine.reduce((x, a) => (a.last_seen_ms > x.last_seen_ms ? a : x));
        out.push(h('div', { class: 'notice warn', role: 'status', dataset: { app } },
          h('strong', null, `No running agent of app ${app}`),
          ': profiling cannot run there. Last seen ',
          h('span', { class: 'pf-ago', dataset: { ms: last.last_seen_ms } }, fmtAgo(last.last_seen_ms)),
          ` (${fmtTime(last.last_seen_ms)}): ${why(last)}. Restart it under the agent: `,
          runCommand(app)));
      }
      const up = list.filter((a) => a.status === 'running');
      if (up.length) {
        const byApp = [...new Set(up.map((a) => a.app))].sort()
          .map((a) => `${a} (${up.filter((x) => x.app === a).length})`);
        out.unshift(h('p', { class: 'pf-ok', id: 'agents-running' },
          `Running: ${byApp.join(', ')} — Profile Now and triggers can profile these.`));
      }
      // Rebuilt only when they say something new (else a selection, say
      // of the command to copy, would be lost every 2 s): the times
      // "… ago" are updated in place.
      const key = out.map((e) => e.textContent.replace(/Last seen .*? \(/, '')).join('\n');
      if (key !== said) {
        said = key;
        msgs.replaceChildren(...out);
      } else {
        for (const e of msgs.querySelectorAll('.pf-ago')) e.textContent = fmtAgo(Number(e.dataset.ms));
      }
    },
    error(err) {
      said = null;
      msgs.replaceChildren(h('div', { class: 'notice error', role: 'alert' },
        `The agents could not be read: ${err.message}`));
    },
  };
}
