//! Payment jobs: provider events (re-read the payment from the provider, then apply it) and
//! refunds waiting for the provider's answer.

use std::sync::Arc;

use async_trait::async_trait;
use ecom_kernel::jobs::{JobEnvelope, JobOutcome};
use ecom_payments::model::Provider;
use ecom_payments::service::{EventApplied, PaymentChangedJob, PaymentEventJob, RefundJob};
use ecom_payments::{PaymentError, PaymentService};

use crate::{payload, JobFailure, JobHandler};

/// How many times an event about a payment this shop does not know (yet) is retried: the
/// provider's event can overtake the write that stores the payment's reference.
const UNKNOWN_PAYMENT_ATTEMPTS: u32 = 4;

/// Infrastructure and the provider's availability are worth retrying, and so is a provider
/// refusing the shop's keys (rotated, or lacking a permission): the refund is booked and the
/// event recorded, so once the keys are fixed the job's next run (or its revival) sends the
/// refund or applies the event; final, they would be lost. The rest is final.
fn classify(err: PaymentError) -> JobFailure {
    match err {
        PaymentError::ProviderUnavailable(_)
        | PaymentError::ProviderNotConfigured(_)
        | PaymentError::Conflict
        | PaymentError::Infrastructure(_) => JobFailure::Retryable(err.to_string()),
        other => JobFailure::Permanent(other.to_string()),
    }
}

/// `payments.event`.
pub struct PaymentEventHandler {
    pub payments: Arc<PaymentService>,
    /// Told when a payment changed, so that its order shows it.
    pub orders: Option<Arc<ecom_orders::OrderService>>,
}

/// Where a payment's change came from: its provider (an event), the shop (a refund settling,
/// cash recorded), or the provider refusing a refund (with its reason).
#[derive(Clone, Copy)]
enum Source<'a> {
    Provider,
    Shop,
    RefundRefused(&'a str),
}

async fn sync_order(
    orders: Option<&Arc<ecom_orders::OrderService>>,
    id: ecom_kernel::OrderId,
    payment: ecom_payments::model::PaymentId,
    source: Source<'_>,
) -> Result<(), JobFailure> {
    if let Some(orders) = orders {
        match source {
            Source::Provider => orders.payment_event(id, payment).await,
            Source::Shop => orders.payment_changed(id, payment).await,
            // The order shows the money taken again, and the refusal.
            Source::RefundRefused(reason) => orders.refund_refused(id, payment, reason).await,
        }
        .map_err(|e| JobFailure::Retryable(format!("order not updated: {e}")))?;
    }
    Ok(())
}

#[async_trait]
impl JobHandler for PaymentEventHandler {
    async fn handle(&self, job: &JobEnvelope) -> Result<JobOutcome, JobFailure> {
        let event: PaymentEventJob = payload(job)?;
        let provider = Provider::parse(&event.provider)
            .ok_or_else(|| JobFailure::Permanent(format!("unknown provider {:?}", event.provider)))?;
        match self.payments.apply_event(provider, &event.reference).await.map_err(classify)? {
            EventApplied::Changed(payment) => {
                sync_order(self.orders.as_ref(), payment.order_id, payment.id, Source::Provider).await?;
                tracing::info!(
                    payment_id = %payment.id,
                    order_id = %payment.order_id,
                    status = payment.status.as_str(),
                    event_id = %event.event_id,
                    "payment updated from its provider"
                );
            }
            EventApplied::Unchanged(payment) => {
                // A retry after the order update failed: bring the order along.
                sync_order(self.orders.as_ref(), payment.order_id, payment.id, Source::Provider).await?;
                tracing::debug!(payment_id = %payment.id, event_id = %event.event_id, "event changed nothing");
            }
            EventApplied::UnknownPayment if job.attempt < UNKNOWN_PAYMENT_ATTEMPTS => {
                return Err(JobFailure::Retryable(format!("no payment with reference {:?} yet", event.reference)));
            }
            EventApplied::UnknownPayment => {
                tracing::warn!(reference = %event.reference, event_id = %event.event_id, "event for an unknown payment dropped");
            }
        }
        Ok(JobOutcome::Done)
    }
}

/// `payments.refund`.
pub struct RefundHandler {
    pub payments: Arc<PaymentService>,
    pub orders: Option<Arc<ecom_orders::OrderService>>,
}

#[async_trait]
impl JobHandler for RefundHandler {
    async fn handle(&self, job: &JobEnvelope) -> Result<JobOutcome, JobFailure> {
        let RefundJob { refund_id } = payload(job)?;
        match self.payments.settle_refund(refund_id).await {
            Ok(result) => {
                let payment = &result.payment;
                sync_order(self.orders.as_ref(), payment.order_id, payment.id, Source::Shop).await?;
                tracing::info!(refund_id = %refund_id, status = result.refund.status.as_str(), "refund settled");
                Ok(JobOutcome::Done)
            }
            // The refusal is recorded and the amount given back (now, or already: the admin's
            // request got the answer first, or this job's last run stopped before the order
            // showed it): the order shows the payment as it is again (a person settles the rest).
            Err(PaymentError::RefundRefused { payment, order, reason }) => {
                tracing::warn!(refund_id = %refund_id, payment_id = %payment, %reason, "refund refused by the provider");
                sync_order(self.orders.as_ref(), order, payment, Source::RefundRefused(&reason)).await?;
                Ok(JobOutcome::Done)
            }
            // Nothing to ask the provider (no such refund, no reference): nothing to do.
            Err(PaymentError::ProviderRejected(reason)) => {
                tracing::warn!(refund_id = %refund_id, %reason, "refund not sent to the provider");
                Ok(JobOutcome::Done)
            }
            Err(err) => Err(classify(err)),
        }
    }
}

/// `payments.changed`: cash recorded or given back; its order shows it. Whoever made the change
/// (a request, a compensation) updates the order too; this job is the follow-up that cannot be
/// lost with it (staged with the change).
pub struct PaymentChangedHandler {
    pub orders: Arc<ecom_orders::OrderService>,
}

#[async_trait]
impl JobHandler for PaymentChangedHandler {
    async fn handle(&self, job: &JobEnvelope) -> Result<JobOutcome, JobFailure> {
        let PaymentChangedJob { payment_id, order_id } = payload(job)?;
        sync_order(Some(&self.orders), order_id, payment_id, Source::Shop).await?;
        Ok(JobOutcome::Done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_provider_refusing_the_shops_keys_is_retried_a_broken_rule_is_not() {
        assert!(matches!(classify(PaymentError::ProviderNotConfigured(Provider::Stripe)), JobFailure::Retryable(_)));
        assert!(matches!(classify(PaymentError::Conflict), JobFailure::Retryable(_)));
        assert!(matches!(classify(PaymentError::ProviderRejected("no reference".into())), JobFailure::Permanent(_)));
    }
}
