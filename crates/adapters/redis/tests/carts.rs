//! The cart store against the real Redis, one key prefix per test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use chrono::Utc;
use ecom_carts::model::{CartId, CartLimits, CartLine, CartOwner};
use ecom_carts::ports::{CartStore, WriteScope};
use ecom_kernel::{CustomerId, OrderId, ProductId};
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

#[tokio::test]
async fn an_orders_lines_leave_the_cart_once_and_what_was_added_since_stays() {
    let redis = TestRedis::new();
    let carts = store(&redis, Duration::from_secs(60));
    let customer = CustomerId::new();
    let cart = carts.customer_cart(customer, CartId::new(), Utc::now()).await.unwrap();
    let scope = WriteScope { id: cart, owner: CartOwner::Customer(customer), now: Utc::now() };
    let limits = CartLimits { max_lines: 3, ..CartLimits::default() };
    let (x, y, z) = (ProductId::new(), ProductId::new(), ProductId::new());
    let line = |product_id, quantity| CartLine { product_id, quantity };
    carts.add(&scope, line(x, 3), 10, limits).await.unwrap();
    carts.add(&scope, line(y, 1), 10, limits).await.unwrap();
    let quantities =
        |cart: ecom_carts::model::StoredCart| cart.lines.iter().map(|l| (l.product_id, l.quantity)).collect::<Vec<_>>();

    // The order took 2 of x and the one y; z, ordered from another cart, is not in this one.
    let order = OrderId::new();
    let ordered = [line(x, 2), line(y, 1), line(z, 5)];
    let after = carts.take_ordered(&scope, order, &ordered).await.unwrap();
    assert_eq!(quantities(after), [(x, 1)]);
    // The customer goes on shopping; the same order taken again (a retried job) takes nothing.
    carts.add(&scope, line(y, 4), 10, limits).await.unwrap();
    let again = carts.take_ordered(&scope, order, &ordered).await.unwrap();
    assert_eq!(quantities(again), [(x, 1), (y, 4)]);
    // The line count followed: two lines now, so one more fits and a fourth does not.
    carts.add(&scope, line(z, 1), 10, limits).await.unwrap();
    let full = carts.add(&scope, line(ProductId::new(), 1), 10, limits).await;
    assert!(matches!(full, Err(ecom_carts::ports::CartStoreError::LineLimit)), "{full:?}");
    // Another order of the cart takes its own lines.
    let next = carts.take_ordered(&scope, OrderId::new(), &[line(x, 1), line(z, 1)]).await.unwrap();
    assert_eq!(quantities(next), [(y, 4)]);
    // Someone else's cart is not found.
    let stranger = WriteScope { owner: CartOwner::Customer(CustomerId::new()), ..scope };
    let refused = carts.take_ordered(&stranger, OrderId::new(), &[line(y, 4)]).await;
    assert!(matches!(refused, Err(ecom_carts::ports::CartStoreError::NotFound)), "{refused:?}");
    assert_eq!(quantities(carts.load(cart).await.unwrap().unwrap()), [(y, 4)]);
}
