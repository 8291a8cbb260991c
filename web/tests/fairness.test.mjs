// The browser implementation of docs/fairness.md (web/js/fairness.js) against the document
// itself: the same fenced `tick-vectors` and `model-vectors` blocks that
// crates/fairtick-core/tests/fairness_vectors.rs reads, the worked examples of §5.1, §8.1 and
// §8.2, and the JavaScript sketch of §5.6. Run with `node --test web/tests/` (Node 20, no
// packages).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';

import * as fairness from '../js/fairness.js';

const {
  commitmentOf,
  earlyCloseBid,
  formatCents,
  formatPpb,
  formatPrice,
  lnRatio,
  normalCdf,
  outcomeOdds,
  parseCents,
  parsePpb,
  parsePrice,
  quote,
  recomputeTicks,
  sha256Hex,
  tickMessage,
  tickPrice,
  tickSigma,
  tickStep,
  tickZRaw,
  tradeResult,
  verifyEpoch,
  verifyTicks,
} = fairness;

const SPEC = readFileSync(new URL('../../docs/fairness.md', import.meta.url), 'utf8');

/** The lines of the fenced block whose info string is `text <name>`, as the Rust test finds it. */
function fencedBlock(name) {
  const opening = '```text ' + name + '\n';
  const at = SPEC.indexOf(opening);
  assert.notEqual(at, -1, `no ${name} block in docs/fairness.md`);
  const start = at + opening.length;
  const length = SPEC.slice(start).indexOf('```');
  assert.notEqual(length, -1, `the ${name} block is closed`);
  return SPEC.slice(start, start + length).split('\n');
}

/** The body of the first fenced block of `language` after the heading that starts with `heading`. */
function blockAfter(heading, language) {
  const at = SPEC.indexOf('\n' + heading);
  assert.notEqual(at, -1, `no heading ${heading}`);
  const opening = '```' + language + '\n';
  const start = SPEC.indexOf(opening, at) + opening.length;
  return SPEC.slice(start, SPEC.indexOf('```', start));
}

function tickVectors() {
  const chunks = [];
  let chunk = [];
  for (const line of fencedBlock('tick-vectors')) {
    if (line.trim() === '') {
      if (chunk.length) chunks.push(chunk);
      chunk = [];
    } else {
      chunk.push(line);
    }
  }
  if (chunk.length) chunks.push(chunk);
  return chunks.map((lines) => {
    const fields = new Map();
    const ticks = [];
    for (const line of lines) {
      const split = line.indexOf(': ');
      assert.notEqual(split, -1, `key: value, got ${line}`);
      const [key, value] = [line.slice(0, split), line.slice(split + 2)];
      if (key.startsWith('tick ')) ticks.push([Number(key.slice(5)), parsePrice(value)]);
      else fields.set(key, value);
    }
    const field = (key) => {
      assert.ok(fields.has(key), `missing ${key}`);
      return fields.get(key);
    };
    return {
      name: field('vector'),
      params: {
        symbol: field('symbol'),
        volatilityBp: BigInt(field('volatility_bp')),
        tickIntervalMs: BigInt(field('tick_interval_ms')),
      },
      seed: field('seed'),
      epochId: BigInt(field('epoch_id')),
      startPrice: parsePrice(field('start_price')),
      commitment: field('commitment'),
      sigma: BigInt(field('sigma')),
      ticks,
    };
  });
}

/** One model-vector line: its kind, its `key=value` inputs, and its outputs text. */
function modelVector(line) {
  const split = line.indexOf(' -> ');
  assert.notEqual(split, -1, `inputs -> outputs, got ${line}`);
  const [kind, ...pairs] = line.slice(0, split).trim().split(/\s+/);
  const outputsText = line.slice(split + 4).trim();
  const toMap = (items) =>
    new Map(
      items.map((pair) => {
        const eq = pair.indexOf('=');
        assert.notEqual(eq, -1, `key=value, got ${pair}`);
        return [pair.slice(0, eq), pair.slice(eq + 1)];
      }),
    );
  const inputs = toMap(pairs);
  const outputs = toMap(outputsText.split(/\s+/).filter((item) => item.includes('=')));
  const get = (map, key) => {
    assert.ok(map.has(key), `missing ${key} in ${line}`);
    return map.get(key);
  };
  return { kind, input: (key) => get(inputs, key), output: (key) => get(outputs, key), outputsText };
}

