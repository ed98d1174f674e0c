//! The connection pool, database creation and embedded migrations.

use std::time::Duration;

use async_trait::async_trait;
use deadpool::Runtime;
use diesel::connection::SimpleConnection;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_async::pooled_connection::deadpool::{Hook, HookError, Pool};
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, PoolError as ManagerError, RecyclingMethod,
};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};
use ecom_kernel::{HealthCheck, InfraError};

use crate::error::{infra_from_diesel, infra_from_pool};

pub type PgPool = Pool<AsyncPgConnection>;

const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../../migrations");

/// Pool settings; the URL carries host, database and credentials.
#[derive(Clone)]
pub struct PgSettings {
    pub url: String,
    pub max_connections: usize,
    /// How long a caller waits for a free connection before the request fails with 503.
    pub acquire_timeout: Duration,
    pub statement_timeout: Duration,
    pub application_name: String,
}

impl std::fmt::Debug for PgSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgSettings")
            .field("url", &redact_url(&self.url))
            .field("max_connections", &self.max_connections)
            .field("acquire_timeout", &self.acquire_timeout)
            .field("statement_timeout", &self.statement_timeout)
            .finish()
    }
}

/// `postgres://user:secret@host/db` → `postgres://user:***@host/db`.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// Builds the pool. Connections are opened lazily; each gets the session settings.
pub fn connect(settings: &PgSettings) -> Result<PgPool, InfraError> {
    build(settings, settings.max_connections, "")
}

/// Builds a pool whose commits do not wait for the disk (`synchronous_commit = off`), for the
/// worker: everything it does runs in a durability scope whose writes a
/// [`PgWriteBarrier`](crate::PgWriteBarrier) flushes before anything acts on them (its jobs, its
/// sweeps), and the writes a provider call follows flush themselves first
/// ([`PgPaymentRepository::with_barrier`](crate::PgPaymentRepository::with_barrier)).
pub fn connect_deferring_flush(settings: &PgSettings) -> Result<PgPool, InfraError> {
    build(settings, settings.max_connections, " SET synchronous_commit = off;")
}

/// Connections for the keyed batch statements of the group commits and the outbox's removals
/// (see [`connect_batch`]).
#[derive(Clone)]
pub struct BatchPool(pub(crate) PgPool);

/// Most connections of a [`BatchPool`]: each kind of batch runs one statement at a time.
const BATCH_CONNECTIONS: usize = 4;

/// Builds the pool for keyed batch statements. Its sessions differ from [`connect`]'s twice:
/// - Plans are cached from the first call and never scan a whole table. Every statement there
///   finds its rows by a list of keys (`= ANY($n)`) in a table that churns (the outbox, the
///   notifications): a plan cached while the table was small would otherwise scan it whole
///   for as long as the plan is kept, while the table grows or bloats.
/// - Commits do not wait for the disk. Each write there is one whose loss in a database crash
///   the flows repair, or that nothing needs: an acknowledgement of delivery (the notification
///   is sent again on reconnect; delivery is at least once), a PENDING → SENT mark (both are
///   undelivered), the removal of a published outbox row (the relay publishes it again; its job
///   id makes that a no-op). A later ordinary commit flushes them all.
pub fn connect_batch(settings: &PgSettings) -> Result<BatchPool, InfraError> {
    build(
        settings,
        settings.max_connections.min(BATCH_CONNECTIONS),
        " SET synchronous_commit = off; SET enable_seqscan = off; SET plan_cache_mode = force_generic_plan;",
    )
    .map(BatchPool)
}

fn build(settings: &PgSettings, max_connections: usize, extra_setup: &str) -> Result<PgPool, InfraError> {
    // Fast recycling: no `SELECT 1` round trip on every checkout (it doubled the latency of short
    // queries); a broken connection is detected on use and dropped by the pool.
    let mut manager_config = ManagerConfig::default();
    manager_config.recycling_method = RecyclingMethod::Fast;
    let manager =
        AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(settings.url.clone(), manager_config);
    let setup = format!(
        "SET application_name = '{}'; SET statement_timeout = {}; SET TIME ZONE 'UTC'; \
         SET pg_trgm.word_similarity_threshold = 0.5;{extra_setup}",
        settings.application_name.replace('\'', ""),
        settings.statement_timeout.as_millis()
    );
    Pool::builder(manager)
        .max_size(max_connections.max(1))
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(settings.acquire_timeout))
        .create_timeout(Some(settings.acquire_timeout))
        .recycle_timeout(Some(settings.acquire_timeout))
        .post_create(Hook::async_fn(move |conn: &mut AsyncPgConnection, _| {
            let setup = setup.clone();
            Box::pin(async move {
                conn.batch_execute(&setup).await.map_err(|e| HookError::Backend(ManagerError::QueryError(e)))
            })
        }))
        .build()
        .map_err(|e| InfraError::unexpected("cannot build the postgres pool").with_source(e))
}

