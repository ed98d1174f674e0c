//! PayPal: the client's token is an order the customer approved; charging checks its amount and
//! captures it. Orders API v2 with an OAuth2 client-credentials token, cached and shared by the
//! gateway and the webhook verifier; every POST that creates something carries a
//! `PayPal-Request-Id`, the same on every retry.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use ecom_kernel::{Currency, Money, Secret};
use ecom_payments::model::{DeclineReason, Provider, ProviderPayment, ProviderState, RefundStatus};
use ecom_payments::ports::{ChargeRequest, GatewayError, PaymentGateway, ProviderRefund, RefundRequest};
use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use crate::decimal::{format_decimal_digits, parse_decimal};
use crate::http::{bad_answer, build_client, is_path_safe, shorten, Answer, Caller, HttpClientError};

/// PayPal's sandbox API (the live one is `https://api-m.paypal.com`).
pub const PAYPAL_SANDBOX_API: &str = "https://api-m.sandbox.paypal.com";
const PROVIDER: &str = "paypal";
/// A token is renewed this long before PayPal says it expires (at most half its lifetime).
const TOKEN_MARGIN: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
pub struct PayPalConfig {
    /// [`PAYPAL_SANDBOX_API`] by default; a local server in tests.
    pub api_base: String,
    pub client_id: String,
    pub client_secret: Secret<String>,
    /// Bound on each call (connect and answer).
    pub timeout: Duration,
    /// Calls in all, first one included, for timeouts, connection failures, 5xx and 429.
    pub max_attempts: u32,
    /// Wait before the first retry; doubled for each further one.
    pub retry_backoff: Duration,
}

impl PayPalConfig {
    /// The sandbox with a 10 s timeout and 3 attempts.
    pub fn sandbox(client_id: impl Into<String>, client_secret: Secret<String>) -> Self {
        Self {
            api_base: PAYPAL_SANDBOX_API.to_owned(),
            client_id: client_id.into(),
            client_secret,
            timeout: Duration::from_secs(10),
            max_attempts: 3,
            retry_backoff: Duration::from_millis(200),
        }
    }
}

struct CachedToken {
    value: Secret<String>,
    renew_at: Instant,
}

/// How long a failed token fetch answers for the callers after it: while PayPal's token endpoint
/// is down, callers queued behind the fetch fail at once instead of each spending a fetch's
/// full retries (tens of seconds) in turn.
const TOKEN_FAILURE_HOLD: Duration = Duration::from_secs(5);

#[derive(Default)]
struct TokenState {
    current: Option<CachedToken>,
    /// The last fetch's failure, when it failed: when, and its error to repeat.
    failed: Option<(Instant, GatewayError)>,
}

/// The PayPal API client and its access token. Share one (`Arc`) between the gateway and the
/// webhook verifier so that they share the token.
pub struct PayPalClient {
    caller: Caller,
    api_base: String,
    client_id: String,
    client_secret: Secret<String>,
    token: Mutex<TokenState>,
}

impl std::fmt::Debug for PayPalClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PayPalClient").field("api_base", &self.api_base).finish_non_exhaustive()
    }
}

impl PayPalClient {
    pub fn new(config: PayPalConfig) -> Result<Self, HttpClientError> {
        Ok(Self {
            caller: Caller {
                client: build_client(config.timeout)?,
                provider: PROVIDER,
                max_attempts: config.max_attempts,
                backoff: config.retry_backoff,
            },
            api_base: config.api_base.trim_end_matches('/').to_owned(),
            client_id: config.client_id,
            client_secret: config.client_secret,
            token: Mutex::new(TokenState::default()),
        })
    }

    /// The cached access token, or a new one. The lock is held while fetching, so that callers
    /// arriving meanwhile wait for that token instead of fetching their own, and get its
    /// failure for a few seconds when it failed.
    async fn token(&self) -> Result<Secret<String>, GatewayError> {
        let mut state = self.token.lock().await;
        if let Some(token) = state.current.as_ref().filter(|t| Instant::now() < t.renew_at) {
            return Ok(token.value.clone());
        }
        if let Some((at, failure)) = state.failed.as_ref().filter(|(at, _)| at.elapsed() < TOKEN_FAILURE_HOLD) {
            tracing::debug!(
                provider = PROVIDER,
                failed_secs_ago = at.elapsed().as_secs(),
                "paypal token fetch failed moments ago"
            );
            return Err(repeat(failure));
        }
        match self.fetch_token().await {
            Ok(fresh) => {
                let value = fresh.value.clone();
                *state = TokenState { current: Some(fresh), failed: None };
                Ok(value)
            }
            Err(failure) => {
                let answer = repeat(&failure);
                state.failed = Some((Instant::now(), failure));
                Err(answer)
            }
        }
    }

