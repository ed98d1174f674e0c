//! The order repository against the real PostgreSQL, one database per test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use ecom_identity::model::*;
use ecom_identity::ports::CustomerRepository;
use ecom_kernel::jobs::{JobId, NewJob, QueueName};
use ecom_kernel::{Currency, Email, Money, OrderId, PageRequest, ProductId};
use ecom_notifications::model::{NotificationStatus, NotificationType};
use ecom_orders::model::{
    CancellationReason, NewOrder, Order, OrderLine, OrderStatus, PaymentMethod, ShippingAddress, ShippingPolicy,
};
use ecom_orders::ports::{CheckoutContext, OrderFilter, OrderRepository, OrderSaveError};
use ecom_payments::model::{PaymentStatus, Provider};
use ecom_postgres::schema::{orders, outbox};
use ecom_postgres::{connect, PgCustomerRepository, PgOrderRepository, PgPool, PgSettings};
use ecom_testkit::TestDb;
use uuid::Uuid;

fn pool(db: &TestDb) -> PgPool {
    connect(&PgSettings {
        url: db.url(),
        max_connections: 8,
        acquire_timeout: Duration::from_secs(5),
        statement_timeout: Duration::from_secs(5),
        application_name: "adapter-test".into(),
    })
    .unwrap()
}

/// A fixed instant plus `secs`, at microsecond precision (what PostgreSQL keeps).
fn at(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000 + secs, 123_456_000).unwrap()
}

fn usd(amount: i64) -> Money {
    Money::new(amount, Currency::USD)
}

async fn customer(pool: &PgPool) -> CustomerId {
    let text = |s: &str| BoundedText::parse(s, 200).unwrap();
    let c = Customer::restore(
        CustomerId::new(),
        Email::parse(&format!("{}@shop.test", Uuid::now_v7().simple())).unwrap(),
        text("Ada"),
        text("Lovelace"),
        None,
        Role::Customer,
        at(0),
        at(0),
    );
    PgCustomerRepository::new(pool.clone()).insert(&c, &PasswordHash::new("h".into())).await.unwrap();
    c.id()
}

fn job(id: &str) -> NewJob {
    NewJob {
        id: JobId::new(id),
        queue: QueueName::Checkout,
        kind: "checkout.step".into(),
        payload: serde_json::json!({"step": "reserve"}),
        schema_version: 1,
        max_attempts: 10,
        trace_id: None,
    }
}

fn address() -> ShippingAddress {
    ShippingAddress {
        full_name: "Ada Lovelace".into(),
        line1: "1 Infinite Loop".into(),
        line2: None,
        city: "Cupertino".into(),
        state: Some("CA".into()),
        postal_code: "95014".into(),
        country: "US".into(),
        phone: Some("+14155550100".into()),
    }
}

fn line(sku: &str, price: i64, quantity: u32) -> OrderLine {
    OrderLine::new(ProductId::new(), sku.into(), format!("Product {sku}"), usd(price), quantity).unwrap()
}

fn order(customer: CustomerId, method: PaymentMethod, created: DateTime<Utc>) -> Order {
    let new = NewOrder {
        customer_id: customer,
        payment_method: method,
        lines: vec![line("SKU-A", 1999, 2), line("SKU-B", 500, 1)],
        shipping_address: address(),
        customer_notes: Some("leave at the door".into()),
    };
    let policy = ShippingPolicy { flat_rate: usd(500), free_from: Some(usd(10_000)) };
    Order::place(new, &policy, created).unwrap()
}

fn context() -> CheckoutContext {
    CheckoutContext { cart_id: Uuid::now_v7(), payment_token: Some("tok_visa".into()) }
}

async fn outbox_ids(pool: &PgPool) -> Vec<String> {
    let mut conn = pool.get().await.unwrap();
    outbox::table.select(outbox::id).order(outbox::id.asc()).load(&mut conn).await.unwrap()
}

