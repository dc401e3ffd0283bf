-- wrk script of scripts/bench.sh: adds the API token, optionally a method and
-- body, optionally spreads requests over several paths, and prints one
-- machine-readable summary line at the end.
--
-- Environment:
--   BENCH_TOKEN   value of X-API-Token (none: no header)
--   BENCH_METHOD  GET (default) or POST/PATCH/...
--   BENCH_BODY    request body (sent with Content-Type: application/json)
--   BENCH_PATHS   file with one path per line; each request picks one at
--                 random (default: the path of the URL given to wrk)

local token = os.getenv("BENCH_TOKEN")
local method = os.getenv("BENCH_METHOD") or "GET"
local body = os.getenv("BENCH_BODY")
local paths_file = os.getenv("BENCH_PATHS")

wrk.method = method
if token and token ~= "" then
  wrk.headers["X-API-Token"] = token
end
if body and body ~= "" then
  wrk.body = body
  wrk.headers["Content-Type"] = "application/json"
end

local paths = nil
if paths_file and paths_file ~= "" then
  paths = {}
  for line in io.lines(paths_file) do
    if line ~= "" then
      paths[#paths + 1] = line
    end
  end
end

function setup(thread)
  thread:set("seed", math.random(1, 1000000))
end

function init(args)
  math.randomseed(seed or os.time())
end

if paths then
  function request()
    return wrk.format(nil, paths[math.random(#paths)])
  end
end

function done(summary, latency, requests)
  local secs = summary.duration / 1e6
  local e = summary.errors
  io.write(string.format(
    "WRK requests=%d rps=%.1f p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f max_ms=%.3f non2xx=%d sockerr=%d\n",
    summary.requests, summary.requests / secs,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000,
    e.status, e.connect + e.read + e.write + e.timeout))
end
