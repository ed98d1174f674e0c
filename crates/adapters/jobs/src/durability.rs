//! Durable work for a worker whose commits do not wait for the disk.
//!
//! [`Durability::run`] runs a piece of work (a job's handler, a sweep) in a scope: it reads the
//! barrier's epoch first, holds the jobs the work publishes (through a publisher that calls
//! [`hold`]), then flushes. Only when the flush answers that the work's writes are on disk are
//! the held jobs published; otherwise they are dropped with the writes that staged them (the
//! outbox relay publishes whatever was kept), and the work must run again. So nothing outside
//! the database (a queued job, a notification, a provider call through [`ScopedBarrier`]) ever
//! acts on a write that a crash could still take back.

use std::future::Future;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use ecom_kernel::jobs::{NewJob, WriteBarrier};
use ecom_kernel::InfraError;
use ecom_payments::ports::JobPublisher;

tokio::task_local! {
    /// The scope of the work running on this task.
    static SCOPE: Option<Arc<Scope>>;
}

struct Scope {
    /// The barrier's epoch when the work started.
    since: u64,
    /// The jobs the work published, until its writes are on disk.
    held: Mutex<Vec<NewJob>>,
}

/// Holds `jobs` if work with a durability scope runs on this task: they are published once its
/// writes are on disk. `false` when nothing holds them: publish them now.
pub fn hold(jobs: &[NewJob]) -> bool {
    SCOPE
        .try_with(|scope| {
            let held = scope.as_ref().and_then(|scope| scope.held.lock().ok());
            held.map(|mut held| held.extend_from_slice(jobs)).is_some()
        })
        .unwrap_or(false)
}

/// The epoch the work running on this task started in, if it runs in a durability scope.
fn scope_epoch() -> Option<u64> {
    SCOPE.try_with(|scope| scope.as_ref().map(|s| s.since)).ok().flatten()
}

/// A barrier, as the writes made inside a durability scope see it: its epoch is the one the
/// scope's work started in. A write that must be on disk before a provider is called (a payment
/// opened before its charge) flushes with it, and so fails when the database may have lost an
/// earlier write of the same work (the reservation the charge is for): the work runs again from
/// the start instead of going on from a state the database no longer has.
pub struct ScopedBarrier(pub Arc<dyn WriteBarrier>);

#[async_trait]
impl WriteBarrier for ScopedBarrier {
    fn epoch(&self) -> u64 {
        scope_epoch().unwrap_or_else(|| self.0.epoch())
    }

    async fn flush(&self, since: u64) -> Result<bool, InfraError> {
        self.0.flush(since).await
    }
}

/// What makes work durable: the barrier, and the publisher of the jobs held meanwhile.
#[derive(Clone)]
pub struct Durability {
    barrier: Arc<dyn WriteBarrier>,
    publisher: Arc<dyn JobPublisher>,
}

impl Durability {
    pub fn new(barrier: Arc<dyn WriteBarrier>, publisher: Arc<dyn JobPublisher>) -> Self {
        Self { barrier, publisher }
    }

    /// Runs `work` in a durability scope. Returns its output, and `Ok` once its writes are on
    /// disk and the jobs it held are published; `Err` with the reason when its writes may be
    /// lost (the held jobs are dropped): the work must run again.
    pub async fn run<F: Future>(&self, work: F) -> (F::Output, Result<(), String>) {
        let scope = Arc::new(Scope { since: self.barrier.epoch(), held: Mutex::default() });
        let output = SCOPE.scope(Some(scope.clone()), work).await;
        match self.barrier.flush(scope.since).await {
            Ok(true) => {}
            Ok(false) => return (output, Err("the database may have lost writes made since the work started".into())),
            Err(err) => return (output, Err(format!("durability barrier: {err}"))),
        }
        let held = scope.held.lock().map(|mut held| std::mem::take(&mut *held)).unwrap_or_default();
        if !held.is_empty() {
            self.publisher.publish(&held).await;
        }
        (output, Ok(()))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    /// Its epoch moves when told; every flush answers whether it is still `since`.
    struct Moving(AtomicU64);

    #[async_trait]
    impl WriteBarrier for Moving {
        fn epoch(&self) -> u64 {
            self.0.load(Ordering::SeqCst)
        }

        async fn flush(&self, since: u64) -> Result<bool, InfraError> {
            Ok(since == self.epoch())
        }
    }

    struct Nowhere;

    #[async_trait]
    impl JobPublisher for Nowhere {
        async fn publish(&self, _jobs: &[NewJob]) {}

        async fn reoffer(&self, _jobs: &[NewJob], _revive_after: std::time::Duration) {}
    }

    #[tokio::test]
    async fn inside_a_scope_the_scoped_barrier_flushes_against_the_epoch_the_work_started_in() {
        let inner = Arc::new(Moving(AtomicU64::new(1)));
        let durability = Durability::new(inner.clone(), Arc::new(Nowhere));
        let scoped = ScopedBarrier(inner.clone());
        let (flushed_inside, durable) = durability
            .run(async {
                // The database restarts in the middle of the work.
                inner.0.store(2, Ordering::SeqCst);
                let since = scoped.epoch();
                (since, scoped.flush(since).await.unwrap())
            })
            .await;
        assert_eq!(flushed_inside, (1, false), "a write after the restart cannot vouch for the ones before it");
        assert!(durable.is_err());
        assert_eq!(scoped.epoch(), 2, "outside any scope: the barrier's own epoch");
        assert!(durability.run(async {}).await.1.is_ok(), "a scope started since is safe");
    }
}
