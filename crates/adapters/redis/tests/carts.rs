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
    let start = Utc::now();
    // The cart as written `s` seconds after the start.
    let at = |s: i64| WriteScope {
        id: cart,
        owner: CartOwner::Customer(customer),
        now: start + chrono::Duration::seconds(s),
    };
    let limits = CartLimits { max_lines: 3, ..CartLimits::default() };
    let (x, y, z) = (ProductId::new(), ProductId::new(), ProductId::new());
    let line = |product_id, quantity| CartLine { product_id, quantity };
    carts.add(&at(0), line(x, 3), 10, limits).await.unwrap();
    carts.add(&at(0), line(y, 1), 10, limits).await.unwrap();
    let quantities =
        |cart: ecom_carts::model::StoredCart| cart.lines.iter().map(|l| (l.product_id, l.quantity)).collect::<Vec<_>>();

    // An order placed at 10 s took 2 of x and the one y (z, ordered from another cart, is not in
    // this one). Meanwhile the customer raised x by one and removed y, then added y again.
    let (order, placed) = (OrderId::new(), start + chrono::Duration::seconds(10));
    carts.add(&at(20), line(x, 1), 10, limits).await.unwrap();
    carts.remove(&at(21), y).await.unwrap();
    carts.add(&at(22), line(y, 4), 10, limits).await.unwrap();
    let ordered = [line(x, 2), line(y, 1), line(z, 5)];
    let after = carts.take_ordered(&at(30), order, placed, &ordered).await.unwrap();
    assert_eq!(quantities(after), [(x, 2), (y, 4)], "x keeps what it gained; y, added again since, stays whole");
    // The same order taken again (a retried job) takes nothing.
    let again = carts.take_ordered(&at(31), order, placed, &ordered).await.unwrap();
    assert_eq!(quantities(again), [(x, 2), (y, 4)]);
    // A later order takes its own lines, and a line it empties goes with its count.
    let next = carts
        .take_ordered(&at(50), OrderId::new(), start + chrono::Duration::seconds(40), &[line(x, 2), line(y, 1)])
        .await
        .unwrap();
    assert_eq!(quantities(next), [(y, 3)]);
    carts.add(&at(51), line(z, 1), 10, limits).await.unwrap();
    carts.add(&at(52), line(x, 1), 10, limits).await.unwrap();
    let full = carts.add(&at(53), line(ProductId::new(), 1), 10, limits).await;
    assert!(matches!(full, Err(ecom_carts::ports::CartStoreError::LineLimit)), "{full:?}");
    // Someone else's cart is not found.
    let stranger = WriteScope { owner: CartOwner::Customer(CustomerId::new()), ..at(60) };
    let refused =
        carts.take_ordered(&stranger, OrderId::new(), start + chrono::Duration::seconds(70), &[line(y, 3)]).await;
    assert!(matches!(refused, Err(ecom_carts::ports::CartStoreError::NotFound)), "{refused:?}");
    assert_eq!(quantities(carts.load(cart).await.unwrap().unwrap()), [(y, 3), (z, 1), (x, 1)]);
}
