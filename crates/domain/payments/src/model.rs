//! Payments, refunds and provider events.

use std::fmt;

use chrono::{DateTime, Utc};
use ecom_kernel::{changed_at, entity_id, CustomerId, Money, MoneyError, OrderId};

entity_id!(
    /// Identifies a payment (one per order and attempt).
    PaymentId
);
entity_id!(
    /// Identifies a refund of a payment.
    RefundId
);

/// Who moves the money.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Provider {
    /// The built-in simulator (Stripe's test tokens decide the outcome).
    Simulated,
    Stripe,
    PayPal,
    /// Cash collected by the courier, recorded by an admin.
    CashOnDelivery,
}

impl Provider {
    pub const ALL: [Provider; 4] = [Provider::Simulated, Provider::Stripe, Provider::PayPal, Provider::CashOnDelivery];

    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Simulated => "simulated",
            Provider::Stripe => "stripe",
            Provider::PayPal => "paypal",
            Provider::CashOnDelivery => "cash_on_delivery",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == raw)
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a payment stands. Serialized in SCREAMING_SNAKE_CASE, as in the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PaymentStatus {
    Pending,
    Authorized,
    Paid,
    Failed,
    Refunded,
    PartiallyRefunded,
    CollectOnDelivery,
}

impl PaymentStatus {
    pub const ALL: [PaymentStatus; 7] = [
        PaymentStatus::Pending,
        PaymentStatus::Authorized,
        PaymentStatus::Paid,
        PaymentStatus::Failed,
        PaymentStatus::Refunded,
        PaymentStatus::PartiallyRefunded,
        PaymentStatus::CollectOnDelivery,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PaymentStatus::Pending => "PENDING",
            PaymentStatus::Authorized => "AUTHORIZED",
            PaymentStatus::Paid => "PAID",
            PaymentStatus::Failed => "FAILED",
            PaymentStatus::Refunded => "REFUNDED",
            PaymentStatus::PartiallyRefunded => "PARTIALLY_REFUNDED",
            PaymentStatus::CollectOnDelivery => "COLLECT_ON_DELIVERY",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == raw)
    }
}

/// Why a provider declined or failed a payment (Stripe's decline codes, which PayPal's map onto).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeclineReason {
    CardDeclined,
    InsufficientFunds,
    ExpiredCard,
    IncorrectCvc,
    ProcessingError,
    /// The customer or provider canceled it.
    Canceled,
    /// Any other code the provider gave.
    Other(String),
}

impl DeclineReason {
    /// The provider-neutral code stored and shown as `failureReason`.
    pub fn code(&self) -> &str {
        match self {
            DeclineReason::CardDeclined => "card_declined",
            DeclineReason::InsufficientFunds => "insufficient_funds",
            DeclineReason::ExpiredCard => "expired_card",
            DeclineReason::IncorrectCvc => "incorrect_cvc",
            DeclineReason::ProcessingError => "processing_error",
            DeclineReason::Canceled => "canceled",
            DeclineReason::Other(code) => code,
        }
    }

    /// From a Stripe `decline_code` / error `code` (PayPal adapters map their issues onto these).
    pub fn from_code(code: &str) -> Self {
        match code {
            "card_declined" | "generic_decline" | "do_not_honor" => DeclineReason::CardDeclined,
            "insufficient_funds" => DeclineReason::InsufficientFunds,
            "expired_card" => DeclineReason::ExpiredCard,
            "incorrect_cvc" => DeclineReason::IncorrectCvc,
            "processing_error" => DeclineReason::ProcessingError,
            "canceled" => DeclineReason::Canceled,
            other => DeclineReason::Other(other.to_owned()),
        }
    }
}

impl fmt::Display for DeclineReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// A transition the payment state machine refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PaymentRuleError {
    #[error("a {from:?} payment cannot become {to:?}")]
    InvalidTransition { from: PaymentStatus, to: PaymentStatus },
    #[error("refund of {requested} exceeds the {refundable} still refundable")]
    OverRefund { requested: Money, refundable: Money },
    #[error("a refund must be a positive amount in the payment's currency")]
    InvalidRefundAmount,
    #[error("collected {collected}, but the payment is for {expected}")]
    AmountMismatch { collected: Money, expected: Money },
}

