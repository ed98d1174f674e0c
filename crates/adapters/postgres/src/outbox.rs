//! The transactional outbox: stage jobs inside a transaction; publish them after commit.
//!
//! A use case's repository calls [`stage`] inside its own transaction, so a job exists exactly
//! when the rows that caused it were committed. After commit the writer publishes eagerly
//! ([`PgOutbox::publish`]); the worker's relay ([`PgOutbox::relay`]) publishes whatever a crash
//! left behind. Rows are locked with `FOR UPDATE SKIP LOCKED` (relays never wait on each other)
//! and deleted in the same transaction as the enqueue: the table holds only jobs still to publish.
//! The enqueue is idempotent on the job id, so a relay that dies after enqueueing and before
//! committing only causes a no-op enqueue next time.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use ecom_kernel::jobs::{JobId, JobQueue, NewJob, QueueName, WriteBarrier};
use ecom_kernel::InfraError;

use crate::barrier::Flush;
use crate::error::{infra_from_diesel, infra_from_pool};
use crate::schema::outbox;
use crate::sql::Statement;
use crate::{BatchPool, PgPool};

/// The INSERT that stages the jobs bound as `$1`…`$7` (by [`JobColumns::bind`], which binds them
/// first), once for each row of `$from` (`"u, "`: only if the statement's change `u` happened;
/// `""`: always), to run at `$run_at`, created at `$created_at`. A job id still waiting to be
/// published is left as it is.
macro_rules! stage_jobs_sql {
    ($from:literal, $run_at:literal, $created_at:literal) => {
        concat!(
            "INSERT INTO outbox (id, queue, kind, payload, schema_version, max_attempts, trace_id, run_at, created_at)\n",
            "  SELECT j.id, j.queue, j.kind, j.payload, j.schema_version, j.max_attempts, j.trace_id, ",
            $run_at,
            ", ",
            $created_at,
            "\n  FROM ",
            $from,
            "unnest($1::text[], $2::text[], $3::text[], $4::jsonb[], $5::int4[], $6::int4[], $7::text[])\n",
            "       AS j (id, queue, kind, payload, schema_version, max_attempts, trace_id)\n",
            "  ON CONFLICT DO NOTHING"
        )
    };
}
pub(crate) use stage_jobs_sql;

/// Stages the jobs to run at `$8` (now when NULL), created at `$9`.
const STAGE: &str = stage_jobs_sql!("", "$8", "$9");

