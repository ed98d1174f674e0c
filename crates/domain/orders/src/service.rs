//! The order use cases: checkout, the saga's steps (run by the worker, one job per step with a
//! deterministic id), compensation, cancellation, the admin lifecycle and expiry.
//!
//! Every step re-reads the order and does nothing when the order has moved on, so a redelivered
//! job changes nothing; a step's result and the next step's job are written in one transaction.

use std::sync::Arc;

use chrono::Duration;
use ecom_kernel::jobs::{JobId, NewJob, QueueName};
use ecom_kernel::{Clock, CustomerId, OrderId, Page, PageRequest, ProductId};
use ecom_payments::model::{PaymentId, PaymentStatus};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use ecom_notifications::model::NotificationRequest;

use crate::error::OrderError;
use crate::model::{
    CancellationReason, NewOrder, Order, OrderLine, OrderRuleError, OrderStatus, PaymentMethod, ShippingAddress,
    ShippingPolicy,
};
use crate::notices::{low_stock_notices, notices, with_notices};
use crate::ports::{
    AddressBook, CartItem, Carts, Catalog, Charged, CheckoutContext, OrderFilter, OrderPayments, OrderRepository,
    OrderSaveError, RefundState, Reserved, Stock,
};

/// Timeline notes of the saga steps that do not change the status; a step that finds its note
/// has run already.
pub const STOCK_RESERVED: &str = "stock reserved";
/// (Stored in timelines, so kept word for word: "cart cleared" now means the ordered lines left it.)
pub const FINALIZED: &str = "stock confirmed, cart cleared";
pub const COMPENSATED: &str = "refund and stock settled";

/// Timeline note (followed by the provider's reason) of a cancelled order whose refund the
/// provider refused: the money is still taken, the payment PAID; a person settles it.
pub const REFUND_REFUSED: &str = "refund refused by the provider";
/// The note of a delivered order refunded in full.
pub const REFUNDED_AFTER_DELIVERY: &str = "refunded in full after delivery";
pub const REFUNDED_BEFORE_DELIVERY: &str = "refunded in full before delivery";

/// Whether a cancelled order shows money taken that its compensation has yet to give back (unless
/// the provider refused to).
fn unsettled(order: &Order, refused: bool) -> bool {
    !refused && matches!(order.payment_status, PaymentStatus::Paid | PaymentStatus::PartiallyRefunded)
}

/// Whether the order's timeline records a refused refund (the first one's reason is kept).
fn has_refusal(order: &Order) -> bool {
    order.timeline.iter().any(|t| t.note.as_deref().is_some_and(|n| n.starts_with(REFUND_REFUSED)))
}

/// Job kind of every saga step.
pub const SAGA_KIND: &str = "checkout.step";

/// The saga's steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Step {
    /// Reserve the stock (online: then charge; cash: then wait for the admin).
    Reserve,
    /// Charge the payment (online); accepted → CONFIRMED.
    Charge,
    /// Confirm the reservation and take the ordered lines out of the cart (after CONFIRMED).
    Finalize,
    /// Give back what was taken and cancel.
    Compensate,
}

impl Step {
    fn as_str(self) -> &'static str {
        match self {
            Step::Reserve => "reserve",
            Step::Charge => "charge",
            Step::Finalize => "finalize",
            Step::Compensate => "compensate",
        }
    }
}

/// Payload of a saga job (schema version 1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SagaJob {
    pub order_id: OrderId,
    pub step: Step,
    /// Why, for `Compensate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

pub fn saga_job(order: OrderId, step: Step, reason: Option<&CancellationReason>) -> NewJob {
    NewJob {
        id: JobId::new(format!("checkout:{order}:{}", step.as_str())),
        queue: QueueName::Checkout,
        kind: SAGA_KIND.to_owned(),
        payload: serde_json::json!(SagaJob { order_id: order, step, reason: reason.map(|r| r.as_str().to_owned()) }),
        schema_version: 1,
        max_attempts: 10,
        trace_id: None,
    }
}

/// How a saga step ended, for the job runtime.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// Try the step again later (a dependency is down, a race was lost).
    #[error("retry: {0}")]
    Retry(String),
    #[error(transparent)]
    Failed(OrderError),
}

impl From<OrderError> for StepError {
    /// A dependency that is down, or a race lost, is worth another try; the rest is final.
    fn from(e: OrderError) -> Self {
        match e {
            OrderError::Infrastructure(e) => StepError::Retry(e.to_string()),
            OrderError::Conflict => StepError::Retry("order changed concurrently".into()),
            other => StepError::Failed(other),
        }
    }
}

impl From<ecom_kernel::InfraError> for StepError {
    fn from(e: ecom_kernel::InfraError) -> Self {
        StepError::Retry(e.to_string())
    }
}

