// profiler_settings.js — the Triggers and Default sampling panels of the
// Configure Profiler page (SPEC A2, A3), for the workspace or one app.
//
// GET/PUT /api/v1/triggers[?app=A] and /api/v1/default-sampling[?app=A];
// for an app, whether it has its own override, and "Use workspace
// settings" (DELETE ?app=A) to drop it.  Every field is checked against
// the ranges of docs/api.md before anything is sent (the message at the
// field, nothing sent); a 400 the server still gives is shown at the
// field it names.  Readers see the values with every control disabled and
// the reason on hover.  The forms are loaded when the scope changes and
// after a save, not on a timer: a refresh must not undo someone's typing.
//
// settingsCard(ctx) → {el, agents(list)}: the scope choices follow the
// apps of the agents list.

import { api, ApiError, query } from './api.js';
import {
  field, intIn, numberInput, serverErrorAtField, setOptions,
} from './profiler_common.js';
import { allow, fieldError, fmtSeconds, h, toast } from './ui.js';

const TRIGGER_RANGES = {
  threshold: [1, 100, 'Threshold'],
  duration_s: [10, 3600, 'Duration (seconds)'],
  cooldown_s: [0, 86400, 'Cooldown (seconds)'],
};
const SAMPLING_RANGES = {
  window_s: [10, 3600, 'Window (seconds)'],
  period_s: [60, 86400, 'Period (seconds)'],
};

// "= 10m" beside a seconds input, following what is typed.
function secondsHint(input) {
  const hint = h('span', { class: 'muted pf-hint' });
  const show = () => {
    const v = Number(input.value);
    hint.textContent = input.value && Number.isInteger(v) && v >= 60 ? `= ${fmtSeconds(v)}` : '';
  };
  input.addEventListener('input', show);
  input.show = show;
  return hint;
}

function onOff(id) {
  const box = h('input', { id, name: id, type: 'checkbox', class: 'pf-switch', role: 'switch' });
  const text = h('span', { class: 'pf-onoff' }, 'Off');
  const show = () => { text.textContent = box.checked ? 'On' : 'Off'; };
  box.addEventListener('change', show);
  box.show = show;
  return { box, el: h('label', { class: 'pf-toggle', for: id }, box, text) };
}

