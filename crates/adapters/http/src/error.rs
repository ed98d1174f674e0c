//! The one mapping from errors to RFC 9457 `application/problem+json`.

use std::fmt;
use std::time::Duration;

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use ecom_carts::CartError;
use ecom_catalog::CatalogError;
use ecom_identity::IdentityError;
use ecom_inventory::InventoryError;
use ecom_kernel::{FieldError, InfraError, ValidationErrors};
use ecom_notifications::NotificationError;
use ecom_orders::model::OrderRuleError;
use ecom_orders::OrderError;
use ecom_payments::model::PaymentRuleError;
use ecom_payments::ports::WebhookError;
use ecom_payments::PaymentError;
use serde::Serialize;
use utoipa::ToSchema;

pub const PROBLEM_JSON: &str = "application/problem+json";

/// Every problem this API can answer, each with one stable machine code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemKind {
    ValidationFailed,
    MalformedJson,
    UnknownField,
    InvalidQuery,
    UnsupportedMediaType,
    PayloadTooLarge,
    Unauthenticated,
    Forbidden,
    RouteNotFound,
    ResourceNotFound,
    MethodNotAllowed,
    EmailTaken,
    InvalidCredentials,
    TooManyRequests,
    InvalidRefreshToken,
    RefreshTokenReused,
    CustomerNotFound,
    AddressNotFound,
    AddressLimitReached,
    ProductNotFound,
    SkuTaken,
    StockBelowReserved,
    OutOfStock,
    ReservationNotFound,
    InvalidTransition,
    CartNotFound,
    TooManyLines,
    JobNotFound,
    PaymentNotFound,
    RefundExceedsPaid,
    AmountMismatch,
    PaymentDeclined,
    ProviderRejected,
    PaymentProviderUnavailable,
    ConcurrentModification,
    WebhookSignatureInvalid,
    MalformedWebhook,
    InvalidIdempotencyKey,
    IdempotencyKeyRequired,
    IdempotencyKeyReused,
    IdempotencyRequestInProgress,
    OrderNotFound,
    CartEmpty,
    ProductUnavailable,
    NotificationNotFound,
    WebSocketUpgradeRequired,
    DependencyUnavailable,
    ServiceUnavailable,
    /// A bare 400 from the framework (a refused CORS preflight, say).
    BadRequest,
    Internal,
}

impl ProblemKind {
    pub const ALL: [ProblemKind; 50] = [
        ProblemKind::ValidationFailed,
        ProblemKind::MalformedJson,
        ProblemKind::UnknownField,
        ProblemKind::InvalidQuery,
        ProblemKind::UnsupportedMediaType,
        ProblemKind::PayloadTooLarge,
        ProblemKind::Unauthenticated,
        ProblemKind::Forbidden,
        ProblemKind::RouteNotFound,
        ProblemKind::ResourceNotFound,
        ProblemKind::MethodNotAllowed,
        ProblemKind::EmailTaken,
        ProblemKind::InvalidCredentials,
        ProblemKind::TooManyRequests,
        ProblemKind::InvalidRefreshToken,
        ProblemKind::RefreshTokenReused,
        ProblemKind::CustomerNotFound,
        ProblemKind::AddressNotFound,
        ProblemKind::AddressLimitReached,
        ProblemKind::ProductNotFound,
        ProblemKind::SkuTaken,
        ProblemKind::StockBelowReserved,
        ProblemKind::OutOfStock,
        ProblemKind::ReservationNotFound,
        ProblemKind::InvalidTransition,
        ProblemKind::CartNotFound,
        ProblemKind::TooManyLines,
        ProblemKind::JobNotFound,
        ProblemKind::PaymentNotFound,
        ProblemKind::RefundExceedsPaid,
        ProblemKind::AmountMismatch,
        ProblemKind::PaymentDeclined,
        ProblemKind::ProviderRejected,
        ProblemKind::PaymentProviderUnavailable,
        ProblemKind::ConcurrentModification,
        ProblemKind::WebhookSignatureInvalid,
        ProblemKind::MalformedWebhook,
        ProblemKind::InvalidIdempotencyKey,
        ProblemKind::IdempotencyKeyRequired,
        ProblemKind::IdempotencyKeyReused,
        ProblemKind::IdempotencyRequestInProgress,
        ProblemKind::OrderNotFound,
        ProblemKind::CartEmpty,
        ProblemKind::ProductUnavailable,
        ProblemKind::NotificationNotFound,
        ProblemKind::WebSocketUpgradeRequired,
        ProblemKind::DependencyUnavailable,
        ProblemKind::ServiceUnavailable,
        ProblemKind::BadRequest,
        ProblemKind::Internal,
    ];