impl From<OrderSaveError> for StepError {
    fn from(e: OrderSaveError) -> Self {
        match e {
            OrderSaveError::Conflict => StepError::Retry("order changed concurrently".into()),
            OrderSaveError::Infrastructure(e) => StepError::Retry(e.to_string()),
        }
    }
}

/// Order settings.
#[derive(Debug, Clone, Copy)]
pub struct OrderSettings {
    pub shipping: ShippingPolicy,
    /// An online order not paid within this is cancelled (stock released).
    pub payment_window: Duration,
    /// A cash-on-delivery order not confirmed within this is cancelled.
    pub confirmation_window: Duration,
    /// Whether checkouts may pay with PayPal (a shop in production without PayPal's keys does
    /// not take it).
    pub paypal_accepted: bool,
}

/// Where the order ships to.
#[derive(Debug, Clone)]
pub enum ShippingChoice {
    Saved(Uuid),
    New(ShippingAddress),
}

#[derive(Debug, Clone)]
pub struct CheckoutRequest {
    pub cart_id: Uuid,
    pub payment_method: PaymentMethod,
    pub shipping: Option<ShippingChoice>,
    pub payment_token: Option<String>,
    pub customer_notes: Option<String>,
}

/// Who is looking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Viewer {
    pub customer_id: CustomerId,
    pub admin: bool,
}

/// Every port of the order service.
pub struct OrderPorts {
    pub orders: Arc<dyn OrderRepository>,
    pub carts: Arc<dyn Carts>,
    pub catalog: Arc<dyn Catalog>,
    pub addresses: Arc<dyn AddressBook>,
    pub stock: Arc<dyn Stock>,
    pub payments: Arc<dyn OrderPayments>,
    pub publisher: Arc<dyn ecom_payments::ports::JobPublisher>,
    pub clock: Arc<dyn Clock>,
}

pub struct OrderService {
    ports: OrderPorts,
    settings: OrderSettings,
}

/// How long a reservation outlives its order's payment or confirmation window.
pub const RESERVATION_GRACE: Duration = Duration::hours(1);

/// The longest payment token taken (providers' ids are far shorter).
const MAX_PAYMENT_TOKEN_LEN: usize = 255;

/// Raw card numbers (12 to 19 digits, spaces and dashes aside) are refused outright.
fn looks_like_card_number(token: &str) -> bool {
    let digits: Vec<char> = token.chars().filter(|c| !matches!(c, ' ' | '-')).collect();
    (12..=19).contains(&digits.len()) && digits.iter().all(char::is_ascii_digit)
}

impl OrderService {
    pub fn new(ports: OrderPorts, settings: OrderSettings) -> Self {
        Self { ports, settings }
    }

    async fn load(&self, id: OrderId) -> Result<Order, OrderError> {
        self.ports.orders.get(id).await?.ok_or(OrderError::NotFound(id))
    }

    /// The order with its checkout context (the cart to take its lines from, the payment token).
    async fn load_for_saga(&self, id: OrderId) -> Result<(Order, CheckoutContext), OrderError> {
        self.ports.orders.get_with_context(id).await?.ok_or(OrderError::NotFound(id))
    }

    /// Stores the change with `jobs` and the notices it causes, then publishes them.
    async fn save(&self, expected: &Order, order: &Order, jobs: &[NewJob]) -> Result<(), StepError> {
        self.save_noting(expected, order, jobs, &[]).await
    }

    async fn save_noting(
        &self,
        expected: &Order,
        order: &Order,
        jobs: &[NewJob],
        extra: &[NotificationRequest],
    ) -> Result<(), StepError> {
        Ok(self.store(expected, order, jobs, extra).await?)
    }

    /// The one way an order change is written: the change, `jobs`, and the notices it causes
    /// (plus `extra`) in one transaction, then the jobs published.
    async fn store(
        &self,
        expected: &Order,
        order: &Order,
        jobs: &[NewJob],
        extra: &[NotificationRequest],
    ) -> Result<(), OrderSaveError> {
        let mut told = notices(expected, order);
        told.extend_from_slice(extra);
        let jobs = with_notices(jobs, &told);
        self.ports.orders.update(expected, order, &jobs).await?;
        self.ports.publisher.publish(&jobs).await;
        Ok(())
    }

    /// An order as its owner or an admin sees it; others are told it does not exist.
    pub async fn view(&self, id: OrderId, viewer: Viewer) -> Result<Order, OrderError> {
        let order = self.load(id).await?;
        if viewer.admin || order.customer_id == viewer.customer_id {
            Ok(order)
        } else {
            Err(OrderError::NotFound(id))
        }
    }

    /// Whether cash may be recorded for the order: not once a cash order was cancelled (its
    /// compensation cancels the collection, or already did). Any other order (one this shop does
    /// not know, one paid online) is left to the payments' own answer (no cash payment).
    pub async fn check_cash_collectable(&self, id: OrderId) -> Result<(), OrderError> {
        match self.ports.orders.get(id).await? {
            Some(order)
                if order.status == OrderStatus::Cancelled && order.payment_method == PaymentMethod::CashOnDelivery =>
            {
                Err(OrderError::Cancelled(id))
            }
            _ => Ok(()),
        }
    }

