//! Notifications, one row per recipient and event key, and the admins they go to.
//!
//! Ids are UUID v7, so `id` order is creation order: lists page on the id alone. Status only
//! moves forward (PENDING → SENT → DELIVERED → READ): every update names the states it moves from,
//! "not delivered yet" and "unread" by their empty time columns (`delivered_at`, `read_at`; a
//! constraint keeps them in step with the status), so that no index covers `status`, `sent_at` or
//! `delivered_at`: PENDING → SENT and → DELIVERED, every notification's writes, are HOT updates.

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use ecom_kernel::{Cursor, CustomerId, InfraError, Page, PageRequest};
use ecom_notifications::model::{Notification, NotificationId, NotificationStatus, NotificationType};
use ecom_notifications::ports::{NotificationRepository, Recipients};
use uuid::Uuid;

use crate::error::{infra_from_diesel, infra_from_pool};
use crate::group::Grouped;
use crate::schema::{customers, notifications};
use crate::sql::Statement;
use crate::{BatchPool, PgPool};

/// The flow's three writes (save, read what is pending, mark sent) and the acknowledgements of
/// delivery run under load for every notification at once: each goes through a group commit (see
/// `group`). Saves use the ordinary pool; the other three are keyed batches on the
/// [`BatchPool`] (cached plans that never scan the table; commits that do not wait for the
/// disk, since a lost SENT mark or acknowledgement only sends a notification again).
pub struct PgNotificationRepository {
    pool: PgPool,
    saves: Grouped<Vec<Notification>, ()>,
    pendings: Grouped<String, Vec<Notification>>,
    sents: Grouped<String, u64>,
    deliveries: Grouped<(CustomerId, NotificationId), bool>,
}

/// Most calls one grouped statement serves.
const GROUP: usize = 64;

/// How long the SENT marks gather calls: only the flow's last job waits on them, so a few
/// milliseconds buy one statement for many. (Acknowledgements do not linger: the session that
/// sent one waits for it before its next frame.)
const MARK_LINGER: std::time::Duration = std::time::Duration::from_millis(5);

impl PgNotificationRepository {
    pub fn new(pool: PgPool, batch: BatchPool) -> Self {
        let (a, b, c, d) = (pool.clone(), batch.0.clone(), batch.0.clone(), batch.0);
        Self {
            pool,
            saves: Grouped::new(GROUP, move |batch| save_all(a.clone(), batch)),
            pendings: Grouped::new(GROUP, move |keys| pending_all(b.clone(), keys)),
            sents: Grouped::new(GROUP, move |keys| mark_all_sent(c.clone(), keys)).lingering(MARK_LINGER),
            deliveries: Grouped::new(GROUP, move |acks| mark_all_delivered(d.clone(), acks)),
        }
    }
}

/// Inserts every notification of every call (a second insert of one changes nothing).
async fn save_all(pool: PgPool, calls: Vec<Vec<Notification>>) -> Result<Vec<()>, InfraError> {
    let rows: Vec<_> = calls
        .iter()
        .flatten()
        .map(|n| {
            (
                notifications::id.eq(n.id.as_uuid()),
                notifications::dedupe_key.eq(&n.key),
                notifications::customer_id.eq(n.customer_id.as_uuid()),
                notifications::kind.eq(n.kind.as_str()),
                notifications::title.eq(&n.title),
                notifications::body.eq(&n.body),
                notifications::data.eq(&n.data),
                notifications::status.eq(n.status.as_str()),
                notifications::created_at.eq(n.created_at),
                notifications::read_at.eq(n.read_at),
            )
        })
        .collect();
    let mut conn = pool.get().await.map_err(infra_from_pool)?;
    diesel::insert_into(notifications::table)
        .values(rows)
        .on_conflict((notifications::dedupe_key, notifications::customer_id))
        .do_nothing()
        .execute(&mut conn)
        .await
        .map_err(infra_from_diesel)?;
    Ok(vec![(); calls.len()])
}

/// The PENDING notifications under the keys `$1`, in no order (an `ORDER BY id` would let a
/// plan walk the whole primary key for its order).
pub(crate) const PENDING: &str = "\
SELECT id, dedupe_key, customer_id, kind, title, body, data, status, created_at, read_at
FROM notifications WHERE dedupe_key = ANY($1) AND status = 'PENDING'";

