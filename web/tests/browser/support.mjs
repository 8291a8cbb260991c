// Helpers for the browser tests: build and start the real fairtick binary on a free port with
// a fresh data directory and fast markets, and launch Debian's Chromium through playwright-core
// (which never downloads a browser of its own).

import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO = resolve(fileURLToPath(new URL('../../..', import.meta.url)));
export const TARGET_DIR = process.env.CARGO_TARGET_DIR ? resolve(process.env.CARGO_TARGET_DIR) : join(REPO, 'target');
export const SCREENSHOTS = join(REPO, 'target', 'screenshots');
export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

export const DESKTOP = { width: 1280, height: 800 };
export const PHONE = { width: 375, height: 812 };

/** Why the browser tests cannot run here, or null when they can. */
export async function missingPrerequisite() {
  if (process.env.FAIRTICK_BROWSER_TESTS !== '1') {
    return 'set FAIRTICK_BROWSER_TESTS=1 to run them (scripts/test does, after scripts/ensure-browser)';
  }
  if (!existsSync(CHROMIUM)) return `${CHROMIUM} is missing: run scripts/ensure-browser`;
  try {
    await import('playwright-core');
  } catch {
    return 'playwright-core is not installed: run scripts/ensure-browser';
  }
  return null;
}

/** Builds the server binary (incremental; the rest of the suite usually built it already). */
export function buildServer() {
  const result = spawnSync('cargo', ['build', '-p', 'fairtick', '--bin', 'fairtick'], {
    cwd: REPO,
    stdio: ['ignore', 'inherit', 'inherit'],
    env: { ...process.env, CARGO_TARGET_DIR: TARGET_DIR },
  });
  if (result.status !== 0) throw new Error(`cargo build failed (${result.status ?? result.signal})`);
  return join(TARGET_DIR, 'debug', 'fairtick');
}

/**
 * Starts `fairtick serve` on a free port with a fresh data directory: 50 ms ticks and 6 s
 * epochs, so a 5 s trade settles in about 5 s, ends within the epoch after the one it was
 * accepted in (so its receipt proves it fair, docs/fairness.md §4), and its seeds are revealed
 * at most 6 s later.
 * @returns {Promise<{url: string, dataDir: string, binary: string, stop: () => Promise<void>, log: () => string}>}
 */
export async function startServer(binary) {
  const dataDir = mkdtempSync(join(tmpdir(), 'fairtick-browser-'));
  const args = ['serve', '--addr', '127.0.0.1:0', '--data-dir', dataDir, '--tick-interval-ms', '50', '--epoch-ms', '6000'];
  const env = { ...process.env, RUST_LOG: process.env.RUST_LOG ?? 'warn', NO_COLOR: '1' };
  delete env.DATABASE_URL;
  delete env.FAIRTICK_DATABASE_URL;
  const child = spawn(binary, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const url = await new Promise((resolveUrl, reject) => {
    const timer = setTimeout(() => reject(new Error(`the server did not start in 30 s:\n${output}`)), 30000);
    const read = (chunk) => {
      output += chunk;
      const match = /running at (http:\/\/[^\s/]+)\//.exec(output);
      if (match) {
        clearTimeout(timer);
        resolveUrl(match[1]);
      }
    };
    child.stdout.setEncoding('utf8').on('data', read);
    child.stderr.setEncoding('utf8').on('data', read);
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`the server exited with ${code}:\n${output}`));
    });
  });
  child.removeAllListeners('exit');
  return {
    url,
    dataDir,
    binary,
    log: () => output,
    stop: async () => {
      if (child.exitCode === null) {
        const exited = new Promise((done) => child.once('exit', done));
        child.kill('SIGTERM');
        await Promise.race([exited, new Promise((done) => setTimeout(done, 5000))]);
        if (child.exitCode === null) child.kill('SIGKILL');
      }
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** Creates an account with the CLI (how the first admin comes to exist). */
export function createUser(server, { email, password, role }) {
  const result = spawnSync(server.binary, ['user', 'create', '--email', email, '--role', role, '--password-stdin',
    '--first-name', 'Ada', '--last-name', 'Admin', '--data-dir', server.dataDir], {
    input: `${password}\n`,
    encoding: 'utf8',
    env: { ...process.env, NO_COLOR: '1' },
  });
  if (result.status !== 0) throw new Error(`user create failed: ${result.stderr}`);
}

/**
 * Debian's Chromium, headless. playwright-core's launch gives every run a fresh temporary
 * profile (its own --user-data-dir), removed when the browser closes.
 */
export async function launchBrowser() {
  const { chromium } = await import('playwright-core');
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    timeout: 60000,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}

/** Saves a full-page screenshot as target/screenshots/NAME.png. */
export async function screenshot(page, name) {
  mkdirSync(SCREENSHOTS, { recursive: true });
  // From the top, so a sticky header is drawn once, where it belongs.
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.screenshot({ path: join(SCREENSHOTS, `${name}.png`), fullPage: true, animations: 'disabled' });
}

/** Collects what would show a broken page: uncaught errors, CSP violations, console errors. */
export function watchForProblems(page) {
  const problems = [];
  page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
  page.on('console', (message) => {
    const text = message.text();
    // HTTP error answers are part of the tests (a refused deposit, /ws before it exists, the
    // admin API's 404); what must never appear is a script error or a policy violation.
    if (message.type() === 'error' && !/^Failed to load resource|WebSocket connection to/.test(text)) {
      problems.push(`console error: ${text}`);
    }
  });
  return problems;
}
