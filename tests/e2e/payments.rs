//! Payments over HTTP: webhooks (signed, recorded once, applied from the provider), refunds,
//! cash on delivery, and who may see what.

use std::time::Duration;

use ecom_gateways::stripe_signature_header;
use ecom_jobs::payments::{PaymentChangedHandler, PaymentEventHandler, RefundHandler};
use ecom_jobs::JobHandler;
use ecom_kernel::jobs::QueueName;
use ecom_kernel::{Currency, CustomerId, Money, OrderId};
use ecom_payments::model::{Payment, PaymentStatus, Provider};
use ecom_payments::service::{CHANGED_KIND, PAYMENT_EVENT_KIND, REFUND_KIND};
use ecom_redis::{ConsumerSettings, QueueConsumer};
use ecom_testkit::TestApp;
use reqwest::StatusCode;
use serde_json::{json, Value};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::assert_problem;

const WEBHOOK_SECRET: &str = "whsec_e2e_secret";

fn usd(amount: i64) -> Money {
    Money::new(amount, Currency::USD)
}

async fn stripe_mock() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/payment_intents"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "pi_e2e", "object": "payment_intent", "status": "requires_capture",
            "amount": 5000, "currency": "usd", "amount_received": 0
        })))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/payment_intents/pi_e2e"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "pi_e2e", "object": "payment_intent", "status": "succeeded",
            "amount": 5000, "currency": "usd", "amount_received": 5000,
            "latest_charge": {"id": "ch_1", "object": "charge", "amount_refunded": 0}
        })))
        .mount(&server)
        .await;
    server
}

/// The api with Stripe as its provider, at `stripe`, and its webhooks signed with `WEBHOOK_SECRET`.
async fn stripe_app(stripe: &MockServer) -> TestApp {
    TestApp::spawn_with(&[
        ("PAYMENT_PROVIDER", "stripe"),
        ("STRIPE_SECRET_KEY", "sk_test_e2e"),
        ("STRIPE_API_BASE", &stripe.uri()),
        ("STRIPE_WEBHOOK_SECRET", WEBHOOK_SECRET),
    ])
    .await
}

fn event_body(id: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "id": id, "object": "event", "type": "payment_intent.succeeded",
        "data": {"object": {"id": "pi_e2e", "object": "payment_intent", "status": "succeeded"}}
    }))
    .unwrap()
}

async fn post_webhook(app: &TestApp, body: &[u8], signature: Option<String>) -> reqwest::Response {
    let mut req = app.client.post(app.url("/v1/payments/webhooks/stripe")).header("content-type", "application/json");
    if let Some(sig) = signature {
        req = req.header("Stripe-Signature", sig);
    }
    req.body(body.to_vec()).send().await.unwrap()
}

async fn waiting(app: &TestApp, token: &str) -> u64 {
    let overview: Value = app.get("/v1/admin/jobs", Some(token)).await.json().await.unwrap();
    overview["queues"][1]["waiting"].as_u64().unwrap()
}

/// A consumer of the payment-events queue, as the worker has.
async fn payment_events(app: &TestApp) -> QueueConsumer {
    let consumer = QueueConsumer::new(
        app.services.redis.clone(),
        &app.config.redis_url,
        &app.services.redis_keys,
        QueueName::PaymentEvents,
        "e2e",
        ConsumerSettings::default(),
    )
    .unwrap();
    consumer.ensure_group().await.unwrap();
    consumer
}

/// Runs the jobs waiting on the payment-events queue, each with its kind's handler, as the worker
/// would.
pub(crate) async fn run_payment_events(app: &TestApp) -> usize {
    let consumer = payment_events(app).await;
    // Scheduled jobs (the simulator's capture events) wait in the delayed set until promoted.
    consumer.promote(100).await.unwrap();
    let (payments, orders) = (app.services.payments.clone(), app.services.orders.clone());
    let events = PaymentEventHandler { payments: payments.clone(), orders: Some(orders.clone()) };
    let refunds = RefundHandler { payments, orders: Some(orders.clone()) };
    let changes = PaymentChangedHandler { orders };
    let mut ran = 0;
    for delivery in consumer.read(10, Duration::from_millis(200)).await.unwrap() {
        let handler: &dyn JobHandler = match delivery.job.kind.as_str() {
            PAYMENT_EVENT_KIND => &events,
            REFUND_KIND => &refunds,
            CHANGED_KIND => &changes,
            other => panic!("no handler for {other}"),
        };
        handler.handle(&delivery.job).await.unwrap();
        assert!(consumer.complete(&delivery, None).await.unwrap());
        ran += 1;
    }
    ran
}

