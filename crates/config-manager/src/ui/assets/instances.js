// Desired vs applied on the page: the sync dot of each service tab and, on a
// service's page, its running instances (applied version, age, state,
// rejection reason). After a save the panel polls the instances endpoint for
// a bounded time and shows the change arriving ("applied by 1 of 2
// instances" -> "2 of 2").

import { h, replace } from './dom.js';
import { api, seg } from './api.js';

/** How long after a save the panel follows the change, and how often. */
const FOLLOW_MS = 30000;
const FOLLOW_EVERY_MS = 500;

const WORDS = {
  in_sync: 'in sync',
  pending: 'pending',
  rejected: 'rejected',
  offline: 'offline',
  no_reports: 'no reports',
};

/**
 * The shape of each state (a glyph in a coloured badge): colour is never the
 * only carrier, and the words go in the title and the screen-reader text.
 */
const GLYPHS = {
  in_sync: '✓',
  pending: '◔',
  rejected: '✕',
  offline: '○',
  no_reports: '–',
};

/** Who runs an instance, by its `client.name` (decisions-adoption 4). */
const RUNNERS = {
  'config-agent': 'config-agent (launcher)',
  'config-manager-client': 'Rust library',
  'tars-config-client': 'Python library',
};

/** The words of one instance's runner. */
export function runnerText(client) {
  const name = client && client.name;
  return RUNNERS[name] || (name ? `${name} (library)` : 'unknown');
}

/** The badge of a sync state: glyph, colour class, state in `data-state`. */
export function syncBadge(state, title) {
  return h('span', { class: `sync-dot sync-${state}`, 'aria-hidden': 'true', dataset: { state }, title }, GLYPHS[state] || '?');
}

/**
 * The notes of what the adoption work reports, one per fact, in words:
 * fields pinned by an instance's environment, versions rolled back because
 * the program crashed, the fields an `invalid_config` rejection names.
 * `titles`: key → field title, when known.
 */
export function adoptionNotes(data, titles) {
  const title = (k) => (titles && titles[k]) || k;
  const notes = [];
  for (const i of (data && data.instances) || []) {
    for (const [key, env] of Object.entries(i.pinned || {})) {
      notes.push({ kind: 'pinned', key, text: `${title(key)} is pinned on ${i.instance_id} by ${env}` });
    }
    if (i.state === 'rejected' && i.reason === 'crashed') {
      notes.push({ kind: 'crashed', text: `${i.instance_id} rolled back version ${i.rejected_version ?? '?'}: the program crashed` });
    }
    if (i.state === 'rejected' && (i.fields || []).length) {
      notes.push({ kind: 'fields', text: `${i.instance_id} rejected ${i.fields.map(title).join(', ')}` });
    }
  }
  return notes;
}

/** The text of one service's sync dot. */
export function syncText(summary) {
  if (!summary) return 'no reports';
  const word = WORDS[summary.state] || summary.state;
  if (summary.state === 'pending' && summary.pending_seconds != null) return `${word} for ${summary.pending_seconds} s`;
  if (summary.state === 'no_reports') return word;
  return `${word} (${summary.in_sync} of ${summary.reachable} applied)`;
}

/**
 * Sets the indicator of each tab from GET /services' `applied`: it says what
 * the service's instances run (issue 26: the old green dot described the
 * manager's own data, and every tab was green with no worker running). No
 * report is never green. The manager's read-only state is the banner's.
 */
export function updateSyncDots(tabs, applied) {
  for (const t of tabs) {
    const summary = (applied || {})[t.dataset.service];
    const dot = t.querySelector('.sync-dot');
    if (!dot) continue;
    const state = summary ? summary.state : 'no_reports';
    const words = state === 'no_reports' ? 'no instance has reported' : `instances ${syncText(summary)}`;
    dot.className = `sync-dot sync-${state}`;
    dot.dataset.state = state;
    dot.textContent = GLYPHS[state] || '?';
    dot.title = `${t.dataset.service}: ${words}`;
    t.dataset.sync = state;
    const sr = t.querySelector('.sync-state');
    if (sr) sr.textContent = `, ${words}`;
  }
}