/// Adds jobs to the outbox inside the caller's transaction (to run at `run_at`, or now), in one
/// statement. Staging an id that is already there does nothing.
pub async fn stage(
    conn: &mut AsyncPgConnection,
    jobs: &[NewJob],
    run_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<(), diesel::result::Error> {
    if jobs.is_empty() {
        return Ok(());
    }
    JobColumns::of(jobs)
        .bind(Statement::new(STAGE))
        .bind::<diesel::sql_types::Nullable<diesel::sql_types::Timestamptz>, _>(run_at)
        .bind::<diesel::sql_types::Timestamptz, _>(now)
        .execute(conn)
        .await
        .map(|_| ())
}

/// Jobs as columns, for a statement that stages them with `stage_jobs_sql!` (so a change and its
/// jobs take one round trip): bound as its first seven parameters, arrays of id, queue, kind,
/// payload, schema version, max attempts and trace id.
pub(crate) struct JobColumns {
    ids: Vec<String>,
    queues: Vec<String>,
    kinds: Vec<String>,
    payloads: Vec<serde_json::Value>,
    versions: Vec<i32>,
    attempts: Vec<i32>,
    traces: Vec<Option<String>>,
}

impl JobColumns {
    pub(crate) fn of(jobs: &[NewJob]) -> Self {
        Self {
            ids: jobs.iter().map(|j| j.id.as_str().to_owned()).collect(),
            queues: jobs.iter().map(|j| j.queue.as_str().to_owned()).collect(),
            kinds: jobs.iter().map(|j| j.kind.clone()).collect(),
            payloads: jobs.iter().map(|j| j.payload.clone()).collect(),
            versions: jobs.iter().map(|j| i32::from(j.schema_version)).collect(),
            attempts: jobs.iter().map(|j| i32::try_from(j.max_attempts).unwrap_or(i32::MAX)).collect(),
            traces: jobs.iter().map(|j| j.trace_id.clone()).collect(),
        }
    }

    /// Binds the seven arrays as the statement's first parameters (`$1`…`$7`).
    pub(crate) fn bind(self, statement: Statement<'_>) -> Statement<'_> {
        use diesel::sql_types::{Array, Int4, Jsonb, Nullable, Text};
        statement
            .bind::<Array<Text>, _>(self.ids)
            .bind::<Array<Text>, _>(self.queues)
            .bind::<Array<Text>, _>(self.kinds)
            .bind::<Array<Jsonb>, _>(self.payloads)
            .bind::<Array<Int4>, _>(self.versions)
            .bind::<Array<Int4>, _>(self.attempts)
            .bind::<Array<Nullable<Text>>, _>(self.traces)
    }
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = outbox, check_for_backend(diesel::pg::Pg))]
struct OutboxRow {
    id: String,
    queue: String,
    kind: String,
    payload: serde_json::Value,
    schema_version: i32,
    max_attempts: i32,
    trace_id: Option<String>,
    run_at: Option<DateTime<Utc>>,
}

fn queue_named(name: &str) -> Option<QueueName> {
    QueueName::ALL.into_iter().find(|q| q.as_str() == name)
}

/// Removes the rows `$1`.
pub(crate) const REMOVE_PUBLISHED: &str = "DELETE FROM outbox WHERE id = ANY($1)";

pub struct PgOutbox {
    pool: PgPool,
    /// For removing published rows (see [`PgOutbox::remove_published`]).
    batch: BatchPool,
    barrier: Option<Arc<dyn WriteBarrier>>,
}

impl PgOutbox {
    pub fn new(pool: PgPool, batch: BatchPool) -> Self {
        Self { pool, batch, barrier: None }
    }

    /// For a pool whose commits do not wait for the disk (the worker's): rows are published
    /// only once `barrier` found them on disk, so that no job is queued for a write a crash
    /// could still take back (a row is committed before it is read here, so before the flush).
    #[must_use]
    pub fn with_barrier(mut self, barrier: Arc<dyn WriteBarrier>) -> Self {
        self.barrier = Some(barrier);
        self
    }

    /// Stages jobs in a transaction of their own and publishes them right after the commit: for
    /// writers with no rows of their own to commit alongside.
    pub async fn submit(&self, queue: &dyn JobQueue, jobs: &[NewJob]) -> Result<(), InfraError> {
        let mut conn = self.pool.get().await.map_err(infra_from_pool)?;
        let staged = jobs.to_vec();
        conn.transaction::<(), diesel::result::Error, _>(async move |conn| {
            stage(conn, &staged, None, Utc::now()).await
        })
        .await
        .map_err(infra_from_diesel)?;
        let ids: Vec<JobId> = jobs.iter().map(|j| j.id.clone()).collect();
        // A failed publish is not an error: the relay publishes it later.
        if let Err(err) = self.publish(queue, &ids).await {
            tracing::warn!(error = %err, "eager publish failed; the outbox relay will publish");
        }
        Ok(())
    }

    /// Publishes these rows if they are still unpublished (the writer, right after its commit).
    pub async fn publish(&self, queue: &dyn JobQueue, ids: &[JobId]) -> Result<usize, InfraError> {
        let ids: Vec<String> = ids.iter().map(|id| id.as_str().to_owned()).collect();
        let limit = i64::try_from(ids.len()).unwrap_or(i64::MAX);
        self.publish_where(queue, Some(ids), limit, None).await
    }

    /// Publishes up to `limit` unpublished rows, oldest first (the worker's relay).
    pub async fn relay(&self, queue: &dyn JobQueue, limit: i64) -> Result<usize, InfraError> {
        self.publish_where(queue, None, limit, None).await
    }

    /// The relay for rows at least `min_age` old: younger ones are normally being published
    /// by their writer (which removes them a moment later, see [`OutboxRemovals`]).
    pub async fn relay_older_than(
        &self,
        queue: &dyn JobQueue,
        limit: i64,
        min_age: std::time::Duration,
    ) -> Result<usize, InfraError> {
        let before = Utc::now() - chrono::Duration::from_std(min_age).unwrap_or(chrono::Duration::zero());
        self.publish_where(queue, None, limit, Some(before)).await
    }

    /// Removes rows whose jobs were enqueued (by the writer). Returns how many were still there.
    /// A keyed batch on the [`BatchPool`]: a removal lost in a database crash leaves the row to
    /// the relay, which publishes it again under the same job id (a no-op for the queue).
    pub async fn remove_published(&self, ids: &[String]) -> Result<usize, InfraError> {
        if ids.is_empty() {
            return Ok(0);
        }
        let mut conn = self.batch.0.get().await.map_err(infra_from_pool)?;
        Statement::new(REMOVE_PUBLISHED)
            .bind::<diesel::sql_types::Array<diesel::sql_types::Text>, _>(ids)
            .execute(&mut conn)
            .await
            .map_err(infra_from_diesel)
    }

    /// Rows not yet published (for operators and the invariant checks).
    pub async fn unpublished(&self) -> Result<i64, InfraError> {
        let mut conn = self.pool.get().await.map_err(infra_from_pool)?;
        outbox::table.count().get_result(&mut conn).await.map_err(infra_from_diesel)
    }

    async fn publish_where(
        &self,
        queue: &dyn JobQueue,
        ids: Option<Vec<String>>,
        limit: i64,
        created_before: Option<DateTime<Utc>>,
    ) -> Result<usize, InfraError> {
        let flush = Flush::start(self.barrier.as_ref());
        let mut conn = self.pool.get().await.map_err(infra_from_pool)?;
        let result = conn
            .transaction::<usize, RelayError, _>(async move |conn| {
                // Only rows of queues this release knows: a newer release's rows (a queue of its
                // own, during a rolling deploy) are left for a relay that knows them, and never
                // fill the batch ahead of the rows behind them.
                let known: Vec<&str> = QueueName::ALL.iter().map(|q| q.as_str()).collect();
                // Locking clauses cannot be boxed: one query per shape.
                let rows: Vec<OutboxRow> = match ids {
                    Some(ids) => {
                        outbox::table
                            .filter(outbox::id.eq_any(ids))
                            .filter(outbox::queue.eq_any(known))
                            .select(OutboxRow::as_select())
                            .order(outbox::created_at.asc())
                            .limit(limit)
                            .for_update()
                            .skip_locked()
                            .load(conn)
                            .await?
                    }
                    None => {
                        outbox::table
                            .filter(outbox::created_at.le(created_before.unwrap_or_else(Utc::now)))
                            .filter(outbox::queue.eq_any(known))
                            .select(OutboxRow::as_select())
                            .order(outbox::created_at.asc())
                            .limit(limit)
                            .for_update()
                            .skip_locked()
                            .load(conn)
                            .await?
                    }
                };
                if !rows.is_empty() {
                    flush.on_disk("the outbox rows").await.map_err(RelayError::Infra)?;
                }
                let mut published = Vec::with_capacity(rows.len());
                for row in rows {
                    let Some(queue_name) = queue_named(&row.queue) else { continue };
                    let job = NewJob {
                        id: JobId::new(row.id.clone()),
                        queue: queue_name,
                        kind: row.kind,
                        payload: row.payload,
                        schema_version: u16::try_from(row.schema_version).unwrap_or(1),
                        max_attempts: u32::try_from(row.max_attempts).unwrap_or(1),
                        trace_id: row.trace_id,
                    };
                    match row.run_at {
                        Some(at) => queue.enqueue_at(job, at).await.map_err(RelayError::Infra)?,
                        None => queue.enqueue(job).await.map_err(RelayError::Infra)?,
                    };
                    published.push(row.id);
                }
                diesel::delete(outbox::table.filter(outbox::id.eq_any(&published))).execute(conn).await?;
                Ok(published.len())
            })
            .await;
        result.map_err(|e| match e {
            RelayError::Db(e) => infra_from_diesel(e),
            RelayError::Infra(e) => e,
        })
    }
}

enum RelayError {
    Db(diesel::result::Error),
    Infra(InfraError),
}

impl From<diesel::result::Error> for RelayError {
    fn from(e: diesel::result::Error) -> Self {
        RelayError::Db(e)
    }
}

/// How long the remover gathers removals before one DELETE; far below the age at which the
/// relay takes a row (the worker's relay waits 2 s), so a lingering row is never relayed.
pub const REMOVAL_LINGER: std::time::Duration = std::time::Duration::from_millis(50);

/// Most rows one DELETE removes.
const REMOVAL_BATCH: usize = 2000;

/// Removes eagerly published rows in batches, off the writer's path: one DELETE for many
/// commits. A removal lost (a crash, a full buffer) only means the relay enqueues that job again,
/// which does nothing.
///
/// Nothing waits for a removal, and the relay leaves rows alone until they are seconds old, so
/// the remover gathers removals for [`REMOVAL_LINGER`] before it deletes: on a busy system one
/// DELETE then takes the rows of many commits instead of one burst's.
#[derive(Clone)]
pub struct OutboxRemovals {
    tx: tokio::sync::mpsc::Sender<Vec<String>>,
}

impl OutboxRemovals {
    /// Starts the remover on the current tokio runtime.
    pub fn spawn(outbox: std::sync::Arc<PgOutbox>) -> Self {
        Self::spawn_with(move |ids| {
            let outbox = outbox.clone();
            async move {
                if let Err(err) = outbox.remove_published(&ids).await {
                    tracing::warn!(error = %err, rows = ids.len(), "published outbox rows not removed; the relay will");
                }
            }
        })
    }

    /// The remover's batching, with `remove` deleting one batch.
    fn spawn_with<F, Fut>(remove: F) -> Self
    where
        F: Fn(Vec<String>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send,
    {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<String>>(4096);
        tokio::spawn(async move {
            while let Some(mut ids) = rx.recv().await {
                // Each message holds at least one row: a full batch waiting already goes at once.
                if ids.len() + rx.len() < REMOVAL_BATCH {
                    tokio::time::sleep(REMOVAL_LINGER).await;
                }
                while ids.len() < REMOVAL_BATCH {
                    match rx.try_recv() {
                        Ok(more) => ids.extend(more),
                        Err(_) => break,
                    }
                }
                remove(ids).await;
            }
        });
        Self { tx }
    }

    /// Queues published rows to be removed; never waits.
    pub fn remove(&self, ids: Vec<String>) {
        if !ids.is_empty() && self.tx.try_send(ids).is_err() {
            tracing::debug!("outbox remover busy; the relay will remove these rows");
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use super::*;

    fn ids(range: std::ops::Range<u32>) -> Vec<String> {
        range.map(|i| i.to_string()).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn removals_within_the_linger_share_one_delete_and_later_ones_wait_for_the_next() {
        let batches = Arc::new(Mutex::new(Vec::<Vec<String>>::new()));
        let seen = batches.clone();
        let removals = OutboxRemovals::spawn_with(move |ids| {
            seen.lock().unwrap().push(ids);
            async {}
        });
        // Three commits' rows, spread over most of the linger.
        let step = REMOVAL_LINGER / 4;
        removals.remove(ids(0..2));
        tokio::time::sleep(step).await;
        removals.remove(ids(2..3));
        tokio::time::sleep(step * 2).await;
        removals.remove(ids(3..5));
        assert!(batches.lock().unwrap().is_empty(), "nothing deleted before the linger ends");
        tokio::time::sleep(step * 2).await;
        assert_eq!(*batches.lock().unwrap(), vec![ids(0..5)], "one DELETE for the three");

        // Rows queued after that wait for a batch of their own.
        removals.remove(ids(5..6));
        tokio::time::sleep(REMOVAL_LINGER + Duration::from_millis(1)).await;
        assert_eq!(*batches.lock().unwrap(), vec![ids(0..5), ids(5..6)]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_batch_is_deleted_without_waiting_for_the_linger() {
        let batches = Arc::new(Mutex::new(Vec::new()));
        let seen = batches.clone();
        let removals = OutboxRemovals::spawn_with(move |ids| {
            seen.lock().unwrap().push((ids.len(), tokio::time::Instant::now()));
            async {}
        });
        let start = tokio::time::Instant::now();
        removals.remove(ids(0..REMOVAL_BATCH as u32));
        tokio::time::sleep(REMOVAL_LINGER * 2).await;
        assert_eq!(*batches.lock().unwrap(), vec![(REMOVAL_BATCH, start)]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_delete_takes_at_most_a_batch_and_the_rest_follows() {
        let batches = Arc::new(Mutex::new(Vec::<usize>::new()));
        let seen = batches.clone();
        let removals = OutboxRemovals::spawn_with(move |ids| {
            seen.lock().unwrap().push(ids.len());
            async {}
        });
        for chunk in 0..3 {
            removals.remove(ids(chunk * 1000..(chunk + 1) * 1000));
        }
        tokio::time::sleep(REMOVAL_LINGER * 3).await;
        assert_eq!(*batches.lock().unwrap(), vec![REMOVAL_BATCH, 1000]);
    }
}
