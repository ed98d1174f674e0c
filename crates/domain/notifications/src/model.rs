//! A notification, what it tells, and who receives it.

use chrono::{DateTime, Utc};
use ecom_kernel::{entity_id, CustomerId, Money, OrderId, ProductId};
use serde::{Deserialize, Serialize};
use serde_json::json;

entity_id!(
    /// Identifies one notification of one recipient.
    NotificationId
);

/// What a notification is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum NotificationType {
    OrderConfirmed,
    OrderCancelled,
    PaymentReceived,
    OrderShipped,
    OrderDelivered,
    RefundIssued,
    /// Admins: a cash-on-delivery order waits for their confirmation.
    CodOrderPending,
    /// Admins: a product's available units fell to its threshold.
    LowStock,
}

impl NotificationType {
    pub const ALL: [NotificationType; 8] = [
        NotificationType::OrderConfirmed,
        NotificationType::OrderCancelled,
        NotificationType::PaymentReceived,
        NotificationType::OrderShipped,
        NotificationType::OrderDelivered,
        NotificationType::RefundIssued,
        NotificationType::CodOrderPending,
        NotificationType::LowStock,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            NotificationType::OrderConfirmed => "ORDER_CONFIRMED",
            NotificationType::OrderCancelled => "ORDER_CANCELLED",
            NotificationType::PaymentReceived => "PAYMENT_RECEIVED",
            NotificationType::OrderShipped => "ORDER_SHIPPED",
            NotificationType::OrderDelivered => "ORDER_DELIVERED",
            NotificationType::RefundIssued => "REFUND_ISSUED",
            NotificationType::CodOrderPending => "COD_ORDER_PENDING",
            NotificationType::LowStock => "LOW_STOCK",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == raw)
    }
}

/// Where a notification stands: saved, pushed to the recipient's channel, acknowledged by one
/// of their devices, read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NotificationStatus {
    Pending,
    Sent,
    Delivered,
    Read,
}

impl NotificationStatus {
    pub const ALL: [NotificationStatus; 4] = [
        NotificationStatus::Pending,
        NotificationStatus::Sent,
        NotificationStatus::Delivered,
        NotificationStatus::Read,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            NotificationStatus::Pending => "PENDING",
            NotificationStatus::Sent => "SENT",
            NotificationStatus::Delivered => "DELIVERED",
            NotificationStatus::Read => "READ",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == raw)
    }

    /// Not yet acknowledged by any device: part of the backlog sent on connect.
    pub fn is_undelivered(self) -> bool {
        matches!(self, NotificationStatus::Pending | NotificationStatus::Sent)
    }
}

/// One recipient's notification.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    pub id: NotificationId,
    /// What it is about, e.g. `order:{id}:confirmed`; one notification per key and recipient.
    pub key: String,
    pub customer_id: CustomerId,
    pub kind: NotificationType,
    pub title: String,
    pub body: String,
    pub data: serde_json::Value,
    pub status: NotificationStatus,
    pub created_at: DateTime<Utc>,
    pub read_at: Option<DateTime<Utc>>,
}

/// Who is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "to", content = "customerId", rename_all = "camelCase")]
pub enum Audience {
    Customer(CustomerId),
    /// Every admin account.
    Admins,
}

/// Something that happened, in the words its recipients read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    OrderConfirmed {
        order_id: OrderId,
        total: Money,
    },
    OrderCancelled {
        order_id: OrderId,
        reason: String,
    },
    PaymentReceived {
        order_id: OrderId,
        amount: Money,
    },
    OrderShipped {
        order_id: OrderId,
    },
    OrderDelivered {
        order_id: OrderId,
    },
    /// The order's payment is (partly) refunded; `payment_status` is REFUNDED or PARTIALLY_REFUNDED.
    RefundIssued {
        order_id: OrderId,
        payment_status: String,
    },
    CodOrderPending {
        order_id: OrderId,
        customer_id: CustomerId,
        total: Money,
    },
    LowStock {
        product_id: ProductId,
        available: u32,
        threshold: u32,
    },
}

fn money(m: &Money) -> serde_json::Value {
    json!({"amount": m.amount(), "currency": m.currency().code()})
}

fn short(order: &OrderId) -> String {
    let text = order.to_string();
    text[text.len().saturating_sub(8)..].to_uppercase()
}

/// A notification to be delivered (the payload of the flow's first job).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NotificationRequest {
    pub key: String,
    pub audience: Audience,
    pub kind: NotificationType,
    pub title: String,
    pub body: String,
    pub data: serde_json::Value,
}

