//! The OpenAPI document (generated from the handlers) and the route table derived from it.

use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::OpenApi as OpenApiDoc;
use utoipa::{Modify, OpenApi};

use crate::error::{Problem, ProblemFieldError};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "ecom API",
        version = "1.0.0",
        description = "E-commerce backend: accounts, catalog, carts, checkout, payments, notifications. \
                       Errors are RFC 9457 problem+json with a stable `code`."
    ),
    components(schemas(Problem, ProblemFieldError)),
    modifiers(&BearerAuth),
    tags(
        (name = "operations", description = "Health, readiness and metrics"),
        (name = "auth", description = "Registration, login and token rotation"),
        (name = "customers", description = "The signed-in customer's profile and addresses"),
        (name = "catalog", description = "Products: listing, search, detail; admin create, update, archive"),
        (name = "inventory", description = "Stock levels, adjustments, low stock"),
        (name = "carts", description = "Guest and customer carts, merge on sign-in"),
        (name = "orders", description = "Checkout, orders, cancellation, the admin lifecycle"),
        (name = "payments", description = "Payments, refunds, cash on delivery, provider webhooks"),
        (name = "admin", description = "Back-office endpoints (ADMIN role)"),
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut OpenApiDoc) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme("bearer", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
    }
}

/// Documents the `Idempotency-Key` header on every POST and PATCH (the middleware serves them
/// all), required where the middleware requires it.
pub fn document_idempotency(api: &mut OpenApiDoc) {
    use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
    use utoipa::openapi::{ObjectBuilder, Required, Type};
    for (path, item) in api.paths.paths.iter_mut() {
        for (method, op) in [("POST", item.post.as_mut()), ("PATCH", item.patch.as_mut())] {
            let Some(op) = op else { continue };
            let required = crate::idempotency::is_required(method, path);
            let param: Parameter = ParameterBuilder::new()
                .name("Idempotency-Key")
                .parameter_in(ParameterIn::Header)
                .required(if required { Required::True } else { Required::False })
                .description(Some(
                    "1-255 visible ASCII characters (or an RFC 8941 quoted string). The first response is \
                     replayed to retries with the same body for 24 h (`Idempotent-Replayed: true`); \
                     another body gives 422 IDEMPOTENCY_KEY_REUSED, a retry while the first runs 409 \
                     IDEMPOTENCY_REQUEST_IN_PROGRESS. Scoped to the caller. `X-Idempotency-Key` is \
                     accepted too.",
                ))
                .schema(Some(ObjectBuilder::new().schema_type(Type::String).min_length(Some(1)).max_length(Some(255))))
                .build();
            op.parameters.get_or_insert_with(Vec::new).push(param);
        }
    }
}

/// The documented routes: used to tell 405 (path exists, other method) from 404.
#[derive(Debug, Clone)]
pub struct RouteTable {
    routes: Vec<(Vec<Segment>, Vec<&'static str>)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param,
}

fn segments(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter(|s| !s.is_empty())
}

impl RouteTable {
    pub fn from_openapi(api: &OpenApiDoc) -> Self {
        let routes = api
            .paths
            .paths
            .iter()
            .map(|(path, item)| {
                let pattern = segments(path)
                    .map(|s| if s.starts_with('{') { Segment::Param } else { Segment::Literal(s.to_owned()) })
                    .collect();
                let mut methods = Vec::new();
                for (name, op) in [
                    ("GET", &item.get),
                    ("POST", &item.post),
                    ("PUT", &item.put),
                    ("PATCH", &item.patch),
                    ("DELETE", &item.delete),
                ] {
                    if op.is_some() {
                        methods.push(name);
                    }
                }
                (pattern, methods)
            })
            .collect();
        Self { routes }
    }

    /// The methods documented for `path`, joined for an `Allow` header; `None` if no route matches.
    pub fn allowed_methods(&self, path: &str) -> Option<String> {
        let parts: Vec<&str> = segments(path).collect();
        let mut allowed: Vec<&str> = self
            .routes
            .iter()
            .filter(|(pattern, _)| {
                pattern.len() == parts.len()
                    && pattern.iter().zip(&parts).all(|(seg, part)| match seg {
                        Segment::Param => true,
                        Segment::Literal(lit) => lit == part,
                    })
            })
            .flat_map(|(_, methods)| methods.iter().copied())
            .collect();
        if allowed.is_empty() {
            return None;
        }
        allowed.sort_unstable();
        allowed.dedup();
        Some(allowed.join(", "))
    }

    pub fn len(&self) -> usize {
        self.routes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }
}
