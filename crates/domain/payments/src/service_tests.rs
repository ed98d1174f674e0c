#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use chrono::{DateTime, Utc};
use ecom_kernel::clock::MockClock;
use ecom_kernel::jobs::NewJob;
use ecom_kernel::{Currency, CustomerId, Money, OrderId};
use mockall::predicate::eq;
use mockall::Sequence;

use crate::model::{
    DeclineReason, EventKind, GatewayEvent, Payment, PaymentStatus, Provider, ProviderPayment, ProviderState, Refund,
    RefundStatus,
};
use crate::ports::{
    ChargeLookup, GatewayError, MockGateways, MockJobPublisher, MockPaymentGateway, MockPaymentRepository,
    MockWebhookVerifier, ProviderRefund, SaveError, WebhookRequest,
};
use crate::service::{
    EventApplied, PaymentService, WebhookOutcome, CHANGED_KIND, PAYMENT_EVENT_KIND, REFUND_KIND, TOKEN_USED,
};
use crate::PaymentError;

fn usd(amount: i64) -> Money {
    Money::new(amount, Currency::USD)
}

fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000, 0).unwrap()
}

fn clock() -> Arc<MockClock> {
    let mut clock = MockClock::new();
    clock.expect_now().returning(now);
    Arc::new(clock)
}

fn gateways(gateway: MockPaymentGateway) -> Arc<MockGateways> {
    let gateway: Arc<dyn crate::ports::PaymentGateway> = Arc::new(gateway);
    let mut gateways = MockGateways::new();
    gateways.expect_get().returning(move |_| Some(gateway.clone()));
    Arc::new(gateways)
}

fn service(repo: MockPaymentRepository, gateway: MockPaymentGateway, publisher: MockJobPublisher) -> PaymentService {
    PaymentService::new(Arc::new(repo), gateways(gateway), Arc::new(publisher), clock())
}

fn pending() -> Payment {
    Payment::online(OrderId::new(), CustomerId::new(), Provider::Stripe, usd(5000), now())
}

fn paid() -> Payment {
    let mut p = pending();
    p.succeed("pi_1", now()).unwrap();
    p
}

#[pollster::test]
async fn a_charge_uses_the_orders_idempotency_key_and_records_what_the_provider_says() {
    let payment = pending();
    let mut repo = MockPaymentRepository::new();
    let stored = payment.clone();
    repo.expect_get().returning(move |_| Ok(Some(stored.clone())));
    let key = format!("order-{}-charge", payment.order_id);
    let mut gateway = MockPaymentGateway::new();
    gateway
        .expect_charge()
        .withf(move |r| r.idempotency_key == key && r.amount == usd(5000) && r.token == "pm_card_visa")
        .times(1)
        .returning(|_| {
            Ok(ProviderPayment {
                reference: "pi_9".into(),
                state: ProviderState::Authorized,
                amount: usd(5000),
                refunded: usd(0),
                payment_id: None,
            })
        });
    repo.expect_update()
        .withf(|expected, next, jobs| {
            expected.status == PaymentStatus::Pending && next.status == PaymentStatus::Authorized && jobs.is_empty()
        })
        .times(1)
        .returning(|_, _, _| Ok(()));
    let charged = service(repo, gateway, MockJobPublisher::new()).charge(payment.id, "pm_card_visa").await.unwrap();
    assert_eq!((charged.status, charged.provider_reference.as_deref()), (PaymentStatus::Authorized, Some("pi_9")));
}

#[pollster::test]
async fn a_declined_charge_ends_failed_and_an_unreachable_provider_changes_nothing() {
    let payment = pending();
    let mut repo = MockPaymentRepository::new();
    let stored = payment.clone();
    repo.expect_get().returning(move |_| Ok(Some(stored.clone())));
    let mut gateway = MockPaymentGateway::new();
    gateway.expect_charge().times(1).returning(|_| Err(GatewayError::Declined(DeclineReason::InsufficientFunds)));
    repo.expect_update().withf(|_, next, _| next.status == PaymentStatus::Failed).times(1).returning(|_, _, _| Ok(()));
    let failed = service(repo, gateway, MockJobPublisher::new()).charge(payment.id, "pm_x").await.unwrap();
    assert_eq!(failed.failure_reason.as_deref(), Some("insufficient_funds"));

    let mut repo = MockPaymentRepository::new();
    let stored = payment.clone();
    repo.expect_get().returning(move |_| Ok(Some(stored.clone())));
    repo.expect_update().never();
    let mut gateway = MockPaymentGateway::new();
    gateway.expect_charge().times(1).returning(|_| Err(GatewayError::Unavailable("timeout".into())));
    let err = service(repo, gateway, MockJobPublisher::new()).charge(payment.id, "pm_card_visa").await.unwrap_err();
    assert!(matches!(err, PaymentError::ProviderUnavailable(_)), "{err:?}");
}

