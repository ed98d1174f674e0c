//! Carts in Redis: one hash per cart (`{cart:<id>}`), changed only by Lua scripts so that
//! concurrent writers never lose an update or exceed a limit; every write refreshes the TTL.
//!
//! Fields: `_owner` (`guest` or `customer:<id>`), `_ttl` (ms), `_updated` (ms since epoch),
//! `_lines`, `_seq`, `_sealed` (merge target), `_merged:<source>` (merge markers),
//! `_ordered:<order>` (an order's lines taken out), and one `l:<product id>` per line holding
//! `<quantity>|<sequence>` (sequence keeps lines in order) with its `t:<product id>`, the time
//! (ms) the line was added (absent on lines from before it was kept).

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deadpool_redis::{redis, Pool};
use ecom_carts::model::{CartId, CartLimits, CartLine, CartOwner, StoredCart};
use ecom_carts::ports::{CartStore, CartStoreError, WriteScope};
use ecom_kernel::{CustomerId, InfraError, OrderId, ProductId};

use crate::shared::{millis, SharedConnection};
use crate::RedisKeys;

/// Sets (mode `set`) or adds to (mode `add`) a line within the limits.
/// ARGV: product, quantity, available, max_quantity, max_lines, now_ms, mode, expected owner.
/// Returns the cart's fields after the write, or `{'!', code[, detail]}`.
const WRITE_LINE: &str = r"
if redis.call('HGET', KEYS[1], '_owner') ~= ARGV[8] or redis.call('HEXISTS', KEYS[1], '_sealed') == 1 then
  return {'!', '-1'}
end
local field = 'l:' .. ARGV[1]
local cur = redis.call('HGET', KEYS[1], field)
local qty, seq = 0, nil
if cur then
  local sep = string.find(cur, '|', 1, true)
  qty = tonumber(string.sub(cur, 1, sep - 1))
  seq = string.sub(cur, sep + 1)
end
local new = tonumber(ARGV[2])
if ARGV[7] == 'add' then new = qty + new end
if new > tonumber(ARGV[4]) then return {'!', '-2'} end
if new > tonumber(ARGV[3]) then return {'!', '-3', tostring(new)} end
if not cur then
  if tonumber(redis.call('HGET', KEYS[1], '_lines') or '0') >= tonumber(ARGV[5]) then return {'!', '-4'} end
  redis.call('HINCRBY', KEYS[1], '_lines', 1)
  seq = redis.call('HINCRBY', KEYS[1], '_seq', 1)
  redis.call('HSET', KEYS[1], 't:' .. ARGV[1], ARGV[6])
end
redis.call('HSET', KEYS[1], field, new .. '|' .. seq, '_updated', ARGV[6])
redis.call('PEXPIRE', KEYS[1], redis.call('HGET', KEYS[1], '_ttl'))
return redis.call('HGETALL', KEYS[1])";

/// ARGV: product (empty = every line), now_ms, expected owner. Returns the fields after the write.
const REMOVE_LINES: &str = r"
if redis.call('HGET', KEYS[1], '_owner') ~= ARGV[3] or redis.call('HEXISTS', KEYS[1], '_sealed') == 1 then
  return {'!', '-1'}
end
if ARGV[1] ~= '' then
  if redis.call('HDEL', KEYS[1], 'l:' .. ARGV[1]) == 1 then redis.call('HINCRBY', KEYS[1], '_lines', -1) end
  redis.call('HDEL', KEYS[1], 't:' .. ARGV[1])
else
  for _, f in ipairs(redis.call('HKEYS', KEYS[1])) do
    local kind = string.sub(f, 1, 2)
    if kind == 'l:' or kind == 't:' then redis.call('HDEL', KEYS[1], f) end
  end
  redis.call('HSET', KEYS[1], '_lines', 0)
end
redis.call('HSET', KEYS[1], '_updated', ARGV[2])
redis.call('PEXPIRE', KEYS[1], redis.call('HGET', KEYS[1], '_ttl'))
return redis.call('HGETALL', KEYS[1])";

