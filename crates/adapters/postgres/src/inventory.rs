//! The stock repository: levels, adjustments, the movement ledger and reservations.
//!
//! Every change to a stock level is one transaction with its ledger rows; rows are locked in
//! product-id order so that concurrent multi-line reservations cannot deadlock. A one-line
//! reservation (the common case) is made, and later confirmed or released, by one statement
//! each, with nothing to BEGIN or COMMIT around it.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Int4, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use ecom_inventory::model::{
    AdjustRefusal, Adjustment, LowStockCrossing, MovementContext, Reservation, ReservationLine, ReservationStatus,
    StockLevel,
};
use ecom_inventory::ports::{AdjustError, ReserveError, StockRepository, Transition};
use ecom_kernel::{Cursor, InfraError, OrderId, Page, PageRequest, ProductId, Quantity};
use uuid::Uuid;

use crate::error::{infra_from_diesel, infra_from_pool};
use crate::schema::{products, reservation_lines, reservations, stock_levels, stock_movements};
use crate::sql::{first_row, Statement};
use crate::PgPool;

/// One ledger row.
pub(crate) struct Movement<'a> {
    pub product_id: Uuid,
    pub kind: &'a str,
    pub on_hand_delta: i32,
    pub reserved_delta: i32,
    pub on_hand_after: i32,
    pub reserved_after: i32,
    pub reason: Option<&'a str>,
    pub actor_id: Option<Uuid>,
    pub reference: Option<&'a str>,
    pub at: DateTime<Utc>,
}

pub(crate) async fn record_movement(
    conn: &mut AsyncPgConnection,
    m: &Movement<'_>,
) -> Result<(), diesel::result::Error> {
    diesel::insert_into(stock_movements::table)
        .values((
            stock_movements::id.eq(Uuid::now_v7()),
            stock_movements::product_id.eq(m.product_id),
            stock_movements::kind.eq(m.kind),
            stock_movements::on_hand_delta.eq(m.on_hand_delta),
            stock_movements::reserved_delta.eq(m.reserved_delta),
            stock_movements::on_hand_after.eq(m.on_hand_after),
            stock_movements::reserved_after.eq(m.reserved_after),
            stock_movements::reason.eq(m.reason),
            stock_movements::actor_id.eq(m.actor_id),
            stock_movements::reference.eq(m.reference),
            stock_movements::created_at.eq(m.at),
        ))
        .execute(conn)
        .await
        .map(|_| ())
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = stock_levels, check_for_backend(diesel::pg::Pg))]
struct LevelRow {
    product_id: Uuid,
    on_hand: i32,
    reserved: i32,
    low_stock_threshold: i32,
    updated_at: DateTime<Utc>,
}

fn count(v: i32) -> u32 {
    // CHECK constraints keep these non-negative.
    u32::try_from(v).unwrap_or(0)
}

impl LevelRow {
    fn into_domain(self) -> StockLevel {
        StockLevel {
            product_id: ProductId::from_uuid(self.product_id),
            on_hand: count(self.on_hand),
            reserved: count(self.reserved),
            low_stock_threshold: count(self.low_stock_threshold),
            updated_at: self.updated_at,
        }
    }
}

/// A reservation line's statement: reserves `$2` units of product `$1` for order `$4` (at `$3`)
/// if that many are available and `$guard` holds, runs `$reservation` (more CTEs reading `s`, the
/// level after), and writes the line and its ledger row (id `$5`, reference `$6`); returns the
/// level after, or nothing when it reserved nothing.
macro_rules! reserve_line_sql {
    ($guard:literal, $reservation:literal) => {
        concat!(
            "WITH s AS (
  UPDATE stock_levels SET reserved = reserved + $2, updated_at = $3
  WHERE product_id = $1 AND on_hand - reserved >= $2",
            $guard,
            "
  RETURNING on_hand, reserved, low_stock_threshold
), ",
            $reservation,
            "l AS (
  INSERT INTO reservation_lines (order_id, product_id, quantity) SELECT $4, $1, $2 FROM s
), m AS (
  INSERT INTO stock_movements (id, product_id, kind, on_hand_delta, reserved_delta, on_hand_after,
                               reserved_after, reason, actor_id, reference, created_at)
  SELECT $5, $1, 'RESERVE', 0, $2, on_hand, reserved, NULL, NULL, $6, $3 FROM s
)
SELECT on_hand, reserved, low_stock_threshold FROM s"
        )
    };
}

