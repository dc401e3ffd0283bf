// The views next to the service forms: search results, history (with the
// version diff and both kinds of restore), the audit log, and the global
// settings panel behind the cog (system status, profiles, session).
// Each `render*` fills `main` and returns nothing; `ctx` carries the session
// and callbacks from app.js.

import { h, $, replace, showValue, timeEl, localToIso, toast, confirmDialog } from './dom.js';
import { api, seg } from './api.js';
import { fieldsOf, fieldName, changeRows, confirmChange, isMask, forgetFields } from './diff.js';

/** Search results; `advanced` decides the complexity filter (simple view finds simple fields only). */
export async function renderSearch(main, query, ctx) {
  const body = { query, max_results: 100 };
  if (!ctx.advanced) body.complexity_filter = 'simple';
  replace(main, h('h1', {}, 'Search'), h('p', { class: 'muted' }, 'Searching…'));
  let res;
  try { res = await api.send('POST', '/search', body); } catch (e) { return showError(main, 'Search', e); }
  const scope = ctx.advanced ? 'all settings' : 'simple settings only (switch on Advanced to search every setting)';
  replace(main,
    h('h1', {}, 'Search'),
    h('p', { id: 'search-summary', role: 'status' }, `${res.total_count} result${res.total_count === 1 ? '' : 's'} for “${res.query}” in ${scope}.`),
    h('ol', { class: 'results', id: 'search-results' }, res.results.map((r) => h('li', {},
      h('a', { href: `#/service/${seg(r.service)}/${seg(r.key)}`, class: 'result-link' },
        h('span', { class: 'result-service' }, r.service), ' › ', h('code', {}, r.key)),
      h('span', { class: 'badge' }, r.type),
      r.complexity === 'advanced' ? h('span', { class: 'badge badge-adv' }, 'advanced') : null,
      h('p', { class: 'muted' }, r.description || ''),
      h('p', {}, 'Value: ', r.is_secret ? '(secret)' : h('code', {}, showValue(r.value)))))));
}

function showError(main, title, e) {
  replace(main, h('h1', {}, title), h('p', { class: 'error-text', role: 'alert' }, `Could not load: ${e.message}`));
}

function serviceSelect(id, services, selected, allLabel) {
  return h('select', { id },
    allLabel ? h('option', { value: '' }, allLabel) : null,
    services.map((s) => h('option', { value: s, selected: s === selected }, s)));
}

