//! The store behind idempotent requests: a lease while the first request runs, then its
//! response, kept for a while and replayed to retries of the same request.

use std::time::Duration;

use async_trait::async_trait;

use crate::InfraError;

/// A response as stored for replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    pub status: u16,
    /// The headers that matter for a replay (content type, location, retry-after, ...).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// What a request finds under its idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Begin {
    /// Nobody had this key: the caller holds the lease and runs the request.
    Started,
    /// The first request with this key is still running; try again after `retry_after`.
    InProgress { retry_after: Duration },
    /// The first request finished: replay its response.
    Completed(StoredResponse),
    /// The key was used with another request body.
    Mismatch,
}

/// Stores idempotent requests. Scopes are opaque strings built by the caller (principal,
/// method, route and key); `fingerprint` identifies the request body.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait IdempotencyStore: Send + Sync {
    /// Atomically takes the lease (held for `lease`, with `token`) when the scope is free, or
    /// tells what is there. Two concurrent calls can never both get `Started`.
    async fn begin(&self, scope: &str, fingerprint: &str, token: &str, lease: Duration) -> Result<Begin, InfraError>;
    /// Stores the response of the lease holder `token`, kept for `ttl`. Does nothing when the
    /// lease was lost (expired and taken by another request).
    async fn complete(
        &self,
        scope: &str,
        token: &str,
        response: &StoredResponse,
        ttl: Duration,
    ) -> Result<(), InfraError>;
    /// Frees the lease of `token` without storing anything (a failure the client may retry).
    async fn release(&self, scope: &str, token: &str) -> Result<(), InfraError>;
}
