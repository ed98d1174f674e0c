#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};
use ecom_kernel::clock::MockClock;
use ecom_kernel::{Currency, CustomerId, Money, OrderId, ProductId};
use ecom_payments::model::{PaymentId, PaymentStatus};
use ecom_payments::ports::MockJobPublisher;

use crate::model::{
    CancellationReason, Order, OrderRuleError, OrderStatus, PaymentMethod, ShippingAddress, ShippingPolicy,
};
use crate::ports::*;
use crate::service::{
    CheckoutRequest, OrderPorts, OrderService, OrderSettings, SagaJob, ShippingChoice, Step, StepError, COMPENSATED,
    SAGA_KIND,
};
use crate::OrderError;

fn usd(amount: i64) -> Money {
    Money::new(amount, Currency::USD)
}

fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000, 0).unwrap()
}

fn address() -> ShippingAddress {
    ShippingAddress {
        full_name: "Ada".into(),
        line1: "1 Loop".into(),
        line2: None,
        city: "Cupertino".into(),
        state: None,
        postal_code: "95014".into(),
        country: "US".into(),
        phone: None,
    }
}

/// Mocks with sensible defaults; each test sets what it is about.
struct Mocks {
    orders: MockOrderRepository,
    carts: MockCarts,
    catalog: MockCatalog,
    addresses: MockAddressBook,
    stock: MockStock,
    payments: MockOrderPayments,
    publisher: MockJobPublisher,
    paypal_accepted: bool,
}

impl Mocks {
    fn new() -> Self {
        let mut publisher = MockJobPublisher::new();
        publisher.expect_publish().returning(|_| ());
        Self {
            orders: MockOrderRepository::new(),
            carts: MockCarts::new(),
            catalog: MockCatalog::new(),
            addresses: MockAddressBook::new(),
            stock: MockStock::new(),
            payments: MockOrderPayments::new(),
            publisher,
            paypal_accepted: true,
        }
    }

    fn service(self) -> OrderService {
        let mut clock = MockClock::new();
        clock.expect_now().returning(now);
        OrderService::new(
            OrderPorts {
                orders: Arc::new(self.orders),
                carts: Arc::new(self.carts),
                catalog: Arc::new(self.catalog),
                addresses: Arc::new(self.addresses),
                stock: Arc::new(self.stock),
                payments: Arc::new(self.payments),
                publisher: Arc::new(self.publisher),
                clock: Arc::new(clock),
            },
            OrderSettings {
                shipping: ShippingPolicy { flat_rate: usd(500), free_from: None },
                payment_window: Duration::minutes(30),
                confirmation_window: Duration::hours(48),
                paypal_accepted: self.paypal_accepted,
            },
        )
    }
}

fn request(method: PaymentMethod, token: Option<&str>) -> CheckoutRequest {
    CheckoutRequest {
        cart_id: uuid::Uuid::now_v7(),
        payment_method: method,
        shipping: Some(ShippingChoice::New(address())),
        payment_token: token.map(str::to_owned),
        customer_notes: None,
    }
}

fn placed(method: PaymentMethod) -> Order {
    let line = crate::model::OrderLine::new(ProductId::new(), "SKU".into(), "Lamp".into(), usd(1000), 2).unwrap();
    let new = crate::model::NewOrder {
        customer_id: CustomerId::new(),
        payment_method: method,
        lines: vec![line],
        shipping_address: address(),
        customer_notes: None,
    };
    Order::place(new, &ShippingPolicy { flat_rate: usd(500), free_from: None }, now()).unwrap()
}

#[pollster::test]
async fn checkout_prices_from_the_catalog_and_stages_the_first_saga_step_with_the_order() {
    let product = ProductId::new();
    let mut m = Mocks::new();
    m.carts.expect_items().returning(move |_, _| Ok(Some(vec![CartItem { product_id: product, quantity: 3 }])));
    m.catalog.expect_products().returning(move |_| {
        Ok(vec![Some(PricedProduct {
            product_id: product,
            sku: "LAMP-1".into(),
            name: "Lamp".into(),
            unit_price: usd(1250),
            active: true,
        })])
    });
    m.orders
        .expect_create()
        .withf(|order, context, jobs| {
            order.total == usd(4250)
                && order.status == OrderStatus::PendingPayment
                && context.payment_token.as_deref() == Some("pm_card_visa")
                && jobs.len() == 1
                && jobs[0].kind == SAGA_KIND
                && jobs[0].id.as_str() == format!("checkout:{}:reserve", order.id)
        })
        .times(1)
        .returning(|_, _, _| Ok(()));
    let order = m
        .service()
        .checkout(CustomerId::new(), request(PaymentMethod::CreditCard, Some("pm_card_visa")))
        .await
        .unwrap();
    assert_eq!((order.subtotal, order.lines[0].sku.as_str()), (usd(3750), "LAMP-1"));
}

#[pollster::test]
async fn checkout_refuses_raw_card_numbers_missing_tokens_empty_carts_and_archived_products() {
    let customer = CustomerId::new();
    let err = Mocks::new()
        .service()
        .checkout(customer, request(PaymentMethod::CreditCard, Some("4242 4242 4242 4242")))
        .await;
    assert!(matches!(err, Err(OrderError::RawCardNumber)), "{err:?}");
    let err = Mocks::new().service().checkout(customer, request(PaymentMethod::PayPal, None)).await;
    assert!(matches!(err, Err(OrderError::PaymentTokenRequired)), "{err:?}");
    for bad in ["pm_card_visa\u{0}", "tok\nen", &"t".repeat(256)] {
        let err = Mocks::new().service().checkout(customer, request(PaymentMethod::DebitCard, Some(bad))).await;
        assert!(matches!(err, Err(OrderError::MalformedPaymentToken)), "{bad:?}: {err:?}");
    }
    let mut no_paypal = Mocks::new();
    no_paypal.paypal_accepted = false;
    no_paypal.orders.expect_create().never();
    let err = no_paypal.service().checkout(customer, request(PaymentMethod::PayPal, Some("5O190127TN364715T"))).await;
    assert!(matches!(err, Err(OrderError::PaymentMethodNotAccepted(PaymentMethod::PayPal))), "{err:?}");

    let mut m = Mocks::new();
    m.carts.expect_items().returning(|_, _| Ok(Some(vec![])));
    let err = m.service().checkout(customer, request(PaymentMethod::CashOnDelivery, None)).await;
    assert!(matches!(err, Err(OrderError::CartEmpty)), "{err:?}");

    let product = ProductId::new();
    let mut m = Mocks::new();
    m.carts.expect_items().returning(move |_, _| Ok(Some(vec![CartItem { product_id: product, quantity: 1 }])));
    m.catalog.expect_products().returning(move |_| {
        Ok(vec![Some(PricedProduct {
            product_id: product,
            sku: "S".into(),
            name: "N".into(),
            unit_price: usd(1),
            active: false,
        })])
    });
    m.orders.expect_create().never();
    let err = m.service().checkout(customer, request(PaymentMethod::CashOnDelivery, None)).await;
    assert!(matches!(err, Err(OrderError::ProductUnavailable(p)) if p == product), "{err:?}");
}

/// The order's payment, whose status the test sets: (its id, its status).
fn payment_of(m: &mut Mocks, status: PaymentStatus) -> (PaymentId, Arc<Mutex<PaymentStatus>>) {
    let id = PaymentId::new();
    let cell = Arc::new(Mutex::new(status));
    let read = cell.clone();
    m.payments.expect_status().withf(move |p| *p == id).returning(move |_| Ok(Some(*read.lock().unwrap())));
    (id, cell)
}

fn stored(m: &mut Mocks, order: Order) -> Arc<Mutex<Order>> {
    let cell = Arc::new(Mutex::new(order));
    let read = cell.clone();
    m.orders.expect_get().returning(move |_| Ok(Some(read.lock().unwrap().clone())));
    let write = cell.clone();
    m.orders.expect_update().returning(move |_, next, _| {
        *write.lock().unwrap() = next.clone();
        Ok(())
    });
    let saga = cell.clone();
    m.orders.expect_get_with_context().returning(move |_| {
        let context =
            CheckoutContext { cart_id: uuid::Uuid::nil(), payment_token: Some("pm_card_chargeDeclined".into()) };
        Ok(Some((saga.lock().unwrap().clone(), context)))
    });
    cell
}

