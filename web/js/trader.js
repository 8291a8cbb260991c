/**
 * The trader page (`/`): sign in, follow a market, see the quote before trading, place Up or
 * Down trades, watch them settle or sell them back, and manage the virtual balance.
 *
 * Nothing here can choose or influence a result: the page only asks the server to open or
 * sell a trade; results follow from the recorded ticks, and every receipt can be checked on
 * `/verify`. Money arrives as decimal strings and is only reformatted (format.js); the one
 * comparison of prices (is an open trade ahead?) is done on BigInt units.
 */

import { ApiError, currentUser, get, post } from './api.js';
import { parseCents, parsePrice } from './fairness.js';
import { PriceChart } from './chart.js';
import { Realtime } from './realtime.js';
import { clock, dateTime, durationLabel, isAmount, money, moneySign, percent, price, seconds } from './format.js';
import { $, busy, clearErrors, el, listState, markCurrentNav, onField, setText, showError, tabs, toast } from './ui.js';

/** Used when the server publishes no list (the documented defaults, docs and README). */
const DEFAULT_DURATIONS = [5, 10, 15, 30, 60, 120, 300];
const CHART_TICKS = 300;
const PAGE = 20;
const SYMBOL_KEY = 'fairtick.symbol';

const state = {
  user: null,
  symbols: [],
  /** `symbol:epochId` of the epoch whose commitments `#epoch-line` shows. */
  epochShown: null,
  /** Counts loads of the two lists, so that only the newest answer is shown. */
  tradesSeq: 0,
  txSeq: 0,
  symbol: null,
  market: null,
  durations: DEFAULT_DURATIONS,
  quotes: { up: null, down: null },
  quoteTimer: null,
  quoteSeq: 0,
  /** id → trade (REST shape) of the open trades */
  active: new Map(),
  /** ids already announced as ended */
  announced: new Set(),
  /** ids of ended trades whose result was told, by the page or by the server's notification */
  spoken: new Set(),
  /** recent ended trades of every market, for the chart's marks */
  recent: [],
  /** server clock − local clock, from the latest tick */
  offsetMs: 0,
  firstPrice: null,
  lastTick: null,
  realtime: null,
  tradesCursor: null,
  txCursor: null,
  /** Pages of each list on screen: past the first, a refresh keeps them (see `mergeNewest`). */
  tradesPages: 0,
  txPages: 0,
  lastBalanceAt: 0,
  lastActiveAt: 0,
  terms: null,
  activeBusy: false,
  /** A refresh asked for while one ran: run again after it, as what it read may be older. */
  activeAgain: false,
};

/** Why a page was sent back to the login form (`/?signedout=…`), told there. */
const SIGNED_OUT_NOTES = {
  suspended: 'This account is suspended. Contact an administrator.',
  ended: 'Your session ended. Log in again to continue.',
};

let chart;

const ms = (rfc3339) => (rfc3339 ? Date.parse(rfc3339) : null);
const now = () => Date.now() + state.offsetMs;

// ---- start -------------------------------------------------------------------------------

async function boot() {
  markCurrentNav();
  wireAuth();
  const bootLine = $('#boot');
  let user;
  try {
    user = await currentUser();
  } catch (error) {
    bootLine.textContent = `Could not reach the server: ${error.message} Reload to try again.`;
    bootLine.className = 'list-state error';
    bootLine.dataset.state = 'error';
    return;
  }
  bootLine.hidden = true;
  if (user) await startDesk(user);
  else showAuth();
}

function showAuth() {
  const why = new URLSearchParams(location.search).get('signedout');
  if (Object.hasOwn(SIGNED_OUT_NOTES, why ?? '')) {
    $('#auth-note').textContent = SIGNED_OUT_NOTES[why];
    $('#auth-note').hidden = false;
    history.replaceState(null, '', location.pathname + location.hash);
  }
  $('#auth').hidden = false;
  $('#desk').hidden = true;
  $('#conn').hidden = true;
  // On a phone, focusing would open the keyboard over the page before the visitor chose.
  if (matchMedia('(min-width: 760px)').matches) $('#login-email').focus();
}

function wireAuth() {
  const selectTab = tabs($('#auth [role="tablist"]'));
  const login = $('#login-form');
  const register = $('#register-form');
  login.addEventListener('submit', async (event) => {
    event.preventDefault();
    clearErrors(login);
    const data = new FormData(login);
    const body = { email: String(data.get('email')).trim(), password: String(data.get('password')) };
    if (!body.email) return showError(login, new ApiError(400, 'validation_error', 'Enter your email.', 'email'));
    if (!body.password) return showError(login, new ApiError(400, 'validation_error', 'Enter your password.', 'password'));
    const totp = $('#login-totp-field');
    if (!totp.hidden) {
      body.totpCode = String(data.get('totpCode') ?? '').replace(/\s+/g, '');
      if (!/^\d{6}$/.test(body.totpCode)) {
        return showError(login, new ApiError(400, 'validation_error', 'Type the 6 digits your app shows.', 'totpCode'));
      }
    }
    try {
      const { user } = await busy(event.submitter, () => post('/api/auth/login', body));
      $('#auth').hidden = true;
      await startDesk(user);
    } catch (error) {
      if (error instanceof ApiError && error.code === 'totp_required') {
        // Two-factor sign-in is on for this account: the same form asks for the code.
        totp.hidden = false;
        return showError(login, new ApiError(error.status, error.code, error.message, 'totpCode'));
      }
      showError(login, error);
    }
  });
  register.addEventListener('submit', async (event) => {
    event.preventDefault();
    clearErrors(register);
    const data = new FormData(register);
    const body = {
      email: String(data.get('email')).trim(),
      password: String(data.get('password')),
      firstName: String(data.get('firstName')).trim(),
      lastName: String(data.get('lastName')).trim(),
    };
    for (const [field, label] of [['firstName', 'your first name'], ['lastName', 'your last name'], ['email', 'your email']]) {
      if (!body[field]) return showError(register, new ApiError(400, 'validation_error', `Enter ${label}.`, field));
    }
    if (body.password.length < 8) {
      return showError(register, new ApiError(400, 'validation_error', 'Use at least 8 characters.', 'password'));
    }
    try {
      const { user } = await busy(event.submitter, () => post('/api/auth/register', body));
      $('#auth').hidden = true;
      await startDesk(user);
      toast({ level: 'success', title: 'Practice account created', message: `You start with ${money(user.balance)} VUSD of virtual funds.` });
    } catch (error) {
      showError(register, error);
    }
  });
  // Let "Create account" links elsewhere open the tab.
  if (location.hash === '#register') selectTab($('#tab-register'), false);
}

