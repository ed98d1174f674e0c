//! Repositories of the identity context. Rows are converted to domain types here and nowhere else.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use ecom_identity::model::{
    Address, AddressId, BoundedText, CountryCode, Customer, CustomerId, NewRefreshToken, PasswordHash, Phone,
    RefreshTokenId, RefreshTokenRecord, Role, TokenFamilyId, TokenHash,
};
use ecom_identity::ports::{
    AddressRepository, AddressUpdate, CustomerRepository, InsertCustomerError, RefreshTokenRepository,
};
use ecom_kernel::{Cursor, Email, InfraError, Page, PageRequest};
use uuid::Uuid;

use crate::error::{infra_from_diesel, infra_from_pool, unique_violation};
use crate::schema::{addresses, customers, refresh_tokens};
use crate::PgPool;

fn corrupt(what: &str) -> InfraError {
    InfraError::unexpected(format!("corrupt row: {what}"))
}

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = customers, check_for_backend(diesel::pg::Pg))]
struct CustomerRow {
    id: Uuid,
    email: String,
    password_hash: String,
    first_name: String,
    last_name: String,
    phone: Option<String>,
    role: String,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl CustomerRow {
    fn from_domain(c: &Customer, hash: &PasswordHash) -> Self {
        Self {
            id: c.id().as_uuid(),
            email: c.email().as_str().to_owned(),
            password_hash: hash.as_str().to_owned(),
            first_name: c.first_name().as_str().to_owned(),
            last_name: c.last_name().as_str().to_owned(),
            phone: c.phone().map(|p| p.as_str().to_owned()),
            role: c.role().as_str().to_owned(),
            created_at: c.created_at(),
            updated_at: c.updated_at(),
        }
    }

    fn into_domain(self) -> Result<(Customer, PasswordHash), InfraError> {
        let name = |s: &str| BoundedText::parse(s, Customer::NAME_MAX_CHARS).map_err(|_| corrupt("customer name"));
        let customer = Customer::restore(
            CustomerId::from_uuid(self.id),
            Email::parse(&self.email).map_err(|_| corrupt("customer email"))?,
            name(&self.first_name)?,
            name(&self.last_name)?,
            self.phone.as_deref().map(Phone::parse).transpose().map_err(|_| corrupt("customer phone"))?,
            Role::parse(&self.role).ok_or_else(|| corrupt("customer role"))?,
            self.created_at,
            self.updated_at,
        );
        Ok((customer, PasswordHash::new(self.password_hash)))
    }
}

pub struct PgCustomerRepository {
    pool: PgPool,
}

impl PgCustomerRepository {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

#[async_trait]
impl CustomerRepository for PgCustomerRepository {
    async fn insert(&self, customer: &Customer, password_hash: &PasswordHash) -> Result<(), InsertCustomerError> {
        let mut conn = self.pool.get().await.map_err(infra_from_pool)?;
        let row = CustomerRow::from_domain(customer, password_hash);
        match diesel::insert_into(customers::table).values(&row).execute(&mut conn).await {
            Ok(_) => Ok(()),
            Err(e) if unique_violation(&e) == Some("customers_email_key") => Err(InsertCustomerError::EmailTaken),
            Err(e) => Err(infra_from_diesel(e).into()),
        }
    }

    async fn find(&self, id: CustomerId) -> Result<Option<Customer>, InfraError> {
        let mut conn = self.pool.get().await.map_err(infra_from_pool)?;
        let row: Option<CustomerRow> = customers::table
            .find(id.as_uuid())
            .select(CustomerRow::as_select())
            .first(&mut conn)
            .await
            .optional()
            .map_err(infra_from_diesel)?;
        row.map(|r| r.into_domain().map(|(c, _)| c)).transpose()
    }

    async fn find_credentials(&self, email: &Email) -> Result<Option<(Customer, PasswordHash)>, InfraError> {
        let mut conn = self.pool.get().await.map_err(infra_from_pool)?;
        let row: Option<CustomerRow> = customers::table
            .filter(customers::email.eq(email.as_str()))
            .select(CustomerRow::as_select())
            .first(&mut conn)
            .await
            .optional()
            .map_err(infra_from_diesel)?;
        row.map(CustomerRow::into_domain).transpose()
    }

