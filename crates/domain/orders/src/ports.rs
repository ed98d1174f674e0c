//! What orders need from the outside world: storage, and the other contexts (through their
//! public services, bridged by the composition root).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ecom_kernel::jobs::NewJob;
use ecom_kernel::{CustomerId, InfraError, Money, OrderId, Page, PageRequest, ProductId};
use uuid::Uuid;

use crate::model::{Order, OrderStatus, ShippingAddress};

/// A cart line as checkout sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CartItem {
    pub product_id: ProductId,
    pub quantity: u32,
}

/// A product as the catalog prices it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PricedProduct {
    pub product_id: ProductId,
    pub sku: String,
    pub name: String,
    pub unit_price: Money,
    pub active: bool,
}

/// The customer's cart, read for checkout; the order's lines leave it once the order is confirmed.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait Carts: Send + Sync {
    /// The lines of the customer's cart `cart_id`; `None` when it is not theirs or is gone.
    async fn items(&self, customer: CustomerId, cart_id: Uuid) -> Result<Option<Vec<CartItem>>, InfraError>;
    /// Takes the order's lines out of the cart it was placed from: what the customer added
    /// since the order was placed stays. Once per order (idempotent); a cart already gone is fine.
    async fn take_ordered(&self, cart_id: Uuid, order: &Order) -> Result<(), InfraError>;
}

#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait Catalog: Send + Sync {
    /// Each product as priced now, in the order asked; `None` for a product that does not exist.
    async fn products(&self, ids: &[ProductId]) -> Result<Vec<Option<PricedProduct>>, InfraError>;
}

#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait AddressBook: Send + Sync {
    /// The customer's saved address; `None` when it is not theirs.
    async fn address(&self, customer: CustomerId, id: Uuid) -> Result<Option<ShippingAddress>, InfraError>;
}

/// Filters of the order list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrderFilter {
    pub customer_id: Option<CustomerId>,
    pub status: Option<OrderStatus>,
}

#[derive(Debug, thiserror::Error)]
pub enum OrderSaveError {
    /// The order changed since it was read.
    #[error("order changed concurrently")]
    Conflict,
    #[error(transparent)]
    Infrastructure(#[from] InfraError),
}

/// What the saga needs to remember about an order besides the order itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckoutContext {
    pub cart_id: Uuid,
    /// The client's payment token (online orders).
    pub payment_token: Option<String>,
}

#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait OrderRepository: Send + Sync {
    /// Inserts the order, its checkout context and `jobs` (the saga's first step) in one
    /// transaction.
    async fn create(&self, order: &Order, context: &CheckoutContext, jobs: &[NewJob]) -> Result<(), InfraError>;
    async fn get(&self, id: OrderId) -> Result<Option<Order>, InfraError>;
    /// The order with its checkout context, in one read (the saga needs both).
    async fn get_with_context(&self, id: OrderId) -> Result<Option<(Order, CheckoutContext)>, InfraError>;
    /// Newest first.
    async fn list(&self, filter: &OrderFilter, page: &PageRequest) -> Result<Page<Order>, InfraError>;
    /// Stores `order` when the stored one is still `expected` (same `updated_at` and status),
    /// with `jobs` staged in the outbox, in one transaction.
    async fn update(&self, expected: &Order, order: &Order, jobs: &[NewJob]) -> Result<(), OrderSaveError>;
    /// Orders in `status` created before `before` (expiry), oldest first.
    async fn stale(&self, status: OrderStatus, before: DateTime<Utc>, limit: i64) -> Result<Vec<OrderId>, InfraError>;
    /// Orders whose saga has work left — PENDING_PAYMENT; PENDING_CONFIRMATION without the
    /// `STOCK_RESERVED` note; CONFIRMED without `FINALIZED`; CANCELLED without `COMPENSATED` —
    /// last changed before `before`, by (updated_at, id), after `after`.
    async fn unfinished(
        &self,
        before: DateTime<Utc>,
        after: Option<(DateTime<Utc>, OrderId)>,
        limit: i64,
    ) -> Result<Vec<Unfinished>, InfraError>;
}

/// An order whose saga has work left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unfinished {
    pub id: OrderId,
    pub status: OrderStatus,
    pub cancellation_reason: Option<crate::model::CancellationReason>,
    pub updated_at: DateTime<Utc>,
}