#[pollster::test]
async fn a_charge_the_provider_reports_under_another_payments_reference_fails_this_payment() {
    let payment = pending();
    let mut repo = MockPaymentRepository::new();
    let stored = payment.clone();
    repo.expect_get().returning(move |_| Ok(Some(stored.clone())));
    let mut gateway = MockPaymentGateway::new();
    gateway.expect_charge().times(1).returning(|_| {
        Ok(ProviderPayment {
            reference: "PAYPAL-ORDER-1".into(),
            state: ProviderState::Succeeded,
            amount: usd(5000),
            refunded: usd(0),
            payment_id: None,
        })
    });
    let mut seq = Sequence::new();
    repo.expect_update()
        .withf(|_, next, _| next.status == PaymentStatus::Paid)
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_, _, _| Err(SaveError::ReferenceTaken));
    repo.expect_update()
        .withf(|expected, next, _| {
            expected.status == PaymentStatus::Pending
                && next.status == PaymentStatus::Failed
                && next.provider_reference.is_none()
        })
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_, _, _| Ok(()));
    let failed = service(repo, gateway, MockJobPublisher::new()).charge(payment.id, "PAYPAL-ORDER-1").await.unwrap();
    assert_eq!(failed.status, PaymentStatus::Failed);
    assert_eq!(failed.failure_reason.as_deref(), Some(TOKEN_USED));
}

#[pollster::test]
async fn a_payment_that_left_pending_is_never_charged_again() {
    let payment = paid();
    let mut repo = MockPaymentRepository::new();
    let stored = payment.clone();
    repo.expect_get().returning(move |_| Ok(Some(stored.clone())));
    let mut gateway = MockPaymentGateway::new();
    gateway.expect_charge().never();
    let again = service(repo, gateway, MockJobPublisher::new()).charge(payment.id, "pm_card_visa").await.unwrap();
    assert_eq!(again, payment);
}

#[pollster::test]
async fn a_refund_is_booked_with_its_job_before_the_provider_is_asked() {
    let payment = paid();
    let mut seq = Sequence::new();
    let mut repo = MockPaymentRepository::new();
    let mut gateway = MockPaymentGateway::new();
    let mut publisher = MockJobPublisher::new();
    let stored = payment.clone();
    repo.expect_get().returning(move |_| Ok(Some(stored.clone())));
    let booked = Arc::new(std::sync::Mutex::new(None));
    let keep = booked.clone();
    repo.expect_book_refund()
        .withf(|_, next, refund, jobs| {
            next.refunded == usd(2000)
                && next.status == PaymentStatus::PartiallyRefunded
                && refund.status == RefundStatus::Requested
                && jobs.len() == 1
                && jobs[0].kind == REFUND_KIND
        })
        .times(1)
        .in_sequence(&mut seq)
        .returning(move |_, _, refund, _| {
            *keep.lock().unwrap() = Some(refund.clone());
            Ok(())
        });
    publisher.expect_publish().times(1).in_sequence(&mut seq).returning(|_| ());
    let read = booked.clone();
    repo.expect_refund().returning(move |_| Ok(read.lock().unwrap().clone()));
    gateway
        .expect_refund()
        .withf(|r| r.reference == "pi_1" && r.amount == usd(2000) && r.idempotency_key.starts_with("refund-"))
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_| Ok(ProviderRefund { reference: "re_1".into(), status: RefundStatus::Succeeded }));
    repo.expect_settle_refund()
        .withf(|refund, restored| refund.status == RefundStatus::Succeeded && restored.is_none())
        .times(1)
        .returning(|_, _| Ok(true));
    let result =
        service(repo, gateway, publisher).refund(payment.id, Some(usd(2000)), Some("damaged".into())).await.unwrap();
    assert_eq!(
        (result.refund.status, result.refund.provider_reference.as_deref()),
        (RefundStatus::Succeeded, Some("re_1"))
    );
}

/// A repository holding `payment` (the cell it reads from).
fn repository_of(payment: &Payment) -> (MockPaymentRepository, Arc<std::sync::Mutex<Payment>>) {
    let mut repo = MockPaymentRepository::new();
    let stored = Arc::new(std::sync::Mutex::new(payment.clone()));
    let read = stored.clone();
    repo.expect_get().returning(move |_| Ok(Some(read.lock().unwrap().clone())));
    (repo, stored)
}

/// A repository holding `payment` that books one refund (the payment as booked is read after)
/// and reads it back from the cell it returns.
fn booking_repository(payment: &Payment) -> (MockPaymentRepository, Arc<std::sync::Mutex<Option<Refund>>>) {
    let (mut repo, stored) = repository_of(payment);
    let booked = Arc::new(std::sync::Mutex::new(None::<Refund>));
    let keep = booked.clone();
    repo.expect_book_refund().times(1).returning(move |_, next, refund, _| {
        *stored.lock().unwrap() = next.clone();
        *keep.lock().unwrap() = Some(refund.clone());
        Ok(())
    });
    let read = booked.clone();
    repo.expect_refund().returning(move |_| Ok(read.lock().unwrap().clone()));
    (repo, booked)
}

