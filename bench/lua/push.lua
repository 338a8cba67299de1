-- wrk script for both servers: a ~300-byte push body, a unique idempotency_key per request and
-- user_id rotated over BENCH_USERS users. The floor decodes the same body into a msgspec Struct.
local counter = 0
thread_id = 0
local threads = {}

function setup(thread)
  thread:set("thread_id", #threads)
  table.insert(threads, thread)
end

local users = tonumber(os.getenv("BENCH_USERS") or "20000")
local nonce = os.getenv("BENCH_NONCE") or "0"
local filler = string.rep("x", 96)

function request()
  counter = counter + 1
  local user = (counter * 7919 + thread_id * 104729) % users
  local body = string.format(
    '{"idempotency_key":"%s-%d-%d","user_id":"bench-user-%d","topic":"transactional",'
      .. '"title":"Your order has shipped","body":"Order %d is on its way. %s",'
      .. '"data":{"deeplink":"wallet://orders/%d"}}',
    nonce, thread_id, counter, user, counter, filler, counter)
  return wrk.format("POST", os.getenv("BENCH_PATH") or "/echo",
    {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. (os.getenv("BENCH_KEY") or "")},
    body)
end

function done(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,'
      .. '"p999_us":%d,"max_us":%d,"mean_us":%.1f,"non2xx":%d,"connect_errors":%d,"read_errors":%d,'
      .. '"write_errors":%d,"timeouts":%d}\n',
    summary.requests, summary.duration, summary.bytes, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9), latency.max, latency.mean, errors.status,
    errors.connect, errors.read, errors.write, errors.timeout))
end
