//! After the load: find the orders of checkouts that got no definite answer, then follow every
//! order placed until it settles (or the time is up).
//!
//! Settled means the worker has finished with the order:
//! - online (card ok or declined): CONFIRMED (or later) with `paymentStatus` PAID and the saga's
//!   "stock confirmed, cart cleared" step (`FINALIZED`) in its timeline;
//! - cash on delivery: its stock reserved (`STOCK_RESERVED` in the timeline) while
//!   PENDING_CONFIRMATION; then, unless `--no-confirm-cod`, the load generator confirms it as the
//!   admin (`PATCH /v1/orders/{id}/confirm`; only once reserved, since a confirmation before the
//!   reservation would skip it) and it is settled once CONFIRMED and finalized;
//! - any order: CANCELLED with its compensation done (`COMPENSATED`: refund and stock settled)
//!   and holding no money (`paymentStatus` not AUTHORIZED, PAID or PARTIALLY_REFUNDED).
//!
//! The timeline notes are the saga's own constants (`ecom_orders::service`).
//!
//! An order that settles other than expected for its kind (a card order cancelled
//! OUT_OF_STOCK, say) is settled, and shown by its outcome in the report.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ecom_orders::service::{COMPENSATED, FINALIZED, STOCK_RESERVED};
use futures_util::stream::{self, StreamExt};
use reqwest::Method;
use serde_json::Value;

use crate::api::{Account, Api, Reply, Req};
use crate::scenarios::{Kind, Placed};
use crate::stats::{Live, Stats};

const CHECK: &str = "settle · get order";
const CONFIRM: &str = "settle · confirm COD (admin)";
const RECONCILE: &str = "settle · list a customer's orders";

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    ConfirmedPaid,
    /// Cash on delivery, confirmed by the admin and finalized.
    ConfirmedCod,
    /// Cash on delivery, stock reserved, waiting for the admin (`--no-confirm-cod`).
    AwaitingConfirmation,
    Cancelled(String),
}

impl Outcome {
    pub fn label(&self) -> String {
        match self {
            Outcome::ConfirmedPaid => "CONFIRMED+PAID".to_owned(),
            Outcome::ConfirmedCod => "CONFIRMED (COD, by the admin)".to_owned(),
            Outcome::AwaitingConfirmation => "PENDING_CONFIRMATION, stock reserved".to_owned(),
            Outcome::Cancelled(reason) => format!("CANCELLED {reason}"),
        }
    }

    /// What the kind of checkout should end in.
    pub fn expected_for(&self, kind: Kind) -> bool {
        match kind {
            Kind::Card => *self == Outcome::ConfirmedPaid,
            Kind::Declined => *self == Outcome::Cancelled("PAYMENT_DECLINED".to_owned()),
            Kind::Cod => matches!(self, Outcome::ConfirmedCod | Outcome::AwaitingConfirmation),
            Kind::Recovered => true,
        }
    }
}

pub struct Tracked {
    pub placed: Placed,
    pub outcome: Option<Outcome>,
    /// `status/paymentStatus` when last seen (or why it could not be read).
    pub last_seen: String,
    confirm_sent: bool,
}

enum Check {
    Settled(Outcome),
    ConfirmCod,
    Pending,
}

fn check(order: &Value, confirm_cod: bool) -> Check {
    let status = order["status"].as_str().unwrap_or_default();
    let payment = order["paymentStatus"].as_str().unwrap_or_default();
    let cod = order["paymentMethod"] == "CASH_ON_DELIVERY";
    let noted =
        |note: &str| order["timeline"].as_array().is_some_and(|t| t.iter().any(|e| e["note"].as_str() == Some(note)));
    match status {
        "CANCELLED" if noted(COMPENSATED) && !matches!(payment, "AUTHORIZED" | "PAID" | "PARTIALLY_REFUNDED") => {
            Check::Settled(Outcome::Cancelled(order["cancellationReason"].as_str().unwrap_or("(no reason)").to_owned()))
        }
        "CONFIRMED" | "PROCESSING" | "SHIPPED" | "DELIVERED" if noted(FINALIZED) => {
            if cod {
                Check::Settled(Outcome::ConfirmedCod)
            } else if payment == "PAID" {
                Check::Settled(Outcome::ConfirmedPaid)
            } else {
                Check::Pending
            }
        }
        "PENDING_CONFIRMATION" if noted(STOCK_RESERVED) => {
            if confirm_cod {
                Check::ConfirmCod
            } else {
                Check::Settled(Outcome::AwaitingConfirmation)
            }
        }
        _ => Check::Pending,
    }
}

