/**
 * The admin page shell (`/admin`): for `admin` and `superadmin` accounts. It shows the users
 * and the published trading terms when the server's admin API answers, and says plainly when
 * that API is not available yet (404). It has, by design, no control over any trade's result.
 */

import { ApiError, currentUser, get } from './api.js';
import { money } from './format.js';
import { $, el, listState, markCurrentNav, setText } from './ui.js';

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
      say('The admin API is not available yet on this server. This page will show users, trading terms, the live trade monitor, house statistics and the audit log once it is.');
    } else {
      say(`The admin API answered: ${error.message}`, 'error');
    }
    return;
  }
  say(`Signed in as ${user.email} (${user.role}).`);
  $('#admin-panels').hidden = false;
  $('#user-search').addEventListener('submit', (event) => {
    event.preventDefault();
    loadUsers();
  });
  loadUsers();
  loadSettings();
}

async function loadUsers() {
  const box = $('#users');
  listState(box, 'loading');
  try {
    const body = await get('/api/admin/users', { q: $('#user-q').value.trim(), limit: 50 });
    const users = body.users ?? [];
    if (users.length === 0) {
      listState(box, 'empty', 'No users match.');
      return;
    }
    box.replaceChildren(el('table', { class: 'data' },
      el('thead', {}, el('tr', {}, ...['Id', 'Email', 'Name', 'Role', 'Status', 'Balance'].map((h) => el('th', { text: h })))),
      el('tbody', {}, ...users.map((u) => el('tr', {},
        el('td', { class: 'num', text: String(u.id) }),
        el('td', { text: u.email }),
        el('td', { text: `${u.firstName ?? ''} ${u.lastName ?? ''}`.trim() }),
        el('td', { text: u.role }),
        el('td', { text: u.status }),
        el('td', { class: 'num r', text: money(u.balance) }))))));
  } catch (error) {
    listState(box, 'error', `Users could not be loaded: ${error.message}`);
  }
}

async function loadSettings() {
  const box = $('#settings');
  listState(box, 'loading');
  try {
    const body = await get('/api/admin/settings');
    const settings = body.settings ?? body;
    box.replaceChildren(el('table', { class: 'data' }, el('tbody', {},
      ...Object.entries(settings).map(([name, value]) => el('tr', {},
        el('th', { scope: 'row', text: name }),
        el('td', { class: 'num', text: typeof value === 'object' ? JSON.stringify(value) : String(value) }))))));
  } catch (error) {
    listState(box, error instanceof ApiError && error.status === 404 ? 'empty' : 'error',
      error instanceof ApiError && error.status === 404 ? 'Trading terms are not available from the admin API yet.' : `Trading terms could not be loaded: ${error.message}`);
  }
}

boot();
