use ecom_testkit::TestApp;
use futures_util::future::join_all;
use reqwest::{header, StatusCode};
use serde_json::{json, Value};

use crate::{assert_problem, error_fields};

#[tokio::test]
async fn registering_answers_201_with_the_customer_and_a_token_pair() {
    let app = TestApp::spawn().await;
    let res = app
        .post(
            "/v1/auth/register",
            &json!({"email": "  Grace.Hopper@Navy.MIL ", "password": "cobol-rocks", "firstName": "Grace",
                    "lastName": "Hopper", "phone": "+1 555 010 9999"}),
            None,
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    assert_eq!(res.headers()[header::LOCATION], "/v1/customers/me");
    assert_eq!(res.headers()[header::CACHE_CONTROL], "no-store");
    let body: Value = res.json().await.unwrap();
    let customer = &body["customer"];
    assert_eq!(customer["email"], "grace.hopper@navy.mil");
    assert_eq!(customer["firstName"], "Grace");
    assert_eq!(customer["phone"], "+15550109999");
    assert_eq!(customer["role"], "CUSTOMER");
    assert!(customer["createdAt"].as_str().unwrap().ends_with('Z'));
    assert_eq!(body["expiresIn"], 900);
    assert_eq!(body["tokenType"], "Bearer");

    let me = app.get("/v1/customers/me", body["accessToken"].as_str()).await;
    assert_eq!(me.status(), StatusCode::OK);
    assert_eq!(me.json::<Value>().await.unwrap()["id"], customer["id"]);
}

#[tokio::test]
async fn registering_a_taken_email_is_a_409_whatever_its_case() {
    let app = TestApp::spawn().await;
    app.register("taken@shop.test", "password-one").await;
    let res = app
        .post(
            "/v1/auth/register",
            &json!({"email": "TAKEN@shop.test", "password": "password-two", "firstName": "A", "lastName": "B"}),
            None,
        )
        .await;
    let problem = assert_problem(res, StatusCode::CONFLICT, "EMAIL_TAKEN").await;
    assert_eq!(error_fields(&problem), ["email"]);
}

#[tokio::test]
async fn invalid_registrations_are_422_with_every_failing_field() {
    let app = TestApp::spawn().await;
    let res = app
        .post(
            "/v1/auth/register",
            &json!({"email": "not-an-email", "password": "short", "firstName": " ", "lastName": "Ok", "phone": "call me"}),
            None,
        )
        .await;
    let problem = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_FAILED").await;
    assert_eq!(error_fields(&problem), ["email", "password", "firstName", "phone"]);
    assert_eq!(problem["errors"][1]["message"], "must be at least 8 characters");

    let missing = app.post("/v1/auth/register", &json!({"email": "a@shop.test"}), None).await;
    let problem = assert_problem(missing, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_FAILED").await;
    assert_eq!(error_fields(&problem), ["password"]);
}

#[tokio::test]
async fn malformed_json_unknown_fields_and_wrong_media_types_are_refused() {
    let app = TestApp::spawn().await;
    let malformed = app
        .request(reqwest::Method::POST, "/v1/auth/register", None)
        .header(header::CONTENT_TYPE, "application/json")
        .body("{\"email\": ")
        .send()
        .await
        .unwrap();
    assert_problem(malformed, StatusCode::BAD_REQUEST, "MALFORMED_JSON").await;

    let unknown = app
        .post(
            "/v1/auth/register",
            &json!({"email": "a@shop.test", "password": "password-1", "firstName": "A", "lastName": "B", "role": "ADMIN"}),
            None,
        )
        .await;
    let problem = assert_problem(unknown, StatusCode::BAD_REQUEST, "UNKNOWN_FIELD").await;
    assert_eq!(error_fields(&problem), ["role"]);

    let form = app
        .request(reqwest::Method::POST, "/v1/auth/login", None)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body("email=a&password=b")
        .send()
        .await
        .unwrap();
    assert_problem(form, StatusCode::UNSUPPORTED_MEDIA_TYPE, "UNSUPPORTED_MEDIA_TYPE").await;
}

#[tokio::test]
async fn a_body_over_the_limit_is_413() {
    let app = TestApp::spawn_with(&[("HTTP_BODY_LIMIT_BYTES", "1024")]).await;
    let big = json!({"email": "a@shop.test", "password": "x".repeat(2000)});
    let res = app.post("/v1/auth/login", &big, None).await;
    assert_problem(res, StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE").await;
}

#[tokio::test]
async fn logging_in_works_and_a_wrong_password_is_401() {
    let app = TestApp::spawn().await;
    let session = app.register_customer().await;
    let ok = app.login(&session.email.to_uppercase(), &session.password).await;
    assert_eq!(ok.status(), StatusCode::OK);
    let body: Value = ok.json().await.unwrap();
    assert_eq!(body["customer"]["id"], session.customer_id.as_str());

    let wrong = app.login(&session.email, "not the password").await;
    assert_problem(wrong, StatusCode::UNAUTHORIZED, "INVALID_CREDENTIALS").await;
    let unknown = app.login("nobody@shop.test", "not the password").await;
    assert_problem(unknown, StatusCode::UNAUTHORIZED, "INVALID_CREDENTIALS").await;
}

#[tokio::test]
async fn repeated_failures_are_throttled_with_retry_after() {
    let app = TestApp::spawn().await;
    let session = app.register_customer().await;
    for attempt in 1..=5 {
        let res = app.login(&session.email, "wrong password").await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "attempt {attempt}");
    }
    let res = app.login(&session.email, &session.password).await;
    let retry_after: u64 = res.headers()[header::RETRY_AFTER].to_str().unwrap().parse().unwrap();
    assert!((1..=900).contains(&retry_after), "{retry_after}");
    assert_problem(res, StatusCode::TOO_MANY_REQUESTS, "TOO_MANY_REQUESTS").await;

    // Another account from the same client is not yet blocked (the client limit is higher).
    let other = app.register_customer().await;
    assert_eq!(app.login(&other.email, &other.password).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn failures_from_one_client_across_many_emails_are_throttled() {
    let app = TestApp::spawn_with(&[("LOGIN_MAX_FAILURES_PER_CLIENT", "3")]).await;
    for i in 0..3 {
        let res = app.login(&format!("spray-{i}@shop.test"), "guess-password").await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
    let res = app.login("spray-9@shop.test", "guess-password").await;
    assert_problem(res, StatusCode::TOO_MANY_REQUESTS, "TOO_MANY_REQUESTS").await;
}

#[tokio::test]
async fn behind_a_trusted_proxy_a_client_cannot_escape_its_limit_by_forging_forwarded_addresses() {
    // The proxy appends the address it saw (10.0.0.7); what comes before is the client's own.
    let app = TestApp::spawn_with(&[("LOGIN_MAX_FAILURES_PER_CLIENT", "3"), ("TRUST_FORWARDED_FOR", "true")]).await;
    let login = |i: usize, proxy_saw: &'static str| {
        app.request(reqwest::Method::POST, "/v1/auth/login", None)
            .header("X-Forwarded-For", format!("203.0.113.{i}, {proxy_saw}"))
            .json(&json!({"email": format!("spray-{i}@shop.test"), "password": "guess-password"}))
            .send()
    };
    for i in 0..3 {
        assert_eq!(login(i, "10.0.0.7").await.unwrap().status(), StatusCode::UNAUTHORIZED);
    }
    assert_problem(login(9, "10.0.0.7").await.unwrap(), StatusCode::TOO_MANY_REQUESTS, "TOO_MANY_REQUESTS").await;
    // Another client behind the same proxy is another address.
    assert_eq!(login(10, "10.0.0.8").await.unwrap().status(), StatusCode::UNAUTHORIZED);
}

async fn refresh(app: &TestApp, token: &str) -> reqwest::Response {
    app.post("/v1/auth/refresh", &json!({"refreshToken": token}), None).await
}

#[tokio::test]
async fn refreshing_rotates_and_reuse_revokes_the_whole_family() {
    let app = TestApp::spawn().await;
    let session = app.register_customer().await;

    let first = refresh(&app, &session.refresh_token).await;
    assert_eq!(first.status(), StatusCode::OK);
    let first: Value = first.json().await.unwrap();
    let rotated = first["refreshToken"].as_str().unwrap().to_owned();
    assert_ne!(rotated, session.refresh_token);
    assert_eq!(app.get("/v1/customers/me", first["accessToken"].as_str()).await.status(), StatusCode::OK);

    // The old token again: reuse. The family dies, including the token it was rotated into.
    let reuse = refresh(&app, &session.refresh_token).await;
    assert_problem(reuse, StatusCode::UNAUTHORIZED, "REFRESH_TOKEN_REUSED").await;
    let after = refresh(&app, &rotated).await;
    assert_problem(after, StatusCode::UNAUTHORIZED, "INVALID_REFRESH_TOKEN").await;

    // Another login is another family, unaffected.
    let again = app.login(&session.email, &session.password).await;
    let again: Value = again.json().await.unwrap();
    assert_eq!(refresh(&app, again["refreshToken"].as_str().unwrap()).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_refresh_sent_again_with_a_bearer_token_and_the_same_idempotency_key_is_not_replayed() {
    // Signed in (a bearer token) and with an Idempotency-Key: a refresh is still never stored
    // (its answer is credentials) nor replayed (the old token again is reuse).
    let app = TestApp::spawn().await;
    let session = app.register_customer().await;
    let send = || {
        app.request(reqwest::Method::POST, "/v1/auth/refresh", Some(&session.access_token))
            .header("Idempotency-Key", "refresh-once")
            .json(&json!({"refreshToken": session.refresh_token}))
            .send()
    };
    let first = send().await.unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let again = send().await.unwrap();
    assert!(again.headers().get("idempotent-replayed").is_none(), "not a replay");
    assert_problem(again, StatusCode::UNAUTHORIZED, "REFRESH_TOKEN_REUSED").await;

    // The same route spelt with an escape is the same route: not stored either.
    let other = app.register_customer().await;
    let send = || {
        app.request(reqwest::Method::POST, "/v1/%61uth/refresh", Some(&other.access_token))
            .header("Idempotency-Key", "refresh-escaped")
            .json(&json!({"refreshToken": other.refresh_token}))
            .send()
    };
    assert_eq!(send().await.unwrap().status(), StatusCode::OK);
    let again = send().await.unwrap();
    assert!(again.headers().get("idempotent-replayed").is_none(), "not a replay");
    assert_problem(again, StatusCode::UNAUTHORIZED, "REFRESH_TOKEN_REUSED").await;
}

#[tokio::test]
async fn concurrent_refreshes_of_one_token_let_exactly_one_through() {
    let app = TestApp::spawn().await;
    let session = app.register_customer().await;
    let attempts = (0..8).map(|_| refresh(&app, &session.refresh_token));
    let statuses: Vec<StatusCode> = join_all(attempts).await.iter().map(|r| r.status()).collect();
    let ok = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    // The first rotation wins; every other one is reuse (and revokes the family).
    assert_eq!(ok, 1, "{statuses:?}");
    assert!(statuses.iter().all(|s| *s == StatusCode::OK || *s == StatusCode::UNAUTHORIZED), "{statuses:?}");
}

#[tokio::test]
async fn unknown_refresh_tokens_are_401() {
    let app = TestApp::spawn().await;
    assert_problem(refresh(&app, "made-up").await, StatusCode::UNAUTHORIZED, "INVALID_REFRESH_TOKEN").await;
}

#[tokio::test]
async fn logging_out_ends_the_session() {
    let app = TestApp::spawn().await;
    let session = app.register_customer().await;
    let res =
        app.post("/v1/auth/logout", &json!({"refreshToken": session.refresh_token}), Some(&session.access_token)).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_problem(refresh(&app, &session.refresh_token).await, StatusCode::UNAUTHORIZED, "INVALID_REFRESH_TOKEN")
        .await;

    let anonymous = app.post("/v1/auth/logout", &json!({"refreshToken": "x"}), None).await;
    assert_problem(anonymous, StatusCode::UNAUTHORIZED, "UNAUTHENTICATED").await;
}

#[tokio::test]
async fn the_admin_account_is_bootstrapped_from_the_environment() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let me: Value = app.get("/v1/customers/me", Some(&admin.access_token)).await.json().await.unwrap();
    assert_eq!(me["role"], "ADMIN");
    assert_eq!(me["email"], ecom_testkit::ADMIN_EMAIL);
}