/// ARGV: order id, now_ms, expected owner, the order's placing time (ms), then (product,
/// quantity) pairs. Returns the fields after the write, or `{'!', '-1'}`. The `_ordered:<order>`
/// marker makes it once per order; a line added after the order was placed is left alone.
const TAKE_ORDERED: &str = r"
if redis.call('HGET', KEYS[1], '_owner') ~= ARGV[3] or redis.call('HEXISTS', KEYS[1], '_sealed') == 1 then
  return {'!', '-1'}
end
local marker = '_ordered:' .. ARGV[1]
local placed = tonumber(ARGV[4])
if redis.call('HEXISTS', KEYS[1], marker) == 0 then
  for i = 5, #ARGV, 2 do
    local field = 'l:' .. ARGV[i]
    local cur = redis.call('HGET', KEYS[1], field)
    local added = tonumber(redis.call('HGET', KEYS[1], 't:' .. ARGV[i]) or '0')
    if cur and added <= placed then
      local sep = string.find(cur, '|', 1, true)
      local left = tonumber(string.sub(cur, 1, sep - 1)) - tonumber(ARGV[i + 1])
      if left > 0 then
        redis.call('HSET', KEYS[1], field, left .. string.sub(cur, sep))
      else
        redis.call('HDEL', KEYS[1], field, 't:' .. ARGV[i])
        redis.call('HINCRBY', KEYS[1], '_lines', -1)
      end
    end
  end
  redis.call('HSET', KEYS[1], marker, 1, '_updated', ARGV[2])
  redis.call('PEXPIRE', KEYS[1], redis.call('HGET', KEYS[1], '_ttl'))
end
return redis.call('HGETALL', KEYS[1])";

/// ARGV: target cart id. Returns the cart's fields, or nil.
const SEAL: &str = r"
if not redis.call('HGET', KEYS[1], '_owner') then return nil end
local sealed = redis.call('HGET', KEYS[1], '_sealed')
if sealed and sealed ~= ARGV[1] then return nil end
redis.call('HSET', KEYS[1], '_sealed', ARGV[1])
return redis.call('HGETALL', KEYS[1])";

/// ARGV: source, now_ms, max_quantity, max_lines, then (product, quantity, cap) triples.
const MERGE: &str = r"
if not redis.call('HGET', KEYS[1], '_owner') or redis.call('HEXISTS', KEYS[1], '_sealed') == 1 then return -1 end
local marker = '_merged:' .. ARGV[1]
if redis.call('HEXISTS', KEYS[1], marker) == 1 then return 0 end
local max_qty, max_lines = tonumber(ARGV[3]), tonumber(ARGV[4])
for i = 5, #ARGV, 3 do
  local field = 'l:' .. ARGV[i]
  local add, cap = tonumber(ARGV[i + 1]), math.min(tonumber(ARGV[i + 2]), max_qty)
  local cur = redis.call('HGET', KEYS[1], field)
  if cur then
    local sep = string.find(cur, '|', 1, true)
    local qty, seq = tonumber(string.sub(cur, 1, sep - 1)), string.sub(cur, sep + 1)
    local new = math.max(qty, math.min(qty + add, cap))
    redis.call('HSET', KEYS[1], field, new .. '|' .. seq)
  elseif tonumber(redis.call('HGET', KEYS[1], '_lines') or '0') < max_lines and cap > 0 then
    redis.call('HINCRBY', KEYS[1], '_lines', 1)
    local seq = redis.call('HINCRBY', KEYS[1], '_seq', 1)
    redis.call('HSET', KEYS[1], field, math.min(add, cap) .. '|' .. seq, 't:' .. ARGV[i], ARGV[2])
  end
end
redis.call('HSET', KEYS[1], marker, 1, '_updated', ARGV[2])
redis.call('PEXPIRE', KEYS[1], redis.call('HGET', KEYS[1], '_ttl'))
return 1";

#[derive(Debug, Clone, Copy)]
pub struct CartTtl {
    pub customer: Duration,
    pub guest: Duration,
}

