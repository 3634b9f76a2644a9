"""The Lua scripts of lua-peer: each cart mutation, and a whole checkout, in one Redis call.

Key layout under a prefix `P` (single Redis instance: the checkout script names the stock
and order keys it derives from the cart, which Redis Cluster would refuse):

    P:v:{variant_id}   hash    product_id, name, price (minor units), currency
    P:p:{product_id}   string  the product body (JSON), for listings
    P:products:all     zset    every product id (score 0), for paged listings
    P:s:{variant_id}   string  units on hand
    P:c:{cart_id}      hash    owner, status, currency, version, created_at, updated_at,
                               expires_at, n (lines), seq (lines ever added), and per line
                               d:{line_id} (JSON: product_id, variant_id, name, unit_price,
                               currency, options, added_at, seq), q:{line_id} (units),
                               t:{line_id} (updated_at)
    P:o:{order_id}     hash    the cart's fields at checkout plus order_id, paid_at
    P:i:{cart_id}:{key} string the order id a checkout with Idempotency-Key `key` made

Every script answers ``{"ok", fields}``, the cart hash as ONE JSON object of its fields
(one bulk string: the client decodes it with orjson instead of parsing a long RESP array in
Python), or ``{"e", status, code, message}``; the checkout adds ``{"replay", order fields}``
(JSON too) and ``{"short", {variant, requested, available, ...}}``.
"""

from __future__ import annotations

#: Shared prologue: `as_json(key)` (a hash as one JSON object); the cart must exist and be
#: the caller's. KEYS[1] cart; ARGV[1] caller sub, ARGV[2] "1" when the token names this cart.
_GUARD = """
local function as_json(key)
  local flat = redis.call('HGETALL', key)
  local fields = {}
  for i = 1, #flat, 2 do fields[flat[i]] = flat[i + 1] end
  return cjson.encode(fields)
end
local cart = KEYS[1]
local owner = redis.call('HGET', cart, 'owner')
if not owner or (ARGV[2] ~= '1' and owner ~= ARGV[1]) then
  return {'e', 404, 'cart_not_found', 'no such cart'}
end
"""

#: The cart, read only. KEYS[1] cart; ARGV[1..2] as in the guard.
VIEW_LUA = _GUARD + """
return {'ok', as_json(cart)}
"""

#: Mutations need an active cart.
_ACTIVE = """
if redis.call('HGET', cart, 'status') ~= 'active' then
  return {'e', 409, 'cart_not_active', 'the cart is not active'}
end
"""

#: Add `quantity` units of a variant (a new line, or more units on its line), refused with
#: 409 out_of_stock beyond the units on hand, as the engine refuses an add beyond what is
#: available: a flash sale's late buyers stop at the add in both systems.
#: KEYS[1] cart, KEYS[2] variant hash, KEYS[3] product body, KEYS[4] the variant's units on
#: hand; ARGV[3] line id, ARGV[4]
#: product id, ARGV[5] units, ARGV[6] now (RFC 3339), ARGV[7] options (JSON), ARGV[8] cart
#: TTL seconds, ARGV[9] max lines, ARGV[10] max units per line, ARGV[11] variant id.
ADD_LUA = _GUARD + _ACTIVE + """
local v = redis.call('HMGET', KEYS[2], 'product_id', 'name', 'price', 'currency')
if not v[1] or v[1] ~= ARGV[4] then
  if redis.call('EXISTS', KEYS[3]) == 0 then
    return {'e', 404, 'product_not_found', 'no such product'}
  end
  return {'e', 404, 'variant_not_found', 'the product has no such variant'}
end
local lid = ARGV[3]
local n = tonumber(redis.call('HGET', cart, 'n') or '0')
if n > 0 and redis.call('HGET', cart, 'currency') ~= v[4] then
  return {'e', 422, 'currency_mismatch', 'the cart is in another currency'}
end
local q = redis.call('HGET', cart, 'q:' .. lid)
local units = tonumber(ARGV[5])
if q then
  units = units + tonumber(q)
elseif n >= tonumber(ARGV[9]) then
  return {'e', 422, 'too_many_lines', 'a cart holds at most ' .. ARGV[9] .. ' lines'}
end
if units > tonumber(ARGV[10]) then
  return {'e', 422, 'invalid_quantity', 'a line holds at most ' .. ARGV[10] .. ' units'}
end
if units > tonumber(redis.call('GET', KEYS[4]) or '0') then
  return {'e', 409, 'out_of_stock', 'not enough units on hand'}
end
if not q then
  local seq = redis.call('HINCRBY', cart, 'seq', 1)
  local d = cjson.encode({product_id = v[1], variant_id = ARGV[11], name = v[2],
                          unit_price = tonumber(v[3]), currency = v[4],
                          options = ARGV[7], added_at = ARGV[6], seq = seq})
  redis.call('HSET', cart, 'd:' .. lid, d, 'n', n + 1, 'currency', v[4])
end
redis.call('HSET', cart, 'q:' .. lid, units, 't:' .. lid, ARGV[6], 'updated_at', ARGV[6])
redis.call('HINCRBY', cart, 'version', 1)
redis.call('EXPIRE', cart, ARGV[8])
return {'ok', as_json(cart)}
"""

