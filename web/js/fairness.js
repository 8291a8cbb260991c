/**
 * fairtick's provably fair markets, in the browser: the tick algorithm, the epoch check and
 * the public pricing model, recomputed exactly from a revealed seed.
 *
 * `docs/fairness.md` is normative; this file is a second, independently written
 * implementation of it (the Rust reference lives in `crates/fairtick-core/src/fairness/`), and
 * `web/tests/fairness.test.mjs` checks it against the document's own test vectors. Section
 * numbers below (§5.4, …) refer to that document.
 *
 * What this module must not do: use binary floating point for a price, a probability or an
 * amount of money. Every such value is a `BigInt` (price units at scale 10⁸, probabilities in
 * parts per billion, money in cents), and so is every intermediate result; JavaScript Numbers
 * appear only as small counters and indices. It has no dependencies and no build step: it
 * needs `globalThis.crypto.subtle` (any modern browser, Node 20) and `BigInt`. It does no IO.
 */

const encoder = new TextEncoder();

/** The domain tag that opens every tick message (§5.2). */
const TICK_DOMAIN = encoder.encode('fairtick/tick/v1');

/** A 365-day year in milliseconds (§3). */
const MS_PER_YEAR = 31536000000n;

/** `10¹² · 2¹⁷`: the scale of `sigma` times the scale of `z_raw` (§5.4). */
const STEP_DIVISOR = 131072000000000000n;

/** Twelve uniforms on `0 … 65535` sum to `786420` at most; `2·S − 786420` is centred (§5.3). */
const Z_CENTRE = 786420n;

/** Units per whole price: prices have eight decimals (§2). */
export const PRICE_SCALE = 100000000n;
/** The smallest price in units, `0.00000001` (§2). */
export const PRICE_MIN = 1n;
/** The largest price in units, `10000000000.00000000` (§2). */
export const PRICE_MAX = 1000000000000000000n;
/** Probabilities are published in parts per billion (§7). */
export const PPB = 1000000000n;
/** Rates (payout rate, spread) are in basis points (§7.5, §7.6). */
export const BASIS_POINTS = 10000n;

const I64_MIN = -(1n << 63n);
const I64_MAX = (1n << 63n) - 1n;
const U64_MAX = (1n << 64n) - 1n;
const U32_MAX = (1n << 32n) - 1n;
/** Runs of ticks start at an index a Number holds exactly, so reported indices are exact. */
const SAFE_MAX = BigInt(Number.MAX_SAFE_INTEGER);

// ---------------------------------------------------------------------------------------------
// Input checking. A malformed input is a programming or data error, so it throws (TypeError for
// the wrong kind of value, RangeError for a value out of bounds) instead of being guessed at.

/**
 * A BigInt from a BigInt, a safe-integer Number or a decimal string, within `[min, max]`.
 * Only for counts and parameters, never for prices, probabilities or money (those must
 * already be BigInt, see `exact`).
 */
function integer(name, value, min, max) {
  let v;
  if (typeof value === 'bigint') v = value;
  else if (typeof value === 'number' && Number.isSafeInteger(value)) v = BigInt(value);
  else if (typeof value === 'string' && /^-?[0-9]+$/.test(value)) v = BigInt(value);
  else throw new TypeError(`${name} must be an integer, got ${String(value)}`);
  if (v < min || v > max) throw new RangeError(`${name} must be in ${min}..=${max}, got ${v}`);
  return v;
}

/** A BigInt within `[min, max]`: prices, probabilities and money are never Numbers. */
function exact(name, value, min, max) {
  if (typeof value !== 'bigint') throw new TypeError(`${name} must be a BigInt, got ${typeof value}`);
  if (value < min || (max !== undefined && value > max)) {
    throw new RangeError(`${name} must be in ${min}..=${max ?? '∞'}, got ${value}`);
  }
  return value;
}

/** A price in units, `[1, 10¹⁸]`. */
function priceUnits(name, value) {
  return exact(name, value, PRICE_MIN, PRICE_MAX);
}

/** A probability in parts per billion, `[0, 10⁹]`. */
function probability(name, value) {
  return exact(name, value, 0n, PPB);
}