    async fn update(&self, c: &Customer) -> Result<(), InfraError> {
        let mut conn = self.pool.get().await.map_err(infra_from_pool)?;
        diesel::update(customers::table.find(c.id().as_uuid()))
            .set((
                customers::first_name.eq(c.first_name().as_str()),
                customers::last_name.eq(c.last_name().as_str()),
                customers::phone.eq(c.phone().map(|p| p.as_str())),
                customers::updated_at.eq(c.updated_at()),
            ))
            .execute(&mut conn)
            .await
            .map_err(infra_from_diesel)?;
        Ok(())
    }

    async fn promote_to_admin(&self, id: CustomerId, at: DateTime<Utc>) -> Result<(), InfraError> {
        let mut conn = self.pool.get().await.map_err(infra_from_pool)?;
        diesel::update(customers::table.find(id.as_uuid()))
            .set((customers::role.eq(Role::Admin.as_str()), customers::updated_at.eq(at)))
            .execute(&mut conn)
            .await
            .map_err(infra_from_diesel)?;
        Ok(())
    }

    async fn set_password_hash(&self, id: CustomerId, hash: &PasswordHash) -> Result<(), InfraError> {
        let mut conn = self.pool.get().await.map_err(infra_from_pool)?;
        diesel::update(customers::table.find(id.as_uuid()))
            .set(customers::password_hash.eq(hash.as_str()))
            .execute(&mut conn)
            .await
            .map_err(infra_from_diesel)?;
        Ok(())
    }

    async fn list(&self, role: Option<Role>, page: &PageRequest) -> Result<Page<Customer>, InfraError> {
        let mut conn = self.pool.get().await.map_err(infra_from_pool)?;
        let mut query = customers::table.select(CustomerRow::as_select()).into_boxed();
        if let Some(role) = role {
            query = query.filter(customers::role.eq(role.as_str()));
        }
        if let Some(after) = page.after() {
            query = query.filter(customers::id.lt(after.id()));
        }
        let rows: Vec<CustomerRow> = query
            .order(customers::id.desc())
            .limit(page.fetch_limit())
            .load(&mut conn)
            .await
            .map_err(infra_from_diesel)?;
        let items = rows.into_iter().map(|r| r.into_domain().map(|(c, _)| c)).collect::<Result<Vec<_>, _>>()?;
        Ok(Page::from_overfetch(items, page, |c| Cursor::after_id(c.id().as_uuid())))
    }
}

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = refresh_tokens, check_for_backend(diesel::pg::Pg))]
struct RefreshTokenRow {
    id: Uuid,
    family_id: Uuid,
    customer_id: Uuid,
    token_hash: Vec<u8>,
    created_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    rotated_at: Option<DateTime<Utc>>,
    revoked_at: Option<DateTime<Utc>>,
}

impl RefreshTokenRow {
    fn new(t: &NewRefreshToken) -> Self {
        Self {
            id: t.id.as_uuid(),
            family_id: t.family_id.as_uuid(),
            customer_id: t.customer_id.as_uuid(),
            token_hash: t.token_hash.as_bytes().to_vec(),
            created_at: t.created_at,
            expires_at: t.expires_at,
            rotated_at: None,
            revoked_at: None,
        }
    }

    fn into_domain(self) -> RefreshTokenRecord {
        RefreshTokenRecord {
            id: RefreshTokenId::from_uuid(self.id),
            family_id: TokenFamilyId::from_uuid(self.family_id),
            customer_id: CustomerId::from_uuid(self.customer_id),
            expires_at: self.expires_at,
            rotated_at: self.rotated_at,
            revoked_at: self.revoked_at,
        }
    }
}

pub struct PgRefreshTokenRepository {
    pool: PgPool,
}

