//! The gateways against local fakes: wiremock servers for Stripe and PayPal, a real Redis for
//! the simulator.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod paypal;
mod paypal_webhook;
mod registry;
mod simulated;
mod stripe;
mod stripe_webhook;
mod support;
