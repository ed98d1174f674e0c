use std::collections::BTreeSet;

use ecom_testkit::TestApp;
use reqwest::{header, Method, StatusCode};
use serde_json::Value;

use crate::assert_problem;

#[tokio::test]
async fn liveness_and_readiness_answer_200_when_everything_is_up() {
    let app = TestApp::spawn().await;
    let live = app.get("/health/live", None).await;
    assert_eq!(live.status(), StatusCode::OK);
    let ready = app.get("/health/ready", None).await;
    assert_eq!(ready.status(), StatusCode::OK);
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["checks"]["postgres"], "ok");
    assert_eq!(body["checks"]["redis"], "ok");
}

#[tokio::test]
async fn every_response_carries_a_request_id_and_a_clients_id_is_echoed() {
    let app = TestApp::spawn().await;
    let generated = app.get("/health/live", None).await;
    let id = generated.headers()["x-request-id"].to_str().unwrap();
    assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");

    let echoed = app.request(Method::GET, "/health/live", None).header("x-request-id", "client-trace-42").send().await;
    assert_eq!(echoed.unwrap().headers()["x-request-id"], "client-trace-42");
    let not_found = app.request(Method::GET, "/nowhere", None).header("x-request-id", "abc").send().await.unwrap();
    assert_eq!(not_found.headers()["x-request-id"], "abc");
}

