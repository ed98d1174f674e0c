//! Catalog and inventory repositories against the real PostgreSQL, one database per test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use ecom_catalog::model::{Product, ProductQuery, ProductSort, ProductStatus, SearchText, Sku};
use ecom_catalog::ports::{CreateProductError, ProductRepository};
use ecom_inventory::model::{Adjustment, MovementContext, ReservationLine, ReservationStatus};
use ecom_inventory::ports::{AdjustError, ReserveError, StockRepository, Transition};
use ecom_kernel::jobs::{JobId, NewJob, QueueName};
use ecom_kernel::{BoundedText, Currency, CustomerId, Money, OrderId, Page, PageRequest, ProductId, Quantity};
use ecom_postgres::{connect, PgPool, PgProductRepository, PgSettings, PgStockRepository};
use ecom_testkit::TestDb;

/// A job to stage with a product change.
fn job(id: &str) -> NewJob {
    NewJob {
        id: JobId::new(id),
        queue: QueueName::Checkout,
        kind: "catalog.evict-cached".into(),
        payload: serde_json::json!({}),
        schema_version: 1,
        max_attempts: 10,
        trace_id: None,
    }
}

async fn staged_ids(pool: &PgPool) -> Vec<String> {
    use diesel::QueryDsl;
    use diesel_async::RunQueryDsl;
    use ecom_postgres::schema::outbox;
    let mut conn = pool.get().await.unwrap();
    outbox::table.select(outbox::id).load(&mut conn).await.unwrap()
}

fn pool(db: &TestDb, size: usize) -> PgPool {
    connect(&PgSettings {
        url: db.url(),
        max_connections: size,
        acquire_timeout: Duration::from_secs(10),
        statement_timeout: Duration::from_secs(10),
        application_name: "adapter-test".into(),
    })
    .unwrap()
}

fn now() -> DateTime<Utc> {
    DateTime::from_timestamp_micros(Utc::now().timestamp_micros()).unwrap()
}

fn product(sku: &str, name: &str, category: &str, cents: i64, description: &str) -> Product {
    Product {
        id: ProductId::new(),
        sku: Sku::parse(sku).unwrap(),
        name: BoundedText::parse(name, 200).unwrap(),
        description: Some(BoundedText::parse(description, 5000).unwrap()),
        price: Money::new(cents, Currency::USD),
        category: Some(BoundedText::parse(category, 100).unwrap()),
        status: ProductStatus::Active,
        created_at: now(),
        updated_at: now(),
    }
}

async fn stocked(repo: &PgProductRepository, sku: &str, stock: u32) -> ProductId {
    let p = product(sku, &format!("Product {sku}"), "test", 1000, "test product");
    repo.create(&p, stock, CustomerId::new()).await.unwrap();
    p.id
}

fn line(product_id: ProductId, q: i64) -> ReservationLine {
    ReservationLine { product_id, quantity: Quantity::new(q).unwrap() }
}

fn in_an_hour() -> DateTime<Utc> {
    now() + chrono::Duration::hours(1)
}