/// What is still PENDING under each key.
async fn pending_all(pool: PgPool, keys: Vec<String>) -> Result<Vec<Vec<Notification>>, InfraError> {
    let mut conn = pool.get().await.map_err(infra_from_pool)?;
    let mut rows: Vec<Row> = Statement::new(PENDING)
        .bind::<diesel::sql_types::Array<diesel::sql_types::Text>, _>(&keys)
        .load(&mut conn)
        .await
        .map_err(infra_from_diesel)?;
    // Each key's notifications in creation (id) order.
    rows.sort_unstable_by_key(|row| row.id);
    let mut by_key: HashMap<String, Vec<Notification>> = HashMap::new();
    for row in rows {
        let notification = row.into_domain()?;
        by_key.entry(notification.key.clone()).or_default().push(notification);
    }
    Ok(keys.iter().map(|k| by_key.get(k).cloned().unwrap_or_default()).collect())
}

#[derive(diesel::QueryableByName)]
struct Key {
    #[diesel(sql_type = diesel::sql_types::Text)]
    dedupe_key: String,
}

/// PENDING → SENT under each key; how many moved per key.
async fn mark_all_sent(pool: PgPool, keys: Vec<String>) -> Result<Vec<u64>, InfraError> {
    let mut conn = pool.get().await.map_err(infra_from_pool)?;
    let moved: Vec<Key> = Statement::new(MARK_SENT)
        .bind::<diesel::sql_types::Timestamptz, _>(Utc::now())
        .bind::<diesel::sql_types::Array<diesel::sql_types::Text>, _>(&keys)
        .load(&mut conn)
        .await
        .map_err(infra_from_diesel)?;
    let mut counts: HashMap<&str, u64> = HashMap::new();
    for Key { dedupe_key } in &moved {
        *counts.entry(dedupe_key.as_str()).or_default() += 1;
    }
    Ok(keys.iter().map(|k| counts.get(k.as_str()).copied().unwrap_or(0)).collect())
}

/// Marks each notification `$1[i]` of customer `$2[i]` DELIVERED at `$3` unless it was delivered
/// or read already; returns those it moved, with their customers. Like every statement here that
/// changes several notifications, it locks them in id order first, so two of them can never
/// wait for each other.
///
/// Written so that any plan of it finds its rows by key, even one cached while the table was
/// nearly empty (see `connect_batch`): the rows are found by id (`= ANY`, in the primary key's
/// order), matched to their pairs by a subquery per row (as a join, a plan could walk a whole
/// index to meet the pairs), and updated by id and customer (so that an index led by either is
/// searched, not walked); "not delivered, not read" is one `coalesce`, so that the partial index
/// of unread notifications is never a candidate.
pub(crate) const MARK_DELIVERED: &str = "\
WITH target AS (
  SELECT n.id FROM notifications n
  WHERE n.id = ANY($1::uuid[]) AND coalesce(n.delivered_at, n.read_at) IS NULL
    AND (SELECT count(*) FROM unnest($1::uuid[], $2::uuid[]) AS a (id, customer_id)
         WHERE a.id = n.id AND a.customer_id = n.customer_id) > 0
  ORDER BY n.id FOR UPDATE OF n
)
UPDATE notifications n SET status = 'DELIVERED', delivered_at = $3
WHERE n.id = ANY (ARRAY(SELECT id FROM target)) AND n.customer_id = ANY($2::uuid[])
  AND coalesce(n.delivered_at, n.read_at) IS NULL
RETURNING n.id, n.customer_id";

/// PENDING → SENT at `$1` for every notification under the keys `$2`, locked in id order. As in
/// [`MARK_DELIVERED`], the rows are found by key (their ids first, then locked by id in the
/// primary key's order) and updated by id and customer.
pub(crate) const MARK_SENT: &str = "\
WITH target AS (
  SELECT id, customer_id FROM notifications
  WHERE id = ANY (ARRAY(SELECT id FROM notifications WHERE dedupe_key = ANY($2) AND status = 'PENDING'))
    AND status = 'PENDING'
  ORDER BY id FOR UPDATE
)
UPDATE notifications n SET status = 'SENT', sent_at = $1
WHERE n.id = ANY (ARRAY(SELECT id FROM target)) AND n.customer_id = ANY (ARRAY(SELECT customer_id FROM target))
  AND n.status = 'PENDING'
RETURNING n.dedupe_key";