impl Default for CartTtl {
    fn default() -> Self {
        Self { customer: Duration::from_secs(30 * 24 * 3600), guest: Duration::from_secs(7 * 24 * 3600) }
    }
}

pub struct RedisCartStore {
    redis: SharedConnection,
    keys: RedisKeys,
    ttl: CartTtl,
    write_line: redis::Script,
    remove_lines: redis::Script,
    take_ordered: redis::Script,
    seal: redis::Script,
    merge: redis::Script,
}

fn corrupt(what: &str) -> InfraError {
    InfraError::unexpected(format!("corrupt cart in redis: {what}"))
}

fn parse_cart(id: CartId, fields: HashMap<String, String>) -> Result<Option<StoredCart>, InfraError> {
    let Some(owner) = fields.get("_owner") else { return Ok(None) };
    let owner = match owner.strip_prefix("customer:") {
        Some(customer) => CartOwner::Customer(customer.parse::<CustomerId>().map_err(|_| corrupt("owner"))?),
        None if owner == "guest" => CartOwner::Guest,
        None => return Err(corrupt("owner")),
    };
    let mut lines = Vec::new();
    for (field, value) in &fields {
        let Some(product) = field.strip_prefix("l:") else { continue };
        let (qty, seq) = value.split_once('|').ok_or_else(|| corrupt("line"))?;
        let line = CartLine {
            product_id: product.parse::<ProductId>().map_err(|_| corrupt("line product"))?,
            quantity: qty.parse().map_err(|_| corrupt("line quantity"))?,
        };
        lines.push((seq.parse::<u64>().map_err(|_| corrupt("line sequence"))?, line));
    }
    lines.sort_unstable_by_key(|(seq, _)| *seq);
    let updated_ms = fields.get("_updated").and_then(|v| v.parse::<i64>().ok()).unwrap_or(0);
    Ok(Some(StoredCart {
        id,
        owner,
        lines: lines.into_iter().map(|(_, l)| l).collect(),
        updated_at: DateTime::from_timestamp_millis(updated_ms).unwrap_or_default(),
        sealed_into: fields.get("_sealed").and_then(|s| s.parse::<CartId>().ok()),
    }))
}

/// The `_owner` field's value for an owner.
fn owner_value(owner: CartOwner) -> String {
    match owner {
        CartOwner::Guest => "guest".to_owned(),
        CartOwner::Customer(id) => format!("customer:{id}"),
    }
}

/// A write script's reply: the cart's fields after the write, or `{'!', …}` when the cart is not
/// the caller's (or sealed).
fn written_cart(id: CartId, reply: Vec<String>) -> Result<StoredCart, CartStoreError> {
    if reply.first().map(String::as_str) == Some("!") {
        return Err(CartStoreError::NotFound);
    }
    cart_from_reply(id, reply)
}

/// A script's HGETALL reply (field, value, field, value, …) as a cart.
fn cart_from_reply(id: CartId, reply: Vec<String>) -> Result<StoredCart, CartStoreError> {
    let mut fields = HashMap::with_capacity(reply.len() / 2);
    let mut it = reply.into_iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        fields.insert(k, v);
    }
    parse_cart(id, fields)?.ok_or(CartStoreError::NotFound)
}

impl RedisCartStore {
    pub fn new(pool: Pool, keys: RedisKeys, ttl: CartTtl) -> Self {
        Self {
            redis: SharedConnection::new(pool),
            keys,
            ttl,
            write_line: redis::Script::new(WRITE_LINE),
            remove_lines: redis::Script::new(REMOVE_LINES),
            take_ordered: redis::Script::new(TAKE_ORDERED),
            seal: redis::Script::new(SEAL),
            merge: redis::Script::new(MERGE),
        }
    }

