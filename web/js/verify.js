/**
 * The public verifier (`/verify`, no login needed): checks a pasted or fetched trade receipt
 * with `receipt.js`, and recomputes a whole revealed epoch with `fairness.js`, showing each
 * step's verdict. The server is asked only for public data (its published key, epochs) and,
 * for a signed-in user, their own receipts.
 */

import { ApiError, currentUser, get } from './api.js';
import { formatPrice, parsePrice, verifyEpoch } from './fairness.js';
import { checkReceipt, parseReceipt, verdict } from './receipt.js';
import { $, busy, clearErrors, el, listState, markCurrentNav, setText, showError } from './ui.js';

const ICONS = { ok: '✓', failed: '✗', pending: '…' };
const TITLES = {
  signature: 'Signature',
  commitment: 'Seed matches its commitment',
  ticks: 'Ticks recomputed',
  entry: 'Entry and exit by the rules',
  grace: 'Feed within the grace period',
  seeds: 'Prices fixed before acceptance',
  result: 'Result',
  payout: 'Payout',
};

let serverKey = null;
let user = null;

async function boot() {
  markCurrentNav();
  wire();
  const keyLine = $('#server-key');
  const [key, me] = await Promise.allSettled([get('/api/fairness/key'), currentUser()]);
  if (key.status === 'fulfilled') {
    serverKey = key.value.publicKey;
    keyLine.textContent = `${key.value.algorithm} ${serverKey}`;
  } else {
    keyLine.textContent = `Could not load the key (${key.reason.message}): a receipt's signature can only be checked against the key it names, so its verdict stays pending.`;
  }
  user = me.status === 'fulfilled' ? me.value : null;
  setText('who', user ? user.email : '');
  if (!user) {
    $('#trade-id').disabled = true;
    $('#fetch-receipt').disabled = true;
    setText('trade-id-error', '');
    $('#trade-id').placeholder = 'Log in on the trade page to fetch your receipts';
  }
  await loadSymbols();
  const params = new URLSearchParams(location.search);
  if (params.get('trade') && user) {
    $('#trade-id').value = params.get('trade');
    await fetchReceipt();
  }
  if (params.get('epoch')) {
    $('#epoch-id').value = params.get('epoch');
    if (params.get('symbol')) $('#epoch-symbol').value = params.get('symbol');
    await checkEpoch();
  }
}

function wire() {
  $('#fetch-form').addEventListener('submit', (event) => {
    event.preventDefault();
    busy(event.submitter, fetchReceipt);
  });
  $('#receipt-form').addEventListener('submit', (event) => {
    event.preventDefault();
    busy(event.submitter, verifyPasted);
  });
  $('#epoch-form').addEventListener('submit', (event) => {
    event.preventDefault();
    busy(event.submitter, checkEpoch);
  });
  $('#epoch-symbol').addEventListener('change', () => loadEpochs());
  $('#epochs-more').addEventListener('click', (event) => busy(event.currentTarget, loadMoreEpochs));
}

// ---- receipts ----------------------------------------------------------------------------

async function fetchReceipt() {
  const form = $('#fetch-form');
  clearErrors(form);
  const id = $('#trade-id').value.trim();
  if (!/^\d+$/.test(id)) {
    showError(form, new ApiError(400, 'validation_error', 'Enter a trade id (a number).', 'tradeId'));
    return;
  }
  try {
    const receipt = await get(`/api/flash-trade/${id}/receipt`);
    $('#receipt').value = JSON.stringify(receipt, null, 2);
    history.replaceState(null, '', `/verify?trade=${id}`);
    await verifyPasted();
  } catch (error) {
    const message = error instanceof ApiError && error.status === 404 ? 'No trade of yours has this id.'
      : error instanceof ApiError && error.status === 401 ? 'Log in on the trade page first.' : error.message;
    showError(form, new ApiError(error.status, error.code, message, 'tradeId'));
  }
}

