//! Orders: checkout, the customer's and the admin's views, cancellation and the admin lifecycle.

use actix_web::http::header::LOCATION;
use actix_web::web::{Data, Path, Query};
use actix_web::{get, patch, post, HttpResponse};
use chrono::{DateTime, Utc};
use ecom_identity::model::Role;
use ecom_kernel::{BoundedText, CustomerId, OrderId, TextError, ValidationErrors};
use ecom_orders::model::{Order, OrderStatus, PaymentMethod, ShippingAddress};
use ecom_orders::ports::OrderFilter;
use ecom_orders::service::{CheckoutRequest, ShippingChoice, Viewer};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_actix_web::service_config::ServiceConfig;
use uuid::Uuid;

use crate::error::{ApiError, Problem};
use crate::extract::{Admin, Authenticated, JsonBody, PageQuery};
use crate::routes::addresses::CreateAddressRequest;
use crate::routes::products::MoneyDto;
use crate::AppState;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(checkout)
        .service(list_orders)
        .service(get_order)
        .service(cancel_order)
        .service(admin_confirm)
        .service(admin_process)
        .service(admin_ship)
        .service(admin_deliver)
        .service(admin_cancel);
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderItemDto {
    product_id: Uuid,
    sku: String,
    name: String,
    unit_price: MoneyDto,
    quantity: u32,
    line_total: MoneyDto,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ShippingAddressDto {
    full_name: String,
    line1: String,
    line2: Option<String>,
    city: String,
    state: Option<String>,
    postal_code: String,
    country: String,
    phone: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TimelineDto {
    status: &'static str,
    at: DateTime<Utc>,
    note: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderDto {
    id: Uuid,
    customer_id: Uuid,
    /// PENDING_PAYMENT, PENDING_CONFIRMATION, CONFIRMED, PROCESSING, SHIPPED, DELIVERED, CANCELLED, REFUNDED.
    status: &'static str,
    payment_status: &'static str,
    payment_method: &'static str,
    items: Vec<OrderItemDto>,
    subtotal: MoneyDto,
    shipping_cost: MoneyDto,
    total: MoneyDto,
    shipping_address: ShippingAddressDto,
    customer_notes: Option<String>,
    cancellation_reason: Option<&'static str>,
    timeline: Vec<TimelineDto>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<&Order> for OrderDto {
    fn from(o: &Order) -> Self {
        let a = &o.shipping_address;
        Self {
            id: o.id.as_uuid(),
            customer_id: o.customer_id.as_uuid(),
            status: o.status.as_str(),
            payment_status: o.payment_status.as_str(),
            payment_method: o.payment_method.as_str(),
            items: o
                .lines
                .iter()
                .map(|l| OrderItemDto {
                    product_id: l.product_id.as_uuid(),
                    sku: l.sku.clone(),
                    name: l.name.clone(),
                    unit_price: l.unit_price.into(),
                    quantity: l.quantity,
                    line_total: l.line_total.into(),
                })
                .collect(),
            subtotal: o.subtotal.into(),
            shipping_cost: o.shipping_cost.into(),
            total: o.total.into(),
            shipping_address: ShippingAddressDto {
                full_name: a.full_name.clone(),
                line1: a.line1.clone(),
                line2: a.line2.clone(),
                city: a.city.clone(),
                state: a.state.clone(),
                postal_code: a.postal_code.clone(),
                country: a.country.clone(),
                phone: a.phone.clone(),
            },
            customer_notes: o.customer_notes.clone(),
            cancellation_reason: o.cancellation_reason.as_ref().map(|r| r.as_str()),
            timeline: o
                .timeline
                .iter()
                .map(|t| TimelineDto { status: t.status.as_str(), at: t.at, note: t.note.clone() })
                .collect(),
            created_at: o.created_at,
            updated_at: o.updated_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderPage {
    data: Vec<OrderDto>,
    next_cursor: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CheckoutBody {
    cart_id: Uuid,
    /// CREDIT_CARD, DEBIT_CARD, PAYPAL or CASH_ON_DELIVERY.
    #[schema(value_type = PaymentMethodName)]
    payment_method: String,
    /// One of the customer's addresses; or `shippingAddress` (one of the two is required).
    shipping_address_id: Option<Uuid>,
    shipping_address: Option<CreateAddressRequest>,
    /// A provider token (online payments); raw card numbers are refused.
    #[schema(example = "pm_card_visa")]
    payment_token: Option<String>,
    /// Up to 1000 characters.
    #[schema(max_length = 1000)]
    customer_notes: Option<String>,
}

// Documentation only: the body takes the method as a string, so that an unknown one is a 422
// naming the field.
/// Online (a card or PayPal, with a `paymentToken`) or cash on delivery.
#[derive(ToSchema)]
#[schema(rename_all = "SCREAMING_SNAKE_CASE")]
#[allow(dead_code)]
pub enum PaymentMethodName {
    CreditCard,
    DebitCard,
    Paypal,
    CashOnDelivery,
}

fn viewer(auth: &Authenticated) -> Viewer {
    Viewer { customer_id: auth.0.customer_id, admin: auth.0.role == Role::Admin }
}

/// Places an order from the customer's cart; the worker then reserves, charges and confirms it.
/// Requires an Idempotency-Key.
#[utoipa::path(
    tag = "orders",
    security(("bearer" = [])),
    request_body = CheckoutBody,
    responses(
        (status = 201, body = OrderDto),
        (status = 400, description = "IDEMPOTENCY_KEY_REQUIRED", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "CART_NOT_FOUND, ADDRESS_NOT_FOUND", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "CART_EMPTY, PRODUCT_UNAVAILABLE, VALIDATION_FAILED", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/orders/checkout")]
async fn checkout(
    state: Data<AppState>,
    auth: Authenticated,
    body: JsonBody<CheckoutBody>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let method = PaymentMethod::parse(&body.payment_method).ok_or_else(|| {
        ValidationErrors::single("paymentMethod", "must be CREDIT_CARD, DEBIT_CARD, PAYPAL or CASH_ON_DELIVERY")
    })?;
    let notes = match body.customer_notes.as_deref().map(|n| BoundedText::parse_lines(n, 1000)) {
        None | Some(Err(TextError::Empty)) => None,
        Some(Ok(notes)) => Some(notes.as_str().to_owned()),
        Some(Err(e)) => return Err(ValidationErrors::single("customerNotes", e.to_string()).into()),
    };
    let shipping = match (body.shipping_address_id, body.shipping_address) {
        (Some(_), Some(_)) => {
            return Err(ValidationErrors::single(
                "shippingAddress",
                "give shippingAddressId or shippingAddress, not both",
            )
            .into())
        }
        (Some(id), None) => Some(ShippingChoice::Saved(id)),
        (None, Some(address)) => {
            let a = address.into_command()?;
            Some(ShippingChoice::New(ShippingAddress {
                full_name: a.full_name.as_str().to_owned(),
                line1: a.line1.as_str().to_owned(),
                line2: a.line2.as_ref().map(|v| v.as_str().to_owned()),
                city: a.city.as_str().to_owned(),
                state: a.state.as_ref().map(|v| v.as_str().to_owned()),
                postal_code: a.postal_code.as_str().to_owned(),
                country: a.country.as_str().to_owned(),
                phone: a.phone.as_ref().map(|v| v.as_str().to_owned()),
            }))
        }
        (None, None) => None,
    };
    let request = CheckoutRequest {
        cart_id: body.cart_id,
        payment_method: method,
        shipping,
        payment_token: body.payment_token,
        customer_notes: notes,
    };
    let order = state.orders.checkout(auth.0.customer_id, request).await?;
    tracing::info!(order_id = %order.id, method = method.as_str(), total = order.total.amount(), "order placed");
    Ok(HttpResponse::Created()
        .insert_header((LOCATION, format!("/v1/orders/{}", order.id)))
        .json(OrderDto::from(&order)))
}

#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct OrderListQuery {
    #[param(minimum = 1, maximum = 100)]
    limit: Option<i64>,
    cursor: Option<String>,
    /// Admins: only orders in this status.
    #[param(
        pattern = "^(PENDING_PAYMENT|PENDING_CONFIRMATION|CONFIRMED|PROCESSING|SHIPPED|DELIVERED|CANCELLED|REFUNDED)$"
    )]
    status: Option<String>,
    /// Admins: only this customer's orders.
    customer_id: Option<Uuid>,
}

/// Orders, newest first: a customer's own, or (admins) everyone's, filtered.
#[utoipa::path(tag = "orders", security(("bearer" = [])), params(OrderListQuery), responses((status = 200, body = OrderPage)))]
#[get("/orders")]
async fn list_orders(
    state: Data<AppState>,
    auth: Authenticated,
    query: Query<OrderListQuery>,
) -> Result<HttpResponse, ApiError> {
    let query = query.into_inner();
    let page = PageQuery { limit: query.limit, cursor: query.cursor }.to_request()?;
    let status = query
        .status
        .as_deref()
        .map(|s| OrderStatus::parse(s).ok_or_else(|| ValidationErrors::single("status", "unknown order status")))
        .transpose()?;
    let filter = OrderFilter { customer_id: query.customer_id.map(CustomerId::from_uuid), status };
    let result = state.orders.list(viewer(&auth), filter, &page).await?;
    Ok(HttpResponse::Ok().json(OrderPage {
        data: result.items.iter().map(OrderDto::from).collect(),
        next_cursor: result.next.map(|c| c.encode()),
    }))
}

/// One order. Its owner or an admin; anyone else gets 404.
#[utoipa::path(
    tag = "orders",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Order id")),
    responses((status = 200, body = OrderDto), (status = 404, description = "ORDER_NOT_FOUND", body = Problem, content_type = "application/problem+json"))
)]
#[get("/orders/{id}")]
async fn get_order(state: Data<AppState>, auth: Authenticated, id: Path<Uuid>) -> Result<HttpResponse, ApiError> {
    let order = state.orders.view(OrderId::from_uuid(*id), viewer(&auth)).await?;
    Ok(HttpResponse::Ok().json(OrderDto::from(&order)))
}

/// The owner cancels before shipping: CANCELLED now; the refund and the stock follow shortly.
#[utoipa::path(
    tag = "orders",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Order id")),
    responses(
        (status = 200, body = OrderDto),
        (status = 404, description = "ORDER_NOT_FOUND", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "INVALID_TRANSITION", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/orders/{id}/cancel")]
async fn cancel_order(state: Data<AppState>, auth: Authenticated, id: Path<Uuid>) -> Result<HttpResponse, ApiError> {
    let owner = Viewer { customer_id: auth.0.customer_id, admin: false };
    let order = state.orders.cancel(OrderId::from_uuid(*id), owner).await?;
    tracing::info!(order_id = %order.id, "order cancelled by its customer");
    Ok(HttpResponse::Ok().json(OrderDto::from(&order)))
}

async fn advance(state: &AppState, id: Uuid, to: OrderStatus) -> Result<HttpResponse, ApiError> {
    let order = state.orders.advance(OrderId::from_uuid(id), to).await?;
    tracing::info!(order_id = %order.id, status = order.status.as_str(), "order advanced by an admin");
    Ok(HttpResponse::Ok().json(OrderDto::from(&order)))
}

/// Cash on delivery: PENDING_CONFIRMATION → CONFIRMED (stock confirmed and the ordered lines
/// taken out of the cart by the worker right after). ADMIN only.
#[utoipa::path(tag = "orders", security(("bearer" = ["ADMIN"])), params(("id" = Uuid, Path, description = "Order id")),
    responses((status = 200, body = OrderDto), (status = 409, description = "INVALID_TRANSITION; CONCURRENT_MODIFICATION (stock still being reserved: try again)", body = Problem, content_type = "application/problem+json")))]
#[patch("/orders/{id}/confirm")]
async fn admin_confirm(state: Data<AppState>, _admin: Admin, id: Path<Uuid>) -> Result<HttpResponse, ApiError> {
    advance(&state, *id, OrderStatus::Confirmed).await
}

/// CONFIRMED → PROCESSING, once the order's units left the shelf (a cash order's finalize job
/// runs right after its confirmation) and, paid online, once its payment is PAID; until then 409
/// CONCURRENT_MODIFICATION, try again (409 INVALID_TRANSITION once its money is gone, refunded
/// or failed). ADMIN only.
#[utoipa::path(tag = "orders", security(("bearer" = ["ADMIN"])), params(("id" = Uuid, Path, description = "Order id")),
    responses((status = 200, body = OrderDto), (status = 409, description = "INVALID_TRANSITION; CONCURRENT_MODIFICATION (not finalized or not paid yet: try again)", body = Problem, content_type = "application/problem+json")))]
#[patch("/orders/{id}/process")]
async fn admin_process(state: Data<AppState>, _admin: Admin, id: Path<Uuid>) -> Result<HttpResponse, ApiError> {
    advance(&state, *id, OrderStatus::Processing).await
}

/// PROCESSING → SHIPPED. ADMIN only.
#[utoipa::path(tag = "orders", security(("bearer" = ["ADMIN"])), params(("id" = Uuid, Path, description = "Order id")),
    responses((status = 200, body = OrderDto), (status = 409, description = "INVALID_TRANSITION", body = Problem, content_type = "application/problem+json")))]
#[patch("/orders/{id}/ship")]
async fn admin_ship(state: Data<AppState>, _admin: Admin, id: Path<Uuid>) -> Result<HttpResponse, ApiError> {
    advance(&state, *id, OrderStatus::Shipped).await
}

/// SHIPPED → DELIVERED; REFUNDED when its money was given back in full before (every refund
/// answered). ADMIN only.
#[utoipa::path(tag = "orders", security(("bearer" = ["ADMIN"])), params(("id" = Uuid, Path, description = "Order id")),
    responses((status = 200, body = OrderDto), (status = 409, description = "INVALID_TRANSITION", body = Problem, content_type = "application/problem+json")))]
#[patch("/orders/{id}/deliver")]
async fn admin_deliver(state: Data<AppState>, _admin: Admin, id: Path<Uuid>) -> Result<HttpResponse, ApiError> {
    advance(&state, *id, OrderStatus::Delivered).await
}

/// Cancels any order before it ships; refund and stock follow shortly. ADMIN only.
#[utoipa::path(tag = "orders", security(("bearer" = ["ADMIN"])), params(("id" = Uuid, Path, description = "Order id")),
    responses((status = 200, body = OrderDto), (status = 409, description = "INVALID_TRANSITION", body = Problem, content_type = "application/problem+json")))]
#[patch("/orders/{id}/cancel")]
async fn admin_cancel(state: Data<AppState>, admin: Admin, id: Path<Uuid>) -> Result<HttpResponse, ApiError> {
    let viewer = Viewer { customer_id: admin.0.customer_id, admin: true };
    let order = state.orders.cancel(OrderId::from_uuid(*id), viewer).await?;
    Ok(HttpResponse::Ok().json(OrderDto::from(&order)))
}
