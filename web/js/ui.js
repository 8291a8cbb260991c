/**
 * Small DOM helpers shared by the pages: element building (text only, never HTML strings, so
 * nothing from the server can inject markup), notifications, field errors and list states.
 */

import { ApiError } from './api.js';

/**
 * Builds an element. `attrs` keys: `class`, `text`, `dataset`, `on` (event → handler), any
 * other attribute (`false`/`null` leave it out). Children are nodes or strings.
 * @returns {HTMLElement}
 */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === false || value === null || value === undefined) continue;
    if (name === 'class') node.className = value;
    else if (name === 'text') node.textContent = value;
    else if (name === 'dataset') Object.assign(node.dataset, value);
    else if (name === 'on') for (const [event, handler] of Object.entries(value)) node.addEventListener(event, handler);
    else node.setAttribute(name, value === true ? '' : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export const $ = (selector, root = document) => root.querySelector(selector);
export const $$ = (selector, root = document) => [...root.querySelectorAll(selector)];

/** Sets the text of the element with `id` (if present). */
export function setText(id, text) {
  const node = document.getElementById(id);
  if (node && node.textContent !== text) node.textContent = text;
}

// ---- notifications -----------------------------------------------------------------------

/**
 * Shows a notification in the page's `#toasts` region (an ARIA live region) for a while.
 * @param {{level?: 'info'|'success'|'warning'|'error', title: string, message?: string, ms?: number}} n
 */
export function toast({ level = 'info', title, message = '', ms = 8000 }) {
  const region = document.getElementById('toasts');
  if (!region) return;
  const close = el('button', { type: 'button', class: 'toast-close', 'aria-label': `Dismiss: ${title}`, text: '×' });
  const node = el('div', { class: `toast ${level}`, role: level === 'error' ? 'alert' : 'status' },
    close, el('strong', { text: title }), message ? el('p', { text: message }) : null);
  close.addEventListener('click', () => node.remove());
  region.append(node);
  while (region.children.length > 4) region.firstElementChild.remove();
  // Kept while pointed at or focused, so that it can be read to the end.
  let timer = setTimeout(() => node.remove(), ms);
  const hold = () => clearTimeout(timer);
  const resume = () => {
    clearTimeout(timer);
    timer = setTimeout(() => node.remove(), ms / 2);
  };
  node.addEventListener('mouseenter', hold);
  node.addEventListener('focusin', hold);
  node.addEventListener('mouseleave', resume);
  node.addEventListener('focusout', resume);
}

// ---- forms ---------------------------------------------------------------------------------

/** Clears every field error and the form error of `form`. */
export function clearErrors(form) {
  for (const input of $$('[aria-invalid]', form)) input.removeAttribute('aria-invalid');
  for (const slot of $$('.field-error, .form-error', form)) slot.textContent = '';
}

/**
 * Shows an error on the field the server named (`error.field`, matched to an input's `name`)
 * or, failing that, in the form's `.form-error`. Focuses the field at fault.
 */
export function showError(form, error, fieldMap = {}) {
  const message = error instanceof Error ? error.message : String(error);
  const name = error instanceof ApiError && error.field ? fieldMap[error.field] ?? error.field : null;
  const input = name ? form.querySelector(`[name="${CSS.escape(name)}"]`) : null;
  if (input) {
    input.setAttribute('aria-invalid', 'true');
    const slot = document.getElementById(input.getAttribute('aria-describedby')?.split(' ')[0] ?? '');
    if (slot) slot.textContent = capitalise(message);
    input.focus();
    if (slot) return;
  }
  const slot = form.querySelector('.form-error');
  if (slot) slot.textContent = capitalise(message);
  else toast({ level: 'error', title: 'Something went wrong', message });
}

/**
 * The same error, attributed to `field` when the server named none: a refusal such as a
 * limit (422) is about the only value the user can change there.
 */
export function onField(error, field) {
  if (error instanceof ApiError && !error.field && error.status === 422) {
    return new ApiError(error.status, error.code, error.message, field);
  }
  return error;
}

function capitalise(text) {
  return text ? text[0].toUpperCase() + text.slice(1) : text;
}

/**
 * Runs `action` with `button` disabled (and labelled busy) until it settles.
 * @template T
 * @param {HTMLButtonElement|null} button
 * @param {() => Promise<T>} action
 * @returns {Promise<T>}
 */
export async function busy(button, action) {
  if (button) {
    button.disabled = true;
    button.setAttribute('aria-busy', 'true');
  }
  try {
    return await action();
  } finally {
    if (button) {
      button.disabled = false;
      button.removeAttribute('aria-busy');
    }
  }
}

// ---- list states ---------------------------------------------------------------------------

/** Replaces `container`'s content with a loading, empty or error line. */
export function listState(container, kind, text) {
  const defaults = { loading: 'Loading…', empty: 'Nothing here yet.', error: 'Could not load.' };
  container.replaceChildren(el('div', {
    class: `list-state ${kind}`,
    role: kind === 'error' ? 'alert' : null,
    'data-state': kind,
    text: text ?? defaults[kind],
  }));
}

/** The practice marker and site navigation are in each page's HTML; this marks the current link. */
export function markCurrentNav() {
  for (const link of $$('.topnav a')) {
    if (link.getAttribute('href') === location.pathname) link.setAttribute('aria-current', 'page');
  }
}

/**
 * Wires a WAI-ARIA tab list: click or arrow keys select a tab and show its panel.
 * @param {HTMLElement} list the `[role=tablist]` element.
 * @param {(tab: HTMLElement) => void} [onSelect]
 */
export function tabs(list, onSelect) {
  const all = $$('[role="tab"]', list);
  const select = (tab, focus) => {
    for (const other of all) {
      const selected = other === tab;
      other.setAttribute('aria-selected', String(selected));
      other.tabIndex = selected ? 0 : -1;
      const panel = document.getElementById(other.getAttribute('aria-controls'));
      if (panel) panel.hidden = !selected;
    }
    if (focus) tab.focus();
    onSelect?.(tab);
  };
  for (const tab of all) {
    tab.addEventListener('click', () => select(tab, false));
    tab.addEventListener('keydown', (event) => {
      const at = all.indexOf(tab);
      const next = { ArrowRight: at + 1, ArrowLeft: at - 1, Home: 0, End: all.length - 1 }[event.key];
      if (next === undefined) return;
      event.preventDefault();
      select(all[(next + all.length) % all.length], true);
    });
  }
  return select;
}
