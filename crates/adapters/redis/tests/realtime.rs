//! The realtime listener against the real Redis, through a relay that can go silent.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use ecom_kernel::{CustomerId, OrderId};
use ecom_notifications::model::{Audience, Event, Notification, NotificationRequest};
use ecom_notifications::ports::RealtimePublisher;
use ecom_redis::{connect, RealtimeEvent, RealtimeListener, RedisKeys, RedisRealtimePublisher, RedisSettings};
use ecom_testkit::TestRedis;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};

/// A TCP relay to Redis. `silence` makes every connection open so far pass nothing more while
/// staying open, as a connection does whose peer vanished without a reset (a failover, a NAT
/// that dropped it); connections made after it pass as usual.
struct Relay {
    url: String,
    generation: Arc<AtomicU64>,
}

impl Relay {
    async fn to(redis_url: &str) -> Self {
        let rest = redis_url.strip_prefix("redis://").expect("a redis:// URL");
        let (authority, path) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
        let (userinfo, target) = authority.rsplit_once('@').map_or(("", authority), |(u, t)| (u, t));
        let target = target.to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let generation = Arc::new(AtomicU64::new(0));
        let current = generation.clone();
        tokio::spawn(async move {
            loop {
                let (client, _) = listener.accept().await.unwrap();
                let server = TcpStream::connect(&target).await.unwrap();
                let born = current.load(Ordering::SeqCst);
                let ((client_in, client_out), (server_in, server_out)) = (client.into_split(), server.into_split());
                tokio::spawn(pass(client_in, server_out, current.clone(), born));
                tokio::spawn(pass(server_in, client_out, current.clone(), born));
            }
        });
        let userinfo = if userinfo.is_empty() { String::new() } else { format!("{userinfo}@") };
        Self { url: format!("redis://{userinfo}{address}/{path}"), generation }
    }

    fn silence(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
    }
}

async fn pass(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, generation: Arc<AtomicU64>, born: u64) {
    let mut buffer = vec![0_u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if generation.load(Ordering::SeqCst) != born {
            // Silenced: both ends stay open and nothing passes any more.
            std::future::pending::<()>().await;
        }
        if to.write_all(&buffer[..n]).await.is_err() {
            return;
        }
    }
}

fn notification() -> Notification {
    NotificationRequest::new("order:1:shipped", Audience::Admins, &Event::OrderShipped { order_id: OrderId::new() })
        .for_recipient(CustomerId::new(), Utc::now())
}

#[tokio::test]
async fn a_subscription_whose_connection_goes_silent_is_made_again() {
    let redis = TestRedis::new();
    let keys = RedisKeys::new(redis.prefix());
    let relay = Relay::to(redis.url()).await;
    let pool = connect(&RedisSettings { url: redis.url().into(), max_connections: 2, timeout: Duration::from_secs(2) })
        .unwrap();
    let publisher = RedisRealtimePublisher::new(pool, keys.clone());
    let listener = RealtimeListener::new(&relay.url, &keys)
        .unwrap()
        .with_health_check(Duration::from_millis(200), Duration::from_millis(300));
    let (events, mut heard) = tokio::sync::mpsc::unbounded_channel();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let listening = tokio::spawn(listener.run(
        move |event| {
            let _ = events.send(event);
        },
        async move {
            let _ = stopped.await;
        },
    ));
    let mut next =
        async || tokio::time::timeout(Duration::from_secs(5), heard.recv()).await.expect("no event").unwrap();

    assert!(matches!(next().await, RealtimeEvent::Subscribed));
    let first = notification();
    publisher.publish(&first).await.unwrap();
    assert!(matches!(next().await, RealtimeEvent::Notification(n) if *n == first));

    // The connection goes silent: the listener notices, subscribes again, and hears again.
    relay.silence();
    assert!(matches!(next().await, RealtimeEvent::Subscribed), "subscribed again");
    let second = notification();
    publisher.publish(&second).await.unwrap();
    assert!(matches!(next().await, RealtimeEvent::Notification(n) if *n == second));

    stop.send(()).unwrap();
    listening.await.unwrap();
}
