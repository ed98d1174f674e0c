//! The payment use cases: charging (for the checkout saga), refunds, cash on delivery, provider
//! webhooks and the provider events they enqueue.

use std::sync::Arc;

use ecom_kernel::jobs::{JobId, NewJob, QueueName};
use ecom_kernel::{Clock, CustomerId, InfraError, Money, OrderId};
use serde::{Deserialize, Serialize};

use crate::error::PaymentError;
use crate::model::{
    Change, DeclineReason, EventKind, GatewayEvent, Payment, PaymentId, PaymentStatus, Provider, ProviderPayment,
    ProviderState, Refund, RefundId, RefundStatus,
};
use crate::ports::{
    ChargeLookup, ChargeRequest, GatewayError, Gateways, JobPublisher, PaymentChange, PaymentGateway,
    PaymentRepository, RefundRequest, SaveError, WebhookError, WebhookRequest, WebhookVerifier,
};

/// Job kind: re-read a payment from its provider and apply what it says.
pub const PAYMENT_EVENT_KIND: &str = "payments.event";
/// Job kind: ask the provider for a booked refund until it answers.
pub const REFUND_KIND: &str = "payments.refund";
/// Job kind: cash recorded or given back; its order shows it.
pub const CHANGED_KIND: &str = "payments.changed";

/// Payload of a `payments.event` job (schema version 1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentEventJob {
    pub provider: String,
    pub reference: String,
    pub event_id: String,
    pub kind: String,
}

/// Payload of a `payments.refund` job (schema version 1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RefundJob {
    pub refund_id: RefundId,
}

/// Payload of a `payments.changed` job (schema version 1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentChangedJob {
    pub payment_id: PaymentId,
    pub order_id: OrderId,
}

/// The job that brings a payment's order along after `payment`'s change (named by `change`: one
/// job per change), staged with the change: the order follows even when the request that made it
/// stops before it told the order.
fn changed_job(payment: &Payment, change: &str) -> NewJob {
    follow_job(payment.order_id, payment.id, change)
}

/// The job that has the order show its payment as it stands (`change` names why, in its
/// deterministic id: one job per change).
pub fn follow_job(order: OrderId, payment: PaymentId, change: &str) -> NewJob {
    NewJob {
        id: JobId::new(format!("payment-changed:{payment}:{change}")),
        queue: QueueName::PaymentEvents,
        kind: CHANGED_KIND.to_owned(),
        payload: serde_json::json!(PaymentChangedJob { payment_id: payment, order_id: order }),
        schema_version: 1,
        max_attempts: 10,
        trace_id: None,
    }
}

/// The job that applies a provider event (deterministic id: one job per event).
pub fn payment_event_job(provider: Provider, event_id: &str, reference: &str, kind: EventKind) -> NewJob {
    NewJob {
        id: JobId::new(format!("payment-event:{}:{event_id}", provider.as_str())),
        queue: QueueName::PaymentEvents,
        kind: PAYMENT_EVENT_KIND.to_owned(),
        payload: serde_json::json!(PaymentEventJob {
            provider: provider.as_str().to_owned(),
            reference: reference.to_owned(),
            event_id: event_id.to_owned(),
            kind: kind.as_str().to_owned(),
        }),
        schema_version: 1,
        max_attempts: 8,
        trace_id: None,
    }
}

fn refund_job(refund: RefundId) -> NewJob {
    NewJob {
        id: JobId::new(format!("refund:{refund}")),
        queue: QueueName::PaymentEvents,
        kind: REFUND_KIND.to_owned(),
        payload: serde_json::json!(RefundJob { refund_id: refund }),
        schema_version: 1,
        max_attempts: 10,
        trace_id: None,
    }
}

/// How much of a provider's refusal is kept (the refunds table holds at most this much).
const REFUSAL_CHARS: usize = 500;

/// A refund refusal as recorded and told: the provider's words, at most [`REFUSAL_CHARS`].
fn refusal_reason(refused: &GatewayError) -> String {
    refused.to_string().chars().take(REFUSAL_CHARS).collect()
}

