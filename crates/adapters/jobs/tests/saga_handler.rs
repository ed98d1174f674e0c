//! The checkout step handler: retries while attempts remain, then compensates instead of
//! leaving the order half done.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};
use ecom_jobs::orders::SagaHandler;
use ecom_jobs::{JobFailure, JobHandler};
use ecom_kernel::clock::MockClock;
use ecom_kernel::jobs::{JobEnvelope, JobOutcome};
use ecom_kernel::{Currency, CustomerId, InfraError, Money, ProductId};
use ecom_orders::model::{
    CancellationReason, NewOrder, Order, OrderLine, OrderStatus, PaymentMethod, ShippingAddress, ShippingPolicy,
};
use ecom_orders::ports::*;
use ecom_orders::service::{saga_job, OrderPorts, OrderService, OrderSettings, Step};
use ecom_payments::ports::MockJobPublisher;

fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000, 0).unwrap()
}

fn order() -> Order {
    let usd = |a| Money::new(a, Currency::USD);
    let new = NewOrder {
        customer_id: CustomerId::new(),
        payment_method: PaymentMethod::CreditCard,
        lines: vec![OrderLine::new(ProductId::new(), "S".into(), "N".into(), usd(100), 1).unwrap()],
        shipping_address: ShippingAddress {
            full_name: "A".into(),
            line1: "L".into(),
            line2: None,
            city: "C".into(),
            state: None,
            postal_code: "1".into(),
            country: "US".into(),
            phone: None,
        },
        customer_notes: None,
    };
    Order::place(new, &ShippingPolicy { flat_rate: usd(0), free_from: None }, now()).unwrap()
}

/// The service over mocks whose stock is down for good; the order lives in `cell`.
fn service(order: Order) -> (Arc<OrderService>, Arc<Mutex<Order>>) {
    let cell = Arc::new(Mutex::new(order));
    let mut orders = MockOrderRepository::new();
    let read = cell.clone();
    orders.expect_get().returning(move |_| Ok(Some(read.lock().unwrap().clone())));
    let saga = cell.clone();
    orders.expect_get_with_context().returning(move |_| {
        let context = CheckoutContext { cart_id: uuid::Uuid::nil(), payment_token: Some("pm_card_visa".into()) };
        Ok(Some((saga.lock().unwrap().clone(), context)))
    });
    let write = cell.clone();
    orders.expect_update().returning(move |_, next, _| {
        *write.lock().unwrap() = next.clone();
        Ok(())
    });
    let mut stock = MockStock::new();
    stock.expect_reserve().returning(|_, _, _| Err(InfraError::unavailable("postgres down")));
    // Only the compensation, on the last attempt, gives the stock back and refunds, once each.
    stock.expect_release().times(1).returning(|_| Ok(()));
    let mut payments = MockOrderPayments::new();
    payments.expect_refund_all().times(1).returning(|_, _| Ok(RefundState::NothingToRefund));
    // Giving up looks for a charge made without its answer recorded, once, before refunding.
    payments.expect_recover_charge().times(1).returning(|_| Ok(()));
    let mut publisher = MockJobPublisher::new();
    publisher.expect_publish().returning(|_| ());
    let mut clock = MockClock::new();
    clock.expect_now().returning(now);
    let service = OrderService::new(
        OrderPorts {
            orders: Arc::new(orders),
            carts: Arc::new(MockCarts::new()),
            catalog: Arc::new(MockCatalog::new()),
            addresses: Arc::new(MockAddressBook::new()),
            stock: Arc::new(stock),
            payments: Arc::new(payments),
            publisher: Arc::new(publisher),
            clock: Arc::new(clock),
        },
        OrderSettings {
            shipping: ShippingPolicy { flat_rate: Money::new(0, Currency::USD), free_from: None },
            payment_window: Duration::minutes(30),
            confirmation_window: Duration::hours(48),
            paypal_accepted: true,
        },
    );
    (Arc::new(service), cell)
}

fn envelope(order: &Order, attempt: u32) -> JobEnvelope {
    let job = saga_job(order.id, Step::Reserve, None);
    JobEnvelope {
        id: job.id,
        queue: job.queue,
        kind: job.kind,
        payload: job.payload,
        schema_version: job.schema_version,
        attempt,
        max_attempts: job.max_attempts,
        trace_id: None,
        enqueued_at: now(),
    }
}

#[tokio::test]
async fn a_step_is_retried_while_attempts_remain_then_compensated() {
    let placed = order();
    let (orders, cell) = service(placed.clone());
    let handler = SagaHandler { orders };
    let first = handler.handle(&envelope(&placed, 1)).await;
    assert!(matches!(first, Err(JobFailure::Retryable(_))), "{first:?}");
    assert_eq!(cell.lock().unwrap().status, OrderStatus::PendingPayment);

    let last = handler.handle(&envelope(&placed, 10)).await;
    assert!(matches!(last, Ok(JobOutcome::Done)), "{last:?}");
    let after = cell.lock().unwrap().clone();
    assert_eq!(
        (after.status, after.cancellation_reason),
        (OrderStatus::Cancelled, Some(CancellationReason::CheckoutFailed))
    );
}
