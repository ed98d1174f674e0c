//! Group commit: concurrent calls of one kind share one statement.
//!
//! Calls queue for a single task that runs them in batches: woken by a call, the task first
//! yields until its worker thread has no other task ready (`tokio::task::yield_now`, no timer;
//! on a saturated thread at most one scheduler maintenance interval, 61 polls), so that calls
//! made together (the jobs of one delivery from the queue, say) go in one batch; calls made
//! while a batch is being written wait and go together in the next one. So an idle system pays
//! no delay, and a busy one many fewer statements and commits. A group whose callers can afford
//! to wait (nothing the user sees waits on them) can instead linger: gather calls for a fixed
//! time before each batch. When a batch fails, its calls are run one by one, so that one bad call
//! cannot fail the others.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use ecom_kernel::InfraError;
use tokio::sync::{mpsc, oneshot};

type Reply<R> = oneshot::Sender<Result<R, InfraError>>;
type BatchFuture<R> = Pin<Box<dyn Future<Output = Result<Vec<R>, InfraError>> + Send>>;
type RunBatch<T, R> = Arc<dyn Fn(Vec<T>) -> BatchFuture<R> + Send + Sync>;

pub(crate) struct Grouped<T, R> {
    max: usize,
    linger: Duration,
    run: RunBatch<T, R>,
    queue: OnceLock<mpsc::UnboundedSender<(T, Reply<R>)>>,
}

