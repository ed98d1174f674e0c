use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use ecom_kernel::clock::MockClock;
use ecom_kernel::{Currency, CustomerId, Money, ProductId};
use mockall::predicate::eq;

use crate::model::*;
use crate::ports::*;
use crate::{CartError, CartService};

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 12, 0, 0).single().unwrap()
}

struct Mocks {
    store: MockCartStore,
    products: MockProductLookup,
    tokens: MockCartTokens,
}

impl Mocks {
    fn new() -> Self {
        let mut tokens = MockCartTokens::new();
        tokens.expect_issue().returning(|id| format!("token-{id}"));
        tokens.expect_verify().returning(|id, t| t == format!("token-{id}"));
        Self { store: MockCartStore::new(), products: MockProductLookup::new(), tokens }
    }

    fn service(self) -> CartService {
        let mut clock = MockClock::new();
        clock.expect_now().returning(now);
        CartService::new(
            Arc::new(self.store),
            Arc::new(self.products),
            Arc::new(self.tokens),
            Arc::new(clock),
            CartLimits::default(),
            Currency::USD,
        )
    }
}

fn info(id: ProductId, cents: i64, available: u32, active: bool) -> ProductInfo {
    ProductInfo {
        product_id: id,
        name: format!("P{cents}"),
        unit_price: Money::new(cents, Currency::USD),
        active,
        available,
    }
}

fn cart(id: CartId, owner: CartOwner, lines: Vec<CartLine>) -> StoredCart {
    StoredCart { id, owner, lines, updated_at: now(), sealed_into: None }
}

fn guest_caller(id: CartId) -> Caller {
    Caller { customer: None, cart_token: Some(format!("token-{id}")) }
}

#[pollster::test]
async fn a_guest_gets_a_new_cart_and_its_token() {
    let mut m = Mocks::new();
    m.store.expect_create_guest().times(1).returning(|_, _| Ok(()));
    m.store.expect_load().returning(|id| Ok(Some(cart(id, CartOwner::Guest, vec![]))));
    m.products.expect_products().returning(|_| Ok(vec![]));
    let (view, token) = m.service().open(&Caller::default()).await.unwrap();
    assert_eq!(token, Some(format!("token-{}", view.id)));
    assert_eq!((view.item_count, view.subtotal), (0, Money::zero(Currency::USD)));
}

#[pollster::test]
async fn a_customer_gets_their_one_active_cart_and_no_token() {
    let customer = CustomerId::new();
    let existing = CartId::new();
    let mut m = Mocks::new();
    m.store.expect_customer_cart().withf(move |c, _, _| *c == customer).returning(move |_, _, _| Ok(existing));
    m.store.expect_create_guest().never();
    m.store.expect_load().returning(move |id| Ok(Some(cart(id, CartOwner::Customer(customer), vec![]))));
    m.products.expect_products().returning(|_| Ok(vec![]));
    let (view, token) = m.service().open(&Caller { customer: Some(customer), cart_token: None }).await.unwrap();
    assert_eq!((view.id, token), (existing, None));
}

#[pollster::test]
async fn someone_elses_cart_is_not_found() {
    let (owner, intruder) = (CustomerId::new(), CustomerId::new());
    let (customer_cart, guest_cart) = (CartId::new(), CartId::new());
    let mut m = Mocks::new();
    m.store.expect_load().returning(move |id| {
        Ok(Some(if id == customer_cart {
            cart(id, CartOwner::Customer(owner), vec![])
        } else {
            cart(id, CartOwner::Guest, vec![])
        }))
    });
    let svc = m.service();
    let as_intruder = Caller { customer: Some(intruder), cart_token: None };
    assert!(matches!(svc.view(&as_intruder, customer_cart).await, Err(CartError::CartNotFound)));
    assert!(matches!(svc.view(&as_intruder, guest_cart).await, Err(CartError::CartNotFound)), "no token");
    let wrong_token = Caller { customer: None, cart_token: Some(format!("token-{customer_cart}")) };
    assert!(matches!(svc.view(&wrong_token, guest_cart).await, Err(CartError::CartNotFound)), "another cart's token");
}

#[pollster::test]
async fn out_of_range_quantities_never_reach_the_store() {
    let id = CartId::new();
    let mut m = Mocks::new();
    m.store.expect_add().never();
    let svc = m.service();
    for q in [0, -1, 101] {
        let err = svc.add_item(&guest_caller(id), id, ProductId::new(), q).await.unwrap_err();
        assert!(matches!(err, CartError::QuantityOutOfRange { min: 1, max: 100 }), "{q}");
    }
}

#[pollster::test]
async fn archived_products_cannot_be_added_and_short_stock_is_out_of_stock() {
    let id = CartId::new();
    let (archived, scarce) = (ProductId::new(), ProductId::new());
    let mut m = Mocks::new();
    m.store.expect_load().returning(|id| Ok(Some(cart(id, CartOwner::Guest, vec![]))));
    m.products
        .expect_products()
        .returning(move |ids| Ok(ids.iter().map(|p| Some(info(*p, 100, 2, *p != archived))).collect()));
    m.store
        .expect_add()
        .withf(move |scope, line, available, _| {
            scope.owner == CartOwner::Guest && line.product_id == scarce && line.quantity == 3 && *available == 2
        })
        .returning(|_, _, _, _| Err(CartStoreError::Insufficient { requested: 3, available: 2 }));
    let svc = m.service();
    assert!(matches!(svc.add_item(&guest_caller(id), id, archived, 1).await, Err(CartError::ProductNotFound(_))));
    let err = svc.add_item(&guest_caller(id), id, scarce, 3).await.unwrap_err();
    assert!(matches!(err, CartError::OutOfStock { requested: 3, available: 2, .. }));
}

