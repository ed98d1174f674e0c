#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use chrono::{DateTime, Utc};
use ecom_kernel::clock::MockClock;
use ecom_kernel::jobs::QueueName;
use ecom_kernel::{CustomerId, InfraError, OrderId};
use mockall::Sequence;

use crate::model::{Audience, Event, Notification, NotificationId, NotificationRequest};
use crate::ports::{MockNotificationRepository, MockRealtimePublisher, MockRecipients};
use crate::service::{delivery_job, send_job, update_job, NotificationService, SAVE_KIND, SEND_KIND, UPDATE_KIND};
use crate::NotificationError;

fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000, 0).unwrap()
}

fn notifier(
    repository: MockNotificationRepository,
    recipients: MockRecipients,
    realtime: MockRealtimePublisher,
) -> NotificationService {
    let mut clock = MockClock::new();
    clock.expect_now().returning(now);
    NotificationService::new(Arc::new(repository), Arc::new(recipients), Arc::new(realtime), Arc::new(clock))
}

fn shipped(audience: Audience) -> NotificationRequest {
    NotificationRequest::new("order:1:shipped", audience, &Event::OrderShipped { order_id: OrderId::new() })
}

#[pollster::test]
async fn saving_for_a_customer_stores_one_pending_notification() {
    let customer = CustomerId::new();
    let mut repository = MockNotificationRepository::new();
    repository
        .expect_save()
        .withf(move |n: &[Notification]| n.len() == 1 && n[0].customer_id == customer && n[0].key == "order:1:shipped")
        .times(1)
        .returning(|_| Ok(()));
    let service = notifier(repository, MockRecipients::new(), MockRealtimePublisher::new());
    assert_eq!(service.save(&shipped(Audience::Customer(customer))).await.unwrap(), 1);
}

#[pollster::test]
async fn saving_for_admins_stores_one_per_admin_and_nothing_without_admins() {
    let admins = vec![CustomerId::new(), CustomerId::new()];
    let expected = admins.clone();
    let mut recipients = MockRecipients::new();
    recipients.expect_admins().times(1).returning(move || Ok(admins.clone()));
    let mut repository = MockNotificationRepository::new();
    repository
        .expect_save()
        .withf(move |n: &[Notification]| n.iter().map(|n| n.customer_id).collect::<Vec<_>>() == expected)
        .times(1)
        .returning(|_| Ok(()));
    let service = notifier(repository, recipients, MockRealtimePublisher::new());
    assert_eq!(service.save(&shipped(Audience::Admins)).await.unwrap(), 2);

    let mut recipients = MockRecipients::new();
    recipients.expect_admins().returning(|| Ok(vec![]));
    let service = notifier(MockNotificationRepository::new(), recipients, MockRealtimePublisher::new());
    assert_eq!(service.save(&shipped(Audience::Admins)).await.unwrap(), 0);
}

#[pollster::test]
async fn send_pushes_every_pending_copy_and_a_failed_push_fails_the_step_without_saving() {
    let request = shipped(Audience::Admins);
    let pending =
        vec![request.for_recipient(CustomerId::new(), now()), request.for_recipient(CustomerId::new(), now())];
    let mut repository = MockNotificationRepository::new();
    repository.expect_pending().returning(move |_| Ok(pending.clone()));
    repository.expect_save().never();
    repository.expect_mark_sent().never();
    let mut realtime = MockRealtimePublisher::new();
    let mut seq = Sequence::new();
    realtime.expect_publish().times(1).in_sequence(&mut seq).returning(|_| Ok(()));
    realtime.expect_publish().times(1).in_sequence(&mut seq).returning(|_| Err(InfraError::unavailable("redis down")));
    let service = notifier(repository, MockRecipients::new(), realtime);
    assert!(matches!(service.send("order:1:shipped").await, Err(NotificationError::Infrastructure(_))));
}

#[pollster::test]
async fn update_marks_the_key_sent() {
    let mut repository = MockNotificationRepository::new();
    repository.expect_mark_sent().withf(|k: &str| k == "order:1:shipped").times(1).returning(|_| Ok(1));
    let service = notifier(repository, MockRecipients::new(), MockRealtimePublisher::new());
    assert_eq!(service.update("order:1:shipped").await.unwrap(), 1);
}

#[pollster::test]
async fn acknowledging_or_reading_someone_elses_notification_is_not_found() {
    let mut repository = MockNotificationRepository::new();
    repository.expect_mark_delivered().returning(|_, _| Ok(false));
    repository.expect_mark_read().returning(|_, _, _| Ok(false));
    let service = notifier(repository, MockRecipients::new(), MockRealtimePublisher::new());
    let id = NotificationId::new();
    assert!(matches!(service.acknowledge(CustomerId::new(), id).await, Err(NotificationError::NotFound(x)) if x == id));
    assert!(matches!(service.mark_read(CustomerId::new(), id).await, Err(NotificationError::NotFound(x)) if x == id));
}

#[test]
fn the_flow_jobs_are_deterministic_per_key_and_step() {
    let request = shipped(Audience::Customer(CustomerId::new()));
    let save = delivery_job(&request);
    assert_eq!(save.id.as_str(), "notify:order:1:shipped:save");
    assert_eq!(save.kind, SAVE_KIND);
    assert_eq!(save.queue, QueueName::Notifications);
    assert_eq!(save, delivery_job(&request));
    let send = send_job("order:1:shipped");
    assert_eq!((send.id.as_str(), send.kind.as_str()), ("notify:order:1:shipped:send", SEND_KIND));
    let update = update_job("order:1:shipped");
    assert_eq!((update.id.as_str(), update.kind.as_str()), ("notify:order:1:shipped:update", UPDATE_KIND));
}
