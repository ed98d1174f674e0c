//! The identity use cases: one public async fn each.

use std::sync::Arc;

use chrono::Duration as ChronoDuration;
use ecom_kernel::{Clock, Email, Page, PageRequest, Secret};

use crate::error::IdentityError;
use crate::model::{
    AccessToken, Address, AddressId, AddressPatch, Customer, CustomerId, CustomerPatch, NewAddress, NewCustomer,
    NewRefreshToken, Password, PasswordHash, Principal, RefreshTokenId, Role, TokenFamilyId,
};
use crate::ports::{
    AddressRepository, AddressUpdate, CustomerRepository, LoginAttempt, LoginThrottle, PasswordHasher,
    RefreshTokenRepository, ThrottleDecision, TokenService,
};

/// How long an expired refresh token is kept (presented meanwhile, a rotated one still revokes
/// its family).
pub const EXPIRED_SESSIONS_KEPT: ChronoDuration = ChronoDuration::days(7);

/// How often an address update is applied again to a newer read when other writes keep
/// coming first.
const ADDRESS_WRITE_ATTEMPTS: usize = 5;

/// Lifetimes of issued tokens.
#[derive(Debug, Clone, Copy)]
pub struct TokenPolicy {
    pub refresh_ttl: ChronoDuration,
}

impl Default for TokenPolicy {
    fn default() -> Self {
        Self { refresh_ttl: ChronoDuration::days(30) }
    }
}

/// The ports the service runs on.
pub struct IdentityPorts {
    pub customers: Arc<dyn CustomerRepository>,
    pub refresh_tokens: Arc<dyn RefreshTokenRepository>,
    pub addresses: Arc<dyn AddressRepository>,
    pub hasher: Arc<dyn PasswordHasher>,
    pub tokens: Arc<dyn TokenService>,
    pub throttle: Arc<dyn LoginThrottle>,
    pub clock: Arc<dyn Clock>,
}

/// A signed-in session: the account, a short-lived access token and a refresh token.
#[derive(Debug, Clone)]
pub struct SessionTokens {
    pub customer: Customer,
    pub access: AccessToken,
    pub refresh: Secret<String>,
}

pub struct IdentityService {
    ports: IdentityPorts,
    policy: TokenPolicy,
}

impl IdentityService {
    pub fn new(ports: IdentityPorts, policy: TokenPolicy) -> Self {
        Self { ports, policy }
    }

    /// Creates a customer account and signs it in.
    pub async fn register(&self, new: NewCustomer) -> Result<SessionTokens, IdentityError> {
        let now = self.ports.clock.now();
        let hash = self.ports.hasher.hash(&new.password).await?;
        let customer = Customer::register(&new, Role::Customer, now);
        self.ports.customers.insert(&customer, &hash).await?;
        // Only the admin's bootstrap, taking this address over at this moment, changes it.
        self.start_session(customer, &hash).await?.ok_or(IdentityError::EmailTaken)
    }

    /// Checks e-mail and password, throttling attempts per e-mail and per client: an attempt
    /// counts until it succeeds, so concurrent guesses cannot exceed the limits.
    pub async fn login(
        &self,
        email: &str,
        password: &str,
        client: Option<String>,
    ) -> Result<SessionTokens, IdentityError> {
        // A malformed address or password can never match: answer exactly like a wrong password.
        let (Ok(email), Ok(password)) = (Email::parse(email), Password::parse(password.to_owned())) else {
            return Err(IdentityError::InvalidCredentials);
        };
        let attempt = LoginAttempt { email, client };
        if let ThrottleDecision::Blocked { retry_after } = self.ports.throttle.begin(&attempt).await? {
            return Err(IdentityError::TooManyAttempts { retry_after });
        }
        let verified = match self.ports.customers.find_credentials(&attempt.email).await? {
            Some((customer, hash)) => self.ports.hasher.verify(&password, &hash).await?.then_some((customer, hash)),
            None => {
                self.ports.hasher.burn_verification_time(&password).await?;
                None
            }
        };
        let Some((customer, hash)) = verified else {
            return Err(IdentityError::InvalidCredentials);
        };
        // The password may have changed since it was checked: then this sign-in never happened.
        let session = self.start_session(customer, &hash).await?.ok_or(IdentityError::InvalidCredentials)?;
        self.ports.throttle.succeeded(&attempt).await?;
        Ok(session)
    }

