use ecom_kernel::{OrderId, ProductId, Quantity};
use ecom_testkit::TestApp;
use reqwest::{header, StatusCode};
use serde_json::{json, Value};

use crate::{assert_problem, error_fields};

fn mug(sku: &str) -> Value {
    json!({"sku": sku, "name": "Enamel Mug", "description": "A camping mug", "category": "Kitchen",
           "price": {"amount": 1299, "currency": "USD"}, "initialStock": 12})
}

async fn create(app: &TestApp, token: &str, body: &Value) -> Value {
    let res = app.post("/v1/products", body, Some(token)).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    res.json().await.unwrap()
}

#[tokio::test]
async fn an_admin_creates_a_product_that_anyone_can_read() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let res = app.post("/v1/products", &mug(" mug-01 "), Some(&admin.access_token)).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let location = res.headers()[header::LOCATION].to_str().unwrap().to_owned();
    let created: Value = res.json().await.unwrap();
    assert_eq!(location, format!("/v1/products/{}", created["id"].as_str().unwrap()));
    assert_eq!(created["sku"], "MUG-01");
    assert_eq!(created["price"], json!({"amount": 1299, "currency": "USD"}));
    assert_eq!(created["available"], 12);

    let read: Value = app.get(&location, None).await.json().await.unwrap();
    assert_eq!(read, created);
    // Read again from the cache: the same.
    let cached: Value = app.get(&location, None).await.json().await.unwrap();
    assert_eq!(cached, created);
    let levels: Value = app
        .get(&format!("/v1/inventory/products/{}", created["id"].as_str().unwrap()), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        levels,
        json!({"productId": created["id"], "onHand": 12, "reserved": 0, "available": 12, "lowStockThreshold": 5})
    );
}

#[tokio::test]
async fn product_writes_need_an_admin() {
    let app = TestApp::spawn().await;
    let customer = app.register_customer().await;
    assert_problem(app.post("/v1/products", &mug("A-1"), None).await, StatusCode::UNAUTHORIZED, "UNAUTHENTICATED")
        .await;
    let res = app.post("/v1/products", &mug("A-1"), Some(&customer.access_token)).await;
    assert_problem(res, StatusCode::FORBIDDEN, "FORBIDDEN").await;
    let id = ProductId::new();
    let res = app.patch(&format!("/v1/products/{id}"), &json!({"name": "x"}), Some(&customer.access_token)).await;
    assert_problem(res, StatusCode::FORBIDDEN, "FORBIDDEN").await;
    assert_problem(
        app.delete(&format!("/v1/products/{id}"), Some(&customer.access_token)).await,
        StatusCode::FORBIDDEN,
        "FORBIDDEN",
    )
    .await;
}

