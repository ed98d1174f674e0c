//! Stripe: PaymentIntents confirmed server-side with the client's PaymentMethod, refunds, and
//! reading a PaymentIntent back. Form-encoded requests with the secret key as bearer; every POST
//! carries an `Idempotency-Key`, the same on every retry.

use std::time::Duration;

use async_trait::async_trait;
use ecom_kernel::{Currency, Money, Secret};
use ecom_payments::model::{DeclineReason, Provider, ProviderPayment, ProviderState, RefundStatus};
use ecom_payments::ports::{ChargeRequest, GatewayError, PaymentGateway, ProviderRefund, RefundRequest};
use reqwest::StatusCode;
use serde::Deserialize;

use crate::http::{bad_answer, build_client, is_path_safe, shorten, Answer, Caller, HttpClientError};

/// Stripe's API.
pub const STRIPE_API: &str = "https://api.stripe.com";
const PROVIDER: &str = "stripe";

#[derive(Debug, Clone)]
pub struct StripeConfig {
    /// `https://api.stripe.com`; a local server in tests.
    pub api_base: String,
    pub secret_key: Secret<String>,
    /// Bound on each call (connect and answer).
    pub timeout: Duration,
    /// Calls in all, first one included, for timeouts, connection failures, 5xx and 429.
    pub max_attempts: u32,
    /// Wait before the first retry; doubled for each further one.
    pub retry_backoff: Duration,
}

impl StripeConfig {
    /// The live API with a 10 s timeout and 3 attempts.
    pub fn new(secret_key: Secret<String>) -> Self {
        Self {
            api_base: STRIPE_API.to_owned(),
            secret_key,
            timeout: Duration::from_secs(10),
            max_attempts: 3,
            retry_backoff: Duration::from_millis(200),
        }
    }
}

pub struct StripeGateway {
    caller: Caller,
    api_base: String,
    secret_key: Secret<String>,
}

impl std::fmt::Debug for StripeGateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StripeGateway").field("api_base", &self.api_base).finish_non_exhaustive()
    }
}

impl StripeGateway {
    pub fn new(config: StripeConfig) -> Result<Self, HttpClientError> {
        Ok(Self {
            caller: Caller {
                client: build_client(config.timeout)?,
                provider: PROVIDER,
                max_attempts: config.max_attempts,
                backoff: config.retry_backoff,
            },
            api_base: config.api_base.trim_end_matches('/').to_owned(),
            secret_key: config.secret_key,
        })
    }

    fn configured(&self) -> Result<(), GatewayError> {
        if self.secret_key.expose().trim().is_empty() {
            return Err(GatewayError::NotConfigured("stripe secret key"));
        }
        Ok(())
    }

    async fn post(
        &self,
        what: &str,
        path: &str,
        form: &[(&str, String)],
        idempotency_key: &str,
    ) -> Result<Answer, GatewayError> {
        self.configured()?;
        if idempotency_key.is_empty() || idempotency_key.len() > 255 {
            return Err(GatewayError::Rejected("an idempotency key of 1 to 255 characters is required".into()));
        }
        let url = format!("{}{path}", self.api_base);
        let build = || {
            self.caller
                .client
                .post(&url)
                .bearer_auth(self.secret_key.expose())
                .header("Idempotency-Key", idempotency_key)
                .form(form)
        };
        self.caller.send(what, build, is_transient).await
    }

    async fn payment_intent(&self, what: &str, answer: Answer) -> Result<ProviderPayment, GatewayError> {
        if !answer.status.is_success() {
            return Err(refusal(&answer, what));
        }
        let intent: PaymentIntent = answer.json(PROVIDER, what)?;
        let payment = intent.into_provider_payment(what)?;
        tracing::info!(provider = PROVIDER, what, reference = %payment.reference, state = ?payment.state, "stripe answered");
        Ok(payment)
    }
}

