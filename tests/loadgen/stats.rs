//! Per-operation figures. Each virtual customer keeps its own `Stats` (no locking on the hot
//! path); they are merged when the load ends. `Live` holds the few shared counters of the
//! progress line.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[derive(Default)]
pub struct Live {
    pub requests: AtomicU64,
    pub errors: AtomicU64,
    pub orders: AtomicU64,
}

#[derive(Default, Clone)]
pub struct OpStats {
    /// Latencies (µs) of the requests answered with the expected status.
    pub latencies_us: Vec<u32>,
    pub ok: u64,
    /// Unexpected 5xx answers.
    pub server_errors: u64,
    /// Unexpected answers other than 5xx (4xx mostly), and failures the load generator
    /// detected itself (a saga that did not finish in time).
    pub other_errors: u64,
    /// No answer: connect failure, timeout, broken connection.
    pub transport_errors: u64,
    /// Every error by kind: `"503 SERVICE_UNAVAILABLE"`, `"409 OUT_OF_STOCK"`, `"timeout"`.
    pub errors_by_kind: BTreeMap<String, u64>,
}

impl OpStats {
    pub fn requests(&self) -> u64 {
        self.ok + self.server_errors + self.other_errors + self.transport_errors
    }

    pub fn errors(&self) -> u64 {
        self.server_errors + self.other_errors + self.transport_errors
    }

    fn merge(&mut self, other: OpStats) {
        self.latencies_us.extend(other.latencies_us);
        self.ok += other.ok;
        self.server_errors += other.server_errors;
        self.other_errors += other.other_errors;
        self.transport_errors += other.transport_errors;
        for (k, v) in other.errors_by_kind {
            *self.errors_by_kind.entry(k).or_default() += v;
        }
    }
}

pub struct Stats {
    pub ops: HashMap<&'static str, OpStats>,
    live: Arc<Live>,
    /// Set by a transport error or a 5xx, cleared by whoever reads it: a customer backs off a
    /// little after one, so that an outage is not hammered in a tight loop.
    pub troubled: bool,
}

impl Stats {
    pub fn new(live: Arc<Live>) -> Self {
        Self { ops: HashMap::new(), live, troubled: false }
    }

    pub fn ok(&mut self, op: &'static str, took: Duration) {
        self.live.requests.fetch_add(1, Ordering::Relaxed);
        let s = self.ops.entry(op).or_default();
        s.ok += 1;
        s.latencies_us.push(u32::try_from(took.as_micros()).unwrap_or(u32::MAX));
    }

    pub fn status(&mut self, op: &'static str, status: u16, code: Option<&str>) {
        self.live.requests.fetch_add(1, Ordering::Relaxed);
        self.live.errors.fetch_add(1, Ordering::Relaxed);
        let s = self.ops.entry(op).or_default();
        if status >= 500 {
            s.server_errors += 1;
            self.troubled = true;
        } else {
            s.other_errors += 1;
        }
        let kind = match code {
            Some(code) => format!("{status} {code}"),
            None => status.to_string(),
        };
        *s.errors_by_kind.entry(kind).or_default() += 1;
    }

    pub fn transport(&mut self, op: &'static str, kind: &'static str) {
        self.live.requests.fetch_add(1, Ordering::Relaxed);
        self.live.errors.fetch_add(1, Ordering::Relaxed);
        self.troubled = true;
        let s = self.ops.entry(op).or_default();
        s.transport_errors += 1;
        *s.errors_by_kind.entry(kind.to_owned()).or_default() += 1;
    }

    /// A failure seen by the load generator rather than in one answer (counted as "other").
    pub fn failure(&mut self, op: &'static str, kind: &str) {
        self.live.errors.fetch_add(1, Ordering::Relaxed);
        let s = self.ops.entry(op).or_default();
        s.other_errors += 1;
        *s.errors_by_kind.entry(kind.to_owned()).or_default() += 1;
    }

    pub fn order_placed(&self) {
        self.live.orders.fetch_add(1, Ordering::Relaxed);
    }

    pub fn merge(&mut self, other: Stats) {
        for (op, s) in other.ops {
            self.ops.entry(op).or_default().merge(s);
        }
    }
}

/// Nearest-rank percentile of sorted latencies, in milliseconds.
pub fn percentile_ms(sorted_us: &[u32], p: f64) -> f64 {
    if sorted_us.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * (sorted_us.len() - 1) as f64).round() as usize;
    f64::from(sorted_us[rank.min(sorted_us.len() - 1)]) / 1000.0
}