async function verifyPasted() {
  const form = $('#receipt-form');
  clearErrors(form);
  const list = $('#receipt-steps');
  const summary = $('#receipt-summary');
  list.replaceChildren();
  summary.textContent = '';
  delete summary.dataset.outcome;
  let receipt;
  try {
    receipt = parseReceipt($('#receipt').value);
  } catch (error) {
    showError(form, new ApiError(400, 'validation_error', `This is not a receipt: ${error.message}`, 'receipt'));
    return;
  }
  summary.dataset.outcome = 'pending';
  summary.textContent = 'Checking…';
  const steps = [];
  if (serverKey) {
    const same = serverKey.toLowerCase() === receipt.publicKey.toLowerCase();
    const keyStep = {
      check: 'key',
      outcome: same ? 'ok' : 'failed',
      detail: same ? `the receipt's key is this server's published key ${serverKey}`
        : `the receipt names ${receipt.publicKey}, but this server publishes ${serverKey}`,
    };
    steps.push(keyStep);
    list.append(stepItem(keyStep));
  }
  let result;
  try {
    result = await checkReceipt(receipt, serverKey, { onProgress: (s) => { steps.push(s); list.append(stepItem(s)); } });
  } catch (error) {
    const s = { check: 'format', outcome: 'failed', detail: `the receipt could not be checked: ${error.message}` };
    steps.push(s);
    list.append(stepItem(s));
  }
  const outcome = verdict(steps);
  summary.dataset.outcome = outcome;
  const trade = result?.body?.trade;
  const what = trade ? `Trade ${trade.id} (${trade.direction} ${trade.symbol}, stake ${trade.stake} VUSD)` : 'The receipt';
  summary.textContent = outcome === 'ok' ? `Verified: ${what} settled exactly as the public rules say.`
    : outcome === 'pending' ? `Not fully verifiable yet: ${steps[steps.length - 1].detail}`
      : `Verification failed: ${steps.find((s) => s.outcome === 'failed').detail}`;
}

function stepItem(s) {
  return el('li', { 'data-outcome': s.outcome, 'data-check': s.check },
    el('span', { class: 'icon', 'aria-hidden': 'true', text: ICONS[s.outcome] }),
    el('div', {},
      el('strong', { text: `${s.check === 'key' ? 'Signing key' : TITLES[s.check] ?? s.check}: ${s.outcome === 'ok' ? 'passed' : s.outcome === 'pending' ? 'pending' : 'failed'}` }),
      el('div', { class: 'detail', text: s.detail })));
}

// ---- epochs ------------------------------------------------------------------------------

async function loadSymbols() {
  const select = $('#epoch-symbol');
  try {
    const { symbols } = await get('/api/market/symbols');
    select.replaceChildren(...symbols.map((m) => el('option', { value: m.symbol, text: m.symbol, title: m.name })));
  } catch (error) {
    listState($('#epochs'), 'error', `Markets could not be loaded: ${error.message}`);
    return;
  }
  await loadEpochs();
}

const EPOCHS_PAGE = 8;

/** The epochs listed for one market, newest first, and the cursor of the page after them. */
let listed = { symbol: '', epochs: [], cursor: null };

async function loadEpochs() {
  const box = $('#epochs');
  const symbol = $('#epoch-symbol').value;
  const mine = { symbol, epochs: [], cursor: null };
  listed = mine;
  listState(box, 'loading');
  $('#epochs-more').hidden = true;
  try {
    const { epochs, nextCursor } = await get('/api/market/epochs', { symbol, limit: EPOCHS_PAGE });
    if (listed !== mine) return; // another market was chosen meanwhile
    mine.epochs = epochs;
    mine.cursor = nextCursor ?? null;
    showEpochs(mine);
  } catch (error) {
    if (listed === mine) listState(box, 'error', `Epochs could not be loaded: ${error.message}`);
  }
}

/** Appends the next older page; on failure the list stays as it was, and so does the button. */
async function loadMoreEpochs() {
  const mine = listed;
  if (!mine.cursor) return;
  try {
    const { epochs, nextCursor } = await get('/api/market/epochs', { symbol: mine.symbol, cursor: mine.cursor, limit: EPOCHS_PAGE });
    if (listed !== mine) return;
    mine.epochs = mine.epochs.concat(epochs);
    mine.cursor = nextCursor ?? null;
    showEpochs(mine);
  } catch (error) {
    if (listed !== mine) return;
    $('#epochs').append(el('div', { class: 'list-state error', role: 'alert', text: `Older epochs could not be loaded: ${error.message}` }));
  }
}