/** History: filters, entries (old → new, who, why), entry restore, point-in-time restore, version diff. */
export async function renderHistory(main, params, ctx) {
  const canWrite = ctx.session.can_write && ctx.writable;
  const f = {
    service: serviceSelect('hist-service', ctx.services, params.get('service') || '', 'All services'),
    key: h('input', { id: 'hist-key', type: 'text', value: params.get('key') || '', spellcheck: 'false' }),
    from: h('input', { id: 'hist-from', type: 'datetime-local', step: 1 }),
    to: h('input', { id: 'hist-to', type: 'datetime-local', step: 1 }),
  };
  const tbody = h('tbody', { id: 'history-rows' });
  const more = h('button', { type: 'button', id: 'history-more', hidden: true }, 'Load older entries');
  const restoreSelected = h('button', { type: 'button', id: 'restore-selected', disabled: true }, 'Restore selected…');
  const info = h('p', { class: 'muted', role: 'status', id: 'history-info' }, 'Loading history…');
  // The values written at first start are one row per setting of every
  // service: hidden unless asked for, so history opens on real changes.
  const seeds = h('input', { type: 'checkbox', id: 'hist-seed', onchange: () => load(false) });
  let nextBefore = null;
  const loaded = new Map(); // id → entry
  forgetFields();

  const filterForm = h('form', { class: 'filters', id: 'history-filters', onsubmit: (ev) => { ev.preventDefault(); load(false); } },
    h('div', {}, h('label', { for: 'hist-service' }, 'Service'), f.service),
    h('div', {}, h('label', { for: 'hist-key' }, 'Key'), f.key),
    h('div', {}, h('label', { for: 'hist-from' }, 'From'), f.from),
    h('div', {}, h('label', { for: 'hist-to' }, 'To'), f.to),
    h('div', { class: 'check' }, seeds, h('label', { for: 'hist-seed' }, 'Show the values written at first start')),
    h('div', { class: 'filter-actions' }, h('button', { type: 'submit', class: 'primary' }, 'Apply filters')));

  const diff = diffSection(ctx, params.get('service') || ctx.services[0]);
  replace(main,
    h('h1', {}, 'History'),
    filterForm,
    h('div', { class: 'table-wrap' }, h('table', { class: 'data stack', id: 'history-table' },
      h('caption', { class: 'visually-hidden' }, 'Changes, newest first'),
      h('thead', {}, h('tr', {},
        h('th', { scope: 'col' }, h('span', { class: 'visually-hidden' }, 'Select')),
        ['When', 'Service', 'Setting', 'Old → new', 'Who', 'Why', 'Kind', 'Restore'].map((t) => h('th', { scope: 'col' }, t)))),
      tbody)),
    h('div', { class: 'row-actions' }, more, restoreSelected, info),
    pointInTimeSection(ctx, canWrite),
    diff.el);

  restoreSelected.onclick = async () => {
    const picked = Array.from(tbody.querySelectorAll('input[type=checkbox]:checked'));
    const services = new Set(picked.map((c) => c.dataset.service));
    if (services.size !== 1) { toast('Pick entries of one service.', 'error'); return; }
    await restoreEntries([...services][0], picked.map((c) => loaded.get(Number(c.dataset.id))).filter(Boolean));
  };
  more.onclick = () => load(true);
  tbody.addEventListener('change', () => {
    const picked = Array.from(tbody.querySelectorAll('input[type=checkbox]:checked'));
    restoreSelected.disabled = !canWrite || picked.length === 0 || new Set(picked.map((c) => c.dataset.service)).size !== 1;
  });

  /**
   * Restores entries after showing what changes (field titles, now → after);
   * an entry identical to the current value writes nothing and says so.
   */
  async function restoreEntries(service, entries) {
    let current;
    let fields;
    try {
      [current, fields] = await Promise.all([api.get(`/services/${seg(service)}`), fieldsOf(service)]);
    } catch (e) { toast(`Could not read ${service}: ${e.message}`, 'error'); return; }
    const after = {};
    // The oldest picked entry of a key decides (its old value is what that key goes back to).
    for (const e of [...entries].sort((a, b) => b.id - a.id)) after[e.key] = e.old_value;
    const rows = changeRows(service, fields, current.config || {}, after);
    const ok = await confirmChange({
      title: `Restore in ${service}?`,
      rows,
      intro: `Put back the old value${entries.length === 1 ? '' : 's'} from history.`,
      nothingText: 'Nothing to restore: identical to the current configuration.',
      confirmLabel: 'Restore',
    });
    if (!ok) return;
    const ids = entries.map((e) => e.id);
    try {
      const r = await api.send('POST', '/history/restore', { service, history_entries: ids, reason: 'restored from the history view' });
      toast(`Restored ${r.keys_restored.join(', ')} in ${service}: version ${r.new_version}.`);
      ctx.serviceChanged(service);
      load(false);
    } catch (e) {
      toast(`Restore failed: ${e.message}`, 'error');
    }
  }

  async function load(append) {
    const q = new URLSearchParams({ limit: '50' });
    if (f.service.value) q.set('service', f.service.value);
    if (f.key.value.trim()) q.set('key', f.key.value.trim());
    const from = localToIso(f.from.value);
    const to = localToIso(f.to.value);
    if (from) q.set('start_date', from);
    if (to) q.set('end_date', to);
    if (append && nextBefore) q.set('before_id', String(nextBefore));
    let res;
    replace(info, 'Loading history…');
    try { res = await api.get(`/history?${q}`); } catch (e) { replace(info, `Could not load history: ${e.message}`); return; }
    if (!append) { tbody.replaceChildren(); loaded.clear(); hiddenSeeds = 0; }
    const metas = new Map(await Promise.all([...new Set(res.entries.map((e) => e.service))]
      .map(async (s) => [s, await fieldsOf(s)])));
    for (const e of res.entries) {
      if (e.change_type === 'seed' && !seeds.checked) { hiddenSeeds += 1; continue; }
      loaded.set(e.id, e);
      const field = (metas.get(e.service) || new Map()).get(e.key);
      const secret = isMask(e.old_value) || isMask(e.new_value) || Boolean(field && field.is_secret);
      tbody.append(h('tr', { dataset: { id: e.id, key: e.key, service: e.service } },
        h('td', { dataset: { label: 'Select' } }, h('input', {
          type: 'checkbox', 'aria-label': `Select ${e.service} ${e.key} change ${e.id}`,
          disabled: !canWrite || secret, dataset: { id: e.id, key: e.key, service: e.service },
        })),
        h('td', { dataset: { label: 'When' } }, timeEl(e.changed_at)),
        h('td', { dataset: { label: 'Service' } }, h('a', { href: `#/service/${seg(e.service)}/${seg(e.key)}` }, e.service)),
        h('td', { class: 'setting', dataset: { label: 'Setting' } }, fieldName(e.key, field)),
        h('td', { class: 'change', dataset: { label: 'Old → new' } }, secret
          ? h('span', { class: 'secret-change' }, 'changed (secret values are never shown)')
          : [h('code', { class: 'old' }, showValue(e.old_value)), ' → ', h('code', { class: 'new' }, showValue(e.new_value))]),
        h('td', { dataset: { label: 'Who' } }, e.changed_by),
        h('td', { dataset: { label: 'Why' } }, e.change_reason || ''),
        h('td', { dataset: { label: 'Kind' } }, `${e.change_type} · `,
          h('button', { type: 'button', class: 'link', 'aria-label': `Compare version ${e.version} of ${e.service} with the one before`,
            onclick: () => diff.compare(e.service, e.version) }, `v${e.version}`)),
        h('td', { dataset: { label: 'Restore' } },
          h('button', {
            type: 'button', class: 'small', disabled: !canWrite || secret,
            'aria-label': `Restore old value of ${e.key} (change ${e.id})`,
            onclick: () => restoreEntries(e.service, [e]),
          }, 'Restore'))));
    }
    nextBefore = res.next_before_id;
    more.hidden = !nextBefore;
    const seedNote = hiddenSeeds ? ` ${hiddenSeeds} value${hiddenSeeds === 1 ? '' : 's'} written at first start hidden (tick “Show the values written at first start”).` : '';
    replace(info, (tbody.children.length ? `${tbody.children.length} entries shown.` : 'No changes match these filters.') + seedNote);
  }
  let hiddenSeeds = 0;
  await load(false);
}