/** 32 bytes from 64 hexadecimal characters, either case (§1). */
function hex32(name, text) {
  if (typeof text !== 'string' || !/^[0-9a-fA-F]{64}$/.test(text)) {
    throw new TypeError(`${name} must be 64 hexadecimal characters`);
  }
  const bytes = new Uint8Array(32);
  for (let i = 0; i < 32; i++) bytes[i] = parseInt(text.slice(2 * i, 2 * i + 2), 16);
  return bytes;
}

function toHex(bytes) {
  let text = '';
  for (const byte of bytes) text += byte.toString(16).padStart(2, '0');
  return text;
}

/** The symbol's bytes, if it is 1 to 32 characters among `A–Z a–z 0–9 - _ . / :` (§3). */
function symbolBytes(symbol) {
  if (typeof symbol !== 'string' || !/^[A-Za-z0-9\-_./:]{1,32}$/.test(symbol)) {
    throw new RangeError('symbol must be 1 to 32 characters among A-Z a-z 0-9 - _ . / :');
  }
  return encoder.encode(symbol);
}

/** A market's checked parameters: the symbol's bytes and its per-tick `sigma`. */
function market(params) {
  if (params === null || typeof params !== 'object') {
    throw new TypeError('params must be {symbol, volatilityBp, tickIntervalMs}');
  }
  return {
    symbol: symbolBytes(params.symbol),
    sigma: tickSigma(params.volatilityBp, params.tickIntervalMs),
  };
}

// ---------------------------------------------------------------------------------------------
// Hashing, commitments and the tick algorithm (§4, §5).

async function sha256(bytes) {
  return new Uint8Array(await globalThis.crypto.subtle.digest('SHA-256', bytes));
}

/**
 * SHA-256 of `bytes` (a Uint8Array or other BufferSource) as 64 lowercase hexadecimal
 * characters.
 * @param {BufferSource} bytes
 * @returns {Promise<string>}
 */
export async function sha256Hex(bytes) {
  return toHex(await sha256(bytes));
}

/**
 * The commitment to a seed (§4): `SHA-256` of the 32 raw seed bytes, not of their hex text,
 * in lowercase hex.
 * @param {string} seedHex 64 hexadecimal characters, either case.
 * @returns {Promise<string>}
 */
export async function commitmentOf(seedHex) {
  return sha256Hex(hex32('seed', seedHex));
}

/**
 * The integer square root: the largest `s` with `s² ≤ v` (§1).
 * @param {bigint} v a non-negative BigInt.
 * @returns {bigint}
 */
export function isqrt(v) {
  exact('isqrt argument', v, 0n);
  if (v < 2n) return v;
  // Start at a power of two at least √v; Newton's iteration then decreases to ⌊√v⌋.
  let x = 1n << BigInt(Math.ceil(v.toString(2).length / 2));
  for (;;) {
    const y = (x + v / x) >> 1n;
    if (y >= x) return x;
    x = y;
  }
}

/**
 * A market's per-tick volatility `sigma` at scale 10¹² (§5.1):
 * `isqrt(⌊volatility_bp² · tick_interval_ms · 10¹⁶ / 31536000000⌋)`.
 * @param {bigint|number} volatilityBp `1 ..= 100000`.
 * @param {bigint|number} tickIntervalMs `1 ..= 86400000`.
 * @returns {bigint}
 */
export function tickSigma(volatilityBp, tickIntervalMs) {
  const vol = integer('volatilityBp', volatilityBp, 1n, 100000n);
  const interval = integer('tickIntervalMs', tickIntervalMs, 1n, 86400000n);
  return isqrt((vol * vol * interval * 10n ** 16n) / MS_PER_YEAR);
}

/**
 * The exact bytes hashed for one tick (§5.2): the domain tag, the seed, `u32be` of the
 * symbol's length, the symbol, `i64be(epochId)` and `u64be(index)`.
 * @param {string} symbol
 * @param {string} seedHex
 * @param {bigint|number|string} epochId a signed 64-bit integer.
 * @param {bigint|number} index the tick's index within the epoch, an unsigned 64-bit integer.
 * @returns {Uint8Array}
 */
export function tickMessage(symbol, seedHex, epochId, index) {
  return message(
    symbolBytes(symbol),
    hex32('seed', seedHex),
    integer('epochId', epochId, I64_MIN, I64_MAX),
    integer('index', index, 0n, U64_MAX),
  );
}

