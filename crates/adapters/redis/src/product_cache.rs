//! The product-detail cache. It never serves a product after a change was acknowledged:
//! every change bumps the product's generation (after the database commit, before the answer),
//! and entries carry the generation they were read under, so an entry filled from a read that
//! raced with a change is never used.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deadpool_redis::{redis, Pool};
use ecom_catalog::model::{Product, ProductStatus, ProductView, Sku};
use ecom_catalog::ports::{CacheLookup, CacheToken, ProductCache};
use ecom_inventory::ports::StockObserver;
use ecom_kernel::{BoundedText, Currency, InfraError, Money, ProductId};
use serde::{Deserialize, Serialize};

use crate::shared::{millis, SharedConnection};
use crate::RedisKeys;

/// Stores the entry only when the generation is still the one the reader saw.
const FILL: &str = r"
if (redis.call('GET', KEYS[2]) or '0') == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1] .. '|' .. ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0";

#[derive(Serialize, Deserialize)]
struct Cached {
    id: uuid::Uuid,
    sku: String,
    name: String,
    description: Option<String>,
    amount: i64,
    currency: String,
    category: Option<String>,
    archived: bool,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    available: i64,
}

impl Cached {
    fn from_view(v: &ProductView) -> Self {
        let p = &v.product;
        Self {
            id: p.id.as_uuid(),
            sku: p.sku.as_str().to_owned(),
            name: p.name.as_str().to_owned(),
            description: p.description.as_ref().map(|d| d.as_str().to_owned()),
            amount: p.price.amount(),
            currency: p.price.currency().code().to_owned(),
            category: p.category.as_ref().map(|c| c.as_str().to_owned()),
            archived: p.status == ProductStatus::Archived,
            created_at: p.created_at,
            updated_at: p.updated_at,
            available: v.available,
        }
    }

    /// `None` for an entry that no longer parses (e.g. written by an older version): a miss.
    fn into_view(self) -> Option<ProductView> {
        let product = Product {
            id: ProductId::from_uuid(self.id),
            sku: Sku::parse(&self.sku).ok()?,
            name: BoundedText::parse(&self.name, Product::NAME_MAX_CHARS).ok()?,
            description: match self.description {
                Some(d) => Some(BoundedText::parse(&d, Product::DESCRIPTION_MAX_CHARS).ok()?),
                None => None,
            },
            price: Money::new(self.amount, Currency::parse(&self.currency).ok()?),
            category: match self.category {
                Some(c) => Some(BoundedText::parse(&c, Product::CATEGORY_MAX_CHARS).ok()?),
                None => None,
            },
            status: if self.archived { ProductStatus::Archived } else { ProductStatus::Active },
            created_at: self.created_at,
            updated_at: self.updated_at,
        };
        Some(ProductView { product, available: self.available })
    }
}

pub struct RedisProductCache {
    redis: SharedConnection,
    keys: RedisKeys,
    ttl: Duration,
    fill: redis::Script,
}

impl RedisProductCache {
    pub fn new(pool: Pool, keys: RedisKeys, ttl: Duration) -> Self {
        Self { redis: SharedConnection::new(pool), keys, ttl, fill: redis::Script::new(FILL) }
    }
}

#[async_trait]
impl ProductCache for RedisProductCache {
    async fn lookup(&self, id: ProductId) -> Result<CacheLookup, InfraError> {
        let (entry_key, gen_key) = self.keys.product_cache(&id.to_string());
        let (entry, generation): (Option<String>, Option<String>) =
            self.redis.cmd(redis::cmd("MGET").arg(&entry_key).arg(&gen_key)).await?;
        let generation = generation.unwrap_or_else(|| "0".to_owned());
        let hit = entry
            .as_deref()
            .and_then(|e| e.split_once('|'))
            .filter(|(entry_gen, _)| *entry_gen == generation)
            .and_then(|(_, json)| serde_json::from_str::<Cached>(json).ok())
            .and_then(Cached::into_view);
        Ok(match hit {
            Some(view) => CacheLookup::Hit(view),
            None => CacheLookup::Miss(CacheToken(generation)),
        })
    }

    async fn fill(&self, token: CacheToken, view: &ProductView) -> Result<(), InfraError> {
        let (entry_key, gen_key) = self.keys.product_cache(&view.product.id.to_string());
        let json = serde_json::to_string(&Cached::from_view(view))
            .map_err(|e| InfraError::unexpected("cache encoding").with_source(e))?;
        let mut call = self.fill.prepare_invoke();
        call.key(entry_key).key(gen_key).arg(token.0).arg(json).arg(millis(self.ttl));
        let _: i64 = self.redis.script(&call).await?;
        Ok(())
    }

    async fn invalidate(&self, id: ProductId) -> Result<(), InfraError> {
        self.stock_changed(&[id]).await
    }
}

#[async_trait]
impl StockObserver for RedisProductCache {
    /// Availability is part of the cached detail: a stock change is a change of the product.
    async fn stock_changed(&self, products: &[ProductId]) -> Result<(), InfraError> {
        let mut pipe = redis::pipe();
        for id in products {
            let (entry_key, gen_key) = self.keys.product_cache(&id.to_string());
            pipe.incr(gen_key, 1).ignore().del(entry_key).ignore();
        }
        self.redis.pipe::<()>(&pipe).await
    }
}
