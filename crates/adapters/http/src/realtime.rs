//! The WebSocket sessions of this api instance, by customer, and how notifications reach them.
//!
//! Every session has a bounded queue of outbound frames. Delivering never waits: a session
//! whose queue is full is dropped from the hub (its connection then closes and the device
//! reconnects for its backlog), so one slow client never holds up the others. When the api
//! stops, [`Hub::close_all`] ends every session (1001 Going Away): the server's drain then waits
//! for requests, not for connections that never end by themselves.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use ecom_kernel::CustomerId;
use ecom_notifications::model::Notification;
use tokio::sync::mpsc;

use crate::routes::notifications::NotificationDto;

/// WebSocket settings.
#[derive(Debug, Clone, Copy)]
pub struct WsSettings {
    /// How often the server pings an idle connection.
    pub heartbeat: Duration,
    /// A connection that sends nothing (not even a pong) for this long is closed.
    pub idle_timeout: Duration,
    /// Frames waiting for one connection before it counts as too slow and is dropped.
    pub buffer: usize,
}

impl Default for WsSettings {
    fn default() -> Self {
        Self { heartbeat: Duration::from_secs(15), idle_timeout: Duration::from_secs(45), buffer: 256 }
    }
}

/// What the hub hands a session.
#[derive(Debug, Clone)]
pub enum Outbound {
    /// A serialized `{"type":"notification",...}` frame.
    Frame(Arc<str>),
    /// The realtime feed was (re)connected: messages may have been missed; send the backlog.
    Resync,
}

struct Slot {
    id: u64,
    tx: mpsc::Sender<Outbound>,
}

/// The sessions of this instance.
pub struct Hub {
    sessions: Mutex<HashMap<CustomerId, Vec<Slot>>>,
    next_id: AtomicU64,
    buffer: usize,
    closing: AtomicBool,
}

/// The frame a notification travels in.
pub fn notification_frame(notification: &Notification) -> String {
    serde_json::json!({"type": "notification", "data": NotificationDto::from(notification)}).to_string()
}

