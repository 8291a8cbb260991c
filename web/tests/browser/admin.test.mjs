// The admin page in Chromium against the real binary: an admin (made with the CLI) finds a
// trader, suspends and reactivates them, sets and lifts a stake limit (a bad value and a role
// change the plain admin may not make show their errors on the field), watches the trader's
// trade arrive in the live monitor and settle in place, reads the house statistics and the
// audit entry for the suspension, and turns on two-factor sign-in (the code computed here by
// RFC 6238). An admin page whose session ends (logged out elsewhere, or with its own Log out
// button) or whose account is demoted sends its user to `/`. Screenshots at 1280×800 and
// 375×812 go to target/screenshots/admin-*.png.
//
// Run: FAIRTICK_BROWSER_TESTS=1 node --test web/tests/browser/   (after scripts/ensure-browser)

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { join } from 'node:path';

import {
  DESKTOP, PHONE, SCREENSHOTS, buildServer, createUser, launchBrowser, missingPrerequisite, screenshot, startServer, watchForProblems,
} from './support.mjs';

const skip = await missingPrerequisite();
if (skip) console.log(`# browser tests skipped: ${skip}`);

const PASSWORD = 'correct horse battery';
const TRADER = `watched-${Date.now()}@example.com`;
const ADMIN = 'ops-admin@example.com';

/** RFC 4648 base32 → bytes. */
function base32(text) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = '';
  for (const ch of text.replace(/[\s=]/g, '').toUpperCase()) bits += alphabet.indexOf(ch).toString(2).padStart(5, '0');
  const bytes = [];
  for (let i = 0; i + 8 <= bits.length; i += 8) bytes.push(parseInt(bits.slice(i, i + 8), 2));
  return Buffer.from(bytes);
}

/** RFC 6238 TOTP: HMAC-SHA1, 30 s steps, 6 digits. */
function totp(secret, at = Date.now()) {
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(Math.floor(at / 30000)));
  const mac = createHmac('sha1', base32(secret)).update(counter).digest();
  const offset = mac[mac.length - 1] & 0x0f;
  const value = (mac.readUInt32BE(offset) & 0x7fffffff) % 1000000;
  return String(value).padStart(6, '0');
}

