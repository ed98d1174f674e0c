//! Accounts: customers and their roles, credentials, refresh-token families and addresses.

pub mod error;
pub mod model;
pub mod ports;
pub mod service;

pub use error::IdentityError;
pub use service::{require_admin, IdentityPorts, IdentityService, SessionTokens, TokenPolicy};

#[cfg(test)]
mod service_tests;