/** A probability written with nine decimals, as in the model vectors. */
function probability(text) {
  assert.match(text, /^[0-9]+\.[0-9]{9}$/, `a decimal probability, got ${text}`);
  return parsePpb(text);
}

const TICK_COUNT = 1000;

test('the document has the promised vectors', () => {
  const vectors = tickVectors();
  assert.ok(vectors.length >= 3, `only ${vectors.length} tick vectors`);
  for (const vector of vectors) {
    assert.deepEqual(
      vector.ticks.map(([index]) => index),
      [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 999],
      `vector ${vector.name}`,
    );
  }
  const lines = fencedBlock('model-vectors').filter((line) => line.trim() !== '');
  assert.ok(lines.length >= 10, `only ${lines.length} model vectors`);
  for (const kind of ['odds:', 'quote:', 'bid:']) {
    assert.ok(lines.some((line) => line.startsWith(kind)), `no ${kind} vector`);
  }
});

test('every tick vector has the documented commitment and sigma', async () => {
  for (const vector of tickVectors()) {
    assert.equal(await commitmentOf(vector.seed), vector.commitment, `vector ${vector.name}`);
    assert.equal(await commitmentOf(vector.seed.toUpperCase()), vector.commitment, 'hex is read in either case');
    const { volatilityBp, tickIntervalMs } = vector.params;
    assert.equal(tickSigma(volatilityBp, tickIntervalMs), vector.sigma, `vector ${vector.name}`);
    assert.equal(tickSigma(Number(volatilityBp), Number(tickIntervalMs)), vector.sigma, 'Numbers work too');
  }
});

test('recomputed ticks reproduce every listed price of every tick vector', async () => {
  for (const vector of tickVectors()) {
    const ticks = await recomputeTicks(vector.params, vector.seed, vector.epochId, vector.startPrice, TICK_COUNT);
    assert.equal(ticks.length, TICK_COUNT);
    for (const [index, expected] of vector.ticks) {
      assert.equal(formatPrice(ticks[index]), formatPrice(expected), `vector ${vector.name}, tick ${index}`);
    }
    // Every tick, including the unlisted ones, stays within the price bounds (§5.4).
    assert.ok(ticks.every((units) => units >= 1n && units <= 10n ** 18n), `vector ${vector.name}`);
  }
});

test('single ticks and resumed runs agree with the whole epoch up to tick 999', async () => {
  for (const vector of tickVectors()) {
    const name = `vector ${vector.name}`;
    const { params, seed, epochId, startPrice } = vector;
    const listed = new Map(vector.ticks);
    // Tick by tick from the start price, through the listed ticks 0 to 9.
    let prev = startPrice;
    for (let index = 0; index <= 9; index++) {
      prev = await tickPrice(params, seed, epochId, index, prev);
      assert.equal(prev, listed.get(index), `${name}, tick ${index}`);
    }
    // Resuming from the listed tick 9 reaches the listed tick 999.
    const resumed = await recomputeTicks(params, seed, epochId, listed.get(9), TICK_COUNT - 10, 10);
    assert.equal(resumed.at(-1), listed.get(999), `${name}, tick 999 resumed from tick 9`);
    // And the last step alone, from tick 998, gives tick 999.
    assert.equal(await tickPrice(params, seed, epochId, 999n, resumed.at(-2)), listed.get(999), `${name}, tick 999`);
    // The epoch id may be given as a decimal string (JSON loses precision beyond 2⁵³).
    assert.equal(await tickPrice(params, seed, String(epochId), 0, startPrice), listed.get(0), `${name}, string id`);
  }
});

