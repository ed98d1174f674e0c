//! Use-case tests with mockall mocks of every port.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use ecom_kernel::clock::MockClock;
use ecom_kernel::{Email, Secret};
use mockall::{predicate::eq, Sequence};

use crate::model::*;
use crate::ports::*;
use crate::service::require_admin;
use crate::{IdentityError, IdentityPorts, IdentityService, TokenPolicy};

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 12, 0, 0).single().unwrap()
}

#[derive(Default)]
struct Mocks {
    customers: MockCustomerRepository,
    refresh_tokens: MockRefreshTokenRepository,
    addresses: MockAddressRepository,
    hasher: MockPasswordHasher,
    tokens: MockTokenService,
    throttle: MockLoginThrottle,
}

impl Mocks {
    fn service(self) -> IdentityService {
        let mut clock = MockClock::new();
        clock.expect_now().returning(now);
        IdentityService::new(
            IdentityPorts {
                customers: Arc::new(self.customers),
                refresh_tokens: Arc::new(self.refresh_tokens),
                addresses: Arc::new(self.addresses),
                hasher: Arc::new(self.hasher),
                tokens: Arc::new(self.tokens),
                throttle: Arc::new(self.throttle),
                clock: Arc::new(clock),
            },
            TokenPolicy::default(),
        )
    }

    /// Token issuing that always works: every session needs it.
    fn with_token_issuing(mut self) -> Self {
        self.tokens.expect_new_refresh().returning(|| {
            Ok(RefreshSecret { token: Secret::new("refresh-plain".into()), hash: TokenHash::new(vec![7; 32]) })
        });
        self.tokens
            .expect_issue_access()
            .returning(|_, _| Ok(AccessToken { token: Secret::new("access-jwt".into()), expires_in_secs: 900 }));
        self
    }
}

fn text(s: &str) -> BoundedText {
    BoundedText::parse(s, 100).unwrap()
}

fn customer(role: Role) -> Customer {
    Customer::restore(
        CustomerId::new(),
        Email::parse("ada@example.com").unwrap(),
        text("Ada"),
        text("Lovelace"),
        None,
        role,
        now(),
        now(),
    )
}

fn new_customer() -> NewCustomer {
    NewCustomer {
        email: Email::parse("ada@example.com").unwrap(),
        password: Password::parse("correct horse".into()).unwrap(),
        first_name: text("Ada"),
        last_name: text("Lovelace"),
        phone: None,
    }
}

fn record(customer_id: CustomerId) -> RefreshTokenRecord {
    RefreshTokenRecord {
        id: RefreshTokenId::new(),
        family_id: TokenFamilyId::new(),
        customer_id,
        expires_at: now() + chrono::Duration::days(1),
        rotated_at: None,
        revoked_at: None,
    }
}

#[pollster::test]
async fn registering_hashes_the_password_then_stores_the_customer_then_its_refresh_token() {
    let mut m = Mocks::default().with_token_issuing();
    let mut seq = Sequence::new();
    m.hasher.expect_hash().times(1).in_sequence(&mut seq).returning(|_| Ok(PasswordHash::new("$argon2id$hash".into())));
    m.customers
        .expect_insert()
        .withf(|c, h| c.role() == Role::Customer && h.as_str() == "$argon2id$hash")
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_, _| Ok(()));
    m.refresh_tokens
        .expect_insert()
        .withf(|t, h| {
            t.token_hash.as_bytes() == [7; 32]
                && t.expires_at == now() + chrono::Duration::days(30)
                && h.as_str() == "$argon2id$hash"
        })
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_, _| Ok(true));

    let session = m.service().register(new_customer()).await.unwrap();

    assert_eq!(session.customer.email().as_str(), "ada@example.com");
    assert_eq!(session.refresh.expose(), "refresh-plain");
    assert_eq!(session.access.expires_in_secs, 900);
}

