//! The identity repositories against the real PostgreSQL, one database per test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use chrono::{DateTime, Utc};
use ecom_identity::model::*;
use ecom_identity::ports::{
    AddressRepository, AddressUpdate, CustomerRepository, InsertCustomerError, RefreshTokenRepository,
};
use ecom_kernel::{Email, PageRequest};
use ecom_postgres::{connect, PgAddressRepository, PgCustomerRepository, PgPool, PgRefreshTokenRepository, PgSettings};
use ecom_testkit::TestDb;

fn pool(db: &TestDb) -> PgPool {
    connect(&PgSettings {
        url: db.url(),
        max_connections: 8,
        acquire_timeout: Duration::from_secs(5),
        statement_timeout: Duration::from_secs(5),
        application_name: "adapter-test".into(),
    })
    .unwrap()
}

fn now() -> DateTime<Utc> {
    // Postgres keeps microseconds; keep the test's timestamps comparable.
    DateTime::from_timestamp_micros(Utc::now().timestamp_micros()).unwrap()
}

fn text(s: &str) -> BoundedText {
    BoundedText::parse(s, 200).unwrap()
}

fn customer(email: &str, role: Role) -> Customer {
    Customer::restore(
        CustomerId::new(),
        Email::parse(email).unwrap(),
        text("Ada"),
        text("Lovelace"),
        Some(Phone::parse("+15550100").unwrap()),
        role,
        now(),
        now(),
    )
}

#[tokio::test]
async fn customers_round_trip_and_emails_are_unique() {
    let db = TestDb::new().await;
    let repo = PgCustomerRepository::new(pool(&db));
    let ada = customer("ada@shop.test", Role::Customer);
    repo.insert(&ada, &PasswordHash::new("$argon2id$x".into())).await.unwrap();

    assert_eq!(repo.find(ada.id()).await.unwrap(), Some(ada.clone()));
    let (found, hash) = repo.find_credentials(&Email::parse("ADA@shop.test").unwrap()).await.unwrap().unwrap();
    assert_eq!((found.id(), hash.as_str()), (ada.id(), "$argon2id$x"));
    assert_eq!(repo.find(CustomerId::new()).await.unwrap(), None);

    let twin = customer("ada@shop.test", Role::Customer);
    let err = repo.insert(&twin, &PasswordHash::new("h".into())).await.unwrap_err();
    assert!(matches!(err, InsertCustomerError::EmailTaken), "{err:?}");
}

#[tokio::test]
async fn a_profile_saved_from_an_older_read_never_undoes_a_promotion() {
    let db = TestDb::new().await;
    let repo = PgCustomerRepository::new(pool(&db));
    let ada = customer("ada@shop.test", Role::Customer);
    repo.insert(&ada, &PasswordHash::new("h".into())).await.unwrap();
    // Read for a profile change; promoted meanwhile; the profile change lands.
    let read = repo.find(ada.id()).await.unwrap().unwrap();
    repo.promote_to_admin(ada.id(), now()).await.unwrap();
    let renamed = Customer::restore(
        read.id(),
        read.email().clone(),
        text("Augusta"),
        read.last_name().clone(),
        None,
        read.role(),
        read.created_at(),
        now(),
    );
    repo.update(&renamed).await.unwrap();
    let stored = repo.find(ada.id()).await.unwrap().unwrap();
    assert_eq!((stored.role(), stored.first_name().as_str(), stored.phone()), (Role::Admin, "Augusta", None));
}

#[tokio::test]
async fn customers_list_newest_first_with_a_role_filter_and_cursors() {
    let db = TestDb::new().await;
    let repo = PgCustomerRepository::new(pool(&db));
    let mut ids = Vec::new();
    for i in 0..5 {
        let c = customer(&format!("c{i}@shop.test"), if i == 2 { Role::Admin } else { Role::Customer });
        repo.insert(&c, &PasswordHash::new("h".into())).await.unwrap();
        ids.push(c.id());
    }
    let first = repo.list(Some(Role::Customer), &PageRequest::first(3)).await.unwrap();
    let got: Vec<_> = first.items.iter().map(Customer::id).collect();
    assert_eq!(got, [ids[4], ids[3], ids[1]]);
    let second = repo.list(Some(Role::Customer), &PageRequest::first(3).with_after(first.next)).await.unwrap();
    assert_eq!(second.items.iter().map(Customer::id).collect::<Vec<_>>(), [ids[0]]);
    assert!(second.next.is_none());
    assert_eq!(repo.list(None, &PageRequest::first(10)).await.unwrap().items.len(), 5);
}

