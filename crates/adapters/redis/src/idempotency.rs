//! Idempotent requests in Redis: one hash per scope, changed only by Lua scripts so that the
//! lease is atomic (`SET NX` semantics) and only its holder stores or frees it.

use std::time::Duration;

use async_trait::async_trait;
use deadpool_redis::{redis, Pool};
use ecom_kernel::idempotency::{Begin, IdempotencyStore, StoredResponse};
use ecom_kernel::InfraError;

use crate::shared::{millis, SharedConnection};
use crate::RedisKeys;

/// KEYS: record. ARGV: fingerprint, token, lease_ms.
/// Returns {'started'} | {'running', pttl} | {'mismatch'} | {'done', status, headers, body}.
const BEGIN: &str = r"
local state = redis.call('HGET', KEYS[1], 'state')
if not state then
  redis.call('HSET', KEYS[1], 'state', 'running', 'fp', ARGV[1], 'token', ARGV[2])
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return {'started'}
end
if redis.call('HGET', KEYS[1], 'fp') ~= ARGV[1] then return {'mismatch'} end
if state == 'running' then return {'running', tostring(redis.call('PTTL', KEYS[1]))} end
local r = redis.call('HMGET', KEYS[1], 'status', 'headers', 'body')
return {'done', r[1], r[2], r[3]}";

/// KEYS: record. ARGV: token, status, headers, body, ttl_ms.
const COMPLETE: &str = r"
if redis.call('HGET', KEYS[1], 'token') ~= ARGV[1] or redis.call('HGET', KEYS[1], 'state') ~= 'running' then
  return 0
end
redis.call('HSET', KEYS[1], 'state', 'done', 'status', ARGV[2], 'headers', ARGV[3], 'body', ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return 1";

/// KEYS: record. ARGV: token.
const RELEASE: &str = r"
if redis.call('HGET', KEYS[1], 'token') == ARGV[1] and redis.call('HGET', KEYS[1], 'state') == 'running' then
  return redis.call('DEL', KEYS[1])
end
return 0";

pub struct RedisIdempotencyStore {
    redis: SharedConnection,
    keys: RedisKeys,
    begin: redis::Script,
    complete: redis::Script,
    release: redis::Script,
}

impl RedisIdempotencyStore {
    pub fn new(pool: Pool, keys: RedisKeys) -> Self {
        Self {
            redis: SharedConnection::new(pool),
            keys,
            begin: redis::Script::new(BEGIN),
            complete: redis::Script::new(COMPLETE),
            release: redis::Script::new(RELEASE),
        }
    }
}

fn corrupt(what: &str) -> InfraError {
    InfraError::unexpected(format!("corrupt idempotency record: {what}"))
}

#[async_trait]
impl IdempotencyStore for RedisIdempotencyStore {
    async fn begin(&self, scope: &str, fingerprint: &str, token: &str, lease: Duration) -> Result<Begin, InfraError> {
        let mut call = self.begin.prepare_invoke();
        call.key(self.keys.idempotency(scope)).arg(fingerprint).arg(token).arg(millis(lease).max(1));
        let reply: Vec<Vec<u8>> = self.redis.script(&call).await?;
        let tag = reply.first().map(Vec::as_slice).unwrap_or_default();
        Ok(match tag {
            b"started" => Begin::Started,
            b"mismatch" => Begin::Mismatch,
            b"running" => {
                let ms = reply.get(1).and_then(|v| std::str::from_utf8(v).ok()).and_then(|v| v.parse::<u64>().ok());
                Begin::InProgress { retry_after: Duration::from_millis(ms.unwrap_or(1000).clamp(1000, 60_000)) }
            }
            b"done" => {
                let status = reply
                    .get(1)
                    .and_then(|v| std::str::from_utf8(v).ok())
                    .and_then(|v| v.parse::<u16>().ok())
                    .ok_or_else(|| corrupt("status"))?;
                let headers: Vec<(String, String)> =
                    serde_json::from_slice(reply.get(2).map(Vec::as_slice).unwrap_or_default())
                        .map_err(|_| corrupt("headers"))?;
                let body = reply.get(3).cloned().unwrap_or_default();
                Begin::Completed(StoredResponse { status, headers, body })
            }
            _ => return Err(corrupt("state")),
        })
    }

    async fn complete(
        &self,
        scope: &str,
        token: &str,
        response: &StoredResponse,
        ttl: Duration,
    ) -> Result<(), InfraError> {
        let headers = serde_json::to_vec(&response.headers).map_err(|_| corrupt("headers"))?;
        let mut call = self.complete.prepare_invoke();
        call.key(self.keys.idempotency(scope))
            .arg(token)
            .arg(response.status)
            .arg(headers)
            .arg(response.body.as_slice())
            .arg(millis(ttl).max(1));
        let _stored: i64 = self.redis.script(&call).await?;
        Ok(())
    }

    async fn release(&self, scope: &str, token: &str) -> Result<(), InfraError> {
        let mut call = self.release.prepare_invoke();
        call.key(self.keys.idempotency(scope)).arg(token);
        let _released: i64 = self.redis.script(&call).await?;
        Ok(())
    }
}
