//! End-to-end scenarios over HTTP against the real PostgreSQL and Redis.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod addresses;
mod auth;
mod carts;
mod catalog;
mod customers;
mod idempotency;
mod inventory;
mod jobs;
mod logs;
mod notifications;
mod operations;
mod orders;
mod payments;
mod processes;
mod readiness;

use reqwest::{Response, StatusCode};
use serde_json::Value;

/// Asserts a problem+json response with this status and code; returns its body.
pub async fn assert_problem(res: Response, status: StatusCode, code: &str) -> Value {
    assert_eq!(res.status(), status, "status of {}", res.url());
    assert!(res.headers().contains_key("x-request-id"), "x-request-id on every response");
    let content_type = res.headers().get("content-type").unwrap().to_str().unwrap().to_owned();
    assert_eq!(content_type, "application/problem+json");
    let path = res.url().path().to_owned();
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["status"], status.as_u16(), "{body}");
    assert_eq!(body["instance"], path, "{body}");
    for field in ["type", "title", "detail"] {
        assert!(body[field].is_string(), "{field} in {body}");
    }
    body
}

/// The `field` of each entry of a problem's `errors`.
pub fn error_fields(problem: &Value) -> Vec<String> {
    problem["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap().to_owned()).collect()
}
