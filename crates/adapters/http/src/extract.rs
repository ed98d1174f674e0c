//! Request extractors: JSON bodies with precise errors, the authenticated caller, paging.

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::web::{BytesMut, Data};
use actix_web::{FromRequest, HttpRequest};
use ecom_identity::model::Principal;
use ecom_identity::require_admin;
use ecom_kernel::{field_error, Cursor, PageRequest, ValidationErrors};
use futures_util::future::{ready, LocalBoxFuture, Ready};
use futures_util::StreamExt;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::error::Category;
use utoipa::IntoParams;

use crate::error::{ApiError, ProblemKind};
use crate::AppState;

/// A JSON body: `application/json` (or `+json`) only, bounded in size, unknown fields refused
/// by the target type, and every failure a precise problem.
pub struct JsonBody<T>(pub T);

impl<T> JsonBody<T> {
    pub fn into_inner(self) -> T {
        self.0
    }
}

fn is_json(req: &HttpRequest) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|ct| ct.split(';').next())
        .map(|mime| {
            let mime = mime.trim().to_ascii_lowercase();
            mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
        })
        .unwrap_or(false)
}

fn too_large(limit: usize) -> ApiError {
    ApiError::new(ProblemKind::PayloadTooLarge, format!("The request body exceeds {limit} bytes."))
}

impl<T: DeserializeOwned + 'static> FromRequest for JsonBody<T> {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let limit = body_limit(req);
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        let json = is_json(req);
        let mut payload = payload.take();
        Box::pin(async move {
            if declared.is_some_and(|len| len > limit) {
                return Err(too_large(limit));
            }
            if !json {
                return Err(ApiError::new(
                    ProblemKind::UnsupportedMediaType,
                    "The body must be JSON, sent with Content-Type: application/json.",
                ));
            }
            let body = read_body(&mut payload, limit).await?;
            parse_json(&body).map(JsonBody)
        })
    }
}

/// The request's body size limit (`HTTP_BODY_LIMIT_BYTES`).
pub(crate) fn body_limit(req: &HttpRequest) -> usize {
    req.app_data::<Data<AppState>>().map_or(64 * 1024, |s| s.settings.body_limit)
}

/// Reads a whole body of at most `limit` bytes: 413 beyond it, 400 when it cannot be read.
pub(crate) async fn read_body(payload: &mut Payload, limit: usize) -> Result<BytesMut, ApiError> {
    let mut body = BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|_| ApiError::new(ProblemKind::MalformedJson, "The body could not be read."))?;
        if body.len() + chunk.len() > limit {
            return Err(too_large(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// `serde_json` messages end with " at line 1 column 9"; clients get the message alone.
fn strip_position(message: &str) -> &str {
    message.rfind(" at line ").map_or(message, |at| &message[..at])
}

/// The name inside the first pair of backticks: "missing field `email`" → "email".
fn backticked(message: &str) -> Option<&str> {
    let start = message.find('`')? + 1;
    let len = message[start..].find('`')?;
    Some(&message[start..start + len])
}

/// Parses a body: syntax errors are 400, unknown fields 400, wrong types and missing fields 422.
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize::<_, T>(&mut de).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        let message = strip_position(&inner.to_string()).to_owned();
        match inner.classify() {
            Category::Syntax | Category::Eof | Category::Io => {
                ApiError::new(ProblemKind::MalformedJson, format!("The body is not valid JSON: {message}."))
            }
            Category::Data if message.starts_with("unknown field") => {
                let name = backticked(&message).unwrap_or("?");
                // The path already ends at the unknown field itself.
                let field = if path == "." || path.is_empty() { name.to_owned() } else { path };
                ApiError::field(ProblemKind::UnknownField, field, message)
            }
            Category::Data => {
                let field = match (path.as_str(), backticked(&message)) {
                    ("." | "", Some(name)) if message.starts_with("missing field") => name.to_owned(),
                    (path, _) => path.to_owned(),
                };
                ApiError::field(ProblemKind::ValidationFailed, field, message)
            }
        }
    })?;
    de.end().map_err(|_| {
        ApiError::new(ProblemKind::MalformedJson, "The body has trailing characters after the JSON value.")
    })?;
    Ok(value)
}

