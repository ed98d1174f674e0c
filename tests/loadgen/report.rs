//! The Markdown report (stdout) and the same figures as JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde_json::{json, Value};

use crate::options::Options;
use crate::scenarios::{Kind, OPERATIONS};
use crate::settle::Settled;
use crate::stats::{percentile_ms, OpStats, Stats};

pub struct Run<'a> {
    pub options: &'a Options,
    pub load: &'a Stats,
    pub elapsed: Duration,
    pub setup: &'a Stats,
    pub settle: &'a Stats,
    pub settled: Option<&'a Settled>,
    pub uncertain_checkouts: u64,
    pub customers_with_accounts: usize,
    pub crashed_customers: usize,
}

fn ms(v: f64) -> String {
    if v < 10.0 {
        format!("{v:.2} ms")
    } else {
        format!("{v:.1} ms")
    }
}

struct Row {
    name: String,
    requests: u64,
    ok: u64,
    server: u64,
    other: u64,
    transport: u64,
    rps: f64,
    p50: f64,
    p95: f64,
    p99: f64,
    by_kind: BTreeMap<String, u64>,
}

fn row(name: &str, s: &OpStats, secs: f64) -> Row {
    let mut sorted = s.latencies_us.clone();
    sorted.sort_unstable();
    Row {
        name: name.to_owned(),
        requests: s.requests(),
        ok: s.ok,
        server: s.server_errors,
        other: s.other_errors,
        transport: s.transport_errors,
        rps: s.requests() as f64 / secs,
        p50: percentile_ms(&sorted, 50.0),
        p95: percentile_ms(&sorted, 95.0),
        p99: percentile_ms(&sorted, 99.0),
        by_kind: s.errors_by_kind.clone(),
    }
}

fn rows(stats: &Stats, secs: f64) -> (Vec<Row>, Row) {
    let mut names: Vec<&str> = OPERATIONS.iter().copied().filter(|op| stats.ops.contains_key(op)).collect();
    let mut extra: Vec<&str> = stats.ops.keys().copied().filter(|op| !OPERATIONS.contains(op)).collect();
    extra.sort_unstable();
    names.extend(extra);
    let mut total = OpStats::default();
    let mut out = Vec::new();
    for name in names {
        let Some(s) = stats.ops.get(name) else { continue };
        out.push(row(name, s, secs));
        total.latencies_us.extend_from_slice(&s.latencies_us);
        total.ok += s.ok;
        total.server_errors += s.server_errors;
        total.other_errors += s.other_errors;
        total.transport_errors += s.transport_errors;
        for (k, v) in &s.errors_by_kind {
            *total.errors_by_kind.entry(k.clone()).or_default() += v;
        }
    }
    let total = row("total", &total, secs);
    (out, total)
}

fn row_json(r: &Row) -> Value {
    json!({
        "operation": r.name, "requests": r.requests, "ok": r.ok, "serverErrors": r.server,
        "otherErrors": r.other, "transportErrors": r.transport, "errorsByKind": r.by_kind,
        "requestsPerSec": r.rps, "p50Ms": r.p50, "p95Ms": r.p95, "p99Ms": r.p99,
    })
}

fn summary(stats: &Stats) -> (u64, u64) {
    stats.ops.values().fold((0, 0), |(r, e), s| (r + s.requests(), e + s.errors()))
}

