//! Where canary jobs record their runs (kept a day).

use chrono::{DateTime, Utc};
use deadpool_redis::{redis, Pool};
use ecom_kernel::jobs::CanaryRun;
use ecom_kernel::InfraError;

use crate::shared::SharedConnection;
use crate::RedisKeys;

pub struct RedisCanaryLog {
    redis: SharedConnection,
    keys: RedisKeys,
}

impl RedisCanaryLog {
    pub fn new(pool: Pool, keys: RedisKeys) -> Self {
        Self { redis: SharedConnection::new(pool), keys }
    }

    /// Records one run by `worker`; returns how many runs there were.
    pub async fn record(&self, job_id: &str, worker: &str, at: DateTime<Utc>) -> Result<u64, InfraError> {
        let key = self.keys.canary(job_id);
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("HINCRBY")
            .arg(&key)
            .arg("runs")
            .arg(1)
            .cmd("HSET")
            .arg(&key)
            .arg("worker")
            .arg(worker)
            .arg("at")
            .arg(at.timestamp_millis())
            .ignore()
            .cmd("EXPIRE")
            .arg(&key)
            .arg(24 * 3600)
            .ignore();
        let (runs,): (u64,) = self.redis.pipe(&pipe).await?;
        Ok(runs)
    }

    pub async fn read(&self, job_id: &str) -> Result<Option<CanaryRun>, InfraError> {
        let (runs, worker, at): (Option<u64>, Option<String>, Option<i64>) = self
            .redis
            .cmd(redis::cmd("HMGET").arg(self.keys.canary(job_id)).arg("runs").arg("worker").arg("at"))
            .await?;
        Ok(match (runs, worker, at) {
            (Some(runs), Some(last_worker), Some(at)) => Some(CanaryRun {
                runs,
                last_worker,
                last_run_at: DateTime::from_timestamp_millis(at).unwrap_or_default(),
            }),
            _ => None,
        })
    }
}
