use std::collections::HashMap;
use std::sync::Arc;

use ecom_platform::{start_api, Config, Services};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::{json, Value};

use crate::{TestDb, TestRedis};

pub const ADMIN_EMAIL: &str = "admin@shop.test";
pub const ADMIN_PASSWORD: &str = "admin-password-for-tests";

/// The api running in this process on a free port, on its own database and Redis prefix.
pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub services: Arc<Services>,
    pub config: Config,
    server: actix_web::dev::ServerHandle,
    // Dropped after the server stops (fields drop in declaration order).
    pub redis: TestRedis,
    pub db: TestDb,
}

/// A signed-in account as the tests see it.
#[derive(Debug, Clone)]
pub struct Session {
    pub customer_id: String,
    pub email: String,
    pub password: String,
    pub access_token: String,
    pub refresh_token: String,
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(&[]).await
    }

    /// Spawns with extra environment variables on top of the test defaults.
    pub async fn spawn_with(vars: &[(&str, &str)]) -> Self {
        let db = TestDb::new().await;
        let redis = TestRedis::new();
        let mut env: HashMap<String, String> = HashMap::from([
            ("DATABASE_URL".to_owned(), db.url()),
            ("REDIS_URL".to_owned(), redis.url().to_owned()),
            ("REDIS_KEY_PREFIX".to_owned(), redis.prefix().to_owned()),
            ("HTTP_HOST".to_owned(), "127.0.0.1".to_owned()),
            ("HTTP_PORT".to_owned(), "0".to_owned()),
            ("HTTP_WORKERS".to_owned(), "2".to_owned()),
            ("DATABASE_MAX_CONNECTIONS".to_owned(), "4".to_owned()),
            ("ADMIN_EMAIL".to_owned(), ADMIN_EMAIL.to_owned()),
            ("ADMIN_PASSWORD".to_owned(), ADMIN_PASSWORD.to_owned()),
            ("SHUTDOWN_TIMEOUT_SECS".to_owned(), "1".to_owned()),
        ]);
        for (k, v) in vars {
            env.insert((*k).to_owned(), (*v).to_owned());
        }
        let config = Config::from_lookup(&move |name| env.get(name).cloned()).expect("test configuration");
        let api = start_api(&config).await.expect("api starts");
        let server = api.server.handle();
        tokio::spawn(api.server);
        Self {
            address: format!("http://{}", api.local_addr),
            client: reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap(),
            services: api.services,
            config,
            server,
            redis,
            db,
        }
    }

    /// Starts another api instance in this process on the same database, Redis and settings
    /// (another replica, or the api after a restart); returns its base URL.
    pub async fn another_instance(&self) -> String {
        let api = start_api(&self.config).await.expect("second api starts");
        tokio::spawn(api.server);
        format!("http://{}", api.local_addr)
    }

    /// Stops this instance's server (in-flight requests drain).
    pub async fn stop_server(&self) {
        self.server.stop(true).await;
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub fn request(&self, method: Method, path: &str, token: Option<&str>) -> RequestBuilder {
        let builder = self.client.request(method, self.url(path));
        match token {
            Some(token) => builder.bearer_auth(token),
            None => builder,
        }
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Response {
        self.request(Method::GET, path, token).send().await.unwrap()
    }

    pub async fn post(&self, path: &str, body: &Value, token: Option<&str>) -> Response {
        self.request(Method::POST, path, token).json(body).send().await.unwrap()
    }

    pub async fn patch(&self, path: &str, body: &Value, token: Option<&str>) -> Response {
        self.request(Method::PATCH, path, token).json(body).send().await.unwrap()
    }

    pub async fn delete(&self, path: &str, token: Option<&str>) -> Response {
        self.request(Method::DELETE, path, token).send().await.unwrap()
    }

    /// Registers a new customer with a unique e-mail and returns the session.
    pub async fn register_customer(&self) -> Session {
        let email = format!("customer-{}@shop.test", uuid::Uuid::now_v7().simple());
        self.register(&email, "correct horse battery").await
    }

    pub async fn register(&self, email: &str, password: &str) -> Session {
        let res = self
            .post(
                "/v1/auth/register",
                &json!({"email": email, "password": password, "firstName": "Ada", "lastName": "Lovelace"}),
                None,
            )
            .await;
        assert_eq!(res.status(), StatusCode::CREATED, "register {email}");
        session_from(res.json().await.unwrap(), email, password)
    }

    pub async fn login(&self, email: &str, password: &str) -> Response {
        self.post("/v1/auth/login", &json!({"email": email, "password": password}), None).await
    }

    /// Signs in as the admin bootstrapped from ADMIN_EMAIL / ADMIN_PASSWORD.
    pub async fn admin(&self) -> Session {
        let res = self.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
        assert_eq!(res.status(), StatusCode::OK, "admin login");
        session_from(res.json().await.unwrap(), ADMIN_EMAIL, ADMIN_PASSWORD)
    }
}

fn session_from(body: Value, email: &str, password: &str) -> Session {
    Session {
        customer_id: body["customer"]["id"].as_str().unwrap().to_owned(),
        email: email.to_owned(),
        password: password.to_owned(),
        access_token: body["accessToken"].as_str().unwrap().to_owned(),
        refresh_token: body["refreshToken"].as_str().unwrap().to_owned(),
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.services.pg.close();
        self.services.redis.close();
        let server = self.server.clone();
        // Best effort: the runtime may already be shutting down with the test.
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move { server.stop(false).await });
        }
    }
}
