-- POST a create with a fresh block of people every request.
-- Slots are (account, block) pairs: thread t of T takes slots t, t+T, t+2T, ...; slot s is
-- account s % A with block floor(s / A). No (account, person) pair is asked for twice, so every
-- request does the full create. Running out of slots wraps around and is counted (the
-- requests then stop being fresh: bench.py reports it). BENCH_SLOT_OFFSET starts every thread
-- further on, so several runs on one database take disjoint slots; done() reports the first
-- slot no thread has used (the next run's offset).
package.path = os.getenv("BENCH_DIR") .. "/wrk/?.lua;" .. package.path
local common = require("common")

local path = os.getenv("BENCH_PATH") or "/external/contacts/unlock"
local thread_count = tonumber(os.getenv("BENCH_THREADS"))
local keys, blocks
local offset = tonumber(os.getenv("BENCH_SLOT_OFFSET") or "0")
slot = 0 -- global: done() reads it through thread:get
wraps = 0 -- global: done() reads it through thread:get

setup = common.setup

function init(args)
  keys = common.lines(os.getenv("BENCH_KEYS"))
  blocks = common.blocks(os.getenv("BENCH_BLOCKS"))
  slot = offset + thread_index
end

function request()
  local total = #keys * #blocks
  if slot >= total then
    slot = slot % total
    wraps = wraps + 1
  end
  local account = slot % #keys
  local block = blocks[math.floor(slot / #keys) + 1]
  slot = slot + thread_count
  local body = '{"event_id":"' .. block.event .. '","personnel_ids":[' .. block.ids .. ']}'
  return wrk.format("POST", path, {
    ["Authorization"] = "Bearer " .. keys[account + 1],
    ["Content-Type"] = "application/json",
    ["x-call-source"] = "api",
  }, body)
end

function done(summary, latency, requests)
  local w, next_slot = 0, 0
  for _, t in ipairs(common.threads()) do
    w = w + (t:get("wraps") or 0)
    next_slot = math.max(next_slot, t:get("slot") or 0)
  end
  common.done(summary, latency, { wraps = w, next_slot = next_slot })
end
