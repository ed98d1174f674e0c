//! The product repository: products with their availability, and search.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Double, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::{AsyncConnection, RunQueryDsl};
use ecom_catalog::model::{ListPosition, Product, ProductQuery, ProductSort, ProductStatus, ProductView, Sku};
use ecom_catalog::ports::{CreateProductError, ProductRepository};
use ecom_kernel::jobs::NewJob;
use ecom_kernel::{BoundedText, Currency, CustomerId, InfraError, Money, Page, PageRequest, ProductId};
use uuid::Uuid;

use crate::error::{infra_from_diesel, infra_from_pool, unique_violation};
use crate::inventory::{record_movement, Movement};
use crate::outbox::stage;
use crate::schema::{products, stock_levels};
use crate::sql::{Bind, Sql};
use crate::PgPool;

#[derive(QueryableByName)]
struct ProductRow {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = Text)]
    sku: String,
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Nullable<Text>)]
    description: Option<String>,
    #[diesel(sql_type = BigInt)]
    price_amount: i64,
    #[diesel(sql_type = Text)]
    price_currency: String,
    #[diesel(sql_type = Nullable<Text>)]
    category: Option<String>,
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(sql_type = Timestamptz)]
    created_at: DateTime<Utc>,
    #[diesel(sql_type = Timestamptz)]
    updated_at: DateTime<Utc>,
    #[diesel(sql_type = BigInt)]
    available: i64,
}

/// A product as a search lists it, with its rank (0 outside a search).
#[derive(QueryableByName)]
struct RankedRow {
    #[diesel(embed)]
    product: ProductRow,
    #[diesel(sql_type = Double)]
    rank: f64,
}

fn corrupt(what: &str) -> InfraError {
    InfraError::unexpected(format!("corrupt product row: {what}"))
}

impl ProductRow {
    fn into_domain(self) -> Result<ProductView, InfraError> {
        let text = |s: &str, max| BoundedText::parse(s, max).map_err(|_| corrupt("text"));
        let product = Product {
            id: ProductId::from_uuid(self.id),
            sku: Sku::parse(&self.sku).map_err(|_| corrupt("sku"))?,
            name: text(&self.name, Product::NAME_MAX_CHARS)?,
            description: self
                .description
                .as_deref()
                .map(|d| Product::parse_description(d).map_err(|_| corrupt("description")))
                .transpose()?,
            price: Money::new(
                self.price_amount,
                Currency::parse(self.price_currency.trim()).map_err(|_| corrupt("currency"))?,
            ),
            category: self.category.as_deref().map(|c| text(c, Product::CATEGORY_MAX_CHARS)).transpose()?,
            status: ProductStatus::parse(&self.status).ok_or_else(|| corrupt("status"))?,
            created_at: self.created_at,
            updated_at: self.updated_at,
        };
        Ok(ProductView { product, available: self.available })
    }
}

/// The writable columns of a product row. `None` in `sku`/`created_at` leaves them unchanged.
#[derive(Insertable, AsChangeset)]
#[diesel(table_name = products)]
struct ProductRecord<'a> {
    id: Uuid,
    sku: Option<&'a str>,
    name: &'a str,
    #[diesel(treat_none_as_null = true)]
    description: Option<&'a str>,
    price_amount: i64,
    price_currency: &'a str,
    #[diesel(treat_none_as_null = true)]
    category: Option<&'a str>,
    status: &'a str,
    created_at: Option<DateTime<Utc>>,
    updated_at: DateTime<Utc>,
}

impl<'a> ProductRecord<'a> {
    fn of(p: &'a Product) -> Self {
        Self {
            id: p.id.as_uuid(),
            sku: Some(p.sku.as_str()),
            name: p.name.as_str(),
            description: p.description.as_ref().map(BoundedText::as_str),
            price_amount: p.price.amount(),
            price_currency: p.price.currency().code(),
            category: p.category.as_ref().map(BoundedText::as_str),
            status: p.status.as_str(),
            created_at: Some(p.created_at),
            updated_at: p.updated_at,
        }
    }
}

const SELECT_VIEW: &str =
    "SELECT p.id, p.sku, p.name, p.description, p.price_amount, p.price_currency::TEXT AS price_currency, \
     p.category, p.status, p.created_at, p.updated_at, \
     COALESCE(s.on_hand - s.reserved, 0)::BIGINT AS available \
     FROM products p LEFT JOIN stock_levels s ON s.product_id = p.id";

