// The live view's feed: GET /campaign/{id}/live, server-sent events read
// with fetch() (EventSource cannot send an Authorization header, and the
// token must not go into a URL). Reconnects with backoff until stopped.
import { authHeaders, errorOf } from './api.js';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// parse splits a text/event-stream buffer into complete events; it
// returns the events and what is left.
export function parseEvents(buf) {
  const events = [];
  buf = buf.replace(/\r\n?/g, '\n');
  let i;
  while ((i = buf.indexOf('\n\n')) >= 0) {
    const block = buf.slice(0, i);
    buf = buf.slice(i + 2);
    let type = 'message';
    const data = [];
    for (const line of block.split('\n')) {
      if (line.startsWith(':')) continue;
      const [field, ...rest] = line.split(':');
      const value = rest.join(':').replace(/^ /, '');
      if (field === 'event') type = value;
      else if (field === 'data') data.push(value);
    }
    if (data.length) events.push({ type, data: data.join('\n') });
  }
  return { events, rest: buf };
}

// openLive streams campaign id's events to onEvent(type, value) and its
// connection state to onState(state, detail); it returns a stop function.
export function openLive(id, onEvent, onState) {
  const ctl = new AbortController();
  let stopped = false;
  (async () => {
    let backoff = 1000;
    while (!stopped) {
      try {
        const resp = await fetch(`/campaign/${id}/live`, {
          headers: authHeaders({ Accept: 'text/event-stream' }), signal: ctl.signal, cache: 'no-store',
        });
        if (!resp.ok) {
          const err = await errorOf(resp);
          onState('error', err.message);
          if (resp.status === 401 || resp.status === 403 || resp.status === 404) return;
        } else {
          onState('open');
          backoff = 1000;
          const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
          let buf = '';
          for (;;) {
            const { value, done } = await reader.read();
            if (done) break;
            const out = parseEvents(buf + value);
            buf = out.rest;
            for (const ev of out.events) {
              onEvent(ev.type, JSON.parse(ev.data));
              if (ev.type === 'end') backoff = 2000;
            }
          }
        }
      } catch (e) {
        if (stopped) return;
        onState('error', e.message);
      }
      if (stopped) return;
      onState('reconnecting');
      await sleep(backoff);
      backoff = Math.min(backoff * 2, 10_000);
    }
  })();
  return () => {
    stopped = true;
    ctl.abort();
  };
}