/// Whether a transition changed anything (events and retries repeat themselves).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Applied,
    Unchanged,
}

/// One payment of one order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payment {
    pub id: PaymentId,
    pub order_id: OrderId,
    pub customer_id: CustomerId,
    pub provider: Provider,
    /// The provider's id of the charge (PaymentIntent, PayPal order); none for COD.
    pub provider_reference: Option<String>,
    pub amount: Money,
    pub status: PaymentStatus,
    pub refunded: Money,
    pub failure_reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Payment {
    /// A new online payment, before the provider is asked.
    pub fn online(
        order_id: OrderId,
        customer_id: CustomerId,
        provider: Provider,
        amount: Money,
        now: DateTime<Utc>,
    ) -> Self {
        Self::new(order_id, customer_id, provider, amount, PaymentStatus::Pending, now)
    }

    /// A cash-on-delivery payment: collected by the courier, recorded by an admin.
    pub fn cash_on_delivery(order_id: OrderId, customer_id: CustomerId, amount: Money, now: DateTime<Utc>) -> Self {
        Self::new(order_id, customer_id, Provider::CashOnDelivery, amount, PaymentStatus::CollectOnDelivery, now)
    }

    fn new(
        order_id: OrderId,
        customer_id: CustomerId,
        provider: Provider,
        amount: Money,
        status: PaymentStatus,
        now: DateTime<Utc>,
    ) -> Self {
        Self {
            id: PaymentId::new(),
            order_id,
            customer_id,
            provider,
            provider_reference: None,
            amount,
            status,
            refunded: Money::zero(amount.currency()),
            failure_reason: None,
            created_at: now,
            updated_at: now,
        }
    }

    fn invalid(&self, to: PaymentStatus) -> PaymentRuleError {
        PaymentRuleError::InvalidTransition { from: self.status, to }
    }

    fn set(&mut self, status: PaymentStatus, now: DateTime<Utc>) {
        self.status = status;
        self.touch(now);
    }

    /// Stamps a change: `updated_at` moves strictly forward (see [`changed_at`]), so that it tells
    /// apart two writes that leave the status and the refunded amount as they were (a provider
    /// reference noted) however close together, or whatever the writer's clock says.
    pub(crate) fn touch(&mut self, now: DateTime<Utc>) {
        self.updated_at = changed_at(self.updated_at, now);
    }

    /// The provider holds the funds (to be captured).
    pub fn authorize(&mut self, reference: &str, now: DateTime<Utc>) -> Result<Change, PaymentRuleError> {
        match self.status {
            PaymentStatus::Pending => {
                self.provider_reference = Some(reference.to_owned());
                self.set(PaymentStatus::Authorized, now);
                Ok(Change::Applied)
            }
            // A late authorization event after the capture or the failure changes nothing.
            PaymentStatus::Authorized
            | PaymentStatus::Paid
            | PaymentStatus::Refunded
            | PaymentStatus::PartiallyRefunded
            | PaymentStatus::Failed => Ok(Change::Unchanged),
            PaymentStatus::CollectOnDelivery => Err(self.invalid(PaymentStatus::Authorized)),
        }
    }

    /// The provider took the money.
    pub fn succeed(&mut self, reference: &str, now: DateTime<Utc>) -> Result<Change, PaymentRuleError> {
        match self.status {
            PaymentStatus::Pending | PaymentStatus::Authorized => {
                self.provider_reference = Some(reference.to_owned());
                self.set(PaymentStatus::Paid, now);
                Ok(Change::Applied)
            }
            PaymentStatus::Paid | PaymentStatus::Refunded | PaymentStatus::PartiallyRefunded => Ok(Change::Unchanged),
            PaymentStatus::Failed | PaymentStatus::CollectOnDelivery => Err(self.invalid(PaymentStatus::Paid)),
        }
    }

    /// The provider declined, or the payment was canceled before any money moved.
    pub fn fail(&mut self, reason: &DeclineReason, now: DateTime<Utc>) -> Result<Change, PaymentRuleError> {
        match self.status {
            PaymentStatus::Pending | PaymentStatus::Authorized => {
                self.failure_reason = Some(reason.code().to_owned());
                self.set(PaymentStatus::Failed, now);
                Ok(Change::Applied)
            }
            PaymentStatus::Failed => Ok(Change::Unchanged),
            PaymentStatus::Paid
            | PaymentStatus::Refunded
            | PaymentStatus::PartiallyRefunded
            | PaymentStatus::CollectOnDelivery => Err(self.invalid(PaymentStatus::Failed)),
        }
    }

    /// What can still be refunded.
    pub fn refundable(&self) -> Money {
        match self.status {
            PaymentStatus::Paid | PaymentStatus::PartiallyRefunded => {
                self.amount.checked_sub(self.refunded).unwrap_or(Money::zero(self.amount.currency()))
            }
            _ => Money::zero(self.amount.currency()),
        }
    }

    /// Checks a refund of `amount` (the whole refundable rest when `None`) and returns the amount.
    pub fn check_refund(&self, amount: Option<Money>) -> Result<Money, PaymentRuleError> {
        if !matches!(self.status, PaymentStatus::Paid | PaymentStatus::PartiallyRefunded) {
            return Err(self.invalid(PaymentStatus::Refunded));
        }
        let refundable = self.refundable();
        let amount = amount.unwrap_or(refundable);
        if amount.currency() != self.amount.currency() || !amount.is_positive() {
            return Err(PaymentRuleError::InvalidRefundAmount);
        }
        if amount.amount() > refundable.amount() {
            return Err(PaymentRuleError::OverRefund { requested: amount, refundable });
        }
        Ok(amount)
    }

    /// Books a refund the provider made.
    pub fn refund(&mut self, amount: Money, now: DateTime<Utc>) -> Result<(), PaymentRuleError> {
        let amount = self.check_refund(Some(amount))?;
        self.refunded =
            self.refunded.checked_add(amount).map_err(|_: MoneyError| PaymentRuleError::InvalidRefundAmount)?;
        let status =
            if self.refunded == self.amount { PaymentStatus::Refunded } else { PaymentStatus::PartiallyRefunded };
        self.set(status, now);
        Ok(())
    }

    /// Gives back a booked refund the provider refused.
    pub fn revert_refund(&mut self, amount: Money, now: DateTime<Utc>) -> Result<(), PaymentRuleError> {
        if amount.currency() != self.amount.currency() || amount.amount() > self.refunded.amount() {
            return Err(PaymentRuleError::InvalidRefundAmount);
        }
        self.refunded = self.refunded.checked_sub(amount).map_err(|_| PaymentRuleError::InvalidRefundAmount)?;
        let status = if self.refunded.is_positive() { PaymentStatus::PartiallyRefunded } else { PaymentStatus::Paid };
        self.set(status, now);
        Ok(())
    }

    /// Books what the provider reports as refunded in total (a refund made outside this shop,
    /// e.g. in the provider's dashboard). Never lowers what is booked.
    pub fn sync_refunded(&mut self, total: Money, now: DateTime<Utc>) -> Result<Change, PaymentRuleError> {
        if total.currency() != self.amount.currency() || total.amount() > self.amount.amount() {
            return Err(PaymentRuleError::InvalidRefundAmount);
        }
        if total.amount() <= self.refunded.amount() {
            return Ok(Change::Unchanged);
        }
        let more = total.checked_sub(self.refunded).map_err(|_| PaymentRuleError::InvalidRefundAmount)?;
        self.refund(more, now)?;
        Ok(Change::Applied)
    }

    /// The order of a cash-on-delivery payment was cancelled before delivery: no cash will be
    /// collected, and none can be recorded any more. FAILED, with reason `canceled`.
    pub fn cancel_collection(&mut self, now: DateTime<Utc>) -> Result<Change, PaymentRuleError> {
        match self.status {
            PaymentStatus::CollectOnDelivery => {
                self.failure_reason = Some(DeclineReason::Canceled.code().to_owned());
                self.set(PaymentStatus::Failed, now);
                Ok(Change::Applied)
            }
            PaymentStatus::Failed if self.provider == Provider::CashOnDelivery => Ok(Change::Unchanged),
            _ => Err(self.invalid(PaymentStatus::Failed)),
        }
    }

    /// Cash collected on delivery.
    pub fn record_cash(&mut self, collected: Money, now: DateTime<Utc>) -> Result<Change, PaymentRuleError> {
        match self.status {
            PaymentStatus::CollectOnDelivery => {
                if collected != self.amount {
                    return Err(PaymentRuleError::AmountMismatch { collected, expected: self.amount });
                }
                self.set(PaymentStatus::Paid, now);
                Ok(Change::Applied)
            }
            PaymentStatus::Paid if self.provider == Provider::CashOnDelivery && collected == self.amount => {
                Ok(Change::Unchanged)
            }
            _ => Err(self.invalid(PaymentStatus::Paid)),
        }
    }
}