    /// Status, stable code and human title: the whole table in one place.
    pub fn spec(self) -> (StatusCode, &'static str, &'static str) {
        use ProblemKind as P;
        match self {
            P::ValidationFailed => (StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_FAILED", "Validation failed"),
            P::MalformedJson => (StatusCode::BAD_REQUEST, "MALFORMED_JSON", "Malformed JSON body"),
            P::UnknownField => (StatusCode::BAD_REQUEST, "UNKNOWN_FIELD", "Unknown field in body"),
            P::InvalidQuery => (StatusCode::BAD_REQUEST, "INVALID_QUERY", "Invalid query parameter"),
            P::UnsupportedMediaType => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "UNSUPPORTED_MEDIA_TYPE", "Unsupported media type")
            }
            P::PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE", "Payload too large"),
            P::Unauthenticated => (StatusCode::UNAUTHORIZED, "UNAUTHENTICATED", "Authentication required"),
            P::Forbidden => (StatusCode::FORBIDDEN, "FORBIDDEN", "Forbidden"),
            P::RouteNotFound => (StatusCode::NOT_FOUND, "ROUTE_NOT_FOUND", "No such route"),
            P::ResourceNotFound => (StatusCode::NOT_FOUND, "NOT_FOUND", "Not found"),
            P::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED", "Method not allowed"),
            P::EmailTaken => (StatusCode::CONFLICT, "EMAIL_TAKEN", "E-mail already registered"),
            P::InvalidCredentials => (StatusCode::UNAUTHORIZED, "INVALID_CREDENTIALS", "Invalid credentials"),
            P::TooManyRequests => (StatusCode::TOO_MANY_REQUESTS, "TOO_MANY_REQUESTS", "Too many requests"),
            P::InvalidRefreshToken => (StatusCode::UNAUTHORIZED, "INVALID_REFRESH_TOKEN", "Invalid refresh token"),
            P::RefreshTokenReused => (StatusCode::UNAUTHORIZED, "REFRESH_TOKEN_REUSED", "Refresh token reused"),
            P::CustomerNotFound => (StatusCode::NOT_FOUND, "CUSTOMER_NOT_FOUND", "Customer not found"),
            P::AddressNotFound => (StatusCode::NOT_FOUND, "ADDRESS_NOT_FOUND", "Address not found"),
            P::AddressLimitReached => (StatusCode::CONFLICT, "ADDRESS_LIMIT_REACHED", "Address limit reached"),
            P::ProductNotFound => (StatusCode::NOT_FOUND, "PRODUCT_NOT_FOUND", "Product not found"),
            P::SkuTaken => (StatusCode::CONFLICT, "SKU_TAKEN", "SKU already exists"),
            P::StockBelowReserved => {
                (StatusCode::CONFLICT, "STOCK_BELOW_RESERVED", "Stock would fall below what is reserved")
            }
            P::OutOfStock => (StatusCode::CONFLICT, "OUT_OF_STOCK", "Not enough stock"),
            P::ReservationNotFound => (StatusCode::NOT_FOUND, "RESERVATION_NOT_FOUND", "Reservation not found"),
            P::InvalidTransition => (StatusCode::CONFLICT, "INVALID_TRANSITION", "Invalid state transition"),
            P::CartNotFound => (StatusCode::NOT_FOUND, "CART_NOT_FOUND", "Cart not found"),
            P::TooManyLines => (StatusCode::UNPROCESSABLE_ENTITY, "TOO_MANY_LINES", "Too many products in the cart"),
            P::JobNotFound => (StatusCode::NOT_FOUND, "JOB_NOT_FOUND", "No such dead-lettered job"),
            P::PaymentNotFound => (StatusCode::NOT_FOUND, "PAYMENT_NOT_FOUND", "Payment not found"),
            P::RefundExceedsPaid => {
                (StatusCode::UNPROCESSABLE_ENTITY, "REFUND_EXCEEDS_PAID", "Refund exceeds what was paid")
            }
            P::AmountMismatch => {
                (StatusCode::UNPROCESSABLE_ENTITY, "AMOUNT_MISMATCH", "Amount does not match the payment")
            }
            P::PaymentDeclined => (StatusCode::PAYMENT_REQUIRED, "PAYMENT_DECLINED", "Payment declined"),
            P::ProviderRejected => {
                (StatusCode::UNPROCESSABLE_ENTITY, "PROVIDER_REJECTED", "The payment provider refused the request")
            }
            P::PaymentProviderUnavailable => {
                (StatusCode::SERVICE_UNAVAILABLE, "PAYMENT_PROVIDER_UNAVAILABLE", "The payment provider is unavailable")
            }
            P::ConcurrentModification => {
                (StatusCode::CONFLICT, "CONCURRENT_MODIFICATION", "Changed concurrently; retry")
            }
            P::WebhookSignatureInvalid => {
                (StatusCode::BAD_REQUEST, "WEBHOOK_SIGNATURE_INVALID", "Webhook signature rejected")
            }
            P::MalformedWebhook => (StatusCode::BAD_REQUEST, "MALFORMED_WEBHOOK", "Malformed webhook event"),
            P::InvalidIdempotencyKey => (StatusCode::BAD_REQUEST, "INVALID_IDEMPOTENCY_KEY", "Invalid Idempotency-Key"),
            P::IdempotencyKeyRequired => {
                (StatusCode::BAD_REQUEST, "IDEMPOTENCY_KEY_REQUIRED", "Idempotency-Key required")
            }
            P::IdempotencyKeyReused => {
                (StatusCode::UNPROCESSABLE_ENTITY, "IDEMPOTENCY_KEY_REUSED", "Idempotency-Key reused with another body")
            }
            P::IdempotencyRequestInProgress => (
                StatusCode::CONFLICT,
                "IDEMPOTENCY_REQUEST_IN_PROGRESS",
                "The first request with this key is still running",
            ),
            P::OrderNotFound => (StatusCode::NOT_FOUND, "ORDER_NOT_FOUND", "Order not found"),
            P::NotificationNotFound => (StatusCode::NOT_FOUND, "NOTIFICATION_NOT_FOUND", "Notification not found"),
            P::WebSocketUpgradeRequired => {
                (StatusCode::BAD_REQUEST, "WEBSOCKET_UPGRADE_REQUIRED", "A WebSocket upgrade request is required")
            }
            P::CartEmpty => (StatusCode::UNPROCESSABLE_ENTITY, "CART_EMPTY", "The cart is empty"),
            P::ProductUnavailable => {
                (StatusCode::UNPROCESSABLE_ENTITY, "PRODUCT_UNAVAILABLE", "A product is no longer available")
            }
            P::DependencyUnavailable => {
                (StatusCode::SERVICE_UNAVAILABLE, "DEPENDENCY_UNAVAILABLE", "A dependency is unavailable")
            }
            P::ServiceUnavailable => {
                (StatusCode::SERVICE_UNAVAILABLE, "SERVICE_UNAVAILABLE", "Service temporarily unavailable")
            }
            P::BadRequest => (StatusCode::BAD_REQUEST, "BAD_REQUEST", "Bad request"),
            P::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL_ERROR", "Internal server error"),
        }
    }

    pub fn status(self) -> StatusCode {
        self.spec().0
    }

    pub fn code(self) -> &'static str {
        self.spec().1
    }

    /// The problem for a bare status produced outside our handlers (e.g. by the framework).
    pub fn for_status(status: StatusCode) -> ProblemKind {
        match status {
            StatusCode::BAD_REQUEST => ProblemKind::BadRequest,
            StatusCode::UNAUTHORIZED => ProblemKind::Unauthenticated,
            StatusCode::FORBIDDEN => ProblemKind::Forbidden,
            StatusCode::NOT_FOUND => ProblemKind::RouteNotFound,
            StatusCode::METHOD_NOT_ALLOWED => ProblemKind::MethodNotAllowed,
            StatusCode::PAYLOAD_TOO_LARGE => ProblemKind::PayloadTooLarge,
            StatusCode::UNSUPPORTED_MEDIA_TYPE => ProblemKind::UnsupportedMediaType,
            StatusCode::UNPROCESSABLE_ENTITY => ProblemKind::ValidationFailed,
            StatusCode::TOO_MANY_REQUESTS => ProblemKind::TooManyRequests,
            StatusCode::SERVICE_UNAVAILABLE => ProblemKind::ServiceUnavailable,
            _ => ProblemKind::Internal,
        }
    }
}