#[pollster::test]
async fn a_declined_charge_records_failed_and_queues_the_compensation() {
    let order = placed(PaymentMethod::CreditCard);
    let id = order.id;
    let mut m = Mocks::new();
    m.payments.expect_charge().times(1).returning(|_, _| Ok(Charged::Declined { reason: "card_declined".into() }));
    let cell = stored(&mut m, order);
    let service = m.service();
    service.run_step(&SagaJob { order_id: id, step: Step::Charge, reason: None }).await.unwrap();
    let after = cell.lock().unwrap().clone();
    assert_eq!((after.status, after.payment_status), (OrderStatus::PendingPayment, PaymentStatus::Failed));
}

#[pollster::test]
async fn out_of_stock_at_reservation_releases_and_cancels_without_charging() {
    let order = placed(PaymentMethod::CreditCard);
    let id = order.id;
    let mut m = Mocks::new();
    m.stock.expect_reserve().returning(|_, _, _| Ok(Reserved::OutOfStock { product_id: ProductId::new() }));
    m.payments.expect_charge().never();
    m.payments.expect_refund_all().returning(|_, _| Ok(RefundState::NothingToRefund));
    m.stock.expect_release().times(1).returning(|_| Ok(()));
    let cell = stored(&mut m, order);
    m.service().run_step(&SagaJob { order_id: id, step: Step::Reserve, reason: None }).await.unwrap();
    let after = cell.lock().unwrap().clone();
    assert_eq!(
        (after.status, after.cancellation_reason),
        (OrderStatus::Cancelled, Some(CancellationReason::OutOfStock))
    );
}

#[pollster::test]
async fn compensation_waits_for_an_uncaptured_payment_then_refunds_releases_and_cancels_once() {
    let order = placed(PaymentMethod::CreditCard);
    let id = order.id;
    let mut m = Mocks::new();
    let mut seq = mockall::Sequence::new();
    m.payments.expect_refund_all().times(1).in_sequence(&mut seq).returning(|_, _| Ok(RefundState::NotYetCapturable));
    let (payment, _) = payment_of(&mut m, PaymentStatus::Refunded);
    m.payments
        .expect_refund_all()
        .times(2)
        .in_sequence(&mut seq)
        .returning(move |_, _| Ok(RefundState::Refunded(payment)));
    m.stock.expect_release().times(2).returning(|_| Ok(()));
    let cell = stored(&mut m, order);
    let service = m.service();
    let job = SagaJob { order_id: id, step: Step::Compensate, reason: Some("CHECKOUT_FAILED".into()) };
    assert!(matches!(service.run_step(&job).await, Err(StepError::Retry(_))), "not captured yet: retried");
    assert_eq!(cell.lock().unwrap().status, OrderStatus::PendingPayment, "nothing changed yet");
    service.run_step(&job).await.unwrap();
    let after = cell.lock().unwrap().clone();
    assert_eq!((after.status, after.payment_status), (OrderStatus::Cancelled, PaymentStatus::Refunded));
    assert_eq!(after.cancellation_reason, Some(CancellationReason::CheckoutFailed));
    service.run_step(&job).await.unwrap();
    assert_eq!(cell.lock().unwrap().timeline.len(), after.timeline.len(), "running it again changes nothing");
}

#[pollster::test]
async fn a_cancelled_orders_stock_goes_back_while_its_money_waits_for_the_capture() {
    // Cancelled by its customer while its payment is only authorized: the refund waits for the
    // capture; the units do not wait with it.
    let mut order = placed(PaymentMethod::CreditCard);
    order.cancel(CancellationReason::CustomerRequest, now()).unwrap();
    let id = order.id;
    let mut m = Mocks::new();
    let mut seq = mockall::Sequence::new();
    m.stock.expect_release().times(1).in_sequence(&mut seq).returning(|_| Ok(()));
    m.payments.expect_refund_all().times(1).in_sequence(&mut seq).returning(|_, _| Ok(RefundState::NotYetCapturable));
    stored(&mut m, order);
    let job = SagaJob { order_id: id, step: Step::Compensate, reason: Some("CUSTOMER_REQUEST".into()) };
    assert!(matches!(m.service().run_step(&job).await, Err(StepError::Retry(_))), "the money waits");
}

/// The checkout context of a card order.
fn visa() -> CheckoutContext {
    CheckoutContext { cart_id: uuid::Uuid::nil(), payment_token: Some("pm_card_visa".into()) }
}

/// Stores updates like [`stored`] and keeps the jobs staged with each.
fn stored_with_jobs(m: &mut Mocks, order: Order) -> (Arc<Mutex<Order>>, Arc<Mutex<Vec<ecom_kernel::jobs::NewJob>>>) {
    let cell = Arc::new(Mutex::new(order));
    let staged = Arc::new(Mutex::new(Vec::new()));
    let read = cell.clone();
    m.orders.expect_get().returning(move |_| Ok(Some(read.lock().unwrap().clone())));
    let (write, jobs) = (cell.clone(), staged.clone());
    m.orders.expect_update().returning(move |_, next, staged| {
        *write.lock().unwrap() = next.clone();
        jobs.lock().unwrap().extend_from_slice(staged);
        Ok(())
    });
    let saga = cell.clone();
    m.orders.expect_get_with_context().returning(move |_| {
        let context = CheckoutContext { cart_id: uuid::Uuid::nil(), payment_token: Some("pm_card_visa".into()) };
        Ok(Some((saga.lock().unwrap().clone(), context)))
    });
    (cell, staged)
}

/// Where the stored order ended: its status, payment status and cancellation reason.
fn outcome(cell: &Mutex<Order>) -> (OrderStatus, PaymentStatus, Option<CancellationReason>) {
    let order = cell.lock().unwrap();
    (order.status, order.payment_status, order.cancellation_reason.clone())
}

fn notice_keys(jobs: &[ecom_kernel::jobs::NewJob]) -> Vec<String> {
    jobs.iter()
        .filter(|j| j.kind == ecom_notifications::service::SAVE_KIND)
        .map(|j| j.payload["key"].as_str().unwrap().to_owned())
        .collect()
}

#[pollster::test]
async fn an_accepted_charge_stages_the_confirmation_notice_with_the_change() {
    let order = placed(PaymentMethod::CreditCard);
    let id = order.id;
    let mut m = Mocks::new();
    m.payments.expect_charge().returning(|_, _| Ok(Charged::Accepted(PaymentStatus::Paid)));
    m.stock.expect_confirm().times(1).returning(|_| Ok(()));
    // The order's own lines leave the cart it was placed from.
    m.carts
        .expect_take_ordered()
        .withf(move |cart, taken| *cart == visa().cart_id && taken.id == id)
        .times(1)
        .returning(|_, _| Ok(()));
    let (cell, staged) = stored_with_jobs(&mut m, order);
    m.service().run_step(&SagaJob { order_id: id, step: Step::Charge, reason: None }).await.unwrap();
    assert_eq!(cell.lock().unwrap().status, OrderStatus::Confirmed);
    let jobs = staged.lock().unwrap().clone();
    assert_eq!(notice_keys(&jobs), vec![format!("order:{id}:confirmed"), format!("order:{id}:paid")]);
    let confirmed = jobs.iter().find(|j| j.payload["key"] == format!("order:{id}:confirmed")).unwrap();
    assert_eq!(confirmed.payload["audience"]["customerId"], cell.lock().unwrap().customer_id.to_string());
    assert!(cell.lock().unwrap().has_note(crate::service::FINALIZED), "finalized in the same job");
}