test('the documented ticks of every vector verify, and so do recomputed runs', async () => {
  for (const vector of tickVectors()) {
    const { params, seed, commitment, epochId, startPrice } = vector;
    const listed = vector.ticks.filter(([index]) => index <= 9).map(([, units]) => units);
    assert.deepEqual(await verifyEpoch(params, seed, commitment, epochId, startPrice, listed), { ok: true });
    assert.deepEqual(
      await verifyEpoch(params, seed.toUpperCase(), commitment.toUpperCase(), epochId, startPrice, listed),
      { ok: true },
      'hex is read in either case',
    );
    const ticks = await recomputeTicks(params, seed, epochId, startPrice, TICK_COUNT);
    assert.deepEqual(await verifyEpoch(params, seed, commitment, epochId, startPrice, ticks), { ok: true });
    assert.deepEqual(await verifyTicks(params, seed, epochId, 990, ticks[989], ticks.slice(990)), { ok: true });
  }
});

test('verifyEpoch reports the first tampered tick at its index with both prices', async () => {
  const [vector] = tickVectors();
  const { params, seed, commitment, epochId, startPrice } = vector;
  const honest = await recomputeTicks(params, seed, epochId, startPrice, 100);
  for (const [index, delta] of [[0, 1n], [57, 1n], [57, -1n], [99, 100000000n]]) {
    const tampered = honest.slice();
    tampered[index] += delta;
    if (index < 80) tampered[80] -= 1n; // a later change is not reported
    assert.deepEqual(
      await verifyEpoch(params, seed, commitment, epochId, startPrice, tampered),
      { ok: false, reason: 'tick', index, expected: honest[index], got: honest[index] + delta },
      `tick ${index} moved by ${delta}`,
    );
  }
  // A run from another epoch or market fails at tick 0.
  for (const [otherParams, otherEpoch] of [
    [params, epochId + 1n],
    [{ ...params, symbol: params.symbol + 'X' }, epochId],
    [{ ...params, volatilityBp: params.volatilityBp + 1n }, epochId],
  ]) {
    const result = await verifyEpoch(otherParams, seed, commitment, otherEpoch, startPrice, honest);
    assert.equal(result.ok, false);
    assert.equal(result.reason, 'tick');
    assert.equal(result.index, 0);
  }
  // A trade's stretch is checked from its own first index.
  const stretch = honest.slice(40, 60);
  stretch[5] += 1n;
  assert.deepEqual(await verifyTicks(params, seed, epochId, 40, honest[39], stretch), {
    ok: false,
    reason: 'tick',
    index: 45,
    expected: honest[45],
    got: honest[45] + 1n,
  });
});

test('verifyEpoch refuses a seed that does not match the commitment', async () => {
  const [vector, other] = tickVectors();
  const { params, seed, commitment, epochId, startPrice } = vector;
  const ticks = await recomputeTicks(params, seed, epochId, startPrice, 10);
  // One changed hex digit of the published commitment.
  const last = commitment.at(-1) === '0' ? '1' : '0';
  const wrong = commitment.slice(0, -1) + last;
  assert.deepEqual(await verifyEpoch(params, seed, wrong, epochId, startPrice, ticks), {
    ok: false,
    reason: 'commitment',
    index: null,
    expected: wrong,
    got: commitment,
  });
  // Another epoch's seed, with the right ticks.
  const result = await verifyEpoch(params, other.seed, commitment, epochId, startPrice, ticks);
  assert.equal(result.ok, false);
  assert.equal(result.reason, 'commitment');
  assert.equal(result.got, other.commitment);
});

test('the model reproduces every model vector', () => {
  let checked = 0;
  for (const line of fencedBlock('model-vectors').filter((l) => l.trim() !== '')) {
    const { kind, input, output, outputsText } = modelVector(line);
    switch (kind) {
      case 'odds:': {
        const odds = outcomeOdds(
          BigInt(input('sigma')),
          BigInt(input('ticks')),
          parsePrice(input('current')),
          parsePrice(input('reference')),
        );
        const expected = { up: probability(output('up')), down: probability(output('down')), tie: probability(output('tie')) };
        assert.deepEqual(odds, expected, line);
        assert.equal(formatPpb(odds.up), output('up'), line);
        break;
      }
      case 'quote:': {
        const q = quote(
          input('direction'),
          BigInt(input('sigma')),
          BigInt(input('ticks')),
          parsePrice(input('price')),
          BigInt(input('payout_rate_bp')),
        );
        assert.equal(formatPpb(q.win), output('win'), line);
        assert.equal(formatPpb(q.tie), output('tie'), line);
        assert.equal(formatPpb(q.loss), output('loss'), line);
        assert.equal(formatPpb(q.breakEven), output('break_even'), line);
        assert.equal(formatPpb(q.houseEdge), output('edge'), line);
        assert.equal(q.win + q.tie + q.loss, 10n ** 9n, line);
        break;
      }
      case 'bid:': {
        const bid = earlyCloseBid(
          parseCents(input('stake')),
          BigInt(input('payout_rate_bp')),
          probability(input('win')),
          probability(input('tie')),
          BigInt(input('spread_bp')),
        );
        assert.equal(formatCents(bid), outputsText, line);
        assert.equal(bid, parseCents(outputsText), line);
        break;
      }
      default:
        assert.fail(`unknown model vector ${kind}`);
    }
    checked++;
  }
  assert.ok(checked >= 10);
});

