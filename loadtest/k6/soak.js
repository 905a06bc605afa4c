// Soak: a steady RATE of opens by new users for a long DURATION, against a
// campaign large enough never to sell out. Watch the api's and consumer's
// memory, the ring and the consumer lag on /metrics while it runs.
//
//   k6 run -e BASE_URL=http://127.0.0.1:8080 -e ADMIN_TOKEN=dev-token loadtest/k6/soak.js
//   RATE (opens/s, 500), DURATION (30m), VUS (50), MAX_VUS (500), P99_MS, BUSY_RATE
import { baseThresholds, createCampaign, num, open, uniqueUser } from './lib.js';

const RATE = num('RATE', 500);
const DURATION = __ENV.DURATION || '30m';

export const options = {
  scenarios: {
    soak: {
      executor: 'constant-arrival-rate',
      rate: RATE,
      timeUnit: '1s',
      duration: DURATION,
      preAllocatedVUs: num('VUS', 50),
      maxVUs: num('MAX_VUS', 500),
    },
  },
  thresholds: baseThresholds(),
};

export function setup() {
  // Twice the planned opens (at most 100 million, the per-amount maximum),
  // and a campaign that outlasts the test by the parsed duration.
  const minutes = Math.ceil(parseDuration(DURATION) / 60);
  const packets = Math.min(100000000, Math.max(1000, 2 * RATE * minutes * 60));
  return createCampaign('k6-soak', { '1': packets }, minutes);
}

export default function (data) {
  open(data, uniqueUser(data), [200]);
}

// parseDuration turns "90s", "30m", "2h" or "1h30m" into seconds.
function parseDuration(s) {
  let total = 0;
  const re = /(\d+(?:\.\d+)?)(h|m|s)/g;
  let m;
  while ((m = re.exec(s)) !== null) {
    total += Number(m[1]) * { h: 3600, m: 60, s: 1 }[m[2]];
  }
  return total > 0 ? total : 1800;
}