#[pollster::test]
async fn a_booked_refund_whose_answer_cannot_be_recorded_now_is_answered_as_requested() {
    let payment = paid();
    let (mut repo, _) = booking_repository(&payment);
    let mut publisher = MockJobPublisher::new();
    publisher.expect_publish().times(1).returning(|_| ());
    let mut gateway = MockPaymentGateway::new();
    gateway.expect_refund().times(1).returning(|_| Err(GatewayError::Rejected("charge disputed".into())));
    // The payment changed since it was read (a capture event, say): the refusal is not recorded
    // by this request; its job records it.
    repo.expect_settle_refund().times(1).returning(|_, _| Err(SaveError::Conflict));
    let result = service(repo, gateway, publisher).refund(payment.id, Some(usd(2000)), None).await.unwrap();
    assert_eq!((result.refund.status, result.payment.refunded), (RefundStatus::Requested, usd(2000)));
}

#[pollster::test]
async fn a_refund_its_job_found_refused_first_is_a_refusal_to_the_admin_too() {
    let payment = paid();
    let (mut repo, _) = repository_of(&payment);
    let booked = Arc::new(std::sync::Mutex::new(None::<Refund>));
    let keep = booked.clone();
    repo.expect_book_refund().times(1).returning(move |_, _, refund, _| {
        // The refund's job runs at once, is refused and records it (the payment as before).
        let mut settled = refund.clone();
        settled.status = RefundStatus::Failed;
        settled.failure_reason = Some("rejected by the provider: charge disputed".into());
        *keep.lock().unwrap() = Some(settled);
        Ok(())
    });
    let read = booked.clone();
    repo.expect_refund().returning(move |_| Ok(read.lock().unwrap().clone()));
    let mut publisher = MockJobPublisher::new();
    publisher.expect_publish().times(1).returning(|_| ());
    let mut gateway = MockPaymentGateway::new();
    gateway.expect_refund().never();
    let err = service(repo, gateway, publisher).refund(payment.id, Some(usd(2000)), None).await.unwrap_err();
    assert!(
        matches!(&err, PaymentError::RefundRefused { payment: p, reason, .. } if *p == payment.id && reason.contains("disputed")),
        "{err:?}"
    );
}

/// A booked refund whose first answer another caller records while this one is still asking:
/// `recorded` is what the other caller recorded, `heard` what this caller's provider call answers.
async fn refund_answered_by_another_first(
    recorded: RefundStatus,
    heard: Result<ProviderRefund, GatewayError>,
) -> Result<crate::service::RefundResult, PaymentError> {
    let payment = paid();
    let (mut repo, booked) = booking_repository(&payment);
    let mut publisher = MockJobPublisher::new();
    publisher.expect_publish().times(1).returning(|_| ());
    let mut gateway = MockPaymentGateway::new();
    let heard = std::sync::Mutex::new(Some(heard));
    gateway.expect_refund().times(1).returning(move |_| heard.lock().unwrap().take().unwrap());
    // The refund's job asked at the same moment and recorded its answer first.
    let first = booked.clone();
    repo.expect_settle_refund().times(1).returning(move |_, _| {
        let mut guard = first.lock().unwrap();
        let refund = guard.as_mut().unwrap();
        refund.status = recorded;
        if recorded == RefundStatus::Failed {
            refund.failure_reason = Some("rejected by the provider: charge disputed".into());
        } else {
            refund.provider_reference = Some("re_job".into());
        }
        Ok(false)
    });
    service(repo, gateway, publisher).refund(payment.id, Some(usd(2000)), None).await
}

#[pollster::test]
async fn a_refund_refused_to_one_caller_but_made_for_the_other_is_made_for_both() {
    // PayPal refuses the second of two requests with one key while the first still runs.
    let heard = Err(GatewayError::Rejected("PREVIOUS_REQUEST_IN_PROGRESS".into()));
    let result = refund_answered_by_another_first(RefundStatus::Succeeded, heard).await.unwrap();
    assert_eq!(
        (result.refund.status, result.refund.provider_reference.as_deref(), result.payment.refunded),
        (RefundStatus::Succeeded, Some("re_job"), usd(2000))
    );
}

#[pollster::test]
async fn a_refund_recorded_refused_first_is_a_refusal_whatever_the_second_caller_heard() {
    let heard = Ok(ProviderRefund { reference: "re_1".into(), status: RefundStatus::Succeeded });
    let err = refund_answered_by_another_first(RefundStatus::Failed, heard).await.unwrap_err();
    assert!(matches!(&err, PaymentError::RefundRefused { reason, .. } if reason.contains("disputed")), "{err:?}");
}

#[pollster::test]
async fn an_over_refund_is_refused_before_anything_is_booked_or_asked() {
    let payment = paid();
    let mut repo = MockPaymentRepository::new();
    let stored = payment.clone();
    repo.expect_get().returning(move |_| Ok(Some(stored.clone())));
    repo.expect_book_refund().never();
    let mut gateway = MockPaymentGateway::new();
    gateway.expect_refund().never();
    let err =
        service(repo, gateway, MockJobPublisher::new()).refund(payment.id, Some(usd(5001)), None).await.unwrap_err();
    assert!(matches!(err, PaymentError::Rule(crate::model::PaymentRuleError::OverRefund { .. })), "{err:?}");
}

