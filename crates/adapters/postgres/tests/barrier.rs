//! The worker's durability barrier, and the payment writes that wait for it, against the real
//! PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::sql_types::BigInt;
use diesel_async::{AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use ecom_identity::model::*;
use ecom_identity::ports::CustomerRepository;
use ecom_kernel::jobs::{MockWriteBarrier, WriteBarrier};
use ecom_kernel::{Currency, Email, InfraErrorKind, Money, OrderId};
use ecom_payments::model::*;
use ecom_payments::ports::{PaymentRepository, SaveError};
use ecom_postgres::{
    connect, connect_deferring_flush, PgCustomerRepository, PgPaymentRepository, PgPool, PgSettings, PgWriteBarrier,
};
use ecom_testkit::TestDb;
use mockall::predicate::eq;

const APP: &str = "barrier-test";

fn settings(db: &TestDb) -> PgSettings {
    PgSettings {
        url: db.url(),
        max_connections: 4,
        acquire_timeout: Duration::from_secs(5),
        statement_timeout: Duration::from_secs(5),
        application_name: APP.into(),
    }
}

#[derive(diesel::QueryableByName, Debug)]
struct Log {
    #[diesel(sql_type = BigInt)]
    inserted: i64,
    #[diesel(sql_type = BigInt)]
    flushed: i64,
}

async fn log(conn: &mut AsyncPgConnection) -> Log {
    diesel::sql_query(
        "SELECT (pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::BIGINT AS inserted, \
         (pg_current_wal_flush_lsn() - '0/0'::pg_lsn)::BIGINT AS flushed",
    )
    .get_result(conn)
    .await
    .unwrap()
}

#[tokio::test]
async fn a_flush_returns_once_the_commits_that_did_not_wait_for_the_disk_are_on_it() {
    let db = TestDb::new().await;
    let pool = connect_deferring_flush(&settings(&db)).unwrap();
    let barrier = PgWriteBarrier::new(&settings(&db));
    barrier.connect().await.unwrap();
    let mut conn = pool.get().await.unwrap();
    conn.batch_execute("CREATE TABLE scratch (n INT)").await.unwrap();
    let mut caught = 0;
    for _ in 0..200 {
        let since = barrier.epoch();
        diesel::sql_query("INSERT INTO scratch VALUES (1)").execute(&mut conn).await.unwrap();
        let written = log(&mut conn).await;
        if written.flushed >= written.inserted {
            continue; // another session's commit flushed it already: try again
        }
        // The commit is not on disk: the pool's sessions do not wait.
        caught += 1;
        assert!(barrier.flush(since).await.unwrap());
        let after = log(&mut conn).await;
        assert!(
            after.flushed >= written.inserted,
            "flushed to {} only, the commit ends before {}",
            after.flushed,
            written.inserted
        );
        if caught == 5 {
            break;
        }
    }
    assert_eq!(caught, 5, "commits on a deferring pool were seen unflushed only {caught} times");
}

#[tokio::test]
async fn once_its_session_is_lost_a_flush_answers_false_for_writes_made_before() {
    let db = TestDb::new().await;
    let barrier = PgWriteBarrier::new(&settings(&db));
    barrier.connect().await.unwrap();
    let before = barrier.epoch();
    assert!(barrier.flush(before).await.unwrap(), "the session has been there throughout");

    // As when PostgreSQL restarts: every session ends, commits not yet on disk are lost.
    let pool = connect(&settings(&db)).unwrap();
    let mut conn = pool.get().await.unwrap();
    #[derive(diesel::QueryableByName)]
    struct Ended {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    let ended: Ended = diesel::sql_query(format!(
        "SELECT count(pg_terminate_backend(pid)) AS n FROM pg_stat_activity \
         WHERE datname = current_database() AND application_name = '{APP}-barrier'"
    ))
    .get_result(&mut conn)
    .await
    .unwrap();
    assert_eq!(ended.n, 1, "the barrier has one session of its own");

    assert!(!barrier.flush(before).await.unwrap(), "its session is gone: the writes may be lost");
    assert!(!barrier.flush(before).await.unwrap(), "a new session cannot vouch for writes made before it");
    let after = barrier.epoch();
    assert_ne!(after, before);
    assert!(barrier.flush(after).await.unwrap(), "a job started since is safe");

    // Closed at shutdown: no session opens again, so nothing can vouch for a write any more.
    barrier.close().await;
    assert!(!barrier.flush(after).await.unwrap());
    assert_eq!(barrier.epoch(), after);
}

fn now() -> DateTime<Utc> {
    DateTime::from_timestamp_micros(Utc::now().timestamp_micros()).unwrap()
}

async fn customer(pool: &PgPool) -> CustomerId {
    let text = |s: &str| BoundedText::parse(s, 200).unwrap();
    let c = Customer::restore(
        CustomerId::new(),
        Email::parse(&format!("{}@shop.test", uuid::Uuid::now_v7().simple())).unwrap(),
        text("Ada"),
        text("Lovelace"),
        None,
        Role::Customer,
        now(),
        now(),
    );
    PgCustomerRepository::new(pool.clone()).insert(&c, &PasswordHash::new("h".into())).await.unwrap();
    c.id()
}

/// A barrier at epoch 3 whose flushes answer `answer`, `times` times.
fn barrier(answer: bool, times: usize) -> Arc<dyn WriteBarrier> {
    let mut barrier = MockWriteBarrier::new();
    barrier.expect_epoch().return_const(3u64);
    barrier.expect_flush().with(eq(3)).times(times).returning(move |_| Ok(answer));
    Arc::new(barrier)
}

#[tokio::test]
async fn an_opened_payment_and_a_booked_refund_are_flushed_before_the_provider_is_asked() {
    let db = TestDb::new().await;
    let pool = connect_deferring_flush(&settings(&db)).unwrap();
    let customer = customer(&pool).await;

    let payment = Payment::online(OrderId::new(), customer, Provider::Stripe, Money::new(5000, Currency::USD), now());
    let lost = PgPaymentRepository::new(pool.clone()).with_barrier(barrier(false, 2));
    let err = lost.open_once(&payment).await.unwrap_err();
    assert_eq!(err.kind(), InfraErrorKind::Unavailable, "not known to be on disk: the saga tries again");
    let flushed = PgPaymentRepository::new(pool.clone()).with_barrier(barrier(true, 1));
    assert_eq!(flushed.open_once(&payment).await.unwrap(), payment);

    let mut paid = payment.clone();
    paid.succeed("pi_1", now()).unwrap();
    PgPaymentRepository::new(pool.clone()).update(&payment, &paid, &[]).await.unwrap();
    let mut next = paid.clone();
    next.refund(Money::new(2000, Currency::USD), now() + chrono::Duration::seconds(1)).unwrap();
    let refund = Refund {
        id: RefundId::new(),
        payment_id: payment.id,
        amount: Money::new(2000, Currency::USD),
        reason: None,
        provider_reference: None,
        status: RefundStatus::Requested,
        created_at: now(),
    };
    let result = lost.book_refund(&paid, &next, &refund, &[]).await;
    assert!(matches!(result, Err(SaveError::Infrastructure(_))), "not known to be on disk: not asked for yet");
    assert_eq!(flushed.refunds(payment.id).await.unwrap(), vec![refund], "booked all the same (its job retries it)");
}
