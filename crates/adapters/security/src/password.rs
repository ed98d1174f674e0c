//! Argon2id password hashing, off the async threads.

use argon2::password_hash::{PasswordHash as PhcHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use async_trait::async_trait;
use ecom_identity::model::{Password, PasswordHash};
use ecom_identity::ports::PasswordHasher;
use ecom_kernel::InfraError;

/// Argon2id with the OWASP baseline parameters (19 MiB, 2 passes, 1 lane).
#[derive(Clone)]
pub struct Argon2Hasher {
    params: Params,
    /// A hash of a random password, verified against when the account does not exist.
    decoy: String,
}

impl Argon2Hasher {
    pub fn new() -> Result<Self, InfraError> {
        let params = Params::new(19 * 1024, 2, 1, None)
            .map_err(|e| InfraError::unexpected(format!("argon2 parameters: {e}")))?;
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| InfraError::unexpected(format!("no randomness: {e}")))?;
        let decoy_password: String = seed.iter().map(|b| format!("{b:02x}")).collect();
        let decoy = hash_blocking(&params, &decoy_password)?;
        Ok(Self { params, decoy })
    }
}

fn argon2(params: &Params) -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
}

fn hash_blocking(params: &Params, password: &str) -> Result<String, InfraError> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| InfraError::unexpected(format!("no randomness: {e}")))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| InfraError::unexpected(format!("salt: {e}")))?;
    argon2(params)
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| InfraError::unexpected(format!("argon2 hashing failed: {e}")))
}

fn verify_blocking(params: &Params, password: &str, phc: &str) -> bool {
    PhcHash::new(phc)
        .map(|parsed| argon2(params).verify_password(password.as_bytes(), &parsed).is_ok())
        .unwrap_or(false)
}

async fn off_thread<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T, InfraError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| InfraError::unexpected("password hashing task failed").with_source(e))
}

#[async_trait]
impl PasswordHasher for Argon2Hasher {
    async fn hash(&self, password: &Password) -> Result<PasswordHash, InfraError> {
        let (params, plain) = (self.params.clone(), password.expose().to_owned());
        off_thread(move || hash_blocking(&params, &plain)).await?.map(PasswordHash::new)
    }

    async fn verify(&self, password: &Password, hash: &PasswordHash) -> Result<bool, InfraError> {
        let (params, plain, phc) = (self.params.clone(), password.expose().to_owned(), hash.as_str().to_owned());
        off_thread(move || verify_blocking(&params, &plain, &phc)).await
    }

    async fn burn_verification_time(&self, password: &Password) -> Result<(), InfraError> {
        let (params, plain, decoy) = (self.params.clone(), password.expose().to_owned(), self.decoy.clone());
        off_thread(move || {
            verify_blocking(&params, &plain, &decoy);
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn password(s: &str) -> Password {
        Password::parse(s.to_owned()).unwrap()
    }

    #[tokio::test]
    async fn a_hash_verifies_its_own_password_only() {
        let hasher = Argon2Hasher::new().unwrap();
        let hash = hasher.hash(&password("correct horse")).await.unwrap();
        assert!(hash.as_str().starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(!hash.as_str().contains("correct horse"));
        assert!(hasher.verify(&password("correct horse"), &hash).await.unwrap());
        assert!(!hasher.verify(&password("wrong horse!"), &hash).await.unwrap());
    }

    #[tokio::test]
    async fn the_same_password_hashes_differently_each_time() {
        let hasher = Argon2Hasher::new().unwrap();
        let a = hasher.hash(&password("same password")).await.unwrap();
        let b = hasher.hash(&password("same password")).await.unwrap();
        assert_ne!(a, b);
    }

    #[tokio::test]
    async fn an_unreadable_hash_never_verifies() {
        let hasher = Argon2Hasher::new().unwrap();
        assert!(!hasher.verify(&password("anything1"), &PasswordHash::new("garbage".into())).await.unwrap());
        hasher.burn_verification_time(&password("anything1")).await.unwrap();
    }
}
