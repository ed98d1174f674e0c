//! The cart use cases.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use ecom_kernel::{Clock, Currency, Money, OrderId, ProductId};

use crate::error::CartError;
use crate::model::{Caller, CartId, CartLimits, CartLine, CartOwner, CartView, PricedLine, ProductInfo, StoredCart};
use crate::ports::{CartStore, CartStoreError, CartTokens, ProductLookup, WriteScope};

/// How long a guest cart merged into a customer's is kept (sealed, hidden) for a retried merge.
pub const MERGED_CART_KEPT: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// Whether a write adds to a line or sets it.
#[derive(Debug, Clone, Copy)]
enum LineWrite {
    Add,
    Set,
}

pub struct CartService {
    store: Arc<dyn CartStore>,
    products: Arc<dyn ProductLookup>,
    tokens: Arc<dyn CartTokens>,
    clock: Arc<dyn Clock>,
    limits: CartLimits,
    currency: Currency,
}

impl CartService {
    pub fn new(
        store: Arc<dyn CartStore>,
        products: Arc<dyn ProductLookup>,
        tokens: Arc<dyn CartTokens>,
        clock: Arc<dyn Clock>,
        limits: CartLimits,
        currency: Currency,
    ) -> Self {
        Self { store, products, tokens, clock, limits, currency }
    }

    /// A customer's active cart (created on first use), or a new guest cart and its token.
    pub async fn open(&self, caller: &Caller) -> Result<(CartView, Option<String>), CartError> {
        let now = self.clock.now();
        let (id, token) = match caller.customer {
            Some(customer) => (self.store.customer_cart(customer, CartId::new(), now).await?, None),
            None => {
                let id = CartId::new();
                self.store.create_guest(id, now).await?;
                (id, Some(self.tokens.issue(id)))
            }
        };
        Ok((self.view_of(id).await?, token))
    }

    pub async fn view(&self, caller: &Caller, id: CartId) -> Result<CartView, CartError> {
        let cart = self.authorize(caller, id).await?;
        self.price(cart).await
    }

    /// The cart's lines as stored, unpriced (checkout prices them itself).
    pub async fn lines(&self, caller: &Caller, id: CartId) -> Result<Vec<CartLine>, CartError> {
        Ok(self.authorize(caller, id).await?.lines)
    }

    /// Adds units to the product's line. The product must be ACTIVE and available.
    pub async fn add_item(
        &self,
        caller: &Caller,
        id: CartId,
        product: ProductId,
        quantity: i64,
    ) -> Result<CartView, CartError> {
        self.write_line(caller, id, product, quantity, LineWrite::Add).await
    }

    /// Sets the line's quantity; 0 removes it.
    pub async fn update_item(
        &self,
        caller: &Caller,
        id: CartId,
        product: ProductId,
        quantity: i64,
    ) -> Result<CartView, CartError> {
        if quantity == 0 {
            return self.remove_item(caller, id, product).await;
        }
        self.write_line(caller, id, product, quantity, LineWrite::Set).await
    }

    async fn write_line(
        &self,
        caller: &Caller,
        id: CartId,
        product: ProductId,
        quantity: i64,
        how: LineWrite,
    ) -> Result<CartView, CartError> {
        let quantity = self.check_quantity(quantity)?;
        let scope = self.scope(caller, id)?;
        let info = self.active_product(product).await?;
        let line = CartLine { product_id: product, quantity };
        let written = match how {
            LineWrite::Add => self.store.add(&scope, line, info.available, self.limits).await,
            LineWrite::Set => self.store.set(&scope, line, info.available, self.limits).await,
        };
        let cart = written.map_err(|e| self.store_error(e, product))?;
        self.price_knowing(cart, Some(info)).await
    }

    pub async fn remove_item(&self, caller: &Caller, id: CartId, product: ProductId) -> Result<CartView, CartError> {
        let scope = self.scope(caller, id)?;
        let cart = self.store.remove(&scope, product).await.map_err(|e| self.store_error(e, product))?;
        self.price(cart).await
    }

    /// Empties the cart.
    pub async fn clear(&self, caller: &Caller, id: CartId) -> Result<(), CartError> {
        let scope = self.scope(caller, id)?;
        self.store.clear(&scope).await.map_err(|e| self.store_error(e, ProductId::new()))?;
        Ok(())
    }

    /// Takes an order's lines out of the cart it was placed from (once per order; what the
    /// customer added since it was placed stays).
    pub async fn take_ordered(
        &self,
        caller: &Caller,
        id: CartId,
        order: OrderId,
        placed_at: DateTime<Utc>,
        ordered: &[CartLine],
    ) -> Result<(), CartError> {
        let scope = self.scope(caller, id)?;
        self.store
            .take_ordered(&scope, order, placed_at, ordered)
            .await
            .map_err(|e| self.store_error(e, ProductId::new()))?;
        Ok(())
    }

