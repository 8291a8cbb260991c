/**
 * Live updates for the pages: the `/ws` WebSocket (messages `{type, data}`), with automatic
 * reconnection (exponential backoff with jitter) and, whenever the socket is not open, polling
 * of the REST API so the page keeps working: ticks with `afterSeq`, and a `poll` event the
 * page uses to refresh its balance and trades.
 *
 * Events (an EventTarget; `event.detail` carries the data):
 * - `tick`: `{symbol, seq, ts (ms), price, epochId}`, in `seq` order per symbol, without
 *   duplicates; a gap in the socket's stream is filled from `/api/market/ticks`.
 * - `trade`: a trade in the REST shape; `balance`: `{balance, available, inPlay}`;
 *   `notification`: `{level, title, message}`.
 * - `state`: `'connecting' | 'live' | 'polling'`; `poll`: a polling round is due (not live).
 * - `authenticated`: `{userId, role}`, each time the socket signs in (the role as it is now).
 * - `signedout`: `{reason}`, when the server closed the socket because the session ended
 *   (suspended, expired); the socket is not opened again. Other closes reconnect.
 * - `signinagain`: `{reason}`, when the server closed the socket for its client to sign in
 *   again (signed out, a new role, missed events): it reconnects, and the page checks that its
 *   session still holds, since a socket without one is opened anonymously.
 *
 * The session cookie authenticates the socket at the upgrade; no token is kept by the page.
 */

import { get } from './api.js';

const MAX_BACKOFF_MS = 30000;
const PING_MS = 25000;
const MAX_TICKS_PER_FETCH = 5000;
/** Close reasons after which reconnecting cannot sign in again (the server's wording). */
const SESSION_ENDED = new Set(['account suspended', 'session expired']);

/** A tick from either source, with its time as milliseconds. */
function normalise(tick) {
  const ts = typeof tick.ts === 'number' ? tick.ts : Date.parse(tick.ts);
  return { symbol: tick.symbol, seq: Number(tick.seq), ts, price: String(tick.price), epochId: tick.epochId };
}

export class Realtime extends EventTarget {
  constructor() {
    super();
    /** symbol → {lastSeq, intervalMs, queue} */
    this.markets = new Map();
    this.state = 'connecting';
    this.socket = null;
    this.attempt = 0;
    this.stopped = false;
    this.retryTimer = null;
    this.pingTimer = null;
    this.pollTimer = null;
  }

  /** Opens the socket and starts the polling fallback. */
  start() {
    this.stopped = false;
    this.connect();
    this.schedulePoll(0);
    return this;
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    clearTimeout(this.pollTimer);
    clearInterval(this.pingTimer);
    if (this.socket) this.socket.close(1000, 'page closed');
    this.socket = null;
  }

  /**
   * Follows a market from the tick after `lastSeq` (null: from the next live tick).
   * @param {string} symbol
   * @param {{lastSeq: number|null, intervalMs?: number}} from
   */
  watch(symbol, { lastSeq, intervalMs = 1000 }) {
    this.markets.set(symbol, { lastSeq, intervalMs, queue: Promise.resolve() });
    this.send('subscribe', lastSeq === null ? { symbols: [symbol] } : { symbols: [symbol], fromSeq: { [symbol]: lastSeq } });
  }

  unwatch(symbol) {
    if (this.markets.delete(symbol)) this.send('unsubscribe', { symbols: [symbol] });
  }

  // ---- the socket ------------------------------------------------------------------------

  connect() {
    if (this.stopped) return;
    this.setState(this.attempt === 0 ? 'connecting' : 'polling');
    const url = `${location.protocol === 'https:' ? 'wss:' : 'ws:'}//${location.host}/ws`;
    let socket;
    try {
      socket = new WebSocket(url);
    } catch {
      this.retry();
      return;
    }
    this.socket = socket;
    socket.addEventListener('open', () => {
      this.attempt = 0;
      this.setState('live');
      const symbols = [...this.markets.keys()];
      if (symbols.length > 0) {
        const fromSeq = {};
        for (const [symbol, market] of this.markets) if (market.lastSeq !== null) fromSeq[symbol] = market.lastSeq;
        this.send('subscribe', { symbols, fromSeq });
      }
      clearInterval(this.pingTimer);
      this.pingTimer = setInterval(() => this.send('ping'), PING_MS);
    });
    socket.addEventListener('message', (event) => this.receive(event.data));
    socket.addEventListener('close', (event) => {
      if (this.socket === socket) this.socket = null;
      clearInterval(this.pingTimer);
      if (this.stopped) return;
      if (SESSION_ENDED.has(event.reason)) {
        this.stop();
        this.emit('signedout', { reason: event.reason });
        return;
      }
      if (event.reason.endsWith('sign in again')) this.emit('signinagain', { reason: event.reason });
      this.setState('polling');
      this.schedulePoll(0);
      this.retry();
    });
  }

