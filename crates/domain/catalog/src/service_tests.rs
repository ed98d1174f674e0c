use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use ecom_kernel::clock::MockClock;
use ecom_kernel::{BoundedText, Currency, CustomerId, Money, ProductId};
use mockall::predicate::eq;

use crate::model::*;
use crate::ports::*;
use crate::{CatalogError, CatalogService};

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 12, 0, 0).single().unwrap()
}

fn service(repo: MockProductRepository, cache: MockProductCache) -> CatalogService {
    let mut clock = MockClock::new();
    clock.expect_now().returning(now);
    CatalogService::new(Arc::new(repo), Arc::new(cache), Arc::new(clock), Currency::USD)
}

fn new_product(price: Money) -> NewProduct {
    NewProduct {
        sku: Sku::parse("mug-1").unwrap(),
        name: BoundedText::parse("Mug", 200).unwrap(),
        description: None,
        price,
        category: None,
        initial_stock: 7,
    }
}

fn view(status: ProductStatus) -> ProductView {
    ProductView {
        product: Product {
            id: ProductId::new(),
            sku: Sku::parse("MUG-1").unwrap(),
            name: BoundedText::parse("Mug", 200).unwrap(),
            description: None,
            price: Money::new(1200, Currency::USD),
            category: None,
            status,
            created_at: now(),
            updated_at: now(),
        },
        available: 3,
    }
}

#[pollster::test]
async fn creating_a_product_stores_it_with_its_initial_stock() {
    let mut repo = MockProductRepository::new();
    repo.expect_create()
        .withf(|p, stock, _| p.sku.as_str() == "MUG-1" && *stock == 7)
        .times(1)
        .returning(|_, _, _| Ok(()));
    let created = service(repo, MockProductCache::new())
        .create_product(CustomerId::new(), new_product(Money::new(1200, Currency::USD)))
        .await
        .unwrap();
    assert_eq!(created.available, 7);
    assert!(created.product.is_active());
}

#[pollster::test]
async fn prices_must_be_positive_and_in_the_shop_currency() {
    for (price, expected) in
        [(Money::new(0, Currency::USD), "greater than zero"), (Money::new(100, Currency::EUR), "in USD")]
    {
        let mut repo = MockProductRepository::new();
        repo.expect_create().never();
        let err = service(repo, MockProductCache::new()).create_product(CustomerId::new(), new_product(price)).await;
        assert!(err.unwrap_err().to_string().contains(expected));
    }
}

/// Found by `just fuzz`: two products priced near `i64::MAX` in one cart overflowed its
/// subtotal, and every read of that cart was a 500.
#[pollster::test]
async fn prices_above_the_maximum_are_refused_so_that_no_total_can_overflow() {
    let mut repo = MockProductRepository::new();
    repo.expect_create().times(1).returning(|_, _, _| Ok(()));
    repo.expect_find().never();
    repo.expect_update().never();
    let catalog = service(repo, MockProductCache::new());
    let highest = Money::new(Product::MAX_PRICE, Currency::USD);
    assert!(catalog.create_product(CustomerId::new(), new_product(highest)).await.is_ok());
    for amount in [Product::MAX_PRICE + 1, i64::MAX] {
        let err = catalog.create_product(CustomerId::new(), new_product(Money::new(amount, Currency::USD))).await;
        assert!(matches!(err, Err(CatalogError::PriceTooHigh { max: Product::MAX_PRICE })), "{err:?}");
        let patch = ProductPatch { price: Some(Money::new(amount, Currency::USD)), ..ProductPatch::default() };
        let err = catalog.update_product(ProductId::new(), patch).await;
        assert!(matches!(err, Err(CatalogError::PriceTooHigh { .. })), "{err:?}");
    }
    // The dearest cart there can be: 100 lines of 100 units at the highest price.
    assert!(highest.checked_mul(100).and_then(|line| Money::sum(Currency::USD, vec![line; 100])).is_ok());
}

#[pollster::test]
async fn a_taken_sku_is_reported_with_the_sku() {
    let mut repo = MockProductRepository::new();
    repo.expect_create().returning(|_, _, _| Err(CreateProductError::SkuTaken));
    let err = service(repo, MockProductCache::new())
        .create_product(CustomerId::new(), new_product(Money::new(1, Currency::USD)))
        .await
        .unwrap_err();
    assert!(matches!(err, CatalogError::SkuTaken(sku) if sku == "MUG-1"));
}

