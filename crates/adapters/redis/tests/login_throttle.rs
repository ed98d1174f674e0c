//! The login throttle against the real Redis, under a key prefix of its own.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use ecom_identity::ports::{LoginAttempt, LoginThrottle, ThrottleDecision};
use ecom_kernel::Email;
use ecom_redis::{connect, RedisKeys, RedisLoginThrottle, RedisSettings, ThrottlePolicy};
use ecom_testkit::TestRedis;

fn throttle(redis: &TestRedis, policy: ThrottlePolicy) -> RedisLoginThrottle {
    let pool = connect(&RedisSettings { url: redis.url().into(), max_connections: 4, timeout: Duration::from_secs(2) })
        .unwrap();
    RedisLoginThrottle::new(pool, RedisKeys::new(redis.prefix()), policy)
}

fn attempt(email: &str, client: &str) -> LoginAttempt {
    LoginAttempt { email: Email::parse(email).unwrap(), client: Some(client.into()) }
}

const POLICY: ThrottlePolicy =
    ThrottlePolicy { max_failures_per_email: 3, max_failures_per_client: 5, window: Duration::from_secs(60) };

#[tokio::test]
async fn an_email_is_blocked_after_its_failures_until_the_window_ends() {
    let redis = TestRedis::new();
    let t = throttle(&redis, POLICY);
    let a = attempt("ada@shop.test", "10.0.0.1");
    for _ in 0..3 {
        assert_eq!(t.check(&a).await.unwrap(), ThrottleDecision::Allowed);
        t.record_failure(&a).await.unwrap();
    }
    match t.check(&a).await.unwrap() {
        ThrottleDecision::Blocked { retry_after } => {
            assert!(retry_after <= Duration::from_secs(60) && retry_after >= Duration::from_secs(58), "{retry_after:?}")
        }
        other => panic!("expected a block, got {other:?}"),
    }
    // Another e-mail from another client is unaffected.
    assert_eq!(t.check(&attempt("bob@shop.test", "10.0.0.2")).await.unwrap(), ThrottleDecision::Allowed);
    // Every key lives under the test's prefix and holds no plain e-mail.
    let keys = redis.keys();
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert!(keys.iter().all(|k| k.starts_with(redis.prefix()) && !k.contains("ada")));
}

#[tokio::test]
async fn a_success_clears_the_emails_failures_but_not_the_clients() {
    let redis = TestRedis::new();
    let t = throttle(&redis, POLICY);
    let a = attempt("ada@shop.test", "10.0.0.1");
    for _ in 0..2 {
        t.record_failure(&a).await.unwrap();
    }
    t.record_success(&a).await.unwrap();
    for _ in 0..2 {
        t.record_failure(&a).await.unwrap();
    }
    assert_eq!(t.check(&a).await.unwrap(), ThrottleDecision::Allowed, "email count restarted at 0");
    t.record_failure(&a).await.unwrap();
    // Now the client has 5 failures: any e-mail from it is blocked.
    assert!(matches!(t.check(&attempt("new@shop.test", "10.0.0.1")).await.unwrap(), ThrottleDecision::Blocked { .. }));
}

#[tokio::test]
async fn the_window_expires() {
    let redis = TestRedis::new();
    let policy = ThrottlePolicy { window: Duration::from_millis(300), ..POLICY };
    let t = throttle(&redis, policy);
    let a = attempt("ada@shop.test", "10.0.0.1");
    for _ in 0..3 {
        t.record_failure(&a).await.unwrap();
    }
    assert!(matches!(t.check(&a).await.unwrap(), ThrottleDecision::Blocked { .. }));
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(t.check(&a).await.unwrap(), ThrottleDecision::Allowed);
}

#[tokio::test]
async fn an_unreachable_redis_is_an_unavailable_error_not_a_hang() {
    let pool = connect(&RedisSettings {
        url: "redis://127.0.0.1:1".into(),
        max_connections: 1,
        timeout: Duration::from_millis(500),
    })
    .unwrap();
    let t = RedisLoginThrottle::new(pool, RedisKeys::new("x:"), POLICY);
    let err = t.check(&attempt("ada@shop.test", "10.0.0.1")).await.unwrap_err();
    assert!(err.is_unavailable(), "{err}");
}
