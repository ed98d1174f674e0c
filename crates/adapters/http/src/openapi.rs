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
