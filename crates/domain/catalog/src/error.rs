use ecom_kernel::{InfraError, ProductId};

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("product {0} not found")]
    ProductNotFound(ProductId),
    #[error("a product with SKU {0} already exists")]
    SkuTaken(String),
    #[error("price must be greater than zero")]
    NonPositivePrice,
    #[error("price must be at most {max} minor units")]
    PriceTooHigh { max: i64 },
    #[error("prices of this shop are in {expected}, not {got}")]
    WrongCurrency { expected: String, got: String },
    #[error("minPrice must not exceed maxPrice")]
    InvalidPriceRange,
    #[error("the cursor belongs to another sort or search; start again from the first page")]
    CursorOfAnotherSort,
    #[error("the product kept changing while this change was made; try again")]
    Conflict,
    #[error(transparent)]
    Infrastructure(#[from] InfraError),
}
