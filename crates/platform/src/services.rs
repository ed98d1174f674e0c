//! The composition root: every adapter and service is built here, once, for both binaries.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use ecom_carts::model::CartLimits;
use ecom_carts::CartService;
use ecom_catalog::model::{Product, ProductView};
use ecom_catalog::ports::{CacheLookup, CacheToken, ProductCache};
use ecom_catalog::CatalogService;
use ecom_gateways::{
    GatewayRegistry, PayPalClient, PayPalConfig, PayPalGateway, PayPalWebhookVerifier, SimulatedGateway, StripeConfig,
    StripeGateway, StripeWebhookVerifier,
};
use ecom_http::idempotency::IdempotencySettings;
use ecom_http::metrics::HttpMetrics;
use ecom_http::realtime::{Hub, WsSettings};
use ecom_http::{AppState, HttpSettings};
use ecom_identity::model::Password;
use ecom_identity::{IdentityPorts, IdentityService, TokenPolicy};
use ecom_inventory::InventoryService;
use ecom_jobs::{Durability, ScopedBarrier};
use ecom_kernel::{Clock, Email, HealthCheck, InfraError, SystemClock};
use ecom_notifications::NotificationService;
use ecom_payments::ports::{PaymentGateway, WebhookVerifier};
use ecom_payments::PaymentService;
use ecom_postgres::{OutboxRemovals, PgAdminRecipients, PgNotificationRepository, PgWriteBarrier};
use ecom_postgres::{
    PgAddressRepository, PgCustomerRepository, PgHealth, PgOutbox, PgPaymentRepository, PgPool, PgProductRepository,
    PgRefreshTokenRepository, PgSettings, PgStockRepository,
};
use ecom_redis::{
    CartTtl, RedisCanaryLog, RedisCartStore, RedisHealth, RedisIdempotencyStore, RedisJobAdmin, RedisJobQueue,
    RedisKeys, RedisLoginThrottle, RedisPool, RedisProductCache, RedisSettings, ThrottlePolicy,
};
use ecom_redis::{RealtimeEvent, RealtimeListener, RedisRealtimePublisher};
use ecom_security::{Argon2Hasher, HmacCartTokens, HmacTokenService};

use crate::bridges::{CatalogProducts, OutboxPublisher};
use crate::operator_jobs::OperatorJobs;
use crate::order_bridges::{OrderAddresses, OrderCarts, OrderCatalog, OrderPaymentsBridge, OrderStock};
use crate::Config;
use ecom_kernel::Money;
use ecom_orders::model::ShippingPolicy;
use ecom_orders::service::{OrderPorts, OrderSettings};
use ecom_orders::OrderService;
use ecom_payments::model::Provider;
use ecom_postgres::PgOrderRepository;

/// How long a readiness probe or a pool checkout may take before the dependency counts as down.
const DEPENDENCY_TIMEOUT: Duration = Duration::from_secs(2);

/// Everything a process runs on.
pub struct Services {
    pub config: Config,
    pub pg: PgPool,
    pub redis: RedisPool,
    pub redis_keys: RedisKeys,
    pub identity: Arc<IdentityService>,
    pub catalog: Arc<CatalogService>,
    pub inventory: Arc<InventoryService>,
    pub carts: Arc<CartService>,
    /// The producer side of the job queue.
    pub jobs: Arc<RedisJobQueue>,
    pub outbox: Arc<PgOutbox>,
    /// The worker's durability barrier, when its commits do not wait for the disk, and what
    /// its work runs in (see `ecom_jobs::Durability`).
    pub barrier: Option<Arc<PgWriteBarrier>>,
    pub durability: Option<Durability>,
    pub canaries: Arc<RedisCanaryLog>,
    pub payments: Arc<PaymentService>,
    pub orders: Arc<OrderService>,
    pub notifications: Arc<NotificationService>,
    /// Every configured payment provider (the simulator always; Stripe and PayPal when their
    /// credentials are set).
    pub gateways: Arc<GatewayRegistry>,
    pub stripe_webhooks: Arc<dyn WebhookVerifier>,
    pub paypal_webhooks: Arc<dyn WebhookVerifier>,
    pub health: Vec<Arc<dyn HealthCheck>>,
}

