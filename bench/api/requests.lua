-- wrk script of the API benchmark (bench/api): each request is the next line of a file of
-- "METHOD<TAB>PATH<TAB>API KEY<TAB>BODY" lines (an empty BODY: none), taken in turn by each thread from its own
-- offset. A request with a body gets a unique Idempotency-Key. done() prints one machine-readable line.
-- Arguments (after --): the requests file, a tag that makes this run's Idempotency-Keys unique.

local threads = {}
local next_id = 0

function setup(thread)
   thread:set("id", next_id)
   next_id = next_id + 1
   table.insert(threads, thread)
end

local lines = {}
local counter = 0
local tag = ""

local function split(line)
   local fields = {}
   for field in (line .. "\t"):gmatch("([^\t]*)\t") do
      table.insert(fields, field)
   end
   return fields
end

function init(args)
   tag = (args[2] or "run") .. "-" .. tostring(id)
   for line in io.lines(args[1]) do
      local f = split(line)
      local headers = { ["Authorization"] = "Bearer " .. f[3] }
      if f[4] ~= nil and f[4] ~= "" then
         headers["Content-Type"] = "application/json"
         table.insert(lines, { method = f[1], path = f[2], headers = headers, body = f[4] })
      else
         table.insert(lines, { raw = wrk.format(f[1], f[2], headers) })
      end
   end
   counter = id * 7919 -- threads start at different lines
end

function request()
   counter = counter + 1
   local r = lines[counter % #lines + 1]
   if r.raw then
      return r.raw
   end
   r.headers["Idempotency-Key"] = tag .. "-" .. tostring(counter)
   return wrk.format(r.method, r.path, r.headers, r.body)
end

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      "WRK-RESULT requests=%d duration_us=%d p50_us=%d p90_us=%d p99_us=%d max_us=%d status_errors=%d "
         .. "socket_errors=%d\n",
      summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
      latency:percentile(99), latency.max, e.status, e.connect + e.read + e.write + e.timeout))
end