/// The RFC 9457 body. `instance` is filled in by the request middleware, which knows the path.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Problem {
    /// A URI naming the problem type.
    #[serde(rename = "type")]
    pub type_uri: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Stable machine-readable code, e.g. `EMAIL_TAKEN`.
    pub code: String,
    /// The request path this problem occurred on.
    pub instance: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<ProblemFieldError>>,
    /// Per-dependency status, on readiness failures only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checks: Option<serde_json::Value>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProblemFieldError {
    pub field: String,
    pub message: String,
}

/// An error on its way to becoming a problem+json response (boxed: errors travel in `Result`s).
pub struct ApiError(Box<Details>);

struct Details {
    kind: ProblemKind,
    detail: String,
    errors: Option<Vec<FieldError>>,
    checks: Option<serde_json::Value>,
    retry_after: Option<u64>,
    allow: Option<String>,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl ApiError {
    pub fn new(kind: ProblemKind, detail: impl Into<String>) -> Self {
        Self(Box::new(Details {
            kind,
            detail: detail.into(),
            errors: None,
            checks: None,
            retry_after: None,
            allow: None,
            source: None,
        }))
    }

    pub fn kind(&self) -> ProblemKind {
        self.0.kind
    }

    pub fn validation(errors: ValidationErrors) -> Self {
        let mut err = Self::new(ProblemKind::ValidationFailed, "One or more fields are invalid.");
        err.0.errors = Some(errors.errors().to_vec());
        err
    }

    pub fn field(kind: ProblemKind, field: impl Into<String>, message: impl Into<String>) -> Self {
        let message = message.into();
        let mut err = Self::new(kind, message.clone());
        err.0.errors = Some(vec![FieldError { field: field.into(), message }]);
        err
    }

    pub fn with_retry_after(mut self, retry_after: Duration) -> Self {
        // Round up: a client retrying after the advertised time must not be refused again.
        let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
        self.0.retry_after = Some(secs.max(1));
        self
    }

    pub fn with_allow(mut self, methods: String) -> Self {
        self.0.allow = Some(methods);
        self
    }

    pub fn with_checks(mut self, checks: serde_json::Value) -> Self {
        self.0.checks = Some(checks);
        self
    }

    pub fn from_infra(err: InfraError) -> Self {
        let kind = if err.is_unavailable() { ProblemKind::ServiceUnavailable } else { ProblemKind::Internal };
        let mut api = Self::new(kind, "");
        if kind == ProblemKind::ServiceUnavailable {
            api.0.retry_after = Some(1);
        }
        api.0.source = Some(Box::new(err));
        api
    }

    fn problem(&self) -> Problem {
        let (status, code, title) = self.0.kind.spec();
        // 5xx bodies reveal nothing of the cause; the log line has it.
        let detail = if status.is_server_error() && self.0.detail.is_empty() {
            match self.0.kind {
                ProblemKind::ServiceUnavailable => "A dependency is temporarily unavailable; retry shortly.".to_owned(),
                _ => "An unexpected error occurred.".to_owned(),
            }
        } else {
            self.0.detail.clone()
        };
        Problem {
            type_uri: type_uri(code),
            title: title.to_owned(),
            status: status.as_u16(),
            detail,
            code: code.to_owned(),
            instance: String::new(),
            errors: self.0.errors.as_ref().map(|errors| {
                errors
                    .iter()
                    .map(|e| ProblemFieldError { field: e.field.clone(), message: e.message.clone() })
                    .collect()
            }),
            checks: self.0.checks.clone(),
        }
    }
}

pub fn type_uri(code: &str) -> String {
    format!("urn:ecom:problem:{}", code.to_ascii_lowercase().replace('_', "-"))
}

impl fmt::Debug for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiError").field("code", &self.0.kind.code()).field("detail", &self.0.detail).finish()
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.0.kind.code(), self.0.detail)
    }
}

