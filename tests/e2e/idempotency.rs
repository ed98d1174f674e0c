//! Idempotent requests against the real Redis: replay, mismatch, concurrency, scoping per
//! caller, expiry, and Redis going away.

use std::time::Duration;

use ecom_testkit::TestApp;
use reqwest::{Response, StatusCode};
use serde_json::{json, Value};

use crate::assert_problem;
use crate::readiness::{free_port, OwnRedis};

async fn product(app: &TestApp, token: &str) -> (String, ecom_kernel::ProductId) {
    let body = json!({"sku": format!("IDEM-{}", uuid::Uuid::now_v7().simple()), "name": "Idem", "price": {"amount": 100, "currency": "USD"}, "initialStock": 10});
    let created: Value = app.post("/v1/products", &body, Some(token)).await.json().await.unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    let parsed = id.parse().unwrap();
    (id, parsed)
}

async fn adjust(app: &TestApp, token: &str, id: &str, key: &str, quantity: u32) -> Response {
    app.request(reqwest::Method::POST, &format!("/v1/inventory/products/{id}/adjust"), Some(token))
        .header("Idempotency-Key", key)
        .json(&json!({"type": "ADD", "quantity": quantity, "reason": "delivery"}))
        .send()
        .await
        .unwrap()
}

async fn on_hand(app: &TestApp, id: ecom_kernel::ProductId) -> u32 {
    app.services.inventory.level(id).await.unwrap().on_hand
}

#[tokio::test]
async fn a_retry_is_replayed_byte_for_byte_and_another_body_is_refused() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let token = admin.access_token.as_str();
    let (id, product_id) = product(&app, token).await;

    let first = adjust(&app, token, &id, "delivery-1", 5).await;
    assert_eq!(first.status(), StatusCode::OK);
    assert!(!first.headers().contains_key("idempotent-replayed"));
    let first_body = first.bytes().await.unwrap();
    let again = adjust(&app, token, &id, "delivery-1", 5).await;
    assert_eq!(again.status(), StatusCode::OK);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.headers()["content-type"], "application/json");
    assert!(again.headers().contains_key("x-request-id"));
    assert_eq!(again.bytes().await.unwrap(), first_body, "byte for byte");
    assert_eq!(on_hand(&app, product_id).await, 15, "ran once");

    let other = adjust(&app, token, &id, "delivery-1", 6).await;
    assert_problem(other, StatusCode::UNPROCESSABLE_ENTITY, "IDEMPOTENCY_KEY_REUSED").await;
    // The legacy header name and the RFC 8941 quoted form name the same key.
    let legacy = app
        .request(reqwest::Method::POST, &format!("/v1/inventory/products/{id}/adjust"), Some(token))
        .header("X-Idempotency-Key", "\"delivery-1\"")
        .json(&json!({"type": "ADD", "quantity": 5, "reason": "delivery"}))
        .send()
        .await
        .unwrap();
    assert_eq!(legacy.headers()["idempotent-replayed"], "true");
    assert_eq!(on_hand(&app, product_id).await, 15);

    for bad in ["has space", "\"open", &"k".repeat(256)] {
        assert_problem(adjust(&app, token, &id, bad, 1).await, StatusCode::BAD_REQUEST, "INVALID_IDEMPOTENCY_KEY")
            .await;
    }
}