/// Creates the database if needed and applies migrations, when `RUN_MIGRATIONS` is on.
pub async fn prepare_database(config: &Config) -> anyhow::Result<()> {
    if !config.run_migrations {
        return Ok(());
    }
    ecom_postgres::ensure_database_exists(&config.database_url).await.context("creating the database")?;
    let applied = ecom_postgres::run_migrations(&config.database_url).await.context("running migrations")?;
    tracing::info!(applied, "database migrated");
    Ok(())
}

/// Drops and recreates the database, then migrates it. Refused in production.
pub async fn reset_database(config: &Config) -> anyhow::Result<()> {
    anyhow::ensure!(config.app_env != crate::AppEnv::Production, "db-reset is refused when APP_ENV=production");
    ecom_postgres::drop_database(&config.database_url).await.context("dropping the database")?;
    prepare_database(&Config { run_migrations: true, ..config.clone() }).await
}

impl Services {
    /// Builds pools and services. Connections open lazily: a dependency that is down now
    /// makes readiness fail, not start-up.
    pub fn build(config: &Config, application_name: &str) -> anyhow::Result<Self> {
        Self::build_with(config, application_name, false)
    }

    /// The worker's services: with `WORKER_DEFERRED_FLUSH` (the default), commits that do not
    /// wait for the disk and the durability barrier its job runtime flushes them with.
    pub fn build_worker(config: &Config) -> anyhow::Result<Self> {
        Self::build_with(config, "ecom-worker", config.worker_deferred_flush)
    }

