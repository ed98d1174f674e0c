//! The simulator against a real Redis, under a key prefix of its own per test.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::TimeDelta;
use deadpool_redis::{Config, Pool, Runtime};
use ecom_gateways::{SimulatedGateway, DEFAULT_CAPTURE_DELAY};
use ecom_kernel::jobs::QueueName;
use ecom_kernel::{Currency, Money};
use ecom_payments::model::{DeclineReason, EventKind, Provider, ProviderState, RefundStatus};
use ecom_payments::ports::{ChargeLookup, GatewayError, PaymentGateway, RefundRequest};
use ecom_payments::service::{payment_event_job, PaymentEventJob, PAYMENT_EVENT_KIND};
use ecom_testkit::TestRedis;

use crate::support::{charge_request, noon, ManualClock, RecordingQueue};

struct Sim {
    gateway: SimulatedGateway,
    clock: Arc<ManualClock>,
    queue: Arc<RecordingQueue>,
    redis: TestRedis,
}

fn pool(redis: &TestRedis) -> Pool {
    Config::from_url(redis.url()).create_pool(Some(Runtime::Tokio1)).unwrap()
}

fn sim() -> Sim {
    let redis = TestRedis::new();
    let clock = Arc::new(ManualClock::at(noon()));
    let queue = Arc::new(RecordingQueue::default());
    let gateway =
        SimulatedGateway::new(pool(&redis), redis.prefix(), queue.clone(), clock.clone(), DEFAULT_CAPTURE_DELAY);
    Sim { gateway, clock, queue, redis }
}

fn usd(amount: i64) -> Money {
    Money::new(amount, Currency::USD)
}

fn refund(key: &str, reference: &str, amount: i64) -> RefundRequest {
    RefundRequest { idempotency_key: key.into(), reference: reference.into(), amount: usd(amount), reason: None }
}

#[tokio::test]
async fn the_visa_and_mastercard_tokens_authorize() {
    let sim = sim();
    for token in ["pm_card_visa", "pm_card_mastercard"] {
        let seen = sim.gateway.charge(&charge_request(token, usd(1999), token)).await.unwrap();

        assert!(seen.reference.starts_with("pi_sim_"), "{}", seen.reference);
        assert_eq!(seen.state, ProviderState::Authorized);
        assert_eq!(seen.amount, usd(1999));
        assert_eq!(seen.refunded, usd(0));
    }
}

#[tokio::test]
async fn the_decline_tokens_decline_with_their_reasons() {
    let sim = sim();
    for (token, reason) in [
        ("pm_card_chargeDeclined", DeclineReason::CardDeclined),
        ("pm_card_chargeDeclinedInsufficientFunds", DeclineReason::InsufficientFunds),
        ("pm_card_chargeDeclinedExpiredCard", DeclineReason::ExpiredCard),
    ] {
        let result = sim.gateway.charge(&charge_request(token, usd(1999), token)).await;

        assert!(matches!(&result, Err(GatewayError::Declined(r)) if *r == reason), "{token}: {result:?}");
        assert_eq!(sim.gateway.charges_made(token).await.unwrap(), 0);
    }
    assert!(sim.queue.scheduled().is_empty());
}

#[tokio::test]
async fn unknown_tokens_and_raw_card_numbers_are_rejected() {
    let sim = sim();
    let unknown = sim.gateway.charge(&charge_request("k1", usd(1999), "tok_whatever")).await;
    let raw = sim.gateway.charge(&charge_request("k2", usd(1999), "4242424242424242")).await;

    assert!(matches!(&unknown, Err(GatewayError::Rejected(m)) if m == "unknown test token"), "{unknown:?}");
    assert!(matches!(&raw, Err(GatewayError::Rejected(m)) if !m.contains("4242")), "{raw:?}");
    assert!(sim.redis.keys().is_empty());
}

#[tokio::test]
async fn the_same_idempotency_key_charges_once_and_returns_the_same_reference() {
    let sim = sim();
    let request = charge_request("order-1-charge", usd(1999), "pm_card_visa");

    let first = sim.gateway.charge(&request).await.unwrap();
    let second = sim.gateway.charge(&request).await.unwrap();

    assert_eq!(first.reference, second.reference);
    assert_eq!(first, second, "a replay answers what the charge did");
    assert_eq!(sim.gateway.retrieve(&first.reference).await.unwrap(), first, "the answer is what was stored");
    assert_eq!(sim.gateway.charges_made("order-1-charge").await.unwrap(), 1);
    assert_eq!(sim.queue.scheduled().len(), 1);
}

