//! Payment providers behind the `PaymentGateway` port: Stripe, PayPal and a simulator that
//! decides outcomes by Stripe's test tokens; the webhook verifiers of both providers; and the
//! registry that picks a provider's gateway.
//!
//! Every call has a timeout. Timeouts, connection failures, 5xx and 429 are retried here a few
//! times with the same idempotency key, then reported as `GatewayError::Unavailable`; anything
//! the provider answers that cannot be understood is mapped to a `GatewayError`, never a panic.
//! Secrets, keys and tokens are never logged.

mod decimal;
mod http;
mod paypal;
mod paypal_webhook;
mod registry;
mod simulated;
mod stripe;
mod stripe_webhook;

pub use decimal::{format_decimal, parse_decimal, DecimalError};
pub use http::HttpClientError;
pub use paypal::{PayPalClient, PayPalConfig, PayPalGateway, PAYPAL_SANDBOX_API};
pub use paypal_webhook::PayPalWebhookVerifier;
pub use registry::GatewayRegistry;
pub use simulated::{SimulatedGateway, DEFAULT_CAPTURE_DELAY};
pub use stripe::{StripeConfig, StripeGateway, STRIPE_API};
pub use stripe_webhook::{stripe_signature_header, StripeWebhookVerifier};