async function startDesk(user) {
  state.user = user;
  $('#conn').hidden = false;
  $('#desk').hidden = false;
  $('#auth').hidden = true;
  $('#balancebar').hidden = false;
  $('#logout').hidden = false;
  $('#who').hidden = false;
  setText('who', user.email);
  renderUser(user);
  renderBalance({ balance: user.balance, available: null, inPlay: null });

  chart = new PriceChart($('#chart'), $('#chart-msg'));
  wireDesk();
  state.realtime = new Realtime();
  wireRealtime(state.realtime);
  state.realtime.start();

  listState($('#open-trades'), 'loading');
  listState($('#stats'), 'loading');
  listState($('#trades-list'), 'loading');
  await loadSymbols();
  await Promise.all([refreshBalance(), refreshActive(), refreshStats(), loadTrades('reset'), loadTransactions('reset'), loadTerms()]);
  setInterval(tickClock, 200);
  // Bids move with every tick. The socket pushes them about once a second; without it, poll.
  setInterval(() => {
    const live = state.realtime.state === 'live';
    const since = Date.now() - state.lastActiveAt;
    // Without the socket, a trade opened in another tab shows within five seconds.
    if (live ? state.active.size > 0 && since > 5000 : state.active.size > 0 || since > 5000) refreshActive();
  }, 1000);
}

// ---- markets and chart -------------------------------------------------------------------

async function loadSymbols() {
  const select = $('#symbol');
  try {
    const { symbols } = await get('/api/market/symbols');
    state.symbols = symbols;
  } catch (error) {
    chart.say(`Markets could not be loaded: ${error.message}`);
    return;
  }
  select.replaceChildren(...state.symbols.map((m) => el('option', { value: m.symbol, text: `${m.symbol} · ${m.name}` })));
  $('#f-symbol').replaceChildren(el('option', { value: '', text: 'All' }),
    ...state.symbols.map((m) => el('option', { value: m.symbol, text: m.symbol })));
  const saved = localStorage.getItem(SYMBOL_KEY);
  const first = state.symbols.find((m) => m.symbol === saved) ?? state.symbols[0];
  if (!first) {
    chart.say('No market is open.');
    return;
  }
  select.value = first.symbol;
  await selectSymbol(first.symbol);
}

async function selectSymbol(symbol) {
  const previous = state.symbol;
  state.symbol = symbol;
  state.market = state.symbols.find((m) => m.symbol === symbol) ?? null;
  localStorage.setItem(SYMBOL_KEY, symbol);
  if (previous && previous !== symbol) state.realtime.unwatch(previous);
  state.firstPrice = null;
  state.lastTick = null;
  setText('last-price', '—');
  setText('last-change', '');
  setText('epoch-line', '');
  setText('market-name', state.market ? `${state.market.name}${state.market.kind === 'replay' ? ' (replay)' : ''}` : '');
  chart.setSymbol(symbol);
  chart.say('Loading prices…');
  try {
    const { ticks } = await get('/api/market/ticks', { symbol, limit: CHART_TICKS });
    if (state.symbol !== symbol) return;
    const normal = ticks.map((t) => ({ seq: t.seq, ts: Date.parse(t.ts), price: t.price, epochId: t.epochId }));
    chart.setTicks(normal);
    chart.say(normal.length === 0 ? 'Waiting for the first tick…' : null);
    if (normal.length > 0) showTick(normal[normal.length - 1]);
    state.realtime.watch(symbol, {
      lastSeq: normal.length > 0 ? normal[normal.length - 1].seq : null,
      intervalMs: state.market?.tickIntervalMs ?? 1000,
    });
  } catch (error) {
    chart.say(`Prices could not be loaded: ${error.message}`);
    state.realtime.watch(symbol, { lastSeq: null, intervalMs: state.market?.tickIntervalMs ?? 1000 });
  }
  if (chart.mode === 'candles') loadCandles();
  updateMarkers();
  ticketChanged(0);
}

function showTick(tick) {
  state.lastTick = tick;
  state.firstPrice ??= { price: tick.price, ts: tick.ts };
  setText('last-price', price(tick.price, 4));
  // The change since the first tick this page showed, exact (BigInt units at scale 10⁸).
  const change = parsePrice(tick.price) - parsePrice(state.firstPrice.price);
  const node = $('#last-change');
  node.className = `change num ${change > 0n ? 'up' : change < 0n ? 'down' : 'muted'}`;
  const size = change < 0n ? -change : change;
  const units = `${size / 100000000n}.${String(size % 100000000n).padStart(8, '0').slice(0, 4)}`;
  node.textContent = `${change > 0n ? '▲ +' : change < 0n ? '▼ −' : ''}${units} since ${clock(state.firstPrice.ts)}`;
  $('#chart').setAttribute('aria-label', `${state.symbol} price chart; last price ${tick.price} at ${clock(tick.ts)}`);
  showEpoch(state.symbol, tick.epochId);
}

/**
 * The epoch whose committed seed makes the prices now, and the next one it announced: both
 * commitments were public before any trade placed now, so its prices cannot be chosen after it
 * (docs/fairness.md §4). Read again when the epoch changes.
 */
async function showEpoch(symbol, epochId) {
  const key = `${symbol}:${epochId}`;
  if (epochId === undefined || state.epochShown === key) return;
  state.epochShown = key;
  try {
    // The newest epoch may already be the next one, stored before its first tick.
    const { epochs } = await get('/api/market/epochs', { symbol, limit: 2 });
    const epoch = epochs.find((e) => e.id === epochId);
    if (!epoch || state.symbol !== symbol) {
      state.epochShown = null;
      return;
    }
    const hash = (hex) => el('code', { text: `${hex.slice(0, 12)}…`, title: hex });
    const next = epoch.nextId === null || epoch.nextId === undefined ? []
      : [`; next #${epoch.nextId} from seq ${epoch.plannedEndTick + 1}, committed as `, hash(epoch.nextCommitment)];
    $('#epoch-line').replaceChildren(`Epoch #${epoch.id}, seed committed as `, hash(epoch.commitment), ...next, '. ',
      el('a', { href: '/verify', text: 'Check revealed epochs' }));
  } catch {
    state.epochShown = null;
  }
}