function message(symbol, seed, epochId, index) {
  const bytes = new Uint8Array(TICK_DOMAIN.length + 32 + 4 + symbol.length + 8 + 8);
  const view = new DataView(bytes.buffer);
  let at = 0;
  bytes.set(TICK_DOMAIN, at);
  at += TICK_DOMAIN.length;
  bytes.set(seed, at);
  at += 32;
  view.setUint32(at, symbol.length, false);
  at += 4;
  bytes.set(symbol, at);
  at += symbol.length;
  view.setBigInt64(at, epochId, false);
  at += 8;
  view.setBigUint64(at, index, false);
  return bytes;
}

/**
 * The draw `z_raw` of a tick hash (§5.3): twice the sum of its first twelve big-endian 16-bit
 * words, minus 786420. Bytes 24 to 31 are not used.
 * @param {Uint8Array} hash the 32-byte tick hash.
 * @returns {bigint} in `−786420 … 786420`.
 */
export function tickZRaw(hash) {
  if (!(hash instanceof Uint8Array) || hash.length !== 32) throw new TypeError('hash must be 32 bytes');
  let sum = 0n;
  for (let k = 0; k < 12; k++) sum += (BigInt(hash[2 * k]) << 8n) | BigInt(hash[2 * k + 1]);
  return 2n * sum - Z_CENTRE;
}

/**
 * One step of the walk (§5.4): the change `prev · sigma · z_raw / (10¹² · 2¹⁷)` rounded to the
 * nearest unit with halves away from zero, then kept within `[1, 10¹⁸]`.
 * @param {bigint} prevUnits the previous price in units.
 * @param {bigint|number} sigma from `tickSigma`.
 * @param {bigint|number} zRaw from `tickZRaw`.
 * @returns {bigint} the new price in units.
 */
export function tickStep(prevUnits, sigma, zRaw) {
  return step(
    priceUnits('prevUnits', prevUnits),
    integer('sigma', sigma, 0n, U64_MAX),
    integer('zRaw', zRaw, -Z_CENTRE, Z_CENTRE),
  );
}

function step(prev, sigma, zRaw) {
  const numerator = prev * sigma * zRaw;
  const abs = numerator < 0n ? -numerator : numerator;
  const magnitude = (2n * abs + STEP_DIVISOR) / (2n * STEP_DIVISOR);
  const next = prev + (numerator < 0n ? -magnitude : magnitude);
  return next < PRICE_MIN ? PRICE_MIN : next > PRICE_MAX ? PRICE_MAX : next;
}

async function nextPrice(m, seed, epochId, index, prev) {
  const hash = await sha256(message(m.symbol, seed, epochId, index));
  return step(prev, m.sigma, tickZRaw(hash));
}

/**
 * The price of tick `index` of an epoch (§5), given the price before it: the epoch's start
 * price for tick 0, otherwise the price of tick `index − 1`.
 * @param {{symbol: string, volatilityBp: bigint|number, tickIntervalMs: bigint|number}} params
 * @param {string} seedHex the revealed seed, 64 hexadecimal characters.
 * @param {bigint|number|string} epochId a signed 64-bit integer.
 * @param {bigint|number} index
 * @param {bigint} prevUnits
 * @returns {Promise<bigint>} the tick's price in units.
 */
export async function tickPrice(params, seedHex, epochId, index, prevUnits) {
  return nextPrice(
    market(params),
    hex32('seed', seedHex),
    integer('epochId', epochId, I64_MIN, I64_MAX),
    integer('index', index, 0n, U64_MAX),
    priceUnits('prevUnits', prevUnits),
  );
}

/**
 * `count` consecutive ticks of an epoch (§5.5), from tick `firstIndex`. `startUnits` is the
 * price before tick `firstIndex`: the epoch's start price when `firstIndex` is 0.
 * @param {{symbol: string, volatilityBp: bigint|number, tickIntervalMs: bigint|number}} params
 * @param {string} seedHex
 * @param {bigint|number|string} epochId
 * @param {bigint} startUnits
 * @param {number} count
 * @param {bigint|number} [firstIndex=0] at most `Number.MAX_SAFE_INTEGER`.
 * @returns {Promise<bigint[]>} the prices in units.
 */
