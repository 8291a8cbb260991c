/**
 * Pieces the admin page's panels share: calls to the admin API, a cursor-paged list (loading,
 * empty and error states, "Load more" that appends the next page), errors attributed to the
 * control that was used, and small cells for trades.
 */

import { ApiError, api } from './api.js';
import { dateTime, money } from './format.js';
import { el, listState, showError } from './ui.js';

/**
 * One call to `/api/admin/…`. A 403 `forbidden` there means this account is no longer an
 * admin's (a superadmin demoted it): the page hears it as `admin:forbidden` whichever panel
 * made the call, since a panel that keeps its old rows (the live monitor) would hide it. The
 * call still fails as usual.
 */
async function adminApi(method, path, options) {
  try {
    return await api(method, path, options);
  } catch (error) {
    if (error instanceof ApiError && error.status === 403 && error.code === 'forbidden') {
      document.dispatchEvent(new CustomEvent('admin:forbidden', { detail: error }));
    }
    throw error;
  }
}

export const adminGet = (path, query) => adminApi('GET', path, { query });
export const adminPost = (path, body) => adminApi('POST', path, { body });
export const patch = (path, body) => adminApi('PATCH', path, { body });

/**
 * A list fetched page by page with the API's `nextCursor`.
 * @param {{box: HTMLElement, more: HTMLButtonElement, fetchPage: (cursor: string|undefined) => Promise<{items: any[], nextCursor: string|null}>,
 *   render: (items: any[]) => HTMLElement, empty: string, what: string}} options
 * @returns {{reload: () => Promise<void>, items: () => any[]}}
 */
export function pagedList({ box, more, fetchPage, render, empty, what }) {
  let items = [];
  let cursor = null;
  let generation = 0;
  const show = () => {
    if (items.length === 0) listState(box, 'empty', empty);
    else box.replaceChildren(render(items));
    more.hidden = !cursor;
  };
  const reload = async () => {
    const mine = ++generation;
    listState(box, 'loading');
    more.hidden = true;
    try {
      const page = await fetchPage(undefined);
      if (mine !== generation) return;
      items = page.items;
      cursor = page.nextCursor ?? null;
      show();
    } catch (error) {
      if (mine !== generation) return;
      items = [];
      cursor = null;
      listState(box, 'error', `${what} could not be loaded: ${error.message}`);
    }
  };
  more.addEventListener('click', async () => {
    if (!cursor) return;
    const mine = generation;
    more.disabled = true;
    more.textContent = more.textContent.replace(/^Load more/, 'Loading more');
    try {
      const page = await fetchPage(cursor);
      if (mine !== generation) return;
      items = items.concat(page.items);
      cursor = page.nextCursor ?? null;
      show();
    } catch (error) {
      more.hidden = false;
      box.append(el('div', { class: 'list-state error', role: 'alert', text: `The next page could not be loaded: ${error.message}` }));
    } finally {
      more.disabled = false;
      more.textContent = more.textContent.replace(/^Loading more/, 'Load more');
    }
  });
  return { reload, items: () => items };
}

/**
 * Shows `error` next to the control named `field` when the server named no other field (a
 * 403 such as "only a superadmin may …" is about the control that was used).
 */
export function showOn(form, error, field) {
  const named = error instanceof ApiError && error.field && form.querySelector(`[name="${CSS.escape(error.field)}"]`);
  const attributed = named ? error : new ApiError(error.status ?? 0, error.code ?? 'error', error.message, field);
  showError(form, attributed);
}

/**
 * A table with a header row; `columns`: [{label, right?, opt?}] (`opt`: left out at phone
 * width). `stack`: at phone width each row becomes a small card, each cell labelled.
 */
export function table(columns, rows, { stack = false, ...attrs } = {}) {
  if (stack) {
    for (const row of rows) {
      [...row.children].forEach((cell, i) => {
        if (columns[i]?.label) cell.dataset.label = columns[i].label;
      });
    }
  }
  return el('table', { class: `data${stack ? ' stack' : ''}`, ...attrs },
    el('thead', {}, el('tr', {}, ...columns.map((c) => el('th', { scope: 'col', class: `${c.right ? 'r' : ''}${c.opt ? ' opt' : ''}`.trim(), text: c.label })))),
    el('tbody', {}, ...rows));
}

/** What happened to a trade, as a badge: the result once settled, otherwise the status. */
export function outcomeBadge(trade) {
  const label = trade.status === 'settled' ? trade.result ?? 'settled' : trade.status;
  return el('span', { class: `badge ${label}`, text: label });
}

/** The cells of one trade row (used by the live monitor and the history). */
export function tradeCells(t) {
  return [
    el('td', { class: 'num', text: String(t.id) }),
    el('td', { class: 'num opt', text: String(t.userId) }),
    el('td', { text: t.symbol }),
    el('td', {}, el('span', { class: `badge ${t.direction}`, text: t.direction })),
    el('td', { class: 'num r', text: money(t.amount) }),
    el('td', { class: 'num opt', text: `${t.duration}s` }),
    el('td', {}, outcomeBadge(t)),
    el('td', { class: 'num r', text: t.payout == null ? '—' : money(t.payout) }),
    el('td', { class: 'num opt', text: dateTime(t.acceptedAt) }),
  ];
}

export const TRADE_COLUMNS = [
  { label: 'Trade' }, { label: 'User', opt: true }, { label: 'Market' }, { label: 'Side' }, { label: 'Stake', right: true },
  { label: 'Time', opt: true }, { label: 'Outcome' }, { label: 'Paid', right: true }, { label: 'Accepted', opt: true },
];
