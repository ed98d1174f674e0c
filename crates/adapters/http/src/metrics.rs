//! Prometheus metrics of the HTTP surface.

use std::time::Duration;

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder};

pub struct HttpMetrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    queue_jobs: IntGaugeVec,
    queue_totals: IntGaugeVec,
    queue_oldest: IntGaugeVec,
}

impl HttpMetrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new("http_requests_total", "HTTP requests by method, route pattern and status."),
            &["method", "route", "status"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new("http_request_duration_seconds", "HTTP request latency by method and route pattern.")
                .buckets(vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
            &["method", "route"],
        )?;
        let queue_jobs = IntGaugeVec::new(
            Opts::new("job_queue_jobs", "Jobs per queue and state (waiting, in_flight, delayed, dead)."),
            &["queue", "state"],
        )?;
        let queue_totals = IntGaugeVec::new(
            Opts::new(
                "job_queue_outcomes_total",
                "Job outcomes per queue since it was created (completed, retried, dead).",
            ),
            &["queue", "outcome"],
        )?;
        let queue_oldest = IntGaugeVec::new(
            Opts::new(
                "job_queue_oldest_job_age_ms",
                "Age of the oldest unfinished job per queue (lag), in milliseconds.",
            ),
            &["queue"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        registry.register(Box::new(queue_jobs.clone()))?;
        registry.register(Box::new(queue_totals.clone()))?;
        registry.register(Box::new(queue_oldest.clone()))?;
        Ok(Self { registry, requests, latency, queue_jobs, queue_totals, queue_oldest })
    }

    /// `route` is the matched pattern (`/v1/customers/me/addresses/{id}`), never the raw path,
    /// so the number of series stays bounded.
    pub fn observe(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        self.requests.with_label_values(&[method, route, &status.to_string()]).inc();
        self.latency.with_label_values(&[method, route]).observe(elapsed.as_secs_f64());
    }

    /// Records the queues' state as of now (read at scrape time).
    pub fn observe_queues(&self, depths: &[ecom_kernel::jobs::QueueDepth]) {
        let gauge = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        for d in depths {
            let q = d.queue.as_str();
            for (state, value) in
                [("waiting", d.waiting), ("in_flight", d.in_flight), ("delayed", d.delayed), ("dead", d.dead)]
            {
                self.queue_jobs.with_label_values(&[q, state]).set(gauge(value));
            }
            for (outcome, value) in
                [("completed", d.completed_total), ("retried", d.retried_total), ("dead", d.dead_total)]
            {
                self.queue_totals.with_label_values(&[q, outcome]).set(gauge(value));
            }
            self.queue_oldest.with_label_values(&[q]).set(gauge(d.oldest_age_ms));
        }
    }

    /// The registry other components add their metrics to, so `/metrics` shows them too.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Every registered metric in the Prometheus text format.
    pub fn render(&self) -> Result<String, prometheus::Error> {
        TextEncoder::new().encode_to_string(&self.registry.gather())
    }
}
