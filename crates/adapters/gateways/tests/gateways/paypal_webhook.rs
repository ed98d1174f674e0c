//! PayPal's webhooks, verified by (a local fake of) PayPal's verification API.

use std::time::Duration;

use ecom_gateways::{PayPalClient, PayPalConfig, PayPalGateway, PayPalWebhookVerifier};
use ecom_kernel::{InfraErrorKind, Secret};
use ecom_payments::model::{EventKind, Provider};
use ecom_payments::ports::{PaymentGateway, WebhookError, WebhookRequest, WebhookVerifier};
use serde_json::json;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::paypal::{client, mount_token, ACCESS_TOKEN};
use crate::support::requests_to;

const VERIFY_PATH: &str = "/v1/notifications/verify-webhook-signature";
const WEBHOOK_ID: &str = "1JE4291016473214C";

/// A capture event as PayPal sends it; keys deliberately out of alphabetical order.
const BODY: &str = r#"{"id":"WH-58D329510W468432D-8HN650336L201105X","event_version":"1.0","create_time":"2019-02-14T21:50:07.940Z","resource_type":"capture","resource_version":"2.0","summary":"Payment completed for $ 19.99 USD","resource":{"supplementary_data":{"related_ids":{"order_id":"5O190127TN364715T"}},"id":"3C679366HH908993F","status":"COMPLETED","amount":{"value":"19.99","currency_code":"USD"}},"event_type":"PAYMENT.CAPTURE.COMPLETED"}"#;

fn request() -> WebhookRequest {
    WebhookRequest {
        headers: vec![
            ("paypal-transmission-id".into(), "69cd13f0-d67a-11e5-baa3-778b53f4ae55".into()),
            ("paypal-transmission-time".into(), "2016-02-18T20:01:35Z".into()),
            ("paypal-transmission-sig".into(), "lmI95Jx3Y9nhR5SJWlHVIWpg4AgFk7n9bCHSRxbrd8A9zrhdu2rMyFrmz+Zjh3s3boXB07VXCXUZy/UFzUlnGJn0wDugt7FlSvdKeIJenLRemUxYCPVoEZzg9VFNqOa48gMkvF+XTpxBeUx/kWy6B5cp7GkT2+pOowfRK7OaynuxUoKW3JcMWw272VKjLTtTAShncla7tGF+55rxyt2KNZIIqxNMJ48RDZheGU5w1npu9dZHnPgTXB9iomeVRoD8O/jhRpnKsGrDschyNdkeh81BJJMH4Ctc6lnCCquoP/GzCzz33MMsNdid7vL/NIWaCsekQpW26FpWPi/tfj8nLA==".into()),
            ("paypal-cert-url".into(), "https://api.sandbox.paypal.com/v1/notifications/certs/CERT-360caa42-fca2a594-a5cafa77".into()),
            ("paypal-auth-algo".into(), "SHA256withRSA".into()),
        ],
        body: BODY.as_bytes().to_vec(),
    }
}

async fn mount_verdict(server: &MockServer, status: &str) {
    Mock::given(method("POST"))
        .and(path(VERIFY_PATH))
        .and(header("authorization", format!("Bearer {ACCESS_TOKEN}").as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "verification_status": status })))
        .mount(server)
        .await;
}

