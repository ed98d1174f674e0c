//! Payments, refunds and received provider events.
//!
//! Changes are optimistic: an update applies only while the row is still as it was read
//! (status, refunded amount, updated_at), so two writers can never both act on one state; the
//! CHECK on `refunded_amount` is the last line of defence against refunding more than was paid.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};

use ecom_kernel::jobs::{NewJob, WriteBarrier};
use ecom_kernel::{Currency, CustomerId, InfraError, Money, OrderId};
use ecom_payments::model::{GatewayEvent, Payment, PaymentId, PaymentStatus, Provider, Refund, RefundId, RefundStatus};
use ecom_payments::ports::{PaymentChange, PaymentRepository, SaveError};
use uuid::Uuid;

use crate::barrier::Flush;
use crate::error::{infra_from_diesel, infra_from_pool, unique_violation};
use crate::outbox::{stage, stage_jobs_sql, JobColumns};
use crate::schema::{payment_events, payments, refunds};
use crate::sql::{first_row, Count, Statement};
use crate::PgPool;

pub struct PgPaymentRepository {
    pool: PgPool,
    barrier: Option<Arc<dyn WriteBarrier>>,
}

impl PgPaymentRepository {
    pub fn new(pool: PgPool) -> Self {
        Self { pool, barrier: None }
    }

    /// For a pool whose commits do not wait for the disk: a payment opened, or a refund booked,
    /// is flushed with `barrier` before the call returns, since the provider is asked next (a
    /// compensation finds a charge through its payment; a refund's id is its key there).
    #[must_use]
    pub fn with_barrier(mut self, barrier: Arc<dyn WriteBarrier>) -> Self {
        self.barrier = Some(barrier);
        self
    }
}

#[derive(Queryable, Selectable, QueryableByName)]
#[diesel(table_name = payments, check_for_backend(diesel::pg::Pg))]
struct PaymentRow {
    id: Uuid,
    order_id: Uuid,
    customer_id: Uuid,
    provider: String,
    provider_reference: Option<String>,
    amount: i64,
    currency: String,
    status: String,
    refunded_amount: i64,
    failure_reason: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

fn corrupt(what: &str) -> InfraError {
    InfraError::unexpected(format!("corrupt payment row: {what}"))
}

fn currency(raw: &str) -> Result<Currency, InfraError> {
    Currency::parse(raw.trim()).map_err(|_| corrupt("currency"))
}

impl PaymentRow {
    fn of(p: &Payment) -> Self {
        Self {
            id: p.id.as_uuid(),
            order_id: p.order_id.as_uuid(),
            customer_id: p.customer_id.as_uuid(),
            provider: p.provider.as_str().to_owned(),
            provider_reference: p.provider_reference.clone(),
            amount: p.amount.amount(),
            currency: p.amount.currency().code().to_owned(),
            status: p.status.as_str().to_owned(),
            refunded_amount: p.refunded.amount(),
            failure_reason: p.failure_reason.clone(),
            created_at: p.created_at,
            updated_at: p.updated_at,
        }
    }

