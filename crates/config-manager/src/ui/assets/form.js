// The schema-driven form of one service. Everything comes from
// GET /services/{s}?include_fields=true: `fields` (type, ranges, enum, help,
// secret, env override), `config`, `sources`, `read_only_keys`, `version`.
// Client-side checks mirror the schema keywords (except `pattern`, see
// `validate`) so mistakes show while typing; the server validates again and its 422 errors land on the same
// fields. Saving sends PATCH with only the changed keys and the version the
// form was built from (optimistic locking).

import { h, replace, showValue, timeEl, toast, dialog } from './dom.js';
import { api, seg } from './api.js';

export const SECRET_MASK = '********';

const SOURCE_HELP = {
  env: 'Set by an environment variable of config-manager; read-only here.',
  database: 'Saved in the configuration database.',
  default: 'Not saved; the schema default applies.',
  cache: 'config-manager is read-only: this value comes from its last-known-good cache.',
};

/** A field for a key that has no schema (services without a schema). */
function freeField(key, value) {
  return {
    key, type: 'json', complexity: 'simple', description: 'Not described by a schema (JSON value).',
    help_text: '', examples: [], is_secret: false, default: null, nullable: true,
    title: key, enum_values: null, env_var: null, service_env: [], unused: false,
  };
}

const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);
const chars = (s) => Array.from(s).length;
const fmtNum = (n) => (Number.isInteger(n) ? String(n) : String(Number(n.toPrecision(12))));

/** Checks a value against the field's schema keywords; returns a message or null. */
export function validate(f, value) {
  if (value === null) return f.nullable || f.is_secret ? null : 'A value is required.';
  switch (f.type) {
    case 'boolean':
      return typeof value === 'boolean' ? null : 'Must be true or false.';
    case 'integer':
    case 'number': {
      if (typeof value !== 'number' || !Number.isFinite(value)) return 'Enter a number.';
      if (f.type === 'integer' && !Number.isInteger(value)) return 'Enter a whole number.';
      if (f.minimum != null && value < f.minimum) return `Must be at least ${fmtNum(f.minimum)}.`;
      if (f.maximum != null && value > f.maximum) return `Must be at most ${fmtNum(f.maximum)}.`;
      if (f.exclusive_minimum != null && value <= f.exclusive_minimum) return `Must be greater than ${fmtNum(f.exclusive_minimum)}.`;
      if (f.exclusive_maximum != null && value >= f.exclusive_maximum) return `Must be less than ${fmtNum(f.exclusive_maximum)}.`;
      return null;
    }
    case 'enum':
      return (f.enum_values || []).some((e) => same(e, value)) ? null : 'Choose one of the listed values.';
    case 'array':
      return Array.isArray(value) ? null : 'Must be a JSON array.';
    case 'object':
      return value && typeof value === 'object' && !Array.isArray(value) ? null : 'Must be a JSON object.';
    case 'json':
      return null;
    default: { // string, path, secret
      if (typeof value !== 'string') return 'Must be text.';
      if (f.min_length != null && chars(value) < f.min_length) {
        return f.min_length === 1 ? 'Must not be empty.' : `Must be at least ${f.min_length} characters.`;
      }
      if (f.max_length != null && chars(value) > f.max_length) return `Must be at most ${f.max_length} characters.`;
      // `pattern` is not run here: a schema pattern such as ^(a+)+$ makes a
      // backtracking JavaScript RegExp freeze the tab on each keystroke. The
      // server checks it (its regex engine runs in linear time) and its 422
      // lands on the field when saving.
      if (f.format === 'uri') {
        try { new URL(value); } catch { return 'Must be a full URL (for example https://host/path).'; }
      }
      return null;
    }
  }
}

/** "TTS provider is elevenlabs" for an `x-show-when` (`titles`: the form's fields). */
function showWhenText(cond, titleOf) {
  const values = cond.equals.map((v) => (v === true ? 'on' : v === false ? 'off' : v === null ? '(none)' : String(v)));
  return `${titleOf ? titleOf(cond.field) : cond.field} is ${values.join(' or ')}`;
}

