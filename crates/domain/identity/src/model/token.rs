use std::fmt;

use chrono::{DateTime, Utc};
use ecom_kernel::{entity_id, Secret};

use super::{CustomerId, Role};

entity_id!(
    /// Identifies one refresh token.
    RefreshTokenId
);
entity_id!(
    /// Identifies a family of refresh tokens: a login and every rotation descending from it.
    TokenFamilyId
);

/// The authenticated caller, as proven by a valid access token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Principal {
    pub customer_id: CustomerId,
    pub role: Role,
}

/// What a valid access token proves, and until when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifiedAccess {
    pub principal: Principal,
    pub expires_at: DateTime<Utc>,
}

/// A signed, short-lived access token and its lifetime in seconds.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessToken {
    pub token: Secret<String>,
    pub expires_in_secs: u64,
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AccessToken(***, expires_in={}s)", self.expires_in_secs)
    }
}

/// A one-way hash of a refresh token: the only form in which refresh tokens are stored.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct TokenHash(Vec<u8>);

impl TokenHash {
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenHash(***)")
    }
}

/// A refresh token to be stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRefreshToken {
    pub id: RefreshTokenId,
    pub family_id: TokenFamilyId,
    pub customer_id: CustomerId,
    pub token_hash: TokenHash,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// A stored refresh token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshTokenRecord {
    pub id: RefreshTokenId,
    pub family_id: TokenFamilyId,
    pub customer_id: CustomerId,
    pub expires_at: DateTime<Utc>,
    /// Set once the token was exchanged for a new one; presenting it again is reuse.
    pub rotated_at: Option<DateTime<Utc>>,
    /// Set when its family was revoked (logout or detected reuse).
    pub revoked_at: Option<DateTime<Utc>>,
}