    fn build_with(config: &Config, application_name: &str, deferred_flush: bool) -> anyhow::Result<Self> {
        let pg_settings = PgSettings {
            url: config.database_url.clone(),
            max_connections: config.database_max_connections,
            acquire_timeout: DEPENDENCY_TIMEOUT,
            statement_timeout: Duration::from_secs(10),
            application_name: application_name.to_owned(),
        };
        let pg = if deferred_flush {
            ecom_postgres::connect_deferring_flush(&pg_settings)
        } else {
            ecom_postgres::connect(&pg_settings)
        }
        .context("building the postgres pool")?;
        let barrier = deferred_flush.then(|| Arc::new(PgWriteBarrier::new(&pg_settings)));
        let pg_batch = ecom_postgres::connect_batch(&pg_settings).context("building the postgres batch pool")?;
        let redis = ecom_redis::connect(&RedisSettings {
            url: config.redis_url.clone(),
            max_connections: config.database_max_connections * 2,
            timeout: DEPENDENCY_TIMEOUT,
        })
        .context("building the redis pool")?;
        let redis_keys = RedisKeys::new(config.redis_key_prefix.clone());

        let access_ttl = chrono::Duration::from_std(config.access_token_ttl).context("ACCESS_TOKEN_TTL_SECS")?;
        let refresh_ttl = chrono::Duration::from_std(config.refresh_token_ttl).context("REFRESH_TOKEN_TTL_SECS")?;
        let identity = Arc::new(IdentityService::new(
            IdentityPorts {
                customers: Arc::new(PgCustomerRepository::new(pg.clone())),
                refresh_tokens: Arc::new(PgRefreshTokenRepository::new(pg.clone())),
                addresses: Arc::new(PgAddressRepository::new(pg.clone())),
                hasher: Arc::new(Argon2Hasher::new().context("password hasher")?),
                tokens: Arc::new(HmacTokenService::new(&config.jwt_secret, access_ttl).context("token service")?),
                throttle: Arc::new(RedisLoginThrottle::new(
                    redis.clone(),
                    redis_keys.clone(),
                    ThrottlePolicy {
                        max_failures_per_email: config.login_max_failures_per_email,
                        max_failures_per_client: config.login_max_failures_per_client,
                        window: config.login_throttle_window,
                    },
                )),
                clock: Arc::new(SystemClock),
            },
            TokenPolicy { refresh_ttl },
        ));
        let redis_cache = Arc::new(RedisProductCache::new(redis.clone(), redis_keys.clone(), config.product_cache_ttl));
        // PRODUCT_CACHE_TTL_SECS=0 turns the read cache off (to measure what it brings).
        let product_cache: Arc<dyn ProductCache> = if config.product_cache_ttl.is_zero() {
            Arc::new(NoProductCache { shared: redis_cache.clone() })
        } else {
            redis_cache.clone()
        };
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let catalog = Arc::new(CatalogService::new(
            Arc::new(PgProductRepository::new(pg.clone())),
            product_cache.clone(),
            clock.clone(),
            config.shop_currency,
        ));
        let inventory =
            Arc::new(InventoryService::new(Arc::new(PgStockRepository::new(pg.clone())), redis_cache, clock));
        let carts = Arc::new(CartService::new(
            Arc::new(RedisCartStore::new(redis.clone(), redis_keys.clone(), CartTtl::default())),
            Arc::new(CatalogProducts::new(catalog.clone())),
            Arc::new(HmacCartTokens::new(&config.jwt_secret).context("cart tokens")?),
            Arc::new(SystemClock),
            CartLimits::default(),
            config.shop_currency,
        ));
        let jobs = Arc::new(RedisJobQueue::new(redis.clone(), redis_keys.clone()));
        let mut outbox = PgOutbox::new(pg.clone(), pg_batch.clone());
        let mut payment_repository = PgPaymentRepository::new(pg.clone());
        if let Some(barrier) = &barrier {
            outbox = outbox.with_barrier(barrier.clone());
            payment_repository = payment_repository.with_barrier(Arc::new(ScopedBarrier(barrier.clone())));
        }
        let outbox = Arc::new(outbox);
        let canaries = Arc::new(RedisCanaryLog::new(redis.clone(), redis_keys.clone()));
        let publisher: Arc<OutboxPublisher> =
            Arc::new(OutboxPublisher { queue: jobs.clone(), removals: OutboxRemovals::spawn(outbox.clone()) });
        let eager_publisher: Arc<dyn ecom_payments::ports::JobPublisher> = publisher.clone();
        let payment_gateways = PaymentGateways::build(config, redis.clone(), jobs.clone())?;
        let payments = Arc::new(PaymentService::new(
            Arc::new(payment_repository),
            payment_gateways.registry.clone(),
            publisher.clone(),
            Arc::new(SystemClock),
        ));
        let orders = Arc::new(OrderService::new(
            OrderPorts {
                orders: Arc::new(PgOrderRepository::new(pg.clone())),
                carts: Arc::new(OrderCarts(carts.clone())),
                catalog: Arc::new(OrderCatalog(catalog.clone())),
                addresses: Arc::new(OrderAddresses(identity.clone())),
                stock: Arc::new(OrderStock(inventory.clone())),
                payments: Arc::new(OrderPaymentsBridge {
                    payments: payments.clone(),
                    card_provider: match config.payment_provider {
                        crate::config::PaymentProvider::Simulated => Provider::Simulated,
                        crate::config::PaymentProvider::Stripe => Provider::Stripe,
                    },
                    // Locally, without PayPal's keys, the simulator stands in for it; never in
                    // production, where checkout refuses PayPal then (and an order taken before
                    // the keys were removed is declined, PayPal not being configured).
                    paypal_provider: if config.paypal_configured() || config.app_env == crate::AppEnv::Production {
                        Provider::PayPal
                    } else {
                        Provider::Simulated
                    },
                }),
                publisher,
                clock: Arc::new(SystemClock),
            },
            OrderSettings {
                shipping: ShippingPolicy {
                    flat_rate: Money::new(config.shipping_flat_rate, config.shop_currency),
                    free_from: (config.free_shipping_from > 0)
                        .then(|| Money::new(config.free_shipping_from, config.shop_currency)),
                },
                payment_window: chrono::Duration::from_std(config.order_payment_window)
                    .context("ORDER_PAYMENT_WINDOW_SECS")?,
                confirmation_window: chrono::Duration::from_std(config.cod_confirmation_window)
                    .context("COD_CONFIRMATION_WINDOW_SECS")?,
                paypal_accepted: config.paypal_configured() || config.app_env != crate::AppEnv::Production,
            },
        ));
        let notifications = Arc::new(NotificationService::new(
            Arc::new(PgNotificationRepository::new(pg.clone(), pg_batch)),
            Arc::new(PgAdminRecipients::new(pg.clone())),
            Arc::new(RedisRealtimePublisher::new(redis.clone(), redis_keys.clone())),
            Arc::new(SystemClock),
        ));
        let health: Vec<Arc<dyn HealthCheck>> = vec![
            Arc::new(PgHealth::new(pg.clone(), DEPENDENCY_TIMEOUT)),
            Arc::new(RedisHealth::new(redis.clone(), DEPENDENCY_TIMEOUT)),
        ];
        Ok(Self {
            config: config.clone(),
            pg,
            redis,
            redis_keys,
            identity,
            catalog,
            inventory,
            carts,
            jobs,
            outbox,
            durability: barrier.as_ref().map(|b| Durability::new(b.clone(), eager_publisher)),
            barrier,
            canaries,
            payments,
            orders,
            notifications,
            gateways: payment_gateways.registry,
            stripe_webhooks: payment_gateways.stripe_webhooks,
            paypal_webhooks: payment_gateways.paypal_webhooks,
            health,
        })
    }