fn token(customer: CustomerId, family: TokenFamilyId, byte: u8) -> NewRefreshToken {
    NewRefreshToken {
        id: RefreshTokenId::new(),
        family_id: family,
        customer_id: customer,
        token_hash: TokenHash::new(vec![byte; 32]),
        created_at: now(),
        expires_at: now() + chrono::Duration::days(1),
    }
}

#[tokio::test]
async fn of_concurrent_rotations_of_one_token_exactly_one_wins() {
    let db = TestDb::new().await;
    let pool = pool(&db);
    let owner = customer("rot@shop.test", Role::Customer);
    PgCustomerRepository::new(pool.clone()).insert(&owner, &PasswordHash::new("h".into())).await.unwrap();
    let repo = std::sync::Arc::new(PgRefreshTokenRepository::new(pool));
    let family = TokenFamilyId::new();
    let original = token(owner.id(), family, 1);
    assert!(repo.insert(&original, &PasswordHash::new("h".into())).await.unwrap());

    let tasks: Vec<_> = (0..8u8)
        .map(|i| {
            let repo = repo.clone();
            let next = token(owner.id(), family, 10 + i);
            let old = original.id;
            tokio::spawn(async move { repo.rotate(old, &next, now()).await.unwrap() })
        })
        .collect();
    let mut wins = 0;
    for task in tasks {
        wins += usize::from(task.await.unwrap());
    }
    assert_eq!(wins, 1);
    let stored = repo.find_by_hash(&TokenHash::new(vec![1; 32])).await.unwrap().unwrap();
    assert!(stored.rotated_at.is_some());
}

#[tokio::test]
async fn revoking_a_family_revokes_every_token_in_it_and_no_other() {
    let db = TestDb::new().await;
    let pool = pool(&db);
    let owner = customer("fam@shop.test", Role::Customer);
    PgCustomerRepository::new(pool.clone()).insert(&owner, &PasswordHash::new("h".into())).await.unwrap();
    let repo = PgRefreshTokenRepository::new(pool);
    let (family, other) = (TokenFamilyId::new(), TokenFamilyId::new());
    for (fam, byte) in [(family, 1), (family, 2), (other, 3)] {
        assert!(repo.insert(&token(owner.id(), fam, byte), &PasswordHash::new("h".into())).await.unwrap());
    }
    repo.revoke_family(family, now()).await.unwrap();
    repo.revoke_family(family, now()).await.unwrap(); // idempotent
    for (byte, revoked) in [(1, true), (2, true), (3, false)] {
        let t = repo.find_by_hash(&TokenHash::new(vec![byte; 32])).await.unwrap().unwrap();
        assert_eq!(t.revoked_at.is_some(), revoked, "token {byte}");
    }
    // A revoked token can no longer be rotated.
    let revoked = repo.find_by_hash(&TokenHash::new(vec![2; 32])).await.unwrap().unwrap();
    assert!(!repo.rotate(revoked.id, &token(owner.id(), family, 9), now()).await.unwrap());
}

