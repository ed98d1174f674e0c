//! The Streams job queue against the real Redis, under a key prefix of its own.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use ecom_kernel::jobs::{Enqueued, JobId, JobQueue, NewJob, QueueName};
use ecom_redis::{connect, ConsumerSettings, QueueConsumer, RedisJobAdmin, RedisJobQueue, RedisKeys, RedisSettings};
use ecom_testkit::TestRedis;

fn pool(redis: &TestRedis) -> deadpool_redis::Pool {
    connect(&RedisSettings { url: redis.url().into(), max_connections: 8, timeout: Duration::from_secs(2) }).unwrap()
}

fn producer(redis: &TestRedis) -> RedisJobQueue {
    RedisJobQueue::new(pool(redis), RedisKeys::new(redis.prefix()))
}

async fn consumer(redis: &TestRedis, name: &str) -> QueueConsumer {
    consumer_with(redis, name, ConsumerSettings::default()).await
}

async fn consumer_with(redis: &TestRedis, name: &str, settings: ConsumerSettings) -> QueueConsumer {
    let c = QueueConsumer::new(
        pool(redis),
        redis.url(),
        &RedisKeys::new(redis.prefix()),
        QueueName::Checkout,
        name,
        settings,
    )
    .unwrap();
    c.ensure_group().await.unwrap();
    c
}

fn job(id: &str, max_attempts: u32) -> NewJob {
    NewJob {
        id: JobId::new(id),
        queue: QueueName::Checkout,
        kind: "test.noop".into(),
        payload: serde_json::json!({"n": id}),
        schema_version: 1,
        max_attempts,
        trace_id: None,
    }
}

const SHORT: Duration = Duration::from_millis(50);

/// Every delivery idle for 300 ms, each once: on a loaded machine the loop may run long enough
/// to take its own deliveries again (callers leave deliveries idle for 400 ms first).
async fn reclaim_all(rescuer: &QueueConsumer) -> Vec<ecom_redis::Delivery> {
    let mut taken = std::collections::BTreeMap::new();
    loop {
        let batch = rescuer.reclaim(Duration::from_millis(300), 100).await.unwrap();
        if batch.is_empty() {
            break;
        }
        taken.extend(batch.into_iter().map(|d| (d.entry_id.clone(), d)));
    }
    taken.into_values().collect()
}

#[tokio::test]
async fn a_job_enqueued_twice_is_delivered_once_and_completed_once() {
    let redis = TestRedis::new();
    let queue = producer(&redis);
    let c = consumer(&redis, "c1").await;
    assert_eq!(queue.enqueue(job("j1", 3)).await.unwrap(), Enqueued::Created);
    assert_eq!(queue.enqueue(job("j1", 3)).await.unwrap(), Enqueued::AlreadyPresent);

    let got = c.read(10, SHORT).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(
        (got[0].job.id.as_str(), got[0].job.attempt, &got[0].job.payload),
        ("j1", 1, &serde_json::json!({"n": "j1"}))
    );
    assert!(c.complete(&got[0], None).await.unwrap());
    assert!(!c.complete(&got[0], None).await.unwrap(), "a second ack is refused");
    assert!(c.read(10, SHORT).await.unwrap().is_empty());
    // Finished jobs are remembered: enqueuing the id again does nothing.
    assert_eq!(queue.enqueue(job("j1", 3)).await.unwrap(), Enqueued::AlreadyPresent);
    let stats = c.stats().await.unwrap();
    assert_eq!((stats.waiting, stats.in_flight, stats.delayed, stats.dead), (0, 0, 0, 0));
}

#[tokio::test]
async fn competing_consumers_complete_every_job_exactly_once() {
    let redis = TestRedis::new();
    let queue = producer(&redis);
    for i in 0..1000 {
        queue.enqueue(job(&format!("bulk-{i}"), 3)).await.unwrap();
    }
    let mut workers = Vec::new();
    for w in 0..3 {
        let c = Arc::new(consumer(&redis, &format!("w{w}")).await);
        workers.push(tokio::spawn(async move {
            let mut done = Vec::new();
            loop {
                let batch = c.read(50, Duration::from_millis(200)).await.unwrap();
                if batch.is_empty() {
                    return done;
                }
                for d in batch {
                    assert!(c.complete(&d, None).await.unwrap());
                    done.push(d.job.id.as_str().to_owned());
                }
            }
        }));
    }
    let mut counts: HashMap<String, usize> = HashMap::new();
    for w in workers {
        for id in w.await.unwrap() {
            *counts.entry(id).or_default() += 1;
        }
    }
    assert_eq!(counts.len(), 1000);
    assert!(counts.values().all(|n| *n == 1));
}

