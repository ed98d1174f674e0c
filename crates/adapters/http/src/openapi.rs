//! The OpenAPI document (generated from the handlers) and the route table derived from it.

use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::OpenApi as OpenApiDoc;
use utoipa::{Modify, OpenApi};

use crate::error::{Problem, ProblemFieldError, PROBLEM_JSON};

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
        if crate::idempotency::never_deduplicated(path) {
            continue;
        }
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
                .schema(Some(
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .min_length(Some(1))
                        .max_length(Some(255))
                        .pattern(Some("^[!-~]+$")),
                ))
                .build();
            op.parameters.get_or_insert_with(Vec::new).push(param);
        }
    }
}

/// The finishing touches of the served document: the `Idempotency-Key` header on every POST and
/// PATCH, and the problems every operation can answer through the shared machinery.
pub fn finish(api: &mut OpenApiDoc) {
    document_idempotency(api);
    document_common_problems(api);
}

/// The scope an operation's `bearer` requirement names when only admins may call it.
pub const ADMIN_SCOPE: &str = "ADMIN";

/// What the security requirements of an operation ask for: (any bearer token, the ADMIN role).
fn bearer_requirements(security: Option<&Vec<utoipa::openapi::security::SecurityRequirement>>) -> (bool, bool) {
    let mut bearer = false;
    let mut admin = false;
    for requirement in security.into_iter().flatten() {
        // The requirement's map is private; its serialized form is `{"bearer": ["ADMIN"]}`.
        let Ok(serde_json::Value::Object(schemes)) = serde_json::to_value(requirement) else { continue };
        if let Some(scopes) = schemes.get("bearer") {
            bearer = true;
            admin |= scopes.as_array().is_some_and(|s| s.iter().any(|scope| scope == ADMIN_SCOPE));
        }
    }
    (bearer, admin)
}

