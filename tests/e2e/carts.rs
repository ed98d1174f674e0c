use ecom_kernel::{BoundedText, CustomerId, Money, ProductId};
use ecom_testkit::TestApp;
use futures_util::future::join_all;
use reqwest::{header, Method, StatusCode};
use serde_json::{json, Value};

use crate::{assert_problem, error_fields};

/// Creates a product directly through the catalog service; returns its id.
async fn product(app: &TestApp, sku: &str, cents: i64, stock: u32) -> String {
    let new = ecom_catalog::model::NewProduct {
        sku: ecom_catalog::model::Sku::parse(sku).unwrap(),
        name: BoundedText::parse(&format!("Product {sku}"), 200).unwrap(),
        description: None,
        price: Money::new(cents, ecom_kernel::Currency::USD),
        category: None,
        initial_stock: stock,
    };
    app.services.catalog.create_product(CustomerId::new(), new).await.unwrap().product.id.to_string()
}

struct Guest {
    id: String,
    token: String,
}

async fn guest_cart(app: &TestApp) -> Guest {
    let res = app.post("/v1/carts", &json!({}), None).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let location = res.headers()[header::LOCATION].to_str().unwrap().to_owned();
    let body: Value = res.json().await.unwrap();
    let id = body["id"].as_str().unwrap().to_owned();
    assert_eq!(location, format!("/v1/carts/{id}"));
    Guest { id, token: body["cartToken"].as_str().unwrap().to_owned() }
}

fn guest_request(app: &TestApp, method: Method, path: &str, token: &str) -> reqwest::RequestBuilder {
    app.request(method, path, None).header("x-cart-token", token)
}

async fn add(app: &TestApp, g: &Guest, product: &str, quantity: i64) -> reqwest::Response {
    guest_request(app, Method::POST, &format!("/v1/carts/{}/items", g.id), &g.token)
        .json(&json!({"productId": product, "quantity": quantity}))
        .send()
        .await
        .unwrap()
}

async fn show(app: &TestApp, g: &Guest) -> Value {
    let res = guest_request(app, Method::GET, &format!("/v1/carts/{}", g.id), &g.token).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    res.json().await.unwrap()
}

#[tokio::test]
async fn a_guest_cart_is_reached_only_with_its_token() {
    let app = TestApp::spawn().await;
    let g = guest_cart(&app).await;
    let other = guest_cart(&app).await;
    let empty = show(&app, &g).await;
    assert_eq!(empty["items"], json!([]));
    assert_eq!((empty["itemCount"].as_u64(), &empty["subtotal"]), (Some(0), &json!({"amount": 0, "currency": "USD"})));
    assert!(empty.get("cartToken").is_none(), "the token is only handed out once");

    let path = format!("/v1/carts/{}", g.id);
    assert_problem(app.get(&path, None).await, StatusCode::NOT_FOUND, "CART_NOT_FOUND").await;
    let res = guest_request(&app, Method::GET, &path, &other.token).send().await.unwrap();
    assert_problem(res, StatusCode::NOT_FOUND, "CART_NOT_FOUND").await;
    let customer = app.register_customer().await;
    assert_problem(app.get(&path, Some(&customer.access_token)).await, StatusCode::NOT_FOUND, "CART_NOT_FOUND").await;
    let bad_bearer = app.get(&path, Some("garbage")).await;
    assert_problem(bad_bearer, StatusCode::UNAUTHORIZED, "UNAUTHENTICATED").await;
}

#[tokio::test]
async fn a_customer_has_one_active_cart_that_others_cannot_see() {
    let app = TestApp::spawn().await;
    let (ada, bob) = (app.register_customer().await, app.register_customer().await);
    let first: Value = app.post("/v1/carts", &json!({}), Some(&ada.access_token)).await.json().await.unwrap();
    let again: Value = app.post("/v1/carts", &json!({}), Some(&ada.access_token)).await.json().await.unwrap();
    assert_eq!(first["id"], again["id"]);
    assert!(first.get("cartToken").is_none());
    let path = format!("/v1/carts/{}", first["id"].as_str().unwrap());
    assert_eq!(app.get(&path, Some(&ada.access_token)).await.status(), StatusCode::OK);
    assert_problem(app.get(&path, Some(&bob.access_token)).await, StatusCode::NOT_FOUND, "CART_NOT_FOUND").await;
    assert_problem(app.get(&path, None).await, StatusCode::NOT_FOUND, "CART_NOT_FOUND").await;
}

