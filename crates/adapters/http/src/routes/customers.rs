//! The signed-in customer's profile.

use actix_web::web::Data;
use actix_web::{get, patch, HttpResponse};
use chrono::{DateTime, Utc};
use ecom_identity::model::{BoundedText, Customer, CustomerPatch, Phone};
use ecom_kernel::{field_error, ValidationErrors};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

use crate::error::{ApiError, Problem};
use crate::extract::{Authenticated, JsonBody};
use crate::AppState;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(get_me).service(update_me);
}

#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RoleDto {
    Customer,
    Admin,
}

/// A customer account as clients see it.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CustomerDto {
    pub id: uuid::Uuid,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub phone: Option<String>,
    pub role: RoleDto,
    pub created_at: DateTime<Utc>,
}

impl From<&Customer> for CustomerDto {
    fn from(c: &Customer) -> Self {
        Self {
            id: c.id().as_uuid(),
            email: c.email().as_str().to_owned(),
            first_name: c.first_name().as_str().to_owned(),
            last_name: c.last_name().as_str().to_owned(),
            phone: c.phone().map(|p| p.as_str().to_owned()),
            role: match c.role() {
                ecom_identity::model::Role::Customer => RoleDto::Customer,
                ecom_identity::model::Role::Admin => RoleDto::Admin,
            },
            created_at: c.created_at(),
        }
    }
}

/// Profile changes; absent fields stay, `phone: null` removes the phone number.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UpdateMeRequest {
    #[schema(min_length = 1, max_length = 100)]
    first_name: Option<String>,
    #[schema(min_length = 1, max_length = 100)]
    last_name: Option<String>,
    #[serde(default, deserialize_with = "super::nullable")]
    #[schema(value_type = Option<String>, nullable, pattern = r"^\+?[ ().-]*([0-9][ ().-]*){6,15}$")]
    phone: Option<Option<String>>,
}

impl UpdateMeRequest {
    fn into_patch(self) -> Result<CustomerPatch, ApiError> {
        let name = |s: String| BoundedText::parse(&s, Customer::NAME_MAX_CHARS);
        let first_name = self.first_name.map(name).transpose();
        let last_name = self.last_name.map(name).transpose();
        let phone = self.phone.map(|p| p.as_deref().map(Phone::parse).transpose()).transpose();
        match (first_name, last_name, phone) {
            (Ok(first_name), Ok(last_name), Ok(phone)) => Ok(CustomerPatch { first_name, last_name, phone }),
            (first_name, last_name, phone) => Err(ValidationErrors::collect([
                field_error("firstName", &first_name),
                field_error("lastName", &last_name),
                field_error("phone", &phone),
            ])
            .into()),
        }
    }
}

/// The signed-in customer.
#[utoipa::path(
    tag = "customers",
    security(("bearer" = [])),
    responses(
        (status = 200, body = CustomerDto),
        (status = 401, body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/customers/me")]
async fn get_me(state: Data<AppState>, caller: Authenticated) -> Result<HttpResponse, ApiError> {
    let customer = state.identity.me(caller.0).await?;
    Ok(HttpResponse::Ok().json(CustomerDto::from(&customer)))
}

/// Updates the signed-in customer's name or phone.
#[utoipa::path(
    tag = "customers",
    security(("bearer" = [])),
    request_body = UpdateMeRequest,
    responses(
        (status = 200, body = CustomerDto),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    )
)]
#[patch("/customers/me")]
async fn update_me(
    state: Data<AppState>,
    caller: Authenticated,
    body: JsonBody<UpdateMeRequest>,
) -> Result<HttpResponse, ApiError> {
    let patch = body.into_inner().into_patch()?;
    let customer = state.identity.update_me(caller.0, patch).await?;
    Ok(HttpResponse::Ok().json(CustomerDto::from(&customer)))
}
