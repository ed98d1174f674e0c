//! The notification flow on the real queue and the real PostgreSQL: save → send → update, in
//! that order, even when the send fails and is retried, and never a second saved row.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel_async::RunQueryDsl;
use ecom_jobs::notifications::NotificationFlowHandler;
use ecom_jobs::{HandlerRegistry, RuntimeSettings, WorkerRuntime};
use ecom_kernel::jobs::{JobQueue, QueueName};
use ecom_kernel::{CustomerId, InfraError, OrderId, Page, PageRequest, SystemClock};
use ecom_notifications::model::{
    Audience, Event, Notification, NotificationId, NotificationRequest, NotificationStatus,
};
use ecom_notifications::ports::{NotificationRepository, RealtimePublisher, Recipients};
use ecom_notifications::service::{delivery_job, SAVE_KIND, SEND_KIND, UPDATE_KIND};
use ecom_notifications::NotificationService;
use ecom_postgres::{connect as pg_connect, connect_batch, PgNotificationRepository, PgPool, PgSettings};
use ecom_redis::{connect, ConsumerSettings, QueueConsumer, RedisJobQueue, RedisKeys, RedisSettings};
use ecom_testkit::{TestDb, TestRedis};

type Log = Arc<Mutex<Vec<String>>>;

/// The real repository, logging each call of the flow.
struct Logged {
    inner: PgNotificationRepository,
    log: Log,
}

#[async_trait]
impl NotificationRepository for Logged {
    async fn save(&self, n: &[Notification]) -> Result<(), InfraError> {
        self.log.lock().unwrap().push("save".into());
        self.inner.save(n).await
    }
    async fn pending(&self, key: &str) -> Result<Vec<Notification>, InfraError> {
        self.inner.pending(key).await
    }
    async fn mark_sent(&self, key: &str) -> Result<u64, InfraError> {
        self.log.lock().unwrap().push("update".into());
        self.inner.mark_sent(key).await
    }
    async fn undelivered(
        &self,
        c: CustomerId,
        after: Option<NotificationId>,
        limit: i64,
    ) -> Result<Vec<Notification>, InfraError> {
        self.inner.undelivered(c, after, limit).await
    }
    async fn mark_delivered(&self, c: CustomerId, id: NotificationId) -> Result<bool, InfraError> {
        self.inner.mark_delivered(c, id).await
    }
    async fn mark_read(&self, c: CustomerId, id: NotificationId, at: DateTime<Utc>) -> Result<bool, InfraError> {
        self.inner.mark_read(c, id, at).await
    }
    async fn mark_all_read(&self, c: CustomerId, at: DateTime<Utc>) -> Result<u64, InfraError> {
        self.inner.mark_all_read(c, at).await
    }
    async fn list(&self, c: CustomerId, unread: bool, page: &PageRequest) -> Result<Page<Notification>, InfraError> {
        self.inner.list(c, unread, page).await
    }
}

/// A realtime channel that is down for the first `failures` pushes.
struct Flaky {
    failures: Mutex<u32>,
    log: Log,
}

#[async_trait]
impl RealtimePublisher for Flaky {
    async fn publish(&self, n: &Notification) -> Result<(), InfraError> {
        let mut failures = self.failures.lock().unwrap();
        if *failures > 0 {
            *failures -= 1;
            self.log.lock().unwrap().push("send failed".into());
            return Err(InfraError::unavailable("redis down"));
        }
        self.log.lock().unwrap().push(format!("send {}", n.id));
        Ok(())
    }
}

struct NoAdmins;

#[async_trait]
impl Recipients for NoAdmins {
    async fn admins(&self) -> Result<Vec<CustomerId>, InfraError> {
        Ok(vec![])
    }
}

fn pg_settings(db: &TestDb) -> PgSettings {
    PgSettings {
        url: db.url(),
        max_connections: 4,
        acquire_timeout: Duration::from_secs(5),
        statement_timeout: Duration::from_secs(5),
        application_name: "flow-test".into(),
    }
}

fn pg(db: &TestDb) -> PgPool {
    pg_connect(&pg_settings(db)).unwrap()
}

async fn customer(pool: &PgPool) -> CustomerId {
    let id = CustomerId::new();
    let mut conn = pool.get().await.unwrap();
    diesel::sql_query(format!(
        "INSERT INTO customers (id, email, password_hash, first_name, last_name, role, created_at, updated_at) \
         VALUES ('{id}', '{id}@shop.test', 'h', 'Ada', 'L', 'CUSTOMER', now(), now())"
    ))
    .execute(&mut conn)
    .await
    .unwrap();
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_send_is_retried_after_the_save_and_before_the_update_with_one_saved_row() {
    let (db, redis) = (TestDb::new().await, TestRedis::new());
    let pool = pg(&db);
    let ada = customer(&pool).await;
    let log: Log = Arc::default();
    let repository = PgNotificationRepository::new(pool.clone(), connect_batch(&pg_settings(&db)).unwrap());
    let service = Arc::new(NotificationService::new(
        Arc::new(Logged {
            inner: PgNotificationRepository::new(pool.clone(), connect_batch(&pg_settings(&db)).unwrap()),
            log: log.clone(),
        }),
        Arc::new(NoAdmins),
        Arc::new(Flaky { failures: Mutex::new(2), log: log.clone() }),
        Arc::new(SystemClock),
    ));
    let handler = Arc::new(NotificationFlowHandler { notifications: service });
    let registry = HandlerRegistry::default()
        .with(SAVE_KIND, handler.clone())
        .with(SEND_KIND, handler.clone())
        .with(UPDATE_KIND, handler);
    let redis_pool =
        connect(&RedisSettings { url: redis.url().into(), max_connections: 8, timeout: Duration::from_secs(2) })
            .unwrap();
    let keys = RedisKeys::new(redis.prefix());
    let consumer = QueueConsumer::new(
        redis_pool.clone(),
        redis.url(),
        &keys,
        QueueName::Notifications,
        "w1",
        ConsumerSettings::default(),
    )
    .unwrap();
    let runtime = WorkerRuntime::new(
        vec![consumer],
        registry,
        RuntimeSettings {
            concurrency: 4,
            reclaim_after: Duration::from_secs(5),
            block: Duration::from_millis(100),
            base_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_millis(200),
            drain_timeout: Duration::from_secs(5),
        },
    );
    let stop = Arc::new(tokio::sync::Notify::new());
    let signal = stop.clone();
    let worker = tokio::spawn(async move { runtime.run(async move { signal.notified().await }).await });

    let request = NotificationRequest::new(
        format!("order:{}:confirmed", OrderId::new()),
        Audience::Customer(ada),
        &Event::OrderShipped { order_id: OrderId::new() },
    );
    let queue = RedisJobQueue::new(redis_pool, keys);
    queue.enqueue(delivery_job(&request)).await.unwrap();
    // The same flow enqueued again (a relay's duplicate) runs once.
    queue.enqueue(delivery_job(&request)).await.unwrap();

    let started = Instant::now();
    let stored = loop {
        let page = repository.list(ada, false, &PageRequest::first(10)).await.unwrap();
        if page.items.iter().any(|n| n.status == NotificationStatus::Sent) {
            break page.items;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "never sent: {:?}", log.lock().unwrap());
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    stop.notify_one();
    assert_eq!(worker.await.unwrap(), 0);

    assert_eq!(stored.len(), 1, "one saved row");
    let id = stored[0].id;
    assert_eq!(
        *log.lock().unwrap(),
        vec!["save".to_owned(), "send failed".into(), "send failed".into(), format!("send {id}"), "update".into()],
        "save, then send (retried until it went through), then update"
    );
}
