//! Stripe's webhook signatures and events.

use std::sync::Arc;

use ecom_gateways::{stripe_signature_header, StripeWebhookVerifier};
use ecom_kernel::Secret;
use ecom_payments::model::{EventKind, Provider};
use ecom_payments::ports::{WebhookError, WebhookRequest, WebhookVerifier};
use serde_json::json;

use crate::support::{noon, ManualClock};

const SECRET: &str = "whsec_test_secret";

fn verifier(secret: &str) -> StripeWebhookVerifier {
    StripeWebhookVerifier::new(Secret::new(secret.to_owned()), Arc::new(ManualClock::at(noon())))
}

fn event(kind: &str, object: serde_json::Value) -> Vec<u8> {
    json!({
        "id": "evt_1",
        "object": "event",
        "type": kind,
        "data": { "object": object }
    })
    .to_string()
    .into_bytes()
}

fn succeeded() -> Vec<u8> {
    event("payment_intent.succeeded", json!({"id": "pi_123", "object": "payment_intent", "status": "succeeded"}))
}

fn signed(body: Vec<u8>, header: String) -> WebhookRequest {
    WebhookRequest { headers: vec![("stripe-signature".into(), header)], body }
}

fn signed_now(body: Vec<u8>) -> WebhookRequest {
    let header = stripe_signature_header(SECRET, noon().timestamp(), &body);
    signed(body, header)
}

#[tokio::test]
async fn a_validly_signed_event_is_accepted() {
    let event = verifier(SECRET).verify(&signed_now(succeeded())).await.unwrap();

    assert_eq!(event.provider, Provider::Stripe);
    assert_eq!(event.event_id, "evt_1");
    assert_eq!(event.kind, EventKind::PaymentSucceeded);
    assert_eq!(event.provider_type, "payment_intent.succeeded");
    assert_eq!(event.reference.as_deref(), Some("pi_123"));
}

#[tokio::test]
async fn failed_and_canceled_payment_intents_are_read() {
    for (kind, expected) in [
        ("payment_intent.payment_failed", EventKind::PaymentFailed),
        ("payment_intent.canceled", EventKind::PaymentCanceled),
    ] {
        let body = event(kind, json!({"id": "pi_9", "object": "payment_intent"}));

        let event = verifier(SECRET).verify(&signed_now(body)).await.unwrap();

        assert_eq!((event.kind, event.reference.as_deref()), (expected, Some("pi_9")));
    }
}

#[tokio::test]
async fn refund_events_name_their_payment_intent() {
    let charge = event("charge.refunded", json!({"id": "ch_1", "object": "charge", "payment_intent": "pi_7"}));
    let refund = event("charge.refund.updated", json!({"id": "re_1", "object": "refund", "payment_intent": "pi_8"}));

    let charge = verifier(SECRET).verify(&signed_now(charge)).await.unwrap();
    let refund = verifier(SECRET).verify(&signed_now(refund)).await.unwrap();

    assert_eq!((charge.kind, charge.reference.as_deref()), (EventKind::Refunded, Some("pi_7")));
    assert_eq!((refund.kind, refund.reference.as_deref()), (EventKind::Refunded, Some("pi_8")));
}

#[tokio::test]
async fn one_valid_v1_among_several_is_enough() {
    let body = succeeded();
    let valid = stripe_signature_header(SECRET, noon().timestamp(), &body);
    let stale = stripe_signature_header("whsec_old_secret", noon().timestamp(), &body);
    let v1 = |header: &str| header.split_once(",v1=").unwrap().1.to_owned();
    let header = format!("t={},v1={},v1={},v0=deadbeef", noon().timestamp(), v1(&stale), v1(&valid));

    let event = verifier(SECRET).verify(&signed(body, header)).await.unwrap();

    assert_eq!(event.kind, EventKind::PaymentSucceeded);
}

#[tokio::test]
async fn a_wrong_signature_is_refused() {
    let body = succeeded();
    let other_secret = stripe_signature_header("whsec_someone_else", noon().timestamp(), &body);

    let result = verifier(SECRET).verify(&signed(body, other_secret)).await;

    assert!(matches!(result, Err(WebhookError::BadSignature(_))), "{result:?}");
}

#[tokio::test]
async fn a_changed_body_is_refused() {
    let header = stripe_signature_header(SECRET, noon().timestamp(), &succeeded());
    let tampered = event("payment_intent.succeeded", json!({"id": "pi_other", "object": "payment_intent"}));

    let result = verifier(SECRET).verify(&signed(tampered, header)).await;

    assert!(matches!(result, Err(WebhookError::BadSignature(_))), "{result:?}");
}

#[tokio::test]
async fn a_missing_or_malformed_header_is_refused() {
    let missing = WebhookRequest { headers: vec![], body: succeeded() };
    assert!(matches!(verifier(SECRET).verify(&missing).await, Err(WebhookError::BadSignature(_))));
    for header in ["", "garbage", "t=abc,v1=00", "v1=00", &format!("t={}", noon().timestamp())] {
        let result = verifier(SECRET).verify(&signed(succeeded(), header.to_owned())).await;
        assert!(matches!(result, Err(WebhookError::BadSignature(_))), "{header:?}: {result:?}");
    }
}

#[tokio::test]
async fn a_timestamp_more_than_five_minutes_away_is_refused() {
    for offset in [-301, 301, -86_400] {
        let body = succeeded();
        let header = stripe_signature_header(SECRET, noon().timestamp() + offset, &body);

        let result = verifier(SECRET).verify(&signed(body, header)).await;

        assert!(matches!(result, Err(WebhookError::BadSignature(_))), "{offset}: {result:?}");
    }
    let body = succeeded();
    let at_the_limit = stripe_signature_header(SECRET, noon().timestamp() - 300, &body);
    assert!(verifier(SECRET).verify(&signed(body, at_the_limit)).await.is_ok());
}

#[tokio::test]
async fn an_empty_secret_refuses_everything() {
    let body = succeeded();
    let header = stripe_signature_header("", noon().timestamp(), &body);

    let result = verifier("").verify(&signed(body, header)).await;

    assert!(matches!(result, Err(WebhookError::BadSignature(_))), "{result:?}");
}

#[tokio::test]
async fn unknown_event_types_are_ignored() {
    let body = event("customer.created", json!({"id": "cus_1", "object": "customer"}));

    let event = verifier(SECRET).verify(&signed_now(body)).await.unwrap();

    assert_eq!(event.kind, EventKind::Ignored);
    assert_eq!(event.reference, None);
    assert_eq!(event.provider_type, "customer.created");
}

#[tokio::test]
async fn an_ignored_payment_intent_event_still_names_it() {
    let body = event("payment_intent.created", json!({"id": "pi_5", "object": "payment_intent"}));

    let event = verifier(SECRET).verify(&signed_now(body)).await.unwrap();

    assert_eq!((event.kind, event.reference.as_deref()), (EventKind::Ignored, Some("pi_5")));
}

#[tokio::test]
async fn a_charge_event_without_a_payment_intent_is_not_ours_and_ignored() {
    let body = event("charge.refunded", json!({"id": "ch_legacy", "object": "charge", "payment_intent": null}));

    let event = verifier(SECRET).verify(&signed_now(body)).await.unwrap();

    assert_eq!((event.kind, event.reference.as_deref()), (EventKind::Ignored, None));
}

#[tokio::test]
async fn a_signed_body_that_is_not_an_event_is_malformed() {
    let result = verifier(SECRET).verify(&signed_now(b"{not json".to_vec())).await;

    assert!(matches!(result, Err(WebhookError::Malformed(_))), "{result:?}");
}