/// Why a refused refund was refused: the provider's reason, when recorded (refusals recorded
/// before the reason was kept have none).
fn stated_refusal(refund: &Refund) -> String {
    refund.failure_reason.clone().unwrap_or_else(|| "the provider refused the refund".into())
}

/// Failure reason of a payment whose token paid for another payment already.
pub const TOKEN_USED: &str = "rejected: the payment token already paid for another order";

/// The longest provider event id taken: its job id (`payment-event:<provider>:<event id>`) must
/// stay within the 200 characters a job id may have. Stripe's and PayPal's are about 30-40.
const MAX_EVENT_ID: usize = 160;

/// The refusal of a refund the provider refused (recorded FAILED with its reason).
fn refused(payment: &Payment, refund: &Refund) -> PaymentError {
    PaymentError::RefundRefused { payment: payment.id, order: payment.order_id, reason: stated_refusal(refund) }
}

/// A refund's recorded answer as every caller hears it: refused (by whoever asked first) is a
/// refusal, anything else the refund as it stands.
fn recorded_answer(payment: Payment, refund: Refund) -> Result<RefundResult, PaymentError> {
    match refund.status {
        RefundStatus::Failed => Err(refused(&payment, &refund)),
        _ => Ok(RefundResult { payment, refund }),
    }
}

fn save_error(e: SaveError) -> PaymentError {
    match e {
        SaveError::Conflict => PaymentError::Conflict,
        // Only a charge's first answer can meet another payment's reference (handled where it
        // is recorded); anywhere else it is unexpected, and retried as before.
        SaveError::ReferenceTaken => {
            PaymentError::Infrastructure(InfraError::unexpected("the provider's reference belongs to another payment"))
        }
        SaveError::Infrastructure(e) => PaymentError::Infrastructure(e),
    }
}

/// Who is looking (owners see their own payments, admins all).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Viewer {
    pub customer_id: CustomerId,
    pub admin: bool,
}

impl Viewer {
    fn may_see(&self, payment: &Payment) -> bool {
        self.admin || payment.customer_id == self.customer_id
    }
}

/// What became of a webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookOutcome {
    /// New: recorded, and its job queued (unless the shop ignores that event type).
    Accepted(GatewayEvent),
    /// Seen before: nothing happened.
    Duplicate(GatewayEvent),
}

/// What applying a provider event did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventApplied {
    Changed(Payment),
    Unchanged(Payment),
    /// No payment of this shop has that reference.
    UnknownPayment,
}

/// What giving back everything taken for an order came to, with the payment it concerns (the
/// order shows that payment's status).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderRefund {
    /// Nothing was taken (no payment, declined).
    NothingTaken,
    /// Cash on delivery, not collected: no cash will be (its payment is FAILED, `canceled`).
    CollectionCancelled(PaymentId),
    /// Refunded, or booked and on its way.
    Refunded(PaymentId),
    /// The provider refused the refund (now, or the payment's latest one before): the money is
    /// still taken (the payment PAID or PARTIALLY_REFUNDED again) and only a person can settle
    /// it now (a refund by hand, once the provider allows it).
    Refused { payment: PaymentId, reason: String },
    /// Authorized or processing at the provider: refund once it is captured.
    NotYetCapturable,
}

/// A refund together with the payment it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundResult {
    pub payment: Payment,
    pub refund: Refund,
}

pub struct PaymentService {
    payments: Arc<dyn PaymentRepository>,
    gateways: Arc<dyn Gateways>,
    publisher: Arc<dyn JobPublisher>,
    clock: Arc<dyn Clock>,
}

impl PaymentService {
    pub fn new(
        payments: Arc<dyn PaymentRepository>,
        gateways: Arc<dyn Gateways>,
        publisher: Arc<dyn JobPublisher>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self { payments, gateways, publisher, clock }
    }

