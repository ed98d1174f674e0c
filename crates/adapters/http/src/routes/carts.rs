//! Carts: guest carts reached with `X-Cart-Token`, a customer's active cart, merge on sign-in.

use actix_web::http::header::LOCATION;
use actix_web::web::{Data, Path};
use actix_web::{delete, get, patch, post, HttpResponse};
use chrono::{DateTime, Utc};
use ecom_carts::model::{CartId, CartView};
use ecom_kernel::ProductId;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;
use uuid::Uuid;

use super::products::MoneyDto;
use crate::error::{ApiError, Problem};
use crate::extract::{CartCaller, JsonBody};
use crate::AppState;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(open_cart)
        .service(get_cart)
        .service(add_item)
        .service(update_item)
        .service(remove_item)
        .service(clear_cart)
        .service(merge_cart);
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CartItemDto {
    product_id: Uuid,
    name: String,
    /// The catalog's price now.
    unit_price: MoneyDto,
    quantity: u32,
    line_total: MoneyDto,
    /// Units in stock now.
    available: u32,
    /// False when the product was archived or fewer units are available than this line holds.
    purchasable: bool,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CartDto {
    id: Uuid,
    items: Vec<CartItemDto>,
    /// Units across all lines.
    item_count: u32,
    subtotal: MoneyDto,
    updated_at: DateTime<Utc>,
    /// Only when a guest cart is created: send it as `X-Cart-Token` on every call for this cart.
    #[serde(skip_serializing_if = "Option::is_none")]
    cart_token: Option<String>,
}

impl CartDto {
    fn new(view: CartView, cart_token: Option<String>) -> Self {
        Self {
            id: view.id.as_uuid(),
            items: view
                .items
                .into_iter()
                .map(|i| CartItemDto {
                    product_id: i.product_id.as_uuid(),
                    name: i.name,
                    unit_price: i.unit_price.into(),
                    quantity: i.quantity,
                    line_total: i.line_total.into(),
                    available: i.available,
                    purchasable: i.purchasable,
                })
                .collect(),
            item_count: view.item_count,
            subtotal: view.subtotal.into(),
            updated_at: view.updated_at,
            cart_token,
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AddItemRequest {
    product_id: Uuid,
    /// 1 to 100.
    #[schema(minimum = 1, maximum = 100)]
    quantity: i64,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UpdateItemRequest {
    /// 0 removes the line; otherwise 1 to 100.
    #[schema(minimum = 0, maximum = 100)]
    quantity: i64,
}

/// A signed-in customer gets their active cart; a guest gets a new cart and its `cartToken`.
#[utoipa::path(
    tag = "carts",
    security((), ("bearer" = [])),
    responses(
        (status = 201, body = CartDto, headers(("Location" = String))),
        (status = 401, description = "An invalid bearer token", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/carts")]
async fn open_cart(state: Data<AppState>, caller: CartCaller) -> Result<HttpResponse, ApiError> {
    let (view, token) = state.carts.open(&caller.0).await?;
    Ok(HttpResponse::Created()
        .insert_header((LOCATION, format!("/v1/carts/{}", view.id)))
        .json(CartDto::new(view, token)))
}

/// The cart, priced now. Someone else's cart (or a guest cart without its token) is 404.
#[utoipa::path(
    tag = "carts",
    security((), ("bearer" = [])),
    params(("id" = Uuid, Path, description = "Cart id"), ("X-Cart-Token" = Option<String>, Header, description = "Guest carts")),
    responses(
        (status = 200, body = CartDto),
        (status = 404, description = "CART_NOT_FOUND", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/carts/{id}")]
async fn get_cart(state: Data<AppState>, caller: CartCaller, id: Path<Uuid>) -> Result<HttpResponse, ApiError> {
    let view = state.carts.view(&caller.0, CartId::from_uuid(*id)).await?;
    Ok(HttpResponse::Ok().json(CartDto::new(view, None)))
}

/// Adds units of a product (to its line if present).
#[utoipa::path(
    tag = "carts",
    security((), ("bearer" = [])),
    params(("id" = Uuid, Path, description = "Cart id"), ("X-Cart-Token" = Option<String>, Header, description = "Guest carts")),
    request_body = AddItemRequest,
    responses(
        (status = 200, body = CartDto),
        (status = 404, description = "CART_NOT_FOUND or PRODUCT_NOT_FOUND (unknown or archived)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "OUT_OF_STOCK", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Quantity out of 1..=100 (per line), or TOO_MANY_LINES", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/carts/{id}/items")]
async fn add_item(
    state: Data<AppState>,
    caller: CartCaller,
    id: Path<Uuid>,
    body: JsonBody<AddItemRequest>,
) -> Result<HttpResponse, ApiError> {
    let AddItemRequest { product_id, quantity } = body.into_inner();
    let view =
        state.carts.add_item(&caller.0, CartId::from_uuid(*id), ProductId::from_uuid(product_id), quantity).await?;
    Ok(HttpResponse::Ok().json(CartDto::new(view, None)))
}

/// Sets a line's quantity; 0 removes the line.
#[utoipa::path(
    tag = "carts",
    security((), ("bearer" = [])),
    params(
        ("id" = Uuid, Path, description = "Cart id"),
        ("productId" = Uuid, Path, description = "Product id"),
        ("X-Cart-Token" = Option<String>, Header, description = "Guest carts"),
    ),
    request_body = UpdateItemRequest,
    responses(
        (status = 200, body = CartDto),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "OUT_OF_STOCK", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    )
)]
#[patch("/carts/{id}/items/{productId}")]
async fn update_item(
    state: Data<AppState>,
    caller: CartCaller,
    path: Path<(Uuid, Uuid)>,
    body: JsonBody<UpdateItemRequest>,
) -> Result<HttpResponse, ApiError> {
    let (id, product) = path.into_inner();
    let quantity = body.into_inner().quantity;
    let view =
        state.carts.update_item(&caller.0, CartId::from_uuid(id), ProductId::from_uuid(product), quantity).await?;
    Ok(HttpResponse::Ok().json(CartDto::new(view, None)))
}

/// Removes a product's line.
#[utoipa::path(
    tag = "carts",
    security((), ("bearer" = [])),
    params(
        ("id" = Uuid, Path, description = "Cart id"),
        ("productId" = Uuid, Path, description = "Product id"),
        ("X-Cart-Token" = Option<String>, Header, description = "Guest carts"),
    ),
    responses((status = 200, body = CartDto), (status = 404, body = Problem, content_type = "application/problem+json"))
)]
#[delete("/carts/{id}/items/{productId}")]
async fn remove_item(
    state: Data<AppState>,
    caller: CartCaller,
    path: Path<(Uuid, Uuid)>,
) -> Result<HttpResponse, ApiError> {
    let (id, product) = path.into_inner();
    let view = state.carts.remove_item(&caller.0, CartId::from_uuid(id), ProductId::from_uuid(product)).await?;
    Ok(HttpResponse::Ok().json(CartDto::new(view, None)))
}

/// Empties the cart.
#[utoipa::path(
    tag = "carts",
    security((), ("bearer" = [])),
    params(("id" = Uuid, Path, description = "Cart id"), ("X-Cart-Token" = Option<String>, Header, description = "Guest carts")),
    responses((status = 204, description = "Emptied"), (status = 404, body = Problem, content_type = "application/problem+json"))
)]
#[delete("/carts/{id}")]
async fn clear_cart(state: Data<AppState>, caller: CartCaller, id: Path<Uuid>) -> Result<HttpResponse, ApiError> {
    state.carts.clear(&caller.0, CartId::from_uuid(*id)).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Folds a guest cart (with its `X-Cart-Token`) into the signed-in customer's cart: quantities
/// summed, capped by availability and limits; the guest cart is then hidden (kept up to a day,
/// so a retried merge answers the same while the customer's cart is the same one). Safe to
/// retry.
#[utoipa::path(
    tag = "carts",
    security(("bearer" = [])),
    params(
        ("guestCartId" = Uuid, Path, description = "The guest cart"),
        ("X-Cart-Token" = String, Header, description = "The guest cart's token"),
    ),
    responses(
        (status = 200, description = "The customer's cart after the merge", body = CartDto),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such guest cart, or a wrong token", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/carts/{guestCartId}/merge")]
async fn merge_cart(state: Data<AppState>, caller: CartCaller, guest: Path<Uuid>) -> Result<HttpResponse, ApiError> {
    let view = state.carts.merge(&caller.0, CartId::from_uuid(*guest)).await?;
    Ok(HttpResponse::Ok().json(CartDto::new(view, None)))
}
