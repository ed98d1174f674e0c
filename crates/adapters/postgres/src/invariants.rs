//! The system's invariants, checked against the database as it is: what must hold whatever
//! crashed, retried or ran concurrently. Run by `worker check-invariants` (and the failure
//! drills) after load; each check reads one consistent snapshot (one REPEATABLE READ
//! transaction for all of them).
//!
//! States that are legitimately in flight (a saga mid-way, a refund waiting for its capture)
//! are only counted once they are older than `grace`.

use std::time::Duration;

use diesel::sql_types::{BigInt, Text};
use diesel::QueryableByName;
use diesel_async::RunQueryDsl;
use ecom_kernel::InfraError;

use crate::error::{infra_from_diesel, infra_from_pool};
use crate::PgPool;

/// Timeouts the checks allow for.
#[derive(Debug, Clone, Copy)]
pub struct InvariantSettings {
    /// How long a transient state may last before it counts as stuck.
    pub grace: Duration,
    /// An online order unpaid for this long is cancelled by the worker.
    pub payment_window: Duration,
    /// A cash order unconfirmed for this long is cancelled by the worker.
    pub confirmation_window: Duration,
}

/// One broken invariant, about one subject (a product, an order, an outbox row).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub check: &'static str,
    pub subject: String,
    pub detail: String,
}

#[derive(QueryableByName)]
struct Row {
    #[diesel(sql_type = Text)]
    subject: String,
    #[diesel(sql_type = Text)]
    detail: String,
}

