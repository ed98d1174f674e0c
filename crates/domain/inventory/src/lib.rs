//! Inventory: stock levels, admin adjustments with an append-only ledger, and reservations
//! (ACTIVE → CONFIRMED / RELEASED / EXPIRED) that never oversell.

pub mod error;
pub mod model;
pub mod ports;
pub mod service;

pub use error::InventoryError;
pub use service::InventoryService;

#[cfg(test)]
mod service_tests;