#[tokio::test]
async fn a_charge_is_found_by_its_idempotency_key_and_looking_never_charges() {
    let sim = sim();
    assert_eq!(sim.gateway.find_charge("order-2-charge").await.unwrap(), ChargeLookup::NotFound);
    assert_eq!(sim.gateway.charges_made("order-2-charge").await.unwrap(), 0, "looking made no charge");

    let request = charge_request("order-2-charge", usd(1999), "pm_card_visa");
    let made = sim.gateway.charge(&request).await.unwrap();
    assert_eq!(made.payment_id, Some(request.payment_id), "the charge keeps the shop's payment id");
    assert_eq!(sim.gateway.retrieve(&made.reference).await.unwrap().payment_id, Some(request.payment_id));
    assert_eq!(sim.gateway.find_charge("order-2-charge").await.unwrap(), ChargeLookup::Found(made));
    assert_eq!(sim.gateway.charges_made("order-2-charge").await.unwrap(), 1);
}

#[tokio::test]
async fn concurrent_charges_with_one_key_charge_once() {
    let sim = sim();
    let request = charge_request("order-2-charge", usd(1999), "pm_card_visa");

    let (a, b, c) =
        tokio::join!(sim.gateway.charge(&request), sim.gateway.charge(&request), sim.gateway.charge(&request));

    let references = [a.unwrap().reference, b.unwrap().reference, c.unwrap().reference];
    assert!(references.iter().all(|r| *r == references[0]), "{references:?}");
    assert_eq!(sim.gateway.charges_made("order-2-charge").await.unwrap(), 1);
}

#[tokio::test]
async fn an_idempotency_key_reused_for_another_amount_is_rejected() {
    let sim = sim();
    sim.gateway.charge(&charge_request("k", usd(1999), "pm_card_visa")).await.unwrap();

    let result = sim.gateway.charge(&charge_request("k", usd(1), "pm_card_visa")).await;

    assert!(matches!(result, Err(GatewayError::Rejected(_))), "{result:?}");
    assert_eq!(sim.gateway.charges_made("k").await.unwrap(), 1);
}

#[tokio::test]
async fn a_charge_schedules_its_capture_event_for_the_capture_time() {
    let sim = sim();

    let seen = sim.gateway.charge(&charge_request("k", usd(1999), "pm_card_visa")).await.unwrap();

    let scheduled = sim.queue.scheduled();
    assert_eq!(scheduled.len(), 1);
    let (job, at) = &scheduled[0];
    assert_eq!(*at, noon() + TimeDelta::seconds(1));
    assert_eq!(job.queue, QueueName::PaymentEvents);
    assert_eq!(job.kind, PAYMENT_EVENT_KIND);
    let payload: PaymentEventJob = serde_json::from_value(job.payload.clone()).unwrap();
    assert!(payload.event_id.starts_with("evt_sim_"), "{}", payload.event_id);
    assert_eq!(
        *job,
        payment_event_job(Provider::Simulated, &payload.event_id, &seen.reference, EventKind::PaymentSucceeded)
    );
}

#[tokio::test]
async fn retrieve_is_authorized_before_the_capture_time_and_succeeded_from_then_on() {
    let sim = sim();
    let charged = sim.gateway.charge(&charge_request("k", usd(1999), "pm_card_visa")).await.unwrap();

    sim.clock.set(noon() + TimeDelta::milliseconds(999));
    let before = sim.gateway.retrieve(&charged.reference).await.unwrap();
    sim.clock.set(noon() + TimeDelta::seconds(1));
    let at = sim.gateway.retrieve(&charged.reference).await.unwrap();
    sim.clock.set(noon() + TimeDelta::hours(1));
    let later = sim.gateway.retrieve(&charged.reference).await.unwrap();

    assert_eq!(before.state, ProviderState::Authorized);
    assert_eq!(at.state, ProviderState::Succeeded);
    assert_eq!(later.state, ProviderState::Succeeded);
    assert_eq!(later.amount, usd(1999));
    assert_eq!(later.refunded, usd(0));
}

#[tokio::test]
async fn capture_marks_the_payment_captured_now() {
    let sim = sim();
    let charged = sim.gateway.charge(&charge_request("k", usd(1999), "pm_card_visa")).await.unwrap();

    let captured = sim.gateway.capture(&charged.reference, "capture-k").await.unwrap();

    assert_eq!(captured.state, ProviderState::Succeeded);
    assert_eq!(sim.gateway.retrieve(&charged.reference).await.unwrap().state, ProviderState::Succeeded);
}

