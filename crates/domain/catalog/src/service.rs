//! The catalog use cases.

use std::sync::Arc;

use ecom_kernel::jobs::{JobId, NewJob, QueueName};
use ecom_kernel::{Clock, Currency, CustomerId, Page, PageRequest, ProductId};
use serde::{Deserialize, Serialize};

use crate::error::CatalogError;
use crate::model::{NewProduct, Product, ProductPatch, ProductQuery, ProductView};
use crate::ports::{CacheLookup, CreateProductError, ProductCache, ProductRepository};

/// Tries of a product write that meets another write first (each time read again).
const WRITE_ATTEMPTS: usize = 5;

/// `catalog.evict-cached`: a changed product's cache entries evicted once more, staged with the
/// change. The writer evicts them right after its commit; this job is the eviction that cannot be
/// lost with it (Redis failing that moment would otherwise leave the old price or an archived
/// product served from the cache, and priced into checkouts, until the entries expire).
pub const EVICT_CACHED_KIND: &str = "catalog.evict-cached";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EvictCachedJob {
    pub product_id: ProductId,
}

/// One job per change (its id names the write), on the checkout queue: what it protects is
/// what checkouts are priced at.
fn evict_cached_job(id: ProductId) -> NewJob {
    NewJob {
        id: JobId::new(format!("product-evict:{id}:{}", uuid::Uuid::now_v7())),
        queue: QueueName::Checkout,
        kind: EVICT_CACHED_KIND.to_owned(),
        payload: serde_json::json!(EvictCachedJob { product_id: id }),
        schema_version: 1,
        max_attempts: 10,
        trace_id: None,
    }
}

pub struct CatalogService {
    products: Arc<dyn ProductRepository>,
    cache: Arc<dyn ProductCache>,
    clock: Arc<dyn Clock>,
    currency: Currency,
}

impl CatalogService {
    /// `currency` is the shop's: every price is in it, so carts and orders never mix currencies.
    pub fn new(
        products: Arc<dyn ProductRepository>,
        cache: Arc<dyn ProductCache>,
        clock: Arc<dyn Clock>,
        currency: Currency,
    ) -> Self {
        Self { products, cache, clock, currency }
    }

    pub fn currency(&self) -> Currency {
        self.currency
    }

    fn check_price(&self, price: ecom_kernel::Money) -> Result<(), CatalogError> {
        if price.currency() != self.currency {
            return Err(CatalogError::WrongCurrency {
                expected: self.currency.code().to_owned(),
                got: price.currency().code().to_owned(),
            });
        }
        if !price.is_positive() {
            return Err(CatalogError::NonPositivePrice);
        }
        if price.amount() > Product::MAX_PRICE {
            return Err(CatalogError::PriceTooHigh { max: Product::MAX_PRICE });
        }
        Ok(())
    }

    pub async fn create_product(&self, actor: CustomerId, new: NewProduct) -> Result<ProductView, CatalogError> {
        self.check_price(new.price)?;
        let initial_stock = new.initial_stock;
        let sku = new.sku.as_str().to_owned();
        let product = Product::create(new, self.clock.now());
        self.products.create(&product, initial_stock, actor).await.map_err(|e| match e {
            CreateProductError::SkuTaken => CatalogError::SkuTaken(sku),
            CreateProductError::Infrastructure(e) => CatalogError::Infrastructure(e),
        })?;
        Ok(ProductView { product, available: i64::from(initial_stock) })
    }

    /// An ACTIVE product, from the cache when it is fresh. The cache is an optimisation: when it
    /// fails, the database answers.
    pub async fn get_product(&self, id: ProductId) -> Result<ProductView, CatalogError> {
        active(self.cached(id).await?, id)
    }

    /// A product whatever its status, from the cache when it is fresh: for carts and checkouts,
    /// which price it and tell an archived product from a missing one. The cache never serves a
    /// product (or its availability) after a change was acknowledged, so this answers as a
    /// database read would.
    pub async fn lookup_product(&self, id: ProductId) -> Result<ProductView, CatalogError> {
        self.cached(id).await
    }