#: Set a line's units; 0 removes the line (PATCH with 0, and DELETE).
#: KEYS[1] cart; ARGV[3] line id, ARGV[4] units, ARGV[5] now, ARGV[6] cart TTL seconds.
SET_LUA = _GUARD + _ACTIVE + """
local lid = ARGV[3]
if redis.call('HEXISTS', cart, 'q:' .. lid) == 0 then
  return {'e', 404, 'line_not_found', 'no such line in this cart'}
end
if tonumber(ARGV[4]) == 0 then
  redis.call('HDEL', cart, 'd:' .. lid, 'q:' .. lid, 't:' .. lid)
  redis.call('HINCRBY', cart, 'n', -1)
  redis.call('HSET', cart, 'updated_at', ARGV[5])
else
  redis.call('HSET', cart, 'q:' .. lid, ARGV[4], 't:' .. lid, ARGV[5], 'updated_at', ARGV[5])
end
redis.call('HINCRBY', cart, 'version', 1)
redis.call('EXPIRE', cart, ARGV[6])
return {'ok', as_json(cart)}
"""

#: A whole checkout, every line or none: replay by Idempotency-Key, check the cart, check
#: every line's stock, refuse a failed payment (nothing taken), take the units, record the
#: order and the key, close the cart.
#: KEYS[1] cart, KEYS[2] idempotency record; ARGV[3] payment outcome (ok, declined, error),
#: ARGV[4] new order id, ARGV[5] now, ARGV[6] record TTL seconds, ARGV[7] key prefix.
CHECKOUT_LUA = _GUARD + """
local prior = redis.call('GET', KEYS[2])
if prior then
  return {'replay', as_json(ARGV[7] .. 'o:' .. prior)}
end
""" + _ACTIVE + """
local fields = redis.call('HGETALL', cart)
local wanted, order = {}, {}
for i = 1, #fields, 2 do
  local name = fields[i]
  if string.sub(name, 1, 2) == 'q:' then
    local d = cjson.decode(redis.call('HGET', cart, 'd:' .. string.sub(name, 3)))
    local variant = d['variant_id']
    if not wanted[variant] then
      wanted[variant] = 0
      table.insert(order, variant)
    end
    wanted[variant] = wanted[variant] + tonumber(fields[i + 1])
  end
end
if #order == 0 then
  return {'e', 409, 'cart_empty', 'the cart has no lines'}
end
local short = {}
for _, variant in ipairs(order) do
  local have = tonumber(redis.call('GET', ARGV[7] .. 's:' .. variant) or '0')
  if have < wanted[variant] then
    table.insert(short, variant)
    table.insert(short, wanted[variant])
    table.insert(short, have)
  end
end
if #short > 0 then return {'short', short} end
if ARGV[3] == 'declined' then return {'e', 402, 'payment_declined', 'the payment was declined'} end
if ARGV[3] ~= 'ok' then return {'e', 503, 'payment_unavailable', 'the payment provider failed'} end
for _, variant in ipairs(order) do
  redis.call('DECRBY', ARGV[7] .. 's:' .. variant, wanted[variant])
end
redis.call('HSET', cart, 'status', 'checked_out', 'updated_at', ARGV[5])
redis.call('HINCRBY', cart, 'version', 1)
local okey = ARGV[7] .. 'o:' .. ARGV[4]
local copy = redis.call('HGETALL', cart)
redis.call('HSET', okey, 'order_id', ARGV[4], 'cart_id', string.sub(cart, #ARGV[7] + 3),
           'paid_at', ARGV[5], unpack(copy))
redis.call('EXPIRE', okey, ARGV[6])
redis.call('SET', KEYS[2], ARGV[4], 'EX', ARGV[6])
return {'ok', as_json(cart)}
"""

#: KEYS[1] stock counter; ARGV[1] delta in units. {1, new} or {0, current} when a negative
#: delta would take the units below zero (refused).
DELTA_LUA = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
local target = current + tonumber(ARGV[1])
if target < 0 and target < current then return {0, current} end
redis.call('SET', KEYS[1], target)
return {1, target}
"""
