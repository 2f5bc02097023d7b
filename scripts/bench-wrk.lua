-- wrk script of scripts/bench.sh: replays pre-made request bodies, each sent once.
--
-- The bodies are made before the run (`factory-ca bench --write-bodies FILE`: one JSON body per
-- line, each a new device key and CSR). Thread k of T keeps lines k, k+T, k+2T, ... and formats
-- each whole HTTP request once in init(), so that request() only hands wrk the next string:
-- the load generator does as little as it can per request. A thread that runs out of bodies
-- starts again from its first one; such repeats are refused by the service (duplicate thing
-- name) and counted in "wrapped", so a file that was too short shows up as errors, never as
-- silent success.
--
-- Environment:
--   BENCH_BODIES     the file of bodies (required)
--   BENCH_THREADS    wrk's -t (required: Lua cannot see it)
--   BENCH_PATH       request path (default /v1/certificates)
--   BENCH_TOKEN      bearer token, sent in Authorization (optional; never printed)
--   BENCH_CPU_FILE   where the process's CPU seconds go: "<file>.init" after the bodies are
--                    loaded (each thread overwrites it, so the last one loaded wins) and
--                    "<file>.done" when the run is over
--   BENCH_RESULT     where done() writes its JSON result (default: stdout)

local threads = {}
local counter = 0

function setup(thread)
   thread:set("id", counter)
   table.insert(threads, thread)
   counter = counter + 1
end

-- utime + stime of the whole wrk process, in seconds (USER_HZ = 100).
local function cpu_seconds()
   local f = io.open("/proc/self/stat", "r")
   if not f then return -1 end
   local line = f:read("*l")
   f:close()
   local rest = line:match("%) (.*)$")
   local fields = {}
   for v in rest:gmatch("%S+") do fields[#fields + 1] = v end
   -- After ") ": state is field 1, utime field 12, stime field 13.
   return (tonumber(fields[12]) + tonumber(fields[13])) / 100
end

local function write_cpu(suffix)
   local base = os.getenv("BENCH_CPU_FILE")
   if not base or base == "" then return end
   local f = io.open(base .. suffix, "w")
   f:write(string.format("%.2f\n", cpu_seconds()))
   f:close()
end

function init(args)
   local file = os.getenv("BENCH_BODIES")
   local nthreads = tonumber(os.getenv("BENCH_THREADS") or "")
   if not file or not nthreads then
      error("bench-wrk.lua needs BENCH_BODIES and BENCH_THREADS")
   end
   local path = os.getenv("BENCH_PATH") or "/v1/certificates"
   local headers = { ["Content-Type"] = "application/json" }
   local token = os.getenv("BENCH_TOKEN")
   if token and token ~= "" then
      headers["Authorization"] = "Bearer " .. token
   end
   reqs = {}
   local n = 0
   for line in io.lines(file) do
      if n % nthreads == id and #line > 0 then
         reqs[#reqs + 1] = wrk.format("POST", path, headers, line)
      end
      n = n + 1
   end
   if #reqs == 0 then
      error("bench-wrk.lua: no bodies for thread " .. id .. " in " .. file)
   end
   nbodies = #reqs
   next_req = 0
   wrapped = 0
   write_cpu(".init")
end

function request()
   next_req = next_req + 1
   if next_req > nbodies then
      next_req = 1
      wrapped = wrapped + 1
   end
   return reqs[next_req]
end

function done(summary, latency, requests)
   write_cpu(".done")
   local wrapped_total, bodies_total = 0, 0
   for _, t in ipairs(threads) do
      wrapped_total = wrapped_total + (t:get("wrapped") or 0)
      bodies_total = bodies_total + (t:get("nbodies") or 0)
   end
   local e = summary.errors
   local out = string.format(
      '{"duration_s": %.3f, "requests": %d, "bytes": %d, "errors": {"connect": %d, '
         .. '"read": %d, "write": %d, "status": %d, "timeout": %d}, "latency_ms": '
         .. '{"p50": %.3f, "p90": %.3f, "p99": %.3f, "max": %.3f, "mean": %.3f}, '
         .. '"bodies": %d, "wrapped": %d}',
      summary.duration / 1e6, summary.requests, summary.bytes, e.connect, e.read, e.write,
      e.status, e.timeout, latency:percentile(50) / 1000, latency:percentile(90) / 1000,
      latency:percentile(99) / 1000, latency.max / 1000, latency.mean / 1000, bodies_total,
      wrapped_total)
   local target = os.getenv("BENCH_RESULT")
   if target and target ~= "" then
      local f = io.open(target, "w")
      f:write(out .. "\n")
      f:close()
   else
      io.write(out .. "\n")
   end
end