    /// Customers see their own orders; admins all, filtered.
    pub async fn list(
        &self,
        viewer: Viewer,
        mut filter: OrderFilter,
        page: &PageRequest,
    ) -> Result<Page<Order>, OrderError> {
        if !viewer.admin {
            filter.customer_id = Some(viewer.customer_id);
        }
        if page.after().is_some_and(|cursor| cursor.time().is_none()) {
            return Err(OrderError::CursorOfAnotherList);
        }
        Ok(self.ports.orders.list(&filter, page).await?)
    }

    /// Places an order from the customer's cart, priced from the catalog (never from the
    /// client), with the saga's first step in the same transaction.
    pub async fn checkout(&self, customer: CustomerId, request: CheckoutRequest) -> Result<Order, OrderError> {
        if request.payment_method == PaymentMethod::PayPal && !self.settings.paypal_accepted {
            return Err(OrderError::PaymentMethodNotAccepted(PaymentMethod::PayPal));
        }
        let token = request.payment_token.as_deref().map(str::trim).filter(|t| !t.is_empty());
        if request.payment_method.is_online() {
            match token {
                None => return Err(OrderError::PaymentTokenRequired),
                Some(t) if looks_like_card_number(t) => return Err(OrderError::RawCardNumber),
                Some(t) if t.chars().count() > MAX_PAYMENT_TOKEN_LEN || t.chars().any(char::is_control) => {
                    return Err(OrderError::MalformedPaymentToken)
                }
                Some(_) => {}
            }
        }
        let address = match request.shipping {
            None => return Err(OrderError::AddressRequired),
            Some(ShippingChoice::New(address)) => address,
            Some(ShippingChoice::Saved(id)) => {
                self.ports.addresses.address(customer, id).await?.ok_or(OrderError::AddressNotFound)?
            }
        };
        // Placed as the cart is read: a line added to it after this is not the order's (see
        // `Carts::take_ordered`).
        let placed_at = self.ports.clock.now();
        let items = self.ports.carts.items(customer, request.cart_id).await?.ok_or(OrderError::CartNotFound)?;
        if items.is_empty() {
            return Err(OrderError::CartEmpty);
        }
        let ids: Vec<ProductId> = items.iter().map(|i| i.product_id).collect();
        let products = self.ports.catalog.products(&ids).await?;
        let mut lines = Vec::with_capacity(items.len());
        for (item, product) in items.iter().zip(products) {
            let product = product.filter(|p| p.active).ok_or(OrderError::ProductUnavailable(item.product_id))?;
            lines.push(OrderLine::new(
                product.product_id,
                product.sku,
                product.name,
                product.unit_price,
                item.quantity,
            )?);
        }
        let new = NewOrder {
            customer_id: customer,
            payment_method: request.payment_method,
            lines,
            shipping_address: address,
            customer_notes: request.customer_notes,
        };
        let order = Order::place(new, &self.settings.shipping, placed_at)?;
        let context = CheckoutContext {
            cart_id: request.cart_id,
            payment_token: if request.payment_method.is_online() { token.map(str::to_owned) } else { None },
        };
        let job = saga_job(order.id, Step::Reserve, None);
        self.ports.orders.create(&order, &context, std::slice::from_ref(&job)).await?;
        self.ports.publisher.publish(std::slice::from_ref(&job)).await;
        Ok(order)
    }

    /// Runs one saga step. Idempotent: a step whose work is done already changes nothing.
    pub async fn run_step(&self, job: &SagaJob) -> Result<(), StepError> {
        match job.step {
            Step::Reserve => self.reserve(job.order_id).await,
            Step::Charge => self.charge(job.order_id).await,
            Step::Finalize => self.finalize(job.order_id).await,
            Step::Compensate => {
                let reason = job
                    .reason
                    .as_deref()
                    .and_then(CancellationReason::parse)
                    .unwrap_or(CancellationReason::CheckoutFailed);
                self.compensate(job.order_id, reason).await
            }
        }
    }

    fn items(order: &Order) -> Vec<CartItem> {
        order.lines.iter().map(|l| CartItem { product_id: l.product_id, quantity: l.quantity }).collect()
    }

