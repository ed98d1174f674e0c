//! The request envelope: request id, tracing span, metrics, and problem+json for every error.

use std::time::Instant;

use actix_web::body::{to_bytes, BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::web::Data;
use actix_web::{Error, HttpMessage, HttpResponse, ResponseError};
use tracing::Instrument;

use crate::error::{type_uri, ApiError, ProblemKind, PROBLEM_JSON};
use crate::AppState;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The request id of the current request, also available to handlers.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// A client's id is echoed when it is short and printable; otherwise we make one.
fn request_id_of(req: &ServiceRequest) -> String {
    req.headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map_or_else(|| uuid::Uuid::now_v7().to_string(), str::to_owned)
}

/// The method as a metric label and log field: any token is a valid method, so one outside
/// the standard set is `OTHER` (a client must not grow the metrics without bound).
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "OTHER",
    }
}

pub async fn request_context(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let started = Instant::now();
    let request_id = request_id_of(&req);
    req.extensions_mut().insert(RequestId(request_id.clone()));
    let state = req.app_data::<Data<AppState>>().cloned();
    let method = method_label(req.method());
    let path = req.path().to_owned();
    let span = tracing::info_span!("http_request", request_id = %request_id, method = %method, path = %path);

    let res = match next.call(req).instrument(span.clone()).await {
        Ok(res) => res.map_into_boxed_body(),
        // A middleware refused the request (e.g. CORS). The request is gone with the error, so
        // the error itself is turned into a problem and rendered by the server.
        Err(err) => {
            let status = err.as_response_error().status_code();
            if let Some(state) = state {
                state.metrics.observe(method, "unmatched", status.as_u16(), started.elapsed());
            }
            span.in_scope(|| tracing::info!(status = status.as_u16(), error = %err, "request refused"));
            return Err(ApiError::new(ProblemKind::for_status(status), err.to_string()).into());
        }
    };
    let mut res = if res.status().is_client_error() || res.status().is_server_error() {
        problemify(res, &path).await
    } else {
        res
    };
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        res.headers_mut().insert(REQUEST_ID, value);
    }

    let route = res.request().match_pattern().unwrap_or_else(|| "unmatched".to_owned());
    let status = res.status().as_u16();
    let elapsed = started.elapsed();
    if let Some(state) = state {
        state.metrics.observe(method, &route, status, elapsed);
    }
    span.in_scope(|| {
        tracing::info!(status, route = %route, latency_ms = elapsed.as_secs_f64() * 1000.0, "request finished");
    });
    Ok(res)
}

/// Makes every error response problem+json with `instance` set: ours get their instance filled
/// in, the framework's bare errors (404, 405, 413 …) are rewritten whole.
async fn problemify(res: ServiceResponse<BoxBody>, path: &str) -> ServiceResponse<BoxBody> {
    let is_problem = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with(PROBLEM_JSON));
    let (req, response) = res.into_parts();
    let status = response.status();
    let (head, body) = response.into_parts();
    let bytes = to_bytes(body).await.ok();
    let mut problem = match bytes.as_ref().filter(|_| is_problem) {
        Some(bytes) => serde_json::from_slice::<serde_json::Value>(bytes).unwrap_or_default(),
        None => {
            let kind = ProblemKind::for_status(status);
            let (_, code, title) = kind.spec();
            // A client error's short plain-text explanation (the framework's, e.g. why a CORS
            // preflight was refused) is kept; a server error's never is.
            let said = bytes
                .as_deref()
                .filter(|_| status.is_client_error())
                .and_then(|b| std::str::from_utf8(b).ok())
                .map(str::trim)
                .filter(|t| !t.is_empty() && t.chars().count() <= 200 && !t.contains('<'));
            serde_json::json!({
                "type": type_uri(code),
                "title": title,
                "status": status.as_u16(),
                "detail": said.unwrap_or(status.canonical_reason().unwrap_or("Error")),
                "code": code,
            })
        }
    };
    if let Some(obj) = problem.as_object_mut() {
        obj.insert("instance".into(), serde_json::Value::String(path.to_owned()));
    }
    let mut rebuilt = HttpResponse::with_body(status, BoxBody::new(serde_json::to_vec(&problem).unwrap_or_default()));
    for (name, value) in head.headers() {
        if name != header::CONTENT_LENGTH && name != header::CONTENT_TYPE {
            rebuilt.headers_mut().append(name.clone(), value.clone());
        }
    }
    rebuilt.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    ServiceResponse::new(req, rebuilt)
}

/// The default service: 405 with `Allow` when the path exists under another method, else 404.
pub async fn fallback(req: actix_web::HttpRequest, routes: Data<crate::openapi::RouteTable>) -> HttpResponse {
    // The path as routed (escapes decoded), as the routes themselves see it.
    let error = match routes.allowed_methods(req.match_info().as_str()) {
        Some(methods) if !methods.split(", ").any(|m| m == req.method().as_str()) => ApiError::new(
            ProblemKind::MethodNotAllowed,
            format!("{} is not allowed here; allowed: {methods}.", req.method()),
        )
        .with_allow(methods),
        // No such path; or the method is allowed there, yet the request was not routed to it.
        _ => ApiError::new(ProblemKind::RouteNotFound, format!("No route matches {}.", req.path())),
    };
    error.error_response()
}
