//! Realtime fan-out over Redis pub/sub: the worker publishes each notification on its
//! recipient's channel (`<prefix>notify:<customer id>`); every api instance listens to all of
//! them with one pattern subscription and hands each message to its local WebSocket sessions.
//!
//! Pub/sub keeps nothing: a message published while an instance is not subscribed is lost to
//! it. The listener therefore reports every (re)subscription, and the api then sends each
//! connected device its undelivered backlog from PostgreSQL again.

use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deadpool_redis::redis;
use ecom_kernel::{CustomerId, InfraError};
use ecom_notifications::model::{Notification, NotificationId, NotificationStatus, NotificationType};
use ecom_notifications::ports::RealtimePublisher;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::pool::infra_from_redis;
use crate::shared::SharedConnection;
use crate::{RedisKeys, RedisPool};

/// The message on the channel (schema version 1).
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Wire {
    v: u8,
    id: Uuid,
    key: String,
    customer_id: Uuid,
    kind: String,
    title: String,
    body: String,
    data: serde_json::Value,
    status: String,
    created_at: DateTime<Utc>,
    read_at: Option<DateTime<Utc>>,
}

impl Wire {
    fn of(n: &Notification) -> Self {
        Self {
            v: 1,
            id: n.id.as_uuid(),
            key: n.key.clone(),
            customer_id: n.customer_id.as_uuid(),
            kind: n.kind.as_str().to_owned(),
            title: n.title.clone(),
            body: n.body.clone(),
            data: n.data.clone(),
            status: n.status.as_str().to_owned(),
            created_at: n.created_at,
            read_at: n.read_at,
        }
    }

    fn into_domain(self) -> Option<Notification> {
        Some(Notification {
            id: NotificationId::from_uuid(self.id),
            key: self.key,
            customer_id: CustomerId::from_uuid(self.customer_id),
            kind: NotificationType::parse(&self.kind)?,
            title: self.title,
            body: self.body,
            data: self.data,
            status: NotificationStatus::parse(&self.status)?,
            created_at: self.created_at,
            read_at: self.read_at,
        })
    }
}

/// Publishes notifications on their recipients' channels, over the process's shared connection.
pub struct RedisRealtimePublisher {
    redis: SharedConnection,
    keys: RedisKeys,
}

impl RedisRealtimePublisher {
    pub fn new(pool: RedisPool, keys: RedisKeys) -> Self {
        Self { redis: SharedConnection::new(pool), keys }
    }
}

#[async_trait]
impl RealtimePublisher for RedisRealtimePublisher {
    async fn publish(&self, notification: &Notification) -> Result<(), InfraError> {
        let message = serde_json::to_string(&Wire::of(notification))
            .map_err(|e| InfraError::unexpected(format!("encoding a notification: {e}")))?;
        let channel = self.keys.notification_channel(&notification.customer_id.to_string());
        let _receivers: i64 = self.redis.cmd(redis::cmd("PUBLISH").arg(channel).arg(message)).await?;
        Ok(())
    }
}

/// What the listener reports.
#[derive(Debug, Clone)]
pub enum RealtimeEvent {
    /// Subscribed (again): whatever was published before this may have been missed.
    Subscribed,
    Notification(Box<Notification>),
}

/// Listens to every recipient channel on a connection of its own, reconnecting by itself.
pub struct RealtimeListener {
    client: redis::Client,
    pattern: String,
    /// How often the connection is checked with a PING, and how long its answer may take.
    check_every: Duration,
    check_within: Duration,
}

impl RealtimeListener {
    pub fn new(redis_url: &str, keys: &RedisKeys) -> Result<Self, InfraError> {
        Ok(Self {
            client: redis::Client::open(redis_url).map_err(infra_from_redis)?,
            pattern: keys.notification_channel("*"),
            check_every: Duration::from_secs(15),
            check_within: Duration::from_secs(5),
        })
    }

    /// Checks the connection every `every`, expecting the answer within `within`.
    #[must_use]
    pub fn with_health_check(mut self, every: Duration, within: Duration) -> Self {
        (self.check_every, self.check_within) = (every, within);
        self
    }

    /// Runs until `stop` completes, handing every event to `sink`. A lost connection is retried
    /// with backoff (up to 5 s between attempts).
    pub async fn run(self, sink: impl Fn(RealtimeEvent), stop: impl Future<Output = ()>) {
        tokio::pin!(stop);
        let mut backoff = Duration::from_millis(100);
        loop {
            tokio::select! {
                () = &mut stop => return,
                outcome = self.listen(&sink) => {
                    if outcome.is_ok() {
                        backoff = Duration::from_millis(100);
                    }
                    match outcome {
                        Ok(()) => tracing::warn!("realtime subscription ended; resubscribing"),
                        Err(err) => tracing::warn!(error = %err, retry_in_ms = backoff.as_millis() as u64, "realtime subscription failed"),
                    }
                }
            }
            tokio::select! {
                () = &mut stop => return,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }

    /// Listens until the connection ends or stops answering: a subscriber only reads, so a
    /// connection whose peer vanished without a reset (a failover, a NAT dropping a quiet
    /// connection) would otherwise wait forever while every publication is missed. A PING it
    /// does not answer in time ends it, and `run` subscribes again (sessions then resync).
    async fn listen(&self, sink: &impl Fn(RealtimeEvent)) -> Result<(), InfraError> {
        let (mut control, mut messages) = self.client.get_async_pubsub().await.map_err(infra_from_redis)?.split();
        control.psubscribe(&self.pattern).await.map_err(infra_from_redis)?;
        tracing::info!(pattern = %self.pattern, "listening for realtime notifications");
        sink(RealtimeEvent::Subscribed);
        let mut check = tokio::time::interval(self.check_every);
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        check.tick().await;
        loop {
            let message = tokio::select! {
                message = messages.next() => message,
                _ = check.tick() => {
                    match tokio::time::timeout(self.check_within, control.ping::<redis::Value>()).await {
                        Ok(Ok(_)) => continue,
                        Ok(Err(err)) => return Err(infra_from_redis(err)),
                        Err(_) => return Err(InfraError::unavailable("the subscription's connection stopped answering")),
                    }
                }
            };
            let Some(message) = message else { break };
            let payload: String = match message.get_payload() {
                Ok(payload) => payload,
                Err(err) => {
                    tracing::warn!(error = %err, "unreadable realtime message dropped");
                    continue;
                }
            };
            match serde_json::from_str::<Wire>(&payload).ok().and_then(Wire::into_domain) {
                Some(notification) => sink(RealtimeEvent::Notification(Box::new(notification))),
                None => tracing::warn!(channel = message.get_channel_name(), "malformed realtime message dropped"),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use ecom_notifications::model::{Audience, Event, NotificationRequest};

    #[test]
    fn a_notification_survives_the_wire() {
        let request = NotificationRequest::new(
            "order:1:shipped",
            Audience::Admins,
            &Event::OrderShipped { order_id: ecom_kernel::OrderId::new() },
        );
        let n = request.for_recipient(CustomerId::new(), Utc::now());
        let json = serde_json::to_string(&Wire::of(&n)).unwrap();
        let back = serde_json::from_str::<Wire>(&json).unwrap().into_domain().unwrap();
        assert_eq!(back, n);
    }
}
