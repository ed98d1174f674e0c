//! The product cache against the real Redis: a fill that raced with a change is never served.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use chrono::Utc;
use ecom_catalog::model::{Product, ProductStatus, ProductView, Sku};
use ecom_catalog::ports::{CacheLookup, ProductCache};
use ecom_inventory::ports::StockObserver;
use ecom_kernel::{BoundedText, Currency, Money, ProductId};
use ecom_redis::{connect, RedisKeys, RedisProductCache, RedisSettings};
use ecom_testkit::TestRedis;

fn cache(redis: &TestRedis) -> RedisProductCache {
    let pool = connect(&RedisSettings { url: redis.url().into(), max_connections: 4, timeout: Duration::from_secs(2) })
        .unwrap();
    RedisProductCache::new(pool, RedisKeys::new(redis.prefix()), Duration::from_secs(60))
}

fn view(name: &str) -> ProductView {
    let now = chrono::DateTime::from_timestamp_micros(Utc::now().timestamp_micros()).unwrap();
    ProductView {
        product: Product {
            id: ProductId::new(),
            sku: Sku::parse("C-1").unwrap(),
            name: BoundedText::parse(name, 200).unwrap(),
            description: None,
            price: Money::new(500, Currency::USD),
            category: Some(BoundedText::parse("test", 100).unwrap()),
            status: ProductStatus::Active,
            created_at: now,
            updated_at: now,
        },
        available: 4,
    }
}

#[tokio::test]
async fn a_filled_entry_is_served_until_it_is_invalidated() {
    let redis = TestRedis::new();
    let cache = cache(&redis);
    let v = view("Mug");
    let id = v.product.id;
    let CacheLookup::Miss(token) = cache.lookup(id).await.unwrap() else { panic!("empty cache must miss") };
    cache.fill(token, &v).await.unwrap();
    assert_eq!(cache.lookup(id).await.unwrap(), CacheLookup::Hit(v.clone()));

    cache.invalidate(id).await.unwrap();
    assert!(matches!(cache.lookup(id).await.unwrap(), CacheLookup::Miss(_)));
    cache.stock_changed(&[id]).await.unwrap();
    assert!(matches!(cache.lookup(id).await.unwrap(), CacheLookup::Miss(_)));
}

#[tokio::test]
async fn a_stock_change_evicts_the_detail_but_not_the_priced_product_and_a_product_change_both() {
    let redis = TestRedis::new();
    let cache = cache(&redis);
    let v = view("Kettle");
    let id = v.product.id;
    let CacheLookup::Miss(token) = cache.lookup_priced(id).await.unwrap() else { panic!("empty cache must miss") };
    cache.fill_priced(token, &v.product).await.unwrap();
    let CacheLookup::Miss(token) = cache.lookup(id).await.unwrap() else { panic!("the detail is its own entry") };
    cache.fill(token, &v).await.unwrap();
    assert_eq!(cache.lookup_priced(id).await.unwrap(), CacheLookup::Hit(v.product.clone()));

    // A sale: the units available changed, the product did not.
    cache.stock_changed(&[id]).await.unwrap();
    assert!(matches!(cache.lookup(id).await.unwrap(), CacheLookup::Miss(_)));
    assert_eq!(cache.lookup_priced(id).await.unwrap(), CacheLookup::Hit(v.product.clone()));

    // A change of the product evicts both.
    cache.invalidate(id).await.unwrap();
    assert!(matches!(cache.lookup(id).await.unwrap(), CacheLookup::Miss(_)));
    let CacheLookup::Miss(before) = cache.lookup_priced(id).await.unwrap() else {
        panic!("a product change evicts it")
    };
    // A reader that missed before another change cannot fill what it read.
    cache.invalidate(id).await.unwrap();
    cache.fill_priced(before, &v.product).await.unwrap();
    assert!(matches!(cache.lookup_priced(id).await.unwrap(), CacheLookup::Miss(_)), "stale fill served");
}

#[tokio::test]
async fn a_fill_from_a_read_that_raced_with_a_change_is_refused() {
    let redis = TestRedis::new();
    let cache = cache(&redis);
    let stale = view("Old name");
    let id = stale.product.id;
    // Reader: misses and reads the database (old data)...
    let CacheLookup::Miss(token) = cache.lookup(id).await.unwrap() else { panic!() };
    // ...writer: commits a change and invalidates...
    cache.invalidate(id).await.unwrap();
    // ...reader: fills with what it read before the change. It must not stick.
    cache.fill(token, &stale).await.unwrap();
    assert!(matches!(cache.lookup(id).await.unwrap(), CacheLookup::Miss(_)), "stale fill served");
    assert!(redis.keys().iter().all(|k| k.starts_with(redis.prefix())));
}