#[tokio::test]
async fn unknown_routes_are_404_and_wrong_methods_405_as_problems() {
    let app = TestApp::spawn().await;
    assert_problem(app.get("/v1/nothing-here", None).await, StatusCode::NOT_FOUND, "ROUTE_NOT_FOUND").await;

    let res = app.request(Method::PUT, "/v1/customers/me", None).send().await.unwrap();
    assert_eq!(res.headers()[header::ALLOW], "GET, PATCH");
    assert_problem(res, StatusCode::METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED").await;

    let res = app.get("/v1/auth/login", None).await;
    assert_eq!(res.headers()[header::ALLOW], "POST");
    assert_problem(res, StatusCode::METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED").await;
    // Spelt with an escape, the same route.
    let res = app.get("/v1/auth/%6Cogin", None).await;
    assert_eq!(res.headers()[header::ALLOW], "POST");
    // A trailing slash or an empty segment is no route, whatever the method.
    for (method, path) in [
        (Method::GET, "/v1/products/"),
        (Method::DELETE, "/v1/products/"),
        (Method::POST, "/v1/auth/login/"),
        (Method::GET, "/v1/orders//payments"),
    ] {
        let res = app.request(method.clone(), path, None).send().await.unwrap();
        assert!(res.headers().get(header::ALLOW).is_none(), "{method} {path}");
        assert_problem(res, StatusCode::NOT_FOUND, "ROUTE_NOT_FOUND").await;
    }
}

#[tokio::test]
async fn metrics_count_requests_by_route_pattern_and_status() {
    let app = TestApp::spawn().await;
    app.get("/health/live", None).await;
    app.get("/v1/customers/me", None).await;
    app.get("/v1/does-not-exist/123", None).await;
    for made_up in ["BREW", "WHEN"] {
        app.request(Method::from_bytes(made_up.as_bytes()).unwrap(), "/health/live", None).send().await.unwrap();
    }
    let res = app.get("/metrics", None).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers()[header::CONTENT_TYPE].to_str().unwrap().starts_with("text/plain"));
    let text = res.text().await.unwrap();
    assert!(text.contains(r#"http_requests_total{method="GET",route="/health/live",status="200"} 1"#), "{text}");
    assert!(text.contains(r#"http_requests_total{method="GET",route="/v1/customers/me",status="401"} 1"#), "{text}");
    assert!(text.contains(r#"route="unmatched",status="404""#), "{text}");
    // Any token is a method: the ones outside the standard set share one label.
    assert!(text.contains(r#"http_requests_total{method="OTHER",route="/health/live",status="405"} 2"#), "{text}");
    assert!(!text.contains("BREW"), "{text}");
    assert!(text.contains("http_request_duration_seconds_bucket"), "{text}");
}

/// Every route the contract (API.md) promises for the parts built so far.
const DOCUMENTED: &[(&str, &str)] = &[
    ("GET", "/health/live"),
    ("GET", "/health/ready"),
    ("GET", "/metrics"),
    ("POST", "/v1/auth/register"),
    ("POST", "/v1/auth/login"),
    ("POST", "/v1/auth/refresh"),
    ("POST", "/v1/auth/logout"),
    ("GET", "/v1/customers/me"),
    ("PATCH", "/v1/customers/me"),
    ("GET", "/v1/customers/me/addresses"),
    ("POST", "/v1/customers/me/addresses"),
    ("PATCH", "/v1/customers/me/addresses/{id}"),
    ("DELETE", "/v1/customers/me/addresses/{id}"),
    ("GET", "/v1/admin/customers"),
    ("GET", "/v1/admin/customers/{id}"),
    ("GET", "/v1/products"),
    ("POST", "/v1/products"),
    ("GET", "/v1/products/{id}"),
    ("PATCH", "/v1/products/{id}"),
    ("DELETE", "/v1/products/{id}"),
    ("GET", "/v1/inventory/products/{productId}"),
    ("POST", "/v1/inventory/products/{productId}/adjust"),
    ("GET", "/v1/inventory/low-stock"),
    ("POST", "/v1/carts"),
    ("GET", "/v1/carts/{id}"),
    ("DELETE", "/v1/carts/{id}"),
    ("POST", "/v1/carts/{id}/items"),
    ("PATCH", "/v1/carts/{id}/items/{productId}"),
    ("DELETE", "/v1/carts/{id}/items/{productId}"),
    ("POST", "/v1/carts/{guestCartId}/merge"),
    ("GET", "/v1/admin/jobs"),
    ("POST", "/v1/admin/jobs/dead/{id}/retry"),
    ("POST", "/v1/admin/jobs/canary"),
    ("GET", "/v1/admin/jobs/canary/{id}"),
    ("POST", "/v1/orders/checkout"),
    ("GET", "/v1/orders"),
    ("GET", "/v1/orders/{id}"),
    ("POST", "/v1/orders/{id}/cancel"),
    ("PATCH", "/v1/orders/{id}/confirm"),
    ("PATCH", "/v1/orders/{id}/process"),
    ("PATCH", "/v1/orders/{id}/ship"),
    ("PATCH", "/v1/orders/{id}/deliver"),
    ("PATCH", "/v1/orders/{id}/cancel"),
    ("GET", "/v1/payments/{id}"),
    ("GET", "/v1/orders/{id}/payments"),
    ("POST", "/v1/payments/{id}/refund"),
    ("POST", "/v1/payments/cod/record"),
    ("POST", "/v1/payments/webhooks/stripe"),
    ("POST", "/v1/payments/webhooks/paypal"),
];

fn operations(spec: &Value) -> BTreeSet<(String, String)> {
    let mut ops = BTreeSet::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            ops.insert((method.to_uppercase(), path.clone()));
        }
    }
    ops
}

#[tokio::test]
async fn the_openapi_document_lists_every_route_and_every_listed_route_is_served() {
    let app = TestApp::spawn().await;
    let spec: Value = app.get("/openapi.json", None).await.json().await.unwrap();
    assert!(spec["openapi"].as_str().unwrap().starts_with("3."));
    // Every POST and PATCH documents the Idempotency-Key header, except under /v1/auth/, where
    // nothing is deduplicated (the answers are credentials).
    for (path, item) in spec["paths"].as_object().unwrap() {
        for method in ["post", "patch"] {
            let Some(op) = item.get(method) else { continue };
            let documented = op["parameters"]
                .as_array()
                .is_some_and(|ps| ps.iter().any(|p| p["name"] == "Idempotency-Key" && p["in"] == "header"));
            let replayed = op["responses"]["409"]["description"].as_str().unwrap_or("").contains("IDEMPOTENCY");
            if path.starts_with("/v1/auth/") {
                assert!(!documented && !replayed, "{method} {path} documents an Idempotency-Key it ignores");
            } else {
                assert!(documented, "{method} {path} does not document Idempotency-Key");
            }
        }
    }
    let ops = operations(&spec);
    for (method, path) in DOCUMENTED {
        assert!(
            ops.contains(&((*method).to_owned(), (*path).to_owned())),
            "{method} {path} missing from /openapi.json"
        );
    }
    // The other direction: every documented operation is routed (never ROUTE_NOT_FOUND or 405).
    for (method, path) in &ops {
        let concrete: String = path
            .split('/')
            .map(|seg| if seg.starts_with('{') { uuid::Uuid::now_v7().to_string() } else { seg.to_owned() })
            .collect::<Vec<_>>()
            .join("/");
        let res = app.request(method.parse().unwrap(), &concrete, None).send().await.unwrap();
        assert_ne!(res.status(), StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        if res.status() == StatusCode::NOT_FOUND {
            let body: Value = res.json().await.unwrap();
            assert_ne!(body["code"], "ROUTE_NOT_FOUND", "{method} {path}");
        }
    }
    assert!(spec["components"]["securitySchemes"]["bearer"].is_object());
}

/// Found by `just fuzz` (schemathesis' status_code_conformance): the document listed each
/// handler's own outcomes but not what every route answers through the shared machinery (a
/// missing or invalid token, a customer on an admin route, a body that is not JSON or too large,
/// another content type, a bad Idempotency-Key, an identifier or a query that does not parse).
/// Each of those, on every documented operation, must be a status the document lists for it.
#[tokio::test]
async fn every_refusal_of_the_shared_machinery_is_a_documented_status() {
    let app = TestApp::spawn().await;
    let customer = app.register_customer().await;
    let spec: Value = app.get("/openapi.json", None).await.json().await.unwrap();
    let concrete = |path: &str, id: &str| -> String {
        path.split('/').map(|seg| if seg.starts_with('{') { id } else { seg }).collect::<Vec<_>>().join("/")
    };
    let mut probed = 0;
    for (path, item) in spec["paths"].as_object().unwrap() {
        if path == "/v1/ws" {
            continue; // a WebSocket upgrade, driven by tests/e2e/notifications.rs
        }
        for (method, op) in item.as_object().unwrap() {
            let documented: BTreeSet<&str> = op["responses"].as_object().unwrap().keys().map(String::as_str).collect();
            let method: Method = method.to_uppercase().parse().unwrap();
            let url = concrete(path, &uuid::Uuid::now_v7().to_string());
            let token = Some(customer.access_token.as_str());
            let request = |token: Option<&str>| app.request(method.clone(), &url, token);
            let mut probes = vec![
                ("no token", request(None)),
                ("an invalid token", request(Some("not-a-token"))),
                ("a customer's token", request(token)),
                ("an identifier that does not parse", app.request(method.clone(), &concrete(path, "not-an-id"), token)),
            ];
            if op.get("requestBody").is_some() {
                let json = |body: Vec<u8>| request(token).header(header::CONTENT_TYPE, "application/json").body(body);
                probes.push(("malformed JSON", json(b"{".to_vec())));
                probes.push(("a body over the limit", json(vec![b' '; 300 * 1024])));
                probes.push((
                    "another content type",
                    request(token).header(header::CONTENT_TYPE, "text/plain").body("x"),
                ));
            }
            if method == Method::POST || method == Method::PATCH {
                probes.push(("an invalid Idempotency-Key", request(token).header("Idempotency-Key", "has space")));
            }
            let params = op["parameters"].as_array().map(Vec::as_slice).unwrap_or_default();
            if params.iter().any(|p| p["in"] == "query") {
                probes.push(("a query that does not parse", request(token).query(&[("limit", "abc")])));
                probes.push(("an invalid query", request(token).query(&[("limit", "0")])));
            }
            for (what, probe) in probes {
                let status = probe.send().await.unwrap().status();
                assert!(
                    documented.contains(status.as_str()),
                    "{method} {path} with {what}: {status} is not documented (documented: {documented:?})"
                );
                assert!(!status.is_server_error(), "{method} {path} with {what}: {status}");
                probed += 1;
            }
        }
    }
    assert!(probed > 300, "{probed} probes");
}

#[tokio::test]
async fn the_interactive_docs_are_served_with_no_network() {
    let app = TestApp::spawn().await;
    let redirect = app.get("/docs", None).await;
    assert_eq!(redirect.status(), StatusCode::PERMANENT_REDIRECT);
    assert_eq!(redirect.headers()[header::LOCATION], "/docs/");

    let page = app.get("/docs/", None).await;
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(html.contains("swagger-ui"), "{html}");
    // Every script and stylesheet the page loads is served by us, not by a CDN.
    for asset in ["swagger-ui.css", "swagger-ui-bundle.js", "swagger-ui-standalone-preset.js", "swagger-initializer.js"]
    {
        assert!(html.contains(&format!("./{asset}")), "{asset} referenced locally");
        let res = app.get(&format!("/docs/{asset}"), None).await;
        assert_eq!(res.status(), StatusCode::OK, "{asset}");
        assert!(!res.bytes().await.unwrap().is_empty(), "{asset}");
    }
    assert!(!html.contains("http://") && !html.contains("https://"), "no external URL in the docs page");
    let init = app.get("/docs/swagger-initializer.js", None).await.text().await.unwrap();
    assert!(init.contains("/openapi.json"), "{init}");
}

#[tokio::test]
async fn cors_answers_preflights_for_configured_origins_only() {
    let app = TestApp::spawn_with(&[("CORS_ALLOWED_ORIGINS", "https://shop.example")]).await;
    let preflight = |origin: &'static str| {
        app.request(Method::OPTIONS, "/v1/auth/login", None)
            .header(header::ORIGIN, origin)
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
            .header(header::ACCESS_CONTROL_REQUEST_HEADERS, "content-type")
            .send()
    };
    let allowed = preflight("https://shop.example").await.unwrap();
    assert_eq!(allowed.status(), StatusCode::OK);
    assert_eq!(allowed.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], "https://shop.example");

    let refused = preflight("https://evil.example").await.unwrap();
    assert!(refused.headers().get(header::ACCESS_CONTROL_ALLOW_ORIGIN).is_none());
    // A plain bad request, saying why (not a JSON body's fault: there is none).
    let problem = assert_problem(refused, StatusCode::BAD_REQUEST, "BAD_REQUEST").await;
    assert!(problem["detail"].as_str().unwrap().contains("Origin"), "{problem}");
}
