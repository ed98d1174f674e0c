//! PayPal against a local fake of its API.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ecom_gateways::{PayPalClient, PayPalConfig, PayPalGateway};
use ecom_kernel::{Currency, Money, Secret};
use ecom_payments::model::{DeclineReason, Provider, ProviderState, RefundStatus};
use ecom_payments::ports::{GatewayError, PaymentGateway, RefundRequest};
use serde_json::json;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::support::{charge_request, requests_to};

pub const CLIENT_ID: &str = "client-id";
pub const CLIENT_SECRET: &str = "client-secret";
pub const ACCESS_TOKEN: &str = "A21AAtoken";
const ORDER: &str = "5O190127TN364715T";
const CAPTURE: &str = "3C679366HH908993F";
const TOKEN_PATH: &str = "/v1/oauth2/token";

fn usd(amount: i64) -> Money {
    Money::new(amount, Currency::USD)
}

pub fn client(server: &MockServer) -> Arc<PayPalClient> {
    Arc::new(
        PayPalClient::new(PayPalConfig {
            api_base: server.uri(),
            timeout: Duration::from_millis(300),
            max_attempts: 3,
            retry_backoff: Duration::from_millis(10),
            ..PayPalConfig::sandbox(CLIENT_ID, Secret::new(CLIENT_SECRET.to_owned()))
        })
        .unwrap(),
    )
}

fn gateway(server: &MockServer) -> PayPalGateway {
    PayPalGateway::new(client(server))
}

/// PayPal's token endpoint: client credentials in, one access token out.
pub async fn mount_token(server: &MockServer, expires_in: u64) {
    Mock::given(method("POST"))
        .and(path(TOKEN_PATH))
        // base64("client-id:client-secret")
        .and(header("authorization", "Basic Y2xpZW50LWlkOmNsaWVudC1zZWNyZXQ="))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "scope": "https://uri.paypal.com/services/payments/payment",
            "access_token": ACCESS_TOKEN,
            "token_type": "Bearer",
            "app_id": "APP-80W284485P519543T",
            "expires_in": expires_in,
            "nonce": "2020-04-03T15:35:36ZaYZlGvEkV4yVSz8g6bAKFoGSEzuy3CQcz3ljhibkOHg"
        })))
        .mount(server)
        .await;
}

/// An order for `value` USD; `capture` is its capture's status once completed.
fn order(status: &str, value: &str, capture: Option<&str>, refunds: serde_json::Value) -> serde_json::Value {
    let mut unit = json!({
        "reference_id": "default",
        "amount": { "currency_code": "USD", "value": value },
    });
    if let Some(capture) = capture {
        unit["payments"] = json!({
            "captures": [{
                "id": CAPTURE, "status": capture,
                "amount": { "currency_code": "USD", "value": value },
                "final_capture": true
            }],
            "refunds": refunds
        });
    }
    json!({ "id": ORDER, "intent": "CAPTURE", "status": status, "purchase_units": [unit] })
}