#[pollster::test]
async fn an_online_orders_first_job_runs_the_happy_path_to_the_end_without_further_jobs() {
    let order = placed(PaymentMethod::CreditCard);
    let id = order.id;
    let mut m = Mocks::new();
    let mut seq = mockall::Sequence::new();
    m.stock
        .expect_reserve()
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_, _, _| Ok(Reserved::Done { low_stock: vec![] }));
    m.payments
        .expect_charge()
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_, _| Ok(Charged::Accepted(PaymentStatus::Authorized)));
    m.stock.expect_confirm().times(1).in_sequence(&mut seq).returning(|_| Ok(()));
    m.carts.expect_take_ordered().times(1).in_sequence(&mut seq).returning(|_, _| Ok(()));
    let (cell, staged) = stored_with_jobs(&mut m, order);
    m.service().run_step(&SagaJob { order_id: id, step: Step::Reserve, reason: None }).await.unwrap();
    let after = cell.lock().unwrap().clone();
    assert_eq!((after.status, after.payment_status), (OrderStatus::Confirmed, PaymentStatus::Authorized));
    assert!(after.has_note(crate::service::STOCK_RESERVED) && after.has_note(crate::service::FINALIZED));
    assert!(staged.lock().unwrap().iter().all(|j| j.kind != SAGA_KIND), "no step job: it all ran here");
}

#[pollster::test]
async fn the_online_happy_path_writes_the_order_once_after_the_stock_and_the_ordered_lines_left() {
    let order = placed(PaymentMethod::CreditCard);
    let id = order.id;
    let mut m = Mocks::new();
    let mut seq = mockall::Sequence::new();
    // One read: the order with its context.
    m.orders.expect_get_with_context().times(1).returning(move |_| Ok(Some((order.clone(), visa()))));
    m.stock.expect_reserve().times(1).returning(|_, _, _| Ok(Reserved::Done { low_stock: vec![] }));
    m.payments.expect_charge().times(1).returning(|_, _| Ok(Charged::Accepted(PaymentStatus::Authorized)));
    m.stock.expect_confirm().times(1).in_sequence(&mut seq).returning(|_| Ok(()));
    m.carts.expect_take_ordered().times(1).in_sequence(&mut seq).returning(|_, _| Ok(()));
    m.orders
        .expect_update()
        .times(1)
        .in_sequence(&mut seq)
        .withf(|before, after, _| {
            before.status == OrderStatus::PendingPayment
                && after.status == OrderStatus::Confirmed
                && after.has_note(crate::service::STOCK_RESERVED)
                && after.has_note(crate::service::FINALIZED)
        })
        .returning(|_, _, _| Ok(()));
    m.service().run_step(&SagaJob { order_id: id, step: Step::Reserve, reason: None }).await.unwrap();
}

#[pollster::test]
async fn an_order_cancelled_while_its_saga_ran_gets_its_stock_and_money_back() {
    // The customer cancelled (and the compensation ran, finding nothing yet) between the saga's
    // read and its write: the write conflicts, and the retry gives back what the saga took.
    let order = placed(PaymentMethod::CreditCard);
    let id = order.id;
    let mut cancelled = order.clone();
    cancelled.cancel(CancellationReason::CustomerRequest, now()).unwrap();
    let cancelled_read = cancelled.clone();
    let mut m = Mocks::new();
    let mut reads = mockall::Sequence::new();
    m.orders
        .expect_get_with_context()
        .times(1)
        .in_sequence(&mut reads)
        .returning(move |_| Ok(Some((order.clone(), visa()))));
    m.orders
        .expect_get_with_context()
        .times(1)
        .in_sequence(&mut reads)
        .returning(move |_| Ok(Some((cancelled.clone(), visa()))));
    m.stock.expect_reserve().times(1).returning(|_, _, _| Ok(Reserved::Done { low_stock: vec![] }));
    m.payments.expect_charge().times(1).returning(|_, _| Ok(Charged::Accepted(PaymentStatus::Paid)));
    m.stock.expect_confirm().times(1).returning(|_| Ok(()));
    m.carts.expect_take_ordered().returning(|_, _| Ok(()));
    m.orders
        .expect_update()
        .withf(|_, next, _| next.status == OrderStatus::Confirmed)
        .times(1)
        .returning(|_, _, _| Err(OrderSaveError::Conflict));
    // Once by the late step, once by the compensation it runs (idempotent).
    m.stock.expect_release().times(2).returning(|_| Ok(()));
    m.payments.expect_recover_charge().times(1).returning(|_| Ok(()));
    let (payment, _) = payment_of(&mut m, PaymentStatus::Refunded);
    m.payments.expect_refund_all().times(1).returning(move |_, _| Ok(RefundState::Refunded(payment)));
    // The cancelled order then shows the refund.
    let shown = cancelled_read.clone();
    m.orders.expect_get().returning(move |_| Ok(Some(shown.clone())));
    m.orders
        .expect_update()
        .withf(|before, next, _| {
            before.status == OrderStatus::Cancelled
                && (next.status, next.payment_status) == (OrderStatus::Cancelled, PaymentStatus::Refunded)
        })
        .times(1)
        .returning(|_, _, _| Ok(()));
    let service = m.service();
    let job = SagaJob { order_id: id, step: Step::Reserve, reason: None };
    assert!(matches!(service.run_step(&job).await, Err(StepError::Retry(_))));
    service.run_step(&job).await.unwrap();
}

#[pollster::test]
async fn a_step_run_again_after_a_compensation_refunded_the_charge_finishes_the_compensation() {
    // The compensation refunded the charge, then stopped before it cancelled the order (the
    // database went away); the saga's step runs again on the order still waiting for payment.
    let order = placed(PaymentMethod::CreditCard);
    let id = order.id;
    let mut m = Mocks::new();
    m.stock.expect_reserve().times(1).returning(|_, _, _| Ok(Reserved::Done { low_stock: vec![] }));
    m.payments.expect_charge().times(1).returning(|_, _| Ok(Charged::Refunded));
    m.stock.expect_confirm().never();
    m.carts.expect_take_ordered().never();
    let (payment, _) = payment_of(&mut m, PaymentStatus::Refunded);
    m.payments.expect_refund_all().times(1).returning(move |_, _| Ok(RefundState::Refunded(payment)));
    m.stock.expect_release().times(1).returning(|_| Ok(()));
    let cell = stored(&mut m, order);
    m.service().run_step(&SagaJob { order_id: id, step: Step::Reserve, reason: None }).await.unwrap();
    assert_eq!(
        outcome(&cell),
        (OrderStatus::Cancelled, PaymentStatus::Refunded, Some(CancellationReason::CheckoutFailed))
    );
}

#[pollster::test]
async fn a_charge_made_but_never_recorded_is_recovered_before_the_cancelled_order_is_refunded() {
    // The worker stopped between the provider's answer and its write; the customer cancelled
    // meanwhile and the compensation found no charge. The saga's next run looks the charge up
    // by its idempotency key (so that it is known), then refunds it.
    for (method, context, recovers) in [
        (PaymentMethod::CreditCard, visa(), true),
        (PaymentMethod::CreditCard, CheckoutContext { cart_id: uuid::Uuid::nil(), payment_token: None }, false),
        (PaymentMethod::CashOnDelivery, visa(), false),
    ] {
        let mut order = placed(method);
        order.cancel(CancellationReason::CustomerRequest, now()).unwrap();
        let id = order.id;
        let mut m = Mocks::new();
        let saga_read = order.clone();
        m.orders.expect_get_with_context().returning(move |_| Ok(Some((saga_read.clone(), context.clone()))));
        let mut steps = mockall::Sequence::new();
        // The stock first, whatever the money does.
        m.stock.expect_release().times(1).in_sequence(&mut steps).returning(|_| Ok(()));
        // Without a token (cash, or no card given) nothing can have been charged: no expectation,
        // so a call would fail the test.
        if recovers {
            m.payments
                .expect_recover_charge()
                .withf(move |order| order.id == id)
                .times(1)
                .in_sequence(&mut steps)
                .returning(|_| Ok(()));
        }
        // The compensation: a cancelled order's stock (again, idempotent), then its money.
        m.stock.expect_release().times(1).in_sequence(&mut steps).returning(|_| Ok(()));
        let (payment, _) = payment_of(&mut m, PaymentStatus::Refunded);
        m.payments
            .expect_refund_all()
            .times(1)
            .in_sequence(&mut steps)
            .returning(move |_, _| Ok(RefundState::Refunded(payment)));
        // Then the order shows the refund, its compensation finished.
        let cell = stored(&mut m, order);
        let service = m.service();
        service.run_step(&SagaJob { order_id: id, step: Step::Charge, reason: None }).await.unwrap();
        let after = cell.lock().unwrap().clone();
        assert_eq!(after.payment_status, PaymentStatus::Refunded);
        assert!(after.has_note(COMPENSATED));
    }
}

