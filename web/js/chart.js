/**
 * A small hand-written <canvas> price chart: a tick line or OHLC candles, with the entry,
 * expiry and exit of the user's trades marked. No library.
 *
 * Prices are converted to Numbers here only to place pixels; nothing computed from them is
 * shown as a price or used for money (labels are cut from the exact strings where they can be).
 */

import { clock } from './format.js';

/** A price string cut to `digits` decimals, for the axis tag (no grouping, like the gridlines). */
function cut(text, digits) {
  const [whole, fraction = ''] = text.split('.');
  return `${whole}.${fraction.padEnd(digits, '0').slice(0, digits)}`;
}

const MAX_TICKS = 2000;
const VISIBLE_TICKS = 300;
const AXIS_WIDTH = 78;
const AXIS_HEIGHT = 22;
const TOP = 10;

function css(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || '#888';
}

/** Decimals that tell apart gridlines `step` apart. */
function decimalsFor(step) {
  if (!(step > 0)) return 2;
  return Math.min(8, Math.max(2, Math.ceil(-Math.log10(step)) + 1));
}

/** A "nice" step (1, 2 or 5 × 10^k) close to `raw`. */
function niceStep(raw) {
  const power = 10 ** Math.floor(Math.log10(raw));
  const unit = raw / power;
  return (unit < 1.5 ? 1 : unit < 3.5 ? 2 : unit < 7.5 ? 5 : 10) * power;
}

export class PriceChart {
  /**
   * @param {HTMLCanvasElement} canvas inside a box of fixed height.
   * @param {HTMLElement} message an overlay for "Loading…" and errors.
   */
  constructor(canvas, message) {
    this.canvas = canvas;
    this.message = message;
    this.mode = 'ticks';
    this.ticks = [];
    this.candles = [];
    this.candleMs = 1000;
    this.markers = [];
    this.symbol = '';
    this.pending = false;
    this.observer = new ResizeObserver(() => this.redraw());
    this.observer.observe(canvas.parentElement);
    this.colors = null;
  }

  /** Shows `text` over the chart (null hides it). */
  say(text) {
    this.message.textContent = text ?? '';
    this.message.hidden = !text;
  }

  setSymbol(symbol) {
    this.symbol = symbol;
    this.ticks = [];
    this.candles = [];
    this.redraw();
  }

  setMode(mode) {
    this.mode = mode;
    this.redraw();
  }

  /** @param {{seq:number, ts:number, price:string}[]} ticks oldest first */
  setTicks(ticks) {
    this.ticks = ticks.map((t) => ({ seq: t.seq, ts: t.ts, price: t.price, y: Number(t.price) }));
    this.redraw();
  }

  addTick(tick) {
    const last = this.ticks[this.ticks.length - 1];
    if (last && tick.seq <= last.seq) return;
    this.ticks.push({ seq: tick.seq, ts: tick.ts, price: tick.price, y: Number(tick.price) });
    if (this.ticks.length > MAX_TICKS) this.ticks.splice(0, this.ticks.length - MAX_TICKS);
    this.redraw();
  }

  /** @param {{ts:number, open:string, high:string, low:string, close:string}[]} candles */
  setCandles(candles, intervalMs) {
    this.candleMs = intervalMs;
    this.candles = candles.map((c) => ({
      ts: c.ts, o: Number(c.open), h: Number(c.high), l: Number(c.low), c: Number(c.close), close: c.close,
    }));
    this.redraw();
  }

  /**
   * The user's trades on this market.
   * @param {{id:number, direction:'up'|'down', active:boolean, entry:{ts:number, price:string}|null,
   *   expiresAt:number|null, exit:{ts:number, price:string}|null}[]} markers
   */
  setMarkers(markers) {
    this.markers = markers;
    this.redraw();
  }

