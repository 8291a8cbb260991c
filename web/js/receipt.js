/**
 * Checks a signed trade receipt in the browser, step by step, exactly as the Rust verifier
 * (`crates/fairtick/src/verify.rs`, `check_receipt`) does: the Ed25519 signature over the
 * payload's UTF-8 bytes, each epoch's revealed seed against its commitment, every tick
 * recomputed from the seeds with `fairness.js` (docs/fairness.md), then the entry, exit,
 * the epochs their prices come from, the result and the payout re-derived by the public rules:
 *
 * - entry: the first tick strictly after acceptance; expiry = entry time + duration;
 * - exit: the last tick at or before expiry; decided once a later tick exists;
 * - grace (`feedGraceMs`, G): the trade is void, its stake refunded, if its entry came later
 *   than acceptance + duration + G ("no tick arrived after the trade was accepted"), or else if
 *   the first tick after expiry came later than expiry + G ("no tick arrived within the grace
 *   period after expiry"); a settled trade must not be void by this rule, and a void trade must
 *   be, for the reason it records; while the receipt holds no tick after the deadline, a void
 *   waits (§6); a receipt that does not record G leaves this rule, and so its verdict, pending;
 * - seeds: every tick from entry to exit belongs to the epoch current at acceptance, or to the
 *   next epoch it announced (id and commitment), with the same market parameters, which began
 *   at its announced end (§4, §6);
 * - `up` wins if exit > entry, `down` if exit < entry; equal is a tie;
 * - a win pays ⌊stake × (1 + rate)⌋ to the cent, a tie the stake, a loss nothing.
 *
 * No IO: the caller passes the key it trusts (from `/api/fairness/key`). Prices and money are
 * BigInt throughout. Works in browsers and in Node (WebCrypto Ed25519).
 */

import { commitmentOf, formatCents, formatPrice, parseCents, parsePrice, recomputeTicks, tradeResult } from './fairness.js';

/**
 * @typedef {{check: string, outcome: 'ok'|'pending'|'failed', detail: string}} Step
 */

const step = (check, outcome, detail) => ({ check, outcome, detail });

function hexBytes(text, length) {
  if (typeof text !== 'string' || text.length !== length * 2 || !/^[0-9a-fA-F]*$/.test(text)) return null;
  const bytes = new Uint8Array(length);
  for (let i = 0; i < length; i++) bytes[i] = parseInt(text.slice(2 * i, 2 * i + 2), 16);
  return bytes;
}

/**
 * Whether `signatureHex` is a valid Ed25519 signature by `publicKeyHex` over `payload`.
 * @returns {Promise<{ok: boolean, why?: string}>}
 */
export async function verifySignature(publicKeyHex, signatureHex, payload) {
  const key = hexBytes(publicKeyHex, 32);
  if (!key) return { ok: false, why: 'the public key is not 32 hex bytes' };
  const signature = hexBytes(signatureHex, 64);
  if (!signature) return { ok: false, why: 'the signature is not 64 hex bytes' };
  let imported;
  try {
    imported = await globalThis.crypto.subtle.importKey('raw', key, { name: 'Ed25519' }, false, ['verify']);
  } catch (error) {
    return { ok: false, why: `this browser cannot check Ed25519 signatures, or the key is invalid (${error.message})` };
  }
  const ok = await globalThis.crypto.subtle.verify({ name: 'Ed25519' }, imported, signature, new TextEncoder().encode(payload));
  return ok ? { ok: true } : { ok: false, why: "the signature does not match the receipt's content" };
}

/**
 * Reads a receipt the user pasted: either the served `{payload, signature, publicKey,
 * algorithm}` object, or that object's JSON text.
 * @returns {{payload: string, signature: string, publicKey: string, algorithm: string}}
 */
export function parseReceipt(input) {
  const value = typeof input === 'string' ? JSON.parse(input) : input;
  if (!value || typeof value !== 'object') throw new TypeError('a receipt is a JSON object');
  for (const field of ['payload', 'signature', 'publicKey']) {
    if (typeof value[field] !== 'string') throw new TypeError(`the receipt has no "${field}" text`);
  }
  if (value.algorithm !== undefined && value.algorithm !== 'Ed25519') {
    throw new TypeError(`unsupported signature algorithm ${JSON.stringify(value.algorithm)}`);
  }
  return { payload: value.payload, signature: value.signature, publicKey: value.publicKey, algorithm: value.algorithm ?? 'Ed25519' };
}

