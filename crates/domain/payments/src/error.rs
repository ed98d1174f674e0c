use ecom_kernel::{InfraError, OrderId};

use crate::model::{DeclineReason, PaymentId, PaymentRuleError, Provider};

#[derive(Debug, thiserror::Error)]
pub enum PaymentError {
    #[error("no payment {0}")]
    NotFound(PaymentId),
    #[error("order {0} has no cash-on-delivery payment")]
    NoCashPayment(OrderId),
    #[error(transparent)]
    Rule(#[from] PaymentRuleError),
    #[error("the provider declined: {0}")]
    Declined(DeclineReason),
    #[error("the provider refused the request: {0}")]
    ProviderRejected(String),
    /// The provider refused a booked refund: the amount went back to the payment, which
    /// changed again, so its order has to follow it.
    #[error("the provider refused the refund: {reason}")]
    RefundRefused { payment: PaymentId, order: OrderId, reason: String },
    #[error("the payment provider is unavailable: {0}")]
    ProviderUnavailable(String),
    #[error("no gateway is configured for {0}")]
    ProviderNotConfigured(Provider),
    #[error("the payment changed concurrently; try again")]
    Conflict,
    #[error(transparent)]
    Infrastructure(#[from] InfraError),
}