    async fn reserve(&self, id: OrderId) -> Result<(), StepError> {
        let (order, context) = self.load_for_saga(id).await?;
        if !matches!(order.status, OrderStatus::PendingPayment | OrderStatus::PendingConfirmation) {
            // Moved on: an online order goes on where it stands (a redelivered job after a crash).
            return if order.payment_method.is_online() {
                self.charge_loaded(order, context, Vec::new()).await
            } else if order.status == OrderStatus::Cancelled {
                // Cancelled while this step reserved and opened its cash payment (its save then
                // conflicted): the compensation, idempotent, gives those back too.
                self.compensate_again(&order).await
            } else {
                Ok(())
            };
        }
        let window = if order.payment_method.is_online() {
            self.settings.payment_window
        } else {
            self.settings.confirmation_window
        };
        // The order's own expiry (cancel, then release) ends the reservation on time; the
        // grace keeps the sweep from expiring it first, under a saga still finishing (an admin's
        // confirmation then holds it longer: see `advance`).
        let expires_at = order.created_at + window + RESERVATION_GRACE;
        let low_stock = match self.ports.stock.reserve(id, &Self::items(&order), expires_at).await? {
            Reserved::OutOfStock { .. } => return self.compensate(id, CancellationReason::OutOfStock).await,
            Reserved::Done { low_stock } => low_stock,
        };
        let alerts = low_stock_notices(&order, &low_stock);
        if order.payment_method.is_online() {
            // The happy path runs on in this job, and the order is written once, when the
            // payment is settled: a crash replays it from the top, and every part (the
            // reservation, the charge, the stock leaving the shelf, the cart) finds its own
            // work done.
            return self.charge_loaded(order, context, alerts).await;
        }
        if order.has_note(STOCK_RESERVED) {
            return Ok(());
        }
        let mut next = order.clone();
        next.record(STOCK_RESERVED, self.ports.clock.now());
        self.ports.payments.open_cash(&order).await?;
        self.save_noting(&order, &next, &[], &alerts).await
    }

    async fn charge(&self, id: OrderId) -> Result<(), StepError> {
        let (order, context) = self.load_for_saga(id).await?;
        self.charge_loaded(order, context, Vec::new()).await
    }

    /// Charges an online order still waiting for its payment (its stock reserved); one already
    /// CONFIRMED is finalized, one cancelled meanwhile gets back whatever was taken. `alerts`
    /// go with the order's write.
    ///
    /// Accepted, everything CONFIRMED stands for is done before the order says so (the units
    /// leave the shelf, the ordered lines leave the cart), then one write records it all: reserved, paid,
    /// CONFIRMED, finalized.
    async fn charge_loaded(
        &self,
        order: Order,
        context: CheckoutContext,
        alerts: Vec<NotificationRequest>,
    ) -> Result<(), StepError> {
        let id = order.id;
        match order.status {
            OrderStatus::PendingPayment => {}
            OrderStatus::Confirmed => return self.finalize_loaded(order, &context).await,
            // Cancelled while the charge was under way (expiry, the customer): whatever was
            // taken goes back.
            OrderStatus::Cancelled => return self.settle_after_cancel(&order, &context).await,
            _ => return Ok(()),
        }
        let (cart_id, Some(token)) = (context.cart_id, context.payment_token) else {
            return self.compensate(id, CancellationReason::PaymentDeclined).await;
        };
        let reserved_at = self.ports.clock.now();
        let mut next = order.clone();
        if !next.has_note(STOCK_RESERVED) {
            next.record(STOCK_RESERVED, reserved_at);
        }
        match self.ports.payments.charge(&order, &token).await? {
            Charged::Unavailable => Err(StepError::Retry("payment provider unavailable".into())),
            // Never CONFIRMED on money given back: the compensation that refunded it finishes.
            Charged::Refunded => self.compensate(id, CancellationReason::CheckoutFailed).await,
            Charged::Declined { reason } => {
                let now = self.ports.clock.now();
                next.set_payment_status(PaymentStatus::Failed, now);
                next.record(format!("payment declined: {reason}"), now);
                let compensate = saga_job(id, Step::Compensate, Some(&CancellationReason::PaymentDeclined));
                self.save_noting(&order, &next, &[compensate], &alerts).await
            }
            Charged::Accepted(status) => {
                // A reservation released meanwhile (expired) fails here: retried, then compensated.
                self.ports.stock.confirm(id).await?;
                self.ports.carts.take_ordered(cart_id, &order).await?;
                let now = self.ports.clock.now();
                next.set_payment_status(status, now);
                next.transition(OrderStatus::Confirmed, Some("payment accepted".into()), now)
                    .map_err(OrderError::from)?;
                next.record(FINALIZED, now);
                self.save_noting(&order, &next, &[], &alerts).await
            }
        }
    }

    /// An order cancelled while its saga ran (the compensation may have run before the saga
    /// took anything): gives back what the saga took since. That includes a charge the provider
    /// made without the saga recording its answer (it stopped in between, then the order was
    /// cancelled): the compensation, seeing no charge, refunded nothing, so the charge is looked
    /// up by its idempotency key here, then refunded.
    async fn settle_after_cancel(&self, order: &Order, context: &CheckoutContext) -> Result<(), StepError> {
        // The stock first (idempotent): it goes back even while the money waits for a capture.
        self.ports.stock.release(order.id).await?;
        // Without a token the saga never asked for a charge, or the order was confirmed (its
        // charge recorded: the token is dropped then) before it was cancelled.
        if order.payment_method.is_online() && context.payment_token.is_some() {
            self.ports.payments.recover_charge(order).await?;
        }
        self.compensate_again(order).await
    }

