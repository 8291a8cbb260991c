// The browser's receipt checker (web/js/receipt.js) against receipts made here the way the
// server makes them (crates/fairtick/src/services/trades/receipts.rs): ticks recomputed from a
// seed with fairness.js, a payload signed with Ed25519 through WebCrypto. A genuine receipt
// passes every step; each kind of tampering fails at the step that should catch it. The real
// server's receipts are checked end to end by the browser tests (web/tests/browser/).

import { test } from 'node:test';
import assert from 'node:assert/strict';

import { commitmentOf, formatPrice, recomputeTicks } from '../js/fairness.js';
import { checkReceipt, parseReceipt, returned, verdict } from '../js/receipt.js';

const SEED = '3f1c5a2b9d8e7f60112233445566778899aabbccddeeff00102030405060708a';
const EPOCH = { id: 7, kind: 'simulated', volatilityBp: 2500, tickIntervalMs: 1000, startTick: 100, startPrice: '1000.00000000' };
const T0 = 1795700000000;
// The grace period the settled trades here were accepted under: whole seconds, longer than two
// of EPOCH's 1 s ticks; their entries come 300 or 700 ms after acceptance and their deciding ticks
// 1 s after expiry, well in time.
const GRACE_MS = 3000;

const hex = (bytes) => [...new Uint8Array(bytes)].map((b) => b.toString(16).padStart(2, '0')).join('');

async function keyPair() {
  const pair = await crypto.subtle.generateKey({ name: 'Ed25519' }, true, ['sign', 'verify']);
  return { pair, publicKey: hex(await crypto.subtle.exportKey('raw', pair.publicKey)) };
}

async function sign(key, body) {
  const payload = JSON.stringify(body);
  const signature = hex(await crypto.subtle.sign({ name: 'Ed25519' }, key.pair.privateKey, new TextEncoder().encode(payload)));
  return { payload, signature, publicKey: key.publicKey, algorithm: 'Ed25519' };
}

/** A settled 5-second trade accepted 300 ms after tick 2 of the epoch, as the server would record it. */
async function settledBody(direction = 'up', { revealed = true } = {}) {
  const prices = await recomputeTicks({ symbol: 'SIMV25', volatilityBp: 2500, tickIntervalMs: 1000 }, SEED, EPOCH.id, 100000000000n, 12);
  const ticks = prices.map((units, i) => ({ seq: EPOCH.startTick + i, ts: T0 + i * 1000, price: formatPrice(units), epochId: EPOCH.id }));
  const [entry, exit] = [prices[3], prices[8]];
  const result = exit === entry ? 'tie' : (exit > entry) === (direction === 'up') ? 'win' : 'lose';
  const payout = { win: '185.00', tie: '100.00', lose: '0.00' }[result];
  return {
    version: 1,
    issuedAt: T0 + 20000,
    trade: {
      id: 42, userId: 1, symbol: 'SIMV25', direction, stake: '100.00', durationMs: 5000, payoutRate: '0.8500',
      acceptedAt: T0 + 2300, status: 'settled', result, entrySeq: 103, expiresAt: T0 + 8000, exitSeq: 108, payout, voidReason: null,
      feedGraceMs: GRACE_MS,
    },
    epochs: [{ ...EPOCH, commitment: await commitmentOf(SEED), seed: revealed ? SEED : null }],
    // From the last tick at or before acceptance to the first one after expiry.
    ticks: ticks.slice(2, 10),
  };
}

const outcomes = (steps) => steps.map((s) => `${s.check}:${s.outcome}`);

test('a genuine settled receipt passes every step', async () => {
  const key = await keyPair();
  for (const direction of ['up', 'down']) {
    const receipt = parseReceipt(JSON.stringify(await sign(key, await settledBody(direction))));
    const { steps, body } = await checkReceipt(receipt, key.publicKey);
    assert.deepEqual(outcomes(steps), ['signature:ok', 'commitment:ok', 'ticks:ok', 'entry:ok', 'grace:ok', 'seeds:ok', 'result:ok', 'payout:ok']);
    assert.equal(verdict(steps), 'ok');
    assert.equal(body.trade.direction, direction);
  }
});

