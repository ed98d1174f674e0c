//! Orders and their lines.
//!
//! An order is written once with its lines and its checkout context; afterwards only its
//! status, payment status, cancellation reason, timeline and `updated_at` change, and only while
//! the row is still as it was read (id, status, updated_at), so two writers can never both act on
//! one state. Jobs caused by a write are staged in the outbox by the same statement: creating an
//! order (with its lines and jobs) and changing one are one hand-written statement each, one
//! round trip with nothing to BEGIN or COMMIT around it.
//!
//! Money columns hold minor units; the order's one `currency` column applies to its lines too.
//! The shipping address and the timeline are JSONB documents with camelCase fields.
//! `payment_token` (with `cart_id`, the checkout context) is read and written only by hand-written
//! statements: the table has one column more than diesel's default `table!` limit of 16. The saga
//! reads the order, its lines and its context with one statement.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use ecom_kernel::jobs::NewJob;
use ecom_kernel::{Currency, Cursor, CustomerId, InfraError, Money, OrderId, Page, PageRequest, ProductId};
use ecom_orders::model::{
    CancellationReason, Order, OrderLine, OrderStatus, PaymentMethod, ShippingAddress, TimelineEntry,
};
use ecom_orders::ports::{CheckoutContext, OrderFilter, OrderRepository, OrderSaveError, Unfinished};
use ecom_orders::service::{COMPENSATED, FINALIZED, STOCK_RESERVED};
use ecom_payments::model::PaymentStatus;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{infra_from_diesel, infra_from_pool};
use crate::outbox::{stage_jobs_sql, JobColumns};
use crate::schema::{order_lines, orders};
use crate::sql::{first_row, Count, Statement};
use crate::PgPool;

#[derive(diesel::QueryableByName)]
struct UnfinishedRow {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    id: Uuid,
    #[diesel(sql_type = diesel::sql_types::Text)]
    status: String,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    cancellation_reason: Option<String>,
    #[diesel(sql_type = diesel::sql_types::Timestamptz)]
    updated_at: DateTime<Utc>,
}

pub struct PgOrderRepository {
    pool: PgPool,
}

impl PgOrderRepository {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

fn corrupt(what: &str) -> InfraError {
    InfraError::unexpected(format!("corrupt order row: {what}"))
}

/// The shipping address as stored in `orders.shipping_address`.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AddressJson {
    full_name: String,
    line1: String,
    #[serde(default)]
    line2: Option<String>,
    city: String,
    #[serde(default)]
    state: Option<String>,
    postal_code: String,
    country: String,
    #[serde(default)]
    phone: Option<String>,
}

impl AddressJson {
    fn of(a: &ShippingAddress) -> Self {
        Self {
            full_name: a.full_name.clone(),
            line1: a.line1.clone(),
            line2: a.line2.clone(),
            city: a.city.clone(),
            state: a.state.clone(),
            postal_code: a.postal_code.clone(),
            country: a.country.clone(),
            phone: a.phone.clone(),
        }
    }

    fn into_domain(self) -> ShippingAddress {
        ShippingAddress {
            full_name: self.full_name,
            line1: self.line1,
            line2: self.line2,
            city: self.city,
            state: self.state,
            postal_code: self.postal_code,
            country: self.country,
            phone: self.phone,
        }
    }
}

/// One timeline entry as stored in the `orders.timeline` array.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TimelineJson {
    status: String,
    at: DateTime<Utc>,
    #[serde(default)]
    note: Option<String>,
}

fn address_json(a: &ShippingAddress) -> Result<serde_json::Value, InfraError> {
    serde_json::to_value(AddressJson::of(a))
        .map_err(|e| InfraError::unexpected("cannot encode a shipping address").with_source(e))
}

fn timeline_json(timeline: &[TimelineEntry]) -> Result<serde_json::Value, InfraError> {
    let entries: Vec<TimelineJson> = timeline
        .iter()
        .map(|t| TimelineJson { status: t.status.as_str().to_owned(), at: t.at, note: t.note.clone() })
        .collect();
    serde_json::to_value(entries).map_err(|e| InfraError::unexpected("cannot encode a timeline").with_source(e))
}