#[tokio::test]
async fn a_revocation_waits_for_a_rotation_under_way_and_revokes_the_token_it_stores() {
    use diesel_async::AsyncConnection;
    let db = TestDb::new().await;
    let waiting = &db;
    let pool = pool(&db);
    let owner = customer("race@shop.test", Role::Customer);
    PgCustomerRepository::new(pool.clone()).insert(&owner, &PasswordHash::new("h".into())).await.unwrap();
    let repo = std::sync::Arc::new(PgRefreshTokenRepository::new(pool.clone()));
    let family = TokenFamilyId::new();
    assert!(repo.insert(&token(owner.id(), family, 1), &PasswordHash::new("h".into())).await.unwrap());

    // A rotation under way: it holds the customer's session lock and has yet to store its token.
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut conn = pool.get().await.unwrap();
    let (owner_id, watched) = (owner.id(), done.clone());
    let revocation = conn
        .transaction::<_, diesel::result::Error, _>(async move |conn| {
            ecom_postgres::lock_sessions(conn, owner_id).await?;
            let revocation = tokio::spawn({
                let (repo, done) = (repo.clone(), watched.clone());
                async move {
                    repo.revoke_family(family, now()).await.unwrap();
                    done.store(true, std::sync::atomic::Ordering::SeqCst);
                }
            });
            waiting.wait_for_a_lock_wait().await;
            assert!(!watched.load(std::sync::atomic::Ordering::SeqCst), "the revocation waits for the rotation");
            let insert = diesel::sql_query(
                "INSERT INTO refresh_tokens (id, family_id, customer_id, token_hash, created_at, expires_at) \
                 VALUES (gen_random_uuid(), $1, $2, $3, now(), now() + interval '1 day')",
            )
            .bind::<diesel::sql_types::Uuid, _>(family.as_uuid())
            .bind::<diesel::sql_types::Uuid, _>(owner_id.as_uuid())
            .bind::<diesel::sql_types::Bytea, _>(vec![2_u8; 32]);
            diesel_async::RunQueryDsl::execute(insert, conn).await?;
            Ok(revocation)
        })
        .await
        .unwrap();
    revocation.await.unwrap();
    assert!(done.load(std::sync::atomic::Ordering::SeqCst));
    let stored = PgRefreshTokenRepository::new(pool).find_by_hash(&TokenHash::new(vec![2; 32])).await.unwrap().unwrap();
    assert!(stored.revoked_at.is_some(), "the token the rotation stored is revoked with its family");
}

#[tokio::test]
async fn revoking_a_customers_sessions_revokes_every_family_of_theirs_and_no_one_elses() {
    let db = TestDb::new().await;
    let pool = pool(&db);
    let customers = PgCustomerRepository::new(pool.clone());
    let (owner, other) = (customer("all@shop.test", Role::Customer), customer("else@shop.test", Role::Customer));
    customers.insert(&owner, &PasswordHash::new("h".into())).await.unwrap();
    customers.insert(&other, &PasswordHash::new("h".into())).await.unwrap();
    let repo = PgRefreshTokenRepository::new(pool);
    for (who, byte) in [(owner.id(), 1), (owner.id(), 2), (other.id(), 3)] {
        assert!(repo.insert(&token(who, TokenFamilyId::new(), byte), &PasswordHash::new("h".into())).await.unwrap());
    }
    repo.revoke_customer(owner.id(), now()).await.unwrap();
    for (byte, revoked) in [(1, true), (2, true), (3, false)] {
        let t = repo.find_by_hash(&TokenHash::new(vec![byte; 32])).await.unwrap().unwrap();
        assert_eq!(t.revoked_at.is_some(), revoked, "token {byte}");
    }
}

fn address(owner: CustomerId, name: &str, is_default: bool, created_at: DateTime<Utc>) -> Address {
    Address {
        id: AddressId::new(),
        customer_id: owner,
        full_name: text(name),
        line1: text("1 Main St"),
        line2: None,
        city: text("Springfield"),
        state: Some(text("IL")),
        postal_code: BoundedText::parse("62701", 20).unwrap(),
        country: CountryCode::parse("US").unwrap(),
        phone: None,
        is_default,
        created_at,
        updated_at: created_at,
    }
}