let candleTimer = null;
async function loadCandles() {
  clearTimeout(candleTimer);
  const interval = $('#interval').value;
  const intervalMs = { '1s': 1000, '1m': 60000, '5m': 300000, '1h': 3600000 }[interval];
  try {
    const { candles } = await get('/api/market/candles', { symbol: state.symbol, interval, limit: 80 });
    chart.setCandles(candles.map((c) => ({ ...c, ts: Date.parse(c.ts) })), intervalMs);
    chart.say(candles.length === 0 ? 'No candles yet.' : null);
  } catch (error) {
    chart.say(`Candles could not be loaded: ${error.message}`);
  }
}

function setChartMode(mode) {
  $('#mode-ticks').setAttribute('aria-pressed', String(mode === 'ticks'));
  $('#mode-candles').setAttribute('aria-pressed', String(mode === 'candles'));
  $('#interval').disabled = mode !== 'candles';
  chart.setMode(mode);
  if (mode === 'candles') loadCandles();
  else chart.say(chart.ticks.length === 0 ? 'Waiting for the first tick…' : null);
}

/** The chart's marks: the open trades and the recently ended ones of this market. */
function updateMarkers() {
  if (!chart) return;
  const trades = [...state.active.values(), ...state.recent].filter((t) => t.symbol === state.symbol);
  chart.setMarkers(trades.map((t) => ({
    id: t.id,
    direction: t.direction,
    active: t.status === 'active',
    entry: t.entry ? { ts: ms(t.entry.ts), price: t.entry.price } : null,
    // A trade sold back ends at its sale, not at the expiry it never reached.
    expiresAt: t.status === 'sold' ? ms(t.settledAt) : ms(t.expiresAt),
    exit: t.exit ? { ts: ms(t.exit.ts), price: t.exit.price } : null,
  })));
}

// ---- quote and trading -------------------------------------------------------------------

/**
 * The published trading terms (`/api/settings`): the allowed durations and stake limits. A
 * server without that endpoint still names the durations in the quote endpoint's validation
 * message ("duration must be one of 5, 10, …"); failing both, the documented defaults.
 */
async function loadTerms() {
  let durations = null;
  try {
    const { settings } = await get('/api/settings');
    if (Array.isArray(settings?.durations)) durations = settings.durations.map(Number);
    state.terms = settings;
    renderStakeHint();
  } catch {
    // An older server: fall back to the quote endpoint's message below.
  }
  if (!durations && state.symbol) {
    try {
      await get('/api/flash-trade/quote', { symbol: state.symbol, direction: 'up', amount: '100.00', duration: 0 });
    } catch (error) {
      const match = error instanceof ApiError && error.field === 'duration' ? /one of ([\d,\s]+)/.exec(error.message) : null;
      if (match) durations = match[1].split(',').map((s) => Number(s.trim())).filter((n) => n > 0);
    }
  }
  state.durations = durations?.length ? durations : DEFAULT_DURATIONS;
  const select = $('#duration');
  const keep = select.value;
  select.replaceChildren(...state.durations.map((d) => el('option', { value: d, text: durationLabel(d) })));
  select.value = state.durations.includes(Number(keep)) ? keep : String(state.durations[0]);
  scheduleQuote(0);
}

function scheduleQuote(delay = 250) {
  clearTimeout(state.quoteTimer);
  state.quoteTimer = setTimeout(refreshQuote, delay);
}

async function refreshQuote() {
  clearTimeout(state.quoteTimer);
  const form = $('#ticket');
  const amount = $('#amount').value.trim();
  const duration = $('#duration').value;
  const seq = ++state.quoteSeq;
  if (!state.symbol || !duration) return setBuyEnabled(false);
  // A refresh of the same ticket keeps what the last trade was refused for on screen.
  const ticket = currentTicket();
  if (ticket !== state.quotedTicket) {
    state.quotedTicket = ticket;
    for (const slot of [$('#amount-error'), $('#duration-error')]) slot.textContent = '';
    $('#amount').removeAttribute('aria-invalid');
  }
  if (!isAmount(amount)) {
    setBuyEnabled(false);
    renderQuote(null);
    showError(form, new ApiError(400, 'validation_error', 'Enter an amount such as 100 or 25.50.', 'amount'));
    return;
  }
  try {
    const query = { symbol: state.symbol, amount, duration };
    const [up, down] = await Promise.all([
      get('/api/flash-trade/quote', { ...query, direction: 'up' }),
      get('/api/flash-trade/quote', { ...query, direction: 'down' }),
    ]);
    if (seq !== state.quoteSeq) return;
    state.quotes = { up, down, ticket };
    renderQuote(state.quotes);
    setBuyEnabled(true);
    // A quote is valid for a few seconds; keep it fresh while the page is open.
    const validFor = Math.max(1000, Date.parse(up.validUntil) - now() - 1000);
    state.quoteTimer = setTimeout(refreshQuote, Math.min(validFor, 4000));
  } catch (error) {
    if (seq !== state.quoteSeq) return;
    setBuyEnabled(false);
    renderQuote(null);
    if (error instanceof ApiError && error.field) {
      const slot = { amount: 'amount-error', duration: 'duration-error' }[error.field];
      if (slot) {
        setText(slot, error.message[0].toUpperCase() + error.message.slice(1));
        $(`#${error.field}`).setAttribute('aria-invalid', 'true');
        return;
      }
    }
    setText('quote-note', `No quote: ${error.message}`);
    state.quoteTimer = setTimeout(refreshQuote, 3000);
  }
}

