//! Idempotent requests (`Idempotency-Key`): the first request with a key runs under a lease;
//! its response is stored and replayed byte for byte to retries with the same body, scoped to
//! the caller. A retry with another body is 422, one that arrives while the first still runs 409.
//!
//! Not stored, so that the client can fix and retry: validation, authentication and
//! authorization failures, 409 CONCURRENT_MODIFICATION (try again), and every 5xx (the lease is
//! freed at once). A crash leaves the lease
//! to expire. Requests without a caller (no bearer token, no cart token) are not deduplicated:
//! nothing tells two anonymous clients apart, and their answers (tokens) must never be replayed
//! to somebody else.

use std::time::Duration;

use actix_web::body::{to_bytes, BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::web::Data;
use actix_web::{Error, HttpMessage, HttpResponse, ResponseError};
use ecom_kernel::idempotency::{Begin, StoredResponse};
use sha2::{Digest, Sha256};

use crate::error::{ApiError, ProblemKind};
use crate::extract::{body_limit, read_body};
use crate::AppState;

pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
pub const LEGACY_IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("x-idempotency-key");
pub const IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// Routes that refuse to run without a key (method, route pattern).
const REQUIRED: &[(&str, &str)] = &[("POST", "/v1/orders/checkout")];

/// Whether `method` on the route `pattern` refuses to run without a key.
pub fn is_required(method: &str, pattern: &str) -> bool {
    REQUIRED.iter().any(|(m, p)| *m == method && *p == pattern)
}

/// Routes never deduplicated, whatever the caller sends: the answers of `/v1/auth/*` are
/// credentials, which are never kept (a stored login or refresh would sit in Redis for a day),
/// and a refresh token presented again must meet the reuse detection, not a replay.
pub(crate) fn never_deduplicated(path: &str) -> bool {
    path.starts_with("/v1/auth/")
}

/// Headers kept with a stored response (the request id is the replay's own).
const REPLAYED_HEADERS: [HeaderName; 4] = [header::CONTENT_TYPE, header::LOCATION, header::RETRY_AFTER, header::ALLOW];

/// Retention and lease of idempotency records.
#[derive(Debug, Clone, Copy)]
pub struct IdempotencySettings {
    /// How long a finished request is replayed (24 h, published in API.md).
    pub ttl: Duration,
    /// How long the first request may run before a retry may run it again (a crash).
    pub lease: Duration,
}

impl Default for IdempotencySettings {
    fn default() -> Self {
        Self { ttl: Duration::from_secs(24 * 3600), lease: Duration::from_secs(120) }
    }
}

/// The key of a request: `Idempotency-Key` (or the legacy `X-Idempotency-Key`), as a token or
/// an RFC 8941 quoted string; 1–255 visible ASCII characters.
pub fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(raw) = headers.get(IDEMPOTENCY_KEY).or_else(|| headers.get(LEGACY_IDEMPOTENCY_KEY)) else {
        return Ok(None);
    };
    let invalid = || {
        ApiError::field(
            ProblemKind::InvalidIdempotencyKey,
            "Idempotency-Key",
            "The Idempotency-Key must be 1 to 255 visible ASCII characters (optionally an RFC 8941 quoted string).",
        )
    };
    let raw = raw.to_str().map_err(|_| invalid())?.trim();
    let key = match raw.strip_prefix('"') {
        Some(quoted) => unquote(quoted).ok_or_else(invalid)?,
        None => raw.to_owned(),
    };
    if key.is_empty() || key.len() > 255 || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(invalid());
    }
    Ok(Some(key))
}

/// The rest of an RFC 8941 string after its opening quote: `\"` and `\\` escapes, a closing quote
/// at the very end.
fn unquote(rest: &str) -> Option<String> {
    let mut out = String::with_capacity(rest.len());
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next()? {
                e @ ('"' | '\\') => out.push(e),
                _ => return None,
            },
            '"' => return chars.next().is_none().then_some(out),
            c => out.push(c),
        }
    }
    None
}

fn hex_sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Who the caller is, for scoping: the customer behind a valid bearer token, else the guest cart
/// token. `None`: anonymous (or an invalid token, which the route refuses with 401 anyway).
fn caller_of(req: &ServiceRequest, state: &AppState) -> Option<String> {
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    if let Some(token) = bearer {
        return state.identity.authenticate(token).ok().map(|p| format!("customer:{}", p.customer_id));
    }
    req.headers()
        .get("x-cart-token")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| format!("cart:{}", hex_sha256(t.as_bytes())))
}