    fn gateway(&self, provider: Provider) -> Result<Arc<dyn PaymentGateway>, PaymentError> {
        self.gateways.get(provider).ok_or(PaymentError::ProviderNotConfigured(provider))
    }

    /// The payment's status as it stands now; `None` when there is no such payment.
    pub async fn status(&self, id: PaymentId) -> Result<Option<PaymentStatus>, PaymentError> {
        Ok(self.payments.get(id).await?.map(|p| p.status))
    }

    /// Whether the provider answered every refund of the payment: none is still only booked
    /// (REQUESTED). An accepted refund still settling (PENDING) counts as answered: nothing
    /// here follows it further, and the payment already shows it.
    pub async fn refunds_answered(&self, id: PaymentId) -> Result<bool, PaymentError> {
        Ok(self.payments.refunds(id).await?.iter().all(|r| r.status != RefundStatus::Requested))
    }

    /// The order's payment refunded in full, if any, and whether the provider answered every
    /// refund of it (none only booked, which a refusal could undo).
    pub async fn refunded_payment(&self, order: OrderId) -> Result<Option<(PaymentId, bool)>, PaymentError> {
        for payment in self.payments.of_order(order).await? {
            if payment.status == PaymentStatus::Refunded {
                return Ok(Some((payment.id, self.refunds_answered(payment.id).await?)));
            }
        }
        Ok(None)
    }

    async fn load(&self, id: PaymentId) -> Result<Payment, PaymentError> {
        self.payments.get(id).await?.ok_or(PaymentError::NotFound(id))
    }

    async fn save(&self, expected: &Payment, payment: &Payment) -> Result<(), PaymentError> {
        self.save_with(expected, payment, &[]).await
    }

    /// Saves the payment with jobs staged in the same transaction.
    async fn save_with(&self, expected: &Payment, payment: &Payment, jobs: &[NewJob]) -> Result<(), PaymentError> {
        self.payments.update(expected, payment, jobs).await.map_err(save_error)
    }

    /// A payment as its owner or an admin sees it; others are told it does not exist.
    pub async fn view(&self, id: PaymentId, viewer: Viewer) -> Result<Payment, PaymentError> {
        let payment = self.load(id).await?;
        if viewer.may_see(&payment) {
            Ok(payment)
        } else {
            Err(PaymentError::NotFound(id))
        }
    }

    /// The payments of an order, oldest first (empty for an order the viewer may not see).
    pub async fn of_order(&self, order: OrderId, viewer: Viewer) -> Result<Vec<Payment>, PaymentError> {
        let payments = self.payments.of_order(order).await?;
        Ok(payments.into_iter().filter(|p| viewer.may_see(p)).collect())
    }

    pub async fn refunds(&self, id: PaymentId) -> Result<Vec<Refund>, PaymentError> {
        Ok(self.payments.refunds(id).await?)
    }

    /// Opens the online payment of an order (PENDING), before the provider is asked.
    pub async fn open_online(
        &self,
        order: OrderId,
        customer: CustomerId,
        provider: Provider,
        amount: Money,
    ) -> Result<Payment, PaymentError> {
        let payment = Payment::online(order, customer, provider, amount, self.clock.now());
        self.payments.insert(&payment).await?;
        Ok(payment)
    }

    /// Opens the cash-on-delivery payment of an order (COLLECT_ON_DELIVERY).
    pub async fn open_cash_on_delivery(
        &self,
        order: OrderId,
        customer: CustomerId,
        amount: Money,
    ) -> Result<Payment, PaymentError> {
        let payment = Payment::cash_on_delivery(order, customer, amount, self.clock.now());
        self.payments.insert(&payment).await?;
        Ok(payment)
    }

    /// Charges the order's online payment: the one opened earlier (a retried saga step) or a
    /// new one. See [`PaymentService::charge`].
    pub async fn charge_order(
        &self,
        order: OrderId,
        customer: CustomerId,
        provider: Provider,
        amount: Money,
        token: &str,
    ) -> Result<Payment, PaymentError> {
        let new = Payment::online(order, customer, provider, amount, self.clock.now());
        let payment = self.payments.open_once(&new).await?;
        self.charge_loaded(payment, token).await
    }

