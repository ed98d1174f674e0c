//! Stock levels, adjustments and reservations.

use chrono::{DateTime, Utc};
use ecom_kernel::{BoundedText, CustomerId, OrderId, ProductId, Quantity};

/// The stock of one product.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StockLevel {
    pub product_id: ProductId,
    pub on_hand: u32,
    pub reserved: u32,
    pub low_stock_threshold: u32,
    pub updated_at: DateTime<Utc>,
}

impl StockLevel {
    /// The most units on hand a stock level holds (the database keeps a 32-bit count).
    pub const MAX_ON_HAND: u32 = i32::MAX as u32;

    /// Units that can be sold now.
    pub fn available(&self) -> u32 {
        self.on_hand.saturating_sub(self.reserved)
    }
}

/// An admin's change to the units on hand. Never below what is reserved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Adjustment {
    Add(u32),
    Subtract(u32),
    Set(u32),
}

impl Adjustment {
    pub const MAX_QUANTITY: u32 = 1_000_000;

    /// `quantity` must be at least 1 for ADD and SUBTRACT, at least 0 for SET.
    pub fn parse(kind: &str, quantity: i64) -> Result<Self, AdjustmentError> {
        let q = u32::try_from(quantity).ok().filter(|q| *q <= Self::MAX_QUANTITY).ok_or(AdjustmentError::Range)?;
        match kind {
            "ADD" if q >= 1 => Ok(Adjustment::Add(q)),
            "SUBTRACT" if q >= 1 => Ok(Adjustment::Subtract(q)),
            "ADD" | "SUBTRACT" => Err(AdjustmentError::Zero),
            "SET" => Ok(Adjustment::Set(q)),
            _ => Err(AdjustmentError::UnknownType),
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Adjustment::Add(_) => "ADJUST_ADD",
            Adjustment::Subtract(_) => "ADJUST_SUBTRACT",
            Adjustment::Set(_) => "ADJUST_SET",
        }
    }

    /// The new on-hand count, or why there is none: it would fall below `reserved`, or above
    /// what a stock level holds ([`StockLevel::MAX_ON_HAND`]).
    pub fn apply(&self, on_hand: u32, reserved: u32) -> Result<u32, AdjustRefusal> {
        let next = match *self {
            Adjustment::Add(q) => on_hand.checked_add(q).ok_or(AdjustRefusal::TooMany)?,
            Adjustment::Subtract(q) => on_hand.checked_sub(q).ok_or(AdjustRefusal::BelowReserved)?,
            Adjustment::Set(q) => q,
        };
        if next > StockLevel::MAX_ON_HAND {
            return Err(AdjustRefusal::TooMany);
        }
        if next < reserved {
            return Err(AdjustRefusal::BelowReserved);
        }
        Ok(next)
    }
}

/// Why an adjustment cannot be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdjustRefusal {
    /// On hand would fall below the units reserved (or below zero).
    BelowReserved,
    /// On hand would exceed what a stock level holds.
    TooMany,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdjustmentError {
    #[error("quantity must be between 0 and 1000000")]
    Range,
    #[error("quantity must be at least 1 for ADD and SUBTRACT")]
    Zero,
    #[error("type must be ADD, SUBTRACT or SET")]
    UnknownType,
}

/// Who changed the stock, why, and in reference to what: recorded in the ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MovementContext {
    pub actor: Option<CustomerId>,
    pub reason: Option<BoundedText>,
    pub reference: Option<String>,
    pub at: DateTime<Utc>,
}

/// One product and quantity of a reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReservationLine {
    pub product_id: ProductId,
    pub quantity: Quantity,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReservationStatus {
    Active,
    Confirmed,
    Released,
    Expired,
    /// Confirmed, then its order was cancelled before shipping: the units are back on hand.
    Returned,
}