#[tokio::test]
async fn an_order_round_trips_with_its_lines_and_checkout_context() {
    let db = TestDb::new().await;
    let pool = pool(&db);
    let repo = PgOrderRepository::new(pool.clone());
    let online = order(customer(&pool).await, PaymentMethod::CreditCard, at(0));
    let ctx = context();
    repo.create(&online, &ctx, &[]).await.unwrap();

    let stored = repo.get(online.id).await.unwrap().unwrap();
    assert_eq!(stored, online);
    assert_eq!(stored.lines.iter().map(|l| l.sku.as_str()).collect::<Vec<_>>(), ["SKU-A", "SKU-B"]);
    assert_eq!((stored.subtotal, stored.shipping_cost, stored.total), (usd(4498), usd(500), usd(4998)));
    assert_eq!(repo.get_with_context(online.id).await.unwrap(), Some((online.clone(), ctx)));

    let mut cash = order(online.customer_id, PaymentMethod::CashOnDelivery, at(1));
    cash.shipping_address.line2 = Some("Apt 2".into());
    cash.customer_notes = None;
    let cash_ctx = CheckoutContext { cart_id: Uuid::now_v7(), payment_token: None };
    repo.create(&cash, &cash_ctx, &[]).await.unwrap();
    assert_eq!(repo.get(cash.id).await.unwrap(), Some(cash.clone()));
    assert_eq!(repo.get_with_context(cash.id).await.unwrap(), Some((cash.clone(), cash_ctx)));

    assert_eq!(repo.get(OrderId::new()).await.unwrap(), None);
    assert_eq!(repo.get_with_context(OrderId::new()).await.unwrap(), None);

    // A row this version cannot read (written by a newer one, past the domain this test takes
    // off the column) is an error, never a panic.
    let mut conn = pool.get().await.unwrap();
    diesel::sql_query("ALTER TABLE orders ALTER COLUMN payment_status TYPE TEXT").execute(&mut conn).await.unwrap();
    diesel::update(orders::table.find(cash.id.as_uuid()))
        .set(orders::payment_status.eq("BOGUS"))
        .execute(&mut conn)
        .await
        .unwrap();
    assert!(repo.get(cash.id).await.is_err());
    assert!(repo.get_with_context(cash.id).await.is_err());
    assert!(repo.list(&OrderFilter::default(), &PageRequest::first(10)).await.is_err());
    assert!(repo.get(online.id).await.unwrap().is_some());
}

#[tokio::test]
async fn the_database_takes_every_status_and_payment_status_and_refuses_anything_else() {
    let db = TestDb::new().await;
    let pool = pool(&db);
    let placed = order(customer(&pool).await, PaymentMethod::CreditCard, at(0));
    PgOrderRepository::new(pool.clone()).create(&placed, &context(), &[]).await.unwrap();
    let mut conn = pool.get().await.unwrap();
    let row = orders::table.find(placed.id.as_uuid());
    for status in OrderStatus::ALL {
        diesel::update(row).set(orders::status.eq(status.as_str())).execute(&mut conn).await.unwrap();
    }
    for status in PaymentStatus::ALL {
        diesel::update(row).set(orders::payment_status.eq(status.as_str())).execute(&mut conn).await.unwrap();
    }
    assert!(diesel::update(row).set(orders::status.eq("BOGUS")).execute(&mut conn).await.is_err());
    assert!(diesel::update(row).set(orders::payment_status.eq("BOGUS")).execute(&mut conn).await.is_err());
}