/// One line of a multi-line reservation, inside the transaction that made the reservation row.
const RESERVE_LINE: &str = reserve_line_sql!("", "");

/// The whole reservation of a one-line order in one statement (no transaction to open): the line
/// as in `RESERVE_LINE`, with the reservation (status `$8`, expiring at `$7`). Nothing is reserved
/// when the order has its reservation already: a replay takes no lock on the stock row (which a
/// concurrent move of that reservation may be waiting for while holding the reservation's row).
/// An order whose reservation is being made concurrently breaks the reservations' key, which
/// undoes the whole statement.
const RESERVE_ONE: &str = reserve_line_sql!(
    "\n    AND NOT EXISTS (SELECT 1 FROM reservations WHERE order_id = $4)",
    "r AS (
  INSERT INTO reservations (order_id, status, expires_at, created_at, updated_at) SELECT $4, $8, $7, $3, $3 FROM s
), "
);

/// Moves order `$1`'s reservation from status `$2` to `$3` (at `$4`) and returns its lines, by
/// product; none when it was not in `$2`.
const FINISH_RESERVATION: &str = "\
WITH moved AS (
  UPDATE reservations SET status = $3, updated_at = $4 WHERE order_id = $1 AND status = $2 RETURNING order_id
)
SELECT l.product_id, l.quantity FROM reservation_lines l JOIN moved m ON m.order_id = l.order_id
ORDER BY l.product_id";

/// The whole move of a one-line reservation in one statement (no transaction to open): order
/// `$1`'s reservation goes from status `$2` to `$3` (at `$4`) if it has exactly one line, and that
/// line's product changes by its quantity times `$5` on hand and times `$6` reserved, with its
/// ledger row (id `$7`, kind `$8`, reference `$9`). Returns the product; nothing when the
/// reservation was not in `$2` or has several lines. The reservation's row is written first (the
/// stock update reads from it), so a concurrent move of the same reservation waits for it and
/// then finds nothing to do. The line's stock row exists: reserving needed it, and none is ever
/// deleted.
const FINISH_ONE: &str = "\
WITH moved AS (
  UPDATE reservations SET status = $3, updated_at = $4
  WHERE order_id = $1 AND status = $2 AND (SELECT count(*) FROM reservation_lines c WHERE c.order_id = $1) = 1
  RETURNING order_id
), l AS (
  SELECT rl.product_id, rl.quantity FROM reservation_lines rl JOIN moved m ON m.order_id = rl.order_id
), s AS (
  UPDATE stock_levels st
  SET on_hand = st.on_hand + l.quantity * $5, reserved = st.reserved + l.quantity * $6, updated_at = $4
  FROM l WHERE st.product_id = l.product_id
  RETURNING st.product_id, st.on_hand, st.reserved, l.quantity
), m AS (
  INSERT INTO stock_movements (id, product_id, kind, on_hand_delta, reserved_delta, on_hand_after,
                               reserved_after, reason, actor_id, reference, created_at)
  SELECT $7, product_id, $8, quantity * $5, quantity * $6, on_hand, reserved, NULL, NULL, $9, $4 FROM s
)
SELECT product_id FROM s";

/// Changes product `$1`'s level by `$2` on hand and `$3` reserved (at `$4`) with its ledger row
/// (id `$5`, kind `$6`, reference `$7`), in one statement.
const MOVE_STOCK: &str = "\
WITH s AS (
  UPDATE stock_levels SET on_hand = on_hand + $2, reserved = reserved + $3, updated_at = $4
  WHERE product_id = $1 RETURNING on_hand, reserved
)
INSERT INTO stock_movements (id, product_id, kind, on_hand_delta, reserved_delta, on_hand_after,
                             reserved_after, reason, actor_id, reference, created_at)
