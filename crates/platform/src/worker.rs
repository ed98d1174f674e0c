//! The worker process: connects to its dependencies and runs until told to stop.

use std::sync::Arc;
use std::time::Duration;

use ecom_catalog::service::EVICT_CACHED_KIND;
use ecom_jobs::catalog::EvictCachedHandler;
use ecom_jobs::notifications::NotificationFlowHandler;
use ecom_jobs::orders::SagaHandler;
use ecom_jobs::payments::{PaymentChangedHandler, PaymentEventHandler, RefundHandler};
use ecom_jobs::{HandlerRegistry, RuntimeSettings, WorkerRuntime};
use ecom_kernel::jobs::{QueueName, CANARY_KIND};
use ecom_notifications::service::{SAVE_KIND, SEND_KIND, UPDATE_KIND};
use ecom_orders::service::SAGA_KIND;
use ecom_payments::service::{CHANGED_KIND, PAYMENT_EVENT_KIND, REFUND_KIND};
use ecom_redis::{ConsumerSettings, QueueConsumer};

use crate::operator_jobs::CanaryHandler;
use crate::{shutdown, Config, Services};

/// Every job kind this worker runs; a job of a kind nobody handles is dead-lettered, visibly.
fn job_handlers(services: &Services, worker: &str) -> HandlerRegistry {
    let notifications = Arc::new(NotificationFlowHandler { notifications: services.notifications.clone() });
    HandlerRegistry::default()
        .with(CANARY_KIND, Arc::new(CanaryHandler { log: services.canaries.clone(), worker: worker.to_owned() }))
        .with(
            PAYMENT_EVENT_KIND,
            Arc::new(PaymentEventHandler {
                payments: services.payments.clone(),
                orders: Some(services.orders.clone()),
            }),
        )
        .with(
            REFUND_KIND,
            Arc::new(RefundHandler { payments: services.payments.clone(), orders: Some(services.orders.clone()) }),
        )
        .with(CHANGED_KIND, Arc::new(PaymentChangedHandler { orders: services.orders.clone() }))
        .with(SAGA_KIND, Arc::new(SagaHandler { orders: services.orders.clone() }))
        .with(EVICT_CACHED_KIND, Arc::new(EvictCachedHandler { catalog: services.catalog.clone() }))
        .with(SAVE_KIND, notifications.clone())
        .with(SEND_KIND, notifications.clone())
        .with(UPDATE_KIND, notifications)
}