#[tokio::test]
async fn addresses_keep_one_default_across_saves_and_deletes() {
    let db = TestDb::new().await;
    let pool = pool(&db);
    let owner = customer("addr@shop.test", Role::Customer);
    let stranger = customer("other@shop.test", Role::Customer);
    let customers = PgCustomerRepository::new(pool.clone());
    customers.insert(&owner, &PasswordHash::new("h".into())).await.unwrap();
    customers.insert(&stranger, &PasswordHash::new("h".into())).await.unwrap();
    let repo = PgAddressRepository::new(pool);

    let t0 = now();
    let home = address(owner.id(), "Home", true, t0);
    let office = address(owner.id(), "Office", false, t0 + chrono::Duration::seconds(1));
    let cabin = address(owner.id(), "Cabin", true, t0 + chrono::Duration::seconds(2));
    let theirs = address(stranger.id(), "Theirs", true, t0);
    for a in [&home, &office, &cabin, &theirs] {
        assert!(repo.insert(a, 20).await.unwrap());
    }
    let defaults = |list: &[Address]| list.iter().filter(|a| a.is_default).map(|a| a.id).collect::<Vec<_>>();
    let listed = repo.list(owner.id()).await.unwrap();
    assert_eq!(listed.iter().map(|a| a.id).collect::<Vec<_>>(), [home.id, office.id, cabin.id]);
    assert_eq!(defaults(&listed), [cabin.id]);
    assert_eq!(repo.count(owner.id()).await.unwrap(), 3);
    assert_eq!(repo.find(stranger.id(), home.id).await.unwrap(), None, "scoped to the owner");

    assert!(!repo.delete(stranger.id(), cabin.id).await.unwrap(), "not the stranger's to delete");
    assert!(repo.delete(owner.id(), cabin.id).await.unwrap());
    assert_eq!(defaults(&repo.list(owner.id()).await.unwrap()), [home.id], "oldest remaining promoted");
    assert_eq!(defaults(&repo.list(stranger.id()).await.unwrap()), [theirs.id], "others untouched");
    assert!(!repo.delete(owner.id(), cabin.id).await.unwrap());
    // An update of a deleted address changes nothing and brings nothing back.
    let mut gone = cabin.clone();
    gone.is_default = true;
    assert_eq!(repo.update(&gone, true, gone.updated_at).await.unwrap(), AddressUpdate::Gone);
    assert_eq!(defaults(&repo.list(owner.id()).await.unwrap()), [home.id], "the default kept");
    assert_eq!(repo.count(owner.id()).await.unwrap(), 2);
    let mut moved = office.clone();
    moved.is_default = true;
    assert_eq!(repo.update(&moved, true, moved.updated_at).await.unwrap(), AddressUpdate::Written);
    assert_eq!(defaults(&repo.list(owner.id()).await.unwrap()), [office.id]);
    // An update read while home was the default (a change of its city) does not take the
    // default back, nor does one read before office was made default drop it.
    let mut stale_home = home.clone();
    stale_home.city = text("Elsewhere");
    assert!(stale_home.is_default, "read while it was the default");
    assert_eq!(repo.update(&stale_home, false, home.updated_at).await.unwrap(), AddressUpdate::Written);
    let mut stale_office = office.clone();
    stale_office.city = text("Elsewhere");
    assert!(!stale_office.is_default, "read before it was made the default");
    assert_eq!(repo.update(&stale_office, false, office.updated_at).await.unwrap(), AddressUpdate::Written);
    let listed = repo.list(owner.id()).await.unwrap();
    assert_eq!(defaults(&listed), [office.id]);
    assert!(listed.iter().all(|a| a.city.as_str() == "Elsewhere"), "the fields were written");

    // A write read before another one changed the address is refused, changing nothing.
    let stored = repo.find(owner.id(), home.id).await.unwrap().unwrap();
    let mut first = stored.clone();
    first.city = text("First");
    first.updated_at = stored.updated_at + chrono::Duration::microseconds(1);
    assert_eq!(repo.update(&first, false, stored.updated_at).await.unwrap(), AddressUpdate::Written);
    let mut second = stored.clone();
    second.line1 = text("2 Second Street");
    second.updated_at = stored.updated_at + chrono::Duration::microseconds(2);
    assert_eq!(repo.update(&second, true, stored.updated_at).await.unwrap(), AddressUpdate::Stale);
    let now_stored = repo.find(owner.id(), home.id).await.unwrap().unwrap();
    assert_eq!((now_stored.city.as_str(), now_stored.line1.as_str()), ("First", stored.line1.as_str()));
    assert_eq!(defaults(&repo.list(owner.id()).await.unwrap()), [office.id], "the stale write's default rolled back");
}

#[tokio::test]
async fn addresses_made_default_at_the_same_moment_leave_exactly_one_default() {
    let db = TestDb::new().await;
    let pool = pool(&db);
    let owner = customer("race-addr@shop.test", Role::Customer);
    PgCustomerRepository::new(pool.clone()).insert(&owner, &PasswordHash::new("h".into())).await.unwrap();
    let repo = std::sync::Arc::new(PgAddressRepository::new(pool));
    for round in 0..10 {
        let t = now() + chrono::Duration::seconds(round * 10);
        let writes: Vec<_> = (0..4)
            .map(|i| {
                let (repo, a) = (repo.clone(), address(owner.id(), "Race", true, t + chrono::Duration::seconds(i)));
                tokio::spawn(async move { repo.insert(&a, 100).await })
            })
            .collect();
        for w in writes {
            assert!(w.await.unwrap().unwrap());
        }
        let defaults = repo.list(owner.id()).await.unwrap().iter().filter(|a| a.is_default).count();
        assert_eq!(defaults, 1, "round {round}");
    }
    // Added at once by a customer with 40 and a limit of 45: exactly 5 stored, the rest refused.
    let adds: Vec<_> = (0..12)
        .map(|i| {
            let (repo, a) = (repo.clone(), address(owner.id(), "More", false, now() + chrono::Duration::hours(i)));
            tokio::spawn(async move { repo.insert(&a, 45).await.unwrap() })
        })
        .collect();
    let mut stored = 0;
    for add in adds {
        stored += usize::from(add.await.unwrap());
    }
    assert_eq!((stored, repo.count(owner.id()).await.unwrap()), (5, 45));
}