/// A product this order's reservation took down to its low-stock threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LowStock {
    pub product_id: ProductId,
    pub available: u32,
    pub threshold: u32,
}

/// How a reservation went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reserved {
    /// Reserved; `low_stock` lists the thresholds crossed (only on the call that reserved).
    Done {
        low_stock: Vec<LowStock>,
    },
    OutOfStock {
        product_id: ProductId,
    },
}

/// Stock, through the inventory context. Every call is idempotent per order.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait Stock: Send + Sync {
    async fn reserve(
        &self,
        order: OrderId,
        items: &[CartItem],
        expires_at: DateTime<Utc>,
    ) -> Result<Reserved, InfraError>;
    /// The reserved units leave the shelf (on hand and reserved both go down).
    async fn confirm(&self, order: OrderId) -> Result<(), InfraError>;
    /// The reserved units go back on sale. Nothing to release is fine.
    async fn release(&self, order: OrderId) -> Result<(), InfraError>;
    /// Keeps the order's reservation until `until`; `false` when it is no longer held (expired,
    /// released).
    async fn hold(&self, order: OrderId, until: DateTime<Utc>) -> Result<bool, InfraError>;
}

/// What a charge came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Charged {
    /// The provider holds or took the money (AUTHORIZED, PAID or still processing).
    Accepted(ecom_payments::model::PaymentStatus),
    /// The charge was made and all of it given back: a compensation began (it refunds before
    /// it cancels) and stopped before it cancelled the order.
    Refunded,
    Declined {
        reason: String,
    },
    /// The provider could not be reached: try again later (same idempotency key).
    Unavailable,
}

/// Where giving the money back stands, with the payment concerned (the order shows its status).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefundState {
    /// Nothing was taken (no payment, declined).
    NothingToRefund,
    /// Cash on delivery not collected: its collection is cancelled (the payment FAILED).
    CollectionCancelled(ecom_payments::model::PaymentId),
    /// Refunded, or booked and on its way (a job finishes it).
    Refunded(ecom_payments::model::PaymentId),
    /// The provider refused the refund: the money is still taken (the payment PAID again); a
    /// person settles it.
    Refused { payment: ecom_payments::model::PaymentId, reason: String },
    /// Authorized but not captured yet: ask again once it is.
    NotYetCapturable,
}

impl RefundState {
    /// The payment whose status the order shows after this.
    pub fn payment(&self) -> Option<ecom_payments::model::PaymentId> {
        match self {
            Self::CollectionCancelled(payment) | Self::Refunded(payment) | Self::Refused { payment, .. } => {
                Some(*payment)
            }
            Self::NothingToRefund | Self::NotYetCapturable => None,
        }
    }
}

/// Payments, through the payments context.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait OrderPayments: Send + Sync {
    /// Opens (once per order) and charges the order's online payment for `order.total`.
    async fn charge(&self, order: &Order, token: &str) -> Result<Charged, InfraError>;
    /// Opens (once per order) the cash-on-delivery payment.
    async fn open_cash(&self, order: &Order) -> Result<(), InfraError>;
    /// Gives back everything taken for the order.
    async fn refund_all(&self, order: OrderId, reason: &str) -> Result<RefundState, InfraError>;
    /// Records an online charge of the order that the provider made but the shop never recorded
    /// (its payment still waiting for the provider's first answer), looking it up by its
    /// idempotency key, never charging; does nothing when there is none or the provider cannot
    /// tell.
    async fn recover_charge(&self, order: &Order) -> Result<(), InfraError>;
    /// The payment's status as it stands now; `None` when there is no such payment.
    async fn status(
        &self,
        payment: ecom_payments::model::PaymentId,
    ) -> Result<Option<ecom_payments::model::PaymentStatus>, InfraError>;
    /// Whether the provider answered every refund of the payment (none is still only booked,
    /// which a refusal could give back).
    async fn refunds_answered(&self, payment: ecom_payments::model::PaymentId) -> Result<bool, InfraError>;
    /// The order's payment refunded in full, if any, and whether every refund of it is answered.
    async fn refunded_payment(
        &self,
        order: OrderId,
    ) -> Result<Option<(ecom_payments::model::PaymentId, bool)>, InfraError>;
}
