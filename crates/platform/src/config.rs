//! Configuration from environment variables, with working local defaults.
//!
//! With `APP_ENV=production` no default secret is ever used: the process refuses to start.

use std::fmt;
use std::time::Duration;

use ecom_kernel::Secret;

/// Defaults of the local environment; never acceptable in production.
const LOCAL_JWT_SECRET: &str = "local-development-jwt-secret-not-for-production";
const LOCAL_STRIPE_WEBHOOK_SECRET: &str = "whsec_local_development_not_for_production";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppEnv {
    Local,
    Production,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Pretty,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentProvider {
    Simulated,
    Stripe,
}

/// Every problem with the environment, reported together.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration:\n  - {}", .0.join("\n  - "))]
pub struct ConfigError(pub Vec<String>);

#[derive(Clone)]
pub struct Config {
    pub app_env: AppEnv,
    pub database_url: String,
    pub database_max_connections: usize,
    pub redis_url: String,
    pub redis_key_prefix: String,
    pub http_host: String,
    pub http_port: u16,
    pub http_workers: usize,
    pub http_body_limit: usize,
    pub cors_allowed_origins: Vec<String>,
    pub trust_forwarded_for: bool,
    pub jwt_secret: Secret<String>,
    pub access_token_ttl: Duration,
    pub refresh_token_ttl: Duration,
    pub admin_email: Option<String>,
    pub admin_password: Option<Secret<String>>,
    pub login_max_failures_per_email: u32,
    pub login_max_failures_per_client: u32,
    pub login_throttle_window: Duration,
    pub stripe_webhook_secret: Secret<String>,
    pub payment_provider: PaymentProvider,
    pub stripe_api_base: String,
    pub stripe_secret_key: Option<Secret<String>>,
    pub paypal_api_base: String,
    pub paypal_client_id: Option<String>,
    /// The shop's PayPal merchant id: PayPal orders paying anyone else are refused.
    pub paypal_merchant_id: Option<String>,
    pub paypal_client_secret: Option<Secret<String>>,
    /// PayPal's id of our webhook, needed to verify its webhooks (none: all are refused).
    pub paypal_webhook_id: Option<String>,
    /// Timeout of one call to a payment provider.
    pub payment_provider_timeout: Duration,
    /// The simulated provider captures an authorized charge this long after it (then emits
    /// its "payment succeeded" event).
    pub simulated_capture_delay: Duration,
    /// How long finished idempotent requests are replayed.
    pub idempotency_ttl: Duration,
    /// How long the first request with a key holds it (after a crash, a retry runs it again).
    pub idempotency_lease: Duration,
    /// An order whose saga has work left and that nothing touched for this long gets its job
    /// offered to the queue again (a no-op unless the queue lost it, or dead-lettered it when
    /// its retries ran out: it runs again once dead this long, doubled per revival).
    pub saga_resume_after: Duration,
    /// WebSocket: how often an idle connection is pinged, and when a silent one is closed.
    pub ws_heartbeat: Duration,
    pub ws_idle_timeout: Duration,
    /// WebSocket: frames queued for one connection before it counts as too slow and is closed.
    pub ws_buffer: usize,
    /// Shipping: a flat rate (minor units of the shop currency), free from a subtotal on.
    pub shipping_flat_rate: i64,
    /// `0`: shipping is never free.
    pub free_shipping_from: i64,
    /// Unpaid online orders are cancelled after this.
    pub order_payment_window: Duration,
    /// Unconfirmed cash-on-delivery orders are cancelled after this.
    pub cod_confirmation_window: Duration,
    pub worker_concurrency: usize,
    pub worker_reclaim_after: Duration,
    /// A job dead-lettered because its retries ran out (an outage outlasted them) runs again
    /// this long after, twice as long after each revival, at most an hour (or this, if longer).
    pub job_revive_after: Duration,
    /// The worker's commits do not wait for the disk; each job flushes once, before it counts
    /// as done (its durability barrier). `false`: every commit waits.
    pub worker_deferred_flush: bool,
    pub shop_currency: ecom_kernel::Currency,
    pub product_cache_ttl: Duration,
    pub reservation_sweep_interval: Duration,
    pub run_migrations: bool,
    pub seed_demo_data: bool,
    pub log_format: LogFormat,
    pub shutdown_timeout: Duration,
}

/// Reads variables through `lookup`, remembering every error.
struct Reader<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
    errors: Vec<String>,
}