    /// Creates or updates the admin account from `ADMIN_EMAIL` / `ADMIN_PASSWORD`.
    pub async fn bootstrap_admin(&self) -> anyhow::Result<()> {
        let (Some(email), Some(password)) = (&self.config.admin_email, &self.config.admin_password) else {
            return Ok(());
        };
        let email = Email::parse(email).context("ADMIN_EMAIL is not a valid e-mail address")?;
        let password = Password::parse(password.expose().clone()).context("ADMIN_PASSWORD")?;
        let admin = self.identity.bootstrap_admin(email, password).await.context("bootstrapping the admin")?;
        tracing::info!(customer_id = %admin.id(), "admin account ready");
        Ok(())
    }

    /// Checks every dependency once, then opens the durability barrier's session (if any), so
    /// that the first jobs find its epoch.
    pub async fn connect(&self) -> anyhow::Result<()> {
        self.check_dependencies().await?;
        if let Some(barrier) = &self.barrier {
            barrier.connect().await.context("opening the durability barrier's session")?;
        }
        Ok(())
    }

    /// Checks every dependency once; the error names the ones that are down.
    pub async fn check_dependencies(&self) -> anyhow::Result<()> {
        let mut down = Vec::new();
        for check in &self.health {
            if let Err(err) = check.check().await {
                down.push(format!("{}: {err}", check.name()));
            }
        }
        if down.is_empty() {
            Ok(())
        } else {
            anyhow::bail!("dependencies unavailable: {}", down.join("; "))
        }
    }

