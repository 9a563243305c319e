// signin.js — sign in with a token (reader, writer or admin).  The token
// is checked with GET /api/v1/whoami before it is kept.

import { ApiError, get, setToken } from '../api.js';
import { fieldError, h } from '../ui.js';

export function render(el, ctx) {
  const input = h('input', {
    id: 'token', name: 'token', type: 'password', autocomplete: 'off', spellcheck: false,
    placeholder: 'sonde_…', required: true, size: 48,
  });
  const button = h('button', { type: 'submit', id: 'signin' }, 'Sign in');
  const form = h('form', { class: 'card signin', novalidate: true },
    h('h1', null, 'Sign in to sonde'),
    h('p', null, 'Paste an access token. `sonde token create --role writer` makes one; ',
      'an admin token was printed when sonded first started.'),
    h('label', { for: 'token' }, 'Token'),
    input,
    h('div', { class: 'actions' }, button));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const t = input.value.trim();
    fieldError(input, null);
    if (!t) {
      fieldError(input, 'Enter a token.');
      return;
    }
    button.disabled = true;
    setToken(t);
    try {
      const who = await get('/api/v1/whoami');
      ctx.signedIn(who);
    } catch (err) {
      setToken('');
      fieldError(input, err instanceof ApiError && (err.status === 401 || err.status === 403)
        ? `This token is not accepted: ${err.message}` : err.message);
    } finally {
      button.disabled = false;
    }
  });
  el.append(form);
  input.focus();
}
