use std::fmt;

use chrono::{DateTime, Utc};
use ecom_kernel::{changed_at, BoundedText, Money, ProductId, TextError};

/// A stock-keeping unit: trimmed, upper-cased, letters, digits, `-`, `_` and `.`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Sku(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SkuError {
    #[error("must not be empty")]
    Empty,
    #[error("must be at most 64 characters")]
    TooLong,
    #[error("may only contain letters, digits, '-', '_' and '.'")]
    InvalidCharacters,
}

impl Sku {
    pub fn parse(raw: &str) -> Result<Self, SkuError> {
        let value = raw.trim().to_ascii_uppercase();
        if value.is_empty() {
            return Err(SkuError::Empty);
        }
        if value.len() > 64 {
            return Err(SkuError::TooLong);
        }
        if !value.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
            return Err(SkuError::InvalidCharacters);
        }
        Ok(Self(value))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Sku {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sku({})", self.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProductStatus {
    Active,
    Archived,
}

impl ProductStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            ProductStatus::Active => "ACTIVE",
            ProductStatus::Archived => "ARCHIVED",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "ACTIVE" => Some(ProductStatus::Active),
            "ARCHIVED" => Some(ProductStatus::Archived),
            _ => None,
        }
    }
}

/// A product of the catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Product {
    pub id: ProductId,
    pub sku: Sku,
    pub name: BoundedText,
    pub description: Option<BoundedText>,
    pub price: Money,
    pub category: Option<BoundedText>,
    pub status: ProductStatus,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A product with the units that can be bought now (on hand − reserved).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductView {
    pub product: Product,
    pub available: i64,
}

/// A new product, validated at the edge. The price is checked by the service (positive, shop currency).
#[derive(Debug, Clone)]
pub struct NewProduct {
    pub sku: Sku,
    pub name: BoundedText,
    pub description: Option<BoundedText>,
    pub price: Money,
    pub category: Option<BoundedText>,
    pub initial_stock: u32,
}

/// A change: `None` keeps a field, `Some(None)` clears description or category.
#[derive(Debug, Clone, Default)]
pub struct ProductPatch {
    pub name: Option<BoundedText>,
    pub description: Option<Option<BoundedText>>,
    pub price: Option<Money>,
    pub category: Option<Option<BoundedText>>,
}

impl Product {
    pub const NAME_MAX_CHARS: usize = 200;
    pub const DESCRIPTION_MAX_CHARS: usize = 5000;
    pub const CATEGORY_MAX_CHARS: usize = 100;
    pub const MAX_INITIAL_STOCK: u32 = 1_000_000;
    /// The highest price, in minor units (a billion in a two-decimal currency). Bounded so that
    /// no total can overflow: a cart of 100 lines of 100 units each at this price, plus
    /// shipping, stays far below `i64::MAX`.
    pub const MAX_PRICE: i64 = 100_000_000_000;

    /// A description: up to `DESCRIPTION_MAX_CHARS`, printable, its paragraphs (line breaks) kept.
    pub fn parse_description(raw: &str) -> Result<BoundedText, TextError> {
        BoundedText::parse_lines(raw, Self::DESCRIPTION_MAX_CHARS)
    }

    pub(crate) fn create(new: NewProduct, now: DateTime<Utc>) -> Self {
        Self {
            id: ProductId::new(),
            sku: new.sku,
            name: new.name,
            description: new.description,
            price: new.price,
            category: new.category,
            status: ProductStatus::Active,
            created_at: now,
            updated_at: now,
        }
    }

    pub(crate) fn apply(&mut self, patch: ProductPatch, now: DateTime<Utc>) {
        if let Some(name) = patch.name {
            self.name = name;
        }
        if let Some(description) = patch.description {
            self.description = description;
        }
        if let Some(price) = patch.price {
            self.price = price;
        }
        if let Some(category) = patch.category {
            self.category = category;
        }
        self.updated_at = changed_at(self.updated_at, now);
    }

    pub(crate) fn archive(&mut self, now: DateTime<Utc>) {
        self.status = ProductStatus::Archived;
        self.updated_at = changed_at(self.updated_at, now);
    }

    pub fn is_active(&self) -> bool {
        self.status == ProductStatus::Active
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skus_are_normalised_and_restricted() {
        assert_eq!(Sku::parse(" ab-12.x_y ").map(|s| s.as_str().to_owned()), Ok("AB-12.X_Y".to_owned()));
        assert_eq!(Sku::parse(""), Err(SkuError::Empty));
        assert_eq!(Sku::parse("a b"), Err(SkuError::InvalidCharacters));
        assert_eq!(Sku::parse(&"A".repeat(65)), Err(SkuError::TooLong));
    }
}
