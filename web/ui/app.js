// app.js — the console's shell: sign-in with a token, who is signed in
// (name and role in the header), and the router that shows one page per
// location hash:
//
//   #/signin                  sign in (a token: reader, writer or admin)
//   #/profiler                Configure Profiler (Profile Now, triggers,
//                             default sampling, recent sessions, agents)
//   #/sessions/ID             one session's flame graph and top functions
//   #/views?…                 merged view of a selection, and diffs
//   #/tasks  #/tasks/ID       active analysis: tasks, a task's details,
//   #/captures/ID             logs and thread analysis; a capture
//   #/traces/ID               everything of one trace
//   #/loadtests  #/loadtests/ID   performance tests and their results
//
// A page is a module under pages/ exporting render(el, ctx) → cleanup
// (or nothing); ctx = {params, query, me, canWrite, go}.  Leaving a page
// calls its cleanup (stops its refresh timers).

import { get, onUnauthorized, setToken, token } from './api.js';
import { h, notice, WRITE_ROLES } from './ui.js';

const routes = [
  [/^#\/signin$/, 'signin'],
  [/^#\/profiler$/, 'profiler'],
  [/^#\/sessions\/(\d+)$/, 'session'],
  [/^#\/views$/, 'views'],
  [/^#\/tasks$/, 'tasks'],
  [/^#\/tasks\/(\d+)$/, 'task'],
  [/^#\/captures\/(\d+)$/, 'capture'],
  [/^#\/traces\/([A-Za-z0-9._:-]+)$/, 'trace'],
  [/^#\/loadtests$/, 'loadtests'],
  [/^#\/loadtests\/(\d+)$/, 'loadtest'],
];

const section = {
  profiler: 'profiler', session: 'profiler', views: 'views', tasks: 'tasks', task: 'tasks',
  capture: 'tasks', trace: 'tasks', loadtests: 'loadtests', loadtest: 'loadtests',
};

let me = null;        // {token_id, name, role}
let cleanup = null;   // the shown page's
let shown = 0;        // counts navigations: a late page render is dropped

function go(hash) {
  if (location.hash === hash) show();
  else location.hash = hash;
}

async function whoami() {
  if (!token()) return null;
  try {
    return await get('/api/v1/whoami');
  } catch (e) {
    if (e.status === 401 || e.status === 403) return null;
    throw e;
  }
}

function header() {
  const who = document.getElementById('who');
  if (!me) {
    who.replaceChildren();
    document.getElementById('nav').hidden = true;
    return;
  }
  document.getElementById('nav').hidden = false;
  who.replaceChildren(
    h('span', { class: 'name' }, me.name || `token ${me.token_id}`),
    h('span', { class: `role role-${me.role}`, id: 'role' }, me.role),
    h('button', {
      class: 'link', id: 'signout',
      onclick: () => { setToken(''); me = null; go('#/signin'); },
    }, 'Sign out'),
  );
}

async function show() {
  const n = ++shown;
  if (cleanup) {
    try { cleanup(); } catch (e) { console.warn(e); }
    cleanup = null;
  }
  const main = document.getElementById('main');
  const [hash, qs] = (location.hash || '#/profiler').split('?');
  let name = null;
  let params = [];
  for (const [re, page] of routes) {
    const m = hash.match(re);
    if (m) {
      name = page;
      params = m.slice(1);
      break;
    }
  }
  // The page's module loads while who is signed in is asked.
  const loading = name ? import(`./pages/${name}.js`) : null;
  if (loading) loading.catch(() => {}); // reported when awaited below
  if (!me && name !== 'signin') {
    me = await whoami().catch(() => null);
    if (n !== shown) return;
    if (!me) {
      const back = location.hash && !location.hash.startsWith('#/signin') ? location.hash : '';
      sessionStorage.setItem('sonde.after-signin', back);
      go('#/signin');
      return;
    }
  }
  header();
  if (!name) {
    main.replaceChildren(notice(`No page at ${hash}.`, 'warn'));
    return;
  }
  for (const a of document.querySelectorAll('#nav a'))
    a.classList.toggle('active', a.dataset.section === section[name]);
  const ctx = {
    params,
    query: new URLSearchParams(qs || ''),
    me,
    canWrite: !!me && WRITE_ROLES.includes(me.role),
    readOnlyReason: me && !WRITE_ROLES.includes(me.role)
      ? `Your token's role is ${me.role}: this needs writer or admin.` : null,
    go,
    signedIn: (who) => {
      me = who;
      header();
      const back = sessionStorage.getItem('sonde.after-signin') || '#/profiler';
      sessionStorage.removeItem('sonde.after-signin');
      go(back);
    },
  };
  main.replaceChildren(h('p', { class: 'loading' }, 'Loading…'));
  try {
    const mod = await loading;
    if (n !== shown) return;
    const el = h('div', { class: `page page-${name}` });
    main.replaceChildren(el);
    const c = await mod.render(el, ctx);
    if (n !== shown) {
      if (typeof c === 'function') c();
      return;
    }
    cleanup = typeof c === 'function' ? c : null;
  } catch (e) {
    if (n !== shown) return;
    main.replaceChildren(notice(`This page could not be shown: ${e.message}`, 'error'));
  }
}

onUnauthorized(() => {
  if (location.hash.startsWith('#/signin')) return;
  me = null;
  setToken('');
  go('#/signin');
});

window.addEventListener('hashchange', show);
show();
