// The web app in a real browser: Debian's headless Chromium driven by playwright-core against
// the real fairtick binary (fresh data directory, 50 ms ticks, 6 s epochs). One trader goes
// through the whole day: registers, trades up and watches it settle, sells one back, exports
// the statement, and checks a receipt on /verify. Screenshots of every page at desktop and
// phone width go to target/screenshots/.
//
// Run: FAIRTICK_BROWSER_TESTS=1 node --test web/tests/browser/   (after scripts/ensure-browser)
// Without FAIRTICK_BROWSER_TESTS=1 (for example inside `node --test web/tests/`) they are skipped.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';

import {
  DESKTOP, PHONE, buildServer, createUser, launchBrowser, missingPrerequisite, screenshot, startServer, watchForProblems,
} from './support.mjs';

const skip = await missingPrerequisite();
if (skip) console.log(`# browser tests skipped: ${skip}`);

const EMAIL = `trader-${Date.now()}@example.com`;
const PASSWORD = 'correct horse battery';

describe('the web app in Chromium', { skip: skip ?? false, timeout: 900000 }, () => {
  let server;
  let browser;
  let desktop;
  let page;
  let problems;
  /** The trade placed Up, once it settled. */
  let settledTradeId;
  let adminContext;
  let admin;
  let adminProblems = [];

  before(async () => {
    const binary = process.env.FAIRTICK_BIN ?? buildServer();
    server = await startServer(binary);
    browser = await launchBrowser();
    desktop = await browser.newContext({ viewport: DESKTOP, acceptDownloads: true });
    page = await desktop.newPage();
    page.setDefaultTimeout(15000);
    problems = watchForProblems(page);
  }, { timeout: 900000 });

  after(async () => {
    await browser?.close();
    await server?.stop();
  });

  /** The API as the signed-in page sees it (its cookie), for checks the screen cannot make exact. */
  const api = (path) => page.evaluate(async (p) => (await fetch(p)).json(), path);

  test('the pages are served with a strict content security policy and cache headers', { timeout: 30000 }, async () => {
    const response = await page.goto(`${server.url}/`);
    const headers = response.headers();
    assert.equal(response.status(), 200);
    assert.match(headers['content-security-policy'], /default-src 'none'; script-src 'self'; style-src 'self'/);
    assert.doesNotMatch(headers['content-security-policy'], /unsafe/);
    assert.equal(headers['x-content-type-options'], 'nosniff');
    assert.equal(headers['cache-control'], 'no-cache');
    const css = await page.evaluate(() => document.querySelector('link[rel=stylesheet]').href);
    const asset = await desktop.request.get(css);
    assert.match(asset.headers()['cache-control'], /immutable/);
    for (const path of ['/verify', '/admin']) {
      assert.equal((await desktop.request.get(`${server.url}${path}`)).status(), 200, path);
    }
  });

  test('a visitor registers and sees 10,000.00 VUSD and the practice marker', { timeout: 60000 }, async () => {
    await page.goto(`${server.url}/`);
    const marker = page.locator('#practice-marker');
    await marker.waitFor();
    assert.match(await marker.textContent(), /Practice account — virtual funds/);
    await page.locator('#login-email').waitFor();
    await screenshot(page, 'trader-signed-out-desktop');

    await page.getByRole('tab', { name: 'Create practice account' }).click();
    await page.fill('#reg-first', 'Grace');
    await page.fill('#reg-last', 'Hopper');
    await page.fill('#reg-email', EMAIL);
    await page.fill('#reg-password', 'short');
    await page.locator('#register-form button[type=submit]').click();
    // Checked in the page before asking the server; the message sits on the field.
    await page.locator('#reg-password-error', { hasText: 'at least 8' }).waitFor();
    await page.fill('#reg-password', PASSWORD);
    await page.locator('#register-form button[type=submit]').click();

    await page.locator('#balance', { hasText: '10,000.00' }).waitFor();
    assert.ok(await page.locator('#practice-marker').isVisible(), 'the practice marker stays visible when signed in');
    await page.locator('#available', { hasText: '10,000.00' }).waitFor();
    // The quote is on screen before the buttons can be used.
    await page.locator('#q-up-payout', { hasText: '185.00' }).waitFor();
    await page.locator('#q-up-breakeven', { hasText: '%' }).waitFor();
    assert.ok(await page.locator('#buy-up').isEnabled());
    const durations = await page.locator('#duration option').allTextContents();
    assert.deepEqual(durations.slice(0, 2), ['5 s', '10 s']);
  });

  test('an Up trade settles by itself and the balance follows', { timeout: 60000 }, async () => {
    // Before trading, the page shows the commitments the prices come from.
    const epochLine = page.locator('[data-testid="epoch-line"]', { hasText: /^Epoch #\d+, seed committed as [0-9a-f]{12}…; next #\d+ from seq \d+, committed as [0-9a-f]{12}…/ });
    await epochLine.waitFor();
    await page.fill('#amount', '100');
    await page.selectOption('#duration', '5');
    await page.locator('#q-up-payout', { hasText: '185.00' }).waitFor();
    await page.locator('#buy-up:not([disabled])').click();

    const open = page.locator('.otrade');
    await open.first().waitFor();
    await page.locator('#balance', { hasText: '10,000.00' }).waitFor(); // balance = available + in play
    await page.locator('#in-play', { hasText: '100.00' }).waitFor();
    await page.locator('.otrade [data-role="countdown"]', { hasText: /\ds/ }).waitFor();
    await screenshot(page, 'trader-open-trade-desktop');

    // Settles about 5 s after entry; the open list empties and a result notification appears.
    await page.locator('#open-trades [data-state="empty"]').waitFor({ timeout: 30000 });
    await page.locator('.toast', { hasText: /\b(won|lost|tied?)/i }).waitFor();
    const { trades } = await api('/api/flash-trade/history?limit=1');
    const trade = trades[0];
    assert.equal(trade.status, 'settled');
    settledTradeId = trade.id;
    // 10,000.00 − 100.00 stake + what came back (payout on a win, the stake on a tie, 0 on a loss).
    const paidCents = BigInt(trade.payout.replace('.', ''));
    const expected = 1000000n - 10000n + paidCents;
    const text = `${expected / 100n}.${String(expected % 100n).padStart(2, '0')}`.replace(/\B(?=(\d{3})+(?!\d))/g, ',');
    await page.locator('#balance', { hasText: text }).waitFor();
    await page.locator('#in-play', { hasText: '0.00' }).waitFor();
    await page.locator(`#trades-list tr[data-id="${trade.id}"]`).waitFor();
    // One trade cannot be told from luck.
    await page.locator('[data-testid="luck-verdict"]', { hasText: 'Distinguishable from luck: not yet' }).waitFor();
    await screenshot(page, 'trader-settled-desktop');

    // Candles of the same market, and back.
    await page.locator('#mode-candles').click();
    await page.locator('#interval:not([disabled])').waitFor();
    await page.waitForFunction(() => document.querySelector('#chart-msg').hidden);
    await page.waitForTimeout(300);
    await screenshot(page, 'trader-candles-desktop');
    await page.locator('#mode-ticks').click();
  });

  test('a second trade is sold back before expiry', { timeout: 60000 }, async () => {
    await page.selectOption('#duration', '30');
    await page.locator('#q-down-payout', { hasText: '185.00' }).waitFor();
    await page.locator('#buy-down:not([disabled])').click();
    const sell = page.locator('.otrade button.sell:not([disabled])');
    await sell.waitFor({ timeout: 20000 });
    assert.match(await sell.textContent(), /Sell · \d/);
    await sell.click();
    await page.locator('.toast', { hasText: /\bsold/i }).waitFor();
    await page.locator('#open-trades [data-state="empty"]').waitFor();
    const { trades } = await api('/api/flash-trade/history?status=sold');
    assert.equal(trades.length, 1);
    await page.locator('#in-play', { hasText: '0.00' }).waitFor();
  });

  test('virtual funds are added and the statement exports as CSV', { timeout: 60000 }, async () => {
    await page.fill('#wallet-amount', '250.50');
    await page.locator('#deposit').click();
    await page.locator('.toast', { hasText: 'Added 250.50 virtual VUSD' }).waitFor();
    // Too much at once: the server's limit message appears on the field.
    await page.fill('#wallet-amount', '20000');
    await page.locator('#deposit').click();
    await page.locator('#wallet-amount-error', { hasText: /10000\.00|10,000\.00/ }).waitFor();

    await page.getByRole('tab', { name: 'Transactions' }).click();
    await page.locator('#tx-list tbody tr').first().waitFor();
    const [download] = await Promise.all([page.waitForEvent('download'), page.locator('#csv-link').click()]);
    const csv = readFileSync(await download.path(), 'utf8');
    const lines = csv.trim().split('\n');
    assert.ok(lines.length >= 6, `header and at least 5 movements, got:\n${csv}`);
    assert.match(csv, /deposit/);
    assert.match(csv, /stake/);
    assert.match(csv, /250\.50/);
    await screenshot(page, 'trader-transactions-desktop');
    await page.getByRole('tab', { name: 'Trade history' }).click();
  });

  test('/verify re-derives the settled trade from its receipt', { timeout: 60000 }, async () => {
    // The receipt is checkable once every epoch it touches has ended and revealed its seed.
    const deadline = Date.now() + 20000;
    for (;;) {
      const receipt = await api(`/api/flash-trade/${settledTradeId}/receipt`);
      if (JSON.parse(receipt.payload).epochs.every((e) => e.seed)) break;
      assert.ok(Date.now() < deadline, 'the seeds were revealed');
      await page.waitForTimeout(250);
    }
    await page.goto(`${server.url}/verify?trade=${settledTradeId}`);
    const summary = page.locator('#receipt-summary[data-outcome="ok"]');
    await summary.waitFor({ timeout: 30000 });
    assert.match(await summary.textContent(), /^Verified/);
    for (const check of ['key', 'signature', 'commitment', 'ticks', 'entry', 'grace', 'seeds', 'result', 'payout']) {
      assert.equal(await page.locator(`#receipt-steps li[data-check="${check}"][data-outcome="failed"]`).count(), 0, check);
      assert.ok(await page.locator(`#receipt-steps li[data-check="${check}"][data-outcome="ok"]`).count() >= 1, check);
    }
    await screenshot(page, 'verify-receipt-desktop');

    // The same receipt pasted by someone not logged in; then with its payout altered.
    const receipt = await api(`/api/flash-trade/${settledTradeId}/receipt`);
    const stranger = await browser.newContext({ viewport: DESKTOP });
    const anon = await stranger.newPage();
    const anonProblems = watchForProblems(anon);
    await anon.goto(`${server.url}/verify`);
    await anon.locator('#server-key', { hasText: receipt.publicKey }).waitFor();
    await anon.fill('#receipt', JSON.stringify(receipt));
    await anon.locator('#verify-receipt').click();
    await anon.locator('#receipt-summary[data-outcome="ok"]').waitFor({ timeout: 30000 });
    const forged = { ...receipt, payload: receipt.payload.replace(/"payout":"([\d.]+)"/, '"payout":"99999.00"') };
    assert.notEqual(forged.payload, receipt.payload);
    await anon.fill('#receipt', JSON.stringify(forged));
    await anon.locator('#verify-receipt').click();
    await anon.locator('#receipt-summary[data-outcome="failed"]', { hasText: 'signature' }).waitFor();

    // The epoch checker recomputes a whole revealed epoch.
    await anon.locator('#epochs button', { hasText: 'Check' }).first().click();
    await anon.locator('#epoch-summary[data-outcome="ok"]', { hasText: 'Verified' }).waitFor({ timeout: 30000 });
    await screenshot(anon, 'verify-epoch-desktop');
    assert.deepEqual(anonProblems, []);
    await stranger.close();
  });

  test('/admin tells a trader it is for administrators, and shows an admin the users and terms', { timeout: 60000 }, async () => {
    await page.goto(`${server.url}/admin`);
    await page.locator('#admin-state', { hasText: 'for administrators' }).waitFor();

    createUser(server, { email: 'admin@example.com', password: PASSWORD, role: 'admin' });
    adminContext = await browser.newContext({ viewport: DESKTOP });
    admin = await adminContext.newPage();
    adminProblems = watchForProblems(admin);
    await admin.goto(`${server.url}/`);
    await admin.fill('#login-email', 'admin@example.com');
    await admin.fill('#login-password', PASSWORD);
    await admin.locator('#login-form button[type=submit]').click();
    await admin.locator('#admin-link:not([hidden])').waitFor();
    await admin.goto(`${server.url}/admin`);
    await admin.locator('#users td', { hasText: EMAIL }).waitFor();
    await admin.waitForFunction(() => document.querySelector('#s-durations').value.length > 0);
    await screenshot(admin, 'admin-desktop');
  });

  test('an admin changes the terms: errors show on the field, and the trader page is notified', { timeout: 60000 }, async () => {
    await page.goto(`${server.url}/`);
    await page.locator('#conn[data-state="live"]').waitFor();
    await page.locator('#duration option[value="5"]').waitFor({ state: 'attached' });

    await admin.fill('#s-durations', '10, 5');
    await admin.locator('#save-settings').click();
    await admin.locator('#s-durations-error', { hasText: 'increasing order' }).waitFor();
    assert.equal(await admin.getAttribute('#s-durations', 'aria-invalid'), 'true');

    await admin.fill('#s-durations', '5, 10, 15, 20, 30, 60, 120, 300');
    await admin.locator('#save-settings').click();
    await admin.locator('#settings-history td', { hasText: 'durations' }).first().waitFor();
    await admin.setViewportSize(PHONE);
    await screenshot(admin, 'admin-phone');

    await page.locator('.toast', { hasText: 'Trading terms changed' }).waitFor();
    await page.locator('#duration option[value="20"]').waitFor({ state: 'attached' });
    await screenshot(page, 'trader-terms-changed-desktop');
    assert.deepEqual(adminProblems, []);
    await adminContext.close();
  });

  test('every page works at phone width without sideways scrolling', { timeout: 60000 }, async () => {
    const phone = await browser.newContext({
      viewport: PHONE, deviceScaleFactor: 2, isMobile: true, hasTouch: true, storageState: await desktop.storageState(),
    });
    const small = await phone.newPage();
    const smallProblems = watchForProblems(small);
    await small.goto(`${server.url}/`);
    await small.locator('#balance', { hasText: /\d\.\d\d/ }).waitFor();
    await small.locator('#trades-list table').waitFor();
    await small.locator('#q-up-payout', { hasText: '.' }).waitFor();
    await small.waitForTimeout(300);
    await screenshot(small, 'trader-phone');
    const overflow = () => small.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(await overflow() <= 0, 'the trader page fits 375 px');

    await small.goto(`${server.url}/verify?trade=${settledTradeId}`);
    await small.locator('#receipt-summary[data-outcome="ok"]').waitFor({ timeout: 30000 });
    await screenshot(small, 'verify-phone');
    assert.ok(await overflow() <= 0, 'the verifier fits 375 px');

    const fresh = await browser.newContext({ viewport: PHONE, deviceScaleFactor: 2, isMobile: true });
    const signedOut = await fresh.newPage();
    await signedOut.goto(`${server.url}/`);
    await signedOut.locator('#login-email').waitFor();
    await screenshot(signedOut, 'trader-signed-out-phone');
    await fresh.close();
    assert.deepEqual(smallProblems, []);
    await phone.close();
  });

  test('without the WebSocket the page polls, and trades still settle and are announced', { timeout: 60000 }, async () => {
    const context = await browser.newContext({ viewport: DESKTOP, storageState: await desktop.storageState() });
    const polling = await context.newPage();
    const pollingProblems = watchForProblems(polling);
    // Every socket to /ws is refused at once, as by a proxy that does not pass WebSockets.
    await polling.routeWebSocket(/\/ws$/, (ws) => ws.close({ code: 1011, reason: 'no sockets here' }));
    await polling.goto(`${server.url}/`);
    await polling.locator('#conn[data-state="polling"]').waitFor();
    const first = await polling.locator('#last-price').textContent();
    await polling.waitForFunction((before) => document.querySelector('#last-price').textContent !== before, first);
    await polling.selectOption('#duration', '5');
    await polling.locator('#q-up-payout', { hasText: '.' }).waitFor();
    await polling.locator('#buy-up:not([disabled])').click();
    await polling.locator('.otrade').first().waitFor();
    await polling.locator('#open-trades [data-state="empty"]').waitFor({ timeout: 30000 });
    await polling.locator('.toast', { hasText: /\b(won|lost|tie)/i }).waitFor();
    assert.deepEqual(pollingProblems, []);
    await context.close();
  });

  test('a trader sees limits an admin set, and a suspension signs them out with the reason', { timeout: 60000 }, async () => {
    const base = server.url;
    const call = async (method, path, token, body) => {
      const response = await fetch(`${base}${path}`, {
        method,
        headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      if (!response.ok) assert.fail(`${method} ${path}: ${response.status} ${await response.text()}`);
      return response.json();
    };
    const adminToken = (await call('POST', '/api/auth/login', null, { email: 'admin@example.com', password: PASSWORD })).token;
    const email = `limited-${Date.now()}@example.com`;
    const context = await browser.newContext({ viewport: DESKTOP });
    const limited = await context.newPage();
    const limitedProblems = watchForProblems(limited);
    await limited.goto(`${base}/#register`);
    await limited.fill('#reg-first', 'Lim');
    await limited.fill('#reg-last', 'Ited');
    await limited.fill('#reg-email', email);
    await limited.fill('#reg-password', PASSWORD);
    await limited.locator('#register-form button[type=submit]').click();
    await limited.locator('#conn[data-state="live"]').waitFor();
    const { users } = await call('GET', `/api/admin/users?query=${encodeURIComponent(email)}`, adminToken);
    const id = users[0].id;

    // A personal stake limit below the published one is what the ticket says, once the page reads the account again.
    await call('PATCH', `/api/admin/users/${id}`, adminToken, { maxStake: '50.00' });
    await limited.reload();
    await limited.locator('#amount-label', { hasText: /–50\.00$/ }).waitFor();

    // Trading suspended: the ticket says so and its buttons stay off.
    await call('PATCH', `/api/admin/users/${id}`, adminToken, { tradingSuspended: true });
    await limited.reload();
    await limited.locator('#suspended-note:not([hidden])').waitFor();
    await limited.locator('#quote-note', { hasText: /suspended/ }).waitFor();
    assert.ok(await limited.locator('#buy-up').isDisabled());

    // The account suspended: the open page is signed out, and the login form says why, also after a reload.
    await call('PATCH', `/api/admin/users/${id}`, adminToken, { status: 'suspended' });
    await limited.locator('#auth-note', { hasText: 'This account is suspended' }).waitFor();
    await limited.reload();
    await limited.locator('#login-email').waitFor();
    assert.ok(await limited.locator('#boot').isHidden(), 'not a dead end saying the server is unreachable');
    assert.deepEqual(limitedProblems, []);
    await context.close();
  });

  test('the trader can log out, and another tab of the same session follows', { timeout: 30000 }, async () => {
    await page.goto(`${server.url}/`);
    const otherTab = await desktop.newPage();
    const otherProblems = watchForProblems(otherTab);
    await otherTab.goto(`${server.url}/`);
    await otherTab.locator('#conn[data-state="live"]').waitFor();
    await page.locator('#logout').click();
    await page.locator('#login-email').waitFor();
    // Its socket was closed to sign in again; with the session gone, it is back at the login form.
    await otherTab.locator('#auth-note', { hasText: 'Your session ended' }).waitFor();
    assert.deepEqual(otherProblems, []);
    await otherTab.close();
    const me = await page.evaluate(async () => (await fetch('/api/auth/me')).status);
    assert.equal(me, 401);
    assert.deepEqual(problems, [], 'no script errors or policy violations on the trader pages');
  });
});