    /// The api's state; `realtime` holds this instance's WebSocket sessions.
    pub fn http_state(&self, realtime: Arc<Hub>) -> anyhow::Result<AppState> {
        Ok(AppState {
            identity: self.identity.clone(),
            catalog: self.catalog.clone(),
            inventory: self.inventory.clone(),
            carts: self.carts.clone(),
            jobs: Arc::new(OperatorJobs {
                queues: RedisJobAdmin::new(self.redis.clone(), self.redis_keys.clone()),
                queue: self.jobs.clone(),
                outbox: self.outbox.clone(),
                canaries: self.canaries.clone(),
            }),
            payments: self.payments.clone(),
            orders: self.orders.clone(),
            notifications: self.notifications.clone(),
            realtime,
            idempotency: Arc::new(RedisIdempotencyStore::new(self.redis.clone(), self.redis_keys.clone())),
            stripe_webhooks: self.stripe_webhooks.clone(),
            paypal_webhooks: self.paypal_webhooks.clone(),
            health: self.health.clone(),
            metrics: Arc::new(HttpMetrics::new().context("registering metrics")?),
            settings: HttpSettings {
                body_limit: self.config.http_body_limit,
                cors_allowed_origins: self.config.cors_allowed_origins.clone(),
                trust_forwarded_for: self.config.trust_forwarded_for,
                idempotency: IdempotencySettings {
                    ttl: self.config.idempotency_ttl,
                    lease: self.config.idempotency_lease,
                },
                ws: self.ws_settings(),
            },
        })
    }
}

impl Services {
    fn ws_settings(&self) -> WsSettings {
        WsSettings {
            heartbeat: self.config.ws_heartbeat,
            idle_timeout: self.config.ws_idle_timeout,
            buffer: self.config.ws_buffer,
        }
    }
}

/// Feeds this instance's WebSocket sessions from the realtime channels, for as long as the
/// process runs; after every (re)subscription each session resends its backlog.
fn spawn_realtime_feed(services: &Services, hub: Arc<Hub>) -> anyhow::Result<()> {
    let listener =
        RealtimeListener::new(&services.config.redis_url, &services.redis_keys).context("realtime listener")?;
    tokio::spawn(listener.run(
        move |event| match event {
            RealtimeEvent::Subscribed => {
                hub.resync();
            }
            RealtimeEvent::Notification(notification) => {
                hub.deliver(&notification);
            }
        },
        std::future::pending::<()>(),
    ));
    Ok(())
}

/// The cache switched off here: every lookup misses and nothing is stored. A change (and its
/// eviction job) still evicts the shared entries, which another process caching may hold.
struct NoProductCache {
    shared: Arc<RedisProductCache>,
}

#[async_trait::async_trait]
impl ProductCache for NoProductCache {
    async fn lookup(&self, _: ecom_kernel::ProductId) -> Result<CacheLookup, InfraError> {
        Ok(CacheLookup::Miss(CacheToken(String::new())))
    }
    async fn fill(&self, _: CacheToken, _: &ProductView) -> Result<(), InfraError> {
        Ok(())
    }
    async fn lookup_priced(&self, _: ecom_kernel::ProductId) -> Result<CacheLookup<Product>, InfraError> {
        Ok(CacheLookup::Miss(CacheToken(String::new())))
    }
    async fn fill_priced(&self, _: CacheToken, _: &Product) -> Result<(), InfraError> {
        Ok(())
    }
    async fn invalidate(&self, id: ecom_kernel::ProductId) -> Result<(), InfraError> {
        self.shared.invalidate(id).await
    }
}

/// A started api server, not yet awaited.
pub struct RunningApi {
    pub server: actix_web::dev::Server,
    pub local_addr: SocketAddr,
    pub services: Arc<Services>,
}

/// Prepares the database, builds the services, bootstraps the admin and binds the server.
pub async fn start_api(config: &Config) -> anyhow::Result<RunningApi> {
    prepare_database(config).await?;
    let services = Arc::new(Services::build(config, "ecom-api")?);
    services.bootstrap_admin().await?;
    if config.seed_demo_data {
        let created = crate::seed::seed_demo_catalog(&services.catalog).await?;
        tracing::info!(created, "demo catalog seeded");
    }
    let listener = bind(&config.http_host, config.http_port)
        .with_context(|| format!("binding {}:{}", config.http_host, config.http_port))?;
    let local_addr = listener.local_addr()?;
    let hub = Arc::new(Hub::new(&services.ws_settings()));
    spawn_realtime_feed(&services, hub.clone())?;
    // On the operator's signal the server drains; WebSockets never end by themselves, so they
    // are closed (1001), else every stop with one client connected would wait the whole drain.
    let closing = hub.clone();
    let (stop, stopping) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        crate::shutdown::signal().await;
        tracing::info!(sessions = closing.connections(), "closing websocket sessions");
        closing.close_all();
        let _ = stop.send(());
    });
    let stopping = async move {
        let _ = stopping.await;
    };
    let server =
        ecom_http::serve(services.http_state(hub)?, listener, config.http_workers, config.shutdown_timeout, stopping)?;
    tracing::info!(%local_addr, "api listening");
    Ok(RunningApi { server, local_addr, services })
}

