-- The measured phase of `loadtest.scenarios.cart_churn` (add / view) and `read_heavy`, sent
-- by wrk (https://github.com/wg/wrk, LuaJIT) instead of the Python generator: see
-- `loadtest.wrk`, which prepares the carts, writes the data file and reads the JSON line
-- `done` prints.
--
-- Arguments (after `--`): the data file (one cart per line: cart id, token, then product id
-- and variant id of each of its items, separated by spaces), the share of requests that add
-- one unit of one of the cart's items (0 to 1; the others view the cart), a random seed and
-- the number of wrk threads. Thread k takes the carts whose line number is k modulo the
-- threads, in a shuffled order, round after round: a cart comes round again only after all
-- of that thread's carts, so no two of its connections use one cart at once while it has
-- more carts than connections (as the Python generator's "a random cart nobody is using").

local threads, next_id = {}, 0

function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

local carts, order, position = {}, {}, 0
local add_share = 0.6
adds, views = 0, 0

local function shuffle(list)
  for i = #list, 2, -1 do
    local j = math.random(i)
    list[i], list[j] = list[j], list[i]
  end
end

function init(args)
  local path, share, seed, count = args[1], tonumber(args[2]), tonumber(args[3]), tonumber(args[4])
  add_share = share
  math.randomseed(seed + id)
  local n = 0
  for line in io.lines(path) do
    if n % count == id then
      local fields = {}
      for word in line:gmatch("%S+") do table.insert(fields, word) end
      local cart = {
        view = "/v1/carts/" .. fields[1],
        add = "/v1/carts/" .. fields[1] .. "/items",
        headers = {["Authorization"] = "Bearer " .. fields[2]},
        json = {["Authorization"] = "Bearer " .. fields[2],
                ["Content-Type"] = "application/json"},
        bodies = {},
      }
      for k = 3, #fields - 1, 2 do
        table.insert(cart.bodies, '{"product_id":"' .. fields[k] .. '","variant_id":"' ..
                     fields[k + 1] .. '","quantity":1}')
      end
      table.insert(carts, cart)
      table.insert(order, #carts)
    end
    n = n + 1
  end
  shuffle(order)
end

function request()
  position = position + 1
  if position > #order then
    position = 1
    shuffle(order)
  end
  local cart = carts[order[position]]
  if #cart.bodies > 0 and math.random() < add_share then
    adds = adds + 1
    return wrk.format("POST", cart.add, cart.json, cart.bodies[math.random(#cart.bodies)])
  end
  views = views + 1
  return wrk.format("GET", cart.view, cart.headers)
end

function done(summary, latency, requests)
  local sent_adds, sent_views = 0, 0
  for _, thread in ipairs(threads) do
    sent_adds = sent_adds + thread:get("adds")
    sent_views = sent_views + thread:get("views")
  end
  local e = summary.errors
  io.write(string.format(
    '\nWRK_RESULT {"requests":%d,"duration_us":%d,"bytes":%d,"non_2xx_3xx":%d,' ..
    '"connect_errors":%d,"read_errors":%d,"write_errors":%d,"timeouts":%d,' ..
    '"p50_us":%d,"p99_us":%d,"p999_us":%d,"max_us":%d,"adds":%d,"views":%d}\n',
    summary.requests, summary.duration, summary.bytes, e.status, e.connect, e.read, e.write,
    e.timeout, latency:percentile(50), latency:percentile(99), latency:percentile(99.9),
    latency.max, sent_adds, sent_views))
end