/// Where a refund stands. A refund is booked (REQUESTED) before the provider is asked, so two
/// concurrent refunds can never together exceed what was paid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefundStatus {
    /// Booked; the provider has not answered yet (a job keeps asking with the same key).
    Requested,
    /// Accepted by the provider, settling (Stripe `pending`).
    Pending,
    Succeeded,
    /// The provider refused it; its amount was given back to the payment.
    Failed,
}

impl RefundStatus {
    pub const ALL: [RefundStatus; 4] =
        [RefundStatus::Requested, RefundStatus::Pending, RefundStatus::Succeeded, RefundStatus::Failed];

    pub fn as_str(self) -> &'static str {
        match self {
            RefundStatus::Requested => "REQUESTED",
            RefundStatus::Pending => "PENDING",
            RefundStatus::Succeeded => "SUCCEEDED",
            RefundStatus::Failed => "FAILED",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == raw)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refund {
    pub id: RefundId,
    pub payment_id: PaymentId,
    pub amount: Money,
    pub reason: Option<String>,
    pub provider_reference: Option<String>,
    pub status: RefundStatus,
    /// Why the provider refused it (FAILED), as the provider said it.
    pub failure_reason: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// What a provider says about a payment, read back from the provider (never from a webhook body).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderState {
    /// Waiting for the customer or the provider (3-D Secure, processing).
    Processing,
    /// Funds held, to be captured.
    Authorized,
    Succeeded,
    Failed(DeclineReason),
    Canceled,
}

/// A payment as the provider sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderPayment {
    pub reference: String,
    pub state: ProviderState,
    pub amount: Money,
    /// Refunded so far, in total.
    pub refunded: Money,
    /// The shop's payment this is, as the provider keeps it with the charge (Stripe's metadata,
    /// the simulator), when it does: an event about a charge the shop never recorded (its worker
    /// stopped between the provider's answer and its write) is matched to its payment by it.
    pub payment_id: Option<PaymentId>,
}