#[pollster::test]
async fn registering_a_taken_email_fails_without_issuing_tokens() {
    let mut m = Mocks::default();
    m.hasher.expect_hash().returning(|_| Ok(PasswordHash::new("h".into())));
    m.customers.expect_insert().returning(|_, _| Err(InsertCustomerError::EmailTaken));
    m.refresh_tokens.expect_insert().never();

    let err = m.service().register(new_customer()).await.unwrap_err();
    assert!(matches!(err, IdentityError::EmailTaken));
}

#[pollster::test]
async fn a_wrong_password_counts_as_a_failed_attempt() {
    let mut m = Mocks::default();
    m.throttle
        .expect_begin()
        .withf(|a| a.email.as_str() == "ada@example.com" && a.client.as_deref() == Some("10.0.0.1"))
        .times(1)
        .returning(|_| Ok(ThrottleDecision::Allowed));
    m.customers
        .expect_find_credentials()
        .returning(|_| Ok(Some((customer(Role::Customer), PasswordHash::new("h".into())))));
    m.hasher.expect_verify().returning(|_, _| Ok(false));
    m.throttle.expect_succeeded().never();
    m.refresh_tokens.expect_insert().never();

    let err = m.service().login("Ada@Example.com", "wrong password", Some("10.0.0.1".into())).await.unwrap_err();
    assert!(matches!(err, IdentityError::InvalidCredentials));
}

#[pollster::test]
async fn an_unknown_email_spends_a_verification_and_answers_like_a_wrong_password() {
    let mut m = Mocks::default();
    m.throttle.expect_begin().times(1).returning(|_| Ok(ThrottleDecision::Allowed));
    m.customers.expect_find_credentials().returning(|_| Ok(None));
    m.hasher.expect_burn_verification_time().times(1).returning(|_| Ok(()));
    m.throttle.expect_succeeded().never();

    let err = m.service().login("nobody@example.com", "whatever123", None).await.unwrap_err();
    assert!(matches!(err, IdentityError::InvalidCredentials));
}

#[pollster::test]
async fn a_throttled_login_is_refused_before_any_password_check() {
    let mut m = Mocks::default();
    m.throttle.expect_begin().returning(|_| Ok(ThrottleDecision::Blocked { retry_after: Duration::from_secs(42) }));
    m.customers.expect_find_credentials().never();
    m.hasher.expect_verify().never();

    let err = m.service().login("ada@example.com", "correct horse", None).await.unwrap_err();
    assert!(matches!(err, IdentityError::TooManyAttempts { retry_after } if retry_after.as_secs() == 42));
}

#[pollster::test]
async fn a_malformed_login_never_reaches_the_database() {
    let mut m = Mocks::default();
    m.throttle.expect_begin().never();
    m.customers.expect_find_credentials().never();
    let err = m.service().login("not-an-email", "x", None).await.unwrap_err();
    assert!(matches!(err, IdentityError::InvalidCredentials));
}

#[pollster::test]
async fn a_successful_login_clears_the_failures_and_opens_a_new_family() {
    let mut m = Mocks::default().with_token_issuing();
    m.throttle.expect_begin().returning(|_| Ok(ThrottleDecision::Allowed));
    m.customers
        .expect_find_credentials()
        .returning(|_| Ok(Some((customer(Role::Customer), PasswordHash::new("h".into())))));
    m.hasher.expect_verify().returning(|_, _| Ok(true));
    m.throttle.expect_succeeded().times(1).returning(|_| Ok(()));
    m.refresh_tokens.expect_insert().withf(|_, h| h.as_str() == "h").times(1).returning(|_, _| Ok(true));

    let session = m.service().login("ada@example.com", "correct horse", None).await.unwrap();
    assert_eq!(session.access.token.expose(), "access-jwt");
}

