//! The inbound HTTP adapter: actix-web routes, extractors, problem+json, metrics and OpenAPI.
//!
//! Handlers are thin: body → domain command → one use case → mapped error.

pub mod error;
pub mod extract;
pub mod idempotency;
pub mod metrics;
pub mod middleware;
pub mod openapi;
pub mod realtime;
pub mod routes;

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_cors::Cors;
use actix_web::body::MessageBody;
use actix_web::dev::{Server, ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::{from_fn, Condition, DefaultHeaders};
use actix_web::web::{self, Data};
use actix_web::{App, HttpResponse, HttpServer};
use ecom_carts::CartService;
use ecom_catalog::CatalogService;
use ecom_identity::IdentityService;
use ecom_inventory::InventoryService;
use ecom_kernel::idempotency::IdempotencyStore;
use ecom_kernel::jobs::JobAdmin;
use ecom_kernel::HealthCheck;
use ecom_payments::ports::WebhookVerifier;
use ecom_payments::PaymentService;
use utoipa::OpenApi as _;
use utoipa_actix_web::{scope, AppExt};
use utoipa_swagger_ui::SwaggerUi;

use crate::error::{ApiError, ProblemKind};
use crate::idempotency::IdempotencySettings;
use crate::metrics::HttpMetrics;
use crate::openapi::{ApiDoc, RouteTable};
use crate::realtime::{Hub, WsSettings};

/// HTTP-level settings.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// Largest accepted request body, in bytes.
    pub body_limit: usize,
    /// Origins allowed by CORS; `*` allows any; empty sends no CORS headers.
    pub cors_allowed_origins: Vec<String>,
    /// Take the client address from `Forwarded`/`X-Forwarded-For` (only behind a trusted proxy).
    pub trust_forwarded_for: bool,
    pub idempotency: IdempotencySettings,
    pub ws: WsSettings,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            body_limit: 64 * 1024,
            cors_allowed_origins: Vec::new(),
            trust_forwarded_for: false,
            idempotency: IdempotencySettings::default(),
            ws: WsSettings::default(),
        }
    }
}

/// Everything handlers need, built once by the composition root.
pub struct AppState {
    pub identity: Arc<IdentityService>,
    pub catalog: Arc<CatalogService>,
    pub inventory: Arc<InventoryService>,
    pub carts: Arc<CartService>,
    pub jobs: Arc<dyn JobAdmin>,
    pub payments: Arc<PaymentService>,
    pub orders: Arc<ecom_orders::OrderService>,
    pub notifications: Arc<ecom_notifications::NotificationService>,
    /// This instance's WebSocket sessions.
    pub realtime: Arc<Hub>,
    pub idempotency: Arc<dyn IdempotencyStore>,
    pub stripe_webhooks: Arc<dyn WebhookVerifier>,
    pub paypal_webhooks: Arc<dyn WebhookVerifier>,
    pub health: Vec<Arc<dyn HealthCheck>>,
    pub metrics: Arc<HttpMetrics>,
    pub settings: HttpSettings,
}

fn cors(settings: &HttpSettings) -> Cors {
    let mut cors = Cors::default()
        .allowed_methods(["GET", "POST", "PUT", "PATCH", "DELETE"])
        .allowed_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::ACCEPT,
            header::HeaderName::from_static("idempotency-key"),
            header::HeaderName::from_static("x-idempotency-key"),
            header::HeaderName::from_static("x-cart-token"),
            header::HeaderName::from_static("x-request-id"),
        ])
        .expose_headers([
            header::LOCATION,
            header::RETRY_AFTER,
            header::HeaderName::from_static("x-request-id"),
            header::HeaderName::from_static("idempotent-replayed"),
        ])
        .max_age(3600);
    for origin in &settings.cors_allowed_origins {
        cors = if origin == "*" { cors.allow_any_origin() } else { cors.allowed_origin(origin) };
    }
    cors
}

/// The OpenAPI document of every route, as served at `/openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let (_, mut api) = routed_app().split_for_parts();
    openapi::finish(&mut api);
    api
}