/** `"0.8500"` → 8500n basis points. */
function rateBp(text) {
  const match = /^(\d+)(?:\.(\d{1,4}))?$/.exec(String(text));
  if (!match) throw new RangeError(`payout rate ${JSON.stringify(text)}`);
  return BigInt(match[1]) * 10000n + BigInt((match[2] ?? '').padEnd(4, '0'));
}

/** What a settled trade pays back: ⌊stake·(1 + r)⌋ on a win, the stake on a tie, 0 on a loss. */
export function returned(result, stakeCents, payoutRateBp) {
  if (result === 'win') return (stakeCents * (10000n + payoutRateBp)) / 10000n;
  if (result === 'tie') return stakeCents;
  return 0n;
}

const NO_ENTRY = 'no tick arrived after the trade was accepted';
const NO_EXIT = 'no tick arrived within the grace period after expiry';
const iso = (ms) => new Date(ms).toISOString();

/**
 * How `spots` (consecutive, in time order) end a trade under the grace period `graceMs`, like
 * `verdict` in `crates/fairtick-core/src/trade.rs`:
 * - `{kind: 'waiting', reason, deadline}`: no tick decides it yet; void for `reason` if none
 *   comes by `deadline` (only a clock can tell);
 * - `{kind: 'void', reason, deadline, tickTs}`: the tick it waited for came at `tickTs`, after
 *   `deadline`;
 * - `{kind: 'settled', entry, expiresAt, deciding, deadline}`: entry and deciding tick in time.
 */
function byTheRules(spots, acceptedAt, durationMs, graceMs) {
  const entryDeadline = acceptedAt + durationMs + graceMs;
  const entry = spots.find((s) => s.ts > acceptedAt);
  if (!entry) return { kind: 'waiting', reason: NO_ENTRY, deadline: entryDeadline };
  if (entry.ts > entryDeadline) return { kind: 'void', reason: NO_ENTRY, deadline: entryDeadline, tickTs: entry.ts };
  const expiresAt = entry.ts + durationMs;
  const deadline = expiresAt + graceMs;
  const deciding = spots.find((s) => s.ts > expiresAt);
  if (!deciding) return { kind: 'waiting', reason: NO_EXIT, deadline };
  if (deciding.ts > deadline) return { kind: 'void', reason: NO_EXIT, deadline, tickTs: deciding.ts };
  return { kind: 'settled', entry, expiresAt, deciding, deadline };
}

/**
 * Checks a receipt. Stops at the first failure, like the Rust verifier; `pending` marks what
 * cannot be checked yet (an unrevealed seed, an unsettled trade).
 * @param {{payload: string, signature: string, publicKey: string}} receipt
 * @param {string|null} trustedKey hex of the key to trust (the server's published key);
 *   null trusts the key the receipt names (the report says so).
 * @param {{onProgress?: (step: Step) => void}} [options]
 * @returns {Promise<{steps: Step[], body: object|null}>}
 */
