//! The real binaries as processes: they start, serve, and stop cleanly on SIGTERM.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ecom_testkit::{redis_url, TestDb, TestRedis};

/// `target/debug/<name>`, next to the test binary's `deps/` directory (`just test` builds it).
fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(|deps| deps.parent()).unwrap();
    let path = dir.join(name);
    assert!(path.exists(), "{} is missing: run `cargo build --bins` first (`just test` does)", path.display());
    path
}

/// A child process whose output lines arrive on a channel.
pub(crate) struct Proc {
    child: Child,
    lines: mpsc::Receiver<String>,
    /// Lines read while waiting for another one, so that the order of two awaited lines does not matter.
    earlier: std::sync::Mutex<Vec<String>>,
}

impl Proc {
    pub(crate) fn spawn(name: &str, env: &[(&str, String)]) -> Self {
        let mut cmd = Command::new(binary(name));
        cmd.env_clear().env("LOG_FORMAT", "json").env("RUST_LOG", "info").stdout(Stdio::piped()).stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let (tx, lines) = mpsc::channel();
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let _ = tx.send(line);
                }
            });
        }
        Self { child, lines, earlier: std::sync::Mutex::new(Vec::new()) }
    }

    pub(crate) fn wait_for_line(&self, needle: &str, timeout: Duration) -> String {
        let mut earlier = self.earlier.lock().unwrap();
        if let Some(i) = earlier.iter().position(|l| l.contains(needle)) {
            return earlier.remove(i);
        }
        let deadline = Instant::now() + timeout;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(line) => earlier.push(line),
                Err(_) => break,
            }
        }
        panic!("no line containing {needle:?} within {timeout:?}; output:\n{}", earlier.join("\n"));
    }

    /// Sends `signal` (`STOP`, `CONT`, ...) to the process.
    pub(crate) fn signal(&self, signal: &str) {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill").args([format!("-{signal}"), pid]).status().unwrap().success());
    }

    pub(crate) fn terminate(&mut self, timeout: Duration) -> std::process::ExitStatus {
        self.signal("TERM");
        self.wait_exit(timeout)
    }

    /// Its exit status, once it exits within `timeout`.
    pub(crate) fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "did not exit within {timeout:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn common_env(db: &TestDb, redis: &TestRedis) -> Vec<(&'static str, String)> {
    vec![
        ("DATABASE_URL", db.url()),
        ("REDIS_URL", redis_url()),
        ("REDIS_KEY_PREFIX", redis.prefix().to_owned()),
        ("DATABASE_MAX_CONNECTIONS", "2".to_owned()),
    ]
}