impl Reader<'_> {
    fn raw(&self, name: &str) -> Option<String> {
        (self.lookup)(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
    }

    fn string(&self, name: &str, default: &str) -> String {
        self.raw(name).unwrap_or_else(|| default.to_owned())
    }

    fn parsed<T: std::str::FromStr>(&mut self, name: &str, default: T, what: &str) -> T {
        match self.raw(name) {
            None => default,
            Some(raw) => raw.parse().unwrap_or_else(|_| {
                self.errors.push(format!("{name}={raw:?} is not {what}"));
                default
            }),
        }
    }

    fn flag(&mut self, name: &str, default: bool) -> bool {
        match self.raw(name).map(|v| v.to_ascii_lowercase()) {
            None => default,
            Some(v) if ["1", "true", "yes", "on"].contains(&v.as_str()) => true,
            Some(v) if ["0", "false", "no", "off"].contains(&v.as_str()) => false,
            Some(v) => {
                self.errors.push(format!("{name}={v:?} is not a boolean (true/false)"));
                default
            }
        }
    }

    fn positive(&mut self, name: &str, default: u64) -> u64 {
        let value = self.parsed(name, default, "a positive integer");
        if value == 0 {
            self.errors.push(format!("{name} must be greater than 0"));
            return default;
        }
        value
    }

    fn choice<T: Copy>(&mut self, name: &str, default: T, choices: &[(&str, T)]) -> T {
        match self.raw(name) {
            None => default,
            Some(raw) => match choices.iter().find(|(key, _)| key.eq_ignore_ascii_case(&raw)) {
                Some((_, value)) => *value,
                None => {
                    let names: Vec<&str> = choices.iter().map(|(k, _)| *k).collect();
                    self.errors.push(format!("{name}={raw:?} must be one of {}", names.join(", ")));
                    default
                }
            },
        }
    }

    /// A secret: required in production, else the local default.
    fn secret(&mut self, name: &str, production: bool, local_default: &str) -> Secret<String> {
        match self.raw(name) {
            Some(value) if production && value == local_default => {
                self.errors.push(format!("{name} must not be the local development default in production"));
                Secret::new(value)
            }
            Some(value) => Secret::new(value),
            None if production => {
                self.errors.push(format!("{name} must be set when APP_ENV=production (no default secrets)"));
                Secret::new(String::new())
            }
            None => Secret::new(local_default.to_owned()),
        }
    }
}

fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(2, usize::from)
}