/// READ at `$2` (and delivered, if it was not) for every unread notification of customer `$1`,
/// locked in id order.
const MARK_ALL_READ: &str = "\
WITH target AS (
  SELECT id FROM notifications WHERE customer_id = $1 AND read_at IS NULL ORDER BY id FOR UPDATE
)
UPDATE notifications n SET status = 'READ', read_at = $2, delivered_at = coalesce(n.delivered_at, now())
FROM target t
WHERE n.id = t.id AND n.read_at IS NULL";

#[derive(diesel::QueryableByName)]
struct Moved {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    id: Uuid,
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    customer_id: Uuid,
}

/// DELIVERED for every acknowledgement; whether each notification is its customer's (moved now,
/// or delivered or read before: read again, only for those).
async fn mark_all_delivered(pool: PgPool, acks: Vec<(CustomerId, NotificationId)>) -> Result<Vec<bool>, InfraError> {
    use diesel::sql_types::{Array, Timestamptz, Uuid as SqlUuid};
    let ids: Vec<Uuid> = acks.iter().map(|(_, id)| id.as_uuid()).collect();
    let customers: Vec<Uuid> = acks.iter().map(|(customer, _)| customer.as_uuid()).collect();
    let mut conn = pool.get().await.map_err(infra_from_pool)?;
    let moved: Vec<Moved> = Statement::new(MARK_DELIVERED)
        .bind::<Array<SqlUuid>, _>(&ids)
        .bind::<Array<SqlUuid>, _>(&customers)
        .bind::<Timestamptz, _>(Utc::now())
        .load(&mut conn)
        .await
        .map_err(infra_from_diesel)?;
    let mut mine: HashSet<(Uuid, Uuid)> = moved.into_iter().map(|m| (m.id, m.customer_id)).collect();
    // Those that moved nothing (delivered or read before, or someone else's): one read for all.
    let unmoved: Vec<Uuid> =
        ids.iter().zip(&customers).filter(|&(id, c)| !mine.contains(&(*id, *c))).map(|(id, _)| *id).collect();
    if !unmoved.is_empty() {
        let owners: Vec<(Uuid, Uuid)> = notifications::table
            .filter(notifications::id.eq_any(&unmoved))
            .select((notifications::id, notifications::customer_id))
            .load(&mut conn)
            .await
            .map_err(infra_from_diesel)?;
        mine.extend(owners);
    }
    Ok(ids.into_iter().zip(customers).map(|pair| mine.contains(&pair)).collect())
}

#[derive(Queryable, Selectable, QueryableByName)]
#[diesel(table_name = notifications, check_for_backend(diesel::pg::Pg))]
struct Row {
    id: Uuid,
    dedupe_key: String,
    customer_id: Uuid,
    kind: String,
    title: String,
    body: String,
    data: serde_json::Value,
    status: String,
    created_at: DateTime<Utc>,
    read_at: Option<DateTime<Utc>>,
}

impl Row {
    fn into_domain(self) -> Result<Notification, InfraError> {
        let corrupt = |what: &str| InfraError::unexpected(format!("corrupt notification row {}: {what}", self.id));
        Ok(Notification {
            id: NotificationId::from_uuid(self.id),
            kind: NotificationType::parse(&self.kind).ok_or_else(|| corrupt("kind"))?,
            status: NotificationStatus::parse(&self.status).ok_or_else(|| corrupt("status"))?,
            key: self.dedupe_key,
            customer_id: CustomerId::from_uuid(self.customer_id),
            title: self.title,
            body: self.body,
            data: self.data,
            created_at: self.created_at,
            read_at: self.read_at,
        })
    }
}

fn domain(rows: Vec<Row>) -> Result<Vec<Notification>, InfraError> {
    rows.into_iter().map(Row::into_domain).collect()
}

type Timestamp = diesel::sql_types::Nullable<diesel::sql_types::Timestamptz>;

/// The changes that mark a notification read.
type MarkRead = (
    diesel::dsl::Eq<notifications::status, &'static str>,
    diesel::dsl::Eq<notifications::read_at, DateTime<Utc>>,
    diesel::dsl::Eq<notifications::delivered_at, diesel::expression::SqlLiteral<Timestamp>>,
);

/// READ at `at`; read implies delivered (kept if it was already).
fn read_at(at: DateTime<Utc>) -> MarkRead {
    (
        notifications::status.eq(NotificationStatus::Read.as_str()),
        notifications::read_at.eq(at),
        notifications::delivered_at.eq(diesel::dsl::sql::<Timestamp>("coalesce(delivered_at, now())")),
    )
}