fn routed_app() -> utoipa_actix_web::UtoipaApp<
    impl ServiceFactory<ServiceRequest, Config = (), Response = ServiceResponse, Error = actix_web::Error, InitError = ()>,
> {
    App::new()
        .into_utoipa_app()
        .openapi(ApiDoc::openapi())
        .configure(routes::operations::configure)
        .service(scope::scope("/v1").configure(routes::configure_v1))
}

/// The application: routes, documentation, fallbacks and middleware.
pub fn build_app(
    state: Data<AppState>,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    let (app, mut api) = routed_app().split_for_parts();
    openapi::finish(&mut api);
    let route_table = Data::new(RouteTable::from_openapi(&api));
    let settings = state.settings.clone();
    app.app_data(state)
        .app_data(route_table)
        .app_data(web::PathConfig::default().error_handler(|err, req| {
            ApiError::new(missing_resource(req), format!("Invalid identifier in path: {err}.")).into()
        }))
        .app_data(web::QueryConfig::default().error_handler(|err, _| {
            ApiError::new(ProblemKind::InvalidQuery, format!("Invalid query string: {err}.")).into()
        }))
        .service(SwaggerUi::new("/docs/{_:.*}").url("/openapi.json", api))
        .route(
            "/docs",
            web::get().to(|| async {
                HttpResponse::PermanentRedirect().insert_header((header::LOCATION, "/docs/")).finish()
            }),
        )
        .default_service(web::to(middleware::fallback))
        .wrap(from_fn(idempotency::idempotent))
        .wrap(Condition::new(!settings.cors_allowed_origins.is_empty(), cors(&settings)))
        .wrap(DefaultHeaders::new().add((header::X_CONTENT_TYPE_OPTIONS, "nosniff")))
        .wrap(from_fn(middleware::request_context))
}

/// Binds the server on an already-open listener (port 0 in tests). Drains in-flight requests
/// for up to `shutdown_timeout` once `stop` resolves (the operator's SIGTERM or SIGINT: actix's
/// own handling would stop at once, dropping requests under way, on SIGINT).
pub fn serve(
    state: AppState,
    listener: TcpListener,
    workers: usize,
    shutdown_timeout: Duration,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<Server> {
    let state = Data::new(state);
    Ok(HttpServer::new(move || build_app(state.clone()))
        .workers(workers.max(1))
        .shutdown_signal(stop)
        .shutdown_timeout(shutdown_timeout.as_secs())
        .listen(listener)?
        .run())
}

/// What a path whose identifier cannot be one names as not found: the resource of the first
/// path parameter that is not a UUID (a product for `/v1/products/not-a-uuid`, as for an id no
/// product has), by its name or the segment before it; `NOT_FOUND` when none is known.
fn missing_resource(req: &actix_web::HttpRequest) -> ProblemKind {
    let Some(pattern) = req.match_pattern() else { return ProblemKind::ResourceNotFound };
    let mut before = "";
    for segment in pattern.split('/') {
        if let Some(name) = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            let value = req.match_info().get(name).unwrap_or_default();
            if uuid::Uuid::parse_str(value).is_err() {
                return resource_named(name, before);
            }
        }
        before = segment;
    }
    ProblemKind::ResourceNotFound
}

/// The not-found problem of the resource a path parameter names (also what the document lists).
pub(crate) fn resource_named(parameter: &str, segment_before: &str) -> ProblemKind {
    match (parameter, segment_before) {
        ("productId", _) | (_, "products") => ProblemKind::ProductNotFound,
        ("guestCartId", _) | (_, "carts") => ProblemKind::CartNotFound,
        (_, "orders") => ProblemKind::OrderNotFound,
        (_, "payments") => ProblemKind::PaymentNotFound,
        (_, "addresses") => ProblemKind::AddressNotFound,
        (_, "notifications") => ProblemKind::NotificationNotFound,
        (_, "customers") => ProblemKind::CustomerNotFound,
        _ => ProblemKind::ResourceNotFound,
    }
}
