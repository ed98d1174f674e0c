//! The product cache: per product, its detail (with the units available) and the product alone
//! (for pricing), each with its own generation. It never serves a product after a change was
//! acknowledged: every change bumps the generations it affects (after the database commit,
//! before the answer; a stock change only the detail's), and entries carry the generation they
//! were read under, so an entry filled from a read that raced with a change is never used.

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

/// The product as cached on its own (for pricing) and inside the detail.
#[derive(Serialize, Deserialize)]
struct CachedProduct {
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
}

/// The detail: the product and its units available (the same JSON as before the product had an
/// entry of its own).
#[derive(Serialize, Deserialize)]
struct Cached {
    #[serde(flatten)]
    product: CachedProduct,
    available: i64,
}

impl CachedProduct {
    fn from_product(p: &Product) -> Self {
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
        }
    }

    /// `None` for an entry that no longer parses (e.g. written by an older version): a miss.
    fn into_product(self) -> Option<Product> {
        Some(Product {
            id: ProductId::from_uuid(self.id),
            sku: Sku::parse(&self.sku).ok()?,
            name: BoundedText::parse(&self.name, Product::NAME_MAX_CHARS).ok()?,
            description: match self.description {
                Some(d) => Some(Product::parse_description(&d).ok()?),
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
        })
    }
}

impl Cached {
    fn from_view(v: &ProductView) -> Self {
        Self { product: CachedProduct::from_product(&v.product), available: v.available }
    }

    fn into_view(self) -> Option<ProductView> {
        Some(ProductView { product: self.product.into_product()?, available: self.available })
    }
}

/// A product's two entries.
#[derive(Clone, Copy)]
enum Entry {
    /// The product with its units available.
    Detail,
    /// The product alone, for pricing.
    Priced,
}

impl Entry {
    /// (entry key, generation key).
    fn keys(self, keys: &RedisKeys, id: ProductId) -> (String, String) {
        let id = id.to_string();
        match self {
            Entry::Detail => keys.product_cache(&id),
            Entry::Priced => keys.priced_product_cache(&id),
        }
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

impl RedisProductCache {
    /// The entry's JSON when it was filled under the current generation, and the generation.
    async fn read(&self, (entry_key, gen_key): (String, String)) -> Result<(Option<String>, CacheToken), InfraError> {
        let (entry, generation): (Option<String>, Option<String>) =
            self.redis.cmd(redis::cmd("MGET").arg(&entry_key).arg(&gen_key)).await?;
        let generation = generation.unwrap_or_else(|| "0".to_owned());
        let json = entry
            .as_deref()
            .and_then(|e| e.split_once('|'))
            .filter(|(entry_gen, _)| *entry_gen == generation)
            .map(|(_, json)| json.to_owned());
        Ok((json, CacheToken(generation)))
    }

    async fn write<T: Serialize>(
        &self,
        (entry_key, gen_key): (String, String),
        token: CacheToken,
        value: &T,
    ) -> Result<(), InfraError> {
        let json = serde_json::to_string(value).map_err(|e| InfraError::unexpected("cache encoding").with_source(e))?;
        let mut call = self.fill.prepare_invoke();
        call.key(entry_key).key(gen_key).arg(token.0).arg(json).arg(millis(self.ttl));
        let _: i64 = self.redis.script(&call).await?;
        Ok(())
    }

    /// Moves the generation of each product's `entries` and deletes them, in one round trip.
    async fn evict(&self, products: &[ProductId], entries: &[Entry]) -> Result<(), InfraError> {
        let mut pipe = redis::pipe();
        for id in products {
            for entry in entries {
                let (entry_key, gen_key) = entry.keys(&self.keys, *id);
                pipe.incr(gen_key, 1).ignore().del(entry_key).ignore();
            }
        }
        self.redis.pipe::<()>(&pipe).await
    }
}

/// A hit, or a miss with the generation to fill under; an entry that no longer parses (e.g.
/// written by an older version) is a miss, and its fill replaces it.
fn decoded<C: serde::de::DeserializeOwned, T>(
    (json, token): (Option<String>, CacheToken),
    into: impl FnOnce(C) -> Option<T>,
) -> CacheLookup<T> {
    match json.and_then(|json| serde_json::from_str::<C>(&json).ok()).and_then(into) {
        Some(value) => CacheLookup::Hit(value),
        None => CacheLookup::Miss(token),
    }
}

#[async_trait]
impl ProductCache for RedisProductCache {
    async fn lookup(&self, id: ProductId) -> Result<CacheLookup, InfraError> {
        Ok(decoded(self.read(Entry::Detail.keys(&self.keys, id)).await?, Cached::into_view))
    }

    async fn fill(&self, token: CacheToken, view: &ProductView) -> Result<(), InfraError> {
        self.write(Entry::Detail.keys(&self.keys, view.product.id), token, &Cached::from_view(view)).await
    }

    async fn lookup_priced(&self, id: ProductId) -> Result<CacheLookup<Product>, InfraError> {
        Ok(decoded(self.read(Entry::Priced.keys(&self.keys, id)).await?, CachedProduct::into_product))
    }

    async fn fill_priced(&self, token: CacheToken, product: &Product) -> Result<(), InfraError> {
        self.write(Entry::Priced.keys(&self.keys, product.id), token, &CachedProduct::from_product(product)).await
    }

    /// Evicts both entries.
    async fn invalidate(&self, id: ProductId) -> Result<(), InfraError> {
        self.evict(&[id], &[Entry::Detail, Entry::Priced]).await
    }
}

#[async_trait]
impl StockObserver for RedisProductCache {
    /// Availability is part of the cached detail: a stock change evicts it. The product's own
    /// entry stays: its price, name and status did not change.
    async fn stock_changed(&self, products: &[ProductId]) -> Result<(), InfraError> {
        self.evict(products, &[Entry::Detail]).await
    }
}