function renderQuote(quotes) {
  for (const side of ['up', 'down']) {
    const q = quotes?.[side];
    setText(`q-${side}-payout`, q ? money(q.payout) : '—');
    setText(`q-${side}-profit`, q ? money(q.profitIfWin, { sign: true }) : '—');
    setText(`q-${side}-breakeven`, q ? percent(q.breakEvenWinRate) : '—');
    setText(`q-${side}-win`, q?.fairWinProbability ? percent(q.fairWinProbability) : '—');
    setText(`q-${side}-edge`, q?.houseEdge ? percent(q.houseEdge) : '—');
    setText(`buy-${side}-note`, q ? `pays ${money(q.payout)}` : side === 'up' ? 'higher at expiry' : 'lower at expiry');
  }
  const q = quotes?.up;
  setText('quote-note', q
    ? `Payout rate ${percent(q.payoutRate, 2)} of the stake on a win; a tie refunds the stake. You need to win more than ${percent(q.breakEvenWinRate, 1)} of decided trades to come out ahead.`
    : 'Payout rate —. A tie refunds the stake.');
}

/** What the ticket asks for now; a quote is for one ticket, and a trade needs its quote. */
function currentTicket() {
  return `${state.symbol}|${$('#amount').value.trim()}|${$('#duration').value}`;
}

/**
 * The buy buttons work with a quote, and never while a trade is being placed or the account's
 * trading is suspended.
 */
function setBuyEnabled(enabled) {
  const off = !enabled || state.placing || Boolean(state.user?.tradingSuspended);
  $('#buy-up').disabled = off;
  $('#buy-down').disabled = off;
}

/** A changed ticket is not traded on the last one's quote: the buttons wait for its own. */
function ticketChanged(delay) {
  setBuyEnabled(false);
  scheduleQuote(delay);
}

/** The user's own limits beside the published terms: the stake range, and a suspension. */
function renderUser(user) {
  state.user = user;
  $('#admin-link').hidden = !(user.role === 'admin' || user.role === 'superadmin');
  $('#suspended-note').hidden = !user.tradingSuspended;
  setBuyEnabled(Boolean(state.quotes.up) && state.quotes.ticket === currentTicket());
  renderStakeHint();
}

function renderStakeHint() {
  const { minStake, maxStake } = state.terms ?? {};
  const own = state.user?.maxStake;
  // The lower of the two maxima, compared exactly (money is never a float here).
  const max = own && maxStake && parseCents(own) < parseCents(maxStake) ? own : maxStake;
  setText('amount-label', minStake && max ? `Stake (VUSD), ${money(minStake)}–${money(max)}` : 'Stake (VUSD)');
}

/** Reads the account again, for limits an admin changed while the page was open. */
async function refreshUser() {
  try {
    const user = await currentUser();
    if (user) renderUser(user);
  } catch {
    // Kept as shown; the next refusal or reconnection reads it again.
  }
}

async function placeTrade(direction, button) {
  const form = $('#ticket');
  clearErrors(form);
  const quote = state.quotes[direction];
  const amount = $('#amount').value.trim();
  if (!quote || !isAmount(amount) || state.placing) return;
  if (state.quotes.ticket !== currentTicket()) return ticketChanged(0);
  state.placing = true;
  setBuyEnabled(false);
  try {
    const { trade } = await busy(button, () => post('/api/flash-trade/create', {
      symbol: state.symbol,
      direction,
      amount,
      duration: Number($('#duration').value),
      expectedPayoutRate: quote.payoutRate,
    }, { idempotent: true }));
    state.active.set(trade.id, trade);
    renderActive();
    updateMarkers();
    toast({
      level: 'info',
      title: `${direction === 'up' ? '▲ Up' : '▼ Down'} trade opened`,
      message: `${trade.symbol}, ${money(trade.amount)} VUSD for ${durationLabel(trade.duration)}. It starts at the next tick.`,
    });
    refreshBalance();
  } catch (error) {
    if (error instanceof ApiError && error.status === 409) scheduleQuote(0);
    // Refused for a limit of the account's own: show it as it is now.
    if (error instanceof ApiError && (error.code === 'trading_suspended' || error.field === 'amount')) refreshUser();
    showError(form, onField(error, 'amount'));
  } finally {
    state.placing = false;
    setBuyEnabled(Boolean(state.quotes.up));
    if (document.activeElement === document.body) button?.focus();
  }
}

// ---- open trades -------------------------------------------------------------------------

async function refreshActive() {
  if (state.activeBusy) {
    state.activeAgain = true;
    return;
  }
  state.activeBusy = true;
  state.lastActiveAt = Date.now();
  try {
    const trades = (await get('/api/flash-trade/active')).trades.filter((t) => !state.announced.has(t.id));
    const seen = new Set(trades.map((t) => t.id));
    const gone = [...state.active.keys()].filter((id) => !seen.has(id));
    state.active = new Map(trades.map((t) => [t.id, t]));
    renderActive();
    updateMarkers();
    for (const id of gone) finished(id);
  } catch (error) {
    if (state.active.size === 0) listState($('#open-trades'), 'error', `Open trades could not be loaded: ${error.message}`);
  } finally {
    state.activeBusy = false;
    if (state.activeAgain) {
      state.activeAgain = false;
      refreshActive();
    }
  }
}

/** A trade left the open list: fetch how it ended and say so. */
async function finished(id, known) {
  if (state.announced.has(id)) return;
  state.announced.add(id);
  let trade = known;
  try {
    trade ??= (await get(`/api/flash-trade/${id}`)).trade;
  } catch {
    state.announced.delete(id);
    return;
  }
  if (trade.status === 'active') {
    // Missing from a list read before it was opened: it is open, and stays on the page.
    state.announced.delete(id);
    state.active.set(id, trade);
    renderActive();
    return;
  }
  announce(trade);
  state.recent = [trade, ...state.recent.filter((t) => t.id !== trade.id)].slice(0, 20);
  updateMarkers();
  refreshBalance();
  refreshStats();
  loadTrades('latest');
  loadTransactions('latest');
}

/**
 * Says how a trade ended, once: the server's notification of the same result (it names the
 * trade) is then skipped, and this one skipped if that came first. Whichever way the page
 * learns of an ending (the socket, polling, a resync after missed events), it is told.
 */
