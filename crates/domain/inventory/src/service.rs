//! The inventory use cases.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use ecom_kernel::{BoundedText, Clock, CustomerId, OrderId, Page, PageRequest, ProductId};

use crate::error::InventoryError;
use crate::model::{Adjustment, MovementContext, Reservation, ReservationLine, ReservationStatus, StockLevel};
use crate::ports::{AdjustError, ReserveError, StockObserver, StockRepository, Transition};

pub struct InventoryService {
    stock: Arc<dyn StockRepository>,
    observer: Arc<dyn StockObserver>,
    clock: Arc<dyn Clock>,
}

impl InventoryService {
    pub fn new(stock: Arc<dyn StockRepository>, observer: Arc<dyn StockObserver>, clock: Arc<dyn Clock>) -> Self {
        Self { stock, observer, clock }
    }

    /// Cached availability is only a copy: a failed invalidation must not fail a stock change
    /// that is already committed (the copies expire on their own).
    async fn changed(&self, products: &[ProductId]) {
        let _ = self.observer.stock_changed(products).await;
    }

    pub async fn level(&self, product: ProductId) -> Result<StockLevel, InventoryError> {
        self.stock.level(product).await?.ok_or(InventoryError::ProductNotFound(product))
    }

    /// An admin's adjustment, recorded in the ledger with who did it and why.
    pub async fn adjust(
        &self,
        product: ProductId,
        adjustment: Adjustment,
        actor: CustomerId,
        reason: Option<BoundedText>,
    ) -> Result<StockLevel, InventoryError> {
        let context = MovementContext { actor: Some(actor), reason, reference: None, at: self.clock.now() };
        let level = self.stock.adjust(product, adjustment, &context).await.map_err(|e| match e {
            AdjustError::NotFound => InventoryError::ProductNotFound(product),
            AdjustError::BelowReserved { reserved } => InventoryError::BelowReserved { reserved },
            AdjustError::TooMany { max } => InventoryError::TooMany { max },
            AdjustError::Infrastructure(e) => InventoryError::Infrastructure(e),
        })?;
        self.changed(&[product]).await;
        Ok(level)
    }

    pub async fn low_stock(&self, page: &PageRequest) -> Result<Page<StockLevel>, InventoryError> {
        Ok(self.stock.low_stock(page).await?)
    }

    /// Reserves every line or none. Calling it again for the same order changes nothing and
    /// returns the order's reservation as it stands.
    pub async fn reserve(
        &self,
        order: OrderId,
        lines: &[ReservationLine],
        expires_at: DateTime<Utc>,
    ) -> Result<Reservation, InventoryError> {
        let mut seen = HashSet::new();
        if lines.is_empty() || !lines.iter().all(|l| seen.insert(l.product_id)) {
            return Err(InventoryError::InvalidLines);
        }
        let reservation =
            self.stock.reserve(order, lines, expires_at, self.clock.now()).await.map_err(|e| match e {
                ReserveError::UnknownProduct(p) => InventoryError::ProductNotFound(p),
                ReserveError::Insufficient { product_id, requested, available } => {
                    InventoryError::OutOfStock { product_id, requested, available }
                }
                ReserveError::Infrastructure(e) => InventoryError::Infrastructure(e),
            })?;
        self.changed(&product_ids(&reservation)).await;
        Ok(reservation)
    }

    /// ACTIVE → CONFIRMED: the units leave the shelf. Idempotent.
    pub async fn confirm(&self, order: OrderId) -> Result<(), InventoryError> {
        match self.finish(order, ReservationStatus::Confirmed).await? {
            Transition::Applied(_) | Transition::AlreadyFinished(ReservationStatus::Confirmed) => Ok(()),
            Transition::AlreadyFinished(from) => {
                Err(InventoryError::InvalidTransition { order_id: order, from, to: ReservationStatus::Confirmed })
            }
            Transition::NotFound => Err(InventoryError::ReservationNotFound(order)),
        }
    }

    /// ACTIVE → RELEASED: the units are for sale again. Idempotent; releasing what was never
    /// reserved (or already released or expired) does nothing, so compensation can always call it.
    pub async fn release(&self, order: OrderId) -> Result<(), InventoryError> {
        match self.finish(order, ReservationStatus::Released).await? {
            Transition::AlreadyFinished(ReservationStatus::Confirmed) => Err(InventoryError::InvalidTransition {
                order_id: order,
                from: ReservationStatus::Confirmed,
                to: ReservationStatus::Released,
            }),
            _ => Ok(()),
        }
    }

    /// Undoes a reservation whatever its stage, for a cancelled order: ACTIVE → RELEASED,
    /// CONFIRMED → RETURNED (the units go back on hand). Idempotent; nothing reserved is fine.
    pub async fn give_back(&self, order: OrderId) -> Result<(), InventoryError> {
        match self.finish(order, ReservationStatus::Released).await? {
            Transition::AlreadyFinished(ReservationStatus::Confirmed) => {
                self.finish(order, ReservationStatus::Returned).await.map(|_| ())
            }
            _ => Ok(()),
        }
    }

    /// Expires up to `limit` ACTIVE reservations past their time; returns their orders, or the
    /// first error once every other one was tried (one that cannot be expired now does not hold
    /// up those behind it).
    pub async fn expire_due(&self, limit: i64) -> Result<Vec<OrderId>, InventoryError> {
        let now = self.clock.now();
        let mut expired = Vec::new();
        let mut failed = None;
        for order in self.stock.expired(now, limit).await? {
            match self.finish(order, ReservationStatus::Expired).await {
                Ok(Transition::Applied(_)) => expired.push(order),
                Ok(_) => {}
                Err(err) => failed = failed.or(Some(err)),
            }
        }
        failed.map_or(Ok(expired), Err)
    }

    /// Keeps the order's ACTIVE reservation until `until` (an admin confirmed the order: its
    /// units wait for its finalize job, however late); `false` when it is not ACTIVE.
    pub async fn hold(&self, order: OrderId, until: DateTime<Utc>) -> Result<bool, InventoryError> {
        Ok(self.stock.hold(order, until, self.clock.now()).await?)
    }

    pub async fn reservation(&self, order: OrderId) -> Result<Reservation, InventoryError> {
        self.stock.reservation(order).await?.ok_or(InventoryError::ReservationNotFound(order))
    }

    async fn finish(&self, order: OrderId, to: ReservationStatus) -> Result<Transition, InventoryError> {
        let transition = self.stock.finish(order, to, self.clock.now()).await?;
        match &transition {
            // On hand and reserved drop by the same units: what is for sale stays the same.
            Transition::Applied(_) if to == ReservationStatus::Confirmed => {}
            Transition::Applied(products) => self.changed(products).await,
            _ => {}
        }
        Ok(transition)
    }
}

fn product_ids(reservation: &Reservation) -> Vec<ProductId> {
    reservation.lines.iter().map(|l| l.product_id).collect()
}
