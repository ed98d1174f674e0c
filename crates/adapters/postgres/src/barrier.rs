//! The worker's durability barrier.
//!
//! The worker's sessions commit without waiting for the disk ([`connect_deferring_flush`]): most
//! of a checkout's commits are the worker's, and waiting for the disk on each was the largest
//! single cost left (a disk flush costs far more CPU than the transaction it ends, here). Before
//! a job counts as done, [`PgWriteBarrier::flush`] makes sure the log is on disk up to where it
//! ended when the flush was asked for. PostgreSQL writes its log in order, so the job's commits,
//! made before, are on disk then: as durable as if each had waited.
//!
//! A flush reads, on a session of its own, where the log ends and how far it is on disk. The
//! commits of other sessions that wait for the disk (the api's, one per checkout) usually bring
//! it there within a few milliseconds; a flush gives them [`FLUSH_WAIT`], then commits a change
//! of its process's row, waiting for the disk, which brings it there at once. Concurrent flushes
//! share those statements. The guarantee is the local disk's: with synchronous standbys, a
//! deployment that needs a job's writes on a standby before it counts as done sets
//! `WORKER_DEFERRED_FLUSH=false`.
//!
//! What a crash could still lose is caught by the epoch. PostgreSQL restarts every session when
//! it restarts, after a crash of its own or of any of its processes, losing the commits that
//! had not reached the disk; the barrier's session is one of those sessions. The epoch counts
//! the barrier's sessions: a job reads it before it starts, and its flush answers `true` only
//! when it ran on the same session, which was then alive throughout the job. Any other answer
//! means the job's writes may be gone, and the job runs again (every job is idempotent). A
//! session that fails or stops answering is dropped, so a flush never waits longer than the
//! statement timeout.
//!
//! The barrier's session must be a session of the server (a direct connection, or a pooler in
//! session mode): behind a pooler in transaction mode its statements could run on other
//! server sessions, and the epoch would not see a restart.
//!
//! [`connect_deferring_flush`]: crate::connect_deferring_flush

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use ecom_kernel::jobs::WriteBarrier;
use ecom_kernel::InfraError;
use tokio::sync::Mutex;
use uuid::Uuid;

use crate::error::infra_from_diesel;
use crate::group::Grouped;
use crate::sql::{first_row, Statement};
use crate::PgSettings;

/// One row per process; see the migration `durability_barriers`.
const MARK: &str = "INSERT INTO durability_barriers (process_id, application_name, flushes, started_at, flushed_at) \
     VALUES ($1, $2, 1, now(), now()) \
     ON CONFLICT (process_id) DO UPDATE SET flushes = durability_barriers.flushes + 1, flushed_at = now()";

/// Where the log ends and how far it is on disk, in bytes.
const LOG_POSITIONS: &str = "SELECT (pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::BIGINT AS inserted, \
     (pg_current_wal_flush_lsn() - '0/0'::pg_lsn)::BIGINT AS flushed";

#[derive(diesel::QueryableByName)]
struct LogPositions {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    inserted: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    flushed: i64,
}

/// How long a flush waits for other commits to bring the log to disk before it commits itself.
const FLUSH_WAIT: Duration = Duration::from_millis(2);

/// Rows of processes gone for this long are removed when a barrier connects.
const FORGET_AFTER: &str = "1 day";

/// Most flushes one commit answers.
const MAX_GROUP: usize = 10_000;

pub struct PgWriteBarrier {
    session: Arc<Session>,
    group: Grouped<u64, bool>,
}

struct Session {
    url: String,
    setup: String,
    application_name: String,
    connect_timeout: Duration,
    /// Longest a flush may take before its session counts as lost.
    flush_timeout: Duration,
    process_id: Uuid,
    connection: Mutex<Option<AsyncPgConnection>>,
    /// How many sessions were opened; the epoch.
    opened: AtomicU64,
    /// Set by [`PgWriteBarrier::close`]: no session opens again.
    closed: AtomicBool,
}

impl std::fmt::Debug for PgWriteBarrier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgWriteBarrier")
            .field("process_id", &self.session.process_id)
            .field("epoch", &AtomicU64::load(&self.session.opened, Ordering::SeqCst))
            .finish_non_exhaustive()
    }
}

impl PgWriteBarrier {
    /// The session opens on first use, or with [`PgWriteBarrier::connect`].
    pub fn new(settings: &PgSettings) -> Self {
        let application_name: String =
            format!("{}-barrier", settings.application_name).chars().filter(|c| *c != '\'').take(64).collect();
        let session = Arc::new(Session {
            url: settings.url.clone(),
            // Its commit waits for the local disk (as the check of the log's position does),
            // whatever the server's default says, and not for standbys.
            setup: format!(
                "SET application_name = '{application_name}'; SET statement_timeout = {}; SET TIME ZONE 'UTC'; \
                 SET synchronous_commit = local;",
                settings.statement_timeout.as_millis()
            ),
            application_name,
            connect_timeout: settings.acquire_timeout,
            flush_timeout: settings.statement_timeout + FLUSH_WAIT,
            process_id: Uuid::now_v7(),
            connection: Mutex::new(None),
            opened: AtomicU64::new(0),
            closed: AtomicBool::new(false),
        });
        let batch = session.clone();
        let group = Grouped::new(MAX_GROUP, move |since: Vec<u64>| {
            let session = batch.clone();
            async move { Ok(session.flush_all(&since).await) }
        });
        Self { session, group }
    }

