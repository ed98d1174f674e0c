//! Checkout end to end: the api in this process, a real `worker` process running the saga.

use std::time::{Duration, Instant};

use ecom_testkit::{Session, TestApp};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::assert_problem;
use crate::processes::{worker_env, Proc};

pub(crate) struct Shop {
    pub(crate) app: TestApp,
    pub(crate) admin: Session,
    worker: Option<Proc>,
}

pub(crate) async fn shop() -> Shop {
    shop_with(&[("SIMULATED_CAPTURE_DELAY_MS", "200")]).await
}

/// The api and a worker, both with `env`.
async fn shop_with(env: &[(&'static str, &str)]) -> Shop {
    let app = TestApp::spawn_with(env).await;
    let worker = Proc::spawn("worker", &worker_env(&app, env));
    worker.wait_for_line("worker started", Duration::from_secs(30));
    let admin = app.admin().await;
    Shop { app, admin, worker: Some(worker) }
}

impl Shop {
    pub(crate) async fn product(&self, stock: u32, price: i64) -> String {
        let body = json!({"sku": format!("ORD-{}", uuid::Uuid::now_v7().simple()), "name": "Lamp",
                          "price": {"amount": price, "currency": "USD"}, "initialStock": stock});
        let res = self.app.post("/v1/products", &body, Some(&self.admin.access_token)).await;
        assert_eq!(res.status(), StatusCode::CREATED);
        res.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned()
    }

    pub(crate) async fn cart_with(&self, customer: &Session, product: &str, quantity: u32) -> String {
        let cart: Value =
            self.app.post("/v1/carts", &json!({}), Some(&customer.access_token)).await.json().await.unwrap();
        let id = cart["id"].as_str().unwrap().to_owned();
        let res = self
            .app
            .post(
                &format!("/v1/carts/{id}/items"),
                &json!({"productId": product, "quantity": quantity}),
                Some(&customer.access_token),
            )
            .await;
        assert!(res.status().is_success(), "{}", res.status());
        id
    }

    /// `n` customers with one unit of `product` in their carts, made in batches (password
    /// hashing is deliberately slow).
    async fn customers_with_carts(&self, n: usize, product: &str) -> Vec<(Session, String)> {
        let mut made = Vec::with_capacity(n);
        for _ in 0..n / 10 {
            let batch = futures_util::future::join_all((0..10).map(|_| self.app.register_customer())).await;
            let carts = futures_util::future::join_all(batch.iter().map(|c| self.cart_with(c, product, 1))).await;
            made.extend(batch.into_iter().zip(carts));
        }
        made
    }

    /// Every customer checks out at once (card, `pm_card_visa`); returns the order ids.
    async fn checkout_all<'a>(&self, customers: &'a [(Session, String)]) -> Vec<(&'a Session, String)> {
        let placed = futures_util::future::join_all(
            customers.iter().map(|(c, cart)| self.checkout(c, cart, "CREDIT_CARD", Some("pm_card_visa"))),
        )
        .await;
        let mut orders = Vec::with_capacity(customers.len());
        for (res, (customer, _)) in placed.into_iter().zip(customers) {
            assert_eq!(res.status(), StatusCode::CREATED);
            orders.push((customer, res.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned()));
        }
        orders
    }

    /// Places an order and returns its id.
    pub(crate) async fn place(&self, customer: &Session, cart: &str, method: &str, token: Option<&str>) -> String {
        let res = self.checkout(customer, cart, method, token).await;
        assert_eq!(res.status(), StatusCode::CREATED);
        res.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned()
    }

    pub(crate) async fn checkout(
        &self,
        customer: &Session,
        cart: &str,
        method: &str,
        token: Option<&str>,
    ) -> reqwest::Response {
        let mut body = json!({"cartId": cart, "paymentMethod": method, "shippingAddress": {
            "fullName": "Ada Lovelace", "line1": "1 Infinite Loop", "city": "Cupertino", "state": "CA",
            "postalCode": "95014", "country": "US"}});
        if let Some(token) = token {
            body["paymentToken"] = json!(token);
        }
        // As a client should: a 503 (the api shedding load, e.g. its database pool exhausted by
        // a burst of 200 checkouts on a busy CI machine) is retried with the same key.
        let key = uuid::Uuid::now_v7().to_string();
        let mut attempt = 0;
        loop {
            let res = self
                .app
                .request(reqwest::Method::POST, "/v1/orders/checkout", Some(&customer.access_token))
                .header("Idempotency-Key", &key)
                .json(&body)
                .send()
                .await
                .unwrap();
            attempt += 1;
            if res.status() != StatusCode::SERVICE_UNAVAILABLE || attempt == 5 {
                return res;
            }
            tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
        }
    }

    pub(crate) async fn order(&self, customer: &Session, id: &str) -> Value {
        self.app.get(&format!("/v1/orders/{id}"), Some(&customer.access_token)).await.json().await.unwrap()
    }

    /// Waits (up to 20 s) until `worker check-invariants` finds nothing, with no grace for
    /// transient states: everything in flight must have settled.
    pub(crate) async fn assert_invariants_hold(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (report, held) = ecom_platform::check_invariants(&self.app.config, Duration::ZERO).await.unwrap();
            if held {
                return;
            }
            assert!(Instant::now() < deadline, "{report}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Polls the order until `done` holds.
    pub(crate) async fn wait(&self, customer: &Session, id: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let order = self.order(customer, id).await;
            if done(&order) {
                return order;
            }
            assert!(Instant::now() < deadline, "{what}: {order}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// An admin's lifecycle step (`process`, `ship`, ...), sent again while the order answers
    /// 409 CONCURRENT_MODIFICATION (a confirmed order waits for its finalize job, and an online
    /// one for its payment to be taken).
    pub(crate) async fn advance(&self, id: &str, step: &str) -> reqwest::Response {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let res =
                self.app.patch(&format!("/v1/orders/{id}/{step}"), &json!({}), Some(&self.admin.access_token)).await;
            if res.status() != StatusCode::CONFLICT || Instant::now() > deadline {
                return res;
            }
            let problem: Value = res.json().await.unwrap();
            assert_eq!(problem["code"], "CONCURRENT_MODIFICATION", "{step}: {problem}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub(crate) async fn stock(&self, product: &str) -> (u64, u64) {
        let level: Value = self
            .app
            .get(&format!("/v1/inventory/products/{product}"), Some(&self.admin.access_token))
            .await
            .json()
            .await
            .unwrap();
        (level["onHand"].as_u64().unwrap(), level["reserved"].as_u64().unwrap())
    }

    /// Waits (up to `within`) until the product's stock is `level` (on hand, reserved).
    pub(crate) async fn wait_for_stock(&self, product: &str, level: (u64, u64), within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let now = self.stock(product).await;
            if now == level {
                return;
            }
            assert!(Instant::now() < deadline, "stock {now:?}, waiting for {level:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn cart_items(&self, customer: &Session, cart: &str) -> usize {
        let cart: Value =
            self.app.get(&format!("/v1/carts/{cart}"), Some(&customer.access_token)).await.json().await.unwrap();
        cart["items"].as_array().map_or(0, Vec::len)
    }

    async fn payments(&self, customer: &Session, order: &str) -> Vec<Value> {
        let list: Value = self
            .app
            .get(&format!("/v1/orders/{order}/payments"), Some(&customer.access_token))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(list.get("nextCursor"), Some(&Value::Null), "{list}");
        list["data"].as_array().unwrap().clone()
    }
}

#[tokio::test]
async fn an_online_checkout_is_confirmed_then_paid_with_stock_taken_and_the_cart_emptied() {
    let shop = shop().await;
    let customer = shop.app.register_customer().await;
    let product = shop.product(10, 1999).await;
    let cart = shop.cart_with(&customer, &product, 2).await;

    // Checkout needs a key; a caller who is no one is told that first (401).
    let res =
        shop.app.post("/v1/orders/checkout", &json!({"cartId": cart, "paymentMethod": "CREDIT_CARD"}), None).await;
    assert_problem(res, StatusCode::UNAUTHORIZED, "UNAUTHENTICATED").await;
    // (A guest's cart token is no sign-in.)
    let res = shop
        .app
        .request(reqwest::Method::POST, "/v1/orders/checkout", None)
        .header("X-Cart-Token", "a-guests-cart-token")
        .json(&json!({"cartId": cart, "paymentMethod": "CREDIT_CARD"}))
        .send()
        .await
        .unwrap();
    assert_problem(res, StatusCode::UNAUTHORIZED, "UNAUTHENTICATED").await;
    let res = shop
        .app
        .post(
            "/v1/orders/checkout",
            &json!({"cartId": cart, "paymentMethod": "CREDIT_CARD"}),
            Some(&customer.access_token),
        )
        .await;
    assert_problem(res, StatusCode::BAD_REQUEST, "IDEMPOTENCY_KEY_REQUIRED").await;
    // The route spelt with an escape is the checkout too, and needs one as much.
    let res = shop
        .app
        .post(
            "/v1/orders/%63heckout",
            &json!({"cartId": cart, "paymentMethod": "CREDIT_CARD", "paymentToken": "pm_card_visa"}),
            Some(&customer.access_token),
        )
        .await;
    assert_problem(res, StatusCode::BAD_REQUEST, "IDEMPOTENCY_KEY_REQUIRED").await;

    let res = shop.checkout(&customer, &cart, "CREDIT_CARD", Some("pm_card_visa")).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let location = res.headers()["location"].to_str().unwrap().to_owned();
    let placed: Value = res.json().await.unwrap();
    let id = placed["id"].as_str().unwrap().to_owned();
    assert_eq!(location, format!("/v1/orders/{id}"));
    assert_eq!(
        (placed["status"].as_str(), placed["paymentStatus"].as_str()),
        (Some("PENDING_PAYMENT"), Some("PENDING"))
    );
    assert_eq!(placed["subtotal"], json!({"amount": 3998, "currency": "USD"}));
    assert_eq!(placed["shippingCost"], json!({"amount": 500, "currency": "USD"}));
    assert_eq!(placed["total"], json!({"amount": 4498, "currency": "USD"}));
    assert_eq!(placed["items"][0]["unitPrice"], json!({"amount": 1999, "currency": "USD"}));

    let paid = shop
        .wait(&customer, &id, "confirmed and paid", |o| o["status"] == "CONFIRMED" && o["paymentStatus"] == "PAID")
        .await;
    assert!(paid["timeline"].as_array().unwrap().len() >= 3, "{paid}");
    shop.wait_for_stock(&product, (8, 0), Duration::from_secs(10)).await;
    assert_eq!(shop.cart_items(&customer, &cart).await, 0, "cart emptied");
    let payments = shop.payments(&customer, &id).await;
    assert_eq!(payments.len(), 1);
    assert_eq!((payments[0]["status"].as_str(), payments[0]["amount"]["amount"].as_i64()), (Some("PAID"), Some(4498)));
}

#[tokio::test]
async fn checkouts_price_from_the_catalog_as_it_is_now_however_the_product_sells() {
    // A sale moves the product's stock (and evicts its cached detail); its price and status
    // come from its own cache entry, which only a change of the product evicts.
    let shop = shop().await;
    let product = shop.product(10, 1000).await;
    let (first, second, third) =
        (shop.app.register_customer().await, shop.app.register_customer().await, shop.app.register_customer().await);
    let cart = shop.cart_with(&first, &product, 1).await;
    let id = shop.place(&first, &cart, "CREDIT_CARD", Some("pm_card_visa")).await;
    shop.wait(&first, &id, "confirmed", |o| o["status"] == "CONFIRMED").await;
    let (second_cart, third_cart) =
        (shop.cart_with(&second, &product, 1).await, shop.cart_with(&third, &product, 1).await);

    let admin = Some(shop.admin.access_token.as_str());
    let price = json!({"price": {"amount": 1500, "currency": "USD"}});
    let res = shop.app.patch(&format!("/v1/products/{product}"), &price, admin).await;
    assert_eq!(res.status(), StatusCode::OK);
    let res = shop.checkout(&second, &second_cart, "CREDIT_CARD", Some("pm_card_visa")).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let placed: Value = res.json().await.unwrap();
    assert_eq!(placed["items"][0]["unitPrice"], json!({"amount": 1500, "currency": "USD"}), "the new price");

    let res = shop.app.delete(&format!("/v1/products/{product}"), admin).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let res = shop.checkout(&third, &third_cart, "CREDIT_CARD", Some("pm_card_visa")).await;
    assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "PRODUCT_UNAVAILABLE").await;
}

#[tokio::test]
async fn a_declined_card_cancels_the_order_and_leaves_the_stock_as_it_was() {
    let shop = shop().await;
    let customer = shop.app.register_customer().await;
    let product = shop.product(10, 1000).await;
    let cart = shop.cart_with(&customer, &product, 3).await;
    let id = shop.place(&customer, &cart, "CREDIT_CARD", Some("pm_card_chargeDeclined")).await;
    let order = shop.wait(&customer, &id, "cancelled", |o| o["status"] == "CANCELLED").await;
    assert_eq!(
        (order["cancellationReason"].as_str(), order["paymentStatus"].as_str()),
        (Some("PAYMENT_DECLINED"), Some("FAILED"))
    );
    assert_eq!(shop.stock(&product).await, (10, 0));
    assert_eq!(shop.cart_items(&customer, &cart).await, 1, "the cart is kept for another try");
    let payments = shop.payments(&customer, &id).await;
    assert_eq!((payments.len(), payments[0]["status"].as_str()), (1, Some("FAILED")), "no charge");
}

#[tokio::test]
async fn stock_gone_before_the_reservation_cancels_without_charging() {
    let shop = shop().await;
    let customer = shop.app.register_customer().await;
    let product = shop.product(2, 1000).await;
    let cart = shop.cart_with(&customer, &product, 2).await;
    let res = shop
        .app
        .post(
            &format!("/v1/inventory/products/{product}/adjust"),
            &json!({"type": "SUBTRACT", "quantity": 1}),
            Some(&shop.admin.access_token),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let id = shop.place(&customer, &cart, "CREDIT_CARD", Some("pm_card_visa")).await;
    let order = shop.wait(&customer, &id, "cancelled", |o| o["status"] == "CANCELLED").await;
    assert_eq!(order["cancellationReason"], "OUT_OF_STOCK");
    assert_eq!(shop.payments(&customer, &id).await.len(), 0, "never charged");
    assert_eq!(shop.stock(&product).await, (1, 0));
}

#[tokio::test]
async fn checkout_text_postgresql_cannot_store_is_a_422_on_its_field() {
    let shop = shop().await;
    let customer = shop.app.register_customer().await;
    let product = shop.product(10, 1000).await;
    let cart = shop.cart_with(&customer, &product, 1).await;
    let address = json!({"fullName": "Ada Lovelace", "line1": "1 Loop", "city": "Cupertino", "postalCode": "95014", "country": "US"});
    let send = |body: Value| {
        shop.app
            .request(reqwest::Method::POST, "/v1/orders/checkout", Some(&customer.access_token))
            .header("Idempotency-Key", uuid::Uuid::now_v7().to_string())
            .json(&body)
            .send()
    };
    for (body, field) in [
        (
            json!({"cartId": cart, "paymentMethod": "CASH_ON_DELIVERY", "shippingAddress": address, "customerNotes": "ring\u{0}twice"}),
            "customerNotes",
        ),
        (
            json!({"cartId": cart, "paymentMethod": "CREDIT_CARD", "shippingAddress": address, "paymentToken": "pm_card_visa\u{0}"}),
            "paymentToken",
        ),
    ] {
        let problem =
            assert_problem(send(body).await.unwrap(), StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_FAILED").await;
        assert_eq!(problem["errors"][0]["field"], field, "{problem}");
    }
    // Notes keep their lines.
    let res = send(json!({"cartId": cart, "paymentMethod": "CASH_ON_DELIVERY", "shippingAddress": address, "customerNotes": " ring\ntwice "})).await.unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    assert_eq!(res.json::<Value>().await.unwrap()["customerNotes"], "ring\ntwice");
}

#[tokio::test]
async fn cash_on_delivery_waits_for_the_admin_and_confirming_twice_is_refused() {
    let shop = shop().await;
    let customer = shop.app.register_customer().await;
    let product = shop.product(10, 1000).await;
    let cart = shop.cart_with(&customer, &product, 2).await;
    let res = shop.checkout(&customer, &cart, "CASH_ON_DELIVERY", None).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let placed: Value = res.json().await.unwrap();
    let id = placed["id"].as_str().unwrap().to_owned();
    assert_eq!(
        (placed["status"].as_str(), placed["paymentStatus"].as_str()),
        (Some("PENDING_CONFIRMATION"), Some("COLLECT_ON_DELIVERY"))
    );
    shop.wait_for_stock(&product, (10, 2), Duration::from_secs(10)).await;
    // The customer goes on shopping with the same cart while the order waits: another product,
    // and the ordered one taken out and put back (one unit, for a next order).
    let other = shop.product(10, 300).await;
    let token = Some(customer.access_token.as_str());
    let res =
        shop.app.post(&format!("/v1/carts/{cart}/items"), &json!({"productId": other, "quantity": 1}), token).await;
    assert_eq!(res.status(), StatusCode::OK);
    let res = shop.app.delete(&format!("/v1/carts/{cart}/items/{product}"), token).await;
    assert_eq!(res.status(), StatusCode::OK);
    let res =
        shop.app.post(&format!("/v1/carts/{cart}/items"), &json!({"productId": product, "quantity": 1}), token).await;
    assert_eq!(res.status(), StatusCode::OK);
    // The order records its reservation a moment after the stock shows it; until then an admin's
    // confirmation is refused (409, try again).
    let reserved =
        |o: &Value| o["timeline"].as_array().is_some_and(|t| t.iter().any(|e| e["note"] == "stock reserved"));
    shop.wait(&customer, &id, "reservation recorded", reserved).await;
    let admin = Some(shop.admin.access_token.as_str());
    assert_problem(
        shop.app.patch(&format!("/v1/orders/{id}/confirm"), &json!({}), Some(&customer.access_token)).await,
        StatusCode::FORBIDDEN,
        "FORBIDDEN",
    )
    .await;
    let res = shop.app.patch(&format!("/v1/orders/{id}/confirm"), &json!({}), admin).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.json::<Value>().await.unwrap()["status"], "CONFIRMED");
    assert_problem(
        shop.app.patch(&format!("/v1/orders/{id}/confirm"), &json!({}), admin).await,
        StatusCode::CONFLICT,
        "INVALID_TRANSITION",
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let finalized = |o: &Value| {
        o["timeline"].as_array().is_some_and(|t| t.iter().any(|e| e["note"] == ecom_orders::service::FINALIZED))
    };
    while shop.stock(&product).await != (8, 0) || !finalized(&shop.order(&customer, &id).await) {
        assert!(Instant::now() < deadline, "not finalized: {:?}", shop.stock(&product).await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The ordered lines left the cart; what was added since stays.
    let left: Value = shop.app.get(&format!("/v1/carts/{cart}"), token).await.json().await.unwrap();
    let items: Vec<(&str, u64)> = left["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["productId"].as_str().unwrap(), i["quantity"].as_u64().unwrap()))
        .collect();
    assert_eq!(items, [(other.as_str(), 1), (product.as_str(), 1)]);
    // The courier brings the cash.
    let res = shop
        .app
        .post(
            "/v1/payments/cod/record",
            &json!({"orderId": id, "amountCollected": {"amount": 2500, "currency": "USD"}}),
            admin,
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(shop.order(&customer, &id).await["paymentStatus"], "PAID");
}

#[tokio::test]
async fn a_confirmed_cash_order_is_processed_only_once_its_units_left_the_shelf() {
    let shop = shop().await;
    let customer = shop.app.register_customer().await;
    let product = shop.product(10, 1000).await;
    let cart = shop.cart_with(&customer, &product, 3).await;
    let id = shop.place(&customer, &cart, "CASH_ON_DELIVERY", None).await;
    let reserved =
        |o: &Value| o["timeline"].as_array().is_some_and(|t| t.iter().any(|e| e["note"] == "stock reserved"));
    shop.wait(&customer, &id, "reservation recorded", reserved).await;
    let admin = Some(shop.admin.access_token.as_str());
    // The worker paused: the finalize job waits.
    let worker = shop.worker.as_ref().unwrap();
    worker.signal("STOP");
    assert_eq!(shop.app.patch(&format!("/v1/orders/{id}/confirm"), &json!({}), admin).await.status(), StatusCode::OK);
    let early = shop.app.patch(&format!("/v1/orders/{id}/process"), &json!({}), admin).await;
    worker.signal("CONT");
    assert_problem(early, StatusCode::CONFLICT, "CONCURRENT_MODIFICATION").await;

    // Refused (409, try again) until the units left the shelf, so once PROCESSING they have;
    // they are never left reserved to expire back on sale.
    let res = shop.advance(&id, "process").await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.json::<Value>().await.unwrap()["status"], "PROCESSING");
    assert_eq!(shop.stock(&product).await, (7, 0));
    assert_eq!(shop.cart_items(&customer, &cart).await, 0);
}

#[tokio::test]
async fn cash_recorded_by_a_request_that_stops_before_telling_the_order_still_shows_on_it() {
    let shop = shop().await;
    let customer = shop.app.register_customer().await;
    let product = shop.product(10, 1000).await;
    let cart = shop.cart_with(&customer, &product, 1).await;
    let id = shop.place(&customer, &cart, "CASH_ON_DELIVERY", None).await;
    let confirmable =
        |o: &Value| o["timeline"].as_array().is_some_and(|t| t.iter().any(|e| e["note"] == "stock reserved"));
    shop.wait(&customer, &id, "reservation recorded", confirmable).await;
    let admin = Some(shop.admin.access_token.as_str());
    assert_eq!(shop.app.patch(&format!("/v1/orders/{id}/confirm"), &json!({}), admin).await.status(), StatusCode::OK);
    let order_id: ecom_kernel::OrderId = id.parse().unwrap();

    // The payment's write alone (the api stopped before its own update of the order): the
    // follow-up job staged with it brings the order along, on the worker.
    let total = ecom_kernel::Money::new(1500, ecom_kernel::Currency::USD);
    let paid = shop.app.services.payments.record_cash(order_id, total).await.unwrap();
    assert_eq!(paid.status, ecom_payments::model::PaymentStatus::Paid);
    shop.wait(&customer, &id, "paid on the order", |o| o["paymentStatus"] == "PAID").await;
    // So does cash given back by hand.
    let refunded = shop.app.services.payments.refund(paid.id, None, Some("returned".into())).await.unwrap();
    assert_eq!(refunded.payment.status, ecom_payments::model::PaymentStatus::Refunded);
    shop.wait(&customer, &id, "refunded on the order", |o| o["paymentStatus"] == "REFUNDED").await;
}

#[tokio::test]
async fn a_customer_cancels_a_paid_order_for_a_refund_and_cannot_cancel_a_shipped_one() {
    let shop = shop().await;
    let customer = shop.app.register_customer().await;
    let product = shop.product(10, 1000).await;
    let admin = Some(shop.admin.access_token.as_str());

    let cart = shop.cart_with(&customer, &product, 1).await;
    let id = shop.place(&customer, &cart, "CREDIT_CARD", Some("pm_card_visa")).await;
    shop.wait(&customer, &id, "paid", |o| o["status"] == "CONFIRMED" && o["paymentStatus"] == "PAID").await;
    let res = shop.app.post(&format!("/v1/orders/{id}/cancel"), &json!({}), Some(&customer.access_token)).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.json::<Value>().await.unwrap()["status"], "CANCELLED");
    let order = shop.wait(&customer, &id, "refunded", |o| o["paymentStatus"] == "REFUNDED").await;
    assert_eq!(order["cancellationReason"], "CUSTOMER_REQUEST");
    shop.wait_for_stock(&product, (10, 0), Duration::from_secs(10)).await;

    let cart = shop.cart_with(&customer, &product, 1).await;
    let shipped = shop.place(&customer, &cart, "CREDIT_CARD", Some("pm_card_visa")).await;
    shop.wait(&customer, &shipped, "confirmed", |o| o["status"] == "CONFIRMED").await;
    // Processed once its payment is taken (409, try again, while it is only authorized).
    for step in ["process", "ship"] {
        assert_eq!(shop.advance(&shipped, step).await.status(), StatusCode::OK);
    }
    assert_eq!(shop.order(&customer, &shipped).await["paymentStatus"], "PAID");
    let res = shop.app.post(&format!("/v1/orders/{shipped}/cancel"), &json!({}), Some(&customer.access_token)).await;
    assert_problem(res, StatusCode::CONFLICT, "INVALID_TRANSITION").await;
    assert_eq!(
        shop.app.patch(&format!("/v1/orders/{shipped}/deliver"), &json!({}), admin).await.status(),
        StatusCode::OK
    );

    // Someone else's order does not exist for another customer, on every route.
    let stranger = shop.app.register_customer().await;
    let token = Some(stranger.access_token.as_str());
    assert_problem(shop.app.get(&format!("/v1/orders/{id}"), token).await, StatusCode::NOT_FOUND, "ORDER_NOT_FOUND")
        .await;
    assert_problem(
        shop.app.get(&format!("/v1/orders/{id}/payments"), token).await,
        StatusCode::NOT_FOUND,
        "ORDER_NOT_FOUND",
    )
    .await;
    assert_problem(
        shop.app.post(&format!("/v1/orders/{id}/cancel"), &json!({}), token).await,
        StatusCode::NOT_FOUND,
        "ORDER_NOT_FOUND",
    )
    .await;
    let payment_id = shop.payments(&customer, &id).await[0]["id"].as_str().unwrap().to_owned();
    assert_problem(
        shop.app.get(&format!("/v1/payments/{payment_id}"), token).await,
        StatusCode::NOT_FOUND,
        "PAYMENT_NOT_FOUND",
    )
    .await;
    let mine: Value = shop.app.get("/v1/orders", token).await.json().await.unwrap();
    assert_eq!(mine["data"], json!([]));
    let theirs: Value = shop.app.get("/v1/orders", Some(&customer.access_token)).await.json().await.unwrap();
    assert_eq!(theirs["data"].as_array().unwrap().len(), 2);
    let all: Value = shop.app.get("/v1/orders?status=DELIVERED", admin).await.json().await.unwrap();
    assert_eq!(all["data"][0]["id"], shipped.as_str());

    // Paged one by one, newest first; a cursor of another list is refused, not a 500.
    let token = Some(customer.access_token.as_str());
    let first: Value = shop.app.get("/v1/orders?limit=1", token).await.json().await.unwrap();
    let cursor = first["nextCursor"].as_str().unwrap();
    let second: Value = shop.app.get(&format!("/v1/orders?limit=1&cursor={cursor}"), token).await.json().await.unwrap();
    assert_eq!(
        [&first["data"][0]["id"], &second["data"][0]["id"]],
        [&theirs["data"][0]["id"], &theirs["data"][1]["id"]]
    );
    assert_eq!(second["nextCursor"], Value::Null);
    let hex = |plain: &str| plain.bytes().map(|b| format!("{b:02x}")).collect::<String>();
    let nil = uuid::Uuid::nil();
    for foreign in
        [hex(&format!("v1:{nil}")), hex(&format!("v1:{nil}:price:100")), hex(&format!("v1:{nil}:-999999999999999999"))]
    {
        let res = shop.app.get(&format!("/v1/orders?cursor={foreign}"), token).await;
        let problem = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_FAILED").await;
        assert_eq!(problem["errors"][0]["field"], "cursor");
    }

    // The delivered order comes back and is refunded in full: REFUNDED.
    shop.wait(&customer, &shipped, "paid", |o| o["paymentStatus"] == "PAID").await;
    let payment = shop.payments(&customer, &shipped).await[0]["id"].as_str().unwrap().to_owned();
    let res = shop.app.post(&format!("/v1/payments/{payment}/refund"), &json!({"reason": "returned"}), admin).await;
    assert_eq!(res.status(), StatusCode::OK);
    let order = shop.wait(&customer, &shipped, "refunded", |o| o["status"] == "REFUNDED").await;
    assert_eq!(order["paymentStatus"], "REFUNDED");
    assert_eq!(order["timeline"].as_array().unwrap().last().unwrap()["note"], "refunded in full after delivery");
}

#[tokio::test]
async fn an_unconfirmed_cash_order_expires_and_its_stock_goes_back_on_sale() {
    let windows = [("COD_CONFIRMATION_WINDOW_SECS", "1"), ("RESERVATION_SWEEP_INTERVAL_SECS", "1")];
    let app = TestApp::spawn_with(&windows).await;
    let worker = Proc::spawn("worker", &worker_env(&app, &windows));
    worker.wait_for_line("worker started", Duration::from_secs(30));
    let admin = app.admin().await;
    let shop = Shop { app, admin, worker: Some(worker) };
    let customer = shop.app.register_customer().await;
    let product = shop.product(5, 1000).await;
    let cart = shop.cart_with(&customer, &product, 2).await;
    let id = shop.place(&customer, &cart, "CASH_ON_DELIVERY", None).await;
    // Cancelled first; its compensation job then cancels the cash collection and releases the
    // stock: no cash will be collected for it, and none can be recorded.
    let order = shop
        .wait(&customer, &id, "expired and compensated", |o| {
            o["status"] == "CANCELLED" && o["paymentStatus"] == "FAILED"
        })
        .await;
    assert_eq!(order["cancellationReason"], "CONFIRMATION_EXPIRED");
    assert_problem(
        shop.app
            .post(
                "/v1/payments/cod/record",
                &json!({"orderId": id, "amountCollected": {"amount": 2500, "currency": "USD"}}),
                Some(&shop.admin.access_token),
            )
            .await,
        StatusCode::CONFLICT,
        "INVALID_TRANSITION",
    )
    .await;
    assert_eq!(shop.stock(&product).await, (5, 0));
    assert_problem(
        shop.app.patch(&format!("/v1/orders/{id}/confirm"), &json!({}), Some(&shop.admin.access_token)).await,
        StatusCode::CONFLICT,
        "INVALID_TRANSITION",
    )
    .await;
}

#[tokio::test]
async fn no_cash_is_recorded_for_a_cancelled_order_even_before_its_compensation_ran() {
    let shop = shop().await;
    let customer = shop.app.register_customer().await;
    let product = shop.product(5, 1000).await;
    let cart = shop.cart_with(&customer, &product, 2).await;
    let id = shop.place(&customer, &cart, "CASH_ON_DELIVERY", None).await;
    // The saga reserves the stock, then opens the cash collection: wait for both.
    let deadline = Instant::now() + Duration::from_secs(20);
    while shop.stock(&product).await != (5, 2) || shop.payments(&customer, &id).await.is_empty() {
        assert!(Instant::now() < deadline, "not reserved: {:?}", shop.stock(&product).await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // No worker: the cancellation's compensation (which cancels the collection) waits.
    let Shop { app, admin, worker } = shop;
    drop(worker);
    let shop = Shop { app, admin, worker: None };
    let res = shop.app.post(&format!("/v1/orders/{id}/cancel"), &json!({}), Some(&customer.access_token)).await;
    assert_eq!(res.status(), StatusCode::OK);
    let record = json!({"orderId": id, "amountCollected": {"amount": 2500, "currency": "USD"}});
    assert_problem(
        shop.app.post("/v1/payments/cod/record", &record, Some(&shop.admin.access_token)).await,
        StatusCode::CONFLICT,
        "INVALID_TRANSITION",
    )
    .await;
    let payments = shop.payments(&customer, &id).await;
    assert_eq!(payments.len(), 1);
    assert_eq!(payments[0]["status"], "COLLECT_ON_DELIVERY", "nothing recorded: {payments:?}");
}

#[tokio::test]
async fn twenty_concurrent_checkouts_with_one_key_make_one_order_and_one_charge() {
    let shop = shop().await;
    let customer = shop.app.register_customer().await;
    let product = shop.product(10, 1000).await;
    let cart = shop.cart_with(&customer, &product, 1).await;
    let body = json!({"cartId": cart, "paymentMethod": "CREDIT_CARD", "paymentToken": "pm_card_visa", "shippingAddress": {
        "fullName": "Ada Lovelace", "line1": "1 Infinite Loop", "city": "Cupertino", "postalCode": "95014", "country": "US"}});
    let answers = futures_util::future::join_all((0..20).map(|_| {
        shop.app
            .request(reqwest::Method::POST, "/v1/orders/checkout", Some(&customer.access_token))
            .header("Idempotency-Key", "one-checkout")
            .json(&body)
            .send()
    }))
    .await;
    let mut ids = std::collections::BTreeSet::new();
    for res in answers {
        let res = res.unwrap();
        match res.status() {
            StatusCode::CREATED => {
                ids.insert(res.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned());
            }
            StatusCode::CONFLICT => {
                assert_problem(res, StatusCode::CONFLICT, "IDEMPOTENCY_REQUEST_IN_PROGRESS").await;
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(ids.len(), 1, "one order");
    let id = ids.into_iter().next().unwrap();
    shop.wait(&customer, &id, "paid", |o| o["paymentStatus"] == "PAID").await;
    let orders: Value = shop.app.get("/v1/orders", Some(&customer.access_token)).await.json().await.unwrap();
    assert_eq!(orders["data"].as_array().unwrap().len(), 1);
    assert_eq!(shop.payments(&customer, &id).await.len(), 1, "one charge");
}

#[tokio::test]
async fn two_hundred_customers_race_for_fifty_units_and_exactly_fifty_win() {
    let shop = shop().await;
    let product = shop.product(50, 1000).await;
    let customers = shop.customers_with_carts(200, &product).await;
    let orders = shop.checkout_all(&customers).await;
    let deadline = Instant::now() + Duration::from_secs(120);
    let (mut confirmed, mut out_of_stock) = (0, 0);
    for (customer, id) in &orders {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "the sagas did not finish in time");
        let order =
            shop.wait(customer, id, "settled", |o| o["status"] == "CONFIRMED" || o["status"] == "CANCELLED").await;
        if order["status"] == "CONFIRMED" {
            confirmed += 1;
        } else {
            assert_eq!(order["cancellationReason"], "OUT_OF_STOCK", "{order}");
            out_of_stock += 1;
        }
    }
    assert_eq!((confirmed, out_of_stock), (50, 150));
    shop.wait_for_stock(&product, (0, 0), Duration::from_secs(30)).await;
}

#[tokio::test]
async fn a_step_failing_for_good_after_the_charge_refunds_gives_the_stock_back_and_cancels() {
    let shop = shop().await;
    let customer = shop.app.register_customer().await;
    let product = shop.product(10, 1000).await;
    let cart = shop.cart_with(&customer, &product, 2).await;
    let id = shop.place(&customer, &cart, "CREDIT_CARD", Some("pm_card_visa")).await;
    shop.wait(&customer, &id, "paid and finalized", |o| {
        o["paymentStatus"] == "PAID"
            && o["timeline"].as_array().is_some_and(|t| t.iter().any(|e| e["note"] == "stock confirmed, cart cleared"))
    })
    .await;
    assert_eq!(shop.stock(&product).await, (8, 0));
    // What the saga handler does when a step gives up after the charge (retries exhausted).
    let order_id: ecom_kernel::OrderId = id.parse().unwrap();
    shop.app
        .services
        .orders
        .compensate(order_id, ecom_orders::model::CancellationReason::CheckoutFailed)
        .await
        .unwrap();
    let order = shop.order(&customer, &id).await;
    assert_eq!(
        (order["status"].as_str(), order["cancellationReason"].as_str(), order["paymentStatus"].as_str()),
        (Some("CANCELLED"), Some("CHECKOUT_FAILED"), Some("REFUNDED"))
    );
    let payments = shop.payments(&customer, &id).await;
    assert_eq!((payments.len(), payments[0]["status"].as_str()), (1, Some("REFUNDED")), "refund issued");
    assert_eq!(shop.stock(&product).await, (10, 0), "stock given back");
    // Compensating again changes nothing.
    shop.app
        .services
        .orders
        .compensate(order_id, ecom_orders::model::CancellationReason::CheckoutFailed)
        .await
        .unwrap();
    assert_eq!(shop.stock(&product).await, (10, 0));
}

#[tokio::test]
async fn a_worker_killed_in_the_middle_of_a_hundred_sagas_leaves_every_order_consistent() {
    let settings =
        [("SIMULATED_CAPTURE_DELAY_MS", "100"), ("WORKER_RECLAIM_AFTER_SECS", "1"), ("WORKER_CONCURRENCY", "4")];
    let app = TestApp::spawn_with(&settings).await;
    let doomed = Proc::spawn("worker", &worker_env(&app, &settings));
    doomed.wait_for_line("worker started", Duration::from_secs(30));
    let admin = app.admin().await;
    let shop = Shop { app, admin, worker: Some(doomed) };
    let product = shop.product(60, 1000).await;
    let customers = shop.customers_with_carts(100, &product).await;
    let orders = shop.checkout_all(&customers).await;
    // Kill the worker while sagas are running (some orders moved on, some not yet), then start
    // another one.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let pending: Value = shop
            .app
            .get("/v1/orders?status=PENDING_PAYMENT&limit=100", Some(&shop.admin.access_token))
            .await
            .json()
            .await
            .unwrap();
        let waiting = pending["data"].as_array().unwrap().len();
        assert!(waiting > 0, "the worker must die with sagas under way");
        if waiting < orders.len() {
            break;
        }
        assert!(Instant::now() < deadline, "no saga ran");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let Shop { app, admin, worker: doomed } = shop;
    drop(doomed);
    let rescuer = Proc::spawn("worker", &worker_env(&app, &settings));
    rescuer.wait_for_line("worker started", Duration::from_secs(30));
    let shop = Shop { app, admin, worker: Some(rescuer) };

    let (mut paid, mut out_of_stock) = (0, 0);
    for (customer, id) in &orders {
        let order = shop
            .wait(customer, id, "settled", |o| {
                (o["status"] == "CONFIRMED" && o["paymentStatus"] == "PAID") || o["status"] == "CANCELLED"
            })
            .await;
        let payments = shop.payments(customer, id).await;
        if order["status"] == "CONFIRMED" {
            paid += 1;
            assert_eq!(payments.len(), 1, "one payment: {order}");
            assert_eq!(payments[0]["status"], "PAID");
        } else {
            out_of_stock += 1;
            assert_eq!(order["cancellationReason"], "OUT_OF_STOCK", "{order}");
            assert!(payments.is_empty(), "never charged: {order}");
        }
    }
    assert_eq!((paid, out_of_stock), (60, 40));
    shop.wait_for_stock(&product, (0, 0), Duration::from_secs(60)).await;
    // And the whole database agrees (outbox rows included; no transient state is allowed).
    shop.assert_invariants_hold().await;
}

#[tokio::test]
async fn saga_jobs_the_queue_lost_are_offered_again_and_every_order_settles() {
    let settings = [
        ("SIMULATED_CAPTURE_DELAY_MS", "100"),
        ("SAGA_RESUME_AFTER_SECS", "1"),
        ("RESERVATION_SWEEP_INTERVAL_SECS", "1"),
    ];
    let app = TestApp::spawn_with(&settings).await;
    let first = Proc::spawn("worker", &worker_env(&app, &settings));
    first.wait_for_line("worker started", Duration::from_secs(30));
    let admin = app.admin().await;
    let shop = Shop { app, admin, worker: Some(first) };
    let product = shop.product(10, 1000).await;
    let (customer, other) = (shop.app.register_customer().await, shop.app.register_customer().await);
    let confirmed_cart = shop.cart_with(&other, &product, 1).await;
    let cancelled_cart = shop.cart_with(&customer, &product, 1).await;
    let to_cancel = shop.place(&customer, &cancelled_cart, "CREDIT_CARD", Some("pm_card_visa")).await;
    shop.wait(&customer, &to_cancel, "paid", |o| o["paymentStatus"] == "PAID").await;

    // No worker for a while: an order placed and a cancellation made now only reach the queue...
    let Shop { app, admin, worker: first } = shop;
    drop(first);
    let shop = Shop { app, admin, worker: None };
    let placed = shop.place(&other, &confirmed_cart, "CREDIT_CARD", Some("pm_card_visa")).await;
    let res = shop.app.post(&format!("/v1/orders/{to_cancel}/cancel"), &json!({}), Some(&customer.access_token)).await;
    assert_eq!(res.status(), StatusCode::OK);
    // ... and the queue loses them (a Redis restart without persistence).
    assert!(shop.app.redis.lose("{jq:checkout}*") > 0);

    let Shop { app, admin, .. } = shop;
    let second = Proc::spawn("worker", &worker_env(&app, &settings));
    second.wait_for_line("worker started", Duration::from_secs(30));
    let shop = Shop { app, admin, worker: Some(second) };
    shop.wait(&other, &placed, "confirmed after the resume", |o| {
        o["status"] == "CONFIRMED" && o["paymentStatus"] == "PAID"
    })
    .await;
    shop.wait(&customer, &to_cancel, "refunded after the resume", |o| o["paymentStatus"] == "REFUNDED").await;
    shop.assert_invariants_hold().await;
    assert_eq!(shop.stock(&product).await, (9, 0), "one sold, one given back");
}

#[tokio::test]
async fn a_saga_job_dead_lettered_by_an_outage_runs_again_and_its_order_settles() {
    use ecom_kernel::jobs::QueueName;
    use ecom_redis::{ConsumerSettings, QueueConsumer};
    let settings = [
        ("SIMULATED_CAPTURE_DELAY_MS", "100"),
        ("SAGA_RESUME_AFTER_SECS", "1"),
        ("RESERVATION_SWEEP_INTERVAL_SECS", "1"),
    ];
    let app = TestApp::spawn_with(&settings).await;
    let admin = app.admin().await;
    let shop = Shop { app, admin, worker: None };
    let customer = shop.app.register_customer().await;
    let product = shop.product(10, 1000).await;
    let cart = shop.cart_with(&customer, &product, 1).await;
    let placed = shop.place(&customer, &cart, "CREDIT_CARD", Some("pm_card_visa")).await;

    // The saga's job ran out of retries while the database was down, and was dead-lettered
    // as the worker's runtime does then (here by hand, with no worker running).
    let consumer = QueueConsumer::new(
        shop.app.services.redis.clone(),
        &shop.app.config.redis_url,
        &shop.app.services.redis_keys,
        QueueName::Checkout,
        "outage",
        ConsumerSettings::default(),
    )
    .unwrap();
    consumer.ensure_group().await.unwrap();
    let delivery = consumer.read(1, Duration::from_millis(500)).await.unwrap().remove(0);
    assert_eq!(delivery.job.id.as_str(), format!("checkout:{placed}:reserve"));
    assert!(consumer.dead_letter_spent(&delivery, "gave up after 10 attempts: database unavailable").await.unwrap());
    let jobs: Value = shop.app.get("/v1/admin/jobs", Some(&shop.admin.access_token)).await.json().await.unwrap();
    assert_eq!(jobs["deadLetters"].as_array().map(Vec::len), Some(1), "{jobs}");

    // A worker comes back: its sweep finds the order idle with its saga unfinished, and the
    // job runs again from its first attempt.
    let Shop { app, admin, .. } = shop;
    let worker = Proc::spawn("worker", &worker_env(&app, &settings));
    worker.wait_for_line("worker started", Duration::from_secs(30));
    let shop = Shop { app, admin, worker: Some(worker) };
    shop.wait(&customer, &placed, "confirmed and paid after the redrive", |o| {
        o["status"] == "CONFIRMED" && o["paymentStatus"] == "PAID"
    })
    .await;
    let jobs: Value = shop.app.get("/v1/admin/jobs", Some(&shop.admin.access_token)).await.json().await.unwrap();
    assert_eq!(jobs["deadLetters"].as_array().map(Vec::len), Some(0), "no longer dead: {jobs}");
    shop.assert_invariants_hold().await;
    assert_eq!(shop.stock(&product).await, (9, 0));
}

#[tokio::test]
async fn a_payment_event_dead_lettered_by_an_outage_runs_again_by_itself_and_the_order_is_paid() {
    use ecom_kernel::jobs::QueueName;
    use ecom_redis::{ConsumerSettings, QueueConsumer};
    // The capture comes 6 s after the charge: long enough to stop the worker before it.
    let settings = [("SIMULATED_CAPTURE_DELAY_MS", "6000")];
    let app = TestApp::spawn_with(&settings).await;
    let first = Proc::spawn("worker", &worker_env(&app, &settings));
    first.wait_for_line("worker started", Duration::from_secs(30));
    let admin = app.admin().await;
    let shop = Shop { app, admin, worker: Some(first) };
    let customer = shop.app.register_customer().await;
    let product = shop.product(10, 1000).await;
    let cart = shop.cart_with(&customer, &product, 1).await;
    let placed = shop.place(&customer, &cart, "CREDIT_CARD", Some("pm_card_visa")).await;
    shop.wait(&customer, &placed, "confirmed", |o| o["status"] == "CONFIRMED").await;
    let Shop { app, admin, worker: first } = shop;
    drop(first);
    let shop = Shop { app, admin, worker: None };

    // The provider's capture event ran out of retries while the database was down, and was
    // dead-lettered as the worker's runtime does then (here by hand, with no worker running; a
    // second after which it runs again, as `JOB_REVIVE_AFTER_SECS=1` would have it).
    let consumer = QueueConsumer::new(
        shop.app.services.redis.clone(),
        &shop.app.config.redis_url,
        &shop.app.services.redis_keys,
        QueueName::PaymentEvents,
        "outage",
        ConsumerSettings { revive_after: Duration::from_secs(1), ..ConsumerSettings::default() },
    )
    .unwrap();
    consumer.ensure_group().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let delivery = loop {
        consumer.promote(10).await.unwrap();
        if let Some(delivery) = consumer.read(1, Duration::from_millis(200)).await.unwrap().pop() {
            break delivery;
        }
        assert!(Instant::now() < deadline, "no capture event");
    };
    assert_eq!(delivery.job.kind, "payments.event");
    assert!(consumer.dead_letter_spent(&delivery, "gave up after 10 attempts: database unavailable").await.unwrap());
    let order = shop.wait(&customer, &placed, "still confirmed", |o| o["status"] == "CONFIRMED").await;
    assert_eq!(order["paymentStatus"], "AUTHORIZED", "{order}");
    let jobs: Value = shop.app.get("/v1/admin/jobs", Some(&shop.admin.access_token)).await.json().await.unwrap();
    let letters = jobs["deadLetters"].as_array().cloned().unwrap_or_default();
    assert_eq!(letters.len(), 1, "{jobs}");
    assert_eq!(letters[0]["queue"], "payment-events");
    assert!(letters[0]["revivesAt"].is_string(), "it runs again by itself: {jobs}");

    // A worker comes back: the event runs again from its first attempt, and the order is paid.
    let Shop { app, admin, .. } = shop;
    let second = Proc::spawn("worker", &worker_env(&app, &settings));
    second.wait_for_line("worker started", Duration::from_secs(30));
    let shop = Shop { app, admin, worker: Some(second) };
    shop.wait(&customer, &placed, "paid after the revival", |o| o["paymentStatus"] == "PAID").await;
    let jobs: Value = shop.app.get("/v1/admin/jobs", Some(&shop.admin.access_token)).await.json().await.unwrap();
    assert_eq!(jobs["deadLetters"].as_array().map(Vec::len), Some(0), "no longer dead: {jobs}");
    shop.assert_invariants_hold().await;
}

/// A shop without a worker (the test runs the jobs itself) and one card order placed in it, for
/// one unit of a product with 10 in stock: (shop, customer, product, order id).
async fn one_card_order_without_a_worker(capture_delay_ms: &str) -> (Shop, Session, String, String) {
    let app = TestApp::spawn_with(&[("SIMULATED_CAPTURE_DELAY_MS", capture_delay_ms)]).await;
    let admin = app.admin().await;
    let shop = Shop { app, admin, worker: None };
    let customer = shop.app.register_customer().await;
    let product = shop.product(10, 1000).await;
    let cart = shop.cart_with(&customer, &product, 1).await;
    let id = shop.place(&customer, &cart, "CREDIT_CARD", Some("pm_card_visa")).await;
    (shop, customer, product, id)
}

#[tokio::test]
async fn a_charge_made_but_never_recorded_is_refunded_once_the_cancelled_orders_saga_runs_again() {
    use ecom_payments::ports::{ChargeRequest, Gateways};
    // The test runs the saga's steps itself, around a worker that stopped between the provider's
    // answer and the payment's write. The simulator captures at once.
    let (shop, customer, product, id) = one_card_order_without_a_worker("0").await;
    let order_id: ecom_kernel::OrderId = id.parse().unwrap();
    let services = &shop.app.services;
    let order = services
        .orders
        .view(
            order_id,
            ecom_orders::service::Viewer { customer_id: customer.customer_id.parse().unwrap(), admin: false },
        )
        .await
        .unwrap();

    // The payment opened, the provider charged under the order's key, nothing recorded after.
    let payment = services
        .payments
        .open_online(order_id, order.customer_id, ecom_payments::model::Provider::Simulated, order.total)
        .await
        .unwrap();
    let simulator = services.gateways.get(ecom_payments::model::Provider::Simulated).unwrap();
    simulator
        .charge(&ChargeRequest {
            idempotency_key: format!("order-{order_id}-charge"),
            payment_id: payment.id,
            order_id,
            amount: order.total,
            token: "pm_card_visa".into(),
        })
        .await
        .unwrap();

    // The customer cancels; the compensation sees no charge and refunds nothing.
    let res = shop.app.post(&format!("/v1/orders/{id}/cancel"), &json!({}), Some(&customer.access_token)).await;
    assert_eq!(res.status(), StatusCode::OK);
    services.orders.compensate(order_id, ecom_orders::model::CancellationReason::CustomerRequest).await.unwrap();
    assert_eq!(shop.payments(&customer, &id).await[0]["status"], "PENDING", "the charge is unknown to the shop");

    // The saga's step runs again (its job was never acknowledged): the charge is recovered with
    // its key, recorded and refunded.
    let step = ecom_orders::service::SagaJob { order_id, step: ecom_orders::service::Step::Reserve, reason: None };
    services.orders.run_step(&step).await.unwrap();
    let payments = shop.payments(&customer, &id).await;
    assert_eq!(payments.len(), 1, "no second payment");
    assert_eq!(payments[0]["status"], "REFUNDED", "{payments:?}");
    let refunded = simulator.retrieve(payments[0]["providerReference"].as_str().unwrap()).await.unwrap();
    assert_eq!(refunded.refunded, order.total, "the provider gave the money back");
    assert_eq!(shop.stock(&product).await, (10, 0), "stock as before");
}

#[tokio::test]
async fn a_capture_that_arrives_after_the_compensation_gave_up_waiting_is_refunded() {
    use ecom_orders::service::{SagaJob, Step, StepError};
    use ecom_payments::ports::Gateways;
    // The test runs the jobs itself. The simulator captures 1.5 s after the charge.
    let (shop, customer, product, id) = one_card_order_without_a_worker("1500").await;
    let order_id: ecom_kernel::OrderId = id.parse().unwrap();
    let services = &shop.app.services;

    // The saga charges: CONFIRMED, the payment authorized and not captured yet.
    services.orders.run_step(&SagaJob { order_id, step: Step::Reserve, reason: None }).await.unwrap();
    let order = shop.order(&customer, &id).await;
    assert_eq!((order["status"].as_str(), order["paymentStatus"].as_str()), (Some("CONFIRMED"), Some("AUTHORIZED")));

    // The customer cancels. The compensation gives the unit back at once and waits for the
    // capture to refund, until its retries run out (the job is buried): nothing refunded yet.
    assert_eq!(shop.stock(&product).await, (9, 0), "the unit left the shelf with the confirmation");
    let res = shop.app.post(&format!("/v1/orders/{id}/cancel"), &json!({}), Some(&customer.access_token)).await;
    assert_eq!(res.status(), StatusCode::OK);
    let reason = ecom_orders::model::CancellationReason::CustomerRequest;
    assert!(matches!(services.orders.compensate(order_id, reason).await, Err(StepError::Retry(_))));
    assert_eq!(shop.stock(&product).await, (10, 0), "the unit is back on the shelf; the money waits");

    // The capture comes later; its event runs as the worker runs it, and gives everything back.
    let deadline = Instant::now() + Duration::from_secs(10);
    while crate::payments::run_payment_events(&shop.app).await == 0 {
        assert!(Instant::now() < deadline, "the simulated capture event never arrived");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let order = shop.order(&customer, &id).await;
    assert_eq!((order["status"].as_str(), order["paymentStatus"].as_str()), (Some("CANCELLED"), Some("REFUNDED")));
    let payments = shop.payments(&customer, &id).await;
    assert_eq!((payments.len(), payments[0]["status"].as_str()), (1, Some("REFUNDED")), "{payments:?}");
    let simulator = services.gateways.get(ecom_payments::model::Provider::Simulated).unwrap();
    let seen = simulator.retrieve(payments[0]["providerReference"].as_str().unwrap()).await.unwrap();
    assert_eq!(seen.refunded.amount(), order["total"]["amount"].as_i64().unwrap(), "the provider gave it all back");
    assert_eq!(shop.stock(&product).await, (10, 0), "the unit is back on the shelf");
    shop.assert_invariants_hold().await;
}

#[tokio::test]
async fn a_refund_the_provider_refuses_leaves_the_order_showing_the_money_taken_and_the_compensation_ends() {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};
    // Stripe charges (one payment intent per order), then refuses every refund (a disputed
    // charge, say).
    let stripe = MockServer::start().await;
    for intent in ["pi_refused_a", "pi_refused_b"] {
        Mock::given(method("POST"))
            .and(path("/v1/payment_intents"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "id": intent, "object": "payment_intent", "status": "succeeded",
                "amount": 5000, "currency": "usd", "amount_received": 5000
            })))
            .up_to_n_times(1)
            .mount(&stripe)
            .await;
    }
    let env =
        [("PAYMENT_PROVIDER", "stripe"), ("STRIPE_SECRET_KEY", "sk_test_e2e"), ("STRIPE_API_BASE", &stripe.uri())];
    let shop = shop_with(&env).await;
    let customer = shop.app.register_customer().await;
    let mut orders = Vec::new();
    for _ in 0..2 {
        let product = shop.product(10, 4500).await;
        let cart = shop.cart_with(&customer, &product, 1).await;
        let id = shop.place(&customer, &cart, "CREDIT_CARD", Some("pm_card_visa")).await;
        shop.wait(&customer, &id, "paid", |o| o["status"] == "CONFIRMED" && o["paymentStatus"] == "PAID").await;
        let payment = shop.payments(&customer, &id).await[0]["id"].as_str().unwrap().to_owned();
        orders.push((id, product, payment));
    }
    let refunds_asked =
        || async { stripe.received_requests().await.unwrap().iter().filter(|r| r.url.path() == "/v1/refunds").count() };
    let refunds_of = |payment: String| {
        let url = format!("/v1/payments/{payment}");
        let (app, token) = (&shop.app, shop.admin.access_token.clone());
        async move {
            let shown: Value = app.get(&url, Some(&token)).await.json().await.unwrap();
            let statuses: Vec<String> =
                shown["refunds"].as_array().unwrap().iter().map(|r| r["status"].as_str().unwrap().to_owned()).collect();
            (shown["status"].as_str().unwrap().to_owned(), statuses)
        }
    };

    let refused_notes = |o: &Value| {
        o["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["note"].as_str().is_some_and(|n| n.starts_with("refund refused by the provider")))
            .count()
    };

    // The second order is cancelled while Stripe is down: its compensation books the refund
    // (the order shows it) and gives the stock back. Stripe comes back and refuses it: the refund
    // job gives the amount back to the payment, and the order shows the money taken again, and
    // the refusal.
    let (id, product, payment) = &orders[1];
    let down = Mock::given(method("POST"))
        .and(path("/v1/refunds"))
        .respond_with(ResponseTemplate::new(503))
        .mount_as_scoped(&stripe)
        .await;
    let res = shop.app.post(&format!("/v1/orders/{id}/cancel"), &json!({}), Some(&customer.access_token)).await;
    assert_eq!(res.status(), StatusCode::OK);
    shop.wait(&customer, id, "refund booked", |o| o["paymentStatus"] == "REFUNDED").await;
    shop.wait_for_stock(product, (10, 0), Duration::from_secs(10)).await;
    // Mounted after the 503, the refusal answers once the 503 is gone.
    let refusal = json!({"error": {"type": "invalid_request_error", "message": "Charge ch_1 has been disputed"}});
    Mock::given(method("POST"))
        .and(path("/v1/refunds"))
        .respond_with(ResponseTemplate::new(400).set_body_json(refusal))
        .mount(&stripe)
        .await;
    drop(down);
    let order = shop
        .wait(&customer, id, "paid again after the refusal", |o| o["paymentStatus"] == "PAID" && refused_notes(o) == 1)
        .await;
    assert!(order.to_string().contains("disputed"), "the provider's reason is shown: {order}");
    assert_eq!(refunds_of(payment.clone()).await, ("PAID".to_owned(), vec!["FAILED".to_owned()]));
    let shown: Value =
        shop.app.get(&format!("/v1/payments/{payment}"), Some(&shop.admin.access_token)).await.json().await.unwrap();
    assert_eq!(
        shown["refunds"][0]["failureReason"].as_str(),
        Some("rejected by the provider: Charge ch_1 has been disputed"),
        "the refund keeps the provider's reason: {shown}"
    );

    // The customer cancels the first order: its compensation's refund is refused at once. It
    // ends (the stock back, the refusal and its reason on the timeline, the payment shown PAID)
    // instead of booking a refund again and again while the stock stays reserved.
    let (id, product, payment) = &orders[0];
    let res = shop.app.post(&format!("/v1/orders/{id}/cancel"), &json!({}), Some(&customer.access_token)).await;
    assert_eq!(res.status(), StatusCode::OK);
    let order = shop.wait(&customer, id, "refusal recorded", |o| refused_notes(o) == 1).await;
    assert!(order.to_string().contains("disputed"), "the provider's reason is shown: {order}");
    assert_eq!((order["status"].as_str(), order["paymentStatus"].as_str()), (Some("CANCELLED"), Some("PAID")));
    shop.wait_for_stock(product, (10, 0), Duration::from_secs(10)).await;
    // Run again (an event for its payment, a retried job), the compensation asks for nothing more.
    // (Once the refund's own job, which may ask too, has nothing left to ask.)
    let deadline = Instant::now() + Duration::from_secs(10);
    while refunds_of(payment.clone()).await.1 != ["FAILED"] {
        assert!(Instant::now() < deadline, "refund not settled");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let asked = refunds_asked().await;
    let order_id: ecom_kernel::OrderId = id.parse().unwrap();
    shop.app
        .services
        .orders
        .compensate(order_id, ecom_orders::model::CancellationReason::CustomerRequest)
        .await
        .unwrap();
    assert_eq!(refunds_asked().await, asked, "no refund is asked for again");
    assert_eq!(refused_notes(&shop.order(&customer, id).await), 1);
    // An admin can still ask; refused, that is 422 and the order shows the money taken.
    let res =
        shop.app.post(&format!("/v1/payments/{payment}/refund"), &json!({}), Some(&shop.admin.access_token)).await;
    assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "PROVIDER_REJECTED").await;
    let order = shop.order(&customer, id).await;
    assert_eq!((order["paymentStatus"].as_str(), refused_notes(&order)), (Some("PAID"), 1));
    assert_eq!(refunds_of(payment.clone()).await, ("PAID".to_owned(), vec!["FAILED".to_owned(), "FAILED".to_owned()]));
}

/// PayPal holding one order the customer approved, for 25.00 USD: it reads APPROVED until it is
/// captured (once), then COMPLETED.
struct PayPalOrder {
    captured: std::sync::Arc<std::sync::atomic::AtomicBool>,
    capture: bool,
}

impl PayPalOrder {
    const ID: &'static str = "8XK41243XV3620416";

    fn body(completed: bool) -> Value {
        let mut unit = json!({"reference_id": "default", "amount": {"currency_code": "USD", "value": "25.00"}});
        if completed {
            unit["payments"] = json!({"captures": [{"id": "2GG279541U471931P", "status": "COMPLETED",
                "amount": {"currency_code": "USD", "value": "25.00"}, "final_capture": true}]});
        }
        json!({"id": Self::ID, "intent": "CAPTURE", "status": if completed { "COMPLETED" } else { "APPROVED" },
               "purchase_units": [unit]})
    }
}

impl wiremock::Respond for PayPalOrder {
    fn respond(&self, _: &wiremock::Request) -> wiremock::ResponseTemplate {
        use std::sync::atomic::Ordering;
        if self.capture {
            if self.captured.swap(true, Ordering::SeqCst) {
                return wiremock::ResponseTemplate::new(422).set_body_json(json!({
                    "name": "UNPROCESSABLE_ENTITY", "details": [{"issue": "ORDER_ALREADY_CAPTURED"}]}));
            }
            return wiremock::ResponseTemplate::new(201).set_body_json(Self::body(true));
        }
        wiremock::ResponseTemplate::new(200).set_body_json(Self::body(self.captured.load(Ordering::SeqCst)))
    }
}

#[tokio::test]
async fn an_approved_paypal_order_pays_for_one_checkout_and_a_second_checkout_with_it_is_declined() {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let paypal = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/oauth2/token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "access_token": "A21AAe2e", "token_type": "Bearer", "expires_in": 32400})))
        .mount(&paypal)
        .await;
    let captured = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    Mock::given(method("GET"))
        .and(path(format!("/v2/checkout/orders/{}", PayPalOrder::ID)))
        .respond_with(PayPalOrder { captured: captured.clone(), capture: false })
        .mount(&paypal)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("/v2/checkout/orders/{}/capture", PayPalOrder::ID)))
        .respond_with(PayPalOrder { captured, capture: true })
        .mount(&paypal)
        .await;
    let env = [
        ("PAYPAL_CLIENT_ID", "client-e2e"),
        ("PAYPAL_CLIENT_SECRET", "secret-e2e"),
        ("PAYPAL_API_BASE", &paypal.uri()),
    ];
    let shop = shop_with(&env).await;
    let product = shop.product(10, 2000).await;

    // 20.00 + 5.00 shipping: what the customer approved.
    let first = shop.app.register_customer().await;
    let cart = shop.cart_with(&first, &product, 1).await;
    let paid = shop.place(&first, &cart, "PAYPAL", Some(PayPalOrder::ID)).await;
    shop.wait(&first, &paid, "paid", |o| o["status"] == "CONFIRMED" && o["paymentStatus"] == "PAID").await;

    // The same approved order again, by someone else, for the same amount: PayPal says it is
    // captured (it is: for the first checkout). Nothing pays for this one.
    let second = shop.app.register_customer().await;
    let cart = shop.cart_with(&second, &product, 1).await;
    let reused = shop.place(&second, &cart, "PAYPAL", Some(PayPalOrder::ID)).await;
    let order = shop.wait(&second, &reused, "cancelled", |o| o["status"] == "CANCELLED").await;
    assert_eq!(
        (order["cancellationReason"].as_str(), order["paymentStatus"].as_str()),
        (Some("PAYMENT_DECLINED"), Some("FAILED")),
        "{order}"
    );
    let payments = shop.payments(&second, &reused).await;
    assert_eq!(payments.len(), 1);
    assert_eq!(
        (payments[0]["status"].as_str(), payments[0]["providerReference"].as_str()),
        (Some("FAILED"), None),
        "{payments:?}"
    );
    assert_eq!(payments[0]["failureReason"].as_str(), Some(ecom_payments::service::TOKEN_USED), "{payments:?}");
    let first_payment = &shop.payments(&first, &paid).await[0];
    assert_eq!(
        (first_payment["status"].as_str(), first_payment["providerReference"].as_str()),
        (Some("PAID"), Some(PayPalOrder::ID))
    );
    shop.wait_for_stock(&product, (9, 0), Duration::from_secs(10)).await;
    let captures =
        paypal.received_requests().await.unwrap().iter().filter(|r| r.url.path().ends_with("/capture")).count();
    assert_eq!(captures, 1, "captured once");
    shop.assert_invariants_hold().await;
}