impl<T: Clone + Send + 'static, R: Send + 'static> Grouped<T, R> {
    /// `run` answers a batch of at most `max` calls with one result per call, in order.
    pub(crate) fn new<F, Fut>(max: usize, run: F) -> Self
    where
        F: Fn(Vec<T>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Vec<R>, InfraError>> + Send + 'static,
    {
        Self {
            max: max.max(1),
            linger: Duration::ZERO,
            run: Arc::new(move |batch| Box::pin(run(batch))),
            queue: OnceLock::new(),
        }
    }

    /// Gathers calls for `linger` before each batch (instead of only the burst that woke it).
    pub(crate) fn lingering(mut self, linger: Duration) -> Self {
        self.linger = linger;
        self
    }

    /// Runs `item` in the next batch and returns its result.
    pub(crate) async fn call(&self, item: T) -> Result<R, InfraError> {
        let queue = self.queue.get_or_init(|| {
            // Started on first use, on the caller's runtime.
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(drain(rx, self.run.clone(), self.max, self.linger));
            tx
        });
        let (reply, answer) = oneshot::channel();
        match queue.send((item, reply)) {
            Ok(()) => answer.await.unwrap_or_else(|_| Err(InfraError::unexpected("group commit task stopped"))),
            // The task is gone (its runtime shut down): run alone.
            Err(mpsc::error::SendError((item, _))) => one(&self.run, item).await,
        }
    }
}

async fn one<T, R>(run: &RunBatch<T, R>, item: T) -> Result<R, InfraError> {
    run(vec![item]).await?.pop().ok_or_else(|| InfraError::unexpected("a batch of one returned nothing"))
}

async fn drain<T: Clone, R>(
    mut rx: mpsc::UnboundedReceiver<(T, Reply<R>)>,
    run: RunBatch<T, R>,
    max: usize,
    linger: Duration,
) {
    while let Some(first) = rx.recv().await {
        if linger.is_zero() {
            // Woken by the first call of a burst, ahead of its other callers (on a worker thread,
            // tokio runs the task another task woke right after it): let them call first.
            tokio::task::yield_now().await;
        } else if rx.len() + 1 < max {
            // A full batch waiting already goes at once.
            tokio::time::sleep(linger).await;
        }
        let mut batch = vec![first];
        while batch.len() < max {
            match rx.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let (items, replies): (Vec<T>, Vec<Reply<R>>) = batch.into_iter().unzip();
        let results = if items.len() == 1 { None } else { run(items.clone()).await.ok() };
        match results {
            Some(results) if results.len() == replies.len() => {
                for (reply, result) in replies.into_iter().zip(results) {
                    let _ = reply.send(Ok(result));
                }
            }
            // Alone, or the batch failed: each call on its own, with its own error.
            _ => {
                for (item, reply) in items.into_iter().zip(replies) {
                    let _ = reply.send(one(&run, item).await);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Mutex;

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn calls_made_together_go_in_one_batch_even_when_the_first_wakes_the_task() {
        // One worker thread (as the benchmark runs the binaries): a task woken by another runs
        // right after it, so without the batch task's yield the first call of a burst would run
        // alone, and the rest as they come.
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let seen = sizes.clone();
        let grouped = Arc::new(Grouped::new(50, move |batch: Vec<i64>| {
            seen.lock().unwrap().push(batch.len());
            async move { Ok(batch) }
        }));
        assert_eq!(grouped.call(0).await.unwrap(), 0, "an idle group runs a call at once");
        // The burst is spawned from one task on the worker, so that all of it is ready before
        // any of it runs, however slow the machine.
        let burst = tokio::spawn(async move {
            let calls: Vec<_> = (1..=10)
                .map(|i| {
                    let grouped = grouped.clone();
                    tokio::spawn(async move { grouped.call(i).await })
                })
                .collect();
            let mut answers = Vec::new();
            for call in calls {
                answers.push(call.await.unwrap().unwrap());
            }
            answers
        });
        assert_eq!(burst.await.unwrap(), (1..=10).collect::<Vec<i64>>());
        assert_eq!(*sizes.lock().unwrap(), vec![1, 10]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_lingering_group_takes_the_calls_of_its_whole_linger() {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let seen = sizes.clone();
        let linger = Duration::from_millis(20);
        let grouped = Arc::new(
            Grouped::new(50, move |batch: Vec<i64>| {
                seen.lock().unwrap().push(batch.len());
                async move { Ok(batch) }
            })
            .lingering(linger),
        );
        // Five calls a few milliseconds apart, then one after the linger.
        let mut calls = Vec::new();
        for i in 0..6 {
            let grouped = grouped.clone();
            calls.push(tokio::spawn(async move { grouped.call(i).await.unwrap() }));
            tokio::time::sleep(if i == 4 { linger } else { Duration::from_millis(3) }).await;
        }
        let answers: Vec<i64> = futures_util::future::join_all(calls).await.into_iter().map(Result::unwrap).collect();
        assert_eq!(answers, (0..6).collect::<Vec<i64>>());
        assert_eq!(*sizes.lock().unwrap(), vec![5, 1]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_batch_does_not_wait_for_the_linger() {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let seen = sizes.clone();
        let grouped = Arc::new(
            Grouped::new(5, move |batch: Vec<i64>| {
                seen.lock().unwrap().push((batch.len(), tokio::time::Instant::now()));
                async move { Ok(batch) }
            })
            .lingering(Duration::from_secs(1)),
        );
        let start = tokio::time::Instant::now();
        let calls: Vec<_> = (0..5)
            .map(|i| {
                let grouped = grouped.clone();
                tokio::spawn(async move { grouped.call(i).await.unwrap() })
            })
            .collect();
        for call in calls {
            call.await.unwrap();
        }
        assert_eq!(*sizes.lock().unwrap(), vec![(5, start)], "five calls, a full batch, at once");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_calls_share_batches_and_a_bad_call_fails_alone() {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let seen = sizes.clone();
        let grouped = Arc::new(Grouped::new(50, move |batch: Vec<i64>| {
            let seen = seen.clone();
            async move {
                seen.lock().unwrap().push(batch.len());
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                if batch.contains(&-1) {
                    return Err(InfraError::unexpected("bad item"));
                }
                Ok(batch.iter().map(|i| i * 10).collect())
            }
        }));
        let calls = (0..100).map(|i| {
            let grouped = grouped.clone();
            tokio::spawn(async move { grouped.call(if i == 50 { -1 } else { i }).await })
        });
        let results = futures_util::future::join_all(calls).await;
        for (i, result) in results.into_iter().enumerate() {
            let result = result.unwrap();
            if i == 50 {
                assert!(result.is_err(), "the bad call fails");
            } else {
                assert_eq!(result.unwrap(), i as i64 * 10, "every other call gets its own answer");
            }
        }
        let sizes = sizes.lock().unwrap();
        assert!(sizes.iter().any(|s| *s > 1), "calls made while a batch ran were grouped: {sizes:?}");
        assert!(sizes.len() < 100 + 50, "fewer batches than calls (plus the failed batch's retries)");
    }
}
