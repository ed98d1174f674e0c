//! Notifications end to end: the api in this process (and a second instance), a real `worker`
//! process producing them, customers and admins listening over WebSocket.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use ecom_testkit::Session;
use futures_util::{SinkExt, StreamExt};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::assert_problem;
use crate::orders::{shop, Shop};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

fn ws_url(base: &str) -> String {
    format!("{}/v1/ws", base.replacen("http://", "ws://", 1))
}

/// Connects with `?token=`.
async fn connect(base: &str, token: &str) -> Ws {
    let (ws, response) = tokio_tungstenite::connect_async(format!("{}?token={token}", ws_url(base))).await.unwrap();
    assert_eq!(response.status().as_u16(), 101);
    ws
}

/// Connects with an `Authorization` header.
async fn connect_with_header(base: &str, token: &str) -> Ws {
    let mut request = ws_url(base).into_client_request().unwrap();
    request.headers_mut().insert("Authorization", format!("Bearer {token}").parse().unwrap());
    tokio_tungstenite::connect_async(request).await.unwrap().0
}

/// The next JSON frame within `wait`, skipping protocol pings; `None` when none came.
async fn next_frame(ws: &mut Ws, wait: Duration) -> Option<Value> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => return None,
            Ok(Some(Ok(Message::Text(text)))) => return Some(serde_json::from_str(&text).unwrap()),
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => {}
            Ok(other) => panic!("unexpected websocket event: {other:?}"),
        }
    }
}

/// Reads frames until a notification of `kind` arrives (within 20 s); returns it and the time.
async fn notification(ws: &mut Ws, kind: &str) -> (Value, DateTime<Utc>) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let frame = next_frame(ws, left).await.unwrap_or_else(|| panic!("no {kind} notification"));
        if frame["type"] == "notification" && frame["data"]["type"] == kind {
            return (frame["data"].clone(), Utc::now());
        }
    }
}

/// Reads frames until a notification of each of `kinds` arrived, in whatever order (within 20 s).
async fn notifications(ws: &mut Ws, kinds: &[&str]) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut found: Vec<Option<Value>> = vec![None; kinds.len()];
    while found.iter().any(Option::is_none) {
        let left = deadline.saturating_duration_since(Instant::now());
        let frame = next_frame(ws, left).await.unwrap_or_else(|| panic!("not all of {kinds:?}: {found:?}"));
        if let Some(i) = kinds.iter().position(|k| frame["data"]["type"] == *k) {
            found[i].get_or_insert(frame["data"].clone());
        }
    }
    found.into_iter().flatten().collect()
}

async fn send(ws: &mut Ws, frame: Value) {
    ws.send(Message::text(frame.to_string())).await.unwrap();
}

/// Every notification frame before the answer to a ping (the server answers frames in order,
/// after the backlog).
async fn frames_until_pong(ws: &mut Ws) -> Vec<Value> {
    send(ws, json!({"type": "ping"})).await;
    let mut seen = Vec::new();
    loop {
        let frame = next_frame(ws, Duration::from_secs(5)).await.expect("a pong");
        if frame["type"] == "pong" {
            return seen;
        }
        seen.push(frame);
    }
}

async fn list(shop: &Shop, who: &Session, query: &str) -> Value {
    let res = shop.app.get(&format!("/v1/notifications{query}"), Some(&who.access_token)).await;
    assert_eq!(res.status(), StatusCode::OK);
    res.json().await.unwrap()
}