/// Runs the worker until SIGINT/SIGTERM. Waits (with backoff) for PostgreSQL and Redis at start,
/// so that a worker started before its dependencies does not crash-loop.
pub async fn run_worker(config: &Config) -> anyhow::Result<()> {
    let services = Services::build_worker(config)?;
    let stop = shutdown::signal();
    tokio::pin!(stop);
    let mut delay = Duration::from_millis(200);
    loop {
        tokio::select! {
            result = services.connect() => match result {
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
    let consumer_name = format!("{}-{}", std::process::id(), uuid::Uuid::now_v7().simple());
    // One consumer per queue, under this worker's name.
    let per_queue = || {
        QueueName::ALL
            .into_iter()
            .map(|queue| {
                QueueConsumer::new(
                    services.redis.clone(),
                    &config.redis_url,
                    &services.redis_keys,
                    queue,
                    consumer_name.clone(),
                    ConsumerSettings { revive_after: config.job_revive_after, ..ConsumerSettings::default() },
                )
            })
            .collect::<Result<Vec<_>, _>>()
    };
    let mut runtime = WorkerRuntime::new(
        per_queue()?,
        job_handlers(&services, &consumer_name),
        RuntimeSettings {
            concurrency: config.worker_concurrency,
            reclaim_after: config.worker_reclaim_after,
            ..RuntimeSettings::default()
        },
    );
    if let Some(durability) = &services.durability {
        runtime = runtime.with_durability(durability.clone());
    }
    tracing::info!(
        concurrency = config.worker_concurrency,
        deferred_flush = services.barrier.is_some(),
        consumer = %consumer_name,
        "worker started: postgres and redis reachable"
    );
    let (stopped, mut stopping) = tokio::sync::watch::channel(false);
    // Upkeep of the queues' consumer groups through handles of their own (they only look at the
    // groups, and never remove the worker's own consumers).
    let purging = tokio::spawn(hourly_upkeep(services.identity.clone(), per_queue()?, stopped.subscribe()));
    let jobs = tokio::spawn(runtime.run(async move {
        let _ = stopping.changed().await;
    }));
    let mut sweep = tokio::time::interval(config.reservation_sweep_interval);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut relay = tokio::time::interval(Duration::from_secs(1));
    relay.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = sweep.tick() => durably(&services, "sweep", async {
                expire_reservations(&services).await;
                expire_orders(&services).await;
                resume_sagas(&services).await;
            }).await,
            _ = relay.tick() => relay_outbox(&services).await,
            () = &mut stop => break,
        }
    }
    let _ = stopped.send(true);
    let _ = purging.await;
    match jobs.await {
        Ok(0) => {}
        Ok(left) => tracing::warn!(left, "stopped with jobs still running; another worker will reclaim them"),
        Err(err) => tracing::error!(error = %err, "the job runtime failed"),
    }
    if let Some(barrier) = &services.barrier {
        barrier.close().await;
    }
    services.pg.close();
    services.redis.close();
    tracing::info!("worker stopped");
    Ok(())
}

/// Runs `work` (a sweep) in the worker's durability scope when its commits do not wait for the
/// disk: what it publishes waits until its writes are on disk, and is dropped with writes that
/// may be lost (the next tick does the work again: it finds what is overdue still overdue).
async fn durably(services: &Services, what: &str, work: impl std::future::Future<Output = ()>) {
    let Some(durability) = &services.durability else { return work.await };
    if let ((), Err(reason)) = durability.run(work).await {
        tracing::warn!(%reason, what, "the writes may be lost; the next tick does the work again");
    }
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

/// Cancels unpaid online orders and unconfirmed cash orders past their windows.
async fn expire_orders(services: &Services) {
    match services.orders.expire_overdue(100).await {
        Ok(0) => {}
        Ok(count) => tracing::info!(count, "overdue orders cancelled"),
        Err(err) => tracing::warn!(error = %err, "order expiry sweep failed; retrying next tick"),
    }
}

/// Offers the saga job of every order left unfinished (its job lost by the queue) again.
async fn resume_sagas(services: &Services) {
    let idle = match chrono::Duration::from_std(services.config.saga_resume_after) {
        Ok(idle) => idle,
        Err(_) => return,
    };
    match services.orders.resume_unfinished(idle, 1000).await {
        Ok(0) => {}
        Ok(offered) => tracing::debug!(offered, "unfinished sagas offered to the queue again"),
        Err(err) => tracing::warn!(error = %err, "saga resume sweep failed; retrying next tick"),
    }
}

/// How often the worker deletes refresh tokens long expired and forgets departed consumers.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(3600);

/// A consumer of a queue's group with no delivery, not heard of this long, is a worker gone.
const DEPARTED_CONSUMER_IDLE: Duration = Duration::from_secs(24 * 3600);

/// Every hour, on a task of its own: forgets the consumers of departed workers (each start
/// joins the groups under a new name), and deletes refresh tokens expired for a week, a batch
/// at a time (the next at once while they come back full): a first purge of a large backlog
/// holds up neither the sweeps nor a stop, which it heeds between batches.
async fn hourly_upkeep(
    identity: Arc<ecom_identity::IdentityService>,
    groups: Vec<QueueConsumer>,
    mut stopping: tokio::sync::watch::Receiver<bool>,
) {
    const BATCH: usize = 1000;
    loop {
        for group in &groups {
            let queue = group.queue().as_str();
            match group.forget_idle_consumers(DEPARTED_CONSUMER_IDLE).await {
                Ok(0) => {}
                Ok(forgotten) => tracing::info!(queue, forgotten, "departed consumers forgotten"),
                Err(err) => {
                    tracing::warn!(queue, error = %err, "forgetting departed consumers failed; retrying next hour")
                }
            }
        }
        // Batch after batch while they come back full, stopping between two when asked.
        while !*stopping.borrow() {
            match identity.purge_expired_sessions(BATCH).await {
                Ok(purged) if purged == BATCH => tracing::info!(purged, "expired sessions purged"),
                Ok(0) => break,
                Ok(purged) => {
                    tracing::info!(purged, "expired sessions purged");
                    break;
                }
                Err(err) => {
                    tracing::warn!(error = %err, "session purge failed; retrying next hour");
                    break;
                }
            }
        }
        tokio::select! {
            () = tokio::time::sleep(UPKEEP_INTERVAL) => {}
            _ = stopping.changed() => return,
        }
    }
}

/// Rows younger than this are left to their writer's eager publish.
const RELAY_MIN_AGE: Duration = Duration::from_secs(2);
// A row its writer published waits up to this long to be removed: far less than the relay waits.
const _: () = assert!(RELAY_MIN_AGE.as_millis() >= 10 * ecom_postgres::REMOVAL_LINGER.as_millis());

/// Publishes outbox rows that their writer did not (it crashed between commit and publish).
async fn relay_outbox(services: &Services) {
    loop {
        match services.outbox.relay_older_than(services.jobs.as_ref(), 200, RELAY_MIN_AGE).await {
            Ok(n) if n > 0 => {
                tracing::info!(published = n, "outbox relay published leftover jobs");
                if n < 200 {
                    return;
                }
            }
            Ok(_) => return,
            Err(err) => {
                tracing::warn!(error = %err, "outbox relay failed; retrying next tick");
                return;
            }
        }
    }
}