async fn customer_payment(app: &TestApp, provider: Provider) -> (ecom_testkit::Session, Payment) {
    let customer = app.register_customer().await;
    let id: CustomerId = customer.customer_id.parse().unwrap();
    let payment = app.services.payments.open_online(OrderId::new(), id, provider, usd(5000)).await.unwrap();
    (customer, payment)
}

#[tokio::test]
async fn stripe_webhooks_are_verified_recorded_once_and_applied_from_the_provider() {
    let stripe = stripe_mock().await;
    let app = stripe_app(&stripe).await;
    let admin = app.admin().await;
    let (customer, payment) = customer_payment(&app, Provider::Stripe).await;
    let charged = app.services.payments.charge(payment.id, "pm_card_visa").await.unwrap();
    assert_eq!((charged.status, charged.provider_reference.as_deref()), (PaymentStatus::Authorized, Some("pi_e2e")));

    let body = event_body("evt_e2e_1");
    let now = chrono::Utc::now().timestamp();
    // Refused, and nothing recorded or queued: wrong secret, no header, a stale timestamp.
    let forged = stripe_signature_header("whsec_wrong", now, &body);
    for signature in [Some(forged), None, Some(stripe_signature_header(WEBHOOK_SECRET, now - 301, &body))] {
        assert_problem(
            post_webhook(&app, &body, signature).await,
            StatusCode::BAD_REQUEST,
            "WEBHOOK_SIGNATURE_INVALID",
        )
        .await;
    }
    // A body changed after signing.
    let signed = stripe_signature_header(WEBHOOK_SECRET, now, &body);
    let tampered = event_body("evt_e2e_2");
    assert_problem(
        post_webhook(&app, &tampered, Some(signed.clone())).await,
        StatusCode::BAD_REQUEST,
        "WEBHOOK_SIGNATURE_INVALID",
    )
    .await;
    assert_eq!(waiting(&app, &admin.access_token).await, 0);

    // Several v1 signatures, one of them valid (a secret being rolled): accepted.
    let valid_v1 = signed.split(',').find(|p| p.starts_with("v1=")).unwrap().to_owned();
    let rolled = format!("t={now},v1={},{valid_v1}", "0".repeat(64));
    let res = post_webhook(&app, &body, Some(rolled)).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.json::<Value>().await.unwrap(), json!({"received": true, "duplicate": false}));
    let res = post_webhook(&app, &body, Some(signed)).await;
    assert_eq!(res.json::<Value>().await.unwrap(), json!({"received": true, "duplicate": true}));
    assert_eq!(waiting(&app, &admin.access_token).await, 1, "one job for one event");

    assert_eq!(run_payment_events(&app).await, 1);
    let shown: Value =
        app.get(&format!("/v1/payments/{}", payment.id), Some(&customer.access_token)).await.json().await.unwrap();
    assert_eq!(
        (shown["status"].as_str(), shown["providerReference"].as_str()),
        (Some("PAID"), Some("pi_e2e")),
        "{shown}"
    );
    assert_eq!(shown["amount"], json!({"amount": 5000, "currency": "USD"}));
    assert_eq!(shown["refundedAmount"], json!({"amount": 0, "currency": "USD"}));
    // The provider was asked, not the webhook believed.
    let retrieved = stripe.received_requests().await.unwrap();
    assert_eq!(retrieved.iter().filter(|r| r.method.as_str() == "GET").count(), 1);
}