#[pollster::test]
async fn the_provider_settling_a_cancelled_orders_payment_finishes_its_compensation() {
    // Cancelled while the card payment was only authorized; the compensation gave up waiting
    // for the capture (or ran before it). A capture is refunded; an authorization the provider
    // let go leaves nothing to refund. Either way the stock goes back and the compensation is
    // recorded, once: the event delivered again, with the payment as it is now, changes nothing.
    for (event, refunds, shown) in
        [(PaymentStatus::Paid, true, PaymentStatus::Refunded), (PaymentStatus::Failed, false, PaymentStatus::Failed)]
    {
        let mut order = placed(PaymentMethod::CreditCard);
        order.cancel(CancellationReason::CustomerRequest, now()).unwrap();
        let id = order.id;
        let mut m = Mocks::new();
        let (payment, status) = payment_of(&mut m, event);
        let refunding = status.clone();
        m.payments.expect_refund_all().withf(|_, reason| reason == "CUSTOMER_REQUEST").times(1).returning(
            move |_, _| {
                Ok(if refunds {
                    *refunding.lock().unwrap() = PaymentStatus::Refunded;
                    RefundState::Refunded(payment)
                } else {
                    RefundState::NothingToRefund
                })
            },
        );
        m.stock.expect_release().times(1).returning(|_| Ok(()));
        let cell = stored(&mut m, order);
        let service = m.service();
        service.payment_event(id, payment).await.unwrap();
        let after = cell.lock().unwrap().clone();
        assert_eq!((after.status, after.payment_status), (OrderStatus::Cancelled, shown));
        assert!(after.has_note(COMPENSATED));
        *status.lock().unwrap() = shown;
        service.payment_event(id, payment).await.unwrap();
        assert_eq!(*cell.lock().unwrap(), after);
    }
}

#[pollster::test]
async fn an_event_retried_after_a_failed_release_finishes_the_interrupted_compensation() {
    // The capture's event failed to give the cancelled order's stock back (before its refund):
    // its retry finishes the compensation, the refund included.
    let mut order = placed(PaymentMethod::CreditCard);
    order.cancel(CancellationReason::CustomerRequest, now()).unwrap();
    let id = order.id;
    let mut m = Mocks::new();
    let (payment, status) = payment_of(&mut m, PaymentStatus::Paid);
    let refunding = status.clone();
    m.payments.expect_refund_all().times(1).returning(move |_, _| {
        *refunding.lock().unwrap() = PaymentStatus::Refunded;
        Ok(RefundState::Refunded(payment))
    });
    let mut releases = mockall::Sequence::new();
    m.stock
        .expect_release()
        .times(1)
        .in_sequence(&mut releases)
        .returning(|_| Err(ecom_kernel::InfraError::unavailable("pool timed out")));
    m.stock.expect_release().times(1).in_sequence(&mut releases).returning(|_| Ok(()));
    let cell = stored(&mut m, order);
    let service = m.service();
    assert!(service.payment_event(id, payment).await.is_err());
    assert!(!cell.lock().unwrap().has_note(COMPENSATED));
    service.payment_event(id, payment).await.unwrap();
    let after = cell.lock().unwrap().clone();
    assert_eq!(after.payment_status, PaymentStatus::Refunded);
    assert!(after.has_note(COMPENSATED));
}

#[pollster::test]
async fn only_the_providers_events_start_a_refund() {
    // A refund the provider refused leaves the payment PAID, and cash can be recorded for a
    // cancelled order by hand: the order shows it, and no refund starts (no expectation, so a
    // call fails the test), or a refused refund would book another one, again and again.
    let mut cancelled = placed(PaymentMethod::CreditCard);
    cancelled.cancel(CancellationReason::CustomerRequest, now()).unwrap();
    let mut confirmed = placed(PaymentMethod::CreditCard);
    confirmed.transition(OrderStatus::Confirmed, None, now()).unwrap();
    for (order, by_provider) in [(cancelled, false), (confirmed.clone(), false), (confirmed, true)] {
        let id = order.id;
        let mut m = Mocks::new();
        let (payment, _) = payment_of(&mut m, PaymentStatus::Paid);
        let cell = stored(&mut m, order);
        let service = m.service();
        if by_provider {
            service.payment_event(id, payment).await.unwrap();
        } else {
            service.payment_changed(id, payment).await.unwrap();
        }
        assert_eq!(cell.lock().unwrap().payment_status, PaymentStatus::Paid);
    }
}

#[pollster::test]
async fn a_replayed_first_job_goes_on_from_where_the_order_stands() {
    // Crashed after CONFIRMED, before the finalize: the replay neither reserves again nor charges.
    let mut order = placed(PaymentMethod::CreditCard);
    order.record(crate::service::STOCK_RESERVED, now());
    order.set_payment_status(PaymentStatus::Authorized, now());
    order.transition(OrderStatus::Confirmed, None, now()).unwrap();
    let id = order.id;
    let mut m = Mocks::new();
    m.stock.expect_reserve().never();
    m.payments.expect_charge().never();
    m.stock.expect_confirm().times(1).returning(|_| Ok(()));
    m.carts.expect_take_ordered().times(1).returning(|_, _| Ok(()));
    let (cell, _) = stored_with_jobs(&mut m, order);
    let service = m.service();
    service.run_step(&SagaJob { order_id: id, step: Step::Reserve, reason: None }).await.unwrap();
    assert!(cell.lock().unwrap().has_note(crate::service::FINALIZED));
    // And once more: nothing left to do.
    service.run_step(&SagaJob { order_id: id, step: Step::Reserve, reason: None }).await.unwrap();
}

#[pollster::test]
async fn a_cash_order_reserved_tells_the_admins_and_so_does_stock_falling_to_its_threshold() {
    let order = placed(PaymentMethod::CashOnDelivery);
    let (id, product) = (order.id, order.lines[0].product_id);
    // Held an hour past the confirmation window: an order confirmed at its very end keeps its
    // units until its finalize job takes them off the shelf.
    let held_until = order.created_at + Duration::hours(48) + Duration::hours(1);
    let mut m = Mocks::new();
    m.stock.expect_reserve().withf(move |_, _, expires_at| *expires_at == held_until).returning(move |_, _, _| {
        Ok(Reserved::Done { low_stock: vec![LowStock { product_id: product, available: 3, threshold: 5 }] })
    });
    m.payments.expect_open_cash().returning(|_| Ok(()));
    let (_, staged) = stored_with_jobs(&mut m, order);
    m.service().run_step(&SagaJob { order_id: id, step: Step::Reserve, reason: None }).await.unwrap();
    let jobs = staged.lock().unwrap().clone();
    assert_eq!(
        notice_keys(&jobs),
        vec![format!("order:{id}:awaiting-confirmation"), format!("low-stock:{product}:{id}")]
    );
    assert!(jobs
        .iter()
        .filter(|j| j.kind == ecom_notifications::service::SAVE_KIND)
        .all(|j| j.payload["audience"]["to"] == "admins"));
}

#[pollster::test]
async fn a_cancellation_tells_its_reason_once() {
    let order = placed(PaymentMethod::CreditCard);
    let id = order.id;
    let mut m = Mocks::new();
    m.payments.expect_refund_all().returning(|_, _| Ok(RefundState::NothingToRefund));
    m.stock.expect_release().returning(|_| Ok(()));
    let (_, staged) = stored_with_jobs(&mut m, order);
    let service = m.service();
    let job = SagaJob { order_id: id, step: Step::Compensate, reason: Some("OUT_OF_STOCK".into()) };
    service.run_step(&job).await.unwrap();
    service.run_step(&job).await.unwrap();
    let jobs = staged.lock().unwrap().clone();
    assert_eq!(notice_keys(&jobs), vec![format!("order:{id}:cancelled")]);
    assert_eq!(jobs[0].payload["data"]["reason"], "OUT_OF_STOCK");
}