SELECT $5, $1, $6, $2, $3, on_hand, reserved, NULL, NULL, $7, $4 FROM s";

#[derive(diesel::QueryableByName)]
struct LineProduct {
    #[diesel(sql_type = SqlUuid)]
    product_id: Uuid,
}

#[derive(diesel::QueryableByName)]
struct LevelAfter {
    #[diesel(sql_type = Int4)]
    on_hand: i32,
    #[diesel(sql_type = Int4)]
    reserved: i32,
    #[diesel(sql_type = Int4)]
    low_stock_threshold: i32,
}

#[derive(diesel::QueryableByName)]
struct LineOf {
    #[diesel(sql_type = SqlUuid)]
    product_id: Uuid,
    #[diesel(sql_type = Int4)]
    quantity: i32,
}

/// Failures inside a transaction that must roll it back.
enum TxError {
    Db(diesel::result::Error),
    NotFound(Uuid),
    BelowReserved(u32),
    TooMany,
    Insufficient { product_id: Uuid, requested: u32, available: u32 },
}

impl From<diesel::result::Error> for TxError {
    fn from(e: diesel::result::Error) -> Self {
        TxError::Db(e)
    }
}

pub struct PgStockRepository {
    pool: PgPool,
}

impl PgStockRepository {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

fn to_i32(v: u32) -> Result<i32, diesel::result::Error> {
    i32::try_from(v).map_err(|_| diesel::result::Error::RollbackTransaction)
}

/// Why `quantity` units of a product could not be reserved: no such product, or too few.
async fn shortfall(conn: &mut AsyncPgConnection, product_id: Uuid, quantity: u32) -> Result<TxError, TxError> {
    let level: Option<(i32, i32)> = stock_levels::table
        .find(product_id)
        .select((stock_levels::on_hand, stock_levels::reserved))
        .first(conn)
        .await
        .optional()?;
    Ok(match level {
        None => TxError::NotFound(product_id),
        Some((on_hand, reserved)) => {
            TxError::Insufficient { product_id, requested: quantity, available: count(on_hand - reserved) }
        }
    })
}

/// The low-stock threshold `quantity` units crossed, given the level after they were reserved.
fn crossing(product_id: Uuid, quantity: u32, after: &LevelAfter) -> Option<LowStockCrossing> {
    LowStockCrossing::crossed(
        ProductId::from_uuid(product_id),
        count(after.on_hand - after.reserved),
        quantity,
        count(after.low_stock_threshold),
    )
}

/// A one-line reservation (see `RESERVE_ONE`); `None` when the order had its reservation already.
async fn reserve_one(
    conn: &mut AsyncPgConnection,
    order_id: Uuid,
    (product_id, quantity): (Uuid, u32),
    expires_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<Option<Vec<LowStockCrossing>>, TxError> {
    let statement = Statement::new(RESERVE_ONE)
        .bind::<SqlUuid, _>(product_id)
        .bind::<Int4, _>(to_i32(quantity)?)
        .bind::<Timestamptz, _>(now)
        .bind::<SqlUuid, _>(order_id)
        .bind::<SqlUuid, _>(Uuid::now_v7())
        .bind::<Text, _>(format!("order:{order_id}"))
        .bind::<Timestamptz, _>(expires_at)
        .bind::<Text, _>(ReservationStatus::Active.as_str());
    // Outside a transaction: read to the statement's end, so that a reservation is only reported
    // once committed.
    let reserved = statement.load::<LevelAfter>(conn).await.and_then(first_row).optional();
    match reserved {
        Ok(Some(after)) => Ok(Some(crossing(product_id, quantity, &after).into_iter().collect())),
        Err(diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::UniqueViolation, _)) => Ok(None),
        Err(e) => Err(e.into()),
        Ok(None) => {
            // Too few, or none needed: a replay after the stock sold out finds its reservation.
            let exists: i64 = reservations::table.find(order_id).count().get_result(conn).await?;
            if exists > 0 {
                return Ok(None);
            }
            Err(shortfall(conn, product_id, quantity).await?)
        }
    }
}

/// Order `$1`'s RESERVE ledger rows (reference `$2`, written at the reservation's own time), with
/// the level each left and its product's threshold.
const RESERVED_BY: &str = "\
SELECT m.product_id, m.reserved_delta AS quantity, m.on_hand_after AS on_hand, m.reserved_after AS reserved,
       s.low_stock_threshold
FROM reservations r
JOIN reservation_lines rl ON rl.order_id = r.order_id
JOIN stock_movements m ON m.product_id = rl.product_id AND m.created_at = r.created_at
                      AND m.reference = $2 AND m.kind = 'RESERVE'
JOIN stock_levels s ON s.product_id = rl.product_id
WHERE r.order_id = $1";

#[derive(diesel::QueryableByName)]
struct ReservedBy {
    #[diesel(sql_type = SqlUuid)]
    product_id: Uuid,
    #[diesel(sql_type = Int4)]
    quantity: i32,
    #[diesel(embed)]
    after: LevelAfter,
}

/// The thresholds an order's reservation crossed when it was made, read back from its ledger
/// rows: a replay (the step that made it failed before it told anyone) reports them again.
async fn crossings_of(conn: &mut AsyncPgConnection, order: Uuid) -> Result<Vec<LowStockCrossing>, InfraError> {
    let rows: Vec<ReservedBy> = diesel::sql_query(RESERVED_BY)
        .bind::<SqlUuid, _>(order)
        .bind::<Text, _>(format!("order:{order}"))
        .load(conn)
        .await
        .map_err(infra_from_diesel)?;
    Ok(rows.iter().filter_map(|r| crossing(r.product_id, count(r.quantity), &r.after)).collect())
}

async fn load_lines(conn: &mut AsyncPgConnection, order: Uuid) -> Result<Vec<(Uuid, i32)>, diesel::result::Error> {
    reservation_lines::table
        .filter(reservation_lines::order_id.eq(order))
        .order(reservation_lines::product_id.asc())
        .select((reservation_lines::product_id, reservation_lines::quantity))
        .load(conn)
        .await
}

async fn load_reservation(conn: &mut AsyncPgConnection, order: Uuid) -> Result<Option<Reservation>, InfraError> {
    let head: Option<(String, DateTime<Utc>)> = reservations::table
        .find(order)
        .select((reservations::status, reservations::expires_at))
        .first(conn)
        .await
        .optional()
        .map_err(infra_from_diesel)?;
    let Some((status, expires_at)) = head else { return Ok(None) };
    let lines = load_lines(conn, order)
        .await
        .map_err(infra_from_diesel)?
        .into_iter()
        .map(|(product_id, quantity)| {
            Ok(ReservationLine {
                product_id: ProductId::from_uuid(product_id),
                quantity: Quantity::new(i64::from(quantity)).map_err(|_| InfraError::unexpected("corrupt line"))?,
            })
        })
        .collect::<Result<Vec<_>, InfraError>>()?;
    Ok(Some(Reservation {
        order_id: OrderId::from_uuid(order),
        status: ReservationStatus::parse(&status)
            .ok_or_else(|| InfraError::unexpected("corrupt reservation status"))?,
        lines,
        expires_at,
        crossed_low_stock: Vec::new(),
    }))
}

#[async_trait]
impl StockRepository for PgStockRepository {
    async fn level(&self, product: ProductId) -> Result<Option<StockLevel>, InfraError> {
        let mut conn = self.pool.get().await.map_err(infra_from_pool)?;
        let row: Option<LevelRow> = stock_levels::table
            .find(product.as_uuid())
            .select(LevelRow::as_select())
            .first(&mut conn)
            .await
            .optional()
            .map_err(infra_from_diesel)?;
        Ok(row.map(LevelRow::into_domain))
    }

