//! Back-office view of the job queues: depths, dead letters, and re-driving a dead job.

use std::time::Duration;

use actix_web::web::{Data, Path};
use actix_web::{get, post, HttpResponse};
use chrono::{DateTime, Utc};
use ecom_kernel::jobs::JobId;
use ecom_kernel::ValidationErrors;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

use crate::error::{ApiError, Problem, ProblemKind};
use crate::extract::{Admin, JsonBody};
use crate::AppState;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(queues).service(retry_dead).service(send_canary).service(canary);
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct QueueDto {
    queue: &'static str,
    waiting: u64,
    in_flight: u64,
    delayed: u64,
    dead: u64,
    completed_total: u64,
    retried_total: u64,
    /// Age of the oldest unfinished job, in milliseconds.
    oldest_age_ms: u64,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetterDto {
    queue: &'static str,
    job_id: String,
    error: String,
    /// When the queue runs the job again by itself (its retries ran out on failures that may
    /// pass, such as an outage); `null`: it does not (it failed for good, or died before this
    /// was recorded) and runs again when retried here (a saga's job that ran out of retries
    /// before the queue recorded this also when the resume sweep finds its order unfinished).
    revives_at: Option<DateTime<Utc>>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobsOverview {
    queues: Vec<QueueDto>,
    /// The 50 most recent dead letters, newest first.
    dead_letters: Vec<DeadLetterDto>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Redriven {
    job_id: String,
    queue: &'static str,
}

/// Depth of every queue (waiting, in flight, delayed, dead) and the latest dead letters. ADMIN only.
#[utoipa::path(
    tag = "admin",
    security(("bearer" = ["ADMIN"])),
    responses((status = 200, body = JobsOverview), (status = 403, body = Problem, content_type = "application/problem+json"))
)]
#[get("/admin/jobs")]
async fn queues(state: Data<AppState>, _admin: Admin) -> Result<HttpResponse, ApiError> {
    let depths = state.jobs.depths().await?;
    let dead = state.jobs.dead_letters(50).await?;
    Ok(HttpResponse::Ok().json(JobsOverview {
        queues: depths
            .iter()
            .map(|d| QueueDto {
                queue: d.queue.as_str(),
                waiting: d.waiting,
                in_flight: d.in_flight,
                delayed: d.delayed,
                dead: d.dead,
                completed_total: d.completed_total,
                retried_total: d.retried_total,
                oldest_age_ms: d.oldest_age_ms,
            })
            .collect(),
        dead_letters: dead
            .into_iter()
            .map(|l| DeadLetterDto {
                queue: l.queue.as_str(),
                job_id: l.job_id.as_str().to_owned(),
                error: l.error,
                revives_at: l.revives_at,
            })
            .collect(),
    }))
}

/// Puts a dead-lettered job back on its queue with fresh attempts. ADMIN only.
#[utoipa::path(
    tag = "admin",
    security(("bearer" = ["ADMIN"])),
    params(("id" = String, Path, description = "The dead job's id")),
    responses(
        (status = 200, body = Redriven),
        (status = 404, description = "JOB_NOT_FOUND", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/admin/jobs/dead/{id}/retry")]
async fn retry_dead(state: Data<AppState>, _admin: Admin, id: Path<String>) -> Result<HttpResponse, ApiError> {
    let job = JobId::new(id.into_inner());
    match state.jobs.retry_dead(&job).await? {
        Some(queue) => {
            tracing::info!(job_id = job.as_str(), queue = queue.as_str(), "dead job re-driven");
            Ok(HttpResponse::Ok().json(Redriven { job_id: job.as_str().to_owned(), queue: queue.as_str() }))
        }
        None => Err(ApiError::new(ProblemKind::JobNotFound, format!("No dead-lettered job {:?}.", job.as_str()))),
    }
}

/// Longest a canary may hold its worker, in milliseconds.
const MAX_CANARY_HOLD_MS: u64 = 60_000;

#[derive(Deserialize, ToSchema, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CanaryRequest {
    /// How long the canary holds its worker, 0 to 60000 ms (default 0): a long canary shows
    /// a deploy's drain at work.
    #[serde(default)]
    #[schema(maximum = 60_000)]
    hold_ms: u64,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CanarySent {
    job_id: String,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CanaryDto {
    job_id: String,
    /// `PENDING` until a worker has run it, then `DONE`.
    status: &'static str,
    /// How many times it ran: more than 1 only if a worker died mid-run and another took over.
    runs: u64,
    /// The worker (consumer name) that ran it last.
    worker: Option<String>,
    ran_at: Option<DateTime<Utc>>,
}

/// Sends a canary job through the whole pipeline (outbox, queue, a worker) to prove it works
/// end to end; poll `GET /admin/jobs/canary/{id}` for its run. ADMIN only.
#[utoipa::path(
    tag = "admin",
    security(("bearer" = ["ADMIN"])),
    request_body = CanaryRequest,
    responses(
        (status = 202, body = CanarySent),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/admin/jobs/canary")]
async fn send_canary(
    state: Data<AppState>,
    _admin: Admin,
    body: JsonBody<CanaryRequest>,
) -> Result<HttpResponse, ApiError> {
    let CanaryRequest { hold_ms } = body.into_inner();
    if hold_ms > MAX_CANARY_HOLD_MS {
        return Err(ValidationErrors::single("holdMs", format!("must be at most {MAX_CANARY_HOLD_MS}")).into());
    }
    let id = state.jobs.send_canary(Duration::from_millis(hold_ms)).await?;
    tracing::info!(job_id = id.as_str(), hold_ms, "canary sent");
    Ok(HttpResponse::Accepted().json(CanarySent { job_id: id.as_str().to_owned() }))
}

/// What became of a canary. ADMIN only.
#[utoipa::path(
    tag = "admin",
    security(("bearer" = ["ADMIN"])),
    params(("id" = String, Path, description = "The canary's job id")),
    responses(
        (status = 200, body = CanaryDto),
        (status = 404, description = "NOT_FOUND: not a canary id", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/admin/jobs/canary/{id}")]
async fn canary(state: Data<AppState>, _admin: Admin, id: Path<String>) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let Some(job) = canary_id(&id) else {
        return Err(ApiError::new(ProblemKind::ResourceNotFound, format!("{id:?} is not a canary job id.")));
    };
    let run = state.jobs.canary(&job).await?;
    Ok(HttpResponse::Ok().json(CanaryDto {
        job_id: job.as_str().to_owned(),
        status: if run.is_some() { "DONE" } else { "PENDING" },
        runs: run.as_ref().map_or(0, |r| r.runs),
        worker: run.as_ref().map(|r| r.last_worker.clone()),
        ran_at: run.map(|r| r.last_run_at),
    }))
}

/// The canary's job id as it was sent: its UUID in any of the forms UUIDs are written in
/// (upper case, braces, no hyphens) names the same canary.
fn canary_id(id: &str) -> Option<JobId> {
    let prefix = ecom_kernel::jobs::CANARY_ID_PREFIX;
    let uuid = uuid::Uuid::parse_str(id.strip_prefix(prefix)?).ok()?;
    Some(JobId::new(format!("{prefix}{}", uuid.hyphenated())))
}
