-- End to end: create a task with a fresh block of people, then long-poll it (?wait=) until
-- it is terminal; the latency is from sending the create to receiving the terminal answer.
-- Run with one connection per thread (-c N -t N), so a thread's requests form one chain.
-- Creates are paced: each chain starts a create every BENCH_PERIOD_MS at most, so N chains
-- offer N / period creates per second (fewer if answers come slower).
package.path = os.getenv("BENCH_DIR") .. "/wrk/?.lua;" .. package.path
local common = require("common")
local ffi = require("ffi")
ffi.cdef [[
  typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
  int clock_gettime(int clock_id, bench_timespec *tp);
]]
local ts = ffi.new("bench_timespec")
local function now_ms()
  ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
  return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
end

local create_path = "/external/contacts/unlock"
local poll_prefix = "/external/contacts/unlock-tasks/"
local thread_count = tonumber(os.getenv("BENCH_THREADS"))
local period_ms = tonumber(os.getenv("BENCH_PERIOD_MS"))
local keys, blocks
local slot = 0
local key, task_id, created_at, last_create_at = nil, nil, nil, nil
-- Globals, read by done() through thread:get.
latencies = {}
unexpected = 0

setup = common.setup

function init(args)
  keys = common.lines(os.getenv("BENCH_KEYS"))
  blocks = common.blocks(os.getenv("BENCH_BLOCKS"))
  slot = thread_index
end

function delay()
  if task_id ~= nil or last_create_at == nil then return 0 end
  local wait = last_create_at + period_ms - now_ms()
  if wait < 0 then return 0 end
  return math.floor(wait)
end

function request()
  if task_id ~= nil then
    return wrk.format("GET", poll_prefix .. task_id .. "?wait=30",
      { ["Authorization"] = "Bearer " .. key })
  end
  local account = slot % #keys
  local block = blocks[(math.floor(slot / #keys) % #blocks) + 1]
  slot = slot + thread_count
  key = keys[account + 1]
  created_at = now_ms()
  last_create_at = created_at
  local body = '{"event_id":"' .. block.event .. '","personnel_ids":[' .. block.ids .. ']}'
  return wrk.format("POST", create_path, {
    ["Authorization"] = "Bearer " .. key,
    ["Content-Type"] = "application/json",
  }, body)
end

function response(status, headers, body)
  if task_id == nil then
    task_id = body:match('"task_id":"([^"]+)"')
    if status ~= 201 or task_id == nil then
      unexpected = unexpected + 1
      task_id = nil
    end
    return
  end
  local state = body:match('"taskStatus":"(%a+)"')
  if status ~= 200 or state == nil then
    unexpected = unexpected + 1
    task_id = nil
  elseif state == "completed" or state == "failed" then
    latencies[#latencies + 1] = now_ms() - created_at
    task_id = nil
  end
  -- otherwise the long poll timed out before the task finished: poll again
end

function done(summary, latency, requests)
  local all, bad = {}, 0
  for _, t in ipairs(common.threads()) do
    for _, v in ipairs(t:get("latencies") or {}) do all[#all + 1] = v end
    bad = bad + (t:get("unexpected") or 0)
  end
  table.sort(all)
  local function pct(p)
    if #all == 0 then return 0 end
    return all[math.max(1, math.ceil(#all * p / 100))]
  end
  common.done(summary, latency, {
    chains = #all,
    unexpected = bad,
    chain_p50_ms = string.format("%.3f", pct(50)),
    chain_p99_ms = string.format("%.3f", pct(99)),
    chain_max_ms = string.format("%.3f", pct(100)),
  })
end
