//! A load generator for the api and its worker: many virtual customers, each in a loop until
//! the time is up, choosing operations by weight; then every order it placed is followed until
//! it settles. Prints requests, errors, throughput and p50/p95/p99 per operation as a Markdown
//! table on stdout (progress and diagnostics on stderr), optionally the same as JSON.
//!
//! ```text
//! cargo run --release -p ecom-e2e --bin loadgen -- --base-url http://127.0.0.1:18090 --scenario mix --seconds 15
//! ```
//!
//! (`--help` lists every option and its `LOADGEN_*` environment fallback.)
//!
//! Scenarios:
//! - `browse`: `GET /v1/products?limit=20` (now and then sorted, by category or in stock),
//!   `GET /v1/products?q=<a word of a product name, sometimes misspelt>`, `GET /v1/products/{id}`
//!   (40/30/30).
//! - `cart`: a guest cart per customer (`POST /v1/carts`, `X-Cart-Token`): create now and then,
//!   add an item, change a quantity, remove an item, view (5/35/20/15/25; at most 6 lines).
//!   Guest carts, because the checkout saga takes the ordered lines out of a signed-in
//!   customer's one cart.
//! - `checkout`: the customer's own cart emptied if needed, 1–2 products added, then `POST
//!   /v1/orders/checkout` with an `Idempotency-Key` and a shipping address: card `pm_card_visa`
//!   ~70 %, `pm_card_chargeDeclined` ~10 %, cash on delivery ~20 %. A checkout without a definite
//!   answer (none, or a 5xx) is sent again with the same key, up to 4 times. Before its next
//!   checkout after a card order, a customer waits (polling its cart, then the order) until the
//!   saga has taken the ordered lines (the whole cart here) out of it, at most 30 s.
//! - `mix`: 60 % browse, 25 % cart, 15 % checkout operations.
//!
//! Setup: the admin signs in (`--admin-email/--admin-password`); the catalog is listed (up to 100
//! products) and filled up to 20 products; every product's available stock is topped up to
//! `--stock` (`POST /v1/inventory/products/{id}/adjust`, `ADD`); for `checkout` and `mix` the
//! customers register, 8 at a time, customer `i` on the `i`-th api (round robin).
//!
//! Errors never stop a customer: each is counted for its operation as a 5xx, another unexpected
//! status, or no answer (timeout, refused connection), by kind; after a 5xx or no answer the
//! customer pauses 100 ms. Latencies are of the requests answered with the expected status.
//!
//! After the load (`--settle-seconds`, default 60): orders of checkouts that got no definite
//! answer are looked for in those customers' order lists; then every order is read until it is
//! settled (see `settle.rs`: online CONFIRMED+PAID and finalized; cash on delivery reserved,
//! then confirmed by the admin and finalized unless `--no-confirm-cod`; or CANCELLED with its
//! compensation done and no money held). The report counts orders placed and settled by kind,
//! their outcomes, and lists a few that did not settle or settled otherwise than their kind
//! expects. Exit status 2 when some did not settle in time; 3 with `--strict` when all settled
//! but some otherwise than expected; 1 when the setup failed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stdout)]

mod api;
mod options;
mod report;
mod scenarios;
mod settle;
mod setup;
mod stats;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use api::{Account, Api};
use options::Options;
use scenarios::{Customer, Shared};
use stats::{Live, Stats};

#[tokio::main]
async fn main() {
    let code = match run().await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("loadgen: {e}");
            1
        }
    };
    std::process::exit(code);
}