    /// Exchanges a refresh token for a new pair. A token presented twice revokes its family.
    pub async fn refresh(&self, refresh_token: &str) -> Result<SessionTokens, IdentityError> {
        let now = self.ports.clock.now();
        let hash = self.ports.tokens.hash_refresh(refresh_token);
        let record = self.ports.refresh_tokens.find_by_hash(&hash).await?.ok_or(IdentityError::InvalidRefreshToken)?;
        if record.revoked_at.is_some() {
            return Err(IdentityError::InvalidRefreshToken);
        }
        if record.rotated_at.is_some() {
            self.ports.refresh_tokens.revoke_family(record.family_id, now).await?;
            return Err(IdentityError::RefreshTokenReused);
        }
        if record.expires_at <= now {
            return Err(IdentityError::InvalidRefreshToken);
        }
        let customer =
            self.ports.customers.find(record.customer_id).await?.ok_or(IdentityError::InvalidRefreshToken)?;
        let (secret, next) = self.new_refresh_token(&customer, record.family_id)?;
        if !self.ports.refresh_tokens.rotate(record.id, &next, now).await? {
            // Another request rotated it first: the same token was used twice.
            self.ports.refresh_tokens.revoke_family(record.family_id, now).await?;
            return Err(IdentityError::RefreshTokenReused);
        }
        let access = self.issue_access(&customer)?;
        Ok(SessionTokens { customer, access, refresh: secret })
    }

    /// Deletes up to `limit` refresh tokens expired for longer than [`EXPIRED_SESSIONS_KEPT`];
    /// returns how many. Such a token, presented afterwards, is refused as unknown (as it was
    /// refused as expired; a rotated one no longer revokes its family then).
    pub async fn purge_expired_sessions(&self, limit: usize) -> Result<usize, IdentityError> {
        let before = self.ports.clock.now() - EXPIRED_SESSIONS_KEPT;
        Ok(self.ports.refresh_tokens.purge_expired(before, limit).await?)
    }

    /// Ends the session the refresh token belongs to. Unknown tokens and other customers'
    /// tokens are ignored, so the answer reveals nothing.
    pub async fn logout(&self, principal: Principal, refresh_token: &str) -> Result<(), IdentityError> {
        let hash = self.ports.tokens.hash_refresh(refresh_token);
        if let Some(record) = self.ports.refresh_tokens.find_by_hash(&hash).await? {
            if record.customer_id == principal.customer_id {
                self.ports.refresh_tokens.revoke_family(record.family_id, self.ports.clock.now()).await?;
            }
        }
        Ok(())
    }

    /// Who presents this access token.
    pub fn authenticate(&self, access_token: &str) -> Result<Principal, IdentityError> {
        Ok(self.authenticate_for(access_token)?.0)
    }

    /// Who presents this access token, and for how much longer it proves it (a connection that
    /// outlives one request ends then).
    pub fn authenticate_for(&self, access_token: &str) -> Result<(Principal, std::time::Duration), IdentityError> {
        let now = self.ports.clock.now();
        let verified = self.ports.tokens.verify_access(access_token, now).ok_or(IdentityError::Unauthenticated)?;
        Ok((verified.principal, (verified.expires_at - now).to_std().unwrap_or_default()))
    }

    pub async fn me(&self, principal: Principal) -> Result<Customer, IdentityError> {
        self.ports.customers.find(principal.customer_id).await?.ok_or(IdentityError::CustomerNotFound)
    }

    pub async fn update_me(&self, principal: Principal, patch: CustomerPatch) -> Result<Customer, IdentityError> {
        let mut customer = self.me(principal).await?;
        customer.apply(patch, self.ports.clock.now());
        self.ports.customers.update(&customer).await?;
        Ok(customer)
    }

    /// Admin view of the accounts, newest first.
    pub async fn list_customers(
        &self,
        role: Option<Role>,
        page: &PageRequest,
    ) -> Result<Page<Customer>, IdentityError> {
        Ok(self.ports.customers.list(role, page).await?)
    }

    pub async fn find_customer(&self, id: CustomerId) -> Result<Customer, IdentityError> {
        self.ports.customers.find(id).await?.ok_or(IdentityError::CustomerNotFound)
    }

    /// Creates the admin account, or makes an existing account admin with this password. An
    /// account that changes (promoted, or given this password) loses every session it had: a
    /// customer who registered the admin's address first, or whoever signed in with a password
    /// since replaced, must not keep refreshing into the admin's rights. An admin account that
    /// already has this password is left as it is (a restart signs no one out).
    pub async fn bootstrap_admin(&self, email: Email, password: Password) -> Result<Customer, IdentityError> {
        match self.bootstrap_once(&email, &password).await {
            // Registered meanwhile (another api instance starting, or a customer signing up with
            // this address): the account exists now, and is made the admin as any existing one.
            Err(IdentityError::EmailTaken) => self.bootstrap_once(&email, &password).await,
            other => other,
        }
    }

