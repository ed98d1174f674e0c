//! The notification repository against the real PostgreSQL, one database per test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use chrono::{DateTime, Utc};
use ecom_identity::model::*;
use ecom_identity::ports::CustomerRepository;
use ecom_kernel::{Email, OrderId, PageRequest};
use ecom_notifications::model::{
    Audience, Event, Notification, NotificationId, NotificationRequest, NotificationStatus,
};
use ecom_notifications::ports::{NotificationRepository, Recipients};
use ecom_postgres::{
    connect, connect_batch, BatchPool, PgAdminRecipients, PgCustomerRepository, PgNotificationRepository, PgPool,
    PgSettings,
};
use ecom_testkit::TestDb;
use uuid::Uuid;

fn settings(db: &TestDb) -> PgSettings {
    PgSettings {
        url: db.url(),
        max_connections: 4,
        acquire_timeout: Duration::from_secs(5),
        statement_timeout: Duration::from_secs(5),
        application_name: "adapter-test".into(),
    }
}

fn pool(db: &TestDb) -> PgPool {
    connect(&settings(db)).unwrap()
}

fn batch(db: &TestDb) -> BatchPool {
    connect_batch(&settings(db)).unwrap()
}

fn at(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
}

async fn account(pool: &PgPool, role: Role) -> CustomerId {
    let text = |s: &str| BoundedText::parse(s, 200).unwrap();
    let c = Customer::restore(
        CustomerId::new(),
        Email::parse(&format!("{}@shop.test", Uuid::now_v7().simple())).unwrap(),
        text("Ada"),
        text("Lovelace"),
        None,
        role,
        at(0),
        at(0),
    );
    PgCustomerRepository::new(pool.clone()).insert(&c, &PasswordHash::new("h".into())).await.unwrap();
    c.id()
}

fn shipped(key: &str, customer: CustomerId) -> Notification {
    NotificationRequest::new(key, Audience::Customer(customer), &Event::OrderShipped { order_id: OrderId::new() })
        .for_recipient(customer, at(1))
}

#[tokio::test]
async fn saving_twice_keeps_one_row_per_key_and_recipient() {
    let db = TestDb::new().await;
    let pool = pool(&db);
    let repo = PgNotificationRepository::new(pool.clone(), batch(&db));
    let (ada, bob) = (account(&pool, Role::Customer).await, account(&pool, Role::Customer).await);
    repo.save(&[shipped("order:1:shipped", ada), shipped("order:1:shipped", bob)]).await.unwrap();
    // A redelivered save job builds new ids for the same key: nothing more is stored.
    repo.save(&[shipped("order:1:shipped", ada)]).await.unwrap();
    let pending = repo.pending("order:1:shipped").await.unwrap();
    assert_eq!(pending.len(), 2);
    assert!(pending.iter().all(|n| n.status == NotificationStatus::Pending));
    let page = repo.list(ada, false, &PageRequest::first(10)).await.unwrap();
    assert_eq!(page.items.len(), 1);
    assert_eq!(page.items[0].data, pending.iter().find(|n| n.customer_id == ada).unwrap().data);
}

#[tokio::test]
async fn statuses_only_move_forward() {
    let db = TestDb::new().await;
    let pool = pool(&db);
    let repo = PgNotificationRepository::new(pool.clone(), batch(&db));
    let ada = account(&pool, Role::Customer).await;
    let (first, second) = (shipped("a", ada), shipped("b", ada));
    repo.save(&[first.clone(), second.clone()]).await.unwrap();
    assert_eq!(repo.undelivered(ada, None, 10).await.unwrap().len(), 2);

    // The device acknowledged `a` before the update step ran: it stays DELIVERED.
    assert!(repo.mark_delivered(ada, first.id).await.unwrap());
    assert_eq!(repo.mark_sent("a").await.unwrap(), 0);
    assert_eq!(repo.mark_sent("b").await.unwrap(), 1);
    assert_eq!(repo.mark_sent("b").await.unwrap(), 0, "idempotent");
    let undelivered = repo.undelivered(ada, None, 10).await.unwrap();
    assert_eq!(undelivered.iter().map(|n| n.id).collect::<Vec<_>>(), vec![second.id]);
    assert_eq!(undelivered[0].status, NotificationStatus::Sent);
    assert!(repo.pending("b").await.unwrap().is_empty());

    // Read: out of the backlog, with a time; acknowledging it later changes nothing.
    assert!(repo.mark_read(ada, second.id, at(5)).await.unwrap());
    assert!(repo.mark_delivered(ada, second.id).await.unwrap());
    let page = repo.list(ada, false, &PageRequest::first(10)).await.unwrap();
    let read = page.items.iter().find(|n| n.id == second.id).unwrap();
    assert_eq!((read.status, read.read_at), (NotificationStatus::Read, Some(at(5))));
    assert!(repo.undelivered(ada, None, 10).await.unwrap().is_empty());
}