/// Pending connections the kernel queues for the api (std's listener keeps 128: a thousand
/// WebSockets reconnecting after a deploy would overflow it and wait for SYN retries).
const LISTEN_BACKLOG: i32 = 2048;

fn bind(host: &str, port: u16) -> std::io::Result<TcpListener> {
    use std::net::ToSocketAddrs as _;
    let addr = (host, port)
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::AddrNotAvailable, "no address for the host"))?;
    let socket = socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket.into())
}

/// The payment providers this process can talk to, and the webhook verifiers.
struct PaymentGateways {
    registry: Arc<GatewayRegistry>,
    stripe_webhooks: Arc<dyn WebhookVerifier>,
    paypal_webhooks: Arc<dyn WebhookVerifier>,
}

impl PaymentGateways {
    fn build(config: &Config, redis: RedisPool, queue: Arc<RedisJobQueue>) -> anyhow::Result<Self> {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let mut gateways: Vec<Arc<dyn PaymentGateway>> = vec![Arc::new(SimulatedGateway::new(
            redis,
            config.redis_key_prefix.clone(),
            queue,
            clock.clone(),
            config.simulated_capture_delay,
        ))];
        if let Some(secret_key) = &config.stripe_secret_key {
            let stripe = StripeConfig {
                api_base: config.stripe_api_base.clone(),
                timeout: config.payment_provider_timeout,
                ..StripeConfig::new(secret_key.clone())
            };
            gateways.push(Arc::new(StripeGateway::new(stripe).context("stripe client")?));
        }
        // Without PayPal credentials the verifier still exists and refuses every webhook.
        let paypal_client = match (&config.paypal_client_id, &config.paypal_client_secret) {
            (Some(id), Some(secret)) => Some(Arc::new(
                PayPalClient::new(PayPalConfig {
                    api_base: config.paypal_api_base.clone(),
                    timeout: config.payment_provider_timeout,
                    ..PayPalConfig::sandbox(id.clone(), secret.clone())
                })
                .context("paypal client")?,
            )),
            _ => None,
        };
        if let Some(client) = &paypal_client {
            gateways
                .push(Arc::new(PayPalGateway::new(client.clone()).with_merchant(config.paypal_merchant_id.clone())));
        }
        let paypal_webhooks: Arc<dyn WebhookVerifier> = match paypal_client {
            Some(client) => Arc::new(PayPalWebhookVerifier::new(client, config.paypal_webhook_id.clone())),
            None => Arc::new(RefuseAll("PayPal is not configured (PAYPAL_CLIENT_ID, PAYPAL_CLIENT_SECRET)")),
        };
        Ok(Self {
            registry: Arc::new(GatewayRegistry::new(gateways)),
            stripe_webhooks: Arc::new(StripeWebhookVerifier::new(config.stripe_webhook_secret.clone(), clock)),
            paypal_webhooks,
        })
    }
}

/// The verifier of a provider that is not configured: fails closed.
struct RefuseAll(&'static str);

#[async_trait::async_trait]
impl WebhookVerifier for RefuseAll {
    async fn verify(
        &self,
        _request: &ecom_payments::ports::WebhookRequest,
    ) -> Result<ecom_payments::model::GatewayEvent, ecom_payments::ports::WebhookError> {
        Err(ecom_payments::ports::WebhookError::BadSignature(self.0.to_owned()))
    }
}
