// The REST client of the page. Authentication is the HttpOnly session
// cookie (sent by the browser, invisible to this code); every state-changing
// call adds the session's CSRF token as X-CSRF-Token. Errors arrive as RFC
// 9457 problem documents and are thrown as ApiError.

const API = '/api/config';

let csrfToken = '';
let onUnauthorized = () => {};

/** An error answer of the API (problem details). */
export class ApiError extends Error {
  constructor(status, problem) {
    super((problem && problem.detail) || `HTTP ${status}`);
    this.status = status;
    this.problem = problem || {};
    this.errors = (problem && problem.errors) || [];
    this.currentVersion = problem ? problem.current_version : undefined;
  }
}

/** Called when any call answers 401 (session expired or logged out elsewhere). */
export function setUnauthorizedHandler(fn) { onUnauthorized = fn; }

async function request(method, url, body) {
  const headers = { Accept: 'application/json' };
  if (method !== 'GET') headers['X-CSRF-Token'] = csrfToken;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let resp;
  try {
    resp = await fetch(url, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: 'same-origin',
      cache: 'no-store',
    });
  } catch (e) {
    throw new ApiError(0, { detail: 'cannot reach config-manager (network error)' });
  }
  const text = await resp.text();
  let data = null;
  if (text) {
    try { data = JSON.parse(text); } catch { data = { detail: text.slice(0, 200) }; }
  }
  if (!resp.ok) {
    if (resp.status === 401 && !url.startsWith('/ui/')) onUnauthorized();
    throw new ApiError(resp.status, data);
  }
  return { data, headers: resp.headers };
}

export const api = {
  async get(path) { return (await request('GET', API + path)).data; },
  /** GET that also returns the response headers (ETag, X-Config-Source). */
  async getWithHeaders(path) { return request('GET', API + path); },
  async send(method, path, body) { return (await request(method, API + path, body)).data; },
};

/** Health answers 503 with the same body when degraded: both are data here. */
export async function health() {
  const resp = await fetch(`${API}/health`, { cache: 'no-store', credentials: 'same-origin' });
  return resp.json();
}

/**
 * The current session, or null when not logged in. The server answers 200
 * {"authenticated": false} without a session (no 401 in the console on
 * every fresh load); a 401 from an older server means the same.
 */
export async function currentSession() {
  try {
    const { data } = await request('GET', '/ui/session');
    if (!data || data.authenticated === false) return null;
    csrfToken = data.csrf_token;
    return data;
  } catch (e) {
    if (e.status === 401) return null;
    throw e;
  }
}

export async function login(token) {
  const { data } = await request('POST', '/ui/login', { token });
  csrfToken = data.csrf_token;
  return data;
}

export async function logout() {
  try { await request('POST', '/ui/logout'); } finally { csrfToken = ''; }
}

/** Encodes one path segment (service names and keys are validated server-side, but stay safe). */
export const seg = (s) => encodeURIComponent(s);