#[tokio::test]
async fn a_verified_event_is_accepted() {
    let server = MockServer::start().await;
    mount_token(&server, 32_400).await;
    mount_verdict(&server, "SUCCESS").await;
    let verifier = PayPalWebhookVerifier::new(client(&server), Some(WEBHOOK_ID.into()));

    let event = verifier.verify(&request()).await.unwrap();

    assert_eq!(event.provider, Provider::PayPal);
    assert_eq!(event.event_id, "WH-58D329510W468432D-8HN650336L201105X");
    assert_eq!(event.kind, EventKind::PaymentSucceeded);
    assert_eq!(event.provider_type, "PAYMENT.CAPTURE.COMPLETED");
    assert_eq!(event.reference.as_deref(), Some("5O190127TN364715T"));
    let asked = &requests_to(&server, VERIFY_PATH).await[0];
    let sent: serde_json::Value = asked.body_json().unwrap();
    assert_eq!(sent["auth_algo"], "SHA256withRSA");
    assert_eq!(sent["cert_url"], request().header("paypal-cert-url").unwrap());
    assert_eq!(sent["transmission_id"], "69cd13f0-d67a-11e5-baa3-778b53f4ae55");
    assert_eq!(sent["transmission_sig"], request().header("paypal-transmission-sig").unwrap());
    assert_eq!(sent["transmission_time"], "2016-02-18T20:01:35Z");
    assert_eq!(sent["webhook_id"], WEBHOOK_ID);
    // The event goes to PayPal exactly as it came (PayPal checks the signature over it).
    assert!(String::from_utf8(asked.body.clone()).unwrap().contains(&format!(r#""webhook_event":{BODY}"#)));
}

#[tokio::test]
async fn a_failed_verification_is_a_bad_signature() {
    let server = MockServer::start().await;
    mount_token(&server, 32_400).await;
    mount_verdict(&server, "FAILURE").await;
    let verifier = PayPalWebhookVerifier::new(client(&server), Some(WEBHOOK_ID.into()));

    let result = verifier.verify(&request()).await;

    assert!(matches!(result, Err(WebhookError::BadSignature(_))), "{result:?}");
}

#[tokio::test]
async fn missing_headers_are_refused_without_asking_paypal() {
    let server = MockServer::start().await;
    mount_token(&server, 32_400).await;
    mount_verdict(&server, "SUCCESS").await;
    let verifier = PayPalWebhookVerifier::new(client(&server), Some(WEBHOOK_ID.into()));
    for missing in [
        "paypal-transmission-id",
        "paypal-transmission-time",
        "paypal-transmission-sig",
        "paypal-cert-url",
        "paypal-auth-algo",
    ] {
        let mut request = request();
        request.headers.retain(|(name, _)| name != missing);

        let result = verifier.verify(&request).await;

        assert!(matches!(result, Err(WebhookError::BadSignature(_))), "{missing}: {result:?}");
    }
    assert!(server.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_foreign_certificate_url_an_unknown_algorithm_or_a_body_that_is_no_event_is_refused_without_asking_paypal() {
    let server = MockServer::start().await;
    mount_token(&server, 32_400).await;
    mount_verdict(&server, "SUCCESS").await;
    let verifier = PayPalWebhookVerifier::new(client(&server), Some(WEBHOOK_ID.into()));
    let with_header = |name: &str, value: &str| {
        let mut request = request();
        request.headers.retain(|(n, _)| n != name);
        request.headers.push((name.into(), value.into()));
        request
    };
    for forged in [
        with_header("paypal-cert-url", "https://attacker.example/cert.pem"),
        with_header("paypal-cert-url", "https://api.paypal.com.attacker.example/cert.pem"),
        with_header("paypal-auth-algo", "none"),
    ] {
        let result = verifier.verify(&forged).await;
        assert!(matches!(result, Err(WebhookError::BadSignature(_))), "{result:?}");
    }
    let mut not_an_event = request();
    not_an_event.body = br#"{"hello": "world"}"#.to_vec();
    assert!(verifier.verify(&not_an_event).await.is_err());
    assert!(server.received_requests().await.unwrap().is_empty(), "PayPal never asked");
}

#[tokio::test]
async fn without_a_webhook_id_everything_is_refused() {
    let server = MockServer::start().await;
    mount_token(&server, 32_400).await;
    mount_verdict(&server, "SUCCESS").await;

    for webhook_id in [None, Some(String::new())] {
        let result = PayPalWebhookVerifier::new(client(&server), webhook_id).verify(&request()).await;
        assert!(matches!(result, Err(WebhookError::BadSignature(_))), "{result:?}");
    }
    assert!(server.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_body_that_is_not_json_is_refused() {
    let server = MockServer::start().await;
    let verifier = PayPalWebhookVerifier::new(client(&server), Some(WEBHOOK_ID.into()));
    let mut request = request();
    request.body = b"not json".to_vec();

    let result = verifier.verify(&request).await;

    assert!(matches!(result, Err(WebhookError::BadSignature(_))), "{result:?}");
}

#[tokio::test]
async fn an_unreachable_paypal_is_an_infrastructure_failure() {
    let server = MockServer::start().await;
    mount_token(&server, 32_400).await;
    Mock::given(method("POST")).and(path(VERIFY_PATH)).respond_with(ResponseTemplate::new(503)).mount(&server).await;
    let verifier = PayPalWebhookVerifier::new(client(&server), Some(WEBHOOK_ID.into()));

    let result = verifier.verify(&request()).await;

    assert!(
        matches!(&result, Err(WebhookError::Infrastructure(e)) if e.kind() == InfraErrorKind::Unavailable),
        "{result:?}"
    );
}

#[tokio::test]
async fn a_closed_port_is_an_infrastructure_failure() {
    // A port nothing listens on (wiremock keeps its servers alive in a pool).
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let client = PayPalClient::new(PayPalConfig {
        api_base: base,
        timeout: Duration::from_millis(300),
        max_attempts: 1,
        retry_backoff: Duration::from_millis(1),
        ..PayPalConfig::sandbox("id", Secret::new("secret".to_owned()))
    })
    .unwrap();
    let verifier = PayPalWebhookVerifier::new(std::sync::Arc::new(client), Some(WEBHOOK_ID.into()));

    let result = verifier.verify(&request()).await;

    assert!(matches!(&result, Err(WebhookError::Infrastructure(e)) if e.is_unavailable()), "{result:?}");
}

#[tokio::test]
async fn the_verifier_shares_the_gateways_token() {
    let server = MockServer::start().await;
    mount_token(&server, 32_400).await;
    mount_verdict(&server, "SUCCESS").await;
    Mock::given(method("GET"))
        .and(path("/v2/checkout/orders/5O190127TN364715T"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "5O190127TN364715T", "status": "APPROVED",
            "purchase_units": [{ "amount": { "currency_code": "USD", "value": "19.99" } }]
        })))
        .mount(&server)
        .await;
    let gateway = PayPalGateway::new(client(&server));
    let verifier = PayPalWebhookVerifier::new(gateway.client().clone(), Some(WEBHOOK_ID.into()));

    verifier.verify(&request()).await.unwrap();
    gateway.retrieve("5O190127TN364715T").await.unwrap();

    assert_eq!(requests_to(&server, "/v1/oauth2/token").await.len(), 1);
}