impl Config {
    /// Whether PayPal's keys are set (checkouts then pay through PayPal itself).
    pub fn paypal_configured(&self) -> bool {
        self.paypal_client_id.is_some() && self.paypal_client_secret.is_some()
    }

    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(&|name| std::env::var(name).ok())
    }

    /// Reads variables through `lookup` (tests pass a map).
    pub fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut r = Reader { lookup, errors: Vec::new() };
        let app_env =
            r.choice("APP_ENV", AppEnv::Local, &[("local", AppEnv::Local), ("production", AppEnv::Production)]);
        let production = app_env == AppEnv::Production;
        let default_log = if production { LogFormat::Json } else { LogFormat::Pretty };

        let jwt_secret = r.secret("JWT_SECRET", production, LOCAL_JWT_SECRET);
        if production && jwt_secret.expose().len() < 32 {
            r.errors.push("JWT_SECRET must be at least 32 bytes in production".to_owned());
        }
        let stripe_webhook_secret = r.secret("STRIPE_WEBHOOK_SECRET", production, LOCAL_STRIPE_WEBHOOK_SECRET);
        let payment_provider = r.choice(
            "PAYMENT_PROVIDER",
            PaymentProvider::Simulated,
            &[("simulated", PaymentProvider::Simulated), ("stripe", PaymentProvider::Stripe)],
        );
        if production && payment_provider == PaymentProvider::Simulated {
            r.errors.push(
                "PAYMENT_PROVIDER must be stripe when APP_ENV=production (the simulator takes no money)".to_owned(),
            );
        }
        let stripe_secret_key = r.raw("STRIPE_SECRET_KEY").map(Secret::new);
        if payment_provider == PaymentProvider::Stripe && stripe_secret_key.is_none() {
            r.errors.push("STRIPE_SECRET_KEY must be set when PAYMENT_PROVIDER=stripe".to_owned());
        }
        let paypal_client_id = r.raw("PAYPAL_CLIENT_ID");
        let paypal_client_secret = r.raw("PAYPAL_CLIENT_SECRET").map(Secret::new);
        if paypal_client_id.is_some() != paypal_client_secret.is_some() {
            r.errors.push("PAYPAL_CLIENT_ID and PAYPAL_CLIENT_SECRET must be set together".to_owned());
        }
        let paypal_merchant_id = r.raw("PAYPAL_MERCHANT_ID");
        if production && paypal_client_id.is_some() && paypal_merchant_id.is_none() {
            // Without it, an order the customer created to pay someone else would pass.
            r.errors.push("PAYPAL_MERCHANT_ID must be set with PayPal's keys when APP_ENV=production".to_owned());
        }
        let admin_email = r.raw("ADMIN_EMAIL");
        let admin_password = r.raw("ADMIN_PASSWORD").map(Secret::new);
        if admin_email.is_some() != admin_password.is_some() {
            r.errors.push("ADMIN_EMAIL and ADMIN_PASSWORD must be set together".to_owned());
        }

        let shop_currency = match r.raw("SHOP_CURRENCY") {
            None => ecom_kernel::Currency::USD,
            Some(raw) => ecom_kernel::Currency::parse(&raw).unwrap_or_else(|_| {
                r.errors.push(format!("SHOP_CURRENCY={raw:?} is not a supported ISO 4217 code"));
                ecom_kernel::Currency::USD
            }),
        };
        let config = Config {
            app_env,
            database_url: r.string("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/ecommerce"),
            database_max_connections: r.positive("DATABASE_MAX_CONNECTIONS", 16) as usize,
            redis_url: r.string("REDIS_URL", "redis://127.0.0.1:6379"),
            redis_key_prefix: r.string("REDIS_KEY_PREFIX", "ecom:"),
            http_host: r.string("HTTP_HOST", "127.0.0.1"),
            http_port: r.parsed("HTTP_PORT", 8080, "a port number"),
            http_workers: r.positive("HTTP_WORKERS", default_workers() as u64) as usize,
            http_body_limit: r.positive("HTTP_BODY_LIMIT_BYTES", 64 * 1024) as usize,
            cors_allowed_origins: r
                .raw("CORS_ALLOWED_ORIGINS")
                .map(|v| v.split(',').map(|o| o.trim().to_owned()).filter(|o| !o.is_empty()).collect())
                .unwrap_or_default(),
            trust_forwarded_for: r.flag("TRUST_FORWARDED_FOR", false),
            jwt_secret,
            access_token_ttl: Duration::from_secs(r.positive("ACCESS_TOKEN_TTL_SECS", 15 * 60)),
            refresh_token_ttl: Duration::from_secs(r.positive("REFRESH_TOKEN_TTL_SECS", 30 * 24 * 3600)),
            admin_email,
            admin_password,
            login_max_failures_per_email: r.positive("LOGIN_MAX_FAILURES_PER_EMAIL", 5) as u32,
            login_max_failures_per_client: r.positive("LOGIN_MAX_FAILURES_PER_CLIENT", 50) as u32,
            login_throttle_window: Duration::from_secs(r.positive("LOGIN_THROTTLE_WINDOW_SECS", 15 * 60)),
            stripe_webhook_secret,
            payment_provider,
            stripe_api_base: r.string("STRIPE_API_BASE", "https://api.stripe.com"),
            stripe_secret_key,
            paypal_api_base: r.string("PAYPAL_API_BASE", "https://api-m.sandbox.paypal.com"),
            paypal_client_id,
            paypal_client_secret,
            paypal_webhook_id: r.raw("PAYPAL_WEBHOOK_ID"),
            paypal_merchant_id,
            payment_provider_timeout: Duration::from_secs(r.positive("PAYMENT_PROVIDER_TIMEOUT_SECS", 10)),
            simulated_capture_delay: Duration::from_millis(r.parsed(
                "SIMULATED_CAPTURE_DELAY_MS",
                1000,
                "a number of milliseconds",
            )),
            idempotency_ttl: Duration::from_secs(r.positive("IDEMPOTENCY_TTL_SECS", 24 * 3600)),
            idempotency_lease: Duration::from_secs(r.positive("IDEMPOTENCY_LEASE_SECS", 120)),
            saga_resume_after: Duration::from_secs(r.positive("SAGA_RESUME_AFTER_SECS", 60)),
            ws_heartbeat: Duration::from_secs(r.positive("WS_HEARTBEAT_SECS", 15)),
            ws_idle_timeout: Duration::from_secs(r.positive("WS_IDLE_TIMEOUT_SECS", 45)),
            ws_buffer: r.positive("WS_BUFFER", 256) as usize,
            shipping_flat_rate: r.parsed("SHIPPING_FLAT_RATE", 500, "an amount in minor units"),
            free_shipping_from: r.parsed("FREE_SHIPPING_FROM", 10_000, "an amount in minor units"),
            order_payment_window: Duration::from_secs(r.positive("ORDER_PAYMENT_WINDOW_SECS", 30 * 60)),
            cod_confirmation_window: Duration::from_secs(r.positive("COD_CONFIRMATION_WINDOW_SECS", 48 * 3600)),
            worker_concurrency: r.positive("WORKER_CONCURRENCY", 16) as usize,
            worker_reclaim_after: Duration::from_secs(r.positive("WORKER_RECLAIM_AFTER_SECS", 30)),
            job_revive_after: Duration::from_secs(r.positive("JOB_REVIVE_AFTER_SECS", 60)),
            worker_deferred_flush: r.flag("WORKER_DEFERRED_FLUSH", true),
            shop_currency,
            product_cache_ttl: Duration::from_secs(r.parsed("PRODUCT_CACHE_TTL_SECS", 300, "a number of seconds")),
            reservation_sweep_interval: Duration::from_secs(r.positive("RESERVATION_SWEEP_INTERVAL_SECS", 15)),
            run_migrations: r.flag("RUN_MIGRATIONS", true),
            seed_demo_data: r.flag("SEED_DEMO_DATA", false),
            log_format: r.choice(
                "LOG_FORMAT",
                default_log,
                &[("json", LogFormat::Json), ("pretty", LogFormat::Pretty)],
            ),
            shutdown_timeout: Duration::from_secs(r.positive("SHUTDOWN_TIMEOUT_SECS", 30)),
        };
        // Amounts: a negative one would be charged as a credit, or break every order's total.
        for (name, amount) in
            [("SHIPPING_FLAT_RATE", config.shipping_flat_rate), ("FREE_SHIPPING_FROM", config.free_shipping_from)]
        {
            if amount < 0 {
                r.errors.push(format!("{name}={amount} must not be negative"));
            }
        }
        if config.ws_heartbeat >= config.ws_idle_timeout {
            // Every quiet, healthy connection would be closed as idle before its pong came back.
            r.errors.push("WS_HEARTBEAT_SECS must be shorter than WS_IDLE_TIMEOUT_SECS".to_owned());
        }
        if r.errors.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError(r.errors))
        }
    }
}

