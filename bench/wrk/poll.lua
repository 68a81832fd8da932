-- GET finished tasks round robin, each with its owner's key.
package.path = os.getenv("BENCH_DIR") .. "/wrk/?.lua;" .. package.path
local common = require("common")

local keys, requests_ = nil, {}
local next_ = 0

setup = common.setup

function init(args)
  keys = common.lines(os.getenv("BENCH_KEYS"))
  for _, line in ipairs(common.lines(os.getenv("BENCH_PATHS"))) do
    local key_index, path = line:match("^(%d+) (%S+)$")
    requests_[#requests_ + 1] = wrk.format("GET", path,
      { ["Authorization"] = "Bearer " .. keys[tonumber(key_index) + 1] })
  end
  next_ = thread_index
end

function request()
  local r = requests_[(next_ % #requests_) + 1]
  next_ = next_ + 1
  return r
end

function done(summary, latency, requests)
  common.done(summary, latency)
end