#[tokio::test]
async fn nobody_marks_another_recipients_notification() {
    let db = TestDb::new().await;
    let pool = pool(&db);
    let repo = PgNotificationRepository::new(pool.clone(), batch(&db));
    let (ada, eve) = (account(&pool, Role::Customer).await, account(&pool, Role::Customer).await);
    let note = shipped("k", ada);
    repo.save(std::slice::from_ref(&note)).await.unwrap();
    assert!(!repo.mark_delivered(eve, note.id).await.unwrap());
    assert!(!repo.mark_read(eve, note.id, at(2)).await.unwrap());
    assert!(!repo.mark_read(ada, NotificationId::new(), at(2)).await.unwrap());
    assert_eq!(repo.mark_all_read(eve, at(2)).await.unwrap(), 0);
    assert_eq!(repo.undelivered(ada, None, 10).await.unwrap().len(), 1, "untouched");
}

#[tokio::test]
async fn lists_page_newest_first_and_filter_unread() {
    let db = TestDb::new().await;
    let pool = pool(&db);
    let repo = PgNotificationRepository::new(pool.clone(), batch(&db));
    let ada = account(&pool, Role::Customer).await;
    let notes: Vec<Notification> = (0..5).map(|i| shipped(&format!("k{i}"), ada)).collect();
    repo.save(&notes).await.unwrap();
    assert!(repo.mark_read(ada, notes[4].id, at(3)).await.unwrap());

    let mut seen = Vec::new();
    let mut page = PageRequest::first(2);
    loop {
        let got = repo.list(ada, false, &page).await.unwrap();
        seen.extend(got.items.iter().map(|n| n.id));
        match got.next {
            Some(next) => page = PageRequest::first(2).with_after(Some(next)),
            None => break,
        }
    }
    let newest_first: Vec<NotificationId> = notes.iter().rev().map(|n| n.id).collect();
    assert_eq!(seen, newest_first);

    let unread = repo.list(ada, true, &PageRequest::first(10)).await.unwrap();
    assert_eq!(unread.items.len(), 4);
    assert!(unread.items.iter().all(|n| n.id != notes[4].id));
    assert_eq!(repo.mark_all_read(ada, at(4)).await.unwrap(), 4);
    assert!(repo.list(ada, true, &PageRequest::first(10)).await.unwrap().items.is_empty());
}

#[tokio::test]
async fn admins_are_the_accounts_with_the_admin_role() {
    let db = TestDb::new().await;
    let pool = pool(&db);
    let admin = account(&pool, Role::Admin).await;
    account(&pool, Role::Customer).await;
    assert_eq!(PgAdminRecipients::new(pool).admins().await.unwrap(), vec![admin]);
}