fn timeline_of(value: serde_json::Value) -> Result<Vec<TimelineEntry>, InfraError> {
    let entries: Vec<TimelineJson> = serde_json::from_value(value).map_err(|_| corrupt("timeline"))?;
    entries
        .into_iter()
        .map(|t| {
            Ok(TimelineEntry {
                status: OrderStatus::parse(&t.status).ok_or_else(|| corrupt("timeline status"))?,
                at: t.at,
                note: t.note,
            })
        })
        .collect()
}

#[derive(Queryable, Selectable, QueryableByName)]
#[diesel(table_name = orders, check_for_backend(diesel::pg::Pg))]
struct OrderRow {
    id: Uuid,
    customer_id: Uuid,
    status: String,
    payment_status: String,
    payment_method: String,
    subtotal: i64,
    shipping_cost: i64,
    total: i64,
    currency: String,
    shipping_address: serde_json::Value,
    customer_notes: Option<String>,
    cancellation_reason: Option<String>,
    timeline: serde_json::Value,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

#[derive(Queryable, Selectable, QueryableByName)]
#[diesel(table_name = order_lines, check_for_backend(diesel::pg::Pg))]
struct LineRow {
    order_id: Uuid,
    position: i32,
    product_id: Uuid,
    sku: String,
    name: String,
    unit_price: i64,
    quantity: i32,
    line_total: i64,
}

impl OrderRow {
    fn of(o: &Order) -> Result<Self, InfraError> {
        Ok(Self {
            id: o.id.as_uuid(),
            customer_id: o.customer_id.as_uuid(),
            status: o.status.as_str().to_owned(),
            payment_status: o.payment_status.as_str().to_owned(),
            payment_method: o.payment_method.as_str().to_owned(),
            subtotal: o.subtotal.amount(),
            shipping_cost: o.shipping_cost.amount(),
            total: o.total.amount(),
            currency: o.total.currency().code().to_owned(),
            shipping_address: address_json(&o.shipping_address)?,
            customer_notes: o.customer_notes.clone(),
            cancellation_reason: o.cancellation_reason.as_ref().map(|r| r.as_str().to_owned()),
            timeline: timeline_json(&o.timeline)?,
            created_at: o.created_at,
            updated_at: o.updated_at,
        })
    }