#[pollster::test]
async fn a_login_whose_password_changed_since_it_was_checked_opens_no_session() {
    let mut m = Mocks::default().with_token_issuing();
    m.throttle.expect_begin().returning(|_| Ok(ThrottleDecision::Allowed));
    m.customers
        .expect_find_credentials()
        .returning(|_| Ok(Some((customer(Role::Customer), PasswordHash::new("old".into())))));
    m.hasher.expect_verify().returning(|_, _| Ok(true));
    // The store refuses the session: the password is no longer the one checked.
    m.refresh_tokens.expect_insert().withf(|_, h| h.as_str() == "old").times(1).returning(|_, _| Ok(false));
    m.throttle.expect_succeeded().never();

    let err = m.service().login("ada@example.com", "correct horse", None).await.unwrap_err();
    assert!(matches!(err, IdentityError::InvalidCredentials));
}

#[pollster::test]
async fn refreshing_rotates_the_token_within_its_family() {
    let mut m = Mocks::default().with_token_issuing();
    let owner = customer(Role::Customer);
    let rec = record(owner.id());
    let (old_id, family) = (rec.id, rec.family_id);
    m.tokens.expect_hash_refresh().with(eq("old-token")).returning(|_| TokenHash::new(vec![1; 32]));
    m.refresh_tokens.expect_find_by_hash().returning(move |_| Ok(Some(rec.clone())));
    m.customers.expect_find().returning(move |_| Ok(Some(owner.clone())));
    m.refresh_tokens
        .expect_rotate()
        .withf(move |old, next, _| *old == old_id && next.family_id == family)
        .times(1)
        .returning(|_, _, _| Ok(true));
    m.refresh_tokens.expect_revoke_family().never();

    let session = m.service().refresh("old-token").await.unwrap();
    assert_eq!(session.refresh.expose(), "refresh-plain");
}

#[pollster::test]
async fn presenting_a_rotated_token_revokes_the_whole_family() {
    let mut m = Mocks::default();
    let mut rec = record(CustomerId::new());
    rec.rotated_at = Some(now());
    let family = rec.family_id;
    m.tokens.expect_hash_refresh().returning(|_| TokenHash::new(vec![1; 32]));
    m.refresh_tokens.expect_find_by_hash().returning(move |_| Ok(Some(rec.clone())));
    m.refresh_tokens.expect_revoke_family().with(eq(family), eq(now())).times(1).returning(|_, _| Ok(()));
    m.refresh_tokens.expect_rotate().never();

    let err = m.service().refresh("stolen").await.unwrap_err();
    assert!(matches!(err, IdentityError::RefreshTokenReused));
}

#[pollster::test]
async fn losing_a_rotation_race_is_reuse_and_revokes_the_family() {
    let mut m = Mocks::default().with_token_issuing();
    let owner = customer(Role::Customer);
    let rec = record(owner.id());
    let family = rec.family_id;
    m.tokens.expect_hash_refresh().returning(|_| TokenHash::new(vec![1; 32]));
    m.refresh_tokens.expect_find_by_hash().returning(move |_| Ok(Some(rec.clone())));
    m.customers.expect_find().returning(move |_| Ok(Some(owner.clone())));
    m.refresh_tokens.expect_rotate().returning(|_, _, _| Ok(false));
    m.refresh_tokens.expect_revoke_family().with(eq(family), eq(now())).times(1).returning(|_, _| Ok(()));

    let err = m.service().refresh("twice").await.unwrap_err();
    assert!(matches!(err, IdentityError::RefreshTokenReused));
}

#[pollster::test]
async fn expired_revoked_and_unknown_refresh_tokens_are_refused() {
    for case in ["expired", "revoked", "unknown"] {
        let mut m = Mocks::default();
        let mut rec = record(CustomerId::new());
        match case {
            "expired" => rec.expires_at = now(),
            "revoked" => rec.revoked_at = Some(now()),
            _ => {}
        }
        m.tokens.expect_hash_refresh().returning(|_| TokenHash::new(vec![1; 32]));
        m.refresh_tokens.expect_find_by_hash().returning(move |_| Ok((case != "unknown").then(|| rec.clone())));
        m.refresh_tokens.expect_rotate().never();
        m.refresh_tokens.expect_revoke_family().never();

        let err = m.service().refresh("t").await.unwrap_err();
        assert!(matches!(err, IdentityError::InvalidRefreshToken), "{case}");
    }
}

