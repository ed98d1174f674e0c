//! PostgreSQL adapters: the connection pool, embedded migrations and the repositories.

mod barrier;
mod catalog;
mod error;
mod group;
mod identity;
mod invariants;
mod inventory;
mod notifications;
mod orders;
mod outbox;
mod payments;
mod pool;
pub mod schema;
mod sql;

pub use barrier::PgWriteBarrier;
pub use catalog::PgProductRepository;
pub use error::{infra_from_diesel, infra_from_pool};
pub use identity::{lock_sessions, PgAddressRepository, PgCustomerRepository, PgRefreshTokenRepository};
pub use invariants::{invariant_checks, InvariantSettings, PgInvariants, Violation};
pub use inventory::PgStockRepository;
pub use notifications::{PgAdminRecipients, PgNotificationRepository};
pub use orders::PgOrderRepository;
pub use outbox::{stage, OutboxRemovals, PgOutbox, REMOVAL_LINGER};
pub use payments::PgPaymentRepository;
pub use pool::{
    connect, connect_batch, connect_deferring_flush, drop_database, ensure_database_exists, redact_url, run_migrations,
    BatchPool, PgHealth, PgPool, PgSettings,
};