impl NotificationRequest {
    /// Words and data for `event`, told to `audience`; `key` names the event once (a second
    /// request with the same key and recipient is the same notification).
    pub fn new(key: impl Into<String>, audience: Audience, event: &Event) -> Self {
        let (kind, title, body, data) = match event {
            Event::OrderConfirmed { order_id, total } => (
                NotificationType::OrderConfirmed,
                "Order confirmed".to_owned(),
                format!("Your order {} is confirmed. Total: {total}.", short(order_id)),
                json!({"orderId": order_id, "total": money(total)}),
            ),
            Event::OrderCancelled { order_id, reason } => (
                NotificationType::OrderCancelled,
                "Order cancelled".to_owned(),
                format!("Your order {} was cancelled ({reason}).", short(order_id)),
                json!({"orderId": order_id, "reason": reason}),
            ),
            Event::PaymentReceived { order_id, amount } => (
                NotificationType::PaymentReceived,
                "Payment received".to_owned(),
                format!("We received your payment of {amount} for order {}.", short(order_id)),
                json!({"orderId": order_id, "amount": money(amount)}),
            ),
            Event::OrderShipped { order_id } => (
                NotificationType::OrderShipped,
                "Order shipped".to_owned(),
                format!("Your order {} is on its way.", short(order_id)),
                json!({"orderId": order_id}),
            ),
            Event::OrderDelivered { order_id } => (
                NotificationType::OrderDelivered,
                "Order delivered".to_owned(),
                format!("Your order {} was delivered.", short(order_id)),
                json!({"orderId": order_id}),
            ),
            Event::RefundIssued { order_id, payment_status } => (
                NotificationType::RefundIssued,
                "Refund issued".to_owned(),
                format!("A refund was issued for your order {}.", short(order_id)),
                json!({"orderId": order_id, "paymentStatus": payment_status}),
            ),
            Event::CodOrderPending { order_id, customer_id, total } => (
                NotificationType::CodOrderPending,
                "Cash order to confirm".to_owned(),
                format!("Cash-on-delivery order {} ({total}) waits for confirmation.", short(order_id)),
                json!({"orderId": order_id, "customerId": customer_id, "total": money(total)}),
            ),
            Event::LowStock { product_id, available, threshold } => (
                NotificationType::LowStock,
                "Low stock".to_owned(),
                format!("Only {available} unit(s) left of product {product_id} (threshold {threshold})."),
                json!({"productId": product_id, "available": available, "threshold": threshold}),
            ),
        };
        Self { key: key.into(), audience, kind, title, body, data }
    }

    /// The notification of one recipient, PENDING.
    pub fn for_recipient(&self, customer_id: CustomerId, now: DateTime<Utc>) -> Notification {
        Notification {
            id: NotificationId::new(),
            key: self.key.clone(),
            customer_id,
            kind: self.kind,
            title: self.title.clone(),
            body: self.body.clone(),
            data: self.data.clone(),
            status: NotificationStatus::Pending,
            created_at: now,
            read_at: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ecom_kernel::Currency;

    #[test]
    fn names_round_trip() {
        for t in NotificationType::ALL {
            assert_eq!(NotificationType::parse(t.as_str()), Some(t));
        }
        for s in NotificationStatus::ALL {
            assert_eq!(NotificationStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(NotificationType::parse("order_confirmed"), None);
    }

    #[test]
    fn only_pending_and_sent_are_undelivered() {
        assert!(NotificationStatus::Pending.is_undelivered());
        assert!(NotificationStatus::Sent.is_undelivered());
        assert!(!NotificationStatus::Delivered.is_undelivered());
        assert!(!NotificationStatus::Read.is_undelivered());
    }

    #[test]
    fn a_cancellation_tells_its_reason_and_a_confirmation_its_total() {
        let order_id = OrderId::new();
        let customer = Audience::Customer(CustomerId::new());
        let cancelled = NotificationRequest::new(
            "k",
            customer,
            &Event::OrderCancelled { order_id, reason: "PAYMENT_DECLINED".into() },
        );
        assert_eq!(cancelled.kind, NotificationType::OrderCancelled);
        assert!(cancelled.body.contains("PAYMENT_DECLINED"));
        assert_eq!(cancelled.data["reason"], "PAYMENT_DECLINED");
        assert_eq!(cancelled.data["orderId"], order_id.to_string());

        let usd = Currency::parse("USD").unwrap();
        let confirmed =
            NotificationRequest::new("k2", customer, &Event::OrderConfirmed { order_id, total: Money::new(1250, usd) });
        assert!(confirmed.body.contains("12.50 USD"), "{}", confirmed.body);
        assert_eq!(confirmed.data["total"], json!({"amount": 1250, "currency": "USD"}));
    }

    #[test]
    fn requests_survive_the_job_payload() {
        let request = NotificationRequest::new(
            "order:x:shipped",
            Audience::Admins,
            &Event::LowStock { product_id: ProductId::new(), available: 2, threshold: 5 },
        );
        let json = serde_json::to_value(&request).unwrap();
        assert_eq!(json["audience"], json!({"to": "admins"}));
        assert_eq!(json["kind"], "LOW_STOCK");
        let back: NotificationRequest = serde_json::from_value(json).unwrap();
        assert_eq!(back, request);
        let customer = CustomerId::new();
        let json = serde_json::to_value(Audience::Customer(customer)).unwrap();
        assert_eq!(json, json!({"to": "customer", "customerId": customer}));
    }

    #[test]
    fn a_recipients_copy_starts_pending_and_unread() {
        let request =
            NotificationRequest::new("k", Audience::Admins, &Event::OrderShipped { order_id: OrderId::new() });
        let customer = CustomerId::new();
        let n = request.for_recipient(customer, Utc::now());
        assert_eq!(n.status, NotificationStatus::Pending);
        assert_eq!(n.customer_id, customer);
        assert_eq!(n.read_at, None);
        assert_eq!(n.key, "k");
    }
}
