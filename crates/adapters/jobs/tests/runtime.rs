//! The worker runtime against the real Redis.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use ecom_jobs::{hold, Durability, HandlerRegistry, JobFailure, JobHandler, RuntimeSettings, WorkerRuntime};
use ecom_kernel::jobs::{Enqueued, JobEnvelope, JobId, JobOutcome, JobQueue, NewJob, QueueName, WriteBarrier};
use ecom_kernel::InfraError;
use ecom_payments::ports::JobPublisher;
use ecom_redis::{connect, ConsumerSettings, QueueConsumer, RedisJobQueue, RedisKeys, RedisSettings};
use ecom_testkit::TestRedis;
use tokio::sync::{Notify, Semaphore};

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

fn job(id: &str, kind: &str, max_attempts: u32) -> NewJob {
    NewJob {
        id: JobId::new(id),
        queue: QueueName::Notifications,
        kind: kind.into(),
        payload: serde_json::json!({}),
        schema_version: 1,
        max_attempts,
        trace_id: None,
    }
}

fn fast() -> RuntimeSettings {
    RuntimeSettings {
        concurrency: 10,
        reclaim_after: Duration::from_millis(300),
        block: Duration::from_millis(100),
        base_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_secs(1),
        drain_timeout: Duration::from_secs(5),
    }
}

/// Records every attempt of every job.
#[derive(Default)]
struct Recorder {
    attempts: Mutex<HashMap<String, Vec<Instant>>>,
    notify: Notify,
}

impl Recorder {
    fn record(&self, id: &str) {
        self.attempts.lock().unwrap().entry(id.to_owned()).or_default().push(Instant::now());
        self.notify.notify_waiters();
    }

    fn count(&self) -> usize {
        self.attempts.lock().unwrap().len()
    }

    async fn wait_for(&self, jobs: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.count() < jobs {
            assert!(Instant::now() < deadline, "only {} of {jobs} jobs ran", self.count());
            let _ = tokio::time::timeout(Duration::from_millis(50), self.notify.notified()).await;
        }
    }
}

struct Succeed(Arc<Recorder>);

#[async_trait]
impl JobHandler for Succeed {
    async fn handle(&self, job: &JobEnvelope) -> Result<JobOutcome, JobFailure> {
        self.0.record(job.id.as_str());
        Ok(JobOutcome::Done)
    }
}

struct AlwaysFail(Arc<Recorder>, bool);

#[async_trait]
impl JobHandler for AlwaysFail {
    async fn handle(&self, job: &JobEnvelope) -> Result<JobOutcome, JobFailure> {
        self.0.record(job.id.as_str());
        if self.1 {
            panic!("handler bug");
        }
        Err(JobFailure::Retryable("gateway timeout".into()))
    }
}

/// Blocks until released; records starts.
struct Slow(Arc<Recorder>, Duration);

#[async_trait]
impl JobHandler for Slow {
    async fn handle(&self, job: &JobEnvelope) -> Result<JobOutcome, JobFailure> {
        self.0.record(job.id.as_str());
        tokio::time::sleep(self.1).await;
        Ok(JobOutcome::Done)
    }
}