/// The api binary on a port of its own (one HTTP worker), once it listens.
fn api_process(db: &TestDb, redis: &TestRedis, extra: &[(&'static str, &str)]) -> (Proc, u16) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut env = common_env(db, redis);
    env.push(("HTTP_PORT", port.to_string()));
    env.push(("HTTP_WORKERS", "1".to_owned()));
    env.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
    let api = Proc::spawn("api", &env);
    api.wait_for_line("api listening", Duration::from_secs(30));
    (api, port)
}

#[tokio::test]
async fn the_api_binary_serves_and_drains_on_sigterm() {
    let (db, redis) = (TestDb::new().await, TestRedis::new());
    let (mut api, port) = api_process(&db, &redis, &[]);

    let res = reqwest::get(format!("http://127.0.0.1:{port}/health/ready")).await.unwrap();
    assert_eq!(res.status(), reqwest::StatusCode::OK);
    let logged = api.wait_for_line("request finished", Duration::from_secs(5));
    assert!(logged.contains("request_id"), "{logged}");

    let status = api.terminate(Duration::from_secs(15));
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn ctrl_c_lets_a_request_under_way_finish_before_the_api_exits() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (db, redis) = (TestDb::new().await, TestRedis::new());
    let (mut api, port) = api_process(&db, &redis, &[]);

    // A connection the server has taken (a first request answered on it), then a request under
    // way on it: its body still arriving when the operator presses Ctrl-C.
    let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    conn.write_all(b"GET /health/live HTTP/1.1\r\nHost: localhost\r\n\r\n").await.unwrap();
    let mut first = Vec::new();
    let mut byte = [0_u8; 1];
    while !first.ends_with(b"\r\n\r\n") {
        assert_eq!(conn.read(&mut byte).await.unwrap(), 1, "the first answer ended early");
        first.push(byte[0]);
    }
    let head = String::from_utf8(first).unwrap().to_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map(|v| v.trim().parse().unwrap())
        .expect("a content-length");
    let mut body = vec![0_u8; length];
    conn.read_exact(&mut body).await.unwrap();
    let body = r#"{"email":"nobody@example.com","password":"not the password"}"#;
    let head = format!(
        "POST /v1/auth/login HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    conn.write_all(&body.as_bytes()[..10]).await.unwrap();
    api.signal("INT");
    api.wait_for_line("SIGINT received", Duration::from_secs(5));
    tokio::time::sleep(Duration::from_millis(300)).await;
    conn.write_all(&body.as_bytes()[10..]).await.unwrap();
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(10), conn.read_to_string(&mut answer)).await.unwrap().unwrap();
    assert!(answer.starts_with("HTTP/1.1 401"), "the request was answered: {answer:?}");

    let status = api.wait_exit(Duration::from_secs(15));
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn a_stopping_api_closes_its_websockets_as_going_away_and_does_not_wait_for_them() {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
    use tokio_tungstenite::tungstenite::Message;

    let (db, redis) = (TestDb::new().await, TestRedis::new());
    // A drain far longer than the test waits: only closing the sessions ends it in time.
    let (mut api, port) = api_process(&db, &redis, &[("SHUTDOWN_TIMEOUT_SECS", "60")]);
    let body = serde_json::json!({"email": "ws-stop@shop.test", "password": "long-enough-password", "firstName": "W", "lastName": "S"});
    let registered: serde_json::Value = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/v1/auth/register"))
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = registered["accessToken"].as_str().unwrap();
    let (mut ws, _) =
        tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/v1/ws?token={token}")).await.unwrap();

    api.signal("TERM");
    let close = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(frame))) => return frame,
                Some(Ok(_)) => {}
                other => panic!("no close frame: {other:?}"),
            }
        }
    })
    .await
    .expect("closed within the wait");
    assert_eq!(close.map(|f| f.code), Some(CloseCode::Away));
    let status = api.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn the_worker_connects_then_stops_cleanly_on_sigterm() {
    let (db, redis) = (TestDb::new().await, TestRedis::new());
    let mut worker = Proc::spawn("worker", &common_env(&db, &redis));
    worker.wait_for_line("worker started", Duration::from_secs(30));
    let status = worker.terminate(Duration::from_secs(15));
    assert!(status.success(), "{status:?}");
    worker.wait_for_line("worker stopped", Duration::from_secs(1));
}

#[tokio::test]
async fn the_worker_waits_for_unreachable_dependencies_and_still_stops_on_sigterm() {
    let (db, redis) = (TestDb::new().await, TestRedis::new());
    let mut env = common_env(&db, &redis);
    env.retain(|(k, _)| *k != "REDIS_URL");
    env.push(("REDIS_URL", "redis://127.0.0.1:1".to_owned()));
    let mut worker = Proc::spawn("worker", &env);
    let waiting = worker.wait_for_line("waiting for dependencies", Duration::from_secs(30));
    assert!(waiting.contains("redis"), "{waiting}");
    let status = worker.terminate(Duration::from_secs(15));
    assert!(status.success(), "{status:?}");
}

#[test]
fn the_api_refuses_to_start_in_production_with_default_secrets() {
    let out = Command::new(binary("api")).env_clear().env("APP_ENV", "production").output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("JWT_SECRET must be set"), "{stderr}");
    assert!(stderr.contains("PAYMENT_PROVIDER must be stripe"), "{stderr}");
}