function pointInTimeSection(ctx, canWrite) {
  const at = h('input', { id: 'pit-time', type: 'datetime-local', step: 1, required: true, disabled: !canWrite });
  const svc = serviceSelect('pit-service', ctx.services, '', 'All services');
  svc.disabled = !canWrite;
  const reason = h('input', { id: 'pit-reason', type: 'text', maxlength: 500, disabled: !canWrite });
  const go = h('button', { type: 'submit', id: 'pit-restore', disabled: !canWrite }, 'Restore to this time…');
  return h('section', { class: 'card', 'aria-labelledby': 'pit-title' },
    h('h2', { id: 'pit-title' }, 'Point-in-time restore'),
    h('p', { class: 'muted' }, 'Every service (or one) goes back to the values it had at that moment. Secrets and environment overrides keep their current values.'),
    h('form', { class: 'filters', onsubmit: async (ev) => {
      ev.preventDefault();
      const iso = localToIso(at.value);
      if (!iso) { toast('Pick a date and time.', 'error'); return; }
      const target = svc.value || 'every service';
      const ok = await confirmDialog('Restore to a point in time?',
        [h('p', {}, `Restore ${target} to its values at ${new Date(iso).toLocaleString()} (${iso}).`),
          h('p', { class: 'muted' }, 'This saves new versions; nothing is deleted.')], 'Restore', 'danger');
      if (!ok) return;
      const body = { timestamp: iso };
      if (svc.value) body.service = svc.value;
      if (reason.value.trim()) body.reason = reason.value.trim();
      try {
        const r = await api.send('POST', '/restore', body);
        toast(r.services_restored.length ? `Restored ${r.services_restored.join(', ')}.` : 'Nothing to restore: the values were already the same.');
        for (const s of r.services_restored) ctx.serviceChanged(s);
      } catch (e) { toast(`Restore failed: ${e.message}`, 'error'); }
    } },
    h('div', {}, h('label', { for: 'pit-time' }, 'Date and time'), at),
    h('div', {}, h('label', { for: 'pit-service' }, 'Service'), svc),
    h('div', {}, h('label', { for: 'pit-reason' }, 'Reason'), reason),
    h('div', { class: 'filter-actions' }, go)));
}

