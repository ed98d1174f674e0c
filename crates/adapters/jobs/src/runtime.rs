//! The worker runtime: per queue a reader that takes only as many deliveries as the queue has
//! free handler slots, a promoter for due retries, a reviver for jobs dead out of retries whose
//! time to run again has come, and a reclaimer for deliveries of crashed workers; one task per
//! job with a tracing span, panics caught, a heartbeat while it runs.
//!
//! With durability ([`WorkerRuntime::with_durability`]), a job's database writes are on disk
//! before it counts as done, and the jobs it publishes are held until then.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ecom_kernel::jobs::JobOutcome;
use ecom_redis::{Delivery, QueueConsumer};
use futures_util::FutureExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::durability::Durability;
use crate::registry::{HandlerRegistry, JobFailure, JobHandler};

#[derive(Debug, Clone)]
pub struct RuntimeSettings {
    /// Handler slots of each queue this process reads: a queue busy with slow jobs (a
    /// checkout saga waiting on its database) never starves another of many quick ones
    /// (notification steps).
    pub concurrency: usize,
    /// A delivery idle this long belongs to a crashed worker and is taken over.
    pub reclaim_after: Duration,
    /// How long a read waits for work.
    pub block: Duration,
    /// First retry delay; doubled per attempt, with jitter, up to `max_backoff`.
    pub base_backoff: Duration,
    pub max_backoff: Duration,
    /// How long shutdown waits for in-flight jobs.
    pub drain_timeout: Duration,
}

impl Default for RuntimeSettings {
    fn default() -> Self {
        Self {
            concurrency: 16,
            reclaim_after: Duration::from_secs(30),
            block: Duration::from_secs(1),
            base_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(300),
            drain_timeout: Duration::from_secs(30),
        }
    }
}

/// The delay before attempt `attempt + 1`: exponential from `base`, capped, with up to 25 %
/// random jitter so that failed jobs do not all come back at once.
pub fn backoff(attempt: u32, base: Duration, max: Duration) -> Duration {
    let exp = base.saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
    let capped = exp.min(max);
    let mut byte = [0u8; 1];
    let jitter = if getrandom::fill(&mut byte).is_ok() { u32::from(byte[0]) } else { 0 };
    capped + capped.mul_f64(f64::from(jitter) / 1020.0)
}

/// What a handler returned, or its panic.
type Outcome = Result<Result<JobOutcome, JobFailure>, Box<dyn std::any::Any + Send>>;

/// How often each queue looks for dead-lettered jobs whose time to run again has come.
const REVIVE_EVERY: Duration = Duration::from_secs(1);

/// How many times a job whose writes may have been lost runs again at once, before it takes
/// the ordinary retry (which counts an attempt).
const RERUNS: u32 = 3;

/// How long a job of a newer payload version waits before it is offered again (to a newer
/// worker, in a rolling deploy).
const DEFER_FOR_NEWER_WORKER: Duration = Duration::from_secs(5);

pub struct WorkerRuntime {
    consumers: Vec<Arc<QueueConsumer>>,
    registry: HandlerRegistry,
    settings: RuntimeSettings,
    durability: Option<Durability>,
}

impl WorkerRuntime {
    pub fn new(consumers: Vec<QueueConsumer>, registry: HandlerRegistry, settings: RuntimeSettings) -> Self {
        Self { consumers: consumers.into_iter().map(Arc::new).collect(), registry, settings, durability: None }
    }

    /// For handlers whose commits do not wait for the disk: each job runs in a durability scope
    /// (see [`Durability::run`]) and counts as done, retried or dead-lettered only once its
    /// writes are on disk. A job whose writes may have been lost runs again at once, up to
    /// [`RERUNS`] times, then retries as a failure would.
    #[must_use]
    pub fn with_durability(mut self, durability: Durability) -> Self {
        self.durability = Some(durability);
        self
    }