/// Whether a response is the outcome of the request (stored) or a refusal the client can fix
/// or that asks to try again (not stored).
fn storable(status: StatusCode, body: &[u8]) -> bool {
    match status.as_u16() {
        200..=399 => true,
        400 | 401 | 403 | 404 | 405 | 408 | 413 | 415 | 429 => false,
        422 => !has_code(body, "VALIDATION_FAILED"),
        // Written meanwhile by someone else, or not ready yet: the same request may succeed.
        409 => !has_code(body, "CONCURRENT_MODIFICATION"),
        400..=499 => true,
        _ => false,
    }
}

/// Whether a problem body carries the error `code`.
fn has_code(body: &[u8], code: &str) -> bool {
    let quoted = format!("\"{code}\"");
    body.windows(quoted.len()).any(|w| w == quoted.as_bytes())
}

fn replay(stored: StoredResponse) -> HttpResponse {
    let mut res = HttpResponse::build(StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK));
    for (name, value) in &stored.headers {
        if let (Ok(name), Ok(value)) = (HeaderName::try_from(name.as_str()), HeaderValue::from_str(value)) {
            res.append_header((name, value));
        }
    }
    res.insert_header((IDEMPOTENT_REPLAYED, HeaderValue::from_static("true")));
    res.body(stored.body)
}

fn refuse(req: ServiceRequest, err: ApiError) -> ServiceResponse<BoxBody> {
    let res = err.error_response();
    req.into_response(res)
}

pub async fn idempotent(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    // The path as routed (escapes of unreserved characters decoded), not as sent:
    // `/v1/%61uth/refresh` is routed to the refresh too.
    let routed = req.match_info().as_str().to_owned();
    if (req.method() != Method::POST && req.method() != Method::PATCH) || never_deduplicated(&routed) {
        return Ok(next.call(req).await?.map_into_boxed_body());
    }
    let key = match idempotency_key(req.headers()) {
        Ok(key) => key,
        Err(err) => return Ok(refuse(req, err)),
    };
    let Some(key) = key else {
        // Not `match_pattern()`: before routing it matches the path as sent, and
        // `/v1/orders/%63heckout` is routed to the checkout.
        let pattern = req.resource_map().match_pattern(&routed);
        let method = req.method().as_str().to_owned();
        // Who is asking comes first: a caller not signed in (a guest's cart token is no
        // sign-in) gets the route's 401, not this 400.
        let identified = req
            .app_data::<Data<AppState>>()
            .cloned()
            .is_some_and(|state| caller_of(&req, &state).is_some_and(|c| c.starts_with("customer:")));
        if identified && pattern.is_some_and(|p| is_required(&method, &p)) {
            let err =
                ApiError::new(ProblemKind::IdempotencyKeyRequired, "This request needs an Idempotency-Key header.");
            return Ok(refuse(req, err));
        }
        return Ok(next.call(req).await?.map_into_boxed_body());
    };
    let Some(state) = req.app_data::<Data<AppState>>().cloned() else {
        return Ok(next.call(req).await?.map_into_boxed_body());
    };
    let Some(caller) = caller_of(&req, &state) else {
        return Ok(next.call(req).await?.map_into_boxed_body());
    };

    // Read within the limit the route's own body extractor applies.
    let mut payload = req.take_payload();
    let body = match read_body(&mut payload, body_limit(req.request())).await {
        Ok(body) => body.freeze(),
        Err(err) => return Ok(refuse(req, err)),
    };
    req.set_payload(Payload::from(body.clone()));
    let scope = format!("{caller}\n{}\n{routed}\n{key}", req.method());
    let fingerprint = hex_sha256(&body);
    let token = uuid::Uuid::now_v7().to_string();
    let settings = state.settings.idempotency;
    let store = state.idempotency.clone();

    match store.begin(&scope, &fingerprint, &token, settings.lease).await {
        Err(err) => {
            tracing::warn!(error = %err, "idempotency store unavailable; request not run");
            return Ok(refuse(req, ApiError::from_infra(err)));
        }
        Ok(Begin::Mismatch) => {
            let err = ApiError::new(
                ProblemKind::IdempotencyKeyReused,
                "This Idempotency-Key was used with a different request body.",
            );
            return Ok(refuse(req, err));
        }
        Ok(Begin::InProgress { retry_after }) => {
            let err = ApiError::new(
                ProblemKind::IdempotencyRequestInProgress,
                "A request with this Idempotency-Key is still running; retry shortly.",
            )
            .with_retry_after(retry_after);
            return Ok(refuse(req, err));
        }
        Ok(Begin::Completed(stored)) => {
            tracing::info!(status = stored.status, "idempotent request replayed");
            let res = replay(stored);
            return Ok(req.into_response(res));
        }
        Ok(Begin::Started) => {}
    }

    let res = match next.call(req).await {
        Ok(res) => res,
        Err(err) => {
            let _ = store.release(&scope, &token).await;
            return Err(err);
        }
    };
    let (http_req, response) = res.into_parts();
    let status = response.status();
    let (head, body) = response.into_parts();
    let bytes = match to_bytes(body).await {
        Ok(bytes) => bytes,
        Err(_) => {
            let _ = store.release(&scope, &token).await;
            let err = ApiError::new(ProblemKind::Internal, "");
            return Ok(ServiceResponse::new(http_req, err.error_response()));
        }
    };
    if storable(status, &bytes) {
        let stored = StoredResponse {
            status: status.as_u16(),
            headers: REPLAYED_HEADERS
                .iter()
                .filter_map(|name| {
                    head.headers()
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .map(|v| (name.as_str().to_owned(), v.to_owned()))
                })
                .collect(),
            body: bytes.to_vec(),
        };
        if let Err(err) = store.complete(&scope, &token, &stored, settings.ttl).await {
            tracing::warn!(error = %err, "idempotent response not stored; a retry after the lease runs the request again");
        }
    } else if let Err(err) = store.release(&scope, &token).await {
        tracing::warn!(error = %err, "idempotency lease not freed; it expires on its own");
    }
    let mut rebuilt = HttpResponse::with_body(status, BoxBody::new(bytes));
    for (name, value) in head.headers() {
        rebuilt.headers_mut().append(name.clone(), value.clone());
    }
    Ok(ServiceResponse::new(http_req, rebuilt))
}

