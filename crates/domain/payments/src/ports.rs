//! What payments need from the outside world: providers, webhook verification, storage.

use std::time::Duration;

use async_trait::async_trait;
use ecom_kernel::jobs::NewJob;
use ecom_kernel::{InfraError, Money, OrderId};

use crate::model::{
    DeclineReason, GatewayEvent, Payment, PaymentId, Provider, ProviderPayment, Refund, RefundId, RefundStatus,
};

/// A charge the provider is asked to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChargeRequest {
    /// The same key for every retry of this charge: the provider charges once per key.
    pub idempotency_key: String,
    pub payment_id: PaymentId,
    pub order_id: OrderId,
    pub amount: Money,
    /// The client's payment token (Stripe PaymentMethod, an approved PayPal order id).
    pub token: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundRequest {
    pub idempotency_key: String,
    /// The provider's reference of the charge.
    pub reference: String,
    pub amount: Money,
    pub reason: Option<String>,
}

/// The provider's answer to a refund.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderRefund {
    pub reference: String,
    pub status: RefundStatus,
}

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The provider declined: final, never retried.
    #[error("declined: {0}")]
    Declined(DeclineReason),
    /// The provider refused the request itself (bad token, unknown reference, refund too
    /// large): final, never retried.
    #[error("rejected by the provider: {0}")]
    Rejected(String),
    /// Timeout, connection failure, 5xx or 429: the outcome is unknown, so retrying with the
    /// same idempotency key is safe and needed.
    #[error("provider unavailable: {0}")]
    Unavailable(String),
    /// The provider is not configured (missing credentials).
    #[error("provider not configured: {0}")]
    NotConfigured(&'static str),
}

impl GatewayError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, GatewayError::Unavailable(_))
    }
}

/// One payment provider. Every call has a timeout; calls that create something carry an
/// idempotency key that the adapter reuses on its own retries.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait PaymentGateway: Send + Sync {
    fn provider(&self) -> Provider;
    /// Charges (and captures) `amount`. MUST charge at most once per idempotency key, however
    /// often it is called.
    async fn charge(&self, request: &ChargeRequest) -> Result<ProviderPayment, GatewayError>;
    /// Captures an authorized payment.
    async fn capture(&self, reference: &str, idempotency_key: &str) -> Result<ProviderPayment, GatewayError>;
    async fn refund(&self, request: &RefundRequest) -> Result<ProviderRefund, GatewayError>;
    /// Reads the payment back from the provider (the truth, unlike a webhook body).
    async fn retrieve(&self, reference: &str) -> Result<ProviderPayment, GatewayError>;
    /// The charge made under `idempotency_key`, if any, without ever making one. A provider that
    /// cannot look charges up by key answers [`ChargeLookup::Unsupported`] (the default).
    async fn find_charge(&self, idempotency_key: &str) -> Result<ChargeLookup, GatewayError> {
        let _ = idempotency_key;
        Ok(ChargeLookup::Unsupported)
    }
}

/// What a provider holds under a charge's idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChargeLookup {
    Found(ProviderPayment),
    NotFound,
    /// The provider cannot tell (no lookup by key).
    Unsupported,
}

/// Picks the gateway of a provider (configured at start).
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait Gateways: Send + Sync {
    fn get(&self, provider: Provider) -> Option<std::sync::Arc<dyn PaymentGateway>>;
}

/// A webhook as received: raw body bytes and the headers (names lower-case).
#[derive(Debug, Clone, Default)]
pub struct WebhookRequest {
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl WebhookRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// Missing, malformed, wrong or stale signature: a 400, nothing applied.
    #[error("webhook signature rejected: {0}")]
    BadSignature(String),
    /// Signed correctly but not an event this shop understands.
    #[error("malformed webhook: {0}")]
    Malformed(String),
    /// The verification itself could not be done (PayPal's verification API down): the
    /// provider retries.
    #[error(transparent)]
    Infrastructure(#[from] InfraError),
}

/// Verifies a provider's webhook and reads the event from it. Fails closed.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait WebhookVerifier: Send + Sync {
    async fn verify(&self, request: &WebhookRequest) -> Result<GatewayEvent, WebhookError>;
}