/// The columns' domains (see the check_domains migration) against what the code writes: every
/// value of each Rust type is taken, anything else refused.
#[tokio::test]
async fn each_domain_takes_every_value_the_code_writes_and_refuses_anything_else() {
    let db = TestDb::new().await;
    let pool = pool(&db);
    let mut conn = pool.get().await.unwrap();
    fn all<T: Copy>(values: &[T], name: fn(T) -> &'static str) -> Vec<String> {
        values.iter().map(|v| name(*v).to_owned()).collect()
    }
    let chars = |n: usize| "x".repeat(n);
    let cases: Vec<(&str, Vec<String>, Vec<String>)> = vec![
        ("order_status", all(&OrderStatus::ALL, OrderStatus::as_str), vec!["BOGUS".into(), "confirmed".into()]),
        ("payment_status", all(&PaymentStatus::ALL, PaymentStatus::as_str), vec!["BOGUS".into()]),
        ("payment_method", all(&PaymentMethod::ALL, PaymentMethod::as_str), vec!["CASH".into()]),
        ("payment_provider", all(&Provider::ALL, Provider::as_str), vec!["STRIPE".into()]),
        ("notification_kind", all(&NotificationType::ALL, NotificationType::as_str), vec!["BOGUS".into()]),
        ("notification_status", all(&NotificationStatus::ALL, NotificationStatus::as_str), vec!["BOGUS".into()]),
        ("minor_units", vec!["0".into(), i64::MAX.to_string()], vec!["-1".into()]),
        ("stock_count", vec!["0".into(), i32::MAX.to_string()], vec!["-1".into()]),
        ("positive_count", vec!["1".into()], vec!["0".into(), "-1".into()]),
        ("job_id", vec![chars(1), chars(200)], vec![String::new(), chars(201)]),
        ("order_notes", vec![String::new(), chars(1000)], vec![chars(1001)]),
    ];
    for (domain, taken, refused) in cases {
        let cast = format!("SELECT $1::{domain}");
        for value in taken {
            let result = diesel::sql_query(&cast).bind::<diesel::sql_types::Text, _>(&value).execute(&mut conn).await;
            assert!(result.is_ok(), "{domain} refused {value:?}: {result:?}");
        }
        for value in refused {
            let result = diesel::sql_query(&cast).bind::<diesel::sql_types::Text, _>(&value).execute(&mut conn).await;
            assert!(result.is_err(), "{domain} took {value:?}");
        }
    }
}

#[tokio::test]
async fn an_update_applies_once_and_a_stale_read_is_a_conflict() {
    let db = TestDb::new().await;
    let pool = pool(&db);
    let repo = PgOrderRepository::new(pool.clone());
    let placed = order(customer(&pool).await, PaymentMethod::CreditCard, at(0));
    repo.create(&placed, &context(), &[]).await.unwrap();

    let mut confirmed = placed.clone();
    confirmed.set_payment_status(PaymentStatus::Paid, at(1));
    confirmed.transition(OrderStatus::Confirmed, Some("payment authorized".into()), at(1)).unwrap();
    repo.update(&placed, &confirmed, &[]).await.unwrap();
    assert_eq!(repo.get(placed.id).await.unwrap(), Some(confirmed.clone()));
    let (_, ctx) = repo.get_with_context(placed.id).await.unwrap().unwrap();
    assert_eq!(ctx.payment_token, None, "a confirmed order's charge is recorded: its token is dropped");
    assert!(
        matches!(repo.update(&placed, &confirmed, &[]).await, Err(OrderSaveError::Conflict)),
        "the same change twice"
    );

    let mut cancelled = placed.clone();
    cancelled.cancel(CancellationReason::PaymentExpired, at(2)).unwrap();
    assert!(
        matches!(repo.update(&placed, &cancelled, &[]).await, Err(OrderSaveError::Conflict)),
        "read before the confirmation"
    );
    assert_eq!(repo.get(placed.id).await.unwrap(), Some(confirmed.clone()));

    // Same status, newer updated_at: a timeline-only step is guarded as well.
    let mut noted = confirmed.clone();
    noted.record("stock confirmed", at(3));
    repo.update(&confirmed, &noted, &[]).await.unwrap();
    let mut other = confirmed.clone();
    other.record("cart cleared", at(3));
    assert!(matches!(repo.update(&confirmed, &other, &[]).await, Err(OrderSaveError::Conflict)));

    let mut cancelled = noted.clone();
    cancelled.cancel(CancellationReason::CustomerRequest, at(4)).unwrap();
    repo.update(&noted, &cancelled, &[]).await.unwrap();
    let stored = repo.get(placed.id).await.unwrap().unwrap();
    assert_eq!(stored, cancelled);
    assert_eq!(stored.cancellation_reason, Some(CancellationReason::CustomerRequest));
    assert_eq!(stored.timeline.len(), 4);
}

