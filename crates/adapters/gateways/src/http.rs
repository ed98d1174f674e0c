//! The HTTP plumbing shared by the provider clients: one timeout per call, and the retries of
//! failures whose outcome is unknown (timeouts, connection failures, 5xx, 429), where the caller
//! rebuilds the very same request, idempotency key included.

use std::time::Duration;

use ecom_payments::ports::GatewayError;
use reqwest::header::HeaderMap;
use reqwest::{RequestBuilder, StatusCode};

/// The HTTP client of a gateway could not be built (TLS backend, invalid settings).
#[derive(Debug, thiserror::Error)]
#[error("cannot build the payment provider's http client")]
pub struct HttpClientError(#[source] reqwest::Error);

pub(crate) fn build_client(timeout: Duration) -> Result<reqwest::Client, HttpClientError> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .user_agent(concat!("ecom-gateways/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(HttpClientError)
}

/// A provider's complete answer.
#[derive(Debug)]
pub(crate) struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Answer {
    /// The body as JSON of type `T`; a body that is not is a bad answer.
    pub fn json<T: serde::de::DeserializeOwned>(&self, provider: &'static str, what: &str) -> Result<T, GatewayError> {
        serde_json::from_slice(&self.body).map_err(|e| bad_answer(provider, what, &e.to_string()))
    }
}

/// An answer that cannot be understood. The outcome of the call is unknown, so it is reported as
/// `Unavailable` (retrying with the same idempotency key is safe), never as a final refusal that
/// could fail a payment the provider actually took.
pub(crate) fn bad_answer(provider: &'static str, what: &str, detail: &str) -> GatewayError {
    tracing::warn!(provider, what, detail, "unexpected answer from the payment provider");
    GatewayError::Unavailable(format!("unexpected answer from {provider} to {what}"))
}

/// Sends requests to one provider with retries.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    pub client: reqwest::Client,
    pub provider: &'static str,
    pub max_attempts: u32,
    pub backoff: Duration,
}

impl Caller {
    /// Sends the request `build` makes, again (rebuilt, same idempotency key) after a timeout, a
    /// connection failure, a 5xx, a 429 or an answer `also_transient` calls transient, up to
    /// `max_attempts` in all. Any other answer is returned as it is, for the caller to read.
    pub async fn send(
        &self,
        what: &str,
        build: impl Fn() -> RequestBuilder,
        also_transient: impl Fn(&Answer) -> bool,
    ) -> Result<Answer, GatewayError> {
        let max_attempts = self.max_attempts.max(1);
        let mut attempt = 1;
        loop {
            let failure = match self.send_once(&build).await {
                Ok(answer)
                    if answer.status.is_server_error()
                        || answer.status == StatusCode::TOO_MANY_REQUESTS
                        || also_transient(&answer) =>
                {
                    format!("{} answered {}", self.provider, answer.status.as_u16())
                }
                Ok(answer) => return Ok(answer),
                Err(failure) => failure,
            };
            if attempt >= max_attempts {
                tracing::warn!(provider = self.provider, what, attempt, failure, "payment provider unavailable");
                return Err(GatewayError::Unavailable(failure));
            }
            tracing::info!(provider = self.provider, what, attempt, failure, "retrying the payment provider");
            tokio::time::sleep(self.delay_after(attempt)).await;
            attempt += 1;
        }
    }

    async fn send_once(&self, build: &impl Fn() -> RequestBuilder) -> Result<Answer, String> {
        let response = build().send().await.map_err(|e| self.describe(&e))?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.bytes().await.map_err(|e| self.describe(&e))?;
        Ok(Answer { status, headers, body: body.to_vec() })
    }

    /// Exponential: backoff, 2×backoff, 4×backoff…, at most 32×.
    fn delay_after(&self, attempt: u32) -> Duration {
        self.backoff.saturating_mul(1 << attempt.saturating_sub(1).min(5))
    }

    /// What went wrong, without the URL or any header.
    fn describe(&self, err: &reqwest::Error) -> String {
        let what = if err.is_timeout() {
            "timed out"
        } else if err.is_connect() {
            "could not be reached"
        } else if err.is_body() || err.is_decode() {
            "sent an incomplete answer"
        } else {
            "could not be called"
        };
        format!("{} {what}", self.provider)
    }
}

/// A provider id used in a URL path: letters, digits, `_` and `-` only, so that no id can
/// change the path it is put in.
pub(crate) fn is_path_safe(id: &str) -> bool {
    !id.is_empty() && id.len() <= 255 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// A message from a provider, shortened, for an error or a log.
pub(crate) fn shorten(message: &str) -> String {
    const MAX: usize = 200;
    match message.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &message[..cut]),
        None => message.to_owned(),
    }
}
