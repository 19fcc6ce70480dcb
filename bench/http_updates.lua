-- wrk 4.1 script for bench/http_updates.py (not meant to be run by hand,
-- although it can be):
--
--   wrk ... -s bench/http_updates.lua URL -- update USERS_FILE RESULT_FILE THREADS
--   wrk ... -s bench/http_updates.lua URL -- myip EXPECTED_BODY RESULT_FILE
--
-- update: every request is GET /nic/update?hostname=<name>&myip=<addr> with
--   Basic auth. USERS_FILE has one line per user, tab-separated:
--   user id, host name, base64 of "id:password", address A, address B.
--   Thread k (1..THREADS) owns the users k, k+THREADS, k+2*THREADS, ... and
--   cycles through them round-robin; each user's requests alternate A, B, A,
--   ... so no request is "nochg". (wrk's Lua API has no notion of which
--   connection a request goes to, so "one user per connection" is
--   approximated by giving each thread at least as many users as it has
--   connections: requests in flight at the same time are for different
--   users unless one request is much slower than the others.)
-- myip: GET of the URL's path; the body must be EXPECTED_BODY.
--
-- response() counts bodies starting with "good", "nochg" and anything else;
-- done() prints the counts and writes RESULT_FILE (one "key value..." line
-- each) for the Python driver: totals, latency percentiles, and per user the
-- requests sent and acknowledged, the last acknowledged address and whether
-- two of its requests were ever in flight at the same time.

local threads = {}

function setup(thread)
   table.insert(threads, thread)
   thread:set("id", #threads)
end

-- per-thread state (each wrk thread has its own Lua state)
mode = nil
result_file = nil
good, nochg, other = 0, 0, 0
statuses = {}          -- status code -> count
samples = {}           -- a few non-"good" bodies, for the report
users = {}             -- this thread's users: {id=, auth=, addr={A, B}, path={..}}
sent, acked, last, overlapped = {}, {}, {}, {}
local by_address = {}  -- address -> user id (both addresses of each user)
local next_user = 0
local myip_request, expected_body

local function split(line)
   local fields = {}
   for field in string.gmatch(line, "[^\t]+") do
      table.insert(fields, field)
   end
   return fields
end

function init(args)
   -- args[0] is the URL; ours follow "--"
   mode = args[1]
   if mode == "update" then
      local users_file, nthreads = args[2], tonumber(args[4])
      result_file = args[3]
      local index = 0
      for line in io.lines(users_file) do
         index = index + 1
         if (index - 1) % nthreads == id - 1 then
            local f = split(line)
            local user = {
               id = f[1],
               auth = "Basic " .. f[3],
               addr = {f[4], f[5]},
               path = {
                  "/nic/update?hostname=" .. f[2] .. "&myip=" .. f[4],
                  "/nic/update?hostname=" .. f[2] .. "&myip=" .. f[5],
               },
            }
            table.insert(users, user)
            by_address[f[4]] = f[1]
            by_address[f[5]] = f[1]
            sent[f[1]], acked[f[1]], overlapped[f[1]] = 0, 0, 0
            last[f[1]] = "-"
         end
      end
      if #users == 0 then
         error("thread " .. id .. " has no users")
      end
   elseif mode == "myip" then
      expected_body = args[2]
      result_file = args[3]
      myip_request = wrk.format("GET", wrk.path)
   else
      error("mode must be update or myip")
   end
end

function request()
   if mode == "myip" then
      return myip_request
   end
   next_user = next_user % #users + 1
   local user = users[next_user]
   local n = sent[user.id]
   if n > acked[user.id] then
      overlapped[user.id] = 1  -- its previous request is still in flight
   end
   sent[user.id] = n + 1
   return wrk.format("GET", user.path[n % 2 + 1], {Authorization = user.auth})
end

function response(status, headers, body)
   statuses[status] = (statuses[status] or 0) + 1
   if mode == "myip" then
      if status == 200 and body == expected_body then
         good = good + 1
      else
         other = other + 1
         if #samples < 5 then table.insert(samples, status .. " " .. (body or "")) end
      end
      return
   end
   body = body or ""
   if string.sub(body, 1, 5) == "good " then
      good = good + 1
      local address = string.match(body, "^good ([^%s]+)")
      local user_id = address and by_address[address]
      if user_id then
         acked[user_id] = acked[user_id] + 1
         last[user_id] = address
      end
   elseif string.sub(body, 1, 5) == "nochg" then
      nochg = nochg + 1
   else
      other = other + 1
      if #samples < 5 then table.insert(samples, status .. " " .. body) end
   end
end

function done(summary, latency, requests)
   local total = {good = 0, nochg = 0, other = 0}
   local out = assert(io.open(threads[1]:get("result_file"), "w"))
   for _, thread in ipairs(threads) do
      for _, key in ipairs({"good", "nochg", "other"}) do
         total[key] = total[key] + thread:get(key)
      end
      for status, count in pairs(thread:get("statuses")) do
         out:write("status ", status, " ", count, "\n")
      end
      for _, sample in ipairs(thread:get("samples")) do
         out:write("sample ", (string.gsub(sample, "\n", "\\n")), "\n")
      end
      if thread:get("mode") == "update" then
         local t_sent, t_acked = thread:get("sent"), thread:get("acked")
         local t_last, t_overlapped = thread:get("last"), thread:get("overlapped")
         for user_id, n in pairs(t_sent) do
            out:write("user ", user_id, " ", n, " ", t_acked[user_id], " ",
                      t_last[user_id], " ", t_overlapped[user_id], "\n")
         end
      end
   end
   for _, key in ipairs({"good", "nochg", "other"}) do
      out:write("count ", key, " ", total[key], "\n")
   end
   local e = summary.errors
   out:write("summary duration_us ", summary.duration, "\n")
   out:write("summary requests ", summary.requests, "\n")
   out:write("summary bytes ", summary.bytes, "\n")
   out:write("errors connect ", e.connect, "\n")
   out:write("errors read ", e.read, "\n")
   out:write("errors write ", e.write, "\n")
   out:write("errors status ", e.status, "\n")
   out:write("errors timeout ", e.timeout, "\n")
   out:write("latency_us mean ", latency.mean, "\n")
   out:write("latency_us max ", latency.max, "\n")
   for _, p in ipairs({50, 75, 90, 99, 99.9}) do
      out:write("latency_us p", p, " ", latency:percentile(p), "\n")
   end
   out:close()
   io.write(string.format("responses: %d good, %d nochg, %d other\n",
                          total.good, total.nochg, total.other))
end
