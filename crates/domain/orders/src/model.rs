//! The order aggregate and its pure rules.

use std::fmt;

use chrono::{DateTime, Utc};
use ecom_kernel::{changed_at, CustomerId, Money, MoneyError, OrderId, ProductId};
use ecom_payments::model::PaymentStatus;

/// Where an order stands. Online: PENDING_PAYMENT → CONFIRMED → PROCESSING → SHIPPED →
/// DELIVERED; cash on delivery starts at PENDING_CONFIRMATION; CANCELLED from any state before
/// SHIPPED; REFUNDED after DELIVERED.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OrderStatus {
    PendingPayment,
    PendingConfirmation,
    Confirmed,
    Processing,
    Shipped,
    Delivered,
    Cancelled,
    Refunded,
}

impl OrderStatus {
    pub const ALL: [OrderStatus; 8] = [
        OrderStatus::PendingPayment,
        OrderStatus::PendingConfirmation,
        OrderStatus::Confirmed,
        OrderStatus::Processing,
        OrderStatus::Shipped,
        OrderStatus::Delivered,
        OrderStatus::Cancelled,
        OrderStatus::Refunded,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::PendingPayment => "PENDING_PAYMENT",
            OrderStatus::PendingConfirmation => "PENDING_CONFIRMATION",
            OrderStatus::Confirmed => "CONFIRMED",
            OrderStatus::Processing => "PROCESSING",
            OrderStatus::Shipped => "SHIPPED",
            OrderStatus::Delivered => "DELIVERED",
            OrderStatus::Cancelled => "CANCELLED",
            OrderStatus::Refunded => "REFUNDED",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == raw)
    }

    /// The status machine: may an order go from `self` to `to`?
    pub fn can_become(self, to: OrderStatus) -> bool {
        use OrderStatus as S;
        matches!(
            (self, to),
            (S::PendingPayment, S::Confirmed | S::Cancelled)
                | (S::PendingConfirmation, S::Confirmed | S::Cancelled)
                | (S::Confirmed, S::Processing | S::Cancelled)
                | (S::Processing, S::Shipped | S::Cancelled)
                | (S::Shipped, S::Delivered)
                | (S::Delivered, S::Refunded)
        )
    }

    /// Nothing happens to an order in these states any more.
    pub fn is_final(self) -> bool {
        matches!(self, OrderStatus::Cancelled | OrderStatus::Refunded)
    }
}

impl fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the customer pays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PaymentMethod {
    CreditCard,
    DebitCard,
    PayPal,
    CashOnDelivery,
}

impl PaymentMethod {
    pub const ALL: [PaymentMethod; 4] =
        [PaymentMethod::CreditCard, PaymentMethod::DebitCard, PaymentMethod::PayPal, PaymentMethod::CashOnDelivery];

    pub fn as_str(self) -> &'static str {
        match self {
            PaymentMethod::CreditCard => "CREDIT_CARD",
            PaymentMethod::DebitCard => "DEBIT_CARD",
            PaymentMethod::PayPal => "PAYPAL",
            PaymentMethod::CashOnDelivery => "CASH_ON_DELIVERY",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.as_str() == raw)
    }

    pub fn is_online(self) -> bool {
        self != PaymentMethod::CashOnDelivery
    }

    /// The status a new order starts in.
    pub fn initial_status(self) -> OrderStatus {
        if self.is_online() {
            OrderStatus::PendingPayment
        } else {
            OrderStatus::PendingConfirmation
        }
    }

    /// The payment status a new order starts with.
    pub fn initial_payment_status(self) -> PaymentStatus {
        if self.is_online() {
            PaymentStatus::Pending
        } else {
            PaymentStatus::CollectOnDelivery
        }
    }
}

/// Why an order was cancelled. Serialized in SCREAMING_SNAKE_CASE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancellationReason {
    PaymentDeclined,
    OutOfStock,
    /// A product was removed or deactivated, or the cart changed, between checkout and the saga.
    InvalidCart,
    PaymentExpired,
    ConfirmationExpired,
    CustomerRequest,
    AdminRequest,
    /// The saga failed for good (retries exhausted) and was compensated.
    CheckoutFailed,
}

impl CancellationReason {
    pub const ALL: [CancellationReason; 8] = [
        CancellationReason::PaymentDeclined,
        CancellationReason::OutOfStock,
        CancellationReason::InvalidCart,
        CancellationReason::PaymentExpired,
        CancellationReason::ConfirmationExpired,
        CancellationReason::CustomerRequest,
        CancellationReason::AdminRequest,
        CancellationReason::CheckoutFailed,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            CancellationReason::PaymentDeclined => "PAYMENT_DECLINED",
            CancellationReason::OutOfStock => "OUT_OF_STOCK",
            CancellationReason::InvalidCart => "INVALID_CART",
            CancellationReason::PaymentExpired => "PAYMENT_EXPIRED",
            CancellationReason::ConfirmationExpired => "CONFIRMATION_EXPIRED",
            CancellationReason::CustomerRequest => "CUSTOMER_REQUEST",
            CancellationReason::AdminRequest => "ADMIN_REQUEST",
            CancellationReason::CheckoutFailed => "CHECKOUT_FAILED",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == raw)
    }
}