impl PgRefreshTokenRepository {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

#[async_trait]
impl RefreshTokenRepository for PgRefreshTokenRepository {
    async fn insert(&self, token: &NewRefreshToken, password: &PasswordHash) -> Result<bool, InfraError> {
        let mut conn = self.pool.get().await.map_err(infra_from_pool)?;
        let row = RefreshTokenRow::new(token);
        let customer = token.customer_id;
        conn.transaction::<bool, diesel::result::Error, _>(async move |conn| {
            // A password change revokes every session after it is written, under this lock: a
            // token stored here is either seen by that revocation or finds the new password.
            lock_sessions(conn, customer).await?;
            let unchanged = diesel::select(diesel::dsl::exists(
                customers::table.find(customer.as_uuid()).filter(customers::password_hash.eq(password.as_str())),
            ))
            .get_result::<bool>(conn)
            .await?;
            if unchanged {
                diesel::insert_into(refresh_tokens::table).values(&row).execute(conn).await?;
            }
            Ok(unchanged)
        })
        .await
        .map_err(infra_from_diesel)
    }

    async fn find_by_hash(&self, hash: &TokenHash) -> Result<Option<RefreshTokenRecord>, InfraError> {
        let mut conn = self.pool.get().await.map_err(infra_from_pool)?;
        let row: Option<RefreshTokenRow> = refresh_tokens::table
            .filter(refresh_tokens::token_hash.eq(hash.as_bytes()))
            .select(RefreshTokenRow::as_select())
            .first(&mut conn)
            .await
            .optional()
            .map_err(infra_from_diesel)?;
        Ok(row.map(RefreshTokenRow::into_domain))
    }

    async fn rotate(&self, old: RefreshTokenId, next: &NewRefreshToken, at: DateTime<Utc>) -> Result<bool, InfraError> {
        let mut conn = self.pool.get().await.map_err(infra_from_pool)?;
        let row = RefreshTokenRow::new(next);
        let customer = next.customer_id;
        conn.transaction::<bool, diesel::result::Error, _>(async move |conn| {
            lock_sessions(conn, customer).await?;
            // The conditional update is the race arbiter: only one caller can flip rotated_at.
            let claimed = diesel::update(
                refresh_tokens::table
                    .find(old.as_uuid())
                    .filter(refresh_tokens::rotated_at.is_null())
                    .filter(refresh_tokens::revoked_at.is_null()),
            )
            .set(refresh_tokens::rotated_at.eq(at))
            .execute(conn)
            .await?;
            if claimed == 0 {
                return Ok(false);
            }
            diesel::insert_into(refresh_tokens::table).values(&row).execute(conn).await?;
            Ok(true)
        })
        .await
        .map_err(infra_from_diesel)
    }

    async fn revoke_family(&self, family: TokenFamilyId, at: DateTime<Utc>) -> Result<(), InfraError> {
        let mut conn = self.pool.get().await.map_err(infra_from_pool)?;
        conn.transaction::<(), diesel::result::Error, _>(async move |conn| {
            let customer: Option<Uuid> = refresh_tokens::table
                .filter(refresh_tokens::family_id.eq(family.as_uuid()))
                .select(refresh_tokens::customer_id)
                .first(conn)
                .await
                .optional()?;
            let Some(customer) = customer else { return Ok(()) };
            revoke_locked(conn, CustomerId::from_uuid(customer), Some(family), at).await
        })
        .await
        .map_err(infra_from_diesel)
    }

    async fn purge_expired(&self, before: DateTime<Utc>, limit: usize) -> Result<usize, InfraError> {
        let mut conn = self.pool.get().await.map_err(infra_from_pool)?;
        // Several workers purge at once without waiting for each other's rows.
        crate::sql::Statement::new(
            "DELETE FROM refresh_tokens WHERE id IN \
             (SELECT id FROM refresh_tokens WHERE expires_at < $1 LIMIT $2 FOR UPDATE SKIP LOCKED)",
        )
        .bind::<diesel::sql_types::Timestamptz, _>(before)
        .bind::<diesel::sql_types::BigInt, _>(i64::try_from(limit).unwrap_or(i64::MAX))
        .execute(&mut conn)
        .await
        .map_err(infra_from_diesel)
    }