#[tokio::test]
async fn a_session_is_stored_only_while_the_password_it_was_signed_in_with_is_current() {
    use diesel_async::AsyncConnection;
    let db = TestDb::new().await;
    let waiting = &db;
    let pool = pool(&db);
    let customers = PgCustomerRepository::new(pool.clone());
    let owner = customer("pw@shop.test", Role::Customer);
    customers.insert(&owner, &PasswordHash::new("old".into())).await.unwrap();
    let repo = std::sync::Arc::new(PgRefreshTokenRepository::new(pool.clone()));
    let old = PasswordHash::new("old".into());
    assert!(repo.insert(&token(owner.id(), TokenFamilyId::new(), 1), &old).await.unwrap());

    // The password changes; the revocation that follows holds the session lock while a sign-in
    // checked with the old password tries to store its token: it waits, then finds the new one.
    customers.set_password_hash(owner.id(), &PasswordHash::new("new".into())).await.unwrap();
    let mut conn = pool.get().await.unwrap();
    let owner_id = owner.id();
    let late = conn
        .transaction::<_, diesel::result::Error, _>(async move |conn| {
            ecom_postgres::lock_sessions(conn, owner_id).await?;
            let late = tokio::spawn({
                let repo = repo.clone();
                async move { repo.insert(&token(owner_id, TokenFamilyId::new(), 2), &PasswordHash::new("old".into())).await }
            });
            waiting.wait_for_a_lock_wait().await;
            assert!(!late.is_finished(), "the sign-in waits for the revocation under way");
            Ok(late)
        })
        .await
        .unwrap();
    assert!(!late.await.unwrap().unwrap(), "a sign-in with the replaced password stores no session");
    let stored = PgRefreshTokenRepository::new(pool.clone());
    assert!(stored.find_by_hash(&TokenHash::new(vec![2; 32])).await.unwrap().is_none());
    assert!(stored.insert(&token(owner_id, TokenFamilyId::new(), 3), &PasswordHash::new("new".into())).await.unwrap());
    // An account that no longer exists gets no session either.
    assert!(!stored.insert(&token(CustomerId::new(), TokenFamilyId::new(), 4), &old).await.unwrap());
}

#[tokio::test]
async fn tokens_expired_before_the_cutoff_are_purged_in_batches_and_no_other() {
    let db = TestDb::new().await;
    let pool = pool(&db);
    let owner = customer("purge@shop.test", Role::Customer);
    PgCustomerRepository::new(pool.clone()).insert(&owner, &PasswordHash::new("h".into())).await.unwrap();
    let repo = PgRefreshTokenRepository::new(pool);
    let cutoff = now() - chrono::Duration::days(7);
    for (byte, expired_days_ago) in [(1, 30), (2, 10), (3, 8), (4, 6), (5, -1)] {
        let mut t = token(owner.id(), TokenFamilyId::new(), byte);
        t.expires_at = now() - chrono::Duration::days(expired_days_ago);
        assert!(repo.insert(&t, &PasswordHash::new("h".into())).await.unwrap());
    }
    assert_eq!(repo.purge_expired(cutoff, 2).await.unwrap(), 2, "a batch at most");
    assert_eq!(repo.purge_expired(cutoff, 2).await.unwrap(), 1);
    assert_eq!(repo.purge_expired(cutoff, 2).await.unwrap(), 0);
    for (byte, kept) in [(1, false), (2, false), (3, false), (4, true), (5, true)] {
        let found = repo.find_by_hash(&TokenHash::new(vec![byte; 32])).await.unwrap();
        assert_eq!(found.is_some(), kept, "token {byte}");
    }
}