#[async_trait]
impl PaymentGateway for StripeGateway {
    fn provider(&self) -> Provider {
        Provider::Stripe
    }

    async fn charge(&self, request: &ChargeRequest) -> Result<ProviderPayment, GatewayError> {
        if !request.amount.is_positive() {
            return Err(GatewayError::Rejected("the amount must be positive".into()));
        }
        if request.token.trim().is_empty() {
            return Err(GatewayError::Rejected("a payment method is required".into()));
        }
        let form = [
            ("amount", to_stripe_amount(request.amount)?.to_string()),
            ("currency", request.amount.currency().code().to_ascii_lowercase()),
            ("payment_method", request.token.clone()),
            ("confirm", "true".to_owned()),
            ("automatic_payment_methods[enabled]", "true".to_owned()),
            ("automatic_payment_methods[allow_redirects]", "never".to_owned()),
            // No client here can complete a 3-D Secure challenge: a card that asks for one is
            // declined (402 authentication_required), never left waiting as `requires_action`
            // (which would confirm an order that nothing can ever pay).
            ("error_on_requires_action", "true".to_owned()),
            ("metadata[order_id]", request.order_id.to_string()),
            ("metadata[payment_id]", request.payment_id.to_string()),
        ];
        let answer = self.post("charge", "/v1/payment_intents", &form, &request.idempotency_key).await?;
        self.payment_intent("charge", answer).await
    }

    async fn capture(&self, reference: &str, idempotency_key: &str) -> Result<ProviderPayment, GatewayError> {
        if !is_path_safe(reference) {
            return Err(GatewayError::Rejected("invalid stripe payment reference".into()));
        }
        let path = format!("/v1/payment_intents/{reference}/capture");
        let answer = self.post("capture", &path, &[], idempotency_key).await?;
        if answer.status == StatusCode::BAD_REQUEST && error_of(&answer).code.as_deref() == Some(UNEXPECTED_STATE) {
            // Captured before (by an earlier attempt, or in the dashboard): read it back.
            let seen = self.retrieve(reference).await?;
            if seen.state == ProviderState::Succeeded {
                return Ok(seen);
            }
        }
        self.payment_intent("capture", answer).await
    }

    async fn refund(&self, request: &RefundRequest) -> Result<ProviderRefund, GatewayError> {
        if !request.amount.is_positive() {
            return Err(GatewayError::Rejected("the refund amount must be positive".into()));
        }
        if request.reference.is_empty() {
            return Err(GatewayError::Rejected("the payment reference is missing".into()));
        }
        let mut form = vec![
            ("payment_intent", request.reference.clone()),
            ("amount", to_stripe_amount(request.amount)?.to_string()),
        ];
        if let Some(reason) = &request.reason {
            form.push(("metadata[reason]", reason.clone()));
        }
        let answer = self.post("refund", "/v1/refunds", &form, &request.idempotency_key).await?;
        if !answer.status.is_success() {
            return Err(refusal(&answer, "refund"));
        }
        let refund: StripeRefund = answer.json(PROVIDER, "refund")?;
        let status = match refund.status.as_deref() {
            Some("succeeded") => RefundStatus::Succeeded,
            Some("pending" | "requires_action") => RefundStatus::Pending,
            Some(refused @ ("failed" | "canceled")) => {
                tracing::warn!(provider = PROVIDER, reference = %refund.id, status = refused, "stripe refund not made");
                return Err(GatewayError::Rejected(format!("stripe refund {} {refused}", refund.id)));
            }
            other => return Err(bad_answer(PROVIDER, "refund", &format!("refund status {other:?}"))),
        };
        tracing::info!(provider = PROVIDER, reference = %refund.id, ?status, "stripe refund");
        Ok(ProviderRefund { reference: refund.id, status })
    }