/// What a provider event announces; the handler re-reads the payment before acting on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    PaymentSucceeded,
    PaymentFailed,
    PaymentCanceled,
    Refunded,
    /// Any event this shop does not act on.
    Ignored,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::PaymentSucceeded => "payment_succeeded",
            EventKind::PaymentFailed => "payment_failed",
            EventKind::PaymentCanceled => "payment_canceled",
            EventKind::Refunded => "refunded",
            EventKind::Ignored => "ignored",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        [
            EventKind::PaymentSucceeded,
            EventKind::PaymentFailed,
            EventKind::PaymentCanceled,
            EventKind::Refunded,
            EventKind::Ignored,
        ]
        .into_iter()
        .find(|k| k.as_str() == raw)
    }
}

/// A verified provider event (from a webhook, or from the simulator).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayEvent {
    pub provider: Provider,
    /// The provider's event id: each is applied once.
    pub event_id: String,
    pub kind: EventKind,
    /// The provider's type string (`payment_intent.succeeded`, `PAYMENT.CAPTURE.COMPLETED`).
    pub provider_type: String,
    /// The payment it is about (PaymentIntent id, PayPal order id).
    pub reference: Option<String>,
}

#[cfg(test)]
mod tests {
    use ecom_kernel::Currency;

    use super::*;