export async function recomputeTicks(params, seedHex, epochId, startUnits, count, firstIndex = 0) {
  const m = market(params);
  const seed = hex32('seed', seedHex);
  const epoch = integer('epochId', epochId, I64_MIN, I64_MAX);
  const first = integer('firstIndex', firstIndex, 0n, SAFE_MAX);
  const n = Number(integer('count', count, 0n, SAFE_MAX));
  let prev = priceUnits('startUnits', startUnits);
  const ticks = [];
  for (let offset = 0; offset < n; offset++) {
    prev = await nextPrice(m, seed, epoch, first + BigInt(offset), prev);
    ticks.push(prev);
  }
  return ticks;
}

/**
 * Checks a run of recorded ticks (§6 step 3) starting at tick `firstIndex`, given the price
 * before it: the whole epoch from its start price, or the stretch of a trade's proof.
 * Reports the first tick that differs, with both prices.
 * @param {{symbol: string, volatilityBp: bigint|number, tickIntervalMs: bigint|number}} params
 * @param {string} seedHex
 * @param {bigint|number|string} epochId
 * @param {bigint|number} firstIndex
 * @param {bigint} prevUnits
 * @param {bigint[]} tickUnits the recorded prices in units.
 * @returns {Promise<{ok: true} | {ok: false, reason: 'tick', index: number, expected: bigint, got: bigint}>}
 */
export async function verifyTicks(params, seedHex, epochId, firstIndex, prevUnits, tickUnits) {
  const m = market(params);
  const seed = hex32('seed', seedHex);
  const epoch = integer('epochId', epochId, I64_MIN, I64_MAX);
  const first = integer('firstIndex', firstIndex, 0n, SAFE_MAX);
  let prev = priceUnits('prevUnits', prevUnits);
  if (!Array.isArray(tickUnits)) throw new TypeError('tickUnits must be an array of BigInt');
  for (let offset = 0; offset < tickUnits.length; offset++) {
    const got = tickUnits[offset];
    if (typeof got !== 'bigint') throw new TypeError(`tick ${offset} must be a BigInt`);
    const expected = await nextPrice(m, seed, epoch, first + BigInt(offset), prev);
    if (got !== expected) {
      return { ok: false, reason: 'tick', index: Number(first) + offset, expected, got };
    }
    prev = expected;
  }
  return { ok: true };
}

/**
 * Checks a revealed epoch (§6): that the seed hashes to the published commitment, then that
 * `tickUnits` are exactly ticks `0, 1, …` of the epoch from `startUnits`. Only the first
 * problem is reported. For a commitment mismatch `index` is null, `expected` is the published
 * commitment and `got` is the seed's hash.
 * @param {{symbol: string, volatilityBp: bigint|number, tickIntervalMs: bigint|number}} params
 * @param {string} seedHex the revealed seed.
 * @param {string} commitmentHex the commitment published before the epoch (either case).
 * @param {bigint|number|string} epochId
 * @param {bigint} startUnits
 * @param {bigint[]} tickUnits
 * @returns {Promise<{ok: true} | {ok: false, reason: 'commitment'|'tick', index: number|null, expected: bigint|string, got: bigint|string}>}
 */
export async function verifyEpoch(params, seedHex, commitmentHex, epochId, startUnits, tickUnits) {
  const published = toHex(hex32('commitment', commitmentHex));
  const computed = await commitmentOf(seedHex);
  if (computed !== published) {
    return { ok: false, reason: 'commitment', index: null, expected: published, got: computed };
  }
  return verifyTicks(params, seedHex, epochId, 0, startUnits, tickUnits);
}

/**
 * What a settled trade's two prices mean (§6): `up` wins if exit > entry, `down` if
 * exit < entry, and equal prices are a tie (stake refunded).
 * @param {'up'|'down'} direction
 * @param {bigint} entryUnits
 * @param {bigint} exitUnits
 * @returns {'win'|'loss'|'tie'}
 */
export function tradeResult(direction, entryUnits, exitUnits) {
  const entry = priceUnits('entryUnits', entryUnits);
  const exit = priceUnits('exitUnits', exitUnits);
  const sign = directionSign(direction);
  if (exit === entry) return 'tie';
  return (exit > entry) === (sign > 0) ? 'win' : 'loss';
}

function directionSign(direction) {
  if (direction === 'up') return 1;
  if (direction === 'down') return -1;
  throw new RangeError(`direction must be 'up' or 'down', got ${String(direction)}`);
}

