-- Lease a message (GET ?lease=600), then ack it with the next request of the
-- same wrk thread. By hand: wrk -t2 -c100 -d5s -s lease.lua http://HOST:PORT/
-- against a server whose queue "bench" is pre-filled (docs/PERFORMANCE.md).
local receipts = {}
request = function()
  local r = table.remove(receipts)
  if r then
    return wrk.format("POST", "/api/queue/bench/ack", {["X-Receipt"] = r}, "")
  end
  return wrk.format("GET", "/api/queue/bench?lease=600")
end
response = function(status, headers, body)
  local r = headers["X-Receipt"]
  if r then table.insert(receipts, r) end
end