/** Text describing the accepted range or length, for the hint line. */
function constraintText(f) {
  const parts = [];
  if (f.type === 'integer' || f.type === 'number') {
    const lo = f.minimum ?? f.exclusive_minimum;
    const hi = f.maximum ?? f.exclusive_maximum;
    if (lo != null && hi != null) parts.push(`${fmtNum(lo)}–${fmtNum(hi)}`);
    else if (lo != null) parts.push(`${f.exclusive_minimum != null ? '>' : '≥'} ${fmtNum(lo)}`);
    else if (hi != null) parts.push(`${f.exclusive_maximum != null ? '<' : '≤'} ${fmtNum(hi)}`);
  }
  if (f.max_length != null && f.type !== 'enum') parts.push(`up to ${f.max_length} characters`);
  if (f.pattern) parts.push(`must match ${f.pattern} (checked on save)`);
  if (f.has_default && !f.is_secret) parts.push(`default ${showValue(f.default)}`);
  return parts.join(' · ');
}

/**
 * Builds the form of one service.
 * ctx: {canWrite, writable, advanced, flash, onDirty(bool), reload(opts), requestAdvanced()}
 * Returns {el, isDirty(), setAdvanced(on), focusField(key)}.
 */
export function serviceForm(data, ctx) {
  const name = data.service;
  const readOnlyKeys = new Set(data.read_only_keys || []);
  const fields = (data.fields || []).slice();
  const known = new Set(fields.map((f) => f.key));
  const titleOf = (k) => (fields.find((x) => x.key === k) || {}).title || k;
  for (const key of Object.keys(data.config)) if (!known.has(key)) fields.push(freeField(key, data.config[key]));
  let editable = ctx.canWrite && ctx.writable;
  // A save refused because the manager turned read-only: the message stays
  // and Save stays off until the manager is writable again (issue 26).
  let blocked = null;
  const controls = new Map();

  const status = h('p', { class: 'save-status', id: 'save-status', role: 'status', 'aria-live': 'polite', tabindex: '-1' });
  const problems = h('ul', { class: 'form-problems', id: 'form-problems', role: 'alert' });
  const saveButton = h('button', { type: 'submit', class: 'primary', id: 'save-button', disabled: true }, 'Save changes');
  const discardButton = h('button', { type: 'button', id: 'discard-button', disabled: true, onclick: discard }, 'Discard');
  const reason = h('input', {
    id: 'change-reason', type: 'text', maxlength: 500, autocomplete: 'off',
    placeholder: 'optional, kept in history', readOnly: !editable,
  });

  const rows = fields.map((f) => buildRow(f));
  // Keys shown although their condition is off: the operator asked for
  // them (a search result, a link), so they stay until the form is rebuilt.
  const forced = new Set();
  let advancedOn = ctx.advanced;
  const sections = groupRows(rows);
  const shownCount = h('p', { class: 'muted', id: 'field-count' });
  const form = h('form', { id: 'service-form', novalidate: true, onsubmit: (ev) => { ev.preventDefault(); save(); } },
    sections.map((sec) => sec.el),
    problems,
    h('div', { class: 'save-bar' },
      h('label', { for: 'change-reason' }, 'Reason'),
      reason, saveButton, discardButton, status));

  let notice = null;
  if (!ctx.canWrite) notice = h('p', { class: 'notice', id: 'readonly-note' }, 'Your token has the config.read role: you can look, not change. Secrets stay masked.');
  else if (!ctx.writable) notice = h('p', { class: 'notice notice-danger' }, 'config-manager is read-only right now (see the banner); changes cannot be saved.');

  const el = h('section', { class: 'service', 'aria-labelledby': 'service-title' },
    h('div', { class: 'service-head' },
      h('h1', { id: 'service-title' }, name),
      h('p', { class: 'muted' }, `Version ${data.version} · updated `, timeEl(data.updated_at),
        ctx.servedFromCache ? ' · served from the last-known-good cache' : ''),
      shownCount),
    notice,
    form);

  setAdvanced(ctx.advanced);
  if (ctx.flash) showStatus(ctx.flash, 'ok');
  refresh();

  /**
   * Sections from the schema's `x-group`, in the order each first appears;
   * fields without one come first, unnamed. A named section is a fieldset
   * with its legend (a group screen readers announce).
   */
  function groupRows(list) {
    const byName = new Map();
    for (const c of list) {
      const name = c.f.group || '';
      if (!byName.has(name)) byName.set(name, []);
      byName.get(name).push(c);
    }
    if (byName.size === 1 && byName.has('')) {
      return [{ name: '', rows: list, el: h('div', { class: 'fields' }, list.map((c) => c.row)) }];
    }
    const named = [...byName.entries()].sort(([a], [b]) => (a === '' ? -1 : b === '' ? 1 : 0));
    return named.map(([name, members], i) => {
      const fieldsEl = h('div', { class: 'fields' }, members.map((c) => c.row));
      const el = name === ''
        ? h('div', { class: 'section section-unnamed' }, fieldsEl)
        : h('fieldset', { class: 'section', id: `section-${i}`, dataset: { group: name } }, h('legend', {}, name), fieldsEl);
      return { name, rows: members, el };
    });
  }

  /** The value a control holds now (the original while it does not parse). */
  function currentValue(key) {
    const c = controls.get(key);
    if (!c) return undefined;
    const r = c.read();
    return r.error ? c.original : r.value;
  }

  /**
   * Shows and hides rows: the simple view hides advanced fields, and a field
   * with `x-show-when` shows only while its controlling field (as edited
   * now) has one of the listed values. Display only: a hidden field keeps
   * its value and is saved as-is.
   */
  function applyVisibility() {
    let shown = 0;
    let conditional = 0;
    for (const c of controls.values()) {
      const cond = c.f.show_when;
      const off = Boolean(cond) && !forced.has(c.f.key)
        && !cond.equals.some((v) => same(v, currentValue(cond.field)));
      const hide = (!advancedOn && c.f.complexity === 'advanced') || off;
      c.row.hidden = hide;
      c.row.dataset.condition = cond ? (off ? 'off' : 'on') : '';
      if (!hide) shown += 1;
      else if (off && (advancedOn || c.f.complexity !== 'advanced')) conditional += 1;
    }
    for (const sec of sections) sec.el.hidden = sec.rows.every((c) => c.row.hidden);
    const cond = conditional ? ` ${conditional} more appl${conditional === 1 ? 'ies' : 'y'} only with other choices above.` : '';
    replace(shownCount, advancedOn
      ? `Showing ${shown} of ${controls.size} settings.${cond}`
      : `Showing ${shown} of ${controls.size} settings (simple view; switch on Advanced for the rest).${cond}`);
  }

  function buildRow(f) {
    const id = `f-${f.key}`;
    const descId = `d-${f.key}`;
    const errId = `e-${f.key}`;
    const helpId = `h-${f.key}`;
    const original = Object.prototype.hasOwnProperty.call(data.config, f.key) ? data.config[f.key] : null;
    // In read-only fallback the values come from the last-known-good cache,
    // whatever their source in the database was.
    const source = ctx.servedFromCache ? 'cache' : ((data.sources || {})[f.key] || 'default');
    const fromEnv = readOnlyKeys.has(f.key);
    const canEdit = editable && !fromEnv;
    const describedBy = `${descId} ${errId}`;
    const c = { f, original, serverError: null, secretTouched: false };

    const errorEl = h('p', { class: 'field-error', id: errId });
    let input;
    let extra = null;
    switch (f.is_secret ? 'secret' : f.type) {
      case 'boolean':
        input = h('input', { id, type: 'checkbox', role: 'switch', checked: original === true, disabled: !canEdit, 'aria-describedby': describedBy });
        c.read = () => ({ value: input.checked });
        c.set = (v) => { input.checked = v === true; };
        break;
      case 'enum': {
        const values = (f.enum_values || []).slice();
        if (!values.some((v) => same(v, original)) && original !== null) values.push(original);
        input = h('select', { id, disabled: !canEdit, 'aria-describedby': describedBy },
          values.map((v) => h('option', { value: JSON.stringify(v), selected: same(v, original) }, v === null ? '(none)' : String(v))));
        c.read = () => ({ value: JSON.parse(input.value) });
        c.set = (v) => { input.value = JSON.stringify(v); };
        break;
      }
      case 'integer':
      case 'number':
        input = h('input', {
          id, type: 'number', inputmode: f.type === 'integer' ? 'numeric' : 'decimal',
          step: f.type === 'integer' ? '1' : 'any',
          min: f.minimum ?? undefined, max: f.maximum ?? undefined,
          value: original === null ? '' : String(original), readOnly: !canEdit, 'aria-describedby': describedBy,
        });
        c.read = () => {
          if (input.validity.badInput) return { error: 'Enter a number.' };
          const t = input.value.trim();
          if (t === '') return { value: null };
          return { value: Number(t) };
        };
        c.set = (v) => { input.value = v === null ? '' : String(v); };
        break;
      case 'secret': {
        const isSet = original !== null;
        input = h('input', {
          id, type: 'password', autocomplete: 'new-password', spellcheck: 'false',
          placeholder: isSet ? `${SECRET_MASK} (stored; type to replace)` : 'not set',
          readOnly: !canEdit, 'aria-describedby': describedBy,
        });
        const revealed = h('output', { class: 'revealed', id: `r-${f.key}`, for: id, hidden: true });
        const hideButton = h('button', { type: 'button', hidden: true, onclick: () => {
          replace(revealed); revealed.hidden = true; hideButton.hidden = true; revealButton.hidden = false;
        } }, 'Hide');
        const revealButton = h('button', {
          type: 'button', class: 'reveal', id: `reveal-${f.key}`,
          // Hidden in read-only fallback too: secrets are not in the LKG cache.
          hidden: !editable || !isSet || original !== SECRET_MASK,
          'aria-label': `Reveal ${f.title || f.key}`,
          onclick: () => reveal(f, revealed, revealButton, hideButton),
        }, 'Reveal');
        extra = h('div', { class: 'secret-tools' }, revealButton, hideButton, revealed);
        c.read = () => (input.value === '' ? { value: original, unchanged: true } : { value: input.value });
        c.set = () => { input.value = ''; };
        break;
      }
      case 'array':
      case 'object':
      case 'json':
        input = h('textarea', {
          id, rows: 3, spellcheck: 'false', class: 'mono', readOnly: !canEdit, 'aria-describedby': describedBy,
        });
        input.value = original === null ? '' : JSON.stringify(original, null, 2);
        c.read = () => {
          const t = input.value.trim();
          if (t === '') return { value: null };
          try { return { value: JSON.parse(t) }; } catch { return { error: 'Not valid JSON.' }; }
        };
        c.set = (v) => { input.value = v === null ? '' : JSON.stringify(v, null, 2); };
        break;
      default: // string, path
        // Multi-line text (a prompt template) needs a textarea: an <input>
        // drops the line breaks, and the form would read as changed.
        if ([original, f.default].some((v) => typeof v === 'string' && v.includes('\n'))) {
          input = h('textarea', {
            id, rows: 4, spellcheck: 'false', readOnly: !canEdit, 'aria-describedby': describedBy,
          });
          input.value = original === null ? '' : String(original);
          c.read = () => ({ value: input.value === '' && f.nullable ? null : input.value });
          c.set = (v) => { input.value = v === null ? '' : String(v); };
          break;
        }
        input = h('input', {
          id, type: 'text', value: original === null ? '' : String(original), spellcheck: 'false',
          class: f.type === 'path' ? 'mono' : '', readOnly: !canEdit, 'aria-describedby': describedBy,
          placeholder: f.nullable ? 'empty = not set' : (f.examples && f.examples.length ? `e.g. ${f.examples[0]}` : ''),
        });
        c.read = () => ({ value: input.value === '' && f.nullable ? null : input.value });
        c.set = (v) => { input.value = v === null ? '' : String(v); };
    }
    if (!canEdit) input.setAttribute('aria-readonly', 'true');
    c.input = input;
    c.errorEl = errorEl;
    input.addEventListener('input', () => { c.serverError = null; refresh(); });
    input.addEventListener('change', () => { c.serverError = null; refresh(); });

    const helpBits = [];
    if (f.help_text && f.help_text !== f.description) helpBits.push(h('p', {}, f.help_text));
    if (f.examples && f.examples.length) helpBits.push(h('p', {}, 'Examples: ', f.examples.map((e) => showValue(e)).join(', ')));
    if (f.env_var) helpBits.push(h('p', {}, 'Environment override: ', h('code', {}, f.env_var)));
    if (f.service_env && f.service_env.length) helpBits.push(h('p', {}, 'The service reads: ', h('code', {}, f.service_env.join(', '))));
    if (f.type === 'path') helpBits.push(h('p', {}, 'A file system path on the machine that runs the service.'));
    helpBits.push(h('p', {}, 'Key: ', h('code', {}, f.key), ` · type ${f.type}`));
    const help = h('div', { class: 'help-pop', id: helpId, role: 'note', hidden: true }, helpBits);
    const helpButton = h('button', {
      type: 'button', class: 'help', 'aria-expanded': 'false', 'aria-controls': helpId,
      'aria-label': `Help: ${f.title || f.key}`, title: f.help_text || f.description || f.key,
      onclick: () => {
        const open = help.hidden;
        help.hidden = !open;
        helpButton.setAttribute('aria-expanded', String(open));
      },
    }, '?');
    help.addEventListener('keydown', (ev) => { if (ev.key === 'Escape') { help.hidden = true; helpButton.focus(); } });

    const desc = [f.description, constraintText(f)].filter(Boolean).join(' · ');
    const noteId = `n-${f.key}`;
    const notes = h('p', { class: 'instance-note', id: noteId, hidden: true });
    input.setAttribute('aria-describedby', `${describedBy} ${noteId}`);
    const when = f.show_when ? h('p', { class: 'field-cond muted' }, `Applies when ${showWhenText(f.show_when, titleOf)}.`) : null;
    const row = h('div', {
      class: `field field-${f.type}${f.complexity === 'advanced' ? ' field-advanced' : ''}`,
      id: `field-${f.key}`, dataset: { key: f.key, complexity: f.complexity },
    },
    h('div', { class: 'field-label' },
      h('label', { for: id }, f.title || f.key),
      // A badge only where the value does not simply come from the database.
      source === 'database' ? null
        : h('span', { class: `badge source-${source}`, title: SOURCE_HELP[source] || '' }, fromEnv ? 'env · read-only' : source),
      f.complexity === 'advanced' ? h('span', { class: 'badge badge-adv' }, 'advanced') : null,
      f.unused ? h('span', {
        class: 'badge badge-unused',
        title: 'Kept for compatibility: no code of the service reads this setting, so changing it has no effect.',
      }, 'not read by the service') : null,
      h('code', { class: 'key' }, f.key)),
    h('div', { class: 'field-input' },
      input, extra,
      h('p', { class: 'field-desc', id: descId }, desc, fromEnv && f.env_var ? ` · set by ${f.env_var}` : ''),
      when,
      notes,
      // After the input, so Tab goes from one input to the next (issue 26).
      helpButton,
      help,
      errorEl));
    c.row = row;
    c.notes = notes;
    controls.set(f.key, c);
    return c;
  }

  /** Reads every control: changed keys, and whether anything is invalid. */
  function collect() {
    const changes = {};
    let invalid = 0;
    for (const [key, c] of controls) {
      const r = c.read();
      let error = r.error || null;
      if (!error && !r.unchanged) error = validate(c.f, r.value);
      if (!error) error = c.serverError;
      c.error = error;
      if (!error && !r.unchanged && !same(r.value, c.original)) changes[key] = r.value;
      if (error) invalid += 1;
    }
    return { changes, invalid };
  }

  function refresh() {
    const { changes, invalid } = collect();
    applyVisibility();
    for (const c of controls.values()) {
      replace(c.errorEl, c.error || '');
      c.row.classList.toggle('invalid', Boolean(c.error));
      c.row.classList.toggle('changed', Object.prototype.hasOwnProperty.call(changes, c.f.key));
      if (c.error) c.input.setAttribute('aria-invalid', 'true');
      else c.input.removeAttribute('aria-invalid');
    }
    const n = Object.keys(changes).length;
    saveButton.disabled = !editable || Boolean(blocked) || invalid > 0 || n === 0;
    discardButton.disabled = n === 0 && invalid === 0;
    if (blocked) showStatus(blocked, 'error');
    else if (invalid) showStatus(`Fix ${invalid} invalid field${invalid > 1 ? 's' : ''} to save.`, 'error');
    else if (n) showStatus(`${n} unsaved change${n > 1 ? 's' : ''}.`, 'pending');
    else if (status.dataset.kind !== 'ok') showStatus('', '');
    ctx.onDirty(n > 0);
    return { changes, invalid };
  }

  function showStatus(text, kind) {
    status.dataset.kind = kind;
    status.className = `save-status ${kind ? `status-${kind}` : ''}`;
    replace(status, text);
  }

  function discard() {
    for (const c of controls.values()) { c.serverError = null; c.set(c.original); }
    replace(problems);
    showStatus('', '');
    refresh();
  }

  async function save() {
    const { changes, invalid } = refresh();
    if (invalid || !Object.keys(changes).length || !editable) return;
    const body = { config: changes, version: data.version };
    if (reason.value.trim()) body.reason = reason.value.trim();
    saveButton.disabled = true;
    showStatus('Saving…', 'pending');
    replace(problems);
    try {
      const r = await api.send('PATCH', `/services/${seg(name)}`, body);
      ctx.onDirty(false);
      toast(`Saved ${name}: version ${r.version}.`);
      await ctx.reload({ flash: `Saved version ${r.version}.`, savedVersion: r.version });
    } catch (e) {
      if (e.status === 409) return conflict(e, changes);
      if (e.status === 422 && e.errors.length) return serverErrors(e.errors);
      if (e.status === 503) {
        blocked = `Not saved: ${e.message} Your changes are kept here; save again once config-manager is writable.`;
      }
      refresh();
      showStatus(blocked || `Not saved: ${e.message}`, 'error');
      status.focus();
      if (e.status === 503 && ctx.onUnavailable) ctx.onUnavailable();
    }
  }

  /** The manager's mode changed under an edited form. */
  function setWritable(on) {
    editable = ctx.canWrite && on;
    if (on) blocked = null;
    refresh();
  }

  /** The change arriving at the instances, at the Save button. */
  function showArrival(text, kind) {
    if (Object.keys(collect().changes).length) return; // edited again since
    showStatus(text, kind);
  }

  function serverErrors(errors) {
    const general = [];
    for (const err of errors) {
      const first = (err.pointer || '').split('/')[1];
      const key = first === undefined ? '' : first.replace(/~1/g, '/').replace(/~0/g, '~');
      const c = controls.get(key);
      if (c) c.serverError = err.message;
      else general.push(`${err.pointer || '(whole configuration)'}: ${err.message}`);
    }
    replace(problems, general.map((g) => h('li', {}, g)));
    refresh();
    showStatus('Not saved: the server found invalid values (marked below).', 'error');
    const firstBad = [...controls.values()].find((c) => c.error);
    if (firstBad) firstBad.input.focus();
  }

  async function conflict(e, changes) {
    showStatus('Not saved: someone else saved first.', 'error');
    saveButton.disabled = false;
    const mine = Object.entries(changes).map(([k, v]) =>
      h('li', {}, h('code', {}, k), `: ${showValue(controls.get(k).original)} → ${controls.get(k).f.is_secret ? SECRET_MASK : showValue(v)}`));
    const r = await dialog({
      title: 'Someone else saved first',
      body: [
        h('p', { id: 'conflict-text' }, `${name} was changed by someone else while you were editing: you started from version ${data.version}, it is now at version ${e.currentVersion ?? 'newer'}. Your changes were not saved.`),
        h('p', {}, 'Reload to see the current values, then make your changes again. Your changes were:'),
        h('ul', { class: 'conflict-list' }, mine),
      ],
      actions: [
        { label: 'Keep editing', value: null },
        { label: 'Reload current values', value: 'reload', kind: 'primary' },
      ],
    });
    if (r) { ctx.onDirty(false); await ctx.reload({ flash: 'Reloaded the current values.' }); }
  }

  async function reveal(f, out, revealButton, hideButton) {
    const r = await dialog({
      title: `Reveal ${f.title || f.key}?`,
      body: h('p', {}, 'The secret is shown in clear text on this screen. Your reason is written to the audit log.'),
      input: { label: 'Reason', hint: 'At least 3 characters, e.g. "checking the key after rotation".', minLength: 3 },
      actions: [{ label: 'Cancel', value: null }, { label: 'Reveal', value: 'reveal', kind: 'primary' }],
    });
    if (!r) return;
    try {
      const res = await api.send('POST', `/services/${seg(name)}/secrets/${seg(f.key)}/reveal`, { reason: r.input });
      replace(out, res.value === null ? '(not set)' : String(res.value));
      out.hidden = false;
      hideButton.hidden = false;
      revealButton.hidden = true;
    } catch (e) {
      toast(`Reveal failed: ${e.message}`, 'error');
    }
  }

  function setAdvanced(on) {
    advancedOn = on;
    applyVisibility();
  }

  /**
   * Notes from the instances' reports on the field rows: a field pinned by
   * an instance's environment, a field an instance rejected.
   */
  function showInstanceNotes(data) {
    const list = (data && data.instances) || [];
    for (const c of controls.values()) {
      const bits = [];
      const pinned = list.filter((i) => i.pinned && i.pinned[c.f.key]);
      if (pinned.length) bits.push(`pinned on ${pinned.map((i) => `${i.instance_id} by ${i.pinned[c.f.key]}`).join(', ')}: that instance keeps its own value`);
      const failed = list.filter((i) => i.state === 'rejected' && (i.fields || []).includes(c.f.key));
      if (failed.length) bits.push(`rejected by ${failed.map((i) => `${i.instance_id} (${i.reason || 'no reason given'})`).join(', ')}`);
      c.notes.hidden = !bits.length;
      replace(c.notes, bits.join(' · '));
      c.row.classList.toggle('pinned', pinned.length > 0);
      c.row.classList.toggle('rejected-field', failed.length > 0);
    }
  }

  function focusField(key) {
    const c = controls.get(key);
    if (!c) return false;
    if (c.f.show_when) { forced.add(key); applyVisibility(); }
    if (c.row.hidden) ctx.requestAdvanced();
    c.row.classList.add('highlight');
    setTimeout(() => c.row.classList.remove('highlight'), 2500);
    c.row.scrollIntoView({ block: 'center' });
    c.input.focus({ preventScroll: true });
    return true;
  }

  return {
    el,
    setWritable,
    showArrival,
    showInstanceNotes,
    focusStatus: () => status.focus({ preventScroll: true }),
    isDirty: () => Object.keys(collect().changes).length > 0,
    setAdvanced,
    focusField,
  };
}
