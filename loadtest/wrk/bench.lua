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
--   wrk ... -s loadtest/wrk/bench.lua URL -- tokens FILE THREADS
--
--       tokens  POST {"user_id":"<user>"} with "Authorization: Bearer <token>",
--               a new user every request, from FILE: lines "<user> <token>",
--               all of the same length (loadtest/bench writes them, signed
--               with edge.SignUserToken). Each of the THREADS threads (wrk's
--               -t) takes its own slice of the lines; a thread that used
--               all of its slice starts it again, and counts those
--               requests as "reused" (they are repeats: 409 or 429).
--
-- done() prints one line "BENCH_JSON {...}": requests, duration, bytes,
-- socket errors, latency (µs: mean, stdev, max, p50 p75 p90 p99 p99.9),
-- the count of responses by HTTP status and, in mode tokens, of requests
-- that reused a user.

-- Main state: every thread, so done() can read its counts.
local threads = {}

function setup(thread)
   thread:set("tid", #threads)
   table.insert(threads, thread)
end

-- Thread state (each thread has its own Lua state). Globals, so that done()
-- can read them with thread:get.
statuses = {}
reused = 0
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

-- Mode tokens: this thread's slice of the file, read at once (each line
-- found by its offset, so a request costs two substrings, as unique's
-- costs one number's formatting), the length of a line with its newline
-- and of a user id, and how many lines.
local data, width, uwidth, count, wrapped = nil, 0, 0, 0, false

local function load_tokens(path, nthreads)
   local f, err = io.open(path, "rb")
   if not f then error("bench.lua: " .. err) end
   local first = f:read("*l")
   local space = first and first:find(" ", 1, true)
   if not space then error("bench.lua: " .. path .. ": want lines \"<user> <token>\"") end
   width, uwidth = #first + 1, space - 1
   local size = f:seek("end")
   if size % width ~= 0 then
      error("bench.lua: " .. path .. ": lines of different lengths")
   end
   local lines = size / width
   local lo = math.floor(lines * tid / nthreads)
   local hi = math.floor(lines * (tid + 1) / nthreads)
   count = hi - lo
   if count < 1 or tid >= nthreads then
      error("bench.lua: no lines of " .. path .. " for thread " .. tid .. " of " .. nthreads)
   end
   f:seek("set", lo * width)
   data = f:read(count * width)
   f:close()
end

local function token_request()
   if n == count then n, wrapped = 0, true end
   if wrapped then reused = reused + 1 end
   local at = n * width + 1
   n = n + 1
   local body = '{"user_id":"' .. data:sub(at, at + uwidth - 1) .. '"}'
   return head .. data:sub(at + uwidth + 1, at + width - 2) ..
      "\r\nContent-Length: " .. #body .. "\r\n\r\n" .. body
end

function init(args)
   mode = args[1] or "get"
   prefix = args[2] or "wrk"
   users = tonumber(args[3] or "1")
   if mode == "unique" or mode == "fixed" or mode == "tokens" then
      wrk.method = "POST"
      wrk.headers["Content-Type"] = "application/json"
      local lines = { "POST " .. wrk.path .. " HTTP/1.1" }
      for name, value in pairs(wrk.headers) do
         lines[#lines + 1] = name .. ": " .. value
      end
      if not wrk.headers["Host"] then
         lines[#lines + 1] = "Host: " .. wrk.host
      end
      if mode == "tokens" then
         load_tokens(prefix, users)
         lines[#lines + 1] = "Authorization: Bearer "
         head = table.concat(lines, "\r\n")
         request = token_request
      else
         lines[#lines + 1] = "Content-Length: "
         head = table.concat(lines, "\r\n")
         request = open_request
      end
   elseif mode ~= "get" then
      error("bench.lua: MODE must be get, unique, fixed or tokens, not " .. mode)
   end
end

function response(status, headers, body)
   statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
   local by, again = {}, 0
   for _, t in ipairs(threads) do
      for status, count in pairs(t:get("statuses")) do
         by[status] = (by[status] or 0) + count
      end
      again = again + t:get("reused")
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
      '"statuses":{%s},"reused":%d}\n',
      summary.requests, summary.duration, summary.bytes,
      e.connect, e.read, e.write, e.status, e.timeout,
      latency.mean, latency.stdev, latency.max,
      latency:percentile(50), latency:percentile(75), latency:percentile(90),
      latency:percentile(99), latency:percentile(99.9),
      table.concat(parts, ","), again))
end
