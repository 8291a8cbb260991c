/**
 * The admin page (`/admin`), for `admin` and `superadmin` accounts: house statistics, a live
 * trade monitor and the trade history (admin-trades.js), users with their limits and
 * suspensions (admin-users.js), the audit log and two-factor enrolment (admin-audit.js), and
 * the published trading terms with their change history and a small form to change them
 * (validation messages shown on the fields). It says plainly when the server has no admin API
 * yet (404), and leaves for `/` with a notice once the session ends or the account is no
 * longer an admin's, rather than go on showing what it can no longer read. By design it has
 * no control over any trade's result: the server refuses any such field, and nothing here
 * sends one.
 */

import { ApiError, currentUser, get, post } from './api.js';
import { dateTime, money, percent } from './format.js';
import { $, busy, clearErrors, el, listState, markCurrentNav, setText, showError, toast } from './ui.js';
import { initAudit, initTotp } from './admin-audit.js';
import { adminGet, adminPost, pagedList, table } from './admin-common.js';
import { initHistory, initLive, initStats, loadStats, stopTrades } from './admin-trades.js';
import { initUsers } from './admin-users.js';

const ADMIN_ROLES = new Set(['admin', 'superadmin']);

function say(text, kind = 'empty') {
  listState($('#admin-state'), kind, text);
}

async function boot() {
  markCurrentNav();
  let user;
  try {
    user = await currentUser();
  } catch (error) {
    say(`Could not reach the server: ${error.message}`, 'error');
    return;
  }
  if (!user) {
    $('#admin-state').replaceChildren(el('p', {}, 'Log in first: ', el('a', { href: '/', text: 'go to the trade page' }), '.'));
    return;
  }
  setText('who', user.email);
  $('#logout').hidden = false;
  $('#logout').addEventListener('click', (event) => logOut(event.currentTarget));
  if (!ADMIN_ROLES.has(user.role)) {
    say('This page is for administrators. Your account is a trader account.');
    return;
  }
  try {
    await get('/api/admin/users', { limit: 1 });
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) {
      say('The admin API is not available yet on this server.');
    } else if (error instanceof ApiError && error.code === 'totp_required') {
      // Admins must turn on two-factor sign-in first: only that card is shown until they have.
      say('Administrators must use two-factor sign-in here: set it up below, and the page opens.');
      for (const card of $('#admin-panels').querySelectorAll('section.card')) {
        card.hidden = !card.contains($('#totp-title'));
      }
      $('#admin-panels').hidden = false;
      initTotp(user);
      document.addEventListener('admin:changed', () => location.reload());
    } else {
      say(`The admin API answered: ${error.message}`, 'error');
    }
    return;
  }
  say(`Signed in as ${user.email} (${user.role}).`);
  $('#admin-panels').hidden = false;
  $('#settings-form').addEventListener('submit', (event) => {
    event.preventDefault();
    busy(event.submitter, saveSettings);
  });
  initStats();
  watchSession(initLive());
  initUsers(user);
  initHistory();
  const audit = initAudit(user);
  audit.reload();
  initTotp(user);
  loadSettings();
  document.addEventListener('admin:changed', () => loadStats(true));
}

// ---- the end of the session --------------------------------------------------------------

// Where each leads: the login form says why a session ended (see trader.js `SIGNED_OUT_NOTES`).
const SIGNED_OUT = { title: 'Signed out', message: 'Your session ended. Log in again to continue.', to: '/?signedout=ended' };
const SUSPENDED = { title: 'Signed out', message: 'This account is suspended. Contact an administrator.', to: '/?signedout=suspended' };
const DEMOTED = { title: 'No longer an administrator', message: 'This account\'s admin role was removed.', to: '/' };

let leaving = false;

/**
 * Sends the user to `/` once this session can no longer do admin work, saying why first:
 * otherwise the panels would go on showing old figures while every call is refused.
 */
function leave({ title, message, to }) {
  if (leaving) return;
  leaving = true;
  stopTrades();
  toast({ level: 'warning', title, message });
  // Long enough to see the notice; `/` then shows the login form or the trade page.
  setTimeout(() => location.assign(to), 1500);
}

