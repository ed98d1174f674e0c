//! Stripe against a local fake of its API.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ecom_gateways::{StripeConfig, StripeGateway};
use ecom_kernel::{Currency, Money, Secret};
use ecom_payments::model::{DeclineReason, Provider, ProviderState, RefundStatus};
use ecom_payments::ports::{GatewayError, PaymentGateway, RefundRequest};
use serde_json::json;
use wiremock::matchers::{header, method, path, query_param};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::support::{charge_request, form, requests_to};

const SECRET_KEY: &str = "sk_test_51Secret";

fn usd(amount: i64) -> Money {
    Money::new(amount, Currency::USD)
}

fn gateway(server: &MockServer) -> StripeGateway {
    StripeGateway::new(StripeConfig {
        api_base: server.uri(),
        secret_key: Secret::new(SECRET_KEY.to_owned()),
        timeout: Duration::from_millis(300),
        max_attempts: 3,
        retry_backoff: Duration::from_millis(10),
    })
    .unwrap()
}

fn intent(id: &str, status: &str, amount: i64) -> serde_json::Value {
    json!({
        "id": id,
        "object": "payment_intent",
        "amount": amount,
        "currency": "usd",
        "status": status,
        "latest_charge": "ch_1",
        "last_payment_error": null
    })
}

fn card_error(code: &str, decline_code: Option<&str>) -> serde_json::Value {
    json!({ "error": {
        "type": "card_error",
        "code": code,
        "decline_code": decline_code,
        "message": "Your card was declined.",
        "payment_intent": intent("pi_declined", "requires_payment_method", 1999)
    }})
}

#[tokio::test]
async fn a_succeeded_payment_intent_is_a_successful_charge() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/payment_intents"))
        .and(header("authorization", format!("Bearer {SECRET_KEY}").as_str()))
        .and(header("idempotency-key", "order-1-charge"))
        .respond_with(ResponseTemplate::new(200).set_body_json(intent("pi_123", "succeeded", 1999)))
        .expect(1)
        .mount(&server)
        .await;
    let request = charge_request("order-1-charge", usd(1999), "pm_card_visa");

    let seen = gateway(&server).charge(&request).await.unwrap();

    assert_eq!(seen.reference, "pi_123");
    assert_eq!(seen.state, ProviderState::Succeeded);
    assert_eq!(seen.amount, usd(1999));
    assert_eq!(seen.refunded, usd(0));
    let sent = form(&requests_to(&server, "/v1/payment_intents").await[0]);
    assert_eq!(sent["amount"], "1999");
    assert_eq!(sent["currency"], "usd");
    assert_eq!(sent["payment_method"], "pm_card_visa");
    assert_eq!(sent["confirm"], "true");
    assert_eq!(sent["automatic_payment_methods[enabled]"], "true");
    assert_eq!(sent["automatic_payment_methods[allow_redirects]"], "never");
    assert_eq!(sent["error_on_requires_action"], "true");
    assert_eq!(sent["metadata[order_id]"], request.order_id.to_string());
    assert_eq!(sent["metadata[payment_id]"], request.payment_id.to_string());
}

#[tokio::test]
async fn a_payment_intent_awaiting_capture_is_authorized() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/payment_intents"))
        .respond_with(ResponseTemplate::new(200).set_body_json(intent("pi_auth", "requires_capture", 500)))
        .mount(&server)
        .await;

    let seen = gateway(&server).charge(&charge_request("k", usd(500), "pm_card_visa")).await.unwrap();

    assert_eq!(seen.state, ProviderState::Authorized);
}

#[tokio::test]
async fn a_card_error_is_a_decline_with_its_reason() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/payment_intents"))
        .respond_with(ResponseTemplate::new(402).set_body_json(card_error("card_declined", Some("insufficient_funds"))))
        .expect(1)
        .mount(&server)
        .await;

    let result = gateway(&server).charge(&charge_request("k", usd(1999), "pm_card_visa")).await;

    assert!(matches!(result, Err(GatewayError::Declined(DeclineReason::InsufficientFunds))), "{result:?}");
}

