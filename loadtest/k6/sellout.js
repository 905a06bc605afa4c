// Sell-out race: USERS different users race for PACKETS packets as fast as
// VUS virtual users can send. Exactly PACKETS opens may succeed (200), all
// the others get 410 SOLD_OUT; teardown() checks the campaign has nothing
// left and exactly PACKETS claims.
//
//   k6 run -e BASE_URL=http://127.0.0.1:8080 -e ADMIN_TOKEN=dev-token loadtest/k6/sellout.js
//   PACKETS (1000), USERS (50000), VUS (200), MAX_DURATION (2m), P99_MS, BUSY_RATE
import { check } from 'k6';
import { Counter } from 'k6/metrics';
import { baseThresholds, createCampaign, getCampaign, num, open, uniqueUser } from './lib.js';

const PACKETS = num('PACKETS', 1000);

// Set by teardown() when the campaign's final state is not exactly sold out.
const mismatch = new Counter('sellout_mismatch');

export const options = {
  scenarios: {
    sellout: {
      executor: 'shared-iterations',
      vus: num('VUS', 200),
      iterations: num('USERS', 50000),
      maxDuration: __ENV.MAX_DURATION || '2m',
    },
  },
  thresholds: Object.assign(baseThresholds(), {
    opened_ok: [`count<=${PACKETS}`],
    sellout_mismatch: ['count==0'],
  }),
};

export function setup() {
  return createCampaign('k6-sellout', { '1': PACKETS }, 5);
}

export default function (data) {
  open(data, uniqueUser(data), [200, 410]);
}

export function teardown(data) {
  const c = getCampaign(data.id);
  const ok = check(c, {
    'nothing remaining': (v) => v.remaining === 0,
    'claims == packets': (v) => v.claims === PACKETS,
  });
  if (!ok) {
    mismatch.add(1);
  }
}