/// A simulated payment, charged and captured: PAID.
async fn paid_simulated(app: &TestApp) -> (ecom_testkit::Session, Payment) {
    let (customer, payment) = customer_payment(app, Provider::Simulated).await;
    let charged = app.services.payments.charge(payment.id, "pm_card_visa").await.unwrap();
    assert_eq!(charged.status, PaymentStatus::Authorized);
    let reference = charged.provider_reference.clone().unwrap();
    // The simulator captures after SIMULATED_CAPTURE_DELAY_MS and queues its own event.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        run_payment_events(app).await;
        let now = app.services.payments.view(payment.id, admin_viewer()).await.unwrap();
        if now.status == PaymentStatus::Paid {
            assert_eq!(now.provider_reference.as_deref(), Some(reference.as_str()));
            return (customer, now);
        }
        assert!(std::time::Instant::now() < deadline, "the simulated capture event never arrived");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn admin_viewer() -> ecom_payments::service::Viewer {
    ecom_payments::service::Viewer { customer_id: CustomerId::new(), admin: true }
}

#[tokio::test]
async fn admins_refund_in_part_then_in_full_and_never_more_than_was_paid() {
    let app = TestApp::spawn_with(&[("SIMULATED_CAPTURE_DELAY_MS", "100")]).await;
    let admin = app.admin().await;
    let token = Some(admin.access_token.as_str());
    let (customer, payment) = paid_simulated(&app).await;
    let refund_url = format!("/v1/payments/{}/refund", payment.id);

    let res = app.post(&refund_url, &json!({}), Some(&customer.access_token)).await;
    assert_problem(res, StatusCode::FORBIDDEN, "FORBIDDEN").await;
    let res = app
        .post(&refund_url, &json!({"amount": {"amount": 2000, "currency": "USD"}, "reason": "damaged"}), token)
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["payment"]["status"], "PARTIALLY_REFUNDED", "{body}");
    assert_eq!(body["payment"]["refundedAmount"]["amount"], 2000);
    assert_eq!(
        (body["refund"]["status"].as_str(), body["refund"]["reason"].as_str()),
        (Some("SUCCEEDED"), Some("damaged"))
    );
    assert!(body["refund"]["providerReference"].as_str().unwrap().starts_with("re_sim_"));

    let over = app.post(&refund_url, &json!({"amount": {"amount": 3001, "currency": "USD"}}), token).await;
    let problem = assert_problem(over, StatusCode::UNPROCESSABLE_ENTITY, "REFUND_EXCEEDS_PAID").await;
    assert_eq!(problem["errors"][0]["field"], "amount");
    for bad in
        [json!({"amount": {"amount": 0, "currency": "USD"}}), json!({"amount": {"amount": 100, "currency": "EUR"}})]
    {
        assert_problem(app.post(&refund_url, &bad, token).await, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_FAILED")
            .await;
    }
    assert_problem(
        app.post(&refund_url, &json!({"amount": 5}), token).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_FAILED",
    )
    .await;
    // A NUL byte, which PostgreSQL refuses in text, never reaches it.
    let nul = app.post(&refund_url, &json!({"reason": "damaged\u{0}"}), token).await;
    let problem = assert_problem(nul, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_FAILED").await;
    assert_eq!(problem["errors"][0]["field"], "reason");

    let res = app.post(&refund_url, &json!({}), token).await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    assert_eq!(
        (body["payment"]["status"].as_str(), body["refund"]["amount"]["amount"].as_i64()),
        (Some("REFUNDED"), Some(3000))
    );
    assert_problem(app.post(&refund_url, &json!({}), token).await, StatusCode::CONFLICT, "INVALID_TRANSITION").await;

    // The owner sees the payment and its two refunds; another customer is told it does not exist.
    let shown: Value =
        app.get(&format!("/v1/payments/{}", payment.id), Some(&customer.access_token)).await.json().await.unwrap();
    assert_eq!(shown["status"], "REFUNDED");
    assert_eq!(shown["refunds"].as_array().unwrap().len(), 2);
    let stranger = app.register_customer().await;
    let res = app.get(&format!("/v1/payments/{}", payment.id), Some(&stranger.access_token)).await;
    assert_problem(res, StatusCode::NOT_FOUND, "PAYMENT_NOT_FOUND").await;
    assert_problem(
        app.get(&format!("/v1/payments/{}", uuid::Uuid::now_v7()), token).await,
        StatusCode::NOT_FOUND,
        "PAYMENT_NOT_FOUND",
    )
    .await;
}

#[tokio::test]
async fn a_declined_test_card_ends_failed_with_its_reason() {
    let app = TestApp::spawn().await;
    let (customer, payment) = customer_payment(&app, Provider::Simulated).await;
    let failed = app.services.payments.charge(payment.id, "pm_card_chargeDeclinedInsufficientFunds").await.unwrap();
    assert_eq!(failed.status, PaymentStatus::Failed);
    let shown: Value =
        app.get(&format!("/v1/payments/{}", payment.id), Some(&customer.access_token)).await.json().await.unwrap();
    assert_eq!(
        (shown["status"].as_str(), shown["failureReason"].as_str()),
        (Some("FAILED"), Some("insufficient_funds"))
    );
}

#[tokio::test]
async fn cash_on_delivery_is_paid_once_the_exact_amount_is_recorded() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let token = Some(admin.access_token.as_str());
    let customer = app.register_customer().await;
    let order = OrderId::new();
    let cod = app
        .services
        .payments
        .open_cash_on_delivery(order, customer.customer_id.parse().unwrap(), usd(4200))
        .await
        .unwrap();
    assert_eq!(cod.status, PaymentStatus::CollectOnDelivery);

    let record = |amount: i64, order: OrderId| json!({"orderId": order.to_string(), "amountCollected": {"amount": amount, "currency": "USD"}});
    assert_problem(
        app.post("/v1/payments/cod/record", &record(4200, order), Some(&customer.access_token)).await,
        StatusCode::FORBIDDEN,
        "FORBIDDEN",
    )
    .await;
    assert_problem(
        app.post("/v1/payments/cod/record", &record(4000, order), token).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "AMOUNT_MISMATCH",
    )
    .await;
    assert_problem(
        app.post("/v1/payments/cod/record", &record(4200, OrderId::new()), token).await,
        StatusCode::NOT_FOUND,
        "PAYMENT_NOT_FOUND",
    )
    .await;
    assert_problem(
        app.post("/v1/payments/cod/record", &json!({"orderId": "nope"}), token).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_FAILED",
    )
    .await;
    for _ in 0..2 {
        let res = app.post("/v1/payments/cod/record", &record(4200, order), token).await;
        assert_eq!(res.status(), StatusCode::OK);
        let body: Value = res.json().await.unwrap();
        assert_eq!((body["status"].as_str(), body["provider"].as_str()), (Some("PAID"), Some("cash_on_delivery")));
    }
    // Cash goes back by hand: the refund is booked as done at once.
    let res = app.post(&format!("/v1/payments/{}/refund", cod.id), &json!({"reason": "returned"}), token).await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    assert_eq!(
        (body["payment"]["status"].as_str(), body["refund"]["status"].as_str()),
        (Some("REFUNDED"), Some("SUCCEEDED"))
    );
}

/// Stripe's side of a flaky network: it charges once per idempotency key and replays the charge
/// for a repeated key; its answer to the very first request comes too late (the client times out).
#[derive(Clone, Default)]
struct SlowFirstAnswer {
    charges: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, String>>>,
    requests: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl wiremock::Respond for SlowFirstAnswer {
    fn respond(&self, request: &wiremock::Request) -> ResponseTemplate {
        let key = request.headers.get("idempotency-key").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        let n = self.requests.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let mut charges = self.charges.lock().unwrap();
        let next = format!("pi_once_{}", charges.len() + 1);
        let id = charges.entry(key).or_insert(next).clone();
        let answer = ResponseTemplate::new(200).set_body_json(json!({
            "id": id, "object": "payment_intent", "status": "succeeded",
            "amount": 5000, "currency": "usd", "amount_received": 5000
        }));
        if n == 0 {
            answer.set_delay(Duration::from_millis(2500))
        } else {
            answer
        }
    }
}

#[tokio::test]
async fn a_charge_retried_after_a_timeout_charges_the_card_once() {
    let stripe = MockServer::start().await;
    let stripe_side = SlowFirstAnswer::default();
    Mock::given(method("POST")).and(path("/v1/payment_intents")).respond_with(stripe_side.clone()).mount(&stripe).await;
    let app = TestApp::spawn_with(&[
        ("PAYMENT_PROVIDER", "stripe"),
        ("STRIPE_SECRET_KEY", "sk_test_e2e"),
        ("STRIPE_API_BASE", &stripe.uri()),
        ("PAYMENT_PROVIDER_TIMEOUT_SECS", "1"),
    ])
    .await;
    let (_customer, payment) = customer_payment(&app, Provider::Stripe).await;

    let charged = app.services.payments.charge(payment.id, "pm_card_visa").await.unwrap();
    assert_eq!((charged.status, charged.provider_reference.as_deref()), (PaymentStatus::Paid, Some("pi_once_1")));
    // The saga running the step again (a redelivered job) asks nobody: the payment left PENDING.
    let again = app.services.payments.charge(payment.id, "pm_card_visa").await.unwrap();
    assert_eq!(again, charged);

    let sent = stripe.received_requests().await.unwrap();
    assert_eq!(sent.len(), 2, "the timed-out request and its retry");
    let keys: Vec<_> =
        sent.iter().map(|r| r.headers.get("idempotency-key").unwrap().to_str().unwrap().to_owned()).collect();
    assert_eq!(keys[0], keys[1], "the retry reuses the key");
    assert_eq!(keys[0], format!("order-{}-charge", payment.order_id));
    assert_eq!(stripe_side.charges.lock().unwrap().len(), 1, "exactly one charge at the provider");
}

#[tokio::test]
async fn a_refund_while_the_provider_is_down_is_booked_202_and_finished_by_its_job() {
    let stripe = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/payment_intents"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "pi_r", "object": "payment_intent", "status": "succeeded",
            "amount": 5000, "currency": "usd", "amount_received": 5000
        })))
        .mount(&stripe)
        .await;
    let down = Mock::given(method("POST"))
        .and(path("/v1/refunds"))
        .respond_with(ResponseTemplate::new(503))
        .mount_as_scoped(&stripe)
        .await;
    let app = TestApp::spawn_with(&[
        ("PAYMENT_PROVIDER", "stripe"),
        ("STRIPE_SECRET_KEY", "sk_test_e2e"),
        ("STRIPE_API_BASE", &stripe.uri()),
    ])
    .await;
    let admin = app.admin().await;
    let token = Some(admin.access_token.as_str());
    let (_customer, payment) = customer_payment(&app, Provider::Stripe).await;
    assert_eq!(app.services.payments.charge(payment.id, "pm_card_visa").await.unwrap().status, PaymentStatus::Paid);

    let res = app
        .post(
            &format!("/v1/payments/{}/refund", payment.id),
            &json!({"amount": {"amount": 1500, "currency": "USD"}}),
            token,
        )
        .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let body: Value = res.json().await.unwrap();
    assert_eq!(
        (body["refund"]["status"].as_str(), body["payment"]["refundedAmount"]["amount"].as_i64()),
        (Some("REQUESTED"), Some(1500))
    );
    // Booked: a second refund cannot take the same money.
    let res = app
        .post(
            &format!("/v1/payments/{}/refund", payment.id),
            &json!({"amount": {"amount": 3501, "currency": "USD"}}),
            token,
        )
        .await;
    assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "REFUND_EXCEEDS_PAID").await;

    drop(down);
    Mock::given(method("POST"))
        .and(path("/v1/refunds"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"id": "re_late", "object": "refund", "status": "succeeded", "amount": 1500, "currency": "usd"}),
        ))
        .mount(&stripe)
        .await;
    let consumer = payment_events(&app).await;
    let handler = ecom_jobs::payments::RefundHandler {
        payments: app.services.payments.clone(),
        orders: Some(app.services.orders.clone()),
    };
    let delivery = consumer.read(1, Duration::from_millis(200)).await.unwrap().remove(0);
    handler.handle(&delivery.job).await.unwrap();
    assert!(consumer.complete(&delivery, None).await.unwrap());

    let shown: Value = app.get(&format!("/v1/payments/{}", payment.id), token).await.json().await.unwrap();
    assert_eq!(shown["status"], "PARTIALLY_REFUNDED");
    assert_eq!(
        (shown["refunds"][0]["status"].as_str(), shown["refunds"][0]["providerReference"].as_str()),
        (Some("SUCCEEDED"), Some("re_late"))
    );
    let keys: Vec<String> = stripe
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path() == "/v1/refunds")
        .map(|r| r.headers.get("idempotency-key").unwrap().to_str().unwrap().to_owned())
        .collect();
    assert!(keys.len() >= 2 && keys.iter().all(|k| *k == keys[0]), "every try carries the refund's key: {keys:?}");
}

