//! The payment repository against the real PostgreSQL, one database per test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use ecom_identity::model::*;
use ecom_identity::ports::CustomerRepository;
use ecom_kernel::jobs::{JobId, MockWriteBarrier, NewJob, QueueName, WriteBarrier};
use ecom_kernel::{Currency, Email, InfraErrorKind, Money, OrderId};
use ecom_payments::model::*;
use ecom_payments::ports::{PaymentChange, PaymentRepository, SaveError};
use ecom_postgres::{connect, connect_deferring_flush, PgCustomerRepository, PgPaymentRepository, PgPool, PgSettings};
use ecom_testkit::TestDb;
use mockall::predicate::eq;

fn settings(db: &TestDb) -> PgSettings {
    PgSettings {
        url: db.url(),
        max_connections: 8,
        acquire_timeout: Duration::from_secs(5),
        statement_timeout: Duration::from_secs(5),
        application_name: "adapter-test".into(),
    }
}

fn pool(db: &TestDb) -> PgPool {
    connect(&settings(db)).unwrap()
}

fn now() -> DateTime<Utc> {
    DateTime::from_timestamp_micros(Utc::now().timestamp_micros()).unwrap()
}

fn usd(amount: i64) -> Money {
    Money::new(amount, Currency::USD)
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

fn job(id: &str) -> NewJob {
    NewJob {
        id: JobId::new(id),
        queue: QueueName::PaymentEvents,
        kind: "payments.event".into(),
        payload: serde_json::json!({}),
        schema_version: 1,
        max_attempts: 3,
        trace_id: None,
    }
}

#[tokio::test]
async fn payments_round_trip_and_a_stale_update_is_a_conflict() {
    let db = TestDb::new().await;
    let pool = pool(&db);
    let repo = PgPaymentRepository::new(pool.clone());
    let payment = Payment::online(OrderId::new(), customer(&pool).await, Provider::Stripe, usd(5000), now());
    repo.insert(&payment).await.unwrap();
    repo.insert(&payment).await.unwrap();
    assert_eq!(repo.get(payment.id).await.unwrap(), Some(payment.clone()));
    assert_eq!(repo.of_order(payment.order_id).await.unwrap(), vec![payment.clone()]);

    let mut paid = payment.clone();
    paid.succeed("pi_1", now() + chrono::Duration::seconds(1)).unwrap();
    repo.update(&payment, &paid, &[]).await.unwrap();
    assert_eq!(repo.by_reference(Provider::Stripe, "pi_1").await.unwrap(), Some(paid.clone()));
    assert_eq!(repo.by_reference(Provider::PayPal, "pi_1").await.unwrap(), None);

    let mut failed = payment.clone();
    failed.fail(&DeclineReason::CardDeclined, now()).unwrap();
    assert!(matches!(repo.update(&payment, &failed, &[]).await, Err(SaveError::Conflict)), "read before the change");
    assert_eq!(repo.get(payment.id).await.unwrap().unwrap().status, PaymentStatus::Paid);
}

#[tokio::test]
async fn a_provider_reference_recorded_for_one_payment_is_refused_for_another() {
    let db = TestDb::new().await;
    let pool = pool(&db);
    let repo = PgPaymentRepository::new(pool.clone());
    let customer = customer(&pool).await;
    let first = Payment::online(OrderId::new(), customer, Provider::PayPal, usd(5000), now());
    let second = Payment::online(OrderId::new(), customer, Provider::PayPal, usd(5000), now());
    repo.insert(&first).await.unwrap();
    repo.insert(&second).await.unwrap();
    let later = now() + chrono::Duration::seconds(1);
    let mut paid = first.clone();
    paid.succeed("PAYPAL-ORDER-1", later).unwrap();
    repo.update(&first, &paid, &[]).await.unwrap();

    let mut twice = second.clone();
    twice.succeed("PAYPAL-ORDER-1", later).unwrap();
    assert!(matches!(repo.update(&second, &twice, &[]).await, Err(SaveError::ReferenceTaken)));
    assert_eq!(repo.get(second.id).await.unwrap(), Some(second.clone()), "unchanged");
    // Another provider's reference may be the same text.
    let stripe = Payment::online(OrderId::new(), customer, Provider::Stripe, usd(5000), now());
    repo.insert(&stripe).await.unwrap();
    let mut charged = stripe.clone();
    charged.succeed("PAYPAL-ORDER-1", later).unwrap();
    repo.update(&stripe, &charged, &[]).await.unwrap();
}

#[tokio::test]
async fn a_refund_is_booked_with_its_payment_and_settled_once() {
    let db = TestDb::new().await;
    let pool = pool(&db);
    let repo = PgPaymentRepository::new(pool.clone());
    let mut payment = Payment::online(OrderId::new(), customer(&pool).await, Provider::Stripe, usd(5000), now());
    payment.succeed("pi_1", now()).unwrap();
    repo.insert(&payment).await.unwrap();

    let mut next = payment.clone();
    next.refund(usd(2000), now() + chrono::Duration::seconds(1)).unwrap();
    let refund = Refund {
        id: RefundId::new(),
        payment_id: payment.id,
        amount: usd(2000),
        reason: Some("damaged".into()),
        provider_reference: None,
        status: RefundStatus::Requested,
        failure_reason: None,
        created_at: now(),
    };
    repo.book_refund(&payment, &next, &refund, &[job("refund:1")]).await.unwrap();
    // A second booking from the same stale read is refused: no double refund.
    let other = Refund { id: RefundId::new(), ..refund.clone() };
    assert!(matches!(repo.book_refund(&payment, &next, &other, &[]).await, Err(SaveError::Conflict)));
    assert_eq!(repo.refunds(payment.id).await.unwrap(), vec![refund.clone()]);

    let done = Refund { status: RefundStatus::Succeeded, provider_reference: Some("re_1".into()), ..refund.clone() };
    assert!(repo.settle_refund(&done, None).await.unwrap());
    let failed = Refund { status: RefundStatus::Failed, ..refund.clone() };
    let mut restored = next.clone();
    restored.revert_refund(usd(2000), now() + chrono::Duration::seconds(2)).unwrap();
    let change = PaymentChange { expected: next.clone(), payment: restored };
    assert!(!repo.settle_refund(&failed, Some(change)).await.unwrap(), "settled already: nothing changes");
    assert_eq!(repo.refund(refund.id).await.unwrap(), Some(done));
    assert_eq!(repo.get(payment.id).await.unwrap(), Some(next.clone()));

    // Refused: the amount goes back to the payment and the provider's reason is kept.
    let mut again = next.clone();
    again.refund(usd(1000), now() + chrono::Duration::seconds(3)).unwrap();
    let second = Refund { id: RefundId::new(), amount: usd(1000), created_at: now(), ..refund.clone() };
    repo.book_refund(&next, &again, &second, &[]).await.unwrap();
    let mut restored = again.clone();
    restored.revert_refund(usd(1000), now() + chrono::Duration::seconds(4)).unwrap();
    let refused = Refund {
        status: RefundStatus::Failed,
        failure_reason: Some("rejected by the provider: Charge ch_1 has been disputed".into()),
        ..second.clone()
    };
    let change = PaymentChange { expected: again, payment: restored.clone() };
    assert!(repo.settle_refund(&refused, Some(change)).await.unwrap());
    assert_eq!(repo.refund(second.id).await.unwrap(), Some(refused));
    assert_eq!(repo.get(payment.id).await.unwrap(), Some(restored));
}

#[tokio::test]
async fn the_database_refuses_a_refund_above_the_amount_paid() {
    let db = TestDb::new().await;
    let pool = pool(&db);
    let repo = PgPaymentRepository::new(pool.clone());
    let mut payment = Payment::online(OrderId::new(), customer(&pool).await, Provider::Stripe, usd(5000), now());
    payment.succeed("pi_1", now()).unwrap();
    repo.insert(&payment).await.unwrap();
    let mut forged = payment.clone();
    forged.refunded = usd(5001);
    assert!(matches!(repo.update(&payment, &forged, &[]).await, Err(SaveError::Infrastructure(_))));
}

#[tokio::test]
async fn a_provider_event_is_recorded_once() {
    let db = TestDb::new().await;
    let repo = PgPaymentRepository::new(pool(&db));
    let event = GatewayEvent {
        provider: Provider::Stripe,
        event_id: "evt_1".into(),
        kind: EventKind::PaymentSucceeded,
        provider_type: "payment_intent.succeeded".into(),
        reference: Some("pi_1".into()),
    };
    assert!(repo.record_event(&event, &job("payment-event:stripe:evt_1")).await.unwrap());
    assert!(!repo.record_event(&event, &job("payment-event:stripe:evt_1")).await.unwrap());
    let paypal = GatewayEvent { provider: Provider::PayPal, ..event };
    assert!(repo.record_event(&paypal, &job("payment-event:paypal:evt_1")).await.unwrap(), "ids are per provider");
}

#[tokio::test]
async fn an_order_opens_one_payment_of_each_kind_however_often_asked() {
    let db = TestDb::new().await;
    let pool = pool(&db);
    let repo = PgPaymentRepository::new(pool.clone());
    let (order, buyer) = (OrderId::new(), customer(&pool).await);

    let card = Payment::online(order, buyer, Provider::Stripe, usd(5000), now());
    assert_eq!(repo.open_once(&card).await.unwrap(), card, "none yet: this one is opened");
    let again = Payment::online(order, buyer, Provider::PayPal, usd(5000), now());
    assert_eq!(repo.open_once(&again).await.unwrap(), card, "an online one exists: that one");

    let cash = Payment::cash_on_delivery(order, buyer, usd(5000), now());
    assert_eq!(repo.open_once(&cash).await.unwrap(), cash, "cash is another kind");
    let cash_again = Payment::cash_on_delivery(order, buyer, usd(5000), now());
    assert_eq!(repo.open_once(&cash_again).await.unwrap(), cash);

    let stored = repo.of_order(order).await.unwrap();
    assert_eq!(stored.iter().map(|p| p.id).collect::<Vec<_>>(), [card.id, cash.id], "two rows in all");
}

#[tokio::test]
async fn two_callers_opening_an_orders_payment_at_once_get_the_same_one() {
    use diesel_async::AsyncConnection;
    let db = TestDb::new().await;
    let waiting = &db;
    let pool = pool(&db);
    let repo = Arc::new(PgPaymentRepository::new(pool.clone()));
    let (order, buyer) = (OrderId::new(), customer(&pool).await);
    let first = uuid::Uuid::now_v7();
    let other = repo.clone();

    // One caller's insert, not committed yet, when the other asks: the other waits for it.
    let mut conn = pool.get().await.unwrap();
    let late = conn
        .transaction::<_, diesel::result::Error, _>(async move |conn| {
            let insert = diesel::sql_query(
                "INSERT INTO payments (id, order_id, customer_id, provider, amount, currency, status, created_at, \
                 updated_at) VALUES ($1, $2, $3, 'stripe', 5000, 'USD', 'PENDING', now(), now())",
            )
            .bind::<diesel::sql_types::Uuid, _>(first)
            .bind::<diesel::sql_types::Uuid, _>(order.as_uuid())
            .bind::<diesel::sql_types::Uuid, _>(buyer.as_uuid());
            diesel_async::RunQueryDsl::execute(insert, conn).await?;
            let late = tokio::spawn(async move {
                other.open_once(&Payment::online(order, buyer, Provider::Stripe, usd(5000), now())).await
            });
            waiting.wait_for_a_lock_wait().await;
            assert!(!late.is_finished(), "the second caller waits for the first one's insert");
            Ok(late)
        })
        .await
        .unwrap();
    let opened = late.await.unwrap().unwrap();
    assert_eq!(opened.id.as_uuid(), first, "the first caller's payment");
    let stored = repo.of_order(order).await.unwrap();
    assert_eq!(stored.iter().map(|p| p.id.as_uuid()).collect::<Vec<_>>(), [first], "one row");
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
        failure_reason: None,
        created_at: now(),
    };
    let result = lost.book_refund(&paid, &next, &refund, &[]).await;
    assert!(matches!(result, Err(SaveError::Infrastructure(_))), "not known to be on disk: not asked for yet");
    assert_eq!(flushed.refunds(payment.id).await.unwrap(), vec![refund], "booked all the same (its job retries it)");
}
