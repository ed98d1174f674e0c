use std::time::Duration;

use ecom_kernel::InfraError;

use crate::ports::InsertCustomerError;

/// Everything an identity use case can refuse, plus the one opaque infrastructure failure.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("this e-mail address is already registered")]
    EmailTaken,
    #[error("e-mail or password is wrong")]
    InvalidCredentials,
    #[error("too many failed login attempts")]
    TooManyAttempts { retry_after: Duration },
    #[error("the refresh token is invalid, expired or revoked")]
    InvalidRefreshToken,
    #[error("the refresh token was already used; its whole family is revoked")]
    RefreshTokenReused,
    #[error("the access token is missing, invalid or expired")]
    Unauthenticated,
    #[error("this action needs the {required} role")]
    Forbidden { required: &'static str },
    #[error("customer not found")]
    CustomerNotFound,
    #[error("address not found")]
    AddressNotFound,
    #[error("a customer can keep at most {max} addresses")]
    AddressLimitReached { max: usize },
    #[error("the address keeps being changed by other requests; try again")]
    ConcurrentModification,
    #[error(transparent)]
    Infrastructure(#[from] InfraError),
}

impl From<InsertCustomerError> for IdentityError {
    fn from(err: InsertCustomerError) -> Self {
        match err {
            InsertCustomerError::EmailTaken => IdentityError::EmailTaken,
            InsertCustomerError::Infrastructure(e) => IdentityError::Infrastructure(e),
        }
    }
}