#[tokio::test]
async fn the_payment_token_is_kept_while_the_saga_may_use_it_and_dropped_after() {
    let db = TestDb::new().await;
    let pool = pool(&db);
    let repo = PgOrderRepository::new(pool.clone());
    let token = |id| {
        let repo = &repo;
        async move { repo.get_with_context(id).await.unwrap().unwrap().1.payment_token }
    };
    let placed = order(customer(&pool).await, PaymentMethod::CreditCard, at(0));
    repo.create(&placed, &context(), &[]).await.unwrap();

    // Still waiting for its payment: the saga charges with it.
    let mut noted = placed.clone();
    noted.record("stock reserved", at(1));
    repo.update(&placed, &noted, &[]).await.unwrap();
    assert_eq!(token(placed.id).await.as_deref(), Some("tok_visa"));

    // Cancelled before any charge was recorded: the saga looks for one it asked for.
    let mut cancelled = noted.clone();
    cancelled.cancel(CancellationReason::PaymentExpired, at(2)).unwrap();
    repo.update(&noted, &cancelled, &[]).await.unwrap();
    assert_eq!(token(placed.id).await.as_deref(), Some("tok_visa"));

    // Confirmed, then shipped: the charge is recorded, the token gone for good.
    let other = order(placed.customer_id, PaymentMethod::CreditCard, at(3));
    repo.create(&other, &context(), &[]).await.unwrap();
    let mut confirmed = other.clone();
    confirmed.transition(OrderStatus::Confirmed, Some("payment accepted".into()), at(4)).unwrap();
    repo.update(&other, &confirmed, &[]).await.unwrap();
    assert_eq!(token(other.id).await, None);
    let mut refunded = confirmed.clone();
    refunded.cancel(CancellationReason::CustomerRequest, at(5)).unwrap();
    repo.update(&confirmed, &refunded, &[]).await.unwrap();
    assert_eq!(token(other.id).await, None, "a later cancellation does not bring it back");
}

#[tokio::test]
async fn jobs_are_staged_with_the_create_and_the_update_but_not_with_a_conflict() {
    let db = TestDb::new().await;
    let pool = pool(&db);
    let repo = PgOrderRepository::new(pool.clone());
    let placed = order(customer(&pool).await, PaymentMethod::CreditCard, at(0));
    repo.create(&placed, &context(), &[job("checkout:1:reserve")]).await.unwrap();
    assert_eq!(outbox_ids(&pool).await, ["checkout:1:reserve"]);

    let mut confirmed = placed.clone();
    confirmed.transition(OrderStatus::Confirmed, None, at(1)).unwrap();
    repo.update(&placed, &confirmed, &[job("checkout:1:finalize"), job("checkout:1:notify")]).await.unwrap();
    assert!(matches!(
        repo.update(&placed, &confirmed, &[job("checkout:1:compensate")]).await,
        Err(OrderSaveError::Conflict)
    ));
    assert_eq!(outbox_ids(&pool).await, ["checkout:1:finalize", "checkout:1:notify", "checkout:1:reserve"]);

    let mut conn = pool.get().await.unwrap();
    let (queue, kind, payload, run_at): (String, String, serde_json::Value, Option<DateTime<Utc>>) = outbox::table
        .find("checkout:1:finalize")
        .select((outbox::queue, outbox::kind, outbox::payload, outbox::run_at))
        .first(&mut conn)
        .await
        .unwrap();
    assert_eq!((queue.as_str(), kind.as_str(), run_at), (QueueName::Checkout.as_str(), "checkout.step", None));
    assert_eq!(payload, serde_json::json!({"step": "reserve"}));
}

