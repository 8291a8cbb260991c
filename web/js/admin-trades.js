/**
 * The admin page's trade views, all read-only: the live monitor (the newest trades, kept up to
 * date by `admin_trade_update` events on `/ws`, or by polling while the socket is down), the
 * filtered trade history with cursor paging, and the house statistics for a chosen period.
 */

import { ApiError } from './api.js';
import { dateTime, money, moneySign } from './format.js';
import { Realtime } from './realtime.js';
import { $, $$, clearErrors, el, listState, showError } from './ui.js';
import { TRADE_COLUMNS, adminGet, pagedList, table, tradeCells } from './admin-common.js';

const LIVE_ROWS = 20;
const POLL_MS = 3000;

/** Realtime with the admins' own event. */
class AdminRealtime extends Realtime {
  receive(text) {
    let message = null;
    try {
      message = JSON.parse(text);
    } catch {
      /* not JSON: ignored below */
    }
    if (message?.type === 'admin_trade_update' && message.data?.trade) this.emit('adminTrade', message.data.trade);
    else super.receive(text);
  }
}

// ---- live monitor ------------------------------------------------------------------------

/** id → trade, newest first by id. */
let live = new Map();
let liveLoaded = false;
let lastPoll = 0;
let realtime = null;

/** Starts the live monitor; returns its socket, whose sign-in events the page follows. */
export function initLive() {
  realtime = new AdminRealtime();
  const conn = $('#live-conn');
  realtime.addEventListener('state', ({ detail }) => {
    conn.dataset.state = detail;
    conn.textContent = { live: 'Live', polling: 'Polling', connecting: 'Connecting' }[detail] ?? detail;
    if (detail === 'live') loadLive(); // catch up on what happened while the socket was down
  });
  realtime.addEventListener('poll', () => {
    if (Date.now() - lastPoll >= POLL_MS) loadLive();
  });
  realtime.addEventListener('adminTrade', ({ detail }) => upsert(detail));
  realtime.addEventListener('resync', () => loadLive());
  loadLive();
  realtime.start();
  addEventListener('pagehide', () => realtime.stop());
  return realtime;
}

/** Stops the socket, its polling and the statistics' refresh: the session can no longer read them. */
export function stopTrades() {
  realtime?.stop();
  clearInterval(statsRefresh);
  clearTimeout(statsTimer);
}

async function loadLive() {
  lastPoll = Date.now();
  const box = $('#live-trades');
  if (!liveLoaded) listState(box, 'loading');
  try {
    const { trades } = await adminGet('/api/admin/trades', { limit: LIVE_ROWS });
    for (const t of trades) live.set(t.id, { ...live.get(t.id), ...t });
    liveLoaded = true;
    renderLive(new Set());
  } catch (error) {
    if (!liveLoaded) listState(box, 'error', `Trades could not be loaded: ${error.message}`);
  }
}

let statsTimer = null;

function upsert(trade) {
  // The figures follow the trades, at most once a second.
  if (!statsTimer) statsTimer = setTimeout(() => { statsTimer = null; loadStats(true); }, 1000);
  live.set(trade.id, { ...live.get(trade.id), ...trade });
  liveLoaded = true;
  renderLive(new Set([trade.id]));
}

function renderLive(changed) {
  const box = $('#live-trades');
  const newest = [...live.values()].sort((a, b) => b.id - a.id).slice(0, LIVE_ROWS);
  live = new Map(newest.map((t) => [t.id, t]));
  if (newest.length === 0) {
    listState(box, 'empty', 'No trades yet. New ones appear here as they are placed.');
    return;
  }
  let tbody = box.querySelector('tbody');
  if (!tbody) {
    box.replaceChildren(table(TRADE_COLUMNS, [], { 'aria-describedby': 'live-title' }));
    tbody = box.querySelector('tbody');
  }
  // Rows are replaced in place (same position for the same trade), new trades go on top.
  const rows = new Map($$('tr', tbody).map((row) => [Number(row.dataset.id), row]));
  const ordered = newest.map((t) => {
    const old = rows.get(t.id);
    if (old && !changed.has(t.id) && old.dataset.key === key(t)) return old;
    const row = el('tr', { dataset: { id: String(t.id), key: key(t), status: t.status } }, ...tradeCells(t));
    if (changed.has(t.id)) row.classList.add('flash');
    return row;
  });
  tbody.replaceChildren(...ordered);
}