#[tokio::test]
async fn lines_add_up_within_limits_and_stock() {
    let app = TestApp::spawn().await;
    let (mug, scarce) = (product(&app, "MUG", 1299, 500).await, product(&app, "SCARCE", 500, 3).await);
    let g = guest_cart(&app).await;

    assert_eq!(add(&app, &g, &mug, 2).await.status(), StatusCode::OK);
    let cart: Value = add(&app, &g, &mug, 3).await.json().await.unwrap();
    assert_eq!(cart["items"].as_array().unwrap().len(), 1, "added to the existing line");
    assert_eq!(cart["items"][0]["quantity"], 5);
    assert_eq!(cart["items"][0]["lineTotal"], json!({"amount": 6495, "currency": "USD"}));
    assert_eq!(cart["items"][0]["name"], "Product MUG");
    assert_eq!(cart["items"][0]["available"], 500);

    let res = add(&app, &g, &scarce, 4).await;
    assert_eq!(error_fields(&assert_problem(res, StatusCode::CONFLICT, "OUT_OF_STOCK").await), ["quantity"]);
    for q in [0, 101, -5] {
        let problem =
            assert_problem(add(&app, &g, &mug, q).await, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_FAILED").await;
        assert_eq!(error_fields(&problem), ["quantity"], "{q}");
    }
    let over = add(&app, &g, &mug, 96).await;
    assert_problem(over, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_FAILED").await;
    assert_problem(add(&app, &g, &ProductId::new().to_string(), 1).await, StatusCode::NOT_FOUND, "PRODUCT_NOT_FOUND")
        .await;
    let malformed = guest_request(&app, Method::POST, &format!("/v1/carts/{}/items", g.id), &g.token)
        .json(&json!({"productId": "nope", "quantity": 1}))
        .send()
        .await
        .unwrap();
    assert_problem(malformed, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_FAILED").await;
    assert_eq!(show(&app, &g).await["itemCount"], 5, "nothing refused changed the cart");
}

#[tokio::test]
async fn a_cart_holds_at_most_100_different_products() {
    let app = TestApp::spawn().await;
    let g = guest_cart(&app).await;
    let mut ids = Vec::new();
    for i in 0..101 {
        ids.push(product(&app, &format!("MANY-{i}"), 100, 10).await);
    }
    for chunk in ids[..100].chunks(20) {
        let results = join_all(chunk.iter().map(|id| add(&app, &g, id, 1))).await;
        assert!(results.iter().all(|r| r.status() == StatusCode::OK));
    }
    let res = add(&app, &g, &ids[100], 1).await;
    assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "TOO_MANY_LINES").await;
    assert_eq!(show(&app, &g).await["items"].as_array().unwrap().len(), 100);
}

#[tokio::test]
async fn lines_are_updated_removed_and_the_cart_emptied() {
    let app = TestApp::spawn().await;
    let (a, b) = (product(&app, "A", 100, 50).await, product(&app, "B", 250, 50).await);
    let g = guest_cart(&app).await;
    add(&app, &g, &a, 1).await;
    add(&app, &g, &b, 1).await;
    let item = |p: &str| format!("/v1/carts/{}/items/{p}", g.id);

    let res =
        guest_request(&app, Method::PATCH, &item(&a), &g.token).json(&json!({"quantity": 7})).send().await.unwrap();
    let cart: Value = res.json().await.unwrap();
    assert_eq!((cart["itemCount"].as_u64(), cart["subtotal"]["amount"].as_i64()), (Some(8), Some(950)));
    let res =
        guest_request(&app, Method::PATCH, &item(&a), &g.token).json(&json!({"quantity": 0})).send().await.unwrap();
    let cart: Value = res.json().await.unwrap();
    assert_eq!(cart["items"].as_array().unwrap().len(), 1, "0 removes the line");
    let res =
        guest_request(&app, Method::PATCH, &item(&b), &g.token).json(&json!({"quantity": 101})).send().await.unwrap();
    assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_FAILED").await;
    let res = guest_request(&app, Method::DELETE, &item(&b), &g.token).send().await.unwrap();
    assert_eq!(res.json::<Value>().await.unwrap()["items"], json!([]));

    add(&app, &g, &a, 2).await;
    let res = guest_request(&app, Method::DELETE, &format!("/v1/carts/{}", g.id), &g.token).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_eq!(show(&app, &g).await["itemCount"], 0);
}

#[tokio::test]
async fn prices_are_always_fresh_and_archived_products_are_flagged() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let p = product(&app, "FRESH", 1000, 10).await;
    let g = guest_cart(&app).await;
    add(&app, &g, &p, 2).await;
    app.patch(
        &format!("/v1/products/{p}"),
        &json!({"price": {"amount": 1500, "currency": "USD"}}),
        Some(&admin.access_token),
    )
    .await;
    let cart = show(&app, &g).await;
    assert_eq!(cart["items"][0]["unitPrice"]["amount"], 1500);
    assert_eq!(cart["subtotal"]["amount"], 3000);
    assert_eq!(cart["items"][0]["purchasable"], true);

    app.delete(&format!("/v1/products/{p}"), Some(&admin.access_token)).await;
    let cart = show(&app, &g).await;
    assert_eq!(
        (cart["items"][0]["purchasable"].as_bool(), cart["items"][0]["available"].as_u64()),
        (Some(false), Some(0))
    );
    assert_problem(add(&app, &g, &p, 1).await, StatusCode::NOT_FOUND, "PRODUCT_NOT_FOUND").await;
}

#[tokio::test]
async fn signing_in_merges_the_guest_cart_into_the_customers() {
    let app = TestApp::spawn().await;
    let (a, b, c) =
        (product(&app, "MA", 100, 100).await, product(&app, "MB", 100, 100).await, product(&app, "MC", 100, 4).await);
    let customer = app.register_customer().await;
    let token = Some(customer.access_token.as_str());
    let mine: Value = app.post("/v1/carts", &json!({}), token).await.json().await.unwrap();
    let mine_id = mine["id"].as_str().unwrap().to_owned();
    app.post(&format!("/v1/carts/{mine_id}/items"), &json!({"productId": a, "quantity": 1}), token).await;
    app.post(&format!("/v1/carts/{mine_id}/items"), &json!({"productId": c, "quantity": 3}), token).await;

    let g = guest_cart(&app).await;
    add(&app, &g, &a, 2).await;
    add(&app, &g, &b, 1).await;
    add(&app, &g, &c, 3).await; // 3 + 3 > 4 available: capped at 4
    let merge = |token: Option<&str>, cart_token: Option<&str>| {
        let mut req = app.request(Method::POST, &format!("/v1/carts/{}/merge", g.id), token);
        if let Some(t) = cart_token {
            req = req.header("x-cart-token", t);
        }
        req.send()
    };
    assert_problem(merge(None, Some(&g.token)).await.unwrap(), StatusCode::UNAUTHORIZED, "UNAUTHENTICATED").await;
    assert_problem(merge(token, None).await.unwrap(), StatusCode::NOT_FOUND, "CART_NOT_FOUND").await;

    let res = merge(token, Some(&g.token)).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let merged: Value = res.json().await.unwrap();
    assert_eq!(merged["id"], mine_id.as_str());
    let qty = |cart: &Value, p: &str| {
        cart["items"].as_array().unwrap().iter().find(|i| i["productId"] == p).map(|i| i["quantity"].as_u64().unwrap())
    };
    assert_eq!((qty(&merged, &a), qty(&merged, &b), qty(&merged, &c)), (Some(3), Some(1), Some(4)));
    // The guest cart is gone for everyone; merging again (a reply lost) answers the same,
    // nothing counted twice.
    let res = guest_request(&app, Method::GET, &format!("/v1/carts/{}", g.id), &g.token).send().await.unwrap();
    assert_problem(res, StatusCode::NOT_FOUND, "CART_NOT_FOUND").await;
    let res = guest_request(&app, Method::POST, &format!("/v1/carts/{}/items", g.id), &g.token)
        .json(&json!({"productId": a, "quantity": 1}))
        .send()
        .await
        .unwrap();
    assert_problem(res, StatusCode::NOT_FOUND, "CART_NOT_FOUND").await;
    let again = merge(token, Some(&g.token)).await.unwrap();
    assert_eq!(again.status(), StatusCode::OK);
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["id"], mine_id.as_str());
    assert_eq!((qty(&again, &a), qty(&again, &b), qty(&again, &c)), (Some(3), Some(1), Some(4)));
    // Another customer holding the guest's token finds nothing to merge.
    let other = app.register_customer().await;
    let res = merge(Some(&other.access_token), Some(&g.token)).await.unwrap();
    assert_problem(res, StatusCode::NOT_FOUND, "CART_NOT_FOUND").await;
}