    /// After CONFIRMED: the reserved units leave the shelf and the ordered lines the cart.
    async fn finalize(&self, id: OrderId) -> Result<(), StepError> {
        let (order, context) = self.load_for_saga(id).await?;
        self.finalize_loaded(order, &context).await
    }

    async fn finalize_loaded(&self, order: Order, context: &CheckoutContext) -> Result<(), StepError> {
        let id = order.id;
        if order.status != OrderStatus::Confirmed || order.has_note(FINALIZED) {
            return Ok(());
        }
        self.ports.stock.confirm(id).await?;
        self.ports.carts.take_ordered(context.cart_id, &order).await?;
        let mut next = order.clone();
        next.record(FINALIZED, self.ports.clock.now());
        self.save(&order, &next, &[]).await
    }

    /// A saga step that failed for good, or ran out of retries: the order is compensated as
    /// CHECKOUT_FAILED. A charge asked for may have been made without its answer recorded (the
    /// provider unreachable on every attempt, though the first one reached it): it is looked up
    /// by its idempotency key first (never charging), so that the compensation refunds it.
    pub async fn give_up(&self, id: OrderId) -> Result<(), StepError> {
        let (order, context) = self.load_for_saga(id).await?;
        if order.payment_method.is_online() && context.payment_token.is_some() {
            // A lookup that fails (the provider down: often why the step gave up) does not hold
            // the compensation up: a charge recorded later on the cancelled order (its event) is
            // refunded by the compensation running again.
            let _ = self.ports.payments.recover_charge(&order).await;
        }
        self.compensate(id, CancellationReason::CheckoutFailed).await
    }

    /// Gives back what was taken (refund, reservation) and cancels with `reason`. Runs again
    /// safely: each part is idempotent, and an order cancelled already keeps its first reason.
    /// A refund the provider refuses ends it too (the money still taken, shown, and the reason
    /// on the timeline once): a person settles it.
    pub async fn compensate(&self, id: OrderId, reason: CancellationReason) -> Result<(), StepError> {
        let order = self.load(id).await?;
        if order.status != OrderStatus::Cancelled && !order.status.can_become(OrderStatus::Cancelled) {
            // Shipped, delivered or refunded after delivery: nothing to compensate automatically.
            return Ok(());
        }
        // Cancelled already: its stock goes back first, even while the money waits for a
        // capture below; an order not cancelled yet keeps its stock until its money is settled.
        let cancelled = order.status == OrderStatus::Cancelled;
        if cancelled {
            self.ports.stock.release(id).await?;
        }
        let refund = self.ports.payments.refund_all(id, reason.as_str()).await?;
        if refund == RefundState::NotYetCapturable {
            return Err(StepError::Retry("payment not captured yet; refund after the capture".into()));
        }
        if !cancelled {
            self.ports.stock.release(id).await?;
        }
        let refused = match &refund {
            RefundState::Refused { reason, .. } => Some(format!("{REFUND_REFUSED}: {reason}")),
            _ => None,
        };
        // REFUNDED (or PAID again, refused), FAILED for a collection cancelled.
        let written = self
            .write_following(id, refund.payment(), |next, now| {
                if next.status != OrderStatus::Cancelled {
                    next.cancel(reason.clone(), now).map_err(OrderError::from)?;
                }
                // Once: a rerun finds the payment's refusal on record, worded otherwise.
                if let Some(note) = &refused {
                    if !has_refusal(next) {
                        next.record(note.clone(), now);
                    }
                }
                // Not while the order shows money taken that this run neither refunded nor was
                // refused: a charge recorded meanwhile (an event about a charge the saga never
                // recorded, whose own look at the order came before this cancellation). The
                // compensation runs again then (and the resume sweep offers it, should its job die).
                if !unsettled(next, refused.is_some()) && !next.has_note(COMPENSATED) {
                    next.record(COMPENSATED, now);
                }
                Ok(())
            })
            .await?;
        let (order, _) = written.ok_or(StepError::Failed(OrderError::NotFound(id)))?;
        if unsettled(&order, refused.is_some()) {
            return Err(StepError::Retry("money was taken while the order was compensated".into()));
        }
        Ok(())
    }

    /// Runs a cancelled order's compensation again (it is idempotent), with its first reason.
    async fn compensate_again(&self, order: &Order) -> Result<(), StepError> {
        let reason = order.cancellation_reason.clone().unwrap_or(CancellationReason::CheckoutFailed);
        self.compensate(order.id, reason).await
    }