function announce(trade) {
  if (state.spoken.has(trade.id)) return;
  state.spoken.add(trade.id);
  const dir = trade.direction === 'up' ? '▲ Up' : '▼ Down';
  const where = `${trade.symbol} ${dir}, stake ${money(trade.amount)}`;
  const prices = trade.entry && trade.exit ? ` Entry ${trade.entry.price} → exit ${trade.exit.price}.` : '';
  if (trade.status === 'sold') {
    toast({ level: 'info', title: `Sold for ${money(trade.payout)} VUSD`, message: `${where}. Profit ${money(trade.profit, { sign: true })}.` });
  } else if (trade.status === 'void') {
    toast({ level: 'warning', title: 'Trade void — stake refunded', message: `${where}. ${trade.voidReason ?? ''}` });
  } else if (trade.result === 'win') {
    toast({ level: 'success', title: `Won ${money(trade.profit, { sign: true })} VUSD`, message: `${where}.${prices}` });
  } else if (trade.result === 'lose') {
    toast({ level: 'error', title: `Lost ${money(trade.amount)} VUSD`, message: `${where}.${prices}` });
  } else if (trade.result === 'tie') {
    toast({ level: 'info', title: 'Tie — stake refunded', message: `${where}.${prices}` });
  }
}

function renderActive() {
  const list = $('#open-trades');
  const trades = [...state.active.values()].sort((a, b) => b.id - a.id);
  setText('open-count', trades.length ? `${trades.length} open` : '');
  if (trades.length === 0) {
    if (!list.querySelector('[data-state="empty"]')) listState(list, 'empty', 'No open trades. Pick a stake and a duration, then Up or Down.');
    return;
  }
  const rows = new Map([...list.querySelectorAll('.otrade')].map((node) => [Number(node.dataset.id), node]));
  list.querySelector('.list-state')?.remove();
  for (const [id, node] of rows) if (!state.active.has(id)) node.remove();
  trades.forEach((trade, index) => {
    let node = rows.get(trade.id);
    if (!node) node = buildOpenTrade(trade);
    if (list.children[index] !== node) list.insertBefore(node, list.children[index] ?? null);
    updateOpenTrade(node, trade);
  });
}

function buildOpenTrade(trade) {
  const dir = trade.direction;
  const sell = el('button', { type: 'button', class: 'sell', 'data-testid': 'sell', on: { click: (e) => sellTrade(trade.id, e.currentTarget) } }, 'Sell');
  return el('article', { class: 'otrade', dataset: { id: trade.id }, 'aria-label': `Trade ${trade.id}` },
    el('span', { class: `badge ${dir}`, text: dir === 'up' ? '▲ Up' : '▼ Down' }),
    el('div', {},
      el('div', {}, el('strong', { text: trade.symbol }), ' ', el('span', { class: 'num', text: `${money(trade.amount)} VUSD` })),
      el('div', { class: 'meta num', 'data-role': 'meta' })),
    el('span', { class: 'countdown num' }, el('span', { class: 'sr-only', text: 'Time left: ' }), el('span', { 'data-role': 'countdown' })),
    el('div', { class: 'bar', 'aria-hidden': 'true' }, el('span', { 'data-role': 'bar' })),
    el('div', { class: 'actions' }, el('span', { class: 'small num', 'data-role': 'state' }), sell));
}

function updateOpenTrade(node, trade) {
  const meta = node.querySelector('[data-role="meta"]');
  const entry = trade.entry ? `entry ${price(trade.entry.price)}` : 'waiting for the entry tick';
  const text = `${entry} · pays ${money(payoutOf(trade))} on a win`;
  if (meta.textContent !== text) meta.textContent = text;
  updateSell(node, trade);
  updateStanding(node, trade);
}

/** Sales close `sellCutoffSeconds` before expiry (the current terms), whatever the last bid. */
function salesClosed(trade) {
  const expires = ms(trade.expiresAt);
  return expires !== null && expires - now() <= (state.terms?.sellCutoffSeconds ?? 0) * 1000;
}

function updateSell(node, trade) {
  const sell = node.querySelector('button.sell');
  const closed = salesClosed(trade);
  const bid = closed ? null : trade.bid;
  sell.disabled = !bid || sell.getAttribute('aria-busy') === 'true';
  const label = bid ? `Sell · ${money(bid)}` : 'Sell';
  if (sell.textContent !== label) sell.textContent = label;
  sell.title = bid
    ? `Sell back now at the current bid (${money(bid)} VUSD; it moves with the price)`
    : closed ? 'Sales close in the last seconds before expiry' : 'Not sellable yet (before the entry tick)';
}

/** What a win pays back, for display: ⌊stake × (1 + rate)⌋ on BigInt cents. */
function payoutOf(trade) {
  const [w, f = ''] = trade.payoutRate.split('.');
  const rateBp = BigInt(w) * 10000n + BigInt((f + '0000').slice(0, 4));
  const [sw, sf = ''] = trade.amount.split('.');
  const cents = BigInt(sw) * 100n + BigInt((sf + '00').slice(0, 2));
  const paid = (cents * (10000n + rateBp)) / 10000n;
  return `${paid / 100n}.${String(paid % 100n).padStart(2, '0')}`;
}

function updateStanding(node, trade) {
  const slot = node.querySelector('[data-role="state"]');
  let text = '';
  let cls = 'small num muted';
  const last = state.lastTick;
  if (trade.entry && last && last.seq >= trade.entry.seq && state.symbol === trade.symbol) {
    const diff = parsePrice(last.price) - parsePrice(trade.entry.price);
    const ahead = trade.direction === 'up' ? diff > 0n : diff < 0n;
    text = diff === 0n ? 'level with entry' : ahead ? 'ahead now' : 'behind now';
    cls = `small num ${diff === 0n ? 'muted' : ahead ? 'up' : 'down'}`;
  } else if (trade.entry) {
    text = 'running';
  }
  if (slot.textContent !== text) slot.textContent = text;
  slot.className = cls;
}

/** Countdowns and progress bars, several times a second. */
function tickClock() {
  for (const node of document.querySelectorAll('.otrade')) {
    const trade = state.active.get(Number(node.dataset.id));
    if (!trade) continue;
    const countdown = node.querySelector('[data-role="countdown"]');
    const bar = node.querySelector('[data-role="bar"]');
    const expires = ms(trade.expiresAt);
    if (!expires) {
      countdown.textContent = '…';
      bar.style.width = '0%';
      continue;
    }
    const left = (expires - now()) / 1000;
    countdown.textContent = left > 0 ? seconds(left) : 'settling';
    const total = trade.duration * 1000;
    bar.style.width = `${Math.min(100, Math.max(0, 100 - (left * 1000 * 100) / total))}%`;
    updateSell(node, trade);
    updateStanding(node, trade);
  }
}

