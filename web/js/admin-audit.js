/**
 * The admin page's audit log (who, what, which target, the fields before → after, when,
 * from which IP; append-only, newest first, cursor paging) and the signed-in admin's
 * two-factor enrolment (RFC 6238: the secret and the otpauth URI shown as text, then a code).
 */

import { post } from './api.js';
import { dateTime } from './format.js';
import { $, busy, clearErrors, el, toast } from './ui.js';
import { adminGet, pagedList, showOn, table } from './admin-common.js';

let me = null;

export function initAudit(user) {
  me = user;
  const list = pagedList({
    box: $('#audit'),
    more: $('#audit-more'),
    what: 'The audit log',
    empty: 'No admin actions yet.',
    fetchPage: async (cursor) => {
      const { entries, nextCursor } = await adminGet('/api/admin/audit', { cursor, limit: 20 });
      return { items: entries, nextCursor };
    },
    render: (entries) => table(
      ['When', 'Who', 'Action', 'Target', 'Change', 'IP'].map((label) => ({ label })),
      entries.map((e) => el('tr', { dataset: { id: String(e.id), action: e.action } },
        el('td', { class: 'num', text: dateTime(e.at) }),
        el('td', { text: who(e) }),
        el('td', { text: e.action }),
        el('td', { text: e.target ?? '—' }),
        el('td', { class: 'diff' }, diff(e.before, e.after)),
        el('td', { class: 'num', text: e.ip ?? '—' }))), { stack: true }),
  });
  $('#audit-refresh').addEventListener('click', () => list.reload());
  document.addEventListener('admin:changed', () => list.reload());
  return list;
}

function who(entry) {
  const base = `${entry.actorRole} #${entry.actorId}`;
  return me && me.id === entry.actorId ? `${base} (you)` : base;
}

const show = (value) => (value === undefined ? '—' : value === null ? 'none' : typeof value === 'string' ? value : JSON.stringify(value));

/** The fields that differ, one per line: `name: before → after`; the full JSON in a disclosure. */
function diff(before, after) {
  if (!before && !after) return '—';
  const keys = [...new Set([...Object.keys(before ?? {}), ...Object.keys(after ?? {})])];
  const changed = keys.filter((k) => JSON.stringify(before?.[k]) !== JSON.stringify(after?.[k]));
  const lines = changed.map((k) => el('li', {},
    el('span', { class: 'diff-key', text: `${k}: ` }),
    el('del', { text: show(before?.[k]) }), ' → ', el('ins', { text: show(after?.[k]) })));
  return el('div', {},
    lines.length ? el('ul', { class: 'diff-list' }, ...lines) : el('span', { class: 'muted', text: 'no field changed' }),
    el('details', {}, el('summary', { text: 'JSON' }),
      el('pre', { class: 'mono json', text: `before ${JSON.stringify(before, null, 1)}\nafter  ${JSON.stringify(after, null, 1)}` })));
}

// ---- two-factor --------------------------------------------------------------------------

export function initTotp(user) {
  const state = $('#totp-state');
  const enrol = $('#totp-enroll');
  const setup = $('#totp-setup');
  const form = $('#totp-form');
  if (user.totpEnabled) {
    state.textContent = 'Two-factor sign-in is on for your account: logging in asks for a code.';
    return;
  }
  state.textContent = 'Two-factor sign-in is off for your account.';
  enrol.hidden = false;
  enrol.addEventListener('click', () => busy(enrol, async () => {
    try {
      const { secret, otpauthUri } = await post('/api/auth/totp/enroll');
      $('#totp-secret').textContent = secret.replace(/(.{4})(?=.)/g, '$1 ');
      $('#totp-secret').dataset.secret = secret;
      $('#totp-uri').textContent = otpauthUri;
      setup.hidden = false;
      enrol.textContent = 'Start again with a new key';
      state.textContent = 'Not on yet: confirm with a code to turn it on.';
      $('#totp-code').focus();
    } catch (error) {
      state.textContent = `Two-factor set-up could not start: ${error.message}`;
    }
  }));
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    clearErrors(form);
    const code = $('#totp-code').value.replace(/\s+/g, '');
    if (!/^\d{6}$/.test(code)) {
      showOn(form, new Error('Type the 6 digits the app shows.'), 'code');
      return;
    }
    busy(event.submitter, async () => {
      try {
        await post('/api/auth/totp/confirm', { code });
        setup.hidden = true;
        enrol.hidden = true;
        state.textContent = 'Two-factor sign-in is on for your account: logging in asks for a code.';
        toast({ level: 'success', title: 'Two-factor sign-in is on', message: 'From now on, logging in asks for a code from your app.' });
        document.dispatchEvent(new CustomEvent('admin:changed'));
      } catch (error) {
        showOn(form, error, 'code');
      }
    });
  });
}