#[tokio::test]
async fn a_hundred_concurrent_adds_of_one_end_at_exactly_a_hundred() {
    let app = TestApp::spawn().await;
    let p = product(&app, "HOT", 100, 1000).await;
    let g = guest_cart(&app).await;
    let results = join_all((0..100).map(|_| add(&app, &g, &p, 1))).await;
    assert!(results.iter().all(|r| r.status() == StatusCode::OK));
    assert_eq!(show(&app, &g).await["items"][0]["quantity"], 100);
    let one_more = add(&app, &g, &p, 1).await;
    assert_problem(one_more, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_FAILED").await;
}

#[tokio::test]
async fn concurrent_adds_of_different_products_never_drop_a_line() {
    let app = TestApp::spawn().await;
    let mut ids = Vec::new();
    for i in 0..30 {
        ids.push(product(&app, &format!("PAR-{i}"), 100, 10).await);
    }
    let g = guest_cart(&app).await;
    let results = join_all(ids.iter().map(|p| add(&app, &g, p, 2))).await;
    assert!(results.iter().all(|r| r.status() == StatusCode::OK));
    let cart = show(&app, &g).await;
    assert_eq!(cart["items"].as_array().unwrap().len(), 30);
    assert_eq!(cart["itemCount"], 60);
}

#[tokio::test]
async fn carts_survive_an_api_restart() {
    let app = TestApp::spawn().await;
    let p = product(&app, "KEEP", 100, 10).await;
    let g = guest_cart(&app).await;
    add(&app, &g, &p, 3).await;
    app.stop_server().await;
    let restarted = app.another_instance().await;
    let res =
        app.client.get(format!("{restarted}/v1/carts/{}", g.id)).header("x-cart-token", &g.token).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.json::<Value>().await.unwrap()["items"][0]["quantity"], 3);
}