#[pollster::test]
async fn logging_out_with_another_customers_token_changes_nothing() {
    let mut m = Mocks::default();
    let rec = record(CustomerId::new());
    m.tokens.expect_hash_refresh().returning(|_| TokenHash::new(vec![1; 32]));
    m.refresh_tokens.expect_find_by_hash().returning(move |_| Ok(Some(rec.clone())));
    m.refresh_tokens.expect_revoke_family().never();

    let caller = Principal { customer_id: CustomerId::new(), role: Role::Customer };
    m.service().logout(caller, "someone-elses").await.unwrap();
}

#[pollster::test]
async fn logging_out_revokes_the_callers_family() {
    let mut m = Mocks::default();
    let caller = Principal { customer_id: CustomerId::new(), role: Role::Customer };
    let rec = record(caller.customer_id);
    let family = rec.family_id;
    m.tokens.expect_hash_refresh().returning(|_| TokenHash::new(vec![1; 32]));
    m.refresh_tokens.expect_find_by_hash().returning(move |_| Ok(Some(rec.clone())));
    m.refresh_tokens.expect_revoke_family().with(eq(family), eq(now())).times(1).returning(|_, _| Ok(()));

    m.service().logout(caller, "mine").await.unwrap();
}

fn new_address(is_default: bool) -> NewAddress {
    NewAddress {
        full_name: text("Ada Lovelace"),
        line1: text("12 St James's Square"),
        line2: None,
        city: text("London"),
        state: None,
        postal_code: text("SW1Y 4JH"),
        country: CountryCode::parse("GB").unwrap(),
        phone: None,
        is_default,
    }
}

#[pollster::test]
async fn a_customers_first_address_becomes_the_default() {
    let mut m = Mocks::default();
    m.addresses.expect_count().returning(|_| Ok(0));
    m.addresses.expect_insert().withf(|a, max| a.is_default && *max == 20).times(1).returning(|_, _| Ok(true));
    m.addresses.expect_find().returning(|_, _| Ok(None));
    let caller = Principal { customer_id: CustomerId::new(), role: Role::Customer };

    let address = m.service().add_address(caller, new_address(false)).await.unwrap();
    assert!(address.is_default);
    assert_eq!(address.customer_id, caller.customer_id);
}

#[pollster::test]
async fn a_later_address_is_default_only_when_asked() {
    let mut m = Mocks::default();
    m.addresses.expect_count().returning(|_| Ok(3));
    m.addresses.expect_insert().withf(|a, _| !a.is_default).times(1).returning(|_, _| Ok(true));
    m.addresses.expect_find().returning(|_, _| Ok(None));
    let caller = Principal { customer_id: CustomerId::new(), role: Role::Customer };
    let address = m.service().add_address(caller, new_address(false)).await.unwrap();
    assert!(!address.is_default);
}

#[pollster::test]
async fn the_address_book_is_bounded() {
    let mut m = Mocks::default();
    m.addresses.expect_count().returning(|_| Ok(Address::MAX_PER_CUSTOMER));
    m.addresses.expect_insert().never();
    let caller = Principal { customer_id: CustomerId::new(), role: Role::Customer };
    let err = m.service().add_address(caller, new_address(true)).await.unwrap_err();
    assert!(matches!(err, IdentityError::AddressLimitReached { max: 20 }));
}

#[pollster::test]
async fn another_customers_address_is_not_found() {
    let mut m = Mocks::default();
    m.addresses.expect_find().returning(|_, _| Ok(None));
    m.addresses.expect_update().never();
    let caller = Principal { customer_id: CustomerId::new(), role: Role::Customer };
    let err = m.service().update_address(caller, AddressId::new(), AddressPatch::default()).await.unwrap_err();
    assert!(matches!(err, IdentityError::AddressNotFound));
}

