//! Credential adapters: argon2id password hashing and HS256 access tokens with opaque,
//! hashed refresh tokens.

mod cart_tokens;
mod password;
mod tokens;

pub use cart_tokens::HmacCartTokens;
pub use password::Argon2Hasher;
pub use tokens::HmacTokenService;