pub struct PgProductRepository {
    pool: PgPool,
}

impl PgProductRepository {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

#[async_trait]
impl ProductRepository for PgProductRepository {
    async fn create(&self, product: &Product, initial_stock: u32, actor: CustomerId) -> Result<(), CreateProductError> {
        let mut conn = self.pool.get().await.map_err(infra_from_pool)?;
        let stock = i32::try_from(initial_stock).map_err(|_| InfraError::unexpected("initial stock out of range"))?;
        let p = product.clone();
        let result = conn
            .transaction::<(), diesel::result::Error, _>(async move |conn| {
                diesel::insert_into(products::table).values(ProductRecord::of(&p)).execute(conn).await?;
                diesel::insert_into(stock_levels::table)
                    .values((
                        stock_levels::product_id.eq(p.id.as_uuid()),
                        stock_levels::on_hand.eq(stock),
                        stock_levels::reserved.eq(0),
                        stock_levels::updated_at.eq(p.created_at),
                    ))
                    .execute(conn)
                    .await?;
                record_movement(
                    conn,
                    &Movement {
                        product_id: p.id.as_uuid(),
                        kind: "INITIAL",
                        on_hand_delta: stock,
                        reserved_delta: 0,
                        on_hand_after: stock,
                        reserved_after: 0,
                        reason: Some("initial stock"),
                        actor_id: Some(actor.as_uuid()),
                        reference: None,
                        at: p.created_at,
                    },
                )
                .await
            })
            .await;
        match result {
            Ok(()) => Ok(()),
            Err(e) if unique_violation(&e) == Some("products_sku_key") => Err(CreateProductError::SkuTaken),
            Err(e) => Err(infra_from_diesel(e).into()),
        }
    }

    async fn find(&self, id: ProductId) -> Result<Option<ProductView>, InfraError> {
        let mut conn = self.pool.get().await.map_err(infra_from_pool)?;
        let mut sql = Sql::default();
        sql.push(SELECT_VIEW).push(" WHERE p.id = ").bind(Bind::Uuid(id.as_uuid()));
        let row: Option<ProductRow> = sql.get_result(&mut conn).await.optional().map_err(infra_from_diesel)?;
        row.map(ProductRow::into_domain).transpose()
    }

    async fn update(&self, expected: &Product, p: &Product, jobs: &[NewJob]) -> Result<bool, InfraError> {
        let mut conn = self.pool.get().await.map_err(infra_from_pool)?;
        let (expected, p, jobs) = (expected.clone(), p.clone(), jobs.to_vec());
        conn.transaction::<bool, diesel::result::Error, _>(async move |conn| {
            // The SKU and creation time never change.
            let record = ProductRecord { sku: None, created_at: None, ..ProductRecord::of(&p) };
            let written = diesel::update(
                products::table
                    .find(p.id.as_uuid())
                    .filter(products::updated_at.eq(expected.updated_at))
                    .filter(products::status.eq(expected.status.as_str())),
            )
            .set(record)
            .execute(conn)
            .await?;
            if written == 1 {
                // Stamped by this machine's clock, as every staged job is: the relay takes rows by age.
                stage(conn, &jobs, None, Utc::now()).await?;
            }
            Ok(written == 1)
        })
        .await
        .map_err(infra_from_diesel)
    }