    /// Cancels an order before it ships (the customer, or an admin): the order is CANCELLED at
    /// once; the refund and the release follow in a compensation job.
    pub async fn cancel(&self, id: OrderId, viewer: Viewer) -> Result<Order, OrderError> {
        self.retry_on_conflict(|| async {
            let order = self.view(id, viewer).await?;
            let reason = if viewer.admin && order.customer_id != viewer.customer_id {
                CancellationReason::AdminRequest
            } else {
                CancellationReason::CustomerRequest
            };
            let mut next = order.clone();
            next.cancel(reason.clone(), self.ports.clock.now())?;
            let jobs = vec![saga_job(id, Step::Compensate, Some(&reason))];
            Ok((order, next, jobs))
        })
        .await
    }

    /// Applies a change built from a fresh read; when a background step (the saga, a payment
    /// event) wrote the order in between, reads again and retries, a few times.
    async fn retry_on_conflict<F, Fut>(&self, change: F) -> Result<Order, OrderError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<(Order, Order, Vec<NewJob>), OrderError>>,
    {
        let mut attempts = 0;
        loop {
            let (order, next, jobs) = change().await?;
            match self.store(&order, &next, &jobs, &[]).await {
                Ok(()) => return Ok(next),
                Err(OrderSaveError::Conflict) if attempts < 5 => attempts += 1,
                Err(OrderSaveError::Conflict) => return Err(OrderError::Conflict),
                Err(OrderSaveError::Infrastructure(e)) => return Err(OrderError::Infrastructure(e)),
            }
        }
    }

    /// An admin moves an order along: CONFIRMED (cash on delivery; then the finalize job),
    /// PROCESSING, SHIPPED, DELIVERED (REFUNDED when its money was given back in full before).
    /// Only the saga confirms an online order, once its charge is accepted: an admin confirming
    /// one still waiting for its payment is refused. A confirmed order moves on once finalized
    /// (its units off the shelf) and, paid online, once its payment is PAID, not before.
    pub async fn advance(&self, id: OrderId, to: OrderStatus) -> Result<Order, OrderError> {
        self.retry_on_conflict(|| async {
            let order = self.load(id).await?;
            if to == OrderStatus::Confirmed {
                if order.status != OrderStatus::PendingConfirmation {
                    return Err(OrderRuleError::InvalidTransition { from: order.status, to }.into());
                }
                if order.created_at + self.settings.confirmation_window <= self.ports.clock.now() {
                    // Past its window the expiry cancels it (if it has not yet): too late.
                    return Err(OrderError::ConfirmationExpired);
                }
                if !order.has_note(STOCK_RESERVED) {
                    // Its stock is being reserved right now: confirming first would ship unreserved units.
                    return Err(OrderError::NotReadyYet);
                }
                // Its units wait for the finalize job for another window, however late it runs
                // (a worker down, a backlog): never expired back on sale under a confirmed order.
                let until = self.ports.clock.now() + self.settings.confirmation_window;
                if !self.ports.stock.hold(id, until).await? {
                    // Released or expired meanwhile: nothing left to confirm with.
                    return Err(OrderError::ConfirmationExpired);
                }
            }
            if order.status == OrderStatus::Confirmed && to == OrderStatus::Processing && !order.has_note(FINALIZED) {
                // Its finalize job has yet to take the units off the shelf; past CONFIRMED that
                // job does nothing, and the reservation would expire into stock on sale again.
                return Err(OrderError::NotFinalizedYet);
            }
            if order.status == OrderStatus::Confirmed
                && to == OrderStatus::Processing
                && order.payment_method.is_online()
            {
                match order.payment_status {
                    PaymentStatus::Paid | PaymentStatus::PartiallyRefunded => {}
                    // The money is gone (refunded in full, or the charge failed): never to be
                    // paid, there is nothing to process (a cancellation is what is left).
                    PaymentStatus::Refunded | PaymentStatus::Failed => {
                        return Err(OrderRuleError::InvalidTransition { from: order.status, to }.into())
                    }
                    // Authorized or still processing at the provider: no goods go out before the
                    // money is taken (a charge that then fails cancels the order).
                    _ => return Err(OrderError::PaymentNotSettledYet),
                }
            }
            let now = self.ports.clock.now();
            let mut next = order.clone();
            next.transition(to, Some("by an admin".into()), now)?;
            let mut jobs = if to == OrderStatus::Confirmed { vec![saga_job(id, Step::Finalize, None)] } else { vec![] };
            // Refunded in full before it was delivered (goods sent back at once, a goodwill
            // refund): delivered, it is REFUNDED, as when the refund follows the delivery. A
            // refund still only booked is followed once this write is in (the refund's own
            // follower may have run already, finding the order not delivered yet).
            if to == OrderStatus::Delivered && next.payment_status == PaymentStatus::Refunded {
                match self.ports.payments.refunded_payment(id).await? {
                    Some((_, true)) => {
                        next.transition(OrderStatus::Refunded, Some(REFUNDED_BEFORE_DELIVERY.into()), now)?;
                    }
                    Some((payment, false)) => jobs.push(ecom_payments::service::follow_job(id, payment, "delivered")),
                    None => {}
                }
            }
            Ok((order, next, jobs))
        })
        .await
    }

