//! The HTTP side: one `Api` per base URL, requests that never fail the caller (every outcome is
//! a `Reply` and is counted), accounts whose access tokens are renewed before they expire.

use std::time::{Duration, Instant};

use reqwest::header::RETRY_AFTER;
use reqwest::Method;
use serde_json::{json, Value};

use crate::stats::Stats;

pub struct Api {
    http: reqwest::Client,
    pub base: String,
}

impl Api {
    pub fn new(base: &str, timeout: Duration, pool: usize) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(pool)
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(3)))
            .build()
            .map_err(|e| format!("http client: {e}"))?;
        Ok(Self { http, base: base.to_owned() })
    }

    /// Sends `req`, counts its outcome under `op` and returns it. Never panics and never
    /// returns an error: a request that got no answer is `Reply::Transport`.
    pub async fn send(&self, stats: &mut Stats, op: &'static str, req: Req<'_>) -> Reply {
        let mut rb = self.http.request(req.method, format!("{}{}", self.base, req.path));
        if let Some(token) = req.bearer {
            rb = rb.bearer_auth(token);
        }
        if let Some(token) = req.cart_token {
            rb = rb.header("X-Cart-Token", token);
        }
        if let Some(key) = req.key {
            rb = rb.header("Idempotency-Key", key);
        }
        if let Some(body) = &req.body {
            rb = rb.json(body);
        }
        let started = Instant::now();
        let answer = match rb.send().await {
            Err(e) => Err(transport_kind(&e)),
            Ok(resp) => {
                let status = resp.status().as_u16();
                let retry_after = resp
                    .headers()
                    .get(RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                match resp.bytes().await {
                    Ok(bytes) => Ok((status, retry_after, bytes)),
                    Err(e) => Err(transport_kind(&e)),
                }
            }
        };
        let took = started.elapsed();
        match answer {
            Err(kind) => {
                stats.transport(op, kind);
                Reply::Transport(kind)
            }
            Ok((status, retry_after, bytes)) => {
                let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                if status == req.expect {
                    stats.ok(op, took);
                    Reply::Ok(body)
                } else {
                    let code = body["code"].as_str().map(str::to_owned);
                    stats.status(op, status, code.as_deref());
                    Reply::Status { status, code, retry_after }
                }
            }
        }
    }
}

fn transport_kind(e: &reqwest::Error) -> &'static str {
    if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else if e.is_body() || e.is_decode() {
        "broken body"
    } else {
        "transport"
    }
}

pub enum Reply {
    /// The expected status, with the body (`Null` when it was not JSON).
    Ok(Value),
    Status {
        status: u16,
        code: Option<String>,
        retry_after: Option<Duration>,
    },
    Transport(&'static str),
}

impl Reply {
    pub fn body(&self) -> Option<&Value> {
        match self {
            Reply::Ok(body) => Some(body),
            _ => None,
        }
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            Reply::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// No answer or a 5xx: the request may or may not have taken effect.
    pub fn uncertain(&self) -> bool {
        matches!(self, Reply::Transport(_)) || self.status().is_some_and(|s| s >= 500)
    }

    pub fn describe(&self) -> String {
        match self {
            Reply::Ok(_) => "ok".to_owned(),
            Reply::Status { status, code: Some(code), .. } => format!("{status} {code}"),
            Reply::Status { status, code: None, .. } => status.to_string(),
            Reply::Transport(kind) => (*kind).to_owned(),
        }
    }
}

pub struct Req<'a> {
    method: Method,
    path: String,
    expect: u16,
    bearer: Option<&'a str>,
    cart_token: Option<&'a str>,
    key: Option<&'a str>,
    body: Option<Value>,
}

impl<'a> Req<'a> {
    pub fn new(method: Method, path: impl Into<String>, expect: u16) -> Self {
        Self { method, path: path.into(), expect, bearer: None, cart_token: None, key: None, body: None }
    }

