//! Carts: one active cart per customer and guest carts reached with a signed token; lines within
//! limits, validated against catalog and inventory, priced fresh every time a cart is shown.

pub mod error;
pub mod model;
pub mod ports;
pub mod service;

pub use error::CartError;
pub use service::CartService;

#[cfg(test)]
mod service_tests;
