//! Redis adapters: one key builder, the pool, and the stores that live in Redis.

mod canary;
mod carts;
mod idempotency;
mod keys;
mod pool;
mod product_cache;
mod queue;
mod realtime;
mod shared;
mod throttle;

pub use canary::RedisCanaryLog;
pub use carts::{CartTtl, RedisCartStore};
pub use deadpool_redis::Pool as RedisPool;
pub use idempotency::RedisIdempotencyStore;
pub use keys::{QueueKeys, RedisKeys};
pub use pool::{connect, infra_from_pool, infra_from_redis, RedisHealth, RedisSettings};
pub use product_cache::RedisProductCache;
pub use queue::{ConsumerSettings, Delivery, QueueConsumer, QueueStats, RedisJobAdmin, RedisJobQueue};
pub use realtime::{RealtimeEvent, RealtimeListener, RedisRealtimePublisher};
pub use shared::SharedConnection;
pub use throttle::{RedisLoginThrottle, ThrottlePolicy};