function age(seconds) {
  if (seconds == null) return '';
  if (seconds < 60) return `${seconds} s ago`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)} h ago`;
  return `${Math.floor(seconds / 86400)} d ago`;
}

function stateCell(i) {
  let text = WORDS[i.state] || i.state;
  if (i.state === 'pending' && i.drift === 'ahead') text += ' (ahead of the database)';
  else if (i.state === 'pending' && i.drift === 'other_epoch') text += ' (older epoch)';
  else if (i.state === 'pending' && i.pending_seconds != null) text += ` for ${i.pending_seconds} s`;
  return h('td', {}, syncBadge(i.state), ' ', text);
}

function progressText(summary) {
  if (!summary || summary.instances === 0) return 'No instance has reported yet.';
  const n = summary.reachable;
  return `Applied by ${summary.in_sync} of ${n} instance${n === 1 ? '' : 's'}`
    + (summary.offline ? ` (${summary.offline} offline)` : '')
    + (summary.rejected ? `; ${summary.rejected} rejected` : '')
    + '.';
}

/**
 * What the operator reads at the Save button after a save: the version and
 * the change arriving per instance, in words (issue 26). `health`: the
 * manager's, for "no broker".
 */
export function arrivalText(version, data, health) {
  const head = `Saved version ${version}`;
  const noBroker = health && (health.mqtt_configured === false || health.mqtt_connected === false);
  if (noBroker) return { text: `${head} · no broker: no instance can confirm`, kind: 'pending' };
  const s = data && data.summary;
  if (!s || s.instances === 0) return { text: `${head} · no instance has reported`, kind: 'pending' };
  const list = data.instances || [];
  const parts = [`${head} · applied by ${s.in_sync} of ${s.reachable}`];
  for (const i of list) {
    if (i.state === 'rejected') parts.push(`${i.instance_id} rejected: ${i.reason || 'no reason given'}`);
  }
  for (const i of list) if (i.state === 'offline') parts.push(`${i.instance_id} offline`);
  const rejected = list.some((i) => i.state === 'rejected');
  const done = s.reachable > 0 && s.in_sync === s.reachable;
  return { text: parts.join(' · '), kind: rejected ? 'error' : (done ? 'ok' : 'pending') };
}

/** The service header's line naming instances that are not in sync. */
export function instancesSummary(data) {
  const list = (data && data.instances) || [];
  const words = [];
  for (const i of list) {
    if (i.state === 'rejected') words.push(`${i.instance_id} rejected (${i.reason || 'no reason given'})`);
    else if (i.state === 'pending') words.push(`${i.instance_id} pending`);
    else if (i.state === 'offline') words.push(`${i.instance_id} offline`);
  }
  if (!list.length) return 'No instance has reported.';
  if (!words.length) return `All ${list.length} instance${list.length === 1 ? '' : 's'} in sync.`;
  return `Instances: ${words.join('; ')}.`;
}

/** The header's list of adoption notes (pinned fields, crash roll-backs, failing fields). */
export function adoptionList(data, titles) {
  const notes = adoptionNotes(data, titles);
  if (!notes.length) return null;
  return h('ul', { class: 'adoption-notes', id: 'adoption-notes' },
    notes.map((n) => h('li', { class: `note-${n.kind}`, dataset: { kind: n.kind } }, n.text)));
}

/** The rejection cell: a crash roll-back and the failing fields in words. */
function rejectionText(i, titles) {
  if (!i.reason) return '';
  const v = i.rejected_version ? ` (version ${i.rejected_version})` : '';
  if (i.reason === 'crashed') return `rolled back version ${i.rejected_version ?? '?'}: the program crashed`;
  const fields = (i.fields || []).map((k) => (titles && titles[k]) || k);
  return `${i.reason}${v}${fields.length ? `: ${fields.join(', ')}` : ''}`;
}

/**
 * The instances panel of a service. `follow`: a save just happened; poll
 * until every reachable instance is in sync or FOLLOW_MS passed.
 * `onData(data)`: called with every answer (the save status and the header
 * follow it). Returns {el, stop()}.
 */
export function instancesPanel(service, opts) {
  const status = h('p', { id: 'applied-progress', class: 'applied-progress', role: 'status', 'aria-live': 'polite' }, 'Loading instances…');
  const body = h('div', { id: 'instances-table' });
  const el = h('section', { id: 'instances', class: 'instances', 'aria-labelledby': 'instances-title' },
    h('h2', { id: 'instances-title' }, 'Instances'),
    status, body);
  let timer = null;
  let stopped = false;
  const until = Date.now() + FOLLOW_MS;

  const title = (k) => (opts.titles && opts.titles[k]) || k;

  function render(data) {
    const list = data.instances || [];
    const desired = data.desired ? `version ${data.desired.version}` : 'no stored version';
    replace(status, progressText(data.summary), ' ', h('span', { class: 'muted' }, `Desired: ${desired}.`));
    status.dataset.inSync = String(data.summary.in_sync);
    status.dataset.reachable = String(data.summary.reachable);
    if (opts.onData) opts.onData(data);
    if (!list.length) { replace(body); return; }
    replace(body, h('div', { class: 'table-wrap' }, h('table', { class: 'instances-table' },
      h('thead', {}, h('tr', {},
        h('th', { scope: 'col' }, 'Instance'),
        h('th', { scope: 'col' }, 'State'),
        h('th', { scope: 'col' }, 'Applied version'),
        h('th', { scope: 'col' }, 'Reported'),
        h('th', { scope: 'col' }, 'Rejection'),
        h('th', { scope: 'col' }, 'Pinned by its environment'),
        h('th', { scope: 'col' }, 'Runner'))),
      h('tbody', {}, list.map((i) => h('tr', { dataset: { instance: i.instance_id, state: i.state } },
        h('td', { class: 'mono' }, i.instance_id),
        stateCell(i),
        h('td', {}, i.version == null ? '–' : String(i.version)),
        h('td', { title: i.received_at }, age(i.age_seconds)),
        h('td', { class: 'rejection' }, rejectionText(i, opts.titles)),
        h('td', { class: 'pinned' }, Object.entries(i.pinned || {}).map(([k, env]) => `${title(k)} by ${env}`).join('; ')),
        h('td', { class: 'runner', title: `${i.client.name} ${i.client.version}` }, runnerText(i.client))))))));
  }

  async function load() {
    if (stopped) return;
    try {
      const data = await api.get(`/services/${seg(service)}/instances`);
      if (stopped) return;
      render(data);
      const s = data.summary;
      const done = s.reachable > 0 && s.in_sync === s.reachable;
      if (opts.follow && !done && Date.now() < until) timer = setTimeout(load, FOLLOW_EVERY_MS);
      else if (opts.follow && opts.onFollowEnd) opts.onFollowEnd(data);
    } catch (e) {
      if (!stopped) replace(status, `Could not load the instances: ${e.message}`);
    }
  }
  load();
  return { el, stop() { stopped = true; clearTimeout(timer); } };
}
