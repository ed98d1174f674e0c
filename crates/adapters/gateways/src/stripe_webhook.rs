//! Stripe webhooks: the `Stripe-Signature` header checked against the endpoint's signing secret
//! (HMAC-SHA256 over `"{t}.{raw body}"`, constant-time, within the timestamp tolerance), then
//! the event read from the body.

use std::sync::Arc;

use async_trait::async_trait;
use ecom_kernel::{Clock, Secret};
use ecom_payments::model::{EventKind, GatewayEvent, Provider};
use ecom_payments::ports::{WebhookError, WebhookRequest, WebhookVerifier, WEBHOOK_TOLERANCE};
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Verifies Stripe's webhooks with the endpoint's signing secret (`whsec_…`).
pub struct StripeWebhookVerifier {
    secret: Secret<String>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for StripeWebhookVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StripeWebhookVerifier").finish_non_exhaustive()
    }
}

impl StripeWebhookVerifier {
    /// An empty secret is accepted here and refuses every webhook (fails closed).
    pub fn new(secret: Secret<String>, clock: Arc<dyn Clock>) -> Self {
        Self { secret, clock }
    }

    fn check_signature(&self, request: &WebhookRequest) -> Result<(), WebhookError> {
        let secret = self.secret.expose();
        if secret.is_empty() {
            return Err(bad_signature("no stripe webhook secret is configured"));
        }
        let header =
            request.header("stripe-signature").ok_or_else(|| bad_signature("missing Stripe-Signature header"))?;
        let signature = SignatureHeader::parse(header)?;
        let now = self.clock.now().timestamp();
        if now.abs_diff(signature.timestamp) > WEBHOOK_TOLERANCE.as_secs() {
            return Err(bad_signature("timestamp outside the tolerance"));
        }
        let mac = signer(secret, signature.timestamp, &request.body)
            .ok_or_else(|| bad_signature("the webhook secret cannot be used"))?;
        // verify_slice compares in constant time; any one v1 signature may match (secret rolls).
        if signature.v1.iter().any(|candidate| mac.clone().verify_slice(candidate).is_ok()) {
            Ok(())
        } else {
            Err(bad_signature("no valid v1 signature"))
        }
    }
}

#[async_trait]
impl WebhookVerifier for StripeWebhookVerifier {
    async fn verify(&self, request: &WebhookRequest) -> Result<GatewayEvent, WebhookError> {
        if let Err(err) = self.check_signature(request) {
            tracing::warn!(provider = "stripe", error = %err, "stripe webhook refused");
            return Err(err);
        }
        parse_event(&request.body)
    }
}

fn bad_signature(why: &str) -> WebhookError {
    WebhookError::BadSignature(why.to_owned())
}

/// The `Stripe-Signature` header for `body` signed with `secret` at `timestamp` (unix seconds),
/// as Stripe sends it: `t=<timestamp>,v1=<hex>`. For tests and the simulator's tooling.
pub fn stripe_signature_header(secret: &str, timestamp: i64, body: &[u8]) -> String {
    match signer(secret, timestamp, body) {
        Some(mac) => format!("t={timestamp},v1={}", to_hex(&mac.finalize().into_bytes())),
        // Unreachable for HMAC (any key length is accepted); a header without v1 never verifies.
        None => format!("t={timestamp}"),
    }
}

fn signer(secret: &str, timestamp: i64, body: &[u8]) -> Option<HmacSha256> {
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).ok()?;
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    Some(mac)
}

#[derive(Debug, PartialEq, Eq)]
struct SignatureHeader {
    timestamp: i64,
    v1: Vec<Vec<u8>>,
}