    /// A product whatever its status, without its availability: for a checkout, which prices its
    /// lines. Read from the cache's product entry, which stock changes leave alone; like
    /// `lookup_product`, it answers as a database read would.
    pub async fn priced_product(&self, id: ProductId) -> Result<Product, CatalogError> {
        let token = match self.cache.lookup_priced(id).await {
            Ok(CacheLookup::Hit(product)) => return Ok(product),
            Ok(CacheLookup::Miss(token)) => Some(token),
            Err(_) => None,
        };
        let product = self.get_any_product(id).await?.product;
        if let Some(token) = token {
            let _ = self.cache.fill_priced(token, &product).await;
        }
        Ok(product)
    }

    async fn cached(&self, id: ProductId) -> Result<ProductView, CatalogError> {
        let token = match self.cache.lookup(id).await {
            Ok(CacheLookup::Hit(view)) => return Ok(view),
            Ok(CacheLookup::Miss(token)) => Some(token),
            Err(_) => None,
        };
        let view = self.get_any_product(id).await?;
        if let Some(token) = token {
            // A failed fill only costs the next reader a database read.
            let _ = self.cache.fill(token, &view).await;
        }
        Ok(view)
    }

    /// A product whatever its status (back office).
    pub async fn get_any_product(&self, id: ProductId) -> Result<ProductView, CatalogError> {
        self.products.find(id).await?.ok_or(CatalogError::ProductNotFound(id))
    }

    pub async fn list_products(
        &self,
        query: &ProductQuery,
        page: &PageRequest,
    ) -> Result<Page<ProductView>, CatalogError> {
        if let (Some(min), Some(max)) = (query.min_price, query.max_price) {
            if min > max {
                return Err(CatalogError::InvalidPriceRange);
            }
        }
        if page.after().is_some_and(|cursor| query.effective_sort().position(cursor).is_none()) {
            return Err(CatalogError::CursorOfAnotherSort);
        }
        Ok(self.products.search(query, page).await?)
    }

    /// Changes an ACTIVE product; the change is visible on the very next read. Written only
    /// over the product as it was read (read again when another write came first), so two
    /// changes at once both land and an archived product is never brought back.
    pub async fn update_product(&self, id: ProductId, patch: ProductPatch) -> Result<ProductView, CatalogError> {
        if let Some(price) = patch.price {
            self.check_price(price)?;
        }
        for _ in 0..WRITE_ATTEMPTS {
            let view = self.get_any_product(id).await?;
            if !view.product.is_active() {
                return Err(CatalogError::ProductNotFound(id));
            }
            let mut next = view.clone();
            next.product.apply(patch.clone(), self.clock.now());
            if self.products.update(&view.product, &next.product, &[evict_cached_job(id)]).await? {
                self.cache.invalidate(id).await?;
                return Ok(next);
            }
        }
        Err(CatalogError::Conflict)
    }

    /// Evicts a product's cache entries (the `catalog.evict-cached` job).
    pub async fn evict_cached(&self, id: ProductId) -> Result<(), CatalogError> {
        Ok(self.cache.invalidate(id).await?)
    }

    /// Archives: no longer listed or sold; orders keep their snapshot. Idempotent.
    pub async fn archive_product(&self, id: ProductId) -> Result<(), CatalogError> {
        for _ in 0..WRITE_ATTEMPTS {
            let view = self.get_any_product(id).await?;
            if !view.product.is_active() {
                self.cache.invalidate(id).await?;
                return Ok(());
            }
            let mut next = view.product.clone();
            next.archive(self.clock.now());
            if self.products.update(&view.product, &next, &[evict_cached_job(id)]).await? {
                self.cache.invalidate(id).await?;
                return Ok(());
            }
        }
        Err(CatalogError::Conflict)
    }
}

fn active(view: ProductView, id: ProductId) -> Result<ProductView, CatalogError> {
    if view.product.is_active() {
        Ok(view)
    } else {
        Err(CatalogError::ProductNotFound(id))
    }
}
