//! What the identity context needs from the outside world.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ecom_kernel::{Email, InfraError, Page, PageRequest, Secret};

use crate::model::{
    AccessToken, Address, AddressId, Customer, CustomerId, NewRefreshToken, Password, PasswordHash, Principal,
    RefreshTokenId, RefreshTokenRecord, Role, TokenFamilyId, TokenHash, VerifiedAccess,
};

#[derive(Debug, thiserror::Error)]
pub enum InsertCustomerError {
    #[error("e-mail address already registered")]
    EmailTaken,
    #[error(transparent)]
    Infrastructure(#[from] InfraError),
}

/// Customer accounts and their password hashes.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait CustomerRepository: Send + Sync {
    /// MUST return `EmailTaken` when the (normalised) e-mail address is already registered.
    async fn insert(&self, customer: &Customer, password_hash: &PasswordHash) -> Result<(), InsertCustomerError>;
    async fn find(&self, id: CustomerId) -> Result<Option<Customer>, InfraError>;
    /// The account and its password hash, for logging in.
    async fn find_credentials(&self, email: &Email) -> Result<Option<(Customer, PasswordHash)>, InfraError>;
    /// Saves the profile fields (names, phone) of an existing customer, never its role: a
    /// profile change racing with a promotion must not undo it.
    async fn update(&self, customer: &Customer) -> Result<(), InfraError>;
    /// Makes an existing customer an admin (the role alone).
    async fn promote_to_admin(&self, id: CustomerId, at: DateTime<Utc>) -> Result<(), InfraError>;
    async fn set_password_hash(&self, id: CustomerId, hash: &PasswordHash) -> Result<(), InfraError>;
    /// Newest first (ids are time-ordered), optionally filtered by role.
    async fn list(&self, role: Option<Role>, page: &PageRequest) -> Result<Page<Customer>, InfraError>;
}

/// Refresh tokens, stored only as hashes, grouped in families.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait RefreshTokenRepository: Send + Sync {
    /// Stores a new session's token while the account's password hash is still `password`
    /// (the one the caller just checked), under the customer's session lock. Returns `false`,
    /// storing nothing, once the password changed: a sign-in that checked the old password just
    /// before a change must not keep a session that the revocation after the change missed.
    async fn insert(&self, token: &NewRefreshToken, password: &PasswordHash) -> Result<bool, InfraError>;
    async fn find_by_hash(&self, hash: &TokenHash) -> Result<Option<RefreshTokenRecord>, InfraError>;
    /// Atomically marks `old` rotated and stores `next`. MUST return `false`, storing nothing,
    /// when `old` was already rotated or revoked (a concurrent refresh won the race).
    async fn rotate(&self, old: RefreshTokenId, next: &NewRefreshToken, at: DateTime<Utc>) -> Result<bool, InfraError>;
    /// Revokes every token of the family, a token that a rotation racing it stores included.
    /// Idempotent.
    async fn revoke_family(&self, family: TokenFamilyId, at: DateTime<Utc>) -> Result<(), InfraError>;
    /// Revokes every token of the customer (every session), as `revoke_family` does. Idempotent.
    async fn revoke_customer(&self, customer: CustomerId, at: DateTime<Utc>) -> Result<(), InfraError>;
    /// Deletes up to `limit` tokens that expired before `before`; returns how many.
    async fn purge_expired(&self, before: DateTime<Utc>, limit: usize) -> Result<usize, InfraError>;
}

/// What became of an address update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressUpdate {
    Written,
    /// Changed by another write since it was read.
    Stale,
    /// Deleted since it was read.
    Gone,
}

/// A customer's saved addresses.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait AddressRepository: Send + Sync {
    /// Oldest first.
    async fn list(&self, customer: CustomerId) -> Result<Vec<Address>, InfraError>;
    async fn find(&self, customer: CustomerId, id: AddressId) -> Result<Option<Address>, InfraError>;
    async fn count(&self, customer: CustomerId) -> Result<usize, InfraError>;
    /// Inserts a new address unless the customer has `max` already (`false`, storing nothing;
    /// counted with the write, so concurrent inserts never pass the limit). When it is the
    /// default, the customer's other addresses MUST stop being default in the same transaction
    /// (one default per customer), and writes of one customer's addresses MUST NOT interleave
    /// (two made default at once never both are).
    async fn insert(&self, address: &Address, max: usize) -> Result<bool, InfraError>;
    /// Updates an address's fields but its default flag, which it sets only when `make_default`
    /// (clearing the others' as `insert` does): a flag read before another address became the
    /// default is never written back. Writes only while the stored address was last changed at
    /// `read_at` (as read): `Stale`, changing nothing, when another write came first, whose
    /// changes this one would otherwise undo. `Gone`, changing nothing, when the address no
    /// longer exists (deleted since it was read): a deleted address never comes back. After
    /// every write a customer with addresses has exactly one default (the oldest, when a write
    /// racing a deletion of the default left none).
    async fn update(
        &self,
        address: &Address,
        make_default: bool,
        read_at: DateTime<Utc>,
    ) -> Result<AddressUpdate, InfraError>;
    /// Deletes; when the deleted address was the default, the oldest remaining one MUST become
    /// the default in the same transaction. Returns whether it existed.
    async fn delete(&self, customer: CustomerId, id: AddressId) -> Result<bool, InfraError>;
}

/// Slow, salted password hashing (argon2id).
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait PasswordHasher: Send + Sync {
    async fn hash(&self, password: &Password) -> Result<PasswordHash, InfraError>;
    /// `false` for a wrong password or a hash it cannot read. Takes the same time either way.
    async fn verify(&self, password: &Password, hash: &PasswordHash) -> Result<bool, InfraError>;
    /// Spends the time of one verification, so unknown e-mails cannot be told apart by timing.
    async fn burn_verification_time(&self, password: &Password) -> Result<(), InfraError>;
}

/// A refresh token as handed to its owner once, and its hash for storage.
#[derive(Debug, Clone)]
pub struct RefreshSecret {
    pub token: Secret<String>,
    pub hash: TokenHash,
}

/// Issues and checks tokens.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait TokenService: Send + Sync {
    fn issue_access(&self, principal: Principal, now: DateTime<Utc>) -> Result<AccessToken, InfraError>;
    /// `None` when the token is malformed, forged or expired at `now`.
    fn verify_access(&self, token: &str, now: DateTime<Utc>) -> Option<VerifiedAccess>;
    /// A fresh, unguessable refresh token.
    fn new_refresh(&self) -> Result<RefreshSecret, InfraError>;
    /// The storage hash of a presented refresh token.
    fn hash_refresh(&self, token: &str) -> TokenHash;
}

/// Whom a login attempt is counted against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginAttempt {
    pub email: Email,
    /// The client's network address, when known.
    pub client: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThrottleDecision {
    Allowed,
    Blocked { retry_after: Duration },
}

/// Counts login attempts per e-mail and per client address within a window. An attempt is
/// counted *before* the password is checked, so a burst of concurrent guesses can never exceed
/// the limits; a successful attempt is taken back.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait LoginThrottle: Send + Sync {
    /// Counts the attempt, or refuses it (counting nothing) when the e-mail or the client is
    /// already at its limit. Each counter MUST be checked and incremented atomically.
    async fn begin(&self, attempt: &LoginAttempt) -> Result<ThrottleDecision, InfraError>;
    /// The attempt succeeded: it stops counting against the client, and the e-mail's count is
    /// cleared.
    async fn succeeded(&self, attempt: &LoginAttempt) -> Result<(), InfraError>;
}
