//! Back-office view of the job queues: depths, dead letters, and re-driving a dead job.

use actix_web::web::{Data, Path};
use actix_web::{get, post, HttpResponse};
use ecom_kernel::jobs::JobId;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

use crate::error::{ApiError, Problem, ProblemKind};
use crate::extract::Admin;
use crate::AppState;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(queues).service(retry_dead);
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
    security(("bearer" = [])),
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
            .map(|l| DeadLetterDto { queue: l.queue.as_str(), job_id: l.job_id.as_str().to_owned(), error: l.error })
            .collect(),
    }))
}

/// Puts a dead-lettered job back on its queue with fresh attempts. ADMIN only.
#[utoipa::path(
    tag = "admin",
    security(("bearer" = [])),
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