fn spawn(runtime: WorkerRuntime) -> (tokio::task::JoinHandle<usize>, Arc<Notify>) {
    let stop = Arc::new(Notify::new());
    let signal = stop.clone();
    (tokio::spawn(async move { runtime.run(async move { signal.notified().await }).await }), stop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_jobs_over_three_workers_each_complete_exactly_once() {
    let redis = TestRedis::new();
    let producer = RedisJobQueue::new(pool(&redis), RedisKeys::new(redis.prefix()));
    let recorder = Arc::new(Recorder::default());
    let mut workers = Vec::new();
    for w in 0..3 {
        let registry = HandlerRegistry::default().with("ok", Arc::new(Succeed(recorder.clone())));
        workers.push(spawn(WorkerRuntime::new(vec![consumer(&redis, &format!("w{w}"))], registry, fast())));
    }
    for chunk in (0..10_000).collect::<Vec<_>>().chunks(500) {
        futures_util::future::try_join_all(chunk.iter().map(|i| producer.enqueue(job(&format!("j{i}"), "ok", 3))))
            .await
            .unwrap();
    }
    recorder.wait_for(10_000, Duration::from_secs(60)).await;
    for (handle, stop) in workers {
        stop.notify_one();
        assert_eq!(handle.await.unwrap(), 0);
    }
    let attempts = recorder.attempts.lock().unwrap();
    assert_eq!(attempts.len(), 10_000);
    assert!(attempts.values().all(|a| a.len() == 1), "a job ran twice");
}

#[tokio::test]
async fn a_failing_job_is_retried_with_growing_delays_then_dead_lettered() {
    for panics in [false, true] {
        let redis = TestRedis::new();
        let producer = RedisJobQueue::new(pool(&redis), RedisKeys::new(redis.prefix()));
        let recorder = Arc::new(Recorder::default());
        let registry = HandlerRegistry::default().with("fail", Arc::new(AlwaysFail(recorder.clone(), panics)));
        // Delays of 300, 600, 1200 ms: growth well above the promoter's 200 ms tick and load noise.
        let settings =
            RuntimeSettings { base_backoff: Duration::from_millis(300), max_backoff: Duration::from_secs(5), ..fast() };
        let (handle, stop) = spawn(WorkerRuntime::new(vec![consumer(&redis, "w")], registry, settings));
        producer.enqueue(job("doomed", "fail", 4)).await.unwrap();

        let inspector = consumer(&redis, "inspector");
        let deadline = Instant::now() + Duration::from_secs(20);
        // A read may time out while the panicking handler's backtrace is being printed on a busy
        // machine: that is the observer's hiccup, not the runtime's; ask again.
        while inspector.stats().await.map_or(0, |s| s.dead) == 0 {
            assert!(Instant::now() < deadline, "never dead-lettered");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        stop.notify_one();
        handle.await.unwrap();
        let times = recorder.attempts.lock().unwrap()["doomed"].clone();
        assert_eq!(times.len(), 4, "max_attempts runs");
        let gaps: Vec<Duration> = times.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(gaps[0] >= Duration::from_millis(300) && gaps[2] >= Duration::from_millis(1200), "{gaps:?}");
        assert!(gaps[0] < gaps[2], "delays grow: {gaps:?}");
        let (id, error) = inspector.dead_letters(1).await.unwrap().remove(0);
        assert_eq!(id, "doomed");
        let expected = if panics { "panic: handler bug" } else { "gateway timeout" };
        assert!(error.starts_with("gave up after 4 attempts") && error.contains(expected), "{error}");
        // Out of retries on a failure that may pass (an outage): a sweep's offer of its id runs
        // it again. A handler that panicked every time has a bug: it stays dead.
        let offered = producer.reoffer(&[job("doomed", "fail", 4)], Duration::ZERO).await.unwrap();
        assert_eq!(offered, [if panics { Enqueued::AlreadyPresent } else { Enqueued::Redriven }]);
    }
}

/// Fails (retryably, or for good) the first `n` times it runs a job, then succeeds.
struct FailTimes(Arc<Recorder>, usize, bool);

#[async_trait]
impl JobHandler for FailTimes {
    async fn handle(&self, job: &JobEnvelope) -> Result<JobOutcome, JobFailure> {
        self.0.record(job.id.as_str());
        let runs = self.0.attempts.lock().unwrap()[job.id.as_str()].len();
        match (runs <= self.1, self.2) {
            (false, _) => Ok(JobOutcome::Done),
            (true, false) => Err(JobFailure::Retryable("database unavailable".into())),
            (true, true) => Err(JobFailure::Permanent("no such order".into())),
        }
    }
}

#[tokio::test]
async fn a_job_out_of_retries_runs_again_by_itself_until_it_succeeds_and_one_that_failed_for_good_stays_dead() {
    let redis = TestRedis::new();
    let producer = RedisJobQueue::new(pool(&redis), RedisKeys::new(redis.prefix()));
    let recorder = Arc::new(Recorder::default());
    let registry = HandlerRegistry::default()
        .with("outage", Arc::new(FailTimes(recorder.clone(), 4, false)))
        .with("broken", Arc::new(FailTimes(recorder.clone(), 1, true)));
    let settings = ConsumerSettings { revive_after: Duration::from_millis(200), ..ConsumerSettings::default() };
    let worker = QueueConsumer::new(
        pool(&redis),
        redis.url(),
        &RedisKeys::new(redis.prefix()),
        QueueName::Notifications,
        "w",
        settings,
    )
    .unwrap();
    // No reclaim within the test: a stalled machine must not make a delivery run twice.
    let runtime = RuntimeSettings { reclaim_after: Duration::from_secs(30), ..fast() };
    let (handle, stop) = spawn(WorkerRuntime::new(vec![worker], registry, runtime));
    // Two attempts per round: out of retries twice, revived twice, then it succeeds.
    producer.enqueue(job("outage", "outage", 2)).await.unwrap();
    producer.enqueue(job("broken", "broken", 2)).await.unwrap();

    let inspector = consumer(&redis, "inspector");
    let runs = |id: &str| recorder.attempts.lock().unwrap().get(id).map_or(0, Vec::len);
    let deadline = Instant::now() + Duration::from_secs(20);
    while runs("outage") < 5 || inspector.stats().await.unwrap().in_flight > 0 {
        assert!(Instant::now() < deadline, "ran {} times", runs("outage"));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Past the longest wait a third revival would have had.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.notify_one();
    handle.await.unwrap();
    assert_eq!(runs("outage"), 5, "four failures, then done once");
    assert_eq!(runs("broken"), 1);
    let letters = inspector.dead_letters(10).await.unwrap();
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0].0, "broken");
}

#[tokio::test]
async fn a_job_whose_last_outcome_was_lost_after_retried_failures_runs_again_by_itself_but_a_crasher_stays_dead() {
    let redis = TestRedis::new();
    let producer = RedisJobQueue::new(pool(&redis), RedisKeys::new(redis.prefix()));
    producer.enqueue(job("outage", "ok", 2)).await.unwrap();
    producer.enqueue(job("crasher", "ok", 2)).await.unwrap();
    // By hand, as workers would: the outage's job fails once (recorded) and its second attempt
    // ends with its worker before its outcome is written; both of the crasher's attempts end
    // with their worker.
    let hand = consumer(&redis, "hand");
    hand.ensure_group().await.unwrap();
    let first: HashMap<String, ecom_redis::Delivery> = hand
        .read(10, Duration::from_millis(100))
        .await
        .unwrap()
        .into_iter()
        .map(|d| (d.job.id.as_str().to_owned(), d))
        .collect();
    assert!(!first["outage"].failed_before && !first["crasher"].failed_before);
    assert!(hand.retry(&first["outage"], Duration::ZERO, "database unavailable").await.unwrap());
    tokio::time::sleep(Duration::from_millis(400)).await;
    let crashed = hand.reclaim(Duration::from_millis(300), 10).await.unwrap();
    assert_eq!(crashed.len(), 1);
    assert_eq!((crashed[0].job.id.as_str(), crashed[0].job.attempt, crashed[0].failed_before), ("crasher", 2, false));
    assert_eq!(hand.promote(10).await.unwrap(), 1);
    let second = hand.read(10, Duration::from_millis(100)).await.unwrap();
    assert_eq!(second.len(), 1);
    assert_eq!((second[0].job.id.as_str(), second[0].job.attempt, second[0].failed_before), ("outage", 2, true));

    // A worker takes both over, each now delivered once more than allowed.
    let recorder = Arc::new(Recorder::default());
    let registry = HandlerRegistry::default().with("ok", Arc::new(Succeed(recorder.clone())));
    let settings = ConsumerSettings { revive_after: Duration::from_millis(200), ..ConsumerSettings::default() };
    let worker = QueueConsumer::new(
        pool(&redis),
        redis.url(),
        &RedisKeys::new(redis.prefix()),
        QueueName::Notifications,
        "w",
        settings,
    )
    .unwrap();
    let (handle, stop) = spawn(WorkerRuntime::new(vec![worker], registry, fast()));
    recorder.wait_for(1, Duration::from_secs(20)).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while hand.stats().await.unwrap().dead != 1 || hand.stats().await.unwrap().in_flight != 0 {
        assert!(Instant::now() < deadline, "{:?}", hand.stats().await.unwrap());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.notify_one();
    handle.await.unwrap();
    // The outage's job ran again by itself (from a fresh round of attempts) and finished; the
    // crasher waits for an operator.
    assert_eq!(recorder.attempts.lock().unwrap().keys().collect::<Vec<_>>(), ["outage"]);
    let letters = hand.dead_letters(10).await.unwrap();
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0].0, "crasher");
    assert!(letters[0].1.contains("delivered too many times"), "{letters:?}");
}

#[tokio::test]
async fn a_job_of_an_unknown_kind_is_dead_lettered_and_runs_again_later() {
    let redis = TestRedis::new();
    let producer = RedisJobQueue::new(pool(&redis), RedisKeys::new(redis.prefix()));
    let (handle, stop) = spawn(WorkerRuntime::new(vec![consumer(&redis, "w")], HandlerRegistry::default(), fast()));
    producer.enqueue(job("mystery", "nobody.handles.this", 3)).await.unwrap();
    let inspector = consumer(&redis, "inspector");
    let deadline = Instant::now() + Duration::from_secs(5);
    while inspector.stats().await.unwrap().dead == 0 {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    stop.notify_one();
    handle.await.unwrap();
    assert!(inspector.dead_letters(1).await.unwrap()[0].1.contains("no handler"));
    // Not failed for good (a newer release may have added the kind): offered again, it runs.
    assert_eq!(
        producer.reoffer(&[job("mystery", "nobody.handles.this", 3)], Duration::ZERO).await.unwrap(),
        [Enqueued::Redriven]
    );
}

#[tokio::test]
async fn stopping_lets_a_running_job_finish_and_it_never_runs_again() {
    let redis = TestRedis::new();
    let producer = RedisJobQueue::new(pool(&redis), RedisKeys::new(redis.prefix()));
    let recorder = Arc::new(Recorder::default());
    let registry =
        HandlerRegistry::default().with("slow", Arc::new(Slow(recorder.clone(), Duration::from_millis(700))));
    let (handle, stop) = spawn(WorkerRuntime::new(vec![consumer(&redis, "w1")], registry.clone(), fast()));
    producer.enqueue(job("long", "slow", 3)).await.unwrap();
    recorder.wait_for(1, Duration::from_secs(5)).await;
    let asked = Instant::now();
    stop.notify_one();
    assert_eq!(handle.await.unwrap(), 0, "nothing left running");
    assert!(asked.elapsed() >= Duration::from_millis(300), "it waited for the job");

    // A new worker finds nothing to redo, even after the reclaim threshold.
    let (handle, stop) = spawn(WorkerRuntime::new(vec![consumer(&redis, "w2")], registry, fast()));
    tokio::time::sleep(Duration::from_millis(800)).await;
    stop.notify_one();
    handle.await.unwrap();
    assert_eq!(recorder.attempts.lock().unwrap()["long"].len(), 1);
}

#[tokio::test]
async fn a_killed_workers_job_is_reclaimed_and_completed_by_another() {
    let redis = TestRedis::new();
    let producer = RedisJobQueue::new(pool(&redis), RedisKeys::new(redis.prefix()));
    let recorder = Arc::new(Recorder::default());
    let hanging = HandlerRegistry::default().with("work", Arc::new(Slow(recorder.clone(), Duration::from_secs(3600))));
    let (killed, _stop) = spawn(WorkerRuntime::new(vec![consumer(&redis, "doomed")], hanging, fast()));
    producer.enqueue(job("orphan", "work", 3)).await.unwrap();
    recorder.wait_for(1, Duration::from_secs(5)).await;
    killed.abort(); // no ack, no drain, no more heartbeats: as after SIGKILL
    let _ = killed.await;

    let finished = Arc::new(Recorder::default());
    let registry = HandlerRegistry::default().with("work", Arc::new(Succeed(finished.clone())));
    let (handle, stop) = spawn(WorkerRuntime::new(vec![consumer(&redis, "rescuer")], registry, fast()));
    finished.wait_for(1, Duration::from_secs(10)).await;
    stop.notify_one();
    handle.await.unwrap();
    let stats = consumer(&redis, "inspector").stats().await.unwrap();
    assert_eq!((stats.waiting, stats.in_flight, stats.dead), (0, 0, 0));
}

/// A Redis server of this test's own, so that it can be restarted.
struct OwnRedis(std::process::Child);

impl OwnRedis {
    fn start(port: u16) -> Self {
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server must be installed for this test");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self(child)
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn workers_reconnect_by_themselves_after_a_redis_restart() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("redis://127.0.0.1:{port}");
    let server = OwnRedis::start(port);
    let pool =
        connect(&RedisSettings { url: url.clone(), max_connections: 4, timeout: Duration::from_millis(500) }).unwrap();
    let keys = RedisKeys::new("restart:");
    let producer = RedisJobQueue::new(pool.clone(), keys.clone());
    let recorder = Arc::new(Recorder::default());
    let registry = HandlerRegistry::default().with("ok", Arc::new(Succeed(recorder.clone())));
    let consumer =
        QueueConsumer::new(pool.clone(), &url, &keys, QueueName::Notifications, "w", ConsumerSettings::default())
            .unwrap();
    let (handle, stop) = spawn(WorkerRuntime::new(vec![consumer], registry, fast()));
    producer.enqueue(job("before", "ok", 3)).await.unwrap();
    recorder.wait_for(1, Duration::from_secs(5)).await;

    drop(server); // Redis goes away (and, without persistence, comes back empty)
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _server = OwnRedis::start(port);
    let deadline = Instant::now() + Duration::from_secs(15);
    while producer.enqueue(job("after", "ok", 3)).await.is_err() {
        assert!(Instant::now() < deadline, "the producer did not reconnect");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    recorder.wait_for(2, Duration::from_secs(15)).await;
    stop.notify_one();
    handle.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_full_of_slow_jobs_does_not_starve_another_queue() {
    let redis = TestRedis::new();
    let producer = RedisJobQueue::new(pool(&redis), RedisKeys::new(redis.prefix()));
    let (slow, quick) = (Arc::new(Recorder::default()), Arc::new(Recorder::default()));
    // The slow jobs hold their slots until the end of the test.
    let release = Arc::new(Semaphore::new(0));
    let registry = HandlerRegistry::default()
        .with("slow", Arc::new(Held(slow.clone(), release.clone())))
        .with("quick", Arc::new(Succeed(quick.clone())));
    let checkout = QueueConsumer::new(
        pool(&redis),
        redis.url(),
        &RedisKeys::new(redis.prefix()),
        QueueName::Checkout,
        "w",
        ConsumerSettings::default(),
    )
    .unwrap();
    let settings = RuntimeSettings { concurrency: 4, reclaim_after: Duration::from_secs(30), ..fast() };
    let (handle, stop) = spawn(WorkerRuntime::new(vec![checkout, consumer(&redis, "w")], registry, settings));
    // More slow jobs than slots: with shared slots, the quick ones would wait seconds for them.
    for i in 0..8 {
        producer.enqueue(NewJob { queue: QueueName::Checkout, ..job(&format!("s{i}"), "slow", 1) }).await.unwrap();
    }
    slow.wait_for(4, Duration::from_secs(5)).await;
    for i in 0..20 {
        producer.enqueue(job(&format!("q{i}"), "quick", 1)).await.unwrap();
    }
    // With shared slots the quick jobs would wait for slow ones that never end.
    quick.wait_for(20, Duration::from_secs(20)).await;
    assert_eq!(slow.count(), 4, "the slow queue still runs at most its own slots");
    release.add_permits(8);
    stop.notify_one();
    handle.await.unwrap();
}

/// Records its start, then holds its slot until `release` gives it a permit.
struct Held(Arc<Recorder>, Arc<Semaphore>);

#[async_trait]
impl JobHandler for Held {
    async fn handle(&self, job: &JobEnvelope) -> Result<JobOutcome, JobFailure> {
        self.0.record(job.id.as_str());
        self.1.acquire().await.unwrap().forget();
        Ok(JobOutcome::Done)
    }
}

// With a durability barrier: a job counts as done only once its flush succeeded, and the jobs
// it published wait for that flush.

type Log = Arc<Mutex<Vec<String>>>;

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

    async fn reoffer(&self, jobs: &[NewJob], _revive_after: Duration) {
        let ids: Vec<&str> = jobs.iter().map(|j| j.id.as_str()).collect();
        self.0.lock().unwrap().push(format!("reoffered {}", ids.join(",")));
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
    job(id, "unhandled", 5)
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
    let runtime =
        WorkerRuntime::new(vec![consumer(&redis, "w")], registry, RuntimeSettings { concurrency: 4, ..fast() })
            .with_durability(Durability::new(barrier, publisher));
    let (handle, stop) = spawn(runtime);
    producer.enqueue(job("step", "publishing", 5)).await.unwrap();

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
    let runtime =
        WorkerRuntime::new(vec![consumer(&redis, "w")], registry, RuntimeSettings { concurrency: 1, ..fast() })
            .with_durability(Durability::new(barrier, publisher));
    let (handle, stop) = spawn(runtime);
    producer.enqueue(job("first", "publishing", 5)).await.unwrap();
    producer.enqueue(job("second", "publishing", 5)).await.unwrap();

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

/// Reads payload version 2; records the attempt number of each job it runs.
struct Newer(Arc<Mutex<Vec<u32>>>);

#[async_trait]
impl JobHandler for Newer {
    async fn handle(&self, job: &JobEnvelope) -> Result<JobOutcome, JobFailure> {
        self.0.lock().unwrap().push(job.attempt);
        Ok(JobOutcome::Done)
    }

    fn schema_version(&self) -> u16 {
        2
    }
}

#[tokio::test]
async fn a_job_of_a_newer_payload_version_waits_for_a_worker_that_reads_it_with_every_attempt_it_had() {
    let redis = TestRedis::new();
    let producer = RedisJobQueue::new(pool(&redis), RedisKeys::new(redis.prefix()));
    let recorder = Arc::new(Recorder::default());
    let registry = HandlerRegistry::default().with("notify.send", Arc::new(Succeed(recorder.clone())));
    let (handle, stop) = spawn(WorkerRuntime::new(vec![consumer(&redis, "old")], registry, fast()));
    producer.enqueue(NewJob { schema_version: 2, ..job("from-the-future", "notify.send", 2) }).await.unwrap();
    producer.enqueue(job("today", "notify.send", 2)).await.unwrap();
    recorder.wait_for(1, Duration::from_secs(5)).await;

    // The old worker puts it back, again and again: more often than it has attempts. (Each
    // time it comes back it is added to the stream again, after the two first adds.)
    let inspector = consumer(&redis, "inspector");
    let stream = RedisKeys::new(redis.prefix()).queue(QueueName::Notifications.as_str()).stream();
    let mut conn =
        deadpool_redis::redis::Client::open(redis.url()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let info: HashMap<String, deadpool_redis::redis::Value> =
            deadpool_redis::redis::cmd("XINFO").arg("STREAM").arg(&stream).query_async(&mut conn).await.unwrap();
        let added = match info.get("entries-added") {
            Some(deadpool_redis::redis::Value::Int(n)) => *n,
            other => panic!("entries-added: {other:?}"),
        };
        assert_eq!(inspector.stats().await.unwrap().dead, 0, "never dead-lettered");
        if added >= 2 + 3 {
            break;
        }
        assert!(Instant::now() < deadline, "offered again {} times", added - 2);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.notify_one();
    handle.await.unwrap();
    assert_eq!(
        recorder.attempts.lock().unwrap().keys().collect::<Vec<_>>(),
        ["today"],
        "never handed to the old handler"
    );

    // A newer worker runs it, on its first attempt.
    let runs = Arc::new(Mutex::new(Vec::new()));
    let registry = HandlerRegistry::default().with("notify.send", Arc::new(Newer(runs.clone())));
    let (handle, stop) = spawn(WorkerRuntime::new(vec![consumer(&redis, "new")], registry, fast()));
    let deadline = Instant::now() + Duration::from_secs(10);
    while runs.lock().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "the newer worker never ran it");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.notify_one();
    handle.await.unwrap();
    assert_eq!(*runs.lock().unwrap(), [1]);
}
