// Entry point: login, the header (search, simple/advanced, views, cog),
// banners from /health, one tab per service, and hash routing:
//   #/service/<name>[/<key>]   a service's form (optionally focusing a field)
//   #/search?q=…               search results
//   #/history?service=…&key=…  history, restores, version diff
//   #/audit                    audit log (writers)
//   #/settings                 global settings (the cog)

import { h, $, $$, replace, toast, confirmDialog } from './dom.js';
import { api, health as fetchHealth, currentSession, login, logout, setUnauthorizedHandler, seg } from './api.js';
import { serviceForm } from './form.js';
import { renderSearch, renderHistory, renderAudit, renderSettings } from './views.js';
import { adoptionList, arrivalText, instancesPanel, instancesSummary, updateSyncDots } from './instances.js';

const HEALTH_EVERY_MS = 10000;

const state = {
  session: null,
  services: [],
  health: null,
  advanced: localStorage.getItem('cm.advanced') === '1',
  form: null, // controller of the open service form
  formService: null,
  dirty: false,
  loadErrors: new Set(), // services whose last load failed
  fromCache: new Set(), // services last served from the LKG cache
  routeHash: '',
  view: null,
  prefetch: null, // {name, promise} of a service load started early
  healthTimer: null,
  rendered: false,
  applied: {}, // per service: the summary of its instances (GET /services)
  instances: null, // the open service's instances panel
};

const main = () => $('#main');
const writable = () => !state.health || state.health.operational_mode === 'normal';

// ---- login and session -------------------------------------------------

function showLogin(message) {
  stopHealth();
  state.session = null;
  state.dirty = false;
  state.form = null;
  state.formService = null;
  state.view = null;
  if (state.instances) { state.instances.stop(); state.instances = null; }
  state.applied = {};
  // Nothing of the last session stays in the page.
  replace(main());
  replace($('#tabs'));
  $('#boot').hidden = true;
  $('#app-view').hidden = true;
  $('#login-view').hidden = false;
  replace($('#login-error'), message || '');
  $('#login-token').focus();
}

async function onLogin(ev) {
  ev.preventDefault();
  const input = $('#login-token');
  const token = input.value.trim();
  if (!token) { replace($('#login-error'), 'Enter an API token.'); input.focus(); return; }
  $('#login-submit').disabled = true;
  try {
    const session = await login(token);
    input.value = '';
    replace($('#login-error'));
    await enter(session);
  } catch (e) {
    replace($('#login-error'), e.status === 401 ? 'Unknown token.' : `Sign-in failed: ${e.message}`);
    input.select();
  } finally {
    $('#login-submit').disabled = false;
  }
}

async function doLogout() {
  if (state.dirty && !(await confirmDialog('Log out without saving?', `You have unsaved changes in ${state.formService}.`, 'Log out', 'danger'))) return;
  state.dirty = false;
  try { await logout(); } catch { /* the cookie is cleared either way */ }
  showLogin('You are logged out.');
}

async function enter(session) {
  state.session = session;
  $('#login-view').hidden = true;
  $('#boot').hidden = true;
  $('#app-view').hidden = false;
  replace($('#who'), `${session.name} · ${session.can_write ? 'write' : 'read-only'}`);
  $('#who').title = `Signed in as ${session.name} (${session.role})`;
  $('#nav-audit').hidden = !session.can_write;
  $('#advanced-toggle').checked = state.advanced;
  // The list, health and (when the address names one) the service's form
  // data load in parallel: one round trip instead of three before the
  // first form shows.
  const r = parseRoute();
  state.prefetch = r.view === 'service' && r.parts[1] ? fetchService(r.parts[1]) : null;
  const list = api.get('/services').catch((e) => e);
  await refreshHealth();
  const res = await list;
  if (res instanceof Error) {
    if (res.status === 401) return;
    state.services = [];
    toast(`Could not list services: ${res.message}`, 'error');
  } else {
    state.services = res.services;
    state.applied = res.applied || {};
  }
  renderTabs();
  startHealth();
  await route();
  // Keyboard and screen-reader users start in the content, not on the body.
  main().focus({ preventScroll: true });
}

/** Starts loading a service's form data; the promise never rejects (errors are values). */
function fetchService(name) {
  const promise = api.getWithHeaders(`/services/${seg(name)}?include_fields=true`).catch((e) => e);
  return { name, promise };
}

// ---- health and banners ------------------------------------------------

