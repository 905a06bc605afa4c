// The merchant console: sign in, campaigns, create, a campaign's page with
// its live view and actions. Views are built with DOM calls only (no
// markup parsed from strings: names and user ids are the merchants' and
// users' text).
import { api, download, token, ApiError } from './api.js';
import { openLive } from './live.js';
import { LineChart, BarChart } from './chart.js';

const main = document.getElementById('main');
const nav = document.getElementById('nav');
const toastEl = document.getElementById('toast');
let leave = null; // stops the current view's live feed

// el builds an element: attributes (on* are listeners), then children.
function el(tag, attrs = {}, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (k === 'text') e.textContent = v;
    else e.setAttribute(k, v === true ? '' : v);
  }
  for (const k of kids.flat()) {
    if (k !== null && k !== undefined && k !== false) e.append(k);
  }
  return e;
}

function toast(msg) {
  toastEl.textContent = msg;
  toastEl.classList.add('on');
  clearTimeout(toast.t);
  toast.t = setTimeout(() => toastEl.classList.remove('on'), 4000);
}

const local = (iso) => (iso ? new Date(iso).toLocaleString() : '');
const zone = Intl.DateTimeFormat().resolvedOptions().timeZone || 'local time';
const num = (v) => (typeof v === 'number' ? v.toLocaleString() : '');

// show replaces the view and moves the focus to its heading.
function show(title, ...kids) {
  main.replaceChildren(el('h1', { id: 'view-title', tabindex: '-1', text: title }), ...kids);
  document.title = `${title} · Red packet rain`;
  document.getElementById('view-title').focus();
}

function failure(err) {
  return el('p', { class: 'error', role: 'alert', text: err instanceof ApiError ? `${err.message} (${err.status})` : String(err) });
}

// Sign in.
function viewSignIn(message) {
  nav.hidden = true;
  const input = el('input', { id: 'token', name: 'token', type: 'password', autocomplete: 'off', required: true, spellcheck: 'false' });
  const err = el('p', { id: 'token-error', class: 'field-error', role: 'alert' });
  input.setAttribute('aria-describedby', 'token-help token-error');
  const form = el('form', { id: 'signin', class: 'card narrow' },
    el('label', { for: 'token', text: 'Merchant token' }), input,
    el('p', { id: 'token-help', class: 'help', text: 'Kept in this tab only; sent in the Authorization header.' }),
    err, el('button', { type: 'submit', text: 'Sign in' }));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    token.set(input.value.trim());
    try {
      await api('GET', '/campaigns?limit=1', undefined, {}, true);
      input.value = '';
      location.hash = '#/campaigns';
      route();
    } catch (x) {
      token.clear();
      err.textContent = x.status === 401 ? 'That token is not accepted.' : x.message;
      input.setAttribute('aria-invalid', 'true');
    }
  });
  show('Sign in', message ? el('p', { class: 'error', role: 'alert', text: message }) : null, form);
  input.focus();
}

// Campaigns, with the state filter and paging.
async function viewList(state, after) {
  const select = el('select', { id: 'state-filter', name: 'state' },
    ...[['', 'All'], ['live', 'Live'], ['upcoming', 'Upcoming'], ['ended', 'Ended']].map(([v, l]) =>
      el('option', { value: v, selected: v === state, text: l })));
  select.addEventListener('change', () => { location.hash = select.value ? `#/campaigns?state=${select.value}` : '#/campaigns'; });
  const body = el('div', { 'aria-busy': 'true' }, el('p', { text: 'Loading…' }));
  show('Campaigns', el('div', { class: 'bar' },
    el('label', { for: 'state-filter', text: 'State' }), select,
    el('a', { class: 'button', href: '#/new', text: 'New campaign' })), body);
  const q = new URLSearchParams({ limit: '20' });
  if (state) q.set('state', state);
  if (after) q.set('after', after);
  try {
    const page = await api('GET', `/campaigns?${q}`);
    const rows = page.campaigns.map((c) => el('tr', { 'data-id': c.id },
      el('td', { text: c.id }),
      el('td', {}, el('a', { href: `#/campaign/${c.id}`, text: c.name })),
      el('td', {}, el('span', { class: `state ${c.state}`, text: c.state })),
      el('td', { text: local(c.start_time) }), el('td', { text: local(c.end_time) }),
      el('td', { class: 'num', text: num(c.total) }), el('td', { class: 'num', text: num(c.persisted) })));
    const base = state ? `#/campaigns?state=${state}&` : '#/campaigns?';
    body.replaceChildren(
      rows.length ? el('div', { class: 'scroll' }, el('table', { id: 'campaigns' },
        el('caption', { text: `Newest first, times in ${zone}` }),
        el('thead', {}, el('tr', {}, ...['ID', 'Name', 'State', 'Start', 'End', 'Packets', 'Persisted'].map((h) => el('th', { scope: 'col', class: h === 'Packets' || h === 'Persisted' ? 'num' : null, text: h })))),
        el('tbody', {}, rows))) : el('p', { text: 'No campaigns here yet.' }),
      el('nav', { class: 'pager', 'aria-label': 'Pages' },
        after ? el('a', { href: state ? `#/campaigns?state=${state}` : '#/campaigns', text: 'First page' }) : null,
        page.next ? el('a', { id: 'next-page', href: `${base}after=${page.next}`, text: 'Next page' }) : null));
  } catch (x) {
    body.replaceChildren(failure(x));
  }
  body.removeAttribute('aria-busy');
}