/// Splits `…/dbname?params` into the URL of the server's `postgres` database and `dbname`.
fn maintenance_url(url: &str) -> Option<(String, String)> {
    let (without_query, query) = match url.split_once('?') {
        Some((base, q)) => (base, Some(q)),
        None => (url, None),
    };
    let slash = without_query.rfind('/')?;
    if slash < without_query.find("://")? + 3 {
        return None;
    }
    let name = without_query[slash + 1..].to_owned();
    if name.is_empty() {
        return None;
    }
    let mut admin = format!("{}/postgres", &without_query[..slash]);
    if let Some(q) = query {
        admin.push('?');
        admin.push_str(q);
    }
    Some((admin, name))
}

/// Drops the database named in `url`, closing its connections.
pub async fn drop_database(url: &str) -> Result<(), InfraError> {
    let (mut conn, name) = maintenance_connection(url).await?;
    conn.batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")).await.map_err(infra_from_diesel)?;
    tracing::info!(database = %name, "dropped database");
    Ok(())
}

/// A connection to the server's `postgres` database, and the (checked) name of the database in `url`.
async fn maintenance_connection(url: &str) -> Result<(AsyncPgConnection, String), InfraError> {
    let (admin_url, name) =
        maintenance_url(url).ok_or_else(|| InfraError::unexpected("DATABASE_URL names no database"))?;
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        return Err(InfraError::unexpected("database name may only hold letters, digits, '_' and '-'"));
    }
    let conn = AsyncPgConnection::establish(&admin_url)
        .await
        .map_err(|e| InfraError::unavailable("cannot connect to postgres").with_source(e))?;
    Ok((conn, name))
}

/// Creates the database named in `url` if it does not exist yet.
pub async fn ensure_database_exists(url: &str) -> Result<(), InfraError> {
    let (mut conn, name) = maintenance_connection(url).await?;
    #[derive(diesel::QueryableByName)]
    struct Exists {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        exists: bool,
    }
    let found: Exists = diesel::sql_query("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1) AS exists")
        .bind::<diesel::sql_types::Text, _>(&name)
        .get_result(&mut conn)
        .await
        .map_err(infra_from_diesel)?;
    if !found.exists {
        match conn.batch_execute(&format!("CREATE DATABASE \"{name}\"")).await {
            Ok(()) => tracing::info!(database = %name, "created database"),
            // Another process created it between our check and our CREATE.
            Err(diesel::result::Error::DatabaseError(_, info)) if info.message().contains("already exists") => {}
            Err(e) => return Err(infra_from_diesel(e)),
        }
    }
    Ok(())
}

/// Applies pending embedded migrations, serialised across processes by an advisory lock.
pub async fn run_migrations(url: &str) -> Result<usize, InfraError> {
    let url = url.to_owned();
    tokio::task::spawn_blocking(move || -> Result<usize, InfraError> {
        let mut conn = <AsyncConnectionWrapper<AsyncPgConnection> as diesel::Connection>::establish(&url)
            .map_err(|e| InfraError::unavailable("cannot connect to postgres").with_source(e))?;
        SimpleConnection::batch_execute(&mut conn, "SELECT pg_advisory_lock(727274)").map_err(infra_from_diesel)?;
        let applied = conn
            .run_pending_migrations(MIGRATIONS)
            .map(|versions| versions.len())
            .map_err(|e| InfraError::unexpected(format!("migration failed: {e}")));
        SimpleConnection::batch_execute(&mut conn, "SELECT pg_advisory_unlock(727274)").map_err(infra_from_diesel)?;
        applied
    })
    .await
    .map_err(|e| InfraError::unexpected("migration task failed").with_source(e))?
}

/// Readiness: a pooled connection answers `SELECT 1` in time.
pub struct PgHealth {
    pool: PgPool,
    timeout: Duration,
}

impl PgHealth {
    pub fn new(pool: PgPool, timeout: Duration) -> Self {
        Self { pool, timeout }
    }
}