    /// The order's online payment opened for a charge whose answer was never recorded (still
    /// PENDING, no provider reference: the worker stopped between the provider's answer and its
    /// write): the provider is asked what it holds under the charge's idempotency key (never to
    /// charge), and a charge found is recorded, so that it can be refunded. Stays as it is when
    /// the provider holds nothing under the key or cannot look charges up by key. `None` when the
    /// order has no online payment.
    pub async fn recover_charge(&self, order: OrderId) -> Result<Option<Payment>, PaymentError> {
        let online = self.payments.of_order(order).await?.into_iter().find(|p| p.provider != Provider::CashOnDelivery);
        let payment = match online {
            Some(payment) if payment.status == PaymentStatus::Pending && payment.provider_reference.is_none() => {
                payment
            }
            other => return Ok(other),
        };
        let provider = payment.provider;
        match self.gateway(provider)?.find_charge(&charge_key(order)).await.map_err(|e| read_error(e, provider))? {
            ChargeLookup::Found(seen) => Ok(Some(self.record_seen(&payment, &seen).await?.0)),
            ChargeLookup::NotFound | ChargeLookup::Unsupported => Ok(Some(payment)),
        }
    }

    /// Opens the order's cash-on-delivery payment once.
    pub async fn open_cash_for_order(
        &self,
        order: OrderId,
        customer: CustomerId,
        amount: Money,
    ) -> Result<Payment, PaymentError> {
        let new = Payment::cash_on_delivery(order, customer, amount, self.clock.now());
        Ok(self.payments.open_once(&new).await?)
    }

    /// Gives back everything taken for an order (compensation, cancellation), and cancels the
    /// collection of cash not collected yet. Idempotent: run again, it books nothing more (a
    /// refused refund included: see `OrderRefund::Refused`).
    pub async fn refund_order(&self, order: OrderId, reason: &str) -> Result<OrderRefund, PaymentError> {
        let (mut refused, mut refunded, mut cancelled) = (None, None, None);
        for payment in self.payments.of_order(order).await? {
            match payment.status {
                PaymentStatus::Paid | PaymentStatus::PartiallyRefunded => {
                    // Once the provider refused to refund all this payment holds, it is not asked
                    // again by itself (it would refuse again, each time a new refund): a person
                    // decides, and refunds by hand when the provider allows it. (A refused refund
                    // of a part of it, an admin's goodwill, says nothing of a full one.)
                    if let Some(reason) = self.last_refund_refusal(&payment).await? {
                        refused.get_or_insert((payment.id, reason));
                        continue;
                    }
                    match self.refund(payment.id, None, Some(reason.to_owned())).await {
                        Ok(_) => {
                            refunded.get_or_insert(payment.id);
                        }
                        // Refused now, or by its job first.
                        Err(PaymentError::RefundRefused { reason, .. }) => {
                            refused.get_or_insert((payment.id, reason));
                        }
                        Err(err) => return Err(err),
                    }
                }
                PaymentStatus::Refunded => {
                    refunded.get_or_insert(payment.id);
                }
                PaymentStatus::Authorized | PaymentStatus::Pending if payment.provider_reference.is_some() => {
                    return Ok(OrderRefund::NotYetCapturable)
                }
                PaymentStatus::CollectOnDelivery | PaymentStatus::Failed
                    if payment.provider == Provider::CashOnDelivery =>
                {
                    let mut next = payment.clone();
                    if next.cancel_collection(self.clock.now())? == Change::Applied {
                        self.save(&payment, &next).await?;
                    }
                    cancelled.get_or_insert(payment.id);
                }
                _ => {}
            }
        }
        // Every payment had its turn; the money still taken is what the order shows first.
        Ok(match (refused, refunded, cancelled) {
            (Some((payment, reason)), _, _) => OrderRefund::Refused { payment, reason },
            (None, Some(payment), _) => OrderRefund::Refunded(payment),
            (None, None, Some(payment)) => OrderRefund::CollectionCancelled(payment),
            (None, None, None) => OrderRefund::NothingTaken,
        })
    }