function showEpochs({ epochs, cursor }) {
  const box = $('#epochs');
  $('#epochs-more').hidden = !cursor;
  if (epochs.length === 0) {
    listState(box, 'empty', 'No epochs yet.');
    return;
  }
  // Short cells, so that the five columns fit the side card without scrolling sideways.
  box.replaceChildren(el('table', { class: 'data compact' },
    el('thead', {}, el('tr', {}, el('th', { text: 'Epoch' }), el('th', { text: 'Ticks' }), el('th', { text: 'Seed' }), el('th', { text: 'Next', title: 'announced when the epoch started' }), el('th', { text: '' }))),
    el('tbody', {}, ...epochs.map((e) => el('tr', {},
      el('td', { class: 'num', text: String(e.id) }),
      el('td', { class: 'num', text: e.endTick !== null && e.endTick !== undefined ? `${e.startTick}–${e.endTick}` : `${e.startTick}–` }),
      el('td', e.seed ? { text: 'revealed' } : e.kind === 'replay' ? { text: 'replay' } : { text: 'sealed', title: 'running: revealed when the epoch ends' }),
      // Published with the commitment: the next epoch's id and commitment, and where it starts.
      el('td', e.nextId == null ? { text: '—' } : { class: 'num', text: `#${e.nextId} at ${e.plannedEndTick + 1}`, title: `epoch #${e.nextId} from seq ${e.plannedEndTick + 1}, commitment ${e.nextCommitment}` }),
      el('td', {}, e.seed ? el('button', {
        type: 'button', class: 'link', text: 'Check',
        on: { click: () => { $('#epoch-id').value = String(e.id); checkEpoch(); } },
      }) : ''))))));
}

async function checkEpoch() {
  const form = $('#epoch-form');
  clearErrors(form);
  const summary = $('#epoch-summary');
  summary.textContent = '';
  delete summary.dataset.outcome;
  const symbol = $('#epoch-symbol').value;
  const id = $('#epoch-id').value.trim();
  if (!/^\d+$/.test(id)) {
    showError(form, new ApiError(400, 'validation_error', 'Enter an epoch id (a number).', 'epochId'));
    return;
  }
  let detail;
  try {
    detail = await get(`/api/market/epochs/${id}`);
  } catch (error) {
    showError(form, new ApiError(error.status, error.code, error.status === 404 ? 'No epoch has this id.' : error.message, 'epochId'));
    return;
  }
  const { epoch, ticks } = detail;
  const say = (outcome, text) => {
    summary.dataset.outcome = outcome;
    summary.textContent = text;
  };
  if (epoch.symbol !== symbol) return say('failed', `Epoch ${id} belongs to ${epoch.symbol}, not ${symbol}.`);
  if (epoch.kind !== 'simulated') return say('pending', `Epoch ${id} is a ${epoch.kind}: only simulated epochs have a seed.`);
  if (!epoch.seed || epoch.endTick === null || epoch.endTick === undefined) {
    return say('pending', `Epoch ${id} has not ended yet: its seed is still sealed. Commitment: ${epoch.commitment}`);
  }
  const expected = epoch.endTick - epoch.startTick + 1;
  if (ticks.length !== expected) return say('failed', `The epoch spans seq ${epoch.startTick}–${epoch.endTick} (${expected} ticks) but ${ticks.length} were given.`);
  for (let i = 0; i < ticks.length; i++) {
    if (ticks[i].seq !== epoch.startTick + i || ticks[i].epochId !== epoch.id) {
      return say('failed', `Tick #${i} is seq ${ticks[i].seq} of epoch ${ticks[i].epochId}; expected seq ${epoch.startTick + i}.`);
    }
  }
  say('pending', `Recomputing ${ticks.length} ticks…`);
  const params = { symbol, volatilityBp: epoch.volatilityBp, tickIntervalMs: epoch.tickIntervalMs };
  const outcome = await verifyEpoch(params, epoch.seed, epoch.commitment, epoch.id, parsePrice(epoch.startPrice), ticks.map((t) => parsePrice(t.price)));
  if (outcome.ok) {
    say('ok', `Verified: epoch ${id}'s seed matches its commitment and all ${ticks.length} ticks (seq ${epoch.startTick}–${epoch.endTick}) recompute exactly.`);
  } else if (outcome.reason === 'commitment') {
    say('failed', `The revealed seed hashes to ${outcome.got}, but the commitment published was ${outcome.expected}.`);
  } else {
    say('failed', `Seq ${epoch.startTick + outcome.index}: the seed gives ${formatPrice(outcome.expected)}, the server says ${formatPrice(outcome.got)}.`);
  }
}

boot();
