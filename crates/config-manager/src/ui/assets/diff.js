// What a bulk change will do, shown before it is applied (issue 26): a
// restore from history, a profile activation. Rows name fields by their
// titles (the key in muted text); secrets say "changed", never a value.
// Also the per-service field metadata the history view needs for titles.

import { h, showValue, dialog } from './dom.js';
import { api, seg } from './api.js';

const SECRET_MASK = '********';

/** Field metadata per service, loaded once per page view: service → Promise<Map key → field>. */
const metaCache = new Map();

/** The fields of a service (title, is_secret, default) by key; an empty map when it cannot load. */
export function fieldsOf(service) {
  if (!metaCache.has(service)) {
    metaCache.set(service, api.get(`/services/${seg(service)}?include_fields=true`)
      .then((d) => new Map((d.fields || []).map((f) => [f.key, f])))
      .catch(() => { metaCache.delete(service); return new Map(); }));
  }
  return metaCache.get(service);
}

/** Forgets loaded metadata (a schema may have changed). */
export function forgetFields() { metaCache.clear(); }

/** A field's name as shown: its title, then the key in muted text. */
export function fieldName(key, field) {
  const title = field && field.title && field.title !== key ? field.title : null;
  return title ? [h('span', { class: 'field-title' }, title), ' ', h('code', { class: 'key muted' }, key)] : h('code', {}, key);
}

/** A value in a diff: secrets never show one. */
export function shownValue(v, secret) {
  if (secret) return v === null || v === undefined ? 'not set' : 'set (hidden)';
  return v === undefined ? '(default)' : showValue(v);
}

const same = (a, b) => JSON.stringify(a ?? null) === JSON.stringify(b ?? null);

/**
 * The rows of a change: for each key, the value now and the value after.
 * `fields`: Map key → field; `now`/`after`: objects (a key missing from
 * `after` is left out). Unchanged keys are dropped.
 */
export function changeRows(service, fields, now, after) {
  const rows = [];
  for (const key of Object.keys(after)) {
    const f = fields.get(key);
    const secret = Boolean(f && f.is_secret);
    if (secret || !same(now[key], after[key])) rows.push({ service, key, field: f, secret, now: now[key], after: after[key] });
  }
  return rows;
}

/** A table of change rows: field (title, key), now, after. Secrets: "changed". */
export function changeTable(rows, withService) {
  return h('div', { class: 'table-wrap' }, h('table', { class: 'data diff stack', id: 'change-table' },
    h('thead', {}, h('tr', {},
      withService ? h('th', { scope: 'col' }, 'Service') : null,
      h('th', { scope: 'col' }, 'Setting'), h('th', { scope: 'col' }, 'Now'), h('th', { scope: 'col' }, 'After'))),
    h('tbody', {}, rows.map((r) => h('tr', { dataset: { key: r.key } },
      withService ? h('td', { dataset: { label: 'Service' } }, r.service) : null,
      h('th', { scope: 'row', dataset: { label: 'Setting' } }, fieldName(r.key, r.field)),
      r.secret
        ? h('td', { colspan: 2, class: 'secret-change', dataset: { label: 'Change' } }, 'changed (secret values are never shown)')
        : [h('td', { dataset: { label: 'Now' } }, h('code', { class: 'old' }, shownValue(r.now))),
          h('td', { dataset: { label: 'After' } }, h('code', { class: 'new' }, shownValue(r.after)))])))));
}

/**
 * Asks before a bulk change, showing what it changes. With no change it
 * says so (`nothingText`) and offers only Close: nothing is written.
 * Resolves true when confirmed.
 */
export async function confirmChange({ title, rows, intro, nothingText, confirmLabel, withService }) {
  if (!rows.length) {
    await dialog({
      title,
      body: h('p', { id: 'nothing-to-change' }, nothingText),
      actions: [{ label: 'Close', value: 'close', kind: 'primary' }],
    });
    return false;
  }
  const n = rows.length;
  const r = await dialog({
    title,
    body: [
      intro ? h('p', {}, intro) : null,
      h('p', { id: 'change-count' }, `${n} setting${n === 1 ? '' : 's'} will change:`),
      changeTable(rows, withService),
      h('p', { class: 'muted' }, 'This saves a new version; history is never rewritten.'),
    ],
    actions: [{ label: 'Cancel', value: null }, { label: confirmLabel, value: 'yes', kind: 'danger' }],
  });
  return r !== null;
}

/** True when a history value is the secret mask (the entry changed a secret). */
export const isMask = (v) => v === SECRET_MASK;