#[tokio::test]
async fn a_failing_job_is_retried_later_then_dead_lettered_with_its_error() {
    let redis = TestRedis::new();
    let queue = producer(&redis);
    let c = consumer(&redis, "c1").await;
    queue.enqueue(job("flaky", 2)).await.unwrap();

    let first = c.read(1, SHORT).await.unwrap().remove(0);
    assert!(c.retry(&first, Duration::from_millis(1000), "timeout talking to the gateway").await.unwrap());
    assert_eq!(c.promote(10).await.unwrap(), 0, "not due yet");
    assert!(c.read(1, SHORT).await.unwrap().is_empty());
    assert_eq!(c.stats().await.unwrap().delayed, 1);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(c.promote(10).await.unwrap(), 1);
    let second = c.read(1, SHORT).await.unwrap().remove(0);
    assert_eq!(second.job.attempt, 2);
    assert!(c.dead_letter(&second, "gave up after 2 attempts: card declined").await.unwrap());
    assert_eq!(
        c.dead_letters(10).await.unwrap(),
        vec![("flaky".to_owned(), "gave up after 2 attempts: card declined".to_owned())]
    );
    assert_eq!(c.stats().await.unwrap().dead, 1);
}

#[tokio::test]
async fn a_reoffer_runs_again_only_a_job_whose_retries_ran_out_and_only_once_it_was_dead_long_enough() {
    let redis = TestRedis::new();
    let queue = producer(&redis);
    let c = consumer(&redis, "c1").await;
    for id in ["broken", "outage", "busy", "finished"] {
        queue.enqueue(job(id, 1)).await.unwrap();
    }
    let mut got: HashMap<String, ecom_redis::Delivery> =
        c.read(10, SHORT).await.unwrap().into_iter().map(|d| (d.job.id.as_str().to_owned(), d)).collect();
    assert!(c.dead_letter(&got["broken"], "bad payload").await.unwrap());
    assert!(c.dead_letter_spent(&got["outage"], "gave up after 1 attempts: database unavailable").await.unwrap());
    assert!(c.complete(&got["finished"], None).await.unwrap());
    let busy = got.remove("busy").unwrap();
    assert_eq!(c.stats().await.unwrap().dead, 2);

    // Offered with another payload: a job that exists keeps its own.
    let offered = |id: &str| NewJob { payload: serde_json::json!({"offered": id}), ..job(id, 1) };
    let all = [offered("broken"), offered("outage"), offered("busy"), offered("finished"), offered("new")];
    let hour = Duration::from_secs(3600);
    assert_eq!(
        queue.reoffer(&all, hour).await.unwrap(),
        [
            Enqueued::AlreadyPresent,
            Enqueued::AlreadyPresent,
            Enqueued::AlreadyPresent,
            Enqueued::AlreadyPresent,
            Enqueued::Created
        ],
        "dead for less than an hour: not yet"
    );
    tokio::time::sleep(Duration::from_millis(60)).await;
    assert_eq!(
        queue.reoffer(&all, Duration::from_millis(50)).await.unwrap(),
        [
            Enqueued::AlreadyPresent,
            Enqueued::Redriven,
            Enqueued::AlreadyPresent,
            Enqueued::AlreadyPresent,
            Enqueued::AlreadyPresent
        ]
    );
    // The one that died of an outage left the dead letters and runs again from its first
    // attempt, with its own payload; the one that failed for good stays for an operator.
    assert_eq!(c.dead_letters(10).await.unwrap(), vec![("broken".to_owned(), "bad payload".to_owned())]);
    let mut again: Vec<ecom_redis::Delivery> = c.read(10, SHORT).await.unwrap();
    again.sort_by(|a, b| a.job.id.as_str().cmp(b.job.id.as_str()));
    let seen: Vec<(&str, u32, &serde_json::Value)> =
        again.iter().map(|d| (d.job.id.as_str(), d.job.attempt, &d.job.payload)).collect();
    assert_eq!(
        seen,
        [("new", 1, &serde_json::json!({"offered": "new"})), ("outage", 1, &serde_json::json!({"n": "outage"}))]
    );
    // Offered again while it runs: nothing happens.
    assert_eq!(queue.reoffer(&[offered("outage")], Duration::ZERO).await.unwrap(), [Enqueued::AlreadyPresent]);

    // It runs out of retries again: revived once before, it now waits twice as long (wide
    // margins: a loaded machine may stall between the steps).
    assert!(c.dead_letter_spent(&again[1], "gave up after 1 attempts: database unavailable").await.unwrap());
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let wait = Duration::from_secs(1);
    assert_eq!(queue.reoffer(&[offered("outage")], wait).await.unwrap(), [Enqueued::AlreadyPresent]);
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(queue.reoffer(&[offered("outage")], wait).await.unwrap(), [Enqueued::Redriven]);

    assert!(c.complete(&busy, None).await.unwrap());
    assert!(c.complete(&again[0], None).await.unwrap());
    assert_eq!(c.read(10, SHORT).await.unwrap().len(), 1, "only the revived job");
    assert_eq!(c.stats().await.unwrap().dead, 1);
}