// datetime-local value of d in the browser's time zone.
function localInput(d) {
  const p = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}`;
}

// A field: label, input, help and the server's error under it.
function field(id, label, input, help) {
  input.id = id;
  input.name = id;
  const err = el('p', { id: `${id}-error`, class: 'field-error', role: 'alert' });
  input.setAttribute('aria-describedby', `${help ? `${id}-help ` : ''}${id}-error`);
  return el('div', { class: 'field' }, el('label', { for: id, text: label }), input,
    help ? el('p', { id: `${id}-help`, class: 'help', text: help }) : null, err);
}

// Create a campaign.
function viewCreate() {
  const now = new Date();
  now.setSeconds(0, 0);
  const rows = el('div', { id: 'rows' });
  let n = 0;
  const addRow = (amount = '', count = '') => {
    n++;
    const r = el('div', { class: 'row', 'data-row': n },
      field(`amount-${n}`, 'Amount (minor units)', el('input', { type: 'number', min: '1', step: '1', required: true, value: amount, inputmode: 'numeric' })),
      field(`count-${n}`, 'Packets', el('input', { type: 'number', min: '1', step: '1', required: true, value: count, inputmode: 'numeric' })),
      el('button', { type: 'button', class: 'link remove', text: 'Remove', 'aria-label': `Remove amount row ${n}`,
        onclick: () => { if (rows.children.length > 1) r.remove(); } }));
    rows.append(r);
  };
  addRow('20', '10');
  addRow('5', '100');
  const formErr = el('p', { id: 'form-error', class: 'error', role: 'alert' });
  const form = el('form', { id: 'create', class: 'card', novalidate: true },
    field('name', 'Name', el('input', { type: 'text', maxlength: '200', required: true, value: '' })),
    el('div', { class: 'two' },
      field('start', `Start (${zone})`, el('input', { type: 'datetime-local', step: '1', required: true, value: localInput(now) })),
      field('end', `End (${zone})`, el('input', { type: 'datetime-local', step: '1', required: true, value: localInput(new Date(now.getTime() + 3600_000)) }))),
    field('buckets', 'Stock buckets', el('input', { type: 'number', min: '1', max: '64', step: '1', value: '1', inputmode: 'numeric' }),
      '1 for most campaigns; more spreads a very hot campaign over Redis Cluster masters.'),
    el('fieldset', {}, el('legend', { text: 'Packets by amount' }), rows,
      el('p', { id: 'inventory-error', class: 'field-error', role: 'alert' }),
      el('button', { type: 'button', class: 'secondary', id: 'add-row', text: 'Add an amount', onclick: () => addRow() })),
    formErr,
    el('button', { type: 'submit', id: 'create-submit', text: 'Create campaign' }));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    for (const p of form.querySelectorAll('.field-error')) p.textContent = '';
    for (const i of form.querySelectorAll('[aria-invalid]')) i.removeAttribute('aria-invalid');
    formErr.textContent = '';
    const val = (id) => form.querySelector(`#${id}`).value.trim();
    const utc = (id) => { const d = new Date(val(id)); return Number.isNaN(d.getTime()) ? val(id) : d.toISOString(); };
    const inventory = {};
    for (const r of rows.children) {
      const k = r.querySelector('[id^=amount-]').value.trim();
      const c = r.querySelector('[id^=count-]').value.trim();
      inventory[k] = c === '' ? null : Number(c);
    }
    const body = { name: val('name'), start_time: utc('start'), end_time: utc('end'), inventory };
    const b = val('buckets');
    if (b !== '' && b !== '1') body.buckets = Number(b);
    const submit = form.querySelector('#create-submit');
    submit.disabled = true;
    try {
      const r = await api('POST', '/campaign', body);
      toast(`Campaign ${r.id} created.`);
      location.hash = `#/campaign/${r.id}`;
    } catch (x) {
      showFieldError(form, x, rows);
    } finally {
      submit.disabled = false;
    }
  });
  show('New campaign', form);
}

