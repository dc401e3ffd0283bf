// DOM helpers shared by every view: element builder, formatting, the modal
// dialog and the toast. No framework: `h()` is all the templating there is,
// and it only ever sets text (never innerHTML), so values from the server
// cannot inject markup.

/** Builds an element: h('p', {class: 'x', onclick: f}, 'text', child, ...). */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k in el && typeof v !== 'string') el[k] = v; // properties: checked, value, disabled
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** Replaces an element's children. */
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

export const $ = (sel, root = document) => root.querySelector(sel);
export const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));

/** A value as shown in tables: JSON, so "" and "0" and 0 differ; null is "—". */
export function showValue(v) {
  if (v === null || v === undefined) return '—';
  return JSON.stringify(v);
}

/** An RFC 3339 time in the viewer's locale (the raw value goes in `title`). */
export function timeEl(iso) {
  if (!iso) return h('span', {}, '—');
  const d = new Date(iso);
  const text = Number.isNaN(d.getTime()) ? iso : d.toLocaleString();
  return h('time', { datetime: iso, title: iso }, text);
}

/** `<input type=datetime-local>` value (local time) to RFC 3339 UTC, or undefined. */
export function localToIso(value) {
  if (!value) return undefined;
  const d = new Date(value);
  return Number.isNaN(d.getTime()) ? undefined : d.toISOString();
}

let toastTimer;
/** A short confirmation in the polite live region. */
export function toast(text, kind = 'ok') {
  const el = $('#toast');
  el.className = `toast toast-${kind} show`;
  el.textContent = text;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { el.className = 'toast'; }, 4500);
}

/**
 * A modal dialog on the native <dialog> element (focus trap and Escape come
 * with it). Resolves with the chosen action's value and the input's text, or
 * null when cancelled.
 *
 * opts: {title, body: node|string|array, actions: [{label, value, kind}],
 *        input?: {label, hint, minLength, value, type}}
 */
export function dialog(opts) {
  const dlg = $('#dialog');
  const input = $('#dialog-input');
  const wrap = $('#dialog-input-wrap');
  replace($('#dialog-title'), opts.title);
  replace($('#dialog-body'), opts.body || '');
  const minLength = opts.input ? (opts.input.minLength || 0) : 0;
  wrap.hidden = !opts.input;
  if (opts.input) {
    replace($('#dialog-input-label'), opts.input.label);
    replace($('#dialog-input-hint'), opts.input.hint || '');
    input.value = opts.input.value || '';
    input.type = opts.input.type || 'text';
    input.setAttribute('aria-describedby', 'dialog-input-hint');
  }
  const actions = $('#dialog-actions');
  const buttons = (opts.actions || [{ label: 'OK', value: 'ok', kind: 'primary' }]).map((a) =>
    h('button', {
      type: a.value === null ? 'button' : 'submit',
      class: a.kind || '',
      value: a.value === null ? '' : a.value,
      dataset: { action: a.value === null ? 'cancel' : a.value },
    }, a.label));
  replace(actions, buttons);
  const confirmButtons = buttons.filter((b) => b.dataset.action !== 'cancel');
  const sync = () => {
    const ok = !opts.input || input.value.trim().length >= minLength;
    for (const b of confirmButtons) b.disabled = !ok;
  };
  sync();
  input.oninput = sync;

  return new Promise((resolve) => {
    let result = null;
    const finish = () => {
      dlg.removeEventListener('close', finish);
      resolve(result);
    };
    for (const b of buttons) {
      b.onclick = (ev) => {
        ev.preventDefault();
        result = b.dataset.action === 'cancel' ? null : { value: b.dataset.action, input: input.value.trim() };
        dlg.close();
      };
    }
    $('#dialog-form').onsubmit = (ev) => {
      // Enter in the input: the first confirming action, if allowed.
      ev.preventDefault();
      const first = confirmButtons[0];
      if (first && !first.disabled) first.click();
    };
    dlg.addEventListener('close', finish);
    dlg.showModal();
    if (opts.input) input.focus();
    else (buttons.find((b) => b.classList.contains('primary')) || buttons[0])?.focus();
  });
}

/** Yes/no confirmation; resolves true when confirmed. */
export async function confirmDialog(title, body, confirmLabel = 'Confirm', kind = 'primary') {
  const r = await dialog({
    title,
    body,
    actions: [
      { label: 'Cancel', value: null },
      { label: confirmLabel, value: 'yes', kind },
    ],
  });
  return r !== null;
}
