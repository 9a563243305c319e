// profiler.js — Configure Profiler (#/profiler, the console's home),
// after the settings pane of SPEC A: Profile Now, recent profiling
// sessions, the trigger and default-sampling settings, and the agents.
// Each part lives in its own module (web/ui/profiler_*.js); this page lays
// them out and polls GET /api/v1/agents every 2 s for all of them (the
// apps to choose from, whether an app has a running agent).  The sessions
// list polls on its own; leaving the page stops both.

import { get } from '../api.js';
import { agentsCard } from '../profiler_agents.js';
import { profileNowCard } from '../profiler_now.js';
import { sessionsCard } from '../profiler_sessions.js';
import { settingsCard } from '../profiler_settings.js';
import { every, h } from '../ui.js';

export function render(el, ctx) {
  const sessions = sessionsCard(ctx);
  const now = profileNowCard(ctx, { onRequest: () => sessions.refresh() });
  const settings = settingsCard(ctx);
  const agents = agentsCard(ctx);

  el.append(
    h('h1', null, 'Configure Profiler'),
    now.el, sessions.el, settings.el, agents.el);

  const stopAgents = every(2000, async () => {
    let list;
    try {
      list = (await get('/api/v1/agents')).agents;
    } catch (err) {
      agents.error(err);
      return;
    }
    for (const part of [now, sessions, settings, agents]) part.agents(list);
  });

  return () => {
    stopAgents();
    sessions.stop();
    now.stop();
  };
}