/// One line: the product as it was priced at checkout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderLine {
    pub product_id: ProductId,
    pub sku: String,
    pub name: String,
    pub unit_price: Money,
    pub quantity: u32,
    pub line_total: Money,
}

impl OrderLine {
    pub fn new(
        product_id: ProductId,
        sku: String,
        name: String,
        unit_price: Money,
        quantity: u32,
    ) -> Result<Self, OrderRuleError> {
        if quantity == 0 {
            return Err(OrderRuleError::EmptyLine);
        }
        let line_total = unit_price.checked_mul(quantity)?;
        Ok(Self { product_id, sku, name, unit_price, quantity, line_total })
    }
}

/// The shipping address, copied into the order (later edits of the address book do not move it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShippingAddress {
    pub full_name: String,
    pub line1: String,
    pub line2: Option<String>,
    pub city: String,
    pub state: Option<String>,
    pub postal_code: String,
    pub country: String,
    pub phone: Option<String>,
}

/// Shipping: a flat rate, free from a subtotal on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShippingPolicy {
    pub flat_rate: Money,
    pub free_from: Option<Money>,
}

impl ShippingPolicy {
    pub fn cost(&self, subtotal: Money) -> Money {
        match self.free_from {
            Some(threshold)
                if subtotal.currency() == threshold.currency() && subtotal.amount() >= threshold.amount() =>
            {
                Money::zero(subtotal.currency())
            }
            _ => self.flat_rate,
        }
    }
}

