//! Login throttling: failed attempts counted per e-mail and per client address in a window.

use std::time::Duration;

use async_trait::async_trait;
use deadpool_redis::{redis, Pool};
use ecom_identity::ports::{LoginAttempt, LoginThrottle, ThrottleDecision};
use ecom_kernel::InfraError;

use crate::shared::SharedConnection;
use crate::RedisKeys;

#[derive(Debug, Clone, Copy)]
pub struct ThrottlePolicy {
    /// Failures allowed for one e-mail within the window before logins are refused.
    pub max_failures_per_email: u32,
    /// Failures allowed from one client address within the window (covers e-mail spraying).
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
}

impl RedisLoginThrottle {
    pub fn new(pool: Pool, keys: RedisKeys, policy: ThrottlePolicy) -> Self {
        Self { redis: SharedConnection::new(pool), keys, policy }
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

#[async_trait]
impl LoginThrottle for RedisLoginThrottle {
    async fn check(&self, attempt: &LoginAttempt) -> Result<ThrottleDecision, InfraError> {
        let counters = self.counters(attempt);
        let mut pipe = redis::pipe();
        for (key, _) in &counters {
            pipe.get(key).pttl(key);
        }
        let replies: Vec<(Option<u32>, i64)> = self.redis.pipe(&pipe).await?;
        let retry_after = counters
            .iter()
            .zip(replies)
            .filter(|((_, max), (count, _))| count.unwrap_or(0) >= *max)
            // A counter without expiry cannot exist (INCR and PEXPIRE run together); be safe anyway.
            .map(|(_, (_, pttl))| Duration::from_millis(u64::try_from(pttl).unwrap_or(1000).max(1000)))
            .max();
        Ok(match retry_after {
            Some(retry_after) => ThrottleDecision::Blocked { retry_after },
            None => ThrottleDecision::Allowed,
        })
    }

    async fn record_failure(&self, attempt: &LoginAttempt) -> Result<(), InfraError> {
        let window_ms = u64::try_from(self.policy.window.as_millis()).unwrap_or(u64::MAX);
        let mut pipe = redis::pipe();
        pipe.atomic();
        for (key, _) in self.counters(attempt) {
            // NX: the window starts at the first failure and is not extended by later ones.
            pipe.incr(&key, 1).ignore().cmd("PEXPIRE").arg(&key).arg(window_ms).arg("NX").ignore();
        }
        self.redis.pipe::<()>(&pipe).await
    }

    async fn record_success(&self, attempt: &LoginAttempt) -> Result<(), InfraError> {
        self.redis.cmd::<()>(redis::cmd("DEL").arg(self.keys.login_failures_by_email(attempt.email.as_str()))).await
    }
}