    async fn retrieve(&self, reference: &str) -> Result<ProviderPayment, GatewayError> {
        self.configured()?;
        if !is_path_safe(reference) {
            return Err(GatewayError::Rejected("invalid stripe payment reference".into()));
        }
        let url = format!("{}/v1/payment_intents/{reference}", self.api_base);
        let build = || {
            self.caller.client.get(&url).bearer_auth(self.secret_key.expose()).query(&[("expand[]", "latest_charge")])
        };
        let answer = self.caller.send("retrieve", build, is_transient).await?;
        self.payment_intent("retrieve", answer).await
    }
}

const UNEXPECTED_STATE: &str = "payment_intent_unexpected_state";

/// Stripe asks for a retry with `Stripe-Should-Retry: true`, and answers 409 while another
/// request with the same idempotency key is still running.
fn is_transient(answer: &Answer) -> bool {
    let should_retry = answer.headers.get("stripe-should-retry").and_then(|v| v.to_str().ok()) == Some("true");
    should_retry
        || (answer.status == StatusCode::CONFLICT
            && matches!(error_of(answer).code.as_deref(), Some("idempotency_key_in_use" | "lock_timeout")))
}

#[derive(Debug, Default, Deserialize)]
struct StripeError {
    #[serde(rename = "type")]
    kind: Option<String>,
    code: Option<String>,
    decline_code: Option<String>,
    message: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ErrorEnvelope {
    error: StripeError,
}

fn error_of(answer: &Answer) -> StripeError {
    serde_json::from_slice::<ErrorEnvelope>(&answer.body).map(|e| e.error).unwrap_or_default()
}

/// A final refusal: a decline (402 card error), a bad key, or a request Stripe will not do.
fn refusal(answer: &Answer, what: &str) -> GatewayError {
    let error = error_of(answer);
    let status = answer.status.as_u16();
    match status {
        401 | 403 => {
            // Stripe's message echoes part of the key: not repeated.
            tracing::error!(provider = PROVIDER, what, status, "stripe refused the secret key");
            GatewayError::NotConfigured("stripe refused the secret key")
        }
        402 if error.kind.as_deref() == Some("card_error") => {
            let code = error.decline_code.or(error.code).unwrap_or_else(|| "card_declined".to_owned());
            let reason = DeclineReason::from_code(&code);
            tracing::info!(provider = PROVIDER, what, %reason, "stripe declined");
            GatewayError::Declined(reason)
        }
        _ => {
            let message = error.message.map_or_else(|| format!("stripe answered {status} to {what}"), |m| shorten(&m));
            tracing::warn!(provider = PROVIDER, what, status, code = ?error.code, "stripe refused the request");
            GatewayError::Rejected(message)
        }
    }
}

#[derive(Debug, Deserialize)]
struct PaymentIntent {
    id: String,
    status: String,
    amount: i64,
    currency: String,
    last_payment_error: Option<StripeError>,
    /// An id, or the charge itself when expanded.
    latest_charge: Option<LatestCharge>,
    /// What the charge was created with (`payment_id`: the shop's payment).
    #[serde(default)]
    metadata: Metadata,
}

#[derive(Debug, Default, Deserialize)]
struct Metadata {
    payment_id: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum LatestCharge {
    Expanded(Charge),
    Id(serde::de::IgnoredAny),
}

#[derive(Debug, Deserialize)]
struct Charge {
    #[serde(default)]
    amount_refunded: i64,
}

#[derive(Debug, Deserialize)]
struct StripeRefund {
    id: String,
    status: Option<String>,
}

impl PaymentIntent {
    fn into_provider_payment(self, what: &str) -> Result<ProviderPayment, GatewayError> {
        let currency = Currency::parse(&self.currency.to_ascii_uppercase())
            .map_err(|_| bad_answer(PROVIDER, what, "unknown currency"))?;
        let amount = from_stripe_amount(self.amount, currency, what)?;
        let refunded = match &self.latest_charge {
            Some(LatestCharge::Expanded(charge)) => from_stripe_amount(charge.amount_refunded, currency, what)?,
            Some(LatestCharge::Id(_)) | None => Money::zero(currency),
        };
        let state = state_of(&self.status, self.last_payment_error.as_ref())
            .ok_or_else(|| bad_answer(PROVIDER, what, &format!("payment intent status {:?}", self.status)))?;
        // Another integration's intent (no such metadata, or not an id) names no payment here.
        let payment_id = self.metadata.payment_id.as_deref().and_then(|id| id.parse().ok());
        Ok(ProviderPayment { reference: self.id, state, amount, refunded, payment_id })
    }
}

/// A PaymentIntent's status as a provider state; `None` for a status Stripe does not document.
fn state_of(status: &str, last_error: Option<&StripeError>) -> Option<ProviderState> {
    Some(match status {
        "succeeded" => ProviderState::Succeeded,
        "requires_capture" => ProviderState::Authorized,
        "processing" | "requires_action" | "requires_confirmation" => ProviderState::Processing,
        "canceled" => ProviderState::Canceled,
        "requires_payment_method" => {
            let code = last_error.and_then(|e| e.decline_code.clone().or_else(|| e.code.clone()));
            // Without an error the intent never got a usable payment method: nothing was taken.
            ProviderState::Failed(code.map_or(DeclineReason::ProcessingError, |c| DeclineReason::from_code(&c)))
        }
        _ => return None,
    })
}

/// Stripe's amount for `money`. Stripe takes ISK, which has no minor unit, as if it had two
/// decimals (500 ISK is `50000`).
fn to_stripe_amount(money: Money) -> Result<i64, GatewayError> {
    money
        .amount()
        .checked_mul(stripe_scale(money.currency()))
        .ok_or_else(|| GatewayError::Rejected("amount out of range".into()))
}

fn from_stripe_amount(amount: i64, currency: Currency, what: &str) -> Result<Money, GatewayError> {
    let scale = stripe_scale(currency);
    if amount < 0 || amount % scale != 0 {
        return Err(bad_answer(PROVIDER, what, "amount"));
    }
    Ok(Money::new(amount / scale, currency))
}

fn stripe_scale(currency: Currency) -> i64 {
    if currency.code() == "ISK" {
        100
    } else {
        1
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn payment_intent_statuses_map_onto_provider_states() {
        assert_eq!(state_of("succeeded", None), Some(ProviderState::Succeeded));
        assert_eq!(state_of("requires_capture", None), Some(ProviderState::Authorized));
        for processing in ["processing", "requires_action", "requires_confirmation"] {
            assert_eq!(state_of(processing, None), Some(ProviderState::Processing));
        }
        assert_eq!(state_of("canceled", None), Some(ProviderState::Canceled));
        let declined = StripeError {
            code: Some("card_declined".into()),
            decline_code: Some("insufficient_funds".into()),
            ..StripeError::default()
        };
        assert_eq!(
            state_of("requires_payment_method", Some(&declined)),
            Some(ProviderState::Failed(DeclineReason::InsufficientFunds))
        );
        let expired = StripeError { code: Some("expired_card".into()), ..StripeError::default() };
        assert_eq!(
            state_of("requires_payment_method", Some(&expired)),
            Some(ProviderState::Failed(DeclineReason::ExpiredCard))
        );
        assert_eq!(state_of("something_new", None), None);
    }

    #[test]
    fn icelandic_kronur_travel_with_two_zero_decimals() {
        let isk = Currency::parse("ISK").unwrap();
        assert_eq!(to_stripe_amount(Money::new(500, isk)).unwrap(), 50_000);
        assert_eq!(from_stripe_amount(50_000, isk, "test").unwrap(), Money::new(500, isk));
        assert!(from_stripe_amount(50_001, isk, "test").is_err());
        assert_eq!(to_stripe_amount(Money::new(1999, Currency::USD)).unwrap(), 1999);
    }
}