#[pollster::test]
async fn a_refund_the_provider_refuses_is_given_back_to_the_payment_and_not_asked_again_by_itself() {
    let payment = paid();
    let mut repo = MockPaymentRepository::new();
    let after = Arc::new(std::sync::Mutex::new(payment.clone()));
    let booked = Arc::new(std::sync::Mutex::new(None::<Refund>));
    let (keep_payment, keep_refund) = (after.clone(), booked.clone());
    let read_payment = after.clone();
    repo.expect_get().returning(move |_| Ok(Some(read_payment.lock().unwrap().clone())));
    let of_order = after.clone();
    repo.expect_of_order().returning(move |_| Ok(vec![of_order.lock().unwrap().clone()]));
    repo.expect_book_refund().times(2).returning(move |_, next, refund, _| {
        *keep_payment.lock().unwrap() = next.clone();
        *keep_refund.lock().unwrap() = Some(refund.clone());
        Ok(())
    });
    let read = booked.clone();
    repo.expect_refund().returning(move |_| Ok(read.lock().unwrap().clone()));
    let listed = booked.clone();
    repo.expect_refunds().returning(move |_| Ok(listed.lock().unwrap().iter().cloned().collect()));
    let mut publisher = MockJobPublisher::new();
    publisher.expect_publish().returning(|_| ());
    let mut gateway = MockPaymentGateway::new();
    gateway.expect_refund().times(2).returning(|_| Err(GatewayError::Rejected("charge disputed".into())));
    let (restore, settled) = (after.clone(), booked.clone());
    repo.expect_settle_refund()
        .withf(|refund, restored| {
            refund.status == RefundStatus::Failed
                && restored
                    .as_ref()
                    .is_some_and(|c| c.payment.refunded == usd(0) && c.payment.status == PaymentStatus::Paid)
        })
        .times(2)
        .returning(move |refund, restored| {
            *restore.lock().unwrap() = restored.as_ref().unwrap().payment.clone();
            *settled.lock().unwrap() = Some(refund.clone());
            Ok(true)
        });
    let service = service(repo, gateway, publisher);

    // A compensation's refund, refused: the refusal is its answer, the money stays taken.
    let outcome = service.refund_order(payment.order_id, "cancelled").await.unwrap();
    assert!(
        matches!(&outcome, crate::service::OrderRefund::Refused { payment: p, reason }
            if *p == payment.id && reason.contains("charge disputed")),
        "{outcome:?}"
    );
    assert_eq!(after.lock().unwrap().status, PaymentStatus::Paid);
    // Run again, it does not ask again (no third booking or call: the expectations say 2).
    let again = service.refund_order(payment.order_id, "cancelled").await.unwrap();
    assert!(matches!(&again, crate::service::OrderRefund::Refused { payment: p, .. } if *p == payment.id), "{again:?}");
    // An admin still can; refused, the error names the payment and its order for the order to
    // follow the payment back to PAID.
    let err = service.refund(payment.id, None, None).await.unwrap_err();
    assert!(
        matches!(&err, PaymentError::RefundRefused { payment: p, order: o, reason }
            if *p == payment.id && *o == payment.order_id && reason.contains("charge disputed")),
        "{err:?}"
    );
}

fn event(id: &str) -> GatewayEvent {
    GatewayEvent {
        provider: Provider::Stripe,
        event_id: id.into(),
        kind: EventKind::PaymentSucceeded,
        provider_type: "payment_intent.succeeded".into(),
        reference: Some("pi_1".into()),
    }
}

#[pollster::test]
async fn a_webhook_is_recorded_once_and_only_a_new_one_queues_its_job() {
    let mut verifier = MockWebhookVerifier::new();
    verifier.expect_verify().returning(|_| Ok(event("evt_1")));
    let mut repo = MockPaymentRepository::new();
    let mut first = true;
    repo.expect_record_event()
        .withf(|e, job| {
            e.event_id == "evt_1" && job.kind == PAYMENT_EVENT_KIND && job.id.as_str() == "payment-event:stripe:evt_1"
        })
        .times(2)
        .returning(move |_, _| Ok(std::mem::replace(&mut first, false)));
    let mut publisher = MockJobPublisher::new();
    publisher.expect_publish().times(1).returning(|_| ());
    let service = service(repo, MockPaymentGateway::new(), publisher);
    let request = WebhookRequest::default();
    assert!(matches!(service.receive_webhook(&verifier, &request).await.unwrap(), WebhookOutcome::Accepted(_)));
    assert!(matches!(service.receive_webhook(&verifier, &request).await.unwrap(), WebhookOutcome::Duplicate(_)));
}