#[tokio::test]
async fn a_job_dead_before_dead_letters_were_recorded_on_it_is_still_re_driven_and_its_letter_removed() {
    let redis = TestRedis::new();
    let queue = producer(&redis);
    let admin = RedisJobAdmin::new(pool(&redis), RedisKeys::new(redis.prefix()));
    let c = consumer(&redis, "c1").await;
    queue.enqueue(job("legacy", 1)).await.unwrap();
    let got = c.read(10, SHORT).await.unwrap().remove(0);
    assert!(c.dead_letter(&got, "bad payload").await.unwrap());
    let key = RedisKeys::new(redis.prefix()).queue(QueueName::Checkout.as_str()).job("legacy");
    let mut conn = pool(&redis).get().await.unwrap();
    deadpool_redis::redis::cmd("HDEL").arg(&key).arg("dead_entry").query_async::<u64>(&mut conn).await.unwrap();

    assert_eq!(admin.retry_dead(&JobId::new("legacy")).await.unwrap(), Some(QueueName::Checkout));
    assert!(admin.dead_letters(10).await.unwrap().is_empty());
    let again = c.read(10, SHORT).await.unwrap().remove(0);
    assert_eq!((again.job.id.as_str(), again.job.attempt), ("legacy", 1));
}

#[tokio::test]
async fn a_job_whose_retries_ran_out_runs_again_by_itself_later_each_time_and_one_that_failed_for_good_never() {
    let redis = TestRedis::new();
    let queue = producer(&redis);
    let admin = RedisJobAdmin::new(pool(&redis), RedisKeys::new(redis.prefix()));
    let second = Duration::from_secs(1);
    let c = consumer_with(&redis, "c1", ConsumerSettings { revive_after: second, ..ConsumerSettings::default() }).await;
    for id in ["broken", "outage", "manual"] {
        queue.enqueue(job(id, 1)).await.unwrap();
    }
    let got: HashMap<String, ecom_redis::Delivery> =
        c.read(10, SHORT).await.unwrap().into_iter().map(|d| (d.job.id.as_str().to_owned(), d)).collect();
    let spent = RedisKeys::new(redis.prefix()).queue(QueueName::Checkout.as_str()).spent();
    let waiting = || async {
        let mut conn = pool(&redis).get().await.unwrap();
        deadpool_redis::redis::cmd("ZCARD").arg(&spent).query_async::<u64>(&mut conn).await.unwrap()
    };
    let died = chrono::Utc::now();
    assert!(c.dead_letter(&got["broken"], "bad payload").await.unwrap());
    assert!(c.dead_letter_spent(&got["outage"], "gave up after 1 attempts: database unavailable").await.unwrap());
    assert_eq!(c.revive_due(10).await.unwrap(), 0, "not dead long enough");
    // Run again by an operator before its time: it leaves the set, and is not run a second time
    // (while it runs) when that time comes.
    assert!(c.dead_letter_spent(&got["manual"], "gave up after 1 attempts: database unavailable").await.unwrap());
    assert_eq!(waiting().await, 2);
    assert_eq!(admin.retry_dead(&JobId::new("manual")).await.unwrap(), Some(QueueName::Checkout));
    assert_eq!(admin.retry_dead(&JobId::new("manual")).await.unwrap(), None, "running, not dead");
    assert_eq!(admin.retry_dead(&JobId::new("nobody")).await.unwrap(), None);
    assert_eq!(waiting().await, 1, "only the outage's job waits");
    let manual = c.read(10, SHORT).await.unwrap().remove(0);
    assert_eq!((manual.job.id.as_str(), manual.job.attempt), ("manual", 1));

    // Operators see which dead letters run again by themselves, and when: a second after their
    // death, plus up to a quarter of that at random.
    let letters = admin.dead_letters(10).await.unwrap();
    let revives: HashMap<&str, Option<chrono::DateTime<chrono::Utc>>> =
        letters.iter().map(|l| (l.job_id.as_str(), l.revives_at)).collect();
    assert_eq!(revives["broken"], None, "failed for good");
    assert!(!revives.contains_key("manual"), "its dead letter went with the re-drive: {letters:?}");
    let at = revives["outage"].expect("out of retries: it runs again");
    let after = at - died;
    assert!(after >= chrono::Duration::milliseconds(990) && after <= chrono::Duration::milliseconds(3000), "{after}");

    tokio::time::sleep(Duration::from_millis(1400)).await;
    assert_eq!(c.revive_due(10).await.unwrap(), 1, "the outage's job, not the one running");
    assert_eq!(c.revive_due(10).await.unwrap(), 0, "once");
    assert!(c.complete(&manual, None).await.unwrap());
    assert_eq!(c.dead_letters(10).await.unwrap(), vec![("broken".to_owned(), "bad payload".to_owned())]);
    let again = c.read(10, SHORT).await.unwrap();
    let seen: Vec<(&str, u32, &serde_json::Value)> =
        again.iter().map(|d| (d.job.id.as_str(), d.job.attempt, &d.job.payload)).collect();
    assert_eq!(seen, [("outage", 1, &serde_json::json!({"n": "outage"}))], "from its first attempt, as it was");

    // Out of retries again: revived once before, it now waits two seconds (and up to half a
    // second more).
    assert!(c.dead_letter_spent(&again[0], "gave up after 1 attempts: database unavailable").await.unwrap());
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(c.revive_due(10).await.unwrap(), 0, "not yet: twice as long");
    tokio::time::sleep(Duration::from_millis(1700)).await;
    assert_eq!(c.revive_due(10).await.unwrap(), 1);
    let third = c.read(10, SHORT).await.unwrap().remove(0);
    assert_eq!(third.job.attempt, 1);

    // A sweep's offer before its time takes it out of the set too.
    assert!(c.dead_letter_spent(&third, "gave up after 1 attempts: database unavailable").await.unwrap());
    assert!(admin
        .dead_letters(10)
        .await
        .unwrap()
        .iter()
        .any(|l| l.job_id.as_str() == "outage" && l.revives_at.is_some()));
    assert_eq!(queue.reoffer(&[job("outage", 1)], Duration::ZERO).await.unwrap(), [Enqueued::Redriven]);
    let offered = c.read(10, SHORT).await.unwrap().remove(0);
    assert!(c.complete(&offered, None).await.unwrap());
    assert!(c.read(10, SHORT).await.unwrap().is_empty());
    assert_eq!(waiting().await, 0, "nothing left waiting to run again");
    assert_eq!(c.stats().await.unwrap().dead, 1, "the broken job waits for an operator");
}

