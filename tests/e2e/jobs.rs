use std::time::Duration;

use ecom_kernel::jobs::{JobId, JobQueue, NewJob, QueueName};
use ecom_redis::{ConsumerSettings, QueueConsumer};
use ecom_testkit::TestApp;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::assert_problem;

#[tokio::test]
async fn admins_see_the_queues_and_re_drive_a_dead_job() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let token = Some(admin.access_token.as_str());
    let customer = app.register_customer().await;
    assert_problem(app.get("/v1/admin/jobs", Some(&customer.access_token)).await, StatusCode::FORBIDDEN, "FORBIDDEN")
        .await;

    let overview: Value = app.get("/v1/admin/jobs", token).await.json().await.unwrap();
    let names: Vec<&str> =
        overview["queues"].as_array().unwrap().iter().map(|q| q["queue"].as_str().unwrap()).collect();
    assert_eq!(names, ["checkout", "payment-events", "notifications"]);

    // A job that gives up.
    let job = NewJob {
        id: JobId::new("notify:42"),
        queue: QueueName::Notifications,
        kind: "notifications.send".into(),
        payload: json!({}),
        schema_version: 1,
        max_attempts: 1,
        trace_id: None,
    };
    app.services.jobs.enqueue(job).await.unwrap();
    let consumer = QueueConsumer::new(
        app.services.redis.clone(),
        &app.config.redis_url,
        &app.services.redis_keys,
        QueueName::Notifications,
        "test",
        ConsumerSettings::default(),
    )
    .unwrap();
    consumer.ensure_group().await.unwrap();
    let delivery = consumer.read(1, Duration::from_millis(200)).await.unwrap().remove(0);
    consumer.dead_letter(&delivery, "websocket gateway unreachable").await.unwrap();

    let overview: Value = app.get("/v1/admin/jobs", token).await.json().await.unwrap();
    let notifications = &overview["queues"][2];
    assert_eq!((notifications["dead"].as_u64(), notifications["waiting"].as_u64()), (Some(1), Some(0)));
    assert_eq!(
        overview["deadLetters"][0],
        json!({"queue": "notifications", "jobId": "notify:42", "error": "websocket gateway unreachable", "revivesAt": null}),
        "failed for good: it runs again only when retried"
    );
    let metrics = app.get("/metrics", None).await.text().await.unwrap();
    assert!(metrics.contains(r#"job_queue_jobs{queue="notifications",state="dead"} 1"#), "{metrics}");

    let res = app.post("/v1/admin/jobs/dead/notify:42/retry", &json!({}), token).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.json::<Value>().await.unwrap(), json!({"jobId": "notify:42", "queue": "notifications"}));
    let again = consumer.read(1, Duration::from_millis(200)).await.unwrap();
    assert_eq!((again[0].job.id.as_str(), again[0].job.attempt), ("notify:42", 1), "fresh attempts");
    let res = app.post("/v1/admin/jobs/dead/notify:42/retry", &json!({}), token).await;
    assert_problem(res, StatusCode::NOT_FOUND, "JOB_NOT_FOUND").await;
}

#[tokio::test]
async fn a_canary_is_accepted_pending_until_a_worker_runs_it_and_bad_input_is_refused() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let token = Some(admin.access_token.as_str());
    let customer = app.register_customer().await;
    let res = app.post("/v1/admin/jobs/canary", &json!({}), Some(&customer.access_token)).await;
    assert_problem(res, StatusCode::FORBIDDEN, "FORBIDDEN").await;
    assert_problem(
        app.post("/v1/admin/jobs/canary", &json!({"holdMs": 60_001}), token).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_FAILED",
    )
    .await;
    assert_problem(
        app.post("/v1/admin/jobs/canary", &json!({"holdMs": -1}), token).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_FAILED",
    )
    .await;
    assert_problem(
        app.post("/v1/admin/jobs/canary", &json!({"hold": 1}), token).await,
        StatusCode::BAD_REQUEST,
        "UNKNOWN_FIELD",
    )
    .await;

    let res = app.post("/v1/admin/jobs/canary", &json!({"holdMs": 10}), token).await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let id = res.json::<Value>().await.unwrap()["jobId"].as_str().unwrap().to_owned();
    assert!(id.starts_with("canary:"), "{id}");
    let shown: Value = app.get(&format!("/v1/admin/jobs/canary/{id}"), token).await.json().await.unwrap();
    assert_eq!(shown, json!({"jobId": id, "status": "PENDING", "runs": 0, "worker": null, "ranAt": null}));
    // Published eagerly: it already waits on the queue, not in the outbox.
    let overview: Value = app.get("/v1/admin/jobs", token).await.json().await.unwrap();
    assert_eq!(overview["queues"][2]["waiting"], 1, "{overview}");

    for bad in ["notify:42", "canary:not-a-uuid"] {
        assert_problem(
            app.get(&format!("/v1/admin/jobs/canary/{bad}"), token).await,
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
        )
        .await;
    }
}