    /// Folds a guest cart (reached with its token) into the signed-in customer's cart: quantities
    /// summed, capped by availability and limits; the guest cart, sealed, is kept up to a day
    /// (hidden from everyone), so a retried merge (its answer lost) answers the same while the
    /// customer's cart is the same one. Safe to retry.
    pub async fn merge(&self, caller: &Caller, guest: CartId) -> Result<CartView, CartError> {
        let customer = caller.customer.ok_or(CartError::CustomerRequired)?;
        let token_ok = caller.cart_token.as_deref().is_some_and(|t| self.tokens.verify(guest, t));
        if !token_ok {
            return Err(CartError::CartNotFound);
        }
        let now = self.clock.now();
        let target = self.store.customer_cart(customer, CartId::new(), now).await?;
        let sealed = self.store.seal(guest, target).await?.ok_or(CartError::CartNotFound)?;
        if sealed.owner != CartOwner::Guest {
            return Err(CartError::CartNotFound);
        }
        let ids: Vec<ProductId> = sealed.lines.iter().map(|l| l.product_id).collect();
        let infos = self.products.products(&ids).await?;
        let lines: Vec<(CartLine, u32)> = sealed
            .lines
            .iter()
            .zip(infos)
            .filter_map(|(line, info)| {
                let info = info.filter(|i| i.active && i.available > 0)?;
                Some((*line, info.available.min(self.limits.max_quantity)))
            })
            .collect();
        self.store
            .merge(target, guest, &lines, self.limits, now)
            .await
            .map_err(|e| self.store_error(e, ProductId::new()))?;
        self.store.retire(guest, MERGED_CART_KEPT).await?;
        self.view_of(target).await
    }

    fn check_quantity(&self, quantity: i64) -> Result<u32, CartError> {
        u32::try_from(quantity)
            .ok()
            .filter(|q| (1..=self.limits.max_quantity).contains(q))
            .ok_or(CartError::QuantityOutOfRange { min: 1, max: self.limits.max_quantity })
    }

    async fn active_product(&self, product: ProductId) -> Result<ProductInfo, CartError> {
        self.products
            .products(&[product])
            .await?
            .into_iter()
            .next()
            .flatten()
            .filter(|info| info.active)
            .ok_or(CartError::ProductNotFound(product))
    }

    fn store_error(&self, err: CartStoreError, product: ProductId) -> CartError {
        match err {
            CartStoreError::NotFound => CartError::CartNotFound,
            CartStoreError::QuantityLimit => CartError::LineQuantityLimit { max: self.limits.max_quantity },
            CartStoreError::LineLimit => CartError::TooManyLines { max: self.limits.max_lines },
            CartStoreError::Insufficient { requested, available } => {
                CartError::OutOfStock { product_id: product, requested, available }
            }
            CartStoreError::Infrastructure(e) => CartError::Infrastructure(e),
        }
    }

    /// Whose cart the caller may write: a guest cart with its token, else the customer's own.
    /// The store checks the cart's recorded owner against it in the same atomic write.
    fn scope(&self, caller: &Caller, id: CartId) -> Result<WriteScope, CartError> {
        let owner = if caller.cart_token.as_deref().is_some_and(|t| self.tokens.verify(id, t)) {
            CartOwner::Guest
        } else {
            caller.customer.map(CartOwner::Customer).ok_or(CartError::CartNotFound)?
        };
        Ok(WriteScope { id, owner, now: self.clock.now() })
    }

    /// The cart if the caller may use it; someone else's cart is not found.
    async fn authorize(&self, caller: &Caller, id: CartId) -> Result<StoredCart, CartError> {
        let cart = self.store.load(id).await?.ok_or(CartError::CartNotFound)?;
        let allowed = cart.sealed_into.is_none()
            && match cart.owner {
                CartOwner::Customer(owner) => caller.customer == Some(owner),
                CartOwner::Guest => caller.cart_token.as_deref().is_some_and(|t| self.tokens.verify(id, t)),
            };
        if allowed {
            Ok(cart)
        } else {
            Err(CartError::CartNotFound)
        }
    }

    async fn view_of(&self, id: CartId) -> Result<CartView, CartError> {
        let cart = self.store.load(id).await?.ok_or(CartError::CartNotFound)?;
        self.price(cart).await
    }

    /// Prices every line from the catalog now: a cart never shows a stale price. Lines of
    /// products that no longer exist are left out; archived or short ones are flagged.
    async fn price(&self, cart: StoredCart) -> Result<CartView, CartError> {
        self.price_knowing(cart, None).await
    }

    /// [`Self::price`], with `known` read by this very request a moment ago (not read again).
    async fn price_knowing(&self, cart: StoredCart, known: Option<ProductInfo>) -> Result<CartView, CartError> {
        let ids: Vec<ProductId> = cart
            .lines
            .iter()
            .map(|l| l.product_id)
            .filter(|id| known.as_ref().is_none_or(|k| k.product_id != *id))
            .collect();
        let mut fetched = if ids.is_empty() { Vec::new() } else { self.products.products(&ids).await? }.into_iter();
        let infos: Vec<Option<ProductInfo>> = cart
            .lines
            .iter()
            .map(|l| match &known {
                Some(k) if k.product_id == l.product_id => Some(k.clone()),
                _ => fetched.next().flatten(),
            })
            .collect();
        let mut items = Vec::with_capacity(cart.lines.len());
        for (line, info) in cart.lines.iter().zip(infos) {
            let Some(info) = info else { continue };
            let line_total = info.unit_price.checked_mul(line.quantity).map_err(|_| {
                ecom_kernel::InfraError::unexpected(format!("line total of {} overflows", line.product_id))
            })?;
            items.push(PricedLine {
                product_id: line.product_id,
                purchasable: info.active && info.available >= line.quantity,
                available: if info.active { info.available } else { 0 },
                name: info.name,
                unit_price: info.unit_price,
                quantity: line.quantity,
                line_total,
            });
        }
        let subtotal = Money::sum(self.currency, items.iter().map(|i| i.line_total))
            .map_err(|e| ecom_kernel::InfraError::unexpected(format!("subtotal: {e}")))?;
        let item_count = items.iter().map(|i| i.quantity).sum();
        Ok(CartView { id: cart.id, items, item_count, subtotal, updated_at: cart.updated_at })
    }
}
