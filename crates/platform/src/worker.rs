//! The worker process: connects to its dependencies and runs until told to stop.

use std::time::Duration;

use crate::{shutdown, Config, Services};

/// Runs the worker until SIGINT/SIGTERM. Waits (with backoff) for PostgreSQL and Redis at start,
/// so that a worker started before its dependencies does not crash-loop.
pub async fn run_worker(config: &Config) -> anyhow::Result<()> {
    let services = Services::build(config, "ecom-worker")?;
    let stop = shutdown::signal();
    tokio::pin!(stop);
    let mut delay = Duration::from_millis(200);
    loop {
        tokio::select! {
            result = services.check_dependencies() => match result {
                Ok(()) => break,
                Err(err) => tracing::warn!(error = %err, retry_in_ms = delay.as_millis() as u64, "waiting for dependencies"),
            },
            () = &mut stop => return Ok(()),
        }
        tokio::select! {
            () = tokio::time::sleep(delay) => {},
            () = &mut stop => return Ok(()),
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    }
    tracing::info!(concurrency = config.worker_concurrency, "worker started: postgres and redis reachable");
    let mut sweep = tokio::time::interval(config.reservation_sweep_interval);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = sweep.tick() => expire_reservations(&services).await,
            () = &mut stop => break,
        }
    }
    services.pg.close();
    services.redis.close();
    tracing::info!("worker stopped");
    Ok(())
}

/// Releases the stock of ACTIVE reservations past their time, in batches.
async fn expire_reservations(services: &Services) {
    loop {
        match services.inventory.expire_due(100).await {
            Ok(expired) if expired.is_empty() => return,
            Ok(expired) => {
                tracing::info!(count = expired.len(), "expired reservations released");
                if expired.len() < 100 {
                    return;
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, "reservation expiry sweep failed; retrying next tick");
                return;
            }
        }
    }
}
