use std::path::Path;

use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use sha2::{Digest, Sha256};

use crate::database_server_url;

/// A database of its own for one test, created from a migrated template and dropped on drop.
pub struct TestDb {
    name: String,
    server: String,
}

/// Hash of every migration file: a new template whenever the schema changes.
fn migrations_fingerprint() -> String {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../migrations");
    let mut files: Vec<_> = walk(&dir);
    files.sort();
    let mut hasher = Sha256::new();
    for file in files {
        hasher.update(file.to_string_lossy().as_bytes());
        hasher.update(std::fs::read(&file).unwrap());
    }
    hasher.finalize().iter().take(6).map(|b| format!("{b:02x}")).collect()
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

async fn admin_connection(server: &str) -> AsyncPgConnection {
    AsyncPgConnection::establish(&format!("{server}/postgres"))
        .await
        .unwrap_or_else(|e| panic!("cannot connect to PostgreSQL at {server} (is it running? `just services`): {e}"))
}

async fn database_exists(conn: &mut AsyncPgConnection, name: &str) -> bool {
    use diesel_async::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Found {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        found: bool,
    }
    let row: Found = diesel::sql_query("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1) AS found")
        .bind::<diesel::sql_types::Text, _>(name)
        .get_result(conn)
        .await
        .unwrap();
    row.found
}

/// Creates the migrated template once per schema version, serialised across test processes.
async fn ensure_template(server: &str) -> String {
    let template = format!("ecom_test_template_{}", migrations_fingerprint());
    let mut conn = admin_connection(server).await;
    conn.batch_execute("SELECT pg_advisory_lock(7272001)").await.unwrap();
    if !database_exists(&mut conn, &template).await {
        let building = format!("{template}_building");
        conn.batch_execute(&format!("DROP DATABASE IF EXISTS \"{building}\" WITH (FORCE)")).await.unwrap();
        conn.batch_execute(&format!("CREATE DATABASE \"{building}\"")).await.unwrap();
        ecom_postgres::run_migrations(&format!("{server}/{building}")).await.unwrap();
        conn.batch_execute(&format!("ALTER DATABASE \"{building}\" RENAME TO \"{template}\"")).await.unwrap();
        conn.batch_execute(&format!("ALTER DATABASE \"{template}\" IS_TEMPLATE true")).await.unwrap();
    }
    conn.batch_execute("SELECT pg_advisory_unlock(7272001)").await.unwrap();
    template
}

impl TestDb {
    pub async fn new() -> Self {
        let server = database_server_url();
        let template = ensure_template(&server).await;
        let name = format!("ecom_test_{}", uuid::Uuid::now_v7().simple());
        let mut conn = admin_connection(&server).await;
        conn.batch_execute(&format!("CREATE DATABASE \"{name}\" TEMPLATE \"{template}\"")).await.unwrap();
        Self { name, server }
    }

    /// The URL of this test's database.
    pub fn url(&self) -> String {
        format!("{}/{}", self.server, self.name)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Waits (10 s at most, else panics) until a session of this database waits for a lock: a
    /// call under test has reached the lock another transaction holds, and has not passed it.
    pub async fn wait_for_a_lock_wait(&self) {
        use diesel_async::RunQueryDsl;
        #[derive(diesel::QueryableByName)]
        struct Waiting {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            waiting: i64,
        }
        let mut conn = admin_connection(&self.server).await;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let row: Waiting = diesel::sql_query(
                "SELECT count(*) AS waiting FROM pg_stat_activity WHERE datname = $1 AND wait_event_type = 'Lock'",
            )
            .bind::<diesel::sql_types::Text, _>(&self.name)
            .get_result(&mut conn)
            .await
            .unwrap();
            if row.waiting > 0 {
                return;
            }
            assert!(std::time::Instant::now() < deadline, "no session of {} waits for a lock", self.name);
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (server, name) = (self.server.clone(), self.name.clone());
        // Drop runs inside the test's runtime, which cannot be blocked on: use a thread of its own.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async {
                let mut conn = admin_connection(&server).await;
                conn.batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")).await
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("warning: test database {} was not dropped", self.name);
        }
    }
}