#[pollster::test]
async fn a_signed_event_whose_id_or_text_cannot_be_stored_is_malformed_and_not_recorded() {
    let longest = "e".repeat(160);
    let mut odd = event("evt_nul");
    odd.reference = Some("pi_1\u{0}".into());
    for (sent, accepted) in
        [(event(&longest), true), (event(&"e".repeat(161)), false), (event(""), false), (odd, false)]
    {
        let mut verifier = MockWebhookVerifier::new();
        let answer = sent.clone();
        verifier.expect_verify().returning(move |_| Ok(answer.clone()));
        let mut repo = MockPaymentRepository::new();
        repo.expect_record_event()
            .withf(|_, job| job.id.as_str().len() <= 200)
            .times(usize::from(accepted))
            .returning(|_, _| Ok(true));
        let mut publisher = MockJobPublisher::new();
        publisher.expect_publish().returning(|_| ());
        let outcome = service(repo, MockPaymentGateway::new(), publisher)
            .receive_webhook(&verifier, &WebhookRequest::default())
            .await;
        if accepted {
            assert!(matches!(outcome, Ok(WebhookOutcome::Accepted(_))), "{:?}", sent.event_id.len());
        } else {
            assert!(matches!(outcome, Err(crate::ports::WebhookError::Malformed(_))), "{:?}", sent.event_id);
        }
    }
}

#[pollster::test]
async fn an_event_is_applied_from_what_the_provider_says_not_from_the_webhook() {
    let mut payment = pending();
    payment.authorize("pi_1", now()).unwrap();
    let mut repo = MockPaymentRepository::new();
    let stored = payment.clone();
    repo.expect_by_reference().with(eq(Provider::Stripe), eq("pi_1")).returning(move |_, _| Ok(Some(stored.clone())));
    let mut gateway = MockPaymentGateway::new();
    gateway.expect_retrieve().with(eq("pi_1")).times(1).returning(|_| {
        Ok(ProviderPayment {
            reference: "pi_1".into(),
            state: ProviderState::Succeeded,
            amount: usd(5000),
            refunded: usd(0),
            payment_id: None,
        })
    });
    repo.expect_update().withf(|_, next, _| next.status == PaymentStatus::Paid).times(1).returning(|_, _, _| Ok(()));
    let applied = service(repo, gateway, MockJobPublisher::new()).apply_event(Provider::Stripe, "pi_1").await.unwrap();
    assert!(matches!(applied, EventApplied::Changed(p) if p.status == PaymentStatus::Paid));
}

#[pollster::test]
async fn an_event_about_a_charge_never_recorded_is_matched_to_its_waiting_payment_by_the_provider() {
    // The worker stopped between Stripe's answer and its write: the payment still waits for its
    // first answer, with no reference. Stripe keeps the payment's id with the charge.
    let waiting = pending();
    let seen = |payment_id, amount| ProviderPayment {
        reference: "pi_lost".into(),
        state: ProviderState::Succeeded,
        amount,
        refunded: usd(0),
        payment_id,
    };
    let mut charged = waiting.clone();
    charged.authorize("pi_other", now()).unwrap();
    let mut declined = waiting.clone();
    declined.fail(&DeclineReason::CardDeclined, now()).unwrap();
    let cases = [
        (Some(waiting.clone()), Ok(seen(Some(waiting.id), usd(5000))), true),
        // Not matched: no id kept, another amount, a payment that has its reference already or
        // is not waiting any more, no such payment, a reference the provider does not know.
        (Some(waiting.clone()), Ok(seen(None, usd(5000))), false),
        (Some(waiting.clone()), Ok(seen(Some(waiting.id), usd(4999))), false),
        (Some(charged), Ok(seen(Some(waiting.id), usd(5000))), false),
        (Some(declined), Ok(seen(Some(waiting.id), usd(5000))), false),
        (None, Ok(seen(Some(waiting.id), usd(5000))), false),
        (Some(waiting.clone()), Err(GatewayError::Rejected("no such payment_intent".into())), false),
    ];
    for (stored, provider_says, matched) in cases {
        let mut repo = MockPaymentRepository::new();
        repo.expect_by_reference().returning(|_, _| Ok(None));
        repo.expect_get().returning(move |_| Ok(stored.clone()));
        let mut gateway = MockPaymentGateway::new();
        gateway.expect_retrieve().with(eq("pi_lost")).times(1).returning(move |_| match &provider_says {
            Ok(seen) => Ok(seen.clone()),
            Err(_) => Err(GatewayError::Rejected("no such payment_intent".into())),
        });
        repo.expect_update()
            .withf(|_, next, _| {
                next.status == PaymentStatus::Paid && next.provider_reference.as_deref() == Some("pi_lost")
            })
            .times(usize::from(matched))
            .returning(|_, _, _| Ok(()));
        let applied =
            service(repo, gateway, MockJobPublisher::new()).apply_event(Provider::Stripe, "pi_lost").await.unwrap();
        if matched {
            assert!(matches!(&applied, EventApplied::Changed(p) if p.id == waiting.id), "{applied:?}");
        } else {
            assert_eq!(applied, EventApplied::UnknownPayment);
        }
    }
}

