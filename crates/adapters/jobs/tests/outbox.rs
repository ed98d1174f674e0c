//! The transactional outbox against the real PostgreSQL and Redis.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use diesel_async::{AsyncConnection, AsyncPgConnection};
use ecom_kernel::jobs::{JobId, JobQueue, NewJob, QueueName, WriteBarrier};
use ecom_kernel::InfraError;
use ecom_postgres::{connect as pg_connect, connect_batch, stage, OutboxRemovals, PgOutbox, PgSettings};
use ecom_redis::{connect, ConsumerSettings, QueueConsumer, RedisJobQueue, RedisKeys, RedisSettings};
use ecom_testkit::{TestDb, TestRedis};

struct World {
    db: TestDb,
    _redis: TestRedis,
    outbox: Arc<PgOutbox>,
    queue: RedisJobQueue,
    consumer: QueueConsumer,
}

fn settings(db: &TestDb) -> PgSettings {
    PgSettings {
        url: db.url(),
        max_connections: 4,
        acquire_timeout: Duration::from_secs(5),
        statement_timeout: Duration::from_secs(5),
        application_name: "outbox-test".into(),
    }
}

async fn world() -> World {
    let db = TestDb::new().await;
    let redis = TestRedis::new();
    let settings = settings(&db);
    let (pg, batch) = (pg_connect(&settings).unwrap(), connect_batch(&settings).unwrap());
    let pool = connect(&RedisSettings { url: redis.url().into(), max_connections: 4, timeout: Duration::from_secs(2) })
        .unwrap();
    let keys = RedisKeys::new(redis.prefix());
    let consumer =
        QueueConsumer::new(pool.clone(), redis.url(), &keys, QueueName::Checkout, "c", ConsumerSettings::default())
            .unwrap();
    consumer.ensure_group().await.unwrap();
    World {
        outbox: Arc::new(PgOutbox::new(pg, batch)),
        queue: RedisJobQueue::new(pool, keys),
        consumer,
        db,
        _redis: redis,
    }
}

fn job(id: &str) -> NewJob {
    NewJob {
        id: JobId::new(id),
        queue: QueueName::Checkout,
        kind: "checkout.start".into(),
        payload: serde_json::json!({"orderId": id}),
        schema_version: 1,
        max_attempts: 5,
        trace_id: Some("trace-1".into()),
    }
}

async fn commit(w: &World, jobs: Vec<NewJob>, rollback: bool) {
    let mut conn = AsyncPgConnection::establish(&w.db.url()).await.unwrap();
    let result = conn
        .transaction::<(), diesel::result::Error, _>(async move |conn| {
            stage(conn, &jobs, None, chrono::Utc::now()).await?;
            if rollback {
                return Err(diesel::result::Error::RollbackTransaction);
            }
            Ok(())
        })
        .await;
    assert_eq!(result.is_ok(), !rollback);
}

async fn ids(w: &World) -> Vec<String> {
    let mut out = Vec::new();
    for d in w.consumer.read(100, Duration::from_millis(100)).await.unwrap() {
        out.push(d.job.id.as_str().to_owned());
        assert!(w.consumer.complete(&d, None).await.unwrap());
    }
    out.sort();
    out
}

#[tokio::test]
async fn a_job_committed_but_never_published_is_delivered_by_the_relay() {
    let w = world().await;
    commit(&w, vec![job("order-1"), job("order-2")], false).await; // then the writer "crashed"
    assert_eq!(w.outbox.unpublished().await.unwrap(), 2);
    assert!(ids(&w).await.is_empty());

    assert_eq!(w.outbox.relay(&w.queue, 100).await.unwrap(), 2);
    assert_eq!(ids(&w).await, ["order-1", "order-2"]);
    assert_eq!(w.outbox.unpublished().await.unwrap(), 0);
    assert_eq!(w.outbox.relay(&w.queue, 100).await.unwrap(), 0, "nothing twice");
    let delivered = w.consumer.stats().await.unwrap();
    assert_eq!((delivered.waiting, delivered.in_flight), (0, 0));
}

