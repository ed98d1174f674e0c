//! Job-queue throughput against the Redis at `REDIS_URL` (default local): enqueue rates, and
//! jobs/s of a no-op handler draining a full queue and end to end with the producer running.
//! Prints a Markdown table (used by `just bench`). Keys live under a fresh prefix, deleted after.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use ecom_jobs::{HandlerRegistry, JobFailure, JobHandler, RuntimeSettings, WorkerRuntime};
use ecom_kernel::jobs::{JobEnvelope, JobId, JobOutcome, JobQueue, NewJob, QueueName};
use ecom_redis::{connect, ConsumerSettings, QueueConsumer, RedisJobQueue, RedisKeys, RedisSettings};
use tokio::sync::Notify;

struct Count(AtomicUsize, Notify, usize);

#[async_trait]
impl JobHandler for Count {
    async fn handle(&self, _: &JobEnvelope) -> Result<JobOutcome, JobFailure> {
        if self.0.fetch_add(1, Ordering::Relaxed) + 1 >= self.2 {
            self.1.notify_one();
        }
        Ok(JobOutcome::Done)
    }
}

fn job(run: &str, i: usize) -> NewJob {
    NewJob {
        id: JobId::new(format!("{run}-{i}")),
        queue: QueueName::Checkout,
        kind: "bench.noop".into(),
        payload: serde_json::json!({"i": i}),
        schema_version: 1,
        max_attempts: 3,
        trace_id: None,
    }
}

struct Bench {
    url: String,
    prefix: String,
}

impl Bench {
    fn pool(&self) -> deadpool_redis::Pool {
        connect(&RedisSettings { url: self.url.clone(), max_connections: 16, timeout: Duration::from_secs(5) }).unwrap()
    }

    fn keys(&self, run: &str) -> RedisKeys {
        RedisKeys::new(format!("{}{run}:", self.prefix))
    }

    fn producer(&self, run: &str) -> RedisJobQueue {
        RedisJobQueue::new(self.pool(), self.keys(run))
    }

    async fn enqueue_all(&self, producer: &RedisJobQueue, run: &str, n: usize) {
        for start in (0..n).step_by(200) {
            let jobs: Vec<NewJob> = (start..(start + 200).min(n)).map(|i| job(run, i)).collect();
            producer.enqueue_batch(&jobs).await.unwrap();
        }
    }

    /// Runs `workers` runtimes of `concurrency` slots until `n` jobs are handled; returns jobs/s.
    async fn consume(&self, run: &str, n: usize, concurrency: usize, produce: bool) -> f64 {
        let counter = Arc::new(Count(AtomicUsize::new(0), Notify::new(), n));
        let registry = HandlerRegistry::default().with("bench.noop", counter.clone());
        let settings = RuntimeSettings { concurrency, block: Duration::from_millis(50), ..RuntimeSettings::default() };
        let consumer = QueueConsumer::new(
            self.pool(),
            &self.url,
            &self.keys(run),
            QueueName::Checkout,
            "bench",
            ConsumerSettings::default(),
        )
        .unwrap();
        consumer.ensure_group().await.unwrap();
        let stop = Arc::new(Notify::new());
        let signal = stop.clone();
        let started = Instant::now();
        let runtime = tokio::spawn(
            WorkerRuntime::new(vec![consumer], registry, settings).run(async move { signal.notified().await }),
        );
        if produce {
            self.enqueue_all(&self.producer(run), run, n).await;
        }
        while counter.0.load(Ordering::Relaxed) < n {
            let _ = tokio::time::timeout(Duration::from_millis(100), counter.1.notified()).await;
        }
        let elapsed = started.elapsed();
        stop.notify_one();
        runtime.await.unwrap();
        n as f64 / elapsed.as_secs_f64()
    }
}

#[tokio::main]
async fn main() {
    let bench = Bench {
        url: std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into()),
        prefix: format!("bench-jobs-{}:", uuid::Uuid::now_v7().simple()),
    };
    let n: usize = std::env::var("BENCH_JOBS").ok().and_then(|v| v.parse().ok()).unwrap_or(50_000);
    let mut rows = Vec::new();

    let producer = bench.producer("one");
    let started = Instant::now();
    for i in 0..(n / 5) {
        producer.enqueue(job("one", i)).await.unwrap();
    }
    rows.push((
        "enqueue, one by one (one producer, awaiting each)".to_owned(),
        (n / 5) as f64 / started.elapsed().as_secs_f64(),
    ));

    let producer = bench.producer("batch");
    let started = Instant::now();
    bench.enqueue_all(&producer, "batch", n).await;
    rows.push(("enqueue, batches of 200".to_owned(), n as f64 / started.elapsed().as_secs_f64()));

    let rate = bench.consume("batch", n, 50, false).await;
    rows.push((format!("drain a full queue of {n}, concurrency 50"), rate));

    for concurrency in [1usize, 10, 50] {
        let run = format!("e2e{concurrency}");
        let jobs = if concurrency == 1 { n / 5 } else { n };
        let rate = bench.consume(&run, jobs, concurrency, true).await;
        rows.push((format!("end to end ({jobs} jobs, producer running), concurrency {concurrency}"), rate));
    }

    println!("| job queue (no-op handler) | jobs/s |");
    println!("|---|---|");
    for (name, rate) in rows {
        println!("| {name} | {rate:.0} |");
    }

    // Clean up every key of this run.
    let client = deadpool_redis::redis::Client::open(bench.url.as_str()).unwrap();
    let mut conn = client.get_connection().unwrap();
    let keys: Vec<String> =
        deadpool_redis::redis::cmd("KEYS").arg(format!("{}*", bench.prefix)).query(&mut conn).unwrap();
    for chunk in keys.chunks(500) {
        let _: () = deadpool_redis::redis::cmd("DEL").arg(chunk).query(&mut conn).unwrap();
    }
}