#[tokio::test]
async fn orders_are_listed_newest_first_across_pages_and_filtered_by_status() {
    let db = TestDb::new().await;
    let pool = pool(&db);
    let repo = PgOrderRepository::new(pool.clone());
    let ada = customer(&pool).await;
    let other = customer(&pool).await;
    // Two orders share a creation time, and the first page ends between them: the id breaks the
    // tie and the cursor carries both.
    let mut mine = Vec::new();
    for secs in [0, 1, 1, 2] {
        let o = order(ada, PaymentMethod::CreditCard, at(secs));
        repo.create(&o, &context(), &[]).await.unwrap();
        mine.push(o);
    }
    let theirs = order(other, PaymentMethod::CashOnDelivery, at(5));
    repo.create(&theirs, &context(), &[]).await.unwrap();
    mine.sort_by_key(|o| std::cmp::Reverse((o.created_at, o.id.as_uuid())));

    let filter = OrderFilter { customer_id: Some(ada), status: None };
    let first = repo.list(&filter, &PageRequest::first(2)).await.unwrap();
    assert_eq!(first.items, mine[..2]);
    assert_eq!(first.items[1].created_at, mine[2].created_at);
    assert!(first.items.iter().all(|o| o.lines.len() == 2), "lines come with the page");
    let next = first.next.clone().unwrap();
    // A cursor survives its wire form.
    let next = ecom_kernel::Cursor::decode(&next.encode()).unwrap();
    let second = repo.list(&filter, &PageRequest::first(2).with_after(Some(next))).await.unwrap();
    assert_eq!(second.items, mine[2..]);
    assert_eq!(second.next, None);

    let everyone = repo.list(&OrderFilter::default(), &PageRequest::first(10)).await.unwrap();
    assert_eq!(everyone.items.len(), 5);
    assert_eq!(everyone.items[0], theirs);

    let mut cancelled = mine[1].clone();
    cancelled.cancel(CancellationReason::CustomerRequest, at(10)).unwrap();
    repo.update(&mine[1], &cancelled, &[]).await.unwrap();
    let only = OrderFilter { customer_id: Some(ada), status: Some(OrderStatus::Cancelled) };
    let page = repo.list(&only, &PageRequest::first(10)).await.unwrap();
    assert_eq!((page.items, page.next), (vec![cancelled], None));
    let pending = OrderFilter { customer_id: None, status: Some(OrderStatus::PendingConfirmation) };
    assert_eq!(repo.list(&pending, &PageRequest::first(10)).await.unwrap().items, vec![theirs]);
    let none = OrderFilter { customer_id: Some(other), status: Some(OrderStatus::Cancelled) };
    assert!(repo.list(&none, &PageRequest::first(10)).await.unwrap().items.is_empty());
}

#[tokio::test]
async fn stale_finds_only_old_orders_in_that_status_oldest_first() {
    let db = TestDb::new().await;
    let pool = pool(&db);
    let repo = PgOrderRepository::new(pool.clone());
    let ada = customer(&pool).await;
    let oldest = order(ada, PaymentMethod::CreditCard, at(0));
    let old = order(ada, PaymentMethod::PayPal, at(10));
    let cash = order(ada, PaymentMethod::CashOnDelivery, at(5));
    let fresh = order(ada, PaymentMethod::CreditCard, at(100));
    let mut paid = order(ada, PaymentMethod::CreditCard, at(1));
    // Created in reverse, so that insertion order is not what is being tested.
    for o in [&fresh, &cash, &old, &oldest, &paid] {
        repo.create(o, &context(), &[]).await.unwrap();
    }
    let placed = paid.clone();
    paid.transition(OrderStatus::Confirmed, None, at(2)).unwrap();
    repo.update(&placed, &paid, &[]).await.unwrap();

    let cutoff = at(50);
    assert_eq!(repo.stale(OrderStatus::PendingPayment, cutoff, 10).await.unwrap(), vec![oldest.id, old.id]);
    assert_eq!(repo.stale(OrderStatus::PendingPayment, cutoff, 1).await.unwrap(), vec![oldest.id]);
    assert_eq!(repo.stale(OrderStatus::PendingConfirmation, cutoff, 10).await.unwrap(), vec![cash.id]);
    assert_eq!(repo.stale(OrderStatus::PendingConfirmation, at(5), 10).await.unwrap(), vec![], "strictly before");
    assert_eq!(repo.stale(OrderStatus::Confirmed, at(200), 10).await.unwrap(), vec![paid.id]);
}

