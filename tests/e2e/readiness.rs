//! Readiness follows Redis going away and coming back, with no api restart. Uses a Redis server
//! of its own (started from the machine's `redis-server`) so that other tests are unaffected.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ecom_testkit::TestApp;
use reqwest::StatusCode;
use serde_json::Value;

pub(crate) struct OwnRedis {
    pub(crate) port: u16,
    child: Child,
}

impl OwnRedis {
    pub(crate) fn start(port: u16) -> Self {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server must be installed for this test (it is on CI and with `just services`)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start on {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { port, child }
    }

    pub(crate) fn stop(mut self) -> u16 {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.port
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

async fn ready(app: &TestApp) -> (StatusCode, Value) {
    let res = app.get("/health/ready", None).await;
    (res.status(), res.json().await.unwrap())
}

async fn wait_for(app: &TestApp, want: StatusCode) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, body) = ready(app).await;
        if status == want {
            return body;
        }
        assert!(Instant::now() < deadline, "readiness stayed {status}: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn readiness_turns_503_naming_redis_while_it_is_down_and_recovers_without_restart() {
    let redis = OwnRedis::start(free_port());
    let url = format!("redis://127.0.0.1:{}", redis.port);
    let app = TestApp::spawn_with(&[("REDIS_URL", &url)]).await;
    wait_for(&app, StatusCode::OK).await;

    let port = redis.stop();
    let problem = wait_for(&app, StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(problem["code"], "DEPENDENCY_UNAVAILABLE");
    assert_eq!(app.get("/health/ready", None).await.headers()["retry-after"], "1", "says when to look again");
    assert_eq!(problem["detail"], "unavailable: redis");
    assert_eq!(problem["checks"]["postgres"], "ok");
    assert!(problem["checks"]["redis"].as_str().unwrap().starts_with("unavailable"));

    // Redis-backed calls answer 503 problem+json meanwhile, never 500.
    let login = app.login("someone@shop.test", "some-password").await;
    assert_eq!(login.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(login.headers()["content-type"], "application/problem+json");

    let _redis = OwnRedis::start(port);
    wait_for(&app, StatusCode::OK).await;
    let login = app.login("someone@shop.test", "some-password").await;
    assert_eq!(login.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn readiness_names_postgres_when_the_database_is_gone() {
    let app = TestApp::spawn().await;
    wait_for(&app, StatusCode::OK).await;
    // Dropping the test database (connections and all) is the database going away for this api.
    drop_database_now(&app).await;
    let problem = wait_for(&app, StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(problem["detail"], "unavailable: postgres");
    assert_eq!(problem["checks"]["redis"], "ok");
}

async fn drop_database_now(app: &TestApp) {
    use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
    let server = ecom_testkit::database_server_url();
    let mut conn = AsyncPgConnection::establish(&format!("{server}/postgres")).await.unwrap();
    conn.batch_execute(&format!("DROP DATABASE \"{}\" WITH (FORCE)", app.db.name())).await.unwrap();
}

#[tokio::test]
async fn cart_calls_answer_503_while_redis_is_down_and_work_again_after() {
    let redis = OwnRedis::start(free_port());
    let url = format!("redis://127.0.0.1:{}", redis.port);
    let app = TestApp::spawn_with(&[("REDIS_URL", &url)]).await;
    let created = app.post("/v1/carts", &serde_json::json!({}), None).await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let cart: Value = created.json().await.unwrap();
    let path = format!("/v1/carts/{}", cart["id"].as_str().unwrap());
    let token = cart["cartToken"].as_str().unwrap().to_owned();

    let port = redis.stop();
    for attempt in 0..3 {
        let res = app.request(reqwest::Method::GET, &path, None).header("x-cart-token", &token).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE, "attempt {attempt}");
        assert_eq!(res.headers()["content-type"], "application/problem+json");
        assert!(res.headers().contains_key("retry-after"));
        let res = app.post("/v1/carts", &serde_json::json!({}), None).await;
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    }

    let _redis = OwnRedis::start(port);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let res = app.post("/v1/carts", &serde_json::json!({}), None).await;
        if res.status() == StatusCode::CREATED {
            break;
        }
        assert!(Instant::now() < deadline, "carts did not come back: {}", res.status());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