#[tokio::test]
async fn a_webhook_about_a_charge_never_recorded_finds_its_payment_by_what_stripe_kept() {
    let stripe = MockServer::start().await;
    let app = stripe_app(&stripe).await;
    // Stripe charged, and the worker stopped before it recorded the answer: the payment still
    // waits for it, with no reference; Stripe keeps the payment's id with the charge.
    let (customer, payment) = customer_payment(&app, Provider::Stripe).await;
    Mock::given(method("GET"))
        .and(path("/v1/payment_intents/pi_lost"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "pi_lost", "object": "payment_intent", "status": "succeeded",
            "amount": 5000, "currency": "usd", "amount_received": 5000,
            "metadata": {"order_id": payment.order_id.to_string(), "payment_id": payment.id.to_string()}
        })))
        .mount(&stripe)
        .await;
    let body = serde_json::to_vec(&json!({
        "id": "evt_lost", "object": "event", "type": "payment_intent.succeeded",
        "data": {"object": {"id": "pi_lost", "object": "payment_intent", "status": "succeeded"}}
    }))
    .unwrap();
    let signature = stripe_signature_header(WEBHOOK_SECRET, chrono::Utc::now().timestamp(), &body);
    assert_eq!(post_webhook(&app, &body, Some(signature)).await.status(), StatusCode::OK);

    assert_eq!(run_payment_events(&app).await, 1);

    let shown: Value =
        app.get(&format!("/v1/payments/{}", payment.id), Some(&customer.access_token)).await.json().await.unwrap();
    assert_eq!((shown["status"].as_str(), shown["providerReference"].as_str()), (Some("PAID"), Some("pi_lost")));
}