    async fn create(&self, id: CartId, owner: &str, ttl: Duration, now: DateTime<Utc>) -> Result<(), InfraError> {
        let key = self.keys.cart(&id.to_string());
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("HSETNX")
            .arg(&key)
            .arg("_owner")
            .arg(owner)
            .ignore()
            .cmd("HSETNX")
            .arg(&key)
            .arg("_ttl")
            .arg(millis(ttl))
            .ignore()
            .cmd("HSETNX")
            .arg(&key)
            .arg("_lines")
            .arg(0)
            .ignore()
            .cmd("HSETNX")
            .arg(&key)
            .arg("_seq")
            .arg(0)
            .ignore()
            .cmd("HSETNX")
            .arg(&key)
            .arg("_updated")
            .arg(now.timestamp_millis())
            .ignore()
            .pexpire(&key, i64::try_from(millis(ttl)).unwrap_or(i64::MAX))
            .ignore();
        self.redis.pipe::<()>(&pipe).await
    }

    async fn write(
        &self,
        mode: &str,
        scope: &WriteScope,
        line: CartLine,
        available: u32,
        limits: CartLimits,
    ) -> Result<StoredCart, CartStoreError> {
        let (id, owner, now) = (scope.id, scope.owner, scope.now);
        let mut call = self.write_line.prepare_invoke();
        call.key(self.keys.cart(&id.to_string()))
            .arg(line.product_id.to_string())
            .arg(line.quantity)
            .arg(available)
            .arg(limits.max_quantity)
            .arg(limits.max_lines)
            .arg(now.timestamp_millis())
            .arg(mode)
            .arg(owner_value(owner));
        let reply: Vec<String> = self.redis.script(&call).await?;
        match reply.first().map(String::as_str) {
            Some("!") => Err(match reply.get(1).map(String::as_str) {
                Some("-2") => CartStoreError::QuantityLimit,
                Some("-3") => CartStoreError::Insufficient {
                    requested: reply.get(2).and_then(|r| r.parse().ok()).unwrap_or(u32::MAX),
                    available,
                },
                Some("-4") => CartStoreError::LineLimit,
                _ => CartStoreError::NotFound,
            }),
            _ => {
                if let CartOwner::Customer(customer) = owner {
                    self.keep_pointer(customer, id).await?;
                }
                cart_from_reply(id, reply)
            }
        }
    }

    /// A customer filling their cart keeps it theirs: the pointer to the customer's cart lives
    /// as long as the cart (each write renews both), and comes back to this cart if it expired
    /// meanwhile (the customer never asked for their cart again for a whole TTL). Otherwise the
    /// next `POST /v1/carts` would find no pointer and hand out a new, empty cart.
    async fn keep_pointer(&self, customer: CustomerId, id: CartId) -> Result<(), InfraError> {
        let pointer = self.keys.customer_cart(&customer.to_string());
        let ttl = i64::try_from(millis(self.ttl.customer)).unwrap_or(i64::MAX);
        let mut pipe = redis::pipe();
        pipe.cmd("SET").arg(&pointer).arg(id.to_string()).arg("NX").arg("PX").arg(ttl).ignore();
        pipe.pexpire(&pointer, ttl).ignore();
        self.redis.pipe::<()>(&pipe).await
    }

    async fn remove_lines(&self, scope: &WriteScope, product: Option<ProductId>) -> Result<StoredCart, CartStoreError> {
        let (id, owner, now) = (scope.id, scope.owner, scope.now);
        let mut call = self.remove_lines.prepare_invoke();
        call.key(self.keys.cart(&id.to_string()))
            .arg(product.map(|p| p.to_string()).unwrap_or_default())
            .arg(now.timestamp_millis())
            .arg(owner_value(owner));
        written_cart(id, self.redis.script(&call).await?)
    }
}

#[async_trait]
impl CartStore for RedisCartStore {
    async fn create_guest(&self, id: CartId, now: DateTime<Utc>) -> Result<(), InfraError> {
        self.create(id, "guest", self.ttl.guest, now).await
    }