#[tokio::test]
async fn a_row_for_a_queue_this_release_does_not_know_is_left_and_holds_up_no_other() {
    use diesel_async::RunQueryDsl;
    let w = world().await;
    // Written first by a newer release, for a queue of its own.
    let mut conn = AsyncPgConnection::establish(&w.db.url()).await.unwrap();
    diesel::sql_query(
        "INSERT INTO outbox (id, queue, kind, payload, schema_version, max_attempts, created_at) \
         VALUES ('newer-1', 'invoices', 'invoices.issue', '{}', 1, 5, now() - interval '1 minute')",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    commit(&w, vec![job("order-1")], false).await;
    assert_eq!(w.outbox.relay(&w.queue, 100).await.unwrap(), 1);
    assert_eq!(ids(&w).await, ["order-1"]);
    assert_eq!(w.outbox.unpublished().await.unwrap(), 1, "left for a relay that knows its queue");
}

#[tokio::test]
async fn nothing_is_published_for_a_rolled_back_transaction() {
    let w = world().await;
    commit(&w, vec![job("ghost")], true).await;
    assert_eq!(w.outbox.unpublished().await.unwrap(), 0);
    assert_eq!(w.outbox.relay(&w.queue, 100).await.unwrap(), 0);
    assert!(ids(&w).await.is_empty());
}

#[tokio::test]
async fn a_job_published_twice_runs_once() {
    let w = world().await;
    commit(&w, vec![job("twice")], false).await;
    // The writer enqueues eagerly after its commit and dies before it removes the row ...
    w.queue.enqueue_many(&[job("twice")]).await.unwrap();
    assert_eq!(w.outbox.unpublished().await.unwrap(), 1);
    // ... so the relay publishes the same row again, and removes it.
    relayed_once(&w, "twice").await;
}

#[tokio::test]
async fn a_job_staged_again_after_its_publication_runs_once() {
    let w = world().await;
    commit(&w, vec![job("again")], false).await;
    assert_eq!(w.outbox.publish(&w.queue, &[JobId::new("again")]).await.unwrap(), 1);
    assert_eq!(w.outbox.unpublished().await.unwrap(), 0, "a published row leaves the outbox");
    // The same job staged once more (a writer that repeats itself): published, it changes nothing.
    commit(&w, vec![job("again")], false).await;
    relayed_once(&w, "again").await;
}

/// The relay publishes the one row left and removes it, and the queue holds job `id` once.
async fn relayed_once(w: &World, id: &str) {
    assert_eq!(w.outbox.relay(&w.queue, 100).await.unwrap(), 1);
    assert_eq!(w.outbox.unpublished().await.unwrap(), 0);
    assert_eq!(ids(w).await, [id]);
    assert!(ids(w).await.is_empty());
}

#[tokio::test]
async fn the_writer_enqueues_and_removes_in_the_background_and_the_relay_leaves_young_rows_alone() {
    let w = world().await;
    commit(&w, vec![job("eager-1"), job("eager-2")], false).await;
    // Young rows are their writer's to publish.
    assert_eq!(w.outbox.relay_older_than(&w.queue, 100, Duration::from_secs(60)).await.unwrap(), 0);

    // The writer: one round trip to the queue, the rows removed a moment later.
    let removals = OutboxRemovals::spawn(w.outbox.clone());
    w.queue.enqueue_many(&[job("eager-1"), job("eager-2")]).await.unwrap();
    removals.remove(vec!["eager-1".into(), "eager-2".into()]);
    let deadline = Instant::now() + Duration::from_secs(5);
    while w.outbox.unpublished().await.unwrap() > 0 {
        assert!(Instant::now() < deadline, "never removed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(w.outbox.relay(&w.queue, 100).await.unwrap(), 0, "removed rows are not relayed");
    assert_eq!(ids(&w).await, ["eager-1", "eager-2"]);

    // A writer that died between commit and publish: the relay takes the row once it is old enough.
    commit(&w, vec![job("orphan")], false).await;
    assert_eq!(w.outbox.relay_older_than(&w.queue, 100, Duration::from_millis(200)).await.unwrap(), 0);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(w.outbox.relay_older_than(&w.queue, 100, Duration::from_millis(200)).await.unwrap(), 1);
    assert_eq!(ids(&w).await, ["orphan"]);
}

/// Answers every flush with what it is told, counting them.
#[derive(Default)]
struct Barrier {
    on_disk: AtomicBool,
    flushes: AtomicUsize,
}

#[async_trait]
impl WriteBarrier for Barrier {
    fn epoch(&self) -> u64 {
        1
    }

    async fn flush(&self, since: u64) -> Result<bool, InfraError> {
        assert_eq!(since, 1);
        self.flushes.fetch_add(1, Ordering::SeqCst);
        Ok(self.on_disk.load(Ordering::SeqCst))
    }
}

#[tokio::test]
async fn behind_a_barrier_rows_are_published_only_once_found_on_disk() {
    let w = world().await;
    let barrier = Arc::new(Barrier::default());
    let settings = settings(&w.db);
    let outbox =
        PgOutbox::new(pg_connect(&settings).unwrap(), connect_batch(&settings).unwrap()).with_barrier(barrier.clone());
    assert_eq!(outbox.relay(&w.queue, 100).await.unwrap(), 0);
    assert_eq!(barrier.flushes.load(Ordering::SeqCst), 0, "nothing to publish, nothing to flush");

    commit(&w, vec![job("order-1"), job("order-2")], false).await;
    // The database may have lost them (it restarted since): not published, kept for later.
    assert!(outbox.relay(&w.queue, 100).await.is_err());
    assert_eq!(outbox.unpublished().await.unwrap(), 2);
    assert!(ids(&w).await.is_empty());

    barrier.on_disk.store(true, Ordering::SeqCst);
    assert_eq!(outbox.relay(&w.queue, 100).await.unwrap(), 2);
    assert_eq!(ids(&w).await, ["order-1", "order-2"]);
    assert_eq!(barrier.flushes.load(Ordering::SeqCst), 2);
}
