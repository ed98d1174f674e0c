//! Liveness, readiness and metrics. Unversioned.

use actix_web::http::header::ContentType;
use actix_web::web::Data;
use actix_web::{get, HttpResponse};
use futures_util::future::join_all;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

use crate::error::{ApiError, ProblemKind};
use crate::AppState;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(live).service(ready).service(metrics);
}

#[derive(Serialize, ToSchema)]
pub struct HealthStatus {
    /// `ok`
    status: &'static str,
    /// Each dependency and `ok`, on readiness.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    checks: Option<serde_json::Map<String, serde_json::Value>>,
}

/// The process is up.
#[utoipa::path(tag = "operations", responses((status = 200, body = HealthStatus)))]
#[get("/health/live")]
async fn live() -> HttpResponse {
    HttpResponse::Ok().json(HealthStatus { status: "ok", checks: None })
}

/// Every dependency (PostgreSQL, Redis) is reachable.
#[utoipa::path(
    tag = "operations",
    responses(
        (status = 200, body = HealthStatus),
        (status = 503, description = "A dependency is down; `detail` names it", body = crate::error::Problem,
         content_type = "application/problem+json"),
    )
)]
#[get("/health/ready")]
async fn ready(state: Data<AppState>) -> Result<HttpResponse, ApiError> {
    let results = join_all(state.health.iter().map(|check| async move { (check.name(), check.check().await) })).await;
    let mut checks = serde_json::Map::new();
    let mut failing = Vec::new();
    for (name, result) in results {
        let status = match result {
            Ok(()) => "ok".to_owned(),
            Err(err) => {
                tracing::warn!(dependency = name, error = %err, "readiness check failed");
                failing.push(name);
                format!("unavailable: {err}")
            }
        };
        checks.insert(name.to_owned(), serde_json::Value::String(status));
    }
    if failing.is_empty() {
        return Ok(HttpResponse::Ok().json(HealthStatus { status: "ok", checks: Some(checks) }));
    }
    Err(ApiError::new(ProblemKind::DependencyUnavailable, format!("unavailable: {}", failing.join(", ")))
        .with_checks(serde_json::Value::Object(checks))
        .with_retry_after(std::time::Duration::from_secs(1)))
}

/// Prometheus metrics in the text exposition format.
#[utoipa::path(tag = "operations", responses((status = 200, content_type = "text/plain", body = String)))]
#[get("/metrics")]
async fn metrics(state: Data<AppState>) -> Result<HttpResponse, ApiError> {
    // Queue gauges are read at scrape time; with Redis down the other metrics still answer.
    match state.jobs.depths().await {
        Ok(depths) => state.metrics.observe_queues(&depths),
        Err(err) => tracing::warn!(error = %err, "queue metrics unavailable"),
    }
    let text = state
        .metrics
        .render()
        .map_err(|e| ApiError::from_infra(ecom_kernel::InfraError::unexpected("metrics").with_source(e)))?;
    Ok(HttpResponse::Ok().insert_header(ContentType(mime_text_plain_v004())).body(text))
}

fn mime_text_plain_v004() -> actix_web::mime::Mime {
    "text/plain; version=0.0.4; charset=utf-8".parse().unwrap_or(actix_web::mime::TEXT_PLAIN_UTF_8)
}