/// Documents, on every operation, the problems it can answer whatever its handler does (each
/// added only where the operation does not document that status already; a documented one gets
/// the missing codes appended to its description):
///
/// - a typed JSON body ([`crate::extract::JsonBody`]): 400 `MALFORMED_JSON`/`UNKNOWN_FIELD`,
///   413, 415, 422 `VALIDATION_FAILED`; a raw body (webhooks): 413;
/// - POST and PATCH (the idempotency middleware): 400 `INVALID_IDEMPOTENCY_KEY`, 409
///   `IDEMPOTENCY_REQUEST_IN_PROGRESS`, 422 `IDEMPOTENCY_KEY_REUSED`;
/// - a path parameter: 404 with its resource's code (an identifier that does not parse is a
///   resource that does not exist: `PRODUCT_NOT_FOUND` for a product id), else `NOT_FOUND`;
/// - query parameters: 400 `INVALID_QUERY`; paging (`limit`, `cursor`): 422 `VALIDATION_FAILED`;
/// - a bearer token (even an optional one: an invalid token is refused): 401 `UNAUTHENTICATED`;
///   the `ADMIN` scope: 403 `FORBIDDEN`;
/// - everything under `/v1`: 503 `SERVICE_UNAVAILABLE` (PostgreSQL or Redis down, with
///   `Retry-After`).
pub fn document_common_problems(api: &mut OpenApiDoc) {
    use utoipa::openapi::path::ParameterIn;
    use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};

    for (path, item) in api.paths.paths.iter_mut() {
        let versioned = path.starts_with("/v1/");
        for (method, op) in [
            ("GET", item.get.as_mut()),
            ("POST", item.post.as_mut()),
            ("PUT", item.put.as_mut()),
            ("PATCH", item.patch.as_mut()),
            ("DELETE", item.delete.as_mut()),
        ] {
            let Some(op) = op else { continue };
            let params = op.parameters.as_deref().unwrap_or_default();
            let has_in = |place: ParameterIn| params.iter().any(|p| p.parameter_in == place);
            let paged = params.iter().any(|p| p.parameter_in == ParameterIn::Query && p.name == "limit");
            let (bearer, admin) = bearer_requirements(op.security.as_ref());
            let body = op.request_body.as_ref().map(|body| {
                // A typed body is a `$ref` to its schema; a raw one (webhooks) is a plain string.
                body.content.values().any(|content| matches!(content.schema, Some(RefOr::Ref(_))))
            });

            let mut problems: Vec<(u16, &str)> = Vec::new();
            match body {
                Some(true) => problems.extend([
                    (400, "MALFORMED_JSON"),
                    (400, "UNKNOWN_FIELD"),
                    (413, "PAYLOAD_TOO_LARGE"),
                    (415, "UNSUPPORTED_MEDIA_TYPE"),
                    (422, "VALIDATION_FAILED"),
                ]),
                Some(false) => problems.push((413, "PAYLOAD_TOO_LARGE")),
                None => {}
            }
            if (method == "POST" || method == "PATCH") && !crate::idempotency::never_deduplicated(path) {
                problems.extend([
                    (400, "INVALID_IDEMPOTENCY_KEY"),
                    (409, "IDEMPOTENCY_REQUEST_IN_PROGRESS"),
                    (422, "IDEMPOTENCY_KEY_REUSED"),
                ]);
            }
            if has_in(ParameterIn::Path) {
                // Each identifier's own resource: one that does not parse names it as not found.
                let segments: Vec<&str> = path.split('/').collect();
                for (i, segment) in segments.iter().enumerate().skip(1) {
                    if let Some(name) = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                        problems.push((404, crate::resource_named(name, segments[i - 1]).code()));
                    }
                }
            }
            if has_in(ParameterIn::Query) {
                problems.push((400, "INVALID_QUERY"));
            }
            if paged {
                problems.push((422, "VALIDATION_FAILED"));
            }
            if bearer {
                problems.push((401, "UNAUTHENTICATED"));
            }
            if admin {
                problems.push((403, "FORBIDDEN"));
            }
            if versioned {
                problems.push((503, "SERVICE_UNAVAILABLE"));
            }

            for (status, code) in problems {
                match op.responses.responses.entry(status.to_string()) {
                    std::collections::btree_map::Entry::Vacant(entry) => {
                        let content = ContentBuilder::new().schema(Some(Ref::from_schema_name("Problem"))).build();
                        let response = ResponseBuilder::new().description(code).content(PROBLEM_JSON, content).build();
                        entry.insert(RefOr::T(response));
                    }
                    std::collections::btree_map::Entry::Occupied(mut entry) => {
                        if let RefOr::T(response) = entry.get_mut() {
                            let mentioned = response
                                .description
                                .split(|c: char| !(c.is_ascii_uppercase() || c == '_'))
                                .any(|word| word == code);
                            if !mentioned {
                                if !response.description.is_empty() {
                                    response.description.push_str(", ");
                                }
                                response.description.push_str(code);
                            }
                        }
                    }
                }
            }
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

    /// The methods documented for `path`, joined for an `Allow` header; `None` if no route matches
    /// (a path with an empty segment, a trailing slash included, matches none).
    pub fn allowed_methods(&self, path: &str) -> Option<String> {
        if path.split('/').skip(1).any(str::is_empty) {
            return None;
        }
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

#[cfg(test)]
mod tests {
    use utoipa::openapi::path::Operation;
    use utoipa::openapi::RefOr;

    use super::*;

    fn operation<'a>(api: &'a OpenApiDoc, path: &str, method: &str) -> &'a Operation {
        let item = &api.paths.paths[path];
        match method {
            "GET" => item.get.as_ref(),
            "POST" => item.post.as_ref(),
            "PATCH" => item.patch.as_ref(),
            "DELETE" => item.delete.as_ref(),
            _ => None,
        }
        .unwrap_or_else(|| panic!("{method} {path}"))
    }

    fn statuses(op: &Operation) -> Vec<&str> {
        op.responses.responses.keys().map(String::as_str).collect()
    }

    fn description<'a>(op: &'a Operation, status: &str) -> &'a str {
        match &op.responses.responses[status] {
            RefOr::T(response) => &response.description,
            RefOr::Ref(_) => "",
        }
    }

    /// Found by `just fuzz`: statuses every route can answer through the extractors and the
    /// middleware were missing from the document.
    #[test]
    fn operations_document_the_problems_of_the_shared_machinery() {
        let api = crate::openapi();
        // An admin write with a path parameter and a JSON body: everything.
        let adjust = operation(&api, "/v1/inventory/products/{productId}/adjust", "POST");
        assert_eq!(statuses(adjust), ["200", "400", "401", "403", "404", "409", "413", "415", "422", "503"]);
        for code in ["MALFORMED_JSON", "UNKNOWN_FIELD", "INVALID_IDEMPOTENCY_KEY"] {
            assert!(description(adjust, "400").contains(code), "{}", description(adjust, "400"));
        }
        // A public read: no 401 or 403.
        assert_eq!(statuses(operation(&api, "/v1/products/{id}", "GET")), ["200", "404", "503"]);
        // A paged list: a query that does not parse (400) or is out of range (422).
        assert_eq!(statuses(operation(&api, "/v1/orders", "GET")), ["200", "400", "401", "422", "503"]);
        // A customer's route: 401 but never 403.
        assert_eq!(statuses(operation(&api, "/v1/customers/me", "GET")), ["200", "401", "503"]);
        // A raw body (webhooks): too large is possible, the wrong content type is not refused.
        let stripe = operation(&api, "/v1/payments/webhooks/stripe", "POST");
        assert!(statuses(stripe).contains(&"413") && !statuses(stripe).contains(&"415"));
        // An identifier that does not parse is its resource's not-found, once per code (codes
        // are added by word), for each identifier of the path.
        assert_eq!(description(operation(&api, "/v1/products/{id}", "DELETE"), "404"), "PRODUCT_NOT_FOUND");
        let item = description(operation(&api, "/v1/carts/{id}/items/{productId}", "DELETE"), "404");
        assert_eq!(item.matches("CART_NOT_FOUND").count(), 1, "{item}");
        assert_eq!(item.matches("PRODUCT_NOT_FOUND").count(), 1, "{item}");
        assert_eq!(
            description(operation(&api, "/v1/admin/jobs/canary/{id}", "GET"), "404"),
            "NOT_FOUND: not a canary id"
        );
        // Operations outside /v1 are left as their handlers document them.
        assert_eq!(statuses(operation(&api, "/health/live", "GET")), ["200"]);
    }

    #[test]
    fn the_documented_price_limit_is_the_catalogs() {
        let api = serde_json::to_value(crate::openapi()).unwrap();
        let max = ecom_catalog::model::Product::MAX_PRICE.to_string();
        for schema in ["CreateProductRequest", "UpdateProductRequest"] {
            // The description sits next to the `$ref` (or around it when the price is optional).
            let price = api["components"]["schemas"][schema]["properties"]["price"].to_string();
            assert!(price.contains(&max), "{schema}: {price}");
        }
    }
}