// showFieldError puts the server's validation message on the field it
// names (the API's messages start with the field's name).
function showFieldError(form, x, rows) {
  const msg = x.message || String(x);
  let id = 'form-error';
  if (/^name\b/.test(msg)) id = 'name-error';
  else if (/^end_time/.test(msg)) id = 'end-error';
  else if (/^start_time/.test(msg)) id = 'start-error';
  else if (/^buckets/.test(msg)) id = 'buckets-error';
  else if (/inventory|amount|count/.test(msg)) {
    id = 'inventory-error';
    const m = msg.match(/amount "?(\d+)|key "([^"]*)"/);
    const amount = m && (m[1] || m[2]);
    for (const r of rows.children) {
      const a = r.querySelector('[id^=amount-]');
      if (amount !== null && amount !== undefined && a.value.trim() === amount) {
        const which = /count/.test(msg) ? r.querySelector('[id^=count-]') : a;
        which.setAttribute('aria-invalid', 'true');
        document.getElementById(`${which.id}-error`).textContent = msg;
        which.focus();
        return;
      }
    }
  }
  const p = document.getElementById(id);
  p.textContent = msg;
  const input = id === 'form-error' ? null : document.getElementById(id.replace(/-error$/, ''));
  if (input) {
    input.setAttribute('aria-invalid', 'true');
    input.focus();
  }
}

// The campaign's page: inventory, live view, actions, history.
async function viewCampaign(id) {
  let c;
  try {
    c = await api('GET', `/campaign/${id}`);
  } catch (x) {
    show(`Campaign ${id}`, failure(x), el('p', {}, el('a', { href: '#/campaigns', text: 'Back to the campaigns' })));
    return;
  }
  const stats = {};
  const stat = (key, label) => el('div', { class: 'stat' }, el('dt', { text: label }),
    el('dd', {}, stats[key] = el('output', { id: `live-${key}`, text: '–' })));
  const live = el('section', { class: 'card live', 'aria-labelledby': 'live-title' },
    el('h2', { id: 'live-title' }, 'Live ', el('span', { id: 'live-state', class: 'pill', text: 'connecting' })),
    el('dl', { class: 'stats' },
      stat('ok', 'OK / s'), stat('already', 'Already opened / s'), stat('soldout', 'Sold out / s'), stat('busy', '503 / s'),
      stat('claims', 'Claims made'), stat('persisted', 'Persisted'), stat('remaining', 'Packets left')),
    el('p', { id: 'live-note', class: 'help' }),
    el('div', { class: 'charts' },
      el('figure', {}, el('canvas', { id: 'chart-rates', role: 'img', 'aria-label': 'Opens per second by answer' }),
        el('figcaption', { text: 'Opens per second by answer' })),
      el('figure', {}, el('canvas', { id: 'chart-claims', role: 'img', 'aria-label': 'Claims made and persisted' }),
        el('figcaption', { text: 'Claims made (Redis) and persisted (PostgreSQL)' })),
      el('figure', {}, el('canvas', { id: 'chart-stock', role: 'img', 'aria-label': 'Packets left per amount' }),
        el('figcaption', { text: 'Packets left per amount' }))));

  const invBody = el('tbody');
  const drawInventory = (items) => invBody.replaceChildren(...items.map((it) => el('tr', { 'data-amount': it.amount },
    el('td', { class: 'num', text: num(it.amount) }), el('td', { class: 'num', text: num(it.total) }),
    el('td', { class: 'num', text: num(it.remaining) }), el('td', { class: 'num', text: num(it.opened) }))));
  drawInventory(c.inventory);
  const inventory = el('section', { class: 'card', 'aria-labelledby': 'inv-title' }, el('h2', { id: 'inv-title', text: 'Inventory' }),
    el('div', { class: 'scroll' }, el('table', { id: 'inventory' },
      el('thead', {}, el('tr', {}, ...['Amount', 'Packets', 'Left', 'Persisted'].map((h) => el('th', { scope: 'col', class: 'num', text: h })))), invBody)));

  const header = el('p', { class: 'meta' },
    el('span', { id: 'campaign-state', class: `state ${c.state}`, text: c.state }), ` #${c.id} · ${local(c.start_time)} → `,
    el('span', { id: 'campaign-end', text: local(c.end_time) }), ` (${zone})`, c.buckets > 1 ? ` · ${c.buckets} buckets` : '');

  show(c.name, header, el('div', { class: 'grid' }, live, actions(c), inventory, history(c)));

  const rates = new LineChart(document.getElementById('chart-rates'), [
    { key: 'ok', label: 'OK', color: '#1a7f37' }, { key: 'already', label: 'ALREADY_OPENED', color: '#8250df' },
    { key: 'soldout', label: 'SOLD_OUT', color: '#bf8700' }, { key: 'busy', label: '503', color: '#c8102e' }]);
  const claims = new LineChart(document.getElementById('chart-claims'), [
    { key: 'made', label: 'made', color: '#c8102e' }, { key: 'persisted', label: 'persisted', color: '#0969da' }]);
  const stock = new BarChart(document.getElementById('chart-stock'));
  stock.set(c.inventory.map((it) => ({ label: String(it.amount), value: it.remaining, total: it.total })));

  const stateEl = document.getElementById('live-state');
  const note = document.getElementById('live-note');
  leave = openLive(id, (type, ev) => {
    if (type === 'end') {
      stateEl.textContent = 'reconnecting';
      return;
    }
    // Every replica's answers, summed by the server (docs/console.md).
    const sum = ev.per_second;
    const n = ev.replicas;
    stats.ok.textContent = num(sum.OK);
    stats.already.textContent = num(sum.ALREADY_OPENED);
    stats.soldout.textContent = num(sum.SOLD_OUT);
    stats.busy.textContent = num(sum.BUSY);
    stats.claims.textContent = num(ev.claims);
    stats.persisted.textContent = num(ev.persisted);
    stats.remaining.textContent = num(ev.remaining);
    note.textContent = `${ev.error ? `${ev.error}: showing the last numbers read. ` : ''}Answers per second from ${n} api replica${n === 1 ? '' : 's'}; claims, persisted and packets left from Redis and PostgreSQL. Updated ${new Date(ev.at).toLocaleTimeString()}.`;
    rates.push({ ok: sum.OK, already: sum.ALREADY_OPENED, soldout: sum.SOLD_OUT, busy: sum.BUSY });
    claims.push({ made: ev.claims, persisted: ev.persisted });
    if (ev.inventory.length) {
      stock.set(ev.inventory.map((it) => ({ label: String(it.amount), value: it.remaining, total: it.total })));
      drawInventory(ev.inventory);
    }
    if (ev.state) {
      const s = document.getElementById('campaign-state');
      s.textContent = ev.state;
      s.className = `state ${ev.state}`;
      document.getElementById('campaign-end').textContent = local(ev.end_time);
    }
    stateEl.textContent = 'live';
  }, (state, detail) => {
    stateEl.textContent = state;
    if (detail) note.textContent = detail;
  });
}

// The actions: end now, add stock, claims CSV, look up one user.
function actions(c) {
  const out = el('p', { id: 'action-result', role: 'status', class: 'help' });

  const endBtn = el('button', { type: 'button', id: 'end-now', class: 'danger', text: 'End now' });
  const confirm = el('span', { class: 'confirm', hidden: true },
    el('span', { text: 'Opens stop at once. ' }),
    el('button', { type: 'button', id: 'end-confirm', class: 'danger', text: 'Yes, end it now' }),
    el('button', { type: 'button', id: 'end-cancel', class: 'secondary', text: 'Cancel' }));
  endBtn.addEventListener('click', () => { confirm.hidden = false; endBtn.hidden = true; confirm.querySelector('#end-confirm').focus(); });
  confirm.querySelector('#end-cancel').addEventListener('click', () => { confirm.hidden = true; endBtn.hidden = false; endBtn.focus(); });
  confirm.querySelector('#end-confirm').addEventListener('click', async () => {
    try {
      const r = await api('POST', `/campaign/${c.id}/end`);
      out.textContent = `Ended at ${local(r.end_time)}.`;
      const s = document.getElementById('campaign-state');
      s.textContent = r.state;
      s.className = `state ${r.state}`;
      document.getElementById('campaign-end').textContent = local(r.end_time);
    } catch (x) {
      out.textContent = x.message;
    }
    confirm.hidden = true;
    endBtn.hidden = false;
  });

  const amount = el('select', {}, ...c.inventory.map((it) => el('option', { value: it.amount, text: num(it.amount) })));
  const count = el('input', { type: 'number', min: '1', step: '1', required: true, value: '10', inputmode: 'numeric' });
  const stockForm = el('form', { id: 'stock', class: 'inline' },
    field('stock-amount', 'Amount', amount), field('stock-count', 'Packets to add', count),
    el('button', { type: 'submit', text: 'Add stock' }));
  stockForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    document.getElementById('stock-count-error').textContent = '';
    try {
      // One key per click: a retried request adds nothing twice.
      const key = crypto.randomUUID();
      const r = await api('POST', `/campaign/${c.id}/stock`, { amount: Number(amount.value), count: Number(count.value) },
        { 'Idempotency-Key': key });
      out.textContent = `Added ${num(r.count)} of ${num(r.amount)}: ${num(r.total)} in all${r.applied ? '' : ' (reaches Redis within seconds)'}.`;
    } catch (x) {
      document.getElementById('stock-count-error').textContent = x.message;
    }
  });

  const csv = el('button', { type: 'button', id: 'download-csv', class: 'secondary', text: 'Download claims (CSV)' });
  csv.addEventListener('click', async () => {
    try {
      const size = await download(`/campaign/${c.id}/claims`, 'text/csv', `campaign-${c.id}-claims.csv`);
      out.textContent = `Claims downloaded (${num(size)} bytes).`;
    } catch (x) {
      out.textContent = x.message;
    }
  });

  const user = el('input', { type: 'text', required: true, autocomplete: 'off', spellcheck: 'false', maxlength: '128' });
  const found = el('p', { id: 'lookup-result', role: 'status' });
  const lookup = el('form', { id: 'lookup', class: 'inline' }, field('lookup-user', 'User id', user),
    el('button', { type: 'submit', class: 'secondary', text: 'Look up' }));
  lookup.addEventListener('submit', async (e) => {
    e.preventDefault();
    try {
      const r = await api('GET', `/campaign/${c.id}/claims/${encodeURIComponent(user.value.trim())}`);
      found.textContent = `${r.user_id}: ${num(r.amount)}, claimed ${local(r.claimed_at)}${r.persisted ? '' : ' (not yet persisted)'}.`;
    } catch (x) {
      found.textContent = x.status === 404 ? `${user.value.trim()} has no claim in this campaign.` : x.message;
    }
  });

  return el('section', { class: 'card', 'aria-labelledby': 'act-title' }, el('h2', { id: 'act-title', text: 'Actions' }),
    el('div', { class: 'actions' }, endBtn, confirm, csv), stockForm, out, lookup, found);
}