fn invariant_settings(grace_secs: u64) -> ecom_postgres::InvariantSettings {
    ecom_postgres::InvariantSettings {
        grace: Duration::from_secs(grace_secs),
        payment_window: Duration::from_secs(1800),
        confirmation_window: Duration::from_secs(48 * 3600),
    }
}

async fn broken_checks(pool: &PgPool, grace_secs: u64) -> Vec<(&'static str, String)> {
    let found =
        ecom_postgres::PgInvariants::new(pool.clone()).check(&invariant_settings(grace_secs), 50).await.unwrap();
    let mut found: Vec<_> = found.into_iter().map(|v| (v.check, v.subject)).collect();
    found.sort();
    found
}

#[tokio::test]
async fn the_invariant_checks_find_orders_payments_and_jobs_left_wrong() {
    let db = TestDb::new().await;
    let pool = pool(&db);
    let repo = PgOrderRepository::new(pool.clone());
    let who = customer(&pool).await;
    let now = Utc::now();
    let (confirmed, stuck, cancelled, fine) = (
        order(who, PaymentMethod::CreditCard, now),
        order(who, PaymentMethod::CreditCard, now),
        order(who, PaymentMethod::CreditCard, now),
        order(who, PaymentMethod::CashOnDelivery, now),
    );
    for o in [&confirmed, &stuck, &cancelled] {
        repo.create(o, &context(), &[]).await.unwrap();
    }
    repo.create(&fine, &context(), &[job("late-job")]).await.unwrap();
    assert_eq!(broken_checks(&pool, 60).await, vec![], "a fresh shop is consistent");

    let mut conn = pool.get().await.unwrap();
    let sql = |q: String| diesel::sql_query(q);
    for q in [
        // Confirmed without any charge (and so without a confirmed reservation).
        format!("UPDATE orders SET status = 'CONFIRMED', updated_at = now() - interval '1 hour' WHERE id = '{}'", confirmed.id),
        // Unpaid for two hours, past its 30 min window.
        format!("UPDATE orders SET created_at = now() - interval '2 hours' WHERE id = '{}'", stuck.id),
        // Cancelled an hour ago, but its payment still holds the money.
        format!("UPDATE orders SET status = 'CANCELLED', cancellation_reason = 'CUSTOMER_REQUEST', payment_status = 'PAID', \
                 updated_at = now() - interval '1 hour' WHERE id = '{}'", cancelled.id),
        format!("INSERT INTO payments (id, order_id, customer_id, provider, amount, currency, status, refunded_amount, \
                 created_at, updated_at) VALUES ('{}', '{}', '{}', 'simulated', 4998, 'USD', 'PAID', 0, \
                 now() - interval '1 hour', now() - interval '1 hour')", Uuid::now_v7(), cancelled.id, who),
        // ... and its units never came back (its reservation still CONFIRMED).
        format!("INSERT INTO reservations (order_id, status, expires_at, created_at, updated_at) \
                 VALUES ('{}', 'CONFIRMED', now(), now() - interval '1 hour', now() - interval '1 hour')", cancelled.id),
        // A job its writer never published, ten minutes ago.
        "UPDATE outbox SET created_at = now() - interval '10 minutes' WHERE id = 'late-job'".to_owned(),
    ] {
        sql(q).execute(&mut conn).await.unwrap();
    }
    let mut expected = vec![
        ("cancelled-orders-hold-no-stock", cancelled.id.to_string()),
        ("cancelled-orders-keep-no-money", cancelled.id.to_string()),
        ("confirmed-online-orders-charged-once", confirmed.id.to_string()),
        ("confirmed-orders-finalized", confirmed.id.to_string()),
        ("no-order-stuck", stuck.id.to_string()),
        ("outbox-published", "late-job".to_owned()),
    ];
    expected.sort();
    assert_eq!(broken_checks(&pool, 60).await, expected);
    // Within the grace period, states that are normally in flight are not counted yet.
    let within_grace = broken_checks(&pool, 7200).await;
    assert_eq!(within_grace, vec![("confirmed-online-orders-charged-once", confirmed.id.to_string())]);
}