async function refreshHealth() {
  const wasWritable = writable();
  try {
    state.health = await fetchHealth();
  } catch {
    state.health = null;
    updateBanners(true);
    updateTabs();
    return;
  }
  updateBanners(false);
  updateTabs();
  // Mode changed under an open, unedited form: rebuild it so its controls
  // match. An edited one keeps its changes; only Save follows the mode.
  if (wasWritable !== writable() && state.form && state.view === 'service') {
    if (state.dirty) state.form.setWritable(writable() && !state.fromCache.has(state.formService));
    else loadService(state.formService, {});
  }
}

function updateBanners(unreachable) {
  const ro = $('#banner-readonly');
  const mq = $('#banner-mqtt');
  const hl = state.health;
  if (unreachable) {
    ro.hidden = false;
    replace(ro, h('strong', {}, 'Connection lost: '), 'config-manager does not answer. What you see may be out of date; saving will fail until it is back.');
  } else if (hl && hl.operational_mode !== 'normal') {
    ro.hidden = false;
    replace(ro, h('strong', {}, 'Read-only: '),
      `config-manager is in ${hl.operational_mode} mode (database ${hl.database_status}). ` +
        (hl.lkg_cache_valid === false
          ? 'No valid last-known-good cache exists, so settings cannot be shown or changed until the database is restored.'
          : 'Settings are served from the last-known-good cache and cannot be changed until it recovers.'),
      hl.err ? ` Cause: ${hl.err}` : '');
  } else {
    ro.hidden = true;
  }
  // Only when the server says MQTT is configured: without a broker there is nothing to be disconnected from.
  const mqttDown = Boolean(hl && hl.mqtt_configured === true && hl.mqtt_connected === false);
  mq.hidden = !mqttDown;
  if (mqttDown) replace(mq, h('strong', {}, 'MQTT disconnected: '), 'changes are saved, but services receive them only when the broker connection is back.');
}

function startHealth() {
  stopHealth();
  state.healthTimer = setInterval(() => { refreshHealth(); refreshApplied(); }, HEALTH_EVERY_MS);
}

/** Re-reads the per-service sync summaries (the tabs' second dot). */
async function refreshApplied() {
  try {
    const res = await api.get('/services');
    state.applied = res.applied || {};
    updateSyncDots($$('#tabs [role=tab]'), state.applied);
  } catch { /* the health banner tells about an unreachable service */ }
}
function stopHealth() { clearInterval(state.healthTimer); state.healthTimer = null; }

// ---- tabs ---------------------------------------------------------------

function renderTabs() {
  replace($('#tabs'), state.services.map((s) => h('a', {
    role: 'tab', id: `tab-${s}`, href: `#/service/${seg(s)}`, 'aria-selected': 'false', tabindex: '-1',
    'aria-controls': 'service-panel', dataset: { service: s },
  },
  h('span', { class: 'sync-dot', 'aria-hidden': 'true' }),
  h('span', { class: 'tab-label' }, s),
  h('span', { class: 'dot dot-error', 'aria-hidden': 'true', hidden: true }, '!'),
  h('span', { class: 'dirty-mark', 'aria-hidden': 'true', hidden: true }, '•'),
  h('span', { class: 'visually-hidden tab-state' }),
  h('span', { class: 'visually-hidden sync-state' }))));
}


function updateTabs() {
  const tabs = $$('#tabs [role=tab]');
  let focusable = null;
  for (const t of tabs) {
    const name = t.dataset.service;
    const selected = state.view === 'service' && name === state.formService;
    t.setAttribute('aria-selected', String(selected));
    t.tabIndex = -1;
    if (selected) focusable = t;
    // The tab's indicator tells what the service's instances run (set by
    // updateSyncDots); the manager's own read-only state is the banner's.
    // Only a failed load adds a mark of its own here.
    const failed = state.loadErrors.has(name);
    t.querySelector('.dot').hidden = !failed;
    const dirty = selected && state.dirty;
    t.querySelector('.dirty-mark').hidden = !dirty;
    replace(t.querySelector('.tab-state'), `${failed ? ', failed to load' : ''}${dirty ? ', unsaved changes' : ''}`);
  }
  (focusable || tabs[0] || {}).tabIndex = 0;
  updateSyncDots(tabs, state.applied);
  for (const t of tabs) if (state.loadErrors.has(t.dataset.service)) t.title += ' · failed to load';
  keepTabInView();
}

/** In a narrow window the strip scrolls sideways: keep the open tab visible. */
function keepTabInView() {
  const strip = $('#tabs');
  const tab = strip.querySelector('[aria-selected=true]');
  if (tab && (tab.offsetLeft < strip.scrollLeft
      || tab.offsetLeft + tab.offsetWidth > strip.scrollLeft + strip.clientWidth)) {
    strip.scrollLeft = tab.offsetLeft - 16;
  }
}

