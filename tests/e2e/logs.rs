//! Passwords and tokens never reach the logs, and request log lines carry the request id.

use std::io::Write;
use std::sync::{Arc, Mutex};

use ecom_platform::{telemetry, LogFormat};
use ecom_testkit::TestApp;
use futures_util::{SinkExt, StreamExt};
use reqwest::StatusCode;
use serde_json::{json, Value};

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn passwords_and_tokens_never_reach_the_logs() {
    let captured = Captured::default();
    let writer = captured.clone();
    // Everything our code and the server stack log, at the most verbose level. (The test's own
    // HTTP client is left out: it is not the service.)
    let filter = "trace,reqwest=off,hyper=off,hyper_util=off,h2=off,want=off,mio=off";
    tracing::subscriber::set_global_default(telemetry::subscriber(LogFormat::Json, Some(filter), move || {
        writer.clone()
    }))
    .unwrap();

    let app = TestApp::spawn().await;
    let password = "Sup3r-Secret-Passw0rd!";
    let email = "logs@shop.test";
    let session = app.register(email, password).await;
    assert_eq!(app.login(email, "Wr0ng-Secret-Passw0rd!").await.status(), StatusCode::UNAUTHORIZED);
    let login: Value = app.login(email, password).await.json().await.unwrap();
    let refreshed: Value =
        app.post("/v1/auth/refresh", &json!({"refreshToken": session.refresh_token}), None).await.json().await.unwrap();
    app.post(
        "/v1/auth/logout",
        &json!({"refreshToken": refreshed["refreshToken"]}),
        Some(refreshed["accessToken"].as_str().unwrap()),
    )
    .await;
    let reuse = app.post("/v1/auth/refresh", &json!({"refreshToken": session.refresh_token}), None).await;
    assert_eq!(reuse.status(), StatusCode::UNAUTHORIZED);
    // A WebSocket opened with the token in its query string, used, then closed.
    let ws_url = format!(
        "{}/v1/ws?token={}",
        app.address.replacen("http://", "ws://", 1),
        login["accessToken"].as_str().unwrap()
    );
    let (mut ws, upgraded) = tokio_tungstenite::connect_async(ws_url).await.unwrap();
    let ws_request = upgraded.headers()["x-request-id"].to_str().unwrap().to_owned();
    ws.send(tokio_tungstenite::tungstenite::Message::Text(r#"{"type":"ping"}"#.into())).await.unwrap();
    while let Some(Ok(frame)) = ws.next().await {
        if frame.to_text().is_ok_and(|t| t.contains("pong")) {
            break;
        }
    }
    ws.close(None).await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    // (Other tests' lines may land here too when every test runs in one process: this
    // session's are told apart by its request id.)
    let closed = |logs: &str| logs.lines().any(|l| l.contains("\"websocket closed") && l.contains(&ws_request));
    while !closed(&String::from_utf8_lossy(&captured.0.lock().unwrap())) {
        assert!(std::time::Instant::now() < deadline, "the session's end was not logged");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let secrets = [
        password,
        "Wr0ng-Secret-Passw0rd!",
        ecom_testkit::ADMIN_PASSWORD,
        &session.access_token,
        &session.refresh_token,
        login["accessToken"].as_str().unwrap(),
        login["refreshToken"].as_str().unwrap(),
        refreshed["accessToken"].as_str().unwrap(),
        refreshed["refreshToken"].as_str().unwrap(),
    ];
    for secret in secrets {
        assert!(!logs.contains(secret), "a secret reached the logs: {secret}");
    }
    // The check means something only if the requests were logged, each line with its request id.
    let finished: Vec<&str> = logs.lines().filter(|l| l.contains("request finished")).collect();
    assert!(finished.len() >= 6, "{} request lines in:\n{logs}", finished.len());
    for line in finished {
        let parsed: Value = serde_json::from_str(line).unwrap();
        let spans = parsed["spans"].as_array().unwrap();
        assert!(spans.iter().any(|s| s["request_id"].is_string()), "{line}");
    }
    for line in logs.lines().filter(|l| l.contains("\"customer signed in\"")) {
        assert!(line.contains("request_id"), "{line}");
    }
    // The WebSocket session's own lines too, long after its upgrade request was answered.
    let session_lines = logs.lines().filter(|l| l.contains("\"websocket c") && l.contains(&ws_request)).count();
    assert_eq!(session_lines, 2, "connected and closed, with the upgrade's request id:\n{logs}");
}