#[pollster::test]
async fn a_cache_hit_skips_the_database() {
    let cached = view(ProductStatus::Active);
    let id = cached.product.id;
    let mut cache = MockProductCache::new();
    cache.expect_lookup().with(eq(id)).returning(move |_| Ok(CacheLookup::Hit(cached.clone())));
    let mut repo = MockProductRepository::new();
    repo.expect_find().never();
    assert_eq!(service(repo, cache).get_product(id).await.unwrap().product.id, id);
}

#[pollster::test]
async fn a_miss_reads_the_database_and_fills_with_the_lookup_token() {
    let stored = view(ProductStatus::Active);
    let id = stored.product.id;
    let mut cache = MockProductCache::new();
    cache.expect_lookup().returning(|_| Ok(CacheLookup::Miss(CacheToken("gen-4".into()))));
    cache.expect_fill().withf(|token, _| token.0 == "gen-4").times(1).returning(|_, _| Ok(()));
    let mut repo = MockProductRepository::new();
    let found = stored.clone();
    repo.expect_find().times(1).returning(move |_| Ok(Some(found.clone())));
    assert_eq!(service(repo, cache).get_product(id).await.unwrap(), stored);
}

#[pollster::test]
async fn a_broken_cache_falls_back_to_the_database() {
    let stored = view(ProductStatus::Active);
    let id = stored.product.id;
    let mut cache = MockProductCache::new();
    cache.expect_lookup().returning(|_| Err(ecom_kernel::InfraError::unavailable("redis")));
    cache.expect_fill().never();
    let mut repo = MockProductRepository::new();
    repo.expect_find().returning(move |_| Ok(Some(stored.clone())));
    assert!(service(repo, cache).get_product(id).await.is_ok());
}

#[pollster::test]
async fn archived_products_are_not_found_publicly() {
    let archived = view(ProductStatus::Archived);
    let id = archived.product.id;
    let mut cache = MockProductCache::new();
    cache.expect_lookup().returning(move |_| Ok(CacheLookup::Hit(archived.clone())));
    let err = service(MockProductRepository::new(), cache).get_product(id).await.unwrap_err();
    assert!(matches!(err, CatalogError::ProductNotFound(_)));
}

#[pollster::test]
async fn a_lookup_reads_through_the_cache_whatever_the_status() {
    let archived = view(ProductStatus::Archived);
    let id = archived.product.id;
    let mut cache = MockProductCache::new();
    let hit = archived.clone();
    cache.expect_lookup().with(eq(id)).times(1).returning(move |_| Ok(CacheLookup::Hit(hit.clone())));
    let mut repo = MockProductRepository::new();
    repo.expect_find().never();
    assert_eq!(service(repo, cache).lookup_product(id).await.unwrap(), archived, "archived, not missing");

    let mut cache = MockProductCache::new();
    cache.expect_lookup().returning(|_| Ok(CacheLookup::Miss(CacheToken("gen-9".into()))));
    cache.expect_fill().withf(|token, _| token.0 == "gen-9").times(1).returning(|_, _| Ok(()));
    let mut repo = MockProductRepository::new();
    let stored = archived.clone();
    repo.expect_find().with(eq(id)).times(1).returning(move |_| Ok(Some(stored.clone())));
    assert_eq!(service(repo, cache).lookup_product(id).await.unwrap(), archived);

    let mut cache = MockProductCache::new();
    cache.expect_lookup().returning(|_| Ok(CacheLookup::Miss(CacheToken("gen-1".into()))));
    cache.expect_fill().never();
    let mut repo = MockProductRepository::new();
    repo.expect_find().returning(|_| Ok(None));
    assert!(matches!(service(repo, cache).lookup_product(id).await, Err(CatalogError::ProductNotFound(p)) if p == id));
}

