//! Orders: an order's lines (price, SKU and name as they were at checkout), its totals with the
//! shipping policy, its status machine (`Order::transition`) with a timeline of every step, and
//! the checkout saga that drives it (one job per step, compensation on every failure).

pub mod error;
pub mod model;
pub mod notices;
pub mod ports;
pub mod service;

pub use error::OrderError;
pub use service::OrderService;

#[cfg(test)]
mod service_tests;
