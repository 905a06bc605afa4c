-- wrk script of `make bench` (loadtest/bench): request bodies with user
-- ids, responses counted by status, and one JSON line of results.
--
--   wrk -t2 -c64 -d15s --latency -s loadtest/wrk/bench.lua URL -- MODE PREFIX [USERS]
--
-- MODE  get     the URL as it is (GET; the trivial route)
--       unique  POST {"user_id":"PREFIX-<thread>-<n>"}: a new user every request,
--               unique across threads and, with a fresh PREFIX, across runs
--       fixed   POST {"user_id":"PREFIX-<i>"}, i cycling through 0..USERS-1
--               (the same users again and again)
--
-- done() prints one line "BENCH_JSON {...}": requests, duration, bytes,
-- socket errors, latency (µs: mean, stdev, max, p50 p75 p90 p99 p99.9) and
-- the count of responses by HTTP status.

-- Main state: every thread, so done() can read its counts.
local threads = {}

function setup(thread)
   thread:set("tid", #threads)
   table.insert(threads, thread)
end

-- Thread state (each thread has its own Lua state). Globals, so that done()
-- can read them with thread:get.
statuses = {}
local mode, prefix, users, n = "get", "wrk", 1, 0
local head -- the request up to the Content-Length value, built once

-- open_request builds each request by concatenation onto a head made once,
-- not with wrk.format (a table and a string.format per header per request):
-- wrk shares the cores with the server it measures, and the trivial route
-- it is compared with costs wrk no Lua at all.
local function open_request()
   n = n + 1
   local user
   if mode == "fixed" then
      user = prefix .. "-" .. ((n + tid) % users)
   else
      user = prefix .. "-" .. tid .. "-" .. n
   end
   local body = '{"user_id":"' .. user .. '"}'
   return head .. #body .. "\r\n\r\n" .. body
end

function init(args)
   mode = args[1] or "get"
   prefix = args[2] or "wrk"
   users = tonumber(args[3] or "1")
   if mode == "unique" or mode == "fixed" then
      wrk.method = "POST"
      wrk.headers["Content-Type"] = "application/json"
      local lines = { "POST " .. wrk.path .. " HTTP/1.1" }
      for name, value in pairs(wrk.headers) do
         lines[#lines + 1] = name .. ": " .. value
      end
      if not wrk.headers["Host"] then
         lines[#lines + 1] = "Host: " .. wrk.host
      end
      lines[#lines + 1] = "Content-Length: "
      head = table.concat(lines, "\r\n")
      request = open_request
   elseif mode ~= "get" then
      error("bench.lua: MODE must be get, unique or fixed, not " .. mode)
   end
end

function response(status, headers, body)
   statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
   local by = {}
   for _, t in ipairs(threads) do
      for status, count in pairs(t:get("statuses")) do
         by[status] = (by[status] or 0) + count
      end
   end
   local codes = {}
   for status, _ in pairs(by) do table.insert(codes, status) end
   table.sort(codes)
   local parts = {}
   for _, status in ipairs(codes) do
      table.insert(parts, string.format('"%d":%d', status, by[status]))
   end
   local e = summary.errors
   io.write(string.format(
      'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
      '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
      '"latency_us":{"mean":%.1f,"stdev":%.1f,"max":%d,"p50":%d,"p75":%d,"p90":%d,"p99":%d,"p999":%d},' ..
      '"statuses":{%s}}\n',
      summary.requests, summary.duration, summary.bytes,
      e.connect, e.read, e.write, e.status, e.timeout,
      latency.mean, latency.stdev, latency.max,
      latency:percentile(50), latency:percentile(75), latency:percentile(90),
      latency:percentile(99), latency:percentile(99.9),
      table.concat(parts, ",")))
end