#[tokio::test]
async fn a_card_error_without_decline_code_is_read_from_its_code() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/payment_intents"))
        .respond_with(ResponseTemplate::new(402).set_body_json(card_error("expired_card", None)))
        .mount(&server)
        .await;

    let result = gateway(&server).charge(&charge_request("k", usd(1999), "pm_card_visa")).await;

    assert!(matches!(result, Err(GatewayError::Declined(DeclineReason::ExpiredCard))), "{result:?}");
}

#[tokio::test]
async fn a_card_that_asks_for_3d_secure_is_declined_not_left_waiting() {
    let server = MockServer::start().await;
    // What Stripe answers to error_on_requires_action=true for such a card.
    Mock::given(method("POST"))
        .and(path("/v1/payment_intents"))
        .respond_with(ResponseTemplate::new(402).set_body_json(card_error("authentication_required", None)))
        .mount(&server)
        .await;

    let result = gateway(&server).charge(&charge_request("k", usd(1999), "pm_card_threeDSecure2Required")).await;

    assert!(
        matches!(&result, Err(GatewayError::Declined(DeclineReason::Other(code))) if code == "authentication_required"),
        "{result:?}"
    );
}

#[tokio::test]
async fn an_invalid_request_is_rejected_with_stripes_message() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/payment_intents"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({"error": {
            "type": "invalid_request_error", "code": "resource_missing",
            "message": "No such PaymentMethod: 'pm_nope'"
        }})))
        .expect(1)
        .mount(&server)
        .await;

    let result = gateway(&server).charge(&charge_request("k", usd(1999), "pm_nope")).await;

    assert!(matches!(&result, Err(GatewayError::Rejected(m)) if m == "No such PaymentMethod: 'pm_nope'"), "{result:?}");
}

#[tokio::test]
async fn a_refused_secret_key_is_not_configured_and_never_echoed() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/payment_intents"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({"error": {
            "type": "invalid_request_error",
            "message": format!("Invalid API Key provided: {SECRET_KEY}")
        }})))
        .mount(&server)
        .await;

    let err = gateway(&server).charge(&charge_request("k", usd(1999), "pm_card_visa")).await.unwrap_err();

    assert!(matches!(err, GatewayError::NotConfigured(_)), "{err:?}");
    assert!(!err.to_string().contains(SECRET_KEY));
}

#[tokio::test]
async fn an_empty_secret_key_is_not_configured_without_calling_stripe() {
    let server = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(200)).expect(0).mount(&server).await;
    let stripe =
        StripeGateway::new(StripeConfig { api_base: server.uri(), ..StripeConfig::new(Secret::new(String::new())) })
            .unwrap();

    let result = stripe.charge(&charge_request("k", usd(1999), "pm_card_visa")).await;

    assert!(matches!(result, Err(GatewayError::NotConfigured(_))), "{result:?}");
}

#[tokio::test]
async fn a_slow_stripe_is_unavailable_after_every_attempt_with_the_same_key() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/payment_intents"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(intent("pi_late", "succeeded", 1999))
                .set_delay(Duration::from_secs(3)),
        )
        .mount(&server)
        .await;

    let result = gateway(&server).charge(&charge_request("order-slow", usd(1999), "pm_card_visa")).await;

    assert!(matches!(&result, Err(GatewayError::Unavailable(m)) if m.contains("timed out")), "{result:?}");
    let sent = requests_to(&server, "/v1/payment_intents").await;
    assert_eq!(sent.len(), 3);
    assert!(sent.iter().all(|r| crate::support::header(r, "idempotency-key").as_deref() == Some("order-slow")));
}

#[tokio::test]
async fn rate_limits_and_server_errors_end_unavailable_when_they_persist() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/payment_intents"))
        .respond_with(ResponseTemplate::new(429))
        .expect(3)
        .mount(&server)
        .await;

    let result = gateway(&server).charge(&charge_request("k", usd(1999), "pm_card_visa")).await;

    assert!(matches!(result, Err(GatewayError::Unavailable(_))), "{result:?}");
}