#[tokio::test]
async fn refunds_are_idempotent_and_never_exceed_what_was_captured() {
    let sim = sim();
    let charged = sim.gateway.charge(&charge_request("k", usd(1000), "pm_card_visa")).await.unwrap();
    sim.clock.set(noon() + TimeDelta::seconds(2));

    let first = sim.gateway.refund(&refund("refund-1", &charged.reference, 300)).await.unwrap();
    let replay = sim.gateway.refund(&refund("refund-1", &charged.reference, 300)).await.unwrap();
    let too_much = sim.gateway.refund(&refund("refund-2", &charged.reference, 701)).await;
    let rest = sim.gateway.refund(&refund("refund-3", &charged.reference, 700)).await.unwrap();
    let more = sim.gateway.refund(&refund("refund-4", &charged.reference, 1)).await;

    assert!(first.reference.starts_with("re_sim_"), "{}", first.reference);
    assert_eq!(first.status, RefundStatus::Succeeded);
    assert_eq!(replay, first);
    assert!(matches!(too_much, Err(GatewayError::Rejected(_))), "{too_much:?}");
    assert_ne!(rest.reference, first.reference);
    assert!(matches!(more, Err(GatewayError::Rejected(_))), "{more:?}");
    let seen = sim.gateway.retrieve(&charged.reference).await.unwrap();
    assert_eq!(seen.refunded, usd(1000));
}

#[tokio::test]
async fn nothing_can_be_refunded_before_the_capture() {
    let sim = sim();
    let charged = sim.gateway.charge(&charge_request("k", usd(1000), "pm_card_visa")).await.unwrap();

    let result = sim.gateway.refund(&refund("refund-1", &charged.reference, 100)).await;

    assert!(matches!(result, Err(GatewayError::Rejected(_))), "{result:?}");
}

#[tokio::test]
async fn a_refund_in_another_currency_is_refused() {
    let sim = sim();
    let charged = sim.gateway.charge(&charge_request("k", usd(1000), "pm_card_visa")).await.unwrap();
    sim.clock.set(noon() + TimeDelta::seconds(2));
    let mut request = refund("refund-1", &charged.reference, 100);
    request.amount = Money::new(100, Currency::EUR);

    let result = sim.gateway.refund(&request).await;

    assert!(matches!(result, Err(GatewayError::Rejected(_))), "{result:?}");
}

#[tokio::test]
async fn unknown_references_are_rejected() {
    let sim = sim();

    let retrieved = sim.gateway.retrieve("pi_sim_nope").await;
    let captured = sim.gateway.capture("pi_sim_nope", "k").await;
    let refunded = sim.gateway.refund(&refund("r", "pi_sim_nope", 1)).await;

    assert!(matches!(retrieved, Err(GatewayError::Rejected(_))), "{retrieved:?}");
    assert!(matches!(captured, Err(GatewayError::Rejected(_))), "{captured:?}");
    assert!(matches!(refunded, Err(GatewayError::Rejected(_))), "{refunded:?}");
}

#[tokio::test]
async fn the_state_lives_under_the_key_prefix() {
    let sim = sim();
    sim.gateway.charge(&charge_request("k", usd(1000), "pm_card_visa")).await.unwrap();

    let keys = sim.redis.keys();

    assert!(!keys.is_empty());
    let expected = format!("{}sim:", sim.redis.prefix());
    assert!(keys.iter().all(|k| k.starts_with(&expected)), "{keys:?}");
}

#[tokio::test]
async fn two_gateways_on_one_redis_see_the_same_payments() {
    let sim = sim();
    let other = SimulatedGateway::new(
        pool(&sim.redis),
        sim.redis.prefix(),
        sim.queue.clone(),
        sim.clock.clone(),
        DEFAULT_CAPTURE_DELAY,
    );
    let charged = sim.gateway.charge(&charge_request("k", usd(1000), "pm_card_visa")).await.unwrap();

    let replayed = other.charge(&charge_request("k", usd(1000), "pm_card_visa")).await.unwrap();

    assert_eq!(replayed.reference, charged.reference);
    assert_eq!(other.retrieve(&charged.reference).await.unwrap().amount, usd(1000));
}

#[tokio::test]
async fn latency_is_simulated() {
    let sim = sim();
    let slow = SimulatedGateway::new(
        pool(&sim.redis),
        sim.redis.prefix(),
        sim.queue.clone(),
        sim.clock.clone(),
        DEFAULT_CAPTURE_DELAY,
    )
    .with_latency(Duration::from_millis(50));
    let started = Instant::now();

    slow.charge(&charge_request("k", usd(1000), "pm_card_visa")).await.unwrap();

    assert!(started.elapsed() >= Duration::from_millis(50));
}

#[tokio::test]
async fn the_gateway_is_the_simulator() {
    assert_eq!(sim().gateway.provider(), Provider::Simulated);
}