    async fn fetch_token(&self) -> Result<CachedToken, GatewayError> {
        if self.client_id.trim().is_empty() || self.client_secret.expose().trim().is_empty() {
            return Err(GatewayError::NotConfigured("paypal client credentials"));
        }
        let url = format!("{}/v1/oauth2/token", self.api_base);
        let build = || {
            self.caller
                .client
                .post(&url)
                .basic_auth(&self.client_id, Some(self.client_secret.expose()))
                .form(&[("grant_type", "client_credentials")])
        };
        let answer = self.caller.send("oauth token", build, |_| false).await?;
        if answer.status.is_client_error() {
            tracing::error!(
                provider = PROVIDER,
                status = answer.status.as_u16(),
                "paypal refused the client credentials"
            );
            return Err(GatewayError::NotConfigured("paypal refused the client credentials"));
        }
        if !answer.status.is_success() {
            return Err(bad_answer(PROVIDER, "oauth token", &format!("status {}", answer.status.as_u16())));
        }
        let fresh: TokenAnswer = answer.json(PROVIDER, "oauth token")?;
        let lifetime = Duration::from_secs(fresh.expires_in);
        let renew_at = Instant::now() + lifetime.saturating_sub(TOKEN_MARGIN.min(lifetime / 2));
        tracing::debug!(provider = PROVIDER, expires_in = fresh.expires_in, "paypal access token fetched");
        Ok(CachedToken { value: Secret::new(fresh.access_token), renew_at })
    }

    /// Drops the cached token if it is still `stale` (another caller may have renewed it).
    async fn forget_token(&self, stale: &Secret<String>) {
        let mut state = self.token.lock().await;
        if state.current.as_ref().is_some_and(|t| t.value == *stale) {
            state.current = None;
        }
    }

    /// Calls the API with the access token; a 401 (token revoked or expired early) drops the
    /// token and the call is made once more with a new one. With `request_id`, the call carries
    /// it as `PayPal-Request-Id` (PayPal's idempotency key) and asks for the full representation.
    pub(crate) async fn call<B: Serialize + ?Sized>(
        &self,
        what: &str,
        method: Method,
        path: &str,
        request_id: Option<&str>,
        body: Option<&B>,
    ) -> Result<Answer, GatewayError> {
        if let Some(id) = request_id {
            // PayPal's limit for a request id.
            if id.is_empty() || id.len() > 108 {
                return Err(GatewayError::Rejected("an idempotency key of 1 to 108 characters is required".into()));
            }
        }
        let url = format!("{}{path}", self.api_base);
        let mut token = self.token().await?;
        let mut renewed = false;
        loop {
            let build = || {
                let mut request = self.caller.client.request(method.clone(), &url).bearer_auth(token.expose());
                if let Some(id) = request_id {
                    request = request.header("PayPal-Request-Id", id).header("Prefer", "return=representation");
                }
                if let Some(body) = body {
                    request = request.json(body);
                }
                request
            };
            let answer = self.caller.send(what, build, |answer| request_id.is_some() && in_progress(answer)).await?;
            if answer.status == StatusCode::UNAUTHORIZED && !renewed {
                tracing::info!(provider = PROVIDER, what, "paypal refused the access token; renewing it");
                self.forget_token(&token).await;
                token = self.token().await?;
                renewed = true;
                continue;
            }
            return Ok(answer);
        }
    }

    async fn order(&self, order_id: &str, what: &str) -> Result<Order, GatewayError> {
        let path = format!("/v2/checkout/orders/{order_id}");
        let answer = self.call(what, Method::GET, &path, None, None::<&()>).await?;
        if !answer.status.is_success() {
            return Err(refusal(&answer, what));
        }
        answer.json(PROVIDER, what)
    }
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    expires_in: u64,
}

pub struct PayPalGateway {
    client: Arc<PayPalClient>,
    /// The shop's PayPal merchant id: an order paying anyone else is refused.
    merchant_id: Option<String>,
}

impl std::fmt::Debug for PayPalGateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PayPalGateway").field("client", &self.client).finish()
    }
}

impl PayPalGateway {
    pub fn new(client: Arc<PayPalClient>) -> Self {
        Self { client, merchant_id: None }
    }

