//! Carts as stored and as shown.

use chrono::{DateTime, Utc};
use ecom_kernel::{entity_id, CustomerId, Money, ProductId};

entity_id!(
    /// Identifies a cart.
    CartId
);

/// Whose cart it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CartOwner {
    Customer(CustomerId),
    /// Reached only with the cart's signed token.
    Guest,
}

/// A product and how many units of it, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CartLine {
    pub product_id: ProductId,
    pub quantity: u32,
}

/// A cart as stored: no prices (they are read fresh whenever the cart is shown).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCart {
    pub id: CartId,
    pub owner: CartOwner,
    /// Oldest line first.
    pub lines: Vec<CartLine>,
    pub updated_at: DateTime<Utc>,
    /// Set on a guest cart being merged into this customer cart: it accepts no more changes.
    pub sealed_into: Option<CartId>,
}

/// Bounds of every cart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CartLimits {
    pub max_lines: u32,
    pub max_quantity: u32,
}

impl Default for CartLimits {
    fn default() -> Self {
        Self { max_lines: 100, max_quantity: 100 }
    }
}

/// Who is calling: a signed-in customer, a guest's cart token, or both (a guest who just signed in).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Caller {
    pub customer: Option<CustomerId>,
    pub cart_token: Option<String>,
}

/// What the catalog and inventory say about a product now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductInfo {
    pub product_id: ProductId,
    pub name: String,
    pub unit_price: Money,
    /// ACTIVE in the catalog (archived products cannot be bought).
    pub active: bool,
    /// Units that can be bought now.
    pub available: u32,
}

/// A cart line priced now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PricedLine {
    pub product_id: ProductId,
    pub name: String,
    pub unit_price: Money,
    pub quantity: u32,
    pub line_total: Money,
    pub available: u32,
    /// False when the product was archived or has fewer units available than the line holds.
    pub purchasable: bool,
}

/// A cart as shown: every price read fresh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CartView {
    pub id: CartId,
    pub items: Vec<PricedLine>,
    /// Units across all lines.
    pub item_count: u32,
    pub subtotal: Money,
    pub updated_at: DateTime<Utc>,
}