#[pollster::test]
async fn bootstrapping_an_existing_account_promotes_it_resets_its_password_and_ends_its_sessions() {
    let mut m = Mocks::default();
    let existing = customer(Role::Customer);
    let id = existing.id();
    m.hasher.expect_verify().returning(|_, _| Ok(false));
    m.hasher.expect_hash().returning(|_| Ok(PasswordHash::new("new-hash".into())));
    m.customers
        .expect_find_credentials()
        .returning(move |_| Ok(Some((existing.clone(), PasswordHash::new("old".into())))));
    // Sessions end around the password change; the role changes last.
    let mut seq = mockall::Sequence::new();
    m.refresh_tokens
        .expect_revoke_customer()
        .withf(move |cid, _| *cid == id)
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_, _| Ok(()));
    m.customers
        .expect_set_password_hash()
        .withf(move |cid, h| *cid == id && h.as_str() == "new-hash")
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_, _| Ok(()));
    m.refresh_tokens
        .expect_revoke_customer()
        .withf(move |cid, _| *cid == id)
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_, _| Ok(()));
    m.customers
        .expect_promote_to_admin()
        .withf(move |cid, _| *cid == id)
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_, _| Ok(()));
    m.customers.expect_update().never();
    m.customers.expect_insert().never();

    let admin = m
        .service()
        .bootstrap_admin(Email::parse("ada@example.com").unwrap(), Password::parse("admin-password".into()).unwrap())
        .await
        .unwrap();
    assert_eq!(admin.role(), Role::Admin);
}

#[pollster::test]
async fn bootstrapping_an_admin_that_already_has_the_password_changes_nothing_and_signs_no_one_out() {
    let mut m = Mocks::default();
    let existing = customer(Role::Admin);
    m.customers
        .expect_find_credentials()
        .returning(move |_| Ok(Some((existing.clone(), PasswordHash::new("current".into())))));
    m.hasher.expect_verify().withf(|_, h| h.as_str() == "current").times(1).returning(|_, _| Ok(true));
    m.hasher.expect_hash().never();
    m.customers.expect_promote_to_admin().never();
    m.customers.expect_set_password_hash().never();
    m.refresh_tokens.expect_revoke_customer().never();

    let admin = m
        .service()
        .bootstrap_admin(Email::parse("ada@example.com").unwrap(), Password::parse("admin-password".into()).unwrap())
        .await
        .unwrap();
    assert_eq!(admin.role(), Role::Admin);
}

#[pollster::test]
async fn bootstrapping_an_admin_with_another_password_ends_the_sessions_opened_with_the_old_one() {
    let mut m = Mocks::default();
    let existing = customer(Role::Admin);
    let id = existing.id();
    m.customers
        .expect_find_credentials()
        .returning(move |_| Ok(Some((existing.clone(), PasswordHash::new("leaked".into())))));
    m.hasher.expect_verify().returning(|_, _| Ok(false));
    m.hasher.expect_hash().returning(|_| Ok(PasswordHash::new("new-hash".into())));
    m.customers.expect_promote_to_admin().returning(|_, _| Ok(()));
    m.customers.expect_set_password_hash().times(1).returning(|_, _| Ok(()));
    m.refresh_tokens.expect_revoke_customer().withf(move |cid, _| *cid == id).times(2).returning(|_, _| Ok(()));

    m.service()
        .bootstrap_admin(Email::parse("ada@example.com").unwrap(), Password::parse("admin-password".into()).unwrap())
        .await
        .unwrap();
}