export async function checkReceipt(receipt, trustedKey, options = {}) {
  const steps = [];
  const push = (s) => {
    steps.push(s);
    options.onProgress?.(s);
    return { steps, body };
  };
  let body = null;

  // 1. The signature, by the key we trust.
  if (trustedKey && trustedKey.toLowerCase() !== receipt.publicKey.toLowerCase()) {
    return push(step('signature', 'failed', `the receipt names key ${receipt.publicKey}, but the server publishes ${trustedKey}`));
  }
  const key = trustedKey ?? receipt.publicKey;
  const signed = await verifySignature(key, receipt.signature, receipt.payload);
  if (!signed.ok) return push(step('signature', 'failed', signed.why));
  try {
    body = JSON.parse(receipt.payload);
  } catch (error) {
    return push(step('signature', 'failed', `the signed content is not JSON: ${error.message}`));
  }
  // Only the server's published key makes the signature a proof: a forger can sign with their own.
  push(trustedKey
    ? step('signature', 'ok', `Ed25519 signature valid, signed by ${key} (the server's published key)`)
    : step('signature', 'pending', `Ed25519 signature valid for ${key}, the key named in the receipt, which could not be compared with the server's published key`));
  const trade = body?.trade;
  if (!trade || !Array.isArray(body.epochs) || !Array.isArray(body.ticks)) {
    return push(step('ticks', 'failed', 'the signed content is not a receipt (no trade, epochs or ticks)'));
  }

  // 2. The ticks are consecutive and each follows from its epoch's revealed seed.
  const spots = body.ticks.map((t) => ({ seq: Number(t.seq), ts: Number(t.ts), price: parsePrice(t.price), epochId: t.epochId, text: t.price }));
  for (let i = 1; i < spots.length; i++) {
    if (spots[i].seq !== spots[i - 1].seq + 1 || spots[i].ts <= spots[i - 1].ts) {
      return push(step('ticks', 'failed', `the ticks are not consecutive at seq ${spots[i].seq}`));
    }
  }
  // Each tick's epoch is listed (else nothing checks its price), and an epoch that follows
  // another starts where it ended: at the next seq, from its last price (docs/fairness.md §4).
  const epochOf = (tick) => body.epochs.find((e) => e.id === tick.epochId);
  const orphan = spots.find((t) => !epochOf(t));
  if (orphan) return push(step('ticks', 'failed', `seq ${orphan.seq}: its epoch ${orphan.epochId} is not in the receipt`));
  for (let i = 1; i < spots.length; i++) {
    const [last, first] = [spots[i - 1], spots[i]];
    if (last.epochId === first.epochId) continue;
    const next = epochOf(first);
    if (Number(next.startTick) !== first.seq || parsePrice(next.startPrice) !== last.price) {
      return push(step('ticks', 'failed', `epoch ${next.id} starts at seq ${next.startTick} from ${next.startPrice}, not where epoch ${last.epochId} ended (seq ${last.seq}, ${last.text})`));
    }
  }
  for (const epoch of body.epochs) {
    const mine = spots.filter((t) => t.epochId === epoch.id);
    if (!epoch.seed) {
      const why = epoch.kind === 'replay'
        ? `epoch ${epoch.id} is a replay of recorded prices: it has no seed to recompute from`
        : `epoch ${epoch.id} has not ended: its seed is not revealed yet. Try again after the epoch ends.`;
      return push(step('ticks', 'pending', why));
    }
    let computed;
    try {
      computed = await commitmentOf(epoch.seed);
    } catch (error) {
      return push(step('commitment', 'failed', `epoch ${epoch.id}: ${error.message}`));
    }
    if (computed !== String(epoch.commitment).toLowerCase()) {
      return push(step('commitment', 'failed', `epoch ${epoch.id}: the revealed seed hashes to ${computed}, but the commitment published was ${epoch.commitment}`));
    }
    push(step('commitment', 'ok', `epoch ${epoch.id}: SHA-256 of the revealed seed equals the commitment ${epoch.commitment}`));
    const last = mine[mine.length - 1];
    if (!last) continue;
    const count = last.seq - Number(epoch.startTick) + 1;
    if (mine[0].seq < Number(epoch.startTick)) return push(step('ticks', 'failed', `seq ${mine[0].seq} is before epoch ${epoch.id} starts`));
    const params = { symbol: trade.symbol, volatilityBp: epoch.volatilityBp, tickIntervalMs: epoch.tickIntervalMs };
    const recomputed = await recomputeTicks(params, epoch.seed, epoch.id, parsePrice(epoch.startPrice), count);
    for (const tick of mine) {
      const expected = recomputed[tick.seq - Number(epoch.startTick)];
      if (expected !== tick.price) {
        return push(step('ticks', 'failed', `seq ${tick.seq}: the seed gives ${formatPrice(expected)}, the receipt says ${tick.text}`));
      }
    }
  }
  push(step('ticks', 'ok', `${spots.length} ticks recomputed from ${body.epochs.length} revealed seed(s) with docs/fairness.md; all match`));

  const acceptedAt = Number(trade.acceptedAt);
  const after = spots.findIndex((s) => s.ts > acceptedAt);
  // The grace period the trade ended under; older receipts do not record it (missing: left out
  // or null).
  const recordedGrace = trade.feedGraceMs;
  const graceMs = recordedGrace === undefined || recordedGrace === null ? null : recordedGrace;
  // A tick at or before acceptance shows that the entry is the first tick after it, unless the
  // trade came before the market's first tick (seq 1), which nothing can precede. No tick at all
  // shows nothing either.
  const lacksTickBefore = spots.length === 0 || (after === 0 && spots[0].seq !== 1);

  // The grace period is a term the server could otherwise pick per trade: it must be one the
  // terms allow (whole seconds, 1 s to an hour, longer than two of the market's ticks).
  // Anything recorded that is not a whole number of milliseconds (a string, a fraction) is
  // refused like an unlawful one, not taken as missing.
  if (graceMs !== null) {
    const interval = Math.max(0, ...body.epochs.map((e) => Number(e.tickIntervalMs)));
    if (!Number.isSafeInteger(graceMs) || graceMs % 1000 !== 0 || graceMs < 1000 || graceMs > 3600000 || graceMs <= 2 * interval) {
      return push(step('grace', 'failed', `a grace period of ${graceMs} ms is not one the terms allow: whole seconds, 1 s to an hour, longer than two ticks (${interval} ms each)`));
    }
  }

  // 3. A void trade is checked against the rule it was voided by (docs/fairness.md §6), and
  // refunds its stake.
  if (trade.status === 'void' && graceMs !== null) {
    if (lacksTickBefore) return push(step('entry', 'failed', 'the receipt lacks the tick at or before acceptance'));
    const recorded = trade.voidReason ?? 'no reason';
    const rules = byTheRules(spots, acceptedAt, Number(trade.durationMs), graceMs);
    if (rules.kind === 'settled') {
      return push(step('result', 'failed', `the rules settle this trade: the tick after expiry came at ${iso(rules.deciding.ts)}, within the deadline ${iso(rules.deadline)}; it should not be void`));
    }
    if (rules.kind === 'waiting') {
      return push(step('result', 'pending', `the trade is void: ${recorded}; no tick after the deadline ${iso(rules.deadline)} is in the receipt yet, so the record cannot show when the feed resumed`));
    }
    if (rules.reason !== recorded) {
      return push(step('result', 'failed', `the rules give "${rules.reason}", the receipt says "${recorded}"`));
    }
    push(step('result', 'ok', `void by the rules: ${rules.reason}: the tick came at ${iso(rules.tickTs)}, after the deadline ${iso(rules.deadline)} (grace ${graceMs} ms); the stake was refunded`));
    if (trade.payout === null || trade.payout === undefined || parseCents(trade.payout) !== parseCents(trade.stake)) {
      return push(step('payout', 'failed', `a void trade refunds its stake, ${trade.stake}; the receipt says ${trade.payout}`));
    }
    return push(step('payout', 'ok', `the stake of ${trade.stake} was refunded`));
  }

  // Only a settled trade has a result to re-derive.
  if (trade.status !== 'settled') {
    const why = trade.voidReason ? `: ${trade.voidReason}` : '';
    return push(step('result', 'pending', `the trade is ${trade.status}${why}; only settled trades have a result to re-derive`));
  }

  // 4. Entry, expiry and exit by the rules.
  if (lacksTickBefore) return push(step('entry', 'failed', 'the receipt lacks the tick at or before acceptance'));
  if (after < 0) return push(step('result', 'failed', 'the ticks given do not decide the trade'));
  const entry = spots[after];
  const expiresAt = entry.ts + Number(trade.durationMs);
  const deciding = spots.findIndex((s, i) => i >= after && s.ts > expiresAt);
  if (deciding < 0) return push(step('result', 'failed', 'the ticks given do not decide the trade'));
  const exit = spots[deciding - 1];
  if (entry.seq !== trade.entrySeq || exit.seq !== trade.exitSeq) {
    return push(step('entry', 'failed', `the rules give entry seq ${entry.seq} and exit seq ${exit.seq}, the receipt says ${trade.entrySeq} and ${trade.exitSeq}`));
  }
  push(step('entry', 'ok', `accepted at ${new Date(acceptedAt).toISOString()}; entry = first tick after: seq ${entry.seq} at ${entry.text}; expiry ${new Date(expiresAt).toISOString()}; exit = last tick at or before expiry: seq ${exit.seq} at ${exit.text}`));

  // 5. The feed did not stall past the grace period: else the trade would be void (§6). A
  // receipt that does not record the grace period cannot show that: the rest is still checked,
  // but the verdict waits.
  if (graceMs === null) {
    push(step('grace', 'pending', 'the receipt does not record the grace period the trade was accepted under, so the void rule cannot be checked'));
  } else {
    const rules = byTheRules(spots, acceptedAt, Number(trade.durationMs), graceMs);
    if (rules.kind === 'void') {
      return push(step('grace', 'failed', `the rules void this trade: ${rules.reason}: the tick came at ${iso(rules.tickTs)}, after the deadline ${iso(rules.deadline)} (grace ${graceMs} ms)`));
    }
    // Decided above, so not waiting: the entry and the deciding tick came in time.
    push(step('grace', 'ok', `the entry came ${entry.ts - acceptedAt} ms after acceptance and the deciding tick ${spots[deciding].ts - expiresAt} ms after expiry, within the grace period of ${graceMs} ms`));
  }

  // 6. Every price from entry to exit was fixed before acceptance (docs/fairness.md §6): a
  // commitment only proves its epoch's prices fixed before the epoch's first tick, so a tick of
  // a later epoch counts only if the epoch current at acceptance announced that epoch, and
  // ended where it said it would. Version-1 receipts have no announcements (missing = null).
  // Accepted before the market's first tick: nothing shows the first epoch's commitment came
  // before the trade (a server refuses such trades: there is no price yet).
  if (after === 0) return push(step('seeds', 'failed', "no tick at or before acceptance shows that the first epoch's commitment came before the trade"));
  const current = epochOf(spots[after - 1]);
  let announced = null;
  for (let i = after; i < deciding; i++) {
    const tick = spots[i];
    if (tick.epochId === current.id || tick.epochId === announced?.id) continue;
    const next = epochOf(tick);
    const nextId = current.nextId ?? null;
    const nextCommitment = current.nextCommitment ?? null;
    if (nextId === null || Number(nextId) !== Number(next.id) || nextCommitment === null
      || String(nextCommitment).toLowerCase() !== String(next.commitment).toLowerCase()) {
      return push(step('seeds', 'failed', `epoch ${next.id} was not announced by epoch ${current.id}, the epoch current at acceptance: its seed could have been drawn after the trade was accepted`));
    }
    // The seed alone does not fix the prices: the volatility and the interval are inputs.
    if (next.kind !== current.kind || Number(next.volatilityBp) !== Number(current.volatilityBp)
      || Number(next.tickIntervalMs) !== Number(current.tickIntervalMs)) {
      return push(step('seeds', 'failed', `epoch ${next.id} does not have the market parameters of epoch ${current.id}, which announced it: its prices could have been set after the trade was accepted`));
    }
    // The tick before is the current epoch's last (ticks are consecutive, epochs chained).
    const lastSeq = spots[i - 1].seq;
    const plannedEnd = current.plannedEndTick ?? null;
    if (plannedEnd === null) {
      return push(step('seeds', 'failed', `epoch ${current.id} ended at seq ${lastSeq} with no announced end: the prices after it could have been chosen after the trade was accepted`));
    }
    if (Number(plannedEnd) !== lastSeq) {
      return push(step('seeds', 'failed', `epoch ${current.id} ended at seq ${lastSeq}, not at its announced end ${plannedEnd}: the prices after it could have been chosen after the trade was accepted`));
    }
    announced = next;
  }
  const alsoNext = announced ? `, and epoch ${announced.id}'s, announced with it` : '';
  push(step('seeds', 'ok', `every price from entry to exit was fixed before acceptance: by epoch ${current.id}'s commitment${alsoNext}`));

  // 7. The result and the payout.
  const result = { win: 'win', loss: 'lose', tie: 'tie' }[tradeResult(trade.direction, entry.price, exit.price)];
  if (result !== trade.result) {
    return push(step('result', 'failed', `the rules give ${result}, the receipt says ${trade.result}`));
  }
  const payout = formatCents(returned(result, parseCents(trade.stake), rateBp(trade.payoutRate)));
  if (payout !== trade.payout) {
    return push(step('payout', 'failed', `the rules pay ${payout}, the receipt says ${trade.payout}`));
  }
  const comparison = exit.price > entry.price ? 'above' : exit.price < entry.price ? 'below' : 'equal to';
  push(step('result', 'ok', `${trade.direction} on ${trade.symbol}: exit ${exit.text} is ${comparison} entry ${entry.text}, so ${result}`));
  return push(step('payout', 'ok', `stake ${trade.stake} VUSD at rate ${trade.payoutRate}: the rules pay ${payout} VUSD, as recorded`));
}

/** The overall verdict of a list of steps. */
export function verdict(steps) {
  if (steps.some((s) => s.outcome === 'failed')) return 'failed';
  if (steps.some((s) => s.outcome === 'pending')) return 'pending';
  return steps.length > 0 ? 'ok' : 'pending';
}