#[tokio::test]
async fn duplicate_skus_and_invalid_products_are_refused() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    create(&app, &admin.access_token, &mug("DUP-1")).await;
    let res = app.post("/v1/products", &mug("dup-1"), Some(&admin.access_token)).await;
    assert_eq!(error_fields(&assert_problem(res, StatusCode::CONFLICT, "SKU_TAKEN").await), ["sku"]);

    let bad = json!({"sku": "has space", "name": "", "price": {"amount": 100, "currency": "usd"}, "initialStock": -1});
    let res = app.post("/v1/products", &bad, Some(&admin.access_token)).await;
    let problem = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_FAILED").await;
    assert_eq!(error_fields(&problem), ["sku", "name", "price.currency", "initialStock"]);

    for (price, field) in [
        (json!({"amount": 0, "currency": "USD"}), "price.amount"),
        (json!({"amount": 100, "currency": "EUR"}), "price.currency"),
    ] {
        let mut body = mug("P-1");
        body["price"] = price;
        let res = app.post("/v1/products", &body, Some(&admin.access_token)).await;
        assert_eq!(
            error_fields(&assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_FAILED").await),
            [field]
        );
    }
    // A description keeps its paragraphs, and is read back from the database and the cache.
    let mut paragraphs = mug("P-3");
    paragraphs["description"] = json!("Enamel.\n\nDishwasher safe.");
    let created = create(&app, &admin.access_token, &paragraphs).await;
    for _ in 0..2 {
        let read: Value =
            app.get(&format!("/v1/products/{}", created["id"].as_str().unwrap()), None).await.json().await.unwrap();
        assert_eq!(read["description"], "Enamel.\n\nDishwasher safe.");
    }
    for bad in ["nul\u{0}", "bell\u{7}"] {
        let mut body = mug("P-4");
        body["description"] = json!(bad);
        let res = app.post("/v1/products", &body, Some(&admin.access_token)).await;
        assert_eq!(
            error_fields(&assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_FAILED").await),
            ["description"]
        );
    }
    let mut with_float = mug("P-2");
    with_float["price"]["amount"] = json!(12.5);
    let res = app.post("/v1/products", &with_float, Some(&admin.access_token)).await;
    assert_eq!(
        error_fields(&assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_FAILED").await),
        ["price.amount"]
    );
}

/// Found by `just fuzz`: an admin could price products up to `i64::MAX`, and a cart holding two
/// of them overflowed its subtotal, so that every read of the cart was a 500. Prices are now
/// capped so that the dearest possible cart (100 lines of 100 units) still adds up.
#[tokio::test]
async fn prices_are_capped_so_that_the_dearest_cart_still_adds_up() {
    const MAX_PRICE: i64 = ecom_catalog::model::Product::MAX_PRICE;
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    for amount in [MAX_PRICE + 1, i64::MAX] {
        let mut body = mug("DEAR-1");
        body["price"]["amount"] = json!(amount);
        let res = app.post("/v1/products", &body, Some(&admin.access_token)).await;
        let problem = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_FAILED").await;
        assert_eq!(error_fields(&problem), ["price.amount"]);
    }
    let mut ids = Vec::new();
    for sku in ["DEAR-1", "DEAR-2"] {
        let mut body = mug(sku);
        body["price"]["amount"] = json!(MAX_PRICE);
        body["initialStock"] = json!(100);
        ids.push(create(&app, &admin.access_token, &body).await["id"].as_str().unwrap().to_owned());
    }
    let res = app
        .patch(
            &format!("/v1/products/{}", ids[0]),
            &json!({"price": {"amount": i64::MAX, "currency": "USD"}}),
            Some(&admin.access_token),
        )
        .await;
    assert_eq!(
        error_fields(&assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_FAILED").await),
        ["price.amount"]
    );

    let customer = app.register_customer().await;
    let cart: Value = app.post("/v1/carts", &json!({}), Some(&customer.access_token)).await.json().await.unwrap();
    let cart = cart["id"].as_str().unwrap();
    for id in &ids {
        let res = app
            .post(
                &format!("/v1/carts/{cart}/items"),
                &json!({"productId": id, "quantity": 100}),
                Some(&customer.access_token),
            )
            .await;
        assert_eq!(res.status(), StatusCode::OK);
    }
    let res = app.get(&format!("/v1/carts/{cart}"), Some(&customer.access_token)).await;
    assert_eq!(res.status(), StatusCode::OK);
    let shown: Value = res.json().await.unwrap();
    assert_eq!(shown["subtotal"], json!({"amount": 2 * 100 * MAX_PRICE, "currency": "USD"}));
}

#[tokio::test]
async fn unknown_and_archived_products_are_404() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let res = app.get(&format!("/v1/products/{}", ProductId::new()), None).await;
    assert_problem(res, StatusCode::NOT_FOUND, "PRODUCT_NOT_FOUND").await;
    assert_problem(app.get("/v1/products/not-a-uuid", None).await, StatusCode::NOT_FOUND, "PRODUCT_NOT_FOUND").await;

    let created = create(&app, &admin.access_token, &mug("GONE-1")).await;
    let path = format!("/v1/products/{}", created["id"].as_str().unwrap());
    app.get(&path, None).await; // warm the cache
    assert_eq!(app.delete(&path, Some(&admin.access_token)).await.status(), StatusCode::NO_CONTENT);
    assert_eq!(app.delete(&path, Some(&admin.access_token)).await.status(), StatusCode::NO_CONTENT, "idempotent");
    assert_problem(app.get(&path, None).await, StatusCode::NOT_FOUND, "PRODUCT_NOT_FOUND").await;
    let listed: Value = app.get("/v1/products", None).await.json().await.unwrap();
    assert!(listed["data"].as_array().unwrap().is_empty());
    let res = app.patch(&path, &json!({"name": "Back"}), Some(&admin.access_token)).await;
    assert_problem(res, StatusCode::NOT_FOUND, "PRODUCT_NOT_FOUND").await;
}

#[tokio::test]
async fn an_update_is_visible_on_the_very_next_read() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let created = create(&app, &admin.access_token, &mug("UPD-1")).await;
    let path = format!("/v1/products/{}", created["id"].as_str().unwrap());
    for round in 0..20 {
        let before: Value = app.get(&path, None).await.json().await.unwrap(); // served from cache after the first read
        let price = 1000 + round;
        let res = app
            .patch(
                &path,
                &json!({"price": {"amount": price, "currency": "USD"}, "description": null}),
                Some(&admin.access_token),
            )
            .await;
        assert_eq!(res.status(), StatusCode::OK);
        let after: Value = app.get(&path, None).await.json().await.unwrap();
        assert_eq!(after["price"]["amount"], price, "round {round}, before {before}");
        assert_eq!(after["description"], Value::Null);
    }
    let res = app.patch(&path, &json!({"sku": "NEW"}), Some(&admin.access_token)).await;
    assert_problem(res, StatusCode::BAD_REQUEST, "UNKNOWN_FIELD").await;
}

#[tokio::test]
async fn a_change_whose_cache_eviction_was_lost_is_evicted_by_its_job() {
    use std::time::{Duration, Instant};

    use crate::processes::{worker_env, Proc};
    let app = TestApp::spawn().await;
    let worker = Proc::spawn("worker", &worker_env(&app, &[]));
    worker.wait_for_line("worker started", Duration::from_secs(30));
    let admin = app.admin().await;
    let created = create(&app, &admin.access_token, &mug("EVICT-1")).await;
    let id = created["id"].as_str().unwrap();
    let path = format!("/v1/products/{id}");
    let price = |view: &Value| view["price"]["amount"].as_i64().unwrap();
    let before: Value = app.get(&path, None).await.json().await.unwrap(); // now cached
    let (entry, generation) = ecom_redis::RedisKeys::new(app.redis.prefix()).product_cache(id);
    let cached = app.redis.get(&[&entry, &generation]);
    let (Some(cached_entry), cached_generation) = (&cached[0], &cached[1]) else { panic!("not cached: {cached:?}") };

    let res = app.patch(&path, &json!({"price": {"amount": 1500, "currency": "USD"}}), Some(&admin.access_token)).await;
    assert_eq!(res.status(), StatusCode::OK);
    // Redis failed the writer's eviction after the commit: the entry is back as it was.
    app.redis.set(&[(&entry, cached_entry), (&generation, cached_generation.as_deref().unwrap_or("0"))]);
    let stale: Value = app.get(&path, None).await.json().await.unwrap();
    assert_eq!(price(&stale), price(&before), "the lost eviction is simulated");

    // The eviction staged with the change reaches a worker through the outbox relay.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now: Value = app.get(&path, None).await.json().await.unwrap();
        if price(&now) == 1500 {
            break;
        }
        assert!(Instant::now() < deadline, "still served from the cache: {now}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn availability_on_the_product_follows_reservations_at_once() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let created = create(&app, &admin.access_token, &mug("AV-1")).await;
    let id: ProductId = created["id"].as_str().unwrap().parse().unwrap();
    let path = format!("/v1/products/{id}");
    assert_eq!(app.get(&path, None).await.json::<Value>().await.unwrap()["available"], 12);
    let line = ecom_inventory::model::ReservationLine { product_id: id, quantity: Quantity::new(5).unwrap() };
    app.services
        .inventory
        .reserve(OrderId::new(), &[line], chrono::Utc::now() + chrono::Duration::hours(1))
        .await
        .unwrap();
    assert_eq!(app.get(&path, None).await.json::<Value>().await.unwrap()["available"], 7);
}

#[tokio::test]
async fn the_list_filters_sorts_and_validates_its_query() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    for (sku, name, category, cents, stock) in [
        ("L-1", "Trail Running Shoes", "outdoor", 8900, 3),
        ("L-2", "Espresso Machine", "kitchen", 49900, 0),
        ("L-3", "Chef Knife", "kitchen", 8900, 9),
        ("L-4", "Camping Stove", "outdoor", 5900, 1),
    ] {
        let body = json!({"sku": sku, "name": name, "category": category, "price": {"amount": cents, "currency": "USD"}, "initialStock": stock});
        create(&app, &admin.access_token, &body).await;
    }
    let skus = |v: Value| -> Vec<String> {
        v["data"].as_array().unwrap().iter().map(|p| p["sku"].as_str().unwrap().to_owned()).collect()
    };
    let get = |q: &'static str| app.get(q, None);

    assert_eq!(skus(get("/v1/products").await.json().await.unwrap()), ["L-4", "L-3", "L-2", "L-1"], "newest first");
    assert_eq!(skus(get("/v1/products?category=kitchen&sort=price_desc").await.json().await.unwrap()), ["L-2", "L-3"]);
    assert_eq!(skus(get("/v1/products?category=kitchen&inStock=true").await.json().await.unwrap()), ["L-3"]);
    assert_eq!(
        skus(get("/v1/products?minPrice=5000&maxPrice=8900&sort=price_asc").await.json().await.unwrap()),
        ["L-4", "L-1", "L-3"]
    );
    assert_eq!(skus(get("/v1/products?q=espreso").await.json().await.unwrap()), ["L-2"]);

    let problem =
        assert_problem(get("/v1/products?sort=cheapest").await, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_FAILED")
            .await;
    assert_eq!(error_fields(&problem), ["sort"]);
    let problem = assert_problem(
        get("/v1/products?minPrice=900&maxPrice=100").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_FAILED",
    )
    .await;
    assert_eq!(error_fields(&problem), ["minPrice"]);
    assert_problem(get("/v1/products?limit=0").await, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_FAILED").await;
    // A category no product can have (a NUL byte, which PostgreSQL text refuses; too long).
    let long = "k".repeat(101);
    for category in ["%C2%A4%00u", long.as_str()] {
        let res = app.get(&format!("/v1/products?category={category}"), None).await;
        let problem = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_FAILED").await;
        assert_eq!(error_fields(&problem), ["category"]);
    }
    assert_problem(get("/v1/products?inStock=maybe").await, StatusCode::BAD_REQUEST, "INVALID_QUERY").await;
    assert_problem(get("/v1/products?color=red").await, StatusCode::BAD_REQUEST, "INVALID_QUERY").await;
}

#[tokio::test]
async fn every_sort_pages_through_all_products_once_and_a_cursor_of_another_sort_is_refused() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    for (sku, cents) in [("P-1", 500), ("P-2", 300), ("P-3", 300), ("P-4", 900), ("P-5", 100)] {
        let body = json!({"sku": sku, "name": format!("Camp Mug {sku}"), "category": "kitchen",
                          "price": {"amount": cents, "currency": "USD"}, "initialStock": 1});
        create(&app, &admin.access_token, &body).await;
    }
    let page = |query: String| {
        let app = &app;
        async move {
            let res = app.get(&format!("/v1/products?limit=2&{query}"), None).await;
            assert_eq!(res.status(), StatusCode::OK, "{query}");
            let body: Value = res.json().await.unwrap();
            let skus: Vec<String> =
                body["data"].as_array().unwrap().iter().map(|p| p["sku"].as_str().unwrap().to_owned()).collect();
            (skus, body["nextCursor"].as_str().map(str::to_owned))
        }
    };
    let mut first_cursors = Vec::new();
    for (sort, expected) in [
        ("sort=newest", ["P-5", "P-4", "P-3", "P-2", "P-1"]),
        ("sort=price_asc", ["P-5", "P-2", "P-3", "P-1", "P-4"]),
        ("sort=price_desc", ["P-4", "P-1", "P-3", "P-2", "P-5"]),
    ] {
        let (mut seen, mut cursor) = page(sort.to_owned()).await;
        first_cursors.push((sort, cursor.clone().unwrap()));
        while let Some(after) = cursor {
            let (skus, next) = page(format!("{sort}&cursor={after}")).await;
            seen.extend(skus);
            cursor = next;
        }
        assert_eq!(seen, expected, "{sort}");
    }
    let (mut seen, mut cursor) = page("q=mug".to_owned()).await;
    first_cursors.push(("q=mug", cursor.clone().unwrap()));
    while let Some(after) = cursor {
        let (skus, next) = page(format!("q=mug&cursor={after}")).await;
        seen.extend(skus);
        cursor = next;
    }
    seen.sort();
    assert_eq!(seen, ["P-1", "P-2", "P-3", "P-4", "P-5"], "relevance: each once");

    // A cursor from another sort, or from before a search began: 422 on the cursor, never a 500.
    for (from, cursor) in &first_cursors {
        for to in ["sort=newest", "sort=price_asc", "sort=price_desc", "q=mug"] {
            let (from_relevance, to_relevance) = (from.starts_with("q="), to.starts_with("q="));
            let same_kind = from == &to
                || (from.starts_with("sort=price") && to.starts_with("sort=price"))
                || (from_relevance && to_relevance);
            let res = app.get(&format!("/v1/products?limit=2&{to}&cursor={cursor}"), None).await;
            if same_kind {
                assert_eq!(res.status(), StatusCode::OK, "{from} -> {to}");
            } else {
                let problem = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_FAILED").await;
                assert_eq!(error_fields(&problem), ["cursor"], "{from} -> {to}");
            }
        }
    }
    // A forged relevance cursor.
    let forged = ecom_kernel::Cursor::after_key("-1", uuid::Uuid::now_v7()).encode();
    let res = app.get(&format!("/v1/products?q=mug&cursor={forged}"), None).await;
    let problem = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_FAILED").await;
    assert_eq!(error_fields(&problem), ["cursor"]);
}

#[tokio::test]
async fn an_identifier_that_does_not_parse_is_its_own_resource_not_found() {
    let app = TestApp::spawn().await;
    let customer = app.register_customer().await;
    let token = Some(customer.access_token.as_str());
    let some = ProductId::new();
    for (path, code) in [("/v1/orders/42", "ORDER_NOT_FOUND"), ("/v1/payments/42", "PAYMENT_NOT_FOUND")] {
        assert_problem(app.get(path, token).await, StatusCode::NOT_FOUND, code).await;
    }
    for (path, code) in [
        (format!("/v1/carts/{some}/items/42"), "PRODUCT_NOT_FOUND"),
        (format!("/v1/carts/42/items/{some}"), "CART_NOT_FOUND"),
    ] {
        assert_problem(app.delete(&path, token).await, StatusCode::NOT_FOUND, code).await;
    }
}
