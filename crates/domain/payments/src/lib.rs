//! Payments: the `Payment` aggregate and its state machine (PENDING → AUTHORIZED → PAID; FAILED;
//! REFUNDED / PARTIALLY_REFUNDED, never refunding more than was paid; COLLECT_ON_DELIVERY → PAID
//! for cash on delivery), refunds, the payment-gateway and webhook-verifier ports, and the
//! provider events that move payments along.

pub mod error;
pub mod model;
pub mod ports;
pub mod service;

pub use error::PaymentError;
pub use service::PaymentService;

#[cfg(test)]
mod service_tests;
