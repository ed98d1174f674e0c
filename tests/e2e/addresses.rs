use ecom_testkit::TestApp;
use reqwest::{header, StatusCode};
use serde_json::{json, Value};

use crate::{assert_problem, error_fields};

fn address(name: &str) -> Value {
    json!({"fullName": name, "line1": "1 Infinite Loop", "city": "Cupertino", "state": "CA",
           "postalCode": "95014", "country": "us"})
}

async fn list(app: &TestApp, token: &str) -> Vec<Value> {
    let body: Value = app.get("/v1/customers/me/addresses", Some(token)).await.json().await.unwrap();
    // A list like any other, all of it on one page.
    assert_eq!(body.get("nextCursor"), Some(&Value::Null), "{body}");
    body["data"].as_array().unwrap().clone()
}

fn defaults(addresses: &[Value]) -> Vec<String> {
    addresses.iter().filter(|a| a["isDefault"] == true).map(|a| a["fullName"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn the_address_book_always_has_exactly_one_default() {
    let app = TestApp::spawn().await;
    let s = app.register_customer().await;
    let token = s.access_token.as_str();

    let first = app.post("/v1/customers/me/addresses", &address("Home"), Some(token)).await;
    assert_eq!(first.status(), StatusCode::CREATED);
    let location = first.headers()[header::LOCATION].to_str().unwrap().to_owned();
    let home: Value = first.json().await.unwrap();
    assert_eq!(location, format!("/v1/customers/me/addresses/{}", home["id"].as_str().unwrap()));
    let fetched = app.get(&location, Some(token)).await;
    assert_eq!(fetched.status(), StatusCode::OK, "the Location can be fetched");
    assert_eq!(fetched.json::<Value>().await.unwrap(), home);
    assert_eq!(home["country"], "US");
    assert_eq!(home["isDefault"], true, "the first address is the default");

    app.post("/v1/customers/me/addresses", &address("Office"), Some(token)).await;
    let mut cabin = address("Cabin");
    cabin["isDefault"] = json!(true);
    let cabin: Value = app.post("/v1/customers/me/addresses", &cabin, Some(token)).await.json().await.unwrap();
    assert_eq!(defaults(&list(&app, token).await), ["Cabin"]);

    let home_id = home["id"].as_str().unwrap();
    let res = app
        .patch(
            &format!("/v1/customers/me/addresses/{home_id}"),
            &json!({"isDefault": true, "line2": "Apt 1"}),
            Some(token),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.json::<Value>().await.unwrap()["line2"], "Apt 1");
    assert_eq!(defaults(&list(&app, token).await), ["Home"]);

    let unset =
        app.patch(&format!("/v1/customers/me/addresses/{home_id}"), &json!({"isDefault": false}), Some(token)).await;
    let problem = assert_problem(unset, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_FAILED").await;
    assert_eq!(error_fields(&problem), ["isDefault"]);

    // Deleting the default promotes the oldest remaining address.
    let deleted = app.delete(&format!("/v1/customers/me/addresses/{home_id}"), Some(token)).await;
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    let remaining = list(&app, token).await;
    assert_eq!(remaining.len(), 2);
    assert_eq!(defaults(&remaining), ["Office"]);
    assert_eq!(remaining[1]["id"], cabin["id"]);
}

#[tokio::test]
async fn invalid_addresses_name_every_bad_field() {
    let app = TestApp::spawn().await;
    let s = app.register_customer().await;
    let body = json!({"fullName": "", "line1": "x", "city": "y", "postalCode": "1".repeat(30), "country": "XX"});
    let res = app.post("/v1/customers/me/addresses", &body, Some(&s.access_token)).await;
    let problem = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_FAILED").await;
    assert_eq!(error_fields(&problem), ["fullName", "postalCode", "country"]);
}

#[tokio::test]
async fn another_customers_address_is_404() {
    let app = TestApp::spawn().await;
    let owner = app.register_customer().await;
    let intruder = app.register_customer().await;
    let created: Value =
        app.post("/v1/customers/me/addresses", &address("Home"), Some(&owner.access_token)).await.json().await.unwrap();
    let path = format!("/v1/customers/me/addresses/{}", created["id"].as_str().unwrap());

    assert_problem(app.get(&path, Some(&intruder.access_token)).await, StatusCode::NOT_FOUND, "ADDRESS_NOT_FOUND")
        .await;
    let patch = app.patch(&path, &json!({"city": "Elsewhere"}), Some(&intruder.access_token)).await;
    assert_problem(patch, StatusCode::NOT_FOUND, "ADDRESS_NOT_FOUND").await;
    assert_problem(app.delete(&path, Some(&intruder.access_token)).await, StatusCode::NOT_FOUND, "ADDRESS_NOT_FOUND")
        .await;
    assert!(list(&app, &intruder.access_token).await.is_empty());
    assert_eq!(list(&app, &owner.access_token).await[0]["city"], "Cupertino");

    let not_uuid = app.delete("/v1/customers/me/addresses/not-a-uuid", Some(&owner.access_token)).await;
    assert_problem(not_uuid, StatusCode::NOT_FOUND, "ADDRESS_NOT_FOUND").await;
}

#[tokio::test]
async fn the_address_book_holds_at_most_20() {
    let app = TestApp::spawn().await;
    let s = app.register_customer().await;
    for i in 0..20 {
        let res = app.post("/v1/customers/me/addresses", &address(&format!("A{i}")), Some(&s.access_token)).await;
        assert_eq!(res.status(), StatusCode::CREATED);
    }
    let res = app.post("/v1/customers/me/addresses", &address("One too many"), Some(&s.access_token)).await;
    assert_problem(res, StatusCode::CONFLICT, "ADDRESS_LIMIT_REACHED").await;
}