async fn mount_order(server: &MockServer, body: serde_json::Value) {
    Mock::given(method("GET"))
        .and(path(format!("/v2/checkout/orders/{ORDER}")))
        .and(header("authorization", format!("Bearer {ACCESS_TOKEN}").as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(body))
        .mount(server)
        .await;
}

fn capture_path() -> String {
    format!("/v2/checkout/orders/{ORDER}/capture")
}

#[tokio::test]
async fn an_order_that_only_authorizes_or_pays_another_merchant_is_never_captured() {
    let mut authorize = order("APPROVED", "19.99", None, json!([]));
    authorize["intent"] = json!("AUTHORIZE");
    let mut elsewhere = order("COMPLETED", "19.99", Some("COMPLETED"), json!([]));
    elsewhere["purchase_units"][0]["payee"] =
        json!({"email_address": "me@example.com", "merchant_id": "CUSTOMERS-OWN"});
    for (body, refusal) in [(authorize, "immediate capture"), (elsewhere, "does not pay this shop")] {
        let server = MockServer::start().await;
        mount_token(&server, 32_400).await;
        Mock::given(method("POST"))
            .and(path(capture_path()))
            .respond_with(ResponseTemplate::new(500))
            .expect(0)
            .mount(&server)
            .await;
        mount_order(&server, body).await;
        let shop = gateway(&server).with_merchant(Some("SHOP-MERCHANT".into()));
        let result = shop.charge(&charge_request("k", usd(1999), ORDER)).await;
        assert!(matches!(&result, Err(GatewayError::Rejected(m)) if m.contains(refusal)), "{result:?}");
    }
}

#[tokio::test]
async fn an_order_paying_the_shop_is_taken() {
    let server = MockServer::start().await;
    mount_token(&server, 32_400).await;
    let mut ours = order("COMPLETED", "19.99", Some("COMPLETED"), json!([]));
    ours["purchase_units"][0]["payee"] = json!({"email_address": "shop@example.com", "merchant_id": "SHOP-MERCHANT"});
    mount_order(&server, ours).await;
    let shop = gateway(&server).with_merchant(Some("SHOP-MERCHANT".into()));
    let seen = shop.charge(&charge_request("k", usd(1999), ORDER)).await.unwrap();
    assert_eq!(seen.state, ProviderState::Succeeded);
}

#[tokio::test]
async fn an_approved_order_for_the_amount_is_captured_and_succeeds() {
    let server = MockServer::start().await;
    mount_token(&server, 32_400).await;
    mount_order(&server, order("APPROVED", "19.99", None, json!([]))).await;
    Mock::given(method("POST"))
        .and(path(capture_path()))
        .and(header("paypal-request-id", "order-1-charge"))
        .and(header("prefer", "return=representation"))
        .and(header("authorization", format!("Bearer {ACCESS_TOKEN}").as_str()))
        .respond_with(ResponseTemplate::new(201).set_body_json(order(
            "COMPLETED",
            "19.99",
            Some("COMPLETED"),
            json!([]),
        )))
        .expect(1)
        .mount(&server)
        .await;

    let seen = gateway(&server).charge(&charge_request("order-1-charge", usd(1999), ORDER)).await.unwrap();

    assert_eq!(seen.reference, ORDER);
    assert_eq!(seen.state, ProviderState::Succeeded);
    assert_eq!(seen.amount, usd(1999));
    assert_eq!(seen.refunded, usd(0));
    let token_calls = requests_to(&server, TOKEN_PATH).await;
    assert_eq!(token_calls.len(), 1);
    assert_eq!(String::from_utf8(token_calls[0].body.clone()).unwrap(), "grant_type=client_credentials");
}

#[tokio::test]
async fn a_pending_capture_is_processing() {
    let server = MockServer::start().await;
    mount_token(&server, 32_400).await;
    mount_order(&server, order("APPROVED", "19.99", None, json!([]))).await;
    Mock::given(method("POST"))
        .and(path(capture_path()))
        .respond_with(ResponseTemplate::new(201).set_body_json(order("COMPLETED", "19.99", Some("PENDING"), json!([]))))
        .mount(&server)
        .await;

    let seen = gateway(&server).charge(&charge_request("k", usd(1999), ORDER)).await.unwrap();

    assert_eq!(seen.state, ProviderState::Processing);
}

#[tokio::test]
async fn a_declined_instrument_is_a_decline() {
    let server = MockServer::start().await;
    mount_token(&server, 32_400).await;
    mount_order(&server, order("APPROVED", "19.99", None, json!([]))).await;
    Mock::given(method("POST"))
        .and(path(capture_path()))
        .respond_with(ResponseTemplate::new(422).set_body_json(json!({
            "name": "UNPROCESSABLE_ENTITY",
            "details": [{ "issue": "INSTRUMENT_DECLINED", "description": "The instrument presented was declined." }],
            "message": "The requested action could not be performed.",
            "debug_id": "f3b1d2a1b1c1"
        })))
        .expect(1)
        .mount(&server)
        .await;

    let result = gateway(&server).charge(&charge_request("k", usd(1999), ORDER)).await;

    assert!(matches!(result, Err(GatewayError::Declined(DeclineReason::CardDeclined))), "{result:?}");
}

#[tokio::test]
async fn a_declined_capture_is_a_decline() {
    let server = MockServer::start().await;
    mount_token(&server, 32_400).await;
    mount_order(&server, order("APPROVED", "19.99", None, json!([]))).await;
    Mock::given(method("POST"))
        .and(path(capture_path()))
        .respond_with(ResponseTemplate::new(201).set_body_json(order(
            "COMPLETED",
            "19.99",
            Some("DECLINED"),
            json!([]),
        )))
        .mount(&server)
        .await;

    let result = gateway(&server).charge(&charge_request("k", usd(1999), ORDER)).await;

    assert!(matches!(result, Err(GatewayError::Declined(DeclineReason::CardDeclined))), "{result:?}");
}

#[tokio::test]
async fn an_order_captured_already_is_read_back() {
    let server = MockServer::start().await;
    mount_token(&server, 32_400).await;
    // Approved when first read, captured by then (a concurrent attempt).
    Mock::given(method("GET"))
        .and(path(format!("/v2/checkout/orders/{ORDER}")))
        .respond_with(ResponseTemplate::new(200).set_body_json(order("APPROVED", "19.99", None, json!([]))))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    mount_order(&server, order("COMPLETED", "19.99", Some("COMPLETED"), json!([]))).await;
    Mock::given(method("POST"))
        .and(path(capture_path()))
        .respond_with(ResponseTemplate::new(422).set_body_json(json!({
            "name": "UNPROCESSABLE_ENTITY",
            "details": [{ "issue": "ORDER_ALREADY_CAPTURED", "description": "Order already captured." }]
        })))
        .mount(&server)
        .await;

    let seen = gateway(&server).charge(&charge_request("k", usd(1999), ORDER)).await.unwrap();

    assert_eq!(seen.state, ProviderState::Succeeded);
    assert_eq!(requests_to(&server, &format!("/v2/checkout/orders/{ORDER}")).await.len(), 2);
}

#[tokio::test]
async fn other_refusals_are_rejected() {
    let server = MockServer::start().await;
    mount_token(&server, 32_400).await;
    mount_order(&server, order("CREATED", "19.99", None, json!([]))).await;
    Mock::given(method("POST"))
        .and(path(capture_path()))
        .respond_with(ResponseTemplate::new(422).set_body_json(json!({
            "name": "UNPROCESSABLE_ENTITY",
            "details": [{ "issue": "ORDER_NOT_APPROVED", "description": "Payer has not yet approved the Order." }]
        })))
        .mount(&server)
        .await;

    let result = gateway(&server).charge(&charge_request("k", usd(1999), ORDER)).await;

    assert!(matches!(&result, Err(GatewayError::Rejected(m)) if m.starts_with("ORDER_NOT_APPROVED")), "{result:?}");
}

#[tokio::test]
async fn an_order_for_another_amount_is_refused_without_capturing() {
    let server = MockServer::start().await;
    mount_token(&server, 32_400).await;
    mount_order(&server, order("APPROVED", "1.00", None, json!([]))).await;
    Mock::given(method("POST"))
        .and(path(capture_path()))
        .respond_with(ResponseTemplate::new(201))
        .expect(0)
        .mount(&server)
        .await;

    let result = gateway(&server).charge(&charge_request("k", usd(1999), ORDER)).await;

    assert!(matches!(result, Err(GatewayError::Rejected(_))), "{result:?}");
    assert!(requests_to(&server, &capture_path()).await.is_empty());
}

#[tokio::test]
async fn an_order_in_another_currency_is_refused_without_capturing() {
    let server = MockServer::start().await;
    mount_token(&server, 32_400).await;
    let mut body = order("APPROVED", "19.99", None, json!([]));
    body["purchase_units"][0]["amount"]["currency_code"] = json!("EUR");
    mount_order(&server, body).await;

    let result = gateway(&server).charge(&charge_request("k", usd(1999), ORDER)).await;

    assert!(matches!(result, Err(GatewayError::Rejected(_))), "{result:?}");
    assert!(requests_to(&server, &capture_path()).await.is_empty());
}

#[tokio::test]
async fn a_slow_paypal_is_unavailable_after_every_attempt_with_the_same_request_id() {
    let server = MockServer::start().await;
    mount_token(&server, 32_400).await;
    mount_order(&server, order("APPROVED", "19.99", None, json!([]))).await;
    Mock::given(method("POST"))
        .and(path(capture_path()))
        .respond_with(
            ResponseTemplate::new(201)
                .set_body_json(order("COMPLETED", "19.99", Some("COMPLETED"), json!([])))
                .set_delay(Duration::from_secs(3)),
        )
        .mount(&server)
        .await;

    let result = gateway(&server).charge(&charge_request("order-slow", usd(1999), ORDER)).await;

    assert!(matches!(&result, Err(GatewayError::Unavailable(m)) if m.contains("timed out")), "{result:?}");
    let sent = requests_to(&server, &capture_path()).await;
    assert_eq!(sent.len(), 3);
    assert!(sent.iter().all(|r| crate::support::header(r, "paypal-request-id").as_deref() == Some("order-slow")));
}

/// PayPal behind a flaky network: one capture per request id, but the first answer is lost.
#[derive(Clone, Default)]
struct LostFirstAnswer {
    captures: Arc<Mutex<HashMap<String, u32>>>,
}

impl Respond for LostFirstAnswer {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let id = crate::support::header(request, "paypal-request-id").unwrap_or_default();
        let mut captures = self.captures.lock().unwrap();
        if captures.contains_key(&id) {
            return ResponseTemplate::new(201).set_body_json(order("COMPLETED", "19.99", Some("COMPLETED"), json!([])));
        }
        captures.insert(id, 1);
        ResponseTemplate::new(503).set_body_json(json!({"name": "SERVICE_UNAVAILABLE"}))
    }
}