/// The full cause chain, for the log line of a 5xx.
fn cause_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut chain = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        chain.push_str(": ");
        chain.push_str(&cause.to_string());
        source = cause.source();
    }
    chain
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.0.kind.status()
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        if status.is_server_error() {
            let cause = self.0.source.as_deref().map(|e| cause_chain(e)).unwrap_or_default();
            tracing::error!(code = self.0.kind.code(), cause = %cause, "request failed");
        }
        let mut res = HttpResponse::build(status);
        res.content_type(PROBLEM_JSON);
        if let Some(secs) = self.0.retry_after {
            res.insert_header((header::RETRY_AFTER, secs.to_string()));
        }
        if let Some(allow) = &self.0.allow {
            if let Ok(value) = HeaderValue::from_str(allow) {
                res.insert_header((header::ALLOW, value));
            }
        }
        if self.0.kind == ProblemKind::Unauthenticated {
            res.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
        }
        res.body(serde_json::to_vec(&self.problem()).unwrap_or_default())
    }
}

impl From<InfraError> for ApiError {
    fn from(err: InfraError) -> Self {
        ApiError::from_infra(err)
    }
}

impl From<ValidationErrors> for ApiError {
    fn from(errors: ValidationErrors) -> Self {
        ApiError::validation(errors)
    }
}

