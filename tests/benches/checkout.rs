//! Checkout end to end against a running api and worker (`scripts/bench.sh` starts them): many
//! customers, each connected to `/v1/ws` and with their cart open, put one of 20 products in the
//! cart and check out, then wait for the confirmation to arrive (acknowledging every
//! notification), again and again, for a while; every order is then followed until CONFIRMED.
//! Prints the completed checkouts per second (confirmed orders over the time from the first POST
//! to the last confirmation, as the orders' timelines record it) and the latency of the checkout
//! POST.
//!
//! Env: `BENCH_BASE_URL` (http://127.0.0.1:18090), `BENCH_CUSTOMERS` (64), `BENCH_SECONDS` (15),
//! `BENCH_ADMIN_EMAIL` / `BENCH_ADMIN_PASSWORD` (the api's admin).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stdout)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::sync::Mutex;
use tokio_tungstenite::tungstenite::Message;

fn env(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    async fn post(&self, path: &str, token: Option<&str>, body: &Value, key: Option<&str>) -> reqwest::Response {
        let mut req = self.http.post(format!("{}{path}", self.base)).json(body);
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        if let Some(key) = key {
            req = req.header("Idempotency-Key", key);
        }
        req.send().await.expect("request")
    }

    async fn get(&self, path: &str, token: &str) -> Value {
        self.http.get(format!("{}{path}", self.base)).bearer_auth(token).send().await.unwrap().json().await.unwrap()
    }
}

