//! Registration, login, token rotation and logout.

use actix_web::http::header::{CacheControl, CacheDirective, LOCATION};
use actix_web::web::Data;
use actix_web::{post, HttpResponse, HttpResponseBuilder};
use ecom_identity::model::{BoundedText, Customer, NewCustomer, Password, Phone};
use ecom_identity::SessionTokens;
use ecom_kernel::{field_error, Email, ValidationErrors};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

use super::customers::CustomerDto;
use crate::error::{ApiError, Problem};
use crate::extract::{Authenticated, ClientAddr, JsonBody};
use crate::AppState;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(register).service(login).service(refresh).service(logout);
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RegisterRequest {
    #[schema(format = Email, max_length = 254)]
    email: String,
    /// 8 to 128 characters.
    #[schema(format = Password, min_length = 8, max_length = 128)]
    password: String,
    #[schema(min_length = 1, max_length = 100)]
    first_name: String,
    #[schema(min_length = 1, max_length = 100)]
    last_name: String,
    /// 6 to 15 digits, optionally after a `+` (spaces, dashes, dots and parentheses are ignored).
    #[schema(pattern = r"^\+?[ ().-]*([0-9][ ().-]*){6,15}$")]
    phone: Option<String>,
}

impl RegisterRequest {
    fn into_command(self) -> Result<NewCustomer, ApiError> {
        let name = |s: &str| BoundedText::parse(s, Customer::NAME_MAX_CHARS);
        let email = Email::parse(&self.email);
        let password = Password::parse(self.password);
        let first_name = name(&self.first_name);
        let last_name = name(&self.last_name);
        let phone = self.phone.as_deref().map(Phone::parse).transpose();
        match (email, password, first_name, last_name, phone) {
            (Ok(email), Ok(password), Ok(first_name), Ok(last_name), Ok(phone)) => {
                Ok(NewCustomer { email, password, first_name, last_name, phone })
            }
            (email, password, first_name, last_name, phone) => Err(ValidationErrors::collect([
                field_error("email", &email),
                field_error("password", &password),
                field_error("firstName", &first_name),
                field_error("lastName", &last_name),
                field_error("phone", &phone),
            ])
            .into()),
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LoginRequest {
    email: String,
    #[schema(format = Password)]
    password: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RefreshRequest {
    refresh_token: String,
}

/// A signed-in session.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuthResponse {
    customer: CustomerDto,
    /// Send as `Authorization: Bearer <accessToken>`.
    access_token: String,
    /// Single use: exchange it at /v1/auth/refresh for a new pair.
    refresh_token: String,
    /// Lifetime of the access token in seconds.
    expires_in: u64,
    /// Always `Bearer`.
    token_type: &'static str,
}

impl From<SessionTokens> for AuthResponse {
    fn from(s: SessionTokens) -> Self {
        Self {
            customer: CustomerDto::from(&s.customer),
            access_token: s.access.token.into_inner(),
            refresh_token: s.refresh.into_inner(),
            expires_in: s.access.expires_in_secs,
            token_type: "Bearer",
        }
    }
}

/// Responses carrying tokens must never be cached.
fn no_store(mut builder: HttpResponseBuilder) -> HttpResponseBuilder {
    builder.insert_header(CacheControl(vec![CacheDirective::NoStore]));
    builder
}

/// Creates a customer account and signs it in.
#[utoipa::path(
    tag = "auth",
    request_body = RegisterRequest,
    responses(
        (status = 201, body = AuthResponse, headers(("Location" = String, description = "/v1/customers/me"))),
        (status = 400, description = "Malformed JSON or unknown field", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "EMAIL_TAKEN", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "VALIDATION_FAILED, with per-field errors", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/auth/register")]
async fn register(state: Data<AppState>, body: JsonBody<RegisterRequest>) -> Result<HttpResponse, ApiError> {
    let command = body.into_inner().into_command()?;
    let session = state.identity.register(command).await?;
    tracing::info!(customer_id = %session.customer.id(), "customer registered");
    Ok(no_store(HttpResponse::Created())
        .insert_header((LOCATION, "/v1/customers/me"))
        .json(AuthResponse::from(session)))
}

/// Signs in with e-mail and password. Repeated failures are throttled per e-mail and per client.
#[utoipa::path(
    tag = "auth",
    request_body = LoginRequest,
    responses(
        (status = 200, body = AuthResponse),
        (status = 401, description = "INVALID_CREDENTIALS", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "TOO_MANY_REQUESTS, with Retry-After", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/auth/login")]
async fn login(
    state: Data<AppState>,
    client: ClientAddr,
    body: JsonBody<LoginRequest>,
) -> Result<HttpResponse, ApiError> {
    let LoginRequest { email, password } = body.into_inner();
    let session = state.identity.login(&email, &password, client.0).await?;
    tracing::info!(customer_id = %session.customer.id(), "customer signed in");
    Ok(no_store(HttpResponse::Ok()).json(AuthResponse::from(session)))
}

/// Exchanges a refresh token for a new pair. A token used twice revokes its whole family.
#[utoipa::path(
    tag = "auth",
    request_body = RefreshRequest,
    responses(
        (status = 200, body = AuthResponse),
        (status = 401, description = "INVALID_REFRESH_TOKEN or REFRESH_TOKEN_REUSED", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/auth/refresh")]
async fn refresh(state: Data<AppState>, body: JsonBody<RefreshRequest>) -> Result<HttpResponse, ApiError> {
    let session = state.identity.refresh(&body.into_inner().refresh_token).await?;
    Ok(no_store(HttpResponse::Ok()).json(AuthResponse::from(session)))
}

/// Ends the session of this refresh token (its whole family).
#[utoipa::path(
    tag = "auth",
    security(("bearer" = [])),
    request_body = RefreshRequest,
    responses(
        (status = 204, description = "Signed out"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/auth/logout")]
async fn logout(
    state: Data<AppState>,
    caller: Authenticated,
    body: JsonBody<RefreshRequest>,
) -> Result<HttpResponse, ApiError> {
    state.identity.logout(caller.0, &body.into_inner().refresh_token).await?;
    Ok(HttpResponse::NoContent().finish())
}
