/**
 * The admin page's users panel: search by email or name with role and status filters, cursor
 * paging, and for one user: role (superadmin only; the server's refusal is shown on the
 * field), suspend or reactivate, a personal maximum stake (set or lifted) and a trading
 * suspension. Every change is one PATCH of one field; none of them touches a trade's result.
 */

import { dateTime, isAmount, money } from './format.js';
import { $, busy, clearErrors, el, toast } from './ui.js';
import { adminGet, pagedList, patch, showOn, table } from './admin-common.js';

let list;
let selected = null;
let me = null;

const fullName = (u) => `${u.firstName ?? ''} ${u.lastName ?? ''}`.trim();

export function initUsers(currentUser) {
  me = currentUser;
  list = pagedList({
    box: $('#users'),
    more: $('#users-more'),
    what: 'Users',
    empty: 'No users match.',
    fetchPage: async (cursor) => {
      const { users, nextCursor } = await adminGet('/api/admin/users', {
        query: $('#user-q').value.trim(), role: $('#user-role').value, status: $('#user-status').value, cursor, limit: 25,
      });
      return { items: users, nextCursor };
    },
    render: renderUsers,
  });
  $('#user-search').addEventListener('submit', (event) => {
    event.preventDefault();
    list.reload();
  });
  for (const id of ['#user-role', '#user-status']) $(id).addEventListener('change', () => list.reload());

  const form = $('#user-form');
  $('#ud-role-save').addEventListener('click', (event) => change(event.currentTarget, { role: $('#ud-role').value }, 'role'));
  $('#ud-status').addEventListener('click', (event) =>
    change(event.currentTarget, { status: selected.status === 'suspended' ? 'active' : 'suspended' }, 'status'));
  $('#ud-trading').addEventListener('click', (event) =>
    change(event.currentTarget, { tradingSuspended: !selected.tradingSuspended }, 'tradingSuspended'));
  $('#ud-maxStake-save').addEventListener('click', (event) => {
    const value = $('#ud-maxStake').value.trim();
    if (!isAmount(value)) {
      clearErrors(form);
      showOn(form, new Error('Type an amount such as 50 or 50.00 (or use Lift to remove the limit).'), 'maxStake');
      return;
    }
    change(event.currentTarget, { maxStake: value }, 'maxStake');
  });
  $('#ud-maxStake-lift').addEventListener('click', (event) => change(event.currentTarget, { maxStake: null }, 'maxStake'));
  $('#ud-maxStake').addEventListener('keydown', (event) => {
    if (event.key === 'Enter') {
      event.preventDefault();
      $('#ud-maxStake-save').click();
    }
  });
  form.addEventListener('submit', (event) => event.preventDefault());
  return list.reload();
}

function renderUsers(users) {
  const columns = ['Id', 'Email', 'Name', 'Role', 'Status', 'Max stake', 'Balance', ''].map((label, i) => ({ label, right: i === 5 || i === 6 }));
  return table(columns, users.map((u) => el('tr', { dataset: { id: String(u.id) }, 'aria-current': selected?.id === u.id ? 'true' : null },
    el('td', { class: 'num', text: String(u.id) }),
    el('td', { text: u.email }),
    el('td', { text: fullName(u) }),
    el('td', { text: u.role }),
    el('td', {}, statusBadge(u)),
    el('td', { class: 'num r', text: u.maxStake == null ? '—' : money(u.maxStake) }),
    el('td', { class: 'num r', text: money(u.balance) }),
    el('td', {}, el('button', {
      type: 'button', class: 'small-button', 'aria-label': `Manage ${u.email}`, text: 'Manage',
      on: { click: () => select(u) },
    })))), { stack: true });
}

function statusBadge(u) {
  const wrap = el('span', { class: 'badges' }, el('span', { class: `badge ${u.status === 'suspended' ? 'lose' : ''}`, text: u.status }));
  if (u.tradingSuspended) wrap.append(' ', el('span', { class: 'badge tie', text: 'no trading' }));
  return wrap;
}