/**
 * Sells at the bid when the order arrives, which the toast then tells. No `minPrice` is sent:
 * the bid on the button is up to a second old and moves with every tick, so a minimum at it
 * would refuse most sales of a moving market.
 */
async function sellTrade(id, button) {
  try {
    const { trade } = await busy(button, () => post('/api/flash-trade/close', { tradeId: id }, { idempotent: true }));
    const hadFocus = document.activeElement === button;
    state.active.delete(id);
    renderActive();
    // The sold trade's button is gone: its focus goes to the next one, or to the list.
    if (hadFocus) (document.querySelector('#open-trades button.sell:not(:disabled)') ?? $('#open-title')).focus();
    finished(id, trade);
  } catch (error) {
    toast({ level: 'error', title: 'Could not sell', message: error.message });
    refreshActive();
  }
}

// ---- balance, stats, wallet --------------------------------------------------------------

function renderBalance(b) {
  if (b.balance !== undefined) setText('balance', money(b.balance));
  if (b.available !== null && b.available !== undefined) setText('available', money(b.available));
  if (b.inPlay !== null && b.inPlay !== undefined) setText('in-play', money(b.inPlay));
}

async function refreshBalance() {
  state.lastBalanceAt = Date.now();
  try {
    renderBalance(await get('/api/wallet/balance'));
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) signedOut();
  }
}

async function refreshStats() {
  const box = $('#stats');
  let s;
  try {
    s = await get('/api/flash-trade/stats');
  } catch (error) {
    listState(box, 'error', `Your record could not be loaded: ${error.message}`);
    return;
  }
  const decided = s.wins + s.losses;
  const tile = (label, value, cls = '') => el('div', { class: 'stat' }, el('span', { class: 'label', text: label }), el('span', { class: `value num ${cls}`, text: value }));
  const net = moneySign(s.netProfit);
  let verdict;
  if (decided === 0) {
    verdict = 'No decided trades yet. Your win rate will be compared with the break-even rate once you have some.';
  } else {
    const range = s.winRateLow && s.winRateHigh ? `${percent(s.winRateLow, 1)} to ${percent(s.winRateHigh, 1)}` : '—';
    verdict = s.distinguishableFromBreakEven
      ? `Distinguishable from luck: yes. The 95 % range of your win rate (${range}) excludes break-even (${percent(s.breakEvenWinRate, 1)}).`
      : `Distinguishable from luck: not yet. The 95 % range of your win rate (${range}) includes break-even (${percent(s.breakEvenWinRate, 1)}), so this record is consistent with chance.`;
  }
  box.replaceChildren(
    el('div', { class: 'stats' },
      tile('Win rate', s.winRate ? percent(s.winRate, 1) : '—'),
      tile('Break-even', s.breakEvenWinRate ? percent(s.breakEvenWinRate, 1) : '—'),
      tile('Net (VUSD)', money(s.netProfit, { sign: true }), net > 0 ? 'up' : net < 0 ? 'down' : ''),
      tile('Wins', String(s.wins), 'up'),
      tile('Losses', String(s.losses), 'down'),
      tile('Ties · sold · void', `${s.ties} · ${s.sold} · ${s.void}`)),
    el('p', { class: 'verdict', 'data-testid': 'luck-verdict', text: verdict }));
}

function wireWallet() {
  const form = $('#wallet-form');
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    clearErrors(form);
    const action = event.submitter?.value ?? 'deposit';
    const amount = $('#wallet-amount').value.trim();
    if (!isAmount(amount)) {
      showError(form, new ApiError(400, 'validation_error', 'Enter an amount such as 1000 or 250.50.', 'amount'));
      return;
    }
    try {
      const answer = await busy(event.submitter, () => post(`/api/wallet/${action}`, { amount }, { idempotent: true }));
      renderBalance(answer.balance);
      toast({ level: 'success', title: action === 'deposit' ? `Added ${money(amount)} virtual VUSD` : `Removed ${money(amount)} virtual VUSD` });
      $('#wallet-amount').value = '';
      loadTransactions('latest');
    } catch (error) {
      showError(form, onField(error, 'amount'));
    }
  });
  const reset = $('#reset');
  let armed = null;
  reset.addEventListener('click', async () => {
    clearErrors(form);
    if (!armed) {
      reset.textContent = 'Confirm reset';
      armed = setTimeout(() => {
        armed = null;
        reset.textContent = 'Reset to start';
      }, 4000);
      return;
    }
    clearTimeout(armed);
    armed = null;
    reset.textContent = 'Reset to start';
    try {
      const answer = await busy(reset, () => post('/api/wallet/reset', {}, { idempotent: true }));
      renderBalance(answer.balance);
      toast({ level: 'success', title: 'Practice balance reset', message: `Available: ${money(answer.balance.available)} VUSD. Your history is kept.` });
      loadTransactions('latest');
    } catch (error) {
      showError(form, error);
    }
  });
}

// ---- history -----------------------------------------------------------------------------

/**
 * Loads the trade history: `reset` starts the list over (new filters), `more` adds the next
 * page, `latest` shows what changed at the top (a trade ended) and keeps the pages below.
 */