/** Follows the session through any call and the socket: its end, or a role that is not an admin's. */
function watchSession(realtime) {
  addEventListener('fairtick:session-ended', ({ detail }) => leave(detail?.code === 'account_suspended' ? SUSPENDED : SIGNED_OUT));
  realtime.addEventListener('signedout', ({ detail }) => leave(detail?.reason === 'account suspended' ? SUSPENDED : SIGNED_OUT));
  // A new role closes the socket, which signs in again at once with the role as it is now.
  realtime.addEventListener('authenticated', ({ detail }) => {
    if (!ADMIN_ROLES.has(detail?.role)) leave(DEMOTED);
  });
  document.addEventListener('admin:forbidden', () => leave(DEMOTED));
  // Logged out in another tab, say: the socket reconnects, anonymously if the session ended.
  realtime.addEventListener('signinagain', async () => {
    try {
      if (!(await currentUser())) leave(SIGNED_OUT);
    } catch {
      // Unreachable now: the next call finds out.
    }
  });
}

async function logOut(button) {
  leaving = true; // the refusals a logout causes on the other panels are expected: no notice
  try {
    await busy(button, () => post('/api/auth/logout'));
  } catch (error) {
    // A 401: the session had already ended, which is what was asked for.
    if (!(error instanceof ApiError && error.status === 401)) {
      leaving = false;
      toast({ level: 'error', title: 'Not logged out', message: error.message });
      return;
    }
  }
  stopTrades();
  location.assign('/');
}

// ---- trading terms -----------------------------------------------------------------------

let current = null;

async function loadSettings() {
  try {
    current = (await adminGet('/api/admin/settings')).settings;
  } catch (error) {
    setText('settings-state', `The terms could not be loaded: ${error.message}`);
    return;
  }
  setText('settings-state', `Payout rate ${percent(current.payoutRate, 2)}; stakes ${money(current.minStake)} to ${money(current.maxStake)} VUSD.`);
  $('#s-payoutRate').value = current.payoutRate;
  $('#s-durations').value = current.durations.join(', ');
  $('#s-minStake').value = current.minStake;
  $('#s-maxStake').value = current.maxStake;
  $('#s-sellSpread').value = current.sellSpread;
  loadHistory();
}

/** Sends only what changed; the server validates every field and names the one at fault. */
async function saveSettings() {
  const form = $('#settings-form');
  clearErrors(form);
  if (!current) {
    // The terms in force never loaded: a change cannot be worked out against them.
    showError(form, new ApiError(0, 'not_loaded', 'The current terms could not be loaded; reload the page and try again.'));
    return;
  }
  const patch = {};
  for (const name of ['payoutRate', 'minStake', 'maxStake', 'sellSpread']) {
    const value = $(`#s-${name}`).value.trim();
    if (value !== current[name]) patch[name] = value;
  }
  const durationsText = $('#s-durations').value.trim();
  if (durationsText !== current.durations.join(', ')) {
    const parts = durationsText.split(/[\s,]+/).filter(Boolean);
    if (parts.some((p) => !/^\d+$/.test(p))) {
      showError(form, new ApiError(400, 'validation_error', 'List whole seconds, such as 5, 10, 30.', 'durations'));
      return;
    }
    patch.durations = parts.map(Number);
  }
  if (Object.keys(patch).length === 0) {
    showError(form, new Error('Nothing changed.'));
    return;
  }
  try {
    await adminPost('/api/admin/settings', patch);
    toast({ level: 'success', title: 'Trading terms saved', message: 'They apply to new trades; traders are notified.' });
    document.dispatchEvent(new CustomEvent('admin:changed'));
    await loadSettings();
  } catch (error) {
    if (error instanceof ApiError && error.code === 'settings_changed') {
      // Another admin saved first: compare against their version; the fields keep these edits.
      try {
        current = (await adminGet('/api/admin/settings')).settings;
        loadHistory();
      } catch {
        /* the message below still stands */
      }
    }
    showError(form, error);
  }
}

let termsHistory = null;

/** The public change history of the terms, newest first, ten changes a page. */
function loadHistory() {
  termsHistory ??= pagedList({
    box: $('#settings-history'),
    more: $('#settings-history-more'),
    what: 'The history',
    empty: 'No changes yet: the defaults are in force.',
    fetchPage: async (cursor) => {
      const { versions, nextCursor } = await get('/api/settings/history', { cursor, limit: 10 });
      return { items: versions, nextCursor };
    },
    render: (versions) => table(['Version', 'When', 'Changed', 'By'].map((label) => ({ label })), versions.map((v) => el('tr', {},
      el('td', { class: 'num', text: String(v.version) }),
      el('td', { class: 'num', text: dateTime(v.changedAt) }),
      el('td', { text: v.changed.join(', ') }),
      el('td', { text: v.changedByRole })))),
  });
  termsHistory.reload();
}

boot();
