use chrono::{DateTime, Utc};
use ecom_kernel::entity_id;

use super::{BoundedText, CustomerId, Phone};

entity_id!(
    /// Identifies a customer's saved address.
    AddressId
);

/// An ISO 3166-1 alpha-2 country code, upper case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CountryCode([u8; 2]);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("must be an ISO 3166-1 alpha-2 country code")]
pub struct CountryCodeError;

/// Every assigned ISO 3166-1 alpha-2 code, two letters each.
const ISO_3166_ALPHA_2: &str = "ADAEAFAGAIALAMAOAQARASATAUAWAXAZBABBBDBEBFBGBHBIBJBLBMBNBOBQBRBSBTBVBWBYBZ\
CACCCDCFCGCHCICKCLCMCNCOCRCUCVCWCXCYCZDEDJDKDMDODZECEEEGEHERESETFIFJFKFMFOFRGAGBGDGEGFGGGHGIGLGMGNGPGQ\
GRGSGTGUGWGYHKHMHNHRHTHUIDIEILIMINIOIQIRISITJEJMJOJPKEKGKHKIKMKNKPKRKWKYKZLALBLCLILKLRLSLTLULVLYMAMCMD\
MEMFMGMHMKMLMMMNMOMPMQMRMSMTMUMVMWMXMYMZNANCNENFNGNINLNONPNRNUNZOMPAPEPFPGPHPKPLPMPNPRPSPTPWPYQARERORS\
RURWSASBSCSDSESGSHSISJSKSLSMSNSOSRSSSTSVSXSYSZTCTDTFTGTHTJTKTLTMTNTOTRTTTVTWTZUAUGUMUSUYUZVAVCVEVGVIVN\
VUWFWSYEYTZAZMZW";

impl CountryCode {
    pub fn parse(raw: &str) -> Result<Self, CountryCodeError> {
        let upper = raw.trim().to_ascii_uppercase();
        let bytes: [u8; 2] = upper.as_bytes().try_into().map_err(|_| CountryCodeError)?;
        let known = ISO_3166_ALPHA_2.as_bytes().chunks_exact(2).any(|code| code == bytes);
        if known {
            Ok(Self(bytes))
        } else {
            Err(CountryCodeError)
        }
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("ZZ")
    }
}

/// A postal address saved by a customer for shipping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    pub id: AddressId,
    pub customer_id: CustomerId,
    pub full_name: BoundedText,
    pub line1: BoundedText,
    pub line2: Option<BoundedText>,
    pub city: BoundedText,
    pub state: Option<BoundedText>,
    pub postal_code: BoundedText,
    pub country: CountryCode,
    pub phone: Option<Phone>,
    pub is_default: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A new address, validated field by field at the edge.
#[derive(Debug, Clone)]
pub struct NewAddress {
    pub full_name: BoundedText,
    pub line1: BoundedText,
    pub line2: Option<BoundedText>,
    pub city: BoundedText,
    pub state: Option<BoundedText>,
    pub postal_code: BoundedText,
    pub country: CountryCode,
    pub phone: Option<Phone>,
    pub is_default: bool,
}

/// A change to an address: `None` keeps a field; `Some(None)` clears an optional one.
#[derive(Debug, Clone, Default)]
pub struct AddressPatch {
    pub full_name: Option<BoundedText>,
    pub line1: Option<BoundedText>,
    pub line2: Option<Option<BoundedText>>,
    pub city: Option<BoundedText>,
    pub state: Option<Option<BoundedText>>,
    pub postal_code: Option<BoundedText>,
    pub country: Option<CountryCode>,
    pub phone: Option<Option<Phone>>,
    pub is_default: Option<bool>,
}

impl Address {
    pub const LINE_MAX_CHARS: usize = 200;
    pub const POSTAL_CODE_MAX_CHARS: usize = 20;
    /// A customer may keep this many addresses.
    pub const MAX_PER_CUSTOMER: usize = 20;

    pub(crate) fn create(customer_id: CustomerId, new: NewAddress, is_default: bool, now: DateTime<Utc>) -> Self {
        Self {
            id: AddressId::new(),
            customer_id,
            full_name: new.full_name,
            line1: new.line1,
            line2: new.line2,
            city: new.city,
            state: new.state,
            postal_code: new.postal_code,
            country: new.country,
            phone: new.phone,
            is_default,
            created_at: now,
            updated_at: now,
        }
    }

    /// Applies a patch. Un-defaulting is not a patch: a customer's default only moves when
    /// another address is made default, so one address is always the default.
    pub(crate) fn apply(&mut self, patch: AddressPatch, now: DateTime<Utc>) {
        let AddressPatch { full_name, line1, line2, city, state, postal_code, country, phone, is_default } = patch;
        if let Some(v) = full_name {
            self.full_name = v;
        }
        if let Some(v) = line1 {
            self.line1 = v;
        }
        if let Some(v) = line2 {
            self.line2 = v;
        }
        if let Some(v) = city {
            self.city = v;
        }
        if let Some(v) = state {
            self.state = v;
        }
        if let Some(v) = postal_code {
            self.postal_code = v;
        }
        if let Some(v) = country {
            self.country = v;
        }
        if let Some(v) = phone {
            self.phone = v;
        }
        if is_default == Some(true) {
            self.is_default = true;
        }
        self.updated_at = ecom_kernel::changed_at(self.updated_at, now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn country_codes_are_iso_3166_alpha_2() {
        assert_eq!(CountryCode::parse("de").map(|c| c.as_str().to_owned()), Ok("DE".to_owned()));
        assert!(CountryCode::parse("US").is_ok());
        assert!(CountryCode::parse("XX").is_err());
        assert!(CountryCode::parse("USA").is_err());
        assert!(CountryCode::parse("").is_err());
        assert_eq!(ISO_3166_ALPHA_2.len(), 249 * 2);
    }
}
