//! Products and the queries over them.

mod product;
mod query;

pub use product::{NewProduct, Product, ProductPatch, ProductStatus, ProductView, Sku, SkuError};
pub use query::{ListPosition, ProductQuery, ProductSort, SearchText};
