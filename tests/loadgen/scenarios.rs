//! What a virtual customer does: browse the catalog, churn a guest cart, check out its own
//! cart. Each customer loops until the time is up, choosing an operation by weight; a failed
//! request is counted and the customer goes on (after a short pause when the api seems down).

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};

use crate::api::{encode, Account, Api, Reply, Req, Rng};
use crate::options::Scenario;
use crate::stats::{Live, Stats};

pub const LIST: &str = "browse · list products";
pub const SEARCH: &str = "browse · search";
pub const DETAIL: &str = "browse · product detail";
pub const CART_CREATE: &str = "cart · create (guest)";
pub const CART_ADD: &str = "cart · add item";
pub const CART_CHANGE: &str = "cart · change quantity";
pub const CART_REMOVE: &str = "cart · remove item";
pub const CART_VIEW: &str = "cart · view";
pub const CO_OPEN: &str = "checkout · open cart";
pub const CO_EMPTY: &str = "checkout · empty cart";
pub const CO_ADD: &str = "checkout · add item";
pub const CO_CARD: &str = "checkout · place, card ok";
pub const CO_DECLINED: &str = "checkout · place, card declined";
pub const CO_COD: &str = "checkout · place, COD";
pub const CO_WAIT: &str = "checkout · wait for saga (poll)";

/// The table's order.
pub const OPERATIONS: &[&str] = &[
    LIST,
    SEARCH,
    DETAIL,
    CART_CREATE,
    CART_ADD,
    CART_CHANGE,
    CART_REMOVE,
    CART_VIEW,
    CO_OPEN,
    CO_EMPTY,
    CO_ADD,
    CO_CARD,
    CO_DECLINED,
    CO_COD,
    CO_WAIT,
];

/// How long a customer waits for the saga of its last card order to take the ordered lines (all
/// the cart holds) out of its cart before it empties the cart itself.
const SAGA_WAIT: Duration = Duration::from_secs(30);

pub struct Product {
    pub id: String,
}

pub struct Catalog {
    pub products: Vec<Product>,
    pub categories: Vec<String>,
    /// Words of product names, for searches.
    pub words: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// `pm_card_visa`: expected CONFIRMED, then PAID.
    Card,
    /// `pm_card_chargeDeclined`: expected CANCELLED with PAYMENT_DECLINED.
    Declined,
    /// Cash on delivery: expected PENDING_CONFIRMATION with its stock reserved (then
    /// CONFIRMED when the load generator confirms it).
    Cod,
    /// Found in a customer's orders after a checkout that got no definite answer.
    Recovered,
}