#[pollster::test]
async fn unfinished_sagas_get_their_next_job_offered_again() {
    let (unpaid, confirmed, cancelled) = (OrderId::new(), OrderId::new(), OrderId::new());
    let mut m = Mocks::new();
    let page = vec![
        Unfinished { id: unpaid, status: OrderStatus::PendingPayment, cancellation_reason: None, updated_at: now() },
        Unfinished { id: confirmed, status: OrderStatus::Confirmed, cancellation_reason: None, updated_at: now() },
        Unfinished {
            id: cancelled,
            status: OrderStatus::Cancelled,
            cancellation_reason: Some(CancellationReason::CustomerRequest),
            updated_at: now(),
        },
    ];
    m.orders
        .expect_unfinished()
        .withf(|before, after, _| *before == now() - Duration::seconds(60) && after.is_none())
        .times(1)
        .returning(move |_, _, _| Ok(page.clone()));
    m.publisher = MockJobPublisher::new();
    // Offered, not published: a job that died of an outage runs again, once dead as long as
    // the order had to be idle.
    m.publisher
        .expect_reoffer()
        .withf(move |jobs: &[ecom_kernel::jobs::NewJob], revive_after| {
            *revive_after == std::time::Duration::from_secs(60)
                && jobs.iter().map(|j| j.id.as_str().to_owned()).collect::<Vec<_>>()
                    == vec![
                        format!("checkout:{unpaid}:reserve"),
                        format!("checkout:{confirmed}:finalize"),
                        format!("checkout:{cancelled}:compensate"),
                    ]
                && jobs[2].payload["reason"] == "CUSTOMER_REQUEST"
        })
        .times(1)
        .returning(|_, _| ());
    assert_eq!(m.service().resume_unfinished(Duration::seconds(60), 1000).await.unwrap(), 3);
}

#[pollster::test]
async fn a_step_that_cannot_read_its_order_is_retried_not_compensated() {
    let mut m = Mocks::new();
    m.orders.expect_get().returning(|_| Err(ecom_kernel::InfraError::unavailable("postgres unavailable")));
    m.orders.expect_get_with_context().returning(|_| Err(ecom_kernel::InfraError::unavailable("postgres unavailable")));
    let service = m.service();
    for step in [Step::Reserve, Step::Charge, Step::Finalize, Step::Compensate] {
        let job = SagaJob { order_id: OrderId::new(), step, reason: None };
        assert!(matches!(service.run_step(&job).await, Err(StepError::Retry(_))), "{step:?}");
    }
}

#[pollster::test]
async fn a_cash_order_is_confirmed_only_once_its_stock_is_reserved() {
    let order = placed(PaymentMethod::CashOnDelivery);
    let id = order.id;
    let mut m = Mocks::new();
    // Confirmed, its units are held another window for its finalize job.
    m.stock
        .expect_hold()
        .withf(move |o, until| *o == id && *until == now() + Duration::hours(48))
        .times(1)
        .returning(|_, _| Ok(true));
    let (cell, _) = stored_with_jobs(&mut m, order);
    let service = m.service();
    assert!(matches!(service.advance(id, OrderStatus::Confirmed).await, Err(OrderError::NotReadyYet)));
    assert_eq!(cell.lock().unwrap().status, OrderStatus::PendingConfirmation);
    let mut reserved = cell.lock().unwrap().clone();
    reserved.record(crate::service::STOCK_RESERVED, now());
    *cell.lock().unwrap() = reserved;
    assert_eq!(service.advance(id, OrderStatus::Confirmed).await.unwrap().status, OrderStatus::Confirmed);
}

#[pollster::test]
async fn a_cash_order_whose_reservation_lapsed_is_not_confirmed() {
    let mut order = placed(PaymentMethod::CashOnDelivery);
    order.record(crate::service::STOCK_RESERVED, now());
    let id = order.id;
    let mut m = Mocks::new();
    m.stock.expect_hold().returning(|_, _| Ok(false));
    let (cell, jobs) = stored_with_jobs(&mut m, order);
    let refused = m.service().advance(id, OrderStatus::Confirmed).await;
    assert!(matches!(refused, Err(OrderError::ConfirmationExpired)), "{refused:?}");
    assert_eq!(cell.lock().unwrap().status, OrderStatus::PendingConfirmation);
    assert!(jobs.lock().unwrap().is_empty());
}

#[pollster::test]
async fn a_confirmed_cash_order_moves_on_only_once_its_units_left_the_shelf() {
    let mut order = placed(PaymentMethod::CashOnDelivery);
    order.record(crate::service::STOCK_RESERVED, now());
    let id = order.id;
    let mut m = Mocks::new();
    m.stock.expect_hold().returning(|_, _| Ok(true));
    let (cell, jobs) = stored_with_jobs(&mut m, order);
    let service = m.service();
    assert_eq!(service.advance(id, OrderStatus::Confirmed).await.unwrap().status, OrderStatus::Confirmed);
    assert!(jobs.lock().unwrap().iter().any(|j| j.id.as_str() == format!("checkout:{id}:finalize")));

    // Past CONFIRMED the finalize job does nothing: processing first would leave the units
    // reserved until the reservation expires back into stock on sale.
    assert!(matches!(service.advance(id, OrderStatus::Processing).await, Err(OrderError::NotFinalizedYet)));
    assert_eq!(cell.lock().unwrap().status, OrderStatus::Confirmed);
    // A move never allowed is refused as such, not as "try again".
    assert!(matches!(
        service.advance(id, OrderStatus::Shipped).await,
        Err(OrderError::Rule(crate::model::OrderRuleError::InvalidTransition { .. }))
    ));

    let mut finalized = cell.lock().unwrap().clone();
    finalized.record(crate::service::FINALIZED, now());
    *cell.lock().unwrap() = finalized;
    assert_eq!(service.advance(id, OrderStatus::Processing).await.unwrap().status, OrderStatus::Processing);
}

#[pollster::test]
async fn an_admin_cannot_confirm_an_online_order_waiting_for_its_payment() {
    let order = placed(PaymentMethod::CreditCard);
    let id = order.id;
    let mut m = Mocks::new();
    let (cell, jobs) = stored_with_jobs(&mut m, order);
    let service = m.service();

    let refused = service.advance(id, OrderStatus::Confirmed).await;

    assert!(
        matches!(
            refused,
            Err(OrderError::Rule(crate::model::OrderRuleError::InvalidTransition {
                from: OrderStatus::PendingPayment,
                to: OrderStatus::Confirmed
            }))
        ),
        "{refused:?}"
    );
    assert_eq!(cell.lock().unwrap().status, OrderStatus::PendingPayment, "nothing written");
    assert!(jobs.lock().unwrap().is_empty(), "no finalize job");
}

#[pollster::test]
async fn a_compensation_shows_the_payment_as_it_stands_when_it_writes_not_as_its_refund_left_it() {
    // The refund was booked (the provider unreachable), then refused by its job before the
    // compensation wrote the order: the money is still taken, and the order must not say
    // REFUNDED.
    let mut order = placed(PaymentMethod::CreditCard);
    order.cancel(CancellationReason::CustomerRequest, now()).unwrap();
    let id = order.id;
    let mut m = Mocks::new();
    // Booked (REFUNDED) and refused (PAID again) by the time the refund's answer is back.
    let (payment, _) = payment_of(&mut m, PaymentStatus::Paid);
    m.payments.expect_refund_all().times(1).returning(move |_, _| Ok(RefundState::Refunded(payment)));
    m.stock.expect_release().times(1).returning(|_| Ok(()));
    let cell = stored(&mut m, order);
    let run = m.service().compensate(id, CancellationReason::CustomerRequest).await;
    let after = cell.lock().unwrap().clone();
    assert_eq!((after.status, after.payment_status), (OrderStatus::Cancelled, PaymentStatus::Paid));
    // The money shown taken, and not refused to this run: it runs again (and then finds the
    // refusal on record).
    assert!(matches!(run, Err(StepError::Retry(_))), "{run:?}");
}