impl ReservationStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            ReservationStatus::Active => "ACTIVE",
            ReservationStatus::Confirmed => "CONFIRMED",
            ReservationStatus::Released => "RELEASED",
            ReservationStatus::Expired => "EXPIRED",
            ReservationStatus::Returned => "RETURNED",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "ACTIVE" => Some(ReservationStatus::Active),
            "CONFIRMED" => Some(ReservationStatus::Confirmed),
            "RELEASED" => Some(ReservationStatus::Released),
            "EXPIRED" => Some(ReservationStatus::Expired),
            "RETURNED" => Some(ReservationStatus::Returned),
            _ => None,
        }
    }

    /// The ledger kind of leaving ACTIVE for this status.
    pub fn movement_kind(&self) -> &'static str {
        match self {
            ReservationStatus::Active => "RESERVE",
            ReservationStatus::Confirmed => "CONFIRM",
            ReservationStatus::Released => "RELEASE",
            ReservationStatus::Expired => "EXPIRE",
            ReservationStatus::Returned => "RETURN",
        }
    }
}

/// A reservation as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    pub order_id: OrderId,
    pub status: ReservationStatus,
    pub lines: Vec<ReservationLine>,
    pub expires_at: DateTime<Utc>,
    /// Products whose available units fell to (or below) their low-stock threshold with this
    /// reservation, as they stood when it was made: only one reservation crosses each time,
    /// and a replay of it (its step failed before anyone was told) reports the same again.
    pub crossed_low_stock: Vec<LowStockCrossing>,
}

/// A product's available units fell to its low-stock threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LowStockCrossing {
    pub product_id: ProductId,
    pub available: u32,
    pub threshold: u32,
}

impl LowStockCrossing {
    /// Whether taking `taken` units out of `available + taken` crossed `threshold`.
    pub fn crossed(product_id: ProductId, available: u32, taken: u32, threshold: u32) -> Option<Self> {
        (available <= threshold && available.saturating_add(taken) > threshold).then_some(Self {
            product_id,
            available,
            threshold,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_reservation_that_takes_availability_to_the_threshold_crosses_it() {
        let p = ProductId::new();
        assert_eq!(
            LowStockCrossing::crossed(p, 5, 1, 5),
            Some(LowStockCrossing { product_id: p, available: 5, threshold: 5 })
        );
        assert!(LowStockCrossing::crossed(p, 2, 10, 5).is_some());
        assert_eq!(LowStockCrossing::crossed(p, 6, 1, 5), None);
        assert_eq!(LowStockCrossing::crossed(p, 4, 1, 5), None, "below already");
        assert_eq!(LowStockCrossing::crossed(p, 0, 0, 0), None);
    }

    #[test]
    fn adjustments_never_go_below_what_is_reserved() {
        assert_eq!(Adjustment::Add(5).apply(10, 4), Ok(15));
        assert_eq!(Adjustment::Subtract(6).apply(10, 4), Ok(4));
        assert_eq!(Adjustment::Subtract(7).apply(10, 4), Err(AdjustRefusal::BelowReserved));
        assert_eq!(Adjustment::Subtract(11).apply(10, 0), Err(AdjustRefusal::BelowReserved));
        assert_eq!(Adjustment::Set(3).apply(10, 4), Err(AdjustRefusal::BelowReserved));
        assert_eq!(Adjustment::Set(0).apply(10, 0), Ok(0));
        assert_eq!(Adjustment::Add(u32::MAX).apply(10, 0), Err(AdjustRefusal::TooMany));
        assert_eq!(Adjustment::Add(1).apply(StockLevel::MAX_ON_HAND, 0), Err(AdjustRefusal::TooMany));
        assert_eq!(Adjustment::Add(1).apply(StockLevel::MAX_ON_HAND - 1, 0), Ok(StockLevel::MAX_ON_HAND));
    }

    #[test]
    fn adjustment_input_is_checked() {
        assert_eq!(Adjustment::parse("ADD", 3), Ok(Adjustment::Add(3)));
        assert_eq!(Adjustment::parse("SET", 0), Ok(Adjustment::Set(0)));
        assert_eq!(Adjustment::parse("ADD", 0), Err(AdjustmentError::Zero));
        assert_eq!(Adjustment::parse("SUBTRACT", -1), Err(AdjustmentError::Range));
        assert_eq!(Adjustment::parse("SET", 1_000_001), Err(AdjustmentError::Range));
        assert_eq!(Adjustment::parse("add", 1), Err(AdjustmentError::UnknownType));
    }
}