    /// Refuses orders whose payee is not this merchant (`PAYPAL_MERCHANT_ID`).
    #[must_use]
    pub fn with_merchant(mut self, merchant_id: Option<String>) -> Self {
        self.merchant_id = merchant_id;
        self
    }

    /// The client, to share with a [`crate::PayPalWebhookVerifier`].
    pub fn client(&self) -> &Arc<PayPalClient> {
        &self.client
    }

    /// Captures an approved order (the same call for a charge and for a capture).
    async fn capture_order(
        &self,
        order_id: &str,
        request_id: &str,
        what: &str,
    ) -> Result<ProviderPayment, GatewayError> {
        let path = format!("/v2/checkout/orders/{order_id}/capture");
        let answer =
            self.client.call(what, Method::POST, &path, Some(request_id), Some(&serde_json::json!({}))).await?;
        if answer.status.is_success() {
            let order: Order = answer.json(PROVIDER, what)?;
            return captured(order, what);
        }
        if answer.status == StatusCode::UNPROCESSABLE_ENTITY {
            match error_of(&answer).issue() {
                Some("INSTRUMENT_DECLINED") => {
                    tracing::info!(provider = PROVIDER, what, "paypal declined the instrument");
                    return Err(GatewayError::Declined(DeclineReason::CardDeclined));
                }
                // Captured before (an earlier attempt whose answer was lost): read it back.
                Some("ORDER_ALREADY_CAPTURED") => return self.retrieve(order_id).await,
                _ => {}
            }
        }
        Err(refusal(&answer, what))
    }
}

#[async_trait]
impl PaymentGateway for PayPalGateway {
    fn provider(&self) -> Provider {
        Provider::PayPal
    }

    async fn charge(&self, request: &ChargeRequest) -> Result<ProviderPayment, GatewayError> {
        let order_id = request.token.as_str();
        if !is_path_safe(order_id) {
            return Err(GatewayError::Rejected("invalid paypal order id".into()));
        }
        let order = self.client.order(order_id, "charge").await?;
        // The customer approved an order they (or someone) created: it must be for this amount.
        let ordered = order.purchase_units.first().and_then(|u| u.amount.as_ref()).and_then(|a| a.to_money().ok());
        if ordered != Some(request.amount) {
            tracing::warn!(
                provider = PROVIDER,
                order_id,
                ordered = ?ordered.map(|m| m.to_string()),
                expected = %request.amount,
                "paypal order amount differs from the payment; not captured"
            );
            return Err(GatewayError::Rejected(format!(
                "the PayPal order is not for {} (the amount of this payment)",
                request.amount
            )));
        }
        // Created by the customer's browser, the order could name another payee (their own
        // account: paid to themselves) or only authorize (nothing would ever capture it).
        if order.intent.as_deref() != Some("CAPTURE") {
            tracing::warn!(provider = PROVIDER, order_id, intent = ?order.intent, "paypal order not for capture; refused");
            return Err(GatewayError::Rejected("the PayPal order must be for immediate capture".into()));
        }
        if let Some(merchant) = &self.merchant_id {
            let payee =
                order.purchase_units.first().and_then(|u| u.payee.as_ref()).and_then(|p| p.merchant_id.as_deref());
            if payee != Some(merchant.as_str()) {
                tracing::warn!(provider = PROVIDER, order_id, "paypal order pays another merchant; refused");
                return Err(GatewayError::Rejected("the PayPal order does not pay this shop".into()));
            }
        }
        if order.status == "COMPLETED" {
            // Captured already (by an earlier attempt): charging again would change nothing.
            return captured(order, "charge");
        }
        self.capture_order(order_id, &request.idempotency_key, "charge").await
    }

    async fn capture(&self, reference: &str, idempotency_key: &str) -> Result<ProviderPayment, GatewayError> {
        if !is_path_safe(reference) {
            return Err(GatewayError::Rejected("invalid paypal order id".into()));
        }
        self.capture_order(reference, idempotency_key, "capture").await
    }