async function select(user) {
  selected = user;
  showDetail(user);
  const panel = $('#user-detail');
  panel.hidden = false;
  panel.focus();
  panel.scrollIntoView({ block: 'nearest' });
  // Fresh figures (the list row may be old), without losing the panel if this fails.
  try {
    const detail = await adminGet(`/api/admin/users/${user.id}`);
    if (selected?.id === user.id) {
      selected = detail.user;
      showDetail(detail.user, detail);
    }
  } catch {
    /* the row's data stays on screen */
  }
}

function showDetail(u, detail) {
  clearErrors($('#user-form'));
  for (const row of document.querySelectorAll('#users tbody tr')) {
    if (row.dataset.id === String(u.id)) row.setAttribute('aria-current', 'true');
    else row.removeAttribute('aria-current');
  }
  $('#ud-title').textContent = `${u.email} (#${u.id})`;
  const facts = [
    ['Name', fullName(u) || '—'],
    ['Role', u.role],
    ['Status', u.status],
    ['Trading', u.tradingSuspended ? 'suspended' : 'allowed'],
    ['Max stake', u.maxStake == null ? 'no personal limit' : `${money(u.maxStake)} VUSD`],
    ['Balance', `${money(u.balance)} VUSD`],
    ['Two-factor', u.totpEnabled ? 'on' : 'off'],
    ['Joined', dateTime(u.createdAt)],
  ];
  if (u.lastActiveAt) facts.push(['Last active', dateTime(u.lastActiveAt)]);
  if (typeof u.trades === 'number') facts.push(['Trades', String(u.trades)]);
  $('#ud-facts').replaceChildren(...facts.map(([k, v]) => el('div', { class: 'fact' }, el('dt', { text: k }), el('dd', { dataset: { fact: k }, text: v }))));
  $('#ud-role').value = u.role;
  $('#ud-status').textContent = u.status === 'suspended' ? 'Reactivate user' : 'Suspend user';
  $('#ud-status').classList.toggle('danger', u.status !== 'suspended');
  $('#ud-trading').textContent = u.tradingSuspended ? 'Allow trading' : 'Suspend trading';
  $('#ud-trading').setAttribute('aria-pressed', String(u.tradingSuspended));
  $('#ud-maxStake').value = u.maxStake ?? '';
  $('#ud-maxStake-lift').disabled = u.maxStake == null;
  $('#ud-role-hint').hidden = me?.role === 'superadmin';
  const self = me && me.id === u.id;
  $('#ud-status').disabled = self;
  $('#ud-status').title = self ? 'Nobody suspends themselves.' : '';
}

async function change(button, body, field) {
  if (!selected) return;
  const form = $('#user-form');
  clearErrors(form);
  const user = selected;
  await busy(button, async () => {
    try {
      const { user: updated } = await patch(`/api/admin/users/${user.id}`, body);
      if (selected?.id !== user.id) return;
      selected = { ...user, ...updated };
      showDetail(selected);
      replaceRow(selected);
      toast({ level: 'success', title: 'User updated', message: `${selected.email}: ${describe(body)}.` });
      document.dispatchEvent(new CustomEvent('admin:changed'));
    } catch (error) {
      showOn(form, error, field);
    }
  });
  // The button's label may have changed; keep the keyboard where it was.
  if (document.activeElement === document.body) button.focus();
}

function describe(body) {
  if ('role' in body) return `role is now ${body.role}`;
  if ('status' in body) return body.status === 'suspended' ? 'suspended' : 'reactivated';
  if ('tradingSuspended' in body) return body.tradingSuspended ? 'trading suspended' : 'trading allowed';
  return body.maxStake === null ? 'stake limit lifted' : `maximum stake ${money(body.maxStake)} VUSD`;
}

function replaceRow(user) {
  const items = list.items();
  const at = items.findIndex((u) => u.id === user.id);
  if (at < 0) return;
  items[at] = { ...items[at], ...user };
  const box = $('#users');
  box.replaceChildren(renderUsers(items));
}