    /// Why the provider refused the payment's latest refund, when that refund was of all the
    /// payment still holds; `None` otherwise.
    async fn last_refund_refusal(&self, payment: &Payment) -> Result<Option<String>, PaymentError> {
        let refunds = self.payments.refunds(payment.id).await?;
        Ok(refunds
            .iter()
            .max_by_key(|r| r.created_at)
            .filter(|r| r.status == RefundStatus::Failed && r.amount == payment.refundable())
            .map(stated_refusal))
    }

    /// Charges a PENDING payment with the client's token. The idempotency key is the order's,
    /// so a retry (after a timeout, a crash) never charges twice. A payment that already left
    /// PENDING is returned as it is. A decline ends FAILED (returned, not an error); an
    /// unreachable provider is `ProviderUnavailable` (retry later: same key).
    pub async fn charge(&self, id: PaymentId, token: &str) -> Result<Payment, PaymentError> {
        self.charge_loaded(self.load(id).await?, token).await
    }

    async fn charge_loaded(&self, payment: Payment, token: &str) -> Result<Payment, PaymentError> {
        if payment.status != PaymentStatus::Pending {
            return Ok(payment);
        }
        // Not configured (its keys removed): the payment stays PENDING, as it may hold a charge
        // an earlier attempt made without its answer, which `recover_charge` finds once the
        // provider can be asked again.
        let gateway = self.gateway(payment.provider)?;
        let request = ChargeRequest {
            idempotency_key: charge_key(payment.order_id),
            payment_id: payment.id,
            order_id: payment.order_id,
            amount: payment.amount,
            token: token.to_owned(),
        };
        let mut next = payment.clone();
        let now = self.clock.now();
        match gateway.charge(&request).await {
            Ok(seen) => {
                apply_state(&mut next, &seen, now)?;
            }
            Err(GatewayError::Declined(reason)) => {
                next.fail(&reason, now)?;
            }
            Err(GatewayError::Rejected(message)) => {
                next.fail(&DeclineReason::Other(format!("rejected: {message}")), now)?;
            }
            Err(GatewayError::Unavailable(message)) => return Err(PaymentError::ProviderUnavailable(message)),
            Err(GatewayError::NotConfigured(_)) => return Err(PaymentError::ProviderNotConfigured(payment.provider)),
        }
        match self.payments.update(&payment, &next, &[]).await {
            Ok(()) => Ok(next),
            // The provider answered with a charge recorded for another payment: the customer's
            // token paid for another order (an approved PayPal order used for a second checkout,
            // which PayPal reports as captured). The charge stays with the payment that recorded
            // it first (of two checkouts at once, not always the one whose call captured it).
            Err(SaveError::ReferenceTaken) => {
                let mut failed = payment.clone();
                failed.fail(&DeclineReason::Other(TOKEN_USED.into()), now)?;
                self.save(&payment, &failed).await?;
                Ok(failed)
            }
            Err(e) => Err(save_error(e)),
        }
    }

