//! The signed-in customer's address book.

use actix_web::http::header::LOCATION;
use actix_web::web::{Data, Path};
use actix_web::{delete, get, patch, post, HttpResponse};
use chrono::{DateTime, Utc};
use ecom_identity::model::{Address, AddressId, AddressPatch, BoundedText, CountryCode, NewAddress, Phone};
use ecom_kernel::{field_error, ValidationErrors};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;
use uuid::Uuid;

use crate::error::{ApiError, Problem};
use crate::extract::{Authenticated, JsonBody};
use crate::AppState;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(list_addresses)
        .service(create_address)
        .service(get_address)
        .service(update_address)
        .service(delete_address);
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AddressDto {
    id: Uuid,
    full_name: String,
    line1: String,
    line2: Option<String>,
    city: String,
    state: Option<String>,
    postal_code: String,
    /// ISO 3166-1 alpha-2.
    country: String,
    phone: Option<String>,
    is_default: bool,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<&Address> for AddressDto {
    fn from(a: &Address) -> Self {
        let text = |t: &BoundedText| t.as_str().to_owned();
        Self {
            id: a.id.as_uuid(),
            full_name: text(&a.full_name),
            line1: text(&a.line1),
            line2: a.line2.as_ref().map(text),
            city: text(&a.city),
            state: a.state.as_ref().map(text),
            postal_code: text(&a.postal_code),
            country: a.country.as_str().to_owned(),
            phone: a.phone.as_ref().map(|p| p.as_str().to_owned()),
            is_default: a.is_default,
            created_at: a.created_at,
            updated_at: a.updated_at,
        }
    }
}

/// The whole collection in one page (it is small): `nextCursor` is always null, as on the last
/// page of any list.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AddressList {
    data: Vec<AddressDto>,
    next_cursor: Option<String>,
}

fn line(raw: &str) -> Result<BoundedText, ecom_identity::model::TextError> {
    BoundedText::parse(raw, Address::LINE_MAX_CHARS)
}

fn postal_code(raw: &str) -> Result<BoundedText, ecom_identity::model::TextError> {
    BoundedText::parse(raw, Address::POSTAL_CODE_MAX_CHARS)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct CreateAddressRequest {
    #[schema(min_length = 1, max_length = 200)]
    full_name: String,
    #[schema(min_length = 1, max_length = 200)]
    line1: String,
    #[schema(min_length = 1, max_length = 200)]
    line2: Option<String>,
    #[schema(min_length = 1, max_length = 200)]
    city: String,
    #[schema(min_length = 1, max_length = 200)]
    state: Option<String>,
    #[schema(min_length = 1, max_length = 20)]
    postal_code: String,
    /// ISO 3166-1 alpha-2, e.g. `DE`.
    #[schema(pattern = "^[A-Za-z]{2}$")]
    country: String,
    #[schema(pattern = r"^\+?[ ().-]*([0-9][ ().-]*){6,15}$")]
    phone: Option<String>,
    /// The first address is always the default.
    #[serde(default)]
    is_default: bool,
}

impl CreateAddressRequest {
    pub(crate) fn into_command(self) -> Result<NewAddress, ApiError> {
        let full_name = line(&self.full_name);
        let line1 = line(&self.line1);
        let line2 = self.line2.as_deref().map(line).transpose();
        let city = line(&self.city);
        let state = self.state.as_deref().map(line).transpose();
        let postal = postal_code(&self.postal_code);
        let country = CountryCode::parse(&self.country);
        let phone = self.phone.as_deref().map(Phone::parse).transpose();
        match (full_name, line1, line2, city, state, postal, country, phone) {
            (Ok(full_name), Ok(line1), Ok(line2), Ok(city), Ok(state), Ok(postal_code), Ok(country), Ok(phone)) => {
                Ok(NewAddress {
                    full_name,
                    line1,
                    line2,
                    city,
                    state,
                    postal_code,
                    country,
                    phone,
                    is_default: self.is_default,
                })
            }
            (full_name, line1, line2, city, state, postal, country, phone) => Err(ValidationErrors::collect([
                field_error("fullName", &full_name),
                field_error("line1", &line1),
                field_error("line2", &line2),
                field_error("city", &city),
                field_error("state", &state),
                field_error("postalCode", &postal),
                field_error("country", &country),
                field_error("phone", &phone),
            ])
            .into()),
        }
    }
}

/// Absent fields stay as they are; `null` clears `line2`, `state` or `phone`.
/// `isDefault: true` makes this the default; the default cannot be unset, only moved.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UpdateAddressRequest {
    #[schema(min_length = 1, max_length = 200)]
    full_name: Option<String>,
    #[schema(min_length = 1, max_length = 200)]
    line1: Option<String>,
    #[serde(default, deserialize_with = "super::nullable")]
    #[schema(value_type = Option<String>, nullable, min_length = 1, max_length = 200)]
    line2: Option<Option<String>>,
    #[schema(min_length = 1, max_length = 200)]
    city: Option<String>,
    #[serde(default, deserialize_with = "super::nullable")]
    #[schema(value_type = Option<String>, nullable, min_length = 1, max_length = 200)]
    state: Option<Option<String>>,
    #[schema(min_length = 1, max_length = 20)]
    postal_code: Option<String>,
    #[schema(pattern = "^[A-Za-z]{2}$")]
    country: Option<String>,
    #[serde(default, deserialize_with = "super::nullable")]
    #[schema(value_type = Option<String>, nullable, pattern = r"^\+?[ ().-]*([0-9][ ().-]*){6,15}$")]
    phone: Option<Option<String>>,
    is_default: Option<bool>,
}