impl From<IdentityError> for ApiError {
    fn from(err: IdentityError) -> Self {
        use ProblemKind as P;
        let detail = err.to_string();
        match err {
            IdentityError::EmailTaken => ApiError::field(P::EmailTaken, "email", detail),
            IdentityError::InvalidCredentials => ApiError::new(P::InvalidCredentials, detail),
            IdentityError::TooManyAttempts { retry_after } => {
                ApiError::new(P::TooManyRequests, detail).with_retry_after(retry_after)
            }
            IdentityError::InvalidRefreshToken => ApiError::new(P::InvalidRefreshToken, detail),
            IdentityError::RefreshTokenReused => ApiError::new(P::RefreshTokenReused, detail),
            IdentityError::Unauthenticated => ApiError::new(P::Unauthenticated, detail),
            IdentityError::Forbidden { .. } => ApiError::new(P::Forbidden, detail),
            IdentityError::CustomerNotFound => ApiError::new(P::CustomerNotFound, detail),
            IdentityError::AddressNotFound => ApiError::new(P::AddressNotFound, detail),
            IdentityError::AddressLimitReached { .. } => ApiError::new(P::AddressLimitReached, detail),
            IdentityError::ConcurrentModification => ApiError::new(P::ConcurrentModification, detail),
            IdentityError::Infrastructure(e) => ApiError::from_infra(e),
        }
    }
}

impl From<CatalogError> for ApiError {
    fn from(err: CatalogError) -> Self {
        use ProblemKind as P;
        let detail = err.to_string();
        match err {
            CatalogError::ProductNotFound(_) => ApiError::new(P::ProductNotFound, detail),
            CatalogError::SkuTaken(_) => ApiError::field(P::SkuTaken, "sku", detail),
            CatalogError::NonPositivePrice | CatalogError::PriceTooHigh { .. } => {
                ApiError::field(P::ValidationFailed, "price.amount", detail)
            }
            CatalogError::WrongCurrency { .. } => ApiError::field(P::ValidationFailed, "price.currency", detail),
            CatalogError::InvalidPriceRange => ApiError::field(P::ValidationFailed, "minPrice", detail),
            CatalogError::CursorOfAnotherSort => ApiError::field(P::ValidationFailed, "cursor", detail),
            CatalogError::Conflict => ApiError::new(P::ConcurrentModification, detail),
            CatalogError::Infrastructure(e) => ApiError::from_infra(e),
        }
    }
}

