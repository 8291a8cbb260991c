/**
 * The admin page (`/admin`), for `admin` and `superadmin` accounts: house statistics, a live
 * trade monitor and the trade history (admin-trades.js), users with their limits and
 * suspensions (admin-users.js), the audit log and two-factor enrolment (admin-audit.js), and
 * the published trading terms with their change history and a small form to change them
 * (validation messages shown on the fields). It says plainly when the server has no admin API
 * yet (404). By design it has no control over any trade's result: the server refuses any such
 * field, and nothing here sends one.
 */

import { ApiError, currentUser, get, post } from './api.js';
import { dateTime, money, percent } from './format.js';
import { $, busy, clearErrors, el, listState, markCurrentNav, setText, showError, toast } from './ui.js';
import { initAudit, initTotp } from './admin-audit.js';
import { initHistory, initLive, initStats, loadStats } from './admin-trades.js';
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
  initLive();
  initUsers(user);
  initHistory();
  const audit = initAudit(user);
  audit.reload();
  initTotp(user);
  loadSettings();
  document.addEventListener('admin:changed', () => loadStats(true));
}

let current = null;

async function loadSettings() {
  try {
    current = (await get('/api/admin/settings')).settings;
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
    await post('/api/admin/settings', patch);
    toast({ level: 'success', title: 'Trading terms saved', message: 'They apply to new trades; traders are notified.' });
    document.dispatchEvent(new CustomEvent('admin:changed'));
    await loadSettings();
  } catch (error) {
    if (error instanceof ApiError && error.code === 'settings_changed') {
      // Another admin saved first: compare against their version; the fields keep these edits.
      try {
        current = (await get('/api/admin/settings')).settings;
        loadHistory();
      } catch {
        /* the message below still stands */
      }
    }
    showError(form, error);
  }
}

async function loadHistory() {
  const box = $('#settings-history');
  listState(box, 'loading');
  try {
    const { versions } = await get('/api/settings/history', { limit: 10 });
    if (versions.length === 0) {
      listState(box, 'empty', 'No changes yet: the defaults are in force.');
      return;
    }
    box.replaceChildren(el('table', { class: 'data' },
      el('thead', {}, el('tr', {}, ...['Version', 'When', 'Changed', 'By'].map((h) => el('th', { text: h })))),
      el('tbody', {}, ...versions.map((v) => el('tr', {},
        el('td', { class: 'num', text: String(v.version) }),
        el('td', { class: 'num', text: dateTime(v.changedAt) }),
        el('td', { text: v.changed.join(', ') }),
        el('td', { text: v.changedByRole }))))));
  } catch (error) {
    listState(box, 'error', `The history could not be loaded: ${error.message}`);
  }
}

boot();