/// One step of an order's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimelineEntry {
    pub status: OrderStatus,
    pub at: DateTime<Utc>,
    pub note: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrderRuleError {
    #[error("an order {from} cannot become {to}")]
    InvalidTransition { from: OrderStatus, to: OrderStatus },
    #[error("an order needs at least one line")]
    NoLines,
    #[error("a line needs a quantity of at least 1")]
    EmptyLine,
    #[error(transparent)]
    Money(#[from] MoneyError),
}

/// An order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    pub id: OrderId,
    pub customer_id: CustomerId,
    pub status: OrderStatus,
    pub payment_status: PaymentStatus,
    pub payment_method: PaymentMethod,
    pub lines: Vec<OrderLine>,
    pub subtotal: Money,
    pub shipping_cost: Money,
    pub total: Money,
    pub shipping_address: ShippingAddress,
    pub customer_notes: Option<String>,
    pub cancellation_reason: Option<CancellationReason>,
    pub timeline: Vec<TimelineEntry>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// What a new order is made of.
#[derive(Debug, Clone)]
pub struct NewOrder {
    pub customer_id: CustomerId,
    pub payment_method: PaymentMethod,
    pub lines: Vec<OrderLine>,
    pub shipping_address: ShippingAddress,
    pub customer_notes: Option<String>,
}

impl Order {
    /// Prices the order (subtotal of the lines, shipping by `policy`) and starts its timeline.
    pub fn place(new: NewOrder, policy: &ShippingPolicy, now: DateTime<Utc>) -> Result<Self, OrderRuleError> {
        let first = new.lines.first().ok_or(OrderRuleError::NoLines)?;
        let currency = first.unit_price.currency();
        let subtotal = Money::sum(currency, new.lines.iter().map(|l| l.line_total))?;
        let shipping_cost = policy.cost(subtotal);
        let total = subtotal.checked_add(shipping_cost)?;
        let status = new.payment_method.initial_status();
        Ok(Self {
            id: OrderId::new(),
            customer_id: new.customer_id,
            status,
            payment_status: new.payment_method.initial_payment_status(),
            payment_method: new.payment_method,
            lines: new.lines,
            subtotal,
            shipping_cost,
            total,
            shipping_address: new.shipping_address,
            customer_notes: new.customer_notes,
            cancellation_reason: None,
            timeline: vec![TimelineEntry { status, at: now, note: Some("order placed".to_owned()) }],
            created_at: now,
            updated_at: now,
        })
    }

    /// Moves the order to `to`, recording the step. Illegal moves are refused and change nothing.
    pub fn transition(
        &mut self,
        to: OrderStatus,
        note: Option<String>,
        now: DateTime<Utc>,
    ) -> Result<(), OrderRuleError> {
        if !self.status.can_become(to) {
            return Err(OrderRuleError::InvalidTransition { from: self.status, to });
        }
        let at = self.touch(now);
        self.status = to;
        self.timeline.push(TimelineEntry { status: to, at, note });
        Ok(())
    }

    /// Cancels the order with its reason (allowed before SHIPPED).
    pub fn cancel(&mut self, reason: CancellationReason, now: DateTime<Utc>) -> Result<(), OrderRuleError> {
        self.transition(OrderStatus::Cancelled, Some(reason.as_str().to_owned()), now)?;
        self.cancellation_reason = Some(reason);
        Ok(())
    }

    /// Records a saga step that does not change the status.
    pub fn record(&mut self, note: impl Into<String>, now: DateTime<Utc>) {
        let at = self.touch(now);
        self.timeline.push(TimelineEntry { status: self.status, at, note: Some(note.into()) });
    }

    /// Whether the timeline records a step with this note.
    pub fn has_note(&self, note: &str) -> bool {
        self.timeline.iter().any(|t| t.note.as_deref() == Some(note))
    }

    /// Follows the payment (the payment context owns its status; the order shows it).
    pub fn set_payment_status(&mut self, status: PaymentStatus, now: DateTime<Utc>) -> bool {
        if self.payment_status == status {
            return false;
        }
        self.payment_status = status;
        self.touch(now);
        true
    }

    /// Stamps a change: `updated_at` moves strictly forward (see [`changed_at`]), so a write made
    /// in the same microsecond as the last one, or by a process whose clock is behind, still
    /// conflicts with a writer holding the order as it was. Returns the stamp.
    fn touch(&mut self, now: DateTime<Utc>) -> DateTime<Utc> {
        self.updated_at = changed_at(self.updated_at, now);
        self.updated_at
    }
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

    fn address() -> ShippingAddress {
        ShippingAddress {
            full_name: "Ada Lovelace".into(),
            line1: "1 Infinite Loop".into(),
            line2: None,
            city: "Cupertino".into(),
            state: Some("CA".into()),
            postal_code: "95014".into(),
            country: "US".into(),
            phone: None,
        }
    }

    fn line(price: i64, quantity: u32) -> OrderLine {
        OrderLine::new(ProductId::new(), "SKU-1".into(), "Thing".into(), usd(price), quantity).unwrap()
    }

    fn policy() -> ShippingPolicy {
        ShippingPolicy { flat_rate: usd(500), free_from: Some(usd(10_000)) }
    }

    fn order(method: PaymentMethod, lines: Vec<OrderLine>) -> Order {
        let new = NewOrder {
            customer_id: CustomerId::new(),
            payment_method: method,
            lines,
            shipping_address: address(),
            customer_notes: None,
        };
        Order::place(new, &policy(), at(0)).unwrap()
    }

    #[test]
    fn an_order_is_priced_from_its_lines_with_flat_shipping_free_from_the_threshold() {
        let small = order(PaymentMethod::CreditCard, vec![line(1999, 2), line(500, 1)]);
        assert_eq!((small.subtotal, small.shipping_cost, small.total), (usd(4498), usd(500), usd(4998)));
        let large = order(PaymentMethod::CreditCard, vec![line(5000, 2)]);
        assert_eq!((large.subtotal, large.shipping_cost, large.total), (usd(10_000), usd(0), usd(10_000)));
        assert_eq!(line(1999, 3).line_total, usd(5997));
        assert_eq!(OrderLine::new(ProductId::new(), "S".into(), "N".into(), usd(1), 0), Err(OrderRuleError::EmptyLine));
        let none = NewOrder {
            customer_id: CustomerId::new(),
            payment_method: PaymentMethod::CreditCard,
            lines: vec![],
            shipping_address: address(),
            customer_notes: None,
        };
        assert_eq!(Order::place(none, &policy(), at(0)), Err(OrderRuleError::NoLines));
    }

    #[test]
    fn online_orders_start_pending_payment_and_cash_orders_pending_confirmation() {
        let online = order(PaymentMethod::PayPal, vec![line(100, 1)]);
        assert_eq!((online.status, online.payment_status), (OrderStatus::PendingPayment, PaymentStatus::Pending));
        let cod = order(PaymentMethod::CashOnDelivery, vec![line(100, 1)]);
        assert_eq!(
            (cod.status, cod.payment_status),
            (OrderStatus::PendingConfirmation, PaymentStatus::CollectOnDelivery)
        );
        assert_eq!(cod.timeline.len(), 1);
    }

    #[test]
    fn the_lifecycle_is_recorded_step_by_step_and_illegal_moves_change_nothing() {
        let mut o = order(PaymentMethod::CreditCard, vec![line(100, 1)]);
        o.transition(OrderStatus::Confirmed, Some("payment authorized".into()), at(1)).unwrap();
        o.transition(OrderStatus::Processing, None, at(2)).unwrap();
        o.transition(OrderStatus::Shipped, None, at(3)).unwrap();
        let before = o.clone();
        assert_eq!(
            o.cancel(CancellationReason::CustomerRequest, at(4)),
            Err(OrderRuleError::InvalidTransition { from: OrderStatus::Shipped, to: OrderStatus::Cancelled })
        );
        assert_eq!(o, before, "a refused move changes nothing");
        o.transition(OrderStatus::Delivered, None, at(5)).unwrap();
        o.transition(OrderStatus::Refunded, None, at(6)).unwrap();
        let statuses: Vec<_> = o.timeline.iter().map(|t| t.status).collect();
        assert_eq!(
            statuses,
            [
                OrderStatus::PendingPayment,
                OrderStatus::Confirmed,
                OrderStatus::Processing,
                OrderStatus::Shipped,
                OrderStatus::Delivered,
                OrderStatus::Refunded
            ]
        );
        assert!(o.status.is_final());
    }

    #[test]
    fn cancelling_before_shipping_keeps_the_reason() {
        for start in [
            OrderStatus::PendingPayment,
            OrderStatus::PendingConfirmation,
            OrderStatus::Confirmed,
            OrderStatus::Processing,
        ] {
            assert!(start.can_become(OrderStatus::Cancelled), "{start}");
        }
        let mut o = order(PaymentMethod::CreditCard, vec![line(100, 1)]);
        o.cancel(CancellationReason::PaymentDeclined, at(1)).unwrap();
        assert_eq!(
            (o.status, o.cancellation_reason.clone()),
            (OrderStatus::Cancelled, Some(CancellationReason::PaymentDeclined))
        );
        assert_eq!(o.timeline.last().and_then(|t| t.note.as_deref()), Some("PAYMENT_DECLINED"));
        assert!(o.cancel(CancellationReason::CustomerRequest, at(2)).is_err(), "cancelled once");
        let mut cod = order(PaymentMethod::CashOnDelivery, vec![line(100, 1)]);
        cod.transition(OrderStatus::Confirmed, None, at(1)).unwrap();
        assert!(cod.transition(OrderStatus::Confirmed, None, at(2)).is_err(), "confirming twice is refused");
    }

    #[test]
    fn every_pair_of_statuses_follows_the_table() {
        use OrderStatus as S;
        let allowed = [
            (S::PendingPayment, S::Confirmed),
            (S::PendingPayment, S::Cancelled),
            (S::PendingConfirmation, S::Confirmed),
            (S::PendingConfirmation, S::Cancelled),
            (S::Confirmed, S::Processing),
            (S::Confirmed, S::Cancelled),
            (S::Processing, S::Shipped),
            (S::Processing, S::Cancelled),
            (S::Shipped, S::Delivered),
            (S::Delivered, S::Refunded),
        ];
        for from in S::ALL {
            for to in S::ALL {
                assert_eq!(from.can_become(to), allowed.contains(&(from, to)), "{from} -> {to}");
            }
        }
    }

    #[test]
    fn names_round_trip() {
        for s in OrderStatus::ALL {
            assert_eq!(OrderStatus::parse(s.as_str()), Some(s));
        }
        for m in PaymentMethod::ALL {
            assert_eq!(PaymentMethod::parse(m.as_str()), Some(m));
        }
        for r in CancellationReason::ALL {
            assert_eq!(CancellationReason::parse(r.as_str()), Some(r.clone()));
        }
    }

    #[test]
    fn the_payment_status_follows_the_payment() {
        let mut o = order(PaymentMethod::CreditCard, vec![line(100, 1)]);
        assert!(o.set_payment_status(PaymentStatus::Paid, at(1)));
        assert!(!o.set_payment_status(PaymentStatus::Paid, at(2)));
        assert_eq!(o.updated_at, at(1));
    }

    #[test]
    fn every_change_is_stamped_later_than_the_last_even_in_the_same_instant_or_with_a_clock_behind() {
        let mut o = order(PaymentMethod::CreditCard, vec![line(100, 1)]);
        let mut stamps = vec![o.updated_at];
        o.record("stock reserved", at(0));
        stamps.push(o.updated_at);
        o.set_payment_status(PaymentStatus::Paid, at(0));
        stamps.push(o.updated_at);
        o.transition(OrderStatus::Confirmed, None, at(-60)).unwrap();
        stamps.push(o.updated_at);
        assert!(stamps.windows(2).all(|w| w[0] < w[1]), "{stamps:?}");
        assert_eq!(o.timeline.last().map(|t| t.at), Some(o.updated_at), "the timeline shows the stamp");
        o.record("later", at(5));
        assert_eq!(o.updated_at, at(5), "a later clock is taken as it is");
    }
}