/** A settled 5-second trade accepted 300 ms before the tick `first`, the epoch's first. */
async function acceptedBeforeTick(first) {
  const epoch = { ...EPOCH, startTick: first, commitment: await commitmentOf(SEED), seed: SEED };
  const prices = await recomputeTicks({ symbol: 'SIMV25', volatilityBp: 2500, tickIntervalMs: 1000 }, SEED, epoch.id, 100000000000n, 7);
  const ticks = prices.map((units, i) => ({ seq: first + i, ts: T0 + i * 1000, price: formatPrice(units), epochId: epoch.id }));
  const [entry, exit] = [prices[0], prices[5]];
  const result = exit === entry ? 'tie' : exit > entry ? 'win' : 'lose';
  const payout = { win: '185.00', tie: '100.00', lose: '0.00' }[result];
  return {
    version: 1,
    issuedAt: T0 + 20000,
    trade: {
      id: 43, userId: 1, symbol: 'SIMV25', direction: 'up', stake: '100.00', durationMs: 5000, payoutRate: '0.8500',
      acceptedAt: T0 - 300, status: 'settled', result, entrySeq: first, expiresAt: T0 + 5000, exitSeq: first + 5, payout, voidReason: null,
      feedGraceMs: GRACE_MS,
    },
    epochs: [epoch],
    ticks,
  };
}

test("a trade accepted before its market's first tick is derived from that tick, and only from seq 1, but not proven", async () => {
  const key = await keyPair();
  const first = await checkReceipt(parseReceipt(JSON.stringify(await sign(key, await acceptedBeforeTick(1)))), key.publicKey);
  // Nothing shows the first epoch was committed before the trade.
  assert.deepEqual(outcomes(first.steps), ['signature:ok', 'commitment:ok', 'ticks:ok', 'entry:ok', 'grace:ok', 'seeds:failed']);
  assert.equal(first.steps[5].detail, "no tick at or before acceptance shows that the first epoch's commitment came before the trade");
  // From seq 2, the tick before acceptance is missing: an earlier tick may have come after it.
  const later = await checkReceipt(parseReceipt(JSON.stringify(await sign(key, await acceptedBeforeTick(2)))), key.publicKey);
  assert.deepEqual(outcomes(later.steps), ['signature:ok', 'commitment:ok', 'ticks:ok', 'entry:failed']);
});

const SEED2 = 'c0ffee00112233445566778899aabbccddeeff00112233445566778899aabbcc';
const PARAMS = { symbol: 'SIMV25', volatilityBp: 2500, tickIntervalMs: 1000 };

/**
 * A settled 5-second trade over two epochs: epoch 7 (SEED) from seq 100, then epoch 8 (SEED2)
 * from seq `split`, continuing from epoch 7's last price. Accepted 300 ms after seq
 * 100 + `accepted`; the receipt holds that tick through the first one after expiry. Epoch 7
 * announces epoch 8 correctly, ending at `split` - 1; `announce` overrides those fields
 * (`null` leaves them out, as in a version-1 receipt).
 */
async function crossingBody({ split, accepted = 2, announce = {}, secondVolatilityBp = PARAMS.volatilityBp }) {
  const first = await recomputeTicks(PARAMS, SEED, 7, 100000000000n, split - 100);
  const second = await recomputeTicks({ ...PARAMS, volatilityBp: secondVolatilityBp }, SEED2, 8, first[first.length - 1], 112 - split);
  const prices = [...first, ...second];
  const ticks = prices.map((units, i) => ({ seq: 100 + i, ts: T0 + i * 1000, price: formatPrice(units), epochId: 100 + i < split ? 7 : 8 }));
  const [entry, exit] = [prices[accepted + 1], prices[accepted + 6]];
  const result = exit === entry ? 'tie' : exit > entry ? 'win' : 'lose';
  const payout = { win: '185.00', tie: '100.00', lose: '0.00' }[result];
  const commitment = await commitmentOf(SEED2);
  const announcement = announce === null ? {} : { plannedEndTick: split - 1, nextId: 8, nextCommitment: commitment, ...announce };
  // The epoch announced last has not announced its own successor in these receipts.
  const later = announce === null ? {} : { plannedEndTick: null, nextId: null, nextCommitment: null };
  return {
    version: announce === null ? 1 : 2,
    issuedAt: T0 + 20000,
    trade: {
      id: 44, userId: 1, symbol: 'SIMV25', direction: 'up', stake: '100.00', durationMs: 5000, payoutRate: '0.8500',
      acceptedAt: T0 + accepted * 1000 + 300, status: 'settled', result, entrySeq: 101 + accepted,
      expiresAt: T0 + (accepted + 6) * 1000, exitSeq: 106 + accepted, payout, voidReason: null, feedGraceMs: GRACE_MS,
    },
    epochs: [
      { ...EPOCH, commitment: await commitmentOf(SEED), seed: SEED, ...announcement },
      { ...EPOCH, id: 8, volatilityBp: secondVolatilityBp, startTick: split, startPrice: formatPrice(first[first.length - 1]), commitment, seed: SEED2, ...later },
    ],
    ticks: ticks.slice(accepted, accepted + 8),
  };
}

const checked = async (key, body) => checkReceipt(await sign(key, body), key.publicKey);
const TWO_EPOCHS_OK = ['signature:ok', 'commitment:ok', 'commitment:ok', 'ticks:ok', 'entry:ok', 'grace:ok', 'seeds:ok', 'result:ok', 'payout:ok'];
const SEEDS_FAILED = ['signature:ok', 'commitment:ok', 'commitment:ok', 'ticks:ok', 'entry:ok', 'grace:ok', 'seeds:failed'];