    async fn bootstrap_once(&self, email: &Email, password: &Password) -> Result<Customer, IdentityError> {
        let now = self.ports.clock.now();
        if let Some((mut existing, current)) = self.ports.customers.find_credentials(email).await? {
            if existing.role() == Role::Admin && self.ports.hasher.verify(password, &current).await? {
                return Ok(existing);
            }
            // Sessions end before and after the password changes (a sign-in with the old one in
            // between ends too), and the role changes last: stopped part-way, the account is
            // not yet an admin with this password, and the next start does it all again.
            let hash = self.ports.hasher.hash(password).await?;
            self.ports.refresh_tokens.revoke_customer(existing.id(), now).await?;
            self.ports.customers.set_password_hash(existing.id(), &hash).await?;
            self.ports.refresh_tokens.revoke_customer(existing.id(), now).await?;
            self.ports.customers.promote_to_admin(existing.id(), now).await?;
            existing.promote_to_admin(now);
            return Ok(existing);
        }
        let hash = self.ports.hasher.hash(password).await?;
        let name = crate::model::BoundedText::parse("Admin", Customer::NAME_MAX_CHARS)
            .map_err(|e| ecom_kernel::InfraError::unexpected(e.to_string()))?;
        let new = NewCustomer {
            email: email.clone(),
            password: password.clone(),
            first_name: name.clone(),
            last_name: name,
            phone: None,
        };
        let admin = Customer::register(&new, Role::Admin, now);
        self.ports.customers.insert(&admin, &hash).await?;
        Ok(admin)
    }

    pub async fn list_addresses(&self, principal: Principal) -> Result<Vec<Address>, IdentityError> {
        Ok(self.ports.addresses.list(principal.customer_id).await?)
    }

    pub async fn get_address(&self, principal: Principal, id: AddressId) -> Result<Address, IdentityError> {
        self.ports.addresses.find(principal.customer_id, id).await?.ok_or(IdentityError::AddressNotFound)
    }

    /// Saves a new address; a customer's first address is always the default.
    pub async fn add_address(&self, principal: Principal, new: NewAddress) -> Result<Address, IdentityError> {
        let count = self.ports.addresses.count(principal.customer_id).await?;
        if count >= Address::MAX_PER_CUSTOMER {
            return Err(IdentityError::AddressLimitReached { max: Address::MAX_PER_CUSTOMER });
        }
        let is_default = new.is_default || count == 0;
        let address = Address::create(principal.customer_id, new, is_default, self.ports.clock.now());
        if !self.ports.addresses.insert(&address, Address::MAX_PER_CUSTOMER).await? {
            // Others were added meanwhile.
            return Err(IdentityError::AddressLimitReached { max: Address::MAX_PER_CUSTOMER });
        }
        // As stored: whether it is the default is the address book's to say.
        Ok(self.ports.addresses.find(principal.customer_id, address.id).await?.unwrap_or(address))
    }

    pub async fn update_address(
        &self,
        principal: Principal,
        id: AddressId,
        patch: AddressPatch,
    ) -> Result<Address, IdentityError> {
        let make_default = patch.is_default == Some(true);
        // Applied to the address as stored: a change made meanwhile (another device's) is read
        // again and kept, never written over with what this request read before it.
        for _ in 0..ADDRESS_WRITE_ATTEMPTS {
            let mut address = self.get_address(principal, id).await?;
            let read_at = address.updated_at;
            address.apply(patch.clone(), self.ports.clock.now());
            match self.ports.addresses.update(&address, make_default, read_at).await? {
                // As stored: whether it is the default is the address book's to say.
                AddressUpdate::Written => return self.get_address(principal, id).await,
                AddressUpdate::Gone => return Err(IdentityError::AddressNotFound),
                AddressUpdate::Stale => continue,
            }
        }
        Err(IdentityError::ConcurrentModification)
    }

    pub async fn delete_address(&self, principal: Principal, id: AddressId) -> Result<(), IdentityError> {
        if self.ports.addresses.delete(principal.customer_id, id).await? {
            Ok(())
        } else {
            Err(IdentityError::AddressNotFound)
        }
    }

    /// A new session for the customer whose password hash is `password`; `None` when it is no
    /// longer (changed since it was read).
    async fn start_session(
        &self,
        customer: Customer,
        password: &PasswordHash,
    ) -> Result<Option<SessionTokens>, IdentityError> {
        let (refresh, record) = self.new_refresh_token(&customer, TokenFamilyId::new())?;
        if !self.ports.refresh_tokens.insert(&record, password).await? {
            return Ok(None);
        }
        let access = self.issue_access(&customer)?;
        Ok(Some(SessionTokens { customer, access, refresh }))
    }

    fn new_refresh_token(
        &self,
        customer: &Customer,
        family_id: TokenFamilyId,
    ) -> Result<(Secret<String>, NewRefreshToken), IdentityError> {
        let now = self.ports.clock.now();
        let secret = self.ports.tokens.new_refresh()?;
        let record = NewRefreshToken {
            id: RefreshTokenId::new(),
            family_id,
            customer_id: customer.id(),
            token_hash: secret.hash,
            created_at: now,
            expires_at: now + self.policy.refresh_ttl,
        };
        Ok((secret.token, record))
    }

    fn issue_access(&self, customer: &Customer) -> Result<AccessToken, IdentityError> {
        let principal = Principal { customer_id: customer.id(), role: customer.role() };
        Ok(self.ports.tokens.issue_access(principal, self.ports.clock.now())?)
    }
}

/// Refuses callers without the admin role.
pub fn require_admin(principal: Principal) -> Result<Principal, IdentityError> {
    match principal.role {
        Role::Admin => Ok(principal),
        Role::Customer => Err(IdentityError::Forbidden { required: Role::Admin.as_str() }),
    }
}