    pub fn get(path: impl Into<String>) -> Self {
        Self::new(Method::GET, path, 200)
    }

    pub fn post(path: impl Into<String>, body: Value, expect: u16) -> Self {
        Self::new(Method::POST, path, expect).json(body)
    }

    pub fn json(mut self, body: Value) -> Self {
        self.body = Some(body);
        self
    }

    pub fn bearer(mut self, token: &'a str) -> Self {
        self.bearer = Some(token);
        self
    }

    pub fn cart_token(mut self, token: &'a str) -> Self {
        self.cart_token = Some(token);
        self
    }

    pub fn key(mut self, key: &'a str) -> Self {
        self.key = Some(key);
        self
    }
}

/// A signed-in account (a virtual customer or the admin).
pub struct Account {
    pub email: String,
    pub password: String,
    pub customer_id: String,
    pub access: String,
    refresh: String,
    renewed: Instant,
    lifetime: Duration,
}

impl Account {
    /// From a register or login answer.
    pub fn from_auth(email: &str, password: &str, body: &Value) -> Option<Self> {
        Some(Self {
            email: email.to_owned(),
            password: password.to_owned(),
            customer_id: body["customer"]["id"].as_str().unwrap_or_default().to_owned(),
            access: body["accessToken"].as_str()?.to_owned(),
            refresh: body["refreshToken"].as_str().unwrap_or_default().to_owned(),
            renewed: Instant::now(),
            lifetime: Duration::from_secs(body["expiresIn"].as_u64().unwrap_or(900)),
        })
    }

    fn update(&mut self, body: &Value) -> bool {
        let Some(access) = body["accessToken"].as_str() else { return false };
        self.access = access.to_owned();
        if let Some(refresh) = body["refreshToken"].as_str() {
            self.refresh = refresh.to_owned();
        }
        self.lifetime = Duration::from_secs(body["expiresIn"].as_u64().unwrap_or(900));
        self.renewed = Instant::now();
        true
    }

    /// Renews the access token when it has less than a minute left: the refresh token, or the
    /// password when that is refused (a rotated refresh token whose answer was lost). A failure
    /// keeps the old token; the next call tries again.
    pub async fn keep_fresh(&mut self, api: &Api, stats: &mut Stats) {
        if self.renewed.elapsed() + Duration::from_secs(60) < self.lifetime {
            return;
        }
        let reply = api
            .send(stats, "auth · refresh", Req::post("/v1/auth/refresh", json!({"refreshToken": self.refresh}), 200))
            .await;
        if let Reply::Ok(body) = &reply {
            if self.update(body) {
                return;
            }
        }
        if reply.status() == Some(401) || self.renewed.elapsed() >= self.lifetime {
            let body = json!({"email": self.email, "password": self.password});
            if let Reply::Ok(body) = api.send(stats, "auth · login", Req::post("/v1/auth/login", body, 200)).await {
                self.update(&body);
            }
        }
    }
}

/// xorshift64*: fast, seedable, good enough to pick operations.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed | 1)
    }

    pub fn seeded() -> Self {
        Self::new(uuid::Uuid::now_v7().as_u64_pair().1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// 0..n (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    pub fn percent(&mut self, p: u32) -> bool {
        self.below(100) < p as usize
    }

    /// An index into `weights`, with probability proportional to its weight.
    pub fn weighted(&mut self, weights: &[u32]) -> usize {
        let total: u32 = weights.iter().sum();
        let mut roll = self.below(total.max(1) as usize) as u32;
        for (i, w) in weights.iter().enumerate() {
            if roll < *w {
                return i;
            }
            roll -= w;
        }
        weights.len().saturating_sub(1)
    }

    pub fn pick<'t, T>(&mut self, items: &'t [T]) -> Option<&'t T> {
        if items.is_empty() {
            None
        } else {
            items.get(self.below(items.len()))
        }
    }
}

/// Percent-encodes a query value.
pub fn encode(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for b in raw.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