impl Hub {
    pub fn new(settings: &WsSettings) -> Self {
        Self {
            sessions: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            buffer: settings.buffer.max(1),
            closing: AtomicBool::new(false),
        }
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<CustomerId, Vec<Slot>>> {
        // A panic while holding the lock cannot leave the map half-updated: take it as it is.
        self.sessions.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds a session of `customer`; frames for them arrive on the receiver. Once the hub is
    /// closing, the receiver ends at once.
    pub fn register(&self, customer: CustomerId) -> (u64, mpsc::Receiver<Outbound>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(self.buffer);
        let mut sessions = self.sessions();
        // Checked under the lock `close_all` takes: no session slips in after it.
        if !self.is_closing() {
            sessions.entry(customer).or_default().push(Slot { id, tx });
        }
        (id, rx)
    }

    /// Ends every session (each receiver ends once its queued frames are taken) and every one
    /// registered later: the api is stopping.
    pub fn close_all(&self) {
        let mut sessions = self.sessions();
        self.closing.store(true, Ordering::SeqCst);
        sessions.clear();
    }

    /// Whether [`Hub::close_all`] was called: a session whose receiver ended closes as "going away".
    pub fn is_closing(&self) -> bool {
        self.closing.load(Ordering::SeqCst)
    }

    pub fn unregister(&self, customer: CustomerId, id: u64) {
        let mut sessions = self.sessions();
        if let Some(slots) = sessions.get_mut(&customer) {
            slots.retain(|s| s.id != id);
            if slots.is_empty() {
                sessions.remove(&customer);
            }
        }
    }

    /// How many sessions are open on this instance.
    pub fn connections(&self) -> usize {
        self.sessions().values().map(Vec::len).sum()
    }

    /// Hands `notification` to every session of its recipient; returns to how many.
    pub fn deliver(&self, notification: &Notification) -> usize {
        let frame: Arc<str> = Arc::from(notification_frame(notification));
        self.offer(Some(notification.customer_id), &Outbound::Frame(frame))
    }

    /// Tells every session to send its backlog again.
    pub fn resync(&self) -> usize {
        self.offer(None, &Outbound::Resync)
    }

    fn offer(&self, customer: Option<CustomerId>, message: &Outbound) -> usize {
        let mut sessions = self.sessions();
        let mut delivered = 0;
        let mut offer_to = |owner: CustomerId, slots: &mut Vec<Slot>| {
            slots.retain(|slot| match slot.tx.try_send(message.clone()) {
                Ok(()) => {
                    delivered += 1;
                    true
                }
                Err(mpsc::error::TrySendError::Full(_)) => {
                    tracing::warn!(customer_id = %owner, session = slot.id, "websocket client too slow; disconnecting it");
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            });
        };
        match customer {
            Some(customer) => {
                if let Some(slots) = sessions.get_mut(&customer) {
                    offer_to(customer, slots);
                    if slots.is_empty() {
                        sessions.remove(&customer);
                    }
                }
            }
            None => {
                for (owner, slots) in sessions.iter_mut() {
                    offer_to(*owner, slots);
                }
                sessions.retain(|_, slots| !slots.is_empty());
            }
        }
        delivered
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use chrono::Utc;
    use ecom_kernel::OrderId;
    use ecom_notifications::model::{Audience, Event, NotificationRequest};

    use super::*;

    fn note(customer: CustomerId) -> Notification {
        NotificationRequest::new("k", Audience::Customer(customer), &Event::OrderShipped { order_id: OrderId::new() })
            .for_recipient(customer, Utc::now())
    }

    #[test]
    fn every_session_of_the_recipient_gets_it_and_nobody_else() {
        let hub = Hub::new(&WsSettings::default());
        let (ada, bob) = (CustomerId::new(), CustomerId::new());
        let (_, mut phone) = hub.register(ada);
        let (_, mut laptop) = hub.register(ada);
        let (_, mut other) = hub.register(bob);
        assert_eq!(hub.deliver(&note(ada)), 2);
        for rx in [&mut phone, &mut laptop] {
            let Ok(Outbound::Frame(frame)) = rx.try_recv() else { panic!("no frame") };
            let json: serde_json::Value = serde_json::from_str(&frame).unwrap();
            assert_eq!(json["type"], "notification");
            assert_eq!(json["data"]["type"], "ORDER_SHIPPED");
        }
        assert!(other.try_recv().is_err());
    }

    #[test]
    fn a_full_session_is_dropped_without_holding_up_the_others() {
        let hub = Hub::new(&WsSettings { buffer: 2, ..WsSettings::default() });
        let ada = CustomerId::new();
        let (_, slow) = hub.register(ada);
        let (_, mut fast) = hub.register(ada);
        for _ in 0..2 {
            assert_eq!(hub.deliver(&note(ada)), 2);
            fast.try_recv().unwrap();
        }
        assert_eq!(hub.deliver(&note(ada)), 1, "the slow one is full and dropped");
        assert_eq!(hub.connections(), 1);
        drop(slow);
        assert!(matches!(fast.try_recv(), Ok(Outbound::Frame(_))));
    }

    #[test]
    fn closing_ends_every_session_after_its_queued_frames_and_every_later_one_at_once() {
        let hub = Hub::new(&WsSettings::default());
        let ada = CustomerId::new();
        let (_, mut open) = hub.register(ada);
        assert_eq!(hub.deliver(&note(ada)), 1);
        hub.close_all();
        assert!(hub.is_closing());
        assert!(matches!(open.try_recv(), Ok(Outbound::Frame(_))), "queued frames still go out");
        assert!(matches!(open.try_recv(), Err(mpsc::error::TryRecvError::Disconnected)));
        let (_, mut late) = hub.register(ada);
        assert!(matches!(late.try_recv(), Err(mpsc::error::TryRecvError::Disconnected)));
        assert_eq!(hub.connections(), 0);
    }

    #[test]
    fn unregistering_and_resync_reach_the_right_sessions() {
        let hub = Hub::new(&WsSettings::default());
        let ada = CustomerId::new();
        let (one, _rx1) = hub.register(ada);
        let (_, mut rx2) = hub.register(CustomerId::new());
        hub.unregister(ada, one);
        assert_eq!(hub.connections(), 1);
        assert_eq!(hub.resync(), 1);
        assert!(matches!(rx2.try_recv(), Ok(Outbound::Resync)));
    }
}