    async fn refund(&self, request: &RefundRequest) -> Result<ProviderRefund, GatewayError> {
        if !is_path_safe(&request.reference) {
            return Err(GatewayError::Rejected("invalid paypal order id".into()));
        }
        if !request.amount.is_positive() {
            return Err(GatewayError::Rejected("the refund amount must be positive".into()));
        }
        let value = paypal_value(request.amount)?;
        let order = self.client.order(&request.reference, "refund").await?;
        let capture_id = order
            .purchase_units
            .first()
            .and_then(|u| u.payments.captures.first())
            .map(|c| c.id.clone())
            .ok_or_else(|| GatewayError::Rejected("the PayPal order has no capture to refund".into()))?;
        if !is_path_safe(&capture_id) {
            return Err(bad_answer(PROVIDER, "refund", "capture id"));
        }
        // The refund reason stays in this shop: PayPal's only note is shown to the payer.
        let body = serde_json::json!({
            "amount": { "value": value, "currency_code": request.amount.currency().code() },
        });
        let path = format!("/v2/payments/captures/{capture_id}/refund");
        let answer =
            self.client.call("refund", Method::POST, &path, Some(&request.idempotency_key), Some(&body)).await?;
        if !answer.status.is_success() {
            return Err(refusal(&answer, "refund"));
        }
        let refund: RefundAnswer = answer.json(PROVIDER, "refund")?;
        let status = match refund.status.as_str() {
            "COMPLETED" => RefundStatus::Succeeded,
            "PENDING" => RefundStatus::Pending,
            refused @ ("CANCELLED" | "FAILED") => {
                tracing::warn!(provider = PROVIDER, reference = %refund.id, status = refused, "paypal refund not made");
                return Err(GatewayError::Rejected(format!("paypal refund {} {refused}", refund.id)));
            }
            other => return Err(bad_answer(PROVIDER, "refund", &format!("refund status {other:?}"))),
        };
        tracing::info!(provider = PROVIDER, reference = %refund.id, ?status, "paypal refund");
        Ok(ProviderRefund { reference: refund.id, status })
    }

    async fn retrieve(&self, reference: &str) -> Result<ProviderPayment, GatewayError> {
        if !is_path_safe(reference) {
            return Err(GatewayError::Rejected("invalid paypal order id".into()));
        }
        self.client.order(reference, "retrieve").await?.into_provider_payment("retrieve")
    }
}

/// A captured order as the answer to a charge or capture: a declined capture is a decline.
fn captured(order: Order, what: &str) -> Result<ProviderPayment, GatewayError> {
    let payment = order.into_provider_payment(what)?;
    tracing::info!(provider = PROVIDER, what, reference = %payment.reference, state = ?payment.state, "paypal answered");
    match payment.state {
        ProviderState::Failed(reason) => Err(GatewayError::Declined(reason)),
        _ => Ok(payment),
    }
}

/// A failed token fetch's error again, for a caller it answers.
fn repeat(failure: &GatewayError) -> GatewayError {
    match failure {
        GatewayError::NotConfigured(what) => GatewayError::NotConfigured(what),
        GatewayError::Rejected(message) => GatewayError::Rejected(message.clone()),
        GatewayError::Unavailable(message) => GatewayError::Unavailable(message.clone()),
        other @ GatewayError::Declined(_) => GatewayError::Unavailable(other.to_string()),
    }
}

