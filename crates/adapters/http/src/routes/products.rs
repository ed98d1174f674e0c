//! The catalog: public listing, search and detail; admin create, update and archive.

use actix_web::http::header::LOCATION;
use actix_web::web::{Data, Path, Query};
use actix_web::{delete, get, patch, post, HttpResponse};
use chrono::{DateTime, Utc};
use ecom_catalog::model::{NewProduct, Product, ProductPatch, ProductQuery, ProductSort, ProductView, SearchText, Sku};
use ecom_kernel::{field_error, BoundedText, Currency, Money, ProductId, ValidationErrors};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_actix_web::service_config::ServiceConfig;
use uuid::Uuid;

use crate::error::{ApiError, Problem};
use crate::extract::{Admin, JsonBody, PageQuery};
use crate::AppState;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(list_products)
        .service(get_product)
        .service(create_product)
        .service(update_product)
        .service(archive_product);
}

/// An amount in minor units (cents) and its ISO 4217 currency.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MoneyDto {
    #[schema(example = 1999)]
    pub amount: i64,
    /// The shop's currency (`SHOP_CURRENCY`); other currencies are refused.
    #[schema(example = "USD", pattern = "^[A-Z]{3}$")]
    pub currency: String,
}

impl From<Money> for MoneyDto {
    fn from(m: Money) -> Self {
        Self { amount: m.amount(), currency: m.currency().code().to_owned() }
    }
}