    /// The order with `lines` (its lines, by position).
    fn into_domain(self, lines: Vec<LineRow>) -> Result<Order, InfraError> {
        let currency = Currency::parse(self.currency.trim()).map_err(|_| corrupt("currency"))?;
        if lines.is_empty() {
            return Err(corrupt("order without lines"));
        }
        let lines = lines.into_iter().map(|l| l.into_domain(currency)).collect::<Result<Vec<_>, _>>()?;
        let address: AddressJson =
            serde_json::from_value(self.shipping_address).map_err(|_| corrupt("shipping address"))?;
        Ok(Order {
            id: OrderId::from_uuid(self.id),
            customer_id: CustomerId::from_uuid(self.customer_id),
            status: OrderStatus::parse(&self.status).ok_or_else(|| corrupt("status"))?,
            payment_status: PaymentStatus::parse(&self.payment_status).ok_or_else(|| corrupt("payment status"))?,
            payment_method: PaymentMethod::parse(&self.payment_method).ok_or_else(|| corrupt("payment method"))?,
            lines,
            subtotal: Money::new(self.subtotal, currency),
            shipping_cost: Money::new(self.shipping_cost, currency),
            total: Money::new(self.total, currency),
            shipping_address: address.into_domain(),
            customer_notes: self.customer_notes,
            cancellation_reason: self
                .cancellation_reason
                .as_deref()
                .map(|r| CancellationReason::parse(r).ok_or_else(|| corrupt("cancellation reason")))
                .transpose()?,
            timeline: timeline_of(self.timeline)?,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

impl LineRow {
    fn of(order: &Order, position: usize, line: &OrderLine) -> Result<Self, InfraError> {
        let refuse = |what: &str| InfraError::unexpected(format!("cannot store order {}: {what}", order.id));
        if line.unit_price.currency() != order.total.currency() || line.line_total.currency() != order.total.currency()
        {
            return Err(refuse("a line in another currency than the order"));
        }
        Ok(Self {
            order_id: order.id.as_uuid(),
            position: i32::try_from(position).map_err(|_| refuse("too many lines"))?,
            product_id: line.product_id.as_uuid(),
            sku: line.sku.clone(),
            name: line.name.clone(),
            unit_price: line.unit_price.amount(),
            quantity: i32::try_from(line.quantity).map_err(|_| refuse("line quantity out of range"))?,
            line_total: line.line_total.amount(),
        })
    }

    fn into_domain(self, currency: Currency) -> Result<OrderLine, InfraError> {
        Ok(OrderLine {
            product_id: ProductId::from_uuid(self.product_id),
            sku: self.sku,
            name: self.name,
            unit_price: Money::new(self.unit_price, currency),
            quantity: u32::try_from(self.quantity).map_err(|_| corrupt("line quantity"))?,
            line_total: Money::new(self.line_total, currency),
        })
    }
}

/// The list cursor: the last order's `created_at` and its id.
fn cursor_of(row: &OrderRow) -> Cursor {
    Cursor::after_time(row.created_at, row.id)
}

/// Inserts order `$8` with its payment token (`$24`), its lines (`$25`…`$31`, one array per
/// column) and its jobs (`$1`…`$7`, see [`JobColumns`]): one statement, so one round trip and no
/// transaction to open; written by hand because the 17 columns exceed diesel's `table!` limit
/// (see the schema). Line rows check their order's key at the end of the statement.
const CREATE_ORDER: &str = concat!(
    "WITH o AS (
  INSERT INTO orders (id, customer_id, status, payment_status, payment_method, subtotal, shipping_cost, total,
                      currency, shipping_address, customer_notes, cancellation_reason, timeline, cart_id,
                      created_at, updated_at, payment_token)
  VALUES ($8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24)
  RETURNING id
), l AS (
  INSERT INTO order_lines (order_id, position, product_id, sku, name, unit_price, quantity, line_total)
  SELECT o.id, l.position, l.product_id, l.sku, l.name, l.unit_price, l.quantity, l.line_total
  FROM o, unnest($25::int4[], $26::uuid[], $27::text[], $28::text[], $29::int8[], $30::int4[], $31::int8[])
       AS l (position, product_id, sku, name, unit_price, quantity, line_total)
), j AS (
  ",
    stage_jobs_sql!("o, ", "NULL", "$22"),
    "
)
SELECT count(*) AS n FROM o"
);

/// Moves order `$8` from status `$9` as of `$10` to `$11`…`$15` (status, payment status,
/// cancellation reason, timeline, updated at) and stages its jobs (`$1`…`$7`, see
/// [`JobColumns`]) in the same statement; counts the orders changed (none: it had moved on).
/// The payment token is kept only while the saga may still use it: to charge (PENDING_PAYMENT),
/// or to look for a charge it asked for before a cancellation (CANCELLED); once the order moves
/// anywhere else, its charge is recorded (or there never was one) and the token is dropped.
const UPDATE_ORDER: &str = concat!(
    "WITH u AS (
  UPDATE orders SET status = $11, payment_status = $12, cancellation_reason = $13, timeline = $14, updated_at = $15,
                    payment_token = CASE WHEN $11 IN ('PENDING_PAYMENT', 'CANCELLED') THEN payment_token END
  WHERE id = $8 AND status = $9 AND updated_at = $10
  RETURNING id
), j AS (
  ",
    stage_jobs_sql!("u, ", "NULL", "$15"),
    "
)
SELECT count(*) AS n FROM u"
);

/// Order `$1` with its lines (one row each, by position) and its checkout context.
const ORDER_WITH_CONTEXT: &str = "\
SELECT o.id, o.customer_id, o.status, o.payment_status, o.payment_method, o.subtotal, o.shipping_cost, o.total,
       o.currency, o.shipping_address, o.customer_notes, o.cancellation_reason, o.timeline, o.created_at,
       o.updated_at, l.order_id, l.position, l.product_id, l.sku, l.name, l.unit_price, l.quantity, l.line_total,
       o.cart_id, o.payment_token
FROM orders o JOIN order_lines l ON l.order_id = o.id
WHERE o.id = $1
ORDER BY l.position";

#[derive(diesel::QueryableByName)]
struct WithContext {
    #[diesel(embed)]
    order: OrderRow,
    #[diesel(embed)]
    line: LineRow,
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    cart_id: Uuid,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    payment_token: Option<String>,
}

/// The lines as columns, in the order `CREATE_ORDER` reads them.
fn bind_lines<'a>(statement: Statement<'a>, lines: Vec<LineRow>) -> Statement<'a> {
    use diesel::sql_types::{Array, Int4, Int8, Text, Uuid as SqlUuid};
    statement
        .bind::<Array<Int4>, _>(lines.iter().map(|l| l.position).collect::<Vec<_>>())
        .bind::<Array<SqlUuid>, _>(lines.iter().map(|l| l.product_id).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(lines.iter().map(|l| l.sku.clone()).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(lines.iter().map(|l| l.name.clone()).collect::<Vec<_>>())
        .bind::<Array<Int8>, _>(lines.iter().map(|l| l.unit_price).collect::<Vec<_>>())
        .bind::<Array<Int4>, _>(lines.iter().map(|l| l.quantity).collect::<Vec<_>>())
        .bind::<Array<Int8>, _>(lines.iter().map(|l| l.line_total).collect::<Vec<_>>())
}

#[async_trait]
impl OrderRepository for PgOrderRepository {
    async fn create(&self, order: &Order, context: &CheckoutContext, jobs: &[NewJob]) -> Result<(), InfraError> {
        use diesel::sql_types::{Bpchar, Int8, Jsonb, Nullable, Text, Timestamptz, Uuid as SqlUuid};
        let o = OrderRow::of(order)?;
        let lines =
            order.lines.iter().enumerate().map(|(i, l)| LineRow::of(order, i, l)).collect::<Result<Vec<_>, _>>()?;
        // The jobs first (`$1`…`$7`), then the order, then its lines.
        let statement = JobColumns::of(jobs)
            .bind(Statement::new(CREATE_ORDER))
            .bind::<SqlUuid, _>(o.id)
            .bind::<SqlUuid, _>(o.customer_id)
            .bind::<Text, _>(o.status)
            .bind::<Text, _>(o.payment_status)
            .bind::<Text, _>(o.payment_method)
            .bind::<Int8, _>(o.subtotal)
            .bind::<Int8, _>(o.shipping_cost)
            .bind::<Int8, _>(o.total)
            .bind::<Bpchar, _>(o.currency)
            .bind::<Jsonb, _>(o.shipping_address)
            .bind::<Nullable<Text>, _>(o.customer_notes)
            .bind::<Nullable<Text>, _>(o.cancellation_reason)
            .bind::<Jsonb, _>(o.timeline)
            .bind::<SqlUuid, _>(context.cart_id)
            .bind::<Timestamptz, _>(o.created_at)
            .bind::<Timestamptz, _>(o.updated_at)
            .bind::<Nullable<Text>, _>(context.payment_token.clone());
        let statement = bind_lines(statement, lines);
        let mut conn = self.pool.get().await.map_err(infra_from_pool)?;
        let created: Count = statement.load(&mut conn).await.and_then(first_row).map_err(infra_from_diesel)?;
        if created.n != 1 {
            return Err(InfraError::unexpected(format!("order {} was not created", order.id)));
        }
        Ok(())
    }

    async fn get(&self, id: OrderId) -> Result<Option<Order>, InfraError> {
        // One row per line, the order's columns on each: one round trip.
        let mut conn = self.pool.get().await.map_err(infra_from_pool)?;
        let rows: Vec<(OrderRow, Option<LineRow>)> = orders::table
            .left_join(order_lines::table)
            .filter(orders::id.eq(id.as_uuid()))
            .order(order_lines::position.asc())
            .select((OrderRow::as_select(), Option::<LineRow>::as_select()))
            .load(&mut conn)
            .await
            .map_err(infra_from_diesel)?;
        let mut rows = rows.into_iter();
        let Some((order, first)) = rows.next() else {
            return Ok(None);
        };
        // An order without lines is corrupt: `into_domain` says so.
        let lines = first.into_iter().chain(rows.filter_map(|(_, line)| line)).collect();
        order.into_domain(lines).map(Some)
    }

    async fn get_with_context(&self, id: OrderId) -> Result<Option<(Order, CheckoutContext)>, InfraError> {
        let mut conn = self.pool.get().await.map_err(infra_from_pool)?;
        let rows: Vec<WithContext> = Statement::new(ORDER_WITH_CONTEXT)
            .bind::<diesel::sql_types::Uuid, _>(id.as_uuid())
            .load(&mut conn)
            .await
            .map_err(infra_from_diesel)?;
        let mut rows = rows.into_iter();
        let Some(WithContext { order, line, cart_id, payment_token }) = rows.next() else {
            drop(conn);
            // No such order; or one without lines, which `get` reports as corrupt.
            return self.get(id).await.map(|_| None);
        };
        let lines = std::iter::once(line).chain(rows.map(|r| r.line)).collect();
        Ok(Some((order.into_domain(lines)?, CheckoutContext { cart_id, payment_token })))
    }

    async fn list(&self, filter: &OrderFilter, page: &PageRequest) -> Result<Page<Order>, InfraError> {
        let mut query = orders::table.select(OrderRow::as_select()).into_boxed();
        if let Some(customer) = filter.customer_id {
            query = query.filter(orders::customer_id.eq(customer.as_uuid()));
        }
        if let Some(status) = filter.status {
            query = query.filter(orders::status.eq(status.as_str()));
        }
        if let Some(after) = page.after() {
            // The service refuses a cursor without a time.
            let at = after.time().ok_or_else(|| InfraError::unexpected("cursor of another list"))?;
            // (created_at, id) < (at, id), with the bound on created_at alone for the index.
            query =
                query.filter(orders::created_at.le(at)).filter(orders::created_at.lt(at).or(orders::id.lt(after.id())));
        }
        let mut conn = self.pool.get().await.map_err(infra_from_pool)?;
        let rows: Vec<OrderRow> = query
            .order((orders::created_at.desc(), orders::id.desc()))
            .limit(page.fetch_limit())
            .load(&mut conn)
            .await
            .map_err(infra_from_diesel)?;
        let rows = Page::from_overfetch(rows, page, cursor_of);
        let ids: Vec<Uuid> = rows.items.iter().map(|r| r.id).collect();
        let line_rows: Vec<LineRow> = if ids.is_empty() {
            Vec::new()
        } else {
            order_lines::table
                .filter(order_lines::order_id.eq_any(&ids))
                .order((order_lines::order_id.asc(), order_lines::position.asc()))
                .select(LineRow::as_select())
                .load(&mut conn)
                .await
                .map_err(infra_from_diesel)?
        };
        let mut lines: HashMap<Uuid, Vec<LineRow>> = HashMap::with_capacity(ids.len());
        for line in line_rows {
            lines.entry(line.order_id).or_default().push(line);
        }
        let items = rows
            .items
            .into_iter()
            .map(|row| {
                let own = lines.remove(&row.id).unwrap_or_default();
                row.into_domain(own)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Page { items, next: rows.next })
    }

    async fn update(&self, expected: &Order, order: &Order, jobs: &[NewJob]) -> Result<(), OrderSaveError> {
        use diesel::sql_types::{Jsonb, Nullable, Text, Timestamptz, Uuid as SqlUuid};
        let statement = JobColumns::of(jobs)
            .bind(Statement::new(UPDATE_ORDER))
            .bind::<SqlUuid, _>(expected.id.as_uuid())
            .bind::<Text, _>(expected.status.as_str())
            .bind::<Timestamptz, _>(expected.updated_at)
            .bind::<Text, _>(order.status.as_str())
            .bind::<Text, _>(order.payment_status.as_str())
            .bind::<Nullable<Text>, _>(order.cancellation_reason.as_ref().map(CancellationReason::as_str))
            .bind::<Jsonb, _>(timeline_json(&order.timeline)?)
            .bind::<Timestamptz, _>(order.updated_at);
        let mut conn = self.pool.get().await.map_err(infra_from_pool)?;
        let updated: Count = statement.load(&mut conn).await.and_then(first_row).map_err(infra_from_diesel)?;
        if updated.n != 1 {
            return Err(OrderSaveError::Conflict);
        }
        Ok(())
    }

    async fn unfinished(
        &self,
        before: DateTime<Utc>,
        after: Option<(DateTime<Utc>, OrderId)>,
        limit: i64,
    ) -> Result<Vec<Unfinished>, InfraError> {
        // The predicate is the partial index's (migration 000008), written out so that the
        // planner uses it; the notes are the saga's constants.
        let note = |n: &str| serde_json::json!([{ "note": n }]).to_string().replace('\'', "''");
        let query = format!(
            "SELECT id, status, cancellation_reason, updated_at FROM orders \
             WHERE (status = 'PENDING_PAYMENT' \
                OR (status = 'PENDING_CONFIRMATION' AND NOT timeline @> '{}'::jsonb) \
                OR (status = 'CONFIRMED' AND NOT timeline @> '{}'::jsonb) \
                OR (status = 'CANCELLED' AND NOT timeline @> '{}'::jsonb)) \
               AND updated_at < $1 AND (updated_at, id) > ($2, $3) \
             ORDER BY updated_at, id LIMIT $4",
            note(STOCK_RESERVED),
            note(FINALIZED),
            note(COMPENSATED),
        );
        let (after_at, after_id) =
            after.map_or((DateTime::<Utc>::UNIX_EPOCH, Uuid::nil()), |(at, id)| (at, id.as_uuid()));
        let mut conn = self.pool.get().await.map_err(infra_from_pool)?;
        let rows: Vec<UnfinishedRow> = diesel::sql_query(query)
            .bind::<diesel::sql_types::Timestamptz, _>(before)
            .bind::<diesel::sql_types::Timestamptz, _>(after_at)
            .bind::<diesel::sql_types::Uuid, _>(after_id)
            .bind::<diesel::sql_types::BigInt, _>(limit)
            .load(&mut conn)
            .await
            .map_err(infra_from_diesel)?;
        rows.into_iter()
            .map(|r| {
                Ok(Unfinished {
                    id: OrderId::from_uuid(r.id),
                    status: OrderStatus::parse(&r.status).ok_or_else(|| corrupt("status"))?,
                    cancellation_reason: match r.cancellation_reason {
                        None => None,
                        Some(reason) => Some(CancellationReason::parse(&reason).ok_or_else(|| corrupt("reason"))?),
                    },
                    updated_at: r.updated_at,
                })
            })
            .collect()
    }

    async fn stale(&self, status: OrderStatus, before: DateTime<Utc>, limit: i64) -> Result<Vec<OrderId>, InfraError> {
        let mut conn = self.pool.get().await.map_err(infra_from_pool)?;
        let ids: Vec<Uuid> = orders::table
            .filter(orders::status.eq(status.as_str()))
            .filter(orders::created_at.lt(before))
            .order((orders::created_at.asc(), orders::id.asc()))
            .limit(limit)
            .select(orders::id)
            .load(&mut conn)
            .await
            .map_err(infra_from_diesel)?;
        Ok(ids.into_iter().map(OrderId::from_uuid).collect())
    }
}