async function loadTrades(mode) {
  const box = $('#trades-list');
  const more = $('#trades-more');
  const filters = Object.fromEntries(new FormData($('#trade-filters')));
  const latest = mode === 'latest' && state.tradesPages > 1;
  const reset = mode === 'reset' || (mode === 'latest' && !latest);
  // A next page needs a cursor (none while the list starts over); the newest load answers, an
  // older one (other filters, a page of the list before) is dropped.
  if (mode === 'more' && !state.tradesCursor) return;
  // A refresh of the top gives way to any other load, and takes none's place.
  const seq = latest ? state.tradesSeq : ++state.tradesSeq;
  if (reset) state.tradesCursor = null;
  if (reset && !box.querySelector('table')) listState(box, 'loading');
  let page;
  try {
    page = await get('/api/flash-trade/history', { ...filters, limit: PAGE, cursor: reset || latest ? null : state.tradesCursor });
  } catch (error) {
    if (seq !== state.tradesSeq || latest) return;
    listState(box, 'error', `Trade history could not be loaded: ${error.message}`);
    more.hidden = true;
    return;
  }
  if (seq !== state.tradesSeq) return;
  if ((reset || latest) && !filters.symbol && !filters.status && !filters.result) {
    state.recent = page.trades.filter((t) => t.status !== 'active').slice(0, 20);
    updateMarkers();
  }
  const rows = page.trades.map(tradeRow);
  if (latest) return mergeNewest(box.querySelector('tbody'), rows);
  let body = box.querySelector('tbody');
  if (reset || !body) {
    if (page.trades.length === 0) {
      listState(box, 'empty', filters.symbol || filters.status || filters.result ? 'No trades match these filters.' : 'No trades yet.');
      more.hidden = true;
      state.tradesPages = 0;
      return;
    }
    body = el('tbody');
    box.replaceChildren(el('table', { class: 'data' },
      el('thead', {}, el('tr', {}, ...['Opened', 'Market', 'Direction', 'Stake', 'Duration', 'Entry', 'Exit', 'Outcome', 'Paid', 'Profit', 'Proof']
        .map((h, i) => el('th', { scope: 'col', class: i >= 3 && i <= 9 && i !== 4 && i !== 7 ? 'r' : '', text: h })))),
      body));
    state.tradesPages = 0;
  }
  body.append(...rows);
  state.tradesPages += 1;
  state.tradesCursor = page.nextCursor;
  more.hidden = !page.nextCursor;
}

/**
 * Puts a first page read again on top of a list showing several: each row shown already is
 * replaced by its newer self where it stands, and the rows not shown yet, newer than all that
 * are, go first, in order. The pages below stay where the reader left them.
 */
function mergeNewest(body, rows) {
  if (!body) return;
  const fresh = [];
  for (const row of rows) {
    const shown = body.querySelector(`tr[data-id="${CSS.escape(row.dataset.id)}"]`);
    if (shown) shown.replaceWith(row);
    else fresh.push(row);
  }
  body.prepend(...fresh);
}

function tradeRow(t) {
  const outcome = t.status === 'settled' ? t.result : t.status;
  const labels = { win: 'Win', lose: 'Loss', tie: 'Tie', active: 'Open', sold: 'Sold', void: 'Void' };
  const profitSign = moneySign(t.profit);
  return el('tr', { dataset: { id: t.id } },
    el('td', { class: 'num', text: dateTime(t.acceptedAt) }),
    el('td', { text: t.symbol }),
    el('td', {}, el('span', { class: `badge ${t.direction}`, text: t.direction === 'up' ? '▲ Up' : '▼ Down' })),
    el('td', { class: 'num r', text: money(t.amount) }),
    el('td', { class: 'num', text: durationLabel(t.duration) }),
    // In full: a trade decided by the last digits must show them.
    el('td', { class: 'num r', text: t.entry ? price(t.entry.price) : '—' }),
    el('td', { class: 'num r', text: t.exit ? price(t.exit.price) : '—' }),
    el('td', {}, el('span', { class: `badge ${outcome}`, text: labels[outcome] ?? outcome })),
    el('td', { class: 'num r', text: t.payout ? money(t.payout) : '—' }),
    el('td', { class: `num r ${profitSign > 0 ? 'up' : profitSign < 0 ? 'down' : ''}`, text: t.profit ? money(t.profit, { sign: true }) : '—' }),
    el('td', {}, el('a', { href: `/verify?trade=${encodeURIComponent(t.id)}`, text: 'Verify', 'aria-label': `Verify trade ${t.id}` })));
}

function txQuery() {
  const data = Object.fromEntries(new FormData($('#tx-filters')));
  const day = (value, plus) => {
    if (!value) return undefined;
    const date = new Date(`${value}T00:00:00`);
    date.setDate(date.getDate() + plus);
    return date.toISOString();
  };
  return { type: data.type || undefined, from: day(data.from, 0), to: day(data.to, 1) };
}

/** Loads the statement, as `loadTrades` loads the trade history. */
async function loadTransactions(mode) {
  const box = $('#tx-list');
  const more = $('#tx-more');
  const query = txQuery();
  if (query.from && query.to && query.from >= query.to) {
    // Said when the filter is changed; a reload in the background leaves the list, and focus, be.
    if (mode === 'reset') showError($('#tx-filters'), new ApiError(400, 'validation_error', 'Pick a start date on or before the end date.', 'from'));
    return;
  }
  if (mode === 'reset') clearErrors($('#tx-filters'));
  const csv = new URL('/api/wallet/transactions.csv', location.origin);
  for (const [k, v] of Object.entries(query)) if (v) csv.searchParams.set(k, v);
  $('#csv-link').href = csv.pathname + csv.search;
  const latest = mode === 'latest' && state.txPages > 1;
  const reset = mode === 'reset' || (mode === 'latest' && !latest);
  if (mode === 'more' && !state.txCursor) return;
  const seq = latest ? state.txSeq : ++state.txSeq;
  if (reset) state.txCursor = null;
  if (reset && !box.querySelector('table')) listState(box, 'loading');
  let page;
  try {
    page = await get('/api/wallet/transactions', { ...query, limit: PAGE, cursor: reset || latest ? null : state.txCursor });
  } catch (error) {
    if (seq !== state.txSeq || latest) return;
    listState(box, 'error', `Transactions could not be loaded: ${error.message}`);
    more.hidden = true;
    return;
  }
  if (seq !== state.txSeq) return;
  const rows = page.transactions.map(transactionRow);
  if (latest) return mergeNewest(box.querySelector('tbody'), rows);
  let body = box.querySelector('tbody');
  if (reset || !body) {
    if (page.transactions.length === 0) {
      listState(box, 'empty', 'No transactions match these filters.');
      more.hidden = true;
      state.txPages = 0;
      return;
    }
    body = el('tbody');
    box.replaceChildren(el('table', { class: 'data' },
      el('thead', {}, el('tr', {}, ...['Time', 'Type', 'Description', 'Amount', 'Balance after', 'Reference']
        .map((h, i) => el('th', { scope: 'col', class: i === 3 || i === 4 ? 'r' : '', text: h })))),
      body));
    state.txPages = 0;
  }
  body.append(...rows);
  state.txPages += 1;
  state.txCursor = page.nextCursor;
  more.hidden = !page.nextCursor;
}