#[cfg(test)]
mod tests {
    use actix_web::http::header::HeaderMap;

    use super::*;

    fn headers(name: &'static str, value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(HeaderName::from_static(name), HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn keys_are_tokens_or_quoted_strings_of_visible_ascii() {
        assert_eq!(idempotency_key(&HeaderMap::new()).unwrap(), None);
        assert_eq!(idempotency_key(&headers("idempotency-key", "abc-123")).unwrap().as_deref(), Some("abc-123"));
        assert_eq!(idempotency_key(&headers("x-idempotency-key", "legacy")).unwrap().as_deref(), Some("legacy"));
        assert_eq!(idempotency_key(&headers("idempotency-key", r#""a\"b""#)).unwrap().as_deref(), Some(r#"a"b"#));
        assert_eq!(idempotency_key(&headers("idempotency-key", &"k".repeat(255))).unwrap().map(|k| k.len()), Some(255));
        for bad in ["", "has space", r#""unterminated"#, r#""x"y""#, r#""bad\escape""#] {
            assert!(idempotency_key(&headers("idempotency-key", bad)).is_err(), "{bad:?}");
        }
        assert!(idempotency_key(&headers("idempotency-key", &"k".repeat(256))).is_err());
    }

    #[test]
    fn refusals_a_client_can_fix_are_not_stored() {
        assert!(storable(StatusCode::CREATED, b"{}"));
        assert!(storable(StatusCode::CONFLICT, br#"{"code":"OUT_OF_STOCK"}"#));
        assert!(storable(StatusCode::UNPROCESSABLE_ENTITY, br#"{"code":"REFUND_EXCEEDS_PAID"}"#));
        assert!(!storable(StatusCode::UNPROCESSABLE_ENTITY, br#"{"code":"VALIDATION_FAILED"}"#));
        assert!(!storable(StatusCode::CONFLICT, br#"{"code":"CONCURRENT_MODIFICATION"}"#));
        for status in [400, 401, 403, 404, 413, 429, 500, 503] {
            assert!(!storable(StatusCode::from_u16(status).unwrap(), b"{}"), "{status}");
        }
    }
}