    /// An admin's refund of `amount` (everything still refundable when `None`). The refund is
    /// booked first (so concurrent refunds can never exceed what was paid) with a job that keeps
    /// asking the provider, then the provider is asked right away with the refund's own key.
    pub async fn refund(
        &self,
        id: PaymentId,
        amount: Option<Money>,
        reason: Option<String>,
    ) -> Result<RefundResult, PaymentError> {
        let payment = self.load(id).await?;
        let amount = payment.check_refund(amount)?;
        let mut next = payment.clone();
        let now = self.clock.now();
        next.refund(amount, now)?;
        // Cash goes back by hand: the booking is the whole refund. Online, the provider is asked.
        let cash = payment.provider == Provider::CashOnDelivery;
        let refund = Refund {
            id: RefundId::new(),
            payment_id: payment.id,
            amount,
            reason,
            provider_reference: None,
            status: if cash { RefundStatus::Succeeded } else { RefundStatus::Requested },
            failure_reason: None,
            created_at: now,
        };
        if cash {
            let job = changed_job(&next, &refund.id.to_string());
            self.book(&payment, &next, &refund, std::slice::from_ref(&job)).await?;
            self.publisher.publish(std::slice::from_ref(&job)).await;
            return Ok(RefundResult { payment: next, refund });
        }
        let job = refund_job(refund.id);
        self.book(&payment, &next, &refund, std::slice::from_ref(&job)).await?;
        self.publisher.publish(std::slice::from_ref(&job)).await;
        let result = match self.settle_refund(refund.id).await {
            Ok(result) => result,
            Err(refusal @ PaymentError::RefundRefused { .. }) => return Err(refusal),
            // Booked and queued: whatever stopped this attempt (the provider down, the payment
            // written meanwhile, by the refund's own job too), the refund as it stands now;
            // never an error a client would retry, which would book another refund.
            Err(_) => match self.payments.refund(refund.id).await {
                // Settled by its job meanwhile, refused: the admin hears of the refusal all the same.
                Ok(Some(stored)) if stored.status == RefundStatus::Failed => return Err(refused(&payment, &stored)),
                Ok(Some(stored)) if stored.status != RefundStatus::Requested => {
                    RefundResult { payment: self.load(payment.id).await.unwrap_or(next), refund: stored }
                }
                _ => RefundResult { payment: next, refund },
            },
        };
        Ok(result)
    }

    async fn book(
        &self,
        expected: &Payment,
        next: &Payment,
        refund: &Refund,
        jobs: &[NewJob],
    ) -> Result<(), PaymentError> {
        self.payments.book_refund(expected, next, refund, jobs).await.map_err(save_error)
    }

    /// Asks the provider for a REQUESTED refund (same key every time) and records its answer; a
    /// refusal gives the amount back to the payment (`RefundRefused`: its order follows it).
    /// Done by the admin request and by the refund job; whoever records first wins, the other
    /// changes nothing.
    pub async fn settle_refund(&self, id: RefundId) -> Result<RefundResult, PaymentError> {
        let refund =
            self.payments.refund(id).await?.ok_or(PaymentError::ProviderRejected(format!("no refund {id}")))?;
        let payment = self.load(refund.payment_id).await?;
        if refund.status != RefundStatus::Requested {
            return recorded_answer(payment, refund);
        }
        let reference = payment
            .provider_reference
            .clone()
            .ok_or_else(|| PaymentError::ProviderRejected("the payment has no provider reference".into()))?;
        let request = RefundRequest {
            idempotency_key: format!("refund-{}", refund.id),
            reference,
            amount: refund.amount,
            reason: refund.reason.clone(),
        };
        let answer = self.gateway(payment.provider)?.refund(&request).await;
        let mut settled = refund.clone();
        match answer {
            Ok(done) => {
                settled.status = done.status;
                settled.provider_reference = Some(done.reference);
                if !self.record_settlement(&settled, None).await? {
                    return self.settled_first(id).await;
                }
                Ok(RefundResult { payment: self.load(payment.id).await?, refund: settled })
            }
            Err(GatewayError::Unavailable(message)) => Err(PaymentError::ProviderUnavailable(message)),
            Err(GatewayError::NotConfigured(_)) => Err(PaymentError::ProviderNotConfigured(payment.provider)),
            Err(answer @ (GatewayError::Declined(_) | GatewayError::Rejected(_))) => {
                settled.status = RefundStatus::Failed;
                settled.failure_reason = Some(refusal_reason(&answer));
                let mut restored = payment.clone();
                restored.revert_refund(refund.amount, self.clock.now())?;
                let refusal = refused(&payment, &settled);
                let change = PaymentChange { expected: payment, payment: restored };
                if !self.record_settlement(&settled, Some(change)).await? {
                    return self.settled_first(id).await;
                }
                Err(refusal)
            }
        }
    }