#[pollster::test]
async fn a_failure_event_fails_a_pending_payment_and_a_repeat_changes_nothing() {
    let mut payment = pending();
    payment.authorize("pi_1", now()).unwrap();
    payment.fail(&DeclineReason::CardDeclined, now()).unwrap();
    let mut repo = MockPaymentRepository::new();
    let stored = payment.clone();
    repo.expect_by_reference().returning(move |_, _| Ok(Some(stored.clone())));
    repo.expect_update().never();
    let mut gateway = MockPaymentGateway::new();
    gateway.expect_retrieve().returning(|_| {
        Ok(ProviderPayment {
            reference: "pi_1".into(),
            state: ProviderState::Failed(DeclineReason::CardDeclined),
            amount: usd(5000),
            refunded: usd(0),
            payment_id: None,
        })
    });
    let applied = service(repo, gateway, MockJobPublisher::new()).apply_event(Provider::Stripe, "pi_1").await.unwrap();
    assert!(matches!(applied, EventApplied::Unchanged(_)));
}

#[pollster::test]
async fn cash_is_recorded_on_the_orders_cash_payment_only() {
    let order = OrderId::new();
    let cod = Payment::cash_on_delivery(order, CustomerId::new(), usd(4200), now());
    let mut repo = MockPaymentRepository::new();
    let stored = cod.clone();
    repo.expect_of_order().with(eq(order)).returning(move |_| Ok(vec![stored.clone()]));
    repo.expect_of_order().returning(|_| Ok(vec![]));
    // The order's follow-up is staged with the payment's change, then published.
    let follows = |jobs: &[NewJob]| jobs.len() == 1 && jobs[0].kind == CHANGED_KIND;
    repo.expect_update()
        .withf(move |_, next, jobs| next.status == PaymentStatus::Paid && follows(jobs))
        .times(1)
        .returning(|_, _, _| Ok(()));
    let mut publisher = MockJobPublisher::new();
    publisher.expect_publish().withf(move |jobs| follows(jobs)).times(1).returning(|_| ());
    let service = service(repo, MockPaymentGateway::new(), publisher);
    assert_eq!(service.record_cash(order, usd(4200)).await.unwrap().status, PaymentStatus::Paid);
    let err = service.record_cash(OrderId::new(), usd(4200)).await.unwrap_err();
    assert!(matches!(err, PaymentError::NoCashPayment(_)), "{err:?}");
}

#[pollster::test]
async fn cash_given_back_is_booked_done_with_its_orders_follow_up() {
    let mut cod = Payment::cash_on_delivery(OrderId::new(), CustomerId::new(), usd(4200), now());
    cod.record_cash(usd(4200), now()).unwrap();
    let mut repo = MockPaymentRepository::new();
    let stored = cod.clone();
    repo.expect_get().returning(move |_| Ok(Some(stored.clone())));
    let follows = |jobs: &[NewJob]| jobs.len() == 1 && jobs[0].kind == CHANGED_KIND;
    repo.expect_book_refund()
        .withf(move |_, next, refund, jobs| {
            next.status == PaymentStatus::PartiallyRefunded && refund.status == RefundStatus::Succeeded && follows(jobs)
        })
        .times(1)
        .returning(|_, _, _, _| Ok(()));
    let mut publisher = MockJobPublisher::new();
    publisher.expect_publish().withf(move |jobs| follows(jobs)).times(1).returning(|_| ());
    let mut gateway = MockPaymentGateway::new();
    gateway.expect_refund().never();

    let result = service(repo, gateway, publisher).refund(cod.id, Some(usd(1000)), None).await.unwrap();

    assert_eq!(result.refund.status, RefundStatus::Succeeded);
}

#[pollster::test]
async fn a_cancelled_orders_cash_collection_is_cancelled_once_and_no_cash_is_recorded_after() {
    let order = OrderId::new();
    let cod = Payment::cash_on_delivery(order, CustomerId::new(), usd(4200), now());
    let cod_id = cod.id;
    let cell = Arc::new(std::sync::Mutex::new(cod));
    let mut repo = MockPaymentRepository::new();
    let read = cell.clone();
    repo.expect_of_order().returning(move |_| Ok(vec![read.lock().unwrap().clone()]));
    let write = cell.clone();
    repo.expect_update().withf(|_, next, _| next.status == PaymentStatus::Failed).times(1).returning(
        move |_, next, _| {
            *write.lock().unwrap() = next.clone();
            Ok(())
        },
    );
    let service = service(repo, MockPaymentGateway::new(), MockJobPublisher::new());

    for _ in 0..2 {
        let outcome = service.refund_order(order, "cancelled").await.unwrap();
        assert_eq!(outcome, crate::service::OrderRefund::CollectionCancelled(cod_id), "the same on a rerun");
    }
    assert_eq!(cell.lock().unwrap().failure_reason.as_deref(), Some("canceled"));
    let refused = service.record_cash(order, usd(4200)).await.unwrap_err();
    assert!(
        matches!(refused, PaymentError::Rule(crate::model::PaymentRuleError::InvalidTransition { .. })),
        "{refused:?}"
    );
}