#[pollster::test]
async fn a_priced_product_comes_from_its_own_cache_entry_and_a_miss_fills_it() {
    let archived = view(ProductStatus::Archived);
    let id = archived.product.id;
    let mut cache = MockProductCache::new();
    let hit = archived.product.clone();
    cache.expect_lookup_priced().with(eq(id)).times(1).returning(move |_| Ok(CacheLookup::Hit(hit.clone())));
    cache.expect_lookup().never();
    let mut repo = MockProductRepository::new();
    repo.expect_find().never();
    assert_eq!(service(repo, cache).priced_product(id).await.unwrap(), archived.product, "archived, not missing");

    let mut cache = MockProductCache::new();
    cache.expect_lookup_priced().returning(|_| Ok(CacheLookup::Miss(CacheToken("gen-2".into()))));
    let filled = archived.product.clone();
    cache
        .expect_fill_priced()
        .withf(move |token, product| token.0 == "gen-2" && *product == filled)
        .times(1)
        .returning(|_, _| Ok(()));
    cache.expect_fill().never();
    let mut repo = MockProductRepository::new();
    let stored = archived.clone();
    repo.expect_find().with(eq(id)).times(1).returning(move |_| Ok(Some(stored.clone())));
    assert_eq!(service(repo, cache).priced_product(id).await.unwrap(), archived.product);

    // A broken cache: the database answers. A missing product: not found, nothing filled.
    let mut cache = MockProductCache::new();
    cache.expect_lookup_priced().returning(|_| Err(ecom_kernel::InfraError::unavailable("redis")));
    cache.expect_fill_priced().never();
    let mut repo = MockProductRepository::new();
    let stored = archived.clone();
    repo.expect_find().returning(move |_| Ok(Some(stored.clone())));
    assert_eq!(service(repo, cache).priced_product(id).await.unwrap(), archived.product);

    let mut cache = MockProductCache::new();
    cache.expect_lookup_priced().returning(|_| Ok(CacheLookup::Miss(CacheToken("gen-1".into()))));
    cache.expect_fill_priced().never();
    let mut repo = MockProductRepository::new();
    repo.expect_find().returning(|_| Ok(None));
    assert!(matches!(service(repo, cache).priced_product(id).await, Err(CatalogError::ProductNotFound(p)) if p == id));
}

#[pollster::test]
async fn an_update_is_saved_with_its_eviction_job_then_the_cache_invalidated() {
    let stored = view(ProductStatus::Active);
    let id = stored.product.id;
    let mut seq = mockall::Sequence::new();
    let mut repo = MockProductRepository::new();
    repo.expect_find().returning(move |_| Ok(Some(stored.clone())));
    repo.expect_update()
        .withf(move |expected, p, jobs| {
            expected.price.amount() != 999
                && p.price.amount() == 999
                && p.updated_at > expected.updated_at
                && jobs.len() == 1
                && jobs[0].kind == crate::service::EVICT_CACHED_KIND
                && jobs[0].payload == serde_json::json!({ "productId": id })
        })
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_, _, _| Ok(true));
    let mut cache = MockProductCache::new();
    cache.expect_invalidate().with(eq(id)).times(1).in_sequence(&mut seq).returning(|_| Ok(()));
    let patch = ProductPatch { price: Some(Money::new(999, Currency::USD)), ..ProductPatch::default() };
    let updated = service(repo, cache).update_product(id, patch).await.unwrap();
    assert_eq!(updated.product.price.amount(), 999);
}

#[pollster::test]
async fn an_update_that_meets_an_archive_first_reads_again_and_never_brings_the_product_back() {
    let active = view(ProductStatus::Active);
    let id = active.product.id;
    let archived = ProductView {
        product: Product { status: ProductStatus::Archived, ..active.product.clone() },
        ..active.clone()
    };
    let reads = std::sync::Mutex::new(vec![archived, active]);
    let mut repo = MockProductRepository::new();
    repo.expect_find().times(2).returning(move |_| Ok(reads.lock().unwrap().pop()));
    // The archive came first: the write over the product as read is refused, once.
    repo.expect_update().times(1).returning(|_, _, _| Ok(false));
    let mut cache = MockProductCache::new();
    cache.expect_invalidate().never();
    let patch = ProductPatch { price: Some(Money::new(999, Currency::USD)), ..ProductPatch::default() };
    let err = service(repo, cache).update_product(id, patch).await;
    assert!(matches!(err, Err(CatalogError::ProductNotFound(p)) if p == id), "{err:?}");
}

#[pollster::test]
async fn an_update_that_keeps_meeting_other_writes_gives_up_with_a_conflict() {
    let stored = view(ProductStatus::Active);
    let id = stored.product.id;
    let mut repo = MockProductRepository::new();
    repo.expect_find().returning(move |_| Ok(Some(stored.clone())));
    repo.expect_update().times(5).returning(|_, _, _| Ok(false));
    let patch = ProductPatch { price: Some(Money::new(999, Currency::USD)), ..ProductPatch::default() };
    let err = service(repo, MockProductCache::new()).update_product(id, patch).await;
    assert!(matches!(err, Err(CatalogError::Conflict)), "{err:?}");
}

#[pollster::test]
async fn an_inverted_price_range_is_refused() {
    let query = ProductQuery {
        text: None,
        category: None,
        min_price: Some(500),
        max_price: Some(100),
        in_stock: false,
        sort: ProductSort::Newest,
    };
    let mut repo = MockProductRepository::new();
    repo.expect_search().never();
    let err = service(repo, MockProductCache::new()).list_products(&query, &ecom_kernel::PageRequest::first(10)).await;
    assert!(matches!(err, Err(CatalogError::InvalidPriceRange)));
}
