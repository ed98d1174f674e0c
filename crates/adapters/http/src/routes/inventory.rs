//! Stock levels: public availability, admin adjustments and the low-stock list.

use actix_web::web::{Data, Path, Query};
use actix_web::{get, post, HttpResponse};
use ecom_inventory::model::{Adjustment, StockLevel};
use ecom_kernel::{field_error, BoundedText, ProductId, ValidationErrors};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;
use uuid::Uuid;

use crate::error::{ApiError, Problem};
use crate::extract::{Admin, JsonBody, PageQuery};
use crate::AppState;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(get_levels).service(adjust).service(low_stock);
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StockLevelDto {
    product_id: Uuid,
    on_hand: u32,
    reserved: u32,
    available: u32,
    low_stock_threshold: u32,
}

impl From<&StockLevel> for StockLevelDto {
    fn from(l: &StockLevel) -> Self {
        Self {
            product_id: l.product_id.as_uuid(),
            on_hand: l.on_hand,
            reserved: l.reserved,
            available: l.available(),
            low_stock_threshold: l.low_stock_threshold,
        }
    }
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StockLevelPage {
    data: Vec<StockLevelDto>,
    next_cursor: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AdjustRequest {
    /// 1 or more for `ADD` and `SUBTRACT`, 0 or more for `SET`.
    #[schema(minimum = 0, maximum = 1_000_000)]
    quantity: i64,
    /// `ADD`, `SUBTRACT` or `SET`.
    #[serde(rename = "type")]
    #[schema(example = "ADD", pattern = "^(ADD|SUBTRACT|SET)$")]
    kind: String,
    /// Recorded in the stock ledger.
    #[schema(min_length = 1, max_length = 500)]
    reason: Option<String>,
}

/// Units on hand, reserved and available for one product.
#[utoipa::path(
    tag = "inventory",
    params(("productId" = Uuid, Path, description = "Product id")),
    responses(
        (status = 200, body = StockLevelDto),
        (status = 404, description = "PRODUCT_NOT_FOUND", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/inventory/products/{productId}")]
async fn get_levels(state: Data<AppState>, product_id: Path<Uuid>) -> Result<HttpResponse, ApiError> {
    let level = state.inventory.level(ProductId::from_uuid(*product_id)).await?;
    Ok(HttpResponse::Ok().json(StockLevelDto::from(&level)))
}

/// Adds, subtracts or sets the units on hand; never below what is reserved. ADMIN only.
#[utoipa::path(
    tag = "inventory",
    security(("bearer" = ["ADMIN"])),
    params(("productId" = Uuid, Path, description = "Product id")),
    request_body = AdjustRequest,
    responses(
        (status = 200, body = StockLevelDto),
        (status = 404, description = "PRODUCT_NOT_FOUND", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "STOCK_BELOW_RESERVED", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/inventory/products/{productId}/adjust")]
async fn adjust(
    state: Data<AppState>,
    admin: Admin,
    product_id: Path<Uuid>,
    body: JsonBody<AdjustRequest>,
) -> Result<HttpResponse, ApiError> {
    let AdjustRequest { quantity, kind, reason } = body.into_inner();
    let adjustment = Adjustment::parse(&kind, quantity);
    let reason = reason.as_deref().map(|r| BoundedText::parse(r, 500)).transpose();
    let (adjustment, reason) = match (adjustment, reason) {
        (Ok(a), Ok(r)) => (a, r),
        (a, r) => {
            let field =
                if matches!(a, Err(ecom_inventory::model::AdjustmentError::UnknownType)) { "type" } else { "quantity" };
            return Err(ValidationErrors::collect([field_error(field, &a), field_error("reason", &r)]).into());
        }
    };
    let level =
        state.inventory.adjust(ProductId::from_uuid(*product_id), adjustment, admin.0.customer_id, reason).await?;
    tracing::info!(product_id = %level.product_id, kind = adjustment.kind(), on_hand = level.on_hand, "stock adjusted");
    Ok(HttpResponse::Ok().json(StockLevelDto::from(&level)))
}

/// Active products whose available units are at or below their threshold. ADMIN only.
#[utoipa::path(
    tag = "inventory",
    security(("bearer" = ["ADMIN"])),
    params(PageQuery),
    responses(
        (status = 200, body = StockLevelPage),
        (status = 403, body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/inventory/low-stock")]
async fn low_stock(state: Data<AppState>, _admin: Admin, query: Query<PageQuery>) -> Result<HttpResponse, ApiError> {
    let page = query.to_request()?;
    let result = state.inventory.low_stock(&page).await?;
    Ok(HttpResponse::Ok().json(StockLevelPage {
        data: result.items.iter().map(StockLevelDto::from).collect(),
        next_cursor: result.next.map(|c| c.encode()),
    }))
}