/// Every check: its name, what it asserts, and the query listing the subjects that break it.
/// `$1` is the grace in seconds, `$2` the payment window, `$3` the confirmation window.
const CHECKS: [(&str, &str, &str); 9] = [
    (
        "stock-levels-consistent",
        "no negative stock, never more reserved than on hand",
        "SELECT product_id::TEXT AS subject, format('on hand %s, reserved %s', on_hand, reserved) AS detail \
         FROM stock_levels WHERE on_hand < 0 OR reserved < 0 OR reserved > on_hand",
    ),
    (
        "reserved-equals-active-reservations",
        "each product's reserved units are the sum of its ACTIVE reservation lines",
        "SELECT s.product_id::TEXT AS subject, \
                format('reserved %s, ACTIVE reservations %s', s.reserved, COALESCE(a.total, 0)) AS detail \
         FROM stock_levels s LEFT JOIN ( \
             SELECT l.product_id, SUM(l.quantity) AS total FROM reservation_lines l \
             JOIN reservations r ON r.order_id = l.order_id WHERE r.status = 'ACTIVE' GROUP BY l.product_id \
         ) a ON a.product_id = s.product_id \
         WHERE s.reserved <> COALESCE(a.total, 0)",
    ),
    (
        "confirmed-online-orders-charged-once",
        "every confirmed online order has exactly one charge that did not fail",
        "SELECT o.id::TEXT AS subject, format('%s with %s charge(s)', o.status, \
                (SELECT count(*) FROM payments p WHERE p.order_id = o.id AND p.status <> 'FAILED')) AS detail \
         FROM orders o \
         WHERE o.payment_method <> 'CASH_ON_DELIVERY' \
           AND o.status IN ('CONFIRMED', 'PROCESSING', 'SHIPPED', 'DELIVERED', 'REFUNDED') \
           AND (SELECT count(*) FROM payments p WHERE p.order_id = o.id AND p.status <> 'FAILED') <> 1",
    ),
    (
        "cancelled-orders-keep-no-money",
        "a cancelled order keeps no money: whatever was taken is refunded",
        "SELECT o.id::TEXT AS subject, format('CANCELLED, payment %s %s (refunded %s of %s)', p.id, p.status, \
                p.refunded_amount, p.amount) AS detail \
         FROM orders o JOIN payments p ON p.order_id = o.id \
         WHERE o.status = 'CANCELLED' AND p.status IN ('AUTHORIZED', 'PAID', 'PARTIALLY_REFUNDED') \
           AND o.updated_at < now() - make_interval(secs => $1)",
    ),
    (
        "cancelled-orders-hold-no-stock",
        "a cancelled order holds no stock: its reservation released, or its units returned",
        "SELECT o.id::TEXT AS subject, format('CANCELLED with a %s reservation', r.status) AS detail \
         FROM orders o JOIN reservations r ON r.order_id = o.id \
         WHERE o.status = 'CANCELLED' AND r.status IN ('ACTIVE', 'CONFIRMED') \
           AND o.updated_at < now() - make_interval(secs => $1)",
    ),
    (
        "confirmed-orders-finalized",
        "a confirmed order's reservation is confirmed (its units left the shelf)",
        "SELECT o.id::TEXT AS subject, format('%s with reservation %s', o.status, COALESCE(r.status, 'none')) AS detail \
         FROM orders o LEFT JOIN reservations r ON r.order_id = o.id \
         WHERE o.status IN ('CONFIRMED', 'PROCESSING', 'SHIPPED', 'DELIVERED', 'REFUNDED') \
           AND COALESCE(r.status, 'none') <> 'CONFIRMED' AND o.updated_at < now() - make_interval(secs => $1)",
    ),
    (
        "no-order-stuck",
        "no order waits for its payment or confirmation past its window",
        "SELECT id::TEXT AS subject, format('%s since %s', status, created_at) AS detail FROM orders \
         WHERE (status = 'PENDING_PAYMENT' AND created_at < now() - make_interval(secs => $1 + $2)) \
            OR (status = 'PENDING_CONFIRMATION' AND created_at < now() - make_interval(secs => $1 + $3))",
    ),
    (
        "order-payment-status-follows-payment",
        "an order's paymentStatus is its payment's status",
        "SELECT o.id::TEXT AS subject, format('order says %s, payment %s says %s', o.payment_status, p.id, p.status) \
                AS detail \
         FROM orders o JOIN LATERAL ( \
             SELECT * FROM payments p WHERE p.order_id = o.id ORDER BY p.created_at DESC LIMIT 1 \
         ) p ON true \
         WHERE o.payment_status <> p.status \
           AND GREATEST(o.updated_at, p.updated_at) < now() - make_interval(secs => $1)",
    ),
    (
        "outbox-published",
        "no outbox row stays unpublished",
        "SELECT id AS subject, format('%s job unpublished since %s', kind, created_at) AS detail FROM outbox \
         WHERE COALESCE(run_at, created_at) < now() - make_interval(secs => $1)",
    ),
];

/// The names and descriptions of every check, in the order they run.
pub fn invariant_checks() -> impl Iterator<Item = (&'static str, &'static str)> {
    CHECKS.iter().map(|(name, what, _)| (*name, *what))
}

pub struct PgInvariants {
    pool: PgPool,
}

impl PgInvariants {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// Every violation found, check by check (at most `limit` per check).
    pub async fn check(&self, settings: &InvariantSettings, limit: i64) -> Result<Vec<Violation>, InfraError> {
        let secs = |d: Duration| i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
        let (grace, payment, confirmation) =
            (secs(settings.grace), secs(settings.payment_window), secs(settings.confirmation_window));
        let mut conn = self.pool.get().await.map_err(infra_from_pool)?;
        conn.build_transaction()
            .repeatable_read()
            .read_only()
            .run::<Vec<Violation>, diesel::result::Error, _>(async move |conn| {
                let mut found = Vec::new();
                for (check, _, query) in CHECKS {
                    let rows: Vec<Row> = diesel::sql_query(format!("{query} LIMIT {limit}"))
                        .bind::<BigInt, _>(grace)
                        .bind::<BigInt, _>(payment)
                        .bind::<BigInt, _>(confirmation)
                        .load(conn)
                        .await?;
                    found.extend(rows.into_iter().map(|r| Violation { check, subject: r.subject, detail: r.detail }));
                }
                Ok(found)
            })
            .await
            .map_err(infra_from_diesel)
    }
}