    /// Runs until `stop` resolves; then stops reading and lets in-flight jobs finish (up to the
    /// drain timeout). Returns how many jobs were still running when the drain gave up.
    pub async fn run(self, stop: impl std::future::Future<Output = ()>) -> usize {
        let stopping = Arc::new(AtomicBool::new(false));
        let mut loops = JoinSet::new();
        let jobs = Arc::new(tokio::sync::Mutex::new(JoinSet::new()));
        for consumer in &self.consumers {
            if let Err(err) = consumer.ensure_group().await {
                tracing::warn!(queue = consumer.queue().as_str(), error = %err, "cannot create consumer group yet");
            }
            let ctx = LoopContext {
                consumer: consumer.clone(),
                registry: self.registry.clone(),
                settings: self.settings.clone(),
                durability: self.durability.clone(),
                slots: Arc::new(Semaphore::new(self.settings.concurrency.max(1))),
                stopping: stopping.clone(),
                jobs: jobs.clone(),
            };
            loops.spawn(ctx.clone().read_loop());
            loops.spawn(ctx.maintenance_loop());
        }
        stop.await;
        stopping.store(true, Ordering::SeqCst);
        tracing::info!("stopping: no new jobs are read; waiting for the running ones");
        loops.abort_all();
        while loops.join_next().await.is_some() {}
        let mut jobs = jobs.lock().await;
        let drained =
            tokio::time::timeout(self.settings.drain_timeout, async { while jobs.join_next().await.is_some() {} })
                .await;
        match drained {
            Ok(()) => 0,
            Err(_) => {
                let left = jobs.len();
                tracing::warn!(left, "drain timed out; those jobs will be reclaimed by another worker");
                jobs.abort_all();
                left
            }
        }
    }
}

#[derive(Clone)]
struct LoopContext {
    consumer: Arc<QueueConsumer>,
    registry: HandlerRegistry,
    settings: RuntimeSettings,
    durability: Option<Durability>,
    slots: Arc<Semaphore>,
    stopping: Arc<AtomicBool>,
    jobs: Arc<tokio::sync::Mutex<JoinSet<()>>>,
}