/**
 * Compare two versions of a service. Opens on the version before the newest
 * against the newest; choosing a right-hand version moves the left one to
 * the version before it. Fields by title; a secret changed between the two
 * (known from history, its value never) says "changed".
 * Returns {el, compare(service, version)}.
 */
function diffSection(ctx, initial) {
  const svc = serviceSelect('diff-service', ctx.services, initial);
  const a = h('select', { id: 'diff-a' });
  const b = h('select', { id: 'diff-b' });
  const onlyChanges = h('input', { type: 'checkbox', id: 'diff-only', checked: true });
  const out = h('div', { id: 'diff-out', class: 'table-wrap' }, h('p', { class: 'muted' }, 'Loading versions…'));
  let versions = [];
  let fields = new Map();
  let secretVersions = []; // [{key, version}] of history entries that changed a secret
  /** Up to 500 versions; pages are cut by size too, so follow next_before_version. */
  async function allVersions(service) {
    const list = [];
    let before = null;
    do {
      const q = before === null ? '' : `&before_version=${before}`;
      const page = await api.get(`/services/${seg(service)}/versions?limit=${500 - list.length}${q}`);
      list.push(...page.versions);
      before = page.next_before_version;
    } while (before !== null && before !== undefined && list.length < 500);
    return list;
  }
  async function loadVersions(selected) {
    replace(out, h('p', { class: 'muted' }, 'Loading versions…'));
    const service = svc.value;
    try {
      const [v, meta] = await Promise.all([allVersions(service), fieldsOf(service)]);
      versions = v;
      fields = meta;
      const secrets = [...fields.values()].filter((f) => f.is_secret).map((f) => f.key);
      const hist = await Promise.all(secrets.map((k) => api.get(`/history?service=${seg(service)}&key=${seg(k)}&limit=1000`).catch(() => ({ entries: [] }))));
      secretVersions = hist.flatMap((r) => r.entries.map((e) => ({ key: e.key, version: e.version })));
    } catch (e) {
      replace(out, h('p', { class: 'error-text' }, `Could not load versions: ${e.message}`)); return;
    }
    const opts = () => versions.map((v) => h('option', { value: String(v.version) },
      `v${v.version} · ${new Date(v.created_at).toLocaleString()} · ${v.created_by}`));
    replace(a, opts());
    replace(b, opts());
    const pick = selected != null && versions.some((v) => v.version === selected) ? selected : (versions[0] || {}).version;
    b.value = pick == null ? '' : String(pick);
    previousOf();
    show();
  }
  /** The left version becomes the one just before the right one. */
  function previousOf() {
    const i = versions.findIndex((v) => String(v.version) === b.value);
    const prev = versions[i + 1];
    a.value = prev ? String(prev.version) : b.value;
  }
  function show() {
    const va = versions.find((v) => String(v.version) === a.value);
    const vb = versions.find((v) => String(v.version) === b.value);
    if (!va || !vb) { replace(out, h('p', { class: 'muted' }, 'No versions.')); return; }
    if (versions.length === 1) {
      replace(out, h('p', { id: 'diff-single' }, `${svc.value} has one version so far (v${vb.version}): there is nothing to compare it with.`));
      return;
    }
    const lo = Math.min(va.version, vb.version);
    const hi = Math.max(va.version, vb.version);
    const secretChanged = new Set(secretVersions.filter((e) => e.version > lo && e.version <= hi).map((e) => e.key));
    const keys = [...new Set([...Object.keys(va.config), ...Object.keys(vb.config), ...secretChanged])];
    const order = [...fields.keys()];
    keys.sort((x, y) => ((order.indexOf(x) + 1 || 1e9) - (order.indexOf(y) + 1 || 1e9)) || x.localeCompare(y));
    const rows = keys.map((k) => {
      const f = fields.get(k);
      const secret = Boolean(f && f.is_secret);
      const x = va.config[k];
      const y = vb.config[k];
      const changed = secret ? secretChanged.has(k) : JSON.stringify(x) !== JSON.stringify(y);
      if (onlyChanges.checked && !changed) return null;
      const cell = (v, cfg) => h('code', {}, k in cfg ? showValue(v) : '(absent)');
      return h('tr', { class: changed ? 'diff-changed' : '', dataset: { key: k } },
        h('th', { scope: 'row', dataset: { label: 'Setting' } }, fieldName(k, f)),
        secret
          ? h('td', { colspan: 2, class: 'secret-change', dataset: { label: 'Change' } }, changed ? 'changed (secret values are never shown)' : 'unchanged')
          : [h('td', { dataset: { label: `v${va.version}` } }, cell(x, va.config)), h('td', { dataset: { label: `v${vb.version}` } }, cell(y, vb.config))]);
    }).filter(Boolean);
    replace(out, h('table', { class: 'data diff stack', id: 'diff-table' },
      h('caption', {}, `${svc.value}: version ${va.version} (left) and ${vb.version} (right)`),
      h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Setting'), h('th', { scope: 'col' }, `v${va.version}`), h('th', { scope: 'col' }, `v${vb.version}`))),
      h('tbody', {}, rows.length ? rows : h('tr', {}, h('td', { colspan: 3 }, va.version === vb.version ? 'The same version on both sides.' : 'No differences.')))));
  }
  svc.onchange = () => loadVersions();
  a.onchange = show;
  b.onchange = () => { previousOf(); show(); };
  onlyChanges.onchange = show;
  loadVersions();
  const el = h('section', { class: 'card', id: 'diff', 'aria-labelledby': 'diff-title' },
    h('h2', { id: 'diff-title' }, 'Compare versions'),
    h('div', { class: 'filters' },
      h('div', {}, h('label', { for: 'diff-service' }, 'Service'), svc),
      h('div', {}, h('label', { for: 'diff-a' }, 'Left version'), a),
      h('div', {}, h('label', { for: 'diff-b' }, 'Right version'), b),
      h('div', { class: 'check' }, onlyChanges, h('label', { for: 'diff-only' }, 'Only differences'))),
    out);
  return {
    el,
    /** Shows `version` of `service` against the version before it. */
    async compare(service, version) {
      svc.value = service;
      await loadVersions(version);
      el.scrollIntoView({ block: 'start' });
      b.focus({ preventScroll: true });
    },
  };
}