    async fn adjust(
        &self,
        product: ProductId,
        adjustment: Adjustment,
        context: &MovementContext,
    ) -> Result<StockLevel, AdjustError> {
        let mut conn = self.pool.get().await.map_err(infra_from_pool)?;
        let id = product.as_uuid();
        let reason = context.reason.as_ref().map(|r| r.as_str().to_owned());
        let (actor, reference, at) = (context.actor.map(|a| a.as_uuid()), context.reference.clone(), context.at);
        let result = conn
            .transaction::<LevelRow, TxError, _>(async move |conn| {
                let current: Option<LevelRow> = stock_levels::table
                    .find(id)
                    .select(LevelRow::as_select())
                    .for_update()
                    .first(conn)
                    .await
                    .optional()?;
                let current = current.ok_or(TxError::NotFound(id))?;
                let next =
                    adjustment.apply(count(current.on_hand), count(current.reserved)).map_err(
                        |refusal| match refusal {
                            AdjustRefusal::BelowReserved => TxError::BelowReserved(count(current.reserved)),
                            AdjustRefusal::TooMany => TxError::TooMany,
                        },
                    )?;
                let next = to_i32(next)?;
                let updated: LevelRow = diesel::update(stock_levels::table.find(id))
                    .set((stock_levels::on_hand.eq(next), stock_levels::updated_at.eq(at)))
                    .returning(LevelRow::as_returning())
                    .get_result(conn)
                    .await?;
                record_movement(
                    conn,
                    &Movement {
                        product_id: id,
                        kind: adjustment.kind(),
                        on_hand_delta: next - current.on_hand,
                        reserved_delta: 0,
                        on_hand_after: next,
                        reserved_after: updated.reserved,
                        reason: reason.as_deref(),
                        actor_id: actor,
                        reference: reference.as_deref(),
                        at,
                    },
                )
                .await?;
                Ok(updated)
            })
            .await;
        match result {
            Ok(row) => Ok(row.into_domain()),
            Err(TxError::NotFound(_)) => Err(AdjustError::NotFound),
            Err(TxError::BelowReserved(reserved)) => Err(AdjustError::BelowReserved { reserved }),
            Err(TxError::TooMany) => Err(AdjustError::TooMany { max: StockLevel::MAX_ON_HAND }),
            Err(TxError::Db(e)) => Err(infra_from_diesel(e).into()),
            Err(TxError::Insufficient { .. }) => Err(InfraError::unexpected("unreachable insufficiency").into()),
        }
    }

