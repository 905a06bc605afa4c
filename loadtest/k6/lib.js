// Shared pieces of the k6 scenarios: configuration from __ENV, campaign
// set-up through the API, user ids, and the open request with its checks.
//
//   BASE_URL     the api (default http://127.0.0.1:8080)
//   ADMIN_TOKEN  a merchant token of that api (required: setup() creates the campaign)
//   P99_MS       latency threshold on opens, p(99) in ms (default 10)
//   BUSY_RATE    highest accepted share of 503 BUSY answers (default 0.01)
import http from 'k6/http';
import { check, fail } from 'k6';
import { Counter, Rate } from 'k6/metrics';

export const BASE_URL = (__ENV.BASE_URL || 'http://127.0.0.1:8080').replace(/\/+$/, '');
export const ADMIN_TOKEN = __ENV.ADMIN_TOKEN || '';
export const P99_MS = Number(__ENV.P99_MS || 10);

// Responses whose status is not one the scenario expects (threshold: none).
export const unexpected = new Counter('unexpected_status');
// 200 OK opens; a scenario with few packets puts a threshold on it (no oversell).
export const opened = new Counter('opened_ok');
// 503 BUSY: the api sheds load (ring full, too many opens in flight, Redis away).
export const busy = new Rate('open_busy');

// num reads a numeric __ENV variable with a default.
export function num(name, def) {
  const v = __ENV[name];
  return v === undefined || v === '' ? def : Number(v);
}

// thresholds every scenario shares: no unexpected status, p(99) of opens,
// and little shedding.
export function baseThresholds() {
  return {
    unexpected_status: ['count==0'],
    'http_req_duration{name:open}': [`p(99)<${P99_MS}`],
    open_busy: [`rate<${num('BUSY_RATE', 0.01)}`],
  };
}

// createCampaign makes a campaign that started a few seconds ago and lasts
// minutes after the test; inventory is {"<amount>": count}. It returns the
// data every VU receives: the campaign id and a run prefix for user ids.
export function createCampaign(name, inventory, minutes) {
  if (!ADMIN_TOKEN) {
    fail('ADMIN_TOKEN is not set (k6 run -e ADMIN_TOKEN=... -e BASE_URL=...)');
  }
  const now = Date.now();
  const run = `${name}-${now.toString(36)}`;
  const body = JSON.stringify({
    name: run,
    start_time: new Date(now - 5000).toISOString(),
    end_time: new Date(now + (minutes + 5) * 60000).toISOString(),
    inventory: inventory,
  });
  const res = http.post(`${BASE_URL}/campaign`, body, {
    headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${ADMIN_TOKEN}` },
    tags: { name: 'create' },
  });
  if (res.status !== 201) {
    fail(`POST /campaign: ${res.status} ${res.body}`);
  }
  return { id: res.json('id'), run: run };
}

// getCampaign is the merchant view of a campaign (teardown checks).
export function getCampaign(id) {
  const res = http.get(`${BASE_URL}/campaign/${id}`, {
    headers: { Authorization: `Bearer ${ADMIN_TOKEN}` },
    tags: { name: 'get' },
  });
  if (res.status !== 200) {
    fail(`GET /campaign/${id}: ${res.status} ${res.body}`);
  }
  return res.json();
}

// uniqueUser is a user id no other VU or iteration of this run uses.
export function uniqueUser(data) {
  return `${data.run}-${__VU}-${__ITER}`;
}

// open opens the campaign for user and records the outcome; expected is the
// list of statuses this scenario accepts (503 is counted apart, in open_busy).
export function open(data, user, expected) {
  const res = http.post(`${BASE_URL}/campaign/${data.id}/open`, JSON.stringify({ user_id: user }), {
    headers: { 'Content-Type': 'application/json' },
    tags: { name: 'open' },
    responseCallback: http.expectedStatuses(...expected),
  });
  busy.add(res.status === 503);
  if (res.status === 200) {
    opened.add(1);
  }
  const ok = expected.includes(res.status) || res.status === 503;
  if (!ok) {
    unexpected.add(1, { status: String(res.status) });
  }
  check(res, { 'status is expected': () => ok });
  return res;
}