#[async_trait]
impl HealthCheck for PgHealth {
    fn name(&self) -> &'static str {
        "postgres"
    }

    async fn check(&self) -> Result<(), InfraError> {
        let probe = async {
            let mut conn = self.pool.get().await.map_err(infra_from_pool)?;
            conn.batch_execute("SELECT 1").await.map_err(infra_from_diesel)
        };
        tokio::time::timeout(self.timeout, probe)
            .await
            .map_err(|_| InfraError::unavailable("postgres did not answer in time"))?
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[derive(diesel::QueryableByName)]
    struct PlanLine {
        #[diesel(sql_type = diesel::sql_types::Text, column_name = "QUERY PLAN")]
        line: String,
    }

    /// The indexes of these tables and the column each is led by.
    const LEADING: [(&str, &str); 6] = [
        ("notifications_pkey", "id"),
        ("notifications_once_per_recipient", "dedupe_key"),
        ("notifications_by_customer", "customer_id"),
        ("notifications_unread", "customer_id"),
        ("outbox_pkey", "id"),
        ("outbox_created_idx", "created_at"),
    ];

    /// The scans of `plan` (EXPLAIN's text) that read a table without a key: a sequential scan,
    /// an index walked whole (no condition on its leading column), or a table scan with no
    /// condition of its own.
    fn unkeyed_scans(plan: &[String]) -> Vec<String> {
        let mut found = Vec::new();
        for (i, line) in plan.iter().enumerate() {
            if !line.contains(" Scan ") || line.contains("CTE Scan") || line.contains("Function Scan") {
                continue;
            }
            let conds: Vec<&String> = plan[i + 1..].iter().take_while(|l| !l.contains("->")).collect();
            let has = |text: &str| conds.iter().any(|c| c.contains(text));
            let keyed = match LEADING.iter().find(|(index, _)| line.contains(&format!("{index} "))) {
                // A column of a domain type shows cast to its base type: `((id)::text = ...)`.
                Some((_, column)) => {
                    has(&format!("Index Cond: ({column} "))
                        || has(&format!("Index Cond: (({column} "))
                        || has(&format!("Index Cond: (({column})::"))
                }
                None => !line.contains("Seq Scan") && (has("Recheck Cond:") || has("TID Cond:")),
            };
            if !keyed {
                found.push(line.trim().to_owned());
            }
        }
        found
    }

    async fn plans(pool: &PgPool) -> Vec<(&'static str, Vec<String>)> {
        use crate::notifications::{MARK_DELIVERED, MARK_SENT, PENDING};
        use crate::outbox::REMOVE_PUBLISHED;
        let mut conn = pool.get().await.unwrap();
        let mut out = Vec::new();
        for (name, text, params) in [
            ("remove_published", REMOVE_PUBLISHED, 1),
            ("pending", PENDING, 1),
            ("mark_sent", MARK_SENT, 2),
            ("mark_delivered", MARK_DELIVERED, 3),
        ] {
            conn.batch_execute(&format!("PREPARE {name} AS {text}")).await.unwrap();
            let nulls = vec!["NULL"; params].join(", ");
            // The plan the session caches for every later call.
            let plan: Vec<PlanLine> =
                diesel::sql_query(format!("EXPLAIN EXECUTE {name}({nulls})")).load(&mut conn).await.unwrap();
            out.push((name, plan.into_iter().map(|p| p.line).collect()));
        }
        out
    }

    #[tokio::test]
    async fn batch_sessions_cache_keyed_plans_however_small_the_table_and_do_not_wait_for_the_disk() {
        let db = ecom_testkit::TestDb::new().await;
        let settings = PgSettings {
            url: db.url(),
            max_connections: 2,
            acquire_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(5),
            application_name: "batch-plan-test".into(),
        };
        // Empty and vacuumed: the state in which a planner left to itself scans these tables
        // whole, and would keep doing so in a cached plan as they grow.
        let mut admin = AsyncPgConnection::establish(&db.url()).await.unwrap();
        for table in ["outbox", "notifications"] {
            admin.batch_execute(&format!("VACUUM ANALYZE {table}")).await.unwrap();
        }
        let ordinary = plans(&connect(&settings).unwrap()).await;
        assert!(
            ordinary.iter().any(|(_, plan)| !unkeyed_scans(plan).is_empty()),
            "the check sees a whole-table plan where one is made: {ordinary:?}"
        );
        let batch = connect_batch(&settings).unwrap();
        for (name, plan) in plans(&batch.0).await {
            assert_eq!(unkeyed_scans(&plan), Vec::<String>::new(), "{name}: {}", plan.join("\n"));
        }

        #[derive(diesel::QueryableByName)]
        struct Setting {
            #[diesel(sql_type = diesel::sql_types::Text)]
            value: String,
        }
        let mut conn = batch.0.get().await.unwrap();
        let commit: Setting = diesel::sql_query("SELECT current_setting('synchronous_commit') AS value")
            .get_result(&mut conn)
            .await
            .unwrap();
        assert_eq!(commit.value, "off");
        let mut ordinary = connect(&settings).unwrap().get().await.unwrap();
        let commit: Setting = diesel::sql_query("SELECT current_setting('synchronous_commit') AS value")
            .get_result(&mut ordinary)
            .await
            .unwrap();
        assert_eq!(commit.value, "on", "ordinary sessions wait for the disk");
    }

    #[test]
    fn the_maintenance_url_points_at_the_postgres_database() {
        assert_eq!(
            maintenance_url("postgres://u:p@h:5432/shop?sslmode=disable"),
            Some(("postgres://u:p@h:5432/postgres?sslmode=disable".into(), "shop".into()))
        );
        assert_eq!(maintenance_url("postgres://h:5432"), None);
        assert_eq!(maintenance_url("postgres://h/"), None);
    }

    #[test]
    fn passwords_in_urls_are_redacted() {
        assert_eq!(redact_url("postgres://u:hunter2@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
    }
}