#[tokio::test]
async fn a_server_error_is_retried_with_the_same_request_id_and_captures_once() {
    let server = MockServer::start().await;
    mount_token(&server, 32_400).await;
    mount_order(&server, order("APPROVED", "19.99", None, json!([]))).await;
    let paypal_side = LostFirstAnswer::default();
    Mock::given(method("POST")).and(path(capture_path())).respond_with(paypal_side.clone()).mount(&server).await;

    let seen = gateway(&server).charge(&charge_request("order-7-charge", usd(1999), ORDER)).await.unwrap();

    assert_eq!(seen.state, ProviderState::Succeeded);
    let sent = requests_to(&server, &capture_path()).await;
    assert_eq!(sent.len(), 2);
    let ids: Vec<_> = sent.iter().map(|r| crate::support::header(r, "paypal-request-id")).collect();
    assert_eq!(ids, vec![Some("order-7-charge".to_owned()), Some("order-7-charge".to_owned())]);
    assert_eq!(paypal_side.captures.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn capture_is_the_same_capture_call() {
    let server = MockServer::start().await;
    mount_token(&server, 32_400).await;
    Mock::given(method("POST"))
        .and(path(capture_path()))
        .and(header("paypal-request-id", "capture-key"))
        .respond_with(ResponseTemplate::new(201).set_body_json(order(
            "COMPLETED",
            "19.99",
            Some("COMPLETED"),
            json!([]),
        )))
        .expect(1)
        .mount(&server)
        .await;

    let seen = gateway(&server).capture(ORDER, "capture-key").await.unwrap();

    assert_eq!(seen.state, ProviderState::Succeeded);
}

fn refund_path() -> String {
    format!("/v2/payments/captures/{CAPTURE}/refund")
}

/// A refund of 5.00 USD under the key `refund-1`.
fn refund_of_5_usd() -> RefundRequest {
    RefundRequest { idempotency_key: "refund-1".into(), reference: ORDER.into(), amount: usd(500), reason: None }
}

/// PayPal's answer to a refund it made.
fn refund_made() -> ResponseTemplate {
    ResponseTemplate::new(201).set_body_json(json!({
        "id": "1JU08902781691411", "status": "COMPLETED",
        "amount": { "value": "5.00", "currency_code": "USD" }
    }))
}

#[tokio::test]
async fn a_partial_refund_goes_to_the_orders_capture() {
    let server = MockServer::start().await;
    mount_token(&server, 32_400).await;
    mount_order(&server, order("COMPLETED", "19.99", Some("COMPLETED"), json!([]))).await;
    let refund_path = refund_path();
    Mock::given(method("POST"))
        .and(path(refund_path.as_str()))
        .and(header("paypal-request-id", "refund-1"))
        .respond_with(refund_made())
        .expect(1)
        .mount(&server)
        .await;
    let request = refund_of_5_usd();

    let refund = gateway(&server).refund(&request).await.unwrap();

    assert_eq!(refund.reference, "1JU08902781691411");
    assert_eq!(refund.status, RefundStatus::Succeeded);
    let sent: serde_json::Value = requests_to(&server, &refund_path).await[0].body_json().unwrap();
    assert_eq!(sent, json!({ "amount": { "value": "5.00", "currency_code": "USD" } }));
}

/// PayPal's answer while an earlier request with the same `PayPal-Request-Id` still runs.
fn previous_request_in_progress() -> ResponseTemplate {
    ResponseTemplate::new(409).set_body_json(json!({
        "name": "RESOURCE_CONFLICT",
        "message": "The server has detected a conflict while processing this request.",
        "details": [{ "issue": "PREVIOUS_REQUEST_IN_PROGRESS",
                      "description": "A previous request on this resource is currently in progress." }],
    }))
}

#[tokio::test]
async fn a_refund_asked_while_its_first_request_still_runs_is_asked_again_not_refused() {
    let server = MockServer::start().await;
    mount_token(&server, 32_400).await;
    mount_order(&server, order("COMPLETED", "19.99", Some("COMPLETED"), json!([]))).await;
    let refund_path = refund_path();
    Mock::given(method("POST"))
        .and(path(refund_path.as_str()))
        .respond_with(previous_request_in_progress())
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(refund_path.as_str()))
        .and(header("paypal-request-id", "refund-1"))
        .respond_with(refund_made())
        .mount(&server)
        .await;
    let request = refund_of_5_usd();

    let refund = gateway(&server).refund(&request).await.unwrap();

    assert_eq!((refund.reference.as_str(), refund.status), ("1JU08902781691411", RefundStatus::Succeeded));
    let ids: Vec<_> = requests_to(&server, &refund_path)
        .await
        .iter()
        .map(|r| crate::support::header(r, "paypal-request-id"))
        .collect();
    assert_eq!(ids, vec![Some("refund-1".to_owned()), Some("refund-1".to_owned())]);
}

#[tokio::test]
async fn a_capture_still_in_progress_after_every_attempt_is_unavailable_not_declined() {
    let server = MockServer::start().await;
    mount_token(&server, 32_400).await;
    mount_order(&server, order("APPROVED", "19.99", None, json!([]))).await;
    Mock::given(method("POST"))
        .and(path(capture_path()))
        .respond_with(previous_request_in_progress())
        .mount(&server)
        .await;

    let err = gateway(&server).charge(&charge_request("order-7-charge", usd(1999), ORDER)).await.unwrap_err();

    assert!(matches!(err, GatewayError::Unavailable(_)), "{err:?}");
    assert_eq!(requests_to(&server, &capture_path()).await.len(), 3);
}

#[tokio::test]
async fn a_pending_refund_is_pending() {
    let server = MockServer::start().await;
    mount_token(&server, 32_400).await;
    mount_order(&server, order("COMPLETED", "19.99", Some("COMPLETED"), json!([]))).await;
    Mock::given(method("POST"))
        .and(path(format!("/v2/payments/captures/{CAPTURE}/refund")))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": "R2", "status": "PENDING"})))
        .mount(&server)
        .await;
    let request =
        RefundRequest { idempotency_key: "r".into(), reference: ORDER.into(), amount: usd(500), reason: None };

    assert_eq!(gateway(&server).refund(&request).await.unwrap().status, RefundStatus::Pending);
}

#[tokio::test]
async fn an_order_without_capture_cannot_be_refunded() {
    let server = MockServer::start().await;
    mount_token(&server, 32_400).await;
    mount_order(&server, order("APPROVED", "19.99", None, json!([]))).await;
    let request =
        RefundRequest { idempotency_key: "r".into(), reference: ORDER.into(), amount: usd(500), reason: None };

    let result = gateway(&server).refund(&request).await;

    assert!(matches!(result, Err(GatewayError::Rejected(_))), "{result:?}");
}

#[tokio::test]
async fn retrieve_sums_the_completed_refunds() {
    let server = MockServer::start().await;
    mount_token(&server, 32_400).await;
    let refunds = json!([
        { "id": "R1", "status": "COMPLETED", "amount": { "currency_code": "USD", "value": "5.00" } },
        { "id": "R2", "status": "PENDING", "amount": { "currency_code": "USD", "value": "1.00" } },
        { "id": "R3", "status": "COMPLETED", "amount": { "currency_code": "USD", "value": "2.49" } }
    ]);
    mount_order(&server, order("COMPLETED", "19.99", Some("PARTIALLY_REFUNDED"), refunds)).await;

    let seen = gateway(&server).retrieve(ORDER).await.unwrap();

    assert_eq!(seen.state, ProviderState::Succeeded);
    assert_eq!(seen.amount, usd(1999));
    assert_eq!(seen.refunded, usd(749));
}

#[tokio::test]
async fn retrieve_maps_waiting_and_voided_orders() {
    for (status, expected) in [("APPROVED", ProviderState::Processing), ("VOIDED", ProviderState::Canceled)] {
        let server = MockServer::start().await;
        mount_token(&server, 32_400).await;
        mount_order(&server, order(status, "19.99", None, json!([]))).await;

        assert_eq!(gateway(&server).retrieve(ORDER).await.unwrap().state, expected);
    }
}

#[tokio::test]
async fn the_access_token_is_fetched_once_for_two_calls() {
    let server = MockServer::start().await;
    mount_token(&server, 32_400).await;
    mount_order(&server, order("APPROVED", "19.99", None, json!([]))).await;
    let paypal = gateway(&server);

    paypal.retrieve(ORDER).await.unwrap();
    paypal.retrieve(ORDER).await.unwrap();

    assert_eq!(requests_to(&server, TOKEN_PATH).await.len(), 1);
    assert_eq!(requests_to(&server, &format!("/v2/checkout/orders/{ORDER}")).await.len(), 2);
}

#[tokio::test]
async fn a_token_about_to_expire_is_renewed() {
    let server = MockServer::start().await;
    // Expires at once: renewed before each call.
    mount_token(&server, 0).await;
    mount_order(&server, order("APPROVED", "19.99", None, json!([]))).await;
    let paypal = gateway(&server);

    paypal.retrieve(ORDER).await.unwrap();
    paypal.retrieve(ORDER).await.unwrap();

    assert_eq!(requests_to(&server, TOKEN_PATH).await.len(), 2);
}

#[tokio::test]
async fn a_refused_token_is_dropped_and_the_call_made_once_more() {
    let server = MockServer::start().await;
    mount_token(&server, 32_400).await;
    Mock::given(method("GET"))
        .and(path(format!("/v2/checkout/orders/{ORDER}")))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({"error": "invalid_token"})))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    mount_order(&server, order("APPROVED", "19.99", None, json!([]))).await;

    let seen = gateway(&server).retrieve(ORDER).await.unwrap();

    assert_eq!(seen.state, ProviderState::Processing);
    assert_eq!(requests_to(&server, TOKEN_PATH).await.len(), 2);
}