#[tokio::test]
async fn unfinished_sagas_are_found_by_their_notes_and_paged_oldest_first() {
    use ecom_orders::service::{COMPENSATED, FINALIZED, STOCK_RESERVED};
    let db = TestDb::new().await;
    let pool = pool(&db);
    let repo = PgOrderRepository::new(pool.clone());
    let who = customer(&pool).await;
    // Saves `next` (from `placed`, created at `at(0)`) and returns it.
    async fn stored(repo: &PgOrderRepository, placed: Order, change: impl FnOnce(&mut Order)) -> Order {
        repo.create(&placed, &context(), &[]).await.unwrap();
        let mut next = placed.clone();
        change(&mut next);
        if next != placed {
            repo.update(&placed, &next, &[]).await.unwrap();
        }
        next
    }
    let unpaid = stored(&repo, order(who, PaymentMethod::CreditCard, at(0)), |_| {}).await;
    let cash_unreserved =
        stored(&repo, order(who, PaymentMethod::CashOnDelivery, at(0)), |o| o.record("x", at(1))).await;
    let _cash_waiting =
        stored(&repo, order(who, PaymentMethod::CashOnDelivery, at(0)), |o| o.record(STOCK_RESERVED, at(2))).await;
    let confirmed = stored(&repo, order(who, PaymentMethod::CreditCard, at(0)), |o| {
        o.transition(OrderStatus::Confirmed, None, at(3)).unwrap();
    })
    .await;
    let _finalized = stored(&repo, order(who, PaymentMethod::CreditCard, at(0)), |o| {
        o.transition(OrderStatus::Confirmed, None, at(4)).unwrap();
        o.record(FINALIZED, at(4));
    })
    .await;
    let cancelled = stored(&repo, order(who, PaymentMethod::CreditCard, at(0)), |o| {
        o.cancel(CancellationReason::CustomerRequest, at(5)).unwrap();
    })
    .await;
    let _compensated = stored(&repo, order(who, PaymentMethod::CreditCard, at(0)), |o| {
        o.cancel(CancellationReason::OutOfStock, at(6)).unwrap();
        o.record(COMPENSATED, at(6));
    })
    .await;

    let all = repo.unfinished(at(100), None, 10).await.unwrap();
    assert_eq!(
        all.iter().map(|u| (u.id, u.status)).collect::<Vec<_>>(),
        vec![
            (unpaid.id, OrderStatus::PendingPayment),
            (cash_unreserved.id, OrderStatus::PendingConfirmation),
            (confirmed.id, OrderStatus::Confirmed),
            (cancelled.id, OrderStatus::Cancelled),
        ],
        "oldest change first; reserved cash orders, finalized and compensated ones are done"
    );
    assert_eq!(all[3].cancellation_reason, Some(CancellationReason::CustomerRequest));

    let first = repo.unfinished(at(100), None, 2).await.unwrap();
    let last = first.last().unwrap();
    let rest = repo.unfinished(at(100), Some((last.updated_at, last.id)), 2).await.unwrap();
    assert_eq!(first.into_iter().chain(rest).collect::<Vec<_>>(), all, "keyset pages cover every one once");
    assert_eq!(repo.unfinished(at(3), None, 10).await.unwrap().len(), 2, "only those untouched since before");
}