impl LoopContext {
    /// Reads only as many deliveries as there are free slots, and hands each to a task; every
    /// so often, takes over idle deliveries of crashed workers instead. One loop takes both, so
    /// the slots of a batch are taken before it is read or reclaimed: no delivery this worker
    /// owns waits for a slot (it would get no heartbeat, and could be reclaimed meanwhile).
    async fn read_loop(self) {
        let mut failures = 0u32;
        let every = (self.settings.reclaim_after / 2).max(Duration::from_millis(50));
        let mut reclaim_at = tokio::time::Instant::now();
        while !self.stopping.load(Ordering::SeqCst) {
            // Wait for at least one free slot, then take every free slot (up to a batch).
            let Ok(first) = self.slots.clone().acquire_owned().await else { return };
            let mut slots = self.take_free(first, 100);
            if tokio::time::Instant::now() >= reclaim_at {
                reclaim_at = tokio::time::Instant::now() + every;
                match self.reclaim(slots).await {
                    Some(unused) => slots = unused,
                    None => continue,
                }
            }
            match self.consumer.read(slots.num_permits(), self.settings.block).await {
                Ok(batch) => {
                    failures = 0;
                    self.dispatch(batch, slots).await;
                }
                Err(err) => {
                    drop(slots);
                    failures += 1;
                    let wait = backoff(failures, Duration::from_millis(100), Duration::from_secs(5));
                    tracing::warn!(queue = self.consumer.queue().as_str(), error = %err, "read failed; retrying");
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// Takes over as many idle deliveries as `slots` allow and runs them; the slots back
    /// (`Some`) when there were none.
    async fn reclaim(&self, slots: OwnedSemaphorePermit) -> Option<OwnedSemaphorePermit> {
        match self.consumer.reclaim(self.settings.reclaim_after, slots.num_permits()).await {
            Ok(batch) if !batch.is_empty() => {
                tracing::info!(
                    queue = self.consumer.queue().as_str(),
                    count = batch.len(),
                    "reclaimed idle deliveries"
                );
                self.dispatch(batch, slots).await;
                None
            }
            Ok(_) => Some(slots),
            Err(err) => {
                tracing::warn!(queue = self.consumer.queue().as_str(), error = %err, "reclaim failed");
                Some(slots)
            }
        }
    }

    /// Promotes due retries and revives jobs whose retries ran out once their time has come,
    /// periodically.
    async fn maintenance_loop(self) {
        let mut promote = tokio::time::interval(Duration::from_millis(200));
        let mut revive = tokio::time::interval(REVIVE_EVERY);
        loop {
            tokio::select! {
                _ = promote.tick() => {
                    if let Err(err) = self.consumer.promote(500).await {
                        tracing::warn!(queue = self.consumer.queue().as_str(), error = %err, "promote failed");
                    }
                }
                _ = revive.tick() => match self.consumer.revive_due(100).await {
                    Ok(0) => {}
                    Ok(count) => tracing::warn!(
                        queue = self.consumer.queue().as_str(),
                        count,
                        "jobs whose retries ran out run again"
                    ),
                    Err(err) => tracing::warn!(queue = self.consumer.queue().as_str(), error = %err, "revive failed"),
                },
            }
        }
    }

    /// `first` and as many more free slots as there are, `max` in all.
    fn take_free(&self, mut first: OwnedSemaphorePermit, max: usize) -> OwnedSemaphorePermit {
        let more = self.slots.available_permits().min(max.saturating_sub(1));
        if let Ok(more) = self.slots.clone().try_acquire_many_owned(u32::try_from(more).unwrap_or(0)) {
            first.merge(more);
        }
        first
    }

    /// Runs each delivery in a task with one of `slots` (taken before the deliveries were read
    /// or reclaimed, so none waits for one unowned: a delivery waiting here would get no
    /// heartbeat, and another worker could reclaim it while it waits). Slots left over are freed.
    async fn dispatch(&self, batch: Vec<Delivery>, mut slots: OwnedSemaphorePermit) {
        for delivery in batch {
            let permit = match slots.split(1) {
                Some(permit) => permit,
                None => match self.slots.clone().acquire_owned().await {
                    Ok(permit) => permit,
                    Err(_) => return,
                },
            };
            let runner = JobRunner {
                consumer: self.consumer.clone(),
                registry: self.registry.clone(),
                settings: self.settings.clone(),
                durability: self.durability.clone(),
                slots: self.slots.clone(),
            };
            let span = tracing::info_span!(
                "job",
                job_id = delivery.job.id.as_str(),
                kind = delivery.job.kind.as_str(),
                queue = delivery.job.queue.as_str(),
                attempt = delivery.job.attempt,
                trace_id = delivery.job.trace_id.as_deref().unwrap_or(""),
            );
            let mut jobs = self.jobs.lock().await;
            // Finished tasks stay in the set until joined: reap them, or every job ever run
            // would keep its task's memory until shutdown.
            while jobs.try_join_next().is_some() {}
            jobs.spawn(async move { runner.run_one(delivery, permit).await }.instrument(span));
        }
    }
}

/// How a job whose attempts ran out is dead-lettered.
#[derive(Clone, Copy)]
enum Burial {
    /// Its failures may pass (an outage): it runs again by itself later (the consumer's
    /// `revive_after`, doubled per revival), or when a sweep finds its work undone.
    Spent,
    /// Only an operator runs it again.
    Final,
}

/// What one job task needs (never the set of tasks itself, which would keep it alive).
struct JobRunner {
    consumer: Arc<QueueConsumer>,
    registry: HandlerRegistry,
    settings: RuntimeSettings,
    durability: Option<Durability>,
    /// The queue's handler slots (a job that runs again takes one again).
    slots: Arc<Semaphore>,
}

impl JobRunner {
    /// Runs the job holding `slot`, which it gives back once the handler returned (a flush and
    /// the acknowledgement need none).
    async fn run_one(&self, delivery: Delivery, slot: tokio::sync::OwnedSemaphorePermit) {
        let job = &delivery.job;
        if job.attempt > job.max_attempts {
            // Delivered more often than allowed: the outcome of its last attempt was never recorded.
            if delivery.failed_before {
                // Its attempts failed and were retried until then: an outage (or a stopped
                // worker) took the last outcome too, as it took the others' success.
                let error = format!("gave up after {} attempts: the last one's outcome was lost", job.max_attempts);
                tracing::warn!(%error, "job dead-lettered");
                self.settle(self.consumer.dead_letter_spent(&delivery, &error).await);
            } else {
                // Its workers kept crashing: a poison job.
                tracing::warn!("job dead-lettered: delivered too many times (its workers crashed)");
                self.settle(self.consumer.dead_letter(&delivery, "delivered too many times (worker crashes)").await);
            }
            return;
        }
        let Some(handler) = self.registry.handler(&job.kind) else {
            // Dead-lettered as out of retries, not for good: a kind a newer release added (a
            // rolling deploy under way) runs by itself later, on a worker that knows it.
            let error = format!("no handler for job kind {:?}", job.kind);
            tracing::warn!(%error, "job dead-lettered");
            self.settle(self.consumer.dead_letter_spent(&delivery, &error).await);
            return;
        };
        if job.schema_version > handler.schema_version() {
            // Put back, its attempt given back: a newer worker (a rolling deploy under way) runs
            // it with every attempt it had.
            let reason = format!(
                "payload schema version {} is newer than this worker reads ({})",
                job.schema_version,
                handler.schema_version()
            );
            tracing::warn!(%reason, "job left for a newer worker");
            let delay = self.settings.max_backoff.min(DEFER_FOR_NEWER_WORKER);
            self.settle(self.consumer.defer(&delivery, delay, &reason).await);
            return;
        }
        // The heartbeat runs inside this task, so it stops with it whatever happens.
        let every = (self.settings.reclaim_after / 3).max(Duration::from_millis(20));
        let heartbeat = async {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                match self.consumer.heartbeat(&delivery).await {
                    Ok(true) => {}
                    Ok(false) => {
                        // Taken over: the job's outcome is its new owner's to record.
                        tracing::warn!("delivery reclaimed by another worker while it ran here");
                        std::future::pending::<()>().await;
                    }
                    Err(err) => tracing::warn!(error = %err, "heartbeat failed"),
                }
            }
        };
        let work = self.run_handler(job, handler, slot);
        tokio::pin!(work);
        tokio::pin!(heartbeat);
        let outcome = loop {
            tokio::select! {
                outcome = &mut work => break outcome,
                () = &mut heartbeat => {}
            }
        };
        let result = match outcome {
            Ok(Ok(JobOutcome::Done)) => self.consumer.complete(&delivery, None).await,
            Ok(Ok(JobOutcome::DoneThen(next))) => self.consumer.complete(&delivery, Some(&next)).await,
            Ok(Ok(JobOutcome::RetryAfter(delay))) => {
                self.retry_or_bury(&delivery, delay, "handler asked to retry", Burial::Spent).await
            }
            Ok(Ok(JobOutcome::Failed(reason))) | Ok(Err(JobFailure::Permanent(reason))) => {
                tracing::warn!(%reason, "job failed permanently");
                self.consumer.dead_letter(&delivery, &reason).await
            }
            Ok(Err(JobFailure::Retryable(reason))) => {
                let delay = backoff(job.attempt, self.settings.base_backoff, self.settings.max_backoff);
                tracing::warn!(%reason, retry_in_ms = delay.as_millis() as u64, "job failed; will retry");
                self.retry_or_bury(&delivery, delay, &reason, Burial::Spent).await
            }
            Err(panic) => {
                let message = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".to_owned());
                tracing::error!(panic = %message, "job handler panicked");
                let delay = backoff(job.attempt, self.settings.base_backoff, self.settings.max_backoff);
                // A panic on its last attempt is taken for a bug: no sweep runs it again.
                self.retry_or_bury(&delivery, delay, &format!("panic: {message}"), Burial::Final).await
            }
        };
        self.settle(result);
    }

    /// Runs the handler holding `slot`, which it gives back as soon as the handler returns: the
    /// flush that follows (with a barrier) needs none.
    async fn run_handler(
        &self,
        job: &ecom_kernel::jobs::JobEnvelope,
        handler: Arc<dyn JobHandler>,
        slot: tokio::sync::OwnedSemaphorePermit,
    ) -> Outcome {
        let handle = |slot: Option<tokio::sync::OwnedSemaphorePermit>| {
            let handler = handler.clone();
            async move {
                let outcome = std::panic::AssertUnwindSafe(handler.handle(job)).catch_unwind().await;
                drop(slot);
                outcome
            }
        };
        let Some(durability) = &self.durability else { return handle(Some(slot)).await };
        let mut slot = Some(slot);
        let mut reruns = 0;
        loop {
            let slot = match slot.take() {
                Some(slot) => Some(slot),
                None => self.slots.clone().acquire_owned().await.ok(),
            };
            let (outcome, durable) = durability.run(handle(slot)).await;
            let Err(reason) = durable else { return outcome };
            if reruns < RERUNS {
                reruns += 1;
                tracing::warn!(%reason, reruns, "the job's writes may be lost; it runs again");
                tokio::time::sleep(backoff(reruns, Duration::from_millis(100), Duration::from_secs(2))).await;
                continue;
            }
            tracing::warn!(%reason, "the job's writes may be lost; it will retry");
            // An outcome that retries stays as it is; any other retries.
            return match outcome {
                Ok(Ok(JobOutcome::Done | JobOutcome::DoneThen(_) | JobOutcome::Failed(_)))
                | Ok(Err(JobFailure::Permanent(_))) => Ok(Err(JobFailure::Retryable(reason))),
                other => other,
            };
        }
    }

    async fn retry_or_bury(
        &self,
        delivery: &Delivery,
        delay: Duration,
        reason: &str,
        burial: Burial,
    ) -> Result<bool, ecom_kernel::InfraError> {
        if delivery.job.attempt >= delivery.job.max_attempts {
            let error = format!("gave up after {} attempts: {reason}", delivery.job.attempt);
            tracing::warn!(%error, "job dead-lettered");
            match burial {
                Burial::Spent => self.consumer.dead_letter_spent(delivery, &error).await,
                Burial::Final => self.consumer.dead_letter(delivery, &error).await,
            }
        } else {
            self.consumer.retry(delivery, delay, reason).await
        }
    }

    fn settle(&self, result: Result<bool, ecom_kernel::InfraError>) {
        match result {
            Ok(true) => tracing::debug!("job settled"),
            Ok(false) => tracing::warn!("delivery was taken over by another worker; its outcome is theirs"),
            // The delivery stays pending and is reclaimed later: at-least-once, never lost.
            Err(err) => tracing::error!(error = %err, "could not record the job's outcome"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_per_attempt_with_bounded_jitter_and_a_cap() {
        let (base, max) = (Duration::from_millis(100), Duration::from_secs(2));
        for attempt in 1..=10u32 {
            let d = backoff(attempt, base, max);
            let floor = (base * 2u32.pow(attempt - 1)).min(max);
            assert!(d >= floor && d <= floor.mul_f64(1.25), "attempt {attempt}: {d:?}");
        }
        assert!(backoff(1, base, max) < backoff(3, base, max));
    }
}
