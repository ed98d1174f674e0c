//! The cart store against the real Redis, one key prefix per test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use chrono::Utc;
use ecom_carts::model::{CartId, CartLimits, CartLine, CartOwner};
use ecom_carts::ports::{CartStore, WriteScope};
use ecom_kernel::{CustomerId, ProductId};
use ecom_redis::{connect, CartTtl, RedisCartStore, RedisKeys, RedisSettings};
use ecom_testkit::TestRedis;

fn store(redis: &TestRedis, customer_ttl: Duration) -> RedisCartStore {
    let pool = connect(&RedisSettings { url: redis.url().into(), max_connections: 4, timeout: Duration::from_secs(2) })
        .unwrap();
    RedisCartStore::new(pool, RedisKeys::new(redis.prefix()), CartTtl { customer: customer_ttl, ..CartTtl::default() })
}

#[tokio::test]
async fn a_customer_who_keeps_filling_their_cart_keeps_it_past_the_ttl_of_their_first_visit() {
    let redis = TestRedis::new();
    let carts = store(&redis, Duration::from_millis(600));
    let customer = CustomerId::new();
    let cart = carts.customer_cart(customer, CartId::new(), Utc::now()).await.unwrap();
    let scope = WriteScope { id: cart, owner: CartOwner::Customer(customer), now: Utc::now() };
    // Items added over twice the TTL, never asking for the cart again in between.
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let line = CartLine { product_id: ProductId::new(), quantity: 1 };
        carts.add(&scope, line, 10, CartLimits::default()).await.unwrap();
    }
    let again = carts.customer_cart(customer, CartId::new(), Utc::now()).await.unwrap();
    assert_eq!(again, cart, "still the customer's cart");
    assert_eq!(carts.load(again).await.unwrap().unwrap().lines.len(), 6, "with its items");
}
