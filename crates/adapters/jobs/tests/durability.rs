//! The worker runtime with a durability barrier, against the real Redis: a job counts as done
//! only once its flush succeeded, and the jobs it published wait for that flush.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use ecom_jobs::{hold, Durability, HandlerRegistry, JobFailure, JobHandler, RuntimeSettings, WorkerRuntime};
use ecom_kernel::jobs::{JobEnvelope, JobId, JobOutcome, JobQueue, NewJob, QueueName, WriteBarrier};
use ecom_kernel::InfraError;
use ecom_payments::ports::JobPublisher;
use ecom_redis::{connect, ConsumerSettings, QueueConsumer, RedisJobQueue, RedisKeys, RedisSettings};
use ecom_testkit::TestRedis;
use tokio::sync::{Notify, Semaphore};

type Log = Arc<Mutex<Vec<String>>>;

fn pool(redis: &TestRedis) -> deadpool_redis::Pool {
    connect(&RedisSettings { url: redis.url().into(), max_connections: 8, timeout: Duration::from_secs(2) }).unwrap()
}

fn consumer(redis: &TestRedis, name: &str) -> QueueConsumer {
    QueueConsumer::new(
        pool(redis),
        redis.url(),
        &RedisKeys::new(redis.prefix()),
        QueueName::Notifications,
        name,
        ConsumerSettings::default(),
    )
    .unwrap()
}

fn job(id: &str, kind: &str) -> NewJob {
    NewJob {
        id: JobId::new(id),
        queue: QueueName::Notifications,
        kind: kind.into(),
        payload: serde_json::json!({}),
        schema_version: 1,
        max_attempts: 5,
        trace_id: None,
    }
}

fn settings(concurrency: usize) -> RuntimeSettings {
    RuntimeSettings {
        concurrency,
        reclaim_after: Duration::from_secs(30),
        block: Duration::from_millis(100),
        base_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(200),
        drain_timeout: Duration::from_secs(5),
    }
}

/// Publishes as the platform's outbox publisher does: held while a job with a barrier runs.
struct HoldingPublisher(Log);

#[async_trait]
impl JobPublisher for HoldingPublisher {
    async fn publish(&self, jobs: &[NewJob]) {
        let ids: Vec<&str> = jobs.iter().map(|j| j.id.as_str()).collect();
        if hold(jobs) {
            self.0.lock().unwrap().push(format!("held {}", ids.join(",")));
        } else {
            self.0.lock().unwrap().push(format!("published {}", ids.join(",")));
        }
    }
}

/// Answers flushes from a script (then `true`), each once `gate` lets it when there is one.
struct ScriptedBarrier {
    epoch: AtomicU64,
    answers: Mutex<VecDeque<bool>>,
    gate: Option<Arc<Semaphore>>,
    log: Log,
}

#[async_trait]
impl WriteBarrier for ScriptedBarrier {
    fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    async fn flush(&self, since: u64) -> Result<bool, InfraError> {
        assert_eq!(since, self.epoch(), "a job flushes with the epoch it read when it started");
        if let Some(gate) = &self.gate {
            gate.acquire().await.unwrap().forget();
        }
        let answer = self.answers.lock().unwrap().pop_front().unwrap_or(true);
        self.log.lock().unwrap().push(format!("flush {answer}"));
        Ok(answer)
    }
}

/// Publishes a follow-on job named after its attempt, then succeeds.
struct Publishing {
    publisher: Arc<HoldingPublisher>,
    log: Log,
}

#[async_trait]
impl JobHandler for Publishing {
    async fn handle(&self, job: &JobEnvelope) -> Result<JobOutcome, JobFailure> {
        self.log.lock().unwrap().push(format!("run {}", job.attempt));
        self.publisher.publish(&[job_named(&format!("next-{}", job.attempt))]).await;
        Ok(JobOutcome::Done)
    }
}

fn job_named(id: &str) -> NewJob {
    job(id, "unhandled")
}

fn spawn(runtime: WorkerRuntime) -> (tokio::task::JoinHandle<usize>, Arc<Notify>) {
    let stop = Arc::new(Notify::new());
    let signal = stop.clone();
    (tokio::spawn(async move { runtime.run(async move { signal.notified().await }).await }), stop)
}

async fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn run_with_flushes(answers: &[bool]) -> Vec<String> {
    let redis = TestRedis::new();
    let producer = RedisJobQueue::new(pool(&redis), RedisKeys::new(redis.prefix()));
    let log: Log = Arc::default();
    let publisher = Arc::new(HoldingPublisher(log.clone()));
    let barrier = Arc::new(ScriptedBarrier {
        epoch: AtomicU64::new(7),
        answers: Mutex::new(answers.iter().copied().collect()),
        gate: None,
        log: log.clone(),
    });
    let registry = HandlerRegistry::default()
        .with("publishing", Arc::new(Publishing { publisher: publisher.clone(), log: log.clone() }));
    let runtime = WorkerRuntime::new(vec![consumer(&redis, "w")], registry, settings(4))
        .with_durability(Durability::new(barrier, publisher));
    let (handle, stop) = spawn(runtime);
    producer.enqueue(job("step", "publishing")).await.unwrap();

    let inspector = consumer(&redis, "inspector");
    wait_until("something is published", Duration::from_secs(10), || {
        log.lock().unwrap().iter().any(|l| l.starts_with("published"))
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let stats = inspector.stats().await.unwrap();
        if stats.waiting + stats.in_flight + stats.delayed == 0 {
            assert_eq!(stats.dead, 0);
            break;
        }
        assert!(Instant::now() < deadline, "the job never completed: {stats:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.notify_one();
    handle.await.unwrap();
    let log = log.lock().unwrap().clone();
    log
}

#[tokio::test]
async fn a_job_is_done_only_after_its_flush_and_what_it_published_follows_the_flush() {
    assert_eq!(
        run_with_flushes(&[]).await,
        vec!["run 1", "held next-1", "flush true", "published next-1"],
        "published only once the flush answered"
    );
}

#[tokio::test]
async fn a_job_whose_writes_may_be_lost_runs_again_and_what_it_published_is_dropped() {
    // Once: it runs again at once, in the same delivery.
    assert_eq!(
        run_with_flushes(&[false]).await,
        vec!["run 1", "held next-1", "flush false", "run 1", "held next-1", "flush true", "published next-1"],
    );
    // Again and again: after three reruns it retries as a failure would (a second attempt).
    let mut expected: Vec<&str> = Vec::new();
    for _ in 0..4 {
        expected.extend(["run 1", "held next-1", "flush false"]);
    }
    expected.extend(["run 2", "held next-2", "flush true", "published next-2"]);
    assert_eq!(run_with_flushes(&[false; 4]).await, expected);
}

#[tokio::test]
async fn a_job_waiting_for_its_flush_gives_its_slot_to_the_next_job() {
    let redis = TestRedis::new();
    let producer = RedisJobQueue::new(pool(&redis), RedisKeys::new(redis.prefix()));
    let log: Log = Arc::default();
    let publisher = Arc::new(HoldingPublisher(log.clone()));
    let gate = Arc::new(Semaphore::new(0));
    let barrier = Arc::new(ScriptedBarrier {
        epoch: AtomicU64::new(1),
        answers: Mutex::default(),
        gate: Some(gate.clone()),
        log: log.clone(),
    });
    let registry = HandlerRegistry::default()
        .with("publishing", Arc::new(Publishing { publisher: publisher.clone(), log: log.clone() }));
    // One handler slot: the second job runs only if the first gave its slot back.
    let runtime = WorkerRuntime::new(vec![consumer(&redis, "w")], registry, settings(1))
        .with_durability(Durability::new(barrier, publisher));
    let (handle, stop) = spawn(runtime);
    producer.enqueue(job("first", "publishing")).await.unwrap();
    producer.enqueue(job("second", "publishing")).await.unwrap();

    wait_until("both jobs ran while the first flush waits", Duration::from_secs(10), || {
        log.lock().unwrap().iter().filter(|l| l.starts_with("run ")).count() == 2
    })
    .await;
    assert!(!log.lock().unwrap().iter().any(|l| l.starts_with("flush")), "no flush has answered yet");
    // Both flushes answer; both jobs complete and publish what they held.
    gate.add_permits(2);
    wait_until("both published", Duration::from_secs(10), || {
        log.lock().unwrap().iter().filter(|l| l.starts_with("published ")).count() == 2
    })
    .await;
    stop.notify_one();
    handle.await.unwrap();
}
