use ecom_kernel::{InfraError, OrderId, ProductId};

use crate::model::ReservationStatus;

#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    #[error("product {0} has no stock record")]
    ProductNotFound(ProductId),
    #[error("on hand would fall below the {reserved} units reserved")]
    BelowReserved { reserved: u32 },
    #[error("on hand would exceed {max} units, the most a product's stock holds")]
    TooMany { max: u32 },
    #[error("product {product_id}: {requested} requested, {available} available")]
    OutOfStock { product_id: ProductId, requested: u32, available: u32 },
    #[error("a reservation needs at least one line, each product once")]
    InvalidLines,
    #[error("no reservation for order {0}")]
    ReservationNotFound(OrderId),
    #[error("reservation of order {order_id} is {from:?} and cannot become {to:?}")]
    InvalidTransition { order_id: OrderId, from: ReservationStatus, to: ReservationStatus },
    #[error(transparent)]
    Infrastructure(#[from] InfraError),
}
