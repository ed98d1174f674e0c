//! PayPal webhooks: the transmission headers and the event, exactly as received, are sent to
//! PayPal's verification API (with the shared access token); only a `SUCCESS` is accepted.

use std::sync::Arc;

use async_trait::async_trait;
use ecom_kernel::InfraError;
use ecom_payments::model::{EventKind, GatewayEvent, Provider};
use ecom_payments::ports::{GatewayError, WebhookError, WebhookRequest, WebhookVerifier};
use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::paypal::PayPalClient;

const PROVIDER: &str = "paypal";

/// Verifies PayPal's webhooks for one webhook id (the one PayPal gave the endpoint).
#[derive(Debug)]
pub struct PayPalWebhookVerifier {
    client: Arc<PayPalClient>,
    webhook_id: Option<String>,
}

impl PayPalWebhookVerifier {
    /// Without a webhook id every webhook is refused (fails closed).
    pub fn new(client: Arc<PayPalClient>, webhook_id: Option<String>) -> Self {
        Self { client, webhook_id: webhook_id.filter(|id| !id.trim().is_empty()) }
    }

    async fn check_signature(&self, request: &WebhookRequest) -> Result<(), WebhookError> {
        // The event itself first: a body that is no PayPal event is refused without asking.
        parse_event(&request.body).map_err(|_| WebhookError::BadSignature("the body is not a PayPal event".into()))?;
        let Some(webhook_id) = self.webhook_id.as_deref() else {
            return Err(WebhookError::BadSignature("no paypal webhook id is configured".into()));
        };
        let header = |name: &str| {
            request
                .header(name)
                .filter(|v| !v.trim().is_empty())
                .ok_or_else(|| WebhookError::BadSignature(format!("missing {name} header")))
        };
        // Passed on verbatim: PayPal checks the signature over the event as it sent it.
        let webhook_event: &RawValue = serde_json::from_slice(&request.body)
            .map_err(|_| WebhookError::BadSignature("the body is not JSON".into()))?;
        // Checked before PayPal is asked: a forged request must not cost a verification call
        // (each one spends the shop's PayPal rate limit, which its captures need).
        let auth_algo = header("paypal-auth-algo")?;
        if auth_algo != "SHA256withRSA" {
            return Err(WebhookError::BadSignature(format!("unknown paypal-auth-algo {auth_algo:?}")));
        }
        let cert_url = header("paypal-cert-url")?;
        if !PAYPAL_CERT_PREFIXES.iter().any(|prefix| cert_url.starts_with(prefix)) {
            return Err(WebhookError::BadSignature("paypal-cert-url is not PayPal's".into()));
        }
        let verification = Verification {
            auth_algo,
            cert_url,
            transmission_id: header("paypal-transmission-id")?,
            transmission_sig: header("paypal-transmission-sig")?,
            transmission_time: header("paypal-transmission-time")?,
            webhook_id,
            webhook_event,
        };
        let answer = self
            .client
            .call(
                "verify webhook",
                Method::POST,
                "/v1/notifications/verify-webhook-signature",
                None,
                Some(&verification),
            )
            .await
            .map_err(infrastructure)?;
        if answer.status.is_client_error() {
            return Err(match crate::paypal::refusal(&answer, "verify webhook") {
                // Our credentials, not the sender's signature: PayPal retries once they are fixed.
                GatewayError::NotConfigured(what) => {
                    InfraError::unexpected(format!("paypal verification: {what}")).into()
                }
                refused => WebhookError::BadSignature(refused.to_string()),
            });
        }
        if !answer.status.is_success() {
            return Err(InfraError::unavailable(format!(
                "paypal answered {} to a verification",
                answer.status.as_u16()
            ))
            .into());
        }
        let verdict: Verdict = serde_json::from_slice(&answer.body)
            .map_err(|_| InfraError::unavailable("unexpected answer from paypal to a verification"))?;
        if verdict.verification_status == "SUCCESS" {
            Ok(())
        } else {
            Err(WebhookError::BadSignature(format!("paypal says {}", verdict.verification_status)))
        }
    }
}

#[async_trait]
impl WebhookVerifier for PayPalWebhookVerifier {
    async fn verify(&self, request: &WebhookRequest) -> Result<GatewayEvent, WebhookError> {
        if let Err(err) = self.check_signature(request).await {
            tracing::warn!(provider = PROVIDER, error = %err, "paypal webhook refused");
            return Err(err);
        }
        // Logged only now: the body was parsed before PayPal vouched for it.
        let event = parse_event(&request.body)?;
        tracing::info!(provider = PROVIDER, event_id = %event.event_id, event_type = %event.provider_type, kind = event.kind.as_str(), "paypal webhook verified");
        Ok(event)
    }
}

/// Where PayPal's signing certificates live (live and sandbox).
const PAYPAL_CERT_PREFIXES: [&str; 4] = [
    "https://api.paypal.com/",
    "https://api.sandbox.paypal.com/",
    "https://api-m.paypal.com/",
    "https://api-m.sandbox.paypal.com/",
];

fn infrastructure(err: GatewayError) -> WebhookError {
    match err {
        GatewayError::Unavailable(message) => InfraError::unavailable(format!("paypal verification: {message}")).into(),
        GatewayError::NotConfigured(what) => InfraError::unexpected(format!("paypal verification: {what}")).into(),
        GatewayError::Rejected(message) => WebhookError::BadSignature(message),
        GatewayError::Declined(reason) => WebhookError::BadSignature(reason.to_string()),
    }
}