  retry() {
    const base = Math.min(MAX_BACKOFF_MS, 1000 * 2 ** this.attempt);
    this.attempt += 1;
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => this.connect(), base / 2 + Math.random() * (base / 2));
  }

  send(type, data) {
    if (this.socket?.readyState === WebSocket.OPEN) {
      this.socket.send(JSON.stringify(data === undefined ? { type } : { type, data }));
    }
  }

  receive(text) {
    let message;
    try {
      message = JSON.parse(text);
    } catch {
      return;
    }
    const data = message?.data ?? {};
    switch (message?.type) {
      case 'price_update':
        this.accept(normalise(data), true);
        break;
      case 'trade_update':
        if (data.trade) this.emit('trade', data.trade);
        break;
      case 'balance_update':
        this.emit('balance', data);
        break;
      case 'notification':
        this.emit('notification', data);
        break;
      case 'authenticated':
        this.emit('authenticated', data);
        break;
      case 'resync':
        // The server may have missed events for us: what the page shows is read again.
        this.emit('resync', data);
        break;
      case 'error':
        if (data.code === 'seq_ahead') {
          // Our ticks are not from this server's history (its database was reset): start over.
          for (const market of this.markets.values()) market.lastSeq = null;
          this.send('subscribe', { symbols: [...this.markets.keys()] });
        }
        this.emit('servererror', data);
        break;
      default:
        break;
    }
  }

  // ---- ticks -----------------------------------------------------------------------------

  /** Passes a tick on in order, filling a gap before it from the REST API first. */
  accept(tick, live) {
    const market = this.markets.get(tick.symbol);
    if (!market) return;
    market.queue = market.queue.then(async () => {
      if (!this.markets.has(tick.symbol)) return;
      if (market.lastSeq !== null && tick.seq <= market.lastSeq) return;
      if (live && market.lastSeq !== null && tick.seq > market.lastSeq + 1) await this.fill(tick.symbol, market);
      if (market.lastSeq !== null && tick.seq <= market.lastSeq) return;
      market.lastSeq = tick.seq;
      this.emit('tick', tick);
    }).catch(() => {});
  }

  async fill(symbol, market) {
    const { ticks } = await get('/api/market/ticks', { symbol, afterSeq: market.lastSeq, limit: MAX_TICKS_PER_FETCH });
    for (const raw of ticks) {
      const tick = normalise(raw);
      if (market.lastSeq === null || tick.seq > market.lastSeq) {
        market.lastSeq = tick.seq;
        this.emit('tick', tick);
      }
    }
  }

  // ---- polling fallback ------------------------------------------------------------------

  schedulePoll(delay) {
    clearTimeout(this.pollTimer);
    if (this.stopped) return;
    this.pollTimer = setTimeout(() => this.poll(), delay);
  }

  async poll() {
    if (this.state === 'live' || this.stopped) return;
    this.emit('poll', {});
    for (const [symbol, market] of this.markets) {
      market.queue = market.queue.then(async () => {
        if (market.lastSeq === null) {
          const { ticks } = await get('/api/market/ticks', { symbol, limit: 1 });
          if (ticks.length > 0) market.lastSeq = ticks[ticks.length - 1].seq - 1;
        }
        if (market.lastSeq !== null && this.markets.get(symbol) === market) await this.fill(symbol, market);
      }).catch(() => {});
    }
    const interval = Math.min(1000, Math.max(250, ...[...this.markets.values()].map((m) => m.intervalMs)));
    this.schedulePoll(interval);
  }

  setState(state) {
    if (this.state === state) return;
    this.state = state;
    this.emit('state', state);
  }

  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}