#[pollster::test]
async fn bootstrapping_an_address_registered_at_that_moment_makes_that_account_the_admin() {
    // Another api instance starting (or a customer signing up) inserted the address between
    // this bootstrap's look-up and its insert.
    let mut m = Mocks::default();
    let registered = customer(Role::Customer);
    let id = registered.id();
    let mut reads = mockall::Sequence::new();
    m.customers.expect_find_credentials().times(1).in_sequence(&mut reads).returning(|_| Ok(None));
    m.customers.expect_insert().times(1).returning(|_, _| Err(InsertCustomerError::EmailTaken));
    m.customers
        .expect_find_credentials()
        .times(1)
        .in_sequence(&mut reads)
        .returning(move |_| Ok(Some((registered.clone(), PasswordHash::new("theirs".into())))));
    m.hasher.expect_verify().returning(|_, _| Ok(false));
    m.hasher.expect_hash().returning(|_| Ok(PasswordHash::new("new-hash".into())));
    m.refresh_tokens.expect_revoke_customer().withf(move |cid, _| *cid == id).times(2).returning(|_, _| Ok(()));
    m.customers.expect_set_password_hash().withf(move |cid, _| *cid == id).times(1).returning(|_, _| Ok(()));
    m.customers.expect_promote_to_admin().withf(move |cid, _| *cid == id).times(1).returning(|_, _| Ok(()));

    let admin = m
        .service()
        .bootstrap_admin(Email::parse("ada@example.com").unwrap(), Password::parse("admin-password".into()).unwrap())
        .await
        .unwrap();
    assert_eq!((admin.id(), admin.role()), (id, Role::Admin));
}

#[test]
fn only_admins_pass_the_admin_check() {
    let id = CustomerId::new();
    assert!(require_admin(Principal { customer_id: id, role: Role::Admin }).is_ok());
    assert!(matches!(
        require_admin(Principal { customer_id: id, role: Role::Customer }),
        Err(IdentityError::Forbidden { required: "ADMIN" })
    ));
}

#[pollster::test]
async fn an_address_changed_meanwhile_is_read_again_and_both_changes_kept() {
    let mut m = Mocks::default();
    let caller = Principal { customer_id: CustomerId::new(), role: Role::Customer };
    let read = crate::model::Address::create(caller.customer_id, new_address(true), true, now());
    let id = read.id;
    // Another device changed the city after this request read the address.
    let mut changed = read.clone();
    changed.city = text("Elsewhere");
    changed.updated_at = now() + chrono::Duration::seconds(1);
    let (first_read, changed_at) = (read.updated_at, changed.updated_at);
    let mut reads = mockall::Sequence::new();
    m.addresses.expect_find().times(1).in_sequence(&mut reads).returning(move |_, _| Ok(Some(read.clone())));
    let again = changed.clone();
    m.addresses.expect_find().times(2).in_sequence(&mut reads).returning(move |_, _| Ok(Some(again.clone())));
    m.addresses
        .expect_update()
        .withf(move |_, _, read_at| *read_at == first_read)
        .times(1)
        .returning(|_, _, _| Ok(AddressUpdate::Stale));
    m.addresses
        .expect_update()
        .withf(move |a, make_default, read_at| {
            *read_at == changed_at
                && a.city.as_str() == "Elsewhere"
                && a.postal_code.as_str() == "94000"
                && a.updated_at > changed_at
                && !make_default
        })
        .times(1)
        .returning(|_, _, _| Ok(AddressUpdate::Written));
    let patch = AddressPatch { postal_code: Some(text("94000")), ..AddressPatch::default() };
    m.service().update_address(caller, id, patch).await.unwrap();
}

#[pollster::test]
async fn an_address_that_keeps_changing_is_a_conflict_after_a_few_tries() {
    let mut m = Mocks::default();
    let caller = Principal { customer_id: CustomerId::new(), role: Role::Customer };
    let read = crate::model::Address::create(caller.customer_id, new_address(true), true, now());
    let id = read.id;
    m.addresses.expect_find().returning(move |_, _| Ok(Some(read.clone())));
    m.addresses.expect_update().times(5).returning(|_, _, _| Ok(AddressUpdate::Stale));
    let err = m.service().update_address(caller, id, AddressPatch::default()).await.unwrap_err();
    assert!(matches!(err, IdentityError::ConcurrentModification));
}

#[pollster::test]
async fn sessions_expired_for_a_week_are_purged() {
    let mut m = Mocks::default();
    m.refresh_tokens
        .expect_purge_expired()
        .withf(|before, limit| *before == now() - chrono::Duration::days(7) && *limit == 500)
        .times(1)
        .returning(|_, _| Ok(42));
    assert_eq!(m.service().purge_expired_sessions(500).await.unwrap(), 42);
}
