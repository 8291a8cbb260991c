/**
 * The pages' only way to the server: `fetch` with the session cookie (same origin), JSON in
 * and out, and every failure turned into an `ApiError` carrying the server's
 * `{"error": {code, message, field}}`. The login token is never stored by the page: the
 * HttpOnly `fairtick_session` cookie set at login authenticates every call.
 */

export class ApiError extends Error {
  /**
   * @param {number} status HTTP status, 0 when the server could not be reached.
   * @param {string} code the server's snake_case code.
   * @param {string} message for people.
   * @param {string|undefined} field the request field at fault.
   */
  constructor(status, code, message, field) {
    super(message);
    this.status = status;
    this.code = code;
    this.field = field;
  }
}

/** A random key for `Idempotency-Key`, so a retried POST never moves money twice. */
export function idempotencyKey() {
  return globalThis.crypto.randomUUID();
}

/**
 * The keys of idempotent requests that got no answer (the server unreachable, or failing), by
 * what they asked, with when: the same request sent again soon after carries the same key, so
 * that one the server did do before the answer was lost is not done twice. An answer forgets
 * it, and so does time: the same request a while later is a new one (a second reset, a second
 * deposit of the same amount), which the server would otherwise answer from the first.
 */
const unanswered = new Map();
const RETRY_WINDOW_MS = 60000;

/** The key for `request` (method, path and body): the one it had if it went unanswered lately. */
function keyFor(request) {
  const earlier = unanswered.get(request);
  return earlier && Date.now() - earlier.at < RETRY_WINDOW_MS ? earlier.key : idempotencyKey();
}

/**
 * One API call.
 * @param {string} method
 * @param {string} path e.g. `/api/wallet/balance`
 * @param {{body?: unknown, query?: Record<string, string|number|undefined|null>, idempotent?: boolean, signal?: AbortSignal}} [options]
 * @returns {Promise<any>} the parsed JSON body, or null for 204.
 */
export async function api(method, path, options = {}) {
  const url = new URL(path, location.origin);
  for (const [name, value] of Object.entries(options.query ?? {})) {
    if (value !== undefined && value !== null && value !== '') url.searchParams.set(name, String(value));
  }
  const headers = { Accept: 'application/json' };
  if (options.body !== undefined) headers['Content-Type'] = 'application/json';
  const body = options.body === undefined ? undefined : JSON.stringify(options.body);
  const request = `${method} ${url.pathname}${url.search} ${body ?? ''}`;
  if (options.idempotent) headers['Idempotency-Key'] = keyFor(request);
  let response;
  try {
    response = await fetch(url, { method, headers, body, credentials: 'same-origin', signal: options.signal });
  } catch (error) {
    if (options.idempotent) unanswered.set(request, { key: headers['Idempotency-Key'], at: Date.now() });
    if (error.name === 'AbortError') throw error;
    throw new ApiError(0, 'network', 'The server could not be reached. Check your connection.');
  }
  if (options.idempotent && response.status >= 500) unanswered.set(request, { key: headers['Idempotency-Key'], at: Date.now() });
  else unanswered.delete(request);
  if (response.status === 204) return null;
  const text = await response.text();
  let answer = null;
  try {
    answer = text ? JSON.parse(text) : null;
  } catch {
    answer = null;
  }
  if (!response.ok) {
    const error = answer?.error;
    const failure = new ApiError(
      response.status,
      error?.code ?? 'http_' + response.status,
      error?.message ?? `The server answered ${response.status}.`,
      error?.field,
    );
    // A session that ended (expired, signed out elsewhere, suspended) is the page's business,
    // not the one call's: the page hears it once, whichever call found out. Calls under
    // /api/auth/ answer for themselves (a wrong password, nobody signed in yet).
    const ended = response.status === 401 || failure.code === 'account_suspended';
    if (ended && !url.pathname.startsWith('/api/auth/')) {
      globalThis.dispatchEvent(new CustomEvent('fairtick:session-ended', { detail: failure }));
    }
    throw failure;
  }
  return answer;
}

export const get = (path, query, signal) => api('GET', path, { query, signal });
export const post = (path, body, options = {}) => api('POST', path, { body, ...options });

/**
 * The signed-in user, or null when nobody is: no valid session (a 401), or the session's
 * account is suspended (its owner signs in again once it is not). Other failures throw.
 */
export async function currentUser() {
  try {
    return (await get('/api/auth/me')).user;
  } catch (error) {
    if (error instanceof ApiError && (error.status === 401 || error.code === 'account_suspended')) return null;
    throw error;
  }
}
