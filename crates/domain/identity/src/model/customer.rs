use std::fmt;

use chrono::{DateTime, Utc};
use ecom_kernel::{Email, Secret};

use super::BoundedText;

pub use ecom_kernel::CustomerId;

/// What an account may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Customer,
    Admin,
}

impl Role {
    pub fn as_str(&self) -> &'static str {
        match self {
            Role::Customer => "CUSTOMER",
            Role::Admin => "ADMIN",
        }
    }

    pub fn parse(raw: &str) -> Option<Role> {
        match raw {
            "CUSTOMER" => Some(Role::Customer),
            "ADMIN" => Some(Role::Admin),
            _ => None,
        }
    }
}

/// A plain-text password as typed by its owner. Never printed, never stored.
#[derive(Clone)]
pub struct Password(Secret<String>);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    #[error("must be at least {min} characters")]
    TooShort { min: usize },
    #[error("must be at most {max} characters")]
    TooLong { max: usize },
}

impl Password {
    pub const MIN_CHARS: usize = 8;
    /// Bounded so that hashing cost cannot be used for denial of service.
    pub const MAX_CHARS: usize = 128;

    pub fn parse(raw: String) -> Result<Self, PasswordError> {
        let chars = raw.chars().count();
        if chars < Self::MIN_CHARS {
            return Err(PasswordError::TooShort { min: Self::MIN_CHARS });
        }
        if chars > Self::MAX_CHARS {
            return Err(PasswordError::TooLong { max: Self::MAX_CHARS });
        }
        Ok(Self(Secret::new(raw)))
    }

    pub fn expose(&self) -> &str {
        self.0.expose()
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(***)")
    }
}

/// A password hash in PHC string format (argon2id). Opaque to the domain.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash(String);

impl PasswordHash {
    pub fn new(phc: String) -> Self {
        Self(phc)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PasswordHash(***)")
    }
}

/// A phone number: digits with an optional leading `+`; spaces, dashes, dots and brackets
/// are accepted on input and dropped.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Phone(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("must be a phone number of 6 to 15 digits, optionally starting with +")]
pub struct PhoneError;

impl Phone {
    pub fn parse(raw: &str) -> Result<Self, PhoneError> {
        let raw = raw.trim();
        let (plus, rest) = match raw.strip_prefix('+') {
            Some(rest) => ("+", rest),
            None => ("", raw),
        };
        if !rest.chars().all(|c| c.is_ascii_digit() || " -.()".contains(c)) {
            return Err(PhoneError);
        }
        let digits: String = rest.chars().filter(char::is_ascii_digit).collect();
        if !(6..=15).contains(&digits.len()) {
            return Err(PhoneError);
        }
        Ok(Self(format!("{plus}{digits}")))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Phone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Phone(***)")
    }
}

/// A customer account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Customer {
    id: CustomerId,
    email: Email,
    first_name: BoundedText,
    last_name: BoundedText,
    phone: Option<Phone>,
    role: Role,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

/// What registration needs, already validated.
#[derive(Debug, Clone)]
pub struct NewCustomer {
    pub email: Email,
    pub password: Password,
    pub first_name: BoundedText,
    pub last_name: BoundedText,
    pub phone: Option<Phone>,
}

/// A profile change; `None` leaves a field as it is, `Some(None)` clears the phone.
#[derive(Debug, Clone, Default)]
pub struct CustomerPatch {
    pub first_name: Option<BoundedText>,
    pub last_name: Option<BoundedText>,
    pub phone: Option<Option<Phone>>,
}

impl Customer {
    pub const NAME_MAX_CHARS: usize = 100;

    /// Rebuilds a customer from storage; the adapter vouches for the values.
    #[allow(clippy::too_many_arguments)]
    pub fn restore(
        id: CustomerId,
        email: Email,
        first_name: BoundedText,
        last_name: BoundedText,
        phone: Option<Phone>,
        role: Role,
        created_at: DateTime<Utc>,
        updated_at: DateTime<Utc>,
    ) -> Self {
        Self { id, email, first_name, last_name, phone, role, created_at, updated_at }
    }

    pub(crate) fn register(new: &NewCustomer, role: Role, now: DateTime<Utc>) -> Self {
        Self {
            id: CustomerId::new(),
            email: new.email.clone(),
            first_name: new.first_name.clone(),
            last_name: new.last_name.clone(),
            phone: new.phone.clone(),
            role,
            created_at: now,
            updated_at: now,
        }
    }

    pub(crate) fn apply(&mut self, patch: CustomerPatch, now: DateTime<Utc>) {
        if let Some(first) = patch.first_name {
            self.first_name = first;
        }
        if let Some(last) = patch.last_name {
            self.last_name = last;
        }
        if let Some(phone) = patch.phone {
            self.phone = phone;
        }
        self.updated_at = now;
    }

    pub(crate) fn promote_to_admin(&mut self, now: DateTime<Utc>) {
        self.role = Role::Admin;
        self.updated_at = now;
    }

    pub fn id(&self) -> CustomerId {
        self.id
    }
    pub fn email(&self) -> &Email {
        &self.email
    }
    pub fn first_name(&self) -> &BoundedText {
        &self.first_name
    }
    pub fn last_name(&self) -> &BoundedText {
        &self.last_name
    }
    pub fn phone(&self) -> Option<&Phone> {
        self.phone.as_ref()
    }
    pub fn role(&self) -> Role {
        self.role
    }
    pub fn created_at(&self) -> DateTime<Utc> {
        self.created_at
    }
    pub fn updated_at(&self) -> DateTime<Utc> {
        self.updated_at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_need_8_to_128_characters() {
        assert_eq!(Password::parse("short".into()).err(), Some(PasswordError::TooShort { min: 8 }));
        assert!(Password::parse("exactly8".into()).is_ok());
        assert!(Password::parse("ü".repeat(8)).is_ok(), "counted in characters");
        assert_eq!(Password::parse("x".repeat(129)).err(), Some(PasswordError::TooLong { max: 128 }));
    }

    #[test]
    fn passwords_and_hashes_never_print() {
        let password = Password::parse("correct horse battery".into()).unwrap();
        assert_eq!(format!("{password:?}"), "Password(***)");
        let hash = PasswordHash::new("$argon2id$v=19$secret".into());
        assert_eq!(format!("{hash:?}"), "PasswordHash(***)");
    }

    #[test]
    fn phones_are_normalised_to_digits() {
        assert_eq!(Phone::parse(" +1 (555) 010-9999 ").map(|p| p.as_str().to_owned()), Ok("+15550109999".into()));
        assert!(Phone::parse("12345").is_err());
        assert!(Phone::parse("call me").is_err());
        assert!(Phone::parse("+1234567890123456").is_err());
    }

    #[test]
    fn roles_round_trip_through_their_names() {
        for role in [Role::Customer, Role::Admin] {
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        assert_eq!(Role::parse("admin"), None);
    }
}