/// The caller, authenticated by `Authorization: Bearer <access token>`.
#[derive(Debug, Clone, Copy)]
pub struct Authenticated(pub Principal);

/// The token of an `Authorization: Bearer <token>` header.
pub fn bearer_token(req: &HttpRequest) -> Option<&str> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()).filter(|t| !t.is_empty())
}

fn authenticate(req: &HttpRequest) -> Result<Principal, ApiError> {
    let state = req
        .app_data::<Data<AppState>>()
        .ok_or_else(|| ApiError::new(ProblemKind::Internal, "application state missing"))?;
    let token = bearer_token(req)
        .ok_or_else(|| ApiError::new(ProblemKind::Unauthenticated, "A bearer access token is required."))?;
    Ok(state.identity.authenticate(token)?)
}

impl FromRequest for Authenticated {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(authenticate(req).map(Authenticated))
    }
}

/// The caller of a cart route: an optional bearer token (invalid ones are still refused with
/// 401) and an optional `X-Cart-Token`.
pub struct CartCaller(pub ecom_carts::model::Caller);

impl FromRequest for CartCaller {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let customer = if req.headers().contains_key(header::AUTHORIZATION) {
            match authenticate(req) {
                Ok(principal) => Some(principal.customer_id),
                Err(err) => return ready(Err(err)),
            }
        } else {
            None
        };
        let cart_token = req
            .headers()
            .get("x-cart-token")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty());
        ready(Ok(CartCaller(ecom_carts::model::Caller { customer, cart_token })))
    }
}

/// An authenticated caller with the ADMIN role; others get 403.
#[derive(Debug, Clone, Copy)]
pub struct Admin(pub Principal);

impl FromRequest for Admin {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(authenticate(req).and_then(|p| Ok(Admin(require_admin(p)?))))
    }
}

/// The client's network address: the peer, or the proxy-reported one when configured to trust it.
pub struct ClientAddr(pub Option<String>);

impl FromRequest for ClientAddr {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let trust = req.app_data::<Data<AppState>>().is_some_and(|s| s.settings.trust_forwarded_for);
        let peer = req.peer_addr().map(|a| a.ip().to_string());
        let addr = if trust { forwarded_for(req.headers()).or(peer) } else { peer };
        ready(Ok(ClientAddr(addr)))
    }
}

/// The address the trusted proxy saw the request come from: the last entry of
/// `X-Forwarded-For`, which that proxy appended. The entries before it are whatever the client
/// sent, and taking the first would let a client pick a new address for every request.
/// `None` when that entry is not an address (then the peer's is used).
fn forwarded_for(headers: &actix_web::http::header::HeaderMap) -> Option<String> {
    let joined: Vec<String> =
        headers.get_all("x-forwarded-for").map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()).collect();
    let last = joined.iter().flat_map(|v| v.split(',')).map(str::trim).rfind(|entry| !entry.is_empty())?;
    // Some balancers add the port: `203.0.113.7:5678`, `[2001:db8::1]:443`.
    let ip = last.parse::<std::net::IpAddr>().or_else(|_| last.parse::<std::net::SocketAddr>().map(|a| a.ip())).ok()?;
    Some(ip.to_string())
}

/// `?limit=&cursor=` of every list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// 1 to 100, default 20.
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
    /// The `nextCursor` of the previous page.
    pub cursor: Option<String>,
}

