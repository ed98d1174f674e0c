//! The Redis pool and its readiness check.

use std::time::Duration;

use async_trait::async_trait;
use deadpool_redis::{redis, Config, Pool, PoolError, Runtime};
use ecom_kernel::{HealthCheck, InfraError};

#[derive(Debug, Clone)]
pub struct RedisSettings {
    pub url: String,
    pub max_connections: usize,
    /// Bound on waiting for, creating and recycling a connection.
    pub timeout: Duration,
}

pub fn connect(settings: &RedisSettings) -> Result<Pool, InfraError> {
    Config::from_url(settings.url.clone())
        .builder()
        .map_err(|e| InfraError::unexpected("invalid REDIS_URL").with_source(e))?
        .max_size(settings.max_connections)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(settings.timeout))
        .create_timeout(Some(settings.timeout))
        .recycle_timeout(Some(settings.timeout))
        .build()
        .map_err(|e| InfraError::unexpected("cannot build the redis pool").with_source(e))
}

pub fn infra_from_pool(err: PoolError) -> InfraError {
    InfraError::unavailable("redis unavailable").with_source(err)
}

pub fn infra_from_redis(err: redis::RedisError) -> InfraError {
    if err.is_io_error() || err.is_timeout() || err.is_connection_dropped() || err.is_connection_refusal() {
        InfraError::unavailable("redis unavailable").with_source(err)
    } else {
        InfraError::unexpected("redis command failed").with_source(err)
    }
}

/// Readiness: a pooled connection answers `PING` in time.
pub struct RedisHealth {
    pool: Pool,
    timeout: Duration,
}

impl RedisHealth {
    pub fn new(pool: Pool, timeout: Duration) -> Self {
        Self { pool, timeout }
    }
}

#[async_trait]
impl HealthCheck for RedisHealth {
    fn name(&self) -> &'static str {
        "redis"
    }

    async fn check(&self) -> Result<(), InfraError> {
        let probe = async {
            let mut conn = self.pool.get().await.map_err(infra_from_pool)?;
            let _: String = redis::cmd("PING").query_async(&mut conn).await.map_err(infra_from_redis)?;
            Ok(())
        };
        tokio::time::timeout(self.timeout, probe)
            .await
            .map_err(|_| InfraError::unavailable("redis did not answer in time"))?
    }
}
