//! Guest cart tokens: an HMAC of the cart id, so a token opens exactly one cart and cannot be
//! guessed or forged.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ecom_carts::model::CartId;
use ecom_carts::ports::CartTokens;
use ecom_kernel::{InfraError, Secret};
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

pub struct HmacCartTokens {
    mac: HmacSha256,
}

impl HmacCartTokens {
    /// The key is derived from `secret` for this purpose only, so a cart token is never a valid
    /// signature of anything else.
    pub fn new(secret: &Secret<String>) -> Result<Self, InfraError> {
        let mut derive = <HmacSha256 as Mac>::new_from_slice(secret.expose().as_bytes())
            .map_err(|_| InfraError::unexpected("secret refused by HMAC"))?;
        derive.update(b"ecom cart token v1");
        let key = derive.finalize().into_bytes();
        let mac =
            <HmacSha256 as Mac>::new_from_slice(&key).map_err(|_| InfraError::unexpected("derived key refused"))?;
        Ok(Self { mac })
    }
}

impl CartTokens for HmacCartTokens {
    fn issue(&self, cart: CartId) -> String {
        let mut mac = self.mac.clone();
        mac.update(cart.as_uuid().as_bytes());
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    }

    fn verify(&self, cart: CartId, token: &str) -> bool {
        let Ok(signature) = URL_SAFE_NO_PAD.decode(token.trim()) else { return false };
        let mut mac = self.mac.clone();
        mac.update(cart.as_uuid().as_bytes());
        mac.verify_slice(&signature).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_opens_its_own_cart_only() {
        let tokens = HmacCartTokens::new(&Secret::new("k".into())).unwrap();
        let (a, b) = (CartId::new(), CartId::new());
        let token = tokens.issue(a);
        assert_eq!(token.len(), 43);
        assert!(tokens.verify(a, &token));
        assert!(!tokens.verify(b, &token));
        assert!(!tokens.verify(a, "forged"));
        assert!(!tokens.verify(a, ""));
        let other_key = HmacCartTokens::new(&Secret::new("other".into())).unwrap();
        assert!(!other_key.verify(a, &token));
    }
}