#[pollster::test]
async fn money_recorded_while_the_order_is_compensated_is_refunded_by_running_it_again() {
    // The compensation found nothing taken (the charge never recorded); meanwhile the provider's
    // event recorded the charge, and its own check of the order came before this cancellation.
    let order = placed(PaymentMethod::CreditCard);
    let id = order.id;
    let mut m = Mocks::new();
    let (payment, status) = payment_of(&mut m, PaymentStatus::Paid);
    let mut runs = mockall::Sequence::new();
    m.payments.expect_refund_all().times(1).in_sequence(&mut runs).returning(|_, _| Ok(RefundState::NothingToRefund));
    m.payments.expect_refund_all().times(1).in_sequence(&mut runs).returning(move |_, _| {
        *status.lock().unwrap() = PaymentStatus::Refunded;
        Ok(RefundState::Refunded(payment))
    });
    let cell = stored(&mut m, order);
    let shown = cell.clone();
    m.stock.expect_release().times(2).returning(move |_| {
        let mut order = shown.lock().unwrap();
        if order.payment_status == PaymentStatus::Pending {
            order.set_payment_status(PaymentStatus::Paid, now());
        }
        Ok(())
    });
    let service = m.service();

    let first = service.compensate(id, CancellationReason::CheckoutFailed).await;
    assert!(matches!(first, Err(StepError::Retry(_))), "{first:?}");
    // Not recorded as done: the resume sweep offers it again, should its job die.
    assert!(!cell.lock().unwrap().has_note(COMPENSATED));
    service.compensate(id, CancellationReason::CheckoutFailed).await.unwrap();
    let after = cell.lock().unwrap().clone();
    assert_eq!((after.status, after.payment_status), (OrderStatus::Cancelled, PaymentStatus::Refunded));
}

#[pollster::test]
async fn a_refund_the_provider_refuses_ends_the_compensation_with_the_money_shown_taken_and_why() {
    let mut order = placed(PaymentMethod::CreditCard);
    order.set_payment_status(PaymentStatus::Paid, now());
    order.cancel(CancellationReason::CustomerRequest, now()).unwrap();
    let id = order.id;
    let mut m = Mocks::new();
    let (payment, _) = payment_of(&mut m, PaymentStatus::Paid);
    let mut refusals = mockall::Sequence::new();
    m.payments
        .expect_refund_all()
        .times(1)
        .in_sequence(&mut refusals)
        .returning(move |_, _| Ok(RefundState::Refused { payment, reason: "charge disputed".into() }));
    // Run again, the payments say so in other words (they do not ask the provider again).
    m.payments
        .expect_refund_all()
        .times(1)
        .in_sequence(&mut refusals)
        .returning(move |_, _| Ok(RefundState::Refused { payment, reason: "refused before".into() }));
    m.stock.expect_release().times(2).returning(|_| Ok(()));
    let cell = stored(&mut m, order);
    let service = m.service();

    // Done, not retried: asking again would only be refused again.
    service.compensate(id, CancellationReason::CustomerRequest).await.unwrap();

    let after = cell.lock().unwrap().clone();
    assert_eq!((after.status, after.payment_status), (OrderStatus::Cancelled, PaymentStatus::Paid));
    let note = format!("{}: charge disputed", crate::service::REFUND_REFUSED);
    assert!(after.has_note(&note), "{:?}", after.timeline);
    assert!(after.has_note(COMPENSATED), "the stock is back: nothing is left for the saga to do");
    service.compensate(id, CancellationReason::CustomerRequest).await.unwrap();
    assert_eq!(*cell.lock().unwrap(), after, "run again, it records nothing twice");
}

#[pollster::test]
async fn a_cancelled_cash_order_shows_its_collection_cancelled() {
    let order = placed(PaymentMethod::CashOnDelivery);
    let id = order.id;
    let mut m = Mocks::new();
    let (payment, _) = payment_of(&mut m, PaymentStatus::Failed);
    m.payments.expect_refund_all().times(2).returning(move |_, _| Ok(RefundState::CollectionCancelled(payment)));
    m.stock.expect_release().times(2).returning(|_| Ok(()));
    let cell = stored(&mut m, order);
    let service = m.service();

    service.compensate(id, CancellationReason::ConfirmationExpired).await.unwrap();

    let after = cell.lock().unwrap().clone();
    assert_eq!((after.status, after.payment_status), (OrderStatus::Cancelled, PaymentStatus::Failed));
    service.compensate(id, CancellationReason::ConfirmationExpired).await.unwrap();
    assert_eq!(*cell.lock().unwrap(), after, "running it again changes nothing");
}

#[pollster::test]
async fn a_cash_order_past_its_confirmation_window_can_no_longer_be_confirmed() {
    let mut order = placed(PaymentMethod::CashOnDelivery);
    order.created_at = now() - Duration::hours(48);
    order.record(crate::service::STOCK_RESERVED, now() - Duration::hours(48));
    let id = order.id;
    let mut m = Mocks::new();
    let (cell, jobs) = stored_with_jobs(&mut m, order);
    let service = m.service();

    let refused = service.advance(id, OrderStatus::Confirmed).await;

    assert!(matches!(refused, Err(OrderError::ConfirmationExpired)), "{refused:?}");
    assert_eq!(cell.lock().unwrap().status, OrderStatus::PendingConfirmation, "nothing written");
    assert!(jobs.lock().unwrap().is_empty(), "no finalize job");
}

#[pollster::test]
async fn a_cash_order_cancelled_while_its_stock_was_reserved_gets_everything_back() {
    let mut order = placed(PaymentMethod::CashOnDelivery);
    order.cancel(CancellationReason::CustomerRequest, now()).unwrap();
    order.record(crate::service::COMPENSATED, now());
    let id = order.id;
    let mut m = Mocks::new();
    // The step's reservation and cash payment came after the compensation: both go back.
    m.stock.expect_reserve().never();
    m.stock.expect_release().times(1).returning(|_| Ok(()));
    let (payment, _) = payment_of(&mut m, PaymentStatus::Failed);
    m.payments.expect_refund_all().times(1).returning(move |_, _| Ok(RefundState::CollectionCancelled(payment)));
    let cell = stored(&mut m, order);
    let service = m.service();

    service.run_step(&SagaJob { order_id: id, step: Step::Reserve, reason: None }).await.unwrap();

    let after = cell.lock().unwrap().clone();
    assert_eq!((after.status, after.payment_status), (OrderStatus::Cancelled, PaymentStatus::Failed));
    assert_eq!(after.cancellation_reason, Some(CancellationReason::CustomerRequest), "the first reason stays");
}

