use ecom_kernel::{InfraError, ProductId};

#[derive(Debug, thiserror::Error)]
pub enum CartError {
    #[error("cart not found")]
    CartNotFound,
    #[error("product {0} not found")]
    ProductNotFound(ProductId),
    #[error("product {product_id}: {requested} requested, {available} available")]
    OutOfStock { product_id: ProductId, requested: u32, available: u32 },
    #[error("quantity must be between {min} and {max}")]
    QuantityOutOfRange { min: u32, max: u32 },
    #[error("a cart holds at most {max} units of one product")]
    LineQuantityLimit { max: u32 },
    #[error("a cart holds at most {max} different products")]
    TooManyLines { max: u32 },
    #[error("a customer is required")]
    CustomerRequired,
    #[error(transparent)]
    Infrastructure(#[from] InfraError),
}