    fn usd(amount: i64) -> Money {
        Money::new(amount, Currency::USD)
    }

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap_or_default()
    }

    fn paid(amount: i64) -> Payment {
        let mut p = Payment::online(OrderId::new(), CustomerId::new(), Provider::Stripe, usd(amount), at(0));
        assert_eq!(p.succeed("pi_1", at(1)), Ok(Change::Applied));
        p
    }

    #[test]
    fn an_online_payment_goes_pending_authorized_paid_and_repeats_change_nothing() {
        let mut p = Payment::online(OrderId::new(), CustomerId::new(), Provider::Stripe, usd(5000), at(0));
        assert_eq!(p.status, PaymentStatus::Pending);
        assert_eq!(p.authorize("pi_1", at(1)), Ok(Change::Applied));
        assert_eq!((p.status, p.provider_reference.as_deref()), (PaymentStatus::Authorized, Some("pi_1")));
        assert_eq!(p.authorize("pi_1", at(2)), Ok(Change::Unchanged));
        assert_eq!(p.succeed("pi_1", at(3)), Ok(Change::Applied));
        assert_eq!((p.status, p.updated_at), (PaymentStatus::Paid, at(3)));
        assert_eq!(p.succeed("pi_1", at(4)), Ok(Change::Unchanged));
        assert_eq!(p.authorize("pi_1", at(5)), Ok(Change::Unchanged), "a late authorization is ignored");
        assert_eq!(p.updated_at, at(3));
    }

    #[test]
    fn every_change_is_stamped_later_than_the_last_even_in_the_same_instant_or_with_a_clock_behind() {
        let mut p = paid(5000);
        let paid_at = p.updated_at;
        p.refund(usd(1000), paid_at).unwrap();
        assert!(p.updated_at > paid_at, "the same instant");
        let refunded_at = p.updated_at;
        p.refund(usd(1000), at(-60)).unwrap();
        assert!(p.updated_at > refunded_at, "a clock a minute behind");
    }

    #[test]
    fn a_decline_fails_the_payment_with_its_reason_and_a_paid_payment_cannot_fail() {
        let mut p = Payment::online(OrderId::new(), CustomerId::new(), Provider::Simulated, usd(100), at(0));
        assert_eq!(p.fail(&DeclineReason::InsufficientFunds, at(1)), Ok(Change::Applied));
        assert_eq!((p.status, p.failure_reason.as_deref()), (PaymentStatus::Failed, Some("insufficient_funds")));
        assert_eq!(p.fail(&DeclineReason::CardDeclined, at(2)), Ok(Change::Unchanged));
        assert_eq!(p.failure_reason.as_deref(), Some("insufficient_funds"), "the first reason stays");
        assert!(matches!(p.succeed("pi", at(3)), Err(PaymentRuleError::InvalidTransition { .. })));

        let mut p = paid(100);
        assert_eq!(
            p.fail(&DeclineReason::CardDeclined, at(2)),
            Err(PaymentRuleError::InvalidTransition { from: PaymentStatus::Paid, to: PaymentStatus::Failed })
        );
    }

    #[test]
    fn partial_refunds_add_up_to_a_full_refund_and_never_exceed_what_was_paid() {
        let mut p = paid(5000);
        assert_eq!(p.check_refund(Some(usd(2000))), Ok(usd(2000)));
        p.refund(usd(2000), at(2)).unwrap();
        assert_eq!((p.status, p.refunded, p.refundable()), (PaymentStatus::PartiallyRefunded, usd(2000), usd(3000)));
        assert_eq!(
            p.check_refund(Some(usd(3001))),
            Err(PaymentRuleError::OverRefund { requested: usd(3001), refundable: usd(3000) })
        );
        assert_eq!(
            p.refund(usd(3001), at(3)),
            Err(PaymentRuleError::OverRefund { requested: usd(3001), refundable: usd(3000) })
        );
        assert_eq!(p.refunded, usd(2000), "a refused refund changes nothing");
        assert_eq!(p.check_refund(None), Ok(usd(3000)), "no amount: the rest");
        p.refund(usd(3000), at(4)).unwrap();
        assert_eq!((p.status, p.refunded, p.refundable()), (PaymentStatus::Refunded, usd(5000), usd(0)));
        assert!(matches!(p.check_refund(Some(usd(1))), Err(PaymentRuleError::InvalidTransition { .. })));
    }

    #[test]
    fn refunds_must_be_positive_in_the_payments_currency_of_a_paid_payment() {
        let p = paid(5000);
        assert_eq!(p.check_refund(Some(usd(0))), Err(PaymentRuleError::InvalidRefundAmount));
        assert_eq!(p.check_refund(Some(usd(-5))), Err(PaymentRuleError::InvalidRefundAmount));
        let eur = Currency::parse("EUR").unwrap();
        assert_eq!(p.check_refund(Some(Money::new(100, eur))), Err(PaymentRuleError::InvalidRefundAmount));
        let pending = Payment::online(OrderId::new(), CustomerId::new(), Provider::Stripe, usd(5000), at(0));
        assert!(matches!(pending.check_refund(None), Err(PaymentRuleError::InvalidTransition { .. })));
    }

    #[test]
    fn a_refused_refund_gives_its_amount_back() {
        let mut p = paid(5000);
        p.refund(usd(5000), at(2)).unwrap();
        p.revert_refund(usd(5000), at(3)).unwrap();
        assert_eq!((p.status, p.refunded), (PaymentStatus::Paid, usd(0)));
        p.refund(usd(1000), at(4)).unwrap();
        p.refund(usd(500), at(5)).unwrap();
        p.revert_refund(usd(500), at(6)).unwrap();
        assert_eq!((p.status, p.refunded), (PaymentStatus::PartiallyRefunded, usd(1000)));
        assert_eq!(p.revert_refund(usd(1001), at(7)), Err(PaymentRuleError::InvalidRefundAmount));
    }

    #[test]
    fn refunds_made_at_the_provider_are_booked_without_counting_twice() {
        let mut p = paid(5000);
        p.refund(usd(1000), at(2)).unwrap();
        assert_eq!(p.sync_refunded(usd(1000), at(3)), Ok(Change::Unchanged));
        assert_eq!(p.sync_refunded(usd(500), at(3)), Ok(Change::Unchanged), "never lowered");
        assert_eq!(p.sync_refunded(usd(5000), at(4)), Ok(Change::Applied));
        assert_eq!((p.status, p.refunded), (PaymentStatus::Refunded, usd(5000)));
        assert_eq!(p.sync_refunded(usd(5001), at(5)), Err(PaymentRuleError::InvalidRefundAmount));
    }

    #[test]
    fn cash_on_delivery_is_paid_when_the_exact_amount_is_recorded_once() {
        let mut p = Payment::cash_on_delivery(OrderId::new(), CustomerId::new(), usd(4200), at(0));
        assert_eq!((p.status, p.provider), (PaymentStatus::CollectOnDelivery, Provider::CashOnDelivery));
        assert_eq!(
            p.record_cash(usd(4000), at(1)),
            Err(PaymentRuleError::AmountMismatch { collected: usd(4000), expected: usd(4200) })
        );
        assert!(matches!(p.authorize("x", at(1)), Err(PaymentRuleError::InvalidTransition { .. })));
        assert_eq!(p.record_cash(usd(4200), at(2)), Ok(Change::Applied));
        assert_eq!(p.status, PaymentStatus::Paid);
        assert_eq!(p.record_cash(usd(4200), at(3)), Ok(Change::Unchanged));
        let mut online = paid(4200);
        assert!(matches!(online.record_cash(usd(4200), at(3)), Err(PaymentRuleError::InvalidTransition { .. })));

        let mut cancelled = Payment::cash_on_delivery(OrderId::new(), CustomerId::new(), usd(4200), at(0));
        assert_eq!(cancelled.cancel_collection(at(1)), Ok(Change::Applied));
        assert_eq!((cancelled.status, cancelled.failure_reason.as_deref()), (PaymentStatus::Failed, Some("canceled")));
        assert_eq!(cancelled.cancel_collection(at(2)), Ok(Change::Unchanged));
        assert!(
            matches!(cancelled.record_cash(usd(4200), at(3)), Err(PaymentRuleError::InvalidTransition { .. })),
            "no cash is recorded for a cancelled order"
        );
        assert!(matches!(p.cancel_collection(at(4)), Err(PaymentRuleError::InvalidTransition { .. })), "collected");
        assert!(matches!(online.cancel_collection(at(4)), Err(PaymentRuleError::InvalidTransition { .. })));
    }

    #[test]
    fn names_round_trip() {
        for s in PaymentStatus::ALL {
            assert_eq!(PaymentStatus::parse(s.as_str()), Some(s));
        }
        for p in Provider::ALL {
            assert_eq!(Provider::parse(p.as_str()), Some(p));
        }
        for s in RefundStatus::ALL {
            assert_eq!(RefundStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(DeclineReason::from_code("generic_decline"), DeclineReason::CardDeclined);
        assert_eq!(DeclineReason::from_code("lost_card").code(), "lost_card");
    }
}