impl UpdateAddressRequest {
    fn into_patch(self) -> Result<AddressPatch, ApiError> {
        let nullable_line =
            |v: Option<Option<String>>| v.map(|inner| inner.as_deref().map(line).transpose()).transpose();
        let full_name = self.full_name.as_deref().map(line).transpose();
        let line1 = self.line1.as_deref().map(line).transpose();
        let line2 = nullable_line(self.line2);
        let city = self.city.as_deref().map(line).transpose();
        let state = nullable_line(self.state);
        let postal = self.postal_code.as_deref().map(postal_code).transpose();
        let country = self.country.as_deref().map(CountryCode::parse).transpose();
        let phone = self.phone.map(|p| p.as_deref().map(Phone::parse).transpose()).transpose();
        let is_default = match self.is_default {
            Some(false) => Err("cannot be unset; make another address the default instead"),
            other => Ok(other),
        };
        match (full_name, line1, line2, city, state, postal, country, phone, is_default) {
            (
                Ok(full_name),
                Ok(line1),
                Ok(line2),
                Ok(city),
                Ok(state),
                Ok(postal_code),
                Ok(country),
                Ok(phone),
                Ok(is_default),
            ) => Ok(AddressPatch { full_name, line1, line2, city, state, postal_code, country, phone, is_default }),
            (full_name, line1, line2, city, state, postal, country, phone, is_default) => {
                Err(ValidationErrors::collect([
                    field_error("fullName", &full_name),
                    field_error("line1", &line1),
                    field_error("line2", &line2),
                    field_error("city", &city),
                    field_error("state", &state),
                    field_error("postalCode", &postal),
                    field_error("country", &country),
                    field_error("phone", &phone),
                    field_error("isDefault", &is_default),
                ])
                .into())
            }
        }
    }
}

/// The customer's addresses, oldest first.
#[utoipa::path(
    tag = "customers",
    security(("bearer" = [])),
    responses((status = 200, body = AddressList), (status = 401, body = Problem, content_type = "application/problem+json"))
)]
#[get("/customers/me/addresses")]
async fn list_addresses(state: Data<AppState>, caller: Authenticated) -> Result<HttpResponse, ApiError> {
    let addresses = state.identity.list_addresses(caller.0).await?;
    Ok(HttpResponse::Ok()
        .json(AddressList { next_cursor: None, data: addresses.iter().map(AddressDto::from).collect() }))
}

/// Saves a new address (at most 20 per customer).
#[utoipa::path(
    tag = "customers",
    security(("bearer" = [])),
    request_body = CreateAddressRequest,
    responses(
        (status = 201, body = AddressDto, headers(("Location" = String))),
        (status = 409, description = "ADDRESS_LIMIT_REACHED", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/customers/me/addresses")]
async fn create_address(
    state: Data<AppState>,
    caller: Authenticated,
    body: JsonBody<CreateAddressRequest>,
) -> Result<HttpResponse, ApiError> {
    let command = body.into_inner().into_command()?;
    let address = state.identity.add_address(caller.0, command).await?;
    Ok(HttpResponse::Created()
        .insert_header((LOCATION, format!("/v1/customers/me/addresses/{}", address.id)))
        .json(AddressDto::from(&address)))
}

/// One address (where a new address's `Location` points). Another customer's address is 404.
#[utoipa::path(
    tag = "customers",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Address id")),
    responses(
        (status = 200, body = AddressDto),
        (status = 404, description = "ADDRESS_NOT_FOUND", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/customers/me/addresses/{id}")]
async fn get_address(state: Data<AppState>, caller: Authenticated, id: Path<Uuid>) -> Result<HttpResponse, ApiError> {
    let address = state.identity.get_address(caller.0, AddressId::from_uuid(*id)).await?;
    Ok(HttpResponse::Ok().json(AddressDto::from(&address)))
}

/// Changes an address: only the fields sent (a change another device made meanwhile is kept).
/// Another customer's address is 404.
#[utoipa::path(
    tag = "customers",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Address id")),
    request_body = UpdateAddressRequest,
    responses(
        (status = 200, body = AddressDto),
        (status = 404, description = "ADDRESS_NOT_FOUND", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "CONCURRENT_MODIFICATION (changed by other requests on every try: send it again)", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    )
)]
#[patch("/customers/me/addresses/{id}")]
async fn update_address(
    state: Data<AppState>,
    caller: Authenticated,
    id: Path<Uuid>,
    body: JsonBody<UpdateAddressRequest>,
) -> Result<HttpResponse, ApiError> {
    let patch = body.into_inner().into_patch()?;
    let address = state.identity.update_address(caller.0, AddressId::from_uuid(*id), patch).await?;
    Ok(HttpResponse::Ok().json(AddressDto::from(&address)))
}

/// Deletes an address; if it was the default, the oldest remaining one becomes the default.
#[utoipa::path(
    tag = "customers",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Address id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "ADDRESS_NOT_FOUND", body = Problem, content_type = "application/problem+json"),
    )
)]
#[delete("/customers/me/addresses/{id}")]
async fn delete_address(
    state: Data<AppState>,
    caller: Authenticated,
    id: Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    state.identity.delete_address(caller.0, AddressId::from_uuid(*id)).await?;
    Ok(HttpResponse::NoContent().finish())
}
