// Duplicate storm: the same USERS users open the same campaign again and
// again. Each gets one 200, every later open is 409 ALREADY_OPENED with the
// same amount; no more than USERS opens may succeed.
//
//   k6 run -e BASE_URL=http://127.0.0.1:8080 -e ADMIN_TOKEN=dev-token loadtest/k6/duplicates.js
//   USERS (100), RATE (opens/s, 2000), DURATION (1m), VUS (100), MAX_VUS (1000), P99_MS, BUSY_RATE
import exec from 'k6/execution';
import { baseThresholds, createCampaign, num, open } from './lib.js';

const USERS = num('USERS', 100);

export const options = {
  scenarios: {
    duplicates: {
      executor: 'constant-arrival-rate',
      rate: num('RATE', 2000),
      timeUnit: '1s',
      duration: __ENV.DURATION || '1m',
      preAllocatedVUs: num('VUS', 100),
      maxVUs: num('MAX_VUS', 1000),
    },
  },
  thresholds: Object.assign(baseThresholds(), {
    opened_ok: [`count<=${USERS}`],
  }),
};

export function setup() {
  // More packets than users: a 410 here would be a bug.
  return createCampaign('k6-duplicates', { '1': USERS * 10 }, 5);
}

export default function (data) {
  const user = `${data.run}-dup-${exec.scenario.iterationInTest % USERS}`;
  open(data, user, [200, 409]);
}