describe('the admin page in Chromium', { skip: skip ?? false, timeout: 900000 }, () => {
  let server;
  let browser;
  let traderContext;
  let trader;
  let adminContext;
  let admin;
  let problems = [];
  /** The admin's two-factor secret, once turned on. */
  let adminSecret;
  let traderId;

  before(async () => {
    const binary = process.env.FAIRTICK_BIN ?? buildServer();
    server = await startServer(binary);
    browser = await launchBrowser();

    traderContext = await browser.newContext({ viewport: DESKTOP });
    trader = await traderContext.newPage();
    trader.setDefaultTimeout(15000);
    await trader.goto(`${server.url}/`);
    await trader.getByRole('tab', { name: 'Create practice account' }).click();
    await trader.fill('#reg-first', 'Wanda');
    await trader.fill('#reg-last', 'Watched');
    await trader.fill('#reg-email', TRADER);
    await trader.fill('#reg-password', PASSWORD);
    await trader.locator('#register-form button[type=submit]').click();
    await trader.locator('#balance', { hasText: '10,000.00' }).waitFor();
    traderId = (await trader.evaluate(async () => (await fetch('/api/auth/me')).json())).user.id;

    createUser(server, { email: ADMIN, password: PASSWORD, role: 'admin' });
    adminContext = await browser.newContext({ viewport: DESKTOP });
    admin = await adminContext.newPage();
    admin.setDefaultTimeout(15000);
    problems = watchForProblems(admin);
    await admin.goto(`${server.url}/`);
    await admin.fill('#login-email', ADMIN);
    await admin.fill('#login-password', PASSWORD);
    await admin.locator('#login-form button[type=submit]').click();
    await admin.locator('#admin-link:not([hidden])').waitFor();
  }, { timeout: 900000 });

  after(async () => {
    await browser?.close();
    await server?.stop();
  });

  /** A new admin account (made with the CLI), signed in over the API: its token. */
  async function signedInAdmin(email, role = 'admin') {
    createUser(server, { email, password: PASSWORD, role });
    const response = await fetch(`${server.url}/api/auth/login`, {
      method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ email, password: PASSWORD }),
    });
    assert.equal(response.status, 200, `${email} signs in`);
    return (await response.json()).token;
  }

  /** The admin page in a browser of its own, signed in with `token`, once it is live. */
  async function adminPageWith(token) {
    const context = await browser.newContext({ viewport: DESKTOP });
    await context.addCookies([{ name: 'fairtick_session', value: token, url: server.url, httpOnly: true, sameSite: 'Strict' }]);
    const page = await context.newPage();
    page.setDefaultTimeout(15000);
    const pageProblems = watchForProblems(page);
    await page.goto(`${server.url}/admin`);
    await page.locator('#admin-panels:not([hidden])').waitFor();
    await page.locator('#live-conn[data-state="live"]').waitFor();
    return { context, page, pageProblems };
  }

  /** Another client's call with `token`, as the API sees it. */
  const callWith = (token, method, path, body) => fetch(`${server.url}${path}`, {
    method,
    headers: { Authorization: `Bearer ${token}`, ...(body ? { 'Content-Type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });

  test('the panels load, with the live monitor connected', { timeout: 60000 }, async () => {
    await admin.goto(`${server.url}/admin`);
    await admin.locator('#admin-panels:not([hidden])').waitFor();
    await admin.locator('#stats [data-stat="turnover"]', { hasText: '0.00' }).waitFor();
    await admin.locator('#live-trades [data-state="empty"]').waitFor();
    await admin.locator('#live-conn[data-state="live"]').waitFor();
    await admin.locator('#audit [data-state="empty"]').waitFor();
    await admin.locator('#trade-history [data-state="empty"]').waitFor();
    await admin.locator('#users td', { hasText: TRADER }).waitFor();
  });

  test('an admin finds the trader, suspends and reactivates them, and sets a stake limit', { timeout: 60000 }, async () => {
    await admin.fill('#user-q', 'watched-');
    await admin.press('#user-q', 'Enter');
    await admin.locator('#users tbody tr').first().waitFor();
    assert.equal(await admin.locator('#users tbody tr').count(), 1, 'the search finds only the trader');
    // Keyboard: the Manage button opens the user's panel.
    await admin.getByRole('button', { name: `Manage ${TRADER}` }).focus();
    await admin.keyboard.press('Enter');
    await admin.locator('#user-detail:not([hidden])').waitFor();
    await admin.locator('#ud-title', { hasText: TRADER }).waitFor();

    await admin.locator('#ud-status', { hasText: 'Suspend user' }).click();
    await admin.locator('#ud-facts [data-fact="Status"]', { hasText: 'suspended' }).waitFor();
    await admin.locator('#users tbody tr', { hasText: 'suspended' }).waitFor();
    await admin.locator('#ud-status', { hasText: 'Reactivate user' }).waitFor();
    // The status filter finds them among the suspended.
    await admin.selectOption('#user-status', 'suspended');
    await admin.locator('#users td', { hasText: TRADER }).waitFor();
    await admin.selectOption('#user-status', 'active');
    await admin.locator('#users [data-state="empty"]').waitFor();
    await admin.selectOption('#user-status', '');
    await admin.locator('#users td', { hasText: TRADER }).waitFor();
    await admin.locator('#ud-status', { hasText: 'Reactivate user' }).click();
    await admin.locator('#ud-facts [data-fact="Status"]', { hasText: 'active' }).waitFor();

    // A plain admin may not grant roles: the server's refusal sits on the role field.
    await admin.selectOption('#ud-role', 'admin');
    await admin.locator('#ud-role-save').click();
    await admin.locator('#ud-role-error', { hasText: /superadmin/i }).waitFor();
    assert.equal(await admin.getAttribute('#ud-role', 'aria-invalid'), 'true');

    await admin.fill('#ud-maxStake', 'lots');
    await admin.locator('#ud-maxStake-save').click();
    await admin.locator('#ud-maxStake-error', { hasText: /amount/ }).waitFor();
    await admin.fill('#ud-maxStake', '50');
    await admin.locator('#ud-maxStake-save').click();
    await admin.locator('#ud-facts [data-fact="Max stake"]', { hasText: '50.00 VUSD' }).waitFor();
    await admin.locator('#users td', { hasText: '50.00' }).waitFor();
    const me = await trader.evaluate(async () => (await fetch('/api/auth/me')).json());
    assert.equal(me.user.maxStake, '50.00', 'the limit shows on the trader\'s /api/auth/me');
    assert.equal(me.user.status, 'active');
  });

  test('the trader\'s trade appears in the live monitor and settles in place', { timeout: 90000 }, async () => {
    // The suspension ended the trader's sessions; they log in again once reactivated.
    await trader.goto(`${server.url}/`);
    const status = await trader.evaluate(async () => (await fetch('/api/auth/me')).status);
    if (status === 401) {
      await trader.locator('#login-email').waitFor();
      await trader.fill('#login-email', TRADER);
      await trader.fill('#login-password', PASSWORD);
      await trader.locator('#login-form button[type=submit]').click();
    }
    await trader.locator('#balance', { hasText: /\d\.\d\d/ }).waitFor();
    await trader.fill('#amount', '40');
    await trader.selectOption('#duration', '5');
    await trader.locator('#q-up-payout', { hasText: '74.00' }).waitFor();
    await trader.locator('#buy-up:not([disabled])').click();
    await trader.locator('.otrade').first().waitFor();

    const row = admin.locator('#live-trades tbody tr').first();
    await row.waitFor();
    assert.match(await row.textContent(), /40\.00/);
    assert.equal(Number(await row.locator('td').nth(1).textContent()), traderId);
    await admin.locator('#live-trades tbody tr[data-status="active"]').waitFor();
    await screenshot(admin, 'admin-live-desktop');
    await admin.locator('#live-trades tbody tr[data-status="settled"]').waitFor({ timeout: 30000 });
    assert.equal(await admin.locator('#live-trades tbody tr').count(), 1, 'updated in place, not added twice');

    // History with a user filter, and a filter that matches nothing.
    await admin.fill('#tf-userId', String(traderId));
    await admin.locator('#trade-filters-go').click();
    await admin.locator('#trade-history tbody tr', { hasText: '40.00' }).waitFor();
    await admin.fill('#tf-userId', 'x');
    await admin.locator('#trade-filters-go').click();
    await admin.locator('#tf-userId-error', { hasText: 'whole number' }).waitFor();
    await admin.fill('#tf-userId', '');
    await admin.selectOption('#tf-status', 'sold');
    await admin.locator('#trade-history [data-state="empty"]').waitFor();
    await admin.selectOption('#tf-status', '');
    await admin.locator('#trade-history tbody tr').first().waitFor();
  });

  test('the statistics count the trade for each period, and the audit log shows the suspension', { timeout: 60000 }, async () => {
    await admin.getByRole('button', { name: 'Last hour' }).click();
    await admin.locator('#stats [data-stat="turnover"]', { hasText: '40.00' }).waitFor();
    await admin.locator('#stats [data-stat="trades"]', { hasText: '1' }).waitFor();
    await admin.locator('#stats [data-stat="activeUsers"]', { hasText: '1' }).waitFor();
    const profit = await admin.locator('#stats [data-stat="houseProfit"] .value').textContent();
    assert.match(profit, /^[+−]?\d+\.\d\d$/);
    await admin.getByRole('button', { name: '7 days' }).click();
    await admin.locator('#stats [data-stat="turnover"]', { hasText: '40.00' }).waitFor();

    await admin.locator('#audit-refresh').click();
    const suspension = admin.locator('#audit tbody tr', { hasText: /status:\s*active\s*→\s*suspended/ });
    await suspension.waitFor();
    assert.match(await suspension.textContent(), /admin #\d+ \(you\)/);
    assert.match(await suspension.textContent(), new RegExp(`user:${traderId}`));
    assert.match(await suspension.textContent(), /127\.0\.0\.1/);
    await admin.locator('#audit tbody tr', { hasText: /maxStake:\s*none\s*→\s*50\.00/ }).waitFor();
  });

  test('the admin turns on two-factor sign-in', { timeout: 60000 }, async () => {
    await admin.locator('#totp-state', { hasText: 'is off' }).waitFor();
    await admin.locator('#totp-enroll').click();
    await admin.locator('#totp-secret[data-secret]').waitFor();
    const secret = await admin.locator('#totp-secret').getAttribute('data-secret');
    assert.match(secret, /^[A-Z2-7]{16,}$/);
    await admin.locator('#totp-uri', { hasText: /^otpauth:\/\/totp\// }).waitFor();
    assert.match(await admin.locator('#totp-uri').textContent(), new RegExp(`secret=${secret}`));
    await screenshot(admin, 'admin-desktop-full');

    await admin.fill('#totp-code', '12345');
    await admin.locator('#totp-confirm').click();
    await admin.locator('#totp-code-error', { hasText: '6 digits' }).waitFor();
    await admin.fill('#totp-code', totp(secret));
    await admin.locator('#totp-confirm').click();
    await admin.locator('#totp-state', { hasText: 'is on' }).waitFor();
    await admin.locator('#audit tbody tr').first().waitFor();
    const me = await admin.evaluate(async () => (await fetch('/api/auth/me')).json());
    assert.equal(me.user.totpEnabled, true);
    adminSecret = secret;
  });

  test('with two-factor sign-in on, the login form asks for the code and signs in with it', { timeout: 60000 }, async () => {
    const context = await browser.newContext({ viewport: DESKTOP });
    const page = await context.newPage();
    page.setDefaultTimeout(15000);
    const loginProblems = watchForProblems(page);
    await page.goto(`${server.url}/`);
    await page.fill('#login-email', ADMIN);
    await page.fill('#login-password', PASSWORD);
    await page.locator('#login-form button[type=submit]').click();
    await page.locator('#login-totp-error', { hasText: /authenticator/ }).waitFor();
    await page.fill('#login-totp', totp(adminSecret));
    await page.locator('#login-form button[type=submit]').click();
    await page.locator('#admin-link:not([hidden])').waitFor();
    const me = await page.evaluate(async () => (await fetch('/api/auth/me')).json());
    assert.equal(me.user.email, ADMIN);
    await context.close();
    assert.deepEqual(loginProblems, [], 'no script errors on the login page');
  });

  test('the admin page works at phone width without sideways scrolling', { timeout: 60000 }, async () => {
    const phone = await browser.newContext({
      viewport: PHONE, deviceScaleFactor: 2, isMobile: true, hasTouch: true, storageState: await adminContext.storageState(),
    });
    const small = await phone.newPage();
    const smallProblems = watchForProblems(small);
    await small.goto(`${server.url}/admin`);
    await small.locator('#users td', { hasText: TRADER }).waitFor();
    await small.locator('#live-trades tbody tr').first().waitFor();
    await small.locator('#audit tbody tr').first().waitFor();
    await small.locator('#stats .stat').first().waitFor();
    await small.getByRole('button', { name: `Manage ${TRADER}` }).click();
    await small.locator('#ud-title', { hasText: TRADER }).waitFor();
    await small.waitForTimeout(300);
    await screenshot(small, 'admin-phone-full');
    // The full page is too tall to read at once: each card on its own as well.
    for (const [name, id] of [['stats', 'stats-title'], ['live', 'live-title'], ['users', 'users-title'], ['history', 'history-title'],
      ['audit', 'audit-title'], ['totp', 'totp-title']]) {
      await small.locator(`section[aria-labelledby="${id}"]`).screenshot({ path: join(SCREENSHOTS, `admin-phone-${name}.png`) });
    }
    const overflow = await small.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `the admin page fits 375 px (overflow ${overflow})`);
    assert.deepEqual(smallProblems, []);
    await phone.close();
    assert.deepEqual(problems, [], 'no script errors or policy violations on the admin page');
  });

  test('an admin page whose session is logged out from another client says so and goes to the login form', { timeout: 60000 }, async () => {
    const token = await signedInAdmin('elsewhere-admin@example.com');
    const { context, page, pageProblems } = await adminPageWith(token);
    assert.equal((await callWith(token, 'POST', '/api/auth/logout')).status, 204);
    await page.locator('#toasts .toast', { hasText: 'Your session ended' }).waitFor();
    // The login form says why too (and takes the reason off the address once read).
    await page.locator('#auth-note', { hasText: 'Your session ended' }).waitFor();
    await page.locator('#login-form').waitFor();
    assert.equal(new URL(page.url()).search, '');
    assert.deepEqual(pageProblems, []);
    await context.close();
  });

  test('the Log out button ends the session and goes to the login form', { timeout: 60000 }, async () => {
    const token = await signedInAdmin('leaving-admin@example.com');
    const { context, page, pageProblems } = await adminPageWith(token);
    await page.getByRole('button', { name: 'Log out' }).click();
    await page.waitForURL(`${server.url}/`);
    await page.locator('#login-form').waitFor();
    assert.equal((await callWith(token, 'GET', '/api/auth/me')).status, 401, 'the token is refused from then on');
    assert.deepEqual(pageProblems, []);
    await context.close();
  });

  test('an admin page whose account is demoted says so and goes to the trade page', { timeout: 60000 }, async () => {
    const token = await signedInAdmin('demoted-admin@example.com');
    const superToken = await signedInAdmin('super-admin@example.com', 'superadmin');
    const { context, page, pageProblems } = await adminPageWith(token);
    const { user } = await page.evaluate(async () => (await fetch('/api/auth/me')).json());
    assert.equal((await callWith(superToken, 'PATCH', `/api/admin/users/${user.id}`, { role: 'user' })).status, 200);
    await page.locator('#toasts .toast', { hasText: 'admin role was removed' }).waitFor();
    await page.waitForURL(`${server.url}/`);
    await page.locator('#balance', { hasText: /\d\.\d\d/ }).waitFor();
    assert.deepEqual(pageProblems, []);
    await context.close();
  });
});