#[tokio::test]
async fn the_worker_expires_overdue_reservations_and_frees_their_stock() {
    let app = ecom_testkit::TestApp::spawn().await;
    let admin = app.admin().await;
    let body = serde_json::json!({"sku": "SWEEP-1", "name": "Sweep", "price": {"amount": 100, "currency": "USD"}, "initialStock": 3});
    let created: serde_json::Value =
        app.post("/v1/products", &body, Some(&admin.access_token)).await.json().await.unwrap();
    let id: ecom_kernel::ProductId = created["id"].as_str().unwrap().parse().unwrap();
    let line =
        ecom_inventory::model::ReservationLine { product_id: id, quantity: ecom_kernel::Quantity::new(2).unwrap() };
    let overdue = chrono::Utc::now() - chrono::Duration::seconds(5);
    app.services.inventory.reserve(ecom_kernel::OrderId::new(), &[line], overdue).await.unwrap();
    assert_eq!(app.services.inventory.level(id).await.unwrap().reserved, 2);

    let env = vec![
        ("DATABASE_URL", app.db.url()),
        ("REDIS_URL", redis_url()),
        ("REDIS_KEY_PREFIX", app.redis.prefix().to_owned()),
        ("RESERVATION_SWEEP_INTERVAL_SECS", "1".to_owned()),
    ];
    let mut worker = Proc::spawn("worker", &env);
    worker.wait_for_line("expired reservations released", Duration::from_secs(30));
    let level = app.services.inventory.level(id).await.unwrap();
    assert_eq!((level.on_hand, level.reserved), (3, 0));
    let shown: serde_json::Value = app.get(&format!("/v1/products/{id}"), None).await.json().await.unwrap();
    assert_eq!(shown["available"], 3, "the cached detail was invalidated by the worker");
    assert!(worker.terminate(Duration::from_secs(15)).success());
}

#[tokio::test]
async fn the_worker_relays_jobs_left_in_the_outbox() {
    use diesel_async::{AsyncConnection, AsyncPgConnection};
    let (db, redis) = (TestDb::new().await, TestRedis::new());
    let mut conn = AsyncPgConnection::establish(&db.url()).await.unwrap();
    let job = ecom_kernel::jobs::NewJob {
        id: ecom_kernel::jobs::JobId::new("left-behind"),
        queue: ecom_kernel::jobs::QueueName::Notifications,
        kind: "diagnostics.unhandled".into(),
        payload: serde_json::json!({}),
        schema_version: 1,
        max_attempts: 1,
        trace_id: None,
    };
    ecom_postgres::stage(&mut conn, &[job], None, chrono::Utc::now()).await.unwrap();
    let mut worker = Proc::spawn("worker", &common_env(&db, &redis));
    let line = worker.wait_for_line("outbox relay published leftover jobs", Duration::from_secs(30));
    assert!(line.contains("\"published\":1"), "{line}");
    // Nobody handles that kind yet: it is dead-lettered, visibly, not lost.
    worker.wait_for_line("no handler for job kind", Duration::from_secs(5));
    assert!(worker.terminate(Duration::from_secs(15)).success());
}

/// The test app's queue gauges for the notifications queue (where canaries run).
async fn notifications_queue(app: &ecom_testkit::TestApp, token: &str) -> serde_json::Value {
    let overview: serde_json::Value = app.get("/v1/admin/jobs", Some(token)).await.json().await.unwrap();
    overview["queues"][2].clone()
}