    async fn low_stock(&self, page: &PageRequest) -> Result<Page<StockLevel>, InfraError> {
        let mut conn = self.pool.get().await.map_err(infra_from_pool)?;
        let mut query = stock_levels::table
            .inner_join(products::table)
            .filter(products::status.eq("ACTIVE"))
            .filter((stock_levels::on_hand - stock_levels::reserved).le(stock_levels::low_stock_threshold))
            .select(LevelRow::as_select())
            .into_boxed();
        if let Some(after) = page.after() {
            query = query.filter(stock_levels::product_id.gt(after.id()));
        }
        let rows: Vec<LevelRow> = query
            .order(stock_levels::product_id.asc())
            .limit(page.fetch_limit())
            .load(&mut conn)
            .await
            .map_err(infra_from_diesel)?;
        let items = rows.into_iter().map(LevelRow::into_domain).collect();
        Ok(Page::from_overfetch(items, page, |l: &StockLevel| Cursor::after_id(l.product_id.as_uuid())))
    }

    async fn reserve(
        &self,
        order: OrderId,
        lines: &[ReservationLine],
        expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Reservation, ReserveError> {
        let mut conn = self.pool.get().await.map_err(infra_from_pool)?;
        let order_id = order.as_uuid();
        let mut sorted: Vec<(Uuid, u32)> = lines.iter().map(|l| (l.product_id.as_uuid(), l.quantity.get())).collect();
        sorted.sort_unstable();
        let result = if let [line] = sorted.as_slice() {
            reserve_one(&mut conn, order_id, *line, expires_at, now).await
        } else {
            conn.transaction::<Option<Vec<LowStockCrossing>>, TxError, _>(async move |conn| {
                let created = diesel::insert_into(reservations::table)
                    .values((
                        reservations::order_id.eq(order_id),
                        reservations::status.eq(ReservationStatus::Active.as_str()),
                        reservations::expires_at.eq(expires_at),
                        reservations::created_at.eq(now),
                        reservations::updated_at.eq(now),
                    ))
                    .on_conflict_do_nothing()
                    .execute(conn)
                    .await?;
                if created == 0 {
                    return Ok(None); // this order already has its reservation
                }
                let mut crossed = Vec::new();
                let reference = format!("order:{order_id}");
                for (product_id, quantity) in &sorted {
                    let q = to_i32(*quantity)?;
                    // The conditional update is the guard against overselling; the line and
                    // its ledger row are written by the same statement, from what it returned.
                    let updated: Option<LevelAfter> = Statement::new(RESERVE_LINE)
                        .bind::<SqlUuid, _>(product_id)
                        .bind::<Int4, _>(q)
                        .bind::<Timestamptz, _>(now)
                        .bind::<SqlUuid, _>(order_id)
                        .bind::<SqlUuid, _>(Uuid::now_v7())
                        .bind::<Text, _>(&reference)
                        .get_result(conn)
                        .await
                        .optional()?;
                    let Some(after) = updated else {
                        return Err(shortfall(conn, *product_id, *quantity).await?);
                    };
                    crossed.extend(crossing(*product_id, *quantity, &after));
                }
                Ok(Some(crossed))
            })
            .await
        };
        match result {
            // Made now: it is what was asked for (no need to read it back).
            Ok(Some(crossed)) => Ok(Reservation {
                order_id: order,
                status: ReservationStatus::Active,
                lines: lines.to_vec(),
                expires_at,
                crossed_low_stock: crossed,
            }),
            Ok(None) => {
                let mut reservation = load_reservation(&mut conn, order_id)
                    .await?
                    .ok_or_else(|| InfraError::unexpected("reservation vanished"))?;
                reservation.crossed_low_stock = crossings_of(&mut conn, order_id).await?;
                Ok(reservation)
            }
            Err(TxError::NotFound(p)) => Err(ReserveError::UnknownProduct(ProductId::from_uuid(p))),
            Err(TxError::Insufficient { product_id, requested, available }) => {
                Err(ReserveError::Insufficient { product_id: ProductId::from_uuid(product_id), requested, available })
            }
            Err(TxError::Db(e)) => Err(infra_from_diesel(e).into()),
            Err(TxError::BelowReserved(_) | TxError::TooMany) => Err(InfraError::unexpected("unreachable").into()),
        }
    }

    async fn reservation(&self, order: OrderId) -> Result<Option<Reservation>, InfraError> {
        let mut conn = self.pool.get().await.map_err(infra_from_pool)?;
        load_reservation(&mut conn, order.as_uuid()).await
    }

    async fn finish(
        &self,
        order: OrderId,
        to: ReservationStatus,
        now: DateTime<Utc>,
    ) -> Result<Transition, InfraError> {
        let mut conn = self.pool.get().await.map_err(infra_from_pool)?;
        let order_id = order.as_uuid();
        // RETURNED comes from CONFIRMED; every other end from ACTIVE.
        let from =
            if to == ReservationStatus::Returned { ReservationStatus::Confirmed } else { ReservationStatus::Active };
        let (on_hand_sign, reserved_sign) = match to {
            ReservationStatus::Confirmed => (-1, -1),
            ReservationStatus::Returned => (1, 0),
            _ => (0, -1),
        };
        let one: Vec<LineProduct> = Statement::new(FINISH_ONE)
            .bind::<SqlUuid, _>(order_id)
            .bind::<Text, _>(from.as_str())
            .bind::<Text, _>(to.as_str())
            .bind::<Timestamptz, _>(now)
            .bind::<Int4, _>(on_hand_sign)
            .bind::<Int4, _>(reserved_sign)
            .bind::<SqlUuid, _>(Uuid::now_v7())
            .bind::<Text, _>(to.movement_kind())
            .bind::<Text, _>(format!("order:{order_id}"))
            .load(&mut conn)
            .await
            .map_err(infra_from_diesel)?;
        if !one.is_empty() {
            return Ok(Transition::Applied(one.into_iter().map(|l| ProductId::from_uuid(l.product_id)).collect()));
        }
        // Several lines, or nothing to move: one statement per line, in one transaction.
        conn.transaction::<Transition, diesel::result::Error, _>(async move |conn| {
            // The status moves and the lines come back in one statement (none: it had moved).
            let lines: Vec<LineOf> = Statement::new(FINISH_RESERVATION)
                .bind::<SqlUuid, _>(order_id)
                .bind::<Text, _>(from.as_str())
                .bind::<Text, _>(to.as_str())
                .bind::<Timestamptz, _>(now)
                .load(conn)
                .await?;
            if lines.is_empty() {
                let status: Option<String> =
                    reservations::table.find(order_id).select(reservations::status).first(conn).await.optional()?;
                return Ok(match status.as_deref().and_then(ReservationStatus::parse) {
                    Some(status) => Transition::AlreadyFinished(status),
                    None => Transition::NotFound,
                });
            }
            let reference = format!("order:{order_id}");
            let mut changed = Vec::new();
            for LineOf { product_id, quantity: q } in lines {
                changed.push(ProductId::from_uuid(product_id));
                let (on_hand_delta, reserved_delta) = (q * on_hand_sign, q * reserved_sign);
                let moved = Statement::new(MOVE_STOCK)
                    .bind::<SqlUuid, _>(product_id)
                    .bind::<Int4, _>(on_hand_delta)
                    .bind::<Int4, _>(reserved_delta)
                    .bind::<Timestamptz, _>(now)
                    .bind::<SqlUuid, _>(Uuid::now_v7())
                    .bind::<Text, _>(to.movement_kind())
                    .bind::<Text, _>(&reference)
                    .execute(conn)
                    .await?;
                if moved != 1 {
                    return Err(diesel::result::Error::NotFound); // no stock row: roll back
                }
            }
            Ok(Transition::Applied(changed))
        })
        .await
        .map_err(infra_from_diesel)
    }

    async fn expired(&self, now: DateTime<Utc>, limit: i64) -> Result<Vec<OrderId>, InfraError> {
        let mut conn = self.pool.get().await.map_err(infra_from_pool)?;
        let ids: Vec<Uuid> = reservations::table
            .filter(reservations::status.eq(ReservationStatus::Active.as_str()))
            .filter(reservations::expires_at.le(now))
            .order(reservations::expires_at.asc())
            .limit(limit)
            .select(reservations::order_id)
            .load(&mut conn)
            .await
            .map_err(infra_from_diesel)?;
        Ok(ids.into_iter().map(OrderId::from_uuid).collect())
    }

    async fn hold(&self, order: OrderId, until: DateTime<Utc>, now: DateTime<Utc>) -> Result<bool, InfraError> {
        let mut conn = self.pool.get().await.map_err(infra_from_pool)?;
        // Never shortened, and never revived once lapsed: the expiry sweep may be expiring it.
        let held = diesel::sql_query(
            "UPDATE reservations SET expires_at = GREATEST(expires_at, $2), updated_at = $3 \
             WHERE order_id = $1 AND status = $4 AND expires_at > $3",
        )
        .bind::<SqlUuid, _>(order.as_uuid())
        .bind::<Timestamptz, _>(until)
        .bind::<Timestamptz, _>(now)
        .bind::<Text, _>(ReservationStatus::Active.as_str())
        .execute(&mut conn)
        .await
        .map_err(infra_from_diesel)?;
        Ok(held == 1)
    }
}
