//! PostgreSQL adapters: the connection pool, embedded migrations and the repositories.

mod error;
mod identity;
mod pool;
pub mod schema;

pub use error::{infra_from_diesel, infra_from_pool};
pub use identity::{PgAddressRepository, PgCustomerRepository, PgRefreshTokenRepository};
pub use pool::{
    connect, drop_database, ensure_database_exists, redact_url, run_migrations, PgHealth, PgPool, PgSettings,
};