impl SignatureHeader {
    /// `t=<unix>,v1=<hex>[,v1=<hex>…][,v0=…]`; other schemes are ignored, as Stripe asks.
    fn parse(header: &str) -> Result<Self, WebhookError> {
        let mut timestamp = None;
        let mut v1 = Vec::new();
        for item in header.split(',') {
            let Some((key, value)) = item.split_once('=') else {
                return Err(bad_signature("malformed Stripe-Signature header"));
            };
            match key.trim() {
                "t" => {
                    let t = value.trim().parse::<i64>().map_err(|_| bad_signature("malformed timestamp"))?;
                    if timestamp.replace(t).is_some() {
                        return Err(bad_signature("more than one timestamp"));
                    }
                }
                // A value that is not hex cannot match: skipped.
                "v1" => v1.extend(from_hex(value.trim())),
                _ => {}
            }
        }
        let timestamp = timestamp.ok_or_else(|| bad_signature("no timestamp in Stripe-Signature"))?;
        if v1.is_empty() {
            return Err(bad_signature("no v1 signature in Stripe-Signature"));
        }
        Ok(Self { timestamp, v1 })
    }
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn from_hex(hex: &str) -> Option<Vec<u8>> {
    let pairs = hex.as_bytes().chunks_exact(2);
    if hex.is_empty() || !pairs.remainder().is_empty() {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16);
    pairs.map(|pair| u8::try_from(digit(pair[0])? * 16 + digit(pair[1])?).ok()).collect()
}

#[derive(Debug, Deserialize)]
struct StripeEvent {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    data: Option<EventData>,
}

#[derive(Debug, Deserialize)]
struct EventData {
    object: serde_json::Value,
}

/// The event of a verified body.
fn parse_event(body: &[u8]) -> Result<GatewayEvent, WebhookError> {
    let event: StripeEvent =
        serde_json::from_slice(body).map_err(|e| WebhookError::Malformed(format!("not a stripe event: {e}")))?;
    if event.id.is_empty() {
        return Err(WebhookError::Malformed("stripe event without id".into()));
    }
    let object = event.data.as_ref().map(|d| &d.object);
    let field = |name: &str| object.and_then(|o| o.get(name)).and_then(|v| v.as_str()).map(str::to_owned);
    let (mut kind, reference) = match event.kind.as_str() {
        "payment_intent.succeeded" => (EventKind::PaymentSucceeded, field("id")),
        "payment_intent.payment_failed" => (EventKind::PaymentFailed, field("id")),
        "payment_intent.canceled" => (EventKind::PaymentCanceled, field("id")),
        // A charge and a refund both name their PaymentIntent.
        "charge.refunded" | "charge.refund.updated" => (EventKind::Refunded, field("payment_intent")),
        _ => {
            let own_id = (field("object").as_deref() == Some("payment_intent")).then(|| field("id")).flatten();
            (EventKind::Ignored, field("payment_intent").or(own_id))
        }
    };
    if kind != EventKind::Ignored && reference.is_none() {
        // Signed by Stripe, about a charge without a PaymentIntent (legacy Charges, another
        // integration on the account): not one of ours. Recorded and answered 200, else Stripe
        // retries it for days and may disable the endpoint.
        tracing::info!(provider = "stripe", event_id = %event.id, event_type = %event.kind, "event names no payment intent; ignored");
        kind = EventKind::Ignored;
    }
    tracing::info!(provider = "stripe", event_id = %event.id, event_type = %event.kind, kind = kind.as_str(), "stripe webhook verified");
    Ok(GatewayEvent { provider: Provider::Stripe, event_id: event.id, kind, provider_type: event.kind, reference })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn the_signature_header_is_read_with_every_v1() {
        let parsed = SignatureHeader::parse("t=1492774577, v1=0aff,v0=6ffb,v1=10,scheme=x").unwrap();
        assert_eq!(parsed, SignatureHeader { timestamp: 1_492_774_577, v1: vec![vec![0x0a, 0xff], vec![0x10]] });
    }

    #[test]
    fn malformed_signature_headers_are_refused() {
        for header in ["", "t=1", "v1=00", "t=abc,v1=00", "t=1,v1=zz", "t=1,t=2,v1=00", "garbage", "t=1;v1=00"] {
            assert!(matches!(SignatureHeader::parse(header), Err(WebhookError::BadSignature(_))), "{header:?}");
        }
    }

    #[test]
    fn hex_round_trips() {
        assert_eq!(from_hex(&to_hex(&[0, 1, 0xab, 0xff])), Some(vec![0, 1, 0xab, 0xff]));
        assert_eq!(from_hex("ABcd"), Some(vec![0xab, 0xcd]));
        assert_eq!(from_hex("abc"), None);
        assert_eq!(from_hex("+1"), None);
    }

    #[test]
    fn the_signature_matches_stripes_scheme() {
        // HMAC-SHA256("secret", "1.{}"), computed independently (Python hmac).
        let header = stripe_signature_header("secret", 1, b"{}");
        assert_eq!(header, "t=1,v1=1122767b193110cfec322b6f199b599edbf608ed087f2d27afb0b97d99523908");
    }
}