#[tokio::test]
async fn a_crashed_consumers_delivery_is_reclaimed_and_its_late_ack_refused() {
    let redis = TestRedis::new();
    let queue = producer(&redis);
    let crashed = consumer(&redis, "crashed").await;
    let rescuer = consumer(&redis, "rescuer").await;
    queue.enqueue(job("orphan", 5)).await.unwrap();

    let lost = crashed.read(1, SHORT).await.unwrap().remove(0);
    assert!(rescuer.reclaim(Duration::from_secs(60), 10).await.unwrap().is_empty(), "not idle long enough");
    tokio::time::sleep(Duration::from_millis(120)).await;
    let reclaimed = rescuer.reclaim(Duration::from_millis(100), 10).await.unwrap();
    assert_eq!(reclaimed.len(), 1);
    assert_eq!((reclaimed[0].job.id.as_str(), reclaimed[0].job.attempt), ("orphan", 2));
    assert!(!crashed.complete(&lost, None).await.unwrap(), "the crashed consumer's late ack is refused");
    assert!(rescuer.complete(&reclaimed[0], None).await.unwrap());
}

#[tokio::test]
async fn a_heartbeat_keeps_a_long_job_from_being_reclaimed() {
    let redis = TestRedis::new();
    let queue = producer(&redis);
    let busy = consumer(&redis, "busy").await;
    let other = consumer(&redis, "other").await;
    queue.enqueue(job("long", 3)).await.unwrap();
    let d = busy.read(1, SHORT).await.unwrap().remove(0);
    // 2 s in all, well past the 1.5 s idle threshold, yet never idle more than ~0.4 s.
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(busy.heartbeat(&d).await.unwrap());
        assert!(other.reclaim(Duration::from_millis(1500), 10).await.unwrap().is_empty());
    }
    assert!(busy.complete(&d, None).await.unwrap());
}