impl PageQuery {
    pub fn to_request(&self) -> Result<PageRequest, ApiError> {
        let cursor = self.cursor.as_deref().map(Cursor::decode).transpose();
        match (PageRequest::new(self.limit, None), cursor) {
            (Ok(request), Ok(cursor)) => Ok(request.with_after(cursor)),
            (limit, cursor) => {
                Err(ValidationErrors::collect([field_error("limit", &limit), field_error("cursor", &cursor)]).into())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    struct Body {
        #[allow(dead_code)]
        email: String,
        #[allow(dead_code)]
        first_name: Option<String>,
    }

    fn parse_err(body: &str) -> ApiError {
        parse_json::<Body>(body.as_bytes()).unwrap_err()
    }

    #[test]
    fn the_forwarded_address_is_the_last_entry_without_its_port() {
        use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
        let headers = |values: &[&str]| {
            let mut map = HeaderMap::new();
            for v in values {
                map.append(HeaderName::from_static("x-forwarded-for"), HeaderValue::from_str(v).unwrap());
            }
            map
        };
        let cases: [(&[&str], Option<&str>); 7] = [
            (&["203.0.113.9, 10.0.0.7"], Some("10.0.0.7")),
            (&["203.0.113.9", "10.0.0.7 "], Some("10.0.0.7")),
            (&["2001:db8::1"], Some("2001:db8::1")),
            (&["203.0.113.9, 10.0.0.7:5678"], Some("10.0.0.7")),
            (&["[2001:db8::1]:443"], Some("2001:db8::1")),
            (&["10.0.0.7, not-an-address"], None),
            (&[], None),
        ];
        for (values, expected) in cases {
            assert_eq!(forwarded_for(&headers(values)).as_deref(), expected, "{values:?}");
        }
        let mut odd = HeaderMap::new();
        odd.append(HeaderName::from_static("x-forwarded-for"), HeaderValue::from_bytes(b"\xff\xfe, 10.0.0.7").unwrap());
        assert_eq!(forwarded_for(&odd).as_deref(), Some("10.0.0.7"), "one odd byte does not hide the proxy's entry");
    }

    #[test]
    fn syntax_errors_are_malformed_json() {
        for body in ["{", "not json", "", "{\"email\": }"] {
            assert_eq!(parse_err(body).kind(), ProblemKind::MalformedJson, "{body}");
        }
        assert_eq!(parse_err(r#"{"email": "a"} trailing"#).kind(), ProblemKind::MalformedJson);
    }

    #[test]
    fn unknown_fields_are_named() {
        let err = parse_err(r#"{"email": "a", "isAdmin": true}"#);
        assert_eq!(err.kind(), ProblemKind::UnknownField);
        assert_eq!(err.to_string(), "UNKNOWN_FIELD: unknown field `isAdmin`, expected `email` or `firstName`");
        let body = actix_web::body::to_bytes(actix_web::ResponseError::error_response(&err).into_body());
        let body: serde_json::Value =
            serde_json::from_slice(&futures_util::FutureExt::now_or_never(body).unwrap().unwrap()).unwrap();
        assert_eq!(body["errors"][0]["field"], "isAdmin");
    }

    #[test]
    fn missing_and_mistyped_fields_are_validation_failures_naming_the_field() {
        let err = parse_err(r#"{"firstName": "Ada"}"#);
        assert_eq!(err.kind(), ProblemKind::ValidationFailed);
        assert!(err.to_string().contains("missing field `email`"));
        let err = parse_err(r#"{"email": 42}"#);
        assert_eq!(err.kind(), ProblemKind::ValidationFailed);
        assert!(err.to_string().contains("invalid type"), "{err}");
    }

    #[test]
    fn page_queries_are_checked() {
        let ok = PageQuery { limit: Some(5), cursor: None }.to_request().unwrap();
        assert_eq!(ok.limit(), 5);
        assert!(PageQuery { limit: Some(0), cursor: None }.to_request().is_err());
        assert!(PageQuery { limit: None, cursor: Some("zz".into()) }.to_request().is_err());
    }
}