    fn into_domain(self) -> Result<Payment, InfraError> {
        let currency = currency(&self.currency)?;
        Ok(Payment {
            id: PaymentId::from_uuid(self.id),
            order_id: OrderId::from_uuid(self.order_id),
            customer_id: CustomerId::from_uuid(self.customer_id),
            provider: Provider::parse(&self.provider).ok_or_else(|| corrupt("provider"))?,
            provider_reference: self.provider_reference,
            amount: Money::new(self.amount, currency),
            status: PaymentStatus::parse(&self.status).ok_or_else(|| corrupt("status"))?,
            refunded: Money::new(self.refunded_amount, currency),
            failure_reason: self.failure_reason,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = refunds, check_for_backend(diesel::pg::Pg))]
struct RefundRow {
    id: Uuid,
    payment_id: Uuid,
    amount: i64,
    currency: String,
    reason: Option<String>,
    provider_reference: Option<String>,
    status: String,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    failure_reason: Option<String>,
}

impl RefundRow {
    fn of(r: &Refund, now: DateTime<Utc>) -> Self {
        Self {
            id: r.id.as_uuid(),
            payment_id: r.payment_id.as_uuid(),
            amount: r.amount.amount(),
            currency: r.amount.currency().code().to_owned(),
            reason: r.reason.clone(),
            provider_reference: r.provider_reference.clone(),
            status: r.status.as_str().to_owned(),
            created_at: r.created_at,
            updated_at: now,
            failure_reason: r.failure_reason.clone(),
        }
    }

    fn into_domain(self) -> Result<Refund, InfraError> {
        Ok(Refund {
            id: RefundId::from_uuid(self.id),
            payment_id: PaymentId::from_uuid(self.payment_id),
            amount: Money::new(self.amount, currency(&self.currency)?),
            reason: self.reason,
            provider_reference: self.provider_reference,
            status: RefundStatus::parse(&self.status).ok_or_else(|| corrupt("refund status"))?,
            failure_reason: self.failure_reason,
            created_at: self.created_at,
        })
    }
}

enum TxError {
    Db(diesel::result::Error),
    Conflict,
}

impl From<diesel::result::Error> for TxError {
    fn from(e: diesel::result::Error) -> Self {
        TxError::Db(e)
    }
}

/// The index that keeps one provider reference to one payment.
const REFERENCE_INDEX: &str = "payments_provider_reference_idx";

impl From<TxError> for SaveError {
    fn from(e: TxError) -> Self {
        match e {
            TxError::Conflict => SaveError::Conflict,
            TxError::Db(e) if unique_violation(&e) == Some(REFERENCE_INDEX) => SaveError::ReferenceTaken,
            TxError::Db(e) => SaveError::Infrastructure(infra_from_diesel(e)),
        }
    }
}

/// Writes payment `$8` (provider reference, status, refunded amount, failure reason, updated at:
/// `$12`…`$16`) while it still has status `$9`, refunded amount `$10` and updated at `$11`, and
/// stages its jobs (`$1`…`$7`, see [`JobColumns`]); counts the payments changed.
const UPDATE_PAYMENT: &str = concat!(
    "WITH u AS (
  UPDATE payments SET provider_reference = $12, status = $13, refunded_amount = $14, failure_reason = $15,
                      updated_at = $16
  WHERE id = $8 AND status = $9 AND refunded_amount = $10 AND updated_at = $11
  RETURNING id
), j AS (
  ",
    stage_jobs_sql!("u, ", "NULL", "$16"),
    "
)
SELECT count(*) AS n FROM u"
);

/// Order `$2`'s payment of the kind of provider `$4` (`$13`, cash on delivery, or any other), or,
/// when it has none, payment `$1`…`$12` inserted (the columns of `INSERT_PAYMENT`). An order has
/// at most one of each kind (unique indexes): a concurrent insert of the order's payment makes
/// this one wait, then insert nothing, and the statement returns no row (run it again).
const OPEN_ONCE: &str = "\
WITH existing AS (
  SELECT id, order_id, customer_id, provider, provider_reference, amount, currency, status, refunded_amount,
         failure_reason, created_at, updated_at
  FROM payments WHERE order_id = $2 AND (provider = $13) = ($4 = $13)
  ORDER BY created_at, id LIMIT 1
), inserted AS (
  INSERT INTO payments (id, order_id, customer_id, provider, provider_reference, amount, currency, status,
                        refunded_amount, failure_reason, created_at, updated_at)
  SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12 WHERE NOT EXISTS (SELECT 1 FROM existing)
  ON CONFLICT DO NOTHING
  RETURNING id, order_id, customer_id, provider, provider_reference, amount, currency, status, refunded_amount,
            failure_reason, created_at, updated_at
)
SELECT * FROM existing UNION ALL SELECT * FROM inserted";

const INSERT_PAYMENT: &str = "\
INSERT INTO payments (id, order_id, customer_id, provider, provider_reference, amount, currency, status,
                      refunded_amount, failure_reason, created_at, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
ON CONFLICT (id) DO NOTHING";

/// The row's twelve columns as the statement's next parameters, in table order.
fn bind_row(statement: Statement<'_>, row: PaymentRow) -> Statement<'_> {
    use diesel::sql_types::{BigInt, Bpchar, Nullable, Text, Timestamptz, Uuid as SqlUuid};
    statement
        .bind::<SqlUuid, _>(row.id)
        .bind::<SqlUuid, _>(row.order_id)
        .bind::<SqlUuid, _>(row.customer_id)
        .bind::<Text, _>(row.provider)
        .bind::<Nullable<Text>, _>(row.provider_reference)
        .bind::<BigInt, _>(row.amount)
        .bind::<Bpchar, _>(row.currency)
        .bind::<Text, _>(row.status)
        .bind::<BigInt, _>(row.refunded_amount)
        .bind::<Nullable<Text>, _>(row.failure_reason)
        .bind::<Timestamptz, _>(row.created_at)
        .bind::<Timestamptz, _>(row.updated_at)
}

/// Writes `next` over the row when it still matches `expected`, staging `jobs` with it.
async fn compare_and_set(
    conn: &mut diesel_async::AsyncPgConnection,
    expected: &Payment,
    next: &Payment,
    jobs: &[NewJob],
) -> Result<(), TxError> {
    use diesel::sql_types::{BigInt, Nullable, Text, Timestamptz, Uuid as SqlUuid};
    let row = PaymentRow::of(next);
    let statement = JobColumns::of(jobs)
        .bind(Statement::new(UPDATE_PAYMENT))
        .bind::<SqlUuid, _>(expected.id.as_uuid())
        .bind::<Text, _>(expected.status.as_str())
        .bind::<BigInt, _>(expected.refunded.amount())
        .bind::<Timestamptz, _>(expected.updated_at)
        .bind::<Nullable<Text>, _>(row.provider_reference)
        .bind::<Text, _>(row.status)
        .bind::<BigInt, _>(row.refunded_amount)
        .bind::<Nullable<Text>, _>(row.failure_reason)
        .bind::<Timestamptz, _>(row.updated_at);
    let updated: Count = statement.load(conn).await.and_then(first_row)?;
    if updated.n == 1 {
        Ok(())
    } else {
        Err(TxError::Conflict)
    }
}

#[async_trait]
impl PaymentRepository for PgPaymentRepository {
    async fn insert(&self, payment: &Payment) -> Result<(), InfraError> {
        let statement = bind_row(Statement::new(INSERT_PAYMENT), PaymentRow::of(payment));
        let mut conn = self.pool.get().await.map_err(infra_from_pool)?;
        statement.execute(&mut conn).await.map_err(infra_from_diesel)?;
        Ok(())
    }

    async fn open_once(&self, payment: &Payment) -> Result<Payment, InfraError> {
        let statement = || {
            bind_row(Statement::new(OPEN_ONCE), PaymentRow::of(payment))
                .bind::<diesel::sql_types::Text, _>(Provider::CashOnDelivery.as_str())
        };
        let flush = Flush::start(self.barrier.as_ref());
        let mut conn = self.pool.get().await.map_err(infra_from_pool)?;
        let mut row: Option<PaymentRow> =
            statement().load(&mut conn).await.and_then(first_row).optional().map_err(infra_from_diesel)?;
        if row.is_none() {
            // Another caller inserted the order's payment meanwhile (committed once this one
            // returned): a new statement sees it.
            row = statement().load(&mut conn).await.and_then(first_row).optional().map_err(infra_from_diesel)?;
        }
        drop(conn);
        // On disk before the charge it leads to: a compensation finds the charge through it.
        flush.on_disk("the payment's write").await?;
        row.ok_or_else(|| InfraError::unexpected(format!("payment {} neither found nor inserted", payment.id)))?
            .into_domain()
    }

    async fn get(&self, id: PaymentId) -> Result<Option<Payment>, InfraError> {
        let mut conn = self.pool.get().await.map_err(infra_from_pool)?;
        let row: Option<PaymentRow> = payments::table
            .find(id.as_uuid())
            .select(PaymentRow::as_select())
            .first(&mut conn)
            .await
            .optional()
            .map_err(infra_from_diesel)?;
        row.map(PaymentRow::into_domain).transpose()
    }

    async fn by_reference(&self, provider: Provider, reference: &str) -> Result<Option<Payment>, InfraError> {
        let mut conn = self.pool.get().await.map_err(infra_from_pool)?;
        let row: Option<PaymentRow> = payments::table
            .filter(payments::provider.eq(provider.as_str()))
            .filter(payments::provider_reference.eq(reference))
            .select(PaymentRow::as_select())
            .first(&mut conn)
            .await
            .optional()
            .map_err(infra_from_diesel)?;
        row.map(PaymentRow::into_domain).transpose()
    }

    async fn of_order(&self, order: OrderId) -> Result<Vec<Payment>, InfraError> {
        let mut conn = self.pool.get().await.map_err(infra_from_pool)?;
        let rows: Vec<PaymentRow> = payments::table
            .filter(payments::order_id.eq(order.as_uuid()))
            .order((payments::created_at.asc(), payments::id.asc()))
            .select(PaymentRow::as_select())
            .load(&mut conn)
            .await
            .map_err(infra_from_diesel)?;
        rows.into_iter().map(PaymentRow::into_domain).collect()
    }

    async fn update(&self, expected: &Payment, payment: &Payment, jobs: &[NewJob]) -> Result<(), SaveError> {
        // One statement: the change and its jobs commit together without a transaction to open.
        let mut conn = self.pool.get().await.map_err(infra_from_pool)?;
        compare_and_set(&mut conn, expected, payment, jobs).await.map_err(SaveError::from)
    }

    async fn book_refund(
        &self,
        expected: &Payment,
        payment: &Payment,
        refund: &Refund,
        jobs: &[NewJob],
    ) -> Result<(), SaveError> {
        let flush = Flush::start(self.barrier.as_ref());
        let mut conn = self.pool.get().await.map_err(infra_from_pool)?;
        let (expected, next, refund, jobs) = (expected.clone(), payment.clone(), refund.clone(), jobs.to_vec());
        conn.transaction::<(), TxError, _>(async move |conn| {
            compare_and_set(conn, &expected, &next, &[]).await?;
            diesel::insert_into(refunds::table).values(RefundRow::of(&refund, refund.created_at)).execute(conn).await?;
            stage(conn, &jobs, None, refund.created_at).await?;
            Ok(())
        })
        .await
        .map_err(SaveError::from)?;
        drop(conn);
        // On disk before the provider is asked: the refund's id is its idempotency key there.
        flush.on_disk("the refund's booking").await.map_err(SaveError::Infrastructure)
    }

    async fn refund(&self, id: RefundId) -> Result<Option<Refund>, InfraError> {
        let mut conn = self.pool.get().await.map_err(infra_from_pool)?;
        let row: Option<RefundRow> = refunds::table
            .find(id.as_uuid())
            .select(RefundRow::as_select())
            .first(&mut conn)
            .await
            .optional()
            .map_err(infra_from_diesel)?;
        row.map(RefundRow::into_domain).transpose()
    }

    async fn settle_refund(&self, refund: &Refund, restored: Option<PaymentChange>) -> Result<bool, SaveError> {
        let mut conn = self.pool.get().await.map_err(infra_from_pool)?;
        let refund = refund.clone();
        let now = Utc::now();
        conn.transaction::<bool, TxError, _>(async move |conn| {
            let updated = diesel::update(
                refunds::table
                    .filter(refunds::id.eq(refund.id.as_uuid()))
                    .filter(refunds::status.eq(RefundStatus::Requested.as_str())),
            )
            .set((
                refunds::status.eq(refund.status.as_str()),
                refunds::provider_reference.eq(refund.provider_reference.as_deref()),
                refunds::failure_reason.eq(refund.failure_reason.as_deref()),
                refunds::updated_at.eq(now),
            ))
            .execute(conn)
            .await?;
            if updated == 0 {
                return Ok(false);
            }
            if let Some(change) = restored {
                compare_and_set(conn, &change.expected, &change.payment, &[]).await?;
            }
            Ok(true)
        })
        .await
        .map_err(SaveError::from)
    }

    async fn refunds(&self, payment: PaymentId) -> Result<Vec<Refund>, InfraError> {
        let mut conn = self.pool.get().await.map_err(infra_from_pool)?;
        let rows: Vec<RefundRow> = refunds::table
            .filter(refunds::payment_id.eq(payment.as_uuid()))
            .order((refunds::created_at.asc(), refunds::id.asc()))
            .select(RefundRow::as_select())
            .load(&mut conn)
            .await
            .map_err(infra_from_diesel)?;
        rows.into_iter().map(RefundRow::into_domain).collect()
    }

    async fn record_event(&self, event: &GatewayEvent, job: &NewJob) -> Result<bool, InfraError> {
        let mut conn = self.pool.get().await.map_err(infra_from_pool)?;
        let (event, job) = (event.clone(), job.clone());
        let now = Utc::now();
        conn.transaction::<bool, diesel::result::Error, _>(async move |conn| {
            let inserted = diesel::insert_into(payment_events::table)
                .values((
                    payment_events::provider.eq(event.provider.as_str()),
                    payment_events::event_id.eq(&event.event_id),
                    payment_events::event_type.eq(&event.provider_type),
                    payment_events::reference.eq(event.reference.as_deref()),
                    payment_events::received_at.eq(now),
                ))
                .on_conflict_do_nothing()
                .execute(conn)
                .await?;
            if inserted == 0 {
                return Ok(false);
            }
            if event.kind != ecom_payments::model::EventKind::Ignored && event.reference.is_some() {
                stage(conn, std::slice::from_ref(&job), None, now).await?;
            }
            Ok(true)
        })
        .await
        .map_err(infra_from_diesel)
    }
}