#[pollster::test]
async fn a_cart_is_priced_fresh_and_flags_what_cannot_be_bought() {
    let id = CartId::new();
    let (fine, archived, short, deleted) = (ProductId::new(), ProductId::new(), ProductId::new(), ProductId::new());
    let lines = vec![
        CartLine { product_id: fine, quantity: 2 },
        CartLine { product_id: archived, quantity: 1 },
        CartLine { product_id: short, quantity: 5 },
        CartLine { product_id: deleted, quantity: 1 },
    ];
    let mut m = Mocks::new();
    m.store.expect_load().returning(move |id| Ok(Some(cart(id, CartOwner::Guest, lines.clone()))));
    m.products.expect_products().returning(move |_| {
        Ok(vec![
            Some(info(fine, 1999, 10, true)),
            Some(info(archived, 500, 10, false)),
            Some(info(short, 100, 3, true)),
            None,
        ])
    });
    let view = m.service().view(&guest_caller(id), id).await.unwrap();
    assert_eq!(view.items.len(), 3, "a product that no longer exists disappears");
    assert_eq!(view.items[0].line_total, Money::new(3998, Currency::USD));
    assert!(view.items[0].purchasable);
    assert_eq!((view.items[1].purchasable, view.items[1].available), (false, 0));
    assert!(!view.items[2].purchasable);
    assert_eq!(view.subtotal, Money::new(3998 + 500 + 500, Currency::USD));
    assert_eq!(view.item_count, 8);
}

#[pollster::test]
async fn merging_needs_the_guest_token_then_seals_folds_and_retires_it() {
    let customer = CustomerId::new();
    let (guest, target) = (CartId::new(), CartId::new());
    let (a, gone) = (ProductId::new(), ProductId::new());
    let mut m = Mocks::new();
    m.store.expect_customer_cart().returning(move |_, _, _| Ok(target));
    m.store.expect_seal().with(eq(guest), eq(target)).times(1).returning(move |id, _| {
        Ok(Some(cart(
            id,
            CartOwner::Guest,
            vec![CartLine { product_id: a, quantity: 3 }, CartLine { product_id: gone, quantity: 1 }],
        )))
    });
    m.products.expect_products().returning(move |ids| {
        Ok(ids
            .iter()
            .map(|p| if *p == a { Some(info(a, 100, 250, true)) } else { Some(info(*p, 100, 0, false)) })
            .collect())
    });
    m.store
        .expect_merge()
        .withf(move |into, source, lines, _, _| {
            *into == target && *source == guest && lines == [(CartLine { product_id: a, quantity: 3 }, 100)]
        })
        .times(1)
        .returning(|_, _, _, _, _| Ok(()));
    m.store.expect_retire().with(eq(guest), eq(crate::service::MERGED_CART_KEPT)).times(1).returning(|_, _| Ok(()));
    m.store.expect_load().returning(move |id| Ok(Some(cart(id, CartOwner::Customer(customer), vec![]))));
    let svc = m.service();

    let without_token = Caller { customer: Some(customer), cart_token: None };
    assert!(matches!(svc.merge(&without_token, guest).await, Err(CartError::CartNotFound)));
    let caller = Caller { customer: Some(customer), cart_token: Some(format!("token-{guest}")) };
    assert_eq!(svc.merge(&caller, guest).await.unwrap().id, target);
}

#[pollster::test]
async fn adding_prices_the_cart_without_reading_the_added_product_twice() {
    let id = CartId::new();
    let (added, other) = (ProductId::new(), ProductId::new());
    let lines = vec![CartLine { product_id: other, quantity: 1 }, CartLine { product_id: added, quantity: 2 }];
    let mut m = Mocks::new();
    let mut seq = mockall::Sequence::new();
    m.products
        .expect_products()
        .with(eq(vec![added]))
        .times(1)
        .in_sequence(&mut seq)
        .returning(move |_| Ok(vec![Some(info(added, 250, 10, true))]));
    m.products
        .expect_products()
        .with(eq(vec![other]))
        .times(1)
        .in_sequence(&mut seq)
        .returning(move |_| Ok(vec![Some(info(other, 100, 10, true))]));
    m.store.expect_add().returning(move |scope, _, _, _| Ok(cart(scope.id, CartOwner::Guest, lines.clone())));
    let view = m.service().add_item(&guest_caller(id), id, added, 2).await.unwrap();
    let priced: Vec<_> = view.items.iter().map(|i| (i.product_id, i.line_total.amount())).collect();
    assert_eq!(priced, vec![(other, 100), (added, 500)], "each line priced, in the cart's order");
}