#[tokio::test]
async fn refusals_the_client_can_fix_are_not_stored() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let token = admin.access_token.as_str();
    let (id, product_id) = product(&app, token).await;
    assert_problem(adjust(&app, token, &id, "fix-me", 0).await, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_FAILED")
        .await;
    let fixed = adjust(&app, token, &id, "fix-me", 2).await;
    assert_eq!(fixed.status(), StatusCode::OK, "the corrected request runs under the same key");
    assert!(!fixed.headers().contains_key("idempotent-replayed"));
    assert_eq!(on_hand(&app, product_id).await, 12);
    // A business refusal is the outcome: it is replayed.
    let below = app
        .request(reqwest::Method::POST, &format!("/v1/inventory/products/{id}/adjust"), Some(token))
        .header("Idempotency-Key", "too-many")
        .json(&json!({"type": "SUBTRACT", "quantity": 500}))
        .send()
        .await
        .unwrap();
    assert_eq!(below.status(), StatusCode::CONFLICT);
    let again = app
        .request(reqwest::Method::POST, &format!("/v1/inventory/products/{id}/adjust"), Some(token))
        .header("Idempotency-Key", "too-many")
        .json(&json!({"type": "SUBTRACT", "quantity": 500}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        (again.status(), again.headers()["idempotent-replayed"].to_str().unwrap()),
        (StatusCode::CONFLICT, "true")
    );
}

#[tokio::test]
async fn a_route_spelt_with_escapes_shares_its_keys() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let token = admin.access_token.as_str();
    let (id, product_id) = product(&app, token).await;
    assert_eq!(adjust(&app, token, &id, "escaped", 5).await.status(), StatusCode::OK);
    let escaped = app
        .request(reqwest::Method::POST, &format!("/v1/inventory/products/{id}/%61djust"), Some(token))
        .header("Idempotency-Key", "escaped")
        .json(&json!({"type": "ADD", "quantity": 5, "reason": "delivery"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        (escaped.status(), escaped.headers().get("idempotent-replayed").cloned()),
        (StatusCode::OK, Some("true".parse().unwrap()))
    );
    assert_eq!(on_hand(&app, product_id).await, 15, "ran once");
}

#[tokio::test]
async fn a_body_over_the_limit_is_refused_as_a_problem_before_anything_runs() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let token = admin.access_token.as_str();
    let (id, product_id) = product(&app, token).await;
    // Beyond the limit, and beyond actix's own default of 256 KiB for a body read whole.
    let reason = "x".repeat(300 * 1024);
    let res = app
        .request(reqwest::Method::POST, &format!("/v1/inventory/products/{id}/adjust"), Some(token))
        .header("Idempotency-Key", "too-big")
        .json(&json!({"type": "ADD", "quantity": 5, "reason": reason}))
        .send()
        .await
        .unwrap();
    assert!(res.headers().contains_key("x-request-id"));
    assert_problem(res, StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE").await;
    assert_eq!(adjust(&app, token, &id, "too-big", 5).await.status(), StatusCode::OK, "the key was never taken");
    assert_eq!(on_hand(&app, product_id).await, 15);
}

#[tokio::test]
async fn twenty_parallel_identical_requests_run_once() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let token = admin.access_token.clone();
    let (id, product_id) = product(&app, &token).await;
    let answers = futures_util::future::join_all((0..20).map(|_| adjust(&app, &token, &id, "burst", 5))).await;
    let mut ran = 0;
    for res in answers {
        match res.status() {
            StatusCode::OK if res.headers().contains_key("idempotent-replayed") => {}
            StatusCode::OK => ran += 1,
            StatusCode::CONFLICT => {
                assert!(res.headers().contains_key("retry-after"));
                assert_problem(res, StatusCode::CONFLICT, "IDEMPOTENCY_REQUEST_IN_PROGRESS").await;
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(ran, 1, "exactly one answer is the first execution");
    assert_eq!(on_hand(&app, product_id).await, 15, "the handler ran exactly once");
}

#[tokio::test]
async fn two_callers_with_the_same_key_never_see_each_others_responses() {
    let app = TestApp::spawn().await;
    let body = json!({"fullName": "Ada", "line1": "1 Infinite Loop", "city": "Cupertino", "state": "CA",
        "postalCode": "95014", "country": "US"});
    let mut ids = Vec::new();
    for _ in 0..2 {
        let customer = app.register_customer().await;
        let res = app
            .request(reqwest::Method::POST, "/v1/customers/me/addresses", Some(&customer.access_token))
            .header("Idempotency-Key", "same-key")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::CREATED);
        assert!(!res.headers().contains_key("idempotent-replayed"));
        ids.push(res.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned());
    }
    assert_ne!(ids[0], ids[1]);
}

#[tokio::test]
async fn a_key_is_forgotten_after_its_ttl() {
    // Long enough for the replay below on a slow machine.
    let app = TestApp::spawn_with(&[("IDEMPOTENCY_TTL_SECS", "3")]).await;
    let admin = app.admin().await;
    let token = admin.access_token.as_str();
    let (id, product_id) = product(&app, token).await;
    assert_eq!(adjust(&app, token, &id, "short", 1).await.status(), StatusCode::OK);
    assert_eq!(adjust(&app, token, &id, "short", 1).await.headers()["idempotent-replayed"], "true");
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let later = adjust(&app, token, &id, "short", 1).await;
    assert_eq!(later.status(), StatusCode::OK);
    assert!(!later.headers().contains_key("idempotent-replayed"), "expired: runs again");
    assert_eq!(on_hand(&app, product_id).await, 12);
}

#[tokio::test]
async fn with_redis_down_an_idempotent_request_is_503_and_never_runs() {
    let redis = OwnRedis::start(free_port());
    let url = format!("redis://127.0.0.1:{}", redis.port);
    let app = TestApp::spawn_with(&[("REDIS_URL", &url)]).await;
    let admin = app.admin().await;
    let token = admin.access_token.as_str();
    let (id, product_id) = product(&app, token).await;

    let _port = redis.stop();
    for _ in 0..2 {
        let res = adjust(&app, token, &id, "while-down", 5).await;
        assert!(res.headers().contains_key("retry-after"));
        assert_problem(res, StatusCode::SERVICE_UNAVAILABLE, "SERVICE_UNAVAILABLE").await;
    }
    assert_eq!(on_hand(&app, product_id).await, 10, "never executed");
}
