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
        assert_eq!(t.begin(&a).await.unwrap(), ThrottleDecision::Allowed, "counted, then fails");
    }
    match t.begin(&a).await.unwrap() {
        ThrottleDecision::Blocked { retry_after } => {
            assert!(retry_after <= Duration::from_secs(60) && retry_after >= Duration::from_secs(58), "{retry_after:?}")
        }
        other => panic!("expected a block, got {other:?}"),
    }
    // Another e-mail from another client is unaffected.
    assert_eq!(t.begin(&attempt("bob@shop.test", "10.0.0.2")).await.unwrap(), ThrottleDecision::Allowed);
    // Every key lives under the test's prefix and holds no plain e-mail.
    let keys = redis.keys();
    assert_eq!(keys.len(), 4, "{keys:?}");
    // ("ada" alone could appear in the hex of a hash or of the prefix: look for the address.)
    assert!(keys.iter().all(|k| k.starts_with(redis.prefix()) && !k.contains("ada@") && !k.contains("shop.test")));
}

#[tokio::test]
async fn a_success_clears_the_emails_count_and_stops_counting_against_the_client() {
    let redis = TestRedis::new();
    let t = throttle(&redis, POLICY);
    let a = attempt("ada@shop.test", "10.0.0.1");
    for _ in 0..2 {
        t.begin(&a).await.unwrap(); // two failures
    }
    t.begin(&a).await.unwrap();
    t.succeeded(&a).await.unwrap(); // the third succeeded
    for _ in 0..3 {
        assert_eq!(t.begin(&a).await.unwrap(), ThrottleDecision::Allowed, "e-mail count restarted at 0");
    }
    // The client now has 2 + 3 = 5 unsuccessful attempts: any e-mail from it is refused.
    assert!(matches!(t.begin(&attempt("new@shop.test", "10.0.0.1")).await.unwrap(), ThrottleDecision::Blocked { .. }));
}

#[tokio::test]
async fn a_burst_of_concurrent_guesses_never_exceeds_the_limit() {
    let redis = TestRedis::new();
    let t = std::sync::Arc::new(throttle(&redis, POLICY));
    let tasks: Vec<_> = (0..40)
        .map(|_| {
            let t = t.clone();
            tokio::spawn(async move { t.begin(&attempt("ada@shop.test", "10.0.0.9")).await.unwrap() })
        })
        .collect();
    let mut allowed = 0;
    for task in tasks {
        if task.await.unwrap() == ThrottleDecision::Allowed {
            allowed += 1;
        }
    }
    assert_eq!(allowed, 3, "exactly the e-mail's limit");
}

#[tokio::test]
async fn the_window_expires() {
    let redis = TestRedis::new();
    // A window long enough for the four first calls on a slow machine.
    let policy = ThrottlePolicy { window: Duration::from_secs(3), ..POLICY };
    let t = throttle(&redis, policy);
    let a = attempt("ada@shop.test", "10.0.0.1");
    for _ in 0..3 {
        t.begin(&a).await.unwrap();
    }
    assert!(matches!(t.begin(&a).await.unwrap(), ThrottleDecision::Blocked { .. }));
    // Allowed again once the window ran out (polled: no fixed wait to bet on).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while t.begin(&a).await.unwrap() != ThrottleDecision::Allowed {
        assert!(std::time::Instant::now() < deadline, "still blocked long after the window");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
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
    let err = t.begin(&attempt("ada@shop.test", "10.0.0.1")).await.unwrap_err();
    assert!(err.is_unavailable(), "{err}");
}