/// PayPal takes HUF, JPY and TWD in whole units only.
fn paypal_value(money: Money) -> Result<String, GatewayError> {
    let currency = money.currency();
    let digits = if matches!(currency.code(), "HUF" | "JPY" | "TWD") { 0 } else { currency.exponent() };
    format_decimal_digits(money, digits)
        .ok_or_else(|| GatewayError::Rejected(format!("PayPal takes {currency} in whole units only")))
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct PayPalError {
    name: Option<String>,
    message: Option<String>,
    debug_id: Option<String>,
    #[serde(default)]
    details: Vec<PayPalErrorDetail>,
}

#[derive(Debug, Deserialize)]
struct PayPalErrorDetail {
    issue: Option<String>,
    description: Option<String>,
}

impl PayPalError {
    fn issue(&self) -> Option<&str> {
        self.details.first().and_then(|d| d.issue.as_deref())
    }
}

fn error_of(answer: &Answer) -> PayPalError {
    serde_json::from_slice(&answer.body).unwrap_or_default()
}

/// PayPal's answer to a request whose `PayPal-Request-Id` an earlier request still holds (two
/// callers with one key at once, or a retry after a timeout while the first still runs):
/// `409 RESOURCE_CONFLICT`, issue `PREVIOUS_REQUEST_IN_PROGRESS`. Asked again, it answers as the
/// first did; it is no refusal.
fn in_progress(answer: &Answer) -> bool {
    answer.status == StatusCode::CONFLICT
}

/// A final refusal of a request PayPal understood (4xx other than 429, and other than 409 to a
/// call with a request id).
pub(crate) fn refusal(answer: &Answer, what: &str) -> GatewayError {
    let error = error_of(answer);
    let status = answer.status.as_u16();
    tracing::warn!(
        provider = PROVIDER,
        what,
        status,
        name = ?error.name,
        issue = ?error.issue(),
        debug_id = ?error.debug_id,
        "paypal refused the request"
    );
    if matches!(status, 401 | 403) {
        return GatewayError::NotConfigured("paypal refused the access token");
    }
    let detail = error.details.first();
    let message = match (detail.and_then(|d| d.issue.as_deref()), detail.and_then(|d| d.description.as_deref())) {
        (Some(issue), Some(description)) => format!("{issue}: {description}"),
        (Some(issue), None) => issue.to_owned(),
        _ => error.message.or(error.name).unwrap_or_else(|| format!("paypal answered {status} to {what}")),
    };
    GatewayError::Rejected(shorten(&message))
}

#[derive(Debug, Deserialize)]
struct Order {
    id: String,
    #[serde(default)]
    intent: Option<String>,
    status: String,
    #[serde(default)]
    purchase_units: Vec<PurchaseUnit>,
}

#[derive(Debug, Deserialize)]
struct PurchaseUnit {
    amount: Option<PayPalAmount>,
    #[serde(default)]
    payee: Option<Payee>,
    #[serde(default)]
    payments: Payments,
}

#[derive(Debug, Deserialize)]
struct Payee {
    merchant_id: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct Payments {
    #[serde(default)]
    captures: Vec<CaptureEntry>,
    #[serde(default)]
    refunds: Vec<RefundEntry>,
    #[serde(default)]
    authorizations: Vec<StatusOnly>,
}

#[derive(Debug, Deserialize)]
struct CaptureEntry {
    id: String,
    status: String,
    amount: Option<PayPalAmount>,
}

#[derive(Debug, Deserialize)]
struct RefundEntry {
    status: String,
    amount: Option<PayPalAmount>,
}

#[derive(Debug, Deserialize)]
struct StatusOnly {
    status: String,
}

#[derive(Debug, Deserialize)]
struct PayPalAmount {
    currency_code: String,
    value: String,
}

impl PayPalAmount {
    fn to_money(&self) -> Result<Money, String> {
        let currency = Currency::parse(&self.currency_code).map_err(|e| e.to_string())?;
        parse_decimal(&self.value, currency).map_err(|e| e.to_string())
    }
}

#[derive(Debug, Deserialize)]
struct RefundAnswer {
    id: String,
    status: String,
}

impl Order {
    fn into_provider_payment(self, what: &str) -> Result<ProviderPayment, GatewayError> {
        let bad = |detail: &str| bad_answer(PROVIDER, what, detail);
        let unit = self.purchase_units.first().ok_or_else(|| bad("order without purchase unit"))?;
        let amount = unit
            .amount
            .as_ref()
            .or_else(|| unit.payments.captures.first().and_then(|c| c.amount.as_ref()))
            .ok_or_else(|| bad("order without amount"))?
            .to_money()
            .map_err(|e| bad(&e))?;
        let state =
            order_state(&self.status, &unit.payments).ok_or_else(|| bad(&format!("order status {:?}", self.status)))?;
        let mut refunded = Money::zero(amount.currency());
        for refund in unit.payments.refunds.iter().filter(|r| r.status == "COMPLETED") {
            let part =
                refund.amount.as_ref().ok_or_else(|| bad("refund without amount"))?.to_money().map_err(|e| bad(&e))?;
            refunded = refunded.checked_add(part).map_err(|e| bad(&e.to_string()))?;
        }
        // The customer's approved order names no payment of the shop (its id is the reference
        // the shop knows from the checkout).
        Ok(ProviderPayment { reference: self.id, state, amount, refunded, payment_id: None })
    }
}

/// An order's status (and, once completed, its capture's) as a provider state; `None` for a
/// status PayPal does not document.
fn order_state(status: &str, payments: &Payments) -> Option<ProviderState> {
    Some(match status {
        "CREATED" | "APPROVED" | "SAVED" | "PAYER_ACTION_REQUIRED" => ProviderState::Processing,
        "VOIDED" => ProviderState::Canceled,
        "COMPLETED" => match (payments.captures.first(), payments.authorizations.first()) {
            (Some(capture), _) => capture_state(&capture.status)?,
            // An order with intent AUTHORIZE completes with an authorization to capture.
            (None, Some(authorization)) => authorization_state(&authorization.status)?,
            (None, None) => return None,
        },
        _ => return None,
    })
}

fn capture_state(status: &str) -> Option<ProviderState> {
    Some(match status {
        // Refunds do not undo the capture: they are reported as the refunded total.
        "COMPLETED" | "PARTIALLY_REFUNDED" | "REFUNDED" => ProviderState::Succeeded,
        "PENDING" => ProviderState::Processing,
        "DECLINED" => ProviderState::Failed(DeclineReason::CardDeclined),
        "FAILED" => ProviderState::Failed(DeclineReason::ProcessingError),
        _ => return None,
    })
}

fn authorization_state(status: &str) -> Option<ProviderState> {
    Some(match status {
        "CREATED" | "PARTIALLY_CAPTURED" => ProviderState::Authorized,
        "PENDING" => ProviderState::Processing,
        "CAPTURED" => ProviderState::Succeeded,
        "DENIED" => ProviderState::Failed(DeclineReason::CardDeclined),
        "VOIDED" | "EXPIRED" => ProviderState::Canceled,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn order(json: serde_json::Value) -> Order {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn order_statuses_map_onto_provider_states() {
        let none = Payments::default();
        for waiting in ["CREATED", "APPROVED", "SAVED", "PAYER_ACTION_REQUIRED"] {
            assert_eq!(order_state(waiting, &none), Some(ProviderState::Processing));
        }
        assert_eq!(order_state("VOIDED", &none), Some(ProviderState::Canceled));
        assert_eq!(order_state("COMPLETED", &none), None);
        assert_eq!(order_state("SOMETHING_NEW", &none), None);
        for (capture, state) in [
            ("COMPLETED", ProviderState::Succeeded),
            ("REFUNDED", ProviderState::Succeeded),
            ("PENDING", ProviderState::Processing),
            ("DECLINED", ProviderState::Failed(DeclineReason::CardDeclined)),
            ("FAILED", ProviderState::Failed(DeclineReason::ProcessingError)),
        ] {
            let payments = Payments {
                captures: vec![CaptureEntry { id: "C1".into(), status: capture.into(), amount: None }],
                ..Payments::default()
            };
            assert_eq!(order_state("COMPLETED", &payments), Some(state), "{capture}");
        }
    }

    #[test]
    fn an_order_reads_as_its_amount_state_and_completed_refunds() {
        let seen = order(serde_json::json!({
            "id": "5O190127TN364715T",
            "status": "COMPLETED",
            "purchase_units": [{
                "amount": { "currency_code": "EUR", "value": "100.00" },
                "payments": {
                    "captures": [{ "id": "3C679366HH908993F", "status": "PARTIALLY_REFUNDED" }],
                    "refunds": [
                        { "id": "R1", "status": "COMPLETED", "amount": { "currency_code": "EUR", "value": "10.50" } },
                        { "id": "R2", "status": "PENDING", "amount": { "currency_code": "EUR", "value": "5.00" } },
                        { "id": "R3", "status": "COMPLETED", "amount": { "currency_code": "EUR", "value": "0.25" } }
                    ]
                }
            }]
        }))
        .into_provider_payment("test")
        .unwrap();
        assert_eq!(seen.reference, "5O190127TN364715T");
        assert_eq!(seen.state, ProviderState::Succeeded);
        assert_eq!(seen.amount, Money::new(10_000, Currency::EUR));
        assert_eq!(seen.refunded, Money::new(1075, Currency::EUR));
    }

    #[test]
    fn unreadable_orders_are_bad_answers_not_refusals() {
        let no_amount = order(serde_json::json!({"id": "O1", "status": "APPROVED", "purchase_units": [{}]}));
        assert!(matches!(no_amount.into_provider_payment("test"), Err(GatewayError::Unavailable(_))));
        let float_amount = order(serde_json::json!({
            "id": "O1", "status": "APPROVED",
            "purchase_units": [{ "amount": { "currency_code": "USD", "value": "1.005" } }]
        }));
        assert!(matches!(float_amount.into_provider_payment("test"), Err(GatewayError::Unavailable(_))));
    }

    #[test]
    fn whole_unit_currencies_are_sent_without_decimals() {
        let huf = Currency::parse("HUF").unwrap();
        assert_eq!(paypal_value(Money::new(150_000, huf)).unwrap(), "1500");
        assert!(matches!(paypal_value(Money::new(150_050, huf)), Err(GatewayError::Rejected(_))));
        assert_eq!(paypal_value(Money::new(1999, Currency::USD)).unwrap(), "19.99");
    }
}