impl From<InventoryError> for ApiError {
    fn from(err: InventoryError) -> Self {
        use ProblemKind as P;
        let detail = err.to_string();
        match err {
            InventoryError::ProductNotFound(_) => ApiError::new(P::ProductNotFound, detail),
            InventoryError::BelowReserved { .. } => ApiError::new(P::StockBelowReserved, detail),
            InventoryError::TooMany { .. } => ApiError::field(P::ValidationFailed, "quantity", detail),
            InventoryError::OutOfStock { .. } => ApiError::new(P::OutOfStock, detail),
            InventoryError::InvalidLines => ApiError::new(P::ValidationFailed, detail),
            InventoryError::ReservationNotFound(_) => ApiError::new(P::ReservationNotFound, detail),
            InventoryError::InvalidTransition { .. } => ApiError::new(P::InvalidTransition, detail),
            InventoryError::Infrastructure(e) => ApiError::from_infra(e),
        }
    }
}

impl From<CartError> for ApiError {
    fn from(err: CartError) -> Self {
        use ProblemKind as P;
        let detail = err.to_string();
        match err {
            CartError::CartNotFound => ApiError::new(P::CartNotFound, detail),
            CartError::ProductNotFound(_) => ApiError::new(P::ProductNotFound, detail),
            CartError::OutOfStock { .. } => ApiError::field(P::OutOfStock, "quantity", detail),
            CartError::QuantityOutOfRange { .. } | CartError::LineQuantityLimit { .. } => {
                ApiError::field(P::ValidationFailed, "quantity", detail)
            }
            CartError::TooManyLines { .. } => ApiError::field(P::TooManyLines, "productId", detail),
            CartError::CustomerRequired => ApiError::new(P::Unauthenticated, detail),
            CartError::Infrastructure(e) => ApiError::from_infra(e),
        }
    }
}

impl From<PaymentError> for ApiError {
    fn from(err: PaymentError) -> Self {
        use ProblemKind as P;
        let detail = err.to_string();
        match err {
            PaymentError::NotFound(_) | PaymentError::NoCashPayment(_) => ApiError::new(P::PaymentNotFound, detail),
            PaymentError::Rule(PaymentRuleError::OverRefund { .. }) => {
                ApiError::field(P::RefundExceedsPaid, "amount", detail)
            }
            PaymentError::Rule(PaymentRuleError::InvalidRefundAmount) => {
                ApiError::field(P::ValidationFailed, "amount", detail)
            }
            PaymentError::Rule(PaymentRuleError::AmountMismatch { .. }) => {
                ApiError::field(P::AmountMismatch, "amountCollected", detail)
            }
            PaymentError::Rule(PaymentRuleError::InvalidTransition { .. }) => {
                ApiError::new(P::InvalidTransition, detail)
            }
            PaymentError::Declined(_) => ApiError::new(P::PaymentDeclined, detail),
            PaymentError::ProviderRejected(_) | PaymentError::RefundRefused { .. } => {
                ApiError::new(P::ProviderRejected, detail)
            }
            PaymentError::ProviderUnavailable(_) | PaymentError::ProviderNotConfigured(_) => {
                ApiError::new(P::PaymentProviderUnavailable, detail).with_retry_after(Duration::from_secs(5))
            }
            PaymentError::Conflict => ApiError::new(P::ConcurrentModification, detail),
            PaymentError::Infrastructure(e) => ApiError::from_infra(e),
        }
    }
}

impl From<NotificationError> for ApiError {
    fn from(err: NotificationError) -> Self {
        match err {
            NotificationError::NotFound(_) => ApiError::new(ProblemKind::NotificationNotFound, err.to_string()),
            NotificationError::Infrastructure(e) => ApiError::from_infra(e),
        }
    }
}

impl From<OrderError> for ApiError {
    fn from(err: OrderError) -> Self {
        use ProblemKind as P;
        let detail = err.to_string();
        match err {
            OrderError::NotFound(_) => ApiError::new(P::OrderNotFound, detail),
            OrderError::CartNotFound => ApiError::field(P::CartNotFound, "cartId", detail),
            OrderError::CartEmpty => ApiError::field(P::CartEmpty, "cartId", detail),
            OrderError::ProductUnavailable(_) => ApiError::field(P::ProductUnavailable, "cartId", detail),
            OrderError::AddressNotFound => ApiError::field(P::AddressNotFound, "shippingAddressId", detail),
            OrderError::AddressRequired => ApiError::field(P::ValidationFailed, "shippingAddressId", detail),
            OrderError::PaymentTokenRequired | OrderError::RawCardNumber | OrderError::MalformedPaymentToken => {
                ApiError::field(P::ValidationFailed, "paymentToken", detail)
            }
            OrderError::PaymentMethodNotAccepted(_) => ApiError::field(P::ValidationFailed, "paymentMethod", detail),
            OrderError::CursorOfAnotherList => ApiError::field(P::ValidationFailed, "cursor", detail),
            OrderError::Rule(OrderRuleError::InvalidTransition { .. })
            | OrderError::ConfirmationExpired
            | OrderError::Cancelled(_) => ApiError::new(P::InvalidTransition, detail),
            OrderError::Rule(_) => ApiError::new(P::ValidationFailed, detail),
            OrderError::Conflict
            | OrderError::NotReadyYet
            | OrderError::NotFinalizedYet
            | OrderError::PaymentNotSettledYet => ApiError::new(P::ConcurrentModification, detail),
            OrderError::Infrastructure(e) => ApiError::from_infra(e),
        }
    }
}