    async fn revoke_customer(&self, customer: CustomerId, at: DateTime<Utc>) -> Result<(), InfraError> {
        let mut conn = self.pool.get().await.map_err(infra_from_pool)?;
        conn.transaction::<(), diesel::result::Error, _>(async move |conn| {
            revoke_locked(conn, customer, None, at).await
        })
        .await
        .map_err(infra_from_diesel)
    }
}

/// Revokes the customer's tokens still valid (of `family` only, when given), under the
/// customer's session lock.
async fn revoke_locked(
    conn: &mut diesel_async::AsyncPgConnection,
    customer: CustomerId,
    family: Option<TokenFamilyId>,
    at: DateTime<Utc>,
) -> QueryResult<()> {
    lock_sessions(conn, customer).await?;
    let mut revoke = diesel::update(refresh_tokens::table)
        .filter(refresh_tokens::customer_id.eq(customer.as_uuid()))
        .filter(refresh_tokens::revoked_at.is_null())
        .into_boxed();
    if let Some(family) = family {
        revoke = revoke.filter(refresh_tokens::family_id.eq(family.as_uuid()));
    }
    revoke.set(refresh_tokens::revoked_at.eq(at)).execute(conn).await.map(|_| ())
}

/// An address write: a new one (unless the customer has `max`), or a change of one.
#[derive(Clone, Copy)]
enum Write {
    Insert { max: usize },
    Update { read_at: DateTime<Utc> },
}

/// A write rolled back: refused (with what to answer), over the limit, or failed.
enum WriteError {
    Refused(AddressUpdate),
    Full,
    Db(diesel::result::Error),
}

impl From<diesel::result::Error> for WriteError {
    fn from(e: diesel::result::Error) -> Self {
        WriteError::Db(e)
    }
}

impl PgAddressRepository {
    /// Inserts the address (refused when the customer has the most already), or updates it
    /// (refused when it is gone or changed since it was read), one writer of the customer's addresses at a time: two addresses
    /// made default at once would otherwise both clear the other defaults they see (none), and
    /// the one-default index refuse the second.
    /// `None`: the customer has the most addresses already (an insert).
    async fn write(
        &self,
        address: &Address,
        write: Write,
        make_default: bool,
    ) -> Result<Option<AddressUpdate>, InfraError> {
        let mut conn = self.pool.get().await.map_err(infra_from_pool)?;
        let row = AddressRow::from_domain(address);
        let existing = matches!(write, Write::Update { .. });
        conn.transaction::<Option<AddressUpdate>, WriteError, _>(async move |conn| {
            let customer = row.customer_id;
            advisory_lock(conn, &format!("addresses:{customer}")).await?;
            if let Write::Insert { max } = write {
                let count: i64 =
                    addresses::table.filter(addresses::customer_id.eq(customer)).count().get_result(conn).await?;
                if usize::try_from(count).unwrap_or(usize::MAX) >= max {
                    return Err(WriteError::Full);
                }
            }
            if make_default {
                diesel::update(
                    addresses::table
                        .filter(addresses::customer_id.eq(customer))
                        .filter(addresses::id.ne(row.id))
                        .filter(addresses::is_default),
                )
                .set(addresses::is_default.eq(false))
                .execute(conn)
                .await?;
            }
            let written = if let Write::Update { read_at } = write {
                diesel::update(
                    addresses::table
                        .find(row.id)
                        .filter(addresses::customer_id.eq(customer))
                        .filter(addresses::updated_at.eq(read_at)),
                )
                .set((
                    addresses::full_name.eq(&row.full_name),
                    addresses::line1.eq(&row.line1),
                    addresses::line2.eq(&row.line2),
                    addresses::city.eq(&row.city),
                    addresses::state.eq(&row.state),
                    addresses::postal_code.eq(&row.postal_code),
                    addresses::country.eq(&row.country),
                    addresses::phone.eq(&row.phone),
                    addresses::updated_at.eq(row.updated_at),
                ))
                .execute(conn)
                .await?
            } else {
                diesel::insert_into(addresses::table).values(&row).execute(conn).await?
            };
            if written == 0 {
                // Gone, or changed since it was read: the other defaults cleared above come back
                // with the rollback.
                let exists: bool = diesel::select(diesel::dsl::exists(
                    addresses::table.find(row.id).filter(addresses::customer_id.eq(customer)),
                ))
                .get_result(conn)
                .await?;
                return Err(WriteError::Refused(if exists { AddressUpdate::Stale } else { AddressUpdate::Gone }));
            }
            if make_default && existing {
                diesel::update(addresses::table.find(row.id)).set(addresses::is_default.eq(true)).execute(conn).await?;
            }
            keep_a_default(conn, customer).await?;
            Ok(Some(AddressUpdate::Written))
        })
        .await
        .or_else(|e| match e {
            WriteError::Refused(answer) => Ok(Some(answer)),
            WriteError::Full => Ok(None),
            WriteError::Db(e) => Err(infra_from_diesel(e)),
        })
    }
}

/// Makes the customer's oldest address the default when none is (a deletion of the default
/// racing a write, or a first address added beside it): a customer with addresses has one.
async fn keep_a_default(conn: &mut diesel_async::AsyncPgConnection, customer: Uuid) -> QueryResult<()> {
    let has_default: bool = diesel::select(diesel::dsl::exists(
        addresses::table.filter(addresses::customer_id.eq(customer)).filter(addresses::is_default),
    ))
    .get_result(conn)
    .await?;
    if has_default {
        return Ok(());
    }
    promote_oldest(conn, customer).await
}

/// Makes the customer's oldest address, if any, the default.
async fn promote_oldest(conn: &mut diesel_async::AsyncPgConnection, customer: Uuid) -> QueryResult<()> {
    let oldest: Option<Uuid> = addresses::table
        .filter(addresses::customer_id.eq(customer))
        .order((addresses::created_at.asc(), addresses::id.asc()))
        .select(addresses::id)
        .first(conn)
        .await
        .optional()?;
    if let Some(oldest) = oldest {
        diesel::update(addresses::table.find(oldest)).set(addresses::is_default.eq(true)).execute(conn).await?;
    }
    Ok(())
}

/// Serialises, for one customer, rotating a token with revoking tokens, until the transaction
/// ends. Without it, a revocation whose UPDATE began while a rotation was under way would not see
/// the token that rotation stores (it commits after the UPDATE's snapshot), and that token would
/// live on in a revoked family: logout or reuse detection missed. The revocation's UPDATE runs
/// once the lock is held, with a snapshot that has the rotation's token in it.
pub async fn lock_sessions(conn: &mut diesel_async::AsyncPgConnection, customer: CustomerId) -> QueryResult<()> {
    advisory_lock(conn, &format!("sessions:{customer}")).await
}

/// A transaction-scoped advisory lock named `name` (hashed; a collision only serialises two
/// unrelated writers).
async fn advisory_lock(conn: &mut diesel_async::AsyncPgConnection, name: &str) -> QueryResult<()> {
    diesel::sql_query("SELECT pg_advisory_xact_lock(hashtextextended($1, 1162625))")
        .bind::<diesel::sql_types::Text, _>(name)
        .execute(conn)
        .await
        .map(|_| ())
}

#[derive(Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = addresses, check_for_backend(diesel::pg::Pg), treat_none_as_null = true)]
struct AddressRow {
    id: Uuid,
    customer_id: Uuid,
    full_name: String,
    line1: String,
    line2: Option<String>,
    city: String,
    state: Option<String>,
    postal_code: String,
    country: String,
    phone: Option<String>,
    is_default: bool,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl AddressRow {
    fn from_domain(a: &Address) -> Self {
        Self {
            id: a.id.as_uuid(),
            customer_id: a.customer_id.as_uuid(),
            full_name: a.full_name.as_str().to_owned(),
            line1: a.line1.as_str().to_owned(),
            line2: a.line2.as_ref().map(|v| v.as_str().to_owned()),
            city: a.city.as_str().to_owned(),
            state: a.state.as_ref().map(|v| v.as_str().to_owned()),
            postal_code: a.postal_code.as_str().to_owned(),
            country: a.country.as_str().to_owned(),
            phone: a.phone.as_ref().map(|p| p.as_str().to_owned()),
            is_default: a.is_default,
            created_at: a.created_at,
            updated_at: a.updated_at,
        }
    }

    fn into_domain(self) -> Result<Address, InfraError> {
        let line = |s: &str| BoundedText::parse(s, Address::LINE_MAX_CHARS).map_err(|_| corrupt("address line"));
        Ok(Address {
            id: AddressId::from_uuid(self.id),
            customer_id: CustomerId::from_uuid(self.customer_id),
            full_name: line(&self.full_name)?,
            line1: line(&self.line1)?,
            line2: self.line2.as_deref().map(line).transpose()?,
            city: line(&self.city)?,
            state: self.state.as_deref().map(line).transpose()?,
            postal_code: BoundedText::parse(&self.postal_code, Address::POSTAL_CODE_MAX_CHARS)
                .map_err(|_| corrupt("postal code"))?,
            country: CountryCode::parse(&self.country).map_err(|_| corrupt("country"))?,
            phone: self.phone.as_deref().map(Phone::parse).transpose().map_err(|_| corrupt("address phone"))?,
            is_default: self.is_default,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

pub struct PgAddressRepository {
    pool: PgPool,
}

impl PgAddressRepository {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

#[async_trait]
impl AddressRepository for PgAddressRepository {
    async fn list(&self, customer: CustomerId) -> Result<Vec<Address>, InfraError> {
        let mut conn = self.pool.get().await.map_err(infra_from_pool)?;
        let rows: Vec<AddressRow> = addresses::table
            .filter(addresses::customer_id.eq(customer.as_uuid()))
            .order((addresses::created_at.asc(), addresses::id.asc()))
            .select(AddressRow::as_select())
            .load(&mut conn)
            .await
            .map_err(infra_from_diesel)?;
        rows.into_iter().map(AddressRow::into_domain).collect()
    }

    async fn find(&self, customer: CustomerId, id: AddressId) -> Result<Option<Address>, InfraError> {
        let mut conn = self.pool.get().await.map_err(infra_from_pool)?;
        let row: Option<AddressRow> = addresses::table
            .find(id.as_uuid())
            .filter(addresses::customer_id.eq(customer.as_uuid()))
            .select(AddressRow::as_select())
            .first(&mut conn)
            .await
            .optional()
            .map_err(infra_from_diesel)?;
        row.map(AddressRow::into_domain).transpose()
    }

    async fn count(&self, customer: CustomerId) -> Result<usize, InfraError> {
        let mut conn = self.pool.get().await.map_err(infra_from_pool)?;
        let n: i64 = addresses::table
            .filter(addresses::customer_id.eq(customer.as_uuid()))
            .count()
            .get_result(&mut conn)
            .await
            .map_err(infra_from_diesel)?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    async fn insert(&self, address: &Address, max: usize) -> Result<bool, InfraError> {
        Ok(self.write(address, Write::Insert { max }, address.is_default).await? == Some(AddressUpdate::Written))
    }

    async fn update(
        &self,
        address: &Address,
        make_default: bool,
        read_at: DateTime<Utc>,
    ) -> Result<AddressUpdate, InfraError> {
        Ok(self.write(address, Write::Update { read_at }, make_default).await?.unwrap_or(AddressUpdate::Gone))
    }

    async fn delete(&self, customer: CustomerId, id: AddressId) -> Result<bool, InfraError> {
        let mut conn = self.pool.get().await.map_err(infra_from_pool)?;
        let customer = customer.as_uuid();
        conn.transaction::<bool, diesel::result::Error, _>(async move |conn| {
            advisory_lock(conn, &format!("addresses:{customer}")).await?;
            let deleted: Option<bool> =
                diesel::delete(addresses::table.find(id.as_uuid()).filter(addresses::customer_id.eq(customer)))
                    .returning(addresses::is_default)
                    .get_result(conn)
                    .await
                    .optional()?;
            let Some(was_default) = deleted else {
                return Ok(false);
            };
            if was_default {
                promote_oldest(conn, customer).await?;
            }
            Ok(true)
        })
        .await
        .map_err(infra_from_diesel)
    }
}