#[derive(Debug, thiserror::Error)]
pub enum SaveError {
    /// Another writer changed the payment since it was read (optimistic concurrency).
    #[error("payment changed concurrently")]
    Conflict,
    /// The provider reference is another payment's already (a provider answered with a charge
    /// this shop recorded for another payment).
    #[error("the provider reference belongs to another payment")]
    ReferenceTaken,
    #[error(transparent)]
    Infrastructure(#[from] InfraError),
}

/// A payment as read (`expected`) and as it should become.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentChange {
    pub expected: Payment,
    pub payment: Payment,
}

/// Payment storage. Writes that change a payment are optimistic: they apply only when the
/// payment is still as it was read (`updated_at` of `expected`).
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait PaymentRepository: Send + Sync {
    /// Inserts a payment. Idempotent per payment id.
    async fn insert(&self, payment: &Payment) -> Result<(), InfraError>;
    async fn get(&self, id: PaymentId) -> Result<Option<Payment>, InfraError>;
    async fn by_reference(&self, provider: Provider, reference: &str) -> Result<Option<Payment>, InfraError>;
    /// Every payment of an order, oldest first.
    async fn of_order(&self, order: OrderId) -> Result<Vec<Payment>, InfraError>;
    /// The order's first payment of `payment`'s kind (cash on delivery, or online), or, when it
    /// has none, `payment` inserted: one read-or-insert, for a saga step that may run again.
    async fn open_once(&self, payment: &Payment) -> Result<Payment, InfraError>;
    /// Stores `payment` when the stored row is still `expected`, with `jobs` staged in the
    /// outbox in the same transaction.
    async fn update(&self, expected: &Payment, payment: &Payment, jobs: &[NewJob]) -> Result<(), SaveError>;
    /// Books a refund (REQUESTED) and the payment it changed, with `jobs`, in one transaction
    /// (same rule as `update`).
    async fn book_refund(
        &self,
        expected: &Payment,
        payment: &Payment,
        refund: &Refund,
        jobs: &[NewJob],
    ) -> Result<(), SaveError>;
    async fn refund(&self, id: RefundId) -> Result<Option<Refund>, InfraError>;
    /// Stores the provider's answer to a REQUESTED refund, and when it failed the payment with
    /// its amount given back, in one transaction. `Ok(false)` when the refund was no longer
    /// REQUESTED (someone settled it first): nothing changed.
    async fn settle_refund(&self, refund: &Refund, restored: Option<PaymentChange>) -> Result<bool, SaveError>;
    /// The refunds of a payment, oldest first.
    async fn refunds(&self, payment: PaymentId) -> Result<Vec<Refund>, InfraError>;
    /// Records a provider event id; `false` when it was recorded before (a duplicate), in
    /// which case nothing else happens. The job is staged with it in one transaction.
    async fn record_event(&self, event: &GatewayEvent, job: &NewJob) -> Result<bool, InfraError>;
}

/// Publishes staged outbox jobs right after their commit (the relay catches the rest).
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait JobPublisher: Send + Sync {
    async fn publish(&self, jobs: &[NewJob]);

    /// For a sweep that found the work of these jobs undone (nothing staged them): offers them
    /// to the queue as `JobQueue::reoffer` does, so that a job dead-lettered because its retries
    /// ran out during an outage runs again. Failures are logged; the next sweep offers again.
    async fn reoffer(&self, jobs: &[NewJob], revive_after: std::time::Duration);
}

/// How long a webhook's timestamp stays acceptable (Stripe's default tolerance).
pub const WEBHOOK_TOLERANCE: Duration = Duration::from_secs(300);