#[tokio::test]
async fn fifty_concurrent_reservations_of_one_unit_against_ten_in_stock_exactly_ten_succeed() {
    let db = TestDb::new().await;
    let pool = pool(&db, 16);
    let p = stocked(&PgProductRepository::new(pool.clone()), "SCARCE-1", 10).await;
    let stock = Arc::new(PgStockRepository::new(pool));

    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let stock = stock.clone();
            tokio::spawn(async move { stock.reserve(OrderId::new(), &[line(p, 1)], in_an_hour(), now()).await })
        })
        .collect();
    let (mut ok, mut out_of_stock) = (0, 0);
    for task in tasks {
        match task.await.unwrap() {
            Ok(r) => {
                assert_eq!(r.status, ReservationStatus::Active);
                ok += 1;
            }
            Err(ReserveError::Insufficient { available: 0, requested: 1, .. }) => out_of_stock += 1,
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!((ok, out_of_stock), (10, 40));
    let level = stock.level(p).await.unwrap().unwrap();
    assert_eq!((level.on_hand, level.reserved, level.available()), (10, 10, 0));
}

#[tokio::test]
async fn crossing_multi_line_reservations_never_deadlock_nor_half_reserve() {
    let db = TestDb::new().await;
    let pool = pool(&db, 16);
    let products = PgProductRepository::new(pool.clone());
    let (a, b) = (stocked(&products, "CROSS-A", 15).await, stocked(&products, "CROSS-B", 15).await);
    let stock = Arc::new(PgStockRepository::new(pool));

    // Half take (a, b), half take (b, a): the adapter must lock in one order.
    let tasks: Vec<_> = (0..40)
        .map(|i| {
            let stock = stock.clone();
            let lines = if i % 2 == 0 { [line(a, 1), line(b, 1)] } else { [line(b, 1), line(a, 1)] };
            tokio::spawn(async move { stock.reserve(OrderId::new(), &lines, in_an_hour(), now()).await })
        })
        .collect();
    let mut ok = 0;
    for task in tasks {
        match tokio::time::timeout(Duration::from_secs(30), task).await.expect("no deadlock").unwrap() {
            Ok(_) => ok += 1,
            Err(ReserveError::Insufficient { .. }) => {}
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!(ok, 15);
    for p in [a, b] {
        let level = stock.level(p).await.unwrap().unwrap();
        assert_eq!(level.reserved, 15, "both products reserved exactly as often");
    }

    // A reservation that cannot take every line takes none.
    let c = stocked(&products, "CROSS-C", 5).await;
    let err = stock.reserve(OrderId::new(), &[line(c, 2), line(a, 1)], in_an_hour(), now()).await.unwrap_err();
    assert!(matches!(err, ReserveError::Insufficient { product_id, .. } if product_id == a));
    assert_eq!(stock.level(c).await.unwrap().unwrap().reserved, 0, "no half reservation");
}

async fn level(stock: &PgStockRepository, p: ProductId) -> (u32, u32) {
    let l = stock.level(p).await.unwrap().unwrap();
    (l.on_hand, l.reserved)
}

#[tokio::test]
async fn a_replayed_reservation_finds_its_own_even_once_the_stock_is_gone() {
    let db = TestDb::new().await;
    let pool = pool(&db, 4);
    let products = PgProductRepository::new(pool.clone());
    let (p, q) = (stocked(&products, "LAST-1", 3).await, stocked(&products, "LAST-2", 1).await);
    let stock = PgStockRepository::new(pool);

    // One line (one statement) and two lines (a transaction): each takes everything there is.
    let (one, two) = (OrderId::new(), OrderId::new());
    stock.reserve(one, &[line(p, 2)], in_an_hour(), now()).await.unwrap();
    stock.reserve(two, &[line(p, 1), line(q, 1)], in_an_hour(), now()).await.unwrap();
    assert_eq!((level(&stock, p).await, level(&stock, q).await), ((3, 3), (1, 1)));

    let again = stock.reserve(one, &[line(p, 2)], in_an_hour(), now()).await.unwrap();
    assert_eq!((again.status, again.lines.len()), (ReservationStatus::Active, 1), "its own, not out of stock");
    let again = stock.reserve(two, &[line(p, 1), line(q, 1)], in_an_hour(), now()).await.unwrap();
    assert_eq!((again.status, again.lines.len()), (ReservationStatus::Active, 2));
    assert_eq!((level(&stock, p).await, level(&stock, q).await), ((3, 3), (1, 1)), "nothing taken twice");

    let err = stock.reserve(OrderId::new(), &[line(p, 1)], in_an_hour(), now()).await.unwrap_err();
    assert!(matches!(err, ReserveError::Insufficient { available: 0, .. }), "{err:?}");
    let unknown = ProductId::new();
    let err = stock.reserve(OrderId::new(), &[line(unknown, 1)], in_an_hour(), now()).await.unwrap_err();
    assert!(matches!(err, ReserveError::UnknownProduct(u) if u == unknown), "{err:?}");
}

#[tokio::test]
async fn racing_moves_of_one_reservation_apply_once_whatever_its_lines() {
    let db = TestDb::new().await;
    let pool = pool(&db, 8);
    let products = PgProductRepository::new(pool.clone());
    let (p, q) = (stocked(&products, "RACE-1", 100).await, stocked(&products, "RACE-2", 100).await);
    let stock = Arc::new(PgStockRepository::new(pool));
    let mut expected = ((100_u32, 0_u32), (100_u32, 0_u32));
    for round in 0..20 {
        let order = OrderId::new();
        // Even rounds: one line (one statement); odd: two lines (a transaction).
        let lines = if round % 2 == 0 { vec![line(p, 1)] } else { vec![line(p, 1), line(q, 2)] };
        stock.reserve(order, &lines, in_an_hour(), now()).await.unwrap();
        let moves = [ReservationStatus::Confirmed, ReservationStatus::Released, ReservationStatus::Confirmed];
        let racers = moves.map(|to| {
            let stock = stock.clone();
            tokio::spawn(async move { (to, stock.finish(order, to, now()).await.unwrap()) })
        });
        let mut applied = Vec::new();
        for racer in racers {
            let (to, transition) = racer.await.unwrap();
            if let Transition::Applied(changed) = transition {
                assert_eq!(changed.len(), lines.len());
                applied.push(to);
            }
        }
        assert_eq!(applied.len(), 1, "round {round}: exactly one move applies: {applied:?}");
        if applied[0] == ReservationStatus::Confirmed {
            expected.0 .0 -= 1;
            if lines.len() == 2 {
                expected.1 .0 -= 2;
            }
        }
        assert_eq!((level(&stock, p).await, level(&stock, q).await), expected, "round {round}");
    }
}

#[tokio::test]
async fn reserve_confirm_release_and_expire_change_nothing_the_second_time() {
    let db = TestDb::new().await;
    let pool = pool(&db, 4);
    let products = PgProductRepository::new(pool.clone());
    let p = stocked(&products, "TWICE-1", 10).await;
    let stock = PgStockRepository::new(pool);

    let order = OrderId::new();
    stock.reserve(order, &[line(p, 3)], in_an_hour(), now()).await.unwrap();
    let again = stock.reserve(order, &[line(p, 3)], in_an_hour(), now()).await.unwrap();
    assert_eq!(again.status, ReservationStatus::Active);
    assert_eq!(level(&stock, p).await, (10, 3), "reserved once");

    assert_eq!(stock.finish(order, ReservationStatus::Confirmed, now()).await.unwrap(), Transition::Applied(vec![p]));
    assert_eq!(
        stock.finish(order, ReservationStatus::Confirmed, now()).await.unwrap(),
        Transition::AlreadyFinished(ReservationStatus::Confirmed)
    );
    assert_eq!(level(&stock, p).await, (7, 0), "confirmed once: on hand and reserved both dropped");

    let released = OrderId::new();
    stock.reserve(released, &[line(p, 2)], in_an_hour(), now()).await.unwrap();
    assert_eq!(stock.finish(released, ReservationStatus::Released, now()).await.unwrap(), Transition::Applied(vec![p]));
    assert_eq!(
        stock.finish(released, ReservationStatus::Released, now()).await.unwrap(),
        Transition::AlreadyFinished(ReservationStatus::Released)
    );
    assert_eq!(level(&stock, p).await, (7, 0));
    let replay = stock.reserve(released, &[line(p, 2)], in_an_hour(), now()).await.unwrap();
    assert_eq!(replay.status, ReservationStatus::Released, "a finished reservation is not re-taken");
    assert_eq!(level(&stock, p).await, (7, 0));

    // Expiry: only ACTIVE reservations past their time.
    let late = OrderId::new();
    let fresh = OrderId::new();
    stock.reserve(late, &[line(p, 1)], now() - chrono::Duration::seconds(1), now()).await.unwrap();
    stock.reserve(fresh, &[line(p, 1)], in_an_hour(), now()).await.unwrap();
    assert_eq!(stock.expired(now(), 10).await.unwrap(), vec![late]);
    assert_eq!(stock.finish(late, ReservationStatus::Expired, now()).await.unwrap(), Transition::Applied(vec![p]));
    assert_eq!(
        stock.finish(late, ReservationStatus::Expired, now()).await.unwrap(),
        Transition::AlreadyFinished(ReservationStatus::Expired)
    );
    assert!(stock.expired(now(), 10).await.unwrap().is_empty());
    assert_eq!(level(&stock, p).await, (7, 1), "only the fresh reservation still holds a unit");
    assert_eq!(stock.finish(OrderId::new(), ReservationStatus::Released, now()).await.unwrap(), Transition::NotFound);
}

#[tokio::test]
async fn adjustments_never_go_below_reserved_and_every_change_is_in_the_ledger() {
    let db = TestDb::new().await;
    let pool = pool(&db, 4);
    let p = stocked(&PgProductRepository::new(pool.clone()), "LEDGER-1", 10).await;
    let stock = PgStockRepository::new(pool.clone());
    let ctx = MovementContext {
        actor: Some(CustomerId::new()),
        reason: Some(BoundedText::parse("cycle count", 500).unwrap()),
        reference: None,
        at: now(),
    };
    stock.reserve(OrderId::new(), &[line(p, 4)], in_an_hour(), now()).await.unwrap();
    assert!(matches!(stock.adjust(p, Adjustment::Set(3), &ctx).await, Err(AdjustError::BelowReserved { reserved: 4 })));
    assert!(matches!(stock.adjust(p, Adjustment::Subtract(7), &ctx).await, Err(AdjustError::BelowReserved { .. })));
    assert_eq!(stock.adjust(p, Adjustment::Subtract(6), &ctx).await.unwrap().on_hand, 4);
    assert_eq!(stock.adjust(p, Adjustment::Add(5), &ctx).await.unwrap().on_hand, 9);
    assert_eq!(stock.adjust(p, Adjustment::Set(20), &ctx).await.unwrap().on_hand, 20);
    assert!(matches!(stock.adjust(ProductId::new(), Adjustment::Add(1), &ctx).await, Err(AdjustError::NotFound)));

    use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
    #[derive(diesel::QueryableByName, Debug, PartialEq)]
    struct Sums {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        on_hand: i64,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        reserved: i64,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        rows: i64,
    }
    let mut conn = AsyncPgConnection::establish(&db.url()).await.unwrap();
    let sums = || {
        diesel::sql_query(
            "SELECT coalesce(sum(on_hand_delta), 0)::BIGINT AS on_hand, coalesce(sum(reserved_delta), 0)::BIGINT AS reserved, \
             count(*) AS rows FROM stock_movements",
        )
    };
    let ledger: Sums = sums().get_result(&mut conn).await.unwrap();
    assert_eq!(ledger, Sums { on_hand: 20, reserved: 4, rows: 5 }, "the ledger adds up to the level");
    // Append-only: updates and deletes are ignored by rules.
    diesel::sql_query("UPDATE stock_movements SET on_hand_delta = 0").execute(&mut conn).await.unwrap();
    diesel::sql_query("DELETE FROM stock_movements").execute(&mut conn).await.unwrap();
    assert_eq!(sums().get_result::<Sums>(&mut conn).await.unwrap().rows, 5);
    // The database itself refuses reserved > on hand.
    let err = diesel::sql_query("UPDATE stock_levels SET reserved = on_hand + 1").execute(&mut conn).await;
    assert!(err.is_err());
    // Near the most a level holds, an addition past it is refused as too many, not below reserved.
    diesel::sql_query("UPDATE stock_levels SET on_hand = 2147483000").execute(&mut conn).await.unwrap();
    assert!(matches!(
        stock.adjust(p, Adjustment::Add(1_000), &ctx).await,
        Err(AdjustError::TooMany { max: 2_147_483_647 })
    ));
    assert_eq!(stock.adjust(p, Adjustment::Add(647), &ctx).await.unwrap().on_hand, 2_147_483_647);
}

#[tokio::test]
async fn a_taken_sku_is_refused_whatever_its_case() {
    let db = TestDb::new().await;
    let repo = PgProductRepository::new(pool(&db, 2));
    repo.create(&product("dup-1", "One", "x", 100, "d"), 0, CustomerId::new()).await.unwrap();
    let err = repo.create(&product("DUP-1", "Two", "x", 100, "d"), 0, CustomerId::new()).await.unwrap_err();
    assert!(matches!(err, CreateProductError::SkuTaken));
}

fn query(text: Option<&str>, sort: ProductSort) -> ProductQuery {
    ProductQuery {
        text: text.map(|t| SearchText::parse(t).unwrap()),
        category: None,
        min_price: None,
        max_price: None,
        in_stock: false,
        sort,
    }
}

async fn seed_catalog(repo: &PgProductRepository) {
    let items = [
        ("S-1", "Wireless Noise-Cancelling Headphones", "audio", 24900, "Over-ear bluetooth headphones with ANC"),
        ("S-2", "Fast Wireless Charger", "phones", 3900, "Qi charging pad"),
        ("S-3", "Espresso Machine", "kitchen", 49900, "15-bar espresso maker with steam wand"),
        ("S-4", "Mechanical Keyboard", "computing", 10900, "Tenkeyless keyboard with hot-swappable switches"),
        ("S-5", "The Rust Programming Language", "books", 3900, "The official book on Rust"),
        ("S-6", "Yoga Mat", "fitness", 3500, "Non-slip mat"),
        ("S-7", "Studio Monitor Headphones", "audio", 15900, "Closed-back wired headphones for mixing"),
        ("S-8", "Cast Iron Skillet", "kitchen", 3900, "Pre-seasoned skillet"),
    ];
    for (sku, name, category, cents, description) in items {
        repo.create(&product(sku, name, category, cents, description), 5, CustomerId::new()).await.unwrap();
    }
}

async fn first_name(repo: &PgProductRepository, text: &str) -> String {
    let page = repo.search(&query(Some(text), ProductSort::Relevance), &PageRequest::first(5)).await.unwrap();
    page.items.first().map(|v| v.product.name.as_str().to_owned()).unwrap_or_default()
}

#[tokio::test]
async fn search_finds_the_intended_product_first_despite_typos_prefixes_and_many_words() {
    let db = TestDb::new().await;
    let repo = PgProductRepository::new(pool(&db, 2));
    seed_catalog(&repo).await;
    for (text, expected) in [
        ("espresso", "Espresso Machine"),
        ("espreso machne", "Espresso Machine"),
        ("wireles hedphones", "Wireless Noise-Cancelling Headphones"),
        ("noise cancelling headphones", "Wireless Noise-Cancelling Headphones"),
        ("mechanical keybord", "Mechanical Keyboard"),
        ("keyb", "Mechanical Keyboard"),
        ("skil", "Cast Iron Skillet"),
        ("rust book", "The Rust Programming Language"),
        ("steam wand", "Espresso Machine"),
    ] {
        assert_eq!(first_name(&repo, text).await, expected, "query {text:?}");
    }
    let none = repo.search(&query(Some("zzzz qqqq"), ProductSort::Relevance), &PageRequest::first(5)).await.unwrap();
    assert!(none.items.is_empty(), "nonsense finds nothing");
}

async fn walk(repo: &PgProductRepository, q: &ProductQuery, limit: u32) -> Vec<String> {
    let mut names = Vec::new();
    let mut request = PageRequest::first(limit);
    loop {
        let Page { items, next } = repo.search(q, &request).await.unwrap();
        assert!(items.len() <= limit as usize);
        names.extend(items.iter().map(|v| v.product.sku.as_str().to_owned()));
        match next {
            Some(cursor) => request = PageRequest::first(limit).with_after(Some(cursor)),
            None => return names,
        }
    }
}

#[tokio::test]
async fn paging_returns_every_product_exactly_once_in_every_order() {
    let db = TestDb::new().await;
    let pool = pool(&db, 2);
    let repo = PgProductRepository::new(pool.clone());
    seed_catalog(&repo).await;
    let archived = product("S-9", "Archived Thing", "audio", 100, "gone");
    repo.create(&archived, 1, CustomerId::new()).await.unwrap();
    let gone = Product { status: ProductStatus::Archived, ..archived.clone() };
    assert!(repo.update(&archived, &gone, &[job("evict-1")]).await.unwrap());
    // A write over the product as it was before (a concurrent change read it then) is refused,
    // and its job with it.
    let stale = Product { status: ProductStatus::Active, ..archived.clone() };
    assert!(!repo.update(&archived, &stale, &[job("evict-2")]).await.unwrap(), "read before the archive");
    assert_eq!(repo.find(archived.id).await.unwrap().unwrap().product.status, ProductStatus::Archived);
    assert_eq!(staged_ids(&pool).await, ["evict-1"], "a change's job is staged with it, and only with it");

    for sort in [ProductSort::Newest, ProductSort::PriceAsc, ProductSort::PriceDesc] {
        let mut skus = walk(&repo, &query(None, sort), 3).await;
        assert_eq!(skus.len(), 8, "{sort:?}: {skus:?}");
        let in_order = skus.clone();
        skus.sort();
        skus.dedup();
        assert_eq!(skus.len(), 8, "{sort:?} returned duplicates: {in_order:?}");
        assert!(!in_order.contains(&"S-9".to_owned()), "archived products are not listed");
    }
    let by_price = walk(&repo, &query(None, ProductSort::PriceAsc), 3).await;
    assert_eq!(by_price.first().map(String::as_str), Some("S-6"));
    assert_eq!(by_price.last().map(String::as_str), Some("S-3"));
    let relevance = walk(&repo, &query(Some("headphones"), ProductSort::Relevance), 1).await;
    assert_eq!(relevance.len(), 2, "{relevance:?}");

    let mut filtered = query(None, ProductSort::PriceAsc);
    filtered.category = Some("KITCHEN".into());
    filtered.min_price = Some(4000);
    assert_eq!(walk(&repo, &filtered, 10).await, ["S-3"]);
}

#[tokio::test]
async fn a_category_and_a_search_match_whatever_letters_their_case_folds_differently() {
    let db = TestDb::new().await;
    let repo = PgProductRepository::new(pool(&db, 2));
    // Rust lower-cases a final capital sigma to "ς", PostgreSQL to "σ" (or, in the C locale,
    // not at all): the category's exact name must find it whatever the database's locale.
    let road = product("G-1", "ΧΑΡΤΗΣ", "ΟΔΟΣ", 900, "a map");
    repo.create(&road, 1, CustomerId::new()).await.unwrap();
    let mut filtered = query(None, ProductSort::Newest);
    filtered.category = Some("ΟΔΟΣ".into());
    assert_eq!(walk(&repo, &filtered, 10).await, ["G-1"]);
    assert_eq!(walk(&repo, &query(Some("ΧΑΡΤΗΣ"), ProductSort::Relevance), 10).await, ["G-1"]);
}

#[tokio::test]
async fn search_pages_neither_skip_nor_repeat_a_result_while_the_catalog_changes() {
    let db = TestDb::new().await;
    let repo = PgProductRepository::new(pool(&db, 2));
    let mut mugs = Vec::new();
    for (i, name) in ["Trail Mug", "Trail Mug", "Camp Mug", "Enamel Mug", "Trail Mug Lid", "Mug"].iter().enumerate() {
        let mug = product(&format!("M-{i}"), name, "kitchen", 900, "a mug");
        repo.create(&mug, 5, CustomerId::new()).await.unwrap();
        mugs.push(mug);
    }
    let q = query(Some("trail mug"), ProductSort::Relevance);
    let all = walk(&repo, &q, 10).await;
    assert_eq!(all.len(), 6, "{all:?}");

    // Walked two at a time, while each result seen is archived and a better match appears.
    let mut seen = Vec::new();
    let mut request = PageRequest::first(2);
    for round in 0.. {
        let Page { items, next } = repo.search(&q, &request).await.unwrap();
        for view in &items {
            seen.push(view.product.sku.as_str().to_owned());
            let gone = Product { status: ProductStatus::Archived, ..view.product.clone() };
            assert!(repo.update(&view.product, &gone, &[]).await.unwrap());
        }
        let better = product(&format!("N-{round}"), "Trail Mug Trail", "kitchen", 900, "trail mug");
        repo.create(&better, 5, CustomerId::new()).await.unwrap();
        match next {
            Some(cursor) => request = PageRequest::first(2).with_after(Some(cursor)),
            None => break,
        }
    }
    assert_eq!(seen, all, "every result of the first walk once, in its order");
}

#[tokio::test]
async fn only_the_reservation_that_takes_a_product_to_its_threshold_reports_the_crossing() {
    let db = TestDb::new().await;
    let pool = pool(&db, 4);
    let products = PgProductRepository::new(pool.clone());
    let p = stocked(&products, "LOW-1", 7).await; // threshold 5 by default
    let stock = PgStockRepository::new(pool);

    let first = OrderId::new();
    let above = stock.reserve(first, &[line(p, 1)], in_an_hour(), now()).await.unwrap();
    assert!(above.crossed_low_stock.is_empty(), "6 available: above the threshold");

    let crossing = OrderId::new();
    let reserved = stock.reserve(crossing, &[line(p, 2)], in_an_hour(), now()).await.unwrap();
    assert_eq!(reserved.crossed_low_stock.len(), 1);
    assert_eq!(
        (
            reserved.crossed_low_stock[0].product_id,
            reserved.crossed_low_stock[0].available,
            reserved.crossed_low_stock[0].threshold
        ),
        (p, 4, 5)
    );
    // A replay (the step that reserved failed before anyone was told) reports it again, as it
    // was when the reservation was made; the alert's key makes it one notification.
    let replay = stock.reserve(crossing, &[line(p, 2)], in_an_hour(), now()).await.unwrap();
    assert_eq!(replay.crossed_low_stock, reserved.crossed_low_stock);
    let other = OrderId::new();
    let two_lines = stock
        .reserve(other, &[line(p, 1), line(stocked(&products, "LOW-2", 6).await, 1)], in_an_hour(), now())
        .await
        .unwrap();
    let replayed = stock.reserve(other, &[line(p, 1)], in_an_hour(), now()).await.unwrap();
    assert_eq!(
        (two_lines.crossed_low_stock.len(), replayed.crossed_low_stock),
        (1, two_lines.crossed_low_stock.clone()),
        "LOW-2 crossed; LOW-1 was below already"
    );

    let below = stock.reserve(OrderId::new(), &[line(p, 1)], in_an_hour(), now()).await.unwrap();
    assert!(below.crossed_low_stock.is_empty(), "already below: no second alert");
    let replay = stock.reserve(crossing, &[line(p, 2)], in_an_hour(), now()).await.unwrap();
    assert_eq!(replay.crossed_low_stock, reserved.crossed_low_stock, "as it was when made, whatever came after");
}

#[tokio::test]
async fn a_held_reservation_expires_no_sooner_than_asked_and_only_a_live_one_is_held() {
    let db = TestDb::new().await;
    let pool = pool(&db, 4);
    let products = PgProductRepository::new(pool.clone());
    let p = stocked(&products, "HOLD-1", 10).await;
    let stock = PgStockRepository::new(pool.clone());
    let (kept, released, lapsed) = (OrderId::new(), OrderId::new(), OrderId::new());
    for order in [kept, released] {
        stock.reserve(order, &[line(p, 1)], in_an_hour(), now()).await.unwrap();
    }
    let past = now() - chrono::Duration::seconds(1);
    stock.reserve(lapsed, &[line(p, 1)], past, now()).await.unwrap();

    let until = now() + chrono::Duration::days(2);
    assert!(stock.hold(kept, until, now()).await.unwrap());
    assert_eq!(stock.reservation(kept).await.unwrap().unwrap().expires_at, until);
    assert!(stock.hold(kept, now() + chrono::Duration::minutes(1), now()).await.unwrap());
    assert_eq!(stock.reservation(kept).await.unwrap().unwrap().expires_at, until, "never shortened");
    // Past its first time, only the one not held is due (and the lapsed one).
    let later = now() + chrono::Duration::hours(1) + chrono::Duration::seconds(1);
    let mut due = stock.expired(later, 10).await.unwrap();
    due.sort();
    let mut expected = vec![released, lapsed];
    expected.sort();
    assert_eq!(due, expected);
    assert!(!stock.hold(lapsed, until, now()).await.unwrap(), "lapsed: the sweep may be expiring it");
    stock.finish(released, ReservationStatus::Released, now()).await.unwrap();
    assert!(!stock.hold(released, until, now()).await.unwrap(), "finished: not held");
    assert!(!stock.hold(OrderId::new(), until, now()).await.unwrap(), "never made");
}

#[tokio::test]
async fn the_invariant_checks_find_reserved_units_no_reservation_accounts_for() {
    let db = TestDb::new().await;
    let pool = pool(&db, 4);
    let products = PgProductRepository::new(pool.clone());
    let p = stocked(&products, "INV-1", 10).await;
    let stock = PgStockRepository::new(pool.clone());
    stock.reserve(OrderId::new(), &[line(p, 3)], in_an_hour(), now()).await.unwrap();
    let settings = ecom_postgres::InvariantSettings {
        grace: std::time::Duration::from_secs(60),
        payment_window: std::time::Duration::from_secs(1800),
        confirmation_window: std::time::Duration::from_secs(3600),
    };
    let checks = ecom_postgres::PgInvariants::new(pool.clone());
    assert!(checks.check(&settings, 10).await.unwrap().is_empty());

    let mut conn = pool.get().await.unwrap();
    diesel_async::RunQueryDsl::execute(
        diesel::sql_query(format!("UPDATE stock_levels SET reserved = 5 WHERE product_id = '{p}'")),
        &mut conn,
    )
    .await
    .unwrap();
    let found = checks.check(&settings, 10).await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!((found[0].check, found[0].subject.clone()), ("reserved-equals-active-reservations", p.to_string()));
    assert_eq!(found[0].detail, "reserved 5, ACTIVE reservations 3");
}
