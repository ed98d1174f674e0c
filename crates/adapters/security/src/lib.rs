//! Credential adapters: argon2id password hashing and HS256 access tokens with opaque,
//! hashed refresh tokens.

mod password;
mod tokens;

pub use password::Argon2Hasher;
pub use tokens::HmacTokenService;
