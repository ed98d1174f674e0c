//! WebSocket fan-out against a running api (`scripts/bench.sh` starts it): many customers each
//! hold one `GET /v1/ws` connection; notifications are then published on their Redis channels
//! the way the worker does (`RedisRealtimePublisher`), at a steady rate and spread over the
//! customers, and every frame is timed from just before its publish to its arrival at the
//! client. Every published frame must arrive, on its own customer's connection, exactly once.
//! Also reads the api's memory from `/proc/<pid>/status` before the connections, while they are
//! held, and after the fan-out.
//!
//! Access tokens are stateless HS256 JWTs (`IdentityService::authenticate` only checks the
//! signature and expiry), so the benchmark mints them for random customer ids with the api's
//! `JWT_SECRET` instead of registering accounts (argon2 would take minutes for 1,000). Those
//! customers have no rows, so their backlog on connect is empty.
//!
//! Env: `BENCH_BASE_URL` (http://127.0.0.1:18090), `BENCH_CONNECTIONS` (1000), `BENCH_MESSAGES`
//! (5000), `BENCH_RATE` (messages per second, 1000), `BENCH_CONNECT_CONCURRENCY` (handshakes in
//! flight, 50), `BENCH_API_PID` (the api's pid, for its memory; rows say "not measured" without
//! it), and the api's `JWT_SECRET` (its local default), `REDIS_URL` (redis://127.0.0.1:6379)
//! and `REDIS_KEY_PREFIX` (bench:).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stdout)]

use std::fmt::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use ecom_identity::model::{Principal, Role};
use ecom_identity::ports::TokenService;
use ecom_kernel::{CustomerId, OrderId, Secret};
use ecom_notifications::model::{Audience, Event, NotificationRequest};
use ecom_notifications::ports::RealtimePublisher;
use ecom_redis::{RedisKeys, RedisRealtimePublisher, RedisSettings};
use ecom_security::HmacTokenService;
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::sync::{watch, Semaphore};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::header::AUTHORIZATION;
use tokio_tungstenite::tungstenite::Message;

fn env(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

/// `VmRSS` and `VmHWM` (peak) of a process, in KiB.
fn memory(pid: Option<u32>) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid?)).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn percentile(sorted: &[u64], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    Duration::from_nanos(sorted[rank.min(sorted.len() - 1)])
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// What one connection saw.
#[derive(Default)]
struct Seen {
    /// Publish → receipt, in nanoseconds, of every frame meant for this connection.
    latencies: Vec<u64>,
    /// Sequence numbers received, to find copies.
    seqs: Vec<u64>,
    /// Frames for another connection's customer.
    misdelivered: usize,
    /// Notification frames received before the first pong (the backlog).
    backlog: usize,
    /// `{"type":"error"}` frames and anything unexpected.
    errors: Vec<String>,
    /// Closed by the server (or failed) before the benchmark let go.
    dropped: Option<String>,
}

struct Shared {
    base: Instant,
    delivered: AtomicUsize,
}

/// Connects as customer `index`, reads the backlog up to the answer to a ping (the server reads
/// client frames only once the backlog is sent), reports the handshake time, then reads until
/// told to stop. tungstenite answers the server's pings while it reads.
async fn hold(
    index: u64,
    url: String,
    token: String,
    gate: Arc<Semaphore>,
    shared: Arc<Shared>,
    connected: tokio::sync::mpsc::UnboundedSender<Result<Duration, String>>,
    mut stop: watch::Receiver<bool>,
) -> Seen {
    let mut seen = Seen::default();
    let permit = gate.acquire_owned().await.unwrap();
    let started = Instant::now();
    let mut request = url.into_client_request().unwrap();
    request.headers_mut().insert(AUTHORIZATION, format!("Bearer {token}").parse().unwrap());
    let mut ws = match tokio_tungstenite::connect_async(request).await {
        Ok((ws, _)) => ws,
        Err(err) => {
            let _ = connected.send(Err(format!("connect: {err}")));
            seen.dropped = Some(format!("connect: {err}"));
            return seen;
        }
    };
    if let Err(err) = ws.send(Message::text(r#"{"type":"ping"}"#)).await {
        let _ = connected.send(Err(format!("ping: {err}")));
        seen.dropped = Some(format!("ping: {err}"));
        return seen;
    }
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => {
                let frame: Value = serde_json::from_str(text.as_str()).unwrap_or(Value::Null);
                match frame["type"].as_str() {
                    Some("pong") => break,
                    Some("notification") => seen.backlog += 1,
                    _ => seen.errors.push(text.as_str().to_owned()),
                }
            }
            Some(Ok(_)) => {}
            other => {
                let why = format!("closed before the first pong: {other:?}");
                let _ = connected.send(Err(why.clone()));
                seen.dropped = Some(why);
                return seen;
            }
        }
    }
    let _ = connected.send(Ok(started.elapsed()));
    drop(permit);

    loop {
        tokio::select! {
            message = ws.next() => match message {
                Some(Ok(Message::Text(text))) => {
                    let received = shared.base.elapsed().as_nanos() as u64;
                    let frame: Value = serde_json::from_str(text.as_str()).unwrap_or(Value::Null);
                    if frame["type"] != "notification" {
                        seen.errors.push(text.as_str().to_owned());
                        continue;
                    }
                    let data = &frame["data"]["data"];
                    let (Some(conn), Some(seq), Some(sent)) =
                        (data["benchConn"].as_u64(), data["benchSeq"].as_u64(), data["benchSentNs"].as_u64())
                    else {
                        seen.errors.push(text.as_str().to_owned());
                        continue;
                    };
                    if conn != index {
                        seen.misdelivered += 1;
                        continue;
                    }
                    seen.latencies.push(received.saturating_sub(sent));
                    seen.seqs.push(seq);
                    shared.delivered.fetch_add(1, Ordering::Relaxed);
                }
                Some(Ok(_)) => {}
                other => {
                    seen.dropped = Some(format!("closed by the server: {other:?}"));
                    return seen;
                }
            },
            _ = stop.changed() => break,
        }
    }
    let _ = ws.close(None).await;
    seen
}

