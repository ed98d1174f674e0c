//! Test support: a real, isolated PostgreSQL database and Redis key prefix per test, both
//! cleaned up, and an in-process api on port 0 with typed request helpers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test support: failing loudly is the point

mod app;
mod db;
mod redis;

pub use app::{Session, TestApp, ADMIN_EMAIL, ADMIN_PASSWORD};
pub use db::TestDb;
pub use redis::TestRedis;

/// The server part of the database URL tests use: `TEST_DATABASE_URL`, else `DATABASE_URL`,
/// else the local default. The database name in it is ignored.
pub fn database_server_url() -> String {
    let url = std::env::var("TEST_DATABASE_URL")
        .or_else(|_| std::env::var("DATABASE_URL"))
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let (base, _) = url.split_once('?').unwrap_or((&url, ""));
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    match base[scheme_end..].find('/') {
        Some(slash) => base[..scheme_end + slash].to_owned(),
        None => base.to_owned(),
    }
}

/// `TEST_REDIS_URL`, else `REDIS_URL`, else the local default.
pub fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL")
        .or_else(|_| std::env::var("REDIS_URL"))
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}