    async fn search(&self, query: &ProductQuery, page: &PageRequest) -> Result<Page<ProductView>, InfraError> {
        let sort = query.effective_sort();
        let mut sql = Sql::default();
        sql.push(
            "SELECT * FROM (SELECT p.id, p.sku, p.name, p.description, p.price_amount, \
             p.price_currency::TEXT AS price_currency, p.category, p.status, p.created_at, p.updated_at, \
             COALESCE(s.on_hand - s.reserved, 0)::BIGINT AS available, ",
        );
        let mut conditions = Sql::default();
        conditions.push(" WHERE p.status = 'ACTIVE'");
        match &query.text {
            Some(text) => {
                // Lower-cased by PostgreSQL, as `search_text` is: Rust's lower case differs from
                // the database's for some letters (a final sigma, a dotted capital I).
                let q = text.as_str().to_owned();
                // The phrase is parsed once; each word's best trigram match in name or category is
                // averaged, once per row: tolerates typos and prefixes in every word. A row matches
                // on full text (stemmed, weighted) or a close enough fuzzy match.
                sql.push(
                    "(2 * ts_rank(p.search_vector, q.tsq) + f.fuzzy)::FLOAT8 AS rank \
                          FROM products p LEFT JOIN stock_levels s ON s.product_id = p.id \
                          CROSS JOIN (SELECT websearch_to_tsquery('english', ",
                )
                .bind(Bind::Text(q.clone()))
                .push(") AS tsq, regexp_split_to_array(lower(")
                .bind(Bind::Text(q.clone()))
                .push(
                    "), '\\s+') AS words) q \
                          CROSS JOIN LATERAL (SELECT coalesce(avg(word_similarity(w, p.search_text)), 0) AS fuzzy \
                                              FROM unnest(q.words) AS w) f",
                );
                conditions
                    .push(" AND (p.search_vector @@ q.tsq OR lower(")
                    .bind(Bind::Text(q))
                    .push(") <% p.search_text OR f.fuzzy >= 0.5)");
            }
            None => {
                sql.push("0::FLOAT8 AS rank FROM products p LEFT JOIN stock_levels s ON s.product_id = p.id");
            }
        }
        if let Some(category) = &query.category {
            // Both sides lower-cased by the same function (the index is on `lower(category)`).
            conditions.push(" AND lower(p.category) = lower(").bind(Bind::Text(category.clone())).push(")");
        }
        if let Some(min) = query.min_price {
            conditions.push(" AND p.price_amount >= ").bind(Bind::BigInt(min));
        }
        if let Some(max) = query.max_price {
            conditions.push(" AND p.price_amount <= ").bind(Bind::BigInt(max));
        }
        if query.in_stock {
            conditions.push(" AND COALESCE(s.on_hand - s.reserved, 0) > 0");
        }
        // Relevance pages on the rank, computed by the inner query: its condition goes outside.
        let mut outer = Sql::default();
        if let Some(cursor) = page.after() {
            // The service refused a cursor of another sort; this one is the list's own.
            match sort.position(cursor).ok_or_else(|| InfraError::unexpected("cursor of another sort"))? {
                ListPosition::After(id) => {
                    conditions.push(" AND p.id < ").bind(Bind::Uuid(id));
                }
                ListPosition::AfterPrice(price, id) => {
                    let op = if sort == ProductSort::PriceAsc {
                        " AND (p.price_amount, p.id) > ("
                    } else {
                        " AND (p.price_amount, p.id) < ("
                    };
                    conditions.push(op).bind(Bind::BigInt(price)).push(", ").bind(Bind::Uuid(id)).push(")");
                }
                ListPosition::AfterRank(rank, id) => {
                    outer
                        .push(" WHERE (p.rank, p.id) < (")
                        .bind(Bind::Double(rank))
                        .push(", ")
                        .bind(Bind::Uuid(id))
                        .push(")");
                }
            }
        }
        let order = match sort {
            ProductSort::Newest => "p.id DESC",
            ProductSort::PriceAsc => "p.price_amount ASC, p.id ASC",
            ProductSort::PriceDesc => "p.price_amount DESC, p.id DESC",
            ProductSort::Relevance => "rank DESC, p.id DESC",
        };
        sql.append(conditions)
            .push(") p")
            .append(outer)
            .push(&format!(" ORDER BY {order} LIMIT "))
            .bind(Bind::BigInt(page.fetch_limit()));
        let mut conn = self.pool.get().await.map_err(infra_from_pool)?;
        let rows: Vec<RankedRow> = sql.load(&mut conn).await.map_err(infra_from_diesel)?;
        let items = rows
            .into_iter()
            .map(|row| Ok((row.product.into_domain()?, row.rank)))
            .collect::<Result<Vec<_>, InfraError>>()?;
        let page = Page::from_overfetch(items, page, |(v, rank): &(ProductView, f64)| {
            sort.cursor_after(v.product.id.as_uuid(), v.product.price.amount(), *rank)
        });
        Ok(Page { items: page.items.into_iter().map(|(v, _)| v).collect(), next: page.next })
    }
}