#[derive(Serialize)]
struct Verification<'a> {
    auth_algo: &'a str,
    cert_url: &'a str,
    transmission_id: &'a str,
    transmission_sig: &'a str,
    transmission_time: &'a str,
    webhook_id: &'a str,
    webhook_event: &'a RawValue,
}

#[derive(Deserialize)]
struct Verdict {
    verification_status: String,
}

#[derive(Deserialize)]
struct PayPalEvent {
    id: String,
    event_type: String,
    #[serde(default)]
    resource: serde_json::Value,
}

/// The event of a verified body.
fn parse_event(body: &[u8]) -> Result<GatewayEvent, WebhookError> {
    let event: PayPalEvent =
        serde_json::from_slice(body).map_err(|e| WebhookError::Malformed(format!("not a paypal event: {e}")))?;
    if event.id.is_empty() {
        return Err(WebhookError::Malformed("paypal event without id".into()));
    }
    let order_id =
        event.resource.pointer("/supplementary_data/related_ids/order_id").and_then(|v| v.as_str()).map(str::to_owned);
    let (mut kind, reference) = match event.event_type.as_str() {
        "PAYMENT.CAPTURE.COMPLETED" => (EventKind::PaymentSucceeded, order_id),
        "CHECKOUT.ORDER.COMPLETED" => {
            (EventKind::PaymentSucceeded, event.resource.get("id").and_then(|v| v.as_str()).map(str::to_owned))
        }
        "PAYMENT.CAPTURE.DENIED" | "PAYMENT.CAPTURE.DECLINED" => (EventKind::PaymentFailed, order_id),
        // A refund resource does not always name its order; without it the event is recorded only.
        "PAYMENT.CAPTURE.REFUNDED" => (EventKind::Refunded, order_id),
        _ => (EventKind::Ignored, order_id),
    };
    if matches!(kind, EventKind::PaymentSucceeded | EventKind::PaymentFailed) && reference.is_none() {
        // Signed by PayPal, about a capture no checkout order names (Invoicing, Subscriptions):
        // not one of ours. Recorded and answered 200, else PayPal retries it again and again.
        kind = EventKind::Ignored;
    }
    Ok(GatewayEvent {
        provider: Provider::PayPal,
        event_id: event.id,
        kind,
        provider_type: event.event_type,
        reference,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn event(json: serde_json::Value) -> Result<GatewayEvent, WebhookError> {
        parse_event(json.to_string().as_bytes())
    }

    #[test]
    fn capture_events_name_their_order() {
        let seen = event(serde_json::json!({
            "id": "WH-1", "event_type": "PAYMENT.CAPTURE.COMPLETED",
            "resource": { "id": "CAP-1", "supplementary_data": { "related_ids": { "order_id": "ORDER-1" } } }
        }))
        .unwrap();
        assert_eq!(seen.kind, EventKind::PaymentSucceeded);
        assert_eq!(seen.reference.as_deref(), Some("ORDER-1"));
        assert_eq!(seen.provider_type, "PAYMENT.CAPTURE.COMPLETED");
        let denied = event(serde_json::json!({
            "id": "WH-2", "event_type": "PAYMENT.CAPTURE.DENIED",
            "resource": { "supplementary_data": { "related_ids": { "order_id": "ORDER-1" } } }
        }))
        .unwrap();
        assert_eq!(denied.kind, EventKind::PaymentFailed);
    }

    #[test]
    fn a_completed_order_event_names_itself() {
        let seen = event(serde_json::json!({
            "id": "WH-3", "event_type": "CHECKOUT.ORDER.COMPLETED", "resource": { "id": "ORDER-2" }
        }))
        .unwrap();
        assert_eq!((seen.kind, seen.reference.as_deref()), (EventKind::PaymentSucceeded, Some("ORDER-2")));
    }

    #[test]
    fn refunds_without_an_order_and_other_events_carry_no_reference() {
        let refunded =
            event(serde_json::json!({"id": "WH-4", "event_type": "PAYMENT.CAPTURE.REFUNDED", "resource": {}})).unwrap();
        assert_eq!((refunded.kind, refunded.reference), (EventKind::Refunded, None));
        let other =
            event(serde_json::json!({"id": "WH-5", "event_type": "CUSTOMER.DISPUTE.CREATED", "resource": {}})).unwrap();
        assert_eq!(other.kind, EventKind::Ignored);
    }

    #[test]
    fn bodies_that_are_not_events_are_malformed() {
        assert!(matches!(parse_event(b"[]"), Err(WebhookError::Malformed(_))));
        assert!(matches!(event(serde_json::json!({"id": "", "event_type": "X"})), Err(WebhookError::Malformed(_))));
    }

    #[test]
    fn a_capture_no_checkout_order_names_is_not_ours_and_ignored() {
        let foreign =
            event(serde_json::json!({"id": "WH-6", "event_type": "PAYMENT.CAPTURE.COMPLETED", "resource": {}}))
                .unwrap();
        assert_eq!((foreign.kind, foreign.reference), (EventKind::Ignored, None));
    }
}