/** Audit log (writers): who did what, when; filterable. */
export async function renderAudit(main, ctx) {
  if (!ctx.session.can_write) {
    replace(main, h('h1', {}, 'Audit log'), h('p', { class: 'notice' }, 'The audit log needs the config.write role.'));
    return;
  }
  const actor = h('input', { id: 'audit-actor', type: 'text', spellcheck: 'false' });
  const action = h('input', { id: 'audit-action', type: 'text', spellcheck: 'false', list: 'audit-actions', placeholder: 'prefix, e.g. config.' });
  const outcome = h('select', { id: 'audit-outcome' }, ['', 'ok', 'denied', 'error'].map((o) => h('option', { value: o }, o || 'any')));
  const from = h('input', { id: 'audit-from', type: 'datetime-local', step: 1 });
  const to = h('input', { id: 'audit-to', type: 'datetime-local', step: 1 });
  const tbody = h('tbody', { id: 'audit-rows' });
  const more = h('button', { type: 'button', hidden: true }, 'Load older entries');
  const info = h('p', { class: 'muted', role: 'status' });
  let nextBefore = null;
  replace(main,
    h('h1', {}, 'Audit log'),
    h('datalist', { id: 'audit-actions' }, ['config.', 'config.update', 'config.restore', 'config.profile', 'secret.reveal', 'access.denied', 'profile.', 'session.', 'database.rebuild']
      .map((a) => h('option', { value: a }))),
    h('form', { class: 'filters', onsubmit: (ev) => { ev.preventDefault(); load(false); } },
      h('div', {}, h('label', { for: 'audit-actor' }, 'Who'), actor),
      h('div', {}, h('label', { for: 'audit-action' }, 'Action'), action),
      h('div', {}, h('label', { for: 'audit-outcome' }, 'Outcome'), outcome),
      h('div', {}, h('label', { for: 'audit-from' }, 'From'), from),
      h('div', {}, h('label', { for: 'audit-to' }, 'To'), to),
      h('div', { class: 'filter-actions' }, h('button', { type: 'submit', class: 'primary' }, 'Apply filters'))),
    h('div', { class: 'table-wrap' }, h('table', { class: 'data', id: 'audit-table' },
      h('thead', {}, h('tr', {}, ['When', 'Who', 'Action', 'Target', 'Outcome', 'Detail'].map((t) => h('th', { scope: 'col' }, t)))),
      tbody)),
    h('div', { class: 'row-actions' }, more, info));
  more.onclick = () => load(true);
  async function load(append) {
    const q = new URLSearchParams({ limit: '100' });
    if (actor.value.trim()) q.set('actor', actor.value.trim());
    if (action.value.trim()) q.set('action', action.value.trim());
    if (outcome.value) q.set('outcome', outcome.value);
    const a = localToIso(from.value);
    const b = localToIso(to.value);
    if (a) q.set('start_date', a);
    if (b) q.set('end_date', b);
    if (append && nextBefore) q.set('before_id', String(nextBefore));
    let res;
    try { res = await api.get(`/audit?${q}`); } catch (e) { replace(info, `Could not load the audit log: ${e.message}`); return; }
    if (!append) tbody.replaceChildren();
    for (const e of res.entries) {
      tbody.append(h('tr', { class: e.outcome === 'ok' ? '' : 'row-warn' },
        h('td', {}, timeEl(e.at)), h('td', {}, e.actor), h('td', {}, h('code', {}, e.action)),
        h('td', {}, e.target || ''), h('td', {}, e.outcome),
        h('td', { class: 'detail' }, detailText(e.detail))));
    }
    nextBefore = res.next_before_id;
    more.hidden = !nextBefore;
    replace(info, tbody.children.length ? `${tbody.children.length} entries shown.` : 'No entries match these filters.');
  }
  await load(false);
}