#[tokio::test]
async fn a_token_refused_twice_is_not_configured() {
    let server = MockServer::start().await;
    mount_token(&server, 32_400).await;
    Mock::given(method("GET"))
        .and(path(format!("/v2/checkout/orders/{ORDER}")))
        .respond_with(ResponseTemplate::new(401))
        .expect(2)
        .mount(&server)
        .await;

    let result = gateway(&server).retrieve(ORDER).await;

    assert!(matches!(result, Err(GatewayError::NotConfigured(_))), "{result:?}");
}

#[tokio::test]
async fn refused_client_credentials_are_not_configured() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(TOKEN_PATH))
        .respond_with(
            ResponseTemplate::new(401)
                .set_body_json(json!({"error": "invalid_client", "error_description": "Client Authentication failed"})),
        )
        .expect(1)
        .mount(&server)
        .await;

    let err = gateway(&server).retrieve(ORDER).await.unwrap_err();

    assert!(matches!(err, GatewayError::NotConfigured(_)), "{err:?}");
    assert!(!err.to_string().contains(CLIENT_SECRET));
}

#[tokio::test]
async fn an_unknown_order_is_rejected() {
    let server = MockServer::start().await;
    mount_token(&server, 32_400).await;
    Mock::given(method("GET"))
        .and(path("/v2/checkout/orders/NOPE"))
        .respond_with(ResponseTemplate::new(404).set_body_json(json!({
            "name": "RESOURCE_NOT_FOUND",
            "details": [{ "issue": "INVALID_RESOURCE_ID", "description": "Specified resource ID does not exist." }]
        })))
        .mount(&server)
        .await;

    let result = gateway(&server).charge(&charge_request("k", usd(1999), "NOPE")).await;

    assert!(matches!(result, Err(GatewayError::Rejected(_))), "{result:?}");
}

#[tokio::test]
async fn the_gateway_is_paypals() {
    let server = MockServer::start().await;
    assert_eq!(gateway(&server).provider(), Provider::PayPal);
}

#[tokio::test]
async fn callers_right_after_a_failed_token_fetch_fail_at_once_without_fetching_again() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(TOKEN_PATH))
        .respond_with(ResponseTemplate::new(503))
        .expect(3) // one fetch: its three attempts
        .mount(&server)
        .await;
    let gateway = gateway(&server);

    let first = gateway.retrieve(ORDER).await.unwrap_err();
    let (second, third) = tokio::join!(gateway.retrieve(ORDER), gateway.retrieve(ORDER));

    assert!(matches!(first, GatewayError::Unavailable(_)), "{first:?}");
    for err in [second.unwrap_err(), third.unwrap_err()] {
        assert!(matches!(err, GatewayError::Unavailable(_)), "{err:?}");
    }
}