async fn run() -> Result<i32, String> {
    let Some(o) = options::parse(std::env::args().skip(1))? else {
        print!("{}", options::USAGE);
        return Ok(0);
    };
    let live = Arc::new(Live::default());
    let apis: Vec<Arc<Api>> = o
        .base_urls
        .iter()
        .map(|url| Api::new(url, o.timeout, o.customers.max(16)).map(Arc::new))
        .collect::<Result<_, _>>()?;

    let mut setup_stats = Stats::new(live.clone());
    let mut admin = setup::admin_login(&apis[0], &mut setup_stats, &o.admin_email, &o.admin_password).await?;
    let catalog = setup::catalog(&apis[0], &mut setup_stats, &admin, o.stock).await?;
    eprintln!(
        "catalog: {} products, {} categories, {} search words{}",
        catalog.products.len(),
        catalog.categories.len(),
        catalog.words.len(),
        if o.stock > 0 { format!("; stock topped up to {} available", o.stock) } else { String::new() }
    );
    let accounts: Vec<Option<Account>> = if o.scenario.needs_accounts() {
        let started = Instant::now();
        let accounts = setup::register(&apis, o.customers, &live, &mut setup_stats).await;
        let ok = accounts.iter().filter(|a| a.is_some()).count();
        eprintln!("registered {ok} of {} customers in {:.1} s", o.customers, started.elapsed().as_secs_f64());
        if ok == 0 {
            return Err("no customer could register".to_owned());
        }
        accounts
    } else {
        (0..o.customers).map(|_| None).collect()
    };
    let signed_in = accounts.iter().filter(|a| a.is_some()).count();

    eprintln!(
        "load: scenario {}, {} customers on {} api instance(s), {} s",
        o.scenario.as_str(),
        o.customers,
        apis.len(),
        o.seconds
    );
    let started = Instant::now();
    let shared = Arc::new(Shared {
        scenario: o.scenario,
        catalog,
        until: started + Duration::from_secs(o.seconds),
        think: o.think,
    });
    let progress = spawn_progress(&o, live.clone(), started);
    let tasks: Vec<_> = accounts
        .into_iter()
        .enumerate()
        .map(|(i, account)| {
            let customer = Customer::new(i, apis[i % apis.len()].clone(), account, live.clone());
            tokio::spawn(customer.run(shared.clone()))
        })
        .collect();
    let results = futures_util::future::join_all(tasks).await;
    let elapsed = started.elapsed();
    if let Some(p) = progress {
        p.abort();
    }

    let mut load = Stats::new(live.clone());
    let mut placed = Vec::new();
    let mut uncertain = 0;
    let mut uncertain_customers = Vec::new();
    let mut crashed = 0;
    for result in results {
        match result {
            Ok(done) => {
                load.merge(done.stats);
                placed.extend(done.placed);
                uncertain += done.uncertain_checkouts;
                if done.uncertain_checkouts > 0 {
                    if let Some(id) = done.customer_id {
                        uncertain_customers.push((done.index, id));
                    }
                }
            }
            Err(e) => {
                eprintln!("a virtual customer crashed: {e}");
                crashed += 1;
            }
        }
    }
    eprintln!("load done in {:.1} s; {} orders placed", elapsed.as_secs_f64(), placed.len());

    let mut settle_stats = Stats::new(live.clone());
    let settled = if o.scenario.needs_accounts() {
        admin.keep_fresh(&apis[0], &mut settle_stats).await;
        if !uncertain_customers.is_empty() {
            let before = placed.len();
            settle::reconcile(&apis, &admin, &live, &mut settle_stats, &uncertain_customers, &mut placed).await;
            eprintln!("{uncertain} checkouts got no definite answer; {} orders of theirs found", placed.len() - before);
        }
        eprintln!("settling {} orders (at most {} s)", placed.len(), o.settle_seconds);
        Some(
            settle::settle(
                &apis,
                &mut admin,
                &live,
                &mut settle_stats,
                placed,
                Duration::from_secs(o.settle_seconds),
                o.confirm_cod,
            )
            .await,
        )
    } else {
        None
    };

    let json = report::print(&report::Run {
        options: &o,
        load: &load,
        elapsed,
        setup: &setup_stats,
        settle: &settle_stats,
        settled: settled.as_ref(),
        uncertain_checkouts: uncertain,
        customers_with_accounts: signed_in,
        crashed_customers: crashed,
    });
    if let Some(path) = &o.json {
        match serde_json::to_string_pretty(&json) {
            Ok(text) => {
                if let Err(e) = std::fs::write(path, text + "\n") {
                    eprintln!("could not write {path}: {e}");
                }
            }
            Err(e) => eprintln!("could not serialise the figures: {e}"),
        }
    }
    let tracked = settled.as_ref().map_or(&[][..], |s| &s.tracked[..]);
    let unsettled = tracked.iter().filter(|t| t.outcome.is_none()).count();
    let unexpected =
        tracked.iter().filter(|t| t.outcome.as_ref().is_some_and(|o| !o.expected_for(t.placed.kind))).count();
    Ok(if unsettled > 0 {
        2
    } else if o.strict && unexpected > 0 {
        3
    } else {
        0
    })
}

/// A line on stderr every `--progress-secs`: requests and errors so far, orders placed.
fn spawn_progress(o: &Options, live: Arc<Live>, started: Instant) -> Option<tokio::task::JoinHandle<()>> {
    if o.progress.is_zero() {
        return None;
    }
    let every = o.progress;
    let base = (live.requests.load(Ordering::Relaxed), live.errors.load(Ordering::Relaxed));
    Some(tokio::spawn(async move {
        let mut last = base;
        loop {
            tokio::time::sleep(every).await;
            let now = (live.requests.load(Ordering::Relaxed), live.errors.load(Ordering::Relaxed));
            eprintln!(
                "[{:>5.1} s] {} requests ({:.0}/s now), {} errors (+{}), {} orders",
                started.elapsed().as_secs_f64(),
                now.0 - base.0,
                (now.0 - last.0) as f64 / every.as_secs_f64(),
                now.1 - base.1,
                now.1 - last.1,
                live.orders.load(Ordering::Relaxed),
            );
            last = now;
        }
    }))
}