    /// The payment of an order changed (a refund settled, cash recorded): the order shows it,
    /// as the payment stands now.
    pub async fn payment_changed(&self, id: OrderId, payment: PaymentId) -> Result<(), StepError> {
        self.follow_payment(id, payment).await.map(|_| ())
    }

    /// The provider refused a refund of the order's payment, after it was booked (the provider
    /// was down then): the order shows the money taken again and, when cancelled (its
    /// compensation's refund, or an admin's), the refusal and its reason, once.
    pub async fn refund_refused(&self, id: OrderId, payment: PaymentId, reason: &str) -> Result<(), StepError> {
        let note = format!("{REFUND_REFUSED}: {reason}");
        self.write_following(id, Some(payment), |next, now| {
            if next.status == OrderStatus::Cancelled && !has_refusal(next) {
                next.record(note.clone(), now);
            }
            Ok(())
        })
        .await
        .map(|_| ())
    }

    /// The payment's provider moved it (captured, failed): the order shows it, and a cancelled
    /// order's compensation runs again (it is idempotent) when money is held for it, or when the
    /// payment is settled and the compensation never finished. So money that arrives for a
    /// cancelled order goes back, and its stock is released, whenever that happens: a capture
    /// can come after the compensation stopped waiting for it (its retries ran out), or after
    /// it ran while the payment was only authorized; an event retried after a compensation
    /// interrupted past its refund finishes it.
    ///
    /// Only the provider's events do this: a refund settling (refused, say) or cash recorded by
    /// hand never start a refund.
    pub async fn payment_event(&self, id: OrderId, payment: PaymentId) -> Result<(), StepError> {
        let Some((order, status)) = self.follow_payment(id, payment).await? else { return Ok(()) };
        let held = matches!(status, PaymentStatus::Paid | PaymentStatus::PartiallyRefunded);
        let settled = matches!(status, PaymentStatus::Failed | PaymentStatus::Refunded);
        if order.status == OrderStatus::Cancelled && (held || (settled && !order.has_note(COMPENSATED))) {
            return self.compensate_again(&order).await;
        }
        // Confirmed on a charge the provider had not settled (still processing, or authorized
        // only), which then failed: no money, so no goods. Cancelled as a decline while it can
        // still be (not once shipped): CANCELLED is written first, with its compensation staged,
        // as a customer's cancel, so an admin's ship racing with it is refused.
        if status == PaymentStatus::Failed
            && order.status != OrderStatus::Cancelled
            && order.status.can_become(OrderStatus::Cancelled)
        {
            let reason = CancellationReason::PaymentDeclined;
            let mut next = order.clone();
            next.cancel(reason.clone(), self.ports.clock.now()).map_err(OrderError::from)?;
            let compensate = saga_job(id, Step::Compensate, Some(&reason));
            // A conflict is retried: the event reads the order again.
            return Ok(self.store(&order, &next, &[compensate], &[]).await?);
        }
        Ok(())
    }

    /// Shows the payment's status on its order as the payment stands now, never as a caller saw
    /// it before a concurrent change (a refund settling while cash is recorded, an event while
    /// a compensation refunds). Returns the order as it stands and the status; `None` when there
    /// is no such order or payment.
    async fn follow_payment(
        &self,
        id: OrderId,
        payment: PaymentId,
    ) -> Result<Option<(Order, PaymentStatus)>, StepError> {
        let written = self.write_following(id, Some(payment), |_, _| Ok(())).await?;
        Ok(written.and_then(|(order, status)| Some((order, status?))))
    }

    /// Applies `change` to the order, showing `payment`'s status as it stands: the order is read,
    /// then the payment, and once the write is done the payment is read again. So of two
    /// writers racing with a change of the payment, the one that read the older status either
    /// conflicts with the other's write (both read again) or finds the newer status after its
    /// own write and writes again; the payment's own writer may have found nothing to change
    /// (it read the order before the stale write). `None` when there is no such order.
    async fn write_following(
        &self,
        id: OrderId,
        payment: Option<PaymentId>,
        change: impl Fn(&mut Order, chrono::DateTime<chrono::Utc>) -> Result<(), StepError>,
    ) -> Result<Option<(Order, Option<PaymentStatus>)>, StepError> {
        let mut attempts = 0;
        loop {
            let Some(order) = self.ports.orders.get(id).await? else { return Ok(None) };
            let status = match payment {
                Some(payment) => self.ports.payments.status(payment).await?,
                None => None,
            };
            let now = self.ports.clock.now();
            let mut next = order.clone();
            if let Some(status) = status {
                next.set_payment_status(status, now);
            }
            // Delivered, then all of it given back (goods returned): REFUNDED, once the provider
            // answered every refund (a refund only booked may still be refused).
            if let (OrderStatus::Delivered, Some(PaymentStatus::Refunded), Some(payment)) =
                (next.status, status, payment)
            {
                if self.ports.payments.refunds_answered(payment).await? {
                    next.transition(OrderStatus::Refunded, Some(REFUNDED_AFTER_DELIVERY.into()), now)
                        .map_err(OrderError::from)?;
                }
            }
            change(&mut next, now)?;
            if next == order {
                return Ok(Some((order, status)));
            }
            match self.store(&order, &next, &[], &[]).await {
                Ok(()) => match payment {
                    Some(payment) if self.ports.payments.status(payment).await? != status => {}
                    _ => return Ok(Some((next, status))),
                },
                Err(OrderSaveError::Conflict) => {}
                Err(e) => return Err(e.into()),
            }
            attempts += 1;
            if attempts > 5 {
                return Err(StepError::Retry("the order or its payment kept changing".into()));
            }
        }
    }

