//! One multiplexed Redis connection shared by every task of the process.
//!
//! A pooled checkout costs a `PING` round trip (deadpool-redis verifies on every recycle); a
//! multiplexed connection already pipelines concurrent commands over one socket, so hot paths
//! share one instead. It is taken from the pool, and replaced after any connection failure.

use std::sync::RwLock;

use deadpool_redis::redis::aio::MultiplexedConnection;
use deadpool_redis::{redis, Pool};
use ecom_kernel::InfraError;

use crate::{infra_from_pool, infra_from_redis};

pub struct SharedConnection {
    pool: Pool,
    current: RwLock<Option<MultiplexedConnection>>,
}

impl SharedConnection {
    pub fn new(pool: Pool) -> Self {
        Self { pool, current: RwLock::new(None) }
    }

    async fn connection(&self) -> Result<MultiplexedConnection, InfraError> {
        if let Some(conn) = self.current.read().ok().and_then(|c| c.clone()) {
            return Ok(conn);
        }
        let conn = deadpool_redis::Connection::take(self.pool.get().await.map_err(infra_from_pool)?);
        if let Ok(mut slot) = self.current.write() {
            *slot = Some(conn.clone());
        }
        Ok(conn)
    }

    fn forget(&self) {
        if let Ok(mut slot) = self.current.write() {
            *slot = None;
        }
    }

    fn failed(&self, err: redis::RedisError) -> InfraError {
        if err.is_io_error() || err.is_connection_dropped() || err.is_timeout() || err.is_unrecoverable_error() {
            self.forget();
        }
        infra_from_redis(err)
    }

    /// Runs one command; a connection-level failure drops the connection so the next call
    /// reconnects.
    pub async fn cmd<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, InfraError> {
        let mut conn = self.connection().await?;
        cmd.query_async(&mut conn).await.map_err(|e| self.failed(e))
    }

    pub async fn pipe<T: redis::FromRedisValue>(&self, pipe: &redis::Pipeline) -> Result<T, InfraError> {
        let mut conn = self.connection().await?;
        pipe.query_async(&mut conn).await.map_err(|e| self.failed(e))
    }

    /// Runs a pipeline of calls to `scripts` (`EVALSHA`). If the server lost them (a restart,
    /// `SCRIPT FLUSH`), loads them and runs the whole pipeline again: only for scripts that are
    /// idempotent, since the calls before the failing one may have run.
    pub async fn script_pipe<T: redis::FromRedisValue>(
        &self,
        pipe: &redis::Pipeline,
        scripts: &[&redis::Script],
    ) -> Result<T, InfraError> {
        let mut conn = self.connection().await?;
        match pipe.query_async(&mut conn).await {
            Err(err) if err.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                for script in scripts {
                    script.load_async(&mut conn).await.map_err(|e| self.failed(e))?;
                }
                pipe.query_async(&mut conn).await.map_err(|e| self.failed(e))
            }
            other => other.map_err(|e| self.failed(e)),
        }
    }

    pub async fn script<T: redis::FromRedisValue>(&self, call: &redis::ScriptInvocation<'_>) -> Result<T, InfraError> {
        let mut conn = self.connection().await?;
        call.invoke_async(&mut conn).await.map_err(|e| self.failed(e))
    }
}

/// A duration as whole milliseconds, for Redis arguments (saturating).
pub(crate) fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