  redraw() {
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => {
      this.pending = false;
      this.draw();
    });
  }

  draw() {
    const canvas = this.canvas;
    const box = canvas.parentElement.getBoundingClientRect();
    const ratio = window.devicePixelRatio || 1;
    const width = Math.max(1, Math.floor(box.width));
    const height = Math.max(1, Math.floor(box.height));
    if (canvas.width !== width * ratio || canvas.height !== height * ratio) {
      canvas.width = width * ratio;
      canvas.height = height * ratio;
    }
    const g = canvas.getContext('2d');
    g.setTransform(ratio, 0, 0, ratio, 0, 0);
    g.clearRect(0, 0, width, height);
    this.colors ??= {
      line: css('--accent'), grid: css('--line'), text: css('--muted'), up: css('--up'), down: css('--down'),
      fg: css('--text'), panel: css('--panel'),
    };
    const c = this.colors;

    const series = this.mode === 'candles' ? this.candles : this.ticks.slice(-VISIBLE_TICKS);
    if (series.length === 0) return;

    // The window: the data, plus the expiry of an open trade if it is not far ahead.
    const first = series[0].ts;
    let last = series[series.length - 1].ts + (this.mode === 'candles' ? this.candleMs : 0);
    const span = Math.max(1000, last - first);
    for (const m of this.markers) {
      if (m.active && m.expiresAt && m.expiresAt > last && m.expiresAt < last + span * 0.6) last = m.expiresAt;
    }
    const right = last + span * 0.04;
    let lo = Infinity;
    let hi = -Infinity;
    for (const p of series) {
      lo = Math.min(lo, this.mode === 'candles' ? p.l : p.y);
      hi = Math.max(hi, this.mode === 'candles' ? p.h : p.y);
    }
    for (const m of this.markers) {
      if (m.entry && m.entry.ts >= first && m.entry.ts <= right) {
        lo = Math.min(lo, Number(m.entry.price));
        hi = Math.max(hi, Number(m.entry.price));
      }
    }
    if (hi - lo < hi * 1e-6) {
      hi += Math.max(hi * 1e-5, 1e-6);
      lo -= Math.max(lo * 1e-5, 1e-6);
    }
    const pad = (hi - lo) * 0.08;
    lo -= pad;
    hi += pad;

    const plotW = width - AXIS_WIDTH;
    const plotH = height - AXIS_HEIGHT - TOP;
    const x = (ts) => ((ts - first) / (right - first)) * plotW;
    const y = (v) => TOP + (1 - (v - lo) / (hi - lo)) * plotH;

    // Grid and price axis.
    const step = niceStep((hi - lo) / 4);
    const decimals = decimalsFor(step);
    g.font = '11px ui-monospace, "DejaVu Sans Mono", monospace';
    g.textBaseline = 'middle';
    g.lineWidth = 1;
    const lastPoint = series[series.length - 1];
    const lastValue = this.mode === 'candles' ? lastPoint.c : lastPoint.y;
    const ly = y(lastValue);
    for (let v = Math.ceil(lo / step) * step; v <= hi; v += step) {
      const py = Math.round(y(v)) + 0.5;
      g.strokeStyle = c.grid;
      g.beginPath();
      g.moveTo(0, py);
      g.lineTo(plotW, py);
      g.stroke();
      // The last price's label takes precedence over a gridline label it would cover.
      if (Math.abs(py - ly) < 16) continue;
      g.fillStyle = c.text;
      g.fillText(v.toFixed(decimals), plotW + 6, py);
    }
    // Time axis.
    g.textBaseline = 'alphabetic';
    const labels = Math.max(2, Math.floor(plotW / 110));
    let previous = '';
    for (let i = 0; i <= labels; i++) {
      const ts = first + ((right - first) * i) / labels;
      const px = x(ts);
      const text = clock(ts);
      if (text === previous) continue;
      previous = text;
      const w = g.measureText(text).width;
      g.fillStyle = c.text;
      g.fillText(text, Math.min(Math.max(0, px - w / 2), plotW - w), height - 6);
    }

    g.save();
    g.beginPath();
    g.rect(0, 0, plotW, height);
    g.clip();
    if (this.mode === 'candles') this.drawCandles(g, series, x, y, plotW);
    else this.drawLine(g, series, x, y, plotH);
    this.drawMarkers(g, x, y, first, right, plotH);
    g.restore();

    // The last price, labelled on the axis.
    const lastText = cut(this.mode === 'candles' ? lastPoint.close : lastPoint.price, Math.max(decimals, 2));
    g.fillStyle = c.line;
    g.fillRect(plotW + 1, ly - 9, AXIS_WIDTH - 1, 18);
    g.fillStyle = c.panel;
    g.textBaseline = 'middle';
    g.fillText(lastText, plotW + 5, ly);
  }

  drawLine(g, ticks, x, y, plotH) {
    const c = this.colors;
    g.beginPath();
    ticks.forEach((t, i) => (i === 0 ? g.moveTo(x(t.ts), y(t.y)) : g.lineTo(x(t.ts), y(t.y))));
    g.strokeStyle = c.line;
    g.lineWidth = 1.6;
    g.stroke();
    const end = ticks[ticks.length - 1];
    g.lineTo(x(end.ts), TOP + plotH);
    g.lineTo(x(ticks[0].ts), TOP + plotH);
    g.closePath();
    const fill = g.createLinearGradient(0, TOP, 0, TOP + plotH);
    fill.addColorStop(0, 'rgba(78, 161, 255, 0.22)');
    fill.addColorStop(1, 'rgba(78, 161, 255, 0)');
    g.fillStyle = fill;
    g.fill();
    g.beginPath();
    g.arc(x(end.ts), y(end.y), 3, 0, Math.PI * 2);
    g.fillStyle = c.line;
    g.fill();
  }

  drawCandles(g, candles, x, y, plotW) {
    const c = this.colors;
    const slot = (x(candles[0].ts + this.candleMs) - x(candles[0].ts)) || plotW / candles.length;
    const body = Math.max(1, Math.min(14, slot * 0.7));
    for (const k of candles) {
      const mid = x(k.ts) + slot / 2;
      const color = k.c >= k.o ? c.up : c.down;
      g.strokeStyle = color;
      g.fillStyle = color;
      g.lineWidth = 1;
      g.beginPath();
      g.moveTo(Math.round(mid) + 0.5, y(k.h));
      g.lineTo(Math.round(mid) + 0.5, y(k.l));
      g.stroke();
      const top = y(Math.max(k.o, k.c));
      g.fillRect(mid - body / 2, top, body, Math.max(1, y(Math.min(k.o, k.c)) - top));
    }
  }

  drawMarkers(g, x, y, first, right, plotH) {
    const c = this.colors;
    for (const m of this.markers) {
      if (!m.entry) continue;
      const color = m.direction === 'up' ? c.up : c.down;
      const ex = x(m.entry.ts);
      const ey = y(Number(m.entry.price));
      const end = m.exit ? m.exit.ts : m.expiresAt ?? right;
      if (end < first || m.entry.ts > right) continue;
      // The entry level until expiry.
      g.setLineDash([5, 4]);
      g.strokeStyle = color;
      g.lineWidth = 1.2;
      g.beginPath();
      g.moveTo(Math.max(0, ex), ey);
      g.lineTo(x(Math.min(m.expiresAt ?? right, right)), ey);
      g.stroke();
      if (m.expiresAt && m.expiresAt <= right) {
        g.beginPath();
        g.moveTo(x(m.expiresAt), TOP);
        g.lineTo(x(m.expiresAt), TOP + plotH);
        g.stroke();
      }
      g.setLineDash([]);
      // The entry: a triangle pointing the trade's way.
      if (m.entry.ts >= first) {
        const s = 6;
        g.fillStyle = color;
        g.beginPath();
        if (m.direction === 'up') {
          g.moveTo(ex, ey - s);
          g.lineTo(ex - s, ey + s * 0.7);
          g.lineTo(ex + s, ey + s * 0.7);
        } else {
          g.moveTo(ex, ey + s);
          g.lineTo(ex - s, ey - s * 0.7);
          g.lineTo(ex + s, ey - s * 0.7);
        }
        g.closePath();
        g.fill();
      }
      // The exit: a ring.
      if (m.exit && m.exit.ts >= first && m.exit.ts <= right) {
        g.beginPath();
        g.arc(x(m.exit.ts), y(Number(m.exit.price)), 4.5, 0, Math.PI * 2);
        g.fillStyle = c.panel;
        g.fill();
        g.lineWidth = 2;
        g.strokeStyle = c.fg;
        g.stroke();
      }
    }
  }
}