impl Kind {
    pub fn label(self) -> &'static str {
        match self {
            Kind::Card => "card ok",
            Kind::Declined => "card declined",
            Kind::Cod => "COD",
            Kind::Recovered => "recovered",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Placed {
    pub id: String,
    pub kind: Kind,
    /// Index of the customer (its api).
    pub customer: usize,
}

pub struct Shared {
    pub scenario: Scenario,
    pub catalog: Catalog,
    pub until: Instant,
    pub think: Duration,
}

struct GuestCart {
    id: String,
    token: String,
    /// (product id, quantity), as the api last answered.
    lines: Vec<(String, u64)>,
}

impl GuestCart {
    fn update(&mut self, cart: &Value) {
        if let Some(items) = cart["items"].as_array() {
            self.lines = items
                .iter()
                .filter_map(|i| Some((i["productId"].as_str()?.to_owned(), i["quantity"].as_u64().unwrap_or(1))))
                .collect();
        }
    }
}

/// What the customer's own cart may still hold.
#[derive(Debug, Clone, PartialEq, Eq)]
enum CartState {
    /// Known empty.
    Clean,
    /// May hold lines (a declined or COD order, a failed request): empty it before use.
    Dirty,
    /// Ordered by card: the saga takes the ordered lines (all it holds) out after the payment;
    /// wait for that.
    AwaitingSaga(String),
}

pub struct Customer {
    pub index: usize,
    pub api: Arc<Api>,
    pub account: Option<Account>,
    pub stats: Stats,
    rng: Rng,
    guest: Option<GuestCart>,
    cart_id: Option<String>,
    cart: CartState,
    pub placed: Vec<Placed>,
    /// Checkouts that got no definite answer (no response or a 5xx after the retries).
    pub uncertain_checkouts: u64,
}

pub struct Finished {
    pub stats: Stats,
    pub placed: Vec<Placed>,
    pub uncertain_checkouts: u64,
    pub index: usize,
    pub customer_id: Option<String>,
}

impl Customer {
    pub fn new(index: usize, api: Arc<Api>, account: Option<Account>, live: Arc<Live>) -> Self {
        Self {
            index,
            api,
            account,
            stats: Stats::new(live),
            rng: Rng::seeded(),
            guest: None,
            cart_id: None,
            cart: CartState::Dirty,
            placed: Vec::new(),
            uncertain_checkouts: 0,
        }
    }

    pub async fn run(mut self, shared: Arc<Shared>) -> Finished {
        while Instant::now() < shared.until {
            let scenario = match shared.scenario {
                Scenario::Mix => match self.rng.weighted(&[60, 25, 15]) {
                    0 => Scenario::Browse,
                    1 => Scenario::Cart,
                    _ => Scenario::Checkout,
                },
                s => s,
            };
            match scenario {
                Scenario::Checkout if self.account.is_some() => self.checkout(&shared).await,
                Scenario::Cart | Scenario::Checkout => self.cart(&shared).await,
                _ => self.browse(&shared).await,
            }
            if std::mem::take(&mut self.stats.troubled) {
                // The api answered 5xx or not at all: a real client would not retry in a
                // tight loop either.
                tokio::time::sleep(Duration::from_millis(100)).await;
            } else if !shared.think.is_zero() {
                tokio::time::sleep(shared.think).await;
            }
        }
        Finished {
            customer_id: self.account.as_ref().map(|a| a.customer_id.clone()),
            stats: self.stats,
            placed: self.placed,
            uncertain_checkouts: self.uncertain_checkouts,
            index: self.index,
        }
    }

    fn random_product<'c>(&mut self, catalog: &'c Catalog) -> Option<&'c Product> {
        self.rng.pick(&catalog.products)
    }

    async fn browse(&mut self, shared: &Shared) {
        let catalog = &shared.catalog;
        match self.rng.weighted(&[40, 30, 30]) {
            0 => {
                let mut path = "/v1/products?limit=20".to_owned();
                match self.rng.below(10) {
                    0 | 1 => {
                        let sort = ["price_asc", "price_desc", "newest"][self.rng.below(3)];
                        path.push_str(&format!("&sort={sort}"));
                    }
                    2 | 3 => {
                        if let Some(category) = self.rng.pick(&catalog.categories) {
                            path.push_str(&format!("&category={}", encode(category)));
                        }
                    }
                    4 => path.push_str("&inStock=true"),
                    _ => {}
                }
                self.api.send(&mut self.stats, LIST, Req::get(path)).await;
            }
            1 => {
                let Some(word) = self.rng.pick(&catalog.words).cloned() else { return };
                // Now and then a typo, for the trigram side of the search.
                let word = if word.len() > 4 && self.rng.percent(15) {
                    let at = 1 + self.rng.below(word.len() - 2);
                    format!("{}{}", &word[..at], &word[at + 1..])
                } else {
                    word
                };
                let path = format!("/v1/products?q={}&limit=20", encode(&word));
                self.api.send(&mut self.stats, SEARCH, Req::get(path)).await;
            }
            _ => {
                let Some(product) = self.random_product(catalog) else { return };
                let path = format!("/v1/products/{}", product.id);
                self.api.send(&mut self.stats, DETAIL, Req::get(path)).await;
            }
        }
    }