/// Adds the orders of `customers` (their ids) that are not in `placed`: checkouts whose answer
/// was lost may still have created one.
pub async fn reconcile(
    apis: &[Arc<Api>],
    admin: &Account,
    live: &Arc<Live>,
    stats: &mut Stats,
    customers: &[(usize, String)],
    placed: &mut Vec<Placed>,
) {
    let known: HashSet<String> = placed.iter().map(|p| p.id.clone()).collect();
    for (index, customer_id) in customers {
        let api = &apis[index % apis.len()];
        let mut cursor: Option<String> = None;
        for _ in 0..50 {
            let mut path = format!("/v1/orders?limit=100&customerId={customer_id}");
            if let Some(c) = &cursor {
                path.push_str(&format!("&cursor={}", crate::api::encode(c)));
            }
            let mut s = Stats::new(live.clone());
            let reply = api.send(&mut s, RECONCILE, Req::get(path).bearer(&admin.access)).await;
            stats.merge(s);
            let Reply::Ok(page) = reply else {
                eprintln!("could not list the orders of customer {customer_id}: {}", reply.describe());
                break;
            };
            for order in page["data"].as_array().into_iter().flatten() {
                let Some(id) = order["id"].as_str() else { continue };
                if !known.contains(id) {
                    placed.push(Placed { id: id.to_owned(), kind: Kind::Recovered, customer: *index });
                }
            }
            match page["nextCursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => break,
            }
        }
    }
}

pub struct Settled {
    pub tracked: Vec<Tracked>,
    /// From the end of the load until the last order settled (or the time ran out).
    pub waited: Duration,
}

pub async fn settle(
    apis: &[Arc<Api>],
    admin: &mut Account,
    live: &Arc<Live>,
    stats: &mut Stats,
    placed: Vec<Placed>,
    within: Duration,
    confirm_cod: bool,
) -> Settled {
    let started = Instant::now();
    let deadline = started + within;
    let mut tracked: Vec<Tracked> = placed
        .into_iter()
        .map(|placed| Tracked { placed, outcome: None, last_seen: "not read yet".to_owned(), confirm_sent: false })
        .collect();
    let mut round = 0usize;
    let mut last_report = Instant::now();
    loop {
        round += 1;
        admin.keep_fresh(&apis[round % apis.len()], stats).await;
        let token = admin.access.clone();
        let pending: Vec<usize> = (0..tracked.len()).filter(|&i| tracked[i].outcome.is_none()).collect();
        if pending.is_empty() {
            break;
        }
        let replies: Vec<(usize, Reply, Stats)> = stream::iter(pending)
            .map(|i| {
                let api = apis[(tracked[i].placed.customer + round) % apis.len()].clone();
                let path = format!("/v1/orders/{}", tracked[i].placed.id);
                let (token, live) = (token.clone(), live.clone());
                async move {
                    let mut s = Stats::new(live);
                    let reply = api.send(&mut s, CHECK, Req::get(path).bearer(&token)).await;
                    (i, reply, s)
                }
            })
            .buffer_unordered(16)
            .collect()
            .await;
        let mut to_confirm = Vec::new();
        for (i, reply, s) in replies {
            stats.merge(s);
            let t = &mut tracked[i];
            match &reply {
                Reply::Ok(order) => {
                    t.last_seen = format!(
                        "{}/{}",
                        order["status"].as_str().unwrap_or("?"),
                        order["paymentStatus"].as_str().unwrap_or("?")
                    );
                    match check(order, confirm_cod) {
                        Check::Settled(outcome) => t.outcome = Some(outcome),
                        Check::ConfirmCod if !t.confirm_sent => to_confirm.push(i),
                        Check::ConfirmCod | Check::Pending => {}
                    }
                }
                other => t.last_seen = format!("unreadable: {}", other.describe()),
            }
        }
        let confirmed: Vec<(usize, Reply, Stats)> = stream::iter(to_confirm)
            .map(|i| {
                let api = apis[(tracked[i].placed.customer + round) % apis.len()].clone();
                let path = format!("/v1/orders/{}/confirm", tracked[i].placed.id);
                let (token, live) = (token.clone(), live.clone());
                async move {
                    let mut s = Stats::new(live);
                    let reply = api.send(&mut s, CONFIRM, Req::new(Method::PATCH, path, 200).bearer(&token)).await;
                    (i, reply, s)
                }
            })
            .buffer_unordered(8)
            .collect()
            .await;
        for (i, reply, s) in confirmed {
            stats.merge(s);
            // A 409 (it moved meanwhile) is read again in the next round; so is a lost answer,
            // and confirming twice is refused harmlessly.
            if matches!(reply, Reply::Ok(_)) {
                tracked[i].confirm_sent = true;
            }
        }
        let left = tracked.iter().filter(|t| t.outcome.is_none()).count();
        if left == 0 || Instant::now() >= deadline {
            break;
        }
        if last_report.elapsed() >= Duration::from_secs(5) {
            eprintln!("settling: {left} of {} orders not settled yet", tracked.len());
            last_report = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Settled { tracked, waited: started.elapsed() }
}