#[pollster::test]
async fn an_orders_payments_are_refunded_only_once_captured() {
    let order = OrderId::new();
    let mut authorized = Payment::online(order, CustomerId::new(), Provider::Stripe, usd(5000), now());
    authorized.authorize("pi_1", now()).unwrap();
    let mut repo = MockPaymentRepository::new();
    repo.expect_of_order().with(eq(order)).returning(move |_| Ok(vec![authorized.clone()]));
    let mut gateway = MockPaymentGateway::new();
    gateway.expect_refund().never();
    let outcome = service(repo, gateway, MockJobPublisher::new()).refund_order(order, "cancelled").await.unwrap();
    assert_eq!(outcome, crate::service::OrderRefund::NotYetCapturable);

    let declined = {
        let mut p = Payment::online(order, CustomerId::new(), Provider::Stripe, usd(5000), now());
        p.fail(&DeclineReason::CardDeclined, now()).unwrap();
        p
    };
    let mut repo = MockPaymentRepository::new();
    repo.expect_of_order().returning(move |_| Ok(vec![declined.clone()]));
    let outcome =
        service(repo, MockPaymentGateway::new(), MockJobPublisher::new()).refund_order(order, "x").await.unwrap();
    assert_eq!(outcome, crate::service::OrderRefund::NothingTaken);
}

#[pollster::test]
async fn a_retried_charge_step_reuses_the_orders_payment() {
    let payment = paid();
    let order = payment.order_id;
    let mut repo = MockPaymentRepository::new();
    let listed = payment.clone();
    // The order has its payment: that one comes back, and no other is opened.
    repo.expect_open_once()
        .withf(move |new| new.order_id == order && new.provider == Provider::Stripe)
        .times(1)
        .returning(move |_| Ok(listed.clone()));
    repo.expect_insert().never();
    let mut gateway = MockPaymentGateway::new();
    gateway.expect_charge().never();
    let again = service(repo, gateway, MockJobPublisher::new())
        .charge_order(order, payment.customer_id, Provider::Stripe, usd(5000), "pm_card_visa")
        .await
        .unwrap();
    assert_eq!(again, payment);
}

#[pollster::test]
async fn a_charge_made_but_never_recorded_is_looked_up_by_its_key_never_made_and_recorded() {
    // Opened, charged at the provider, the answer never written: the lookup finds that charge.
    let opened = pending();
    let order = opened.order_id;
    let key = format!("order-{order}-charge");
    let found = ProviderPayment {
        reference: "pi_made".into(),
        state: ProviderState::Succeeded,
        amount: usd(5000),
        refunded: usd(0),
        payment_id: None,
    };
    for (lookup, recorded) in [
        (ChargeLookup::Found(found), Some((PaymentStatus::Paid, Some("pi_made".to_owned())))),
        (ChargeLookup::NotFound, None),
        (ChargeLookup::Unsupported, None),
    ] {
        let mut repo = MockPaymentRepository::new();
        let stored = opened.clone();
        repo.expect_of_order().with(eq(order)).returning(move |_| Ok(vec![stored.clone()]));
        // No `charge` expectation: asking the provider to charge would fail the test.
        let mut gateway = MockPaymentGateway::new();
        let key = key.clone();
        gateway.expect_find_charge().withf(move |k| k == key).times(1).returning(move |_| Ok(lookup.clone()));
        repo.expect_update()
            .withf(|expected, next, _| expected.status == PaymentStatus::Pending && next.status == PaymentStatus::Paid)
            .times(usize::from(recorded.is_some()))
            .returning(|_, _, _| Ok(()));
        let recovered = service(repo, gateway, MockJobPublisher::new()).recover_charge(order).await.unwrap().unwrap();
        let expected = recorded.unwrap_or((PaymentStatus::Pending, None));
        assert_eq!((recovered.status, recovered.provider_reference), expected);
    }

    // An answer recorded already, or no online payment at all: the provider is not asked.
    for payments in [vec![paid()], vec![Payment::cash_on_delivery(order, CustomerId::new(), usd(5000), now())], vec![]]
    {
        let expected = payments.iter().find(|p| p.provider != Provider::CashOnDelivery).cloned();
        let mut repo = MockPaymentRepository::new();
        repo.expect_of_order().returning(move |_| Ok(payments.clone()));
        let recovered =
            service(repo, MockPaymentGateway::new(), MockJobPublisher::new()).recover_charge(order).await.unwrap();
        assert_eq!(recovered, expected);
    }
}