    /// Cart churn on a guest cart (a visitor who has not signed in), so that it never races
    /// the checkout saga, which takes the ordered lines out of the signed-in customer's own cart.
    async fn cart(&mut self, shared: &Shared) {
        let catalog = &shared.catalog;
        let Some((id, token, current)) = self.guest.as_ref().map(|g| (g.id.clone(), g.token.clone(), g.lines.clone()))
        else {
            self.create_guest_cart().await;
            return;
        };
        let lines = current.len();
        // create, add, change, remove, view
        let mut op = self.rng.weighted(&[5, 35, 20, 15, 25]);
        if (op == 2 || op == 3) && lines == 0 {
            op = 1;
        }
        if op == 1 && lines >= 6 {
            op = 3;
        }
        if op == 0 {
            self.create_guest_cart().await;
            return;
        }
        let reply = match op {
            1 => {
                let Some(product) = self.random_product(catalog) else { return };
                let quantity = 1 + self.rng.below(2);
                let body = json!({"productId": product.id, "quantity": quantity});
                let req = Req::post(format!("/v1/carts/{id}/items"), body, 200).cart_token(&token);
                self.api.send(&mut self.stats, CART_ADD, req).await
            }
            2 => {
                let (product, _) = current[self.rng.below(lines)].clone();
                let quantity = 1 + self.rng.below(5);
                let req = Req::new(Method::PATCH, format!("/v1/carts/{id}/items/{product}"), 200)
                    .json(json!({"quantity": quantity}))
                    .cart_token(&token);
                self.api.send(&mut self.stats, CART_CHANGE, req).await
            }
            3 => {
                let (product, _) = current[self.rng.below(lines)].clone();
                let req = Req::new(Method::DELETE, format!("/v1/carts/{id}/items/{product}"), 200).cart_token(&token);
                self.api.send(&mut self.stats, CART_REMOVE, req).await
            }
            _ => {
                self.api.send(&mut self.stats, CART_VIEW, Req::get(format!("/v1/carts/{id}")).cart_token(&token)).await
            }
        };
        match &reply {
            Reply::Ok(cart) => {
                if let Some(guest) = &mut self.guest {
                    guest.update(cart);
                }
            }
            // Gone (expired, or never stored): start another.
            Reply::Status { status: 404, code, .. } if code.as_deref() == Some("CART_NOT_FOUND") => self.guest = None,
            _ => {}
        }
    }

    async fn create_guest_cart(&mut self) {
        let reply = self.api.send(&mut self.stats, CART_CREATE, Req::post("/v1/carts", json!({}), 201)).await;
        if let Reply::Ok(cart) = reply {
            if let (Some(id), Some(token)) = (cart["id"].as_str(), cart["cartToken"].as_str()) {
                let mut guest = GuestCart { id: id.to_owned(), token: token.to_owned(), lines: Vec::new() };
                guest.update(&cart);
                self.guest = Some(guest);
            }
        }
    }