test('a trade across an epoch boundary passes when the epoch current at acceptance announced the next', async () => {
  const key = await keyPair();
  const { steps } = await checked(key, await crossingBody({ split: 106 }));
  assert.deepEqual(outcomes(steps), TWO_EPOCHS_OK);
  assert.equal(steps[6].detail, "every price from entry to exit was fixed before acceptance: by epoch 7's commitment, and epoch 8's, announced with it");
  // Hex case does not matter in the announced commitment.
  const upper = await crossingBody({ split: 106 });
  upper.epochs[0].nextCommitment = upper.epochs[0].nextCommitment.toUpperCase();
  assert.deepEqual(outcomes((await checked(key, upper)).steps), TWO_EPOCHS_OK);
});

test('a trade across a boundary to an epoch not announced by the one current at acceptance fails at seeds', async () => {
  const key = await keyPair();
  const cases = [
    ['another next id', { nextId: 9 }],
    ['another next commitment', { nextCommitment: await commitmentOf(SEED) }],
    ['no next id', { nextId: null }],
    ['no next commitment', { nextCommitment: null }],
    ['no announcement at all (a version-1 receipt)', null],
  ];
  for (const [what, announce] of cases) {
    const { steps } = await checked(key, await crossingBody({ split: 106, announce }));
    assert.deepEqual(outcomes(steps), SEEDS_FAILED, what);
    assert.equal(steps[6].detail, 'epoch 8 was not announced by epoch 7, the epoch current at acceptance: its seed could have been drawn after the trade was accepted', what);
  }
});

test('a trade across a boundary into the announced epoch run with other market parameters fails at seeds', async () => {
  const key = await keyPair();
  // The announced seed, but another volatility: other prices, set after the trade.
  const { steps } = await checked(key, await crossingBody({ split: 106, secondVolatilityBp: 3000 }));
  assert.deepEqual(outcomes(steps), SEEDS_FAILED);
  assert.match(steps[6].detail, /^epoch 8 does not have the market parameters of epoch 7, which announced it: /);
});

test('a trade across a boundary that was not where it was announced fails at seeds', async () => {
  const key = await keyPair();
  // Epoch 7 planned to run to seq 110 but epoch 8 began at 106: epoch 8's start was not fixed.
  const early = await checked(key, await crossingBody({ split: 106, announce: { plannedEndTick: 110 } }));
  assert.deepEqual(outcomes(early.steps), SEEDS_FAILED);
  assert.match(early.steps[6].detail, /^epoch 7 ended at seq 105, not at its announced end 110: /);
  const late = await checked(key, await crossingBody({ split: 106, announce: { plannedEndTick: 104 } }));
  assert.deepEqual(outcomes(late.steps), SEEDS_FAILED);
  const unplanned = await checked(key, await crossingBody({ split: 106, announce: { plannedEndTick: null } }));
  assert.deepEqual(outcomes(unplanned.steps), SEEDS_FAILED);
  assert.match(unplanned.steps[6].detail, /^epoch 7 ended at seq 105 with no announced end: /);
});

test('a trade within one epoch needs no announcement', async () => {
  const key = await keyPair();
  // settledBody's epoch has none of the announcement fields.
  const { steps } = await checked(key, await settledBody('up'));
  assert.deepEqual(outcomes(steps), ['signature:ok', 'commitment:ok', 'ticks:ok', 'entry:ok', 'grace:ok', 'seeds:ok', 'result:ok', 'payout:ok']);
  assert.equal(steps[5].detail, "every price from entry to exit was fixed before acceptance: by epoch 7's commitment");
  // The tick after expiry decides when the exit is known, not any price: it may be in an
  // epoch nobody announced. Accepted after seq 102, the exit is 108 and seq 109 is epoch 8's first.
  const deciding = await checked(key, await crossingBody({ split: 109, announce: null }));
  assert.deepEqual(outcomes(deciding.steps), TWO_EPOCHS_OK);
  assert.equal(deciding.steps[6].detail, "every price from entry to exit was fixed before acceptance: by epoch 7's commitment");
});