    /// Opens the session now (at start-up, so that the first jobs find an epoch to keep).
    pub async fn connect(&self) -> Result<(), InfraError> {
        let mut connection = self.session.connection.lock().await;
        if connection.is_none() {
            *connection = Some(self.session.open().await?);
        }
        Ok(())
    }

    /// Removes this process's row and closes the session (at shutdown); later flushes answer
    /// `false`.
    pub async fn close(&self) {
        self.session.closed.store(true, Ordering::SeqCst);
        let mut connection = self.session.connection.lock().await;
        if let Some(mut conn) = connection.take() {
            let removed = Statement::new("DELETE FROM durability_barriers WHERE process_id = $1")
                .bind::<diesel::sql_types::Uuid, _>(self.session.process_id)
                .execute(&mut conn)
                .await;
            if let Err(err) = removed {
                tracing::debug!(error = %err, "durability barrier row not removed; it expires");
            }
        }
    }
}

impl Session {
    async fn open(&self) -> Result<AsyncPgConnection, InfraError> {
        if AtomicBool::load(&self.closed, Ordering::SeqCst) {
            return Err(InfraError::unavailable("the durability barrier is closed"));
        }
        let opening = async {
            let mut conn = AsyncPgConnection::establish(&self.url)
                .await
                .map_err(|e| InfraError::unavailable("cannot open the durability barrier's session").with_source(e))?;
            conn.batch_execute(&self.setup).await.map_err(infra_from_diesel)?;
            conn.batch_execute(&format!(
                "DELETE FROM durability_barriers WHERE flushed_at < now() - interval '{FORGET_AFTER}'"
            ))
            .await
            .map_err(infra_from_diesel)?;
            Ok::<_, InfraError>(conn)
        };
        let conn = tokio::time::timeout(self.connect_timeout, opening)
            .await
            .map_err(|_| InfraError::unavailable("opening the durability barrier's session timed out"))??;
        self.opened.fetch_add(1, Ordering::SeqCst);
        Ok(conn)
    }

    /// One commit for every flush in `since`: each answers whether its epoch is the session's.
    /// A session that fails is dropped (the next flush opens another, a new epoch); its
    /// flushes answer `false`.
    async fn flush_all(&self, since: &[u64]) -> Vec<bool> {
        let mut connection = self.connection.lock().await;
        let conn = match connection.as_mut() {
            Some(conn) => conn,
            None => match self.open().await {
                Ok(conn) => connection.insert(conn),
                Err(err) => {
                    tracing::warn!(error = %err, "durability barrier unavailable; the jobs run again");
                    return vec![false; since.len()];
                }
            },
        };
        let epoch = AtomicU64::load(&self.opened, Ordering::SeqCst);
        // A session that stopped answering (a half-open connection) is dropped like a failed one.
        let failure = match tokio::time::timeout(self.flush_timeout, self.flushed(conn)).await {
            Ok(Ok(())) => return since.iter().map(|s| *s == epoch).collect(),
            Ok(Err(err)) => err.to_string(),
            Err(_) => "timed out".to_owned(),
        };
        tracing::warn!(error = %failure, "durability barrier failed; the jobs run again");
        *connection = None;
        vec![false; since.len()]
    }

    /// Returns once the log is on disk up to where it ends now. Other sessions' commits that
    /// wait for the disk (the api's) usually bring it there within a few milliseconds; when none
    /// did, one commit of this session's row does.
    async fn flushed(&self, conn: &mut AsyncPgConnection) -> diesel::QueryResult<()> {
        let target = Statement::new(LOG_POSITIONS).load::<LogPositions>(conn).await.and_then(first_row)?;
        if target.flushed >= target.inserted {
            return Ok(());
        }
        tokio::time::sleep(FLUSH_WAIT).await;
        let now = Statement::new(LOG_POSITIONS).load::<LogPositions>(conn).await.and_then(first_row)?;
        if now.flushed >= target.inserted {
            return Ok(());
        }
        Statement::new(MARK)
            .bind::<diesel::sql_types::Uuid, _>(self.process_id)
            .bind::<diesel::sql_types::Text, _>(self.application_name.clone())
            .execute(conn)
            .await
            .map(|_| ())
    }
}

#[async_trait]
impl WriteBarrier for PgWriteBarrier {
    fn epoch(&self) -> u64 {
        AtomicU64::load(&self.session.opened, Ordering::SeqCst)
    }

    async fn flush(&self, since: u64) -> Result<bool, InfraError> {
        self.group.call(since).await
    }
}

/// The writes of one call through a pool whose commits do not wait for the disk, when something
/// outside the database acts on them next: [`Flush::start`] before them, [`Flush::on_disk`]
/// after them (see `PgPaymentRepository::with_barrier`, `PgOutbox::with_barrier`).
pub(crate) struct Flush(Option<(u64, Arc<dyn WriteBarrier>)>);

impl Flush {
    /// Reads the barrier's epoch, if there is a barrier.
    pub(crate) fn start(barrier: Option<&Arc<dyn WriteBarrier>>) -> Self {
        Self(barrier.map(|b| (b.epoch(), b.clone())))
    }

    /// `Ok` once the writes made since the start are on disk (at once without a barrier);
    /// unavailable when the database may have lost them (it restarted): try again.
    pub(crate) async fn on_disk(&self, what: &str) -> Result<(), InfraError> {
        let Some((since, barrier)) = &self.0 else { return Ok(()) };
        if barrier.flush(*since).await? {
            Ok(())
        } else {
            Err(InfraError::unavailable(format!("the database may have lost {what} (it restarted)")))
        }
    }
}