    /// Puts the saga job of every order whose saga has work left and that nothing touched for
    /// `idle` back on the queue: not reserved yet (or not charged), confirmed but not finalized,
    /// cancelled but not compensated. The offer is idempotent on the job id, so a job still
    /// queued, retrying or recently run changes nothing; a job the queue lost (Redis lost its
    /// data, say) runs again, and so does one dead-lettered because its retries ran out (an
    /// outage longer than its backoff, its compensation's included). Returns how many jobs were
    /// offered.
    pub async fn resume_unfinished(&self, idle: Duration, limit: usize) -> Result<usize, StepError> {
        const PAGE: i64 = 100;
        let before = self.ports.clock.now() - idle;
        let mut after = None;
        let mut offered = 0;
        while offered < limit {
            let page = self.ports.orders.unfinished(before, after, PAGE).await?;
            let jobs: Vec<NewJob> = page
                .iter()
                .filter_map(|o| match o.status {
                    OrderStatus::PendingPayment | OrderStatus::PendingConfirmation => {
                        Some(saga_job(o.id, Step::Reserve, None))
                    }
                    OrderStatus::Confirmed => Some(saga_job(o.id, Step::Finalize, None)),
                    OrderStatus::Cancelled => Some(saga_job(
                        o.id,
                        Step::Compensate,
                        Some(o.cancellation_reason.as_ref().unwrap_or(&CancellationReason::CheckoutFailed)),
                    )),
                    _ => None,
                })
                .collect();
            // A job dead of an outage runs again once it has been dead as long as an order
            // has to be idle to be offered.
            self.ports.publisher.reoffer(&jobs, idle.to_std().unwrap_or_default()).await;
            offered += jobs.len();
            match page.last() {
                Some(last) if page.len() as i64 == PAGE => after = Some((last.updated_at, last.id)),
                _ => break,
            }
        }
        Ok(offered)
    }

    /// Cancels online orders left unpaid past the payment window and cash orders left
    /// unconfirmed past theirs: CANCELLED at once, as a customer's cancel, and their stock goes
    /// back on sale (and whatever else was taken back) in the compensation job staged with that
    /// write. Returns how many, or the first error once every other order was tried.
    pub async fn expire_overdue(&self, limit: i64) -> Result<usize, StepError> {
        let now = self.ports.clock.now();
        let mut expired = 0;
        let mut failed = None;
        for (status, window, reason) in [
            (OrderStatus::PendingPayment, self.settings.payment_window, CancellationReason::PaymentExpired),
            (
                OrderStatus::PendingConfirmation,
                self.settings.confirmation_window,
                CancellationReason::ConfirmationExpired,
            ),
        ] {
            for id in self.ports.orders.stale(status, now - window, limit).await? {
                // One order that cannot be expired now does not hold up the others.
                match self.expire(id, status, &reason).await {
                    Ok(true) => expired += 1,
                    Ok(false) => {}
                    Err(err) => failed = failed.or(Some(err)),
                }
            }
        }
        failed.map_or(Ok(expired), Err)
    }

    /// Cancels an order still in `status`, staging its compensation; `false` when it moved on
    /// meanwhile (paid, confirmed, cancelled). Written before anything is given back, so an
    /// admin's confirmation that races with it is refused rather than confirming an order whose
    /// stock or cash collection the compensation then takes back.
    async fn expire(&self, id: OrderId, status: OrderStatus, reason: &CancellationReason) -> Result<bool, StepError> {
        let mut attempts = 0;
        loop {
            let order = self.load(id).await?;
            if order.status != status {
                return Ok(false);
            }
            let mut next = order.clone();
            next.cancel(reason.clone(), self.ports.clock.now()).map_err(OrderError::from)?;
            let compensate = saga_job(id, Step::Compensate, Some(reason));
            match self.store(&order, &next, &[compensate], &[]).await {
                Ok(()) => return Ok(true),
                Err(OrderSaveError::Conflict) if attempts < 5 => attempts += 1,
                Err(e) => return Err(e.into()),
            }
        }
    }
}
