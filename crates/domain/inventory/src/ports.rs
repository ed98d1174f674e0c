//! What inventory needs from the outside world.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ecom_kernel::{InfraError, OrderId, Page, PageRequest, ProductId};

use crate::model::{Adjustment, MovementContext, Reservation, ReservationLine, ReservationStatus, StockLevel};

#[derive(Debug, thiserror::Error)]
pub enum AdjustError {
    #[error("no stock record")]
    NotFound,
    #[error("below reserved")]
    BelowReserved { reserved: u32 },
    #[error("more than a stock level holds")]
    TooMany { max: u32 },
    #[error(transparent)]
    Infrastructure(#[from] InfraError),
}

#[derive(Debug, thiserror::Error)]
pub enum ReserveError {
    #[error("no stock record for {0}")]
    UnknownProduct(ProductId),
    #[error("insufficient stock")]
    Insufficient { product_id: ProductId, requested: u32, available: u32 },
    #[error(transparent)]
    Infrastructure(#[from] InfraError),
}

/// The result of a reservation transition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    /// It became the target status now; these products' levels changed.
    Applied(Vec<ProductId>),
    /// It had already left ACTIVE, for this status; nothing changed.
    AlreadyFinished(ReservationStatus),
    NotFound,
}

#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait StockRepository: Send + Sync {
    async fn level(&self, product: ProductId) -> Result<Option<StockLevel>, InfraError>;
    /// Applies the adjustment atomically and records it in the ledger. MUST refuse
    /// (`BelowReserved`) when on hand would end below reserved, whatever runs concurrently.
    async fn adjust(
        &self,
        product: ProductId,
        adjustment: Adjustment,
        context: &MovementContext,
    ) -> Result<StockLevel, AdjustError>;
    /// Levels whose available units are at or below their threshold, by product id.
    async fn low_stock(&self, page: &PageRequest) -> Result<Page<StockLevel>, InfraError>;
    /// All-or-nothing across lines, in one transaction, locking lines in product-id order.
    /// Idempotent per order: when the order already has a reservation, nothing changes and
    /// that reservation is returned.
    async fn reserve(
        &self,
        order: OrderId,
        lines: &[ReservationLine],
        expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Reservation, ReserveError>;
    async fn reservation(&self, order: OrderId) -> Result<Option<Reservation>, InfraError>;
    /// Moves an ACTIVE reservation to `to` (CONFIRMED: on hand and reserved drop; RELEASED or
    /// EXPIRED: reserved drops), or a CONFIRMED one to RETURNED (on hand goes back up), with its
    /// ledger entries, in one transaction.
    async fn finish(&self, order: OrderId, to: ReservationStatus, now: DateTime<Utc>)
        -> Result<Transition, InfraError>;
    /// Orders whose ACTIVE reservation expired at `now`, oldest first.
    async fn expired(&self, now: DateTime<Utc>, limit: i64) -> Result<Vec<OrderId>, InfraError>;
    /// Makes the order's reservation, while ACTIVE and not lapsed, expire no sooner than
    /// `until`; `false` when it is not held (never made, finished, or past its time at `now`).
    async fn hold(&self, order: OrderId, until: DateTime<Utc>, now: DateTime<Utc>) -> Result<bool, InfraError>;
}

/// Told after the units for sale (on hand minus reserved) changed, so that caches of availability
/// can drop their copies. A confirmed reservation changes neither side's difference: not told.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait StockObserver: Send + Sync {
    async fn stock_changed(&self, products: &[ProductId]) -> Result<(), InfraError>;
}