// ---------------------------------------------------------------------------------------------
// Text forms. Parsing refuses anything it would have to round.

function formatScaled(value, decimals) {
  const scale = 10n ** BigInt(decimals);
  const sign = value < 0n ? '-' : '';
  const abs = value < 0n ? -value : value;
  return `${sign}${abs / scale}.${(abs % scale).toString().padStart(decimals, '0')}`;
}

/** Digits, optionally a dot and 1 to `decimals` digits; an optional leading minus if allowed. */
function parseScaled(name, text, decimals, signed) {
  if (typeof text !== 'string') throw new TypeError(`${name} must be a string`);
  const pattern = signed ? /^(-?)([0-9]+)(?:\.([0-9]+))?$/ : /^()([0-9]+)(?:\.([0-9]+))?$/;
  const match = pattern.exec(text);
  if (!match) throw new RangeError(`${name} must be a plain decimal number, got ${JSON.stringify(text)}`);
  const [, minus, whole, fraction = ''] = match;
  if (fraction.length > decimals) {
    throw new RangeError(`${name} must have at most ${decimals} decimals, got ${JSON.stringify(text)}`);
  }
  const value = BigInt(whole) * 10n ** BigInt(decimals) + BigInt(fraction.padEnd(decimals, '0'));
  return minus ? -value : value;
}

/**
 * A price's text form (§2): the integer part, a dot and exactly eight decimals.
 * @param {bigint} units a price in units, `[1, 10¹⁸]`.
 * @returns {string} e.g. `"1000.01017920"`.
 */
export function formatPrice(units) {
  return formatScaled(priceUnits('price', units), 8);
}

/**
 * A price in units from its text (§2). Accepts `"1000.01017920"`, and also fewer decimals or
 * none (`"0.0012"`, `"25"`); refuses signs, exponents, spaces, more than eight decimals (rather
 * than rounding) and anything outside `[0.00000001, 10000000000]`.
 * @param {string} text
 * @returns {bigint}
 */
export function parsePrice(text) {
  return priceUnits(`price ${JSON.stringify(text)}`, parseScaled('price', text, 8, false));
}

/**
 * Parts per billion as a decimal with nine places (`500000000n` → `"0.500000000"`); a
 * negative value (a house edge in the player's favour) gets a leading minus.
 * @param {bigint} ppb
 * @returns {string}
 */
export function formatPpb(ppb) {
  return formatScaled(exact('ppb', ppb, -(1n << 127n)), 9);
}

/**
 * Parts per billion from a decimal with at most nine places (`"0.499931208"`), optionally
 * negative; refuses anything it would have to round.
 * @param {string} text
 * @returns {bigint}
 */
export function parsePpb(text) {
  return parseScaled('ppb', text, 9, true);
}

/**
 * Money in cents as a decimal with two places (`9065n` → `"90.65"`).
 * @param {bigint} cents
 * @returns {string}
 */
export function formatCents(cents) {
  return formatScaled(exact('cents', cents, -(1n << 127n)), 2);
}

/**
 * Money in cents from a decimal with at most two places (`"100.00"`, `"5"`), optionally
 * negative; refuses anything it would have to round.
 * @param {string} text
 * @returns {bigint}
 */
export function parseCents(text) {
  return parseScaled('money', text, 2, true);
}

// ---------------------------------------------------------------------------------------------
// Fixed-point functions of the pricing model at scale 10¹⁸ (§7.1 to §7.3).

const ONE = 1000000000000000000n;
const LN2 = 693147180559945309n;
const INV_SQRT_2PI = 398942280401432677n;
const AS_P = 231641900000000000n;
const AS_B1 = 319381530000000000n;
const AS_B2 = -356563782000000000n;
const AS_B3 = 1781477937000000000n;
const AS_B4 = -1821255978000000000n;
const AS_B5 = 1330274429000000000n;
const SATURATION = 10n * ONE;

/** `ln(x)` at scale 10¹⁸ for `x ≥ ONE` (§7.2): halve into `[1, 2)`, then `2·atanh`. */
function ln1(x) {
  let k = 0n;
  let m = x;
  while (m >= 2n * ONE) {
    m >>= 1n;
    k += 1n;
  }
  const t = ((m - ONE) * ONE) / (m + ONE);
  const t2 = (t * t) / ONE;
  let sum = 0n;
  let power = t;
  let odd = 1n;
  while (power > 0n) {
    sum += power / odd;
    power = (power * t2) / ONE;
    odd += 2n;
  }
  return k * LN2 + 2n * sum;
}

