// Red packet rain: the arrival rate of opens ramps up to a peak, holds, and
// falls back to zero; every open is by a new user. A campaign with PACKETS
// packets is created in setup(); once they are gone, opens get 410 SOLD_OUT.
//
//   k6 run -e BASE_URL=http://127.0.0.1:8080 -e ADMIN_TOKEN=dev-token loadtest/k6/rain.js
//   PEAK_RATE (opens/s, 5000), RAMP (30s), HOLD (30s), PACKETS (1000000),
//   VUS (200 pre-allocated), MAX_VUS (2000), P99_MS, BUSY_RATE (see lib.js)
import { baseThresholds, createCampaign, num, open, uniqueUser } from './lib.js';

const PEAK = num('PEAK_RATE', 5000);
const RAMP = __ENV.RAMP || '30s';
const HOLD = __ENV.HOLD || '30s';

export const options = {
  scenarios: {
    rain: {
      executor: 'ramping-arrival-rate',
      startRate: 0,
      timeUnit: '1s',
      preAllocatedVUs: num('VUS', 200),
      maxVUs: num('MAX_VUS', 2000),
      stages: [
        { target: PEAK, duration: RAMP },
        { target: PEAK, duration: HOLD },
        { target: 0, duration: RAMP },
      ],
    },
  },
  thresholds: baseThresholds(),
};

export function setup() {
  return createCampaign('k6-rain', { '1': num('PACKETS', 1000000) }, 10);
}

export default function (data) {
  open(data, uniqueUser(data), [200, 410]);
}