/** Arrow keys move between tabs (roving tabindex); Enter/Space open one. */
function onTabKey(ev) {
  const tabs = $$('#tabs [role=tab]');
  const i = tabs.indexOf(document.activeElement);
  if (i < 0) return;
  let j = null;
  if (ev.key === 'ArrowRight') j = (i + 1) % tabs.length;
  else if (ev.key === 'ArrowLeft') j = (i - 1 + tabs.length) % tabs.length;
  else if (ev.key === 'Home') j = 0;
  else if (ev.key === 'End') j = tabs.length - 1;
  else if (ev.key === ' ') { ev.preventDefault(); tabs[i].click(); return; }
  if (j === null) return;
  ev.preventDefault();
  tabs[i].tabIndex = -1;
  tabs[j].tabIndex = 0;
  tabs[j].focus();
}

function setDirty(d) {
  if (state.dirty === d) return;
  state.dirty = d;
  updateTabs();
}

// ---- routing ------------------------------------------------------------

function parseRoute() {
  const raw = location.hash.replace(/^#\/?/, '');
  const [path, query = ''] = raw.split('?');
  const parts = path.split('/').filter(Boolean).map((p) => { try { return decodeURIComponent(p); } catch { return p; } });
  return { view: parts[0] || 'service', parts, params: new URLSearchParams(query) };
}

async function onHashChange() {
  const next = parseRoute();
  const stays = next.view === 'service' && state.view === 'service' && (next.parts[1] || state.services[0]) === state.formService;
  if (state.dirty && !stays) {
    const leave = await confirmDialog('Leave without saving?',
      `You have unsaved changes in ${state.formService}. If you leave, they are lost.`, 'Discard changes', 'danger');
    if (!leave) { history.replaceState(null, '', state.routeHash); return; }
    setDirty(false);
  }
  await route();
}

async function route() {
  if (!state.session) return;
  const r = parseRoute();
  if (r.view === 'service' && !r.parts[1] && state.services.length) {
    history.replaceState(null, '', `#/service/${seg(state.services[0])}`);
    r.parts = ['service', state.services[0]];
  }
  state.routeHash = location.hash;
  const m = main();
  m.removeAttribute('role');
  m.removeAttribute('aria-labelledby');
  switch (r.view) {
    case 'service': {
      const name = r.parts[1];
      const key = r.parts[2];
      if (!name) { replace(m, h('h1', {}, 'No services'), h('p', {}, 'No service is configured yet.')); break; }
      if (state.view === 'service' && state.form && state.formService === name) {
        if (key) state.form.focusField(key);
      } else {
        state.view = 'service';
        await loadService(name, { focusKey: key });
      }
      break;
    }
    case 'search':
      leaveForm('search');
      $('#search-input').value = r.params.get('q') || '';
      await renderSearch(m, r.params.get('q') || '', viewCtx());
      break;
    case 'history':
      leaveForm('history');
      await renderHistory(m, r.params, viewCtx());
      break;
    case 'audit':
      leaveForm('audit');
      await renderAudit(m, viewCtx());
      break;
    case 'settings':
      leaveForm('settings');
      await refreshHealth();
      await renderSettings(m, viewCtx());
      break;
    default:
      history.replaceState(null, '', '#/');
      state.view = null;
      await route();
      return;
  }
  for (const a of $$('.views a, #settings-link')) {
    if (a.getAttribute('href') === `#/${r.view}`) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  updateTabs();
}

function leaveForm(view) {
  state.view = view;
  state.form = null;
  if (state.instances) { state.instances.stop(); state.instances = null; }
  state.formService = null;
  setDirty(false);
}

function viewCtx() {
  return {
    session: state.session,
    services: state.services,
    health: state.health,
    advanced: state.advanced,
    writable: writable(),
    setAdvanced,
    logout: doLogout,
    serviceChanged: () => {},
  };
}

async function loadService(name, opts) {
  state.view = 'service';
  state.form = null;
  state.formService = name;
  setDirty(false);
  const m = main();
  const scroll = opts.flash ? window.scrollY : 0;
  if (!m.querySelector('#service-form')) replace(m, h('p', { class: 'muted' }, `Loading ${name}…`));
  const pending = state.prefetch && state.prefetch.name === name && !opts.flash ? state.prefetch : fetchService(name);
  state.prefetch = null;
  const res = await pending.promise;
  if (res instanceof Error) {
    const e = res;
    if (state.formService !== name) return;
    state.loadErrors.add(name);
    updateTabs();
    replace(m, h('h1', {}, name), h('p', { class: 'error-text', role: 'alert' }, `Could not load ${name}: ${e.message}`));
    return;
  }
  if (state.formService !== name) return; // the user moved on meanwhile
  state.loadErrors.delete(name);
  const fromCache = res.headers.get('X-Config-Source') === 'lkg-cache';
  if (fromCache) state.fromCache.add(name); else state.fromCache.delete(name);
  if (!state.rendered) performance.mark('cm:first-service-data');
  state.form = serviceForm(res.data, {
    canWrite: state.session.can_write,
    writable: writable() && !fromCache,
    servedFromCache: fromCache,
    advanced: state.advanced,
    flash: opts.flash,
    onDirty: setDirty,
    reload: (o) => loadService(name, o || {}),
    requestAdvanced: () => setAdvanced(true),
    onUnavailable: refreshHealth,
  });
  // <main> stays the main landmark; the service's content is the tab panel.
  state.form.el.id = 'service-panel';
  state.form.el.setAttribute('role', 'tabpanel');
  state.form.el.setAttribute('aria-labelledby', `tab-${name}`);
  const summary = h('p', { id: 'instances-summary', class: 'instances-summary' });
  const notes = h('div', { id: 'adoption', class: 'adoption' });
  const head = state.form.el.querySelector('.service-head');
  if (head) head.append(summary, notes);
  const titles = Object.fromEntries((res.data.fields || []).map((f) => [f.key, f.title || f.key]));
  replace(m, state.form.el);
  if (state.instances) state.instances.stop();
  // After a save, follow the change to the instances: at the Save button in
  // words, in the header, and in the panel.
  const saved = opts.savedVersion != null;
  const form = state.form;
  state.instances = instancesPanel(name, {
    follow: saved,
    titles,
    onData: (data) => {
      replace(summary, instancesSummary(data));
      // What the adoption work reports, in the header and on the field rows.
      replace(notes, adoptionList(data, titles));
      if (state.form === form) form.showInstanceNotes(data);
      if (saved && state.form === form) {
        const a = arrivalText(opts.savedVersion, data, state.health);
        form.showArrival(a.text, a.kind);
      }
    },
  });
  state.form.el.append(state.instances.el);
  if (saved) form.focusStatus();
  if (opts.flash && opts.flash.startsWith('Saved')) refreshApplied();
  updateTabs();
  if (opts.flash) window.scrollTo(0, scroll);
  if (opts.focusKey) state.form.focusField(opts.focusKey);
  if (!state.rendered) {
    state.rendered = true;
    // For scripts/ui-bench.sh: the form is in the DOM now; the task after
    // the next animation frame runs once that frame (the first with the
    // form) has been painted.
    performance.mark('cm:first-service-built');
    requestAnimationFrame(() => setTimeout(() => performance.mark('cm:first-service-render')));
  }
}

function setAdvanced(on) {
  state.advanced = on;
  localStorage.setItem('cm.advanced', on ? '1' : '0');
  $('#advanced-toggle').checked = on;
  const other = $('#settings-advanced');
  if (other) other.checked = on;
  if (state.form) state.form.setAdvanced(on);
  if (state.view === 'search') route();
}

// ---- wiring -------------------------------------------------------------

function wire() {
  $('#login-form').addEventListener('submit', onLogin);
  $('#logout-button').addEventListener('click', doLogout);
  $('#advanced-toggle').addEventListener('change', (ev) => setAdvanced(ev.target.checked));
  $('#tabs').addEventListener('keydown', onTabKey);
  $('#search-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const q = $('#search-input').value.trim();
    const target = `#/search?q=${encodeURIComponent(q)}`;
    if (location.hash === target) route(); else location.hash = target;
  });
  window.addEventListener('hashchange', onHashChange);
  window.addEventListener('resize', keepTabInView);
  window.addEventListener('focus', () => { if (state.session) refreshHealth(); });
  window.addEventListener('beforeunload', (ev) => {
    if (state.dirty) { ev.preventDefault(); ev.returnValue = ''; }
  });
  setUnauthorizedHandler(() => showLogin('Your session has ended. Sign in again.'));
}

async function boot() {
  wire();
  let session = null;
  try {
    session = await currentSession();
  } catch (e) {
    replace($('#boot'), `Cannot reach config-manager: ${e.message}`);
    return;
  }
  if (session) await enter(session);
  else showLogin();
}

boot();
