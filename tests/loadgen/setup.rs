//! Before the load: the admin signs in, the catalog is read (and filled up to 20 products when
//! it has fewer), the stock of every product used is topped up, and the customers register.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::api::{Account, Api, Reply, Req};
use crate::scenarios::{Catalog, Product};
use crate::stats::{Live, Stats};

const MIN_PRODUCTS: usize = 20;
/// At most this many products are used (the first pages of the newest).
const MAX_PRODUCTS: usize = 100;
pub const CUSTOMER_PASSWORD: &str = "loadgen-password-1";

/// A setup request: retried while the api answers 5xx or not at all (it may be starting).
async fn patient<'a>(api: &Api, stats: &mut Stats, op: &'static str, req: impl Fn() -> Req<'a>) -> Reply {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let reply = api.send(stats, op, req()).await;
        if !reply.uncertain() || attempt >= 10 {
            return reply;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

pub async fn admin_login(api: &Api, stats: &mut Stats, email: &str, password: &str) -> Result<Account, String> {
    let body = json!({"email": email, "password": password});
    let reply = patient(api, stats, "setup · admin login", || Req::post("/v1/auth/login", body.clone(), 200)).await;
    match &reply {
        Reply::Ok(body) => Account::from_auth(email, password, body)
            .ok_or_else(|| "admin login: no accessToken in the answer".to_owned()),
        other => Err(format!(
            "admin login as {email} at {}: {}{}",
            api.base,
            other.describe(),
            if other.status() == Some(401) { " (is the api started with ADMIN_EMAIL/ADMIN_PASSWORD?)" } else { "" }
        )),
    }
}

fn words_of(name: &str) -> impl Iterator<Item = String> + '_ {
    name.split(|c: char| !c.is_ascii_alphanumeric()).filter(|w| w.len() >= 4).map(str::to_ascii_lowercase)
}

async fn list_products(api: &Api, stats: &mut Stats) -> Result<Vec<Value>, String> {
    let mut products = Vec::new();
    let mut cursor: Option<String> = None;
    while products.len() < MAX_PRODUCTS {
        let path = match &cursor {
            Some(c) => format!("/v1/products?limit=100&cursor={}", crate::api::encode(c)),
            None => "/v1/products?limit=100".to_owned(),
        };
        let reply = patient(api, stats, "setup · list products", || Req::get(path.clone())).await;
        let Reply::Ok(page) = reply else { return Err(format!("listing products: {}", reply.describe())) };
        products.extend(page["data"].as_array().cloned().unwrap_or_default());
        match page["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    products.truncate(MAX_PRODUCTS);
    Ok(products)
}

const NAMES: &[&str] = &[
    "Trail Lantern",
    "Walnut Desk Organizer",
    "Ceramic Pour Over",
    "Merino Running Socks",
    "Bamboo Cutting Board",
    "Solar Garden Light",
    "Canvas Weekender Bag",
    "Steel Water Bottle",
    "Linen Table Runner",
    "Wireless Charging Pad",
];

/// Reads the catalog, creates products up to `MIN_PRODUCTS` and tops up their stock to `stock`
/// available units (0: leaves it).
pub async fn catalog(api: &Api, stats: &mut Stats, admin: &Account, stock: u32) -> Result<Catalog, String> {
    let mut listed = list_products(api, stats).await?;
    if listed.len() < MIN_PRODUCTS {
        let currency = listed.iter().find_map(|p| p["price"]["currency"].as_str()).unwrap_or("USD").to_owned();
        let missing = MIN_PRODUCTS - listed.len();
        eprintln!("creating {missing} products (the catalog has {})", listed.len());
        for i in 0..missing {
            let name = format!("{} {}", NAMES[i % NAMES.len()], i / NAMES.len() + 1);
            let body = json!({
                "sku": format!("LOADGEN-{}", uuid::Uuid::now_v7().simple()),
                "name": name,
                "description": "Created by the load generator.",
                "price": {"amount": 500 + 250 * i as i64, "currency": currency},
                "category": "loadgen",
                "initialStock": stock.max(1000),
            });
            let reply = patient(api, stats, "setup · create product", || {
                Req::post("/v1/products", body.clone(), 201).bearer(&admin.access)
            })
            .await;
            let Reply::Ok(product) = reply else { return Err(format!("creating a product: {}", reply.describe())) };
            listed.push(product);
        }
    }

    let mut products = Vec::new();
    let mut categories = BTreeSet::new();
    let mut words = BTreeSet::new();
    for p in &listed {
        let (Some(id), Some(name)) = (p["id"].as_str(), p["name"].as_str()) else { continue };
        if let Some(category) = p["category"].as_str() {
            categories.insert(category.to_owned());
        }
        words.extend(words_of(name));
        let available = p["available"].as_u64().unwrap_or(0);
        if stock > 0 && available < u64::from(stock) {
            let body = json!({"quantity": u64::from(stock) - available, "type": "ADD", "reason": "loadgen top-up"});
            let path = format!("/v1/inventory/products/{id}/adjust");
            let reply = patient(api, stats, "setup · top up stock", || {
                Req::post(path.clone(), body.clone(), 200).bearer(&admin.access)
            })
            .await;
            if !matches!(reply, Reply::Ok(_)) {
                return Err(format!("topping up the stock of {id}: {}", reply.describe()));
            }
        }
        products.push(Product { id: id.to_owned() });
    }
    if products.is_empty() {
        return Err("no products".to_owned());
    }
    Ok(Catalog { products, categories: categories.into_iter().collect(), words: words.into_iter().collect() })
}

/// Registers `count` customers, 8 at a time (argon2 is slow by design), customer `i` on
/// `apis[i % apis.len()]`. A customer whose registration failed is `None` (it only browses).
pub async fn register(apis: &[Arc<Api>], count: usize, live: &Arc<Live>, stats: &mut Stats) -> Vec<Option<Account>> {
    let run = uuid::Uuid::now_v7().simple().to_string();
    let mut accounts = Vec::with_capacity(count);
    let indexes: Vec<usize> = (0..count).collect();
    for batch in indexes.chunks(8) {
        let done = futures_util::future::join_all(batch.iter().map(|&i| {
            let api = apis[i % apis.len()].clone();
            let live = live.clone();
            let email = format!("loadgen-{run}-{i}@load.test");
            async move {
                let mut stats = Stats::new(live);
                let body = json!({"email": email, "password": CUSTOMER_PASSWORD, "firstName": "Load",
                                  "lastName": format!("Customer {i}")});
                let reply = patient(&api, &mut stats, "setup · register", || {
                    Req::post("/v1/auth/register", body.clone(), 201)
                })
                .await;
                let account = match &reply {
                    Reply::Ok(body) => Account::from_auth(&email, CUSTOMER_PASSWORD, body),
                    other => {
                        eprintln!("registering {email}: {}", other.describe());
                        None
                    }
                };
                (account, stats)
            }
        }))
        .await;
        for (account, s) in done {
            accounts.push(account);
            stats.merge(s);
        }
    }
    accounts
}