#[pollster::test]
async fn an_overdue_order_is_cancelled_first_and_given_back_what_it_took_in_its_compensation_job() {
    let (cash, online) = (placed(PaymentMethod::CashOnDelivery), placed(PaymentMethod::CreditCard));
    let (cash_id, online_id) = (cash.id, online.id);
    let mut m = Mocks::new();
    m.orders.expect_stale().returning(move |status, before, _| {
        Ok(match status {
            OrderStatus::PendingConfirmation if before == now() - Duration::hours(48) => vec![cash_id],
            OrderStatus::PendingPayment if before == now() - Duration::minutes(30) => vec![online_id],
            _ => vec![],
        })
    });
    // Nothing is given back by the sweep itself: the compensation job does it.
    m.payments.expect_refund_all().never();
    m.stock.expect_release().never();
    // The online order was paid meanwhile: left alone.
    let mut paid = online.clone();
    paid.set_payment_status(PaymentStatus::Paid, now());
    paid.transition(OrderStatus::Confirmed, None, now()).unwrap();
    m.orders.expect_get().withf(move |id| *id == online_id).returning(move |_| Ok(Some(paid.clone())));
    m.orders.expect_get().withf(move |id| *id == cash_id).times(1).returning(move |_| Ok(Some(cash.clone())));
    let (written, staged) = (Arc::new(Mutex::new(Vec::new())), Arc::new(Mutex::new(Vec::new())));
    let (write, stage) = (written.clone(), staged.clone());
    m.orders.expect_update().times(1).returning(move |_, next: &Order, jobs| {
        write.lock().unwrap().push(next.clone());
        stage.lock().unwrap().extend_from_slice(jobs);
        Ok(())
    });
    assert_eq!(m.service().expire_overdue(100).await.unwrap(), 1);

    let after = written.lock().unwrap()[0].clone();
    assert_eq!(after.id, cash_id);
    assert_eq!(
        (after.status, after.cancellation_reason),
        (OrderStatus::Cancelled, Some(CancellationReason::ConfirmationExpired))
    );
    let staged = staged.lock().unwrap().clone();
    let compensation: Vec<_> =
        staged.iter().filter(|j| j.id.as_str() == format!("checkout:{cash_id}:compensate")).collect();
    assert_eq!(compensation.len(), 1, "{staged:?}");
    assert_eq!(compensation[0].payload["reason"], "CONFIRMATION_EXPIRED");
    assert!(notice_keys(&staged).contains(&format!("order:{cash_id}:cancelled")));
}

#[pollster::test]
async fn an_expiry_that_loses_the_race_to_an_admins_confirmation_leaves_the_order_confirmed() {
    let cash = placed(PaymentMethod::CashOnDelivery);
    let id = cash.id;
    let mut confirmed = cash.clone();
    confirmed.transition(OrderStatus::Confirmed, Some("confirmed by an admin".into()), now()).unwrap();
    let mut m = Mocks::new();
    m.orders
        .expect_stale()
        .returning(move |status, _, _| Ok(if status == OrderStatus::PendingConfirmation { vec![id] } else { vec![] }));
    let mut reads = mockall::Sequence::new();
    m.orders.expect_get().times(1).in_sequence(&mut reads).returning(move |_| Ok(Some(cash.clone())));
    m.orders.expect_get().times(1).in_sequence(&mut reads).returning(move |_| Ok(Some(confirmed.clone())));
    // The admin's write landed between the expiry's read and its write: only one write tried.
    m.orders.expect_update().times(1).returning(|_, _, _| Err(OrderSaveError::Conflict));
    assert_eq!(m.service().expire_overdue(100).await.unwrap(), 0);
}

#[pollster::test]
async fn an_order_that_cannot_be_expired_now_does_not_hold_up_the_others() {
    let (online, cash) = (placed(PaymentMethod::CreditCard), placed(PaymentMethod::CashOnDelivery));
    let (online_id, cash_id) = (online.id, cash.id);
    let mut m = Mocks::new();
    m.orders.expect_stale().returning(move |status, _, _| {
        Ok(if status == OrderStatus::PendingPayment { vec![online_id] } else { vec![cash_id] })
    });
    m.orders
        .expect_get()
        .withf(move |id| *id == online_id)
        .returning(|_| Err(ecom_kernel::InfraError::unavailable("postgres unavailable")));
    m.orders.expect_get().withf(move |id| *id == cash_id).returning(move |_| Ok(Some(cash.clone())));
    m.orders.expect_update().times(1).withf(move |_, next, _| next.id == cash_id).returning(|_, _, _| Ok(()));
    assert!(matches!(m.service().expire_overdue(100).await, Err(StepError::Retry(_))));
}

#[pollster::test]
async fn cash_is_not_collected_for_a_cancelled_order() {
    let open = placed(PaymentMethod::CashOnDelivery);
    let mut cancelled = placed(PaymentMethod::CashOnDelivery);
    cancelled.status = OrderStatus::Cancelled;
    let mut card = placed(PaymentMethod::CreditCard);
    card.status = OrderStatus::Cancelled;
    let (open_id, cancelled_id, card_id, unknown) = (open.id, cancelled.id, card.id, OrderId::new());
    let mut m = Mocks::new();
    m.orders.expect_get().withf(move |id| *id == card_id).returning(move |_| Ok(Some(card.clone())));
    m.orders.expect_get().withf(move |id| *id == open_id).returning(move |_| Ok(Some(open.clone())));
    m.orders.expect_get().withf(move |id| *id == cancelled_id).returning(move |_| Ok(Some(cancelled.clone())));
    m.orders.expect_get().withf(move |id| *id == unknown).returning(|_| Ok(None));
    let service = m.service();

    assert!(service.check_cash_collectable(open_id).await.is_ok());
    assert!(
        matches!(service.check_cash_collectable(cancelled_id).await, Err(OrderError::Cancelled(id)) if id == cancelled_id)
    );
    assert!(service.check_cash_collectable(unknown).await.is_ok(), "the payments answer for an unknown order");
    assert!(service.check_cash_collectable(card_id).await.is_ok(), "and for one paid online (no cash payment)");
}

#[pollster::test]
async fn the_order_shows_its_payment_as_it_stands_after_a_concurrent_change() {
    // Cash recorded (PAID) while a compensation refunds it: the refund's write of the order lands
    // between this one's read and write, which conflicts; read again, the payment is REFUNDED,
    // and the order never shows PAID after REFUNDED.
    let mut order = placed(PaymentMethod::CashOnDelivery);
    order.transition(OrderStatus::Confirmed, None, now()).unwrap();
    let id = order.id;
    let mut m = Mocks::new();
    let (payment, status) = payment_of(&mut m, PaymentStatus::Paid);
    let cell = Arc::new(Mutex::new(order));
    let read = cell.clone();
    m.orders.expect_get().returning(move |_| Ok(Some(read.lock().unwrap().clone())));
    let (write, refunded) = (cell.clone(), status.clone());
    let mut writes = mockall::Sequence::new();
    m.orders.expect_update().times(1).in_sequence(&mut writes).returning(move |_, _, _| {
        // The compensation got there first: the payment refunded, the order showing it.
        *refunded.lock().unwrap() = PaymentStatus::Refunded;
        write.lock().unwrap().payment_status = PaymentStatus::Refunded;
        Err(OrderSaveError::Conflict)
    });
    m.orders.expect_update().times(0).in_sequence(&mut writes);
    let service = m.service();

    service.payment_changed(id, payment).await.unwrap();

    assert_eq!(cell.lock().unwrap().payment_status, PaymentStatus::Refunded);
}

#[pollster::test]
async fn a_payment_change_whose_own_follow_up_found_nothing_to_do_is_caught_after_the_write() {
    // The order shows PAID. This call reads the payment REFUNDED (a refund booked); before its
    // write lands, the provider refuses the refund (the payment PAID again) and the refusal's own
    // follow-up reads the order still showing PAID: nothing to change, nothing written, so no
    // conflict either. Reading the payment after the write finds PAID, and writes that.
    let mut order = placed(PaymentMethod::CreditCard);
    order.set_payment_status(PaymentStatus::Paid, now());
    order.transition(OrderStatus::Confirmed, None, now()).unwrap();
    let id = order.id;
    let mut m = Mocks::new();
    let (payment, status) = payment_of(&mut m, PaymentStatus::Refunded);
    let cell = Arc::new(Mutex::new(order));
    let read = cell.clone();
    m.orders.expect_get().returning(move |_| Ok(Some(read.lock().unwrap().clone())));
    let (write, refused) = (cell.clone(), status.clone());
    m.orders.expect_update().times(2).returning(move |_, next, _| {
        *write.lock().unwrap() = next.clone();
        *refused.lock().unwrap() = PaymentStatus::Paid;
        Ok(())
    });

    m.service().payment_changed(id, payment).await.unwrap();

    assert_eq!(cell.lock().unwrap().payment_status, PaymentStatus::Paid);
}

/// A paid card order, delivered.
fn delivered() -> Order {
    let mut order = placed(PaymentMethod::CreditCard);
    order.set_payment_status(PaymentStatus::Paid, now());
    for to in [OrderStatus::Confirmed, OrderStatus::Processing, OrderStatus::Shipped, OrderStatus::Delivered] {
        order.transition(to, None, now()).unwrap();
    }
    order
}

