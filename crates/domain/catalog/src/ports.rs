//! What the catalog needs from the outside world.

use async_trait::async_trait;
use ecom_kernel::jobs::NewJob;
use ecom_kernel::{CustomerId, InfraError, Page, PageRequest, ProductId};

use crate::model::{Product, ProductQuery, ProductView};

#[derive(Debug, thiserror::Error)]
pub enum CreateProductError {
    #[error("SKU taken")]
    SkuTaken,
    #[error(transparent)]
    Infrastructure(#[from] InfraError),
}

#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait ProductRepository: Send + Sync {
    /// Stores the product and its stock level with `initial_stock` on hand (and the ledger entry)
    /// in one transaction. MUST return `SkuTaken` when the SKU exists.
    async fn create(&self, product: &Product, initial_stock: u32, actor: CustomerId) -> Result<(), CreateProductError>;
    /// Any status; with the units available now.
    async fn find(&self, id: ProductId) -> Result<Option<ProductView>, InfraError>;
    /// Stores `product` while the stored one is still `expected` (same `updated_at` and status),
    /// with `jobs` staged in the same transaction; `false`, changing nothing, when another write
    /// came first.
    async fn update(&self, expected: &Product, product: &Product, jobs: &[NewJob]) -> Result<bool, InfraError>;
    /// ACTIVE products matching the query, in its order.
    async fn search(&self, query: &ProductQuery, page: &PageRequest) -> Result<Page<ProductView>, InfraError>;
}

/// What a cache lookup found: the product detail (`ProductView`), or for `lookup_priced` the
/// product alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheLookup<T = ProductView> {
    Hit(T),
    /// Not cached; `fill` with this token stores a value only if nothing changed meanwhile.
    Miss(CacheToken),
}

/// The product's change generation when a miss was observed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheToken(pub String);

/// A read cache of products that never serves a product after its change was acknowledged:
/// writers `invalidate` after committing; a reader's `fill` is refused if a change happened
/// between its lookup and its fill.
///
/// It holds two entries per product: the detail, whose units available change with every
/// reservation (the inventory's stock changes evict it), and the product alone, which only a
/// change of the product evicts: a checkout's prices stay cached however fast the product sells.
/// (Carts read the detail: they check the units available.)
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait ProductCache: Send + Sync {
    async fn lookup(&self, id: ProductId) -> Result<CacheLookup, InfraError>;
    async fn fill(&self, token: CacheToken, view: &ProductView) -> Result<(), InfraError>;
    /// The product without its availability.
    async fn lookup_priced(&self, id: ProductId) -> Result<CacheLookup<Product>, InfraError>;
    async fn fill_priced(&self, token: CacheToken, product: &Product) -> Result<(), InfraError>;
    /// The product changed: MUST make every later `lookup` and `lookup_priced` miss until the
    /// next fill of each.
    async fn invalidate(&self, id: ProductId) -> Result<(), InfraError>;
}