/// Reads notifications (acknowledging each) until the order is confirmed (true) or cancelled.
async fn settled<S>(ws: &mut S, order: &str) -> bool
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>>
        + futures_util::Sink<Message>
        + Unpin,
{
    use futures_util::{SinkExt, StreamExt};
    while let Some(frame) = ws.next().await {
        let Ok(Message::Text(text)) = frame else { continue };
        let frame: Value = serde_json::from_str(&text).unwrap();
        if frame["type"] != "notification" {
            continue;
        }
        let ack = json!({"type": "ack", "id": frame["data"]["id"]}).to_string();
        assert!(ws.send(Message::text(ack)).await.is_ok(), "ack");
        if frame["data"]["data"]["orderId"] == order {
            match frame["data"]["type"].as_str() {
                Some("ORDER_CONFIRMED") => return true,
                Some("ORDER_CANCELLED") => return false,
                _ => {}
            }
        }
    }
    false
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() {
    let client = Arc::new(Client {
        // Idle connections are dropped before the api's keep-alive (5 s) closes them: reusing
        // one the server is closing at that moment fails the request.
        http: reqwest::Client::builder()
            .pool_max_idle_per_host(256)
            .pool_idle_timeout(Duration::from_secs(3))
            .build()
            .unwrap(),
        base: env("BENCH_BASE_URL", "http://127.0.0.1:18090"),
    });
    let customers: usize = env("BENCH_CUSTOMERS", "64").parse().unwrap();
    let seconds: u64 = env("BENCH_SECONDS", "15").parse().unwrap();

    let login = client
        .post(
            "/v1/auth/login",
            None,
            &json!({"email": env("BENCH_ADMIN_EMAIL", "admin@bench.test"), "password": env("BENCH_ADMIN_PASSWORD", "bench-admin-password")}),
            None,
        )
        .await;
    assert!(login.status().is_success(), "admin login: {}", login.status());
    let admin = login.json::<Value>().await.unwrap()["accessToken"].as_str().unwrap().to_owned();
    // A shop sells many products: customers spread over 20 (one product for everyone would make
    // its stock row the bottleneck of every reservation).
    let mut products = Vec::new();
    for _ in 0..20 {
        let created = client
            .post(
                "/v1/products",
                Some(&admin),
                &json!({"sku": format!("BENCH-{}", uuid::Uuid::now_v7().simple()), "name": "Bench lamp",
                        "price": {"amount": 1500, "currency": "USD"}, "initialStock": 1_000_000}),
                None,
            )
            .await
            .json::<Value>()
            .await
            .unwrap();
        products.push(created["id"].as_str().unwrap().to_owned());
    }

    // Accounts first, in batches (password hashing is deliberately slow).
    let mut tokens = Vec::new();
    for chunk in (0..customers).collect::<Vec<_>>().chunks(16) {
        let batch = futures_util::future::join_all(chunk.iter().map(|_| {
            let client = client.clone();
            async move {
                let email = format!("bench-{}@shop.test", uuid::Uuid::now_v7().simple());
                let res = client
                    .post(
                        "/v1/auth/register",
                        None,
                        &json!({"email": email, "password": "correct horse battery",
                        "firstName": "Bench", "lastName": "Customer"}),
                        None,
                    )
                    .await;
                assert!(res.status().is_success(), "register: {}", res.status());
                res.json::<Value>().await.unwrap()["accessToken"].as_str().unwrap().to_owned()
            }
        }))
        .await;
        tokens.extend(batch);
    }

    let latencies = Arc::new(Mutex::new(Vec::new()));
    let orders = Arc::new(Mutex::new(Vec::new()));
    let started = Instant::now();
    let started_at = chrono::Utc::now();
    let until = started + Duration::from_secs(seconds);
    let workers = tokens.iter().cloned().enumerate().map(|(i, token)| {
        let product = products[i % products.len()].clone();
        let (client, latencies, orders) = (client.clone(), latencies.clone(), orders.clone());
        tokio::spawn(async move {
            // Told of the confirmation over the WebSocket, as a shop's client is.
            let ws_url = format!("{}/v1/ws?token={token}", client.base.replacen("http://", "ws://", 1));
            let (mut ws, _) = tokio_tungstenite::connect_async(ws_url).await.expect("websocket");
            // The customer's cart, opened once as a shop's client does: the saga takes the ordered
            // lines (all it holds here) out before the order is confirmed, ready for the next one.
            let cart = client.post("/v1/carts", Some(&token), &json!({}), None).await.json::<Value>().await.unwrap();
            let cart_id = cart["id"].as_str().unwrap().to_owned();
            while Instant::now() < until {
                let res = client
                    .post(
                        &format!("/v1/carts/{cart_id}/items"),
                        Some(&token),
                        &json!({"productId": product, "quantity": 1}),
                        None,
                    )
                    .await;
                assert!(res.status().is_success(), "add to cart: {}", res.status());
                let body = json!({"cartId": cart_id, "paymentMethod": "CREDIT_CARD", "paymentToken": "pm_card_visa",
                    "shippingAddress": {"fullName": "Bench Customer", "line1": "1 Loop", "city": "Cupertino",
                                        "postalCode": "95014", "country": "US"}});
                let posted = Instant::now();
                let res = client
                    .post("/v1/orders/checkout", Some(&token), &body, Some(&uuid::Uuid::now_v7().to_string()))
                    .await;
                let took = posted.elapsed();
                assert_eq!(res.status(), reqwest::StatusCode::CREATED, "checkout");
                let id = res.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
                latencies.lock().await.push(took);
                orders.lock().await.push((token.clone(), id.clone()));
                // The next checkout of this customer needs the cart the saga empties (of the lines
                // ordered, all it held) before the order is confirmed: wait for the confirmation,
                // acknowledging every notification.
                let settled =
                    tokio::time::timeout(Duration::from_secs(30), settled(&mut ws, &id)).await.unwrap_or(false);
                assert!(settled, "order {id}: no confirmation within 30 s");
            }
        })
    });
    futures_util::future::join_all(workers).await;

    // Follow every order until CONFIRMED; the order's timeline says when it got there, so the
    // rate does not depend on how quickly this loop looks.
    let orders = orders.lock().await.clone();
    let followed = futures_util::future::join_all(orders.chunks(orders.len().div_ceil(16).max(1)).map(|chunk| {
        let client = client.clone();
        let chunk = chunk.to_vec();
        async move {
            let mut confirmed_at = Vec::new();
            for (token, id) in &chunk {
                let deadline = Instant::now() + Duration::from_secs(60);
                loop {
                    let order = client.get(&format!("/v1/orders/{id}"), token).await;
                    if order["status"] == "CONFIRMED" {
                        let at = order["timeline"]
                            .as_array()
                            .and_then(|t| t.iter().find(|e| e["status"] == "CONFIRMED"))
                            .and_then(|e| e["at"].as_str())
                            .and_then(|at| chrono::DateTime::parse_from_rfc3339(at).ok())
                            .expect("a CONFIRMED order's timeline has its time");
                        confirmed_at.push(at.with_timezone(&chrono::Utc));
                        break;
                    }
                    if order["status"] == "CANCELLED" || Instant::now() > deadline {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            confirmed_at
        }
    }))
    .await;
    let confirmed_at: Vec<_> = followed.into_iter().flatten().collect();
    let confirmed = confirmed_at.len();
    // From the first POST to the last confirmation.
    let elapsed =
        confirmed_at.iter().max().map_or(started.elapsed(), |last| (*last - started_at).to_std().unwrap_or_default());
    let mut latencies = latencies.lock().await.clone();
    latencies.sort();
    println!("| checkout (POST to CONFIRMED) | customers | orders | confirmed | completed/s | POST p50 | POST p99 |");
    println!("|---|---|---|---|---|---|---|");
    println!(
        "| card, simulated provider, {seconds}s of load | {customers} | {} | {confirmed} | {:.0} | {:.2}ms | {:.2}ms |",
        orders.len(),
        confirmed as f64 / elapsed.as_secs_f64(),
        percentile(&latencies, 50.0).as_secs_f64() * 1000.0,
        percentile(&latencies, 99.0).as_secs_f64() * 1000.0,
    );
}