// summary says in words what an action asked for.
function summary(a) {
  const b = (a.request && a.request.body) || {};
  switch (a.kind) {
    case 'create':
      return `${Object.entries(b.inventory || {}).map(([k, v]) => `${num(v)} × ${k}`).join(', ')}${b.buckets ? `, ${b.buckets} buckets` : ''}`;
    case 'stock':
      return `+${num(b.count)} of ${num(b.amount)}${a.request.idempotency_key ? ` (key ${a.request.idempotency_key.slice(0, 8)}…)` : ''}`;
    case 'end':
      return a.result && a.result.end_time ? `ended at ${local(a.result.end_time)}` : 'end now';
    default:
      return '';
  }
}

function history(c) {
  const rows = c.history.slice().reverse().map((a) => el('tr', {},
    el('td', { text: local(a.at) }), el('td', { text: a.kind }), el('td', { text: a.merchant ? `${a.merchant} (token ${a.token_id})` : a.by }),
    el('td', { class: 'wrap', text: summary(a) })));
  return el('section', { class: 'card wide', 'aria-labelledby': 'hist-title' }, el('h2', { id: 'hist-title', text: 'History' }),
    el('p', { class: 'help', text: 'Refreshed when the page loads; newest first.' }),
    el('div', { class: 'scroll' }, el('table', { id: 'history' },
      el('thead', {}, el('tr', {}, ...['When', 'What', 'Who', 'Details'].map((h) => el('th', { scope: 'col', text: h })))),
      el('tbody', {}, rows))));
}

function route() {
  if (leave) {
    leave();
    leave = null;
  }
  if (!token.get()) {
    viewSignIn();
    return;
  }
  nav.hidden = false;
  const h = location.hash;
  const m = h.match(/^#\/campaign\/(\d+)$/);
  if (m) return viewCampaign(m[1]);
  if (h === '#/new') return viewCreate();
  const q = new URLSearchParams(h.startsWith('#/campaigns?') ? h.slice('#/campaigns?'.length) : '');
  return viewList(q.get('state') || '', q.get('after') || '');
}

document.getElementById('signout').addEventListener('click', () => {
  token.clear();
  location.hash = '';
  route();
});
window.addEventListener('rain:unauthorized', () => {
  token.clear();
  if (leave) {
    leave();
    leave = null;
  }
  viewSignIn('The token was refused: sign in again.');
});
window.addEventListener('hashchange', route);
route();