#[async_trait]
impl NotificationRepository for PgNotificationRepository {
    async fn save(&self, batch: &[Notification]) -> Result<(), InfraError> {
        self.saves.call(batch.to_vec()).await
    }

    async fn pending(&self, key: &str) -> Result<Vec<Notification>, InfraError> {
        self.pendings.call(key.to_owned()).await
    }

    async fn mark_sent(&self, key: &str) -> Result<u64, InfraError> {
        self.sents.call(key.to_owned()).await
    }

    async fn undelivered(
        &self,
        customer: CustomerId,
        after: Option<NotificationId>,
        limit: i64,
    ) -> Result<Vec<Notification>, InfraError> {
        let mut conn = self.pool.get().await.map_err(infra_from_pool)?;
        let after = after.map_or(uuid::Uuid::nil(), |id| id.as_uuid());
        let rows = notifications::table
            .filter(notifications::customer_id.eq(customer.as_uuid()))
            .filter(notifications::id.gt(after))
            // The same rows as status PENDING or SENT; unread too, so `notifications_unread` serves.
            .filter(notifications::delivered_at.is_null().and(notifications::read_at.is_null()))
            .order(notifications::id.asc())
            .limit(limit)
            .select(Row::as_select())
            .load(&mut conn)
            .await
            .map_err(infra_from_diesel)?;
        domain(rows)
    }

    async fn mark_delivered(&self, customer: CustomerId, id: NotificationId) -> Result<bool, InfraError> {
        self.deliveries.call((customer, id)).await
    }

    async fn mark_read(&self, customer: CustomerId, id: NotificationId, at: DateTime<Utc>) -> Result<bool, InfraError> {
        let mut conn = self.pool.get().await.map_err(infra_from_pool)?;
        let mine = notifications::table.find(id.as_uuid()).filter(notifications::customer_id.eq(customer.as_uuid()));
        let moved = diesel::update(mine.filter(notifications::read_at.is_null()))
            .set(read_at(at))
            .execute(&mut conn)
            .await
            .map_err(infra_from_diesel)?;
        if moved > 0 {
            return Ok(true);
        }
        let exists: i64 = mine.count().get_result(&mut conn).await.map_err(infra_from_diesel)?;
        Ok(exists > 0)
    }

    async fn mark_all_read(&self, customer: CustomerId, at: DateTime<Utc>) -> Result<u64, InfraError> {
        let mut conn = self.pool.get().await.map_err(infra_from_pool)?;
        let n = Statement::new(MARK_ALL_READ)
            .bind::<diesel::sql_types::Uuid, _>(customer.as_uuid())
            .bind::<diesel::sql_types::Timestamptz, _>(at)
            .execute(&mut conn)
            .await
            .map_err(infra_from_diesel)?;
        Ok(n as u64)
    }

    async fn list(
        &self,
        customer: CustomerId,
        unread_only: bool,
        page: &PageRequest,
    ) -> Result<Page<Notification>, InfraError> {
        let mut query = notifications::table
            .filter(notifications::customer_id.eq(customer.as_uuid()))
            .select(Row::as_select())
            .into_boxed();
        if unread_only {
            // What `notifications_unread` covers (the same rows as status other than READ).
            query = query.filter(notifications::read_at.is_null());
        }
        if let Some(after) = page.after() {
            query = query.filter(notifications::id.lt(after.id()));
        }
        let mut conn = self.pool.get().await.map_err(infra_from_pool)?;
        let rows: Vec<Row> = query
            .order(notifications::id.desc())
            .limit(page.fetch_limit())
            .load(&mut conn)
            .await
            .map_err(infra_from_diesel)?;
        let page = Page::from_overfetch(rows, page, |r| Cursor::after_id(r.id));
        Ok(Page { items: domain(page.items)?, next: page.next })
    }
}

/// The admin accounts, read from identity's table.
pub struct PgAdminRecipients {
    pool: PgPool,
}

impl PgAdminRecipients {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

#[async_trait]
impl Recipients for PgAdminRecipients {
    async fn admins(&self) -> Result<Vec<CustomerId>, InfraError> {
        let mut conn = self.pool.get().await.map_err(infra_from_pool)?;
        let ids: Vec<Uuid> = customers::table
            .filter(customers::role.eq("ADMIN"))
            .order(customers::id.asc())
            .select(customers::id)
            .load(&mut conn)
            .await
            .map_err(infra_from_diesel)?;
        Ok(ids.into_iter().map(CustomerId::from_uuid).collect())
    }
}