    async fn customer_cart(
        &self,
        customer: CustomerId,
        candidate: CartId,
        now: DateTime<Utc>,
    ) -> Result<CartId, InfraError> {
        let pointer = self.keys.customer_cart(&customer.to_string());
        let ttl = millis(self.ttl.customer);
        // The pointer decides which cart is the customer's; concurrent callers agree on it.
        let claimed: Option<String> = self
            .redis
            .cmd(redis::cmd("SET").arg(&pointer).arg(candidate.to_string()).arg("NX").arg("GET").arg("PX").arg(ttl))
            .await?;
        let id = match claimed {
            None => candidate,
            Some(existing) => {
                self.redis.cmd::<()>(redis::cmd("PEXPIRE").arg(&pointer).arg(ttl)).await?;
                existing.parse::<CartId>().map_err(|_| corrupt("customer cart pointer"))?
            }
        };
        // Creates the cart, or re-creates it empty if it expired while the pointer lived.
        self.create(id, &owner_value(CartOwner::Customer(customer)), self.ttl.customer, now).await?;
        Ok(id)
    }

    async fn load(&self, id: CartId) -> Result<Option<StoredCart>, InfraError> {
        let fields: HashMap<String, String> =
            self.redis.cmd(redis::cmd("HGETALL").arg(self.keys.cart(&id.to_string()))).await?;
        parse_cart(id, fields)
    }

    async fn add(
        &self,
        scope: &WriteScope,
        line: CartLine,
        available: u32,
        limits: CartLimits,
    ) -> Result<StoredCart, CartStoreError> {
        self.write("add", scope, line, available, limits).await
    }

    async fn set(
        &self,
        scope: &WriteScope,
        line: CartLine,
        available: u32,
        limits: CartLimits,
    ) -> Result<StoredCart, CartStoreError> {
        self.write("set", scope, line, available, limits).await
    }

    async fn remove(&self, scope: &WriteScope, product: ProductId) -> Result<StoredCart, CartStoreError> {
        self.remove_lines(scope, Some(product)).await
    }

    async fn clear(&self, scope: &WriteScope) -> Result<StoredCart, CartStoreError> {
        self.remove_lines(scope, None).await
    }

    async fn take_ordered(
        &self,
        scope: &WriteScope,
        order: OrderId,
        placed_at: DateTime<Utc>,
        ordered: &[CartLine],
    ) -> Result<StoredCart, CartStoreError> {
        let mut call = self.take_ordered.prepare_invoke();
        call.key(self.keys.cart(&scope.id.to_string()))
            .arg(order.to_string())
            .arg(scope.now.timestamp_millis())
            .arg(owner_value(scope.owner))
            .arg(placed_at.timestamp_millis());
        for line in ordered {
            call.arg(line.product_id.to_string()).arg(line.quantity);
        }
        written_cart(scope.id, self.redis.script(&call).await?)
    }

    async fn seal(&self, id: CartId, into: CartId) -> Result<Option<StoredCart>, InfraError> {
        let mut call = self.seal.prepare_invoke();
        call.key(self.keys.cart(&id.to_string())).arg(into.to_string());
        let fields: Option<HashMap<String, String>> = self.redis.script(&call).await?;
        match fields {
            Some(fields) => parse_cart(id, fields),
            None => Ok(None),
        }
    }

    async fn merge(
        &self,
        into: CartId,
        source: CartId,
        lines: &[(CartLine, u32)],
        limits: CartLimits,
        now: DateTime<Utc>,
    ) -> Result<(), CartStoreError> {
        let mut call = self.merge.prepare_invoke();
        call.key(self.keys.cart(&into.to_string()))
            .arg(source.to_string())
            .arg(now.timestamp_millis())
            .arg(limits.max_quantity)
            .arg(limits.max_lines);
        for (line, cap) in lines {
            call.arg(line.product_id.to_string()).arg(line.quantity).arg(*cap);
        }
        match self.redis.script::<i64>(&call).await? {
            -1 => Err(CartStoreError::NotFound),
            _ => Ok(()),
        }
    }

    async fn retire(&self, id: CartId, for_: Duration) -> Result<(), InfraError> {
        let ms = i64::try_from(millis(for_)).unwrap_or(i64::MAX);
        // LT: never longer than it had left (a retried merge does not keep it alive).
        self.redis.cmd::<()>(redis::cmd("PEXPIRE").arg(self.keys.cart(&id.to_string())).arg(ms).arg("LT")).await
    }
}
