//! Every Redis key of the system is built here, under one configurable prefix.

use sha2::{Digest, Sha256};

/// Builds keys as `<prefix><part>:<part>…`. Tests isolate themselves with a prefix each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisKeys {
    prefix: String,
}

impl RedisKeys {
    pub fn new(prefix: impl Into<String>) -> Self {
        Self { prefix: prefix.into() }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The cached detail of a product and its change generation; one hash tag, one cluster slot.
    pub fn product_cache(&self, product_id: &str) -> (String, String) {
        let tag = format!("{{product:{product_id}}}");
        (self.key(&[&tag, "detail"]), self.key(&[&tag, "generation"]))
    }

    /// The product alone (for pricing) and its own generation, which stock changes leave alone.
    pub fn priced_product_cache(&self, product_id: &str) -> (String, String) {
        let tag = format!("{{product:{product_id}}}");
        (self.key(&[&tag, "priced"]), self.key(&[&tag, "priced-generation"]))
    }

    /// A cart's hash; its own hash tag, so every cart script touches one cluster slot.
    pub fn cart(&self, cart_id: &str) -> String {
        self.key(&[&format!("{{cart:{cart_id}}}")])
    }

    /// Which cart is a customer's active one.
    pub fn customer_cart(&self, customer_id: &str) -> String {
        self.key(&["customer-cart", customer_id])
    }

    /// The keys of one job queue, all under the queue's hash tag (one cluster slot per queue).
    pub fn queue(&self, queue: &str) -> QueueKeys {
        QueueKeys { base: self.key(&[&format!("{{jq:{queue}}}")]) }
    }

    /// A customer's realtime channel (pub/sub); `*` gives the pattern of every channel.
    pub fn notification_channel(&self, customer_id: &str) -> String {
        self.key(&["notify", customer_id])
    }

    /// Where a canary job records its runs.
    pub fn canary(&self, job_id: &str) -> String {
        self.key(&["canary", job_id])
    }

    /// An idempotent request's record; the scope (caller, method, route, key) is hashed.
    pub fn idempotency(&self, scope: &str) -> String {
        self.key(&["idempotency", &hex_sha256(scope)])
    }

    fn key(&self, parts: &[&str]) -> String {
        let mut key = self.prefix.clone();
        key.push_str(&parts.join(":"));
        key
    }

    /// Failed logins for one e-mail address; the address is hashed so keys hold no personal data.
    pub fn login_failures_by_email(&self, email: &str) -> String {
        self.key(&["login-failures", "email", &hex_sha256(email)])
    }

    /// Failed logins from one client address.
    pub fn login_failures_by_client(&self, client: &str) -> String {
        self.key(&["login-failures", "client", client])
    }
}

/// Keys of one queue: the ready stream, the delayed set, the dead-letter stream, the set of dead
/// jobs waiting to be revived, job hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueKeys {
    base: String,
}

impl QueueKeys {
    pub fn stream(&self) -> String {
        format!("{}:stream", self.base)
    }
    pub fn delayed(&self) -> String {
        format!("{}:delayed", self.base)
    }
    pub fn dead(&self) -> String {
        format!("{}:dead", self.base)
    }
    /// Jobs dead-lettered because their retries ran out, scored by when they run again.
    pub fn spent(&self) -> String {
        format!("{}:spent", self.base)
    }
    pub fn stats(&self) -> String {
        format!("{}:stats", self.base)
    }
    pub fn job(&self, id: &str) -> String {
        format!("{}:job:{id}", self.base)
    }
}

fn hex_sha256(value: &str) -> String {
    Sha256::digest(value.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_carry_the_prefix_and_no_plain_email() {
        let keys = RedisKeys::new("shop:");
        let key = keys.login_failures_by_email("ada@example.com");
        assert!(key.starts_with("shop:login-failures:email:"));
        assert!(!key.contains("ada"));
        assert_eq!(keys.login_failures_by_client("10.0.0.1"), "shop:login-failures:client:10.0.0.1");
    }
}
