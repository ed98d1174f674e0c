//! Back-office view of customer accounts.

use actix_web::web::{Data, Path, Query};
use actix_web::{get, HttpResponse};
use ecom_identity::model::{CustomerId, Role};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_actix_web::service_config::ServiceConfig;
use uuid::Uuid;

use super::customers::CustomerDto;
use crate::error::{ApiError, Problem};
use crate::extract::{Admin, PageQuery};
use crate::AppState;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(list_customers).service(get_customer);
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct CustomerFilter {
    /// Only accounts with this role.
    #[param(value_type = Option<String>, example = "CUSTOMER")]
    role: Option<String>,
    #[param(minimum = 1, maximum = 100)]
    limit: Option<i64>,
    cursor: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CustomerPage {
    data: Vec<CustomerDto>,
    next_cursor: Option<String>,
}

/// Every account, newest first. ADMIN only.
#[utoipa::path(
    tag = "admin",
    security(("bearer" = ["ADMIN"])),
    params(CustomerFilter),
    responses(
        (status = 200, body = CustomerPage),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/admin/customers")]
async fn list_customers(
    state: Data<AppState>,
    _admin: Admin,
    query: Query<CustomerFilter>,
) -> Result<HttpResponse, ApiError> {
    let query = query.into_inner();
    let role = match query.role.as_deref() {
        None => None,
        Some(raw) => Some(Role::parse(raw).ok_or_else(|| {
            ApiError::field(crate::error::ProblemKind::ValidationFailed, "role", "must be CUSTOMER or ADMIN")
        })?),
    };
    let page = PageQuery { limit: query.limit, cursor: query.cursor }.to_request()?;
    let result = state.identity.list_customers(role, &page).await?;
    Ok(HttpResponse::Ok().json(CustomerPage {
        data: result.items.iter().map(CustomerDto::from).collect(),
        next_cursor: result.next.map(|c| c.encode()),
    }))
}

/// One account. ADMIN only.
#[utoipa::path(
    tag = "admin",
    security(("bearer" = ["ADMIN"])),
    params(("id" = Uuid, Path, description = "Customer id")),
    responses(
        (status = 200, body = CustomerDto),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "CUSTOMER_NOT_FOUND", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/admin/customers/{id}")]
async fn get_customer(state: Data<AppState>, _admin: Admin, id: Path<Uuid>) -> Result<HttpResponse, ApiError> {
    let customer = state.identity.find_customer(CustomerId::from_uuid(*id)).await?;
    Ok(HttpResponse::Ok().json(CustomerDto::from(&customer)))
}
