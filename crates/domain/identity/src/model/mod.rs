//! Entities and value objects of the identity context.

mod address;
mod customer;

mod token;

pub use address::{Address, AddressId, AddressPatch, CountryCode, NewAddress};
pub use customer::{Customer, CustomerId, CustomerPatch, NewCustomer, Password, PasswordHash, Phone, Role};
pub use ecom_kernel::{BoundedText, TextError};
pub use token::{
    AccessToken, NewRefreshToken, Principal, RefreshTokenId, RefreshTokenRecord, TokenFamilyId, TokenHash,
    VerifiedAccess,
};
