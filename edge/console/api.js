// The API, with the merchant's token. The token lives in this tab's
// sessionStorage only: never in a URL, never in storage that outlives the tab or a cookie,
// and it is sent in the Authorization header alone.

const KEY = 'rain.console.token';

export const token = {
  get: () => sessionStorage.getItem(KEY) || '',
  set: (t) => sessionStorage.setItem(KEY, t),
  clear: () => sessionStorage.removeItem(KEY),
};

// ApiError is an answer other than 2xx: its status, the API's error code
// and message.
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message || code || `HTTP ${status}`);
    this.status = status;
    this.code = code;
  }
}

export function authHeaders(extra = {}) {
  return { Authorization: `Bearer ${token.get()}`, ...extra };
}

// errorOf reads an error answer's body ({"status","error"}).
export async function errorOf(resp) {
  let code = '', message = '';
  try {
    const b = await resp.json();
    code = b.status || '';
    message = b.error || '';
  } catch {
    // not JSON: keep the status
  }
  return new ApiError(resp.status, code, message);
}

// api sends a request and returns the decoded JSON body, or throws an
// ApiError. A 401 signs the tab out (unless quiet: the sign-in's own check).
export async function api(method, path, body, headers = {}, quiet = false) {
  const init = { method, headers: authHeaders(headers), cache: 'no-store' };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers['Content-Type'] = 'application/json';
  }
  const resp = await fetch(path, init);
  if (!resp.ok) {
    const err = await errorOf(resp);
    if (resp.status === 401 && !quiet) {
      window.dispatchEvent(new CustomEvent('rain:unauthorized', { detail: err }));
    }
    throw err;
  }
  return resp.json();
}

// download fetches path with the token and saves the answer as filename:
// a link cannot carry the Authorization header, so the body is fetched,
// then handed to the browser as a blob.
export async function download(path, accept, filename) {
  const resp = await fetch(path, { headers: authHeaders({ Accept: accept }), cache: 'no-store' });
  if (!resp.ok) {
    throw await errorOf(resp);
  }
  const blob = await resp.blob();
  const url = URL.createObjectURL(blob);
  const a = document.createElement('a');
  a.href = url;
  a.download = filename;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
  return blob.size;
}
