use ecom_kernel::{OrderId, ProductId, Quantity};
use ecom_testkit::TestApp;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::{assert_problem, error_fields};

async fn product(app: &TestApp, token: &str, sku: &str, stock: i64) -> String {
    let body = json!({"sku": sku, "name": format!("Item {sku}"), "price": {"amount": 500, "currency": "USD"}, "initialStock": stock});
    let res = app.post("/v1/products", &body, Some(token)).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    res.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned()
}

async fn adjust(app: &TestApp, token: &str, id: &str, body: Value) -> reqwest::Response {
    app.post(&format!("/v1/inventory/products/{id}/adjust"), &body, Some(token)).await
}

#[tokio::test]
async fn admins_adjust_stock_but_never_below_what_is_reserved() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let t = admin.access_token.as_str();
    let id = product(&app, t, "ADJ-1", 10).await;

    let res = adjust(&app, t, &id, json!({"type": "ADD", "quantity": 5, "reason": "delivery"})).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.json::<Value>().await.unwrap()["onHand"], 15);
    let res = adjust(&app, t, &id, json!({"type": "SUBTRACT", "quantity": 3})).await;
    assert_eq!(res.json::<Value>().await.unwrap()["available"], 12);

    let line = ecom_inventory::model::ReservationLine {
        product_id: id.parse::<ProductId>().unwrap(),
        quantity: Quantity::new(8).unwrap(),
    };
    app.services
        .inventory
        .reserve(OrderId::new(), &[line], chrono::Utc::now() + chrono::Duration::hours(1))
        .await
        .unwrap();
    let res = adjust(&app, t, &id, json!({"type": "SET", "quantity": 7})).await;
    assert_problem(res, StatusCode::CONFLICT, "STOCK_BELOW_RESERVED").await;
    let res = adjust(&app, t, &id, json!({"type": "SET", "quantity": 8})).await;
    let levels: Value = res.json().await.unwrap();
    assert_eq!(
        (levels["onHand"].as_u64(), levels["reserved"].as_u64(), levels["available"].as_u64()),
        (Some(8), Some(8), Some(0))
    );
}

#[tokio::test]
async fn adjustments_are_validated_and_admin_only() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let t = admin.access_token.as_str();
    let id = product(&app, t, "ADJ-2", 1).await;
    for (body, field) in [
        (json!({"type": "ADD", "quantity": 0}), "quantity"),
        (json!({"type": "SET", "quantity": -4}), "quantity"),
        (json!({"type": "MULTIPLY", "quantity": 2}), "type"),
    ] {
        let problem =
            assert_problem(adjust(&app, t, &id, body).await, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_FAILED")
                .await;
        assert_eq!(error_fields(&problem), [field]);
    }
    let missing = adjust(&app, t, &ProductId::new().to_string(), json!({"type": "ADD", "quantity": 1})).await;
    assert_problem(missing, StatusCode::NOT_FOUND, "PRODUCT_NOT_FOUND").await;
    let customer = app.register_customer().await;
    let res = adjust(&app, &customer.access_token, &id, json!({"type": "ADD", "quantity": 1})).await;
    assert_problem(res, StatusCode::FORBIDDEN, "FORBIDDEN").await;
    assert_problem(
        app.get("/v1/inventory/low-stock", Some(&customer.access_token)).await,
        StatusCode::FORBIDDEN,
        "FORBIDDEN",
    )
    .await;
    let res = app.get(&format!("/v1/inventory/products/{}", ProductId::new()), None).await;
    assert_problem(res, StatusCode::NOT_FOUND, "PRODUCT_NOT_FOUND").await;
}

#[tokio::test]
async fn the_low_stock_list_holds_products_at_or_below_their_threshold() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let t = admin.access_token.as_str();
    let plenty = product(&app, t, "LOW-1", 50).await;
    let low = product(&app, t, "LOW-2", 5).await;
    let empty = product(&app, t, "LOW-3", 0).await;
    let mut ids = Vec::new();
    let mut page: Value = app.get("/v1/inventory/low-stock?limit=1", Some(t)).await.json().await.unwrap();
    loop {
        ids.extend(page["data"].as_array().unwrap().iter().map(|l| l["productId"].as_str().unwrap().to_owned()));
        let Some(cursor) = page["nextCursor"].as_str() else { break };
        page =
            app.get(&format!("/v1/inventory/low-stock?limit=1&cursor={cursor}"), Some(t)).await.json().await.unwrap();
    }
    let mut expected = vec![low.clone(), empty.clone()];
    expected.sort();
    assert_eq!(ids, expected);
    assert!(!ids.contains(&plenty));
}
