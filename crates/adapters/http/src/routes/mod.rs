//! One module per resource; each registers its own routes.

pub mod addresses;
pub mod admin_customers;
pub mod admin_jobs;
pub mod auth;
pub mod carts;
pub mod customers;
pub mod inventory;
pub mod notifications;
pub mod operations;
pub mod orders;
pub mod payments;
pub mod products;

use serde::{Deserialize, Deserializer};
use utoipa_actix_web::service_config::ServiceConfig;

/// Routes under `/v1`.
pub fn configure_v1(cfg: &mut ServiceConfig) {
    auth::configure(cfg);
    customers::configure(cfg);
    addresses::configure(cfg);
    admin_customers::configure(cfg);
    admin_jobs::configure(cfg);
    products::configure(cfg);
    inventory::configure(cfg);
    carts::configure(cfg);
    payments::configure(cfg);
    orders::configure(cfg);
    notifications::configure(cfg);
}

/// Tells an absent field (`None`) from an explicit `null` (`Some(None)`) in PATCH bodies.
pub(crate) fn nullable<'de, T: Deserialize<'de>, D: Deserializer<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}