/** An audit detail object as `key: value · key: value` (arrays joined). */
function detailText(d) {
  if (d === null || d === undefined) return '';
  if (typeof d !== 'object') return String(d);
  return Object.entries(d)
    .filter(([, v]) => v !== null && v !== undefined)
    .map(([k, v]) => `${k}: ${typeof v === 'string' ? v : Array.isArray(v) ? v.join(', ') : JSON.stringify(v)}`)
    .join(' · ');
}

/** The cog panel: system status, profiles, display and session. */
export async function renderSettings(main, ctx) {
  const canWrite = ctx.session.can_write && ctx.writable;
  const health = ctx.health || {};
  const statusRows = [
    ['Overall', health.ok ? 'healthy' : 'degraded'],
    ['Operational mode', health.operational_mode],
    ['Database', health.database_status],
    ['Config epoch', health.config_epoch],
    ['Schema version', health.schema_version],
    ['Last-known-good cache', health.lkg_cache_valid ? 'valid' : 'not valid'],
    ['MQTT', health.mqtt_connected ? 'connected' : (health.mqtt_configured === false ? 'not configured' : 'disconnected')],
    ['Backups (Litestream)', health.litestream_status],
    ['Last backup', health.last_backup || '—'],
    ['Last event', health.event || '—'],
    ['Version', health.manager_version],
    ['Uptime', health.uptime_seconds != null ? `${Math.round(health.uptime_seconds / 60)} min` : '—'],
  ];
  const profileBody = h('tbody', { id: 'profile-rows' });
  const pname = h('input', { id: 'profile-name', type: 'text', maxlength: 100, required: true, disabled: !canWrite, spellcheck: 'false' });
  const pdesc = h('input', { id: 'profile-desc', type: 'text', maxlength: 1000, disabled: !canWrite });
  const advanced = h('input', { type: 'checkbox', id: 'settings-advanced', checked: ctx.advanced, role: 'switch',
    onchange: () => ctx.setAdvanced(advanced.checked) });

  replace(main,
    h('h1', {}, 'Global settings'),
    h('section', { class: 'card', 'aria-labelledby': 'status-title' },
      h('h2', { id: 'status-title' }, 'System status'),
      h('dl', { class: 'status-list', id: 'status-list' }, statusRows.map(([k, v]) => [h('dt', {}, k), h('dd', {}, v == null ? '—' : String(v))])),
      health.err ? h('p', { class: 'error-text' }, health.err) : null),
    h('section', { class: 'card', 'aria-labelledby': 'profiles-title' },
      h('h2', { id: 'profiles-title' }, 'Profiles'),
      h('p', { class: 'muted' }, 'A profile is a named snapshot of every service. Activating one sets every service to its values at once (as new versions; secrets are not part of profiles).'),
      h('div', { class: 'table-wrap' }, h('table', { class: 'data', id: 'profile-table' },
        h('thead', {}, h('tr', {}, ['Name', 'Description', 'Saved', 'By', 'Actions'].map((t) => h('th', { scope: 'col' }, t)))),
        profileBody)),
      h('form', { class: 'filters', id: 'profile-form', onsubmit: async (ev) => {
        ev.preventDefault();
        const name = pname.value.trim();
        if (!name) { pname.focus(); return; }
        const exists = Array.from(profileBody.querySelectorAll('tr')).some((tr) => tr.dataset.name === name);
        if (exists && !(await confirmDialog('Replace profile?', `A profile named “${name}” exists. Replace it with the current state?`, 'Replace', 'danger'))) return;
        try {
          await api.send('POST', '/profiles', { profile_name: name, description: pdesc.value.trim() || undefined });
          toast(`Saved profile “${name}”.`);
          pname.value = '';
          pdesc.value = '';
          loadProfiles();
        } catch (e) { toast(`Could not save the profile: ${e.message}`, 'error'); }
      } },
      h('div', {}, h('label', { for: 'profile-name' }, 'Save current state as'), pname),
      h('div', {}, h('label', { for: 'profile-desc' }, 'Description'), pdesc),
      h('div', { class: 'filter-actions' }, h('button', { type: 'submit', class: 'primary', id: 'profile-save', disabled: !canWrite }, 'Save profile')))),
    h('section', { class: 'card', 'aria-labelledby': 'display-title' },
      h('h2', { id: 'display-title' }, 'Display'),
      h('div', { class: 'check' }, advanced, h('label', { for: 'settings-advanced' }, 'Show advanced settings (also the “Advanced” switch at the top)'))),
    h('section', { class: 'card', 'aria-labelledby': 'session-title' },
      h('h2', { id: 'session-title' }, 'Session'),
      h('p', {}, `Signed in as ${ctx.session.name} (${ctx.session.role}). The session ends at `, timeEl(ctx.session.expires_at),
        ` or after ${Math.round(ctx.session.idle_timeout_seconds / 60)} minutes without activity.`),
      h('button', { type: 'button', onclick: ctx.logout }, 'Log out')));

  async function loadProfiles() {
    let res;
    try { res = await api.get('/profiles'); } catch (e) {
      replace(profileBody, h('tr', {}, h('td', { colspan: 5 }, `Could not load profiles: ${e.message}`))); return;
    }
    replace(profileBody, res.profiles.length ? res.profiles.map((p) => h('tr', { dataset: { name: p.profile_name } },
      h('td', {}, h('strong', {}, p.profile_name)),
      h('td', {}, p.description || ''),
      h('td', {}, timeEl(p.updated_at || p.created_at)),
      h('td', {}, p.updated_by || p.created_by || ''),
      h('td', { class: 'actions' },
        h('button', { type: 'button', class: 'small', disabled: !canWrite, 'aria-label': `Activate profile ${p.profile_name}`, dataset: { action: 'activate' },
          onclick: () => activate(p.profile_name) }, 'Activate…'),
        h('button', { type: 'button', class: 'small danger', disabled: !canWrite, 'aria-label': `Delete profile ${p.profile_name}`, dataset: { action: 'delete' },
          onclick: () => remove(p.profile_name) }, 'Delete…'))))
      : h('tr', {}, h('td', { colspan: 5 }, 'No profiles yet.')));
  }
  /**
   * Activates a profile after showing what changes in every service (a key
   * the profile does not hold goes back to its default); nothing to change
   * writes nothing.
   */
  async function activate(name) {
    let rows = [];
    try {
      const profile = await api.get(`/profiles/${seg(name)}`);
      const parts = await Promise.all(Object.entries(profile.config_snapshot || {}).map(async ([service, snap]) => {
        const [current, fields] = await Promise.all([api.get(`/services/${seg(service)}`), fieldsOf(service)]);
        const after = {};
        for (const [key, f] of fields) {
          if (f.is_secret) continue; // profiles hold no secrets; activation keeps them
          if (key in snap) after[key] = snap[key];
          else if (f.has_default) after[key] = f.default;
        }
        for (const key of Object.keys(snap)) if (!fields.has(key)) after[key] = snap[key];
        return changeRows(service, fields, current.config || {}, after);
      }));
      rows = parts.flat();
    } catch (e) { toast(`Could not read the profile: ${e.message}`, 'error'); return; }
    const ok = await confirmChange({
      title: `Activate profile “${name}”?`,
      rows,
      withService: true,
      intro: 'Every service is set to the values saved in this profile, in one step; each changed service gets a new version and is notified. Unsaved edits in open forms are not part of this.',
      nothingText: `Nothing to change: every service already has the values of “${name}”.`,
      confirmLabel: 'Activate',
    });
    if (!ok) return;
    try {
      const r = await api.send('PUT', `/profiles/${seg(name)}/activate`);
      toast(r.services_updated.length ? `Activated “${name}”: ${r.services_updated.join(', ')} updated.` : `Activated “${name}”: nothing changed.`);
      for (const s of r.services_updated) ctx.serviceChanged(s);
    } catch (e) { toast(`Could not activate: ${e.message}`, 'error'); }
  }
  async function remove(name) {
    if (!(await confirmDialog(`Delete profile “${name}”?`, 'The profile is removed. Service configurations are not changed.', 'Delete', 'danger'))) return;
    try { await api.send('DELETE', `/profiles/${seg(name)}`); toast(`Deleted “${name}”.`); loadProfiles(); } catch (e) { toast(`Could not delete: ${e.message}`, 'error'); }
  }
  await loadProfiles();
  $('#profile-name')?.setAttribute('aria-describedby', 'profiles-title');
}
