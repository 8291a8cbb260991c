/**
 * Text for people, from the API's exact decimal strings. Money and probabilities are never
 * turned into binary floating point here: they are reformatted as text, and where arithmetic
 * is needed it is done on BigInt cents (see `fairness.js` `parseCents`/`formatCents`).
 */

import { formatCents, parseCents } from './fairness.js';

/** Groups the integer part in threes: `"12345.5"` → `"12,345.5"`. */
function group(integer) {
  return integer.replace(/\B(?=(\d{3})+(?!\d))/g, ',');
}

/**
 * Money with exactly two decimals and thousands separators: `"10000"` → `"10,000.00"`,
 * `"-25.5"` → `"-25.50"`. Anything that is not a decimal string is shown as a dash.
 * @param {string|null|undefined} text
 * @param {{sign?: boolean}} [options] `sign`: a leading `+` for positive amounts.
 */
export function money(text, options = {}) {
  if (typeof text !== 'string' || !/^-?\d+(\.\d{1,2})?$/.test(text)) return '—';
  const cents = parseCents(text);
  const plain = formatCents(cents < 0n ? -cents : cents);
  const [whole, fraction] = plain.split('.');
  const sign = cents < 0n ? '−' : options.sign && cents > 0n ? '+' : '';
  return `${sign}${group(whole)}.${fraction}`;
}

/** Whether a money string is negative, zero or positive (-1, 0, 1). */
export function moneySign(text) {
  if (typeof text !== 'string' || !/^-?\d+(\.\d{1,2})?$/.test(text)) return 0;
  const cents = parseCents(text);
  return cents < 0n ? -1 : cents > 0n ? 1 : 0;
}

/**
 * A probability or rate given as a decimal string (`"0.540540541"`, `"0.8500"`) as a percent
 * with `digits` decimals, by decimal-string shifting and half-up rounding on BigInt.
 * @param {string|null|undefined} text
 * @param {number} [digits=2]
 */
export function percent(text, digits = 2) {
  if (typeof text !== 'string') return '—';
  const match = /^(-?)(\d+)(?:\.(\d+))?$/.exec(text);
  if (!match) return '—';
  const [, minus, whole, fraction = ''] = match;
  // value × 100, kept as an integer scaled by 10^(digits + 1) for rounding.
  const scale = digits + 3;
  const padded = (fraction + '0'.repeat(scale)).slice(0, scale);
  let scaled = BigInt(whole + padded); // value × 10^scale
  scaled = (scaled + 5n) / 10n; // round half up at digits + 2 decimals of the value
  const text2 = scaled.toString().padStart(digits + 3, '0');
  const intPart = text2.slice(0, text2.length - digits).replace(/^0+(?=\d)/, '');
  const frac = digits > 0 ? '.' + text2.slice(text2.length - digits) : '';
  const zero = /^[0.]+$/.test(intPart + frac);
  return `${minus && !zero ? '−' : ''}${intPart}${frac} %`;
}

/** A price string as given (eight decimals), optionally shortened to `digits` decimals. */
export function price(text, digits = 8) {
  if (typeof text !== 'string') return '—';
  const [whole, fraction = ''] = text.split('.');
  return digits === 0 ? whole : `${group(whole)}.${fraction.padEnd(digits, '0').slice(0, digits)}`;
}

/** A time as `HH:MM:SS` in the viewer's zone. */
export function clock(value) {
  const date = new Date(typeof value === 'number' ? value : Date.parse(value));
  if (Number.isNaN(date.getTime())) return '—';
  return date.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false });
}

/** A date and time, short. */
export function dateTime(value) {
  const date = new Date(typeof value === 'number' ? value : Date.parse(value));
  if (Number.isNaN(date.getTime())) return '—';
  return date.toLocaleString([], {
    month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false,
  });
}

/** Seconds as `m:ss` (or `s s` under a minute). */
export function seconds(total) {
  const s = Math.max(0, Math.ceil(total));
  if (s < 60) return `${s}s`;
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
}

/** A duration choice: `5` → `5 s`, `120` → `2 min`. */
export function durationLabel(secs) {
  return secs < 60 || secs % 60 !== 0 ? `${secs} s` : `${secs / 60} min`;
}

/** A money amount a user typed: digits with at most two decimals (the server checks again). */
export function isAmount(text) {
  return /^\d{1,9}(\.\d{1,2})?$/.test(text.trim());
}