#[tokio::main]
async fn main() {
    let base_url = env("BENCH_BASE_URL", "http://127.0.0.1:18090");
    let url = format!("{}/v1/ws", base_url.replacen("http", "ws", 1));
    let connections: u64 = env("BENCH_CONNECTIONS", "1000").parse().unwrap();
    let messages: u64 = env("BENCH_MESSAGES", "5000").parse().unwrap();
    let rate: f64 = env("BENCH_RATE", "1000").parse().unwrap();
    let concurrency: usize = env("BENCH_CONNECT_CONCURRENCY", "50").parse().unwrap();
    let api_pid: Option<u32> = std::env::var("BENCH_API_PID").ok().map(|p| p.parse().unwrap());
    let secret = env("JWT_SECRET", "local-development-jwt-secret-not-for-production");
    let prefix = env("REDIS_KEY_PREFIX", "bench:");

    let tokens = HmacTokenService::new(&Secret::new(secret), chrono::Duration::minutes(30)).unwrap();
    let customers: Vec<CustomerId> = (0..connections).map(|_| CustomerId::new()).collect();
    let redis = ecom_redis::connect(&RedisSettings {
        url: env("REDIS_URL", "redis://127.0.0.1:6379"),
        max_connections: 4,
        timeout: Duration::from_secs(5),
    })
    .unwrap();
    let publisher = RedisRealtimePublisher::new(redis, RedisKeys::new(prefix));

    let idle = memory(api_pid);

    // Open every connection (a bounded number of handshakes at a time, as a crowd of devices
    // reconnecting would) and wait until each has read its backlog.
    let shared = Arc::new(Shared { base: Instant::now(), delivered: AtomicUsize::new(0) });
    let gate = Arc::new(Semaphore::new(concurrency.max(1)));
    let (stop_tx, stop_rx) = watch::channel(false);
    let (connected_tx, mut connected_rx) = tokio::sync::mpsc::unbounded_channel();
    let opening = Instant::now();
    let holders: Vec<_> = customers
        .iter()
        .enumerate()
        .map(|(i, customer)| {
            let token = tokens
                .issue_access(Principal { customer_id: *customer, role: Role::Customer }, Utc::now())
                .unwrap()
                .token
                .expose()
                .clone();
            tokio::spawn(hold(
                i as u64,
                url.clone(),
                token,
                gate.clone(),
                shared.clone(),
                connected_tx.clone(),
                stop_rx.clone(),
            ))
        })
        .collect();
    drop(connected_tx);
    // Every connection reports once (and keeps its sender while it is held).
    let mut handshakes = Vec::new();
    let mut refused = Vec::new();
    let opening_deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while handshakes.len() + refused.len() < connections as usize {
        match tokio::time::timeout_at(opening_deadline, connected_rx.recv()).await {
            Ok(Some(Ok(took))) => handshakes.push(took.as_nanos() as u64),
            Ok(Some(Err(why))) => refused.push(why),
            Ok(None) => break,
            Err(_) => {
                let missing = connections as usize - handshakes.len() - refused.len();
                refused.push(format!("{missing} connections not open after 60 s"));
                break;
            }
        }
    }
    let opened_in = opening.elapsed();
    handshakes.sort_unstable();
    if !refused.is_empty() {
        let _ = stop_tx.send(true);
        panic!("{} of {connections} connections failed, e.g. {}", refused.len(), refused[0]);
    }
    // Let the api settle before reading its memory with every connection held.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let held = memory(api_pid);

    // Publish at a steady rate, round-robin over the customers.
    let publishing = Instant::now();
    for seq in 0..messages {
        let due = publishing + Duration::from_secs_f64(seq as f64 / rate);
        tokio::time::sleep_until(due.into()).await;
        let index = (seq % connections) as usize;
        let customer = customers[index];
        let mut notification = NotificationRequest::new(
            format!("bench:{seq}"),
            Audience::Customer(customer),
            &Event::OrderShipped { order_id: OrderId::new() },
        )
        .for_recipient(customer, Utc::now());
        if let Value::Object(data) = &mut notification.data {
            data.insert("benchConn".into(), index.into());
            data.insert("benchSeq".into(), seq.into());
            data.insert("benchSentNs".into(), (shared.base.elapsed().as_nanos() as u64).into());
        }
        publisher.publish(&notification).await.unwrap();
    }
    let published_in = publishing.elapsed();

    // Wait for the stragglers (at most 10 s past the last publish).
    let expected = messages as usize;
    let deadline = Instant::now() + Duration::from_secs(10);
    while shared.delivered.load(Ordering::Relaxed) < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let after = memory(api_pid);

    let _ = stop_tx.send(true);
    let mut latencies = Vec::new();
    let (mut misdelivered, mut backlog, mut copies, mut errors, mut dropped) = (0, 0, 0, Vec::new(), Vec::new());
    for holder in holders {
        let mut seen = holder.await.unwrap();
        latencies.append(&mut seen.latencies);
        misdelivered += seen.misdelivered;
        backlog += seen.backlog;
        seen.seqs.sort_unstable();
        let received = seen.seqs.len();
        seen.seqs.dedup();
        copies += received - seen.seqs.len();
        errors.append(&mut seen.errors);
        dropped.extend(seen.dropped);
    }
    latencies.sort_unstable();
    let delivered = latencies.len() - copies;
    let held_to_end = connections as usize - dropped.len();

    let mut table = String::new();
    let memory_row = |label: &str, kib: Option<u64>, goal: &str| match kib {
        Some(kib) => format!("| {label} | {} | {goal} |\n", mib(kib)),
        None => format!("| {label} | not measured (BENCH_API_PID unset) | {goal} |\n"),
    };
    table.push_str("| WebSocket fan-out, one api instance | measured | goal |\n|---|---|---|\n");
    let _ = writeln!(table, "| connections held (open until the end) | {held_to_end} of {connections} | 1,000 |");
    let _ = writeln!(
        table,
        "| connect (upgrade, backlog, first pong), {concurrency} at a time: p50 / p99 / all open after | {} / {} / {:.1} s | |",
        ms(percentile(&handshakes, 50.0)),
        ms(percentile(&handshakes, 99.0)),
        opened_in.as_secs_f64()
    );
    let _ = writeln!(
        table,
        "| frames delivered / expected ({messages} published in {:.1} s, round-robin over the customers) | {delivered} / {expected} | all |",
        published_in.as_secs_f64()
    );
    let _ = writeln!(
        table,
        "| fan-out latency (publish → frame read by the client) p50 | {} | |",
        ms(percentile(&latencies, 50.0))
    );
    let _ = writeln!(table, "| fan-out latency p95 | {} | |", ms(percentile(&latencies, 95.0)));
    let _ = writeln!(table, "| fan-out latency p99 | {} | < 100 ms |", ms(percentile(&latencies, 99.0)));
    let _ = writeln!(table, "| fan-out latency max | {} | |", ms(percentile(&latencies, 100.0)));
    table.push_str(&memory_row("api RSS before the connections", idle.map(|m| m.0), ""));
    table.push_str(&memory_row(
        &format!("api RSS with {connections} connections held"),
        held.map(|m| m.0),
        "< 200 MiB",
    ));
    table.push_str(&memory_row("api RSS after the fan-out", after.map(|m| m.0), ""));
    table.push_str(&memory_row("api peak RSS (VmHWM) over the run", after.map(|m| m.1), "< 200 MiB"));
    if let (Some(idle), Some(held)) = (idle, held) {
        let _ = writeln!(
            table,
            "| api memory per connection ((held − before) / connections) | {:.1} KiB | |",
            held.0.saturating_sub(idle.0) as f64 / connections.max(1) as f64
        );
    }

    let mut problems = Vec::new();
    if delivered != expected {
        problems.push(format!("{} of {expected} frames never arrived", expected.saturating_sub(delivered)));
    }
    if misdelivered > 0 {
        problems.push(format!("{misdelivered} frames reached another customer's connection"));
    }
    if copies > 0 {
        problems.push(format!("{copies} frames arrived more than once"));
    }
    if backlog > 0 {
        problems.push(format!("{backlog} backlog frames for customers that have none"));
    }
    if let Some(first) = dropped.first() {
        problems.push(format!("{} connections closed early, e.g. {first}", dropped.len()));
    }
    if let Some(first) = errors.first() {
        problems.push(format!("{} unexpected frames, e.g. {first}", errors.len()));
    }
    if !problems.is_empty() {
        eprintln!("{table}");
        panic!("WebSocket fan-out failed: {}", problems.join("; "));
    }
    print!("{table}");
}
