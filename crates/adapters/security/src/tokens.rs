//! HS256 JSON Web Tokens for access, random opaque refresh tokens stored as SHA-256 hashes.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chrono::{DateTime, Duration, Utc};
use ecom_identity::model::{AccessToken, CustomerId, Principal, Role, TokenHash, VerifiedAccess};
use ecom_identity::ports::{RefreshSecret, TokenService};
use ecom_kernel::{InfraError, Secret};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

const ISSUER: &str = "ecom";
/// The only header this service issues or accepts: anything else (e.g. `alg: none`) is refused.
const HEADER: &str = r#"{"alg":"HS256","typ":"JWT"}"#;

#[derive(Serialize, Deserialize)]
struct Claims {
    iss: String,
    sub: String,
    role: String,
    iat: i64,
    exp: i64,
}

pub struct HmacTokenService {
    /// Keyed once; cloned for every signature. Its Debug output does not reveal the key.
    mac: HmacSha256,
    access_ttl: Duration,
}

impl HmacTokenService {
    pub fn new(secret: &Secret<String>, access_ttl: Duration) -> Result<Self, InfraError> {
        let mac = <HmacSha256 as Mac>::new_from_slice(secret.expose().as_bytes())
            .map_err(|_| InfraError::unexpected("JWT secret refused by HMAC"))?;
        Ok(Self { mac, access_ttl })
    }

    fn mac(&self) -> HmacSha256 {
        self.mac.clone()
    }
}

impl TokenService for HmacTokenService {
    fn issue_access(&self, principal: Principal, now: DateTime<Utc>) -> Result<AccessToken, InfraError> {
        let claims = Claims {
            iss: ISSUER.to_owned(),
            sub: principal.customer_id.to_string(),
            role: principal.role.as_str().to_owned(),
            iat: now.timestamp(),
            exp: (now + self.access_ttl).timestamp(),
        };
        let payload = serde_json::to_vec(&claims).map_err(|e| InfraError::unexpected("claims").with_source(e))?;
        let signing_input = format!("{}.{}", URL_SAFE_NO_PAD.encode(HEADER), URL_SAFE_NO_PAD.encode(payload));
        let mut mac = self.mac();
        mac.update(signing_input.as_bytes());
        let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        Ok(AccessToken {
            token: Secret::new(format!("{signing_input}.{signature}")),
            expires_in_secs: u64::try_from(self.access_ttl.num_seconds()).unwrap_or(0),
        })
    }

    fn verify_access(&self, token: &str, now: DateTime<Utc>) -> Option<VerifiedAccess> {
        if token.len() > 4096 {
            return None;
        }
        let mut parts = token.split('.');
        let (header, payload, signature) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || URL_SAFE_NO_PAD.decode(header).ok()? != HEADER.as_bytes() {
            return None;
        }
        let signature = URL_SAFE_NO_PAD.decode(signature).ok()?;
        let mut mac = self.mac();
        mac.update(header.as_bytes());
        mac.update(b".");
        mac.update(payload.as_bytes());
        mac.verify_slice(&signature).ok()?;
        let claims: Claims = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
        if claims.iss != ISSUER || claims.exp <= now.timestamp() {
            return None;
        }
        let principal =
            Principal { customer_id: claims.sub.parse::<CustomerId>().ok()?, role: Role::parse(&claims.role)? };
        Some(VerifiedAccess { principal, expires_at: DateTime::from_timestamp(claims.exp, 0)? })
    }

    fn new_refresh(&self) -> Result<RefreshSecret, InfraError> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| InfraError::unexpected(format!("no randomness: {e}")))?;
        let token = URL_SAFE_NO_PAD.encode(bytes);
        let hash = self.hash_refresh(&token);
        Ok(RefreshSecret { token: Secret::new(token), hash })
    }

    fn hash_refresh(&self, token: &str) -> TokenHash {
        TokenHash::new(Sha256::digest(token.as_bytes()).to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(secret: &str) -> HmacTokenService {
        HmacTokenService::new(&Secret::new(secret.to_owned()), Duration::minutes(15)).unwrap()
    }

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap()
    }

    #[test]
    fn an_issued_token_verifies_until_it_expires() {
        let svc = service("k1");
        let principal = Principal { customer_id: CustomerId::new(), role: Role::Admin };
        let token = svc.issue_access(principal, now()).unwrap();
        assert_eq!(token.expires_in_secs, 900);
        let t = token.token.expose();
        let verified = Some(VerifiedAccess { principal, expires_at: now() + Duration::minutes(15) });
        assert_eq!(svc.verify_access(t, now()), verified);
        assert_eq!(svc.verify_access(t, now() + Duration::minutes(14)), verified);
        assert_eq!(svc.verify_access(t, now() + Duration::minutes(15)), None);
    }

    #[test]
    fn forged_and_mangled_tokens_are_refused() {
        let principal = Principal { customer_id: CustomerId::new(), role: Role::Customer };
        let token = service("k1").issue_access(principal, now()).unwrap().token.expose().clone();
        assert_eq!(service("other key").verify_access(&token, now()), None, "wrong key");

        // Promote ourselves to admin without re-signing.
        let parts: Vec<&str> = token.split('.').collect();
        let forged_claims =
            String::from_utf8(URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap().replace("CUSTOMER", "ADMIN");
        let forged = format!("{}.{}.{}", parts[0], URL_SAFE_NO_PAD.encode(forged_claims), parts[2]);
        assert_eq!(service("k1").verify_access(&forged, now()), None, "tampered claims");

        let none_alg = format!("{}.{}.", URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#), parts[1]);
        assert_eq!(service("k1").verify_access(&none_alg, now()), None, "alg none");
        for garbage in ["", "a.b", "a.b.c.d", "....", "x.y.z"] {
            assert_eq!(service("k1").verify_access(garbage, now()), None, "{garbage}");
        }
    }

    #[test]
    fn refresh_tokens_are_random_and_stored_only_as_their_hash() {
        let svc = service("k1");
        let a = svc.new_refresh().unwrap();
        let b = svc.new_refresh().unwrap();
        assert_ne!(a.token.expose(), b.token.expose());
        assert_eq!(a.token.expose().len(), 43, "32 random bytes");
        assert_eq!(svc.hash_refresh(a.token.expose()), a.hash);
        assert_eq!(a.hash.as_bytes().len(), 32);
    }
}
