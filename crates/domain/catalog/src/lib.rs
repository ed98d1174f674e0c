//! The catalog: products with their SKU, name, description, price, category and status, and
//! product search.

pub mod error;
pub mod model;
pub mod ports;
pub mod service;

pub use error::CatalogError;
pub use service::CatalogService;

#[cfg(test)]
mod service_tests;