test("a trade accepted at an epoch's last tick needs that epoch's announcement of the next, whose first tick is the entry", async () => {
  const key = await keyPair();
  // Accepted after seq 102, epoch 7's last; the entry is seq 103, epoch 8's first.
  const without = await checked(key, await crossingBody({ split: 103, announce: null }));
  assert.deepEqual(outcomes(without.steps), SEEDS_FAILED);
  const announced = await checked(key, await crossingBody({ split: 103 }));
  assert.deepEqual(outcomes(announced.steps), TWO_EPOCHS_OK);
  assert.match(announced.steps[6].detail, /and epoch 8's, announced with it$/);
});

test('each kind of tampering fails at the step that catches it', async () => {
  const key = await keyPair();
  const genuine = await settledBody('up');
  const cases = [
    // (what is changed, the step that must fail)
    ['the payout, after signing', 'signature', async () => {
      const receipt = await sign(key, genuine);
      return { ...receipt, payload: receipt.payload.replace(/"payout":"[\d.]+"/, '"payout":"999.00"') };
    }],
    ['a receipt signed by another key', 'signature', async () => sign(await keyPair(), genuine)],
    ['the payout, signed', 'payout', async () => sign(key, { ...genuine, trade: { ...genuine.trade, payout: genuine.trade.payout === '185.00' ? '184.99' : '185.00' } })],
    ['the result, signed', 'result', async () => sign(key, { ...genuine, trade: { ...genuine.trade, result: genuine.trade.result === 'win' ? 'lose' : 'win' } })],
    ['the exit tick, signed', 'entry', async () => sign(key, { ...genuine, trade: { ...genuine.trade, exitSeq: 107 } })],
    ['a tick price, signed', 'ticks', async () => {
      const ticks = genuine.ticks.map((t, i) => (i === 4 ? { ...t, price: '1000.00000001' } : t));
      return sign(key, { ...genuine, ticks });
    }],
    ['the seed, signed', 'commitment', async () => sign(key, { ...genuine, epochs: [{ ...genuine.epochs[0], seed: SEED.replace(/^3/, '4') }] })],
    ['a missing tick, signed', 'ticks', async () => sign(key, { ...genuine, ticks: genuine.ticks.filter((_, i) => i !== 3) })],
    // The exit's price from an epoch the receipt does not list: nothing else would check it.
    ['a tick of an unlisted epoch, signed', 'ticks', async () => {
      const ticks = genuine.ticks.map((t) => (t.seq === 108 ? { ...t, epochId: 8, price: '2000.00000000' } : t));
      return sign(key, { ...genuine, ticks });
    }],
    // A second epoch that does not start from the first one's last price.
    ['an epoch that does not continue the last, signed', 'ticks', async () => {
      const ticks = genuine.ticks.map((t) => (t.seq >= 108 ? { ...t, epochId: 8 } : t));
      const next = { ...genuine.epochs[0], id: 8, startTick: 108, startPrice: '999.00000000' };
      return sign(key, { ...genuine, ticks, epochs: [...genuine.epochs, next] });
    }],
  ];
  for (const [what, step, make] of cases) {
    const { steps } = await checkReceipt(await make(), key.publicKey);
    assert.equal(verdict(steps), 'failed', what);
    const failed = steps.find((s) => s.outcome === 'failed');
    assert.equal(failed.check, step, `${what}: ${failed.detail}`);
  }
});

test('a receipt whose epoch has not ended yet is pending, not failed', async () => {
  const key = await keyPair();
  const { steps } = await checkReceipt(await sign(key, await settledBody('up', { revealed: false })), key.publicKey);
  assert.equal(verdict(steps), 'pending');
  assert.match(steps[steps.length - 1].detail, /not revealed/);
});

test('an open trade has its ticks checked and its result pending', async () => {
  const key = await keyPair();
  const body = await settledBody('up');
  const open = { ...body, trade: { ...body.trade, status: 'active', result: null, exitSeq: null, payout: null } };
  const { steps } = await checkReceipt(await sign(key, open), key.publicKey);
  assert.deepEqual(outcomes(steps), ['signature:ok', 'commitment:ok', 'ticks:ok', 'result:pending']);
});

const NO_ENTRY = 'no tick arrived after the trade was accepted';
const NO_EXIT = 'no tick arrived within the grace period after expiry';
const iso = (ms) => new Date(ms).toISOString();

// graceBody's trade when the feed does not stall (ticks 1 s apart, seq 100 at T0): accepted at
// T0 + 2300 for 5 s, the entry seq 103 at T0 + 3000, expiry and the exit seq 108 at T0 + 8000,
// the deciding tick seq 109 at T0 + 9000.
const ACCEPTED_AT = T0 + 2300;
const DURATION_MS = 5000;
const ENTRY_TS = T0 + 3000;
const EXPIRES_AT = ENTRY_TS + DURATION_MS;
const DECIDING_TS = EXPIRES_AT + 1000;
// The deadlines under GRACE_MS: for the entry, and for the first tick after expiry.
const ENTRY_DEADLINE = ACCEPTED_AT + DURATION_MS + GRACE_MS;
const EXIT_DEADLINE = EXPIRES_AT + GRACE_MS;
// Stalls that make seq 109 (stalled at 9) or seq 103 (stalled at 3) come exactly at its deadline.
const EXIT_AT_DEADLINE = EXIT_DEADLINE - DECIDING_TS;
const ENTRY_AT_DEADLINE = ENTRY_DEADLINE - ENTRY_TS;
// Stalls well past the deadlines: seq 109 six seconds after expiry, seq 103 ten seconds late.
const LATE_EXIT_STALL = 5000;
const LATE_ENTRY_STALL = 10000;

/**
 * settledBody's trade (accepted at T0 + 2300 for 5 s, entry seq 103, exit seq 108) ended under a
 * grace period of GRACE_MS, with the feed stalled `stallMs` before tick `stalledAt` (seq 100 +
 * `stalledAt`): that tick and the later ones come `stallMs` late. The receipt holds seqs 102
 * to 100 + `through` - 1. As `status` 'void', it records `voidReason`, no result, and the
 * stake refunded.
 */
async function graceBody({ stalledAt = 12, stallMs = 0, through = 10, status = 'settled', voidReason = null, feedGraceMs = GRACE_MS } = {}) {
  const prices = await recomputeTicks(PARAMS, SEED, EPOCH.id, 100000000000n, 12);
  const ticks = prices.map((units, i) => ({
    seq: EPOCH.startTick + i, ts: T0 + i * 1000 + (i >= stalledAt ? stallMs : 0), price: formatPrice(units), epochId: EPOCH.id,
  }));
  const [entry, exit] = [prices[3], prices[8]];
  const result = exit === entry ? 'tie' : exit > entry ? 'win' : 'lose';
  const settled = status === 'settled';
  return {
    version: 2,
    issuedAt: T0 + 60000,
    trade: {
      id: 45, userId: 1, symbol: 'SIMV25', direction: 'up', stake: '100.00', durationMs: DURATION_MS, payoutRate: '0.8500',
      acceptedAt: ACCEPTED_AT, status, result: settled ? result : null, entrySeq: 103, expiresAt: ticks[3].ts + DURATION_MS,
      exitSeq: settled ? 108 : null, payout: settled ? { win: '185.00', tie: '100.00', lose: '0.00' }[result] : '100.00',
      voidReason, feedGraceMs,
    },
    epochs: [{ ...EPOCH, commitment: await commitmentOf(SEED), seed: SEED }],
    ticks: ticks.slice(2, through),
  };
}

const GRACE_OK = ['signature:ok', 'commitment:ok', 'ticks:ok', 'entry:ok', 'grace:ok', 'seeds:ok', 'result:ok', 'payout:ok'];
const GRACE_FAILED = ['signature:ok', 'commitment:ok', 'ticks:ok', 'entry:ok', 'grace:failed'];
const GRACE_UNLAWFUL = ['signature:ok', 'commitment:ok', 'ticks:ok', 'grace:failed'];
const VOID = (outcome) => ['signature:ok', 'commitment:ok', 'ticks:ok', `result:${outcome}`];
const VOID_OK = [...VOID('ok'), 'payout:ok'];

test('the grace period of these tests is one the terms allow: whole seconds, longer than two ticks', () => {
  assert.equal(GRACE_MS % 1000, 0);
  assert.ok(GRACE_MS > 2 * EPOCH.tickIntervalMs);
  // The boundary stalls are real stalls, and the late ones really are late.
  assert.ok(EXIT_AT_DEADLINE > 0 && ENTRY_AT_DEADLINE > 0);
  assert.ok(DECIDING_TS + LATE_EXIT_STALL > EXIT_DEADLINE && ENTRY_TS + LATE_ENTRY_STALL > ENTRY_DEADLINE);
});

test('a settled receipt whose ticks came within the grace period passes it, between entry and seeds', async () => {
  const key = await keyPair();
  // The entry 700 ms after acceptance; the deciding tick 1 s after expiry.
  const { steps } = await checked(key, await graceBody());
  assert.deepEqual(outcomes(steps), GRACE_OK);
  assert.equal(steps[4].detail, `the entry came ${ENTRY_TS - ACCEPTED_AT} ms after acceptance and the deciding tick ${DECIDING_TS - EXPIRES_AT} ms after expiry, within the grace period of ${GRACE_MS} ms`);
  // The deciding tick exactly at the deadline is in time.
  const edge = await checked(key, await graceBody({ stalledAt: 9, stallMs: EXIT_AT_DEADLINE }));
  assert.deepEqual(outcomes(edge.steps), GRACE_OK);
  assert.match(edge.steps[4].detail, new RegExp(`the deciding tick ${GRACE_MS} ms after expiry`));
  // So is the entry exactly at its deadline; the exit and the deciding tick follow it as usual.
  const entryEdge = await checked(key, await graceBody({ stalledAt: 3, stallMs: ENTRY_AT_DEADLINE }));
  assert.deepEqual(outcomes(entryEdge.steps), GRACE_OK);
  assert.match(entryEdge.steps[4].detail, new RegExp(`^the entry came ${DURATION_MS + GRACE_MS} ms after acceptance and the deciding tick 1000 ms after expiry`));
});


test('a settled receipt whose deciding tick came after expiry plus the grace period fails at grace', async () => {
  const key = await keyPair();
  // Seq 109 1 ms past the deadline, expiry + GRACE_MS.
  const { steps } = await checked(key, await graceBody({ stalledAt: 9, stallMs: EXIT_AT_DEADLINE + 1 }));
  assert.deepEqual(outcomes(steps), GRACE_FAILED);
  assert.equal(steps[4].detail, `the rules void this trade: ${NO_EXIT}: the tick came at ${iso(EXIT_DEADLINE + 1)}, after the deadline ${iso(EXIT_DEADLINE)} (grace ${GRACE_MS} ms)`);
  assert.equal(verdict(steps), 'failed');
});

test('a settled receipt whose entry came after acceptance plus duration plus the grace period fails at grace', async () => {
  const key = await keyPair();
  // Seq 103 past the deadline acceptance + duration + GRACE_MS; the exit and the deciding tick
  // follow it as usual, so only the entry is late.
  const { steps } = await checked(key, await graceBody({ stalledAt: 3, stallMs: LATE_ENTRY_STALL }));
  assert.deepEqual(outcomes(steps), GRACE_FAILED);
  assert.equal(steps[4].detail, `the rules void this trade: ${NO_ENTRY}: the tick came at ${iso(ENTRY_TS + LATE_ENTRY_STALL)}, after the deadline ${iso(ENTRY_DEADLINE)} (grace ${GRACE_MS} ms)`);
  // 1 ms past the deadline is enough.
  const edge = await checked(key, await graceBody({ stalledAt: 3, stallMs: ENTRY_AT_DEADLINE + 1 }));
  assert.deepEqual(outcomes(edge.steps), GRACE_FAILED);
  assert.equal(edge.steps[4].detail, `the rules void this trade: ${NO_ENTRY}: the tick came at ${iso(ENTRY_DEADLINE + 1)}, after the deadline ${iso(ENTRY_DEADLINE)} (grace ${GRACE_MS} ms)`);
});

test('a receipt whose grace period the terms do not allow fails at grace, right after the ticks', async () => {
  const key = await keyPair();
  // The ticks came in time under any of these: only the grace period itself is wrong.
  const cases = [
    [2 * EPOCH.tickIntervalMs, 'two ticks, not longer'],
    [2500, 'not whole seconds'],
    [3601000, 'over an hour'],
  ];
  for (const [feedGraceMs, what] of cases) {
    const { steps } = await checked(key, await graceBody({ feedGraceMs }));
    assert.deepEqual(outcomes(steps), GRACE_UNLAWFUL, what);
    assert.equal(steps[3].detail, `a grace period of ${feedGraceMs} ms is not one the terms allow: whole seconds, 1 s to an hour, longer than two ticks (${EPOCH.tickIntervalMs} ms each)`, what);
    assert.equal(verdict(steps), 'failed', what);
  }
  // A void receipt is refused there too, before its void is checked.
  const voided = await checked(key, await graceBody({ stalledAt: 9, stallMs: LATE_EXIT_STALL, status: 'void', voidReason: NO_EXIT, feedGraceMs: 2500 }));
  assert.deepEqual(outcomes(voided.steps), GRACE_UNLAWFUL);
  assert.match(voided.steps[3].detail, /^a grace period of 2500 ms is not one the terms allow: /);
  // An hour exactly is allowed.
  const hour = await checked(key, await graceBody({ feedGraceMs: 3600000 }));
  assert.deepEqual(outcomes(hour.steps), GRACE_OK);
});

test('a settled receipt without a grace period, from before it was recorded, is checked on but pending at grace', async () => {
  const key = await keyPair();
  const GRACE_PENDING = ['signature:ok', 'commitment:ok', 'ticks:ok', 'entry:ok', 'grace:pending', 'seeds:ok', 'result:ok', 'payout:ok'];
  // The field null, or left out: nothing says by which grace period the void rule would apply.
  for (const absent of [false, true]) {
    const body = await settledBody('up');
    if (absent) delete body.trade.feedGraceMs;
    else body.trade.feedGraceMs = null;
    const { steps } = await checked(key, body);
    assert.deepEqual(outcomes(steps), GRACE_PENDING, absent ? 'absent' : 'null');
    assert.equal(steps[4].detail, 'the receipt does not record the grace period the trade was accepted under, so the void rule cannot be checked');
    assert.equal(verdict(steps), 'pending', absent ? 'absent' : 'null');
  }
  // Even a stall that any lawful grace period would void is not judged without one.
  const stalled = await checked(key, await graceBody({ stalledAt: 9, stallMs: 60000, feedGraceMs: null }));
  assert.deepEqual(outcomes(stalled.steps), GRACE_PENDING);
  assert.equal(verdict(stalled.steps), 'pending');
});

test('a grace period recorded as anything but a whole number of milliseconds fails at grace, right after the ticks', async () => {
  const key = await keyPair();
  // A string is not a missing grace period: it is refused, not left pending.
  const { steps } = await checked(key, await graceBody({ feedGraceMs: '3000' }));
  assert.deepEqual(outcomes(steps), GRACE_UNLAWFUL);
  assert.equal(steps[3].detail, `a grace period of 3000 ms is not one the terms allow: whole seconds, 1 s to an hour, longer than two ticks (${EPOCH.tickIntervalMs} ms each)`);
  assert.equal(verdict(steps), 'failed');
  for (const feedGraceMs of [3000.5, true, [3000], { ms: 3000 }]) {
    const other = await checked(key, await graceBody({ feedGraceMs }));
    assert.deepEqual(outcomes(other.steps), GRACE_UNLAWFUL, JSON.stringify(feedGraceMs));
  }
  // On a void receipt too, before its void is checked.
  const voided = await checked(key, await graceBody({ stalledAt: 9, stallMs: LATE_EXIT_STALL, status: 'void', voidReason: NO_EXIT, feedGraceMs: '3000' }));
  assert.deepEqual(outcomes(voided.steps), GRACE_UNLAWFUL);
});

test('a void receipt is checked against the ticks that voided it', async () => {
  const key = await keyPair();
  // The deciding tick 6 s after expiry: void for no exit, as recorded.
  const late = await checked(key, await graceBody({ stalledAt: 9, stallMs: LATE_EXIT_STALL, status: 'void', voidReason: NO_EXIT }));
  assert.deepEqual(outcomes(late.steps), VOID_OK);
  assert.equal(late.steps[3].detail, `void by the rules: ${NO_EXIT}: the tick came at ${iso(DECIDING_TS + LATE_EXIT_STALL)}, after the deadline ${iso(EXIT_DEADLINE)} (grace ${GRACE_MS} ms); the stake was refunded`);
  assert.equal(late.steps[4].detail, 'the stake of 100.00 was refunded');
  assert.equal(verdict(late.steps), 'ok');
  // 1 ms past the deadline is void already.
  const edge = await checked(key, await graceBody({ stalledAt: 9, stallMs: EXIT_AT_DEADLINE + 1, status: 'void', voidReason: NO_EXIT }));
  assert.deepEqual(outcomes(edge.steps), VOID_OK);
  // The entry 10.7 s after acceptance: void for no entry, as recorded.
  const noEntry = await checked(key, await graceBody({ stalledAt: 3, stallMs: LATE_ENTRY_STALL, through: 4, status: 'void', voidReason: NO_ENTRY }));
  assert.deepEqual(outcomes(noEntry.steps), VOID_OK);
  assert.equal(noEntry.steps[3].detail, `void by the rules: ${NO_ENTRY}: the tick came at ${iso(ENTRY_TS + LATE_ENTRY_STALL)}, after the deadline ${iso(ENTRY_DEADLINE)} (grace ${GRACE_MS} ms); the stake was refunded`);
});

test('a void receipt proven void by the rules that does not refund the stake fails at payout', async () => {
  const key = await keyPair();
  const body = await graceBody({ stalledAt: 9, stallMs: LATE_EXIT_STALL, status: 'void', voidReason: NO_EXIT });
  const { steps } = await checked(key, { ...body, trade: { ...body.trade, payout: '0.00' } });
  assert.deepEqual(outcomes(steps), [...VOID('ok'), 'payout:failed']);
  assert.equal(steps[4].detail, 'a void trade refunds its stake, 100.00; the receipt says 0.00');
  assert.equal(verdict(steps), 'failed');
});

test('a void receipt whose ticks came in time fails: the rules settle it', async () => {
  const key = await keyPair();
  const { steps } = await checked(key, await graceBody({ status: 'void', voidReason: NO_EXIT }));
  assert.deepEqual(outcomes(steps), VOID('failed'));
  assert.equal(steps[3].detail, `the rules settle this trade: the tick after expiry came at ${iso(DECIDING_TS)}, within the deadline ${iso(EXIT_DEADLINE)}; it should not be void`);
  // Exactly at the deadline is still in time.
  const edge = await checked(key, await graceBody({ stalledAt: 9, stallMs: EXIT_AT_DEADLINE, status: 'void', voidReason: NO_EXIT }));
  assert.deepEqual(outcomes(edge.steps), VOID('failed'));
  assert.equal(edge.steps[3].detail, `the rules settle this trade: the tick after expiry came at ${iso(EXIT_DEADLINE)}, within the deadline ${iso(EXIT_DEADLINE)}; it should not be void`);
});

test('a void receipt that records another reason than the rules give fails', async () => {
  const key = await keyPair();
  const { steps } = await checked(key, await graceBody({ stalledAt: 9, stallMs: LATE_EXIT_STALL, status: 'void', voidReason: NO_ENTRY }));
  assert.deepEqual(outcomes(steps), VOID('failed'));
  assert.equal(steps[3].detail, `the rules give "${NO_EXIT}", the receipt says "${NO_ENTRY}"`);
  // No reason recorded at all.
  const none = await checked(key, await graceBody({ stalledAt: 9, stallMs: LATE_EXIT_STALL, status: 'void', voidReason: null }));
  assert.deepEqual(outcomes(none.steps), VOID('failed'));
  assert.equal(none.steps[3].detail, `the rules give "${NO_EXIT}", the receipt says "no reason"`);
});

test('a void receipt with no tick after the deadline yet waits', async () => {
  const key = await keyPair();
  // The receipt ends at the exit, seq 108: nothing shows when the feed resumed.
  const { steps } = await checked(key, await graceBody({ through: 9, status: 'void', voidReason: NO_EXIT }));
  assert.deepEqual(outcomes(steps), VOID('pending'));
  assert.equal(steps[3].detail, `the trade is void: ${NO_EXIT}; no tick after the deadline ${iso(EXIT_DEADLINE)} is in the receipt yet, so the record cannot show when the feed resumed`);
  assert.equal(verdict(steps), 'pending');
  // No tick after acceptance at all: the deadline is the entry's.
  const noEntry = await checked(key, await graceBody({ through: 3, status: 'void', voidReason: NO_ENTRY }));
  assert.deepEqual(outcomes(noEntry.steps), VOID('pending'));
  assert.match(noEntry.steps[3].detail, new RegExp(`the deadline ${iso(ENTRY_DEADLINE).replace(/\./g, '\\.')} `));
});

test('a void receipt without the tick at or before acceptance fails at entry', async () => {
  const key = await keyPair();
  const body = await graceBody({ stalledAt: 9, stallMs: LATE_EXIT_STALL, status: 'void', voidReason: NO_EXIT });
  const { steps } = await checked(key, { ...body, ticks: body.ticks.slice(1) });
  assert.deepEqual(outcomes(steps), ['signature:ok', 'commitment:ok', 'ticks:ok', 'entry:failed']);
  assert.equal(steps[3].detail, 'the receipt lacks the tick at or before acceptance');
  // No tick at all shows nothing either.
  const empty = await checked(key, { ...body, ticks: [] });
  assert.deepEqual(outcomes(empty.steps), ['signature:ok', 'commitment:ok', 'ticks:ok', 'entry:failed']);
});

test('a void receipt without a grace period, from before it was recorded, is pending as before', async () => {
  const key = await keyPair();
  // The field null, or left out; the ticks would settle the trade, but nothing says by which grace period.
  for (const absent of [false, true]) {
    const body = await graceBody({ status: 'void', voidReason: NO_EXIT, feedGraceMs: null });
    if (absent) delete body.trade.feedGraceMs;
    const { steps } = await checked(key, body);
    assert.deepEqual(outcomes(steps), VOID('pending'), absent ? 'absent' : 'null');
    assert.equal(steps[3].detail, `the trade is void: ${NO_EXIT}; only settled trades have a result to re-derive`);
  }
});

test('the key the server publishes is the one trusted', async () => {
  const key = await keyPair();
  const other = await keyPair();
  const { steps } = await checkReceipt(await sign(key, await settledBody()), other.publicKey);
  assert.deepEqual(outcomes(steps), ['signature:failed']);
});

test('without the published key the signature proves nothing yet, and the verdict waits', async () => {
  const key = await keyPair();
  const { steps } = await checkReceipt(await sign(key, await settledBody()), null);
  assert.deepEqual(outcomes(steps), ['signature:pending', 'commitment:ok', 'ticks:ok', 'entry:ok', 'grace:ok', 'seeds:ok', 'result:ok', 'payout:ok']);
  assert.equal(verdict(steps), 'pending');
});

test('payouts are floored to the cent like the core', () => {
  assert.equal(returned('win', 1001n, 8500n), 1851n); // 10.01 × 1.85 = 18.5185
  assert.equal(returned('tie', 1001n, 8500n), 1001n);
  assert.equal(returned('lose', 1001n, 8500n), 0n);
});

test('what is not a receipt is refused before any check', () => {
  assert.throws(() => parseReceipt('not json'), SyntaxError);
  assert.throws(() => parseReceipt('{"payload": 1}'), /payload/);
  assert.throws(() => parseReceipt('{"payload":"{}","signature":"00","publicKey":"00","algorithm":"RSA"}'), /algorithm/);
});