#[tokio::test]
async fn a_job_that_cannot_be_read_is_dead_lettered_and_the_rest_of_its_batch_runs() {
    let redis = TestRedis::new();
    let queue = producer(&redis);
    let c = consumer(&redis, "c1").await;
    for id in ["before", "damaged", "after"] {
        queue.enqueue(job(id, 3)).await.unwrap();
    }
    let damaged = RedisKeys::new(redis.prefix()).queue(QueueName::Checkout.as_str()).job("damaged");
    let mut conn = pool(&redis).get().await.unwrap();
    let _: () = deadpool_redis::redis::cmd("HSET")
        .arg(&damaged)
        .arg("data")
        .arg("{not json")
        .query_async(&mut conn)
        .await
        .unwrap();
    let read: Vec<String> = c.read(10, SHORT).await.unwrap().iter().map(|d| d.job.id.as_str().to_owned()).collect();
    assert_eq!(read, ["before", "after"]);
    let dead = c.dead_letters(10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].0, "damaged");
    assert!(dead[0].1.starts_with("the stored job cannot be read"), "{dead:?}");
    // As one out of retries: it runs again by itself later (a newer worker may read it).
    let spent = RedisKeys::new(redis.prefix()).queue(QueueName::Checkout.as_str()).spent();
    let waiting: u64 = deadpool_redis::redis::cmd("ZCARD").arg(&spent).query_async(&mut conn).await.unwrap();
    assert_eq!(waiting, 1);
}

#[tokio::test]
async fn a_heartbeat_after_the_delivery_was_reclaimed_leaves_it_with_its_new_owner() {
    let redis = TestRedis::new();
    let queue = producer(&redis);
    let cut_off = consumer(&redis, "cut-off").await;
    let rescuer = consumer(&redis, "rescuer").await;
    queue.enqueue(job("taken-over", 3)).await.unwrap();
    let d = cut_off.read(1, SHORT).await.unwrap().remove(0);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let taken = rescuer.reclaim(Duration::from_millis(200), 10).await.unwrap();
    assert_eq!(taken.len(), 1);
    // The first worker comes back and beats: the delivery stays the rescuer's.
    assert!(!cut_off.heartbeat(&d).await.unwrap());
    assert!(!cut_off.complete(&d, None).await.unwrap(), "not the first worker's to complete");
    assert!(rescuer.complete(&taken[0], None).await.unwrap(), "the rescuer's outcome is recorded");
}