    /// Fills the customer's own cart with 1–2 products and checks out: card ~70 %, declined
    /// card ~10 %, cash on delivery ~20 %.
    async fn checkout(&mut self, shared: &Shared) {
        let Some(account) = self.account.as_mut() else { return };
        account.keep_fresh(&self.api, &mut self.stats).await;
        let token = account.access.clone();

        let cart_id = match &self.cart_id {
            Some(id) => id.clone(),
            None => {
                let reply = self
                    .api
                    .send(&mut self.stats, CO_OPEN, Req::post("/v1/carts", json!({}), 201).bearer(&token))
                    .await;
                let Some(id) = reply.body().and_then(|c| c["id"].as_str()).map(str::to_owned) else { return };
                let empty = reply.body().and_then(|c| c["items"].as_array()).is_some_and(Vec::is_empty);
                self.cart = if empty { CartState::Clean } else { CartState::Dirty };
                self.cart_id = Some(id.clone());
                id
            }
        };

        if let CartState::AwaitingSaga(order) = self.cart.clone() {
            self.cart = self.wait_for_saga(&token, &cart_id, &order, shared.until).await;
            if matches!(self.cart, CartState::AwaitingSaga(_)) {
                return; // time is up
            }
        }
        if self.cart == CartState::Dirty {
            let req = Req::new(Method::DELETE, format!("/v1/carts/{cart_id}"), 204).bearer(&token);
            match self.api.send(&mut self.stats, CO_EMPTY, req).await {
                Reply::Ok(_) => self.cart = CartState::Clean,
                Reply::Status { status: 404, .. } => {
                    self.cart_id = None; // opened again next time
                    return;
                }
                _ => return,
            }
        }

        let lines = 1 + self.rng.below(2);
        let first = self.rng.below(shared.catalog.products.len().max(1));
        for n in 0..lines {
            let Some(product) = shared.catalog.products.get((first + n * 7) % shared.catalog.products.len().max(1))
            else {
                return;
            };
            let body = json!({"productId": product.id, "quantity": 1 + self.rng.below(2)});
            let req = Req::post(format!("/v1/carts/{cart_id}/items"), body, 200).bearer(&token);
            self.cart = CartState::Dirty;
            if self.api.send(&mut self.stats, CO_ADD, req).await.body().is_none() {
                return;
            }
        }

        let (kind, op, method, payment_token) = match self.rng.weighted(&[70, 10, 20]) {
            0 => (Kind::Card, CO_CARD, "CREDIT_CARD", Some("pm_card_visa")),
            1 => (Kind::Declined, CO_DECLINED, "CREDIT_CARD", Some("pm_card_chargeDeclined")),
            _ => (Kind::Cod, CO_COD, "CASH_ON_DELIVERY", None),
        };
        let mut body = json!({
            "cartId": cart_id,
            "paymentMethod": method,
            "shippingAddress": {"fullName": "Load Customer", "line1": "1 Load Street", "city": "Springfield",
                                "postalCode": "12345", "country": "US"},
        });
        if let Some(t) = payment_token {
            body["paymentToken"] = json!(t);
        }
        // A checkout that got no definite answer is sent again with the same key, as a client
        // should: the api runs it at most once and replays the answer.
        let key = uuid::Uuid::now_v7().to_string();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let req = Req::post("/v1/orders/checkout", body.clone(), 201).bearer(&token).key(&key);
            let reply = self.api.send(&mut self.stats, op, req).await;
            let in_progress = matches!(&reply, Reply::Status { status: 409, code, .. }
                if code.as_deref() == Some("IDEMPOTENCY_REQUEST_IN_PROGRESS"));
            match reply {
                Reply::Ok(order) => {
                    let Some(id) = order["id"].as_str() else {
                        self.stats.failure(op, "201 without an order id");
                        return;
                    };
                    self.stats.order_placed();
                    self.placed.push(Placed { id: id.to_owned(), kind, customer: self.index });
                    self.cart =
                        if kind == Kind::Card { CartState::AwaitingSaga(id.to_owned()) } else { CartState::Dirty };
                    return;
                }
                ref r if (r.uncertain() || in_progress) && attempt < 4 => {
                    let pause = match r {
                        Reply::Status { retry_after: Some(after), .. } => (*after).min(Duration::from_secs(2)),
                        _ => Duration::from_millis(200 * attempt),
                    };
                    tokio::time::sleep(pause).await;
                }
                r => {
                    if r.uncertain() || in_progress {
                        self.uncertain_checkouts += 1;
                    }
                    return;
                }
            }
        }
    }

    /// Polls the cart until the saga of the card order `order` has taken the ordered lines (all
    /// it held) out of it; when the order
    /// was cancelled instead (or this takes too long), the cart is left to be emptied by hand.
    async fn wait_for_saga(&mut self, token: &str, cart_id: &str, order: &str, until: Instant) -> CartState {
        let started = Instant::now();
        let mut polls = 0u32;
        loop {
            polls += 1;
            let cart =
                self.api.send(&mut self.stats, CO_WAIT, Req::get(format!("/v1/carts/{cart_id}")).bearer(token)).await;
            if cart.body().and_then(|c| c["items"].as_array()).is_some_and(Vec::is_empty) {
                return CartState::Clean;
            }
            if cart.status() == Some(404) {
                self.cart_id = None;
                return CartState::Dirty;
            }
            // The order itself only now and then: a cancelled one never empties the cart.
            if polls == 5 {
                polls = 0;
                let req = Req::get(format!("/v1/orders/{order}")).bearer(token);
                let reply = self.api.send(&mut self.stats, CO_WAIT, req).await;
                if reply.body().is_some_and(|o| o["status"] == "CANCELLED") {
                    return CartState::Dirty;
                }
            }
            if started.elapsed() > SAGA_WAIT {
                self.stats.failure(CO_WAIT, "saga did not empty the cart within 30 s");
                return CartState::Dirty;
            }
            if Instant::now() >= until {
                return CartState::AwaitingSaga(order.to_owned());
            }
            // Not more often than a client would.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
