// profiler_common.js — what the parts of the Configure Profiler page
// (pages/profiler.js) share: a labelled field, whole-number checks with
// the ranges of docs/api.md, the server's 400 put back at its field, a
// select whose options follow the apps seen, what a session's state means
// in words, and the command that starts an agent.

import { fieldError, fmtSeconds, h } from './ui.js';

// <div class="pf-field"><label>…</label><div class="pf-inp">input unit</div></div>
export function field(label, input, unit) {
  return h('div', { class: 'pf-field' },
    h('label', { for: input.id }, label),
    h('div', { class: 'pf-inp' }, input, unit ? h('span', { class: 'pf-unit muted' }, unit) : null));
}

export function numberInput(id, lo, hi) {
  return h('input', {
    id, name: id, type: 'number', min: String(lo), max: String(hi), step: '1',
    inputmode: 'numeric', class: 'pf-num',
  });
}

// The whole number in input if it lies in lo..hi, else null with the
// message at the field ("Threshold must be a whole number in 1..100.").
export function intIn(input, lo, hi, what) {
  const s = input.value.trim();
  const v = Number(s);
  if (!/^-?\d+$/.test(s) || v < lo || v > hi) {
    fieldError(input, `${what} must be a whole number in ${lo}..${hi}.`);
    return null;
  }
  fieldError(input, null);
  return v;
}

// Puts a server 400 ("field 'cpu.threshold' must be …") at its input
// (fields: {'cpu.threshold': input, …}); true when one matched.
export function serverErrorAtField(err, fields) {
  const m = /field '([\w.]+)'/.exec(err.message || '');
  const input = m && fields[m[1]];
  if (!input) return false;
  fieldError(input, `Refused by the server: ${err.message}`);
  input.focus();
  return true;
}

// Sets the options of a select to first (value '') and values, keeping
// the chosen value (added if it is no longer among them).
export function setOptions(select, first, values) {
  const chosen = select.value;
  const want = [...new Set([...values, ...(chosen ? [chosen] : [])])].sort();
  const have = [...select.options].slice(1).map((o) => o.value);
  if (have.length === want.length && have.every((v, i) => v === want[i])) return;
  select.replaceChildren(h('option', { value: '' }, first),
    ...want.map((v) => h('option', { value: v }, v)));
  select.value = chosen;
}

export const TRIGGERED_BY = {
  'profile-now': 'Profile Now',
  'cpu-trigger': 'CPU trigger',
  'memory-trigger': 'Memory trigger',
  'default-sampling': 'Default sampling',
  'load-test': 'Load test',
};

// A finished session whose profile has not come this long after its
// last change is said to have none.
const UPLOAD_GRACE_MS = 120000;

// What a session's state means now: {cls, label, detail}.  running =
// "profiling" (with the time left), then "uploading" until the profile
// is stored; completed with a profile; failed.
export function sessionState(s, now = Date.now()) {
  const end = s.start_ms + s.duration_s * 1000;
  if (s.state === 'failed') return { cls: 'failed', label: 'failed', detail: 'no profile' };
  if (s.has_profile) return { cls: 'completed', label: 'completed', detail: '' };
  if (s.state === 'running' && now < end)
    return { cls: 'running', label: 'profiling', detail: `${fmtSeconds((end - now) / 1000)} left` };
  if (now - Math.max(end, s.updated_ms || 0) > UPLOAD_GRACE_MS)
    return { cls: 'stopped', label: 'no profile', detail: 'the agent uploaded none' };
  return { cls: 'uploading', label: 'uploading', detail: 'no profile yet' };
}

export function sessionBadge(s) {
  const st = sessionState(s);
  return h('span', { class: 'pf-state' },
    h('span', { class: `state state-${st.cls}`, dataset: { state: s.state, shown: st.cls } }, st.label),
    st.detail ? h('span', { class: 'muted pf-detail' }, ` ${st.detail}`) : null);
}

// The command that runs a service under the agent, as a <code> (block:
// a <pre>) that wraps between its words only.
export function runCommand(app, block = false) {
  const words = ['sonde', 'run', '--server', location.origin, '--app', app || 'APP',
    '--token', 'AGENT_TOKEN', '--', './service'];
  return h(block ? 'pre' : 'code', { class: block ? 'pf-cmd' : null },
    words.map((w, i) => [i ? ' ' : '', h('span', { class: 'pf-word' }, w)]));
}
