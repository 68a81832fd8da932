-- Shared by the bench/run wrk scripts: reading the work plan written by bench/bench.py,
-- handing each wrk thread its own slots, and printing wrk's summary as one JSON line.
--
-- Plan files (one item a line):
--   BENCH_KEYS    API keys, one per account
--   BENCH_BLOCKS  "EVENT_ID ID,ID,..." blocks of people of one event (creates)
--   BENCH_PATHS   "KEY_INDEX PATH" (polls)
local common = {}

function common.lines(path)
  local out = {}
  local f = assert(io.open(path, "r"), "cannot open " .. tostring(path))
  for line in f:lines() do
    if line ~= "" then out[#out + 1] = line end
  end
  f:close()
  return out
end

function common.blocks(path)
  local out = {}
  for _, line in ipairs(common.lines(path)) do
    local event, ids = line:match("^(%S+) (%S+)$")
    local quoted = {}
    for id in ids:gmatch("[^,]+") do quoted[#quoted + 1] = '"' .. id .. '"' end
    out[#out + 1] = { event = event, ids = table.concat(quoted, ",") }
  end
  return out
end

-- setup() runs once per wrk thread in the main Lua state: number the threads.
local threads = {}
function common.setup(thread)
  thread:set("thread_index", #threads)
  threads[#threads + 1] = thread
end

function common.threads() return threads end

-- One JSON line with wrk's own figures, for bench.py to read.
function common.done(summary, latency, extra)
  local errors = summary.errors
  local fields = {
    string.format('"requests":%d', summary.requests),
    string.format('"duration_us":%d', summary.duration),
    string.format('"p50_us":%d', latency:percentile(50)),
    string.format('"p99_us":%d', latency:percentile(99)),
    string.format('"max_us":%d', latency.max),
    string.format('"errors_status":%d', errors.status),
    string.format('"errors_socket":%d', errors.connect + errors.read + errors.write + errors.timeout),
  }
  for k, v in pairs(extra or {}) do fields[#fields + 1] = string.format('"%s":%s', k, v) end
  io.write("BENCH_RESULT {" .. table.concat(fields, ",") .. "}\n")
end

return common
