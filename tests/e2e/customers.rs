use ecom_testkit::TestApp;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::{assert_problem, error_fields};

#[tokio::test]
async fn a_customer_reads_and_updates_their_profile() {
    let app = TestApp::spawn().await;
    let s = app.register_customer().await;
    let token = Some(s.access_token.as_str());

    let updated =
        app.patch("/v1/customers/me", &json!({"firstName": "Augusta", "phone": "+44 20 7946 0000"}), token).await;
    assert_eq!(updated.status(), StatusCode::OK);
    let body: Value = updated.json().await.unwrap();
    assert_eq!((body["firstName"].as_str(), body["lastName"].as_str()), (Some("Augusta"), Some("Lovelace")));
    assert_eq!(body["phone"], "+442079460000");

    let cleared: Value = app.patch("/v1/customers/me", &json!({"phone": null}), token).await.json().await.unwrap();
    assert_eq!(cleared["phone"], Value::Null);
    assert_eq!(cleared["firstName"], "Augusta");

    let me: Value = app.get("/v1/customers/me", token).await.json().await.unwrap();
    assert_eq!(me["firstName"], "Augusta");
    assert_eq!(me["phone"], Value::Null);
}

#[tokio::test]
async fn invalid_profile_changes_are_422_and_change_nothing() {
    let app = TestApp::spawn().await;
    let s = app.register_customer().await;
    let token = Some(s.access_token.as_str());
    let res = app.patch("/v1/customers/me", &json!({"firstName": "", "phone": "12"}), token).await;
    let problem = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_FAILED").await;
    assert_eq!(error_fields(&problem), ["firstName", "phone"]);
    let email = app.patch("/v1/customers/me", &json!({"email": "new@shop.test"}), token).await;
    assert_problem(email, StatusCode::BAD_REQUEST, "UNKNOWN_FIELD").await;
    let me: Value = app.get("/v1/customers/me", token).await.json().await.unwrap();
    assert_eq!(me["firstName"], "Ada");
}

#[tokio::test]
async fn without_a_valid_token_the_profile_is_401() {
    let app = TestApp::spawn().await;
    let res = app.get("/v1/customers/me", None).await;
    assert_eq!(res.headers()["www-authenticate"], "Bearer");
    assert_problem(res, StatusCode::UNAUTHORIZED, "UNAUTHENTICATED").await;
    for token in ["garbage", "a.b.c", "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0."] {
        let res = app.get("/v1/customers/me", Some(token)).await;
        assert_problem(res, StatusCode::UNAUTHORIZED, "UNAUTHENTICATED").await;
    }
    let basic = app
        .request(reqwest::Method::GET, "/v1/customers/me", None)
        .basic_auth("user", Some("pass"))
        .send()
        .await
        .unwrap();
    assert_problem(basic, StatusCode::UNAUTHORIZED, "UNAUTHENTICATED").await;
}

#[tokio::test]
async fn a_token_signed_with_another_secret_is_refused() {
    let app = TestApp::spawn().await;
    let other = TestApp::spawn_with(&[("JWT_SECRET", "a-completely-different-secret-of-32-bytes")]).await;
    let foreign = other.register_customer().await;
    let res = app.get("/v1/customers/me", Some(&foreign.access_token)).await;
    assert_problem(res, StatusCode::UNAUTHORIZED, "UNAUTHENTICATED").await;
}

#[tokio::test]
async fn a_customer_on_an_admin_route_is_403() {
    let app = TestApp::spawn().await;
    let s = app.register_customer().await;
    let res = app.get("/v1/admin/customers", Some(&s.access_token)).await;
    assert_problem(res, StatusCode::FORBIDDEN, "FORBIDDEN").await;
    let res = app.get(&format!("/v1/admin/customers/{}", s.customer_id), Some(&s.access_token)).await;
    assert_problem(res, StatusCode::FORBIDDEN, "FORBIDDEN").await;
    assert_problem(app.get("/v1/admin/customers", None).await, StatusCode::UNAUTHORIZED, "UNAUTHENTICATED").await;
}

#[tokio::test]
async fn admins_page_through_every_customer_exactly_once() {
    let app = TestApp::spawn().await;
    let mut registered = Vec::new();
    for _ in 0..5 {
        registered.push(app.register_customer().await.customer_id);
    }
    let admin = app.admin().await;
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/admin/customers?role=CUSTOMER&limit=2&cursor={c}"),
            None => "/v1/admin/customers?role=CUSTOMER&limit=2".to_owned(),
        };
        let page: Value = app.get(&path, Some(&admin.access_token)).await.json().await.unwrap();
        let items = page["data"].as_array().unwrap();
        assert!(items.len() <= 2);
        seen.extend(items.iter().map(|c| c["id"].as_str().unwrap().to_owned()));
        match page["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    registered.reverse(); // newest first
    assert_eq!(seen, registered);

    let one: Value = app
        .get(&format!("/v1/admin/customers/{}", registered[0]), Some(&admin.access_token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(one["id"], registered[0].as_str());
    let missing = app.get(&format!("/v1/admin/customers/{}", uuid::Uuid::now_v7()), Some(&admin.access_token)).await;
    assert_problem(missing, StatusCode::NOT_FOUND, "CUSTOMER_NOT_FOUND").await;
    let bad_limit = app.get("/v1/admin/customers?limit=500", Some(&admin.access_token)).await;
    assert_problem(bad_limit, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_FAILED").await;
    let bad_cursor = app.get("/v1/admin/customers?cursor=nonsense", Some(&admin.access_token)).await;
    assert_problem(bad_cursor, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_FAILED").await;
    let bad_number = app.get("/v1/admin/customers?limit=ten", Some(&admin.access_token)).await;
    assert_problem(bad_number, StatusCode::BAD_REQUEST, "INVALID_QUERY").await;
}