/// Prints the report; returns its JSON form.
pub fn print(run: &Run<'_>) -> Value {
    let o = run.options;
    let secs = run.elapsed.as_secs_f64().max(0.001);
    let (table, total) = rows(run.load, secs);
    let mut out = String::new();
    let _ = writeln!(out, "| operation | requests | errors (5xx / other) | req/s | p50 | p95 | p99 |");
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|");
    for r in table.iter().chain(std::iter::once(&total)) {
        let name = if r.name == "total" { "**total**".to_owned() } else { r.name.clone() };
        let _ = writeln!(
            out,
            "| {name} | {} | {} / {} | {:.0} | {} | {} | {} |",
            r.requests,
            r.server,
            r.other + r.transport,
            r.rps,
            ms(r.p50),
            ms(r.p95),
            ms(r.p99)
        );
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "Total: {} requests in {:.1} s = {:.0} req/s; errors {} (5xx {}, other 4xx {}, no answer {}); scenario {}, {} \
         customers ({} signed in) on {} api instance(s): {}. Latencies are of the requests answered with the \
         expected status; \"other\" errors are unexpected non-5xx answers plus requests without an answer.",
        total.requests,
        secs,
        total.rps,
        total.server + total.other + total.transport,
        total.server,
        total.other,
        total.transport,
        o.scenario.as_str(),
        o.customers,
        run.customers_with_accounts,
        o.base_urls.len(),
        o.base_urls.join(", "),
    );
    let errors: Vec<String> = table
        .iter()
        .filter(|r| !r.by_kind.is_empty())
        .map(|r| {
            let kinds: Vec<String> = r.by_kind.iter().map(|(k, v)| format!("{k} ×{v}")).collect();
            format!("{}: {}", r.name, kinds.join(", "))
        })
        .collect();
    if !errors.is_empty() {
        let _ = writeln!(out, "\nErrors by kind:");
        for e in &errors {
            let _ = writeln!(out, "- {e}");
        }
    }

    let mut orders_json = Value::Null;
    if let Some(settled) = run.settled {
        let mut by_kind: BTreeMap<Kind, (usize, usize, BTreeMap<String, usize>)> = BTreeMap::new();
        for t in &settled.tracked {
            let entry = by_kind.entry(t.placed.kind).or_default();
            entry.0 += 1;
            if let Some(outcome) = &t.outcome {
                entry.1 += 1;
                *entry.2.entry(outcome.label()).or_default() += 1;
            }
        }
        let placed = settled.tracked.len();
        let done = settled.tracked.iter().filter(|t| t.outcome.is_some()).count();
        let unexpected = settled
            .tracked
            .iter()
            .filter(|t| t.outcome.as_ref().is_some_and(|o| !o.expected_for(t.placed.kind)))
            .count();
        let kinds: Vec<String> =
            by_kind.iter().map(|(k, (n, s, _))| format!("{} {n} ({s} settled)", k.label())).collect();
        let _ = writeln!(
            out,
            "\nOrders: {placed} placed: {}; settled {done}, not settled {} (after waiting {:.1} s of at most {} s; COD \
             orders {}); {unexpected} settled otherwise than their kind expects; {} checkouts got no definite answer.",
            if kinds.is_empty() { "none".to_owned() } else { kinds.join(", ") },
            placed - done,
            settled.waited.as_secs_f64(),
            o.settle_seconds,
            if o.confirm_cod { "confirmed by the admin" } else { "left for the admin" },
            run.uncertain_checkouts,
        );
        for (kind, (_, _, outcomes)) in &by_kind {
            let list: Vec<String> = outcomes.iter().map(|(label, n)| format!("{label} {n}")).collect();
            let expected = match kind {
                Kind::Card => "CONFIRMED+PAID",
                Kind::Declined => "CANCELLED PAYMENT_DECLINED",
                Kind::Cod => {
                    if o.confirm_cod {
                        "CONFIRMED (COD, by the admin)"
                    } else {
                        "PENDING_CONFIRMATION, stock reserved"
                    }
                }
                Kind::Recovered => "any settled state",
            };
            let _ = writeln!(
                out,
                "- {} (expected {expected}): {}",
                kind.label(),
                if list.is_empty() { "none settled".to_owned() } else { list.join(", ") }
            );
        }
        let odd: Vec<String> = settled
            .tracked
            .iter()
            .filter_map(|t| {
                let outcome = t.outcome.as_ref().filter(|o| !o.expected_for(t.placed.kind))?;
                Some(format!("{} ({} → {})", t.placed.id, t.placed.kind.label(), outcome.label()))
            })
            .collect();
        if !odd.is_empty() {
            let _ = writeln!(
                out,
                "Settled otherwise than expected{}: {}",
                if odd.len() > 10 { " (first 10)" } else { "" },
                odd.iter().take(10).cloned().collect::<Vec<_>>().join("; ")
            );
        }
        let unsettled: Vec<&crate::settle::Tracked> = settled.tracked.iter().filter(|t| t.outcome.is_none()).collect();
        if !unsettled.is_empty() {
            let few: Vec<String> = unsettled
                .iter()
                .take(10)
                .map(|t| format!("{} ({}, {})", t.placed.id, t.placed.kind.label(), t.last_seen))
                .collect();
            let _ = writeln!(
                out,
                "Not settled{}: {}",
                if unsettled.len() > 10 { " (first 10)" } else { "" },
                few.join("; ")
            );
        }
        orders_json = json!({
            "placed": placed,
            "settled": done,
            "unsettled": placed - done,
            "settledOtherwiseThanExpected": unexpected,
            "uncertainCheckouts": run.uncertain_checkouts,
            "settleWaitSecs": settled.waited.as_secs_f64(),
            "codConfirmedByAdmin": o.confirm_cod,
            "byKind": by_kind.iter().map(|(k, (n, s, outcomes))| {
                (k.label().to_owned(), json!({"placed": n, "settled": s, "outcomes": outcomes}))
            }).collect::<serde_json::Map<String, Value>>(),
            "unsettledOrders": unsettled.iter().map(|t| json!({
                "id": t.placed.id, "kind": t.placed.kind.label(), "lastSeen": t.last_seen,
            })).collect::<Vec<_>>(),
            "orders": settled.tracked.iter().map(|t| json!({
                "id": t.placed.id, "kind": t.placed.kind.label(),
                "outcome": t.outcome.as_ref().map(|o| o.label()), "lastSeen": t.last_seen,
            })).collect::<Vec<_>>(),
        });
    }
    if run.crashed_customers > 0 {
        let _ = writeln!(out, "\n{} virtual customers crashed (a bug in the load generator).", run.crashed_customers);
    }
    print!("{out}");

    let (setup_requests, setup_errors) = summary(run.setup);
    let (settle_requests, settle_errors) = summary(run.settle);
    eprintln!(
        "(setup: {setup_requests} requests, {setup_errors} errors; settle: {settle_requests} requests, {settle_errors} errors)"
    );
    let settle_secs = run.settled.map_or(0.001, |s| s.waited.as_secs_f64().max(0.001));
    let (settle_table, _) = rows(run.settle, settle_secs);
    json!({
        "scenario": o.scenario.as_str(),
        "customers": o.customers,
        "customersSignedIn": run.customers_with_accounts,
        "baseUrls": o.base_urls,
        "seconds": o.seconds,
        "elapsedSecs": secs,
        "operations": table.iter().map(row_json).collect::<Vec<_>>(),
        "total": row_json(&total),
        "orders": orders_json,
        "setup": {"requests": setup_requests, "errors": setup_errors},
        "settle": {"requests": settle_requests, "errors": settle_errors,
                   "operations": settle_table.iter().map(row_json).collect::<Vec<_>>()},
        "crashedCustomers": run.crashed_customers,
    })
}