impl MoneyDto {
    pub fn parse(&self) -> Result<Money, ecom_kernel::MoneyError> {
        Ok(Money::new(self.amount, Currency::parse(&self.currency)?))
    }
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProductDto {
    id: Uuid,
    sku: String,
    name: String,
    description: Option<String>,
    price: MoneyDto,
    category: Option<String>,
    /// Units that can be bought now (on hand − reserved).
    available: i64,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<&ProductView> for ProductDto {
    fn from(v: &ProductView) -> Self {
        let p = &v.product;
        Self {
            id: p.id.as_uuid(),
            sku: p.sku.as_str().to_owned(),
            name: p.name.as_str().to_owned(),
            description: p.description.as_ref().map(|d| d.as_str().to_owned()),
            price: p.price.into(),
            category: p.category.as_ref().map(|c| c.as_str().to_owned()),
            available: v.available,
            created_at: p.created_at,
            updated_at: p.updated_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProductPage {
    data: Vec<ProductDto>,
    next_cursor: Option<String>,
}

#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query, rename_all = "camelCase")]
pub struct ProductListQuery {
    /// Full-text search with typo and prefix tolerance.
    q: Option<String>,
    category: Option<String>,
    /// Minor units.
    #[param(minimum = 0)]
    min_price: Option<i64>,
    /// Minor units.
    #[param(minimum = 0)]
    max_price: Option<i64>,
    /// Only products with units available now.
    in_stock: Option<bool>,
    /// `relevance` (default with `q`), `price_asc`, `price_desc`, `newest` (default without `q`).
    #[param(pattern = "^(relevance|price_asc|price_desc|newest)$")]
    sort: Option<String>,
    #[param(minimum = 1, maximum = 100)]
    limit: Option<i64>,
    cursor: Option<String>,
}

impl ProductListQuery {
    fn into_query(self) -> Result<(ProductQuery, ecom_kernel::PageRequest), ApiError> {
        let text = self.q.as_deref().map(str::trim).filter(|q| !q.is_empty()).map(SearchText::parse).transpose();
        let sort = match self.sort.as_deref() {
            None => Ok(if self.q.is_some() { ProductSort::Relevance } else { ProductSort::Newest }),
            Some(raw) => ProductSort::parse(raw).ok_or("must be relevance, price_asc, price_desc or newest"),
        };
        let non_negative = |v: Option<i64>| match v {
            Some(n) if n < 0 => Err("must not be negative"),
            other => Ok(other),
        };
        let (min_price, max_price) = (non_negative(self.min_price), non_negative(self.max_price));
        let page = PageQuery { limit: self.limit, cursor: self.cursor }.to_request();
        // As a product's category is written (no control characters, at most its length).
        let category = self
            .category
            .as_deref()
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(|c| BoundedText::parse(c, Product::CATEGORY_MAX_CHARS).map(|c| c.as_str().to_owned()))
            .transpose();
        match (text, sort, min_price, max_price, category) {
            (Ok(text), Ok(sort), Ok(min_price), Ok(max_price), Ok(category)) => {
                let in_stock = self.in_stock.unwrap_or(false);
                Ok((ProductQuery { text, category, min_price, max_price, in_stock, sort }, page?))
            }
            (text, sort, min_price, max_price, category) => Err(ValidationErrors::collect([
                field_error("q", &text),
                field_error("sort", &sort),
                field_error("minPrice", &min_price),
                field_error("maxPrice", &max_price),
                field_error("category", &category),
            ])
            .into()),
        }
    }
}

fn text(raw: &str, max: usize) -> Result<BoundedText, ecom_kernel::TextError> {
    BoundedText::parse(raw, max)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CreateProductRequest {
    /// Letters, digits, `-`, `_` and `.`; stored upper-case.
    #[schema(pattern = "^[A-Za-z0-9._-]{1,64}$")]
    sku: String,
    #[schema(min_length = 1, max_length = 200)]
    name: String,
    #[schema(min_length = 1, max_length = 5000)]
    description: Option<String>,
    /// In the shop's currency; `amount` from 1 to 100000000000 minor units.
    price: MoneyDto,
    #[schema(min_length = 1, max_length = 100)]
    category: Option<String>,
    /// Units on hand at creation (default 0).
    #[schema(minimum = 0, maximum = 1_000_000)]
    initial_stock: Option<i64>,
}

impl CreateProductRequest {
    fn into_command(self) -> Result<NewProduct, ApiError> {
        let sku = Sku::parse(&self.sku);
        let name = text(&self.name, Product::NAME_MAX_CHARS);
        let description = self.description.as_deref().map(Product::parse_description).transpose();
        let price = self.price.parse();
        let category = self.category.as_deref().map(|c| text(c, Product::CATEGORY_MAX_CHARS)).transpose();
        let stock = match self.initial_stock.unwrap_or(0) {
            n if (0..=i64::from(Product::MAX_INITIAL_STOCK)).contains(&n) => Ok(u32::try_from(n).unwrap_or(0)),
            _ => Err("must be between 0 and 1000000"),
        };
        match (sku, name, description, price, category, stock) {
            (Ok(sku), Ok(name), Ok(description), Ok(price), Ok(category), Ok(initial_stock)) => {
                Ok(NewProduct { sku, name, description, price, category, initial_stock })
            }
            (sku, name, description, price, category, stock) => Err(ValidationErrors::collect([
                field_error("sku", &sku),
                field_error("name", &name),
                field_error("description", &description),
                field_error("price.currency", &price),
                field_error("category", &category),
                field_error("initialStock", &stock),
            ])
            .into()),
        }
    }
}

/// Any field but the SKU; `null` clears description or category.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UpdateProductRequest {
    #[schema(min_length = 1, max_length = 200)]
    name: Option<String>,
    #[serde(default, deserialize_with = "super::nullable")]
    #[schema(value_type = Option<String>, nullable, min_length = 1, max_length = 5000)]
    description: Option<Option<String>>,
    /// In the shop's currency; `amount` from 1 to 100000000000 minor units.
    price: Option<MoneyDto>,
    #[serde(default, deserialize_with = "super::nullable")]
    #[schema(value_type = Option<String>, nullable, min_length = 1, max_length = 100)]
    category: Option<Option<String>>,
}

impl UpdateProductRequest {
    fn into_patch(self) -> Result<ProductPatch, ApiError> {
        let nullable =
            |v: Option<Option<String>>, max| v.map(|o| o.as_deref().map(|s| text(s, max)).transpose()).transpose();
        let name = self.name.as_deref().map(|n| text(n, Product::NAME_MAX_CHARS)).transpose();
        let description =
            self.description.map(|o| o.as_deref().map(Product::parse_description).transpose()).transpose();
        let price = self.price.as_ref().map(MoneyDto::parse).transpose();
        let category = nullable(self.category, Product::CATEGORY_MAX_CHARS);
        match (name, description, price, category) {
            (Ok(name), Ok(description), Ok(price), Ok(category)) => {
                Ok(ProductPatch { name, description, price, category })
            }
            (name, description, price, category) => Err(ValidationErrors::collect([
                field_error("name", &name),
                field_error("description", &description),
                field_error("price.currency", &price),
                field_error("category", &category),
            ])
            .into()),
        }
    }
}

/// Active products: filtered, searched, sorted, cursor-paged.
#[utoipa::path(
    tag = "catalog",
    params(ProductListQuery),
    responses(
        (status = 200, body = ProductPage),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/products")]
async fn list_products(state: Data<AppState>, query: Query<ProductListQuery>) -> Result<HttpResponse, ApiError> {
    let (query, page) = query.into_inner().into_query()?;
    let result = state.catalog.list_products(&query, &page).await?;
    Ok(HttpResponse::Ok().json(ProductPage {
        data: result.items.iter().map(ProductDto::from).collect(),
        next_cursor: result.next.map(|c| c.encode()),
    }))
}

/// One active product.
#[utoipa::path(
    tag = "catalog",
    params(("id" = Uuid, Path, description = "Product id")),
    responses(
        (status = 200, body = ProductDto),
        (status = 404, description = "PRODUCT_NOT_FOUND", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/products/{id}")]
async fn get_product(state: Data<AppState>, id: Path<Uuid>) -> Result<HttpResponse, ApiError> {
    let view = state.catalog.get_product(ProductId::from_uuid(*id)).await?;
    Ok(HttpResponse::Ok().json(ProductDto::from(&view)))
}

/// Creates a product with its initial stock. ADMIN only.
#[utoipa::path(
    tag = "catalog",
    security(("bearer" = ["ADMIN"])),
    request_body = CreateProductRequest,
    responses(
        (status = 201, body = ProductDto, headers(("Location" = String))),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "SKU_TAKEN", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/products")]
async fn create_product(
    state: Data<AppState>,
    admin: Admin,
    body: JsonBody<CreateProductRequest>,
) -> Result<HttpResponse, ApiError> {
    let command = body.into_inner().into_command()?;
    let view = state.catalog.create_product(admin.0.customer_id, command).await?;
    tracing::info!(product_id = %view.product.id, sku = view.product.sku.as_str(), "product created");
    Ok(HttpResponse::Created()
        .insert_header((LOCATION, format!("/v1/products/{}", view.product.id)))
        .json(ProductDto::from(&view)))
}

/// Changes a product; visible on the very next read. ADMIN only.
#[utoipa::path(
    tag = "catalog",
    security(("bearer" = ["ADMIN"])),
    params(("id" = Uuid, Path, description = "Product id")),
    request_body = UpdateProductRequest,
    responses(
        (status = 200, body = ProductDto),
        (status = 404, description = "PRODUCT_NOT_FOUND", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    )
)]
#[patch("/products/{id}")]
async fn update_product(
    state: Data<AppState>,
    _admin: Admin,
    id: Path<Uuid>,
    body: JsonBody<UpdateProductRequest>,
) -> Result<HttpResponse, ApiError> {
    let patch = body.into_inner().into_patch()?;
    let view = state.catalog.update_product(ProductId::from_uuid(*id), patch).await?;
    Ok(HttpResponse::Ok().json(ProductDto::from(&view)))
}

/// Archives a product: no longer listed or sellable; past orders keep it. ADMIN only.
#[utoipa::path(
    tag = "catalog",
    security(("bearer" = ["ADMIN"])),
    params(("id" = Uuid, Path, description = "Product id")),
    responses(
        (status = 204, description = "Archived"),
        (status = 404, description = "PRODUCT_NOT_FOUND", body = Problem, content_type = "application/problem+json"),
    )
)]
#[delete("/products/{id}")]
async fn archive_product(state: Data<AppState>, _admin: Admin, id: Path<Uuid>) -> Result<HttpResponse, ApiError> {
    state.catalog.archive_product(ProductId::from_uuid(*id)).await?;
    Ok(HttpResponse::NoContent().finish())
}