/**
 * `ln(a / b)` at scale 10¹⁸ for positive integers `a`, `b` (§7.2); a ratio and its inverse
 * give exactly opposite results.
 * @param {bigint} a
 * @param {bigint} b
 * @returns {bigint}
 */
export function lnRatio(a, b) {
  exact('a', a, 1n);
  exact('b', b, 1n);
  return a >= b ? ln1((a * ONE) / b) : -ln1((b * ONE) / a);
}

/**
 * `exp(−y)` at scale 10¹⁸ for `y ≥ 0` at scale 10¹⁸ (§7.3).
 * @param {bigint} y
 * @returns {bigint}
 */
export function expNeg(y) {
  exact('y', y, 0n);
  const k = y / LN2;
  const r = y - k * LN2;
  let sum = 0n;
  let term = ONE;
  let j = 1n;
  while (term > 0n) {
    sum += term;
    term = (term * r) / (ONE * j);
    j += 1n;
  }
  return ((ONE * ONE) / sum) >> k;
}

/**
 * The standard normal density at `x` (§7.3), both at scale 10¹⁸, with `|x|` capped at 10.
 * @param {bigint} x
 * @returns {bigint}
 */
export function normalPdf(x) {
  exact('x', x, -(1n << 127n));
  let a = x < 0n ? -x : x;
  if (a > SATURATION) a = SATURATION;
  return (expNeg((a * a) / (2n * ONE)) * INV_SQRT_2PI) / ONE;
}

/**
 * The standard normal CDF `Φ(x)` (§7.3) by Abramowitz & Stegun 26.2.17, both at scale 10¹⁸;
 * exactly 0 or 1 beyond `|x| ≥ 10`. BigInt `/` truncates toward zero, which is the spec's
 * `tdiv`.
 * @param {bigint} x
 * @returns {bigint}
 */
export function normalCdf(x) {
  exact('x', x, -(1n << 127n));
  if (x >= SATURATION) return ONE;
  if (x <= -SATURATION) return 0n;
  const a = x < 0n ? -x : x;
  const t = (ONE * ONE) / (ONE + (AS_P * a) / ONE);
  let acc = AS_B5;
  acc = AS_B4 + (acc * t) / ONE;
  acc = AS_B3 + (acc * t) / ONE;
  acc = AS_B2 + (acc * t) / ONE;
  acc = AS_B1 + (acc * t) / ONE;
  const poly = (acc * t) / ONE;
  let q = (normalPdf(a) * poly) / ONE;
  if (q < 0n) q = 0n;
  if (q > ONE) q = ONE;
  return x >= 0n ? ONE - q : q;
}

// ---------------------------------------------------------------------------------------------
// The pricing model (§7.4 to §7.6). Probabilities in and out are BigInt parts per billion.

/**
 * The model's odds (§7.4) that the price, now `currentUnits`, ends strictly above (`up`),
 * strictly below (`down`) or exactly at (`tie`) `referenceUnits` after `ticks` more ticks of
 * per-tick volatility `sigma`. The three always sum to exactly 10⁹. Throws a RangeError
 * ("horizon too long") when `sigma² · ticks · 10¹² ≥ 2¹²⁸`.
 * @param {bigint|number} sigma from `tickSigma`, at scale 10¹².
 * @param {bigint|number} ticks the number `n` of ticks still to come.
 * @param {bigint} currentUnits `S`.
 * @param {bigint} referenceUnits `K`.
 * @returns {{up: bigint, down: bigint, tie: bigint}} parts per billion.
 */