    /// A refund whose answer another caller (the admin's request or the refund's job, asking
    /// at the same time) recorded first: what was recorded is the answer for every caller, not
    /// what this caller happened to hear (a provider may refuse the second of two requests with
    /// one key while the first still runs).
    async fn settled_first(&self, id: RefundId) -> Result<RefundResult, PaymentError> {
        let refund =
            self.payments.refund(id).await?.ok_or(PaymentError::ProviderRejected(format!("no refund {id}")))?;
        let payment = self.load(refund.payment_id).await?;
        recorded_answer(payment, refund)
    }

    async fn record_settlement(&self, refund: &Refund, restored: Option<PaymentChange>) -> Result<bool, PaymentError> {
        self.payments.settle_refund(refund, restored).await.map_err(save_error)
    }

    /// Cash collected on delivery: the order's COD payment becomes PAID. Recording the same
    /// amount again changes nothing.
    pub async fn record_cash(&self, order: OrderId, collected: Money) -> Result<Payment, PaymentError> {
        let payment = self
            .payments
            .of_order(order)
            .await?
            .into_iter()
            .find(|p| p.provider == Provider::CashOnDelivery)
            .ok_or(PaymentError::NoCashPayment(order))?;
        let mut next = payment.clone();
        if next.record_cash(collected, self.clock.now())? == Change::Applied {
            // Cash is recorded once per payment.
            let job = changed_job(&next, "cash");
            self.save_with(&payment, &next, std::slice::from_ref(&job)).await?;
            self.publisher.publish(std::slice::from_ref(&job)).await;
        }
        Ok(next)
    }

    /// A provider's webhook: verified (fails closed), recorded once by event id, and answered
    /// fast; the work happens in a `payments.event` job.
    pub async fn receive_webhook(
        &self,
        verifier: &dyn WebhookVerifier,
        request: &WebhookRequest,
    ) -> Result<WebhookOutcome, WebhookError> {
        let event = verifier.verify(request).await?;
        if event.event_id.is_empty() || event.event_id.len() > MAX_EVENT_ID {
            return Err(WebhookError::Malformed(format!("the event id must be 1 to {MAX_EVENT_ID} characters")));
        }
        // Signed, yet still input: text the database cannot store (NUL) is refused, not a 500.
        let texts = [Some(&event.event_id), Some(&event.provider_type), event.reference.as_ref()];
        if texts.into_iter().flatten().any(|text| text.chars().any(char::is_control)) {
            return Err(WebhookError::Malformed("the event's id, type and reference must be printable".into()));
        }
        let reference = event.reference.clone().unwrap_or_default();
        let job = payment_event_job(event.provider, &event.event_id, &reference, event.kind);
        if !self.payments.record_event(&event, &job).await? {
            return Ok(WebhookOutcome::Duplicate(event));
        }
        if event.kind != EventKind::Ignored && event.reference.is_some() {
            self.publisher.publish(std::slice::from_ref(&job)).await;
        }
        Ok(WebhookOutcome::Accepted(event))
    }

    /// Applies a provider event: re-reads the payment from the provider (a webhook body is
    /// never trusted) and moves the payment to what the provider says. Idempotent.
    pub async fn apply_event(&self, provider: Provider, reference: &str) -> Result<EventApplied, PaymentError> {
        let gateway = self.gateway(provider)?;
        let (payment, seen) = match self.payments.by_reference(provider, reference).await? {
            Some(payment) => (payment, gateway.retrieve(reference).await.map_err(|e| read_error(e, provider))?),
            None => match self.unrecorded(provider, gateway.as_ref(), reference).await? {
                Some(found) => found,
                None => return Ok(EventApplied::UnknownPayment),
            },
        };
        match self.record_seen(&payment, &seen).await? {
            (next, Change::Applied) => Ok(EventApplied::Changed(next)),
            (_, Change::Unchanged) => Ok(EventApplied::Unchanged(payment)),
        }
    }

