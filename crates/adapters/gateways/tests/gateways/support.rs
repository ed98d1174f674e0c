//! Fakes and helpers shared by the tests.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use ecom_kernel::jobs::{Enqueued, JobQueue, NewJob};
use ecom_kernel::{Clock, InfraError, Money, OrderId};
use ecom_payments::model::PaymentId;
use ecom_payments::ports::ChargeRequest;
use wiremock::Request;

/// A clock the test moves by hand.
pub struct ManualClock(Mutex<DateTime<Utc>>);

impl ManualClock {
    pub fn at(now: DateTime<Utc>) -> Self {
        Self(Mutex::new(now))
    }

    pub fn set(&self, now: DateTime<Utc>) {
        *self.0.lock().unwrap() = now;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap()
    }
}

/// 2030-01-01T12:00:00Z, a whole second.
pub fn noon() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2030, 1, 1, 12, 0, 0).unwrap()
}

/// A queue that records what is enqueued and when it is to run.
#[derive(Default)]
pub struct RecordingQueue(Mutex<Vec<(NewJob, DateTime<Utc>)>>);

impl RecordingQueue {
    pub fn scheduled(&self) -> Vec<(NewJob, DateTime<Utc>)> {
        self.0.lock().unwrap().clone()
    }
}

#[async_trait]
impl JobQueue for RecordingQueue {
    async fn enqueue(&self, job: NewJob) -> Result<Enqueued, InfraError> {
        self.enqueue_at(job, Utc::now()).await
    }

    async fn enqueue_at(&self, job: NewJob, at: DateTime<Utc>) -> Result<Enqueued, InfraError> {
        let mut jobs = self.0.lock().unwrap();
        if jobs.iter().any(|(j, _)| j.id == job.id) {
            return Ok(Enqueued::AlreadyPresent);
        }
        jobs.push((job, at));
        Ok(Enqueued::Created)
    }

    /// Nothing here is ever dead-lettered: the same as enqueuing.
    async fn reoffer(&self, jobs: &[NewJob], _revive_after: std::time::Duration) -> Result<Vec<Enqueued>, InfraError> {
        self.enqueue_many(jobs).await
    }
}

pub fn charge_request(key: &str, amount: Money, token: &str) -> ChargeRequest {
    ChargeRequest {
        idempotency_key: key.to_owned(),
        payment_id: PaymentId::new(),
        order_id: OrderId::new(),
        amount,
        token: token.to_owned(),
    }
}

pub fn header(request: &Request, name: &str) -> Option<String> {
    request.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

/// A form-encoded body as a map.
pub fn form(request: &Request) -> HashMap<String, String> {
    let body = String::from_utf8(request.body.clone()).unwrap();
    reqwest::Url::parse(&format!("http://form/?{body}")).unwrap().query_pairs().into_owned().collect()
}

/// The requests the server received for one path.
pub async fn requests_to(server: &wiremock::MockServer, path: &str) -> Vec<Request> {
    server.received_requests().await.unwrap().into_iter().filter(|r| r.url.path() == path).collect()
}