test('the worked sigma of §5.1 is reproduced', () => {
  const text = SPEC.slice(SPEC.indexOf('### 5.1'), SPEC.indexOf('### 5.2'));
  const [, variance, sigma] = /= (\d+)` and `sigma = (\d+)`/.exec(text);
  assert.equal((2500n ** 2n * 1000n * 10n ** 16n) / 31536000000n, BigInt(variance));
  assert.equal(tickSigma(2500, 1000), BigInt(sigma));
});

test('the worked tick of §8.1 is reproduced step by step', async () => {
  const block = blockAfter('### 8.1', 'text');
  const value = (key) => {
    const match = new RegExp(`^${key}\\s*=\\s*(.*)$`, 'm').exec(block);
    assert.ok(match, `no ${key} in §8.1`);
    return match[1];
  };
  const [vector] = tickVectors();
  // The message runs over several lines, grouped by field, and ends with its length.
  const messageText = block.slice(block.indexOf('message'), block.indexOf('hash')).replace('message', '');
  const [, bytes, length] = /=([\s\S]*)\((\d+) bytes\)/.exec(messageText);
  const message = tickMessage(vector.params.symbol, vector.seed, vector.epochId, 0);
  assert.equal(Buffer.from(message).toString('hex'), bytes.replace(/\s+/g, ''));
  assert.equal(message.length, Number(length));
  const hash = await sha256Hex(message);
  assert.equal(hash, value('hash'));
  const h = Buffer.from(hash, 'hex');
  const words = value('u_0…u_11').trim().split(/\s+/).map(Number);
  assert.deepEqual(words, Array.from({ length: 12 }, (_, k) => h.readUInt16BE(2 * k)));
  const [, sum, zRaw] = /S\s*=\s*(\d+);\s*z_raw\s*=\s*(-?\d+)/.exec(block);
  assert.equal(tickZRaw(new Uint8Array(h)), BigInt(zRaw));
  assert.equal(2n * BigInt(sum) - 786420n, BigInt(zRaw));
  const numerator = value('numerator').split('=').at(-1).trim();
  assert.equal(vector.startPrice * vector.sigma * BigInt(zRaw), BigInt(numerator));
  const magnitude = /^(\d+)/.exec(value('magnitude'))[1];
  const [, units, text] = /^(\d+) units = ([0-9.]+)/.exec(value('price'));
  assert.equal(tickStep(vector.startPrice, vector.sigma, BigInt(zRaw)), vector.startPrice + BigInt(magnitude));
  assert.equal(tickStep(vector.startPrice, vector.sigma, BigInt(zRaw)), BigInt(units));
  assert.equal(formatPrice(BigInt(units)), text);
});

test('the worked model figure of §8.2 is reproduced step by step', () => {
  const block = blockAfter('### 8.2', 'text');
  const number = (key, from = 0) => {
    const match = new RegExp(`${key}\\s*=\\s*(-?\\d+)`).exec(block.slice(from));
    assert.ok(match, `no ${key} in §8.2`);
    return BigInt(match[1]);
  };
  const S = parsePrice('1000.05000000');
  const K = parsePrice('1000.00000000');
  const sigma = 44518108n;
  const v = sigma * sigma * 30n;
  assert.equal(v, number('v'));
  const w = number('w');
  const half = v / 2000000n;
  assert.equal(half, number('half'));
  assert.equal(fairness.isqrt(v * 10n ** 12n), w);
  for (const [label, b] of [['2K + 1', 2n * K + 1n], ['2K − 1', 2n * K - 1n]]) {
    const from = block.indexOf(`b = ${label}`);
    assert.notEqual(from, -1, `no b = ${label}`);
    const ln = lnRatio(2n * S, b);
    assert.equal(ln, number('lnRatio', from), label);
    assert.equal(ln - half, number('num', from), label);
    const d = ((ln - half) * 10n ** 18n) / w;
    assert.equal(d, number('d', from), label);
    assert.equal(normalCdf(d), number('Φ\\(d\\)', from), label);
  }
  const odds = outcomeOdds(sigma, 30, S, K);
  assert.deepEqual(odds, { up: number('up'), down: number('down'), tie: number('tie') });
});

test('the JavaScript sketch of §5.6 agrees with the module', async () => {
  const source = blockAfter('### 5.6', 'js');
  const sketch = new Function(`${source}\nreturn tickPrice;`)();
  for (const vector of tickVectors()) {
    const seed = new Uint8Array(Buffer.from(vector.seed, 'hex'));
    let prev = vector.startPrice;
    for (let index = 0n; index < 10n; index++) {
      prev = await sketch(seed, vector.params.symbol, vector.epochId, index, prev, vector.sigma);
      assert.equal(prev, new Map(vector.ticks).get(Number(index)), `vector ${vector.name}, tick ${index}`);
    }
  }
});

test('a step rounds half away from zero and respects the floor and the ceiling', () => {
  // A change of exactly half a unit: 2 · σ · (±1) / (10¹² · 2¹⁷) = ±0.5 with σ = 2¹⁴ · 10¹².
  const half = 32768000000000000n;
  assert.equal(tickStep(2n, half, 1n), 3n);
  assert.equal(tickStep(2n, half, -1n), 1n);
  assert.equal(tickStep(2n, half - 1n, 1n), 2n);
  assert.equal(tickStep(2n, half - 1n, -1n), 2n);
  const extreme = tickSigma(100000, 86400000);
  assert.equal(tickStep(100n, extreme, -786420n), 1n);
  assert.equal(tickStep(10n ** 18n, extreme, 786420n), 10n ** 18n);
  assert.equal(tickZRaw(new Uint8Array(32)), -786420n);
  assert.equal(tickZRaw(new Uint8Array(32).fill(0xff)), 786420n);
  assert.equal(tickZRaw(new Uint8Array(32).fill(0xff, 24)), -786420n, 'bytes 24 to 31 are not used');
});

test('the tick message has the documented layout, negative epoch ids included', () => {
  const message = tickMessage('SIM', 'ab'.repeat(32), -2, 258);
  const expected = Buffer.concat([
    Buffer.from('fairtick/tick/v1'),
    Buffer.alloc(32, 0xab),
    Buffer.from([0, 0, 0, 3]),
    Buffer.from('SIM'),
    Buffer.from('fffffffffffffffe', 'hex'),
    Buffer.from('0000000000000102', 'hex'),
  ]);
  assert.equal(Buffer.from(message).toString('hex'), expected.toString('hex'));
});

test('prices print with eight decimals and parse exactly', () => {
  for (const [text, units] of [
    ['0.00000001', 1n],
    ['0.00120000', 120000n],
    ['25.12345678', 2512345678n],
    ['1000.00000000', 100000000000n],
    ['10000000000.00000000', 10n ** 18n],
  ]) {
    assert.equal(parsePrice(text), units, text);
    assert.equal(formatPrice(units), text);
  }
  assert.equal(parsePrice('1000'), 100000000000n);
  assert.equal(parsePrice('0.0012'), 120000n);
  assert.equal(parsePrice('007.5'), 750000000n);
});

test('invalid prices are refused rather than rounded', () => {
  for (const [text, why] of [
    ['', 'empty'],
    ['0', 'zero'],
    ['0.00000000', 'zero'],
    ['-1.00000000', 'negative'],
    ['+1', 'a sign'],
    ['1.000000001', 'nine decimals'],
    ['0.000000005', 'would round'],
    ['1e3', 'an exponent'],
    [' 1', 'a space'],
    ['1.', 'a dot without decimals'],
    ['.5', 'no integer part'],
    ['1,5', 'a comma'],
    ['10000000000.00000001', 'above the ceiling'],
    ['NaN', 'not a number'],
  ]) {
    assert.throws(() => parsePrice(text), Error, `${JSON.stringify(text)}: ${why}`);
  }
  assert.throws(() => parsePrice(1000), TypeError, 'a Number is not a price text');
  for (const [units, why] of [[0n, 'zero'], [10n ** 18n + 1n, 'above the ceiling'], [100, 'a Number']]) {
    assert.throws(() => formatPrice(units), Error, why);
  }
});

test('invalid markets, seeds and inputs are refused', async () => {
  const good = { symbol: 'SIM-100/x_y.z:1', volatilityBp: 1, tickIntervalMs: 1 };
  const seed = '00'.repeat(32);
  assert.equal(typeof (await tickPrice(good, seed, 0, 0, 100n)), 'bigint');
  for (const [params, why] of [
    [{ ...good, symbol: '' }, 'an empty symbol'],
    [{ ...good, symbol: 'SIM 100' }, 'a space in the symbol'],
    [{ ...good, symbol: 'SIMÉ' }, 'a non-ASCII symbol'],
    [{ ...good, symbol: 'X'.repeat(33) }, 'a 33-character symbol'],
    [{ ...good, volatilityBp: 0 }, 'no volatility'],
    [{ ...good, volatilityBp: 100001 }, 'above 1000 %'],
    [{ ...good, volatilityBp: 2.5 }, 'a fractional volatility'],
    [{ ...good, tickIntervalMs: 0 }, 'no interval'],
    [{ ...good, tickIntervalMs: 86400001 }, 'above a day'],
  ]) {
    await assert.rejects(tickPrice(params, seed, 0, 0, 100n), Error, why);
  }
  for (const [args, why] of [
    [[good, '00'.repeat(31), 0, 0, 100n], 'a short seed'],
    [[good, 'zz'.repeat(32), 0, 0, 100n], 'a non-hex seed'],
    [[good, seed, 2n ** 63n, 0, 100n], 'an epoch id above i64'],
    [[good, seed, -(2n ** 63n) - 1n, 0, 100n], 'an epoch id below i64'],
    [[good, seed, 1.5, 0, 100n], 'a fractional epoch id'],
    [[good, seed, 0, -1, 100n], 'a negative index'],
    [[good, seed, 0, 0, 100], 'a price as a Number'],
    [[good, seed, 0, 0, 0n], 'a zero price'],
  ]) {
    await assert.rejects(tickPrice(...args), Error, why);
  }
  await assert.rejects(verifyEpoch(good, seed, 'not hex', 0, 100n, []), TypeError, 'a malformed commitment');
  await assert.rejects(verifyEpoch(good, seed, await commitmentOf(seed), 0, 100n, [100]), TypeError, 'a Number tick');
});

test('the model keeps its promises and refuses what it cannot price', () => {
  const sigma = tickSigma(2500, 1000);
  for (const [current, reference] of [[1n, 1n], [100000000000n, 99999990000n], [1000n, 1001n], [10n ** 18n, 1n]]) {
    for (const ticks of [1n, 10n, 240n]) {
      const { up, down, tie } = outcomeOdds(sigma, ticks, current, reference);
      assert.equal(up + down + tie, 10n ** 9n);
      for (const p of [up, down, tie]) assert.ok(p >= 0n && p <= 10n ** 9n);
    }
  }
  // A higher current price never makes up less likely.
  let previous = outcomeOdds(sigma, 60, 99999000000n, 100000000000n);
  for (let current = 99999000000n; current <= 100001000000n; current += 37000n) {
    const odds = outcomeOdds(sigma, 60, current, 100000000000n);
    assert.ok(odds.up >= previous.up && odds.down <= previous.down, `at ${current}`);
    previous = odds;
  }
  assert.deepEqual(outcomeOdds(0n, 60, 5n, 4n), { up: 10n ** 9n, down: 0n, tie: 0n }, 'no volatility');
  assert.throws(() => outcomeOdds(tickSigma(100000, 86400000), 2n ** 64n - 1n, 1n, 1n), /horizon too long/);
  assert.ok(outcomeOdds(tickSigma(100000, 86400000), 1000, 1n, 1n).tie >= 0n);
  assert.throws(() => quote('sideways', sigma, 60, 1n, 8500), RangeError);
  assert.throws(() => earlyCloseBid(-1n, 8500, 0n, 0n, 0), RangeError, 'a negative stake');
  assert.throws(() => earlyCloseBid(100n, 8500, 0n, 0n, 10001), RangeError, 'a spread above 100 %');
  assert.throws(() => earlyCloseBid(100n, 8500, 600000000n, 500000000n, 0), RangeError, 'win + tie above one');
  assert.throws(() => earlyCloseBid(100, 8500, 0n, 0n, 0), TypeError, 'a stake as a Number');
  // The bid never exceeds the full payout.
  assert.equal(earlyCloseBid(12345n, 8500, 10n ** 9n, 0n, 0), (12345n * 18500n) / 10000n);
});

test('the fixed-point ln, exp and normal CDF are exact where they must be and accurate elsewhere', () => {
  const ONE = 10n ** 18n;
  const LN2 = 693147180559945309n;
  assert.equal(lnRatio(1n, 1n), 0n);
  assert.equal(lnRatio(2n, 1n), LN2);
  assert.equal(lnRatio(1n, 2n), -LN2);
  assert.equal(lnRatio(7n, 3n), -lnRatio(3n, 7n), 'a ratio and its inverse');
  assert.equal(fairness.expNeg(0n), ONE);
  assert.equal(normalCdf(10n * ONE), ONE);
  assert.equal(normalCdf(-10n * ONE), 0n);
  // Test-only floating point, to compare with published values: ln 10, e⁻¹ and Φ to 10 places.
  const float = (x) => Number(x) / 1e18;
  assert.ok(Math.abs(float(lnRatio(10n, 1n)) - Math.LN10) < 1e-12);
  assert.ok(Math.abs(float(fairness.expNeg(ONE)) - Math.exp(-1)) < 1e-15);
  for (const [x, phi] of [[0n, 0.5], [500n, 0.6914624613], [1000n, 0.8413447461], [1960n, 0.9750021049], [-2500n, 0.0062096653]]) {
    const got = float(normalCdf((x * ONE) / 1000n));
    assert.ok(Math.abs(got - phi) < 7.5e-8, `Φ(${x}/1000) = ${got}, expected ${phi}`);
  }
  let previous = 0n;
  for (let step = -12000n; step <= 12000n; step += 7n) {
    const x = (step * ONE) / 1000n;
    const value = normalCdf(x);
    assert.ok(value >= previous, `Φ decreases at ${x}`);
    if (x !== 0n) assert.equal(value + normalCdf(-x), ONE, `Φ(x) + Φ(−x) = 1 at ${x}`);
    previous = value;
  }
});

test('trade results follow the direction', () => {
  for (const [direction, entry, exit, result] of [
    ['up', 100n, 101n, 'win'],
    ['up', 100n, 99n, 'loss'],
    ['down', 100n, 99n, 'win'],
    ['down', 100n, 101n, 'loss'],
    ['up', 100n, 100n, 'tie'],
    ['down', 100n, 100n, 'tie'],
  ]) {
    assert.equal(tradeResult(direction, entry, exit), result, `${direction} ${entry} → ${exit}`);
  }
});

test('every export is documented with a JSDoc comment', () => {
  const source = readFileSync(new URL('../js/fairness.js', import.meta.url), 'utf8');
  assert.match(source, /^\/\*\*[\s\S]*?docs\/fairness\.md` is normative/, 'the opening comment');
  const exported = [...source.matchAll(/^export (?:async )?(?:function|const) (\w+)/gm)].map((m) => m[1]);
  assert.deepEqual(new Set(exported), new Set(Object.keys(fairness)), 'every export is found');
  for (const name of exported) {
    const at = source.search(new RegExp(`^export (?:async )?(?:function|const) ${name}\\b`, 'm'));
    assert.match(source.slice(0, at), /\*\/\n$/, `${name} has a doc comment right above it`);
  }
});