#[pollster::test]
async fn every_payment_of_an_order_gets_its_turn_and_a_refusal_is_what_the_order_hears_first() {
    // A card payment whose latest refund, of all it holds, was refused, and a cash collection:
    // the collection is still cancelled, and the money still taken is the answer.
    let card = paid();
    let order = card.order_id;
    let cod = Payment::cash_on_delivery(order, card.customer_id, usd(4200), now());
    let (card_id, cod_id) = (card.id, cod.id);
    let mut repo = MockPaymentRepository::new();
    repo.expect_of_order().returning(move |_| Ok(vec![card.clone(), cod.clone()]));
    let refused = |minutes: i64, status: RefundStatus| Refund {
        id: crate::model::RefundId::new(),
        payment_id: card_id,
        amount: usd(5000),
        reason: None,
        provider_reference: None,
        status,
        failure_reason: (status == RefundStatus::Failed).then(|| "rejected by the provider: disputed".to_owned()),
        created_at: now() + chrono::Duration::minutes(minutes),
    };
    // Listed oldest first: the latest is the refused one.
    let listed = vec![refused(1, RefundStatus::Succeeded), refused(2, RefundStatus::Failed)];
    repo.expect_refunds().with(eq(card_id)).returning(move |_| Ok(listed.clone()));
    repo.expect_book_refund().never();
    repo.expect_update()
        .withf(move |before, next, _| before.id == cod_id && next.status == PaymentStatus::Failed)
        .times(1)
        .returning(|_, _, _| Ok(()));
    let mut gateway = MockPaymentGateway::new();
    gateway.expect_refund().never();

    let outcome = service(repo, gateway, MockJobPublisher::new()).refund_order(order, "cancelled").await.unwrap();

    assert!(
        matches!(&outcome, crate::service::OrderRefund::Refused { payment, reason }
            if *payment == card_id && reason == "rejected by the provider: disputed"),
        "the provider's reason, as recorded: {outcome:?}"
    );
}

#[pollster::test]
async fn an_orders_refunded_payment_is_named_with_whether_every_refund_of_it_is_answered() {
    let refunded = {
        let mut p = paid();
        p.refund(usd(5000), now()).unwrap();
        p
    };
    let order = refunded.order_id;
    let id = refunded.id;
    for (payments, refund_status, expected) in [
        (vec![paid()], RefundStatus::Succeeded, None),
        (vec![refunded.clone()], RefundStatus::Requested, Some((id, false))),
        (vec![refunded.clone()], RefundStatus::Succeeded, Some((id, true))),
    ] {
        let mut repo = MockPaymentRepository::new();
        repo.expect_of_order().with(eq(order)).returning(move |_| Ok(payments.clone()));
        let refund = Refund {
            id: crate::model::RefundId::new(),
            payment_id: refunded.id,
            amount: usd(5000),
            reason: None,
            provider_reference: None,
            status: refund_status,
            failure_reason: None,
            created_at: now(),
        };
        repo.expect_refunds().returning(move |_| Ok(vec![refund.clone()]));
        let service = service(repo, MockPaymentGateway::new(), MockJobPublisher::new());
        assert_eq!(service.refunded_payment(order).await.unwrap(), expected, "{refund_status:?}");
    }
}

#[pollster::test]
async fn a_refused_partial_refund_does_not_stop_a_cancellation_from_asking_for_all_of_it() {
    // An admin's goodwill refund of a part was refused; the order is then cancelled.
    let payment = paid();
    let mut repo = MockPaymentRepository::new();
    let current = Arc::new(std::sync::Mutex::new(payment.clone()));
    let read = current.clone();
    repo.expect_get().returning(move |_| Ok(Some(read.lock().unwrap().clone())));
    let of_order = current.clone();
    repo.expect_of_order().returning(move |_| Ok(vec![of_order.lock().unwrap().clone()]));
    let goodwill = Refund {
        id: crate::model::RefundId::new(),
        payment_id: payment.id,
        amount: usd(1000),
        reason: Some("goodwill".into()),
        provider_reference: None,
        status: RefundStatus::Failed,
        failure_reason: Some("rejected by the provider: too soon".into()),
        created_at: now(),
    };
    let refunds = Arc::new(std::sync::Mutex::new(vec![goodwill]));
    let listed = refunds.clone();
    repo.expect_refunds().returning(move |_| Ok(listed.lock().unwrap().clone()));
    // The whole of it is booked and asked for.
    let (keep, booked) = (current.clone(), refunds.clone());
    repo.expect_book_refund().withf(|_, _, refund, _| refund.amount == usd(5000)).times(1).returning(
        move |_, next, refund, _| {
            *keep.lock().unwrap() = next.clone();
            booked.lock().unwrap().push(refund.clone());
            Ok(())
        },
    );
    let asked = refunds.clone();
    repo.expect_refund().returning(move |_| Ok(asked.lock().unwrap().last().cloned()));
    let mut gateway = MockPaymentGateway::new();
    gateway
        .expect_refund()
        .times(1)
        .returning(|_| Ok(ProviderRefund { reference: "re_1".into(), status: RefundStatus::Succeeded }));
    let (settled, settled_refunds) = (current.clone(), refunds.clone());
    repo.expect_settle_refund().returning(move |refund, change| {
        if let Some(change) = change {
            *settled.lock().unwrap() = change.payment.clone();
        }
        if let Some(last) = settled_refunds.lock().unwrap().last_mut() {
            *last = refund.clone();
        }
        Ok(true)
    });
    let mut publisher = MockJobPublisher::new();
    publisher.expect_publish().returning(|_| ());

    let outcome = service(repo, gateway, publisher).refund_order(payment.order_id, "cancelled").await.unwrap();
    assert!(matches!(outcome, crate::service::OrderRefund::Refunded(p) if p == payment.id), "{outcome:?}");
}