/// Waits until `who` has a notification of `kind` about `order` in `status`.
async fn wait_listed(shop: &Shop, who: &Session, kind: &str, order: &str, status: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let page = list(shop, who, "?limit=100").await;
        if let Some(found) = page["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["type"] == kind && n["data"]["orderId"] == order && n["status"] == status)
        {
            return found.clone();
        }
        assert!(Instant::now() < deadline, "no {status} {kind} for {order}: {page}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn online_order(shop: &Shop, customer: &Session, token: &str) -> String {
    let product = shop.product(10, 1500).await;
    let cart = shop.cart_with(customer, &product, 1).await;
    shop.place(customer, &cart, "CREDIT_CARD", Some(token)).await
}

#[tokio::test]
async fn every_device_of_a_connected_customer_hears_of_the_confirmation_and_nobody_else() {
    let shop = shop().await;
    let customer = shop.app.register_customer().await;
    let stranger = shop.app.register_customer().await;
    let mut phone = connect(&shop.app.address, &customer.access_token).await;
    let mut laptop = connect_with_header(&shop.app.address, &customer.access_token).await;
    let mut other = connect(&shop.app.address, &stranger.access_token).await;
    assert!(frames_until_pong(&mut phone).await.is_empty(), "nothing to catch up on");

    let id = online_order(&shop, &customer, "pm_card_visa").await;
    // (How fast is the fan-out benchmark's to measure, not a test's.)
    let (confirmed, _) = notification(&mut phone, "ORDER_CONFIRMED").await;
    assert_eq!(confirmed["data"]["orderId"], id);
    assert_eq!(confirmed["title"], "Order confirmed");
    assert!(confirmed["id"].is_string() && confirmed["createdAt"].is_string(), "{confirmed}");

    let (on_laptop, _) = notification(&mut laptop, "ORDER_CONFIRMED").await;
    assert_eq!(on_laptop["id"], confirmed["id"], "every device gets the same notification");

    // The stranger hears nothing of it, live or in a backlog.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let heard = frames_until_pong(&mut other).await;
    assert!(heard.is_empty(), "a stranger heard {heard:?}");
    let reconnected = &mut connect(&shop.app.address, &stranger.access_token).await;
    assert!(frames_until_pong(reconnected).await.is_empty());
    assert!(list(&shop, &stranger, "").await["data"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn an_offline_customer_gets_the_backlog_on_connect_and_never_again_once_acknowledged() {
    let shop = shop().await;
    let customer = shop.app.register_customer().await;
    let id = online_order(&shop, &customer, "pm_card_visa").await;
    shop.wait(&customer, &id, "paid", |o| o["status"] == "CONFIRMED" && o["paymentStatus"] == "PAID").await;
    let confirmed = wait_listed(&shop, &customer, "ORDER_CONFIRMED", &id, "SENT").await;
    wait_listed(&shop, &customer, "PAYMENT_RECEIVED", &id, "SENT").await;

    let mut ws = connect(&shop.app.address, &customer.access_token).await;
    let backlog = frames_until_pong(&mut ws).await;
    let mut kinds: Vec<&str> = backlog.iter().map(|f| f["data"]["type"].as_str().unwrap()).collect();
    kinds.sort_unstable();
    assert_eq!(kinds, vec!["ORDER_CONFIRMED", "PAYMENT_RECEIVED"]);
    let created: Vec<&str> = backlog.iter().map(|f| f["data"]["createdAt"].as_str().unwrap()).collect();
    assert!(created.windows(2).all(|w| w[0] <= w[1]), "oldest first: {created:?}");
    assert!(backlog.iter().any(|f| f["data"]["id"] == confirmed["id"]));
    for frame in &backlog {
        send(&mut ws, json!({"type": "ack", "id": frame["data"]["id"]})).await;
    }
    assert!(frames_until_pong(&mut ws).await.is_empty(), "acks answer nothing");
    ws.close(None).await.unwrap();

    let mut again = connect(&shop.app.address, &customer.access_token).await;
    assert!(frames_until_pong(&mut again).await.is_empty(), "acknowledged: never sent again");
    let listed = list(&shop, &customer, "").await;
    let statuses: Vec<&str> =
        listed["data"].as_array().unwrap().iter().map(|n| n["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["DELIVERED", "DELIVERED"], "{listed}");

    // Frames the server does not understand, and acks of unknown ids, are answered, not fatal.
    send(&mut again, json!({"type": "subscribe"})).await;
    assert_eq!(next_frame(&mut again, Duration::from_secs(5)).await.unwrap()["code"], "INVALID_FRAME");
    send(&mut again, json!({"type": "ack", "id": uuid::Uuid::now_v7()})).await;
    assert_eq!(next_frame(&mut again, Duration::from_secs(5)).await.unwrap()["code"], "NOTIFICATION_NOT_FOUND");
    send(&mut again, json!({"type": "ping"})).await;
    assert_eq!(next_frame(&mut again, Duration::from_secs(5)).await.unwrap(), json!({"type": "pong"}));
}

#[tokio::test]
async fn a_backlog_longer_than_a_page_arrives_whole_oldest_first() {
    use ecom_notifications::model::{Audience, Event, NotificationRequest};
    use ecom_notifications::ports::NotificationRepository;
    let app = ecom_testkit::TestApp::spawn().await;
    let customer = app.register_customer().await;
    let id: ecom_kernel::CustomerId = customer.customer_id.parse().unwrap();
    // More than two pages (200 each) of notifications the customer never acknowledged.
    let settings = ecom_postgres::PgSettings {
        url: app.db.url(),
        max_connections: 2,
        acquire_timeout: Duration::from_secs(5),
        statement_timeout: Duration::from_secs(5),
        application_name: "e2e".into(),
    };
    let repo = ecom_postgres::PgNotificationRepository::new(
        ecom_postgres::connect(&settings).unwrap(),
        ecom_postgres::connect_batch(&settings).unwrap(),
    );
    let notes: Vec<_> = (0..450)
        .map(|i| {
            let shipped = Event::OrderShipped { order_id: ecom_kernel::OrderId::new() };
            NotificationRequest::new(format!("backlog:{i}"), Audience::Customer(id), &shipped)
                .for_recipient(id, chrono::Utc::now())
        })
        .collect();
    repo.save(&notes).await.unwrap();

    let mut ws = connect(&app.address, &customer.access_token).await;
    let backlog = frames_until_pong(&mut ws).await;
    let ids: Vec<&str> = backlog.iter().map(|f| f["data"]["id"].as_str().unwrap()).collect();
    let expected: Vec<String> = notes.iter().map(|n| n.id.to_string()).collect();
    assert_eq!(ids.len(), 450);
    assert_eq!(ids, expected, "each once, oldest first");
}

#[tokio::test]
async fn a_customer_connected_to_a_second_api_instance_hears_what_the_worker_produced() {
    let shop = shop().await;
    let second = shop.app.another_instance().await;
    let customer = shop.app.register_customer().await;
    let mut ws = connect(&second, &customer.access_token).await;
    assert!(frames_until_pong(&mut ws).await.is_empty());

    let id = online_order(&shop, &customer, "pm_card_chargeDeclined").await;
    let (cancelled, _) = notification(&mut ws, "ORDER_CANCELLED").await;
    assert_eq!(cancelled["data"], json!({"orderId": id, "reason": "PAYMENT_DECLINED"}));
    assert!(cancelled["body"].as_str().unwrap().contains("PAYMENT_DECLINED"));
}

#[tokio::test]
async fn no_token_or_a_bad_token_is_refused() {
    let shop = shop().await;
    for url in [ws_url(&shop.app.address), format!("{}?token=not-a-token", ws_url(&shop.app.address))] {
        match tokio_tungstenite::connect_async(url).await {
            Err(WsError::Http(response)) => assert_eq!(response.status().as_u16(), 401),
            other => panic!("expected 401, got {other:?}"),
        }
    }
    let res = shop.app.get("/v1/ws?token=not-a-token", None).await;
    assert_problem(res, StatusCode::UNAUTHORIZED, "UNAUTHENTICATED").await;
    let customer = shop.app.register_customer().await;
    let res = shop.app.get("/v1/ws", Some(&customer.access_token)).await;
    assert_problem(res, StatusCode::BAD_REQUEST, "WEBSOCKET_UPGRADE_REQUIRED").await;
}

#[tokio::test]
async fn the_shop_tells_admins_of_cash_orders_and_low_stock_and_customers_of_every_step() {
    let shop = shop().await;
    let customer = shop.app.register_customer().await;
    let mut admin_ws = connect(&shop.app.address, &shop.admin.access_token).await;
    let mut ws = connect(&shop.app.address, &customer.access_token).await;
    let product = shop.product(6, 2000).await; // low-stock threshold: 5
    let cart = shop.cart_with(&customer, &product, 2).await;
    let id = shop.place(&customer, &cart, "CASH_ON_DELIVERY", None).await;

    let told = notifications(&mut admin_ws, &["COD_ORDER_PENDING", "LOW_STOCK"]).await;
    let (waiting, low) = (&told[0], &told[1]);
    assert_eq!(waiting["data"]["orderId"], id);
    assert_eq!(low["data"], json!({"productId": product, "available": 4, "threshold": 5}));

    for (step, kind) in
        [("confirm", "ORDER_CONFIRMED"), ("process", ""), ("ship", "ORDER_SHIPPED"), ("deliver", "ORDER_DELIVERED")]
    {
        assert_eq!(shop.advance(&id, step).await.status(), StatusCode::OK);
        if !kind.is_empty() {
            assert_eq!(notification(&mut ws, kind).await.0["data"]["orderId"], id);
        }
    }

    // A paid order cancelled by its customer: cancelled (with the reason), then refunded.
    let paid = online_order(&shop, &customer, "pm_card_visa").await;
    shop.wait(&customer, &paid, "paid", |o| o["paymentStatus"] == "PAID").await;
    let res = shop.app.post(&format!("/v1/orders/{paid}/cancel"), &json!({}), Some(&customer.access_token)).await;
    assert_eq!(res.status(), StatusCode::OK);
    let told = notifications(&mut ws, &["ORDER_CANCELLED", "REFUND_ISSUED"]).await;
    let (cancelled, refund) = (&told[0], &told[1]);
    assert_eq!(cancelled["data"], json!({"orderId": paid, "reason": "CUSTOMER_REQUEST"}));
    assert_eq!(refund["data"]["orderId"], paid);

    // The admins' notices are theirs only.
    let mine = list(&shop, &customer, "?limit=100").await;
    assert!(mine["data"]
        .as_array()
        .unwrap()
        .iter()
        .all(|n| n["type"] != "LOW_STOCK" && n["type"] != "COD_ORDER_PENDING"));
}

#[tokio::test]
async fn customers_list_and_mark_their_notifications_read_and_nobody_elses() {
    let shop = shop().await;
    let customer = shop.app.register_customer().await;
    let stranger = shop.app.register_customer().await;
    let id = online_order(&shop, &customer, "pm_card_visa").await;
    wait_listed(&shop, &customer, "PAYMENT_RECEIVED", &id, "SENT").await;
    let confirmed = wait_listed(&shop, &customer, "ORDER_CONFIRMED", &id, "SENT").await;

    let all = list(&shop, &customer, "").await["data"].as_array().unwrap().clone();
    assert_eq!(all.len(), 2);
    assert!(all[0]["createdAt"].as_str() >= all[1]["createdAt"].as_str(), "newest first");
    let first = list(&shop, &customer, "?limit=1").await;
    assert_eq!(first["data"].as_array().unwrap().len(), 1);
    assert_eq!(first["data"][0]["id"], all[0]["id"]);
    let cursor = first["nextCursor"].as_str().unwrap();
    let second = list(&shop, &customer, &format!("?limit=1&cursor={cursor}")).await;
    assert_eq!(second["data"][0]["id"], all[1]["id"]);
    assert_eq!(second["nextCursor"], Value::Null);

    let path = format!("/v1/notifications/{}/read", confirmed["id"].as_str().unwrap());
    let res = shop.app.patch(&path, &json!({}), Some(&stranger.access_token)).await;
    assert_problem(res, StatusCode::NOT_FOUND, "NOTIFICATION_NOT_FOUND").await;
    let res = shop.app.patch(&path, &json!({}), Some(&customer.access_token)).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let unread = list(&shop, &customer, "?unreadOnly=true").await;
    let unread = unread["data"].as_array().unwrap();
    assert_eq!(unread.len(), 1);
    assert_eq!(unread[0]["type"], "PAYMENT_RECEIVED", "the other one is read");
    let read = list(&shop, &customer, "").await["data"].as_array().unwrap().clone();
    let read = read.iter().find(|n| n["id"] == confirmed["id"]).unwrap();
    assert_eq!(read["status"], "READ");
    assert!(read["readAt"].is_string());

    let res = shop.app.post("/v1/notifications/read-all", &json!({}), Some(&customer.access_token)).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert!(list(&shop, &customer, "?unreadOnly=true").await["data"].as_array().unwrap().is_empty());

    assert_eq!(shop.app.get("/v1/notifications", None).await.status(), StatusCode::UNAUTHORIZED);
    let res = shop.app.get("/v1/notifications?limit=0", Some(&customer.access_token)).await;
    assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_FAILED").await;
    let res = shop.app.patch("/v1/notifications/not-a-uuid/read", &json!({}), Some(&customer.access_token)).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_silent_connection_is_closed_after_the_idle_timeout_and_a_talking_one_is_kept() {
    let app = ecom_testkit::TestApp::spawn_with(&[("WS_HEARTBEAT_SECS", "1"), ("WS_IDLE_TIMEOUT_SECS", "2")]).await;
    let customer = app.register_customer().await;
    let mut silent = connect(&app.address, &customer.access_token).await;
    let mut talking = connect(&app.address, &customer.access_token).await;
    let started = Instant::now();
    // `talking` answers the server's pings (tungstenite does while it reads); `silent` reads
    // nothing for 4 s, so it answers nothing.
    while started.elapsed() < Duration::from_secs(4) {
        send(&mut talking, json!({"type": "ping"})).await;
        assert_eq!(next_frame(&mut talking, Duration::from_secs(2)).await, Some(json!({"type": "pong"})));
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // The server closed it: its close frame ("idle") or, once the socket is gone, the client's
    // queued answers to the pings fail. A connection still open would only go on pinging.
    // Closed within the idle timeout and a heartbeat of the last pong; still open after that
    // (the server pinging every second) is a failure, not a hang.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::time::timeout_at(deadline, silent.next()).await.expect("still open") {
            Some(Ok(Message::Ping(_))) => {}
            Some(Ok(Message::Close(frame))) => {
                assert_eq!(frame.map(|f| f.reason.to_string()).as_deref(), Some("idle"));
                break;
            }
            None | Some(Err(WsError::Io(_) | WsError::ConnectionClosed | WsError::AlreadyClosed)) => break,
            other => panic!("expected the connection closed, got {other:?}"),
        }
    }
    send(&mut talking, json!({"type": "ping"})).await;
    assert_eq!(next_frame(&mut talking, Duration::from_secs(2)).await, Some(json!({"type": "pong"})), "kept");
}

#[tokio::test]
async fn a_connection_ends_when_the_token_it_opened_with_expires() {
    let app = ecom_testkit::TestApp::spawn_with(&[("ACCESS_TOKEN_TTL_SECS", "3")]).await;
    let customer = app.register_customer().await;
    let mut ws = connect(&app.address, &customer.access_token).await;
    let opened = Instant::now();
    send(&mut ws, json!({"type": "ping"})).await;
    assert_eq!(next_frame(&mut ws, Duration::from_secs(2)).await, Some(json!({"type": "pong"})), "open meanwhile");
    loop {
        match tokio::time::timeout(Duration::from_secs(6), ws.next()).await.expect("still open past the token") {
            Some(Ok(Message::Ping(_))) => {}
            Some(Ok(Message::Close(frame))) => {
                let frame = frame.expect("a close frame with its reason");
                assert_eq!(u16::from(frame.code), 1008);
                assert_eq!(frame.reason.as_str(), "token expired; reconnect with a new one");
                break;
            }
            other => panic!("expected the connection closed, got {other:?}"),
        }
    }
    // The token lived 3 s from its issue (whole seconds: between 2 and 3 s from here).
    assert!(opened.elapsed() >= Duration::from_millis(1500), "{:?}", opened.elapsed());
    assert_problem(
        app.get("/v1/customers/me", Some(&customer.access_token)).await,
        StatusCode::UNAUTHORIZED,
        "UNAUTHENTICATED",
    )
    .await;
}