#[tokio::test]
async fn flow_steps_run_in_order_even_when_a_middle_step_is_retried() {
    let redis = TestRedis::new();
    let queue = producer(&redis);
    let c = consumer(&redis, "c1").await;
    queue.enqueue(job("flow:save", 3)).await.unwrap();
    let mut order = Vec::new();
    let mut retried = false;
    loop {
        c.promote(10).await.unwrap();
        let batch = c.read(10, Duration::from_millis(100)).await.unwrap();
        if batch.is_empty() {
            if c.stats().await.unwrap().delayed == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        assert_eq!(batch.len(), 1, "never two steps of one flow at once");
        let d = &batch[0];
        let id = d.job.id.as_str().to_owned();
        if id == "flow:send" && !retried {
            retried = true;
            c.retry(d, Duration::from_millis(50), "publish failed").await.unwrap();
            continue;
        }
        order.push(id.clone());
        let next = match id.as_str() {
            "flow:save" => Some(job("flow:send", 3)),
            "flow:send" => Some(job("flow:update", 3)),
            _ => None,
        };
        assert!(c.complete(d, next.as_ref()).await.unwrap());
    }
    assert_eq!(order, ["flow:save", "flow:send", "flow:update"]);
}

#[tokio::test]
async fn a_scheduled_job_waits_for_its_time() {
    let redis = TestRedis::new();
    let queue = producer(&redis);
    let c = consumer(&redis, "c1").await;
    queue.enqueue_at(job("later", 1), chrono::Utc::now() + chrono::Duration::milliseconds(1000)).await.unwrap();
    assert_eq!(c.promote(10).await.unwrap(), 0);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(c.promote(10).await.unwrap(), 1);
    assert_eq!(c.read(1, SHORT).await.unwrap()[0].job.id.as_str(), "later");
}

#[tokio::test]
async fn concurrent_completions_share_group_commits_and_each_gets_its_own_answer() {
    let redis = TestRedis::new();
    let queue = producer(&redis);
    let jobs: Vec<NewJob> = (0..300).map(|i| job(&format!("group-{i}"), 3)).collect();
    queue.enqueue_batch(&jobs).await.unwrap();
    let slow = Arc::new(consumer(&redis, "slow").await);
    let rescuer = consumer(&redis, "rescuer").await;
    let deliveries = slow.read(300, SHORT).await.unwrap();
    assert_eq!(deliveries.len(), 300);
    // All but a fifth of them go idle and are taken over before the slow consumer acks.
    tokio::time::sleep(Duration::from_millis(400)).await;
    for d in deliveries.iter().filter(|d| d.job.id.as_str().ends_with('0') || d.job.id.as_str().ends_with('5')) {
        assert!(slow.heartbeat(d).await.unwrap());
    }
    let taken = reclaim_all(&rescuer).await;
    assert_eq!(taken.len(), 240, "all but the 60 that got a heartbeat");

    let mut acks = tokio::task::JoinSet::new();
    for d in deliveries {
        let slow = slow.clone();
        acks.spawn(async move { (d.job.id.as_str().to_owned(), slow.complete(&d, None).await.unwrap()) });
    }
    let mut owned_count = 0;
    while let Some(answer) = acks.join_next().await {
        let (id, owned) = answer.unwrap();
        assert_eq!(owned, id.ends_with('0') || id.ends_with('5'), "{id}");
        owned_count += usize::from(owned);
    }
    assert_eq!(owned_count, 60);
    for d in &taken {
        assert!(rescuer.complete(d, None).await.unwrap());
    }
    let stats = slow.stats().await.unwrap();
    assert_eq!((stats.waiting, stats.in_flight, stats.delayed, stats.dead), (0, 0, 0, 0));
}

#[tokio::test]
async fn grouped_completions_enqueue_each_next_step_once_and_only_while_still_owned() {
    let redis = TestRedis::new();
    let queue = producer(&redis);
    let firsts: Vec<NewJob> = (0..200).map(|i| job(&format!("first-{i}"), 3)).collect();
    queue.enqueue_batch(&firsts).await.unwrap();
    // One next step exists already: completing its predecessor must not enqueue it again.
    queue.enqueue(job("next-0", 3)).await.unwrap();
    let slow = Arc::new(consumer(&redis, "slow").await);
    let rescuer = consumer(&redis, "rescuer").await;
    let deliveries = slow.read(200, SHORT).await.unwrap();
    assert_eq!(deliveries.len(), 200);
    // Three quarters go idle and are taken over before the slow consumer completes them.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let index = |d: &ecom_redis::Delivery| d.job.id.as_str().trim_start_matches("first-").parse::<usize>().unwrap();
    for d in deliveries.iter().filter(|d| index(d) % 4 == 0) {
        assert!(slow.heartbeat(d).await.unwrap());
    }
    let taken = reclaim_all(&rescuer).await;
    assert_eq!(taken.len(), 150);

    let mut acks = tokio::task::JoinSet::new();
    for d in deliveries {
        let slow = slow.clone();
        acks.spawn(async move {
            let i = index(&d);
            (i, slow.complete(&d, Some(&job(&format!("next-{i}"), 3))).await.unwrap())
        });
    }
    while let Some(answer) = acks.join_next().await {
        let (i, owned) = answer.unwrap();
        assert_eq!(owned, i % 4 == 0, "first-{i}");
    }
    // Only the completions that counted enqueued their next step (next-0 was there already).
    let reader = consumer(&redis, "reader").await;
    let mut next: Vec<String> = Vec::new();
    loop {
        let batch = reader.read(100, SHORT).await.unwrap();
        if batch.is_empty() {
            break;
        }
        for d in &batch {
            next.push(d.job.id.as_str().to_owned());
            assert!(reader.complete(d, None).await.unwrap());
        }
    }
    next.sort();
    let mut expected: Vec<String> = (0..200).filter(|i| i % 4 == 0).map(|i| format!("next-{i}")).collect();
    expected.sort();
    assert_eq!(next, expected);

    // The rescuer's completions count, and enqueue the other next steps.
    for d in &taken {
        assert!(rescuer.complete(d, Some(&job(&format!("next-{}", index(d)), 3))).await.unwrap());
    }
    let mut rest = 0;
    loop {
        let batch = reader.read(100, SHORT).await.unwrap();
        if batch.is_empty() {
            break;
        }
        for d in &batch {
            assert_ne!(index_of_next(d) % 4, 0, "{} came twice", d.job.id.as_str());
            assert!(reader.complete(d, None).await.unwrap());
            rest += 1;
        }
    }
    assert_eq!(rest, 150);
    let stats = reader.stats().await.unwrap();
    assert_eq!((stats.waiting, stats.in_flight, stats.delayed, stats.dead), (0, 0, 0, 0));
}

fn index_of_next(d: &ecom_redis::Delivery) -> usize {
    d.job.id.as_str().trim_start_matches("next-").parse().unwrap()
}

#[tokio::test]
async fn the_queue_works_on_after_the_server_lost_its_scripts() {
    let redis = TestRedis::new();
    let queue = producer(&redis);
    let c = consumer(&redis, "c1").await;
    // Every script loaded, as on a busy server.
    queue.enqueue_batch(&[job("warm", 3)]).await.unwrap();
    let warm = c.read(1, SHORT).await.unwrap();
    assert!(c.complete(&warm[0], None).await.unwrap());

    // A restart (or SCRIPT FLUSH) forgets them; every other user of this server reloads its own.
    let client = deadpool_redis::redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = deadpool_redis::redis::cmd("SCRIPT").arg("FLUSH").query_async(&mut conn).await.unwrap();

    let created = queue.enqueue_batch(&[job("a", 3), job("b", 3), job("a", 3)]).await.unwrap();
    assert_eq!(created, [Enqueued::Created, Enqueued::Created, Enqueued::AlreadyPresent]);
    let got = c.read(10, SHORT).await.unwrap();
    let ids: Vec<&str> = got.iter().map(|d| d.job.id.as_str()).collect();
    assert_eq!((ids, got[0].job.attempt), (vec!["a", "b"], 1));
    assert!(c.complete(&got[0], Some(&job("a:next", 3))).await.unwrap());
    assert!(c.retry(&got[1], Duration::ZERO, "try again").await.unwrap());
    assert_eq!(c.promote(10).await.unwrap(), 1);
    let again: Vec<(String, u32)> =
        c.read(10, SHORT).await.unwrap().iter().map(|d| (d.job.id.as_str().to_owned(), d.job.attempt)).collect();
    assert_eq!(again, [("a:next".to_owned(), 1), ("b".to_owned(), 2)]);
}

#[tokio::test]
async fn an_idle_delivery_behind_many_running_ones_is_reclaimed() {
    let redis = TestRedis::new();
    let queue = producer(&redis);
    let jobs: Vec<NewJob> = (0..25).map(|i| job(&format!("run-{i:02}"), 3)).collect();
    queue.enqueue_batch(&jobs).await.unwrap();
    // The 24 oldest run on a live worker; the newest was taken by one that crashed.
    let live = consumer(&redis, "live").await;
    let running = live.read(24, SHORT).await.unwrap();
    let crashed = consumer(&redis, "crashed").await;
    assert_eq!(crashed.read(1, SHORT).await.unwrap()[0].job.id.as_str(), "run-24");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    for d in &running {
        assert!(live.heartbeat(d).await.unwrap());
    }
    // A rescuer with one free slot looks at ten pending entries a call: it goes on from where
    // it stopped, and reaches the idle one on its third call.
    let rescuer = consumer(&redis, "rescuer").await;
    let mut taken = Vec::new();
    for _ in 0..3 {
        taken.extend(rescuer.reclaim(Duration::from_secs(1), 1).await.unwrap());
    }
    let ids: Vec<&str> = taken.iter().map(|d| d.job.id.as_str()).collect();
    assert_eq!(ids, ["run-24"]);
}

#[tokio::test]
async fn consumers_of_departed_workers_are_forgotten_unless_they_hold_a_delivery() {
    let redis = TestRedis::new();
    // Before any worker made the queue's stream and group (a fresh Redis): nothing to forget.
    let early = QueueConsumer::new(
        pool(&redis),
        redis.url(),
        &RedisKeys::new(redis.prefix()),
        QueueName::Checkout,
        "early",
        ConsumerSettings::default(),
    )
    .unwrap();
    assert_eq!(early.forget_idle_consumers(Duration::ZERO).await.unwrap(), 0);
    let queue = producer(&redis);
    queue.enqueue_batch(&[job("done", 3), job("held", 3)]).await.unwrap();
    // One worker ran its job and went away; another went away holding one.
    let gone = consumer(&redis, "gone").await;
    let done = gone.read(1, SHORT).await.unwrap().remove(0);
    assert!(gone.complete(&done, None).await.unwrap());
    let crashed = consumer(&redis, "crashed").await;
    assert_eq!(crashed.read(1, SHORT).await.unwrap().len(), 1);
    let names = |redis: &TestRedis| {
        let stream = RedisKeys::new(redis.prefix()).queue(QueueName::Checkout.as_str()).stream();
        let mut conn = deadpool_redis::redis::Client::open(redis.url()).unwrap().get_connection().unwrap();
        let consumers: Vec<HashMap<String, deadpool_redis::redis::Value>> =
            deadpool_redis::redis::cmd("XINFO").arg("CONSUMERS").arg(stream).arg("workers").query(&mut conn).unwrap();
        let mut names: Vec<String> = consumers
            .iter()
            .map(|c| match &c["name"] {
                deadpool_redis::redis::Value::BulkString(b) => String::from_utf8(b.clone()).unwrap(),
                deadpool_redis::redis::Value::SimpleString(s) => s.clone(),
                other => panic!("name: {other:?}"),
            })
            .collect();
        names.sort();
        names
    };
    assert_eq!(names(&redis), ["crashed", "gone"]);

    let upkeep = consumer(&redis, "upkeep").await;
    assert_eq!(upkeep.forget_idle_consumers(Duration::from_secs(60)).await.unwrap(), 0, "not idle long enough");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(upkeep.forget_idle_consumers(Duration::from_millis(200)).await.unwrap(), 1);
    // The one holding a delivery stays, for a reclaim to take it over.
    assert_eq!(names(&redis), ["crashed"]);
    let rescuer = consumer(&redis, "rescuer").await;
    assert_eq!(rescuer.reclaim(Duration::from_millis(200), 10).await.unwrap()[0].job.id.as_str(), "held");
}