// One settings panel: title, fields, Save and "Use workspace settings".
// kind: {path, title, id, parts: [{key|null, legend, rows: [[name, label, unit]]}],
//        ranges, check(values) → extra field errors}
function panel(ctx, kind, scope) {
  const inputs = {};   // 'cpu.threshold' or 'window_s' → input
  const status = h('p', { id: `${kind.id}-scope`, class: 'pf-scope' });
  const msg = h('div', { id: `${kind.id}-msg` });
  const save = h('button', { id: `${kind.id}-save`, type: 'submit' }, 'Save');
  const reset = h('button', { id: `${kind.id}-reset`, type: 'button', class: 'secondary' },
    'Use workspace settings');
  let doc = null;

  const groups = kind.parts.map((part) => {
    const rows = [];
    const pre = part.key ? `${part.key}.` : '';
    const idp = `${kind.id}-${part.key ? `${part.key}-` : ''}`;
    const t = onOff(`${idp}enabled`);
    inputs[`${pre}enabled`] = t.box;
    for (const [name, label, unit] of part.rows) {
      const [lo, hi] = kind.ranges[name];
      const input = numberInput(`${idp}${name}`, lo, hi);
      inputs[`${pre}${name}`] = input;
      const f = field(label, input, unit);
      if (unit === 's') f.querySelector('.pf-inp').append(secondsHint(input));
      f.append(h('div', { class: 'muted pf-range' }, `${lo}..${hi}${unit === '%' ? ' %' : ' s'}`));
      rows.push(f);
    }
    return h('fieldset', { class: 'pf-group' },
      h('legend', null, h('span', null, part.legend), t.el), rows);
  });

  const form = h('form', { class: `pf-panel`, id: kind.id, novalidate: true },
    h('h2', null, kind.title), h('p', { class: 'muted pf-intro' }, kind.intro), status,
    h('div', { class: 'pf-groups' }, groups),
    h('div', { class: 'actions' }, save, reset), msg);

  for (const input of Object.values(inputs)) allow(input, ctx.readOnlyReason);
  allow(save, ctx.readOnlyReason);

  function fill(d) {
    doc = d;
    for (const [path, input] of Object.entries(inputs)) {
      const [a, b] = path.split('.');
      const v = b ? d[a][b] : d[a];
      if (input.type === 'checkbox') input.checked = !!v;
      else input.value = String(v);
      if (input.show) input.show();
      if (input.type !== 'checkbox') fieldError(input, null);
    }
    const app = scope();
    if (!app) {
      status.replaceChildren('Workspace settings: every app without its own override uses these.');
      reset.hidden = true;
    } else if (d.overridden) {
      status.replaceChildren(h('strong', null, app), ' has its own settings (an override of ',
        'the workspace settings).');
      reset.hidden = false;
    } else {
      status.replaceChildren(h('strong', null, app), ' uses the workspace settings. ',
        'Saving here gives it its own.');
      reset.hidden = true;
    }
    status.dataset.overridden = app && d.overridden ? 'yes' : 'no';
    allow(reset, ctx.readOnlyReason);
  }

  async function load() {
    const app = scope();
    msg.replaceChildren();
    try {
      const d = await api('GET', `${kind.path}${query({ app })}`);
      if (app === scope()) fill(d);
    } catch (err) {
      msg.replaceChildren(h('div', { class: 'notice error', role: 'alert' },
        `The ${kind.title.toLowerCase()} settings could not be read: ${err.message}`));
    }
  }

  // The form's values as a PUT body, or null (errors at their fields).
  function values() {
    const body = {};
    let ok = true;
    for (const [path, input] of Object.entries(inputs)) {
      const [a, b] = path.split('.');
      const name = b || a;
      let v;
      if (input.type === 'checkbox') {
        v = input.checked;
      } else {
        const [lo, hi, what] = kind.ranges[name];
        v = intIn(input, lo, hi, what);
        if (v === null) ok = false;
      }
      if (b) (body[a] = body[a] || {})[b] = v;
      else body[a] = v;
    }
    if (ok && kind.check) {
      for (const [path, m] of Object.entries(kind.check(body))) {
        fieldError(inputs[path], m);
        ok = false;
      }
    }
    return ok ? body : null;
  }

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    msg.replaceChildren();
    if (!ctx.canWrite || !doc) return;
    const body = values();
    if (!body) {
      msg.replaceChildren(h('div', { class: 'notice error', role: 'alert' },
        'Not saved: correct the fields marked above.'));
      return;
    }
    const app = scope();
    save.disabled = true;
    try {
      fill(await api('PUT', `${kind.path}${query({ app })}`, body));
      msg.replaceChildren(h('div', { class: 'notice ok', role: 'status' },
        `Saved${app ? ` for ${app}` : ' for the workspace'}: agents apply it within one ` +
        'heartbeat.'));
    } catch (err) {
      if (!(err instanceof ApiError) || !serverErrorAtField(err, inputs))
        msg.replaceChildren(h('div', { class: 'notice error', role: 'alert' },
          `Not saved: ${err.message}`));
    } finally {
      allow(save, ctx.readOnlyReason);
    }
  });

  reset.addEventListener('click', async () => {
    const app = scope();
    if (!app || !ctx.canWrite) return;
    reset.disabled = true;
    msg.replaceChildren();
    try {
      fill(await api('DELETE', `${kind.path}${query({ app })}`));
      msg.replaceChildren(h('div', { class: 'notice ok', role: 'status' },
        `${app} now uses the workspace settings.`));
    } catch (err) {
      if (err.status === 404) load();
      else toast(`Not changed: ${err.message}`, 'error');
    } finally {
      allow(reset, ctx.readOnlyReason);
    }
  });

  return { el: form, load };
}

export function settingsCard(ctx) {
  const scope = h('select', { id: 'set-scope', name: 'scope' },
    h('option', { value: '' }, 'Workspace (all apps)'));
  const which = () => scope.value || null;
  const triggers = panel(ctx, {
    id: 'trig', title: 'Triggers', path: '/api/v1/triggers',
    intro: 'Start profiling when the process uses this share of its CPU quota or memory ' +
      'limit: it profiles for the duration, then waits the cooldown before checking again.',
    ranges: TRIGGER_RANGES,
    parts: ['cpu', 'memory'].map((key) => ({
      key,
      legend: key === 'cpu' ? 'CPU trigger' : 'Memory trigger',
      rows: [['threshold', key === 'cpu' ? 'CPU threshold' : 'Memory threshold', '%'],
        ['duration_s', 'Duration', 's'], ['cooldown_s', 'Cooldown', 's']],
    })),
  }, which);
  const sampling = panel(ctx, {
    id: 'ds', title: 'Default sampling', path: '/api/v1/default-sampling',
    intro: 'Each agent profiles a random window once in every period, so that there is ' +
      'always recent data.',
    ranges: SAMPLING_RANGES,
    parts: [{ key: null, legend: 'Sampling', rows: [['window_s', 'Window', 's'], ['period_s', 'Period', 's']] }],
    check: (b) => (b.window_s > b.period_s
      ? { window_s: `The window (${b.window_s} s) must not be longer than the period (${b.period_s} s).` }
      : {}),
  }, which);
  scope.addEventListener('change', () => { triggers.load(); sampling.load(); });

  const el = h('section', { class: 'card', id: 'settings' },
    h('div', { class: 'pf-head' }, h('h2', null, 'Profiler settings'),
      field('Settings for', scope)),
    ctx.readOnlyReason ? h('p', { class: 'muted' }, `Read only: ${ctx.readOnlyReason}`) : null,
    h('div', { class: 'pf-settings' }, triggers.el, sampling.el));
  triggers.load();
  sampling.load();
  return {
    el,
    agents(list) { setOptions(scope, 'Workspace (all apps)', list.map((a) => a.app)); },
  };
}
