// api.js — the console's one way to sonded's API (docs/api.md): the
// token the person signed in with (kept in localStorage), JSON in and
// out, and errors as ApiError carrying the server's own message, which
// the pages show as they are ("field 'threshold' must be …").

const TOKEN_KEY = 'sonde.token';

export class ApiError extends Error {
  constructor(status, message, body) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

export function token() {
  return localStorage.getItem(TOKEN_KEY) || '';
}

export function setToken(t) {
  if (t) localStorage.setItem(TOKEN_KEY, t);
  else localStorage.removeItem(TOKEN_KEY);
}

// Called with the ApiError of a 401 (token revoked or wrong): app.js
// sends the person back to sign-in.
let unauthorized = () => {};
export function onUnauthorized(fn) {
  unauthorized = fn;
}

async function send(method, path, body, accept) {
  const headers = { Accept: accept };
  const t = token();
  if (t) headers.Authorization = `Bearer ${t}`;
  const init = { method, headers };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (e) {
    throw new ApiError(0, `cannot reach sonded: ${e.message}`);
  }
  if (!res.ok) {
    let msg = `HTTP ${res.status}`;
    let data = null;
    try {
      data = await res.json();
      if (data && data.error) msg = data.error;
    } catch (_) { /* not JSON: keep the status */ }
    const err = new ApiError(res.status, msg, data);
    if (res.status === 401) unauthorized(err);
    throw err;
  }
  return res;
}

// JSON answer of METHOD path (body: an object to send, or undefined).
export async function api(method, path, body) {
  const res = await send(method, path, body, 'application/json');
  if (res.status === 204) return null;
  return res.json();
}

export const get = (path) => api('GET', path);

// The raw bytes of a download (a session's pprof) as a Blob.
export async function blob(path) {
  const res = await send('GET', path, undefined, '*/*');
  return res.blob();
}

// "?a=1&b=x" from an object, skipping null/undefined/"" values; arrays
// repeat the key.
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) {
    if (v === null || v === undefined || v === '') continue;
    for (const x of Array.isArray(v) ? v : [v]) q.append(k, String(x));
  }
  const s = q.toString();
  return s ? `?${s}` : '';
}
