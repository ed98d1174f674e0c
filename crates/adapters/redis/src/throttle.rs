//! Login throttling: attempts counted per e-mail and per client address in a window, before the
//! password is checked; a successful attempt is taken back.

use std::time::Duration;

use async_trait::async_trait;
use deadpool_redis::{redis, Pool};
use ecom_identity::ports::{LoginAttempt, LoginThrottle, ThrottleDecision};
use ecom_kernel::InfraError;

use crate::shared::{millis, SharedConnection};
use crate::RedisKeys;

#[derive(Debug, Clone, Copy)]
pub struct ThrottlePolicy {
    /// Unsuccessful attempts allowed for one e-mail within the window before logins are refused.
    pub max_failures_per_email: u32,
    /// Unsuccessful attempts allowed from one client address within the window (e-mail spraying).
    pub max_failures_per_client: u32,
    pub window: Duration,
}

impl Default for ThrottlePolicy {
    fn default() -> Self {
        Self { max_failures_per_email: 5, max_failures_per_client: 50, window: Duration::from_secs(15 * 60) }
    }
}

pub struct RedisLoginThrottle {
    redis: SharedConnection,
    keys: RedisKeys,
    policy: ThrottlePolicy,
    begin: redis::Script,
    uncount: redis::Script,
}

impl RedisLoginThrottle {
    pub fn new(pool: Pool, keys: RedisKeys, policy: ThrottlePolicy) -> Self {
        Self {
            redis: SharedConnection::new(pool),
            keys,
            policy,
            begin: redis::Script::new(BEGIN),
            uncount: redis::Script::new(UNCOUNT),
        }
    }

    fn counters(&self, attempt: &LoginAttempt) -> Vec<(String, u32)> {
        let mut counters =
            vec![(self.keys.login_failures_by_email(attempt.email.as_str()), self.policy.max_failures_per_email)];
        if let Some(client) = &attempt.client {
            counters.push((self.keys.login_failures_by_client(client), self.policy.max_failures_per_client));
        }
        counters
    }
}

/// KEYS: one counter. ARGV: limit, window_ms. Counts an attempt unless the counter is at its
/// limit; returns {1} when counted, {0, pttl} when refused.
const BEGIN: &str = r"
local n = tonumber(redis.call('GET', KEYS[1]) or '0')
if n >= tonumber(ARGV[1]) then return {0, redis.call('PTTL', KEYS[1])} end
redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2], 'NX')
return {1, 0}";

/// KEYS: one counter. Takes back one counted attempt.
const UNCOUNT: &str = r"
if tonumber(redis.call('GET', KEYS[1]) or '0') > 0 then redis.call('DECR', KEYS[1]) end
return 1";

impl RedisLoginThrottle {
    /// Counts one attempt on one counter, atomically. `Some(retry_after)` when refused.
    async fn count(&self, key: &str, limit: u32) -> Result<Option<Duration>, InfraError> {
        let mut call = self.begin.prepare_invoke();
        call.key(key).arg(limit).arg(millis(self.policy.window));
        let reply: Vec<i64> = self.redis.script(&call).await?;
        Ok(match reply.as_slice() {
            [0, pttl] => Some(Duration::from_millis(u64::try_from(*pttl).unwrap_or(1000).max(1000))),
            _ => None,
        })
    }
}

#[async_trait]
impl LoginThrottle for RedisLoginThrottle {
    async fn begin(&self, attempt: &LoginAttempt) -> Result<ThrottleDecision, InfraError> {
        // Each counter is exact on its own; the e-mail and the client are separate keys (two
        // cluster slots), so a refusal by the second takes back the first.
        let counters = self.counters(attempt);
        for (i, (key, limit)) in counters.iter().enumerate() {
            if let Some(retry_after) = self.count(key, *limit).await? {
                for (earlier, _) in &counters[..i] {
                    let mut call = self.uncount.prepare_invoke();
                    call.key(earlier);
                    self.redis.script::<i64>(&call).await?;
                }
                return Ok(ThrottleDecision::Blocked { retry_after });
            }
        }
        Ok(ThrottleDecision::Allowed)
    }

    async fn succeeded(&self, attempt: &LoginAttempt) -> Result<(), InfraError> {
        self.redis.cmd::<()>(redis::cmd("DEL").arg(self.keys.login_failures_by_email(attempt.email.as_str()))).await?;
        if let Some(client) = &attempt.client {
            let mut call = self.uncount.prepare_invoke();
            call.key(self.keys.login_failures_by_client(client));
            self.redis.script::<i64>(&call).await?;
        }
        Ok(())
    }
}