impl fmt::Debug for Config {
    /// Secrets print masked; URLs print without their passwords.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("app_env", &self.app_env)
            .field("database_url", &ecom_postgres::redact_url(&self.database_url))
            .field("database_max_connections", &self.database_max_connections)
            .field("redis_url", &ecom_postgres::redact_url(&self.redis_url))
            .field("redis_key_prefix", &self.redis_key_prefix)
            .field("http_host", &self.http_host)
            .field("http_port", &self.http_port)
            .field("http_workers", &self.http_workers)
            .field("http_body_limit", &self.http_body_limit)
            .field("cors_allowed_origins", &self.cors_allowed_origins)
            .field("trust_forwarded_for", &self.trust_forwarded_for)
            .field("jwt_secret", &self.jwt_secret)
            .field("access_token_ttl", &self.access_token_ttl)
            .field("refresh_token_ttl", &self.refresh_token_ttl)
            .field("admin_email", &self.admin_email.as_ref().map(|_| "<set>"))
            .field("admin_password", &self.admin_password)
            .field("stripe_webhook_secret", &self.stripe_webhook_secret)
            .field("payment_provider", &self.payment_provider)
            .field("stripe_api_base", &self.stripe_api_base)
            .field("stripe_secret_key", &self.stripe_secret_key)
            .field("paypal_api_base", &self.paypal_api_base)
            .field("paypal_client_id", &self.paypal_client_id)
            .field("paypal_merchant_id", &self.paypal_merchant_id)
            .field("paypal_client_secret", &self.paypal_client_secret)
            .field("paypal_webhook_id", &self.paypal_webhook_id)
            .field("payment_provider_timeout", &self.payment_provider_timeout)
            .field("simulated_capture_delay", &self.simulated_capture_delay)
            .field("idempotency_ttl", &self.idempotency_ttl)
            .field("idempotency_lease", &self.idempotency_lease)
            .field("saga_resume_after", &self.saga_resume_after)
            .field("ws_heartbeat", &self.ws_heartbeat)
            .field("ws_idle_timeout", &self.ws_idle_timeout)
            .field("ws_buffer", &self.ws_buffer)
            .field("shipping_flat_rate", &self.shipping_flat_rate)
            .field("free_shipping_from", &self.free_shipping_from)
            .field("order_payment_window", &self.order_payment_window)
            .field("cod_confirmation_window", &self.cod_confirmation_window)
            .field("worker_concurrency", &self.worker_concurrency)
            .field("worker_reclaim_after", &self.worker_reclaim_after)
            .field("job_revive_after", &self.job_revive_after)
            .field("worker_deferred_flush", &self.worker_deferred_flush)
            .field("shop_currency", &self.shop_currency)
            .field("product_cache_ttl", &self.product_cache_ttl)
            .field("reservation_sweep_interval", &self.reservation_sweep_interval)
            .field("run_migrations", &self.run_migrations)
            .field("seed_demo_data", &self.seed_demo_data)
            .field("log_format", &self.log_format)
            .field("shutdown_timeout", &self.shutdown_timeout)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        Config::from_lookup(&move |name| map.get(name).cloned())
    }

    #[test]
    fn an_empty_environment_gives_working_local_defaults() {
        let c = config(&[]).unwrap();
        assert_eq!(c.app_env, AppEnv::Local);
        assert_eq!(c.database_url, "postgres://postgres@127.0.0.1:5432/ecommerce");
        assert_eq!(c.redis_url, "redis://127.0.0.1:6379");
        assert_eq!(c.http_port, 8080);
        assert!(c.run_migrations && !c.seed_demo_data);
        assert_eq!(c.payment_provider, PaymentProvider::Simulated);
        assert_eq!(c.log_format, LogFormat::Pretty);
        assert_eq!(c.job_revive_after, Duration::from_secs(60));
        assert_eq!(config(&[("JOB_REVIVE_AFTER_SECS", "5")]).unwrap().job_revive_after, Duration::from_secs(5));
        assert!(config(&[("JOB_REVIVE_AFTER_SECS", "0")]).is_err(), "never at once");
    }

    #[test]
    fn production_refuses_to_start_without_its_secrets() {
        let err = config(&[("APP_ENV", "production")]).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("JWT_SECRET must be set"), "{text}");
        assert!(text.contains("STRIPE_WEBHOOK_SECRET must be set"), "{text}");
    }

    #[test]
    fn production_refuses_the_simulated_payment_provider() {
        let secrets =
            [("JWT_SECRET", "0123456789abcdef0123456789abcdef-real"), ("STRIPE_WEBHOOK_SECRET", "whsec_real")];
        let err = config(&[[("APP_ENV", "production")].as_slice(), &secrets].concat()).unwrap_err();
        assert!(err.to_string().contains("PAYMENT_PROVIDER must be stripe"), "{err}");
        let err =
            config(&[[("APP_ENV", "production"), ("PAYMENT_PROVIDER", "simulated")].as_slice(), &secrets].concat())
                .unwrap_err();
        assert_eq!(err.0.len(), 1, "{err}");
        assert!(config(&[("PAYMENT_PROVIDER", "simulated")]).is_ok(), "locally it is the default");
    }

    #[test]
    fn production_with_paypal_needs_the_merchant_id() {
        let base = [
            ("APP_ENV", "production"),
            ("JWT_SECRET", "0123456789abcdef0123456789abcdef-real"),
            ("STRIPE_WEBHOOK_SECRET", "whsec_real"),
            ("PAYMENT_PROVIDER", "stripe"),
            ("STRIPE_SECRET_KEY", "sk_live_x"),
            ("PAYPAL_CLIENT_ID", "id"),
            ("PAYPAL_CLIENT_SECRET", "secret"),
        ];
        let err = config(&base).unwrap_err();
        assert!(err.to_string().contains("PAYPAL_MERCHANT_ID"), "{err}");
        let c = config(&[base.as_slice(), &[("PAYPAL_MERCHANT_ID", "MERCHANT1")]].concat()).unwrap();
        assert_eq!(c.paypal_merchant_id.as_deref(), Some("MERCHANT1"));
        assert!(config(&[("PAYPAL_CLIENT_ID", "id"), ("PAYPAL_CLIENT_SECRET", "secret")]).is_ok(), "locally optional");
    }

    #[test]
    fn negative_amounts_and_a_heartbeat_as_slow_as_the_idle_timeout_are_refused() {
        assert!(config(&[("SHIPPING_FLAT_RATE", "-1")]).is_err());
        assert!(config(&[("FREE_SHIPPING_FROM", "-100")]).is_err());
        assert!(config(&[("SHIPPING_FLAT_RATE", "0"), ("FREE_SHIPPING_FROM", "0")]).is_ok());
        assert!(config(&[("WS_HEARTBEAT_SECS", "45"), ("WS_IDLE_TIMEOUT_SECS", "45")]).is_err());
        assert!(config(&[("WS_HEARTBEAT_SECS", "60")]).is_err(), "against the default idle timeout");
        assert!(config(&[("WS_HEARTBEAT_SECS", "5"), ("WS_IDLE_TIMEOUT_SECS", "6")]).is_ok());
    }

    #[test]
    fn production_refuses_the_local_default_secrets() {
        let err = config(&[
            ("APP_ENV", "production"),
            ("JWT_SECRET", LOCAL_JWT_SECRET),
            ("STRIPE_WEBHOOK_SECRET", LOCAL_STRIPE_WEBHOOK_SECRET),
            ("PAYMENT_PROVIDER", "stripe"),
            ("STRIPE_SECRET_KEY", "sk_live_x"),
        ])
        .unwrap_err();
        assert_eq!(err.0.len(), 2, "{err}");
    }

    #[test]
    fn production_starts_with_real_secrets() {
        let c = config(&[
            ("APP_ENV", "production"),
            ("JWT_SECRET", "0123456789abcdef0123456789abcdef-real"),
            ("STRIPE_WEBHOOK_SECRET", "whsec_real"),
            ("PAYMENT_PROVIDER", "stripe"),
            ("STRIPE_SECRET_KEY", "sk_live_x"),
        ])
        .unwrap();
        assert_eq!(c.log_format, LogFormat::Json);
        assert!(!c.paypal_configured());
    }

    #[test]
    fn every_invalid_variable_is_reported_at_once() {
        let err = config(&[("HTTP_PORT", "eighty"), ("RUN_MIGRATIONS", "maybe"), ("LOG_FORMAT", "xml")]).unwrap_err();
        assert_eq!(err.0.len(), 3, "{err}");
    }

    #[test]
    fn half_configured_pairs_are_refused() {
        assert!(config(&[("ADMIN_EMAIL", "admin@example.com")]).is_err());
        assert!(config(&[("PAYPAL_CLIENT_ID", "id")]).is_err());
        assert!(config(&[("PAYMENT_PROVIDER", "stripe")]).is_err());
    }

    #[test]
    fn secrets_print_masked_in_debug() {
        let c = config(&[
            ("JWT_SECRET", "jwt-very-secret-value"),
            ("ADMIN_EMAIL", "boss@example.com"),
            ("ADMIN_PASSWORD", "admin-very-secret-value"),
            ("STRIPE_WEBHOOK_SECRET", "whsec_very_secret_value"),
            ("STRIPE_SECRET_KEY", "sk_very_secret_value"),
            ("DATABASE_URL", "postgres://app:db-very-secret-value@db/shop"),
            ("REDIS_URL", "redis://:redis-very-secret-value@cache:6379"),
        ])
        .unwrap();
        let printed = format!("{c:?}");
        for secret in ["jwt-very", "admin-very", "whsec_very", "sk_very", "db-very", "redis-very", "boss@"] {
            assert!(!printed.contains(secret), "{secret} leaked in {printed}");
        }
        assert!(printed.contains("Secret(***)"));
    }
}
