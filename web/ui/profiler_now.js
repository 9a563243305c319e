// profiler_now.js — the Profile Now card of the Configure Profiler page
// (SPEC A1): choose an app (or all) and a duration, POST
// /api/v1/profile-now, then say how many running agents the request
// reached (none: plainly, nothing will be profiled) and follow its
// sessions (request_id = the request's id) as they start and end.
//
// profileNowCard(ctx, {onRequest}) → {el, agents(list), stop()}:
// agents() is given each fresh GET /api/v1/agents list (the app choices
// and the count of running agents of the chosen app); onRequest(req) is
// called after a request is made (the page refreshes its sessions).

import { api, ApiError, query } from './api.js';
import {
  field, intIn, numberInput, runCommand, serverErrorAtField, sessionState, setOptions,
} from './profiler_common.js';
import { allow, every, fieldError, fmtSeconds, fmtTime, h } from './ui.js';

// How long after a request's end its sessions are still followed.
const FOLLOW_AFTER_MS = 180000;
// With no session this long after the request, say so.
const SLOW_START_MS = 20000;

export function profileNowCard(ctx, { onRequest } = {}) {
  const app = h('select', { id: 'pn-app', name: 'app' }, h('option', { value: '' }, 'All apps'));
  const duration = numberInput('pn-duration', 1, 3600);
  duration.value = '120';
  const start = h('button', { id: 'pn-start', type: 'submit' }, 'Profile Now');
  const reach = h('div', { id: 'pn-reach', class: 'muted pf-reach' });
  const sent = h('div', { id: 'pn-sent' });
  const follow = h('div', { id: 'pn-sessions' });
  allow(start, ctx.readOnlyReason);

  let list = [];
  let stopFollow = null;

  const form = h('form', { class: 'row pf-now', novalidate: true },
    field('App', app), field('Duration', duration, 's'),
    h('div', { class: 'pf-field' }, start));
  const el = h('section', { class: 'card', id: 'profile-now' },
    h('h2', null, 'Profile Now'),
    h('p', { class: 'muted pf-intro' },
      'Starts a profiling session now on every running agent of the chosen app ',
      '(or of every app) for the chosen duration.'),
    form, reach,
    ctx.readOnlyReason ? h('p', { class: 'muted' }, `Read only: ${ctx.readOnlyReason}`) : null,
    sent, follow);

  function running(a) {
    return list.filter((x) => x.status === 'running' && (!a || x.app === a));
  }

  function showReach() {
    const a = app.value;
    const n = running(a).length;
    if (!list.length) reach.textContent = 'No agent has registered yet: nothing can be profiled.';
    else if (n) reach.textContent = `${n} running agent${n > 1 ? 's' : ''}` +
      `${a ? ` of ${a}` : ''} will profile.`;
    else reach.textContent = a ? `No agent of ${a} is running now: nothing would be profiled.`
      : 'No agent is running now: nothing would be profiled.';
    reach.classList.toggle('pf-warn', !n);
  }
  app.addEventListener('change', showReach);

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    if (!ctx.canWrite) return;
    const d = intIn(duration, 1, 3600, 'Duration (seconds)');
    if (d === null) return;
    fieldError(app, null);
    start.disabled = true;
    try {
      const req = await api('POST', '/api/v1/profile-now',
        { app: app.value || undefined, duration_s: d });
      announce(req);
      if (onRequest) onRequest(req);
    } catch (err) {
      if (!(err instanceof ApiError) ||
          !serverErrorAtField(err, { duration_s: duration, app })) {
        sent.replaceChildren(h('div', { class: 'notice error', role: 'alert' },
          `Profile Now was refused: ${err.message}`));
      }
    } finally {
      allow(start, ctx.readOnlyReason);
    }
  });

  function announce(req) {
    const who = req.app ? `app ${req.app}` : 'the workspace';
    if (stopFollow) stopFollow();
    stopFollow = null;
    follow.replaceChildren();
    if (!req.agents) {
      sent.replaceChildren(h('div', { class: 'notice warn', role: 'status' },
        `Profile Now #${req.id}: no agent of ${who} is running, so nothing will be profiled. `,
        'Start the service under the agent first: ', runCommand(req.app)));
      return;
    }
    sent.replaceChildren(h('div', { class: 'notice ok', role: 'status' },
      `Profile Now #${req.id} reached ${req.agents} running agent${req.agents > 1 ? 's' : ''} ` +
      `of ${who}: each profiles for ${fmtSeconds(req.duration_s)}.`));
    follow.replaceChildren(h('div', { class: 'notice info', role: 'status' },
      `Waiting for the session${req.agents > 1 ? 's' : ''} of request #${req.id} to start…`));
    stopFollow = every(2000, () => followSessions(req));
  }

  // The sessions of request req: a notice when they start, then their
  // state until they end.
  async function followSessions(req) {
    const ans = await api('GET', `/api/v1/sessions${query({
      app: req.app, from: req.created_ms - 60000, limit: 1000,
    })}`);
    const mine = ans.sessions.filter((s) => s.request_id === req.id)
      .sort((a, b) => a.id - b.id);
    const now = Date.now();
    const ended = mine.filter((s) => s.has_profile || s.state === 'failed'
      || sessionState(s, now).cls === 'stopped');
    const done = mine.length >= req.agents && ended.length === mine.length;
    const late = now > req.created_ms + req.duration_s * 1000 + FOLLOW_AFTER_MS;
    if (!mine.length) {
      if (now - req.created_ms > SLOW_START_MS)
        follow.replaceChildren(h('div', { class: 'notice warn', role: 'status' },
          `No session of request #${req.id} has started yet ` +
          `(${fmtSeconds((now - req.created_ms) / 1000)} after it). The agent may be busy ` +
          'with another session, or unable to reach sonded.'));
    } else {
      const head = done
        ? `The session${mine.length > 1 ? 's' : ''} of request #${req.id} ended: `
        : `${mine.length} of ${req.agents} session${req.agents > 1 ? 's' : ''} of ` +
          `request #${req.id} started (${fmtTime(mine[0].start_ms)}): `;
      follow.replaceChildren(h('div', {
        class: `notice ${done ? 'ok' : 'info'}`, role: 'status', dataset: { request: req.id },
      }, head, mine.map((s, i) => {
        const st = sessionState(s, now);
        return [i ? '; ' : '', h('a', { href: `#/sessions/${s.id}` },
          `${s.app}/${s.instance} #${s.id}`), ` ${st.label}`, st.detail ? ` (${st.detail})` : ''];
      })));
    }
    if ((done || late) && stopFollow) {
      stopFollow();
      stopFollow = null;
    }
  }

  return {
    el,
    agents(agents) {
      list = agents;
      setOptions(app, 'All apps', agents.map((a) => a.app));
      showReach();
    },
    stop() {
      if (stopFollow) stopFollow();
      stopFollow = null;
    },
  };
}
