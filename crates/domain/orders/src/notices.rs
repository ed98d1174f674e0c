//! What an order's change tells its customer (and the admins), as notification jobs staged in
//! the same transaction as the change: a notice exists exactly when its change was committed.

use ecom_kernel::jobs::NewJob;
use ecom_notifications::model::{Audience, Event, NotificationRequest};
use ecom_notifications::service::delivery_job;
use ecom_payments::model::PaymentStatus;

use crate::model::{Order, OrderStatus};
use crate::ports::LowStock;
use crate::service::STOCK_RESERVED;

/// The notices of the change `before` → `after`.
pub fn notices(before: &Order, after: &Order) -> Vec<NotificationRequest> {
    let id = after.id;
    let customer = Audience::Customer(after.customer_id);
    let mut out = Vec::new();
    if before.status != after.status {
        let event = match after.status {
            OrderStatus::Confirmed => Some(("confirmed", Event::OrderConfirmed { order_id: id, total: after.total })),
            OrderStatus::Cancelled => Some((
                "cancelled",
                Event::OrderCancelled {
                    order_id: id,
                    reason: after.cancellation_reason.as_ref().map_or("UNKNOWN", |r| r.as_str()).to_owned(),
                },
            )),
            OrderStatus::Shipped => Some(("shipped", Event::OrderShipped { order_id: id })),
            OrderStatus::Delivered => Some(("delivered", Event::OrderDelivered { order_id: id })),
            // Delivered and, its money given back before, REFUNDED in the same write: it was
            // delivered all the same.
            OrderStatus::Refunded if before.status == OrderStatus::Shipped => {
                Some(("delivered", Event::OrderDelivered { order_id: id }))
            }
            _ => None,
        };
        if let Some((what, event)) = event {
            out.push(NotificationRequest::new(format!("order:{id}:{what}"), customer, &event));
        }
    }
    if before.payment_status != after.payment_status {
        match after.payment_status {
            PaymentStatus::Paid => out.push(NotificationRequest::new(
                format!("order:{id}:paid"),
                customer,
                &Event::PaymentReceived { order_id: id, amount: after.total },
            )),
            PaymentStatus::Refunded | PaymentStatus::PartiallyRefunded => out.push(NotificationRequest::new(
                format!("order:{id}:refund:{}:{}", after.payment_status.as_str(), after.updated_at.timestamp_micros()),
                customer,
                &Event::RefundIssued { order_id: id, payment_status: after.payment_status.as_str().to_owned() },
            )),
            _ => {}
        }
    }
    if !after.payment_method.is_online()
        && after.status == OrderStatus::PendingConfirmation
        && after.has_note(STOCK_RESERVED)
        && !before.has_note(STOCK_RESERVED)
    {
        out.push(NotificationRequest::new(
            format!("order:{id}:awaiting-confirmation"),
            Audience::Admins,
            &Event::CodOrderPending { order_id: id, customer_id: after.customer_id, total: after.total },
        ));
    }
    out
}

/// The admins' notices of stock that this order's reservation took down to its threshold.
pub fn low_stock_notices(order: &Order, crossed: &[LowStock]) -> Vec<NotificationRequest> {
    crossed
        .iter()
        .map(|c| {
            NotificationRequest::new(
                format!("low-stock:{}:{}", c.product_id, order.id),
                Audience::Admins,
                &Event::LowStock { product_id: c.product_id, available: c.available, threshold: c.threshold },
            )
        })
        .collect()
}

/// `jobs` and the first job of every notice's delivery flow.
pub fn with_notices(jobs: &[NewJob], notices: &[NotificationRequest]) -> Vec<NewJob> {
    jobs.iter().cloned().chain(notices.iter().map(delivery_job)).collect()
}
