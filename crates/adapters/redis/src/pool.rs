//! The Redis pool and its readiness check.

use std::time::Duration;

use async_trait::async_trait;
use deadpool_redis::{redis, Config, Pool, PoolError, Runtime};
use ecom_kernel::{HealthCheck, InfraError};

/// Pool settings; the URL may carry a password, so there is no `Debug` to print it by mistake.
#[derive(Clone)]
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
    use redis::{ErrorKind, ServerErrorKind};
    // A server still loading its data after a restart, or a cluster moving, says "try later".
    let transient = matches!(
        err.kind(),
        ErrorKind::Server(
            ServerErrorKind::BusyLoading
                | ServerErrorKind::TryAgain
                | ServerErrorKind::ClusterDown
                | ServerErrorKind::MasterDown
                | ServerErrorKind::ReadOnly
        )
    );
    if transient || err.is_io_error() || err.is_timeout() || err.is_connection_dropped() || err.is_connection_refusal()
    {
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

#[cfg(test)]
mod classification_tests {
    use super::*;

    #[test]
    fn a_redis_still_loading_its_data_is_unavailable_not_a_bug() {
        let loading = redis::RedisError::from((
            redis::ErrorKind::Server(redis::ServerErrorKind::BusyLoading),
            "Redis is loading the dataset in memory",
        ));
        assert!(infra_from_redis(loading).is_unavailable());
        let script_error = redis::RedisError::from((
            redis::ErrorKind::Server(redis::ServerErrorKind::ResponseError),
            "ERR bad script",
        ));
        assert!(!infra_from_redis(script_error).is_unavailable());
    }
}