#[pollster::test]
async fn a_delivered_order_refunded_in_full_becomes_refunded_once_every_refund_is_answered() {
    let order = delivered();
    let id = order.id;
    let mut m = Mocks::new();
    let (payment, _) = payment_of(&mut m, PaymentStatus::Refunded);
    let answered = Arc::new(Mutex::new(false));
    let read = answered.clone();
    m.payments.expect_refunds_answered().withf(move |p| *p == payment).returning(move |_| Ok(*read.lock().unwrap()));
    let cell = stored(&mut m, order);
    let service = m.service();

    // Booked, not answered: a refusal could still give it back.
    service.payment_changed(id, payment).await.unwrap();
    let booked = cell.lock().unwrap().clone();
    assert_eq!((booked.status, booked.payment_status), (OrderStatus::Delivered, PaymentStatus::Refunded));

    *answered.lock().unwrap() = true;
    service.payment_changed(id, payment).await.unwrap();
    let refunded = cell.lock().unwrap().clone();
    assert_eq!(refunded.status, OrderStatus::Refunded);
    assert!(refunded.has_note(crate::service::REFUNDED_AFTER_DELIVERY));
    service.payment_changed(id, payment).await.unwrap();
    assert_eq!(*cell.lock().unwrap(), refunded, "once");
}

#[pollster::test]
async fn a_delivered_order_refunded_in_part_stays_delivered() {
    let order = delivered();
    let id = order.id;
    let mut m = Mocks::new();
    let (payment, _) = payment_of(&mut m, PaymentStatus::PartiallyRefunded);
    m.payments.expect_refunds_answered().never();
    let cell = stored(&mut m, order);
    m.service().payment_changed(id, payment).await.unwrap();
    let after = cell.lock().unwrap().clone();
    assert_eq!((after.status, after.payment_status), (OrderStatus::Delivered, PaymentStatus::PartiallyRefunded));
}

#[pollster::test]
async fn an_order_confirmed_on_a_charge_that_then_fails_is_cancelled_as_declined_and_its_stock_given_back() {
    let mut order = placed(PaymentMethod::CreditCard);
    order.set_payment_status(PaymentStatus::Authorized, now());
    order.transition(OrderStatus::Confirmed, None, now()).unwrap();
    let id = order.id;
    let mut m = Mocks::new();
    let (payment, _) = payment_of(&mut m, PaymentStatus::Failed);
    // CANCELLED first, its compensation staged with it (an admin's ship racing with it is then
    // refused); the compensation job gives the stock back.
    m.payments.expect_refund_all().never();
    m.stock.expect_release().never();
    let (cell, jobs) = stored_with_jobs(&mut m, order);
    m.service().payment_event(id, payment).await.unwrap();
    assert_eq!(
        outcome(&cell),
        (OrderStatus::Cancelled, PaymentStatus::Failed, Some(CancellationReason::PaymentDeclined))
    );
    let staged = jobs.lock().unwrap().clone();
    let compensation = staged.iter().find(|j| j.id.as_str() == format!("checkout:{id}:compensate")).expect("staged");
    assert_eq!(compensation.payload["reason"], "PAYMENT_DECLINED");
}

#[pollster::test]
async fn giving_up_looks_for_a_charge_made_without_its_answer_then_refunds_it() {
    let order = placed(PaymentMethod::CreditCard);
    let id = order.id;
    let mut m = Mocks::new();
    let mut steps = mockall::Sequence::new();
    m.payments
        .expect_recover_charge()
        .withf(move |o| o.id == id)
        .times(1)
        .in_sequence(&mut steps)
        .returning(|_| Ok(()));
    let (payment, _) = payment_of(&mut m, PaymentStatus::Refunded);
    m.payments
        .expect_refund_all()
        .times(1)
        .in_sequence(&mut steps)
        .returning(move |_, _| Ok(RefundState::Refunded(payment)));
    m.stock.expect_release().times(1).returning(|_| Ok(()));
    let (cell, _) = stored_with_jobs(&mut m, order);
    m.service().give_up(id).await.unwrap();
    assert_eq!(
        outcome(&cell),
        (OrderStatus::Cancelled, PaymentStatus::Refunded, Some(CancellationReason::CheckoutFailed))
    );
}

#[pollster::test]
async fn an_online_order_is_processed_only_once_its_payment_is_taken() {
    let mut order = placed(PaymentMethod::CreditCard);
    order.set_payment_status(PaymentStatus::Authorized, now());
    order.transition(OrderStatus::Confirmed, None, now()).unwrap();
    order.record(crate::service::FINALIZED, now());
    let id = order.id;
    let mut m = Mocks::new();
    let (cell, _) = stored_with_jobs(&mut m, order);
    let service = m.service();
    assert!(matches!(service.advance(id, OrderStatus::Processing).await, Err(OrderError::PaymentNotSettledYet)));
    assert_eq!(cell.lock().unwrap().status, OrderStatus::Confirmed);

    let mut paid = cell.lock().unwrap().clone();
    paid.set_payment_status(PaymentStatus::Paid, now());
    *cell.lock().unwrap() = paid;
    assert_eq!(service.advance(id, OrderStatus::Processing).await.unwrap().status, OrderStatus::Processing);
}

#[pollster::test]
async fn an_order_refunded_in_full_before_delivery_is_refunded_once_delivered() {
    let mut order = delivered();
    // Shipped, and its money given back in full before it arrived.
    order.status = OrderStatus::Shipped;
    order.set_payment_status(PaymentStatus::Refunded, now());
    let id = order.id;
    let payment = PaymentId::new();
    let mut m = Mocks::new();
    let answered = Arc::new(Mutex::new(false));
    let read = answered.clone();
    m.payments
        .expect_refunded_payment()
        .withf(move |o| *o == id)
        .returning(move |_| Ok(Some((payment, *read.lock().unwrap()))));
    let (cell, staged) = stored_with_jobs(&mut m, order.clone());
    let service = m.service();

    // A refund still only booked: delivered, and the payment followed once that is written
    // (its refund's own follower may have run before, finding the order not delivered yet).
    assert_eq!(service.advance(id, OrderStatus::Delivered).await.unwrap().status, OrderStatus::Delivered);
    let follow = format!("payment-changed:{payment}:delivered");
    assert!(staged.lock().unwrap().iter().any(|j| j.id.as_str() == follow), "{:?}", staged.lock().unwrap());

    *cell.lock().unwrap() = order;
    staged.lock().unwrap().clear();
    *answered.lock().unwrap() = true;
    let after = service.advance(id, OrderStatus::Delivered).await.unwrap();
    assert_eq!((after.status, after.payment_status), (OrderStatus::Refunded, PaymentStatus::Refunded));
    assert!(after.has_note(crate::service::REFUNDED_BEFORE_DELIVERY));
    assert_eq!(*cell.lock().unwrap(), after);
    // The customer still hears it was delivered; nothing left to follow.
    let jobs = staged.lock().unwrap().clone();
    assert_eq!(notice_keys(&jobs), vec![format!("order:{id}:delivered")]);
    assert!(jobs.iter().all(|j| j.id.as_str() != follow));
}

#[pollster::test]
async fn an_online_order_whose_money_is_gone_cannot_be_processed() {
    for gone in [PaymentStatus::Refunded, PaymentStatus::Failed] {
        let mut order = placed(PaymentMethod::CreditCard);
        order.set_payment_status(PaymentStatus::Paid, now());
        order.transition(OrderStatus::Confirmed, None, now()).unwrap();
        order.record(crate::service::FINALIZED, now());
        order.set_payment_status(gone, now());
        let id = order.id;
        let mut m = Mocks::new();
        let cell = stored(&mut m, order);
        let refused = m.service().advance(id, OrderStatus::Processing).await;
        assert!(
            matches!(refused, Err(OrderError::Rule(OrderRuleError::InvalidTransition { .. }))),
            "{gone:?}: {refused:?}"
        );
        assert_eq!(cell.lock().unwrap().status, OrderStatus::Confirmed);
    }
}