function transactionRow(tx) {
  const sign = moneySign(tx.amount);
  return el('tr', { dataset: { id: tx.id } },
    el('td', { class: 'num', text: dateTime(tx.createdAt) }),
    el('td', { text: tx.type.replace('_', ' ') }),
    el('td', { text: tx.description }),
    el('td', { class: `num r ${sign > 0 ? 'up' : sign < 0 ? 'down' : ''}`, text: money(tx.amount, { sign: true }) }),
    el('td', { class: 'num r', text: money(tx.balanceAfter) }),
    el('td', { class: 'num', text: tx.reference ?? '' }));
}

// ---- wiring ------------------------------------------------------------------------------

function wireDesk() {
  $('#symbol').addEventListener('change', (event) => selectSymbol(event.target.value));
  $('#mode-ticks').addEventListener('click', () => setChartMode('ticks'));
  $('#mode-candles').addEventListener('click', () => setChartMode('candles'));
  $('#interval').addEventListener('change', loadCandles);

  const ticket = $('#ticket');
  $('#amount').addEventListener('input', () => ticketChanged());
  $('#duration').addEventListener('change', () => ticketChanged(0));
  // Enter in a field refreshes the quote; only the Up and Down buttons place a trade.
  ticket.addEventListener('keydown', (event) => {
    if (event.key === 'Enter' && event.target instanceof HTMLInputElement) {
      event.preventDefault();
      scheduleQuote(0);
    }
  });
  ticket.addEventListener('submit', (event) => {
    event.preventDefault();
    const direction = event.submitter?.value;
    if (direction === 'up' || direction === 'down') placeTrade(direction, event.submitter);
  });

  wireWallet();
  tabs($('#desk [role="tablist"]'));
  $('#trade-filters').addEventListener('change', () => loadTrades('reset'));
  $('#tx-filters').addEventListener('change', () => loadTransactions('reset'));
  $('#trades-more').addEventListener('click', (e) => busy(e.currentTarget, () => loadTrades('more')));
  $('#tx-more').addEventListener('click', (e) => busy(e.currentTarget, () => loadTransactions('more')));
  $('#logout').addEventListener('click', async (event) => {
    try {
      await busy(event.currentTarget, () => post('/api/auth/logout'));
    } catch {
      // Signed out either way once the page reloads without a valid cookie.
    }
    state.realtime?.stop();
    location.assign('/');
  });
}

function wireRealtime(rt) {
  const labels = { live: 'Live', polling: 'Polling', connecting: 'Connecting…' };
  rt.addEventListener('state', ({ detail }) => {
    const node = $('#conn');
    node.dataset.state = detail;
    node.textContent = labels[detail] ?? detail;
    node.title = detail === 'live' ? 'Updates arrive over the WebSocket' : 'The WebSocket is not connected; the page polls the API and reconnects by itself';
    // What changed while the socket was down is read again once it is back.
    if (detail === 'live' && state.wasOffline) {
      refreshActive();
      refreshBalance();
    }
    state.wasOffline = detail === 'polling' || (state.wasOffline && detail !== 'live');
  });
  rt.addEventListener('tick', ({ detail: tick }) => {
    if (tick.symbol !== state.symbol) return;
    state.offsetMs = tick.ts - Date.now();
    chart.addTick(tick);
    if (chart.ticks.length === 1) chart.say(null);
    showTick(tick);
    if (chart.mode === 'candles' && !candleTimer) candleTimer = setTimeout(() => { candleTimer = null; loadCandles(); }, 1000);
  });
  rt.addEventListener('trade', ({ detail: trade }) => {
    if (trade.userId !== undefined && state.user && trade.userId !== state.user.id) return;
    if (trade.status === 'active') {
      // A bid pushed just before the trade ended can arrive after the end itself.
      if (state.announced.has(trade.id)) return;
      state.active.set(trade.id, { ...state.active.get(trade.id), ...trade });
      renderActive();
      updateMarkers();
    } else {
      state.active.delete(trade.id);
      renderActive();
      finished(trade.id, trade);
    }
  });
  rt.addEventListener('balance', ({ detail }) => renderBalance(detail));
  // Trades that ended while events were missed leave the open list here, each announced.
  rt.addEventListener('resync', () => refreshActive());
  rt.addEventListener('notification', ({ detail }) => {
    // A trade's result, told once: the page may have said so already (see `announce`).
    if (detail.tradeId !== undefined) {
      if (state.spoken.has(detail.tradeId)) return;
      state.spoken.add(detail.tradeId);
    }
    toast({
      level: ['info', 'success', 'warning', 'error'].includes(detail.level) ? detail.level : 'info',
      title: detail.title ?? 'Notice',
      message: detail.message ?? '',
      ms: 12000,
    });
    // New terms apply to new trades: show the new durations and quote at once.
    if (/terms/i.test(detail.title ?? '')) loadTerms();
  });
  rt.addEventListener('servererror', ({ detail }) => {
    if (detail?.code === 'unauthenticated') signedOut();
  });
  rt.addEventListener('signedout', ({ detail }) => {
    signedOut({ code: detail.reason === 'account suspended' ? 'account_suspended' : 'session_ended' });
  });
  // Each sign-in of the socket (a reconnection, say) brings the role as it is now; the
  // account's limits may have changed with it.
  rt.addEventListener('authenticated', () => refreshUser());
  // Logged out in another tab, say: this page's session may have ended with it.
  rt.addEventListener('signinagain', async () => {
    try {
      if (!(await currentUser())) signedOut();
    } catch {
      // Unreachable now: the reconnection and the polling find out later.
    }
  });
  rt.addEventListener('poll', () => {
    if (Date.now() - state.lastBalanceAt > 2000) refreshBalance();
  });
}

/** Back to the login form, which says why (see `SIGNED_OUT_NOTES`). */
function signedOut(error) {
  if (state.signedOut) return;
  state.signedOut = true;
  state.realtime?.stop();
  location.assign(`/?signedout=${error?.code === 'account_suspended' ? 'suspended' : 'ended'}`);
}

addEventListener('fairtick:session-ended', ({ detail }) => {
  if (state.user) signedOut(detail);
});

boot();