export function outcomeOdds(sigma, ticks, currentUnits, referenceUnits) {
  const s = integer('sigma', sigma, 0n, U64_MAX);
  const n = integer('ticks', ticks, 0n, U64_MAX);
  const current = priceUnits('currentUnits', currentUnits);
  const reference = priceUnits('referenceUnits', referenceUnits);
  if (n === 0n || s === 0n) {
    const certain = (yes) => (yes ? PPB : 0n);
    return {
      up: certain(current > reference),
      down: certain(current < reference),
      tie: certain(current === reference),
    };
  }
  const v = s * s * n;
  if (v * 10n ** 12n >= 1n << 128n) throw new RangeError('horizon too long');
  const w = isqrt(v * 10n ** 12n);
  const half = v / 2000000n;
  const above = (b) => {
    const num = lnRatio(2n * current, b) - half;
    const abs = num < 0n ? -num : num;
    const d = abs >= 10n * w ? SATURATION : (abs * ONE) / w;
    return normalCdf(num >= 0n ? d : -d);
  };
  const upper = above(2n * reference + 1n);
  const lower = above(2n * reference - 1n);
  const up = (upper < lower ? upper : lower) / PPB;
  const down = (ONE - lower) / PPB;
  return { up, down, tie: PPB - up - down };
}

/**
 * The quote shown before a trade (§7.5): the odds at the current price used as both `S` and
 * `K`, seen from the trade's side, with the break-even share of decided trades
 * `⌈1/(1 + r)⌉` and the house edge `1 − P(win)·(1 + r) − P(tie)` (signed).
 * @param {'up'|'down'} direction
 * @param {bigint|number} sigma
 * @param {bigint|number} ticks `⌊duration_ms / tick_interval_ms⌋`, see `ticksWithin`.
 * @param {bigint} currentUnits the current price.
 * @param {bigint|number} payoutRateBp `r` in basis points (8500 = a win pays 185 %).
 * @returns {{win: bigint, tie: bigint, loss: bigint, breakEven: bigint, houseEdge: bigint}}
 *   parts per billion.
 */
export function quote(direction, sigma, ticks, currentUnits, payoutRateBp) {
  const sign = directionSign(direction);
  const r = integer('payoutRateBp', payoutRateBp, 0n, U32_MAX);
  const odds = outcomeOdds(sigma, ticks, currentUnits, currentUnits);
  const [win, loss] = sign > 0 ? [odds.up, odds.down] : [odds.down, odds.up];
  const gross = BASIS_POINTS + r;
  const breakEven = (BASIS_POINTS * PPB + gross - 1n) / gross;
  const houseEdge = (PPB * BASIS_POINTS - win * gross - odds.tie * BASIS_POINTS) / BASIS_POINTS;
  return { win, tie: odds.tie, loss, breakEven, houseEdge };
}

/**
 * The early-close bid for an open trade (§7.6), in cents, rounded down:
 * `⌊stake · (win · (10⁴ + r) + tie · 10⁴) · (10⁴ − spread_bp) / (10⁴ · 10⁹ · 10⁴)⌋`.
 * @param {bigint} stakeCents the stake in cents, at least 0.
 * @param {bigint|number} payoutRateBp `r` in basis points.
 * @param {bigint} winPpb the trade's win probability from `outcomeOdds`.
 * @param {bigint} tiePpb the tie probability; `winPpb + tiePpb ≤ 10⁹`.
 * @param {bigint|number} spreadBp `0 ..= 10000`.
 * @returns {bigint} cents.
 */
export function earlyCloseBid(stakeCents, payoutRateBp, winPpb, tiePpb, spreadBp) {
  const stake = exact('stakeCents', stakeCents, 0n);
  const r = integer('payoutRateBp', payoutRateBp, 0n, U32_MAX);
  const win = probability('winPpb', winPpb);
  const tie = probability('tiePpb', tiePpb);
  if (win + tie > PPB) throw new RangeError('winPpb + tiePpb must be at most 10⁹');
  const spread = integer('spreadBp', spreadBp, 0n, BASIS_POINTS);
  const value = win * (BASIS_POINTS + r) + tie * BASIS_POINTS;
  return (stake * value * (BASIS_POINTS - spread)) / (BASIS_POINTS * PPB * BASIS_POINTS);
}

/**
 * The model's `n` for a trade of `durationMs` on a regular feed (§7.5):
 * `⌊duration_ms / tick_interval_ms⌋`, the ticks after the entry tick up to the exit tick.
 * @param {bigint|number} durationMs
 * @param {bigint|number} tickIntervalMs
 * @returns {bigint}
 */
export function ticksWithin(durationMs, tickIntervalMs) {
  const interval = integer('tickIntervalMs', tickIntervalMs, 1n, 86400000n);
  return integer('durationMs', durationMs, 0n, U64_MAX) / interval;
}