const key = (t) => `${t.status}|${t.result ?? ''}|${t.payout ?? ''}`;

// ---- history -----------------------------------------------------------------------------

export function initHistory() {
  const form = $('#trade-filters');
  const list = pagedList({
    box: $('#trade-history'),
    more: $('#trades-more'),
    what: 'Trades',
    empty: 'No trades match these filters.',
    fetchPage: async (cursor) => {
      const { trades, nextCursor } = await adminGet('/api/admin/trades', { ...filters(), cursor, limit: 25 });
      return { items: trades, nextCursor };
    },
    render: (trades) => table(TRADE_COLUMNS, trades.map((t) => el('tr', { dataset: { id: String(t.id) } }, ...tradeCells(t)))),
  });
  let current = {};
  const filters = () => current;
  const apply = async () => {
    clearErrors(form);
    const next = {};
    const userId = $('#tf-userId').value.trim();
    if (userId && !/^\d+$/.test(userId)) {
      showError(form, fieldError('A user id is a whole number, such as 42.', 'userId'));
      return;
    }
    next.userId = userId;
    next.status = $('#tf-status').value;
    next.symbol = $('#tf-symbol').value.trim().toUpperCase();
    for (const name of ['from', 'to']) {
      const value = $(`#tf-${name}`).value;
      if (!value) continue;
      const date = new Date(value);
      if (Number.isNaN(date.getTime())) {
        showError(form, fieldError('Pick a date and time.', name));
        return;
      }
      next[name] = date.toISOString();
    }
    current = next;
    try {
      await adminGet('/api/admin/trades', { ...current, limit: 1 }); // the server names a bad filter
    } catch (error) {
      if (error.field || error.status === 400) {
        showError(form, error);
        return;
      }
    }
    list.reload();
  };
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    apply();
  });
  $('#tf-status').addEventListener('change', apply);
  list.reload();
}

const fieldError = (message, field) => new ApiError(400, 'validation_error', message, field);

// ---- statistics --------------------------------------------------------------------------

let hours = 24;
let statsRefresh = null;

export function initStats() {
  const buttons = $$('#stats-period button');
  for (const button of buttons) {
    button.addEventListener('click', () => {
      hours = Number(button.dataset.hours);
      for (const other of buttons) other.setAttribute('aria-pressed', String(other === button));
      loadStats();
    });
  }
  loadStats();
  statsRefresh = setInterval(() => {
    if (!document.hidden) loadStats(true);
  }, 15000);
}

export async function loadStats(quiet = false) {
  const box = $('#stats');
  if (!quiet || !box.querySelector('.stat')) listState(box, 'loading');
  const to = new Date();
  const from = new Date(to.getTime() - hours * 3600 * 1000);
  try {
    const s = await adminGet('/api/admin/stats', { from: from.toISOString(), to: to.toISOString() });
    const profit = moneySign(s.houseProfit);
    const figures = [
      ['turnover', 'Turnover (VUSD)', money(s.turnover), ''],
      ['houseProfit', 'House profit (VUSD)', money(s.houseProfit, { sign: true }), profit > 0 ? 'up' : profit < 0 ? 'down' : ''],
      ['openExposure', 'Open exposure (VUSD)', money(s.openExposure), ''],
      ['trades', 'Trades', String(s.trades), ''],
      ['tradesPerMinute', 'Trades per minute', s.tradesPerMinute, ''],
      ['activeUsers', 'Active users', String(s.activeUsers), ''],
      ['openTrades', 'Open trades now', String(s.openTrades), ''],
    ];
    box.replaceChildren(el('div', { class: 'stats admin-stats' }, ...figures.map(([name, label, value, tone]) =>
      el('div', { class: 'stat', dataset: { stat: name } },
        el('span', { class: 'label', text: label }),
        el('span', { class: `value num ${tone}`, text: value })))));
    $('#stats-range').textContent = `From ${dateTime(s.from)} to ${dateTime(s.to)}.`;
  } catch (error) {
    listState(box, 'error', `The statistics could not be loaded: ${error.message}`);
  }
}