    /// A charge the shop never recorded (its worker stopped between the provider's answer and
    /// its write): the provider names the payment it was made for, still waiting for its first
    /// answer, and the event records it (a cancelled order's then gets its money back). `None`
    /// when the provider names none, or one that is not waiting for this charge; a reference the
    /// provider does not know either is no one's.
    async fn unrecorded(
        &self,
        provider: Provider,
        gateway: &dyn PaymentGateway,
        reference: &str,
    ) -> Result<Option<(Payment, ProviderPayment)>, PaymentError> {
        // Only the provider being down is worth trying again: anything else it answers about a
        // reference no payment has (unknown, refused) makes it no one's, as before.
        let seen = match gateway.retrieve(reference).await {
            Ok(seen) => seen,
            Err(GatewayError::Unavailable(message)) => return Err(PaymentError::ProviderUnavailable(message)),
            Err(_) => return Ok(None),
        };
        let Some(id) = seen.payment_id else { return Ok(None) };
        Ok(self
            .payments
            .get(id)
            .await?
            .filter(|p| {
                p.provider == provider
                    && p.status == PaymentStatus::Pending
                    && p.provider_reference.is_none()
                    && p.amount == seen.amount
            })
            .map(|p| (p, seen)))
    }

    /// Moves the payment to what its provider reports and saves it if that changed anything.
    async fn record_seen(&self, payment: &Payment, seen: &ProviderPayment) -> Result<(Payment, Change), PaymentError> {
        let mut next = payment.clone();
        let changed = apply_state(&mut next, seen, self.clock.now())?;
        if changed == Change::Applied {
            self.save(payment, &next).await?;
        }
        Ok((next, changed))
    }
}

/// A provider's error when reading a payment back (a webhook's re-read, a lookup by key).
fn read_error(err: GatewayError, provider: Provider) -> PaymentError {
    match err {
        GatewayError::Unavailable(message) => PaymentError::ProviderUnavailable(message),
        GatewayError::Rejected(message) => PaymentError::ProviderRejected(message),
        GatewayError::Declined(reason) => PaymentError::Declined(reason),
        GatewayError::NotConfigured(_) => PaymentError::ProviderNotConfigured(provider),
    }
}

/// The idempotency key of an order's online charge: the same for every attempt, so that the
/// provider charges once.
fn charge_key(order: OrderId) -> String {
    format!("order-{order}-charge")
}

/// Moves a payment to what its provider reports (state, then refunds made at the provider).
fn apply_state(
    payment: &mut Payment,
    seen: &ProviderPayment,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Change, PaymentError> {
    let state_change = match &seen.state {
        ProviderState::Processing => {
            if payment.provider_reference.as_deref() == Some(seen.reference.as_str()) {
                Change::Unchanged
            } else {
                payment.provider_reference = Some(seen.reference.clone());
                payment.touch(now);
                Change::Applied
            }
        }
        ProviderState::Authorized => payment.authorize(&seen.reference, now)?,
        ProviderState::Succeeded => payment.succeed(&seen.reference, now)?,
        ProviderState::Failed(reason) => {
            if payment.provider_reference.is_none() {
                payment.provider_reference = Some(seen.reference.clone());
            }
            payment.fail(reason, now)?
        }
        ProviderState::Canceled => {
            if payment.provider_reference.is_none() {
                payment.provider_reference = Some(seen.reference.clone());
            }
            payment.fail(&DeclineReason::Canceled, now)?
        }
    };
    let refund_change =
        if seen.refunded.is_positive() { payment.sync_refunded(seen.refunded, now)? } else { Change::Unchanged };
    Ok(if state_change == Change::Applied || refund_change == Change::Applied {
        Change::Applied
    } else {
        Change::Unchanged
    })
}