#[tokio::test]
async fn the_undelivered_are_read_a_page_at_a_time_each_once_oldest_first() {
    let db = TestDb::new().await;
    let pool = pool(&db);
    let repo = PgNotificationRepository::new(pool.clone(), batch(&db));
    let ada = account(&pool, Role::Customer).await;
    let notes: Vec<Notification> = (0..7).map(|i| shipped(&format!("order:{i}:shipped"), ada)).collect();
    repo.save(&notes).await.unwrap();
    let (mut seen, mut after) = (Vec::new(), None);
    loop {
        let page = repo.undelivered(ada, after, 3).await.unwrap();
        seen.extend(page.iter().map(|n| n.id));
        match page.last() {
            Some(last) if page.len() == 3 => after = Some(last.id),
            _ => break,
        }
    }
    assert_eq!(seen, notes.iter().map(|n| n.id).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledgements_made_together_each_get_their_own_answer() {
    let db = TestDb::new().await;
    let pool = pool(&db);
    let repo = std::sync::Arc::new(PgNotificationRepository::new(pool.clone(), batch(&db)));
    let (ada, eve) = (account(&pool, Role::Customer).await, account(&pool, Role::Customer).await);
    let notes: Vec<Notification> = (0..40).map(|i| shipped(&format!("order:{i}:shipped"), ada)).collect();
    repo.save(&notes).await.unwrap();
    // Every notification acknowledged by its owner, twice, and by someone else, all at once: the
    // calls share statements, and each still gets its own answer.
    let calls =
        notes.iter().flat_map(|n| [(ada, n.id, true), (ada, n.id, true), (eve, n.id, false)]).map(|(who, id, mine)| {
            let repo = repo.clone();
            tokio::spawn(async move { (repo.mark_delivered(who, id).await.unwrap(), mine) })
        });
    for call in futures_util::future::join_all(calls).await {
        let (answer, mine) = call.unwrap();
        assert_eq!(answer, mine);
    }
    assert!(repo.undelivered(ada, None, 100).await.unwrap().is_empty(), "every one delivered");
    let page = repo.list(ada, false, &PageRequest::first(100)).await.unwrap();
    assert!(page.items.iter().all(|n| n.status == NotificationStatus::Delivered));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grouped_updates_and_mark_all_read_never_deadlock() {
    let db = TestDb::new().await;
    let pool = pool(&db);
    let repo = std::sync::Arc::new(PgNotificationRepository::new(pool.clone(), batch(&db)));
    let ada = account(&pool, Role::Customer).await;
    for round in 0..5 {
        let notes: Vec<Notification> = (0..30).map(|i| shipped(&format!("r{round}:{}", i % 10), ada)).collect();
        let notes: Vec<Notification> = {
            // One row per key and recipient: keep the first of each key.
            let mut seen = std::collections::HashSet::new();
            notes.into_iter().filter(|n| seen.insert(n.key.clone())).collect()
        };
        repo.save(&notes).await.unwrap();
        // Acknowledgements (in reverse order), the flow's "sent" marks and "mark all read", all at
        // once: each changes several rows; none may wait for another in a cycle (a deadlock fails
        // one of them after a second).
        let acks = notes.iter().rev().map(|n| {
            let (repo, id) = (repo.clone(), n.id);
            tokio::spawn(async move { repo.mark_delivered(ada, id).await.map(|_| ()) })
        });
        let sents = notes.iter().map(|n| {
            let (repo, key) = (repo.clone(), n.key.clone());
            tokio::spawn(async move { repo.mark_sent(&key).await.map(|_| ()) })
        });
        let reads = (0..3).map(|_| {
            let repo = repo.clone();
            tokio::spawn(async move { repo.mark_all_read(ada, at(9)).await.map(|_| ()) })
        });
        for result in futures_util::future::join_all(acks.chain(sents).chain(reads)).await {
            result.unwrap().unwrap();
        }
        let page = repo.list(ada, true, &PageRequest::first(100)).await.unwrap();
        assert!(page.items.is_empty(), "round {round}: everything read in the end");
    }
}

/// Holds notification `id` locked by another transaction that moves it (PENDING → SENT, as the
/// flow's update step does) until `release` fires; `locked` fires once it holds the lock.
async fn moved_meanwhile(
    url: String,
    id: NotificationId,
    locked: tokio::sync::oneshot::Sender<()>,
    release: tokio::sync::oneshot::Receiver<()>,
) {
    use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
    let mut conn = AsyncPgConnection::establish(&url).await.unwrap();
    let moved = format!("UPDATE notifications SET status = 'SENT', sent_at = now() WHERE id = '{}'", id.as_uuid());
    conn.batch_execute(&format!("BEGIN; {moved}")).await.unwrap();
    locked.send(()).unwrap();
    release.await.unwrap();
    conn.batch_execute("COMMIT").await.unwrap();
}

#[tokio::test]
async fn an_acknowledgement_that_waited_for_a_concurrent_change_still_marks_its_notification() {
    let db = TestDb::new().await;
    let pool = pool(&db);
    let repo = std::sync::Arc::new(PgNotificationRepository::new(pool.clone(), batch(&db)));
    let ada = account(&pool, Role::Customer).await;
    let note = shipped("k", ada);
    repo.save(std::slice::from_ref(&note)).await.unwrap();
    let (locked, is_locked) = tokio::sync::oneshot::channel();
    let (release, released) = tokio::sync::oneshot::channel();
    let holder = tokio::spawn(moved_meanwhile(db.url(), note.id, locked, released));
    is_locked.await.unwrap();
    // The acknowledgement waits for the lock, then must act on the row's newer version.
    let ack = tokio::spawn({
        let repo = repo.clone();
        async move { repo.mark_delivered(ada, note.id).await.unwrap() }
    });
    db.wait_for_a_lock_wait().await;
    assert!(!ack.is_finished(), "the acknowledgement waits for the other transaction");
    release.send(()).unwrap();
    holder.await.unwrap();
    assert!(ack.await.unwrap(), "the owner's acknowledgement counts");
    let page = repo.list(ada, false, &PageRequest::first(10)).await.unwrap();
    assert_eq!(page.items[0].status, NotificationStatus::Delivered, "marked, not lost");
}