/// Stripe behind a flaky network: it charges once per idempotency key, but the answer to the
/// first request is lost (a 500); a request with the same key gets the charge replayed.
#[derive(Clone, Default)]
struct LostFirstAnswer {
    charges: Arc<Mutex<HashMap<String, String>>>,
}

impl Respond for LostFirstAnswer {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let key = crate::support::header(request, "idempotency-key").unwrap_or_default();
        let mut charges = self.charges.lock().unwrap();
        if let Some(id) = charges.get(&key) {
            return ResponseTemplate::new(200).set_body_json(intent(id, "succeeded", 1999));
        }
        let id = format!("pi_{}", charges.len() + 1);
        charges.insert(key, id);
        ResponseTemplate::new(500).set_body_json(json!({"error": {"type": "api_error", "message": "oops"}}))
    }
}

#[tokio::test]
async fn a_server_error_is_retried_with_the_same_idempotency_key_and_charges_once() {
    let server = MockServer::start().await;
    let stripe_side = LostFirstAnswer::default();
    Mock::given(method("POST")).and(path("/v1/payment_intents")).respond_with(stripe_side.clone()).mount(&server).await;

    let seen = gateway(&server).charge(&charge_request("order-7-charge", usd(1999), "pm_card_visa")).await.unwrap();

    assert_eq!(seen.reference, "pi_1");
    assert_eq!(seen.state, ProviderState::Succeeded);
    let sent = requests_to(&server, "/v1/payment_intents").await;
    assert_eq!(sent.len(), 2);
    let keys: Vec<_> = sent.iter().map(|r| crate::support::header(r, "idempotency-key")).collect();
    assert_eq!(keys, vec![Some("order-7-charge".to_owned()), Some("order-7-charge".to_owned())]);
    assert_eq!(form(&sent[0]), form(&sent[1]));
    assert_eq!(stripe_side.charges.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn an_idempotency_key_in_use_is_retried() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/payment_intents"))
        .respond_with(ResponseTemplate::new(409).set_body_json(json!({"error": {
            "type": "idempotency_error", "code": "idempotency_key_in_use", "message": "in use"
        }})))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/payment_intents"))
        .respond_with(ResponseTemplate::new(200).set_body_json(intent("pi_9", "succeeded", 1999)))
        .mount(&server)
        .await;

    let seen = gateway(&server).charge(&charge_request("k", usd(1999), "pm_card_visa")).await.unwrap();

    assert_eq!(seen.reference, "pi_9");
    assert_eq!(requests_to(&server, "/v1/payment_intents").await.len(), 2);
}

#[tokio::test]
async fn capture_posts_to_the_payment_intent_with_the_key() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/payment_intents/pi_auth/capture"))
        .and(header("idempotency-key", "capture-1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(intent("pi_auth", "succeeded", 500)))
        .expect(1)
        .mount(&server)
        .await;

    let seen = gateway(&server).capture("pi_auth", "capture-1").await.unwrap();

    assert_eq!(seen.state, ProviderState::Succeeded);
}

#[tokio::test]
async fn a_reference_that_would_change_the_path_is_rejected() {
    let server = MockServer::start().await;

    let result = gateway(&server).retrieve("pi_1/../../v1/customers").await;

    assert!(matches!(result, Err(GatewayError::Rejected(_))), "{result:?}");
    assert!(server.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_partial_refund_succeeds() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/refunds"))
        .and(header("idempotency-key", "refund-1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "re_1", "object": "refund", "amount": 500, "currency": "usd",
            "payment_intent": "pi_123", "status": "succeeded"
        })))
        .expect(1)
        .mount(&server)
        .await;
    let request = RefundRequest {
        idempotency_key: "refund-1".into(),
        reference: "pi_123".into(),
        amount: usd(500),
        reason: Some("damaged".into()),
    };

    let refund = gateway(&server).refund(&request).await.unwrap();

    assert_eq!(refund.reference, "re_1");
    assert_eq!(refund.status, RefundStatus::Succeeded);
    let sent = form(&requests_to(&server, "/v1/refunds").await[0]);
    assert_eq!(sent["payment_intent"], "pi_123");
    assert_eq!(sent["amount"], "500");
    assert_eq!(sent["metadata[reason]"], "damaged");
}

#[tokio::test]
async fn a_pending_refund_is_pending_and_a_failed_one_rejected() {
    for (status, expected) in
        [("pending", Some(RefundStatus::Pending)), ("requires_action", Some(RefundStatus::Pending)), ("failed", None)]
    {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/v1/refunds"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "re_2", "status": status})))
            .mount(&server)
            .await;
        let request =
            RefundRequest { idempotency_key: "r".into(), reference: "pi_1".into(), amount: usd(100), reason: None };

        let result = gateway(&server).refund(&request).await;

        match expected {
            Some(expected) => assert_eq!(result.unwrap().status, expected),
            None => assert!(matches!(result, Err(GatewayError::Rejected(_))), "{result:?}"),
        }
    }
}

#[tokio::test]
async fn retrieve_reads_the_amount_and_the_refunded_total() {
    let server = MockServer::start().await;
    let mut body = intent("pi_123", "succeeded", 1999);
    body["latest_charge"] = json!({"id": "ch_1", "object": "charge", "amount": 1999, "amount_refunded": 700});
    Mock::given(method("GET"))
        .and(path("/v1/payment_intents/pi_123"))
        .and(query_param("expand[]", "latest_charge"))
        .respond_with(ResponseTemplate::new(200).set_body_json(body))
        .expect(1)
        .mount(&server)
        .await;

    let seen = gateway(&server).retrieve("pi_123").await.unwrap();

    assert_eq!(seen.state, ProviderState::Succeeded);
    assert_eq!(seen.amount, usd(1999));
    assert_eq!(seen.refunded, usd(700));
    assert_eq!(seen.payment_id, None, "no metadata: no payment of the shop named");
}

#[tokio::test]
async fn retrieve_reads_the_shops_payment_id_from_the_metadata_it_was_created_with() {
    let server = MockServer::start().await;
    let payment = ecom_payments::model::PaymentId::new();
    for (metadata, named) in [
        (json!({"order_id": "o", "payment_id": payment.to_string()}), Some(payment)),
        // Another integration's intent on the same account.
        (json!({"payment_id": "not-an-id"}), None),
    ] {
        let mut body = intent("pi_meta", "succeeded", 1999);
        body["metadata"] = metadata;
        let mock = Mock::given(method("GET"))
            .and(path("/v1/payment_intents/pi_meta"))
            .respond_with(ResponseTemplate::new(200).set_body_json(body))
            .mount_as_scoped(&server)
            .await;
        assert_eq!(gateway(&server).retrieve("pi_meta").await.unwrap().payment_id, named);
        drop(mock);
    }
}

#[tokio::test]
async fn retrieve_reads_a_failed_payment_with_its_decline_reason() {
    let server = MockServer::start().await;
    let mut body = intent("pi_f", "requires_payment_method", 1999);
    body["latest_charge"] = serde_json::Value::Null;
    body["last_payment_error"] = json!({"type": "card_error", "code": "card_declined", "decline_code": "expired_card"});
    Mock::given(method("GET"))
        .and(path("/v1/payment_intents/pi_f"))
        .respond_with(ResponseTemplate::new(200).set_body_json(body))
        .mount(&server)
        .await;

    let seen = gateway(&server).retrieve("pi_f").await.unwrap();

    assert_eq!(seen.state, ProviderState::Failed(DeclineReason::ExpiredCard));
    assert_eq!(seen.refunded, usd(0));
}

#[tokio::test]
async fn an_answer_that_cannot_be_read_is_unavailable_not_a_refusal() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/payment_intents/pi_x"))
        .respond_with(ResponseTemplate::new(200).set_body_string("<html>proxy</html>"))
        .mount(&server)
        .await;

    let result = gateway(&server).retrieve("pi_x").await;

    assert!(matches!(result, Err(GatewayError::Unavailable(_))), "{result:?}");
}

#[tokio::test]
async fn the_gateway_is_stripes() {
    let server = MockServer::start().await;
    assert_eq!(gateway(&server).provider(), Provider::Stripe);
}