/// Polls until `check` holds for the notifications queue, or panics after `timeout`.
async fn wait_for_queue(
    app: &ecom_testkit::TestApp,
    token: &str,
    timeout: Duration,
    what: &str,
    check: impl Fn(&serde_json::Value) -> bool,
) {
    let deadline = Instant::now() + timeout;
    loop {
        let queue = notifications_queue(app, token).await;
        if check(&queue) {
            return;
        }
        assert!(Instant::now() < deadline, "{what} within {timeout:?}; queue: {queue}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub(crate) fn worker_env(app: &ecom_testkit::TestApp, extra: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("DATABASE_URL", app.db.url()),
        ("REDIS_URL", redis_url()),
        ("REDIS_KEY_PREFIX", app.redis.prefix().to_owned()),
        ("DATABASE_MAX_CONNECTIONS", "2".to_owned()),
    ];
    env.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
    env
}

fn canary_job(n: usize) -> ecom_kernel::jobs::NewJob {
    ecom_kernel::jobs::NewJob {
        id: ecom_kernel::jobs::JobId::new(format!("{}{}", ecom_kernel::jobs::CANARY_ID_PREFIX, uuid::Uuid::now_v7())),
        queue: ecom_kernel::jobs::QueueName::Notifications,
        kind: ecom_kernel::jobs::CANARY_KIND.to_owned(),
        payload: serde_json::json!({ "holdMs": n % 3 }),
        schema_version: 1,
        max_attempts: 3,
        trace_id: None,
    }
}

#[tokio::test]
async fn ten_thousand_jobs_over_three_worker_processes_each_run_exactly_once() {
    let app = ecom_testkit::TestApp::spawn().await;
    let admin = app.admin().await;
    let env = worker_env(&app, &[("WORKER_CONCURRENCY", "16")]);
    let mut workers: Vec<Proc> = (0..3).map(|_| Proc::spawn("worker", &env)).collect();
    for worker in &workers {
        worker.wait_for_line("worker started", Duration::from_secs(30));
    }
    let jobs: Vec<_> = (0..10_000).map(canary_job).collect();
    for chunk in jobs.chunks(1_000) {
        app.services.jobs.enqueue_batch(chunk).await.unwrap();
    }
    wait_for_queue(&app, &admin.access_token, Duration::from_secs(300), "10,000 jobs completed", |q| {
        q["completedTotal"] == 10_000 && q["waiting"] == 0 && q["inFlight"] == 0
    })
    .await;

    let mut by_worker = std::collections::BTreeMap::<String, usize>::new();
    for job in &jobs {
        let run = app.services.canaries.read(job.id.as_str()).await.unwrap().expect("every job ran");
        assert_eq!(run.runs, 1, "{} ran {} times", job.id.as_str(), run.runs);
        *by_worker.entry(run.last_worker.split('-').next().unwrap().to_owned()).or_default() += 1;
    }
    let pids: std::collections::BTreeSet<String> = workers.iter().map(|w| w.child.id().to_string()).collect();
    assert_eq!(
        by_worker.keys().cloned().collect::<std::collections::BTreeSet<_>>(),
        pids,
        "all three took part: {by_worker:?}"
    );
    let queue = notifications_queue(&app, &admin.access_token).await;
    assert_eq!((queue["dead"].as_u64(), queue["retriedTotal"].as_u64()), (Some(0), Some(0)), "{queue}");
    for worker in &mut workers {
        assert!(worker.terminate(Duration::from_secs(15)).success());
    }
}

#[tokio::test]
async fn a_job_whose_worker_process_is_killed_is_reclaimed_and_completed_by_another() {
    let app = ecom_testkit::TestApp::spawn().await;
    let admin = app.admin().await;
    let env = worker_env(&app, &[("WORKER_RECLAIM_AFTER_SECS", "2")]);
    let doomed = Proc::spawn("worker", &env);
    doomed.wait_for_line("worker started", Duration::from_secs(30));
    let res = app.post("/v1/admin/jobs/canary", &serde_json::json!({"holdMs": 4_000}), Some(&admin.access_token)).await;
    let id = res.json::<serde_json::Value>().await.unwrap()["jobId"].as_str().unwrap().to_owned();
    wait_for_queue(&app, &admin.access_token, Duration::from_secs(10), "the canary in flight", |q| q["inFlight"] == 1)
        .await;
    let doomed_pid = doomed.child.id().to_string();
    drop(doomed); // SIGKILL, mid-job

    let rescuer = Proc::spawn("worker", &env);
    rescuer.wait_for_line("reclaimed idle deliveries", Duration::from_secs(30));
    wait_for_queue(&app, &admin.access_token, Duration::from_secs(30), "the reclaimed canary completed", |q| {
        q["completedTotal"] == 1 && q["inFlight"] == 0
    })
    .await;
    let shown: serde_json::Value =
        app.get(&format!("/v1/admin/jobs/canary/{id}"), Some(&admin.access_token)).await.json().await.unwrap();
    assert_eq!((shown["status"].as_str(), shown["runs"].as_u64()), (Some("DONE"), Some(1)), "{shown}");
    // Its id written in upper case names the same canary.
    let shouted = format!("canary:{}", id.trim_start_matches("canary:").to_uppercase());
    let same: serde_json::Value =
        app.get(&format!("/v1/admin/jobs/canary/{shouted}"), Some(&admin.access_token)).await.json().await.unwrap();
    assert_eq!(same, shown);
    let ran_on = shown["worker"].as_str().unwrap();
    assert!(ran_on.starts_with(&format!("{}-", rescuer.child.id())), "{ran_on} is the rescuer, not {doomed_pid}");
    assert_eq!(notifications_queue(&app, &admin.access_token).await["dead"], 0);
}

#[tokio::test]
async fn sigterm_during_a_long_job_lets_it_finish_exits_0_and_it_never_runs_again() {
    let app = ecom_testkit::TestApp::spawn().await;
    let admin = app.admin().await;
    let env = worker_env(&app, &[("WORKER_RECLAIM_AFTER_SECS", "1")]);
    let mut worker = Proc::spawn("worker", &env);
    worker.wait_for_line("worker started", Duration::from_secs(30));
    let res = app.post("/v1/admin/jobs/canary", &serde_json::json!({"holdMs": 3_000}), Some(&admin.access_token)).await;
    let id = res.json::<serde_json::Value>().await.unwrap()["jobId"].as_str().unwrap().to_owned();
    wait_for_queue(&app, &admin.access_token, Duration::from_secs(10), "the canary in flight", |q| q["inFlight"] == 1)
        .await;

    let status = worker.terminate(Duration::from_secs(20));
    assert!(status.success(), "{status:?}");
    let shown: serde_json::Value =
        app.get(&format!("/v1/admin/jobs/canary/{id}"), Some(&admin.access_token)).await.json().await.unwrap();
    assert_eq!(
        (shown["status"].as_str(), shown["runs"].as_u64()),
        (Some("DONE"), Some(1)),
        "finished before exit: {shown}"
    );
    let queue = notifications_queue(&app, &admin.access_token).await;
    assert_eq!((queue["completedTotal"].as_u64(), queue["inFlight"].as_u64()), (Some(1), Some(0)), "{queue}");

    // A new worker, reclaiming anything idle for a second, finds nothing to run again.
    let mut next = Proc::spawn("worker", &env);
    next.wait_for_line("worker started", Duration::from_secs(30));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let shown: serde_json::Value =
        app.get(&format!("/v1/admin/jobs/canary/{id}"), Some(&admin.access_token)).await.json().await.unwrap();
    assert_eq!(shown["runs"], 1, "{shown}");
    assert!(next.terminate(Duration::from_secs(15)).success());
}

#[tokio::test]
async fn the_worker_applies_the_simulated_providers_capture_event_and_the_payment_becomes_paid() {
    use ecom_payments::model::{PaymentStatus, Provider};
    let app = ecom_testkit::TestApp::spawn_with(&[("SIMULATED_CAPTURE_DELAY_MS", "200")]).await;
    let customer = app.register_customer().await;
    let payment = app
        .services
        .payments
        .open_online(
            ecom_kernel::OrderId::new(),
            customer.customer_id.parse().unwrap(),
            Provider::Simulated,
            ecom_kernel::Money::new(2500, ecom_kernel::Currency::USD),
        )
        .await
        .unwrap();
    let mut worker = Proc::spawn("worker", &worker_env(&app, &[]));
    worker.wait_for_line("worker started", Duration::from_secs(30));
    let charged = app.services.payments.charge(payment.id, "pm_card_visa").await.unwrap();
    assert_eq!(charged.status, PaymentStatus::Authorized);
    worker.wait_for_line("payment updated from its provider", Duration::from_secs(15));
    let shown: serde_json::Value =
        app.get(&format!("/v1/payments/{}", payment.id), Some(&customer.access_token)).await.json().await.unwrap();
    assert_eq!(shown["status"], "PAID", "{shown}");
    assert!(worker.terminate(Duration::from_secs(15)).success());
}
