//! The worker's durability barrier against the real PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use diesel::sql_types::BigInt;
use diesel_async::{AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use ecom_kernel::jobs::WriteBarrier;
use ecom_postgres::{connect, connect_deferring_flush, PgSettings, PgWriteBarrier};
use ecom_testkit::TestDb;

const APP: &str = "barrier-test";

fn settings(db: &TestDb) -> PgSettings {
    PgSettings {
        url: db.url(),
        max_connections: 4,
        acquire_timeout: Duration::from_secs(5),
        statement_timeout: Duration::from_secs(5),
        application_name: APP.into(),
    }
}

#[derive(diesel::QueryableByName, Debug)]
struct Log {
    #[diesel(sql_type = BigInt)]
    inserted: i64,
    #[diesel(sql_type = BigInt)]
    flushed: i64,
}

async fn log(conn: &mut AsyncPgConnection) -> Log {
    diesel::sql_query(
        "SELECT (pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::BIGINT AS inserted, \
         (pg_current_wal_flush_lsn() - '0/0'::pg_lsn)::BIGINT AS flushed",
    )
    .get_result(conn)
    .await
    .unwrap()
}

#[tokio::test]
async fn a_flush_returns_once_the_commits_that_did_not_wait_for_the_disk_are_on_it() {
    let db = TestDb::new().await;
    let pool = connect_deferring_flush(&settings(&db)).unwrap();
    let barrier = PgWriteBarrier::new(&settings(&db));
    barrier.connect().await.unwrap();
    let mut conn = pool.get().await.unwrap();
    conn.batch_execute("CREATE TABLE scratch (n INT)").await.unwrap();
    let mut caught = 0;
    for _ in 0..200 {
        let since = barrier.epoch();
        diesel::sql_query("INSERT INTO scratch VALUES (1)").execute(&mut conn).await.unwrap();
        let written = log(&mut conn).await;
        if written.flushed >= written.inserted {
            continue; // another session's commit flushed it already: try again
        }
        // The commit is not on disk: the pool's sessions do not wait.
        caught += 1;
        assert!(barrier.flush(since).await.unwrap());
        let after = log(&mut conn).await;
        assert!(
            after.flushed >= written.inserted,
            "flushed to {} only, the commit ends before {}",
            after.flushed,
            written.inserted
        );
        if caught == 5 {
            break;
        }
    }
    assert_eq!(caught, 5, "commits on a deferring pool were seen unflushed only {caught} times");
}

#[tokio::test]
async fn once_its_session_is_lost_a_flush_answers_false_for_writes_made_before() {
    let db = TestDb::new().await;
    let barrier = PgWriteBarrier::new(&settings(&db));
    barrier.connect().await.unwrap();
    let before = barrier.epoch();
    assert!(barrier.flush(before).await.unwrap(), "the session has been there throughout");

    // As when PostgreSQL restarts: every session ends, commits not yet on disk are lost.
    let pool = connect(&settings(&db)).unwrap();
    let mut conn = pool.get().await.unwrap();
    #[derive(diesel::QueryableByName)]
    struct Ended {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    let ended: Ended = diesel::sql_query(format!(
        "SELECT count(pg_terminate_backend(pid)) AS n FROM pg_stat_activity \
         WHERE datname = current_database() AND application_name = '{APP}-barrier'"
    ))
    .get_result(&mut conn)
    .await
    .unwrap();
    assert_eq!(ended.n, 1, "the barrier has one session of its own");

    assert!(!barrier.flush(before).await.unwrap(), "its session is gone: the writes may be lost");
    assert!(!barrier.flush(before).await.unwrap(), "a new session cannot vouch for writes made before it");
    let after = barrier.epoch();
    assert_ne!(after, before);
    assert!(barrier.flush(after).await.unwrap(), "a job started since is safe");

    // Closed at shutdown: no session opens again, so nothing can vouch for a write any more.
    barrier.close().await;
    assert!(!barrier.flush(after).await.unwrap());
    assert_eq!(barrier.epoch(), after);
}