impl From<WebhookError> for ApiError {
    fn from(err: WebhookError) -> Self {
        use ProblemKind as P;
        let detail = err.to_string();
        match err {
            WebhookError::BadSignature(_) => ApiError::new(P::WebhookSignatureInvalid, detail),
            WebhookError::Malformed(_) => ApiError::new(P::MalformedWebhook, detail),
            WebhookError::Infrastructure(e) => ApiError::from_infra(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use actix_web::body::to_bytes;

    use super::*;

    #[test]
    fn every_problem_code_is_unique_and_screaming_snake_case() {
        let mut seen = HashSet::new();
        for kind in ProblemKind::ALL {
            let code = kind.code();
            assert!(seen.insert(code), "duplicate code {code}");
            assert!(code.chars().all(|c| c.is_ascii_uppercase() || c == '_'), "{code}");
            assert!(kind.status().is_client_error() || kind.status().is_server_error());
        }
    }

    #[actix_web::test]
    async fn a_problem_response_has_the_rfc_9457_shape() {
        let err = ApiError::validation(ValidationErrors::single("email", "is not a valid e-mail address"));
        let res = err.error_response();
        assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(res.headers().get(header::CONTENT_TYPE).unwrap(), PROBLEM_JSON);
        let body: serde_json::Value = serde_json::from_slice(&to_bytes(res.into_body()).await.unwrap()).unwrap();
        assert_eq!(body["code"], "VALIDATION_FAILED");
        assert_eq!(body["status"], 422);
        assert_eq!(body["type"], "urn:ecom:problem:validation-failed");
        assert_eq!(body["errors"][0]["field"], "email");
    }

    #[actix_web::test]
    async fn server_errors_reveal_nothing_of_their_cause() {
        let err = ApiError::from(InfraError::unexpected("password=hunter2 in a connection string"));
        let res = err.error_response();
        assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = to_bytes(res.into_body()).await.unwrap();
        assert!(!String::from_utf8_lossy(&body).contains("hunter2"));
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        let err = ApiError::new(ProblemKind::TooManyRequests, "").with_retry_after(Duration::from_millis(1500));
        assert_eq!(err.0.retry_after, Some(2));
        let err = ApiError::new(ProblemKind::TooManyRequests, "").with_retry_after(Duration::from_millis(10));
        assert_eq!(err.0.retry_after, Some(1));
    }

    #[test]
    fn identity_errors_map_to_their_documented_statuses() {
        let cases = [
            (IdentityError::EmailTaken, 409, "EMAIL_TAKEN"),
            (IdentityError::InvalidCredentials, 401, "INVALID_CREDENTIALS"),
            (IdentityError::RefreshTokenReused, 401, "REFRESH_TOKEN_REUSED"),
            (IdentityError::Forbidden { required: "ADMIN" }, 403, "FORBIDDEN"),
            (IdentityError::AddressNotFound, 404, "ADDRESS_NOT_FOUND"),
            (IdentityError::ConcurrentModification, 409, "CONCURRENT_MODIFICATION"),
            (IdentityError::Infrastructure(InfraError::unavailable("redis")), 503, "SERVICE_UNAVAILABLE"),
        ];
        for (err, status, code) in cases {
            let api = ApiError::from(err);
            assert_eq!((api.status_code().as_u16(), api.kind().code()), (status, code));
        }
    }
}
