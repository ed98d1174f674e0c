//! What carts need from the outside world.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ecom_kernel::{CustomerId, InfraError, OrderId, ProductId};

use crate::model::{CartId, CartLimits, CartLine, CartOwner, ProductInfo, StoredCart};

/// Which cart a write is for, whom it must belong to, and when it happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteScope {
    pub id: CartId,
    pub owner: CartOwner,
    pub now: DateTime<Utc>,
}

#[derive(Debug, thiserror::Error)]
pub enum CartStoreError {
    #[error("no such cart")]
    NotFound,
    #[error("line quantity limit")]
    QuantityLimit,
    #[error("line count limit")]
    LineLimit,
    #[error("more than available")]
    Insufficient { requested: u32, available: u32 },
    #[error(transparent)]
    Infrastructure(#[from] InfraError),
}

/// Carts in a store with atomic per-cart updates: concurrent writers never lose an update and
/// never exceed the limits. Every write refreshes the cart's time to live.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait CartStore: Send + Sync {
    /// Creates an empty guest cart.
    async fn create_guest(&self, id: CartId, now: DateTime<Utc>) -> Result<(), InfraError>;
    /// The customer's active cart, created with `candidate` as its id if there is none.
    /// MUST return the same cart to concurrent callers.
    async fn customer_cart(
        &self,
        customer: CustomerId,
        candidate: CartId,
        now: DateTime<Utc>,
    ) -> Result<CartId, InfraError>;
    async fn load(&self, id: CartId) -> Result<Option<StoredCart>, InfraError>;
    /// Adds the line's quantity to the product's line (creating it), refusing when the line
    /// would exceed `limits.max_quantity` or `available`, or a new line `limits.max_lines`.
    /// Every write checks that the cart belongs to `scope.owner` (else `NotFound`), refuses a
    /// sealed cart (`NotFound`), and returns the cart as it is after the write.
    async fn add(
        &self,
        scope: &WriteScope,
        line: CartLine,
        available: u32,
        limits: CartLimits,
    ) -> Result<StoredCart, CartStoreError>;
    /// Sets the line's quantity (creating it), with the same checks as `add`.
    async fn set(
        &self,
        scope: &WriteScope,
        line: CartLine,
        available: u32,
        limits: CartLimits,
    ) -> Result<StoredCart, CartStoreError>;
    /// Removes the product's line, if any.
    async fn remove(&self, scope: &WriteScope, product: ProductId) -> Result<StoredCart, CartStoreError>;
    /// Removes every line.
    async fn clear(&self, scope: &WriteScope) -> Result<StoredCart, CartStoreError>;
    /// Takes an order's lines out of the cart it was placed from, once per `order`: each line
    /// there since before `placed_at` loses up to the quantity ordered and goes when none is
    /// left; a line added after (the product removed, then added again) stays, as does what a
    /// line gained since. Taking the same order again changes nothing.
    async fn take_ordered(
        &self,
        scope: &WriteScope,
        order: OrderId,
        placed_at: DateTime<Utc>,
        ordered: &[CartLine],
    ) -> Result<StoredCart, CartStoreError>;
    /// Seals a guest cart for merging into `into` and returns it: a sealed cart refuses every
    /// later change. Sealing again for the same target returns it again; `None` when the cart
    /// does not exist or was sealed for another target.
    async fn seal(&self, id: CartId, into: CartId) -> Result<Option<StoredCart>, InfraError>;
    /// Folds `lines` into the cart once per `source`: applying the same merge again changes
    /// nothing. Quantities are summed and capped per line by the line's cap and
    /// `limits.max_quantity`; new lines beyond `limits.max_lines` are dropped.
    async fn merge(
        &self,
        into: CartId,
        source: CartId,
        lines: &[(CartLine, u32)],
        limits: CartLimits,
        now: DateTime<Utc>,
    ) -> Result<(), CartStoreError>;
    /// Keeps a merged (sealed) cart only `for_` longer: long enough for a retried merge to find
    /// it, and answer as the first did.
    async fn retire(&self, id: CartId, for_: std::time::Duration) -> Result<(), InfraError>;
}

/// The catalog and inventory as carts see them.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait ProductLookup: Send + Sync {
    /// One entry per id, in order; `None` for a product that does not exist.
    async fn products(&self, ids: &[ProductId]) -> Result<Vec<Option<ProductInfo>>, InfraError>;
}

/// Signed tokens that let a guest reach their cart.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait CartTokens: Send + Sync {
    fn issue(&self, cart: CartId) -> String;
    /// Constant-time check that `token` was issued for `cart`.
    fn verify(&self, cart: CartId, token: &str) -> bool;
}
