use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use ecom_kernel::clock::MockClock;
use ecom_kernel::{OrderId, ProductId, Quantity};
use mockall::predicate::eq;

use crate::model::*;
use crate::ports::*;
use crate::{InventoryError, InventoryService};

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 12, 0, 0).single().unwrap()
}

fn service(stock: MockStockRepository, observer: MockStockObserver) -> InventoryService {
    let mut clock = MockClock::new();
    clock.expect_now().returning(now);
    InventoryService::new(Arc::new(stock), Arc::new(observer), Arc::new(clock))
}

fn line(product_id: ProductId, q: i64) -> ReservationLine {
    ReservationLine { product_id, quantity: Quantity::new(q).unwrap() }
}

fn quiet_observer() -> MockStockObserver {
    let mut observer = MockStockObserver::new();
    observer.expect_stock_changed().returning(|_| Ok(()));
    observer
}

#[pollster::test]
async fn a_reservation_needs_lines_each_product_once() {
    let mut stock = MockStockRepository::new();
    stock.expect_reserve().never();
    let svc = service(stock, MockStockObserver::new());
    let p = ProductId::new();
    assert!(matches!(svc.reserve(OrderId::new(), &[], now()).await, Err(InventoryError::InvalidLines)));
    let twice = [line(p, 1), line(p, 2)];
    assert!(matches!(svc.reserve(OrderId::new(), &twice, now()).await, Err(InventoryError::InvalidLines)));
}

#[pollster::test]
async fn insufficient_stock_is_out_of_stock_with_the_numbers() {
    let p = ProductId::new();
    let mut stock = MockStockRepository::new();
    stock
        .expect_reserve()
        .returning(move |_, _, _, _| Err(ReserveError::Insufficient { product_id: p, requested: 3, available: 1 }));
    let mut observer = MockStockObserver::new();
    observer.expect_stock_changed().never();
    let err = service(stock, observer).reserve(OrderId::new(), &[line(p, 3)], now()).await.unwrap_err();
    assert!(matches!(err, InventoryError::OutOfStock { requested: 3, available: 1, .. }));
}

#[pollster::test]
async fn a_successful_reservation_tells_the_observer_which_products_changed() {
    let (p, q) = (ProductId::new(), ProductId::new());
    let order = OrderId::new();
    let lines = [line(p, 1), line(q, 2)];
    let mut stock = MockStockRepository::new();
    stock.expect_reserve().returning(move |order, lines, expires_at, _| {
        Ok(Reservation {
            order_id: order,
            status: ReservationStatus::Active,
            lines: lines.to_vec(),
            expires_at,
            crossed_low_stock: vec![],
        })
    });
    let mut observer = MockStockObserver::new();
    observer.expect_stock_changed().withf(move |ids| ids == [p, q]).times(1).returning(|_| Ok(()));
    let reservation = service(stock, observer).reserve(order, &lines, now()).await.unwrap();
    assert_eq!(reservation.status, ReservationStatus::Active);
}

#[pollster::test]
async fn confirming_twice_is_fine_but_confirming_a_released_reservation_is_not() {
    let order = OrderId::new();
    let mut stock = MockStockRepository::new();
    stock
        .expect_finish()
        .with(eq(order), eq(ReservationStatus::Confirmed), eq(now()))
        .returning(|_, _, _| Ok(Transition::AlreadyFinished(ReservationStatus::Confirmed)));
    service(stock, quiet_observer()).confirm(order).await.unwrap();

    let mut stock = MockStockRepository::new();
    stock.expect_finish().returning(|_, _, _| Ok(Transition::AlreadyFinished(ReservationStatus::Released)));
    let err = service(stock, quiet_observer()).confirm(order).await.unwrap_err();
    assert!(matches!(err, InventoryError::InvalidTransition { from: ReservationStatus::Released, .. }));
}

/// A repository whose move of `order` to `to` applies to `products`.
fn moving(stock: &mut MockStockRepository, order: OrderId, to: ReservationStatus, outcome: Transition) {
    stock.expect_finish().with(eq(order), eq(to), eq(now())).returning(move |_, _, _| Ok(outcome.clone()));
}

/// An observer that must be told exactly once, of `products`.
fn told_once(products: Vec<ProductId>) -> MockStockObserver {
    let mut observer = MockStockObserver::new();
    observer.expect_stock_changed().withf(move |ids| ids == products.as_slice()).times(1).returning(|_| Ok(()));
    observer
}

#[pollster::test]
async fn only_moves_that_change_what_is_for_sale_tell_the_observer() {
    let (order, p) = (OrderId::new(), ProductId::new());
    // Confirming takes the units off the shelf and out of reserved alike: availability is as it was.
    let mut stock = MockStockRepository::new();
    moving(&mut stock, order, ReservationStatus::Confirmed, Transition::Applied(vec![p]));
    let mut observer = MockStockObserver::new();
    observer.expect_stock_changed().never();
    service(stock, observer).confirm(order).await.unwrap();

    // Releasing, returning and expiring put units back on sale.
    let mut stock = MockStockRepository::new();
    moving(&mut stock, order, ReservationStatus::Released, Transition::Applied(vec![p]));
    service(stock, told_once(vec![p])).release(order).await.unwrap();

    let mut stock = MockStockRepository::new();
    let confirmed = Transition::AlreadyFinished(ReservationStatus::Confirmed);
    moving(&mut stock, order, ReservationStatus::Released, confirmed);
    moving(&mut stock, order, ReservationStatus::Returned, Transition::Applied(vec![p]));
    service(stock, told_once(vec![p])).give_back(order).await.unwrap();

    let mut stock = MockStockRepository::new();
    stock.expect_expired().returning(move |_, _| Ok(vec![order]));
    moving(&mut stock, order, ReservationStatus::Expired, Transition::Applied(vec![p]));
    assert_eq!(service(stock, told_once(vec![p])).expire_due(10).await.unwrap(), vec![order]);
}

#[pollster::test]
async fn releasing_is_idempotent_and_safe_for_unknown_orders() {
    for outcome in [
        Transition::NotFound,
        Transition::AlreadyFinished(ReservationStatus::Released),
        Transition::AlreadyFinished(ReservationStatus::Expired),
    ] {
        let mut stock = MockStockRepository::new();
        stock.expect_finish().returning(move |_, _, _| Ok(outcome.clone()));
        stock.expect_reservation().never();
        service(stock, MockStockObserver::new()).release(OrderId::new()).await.unwrap();
    }
    let mut stock = MockStockRepository::new();
    stock.expect_finish().returning(|_, _, _| Ok(Transition::AlreadyFinished(ReservationStatus::Confirmed)));
    assert!(service(stock, MockStockObserver::new()).release(OrderId::new()).await.is_err());
}

#[pollster::test]
async fn the_sweep_expires_only_what_it_moved() {
    let (a, b) = (OrderId::new(), OrderId::new());
    let mut stock = MockStockRepository::new();
    stock.expect_expired().with(eq(now()), eq(100)).returning(move |_, _| Ok(vec![a, b]));
    stock
        .expect_finish()
        .with(eq(a), eq(ReservationStatus::Expired), eq(now()))
        .returning(|_, _, _| Ok(Transition::Applied(vec![])));
    // b was confirmed concurrently: the sweep must leave it alone.
    stock
        .expect_finish()
        .with(eq(b), eq(ReservationStatus::Expired), eq(now()))
        .returning(|_, _, _| Ok(Transition::AlreadyFinished(ReservationStatus::Confirmed)));
    assert_eq!(service(stock, quiet_observer()).expire_due(100).await.unwrap(), vec![a]);
}

#[pollster::test]
async fn one_reservation_that_cannot_expire_does_not_hold_up_those_behind_it() {
    let (bad, good) = (OrderId::new(), OrderId::new());
    let mut stock = MockStockRepository::new();
    stock.expect_expired().returning(move |_, _| Ok(vec![bad, good]));
    stock
        .expect_finish()
        .with(eq(bad), eq(ReservationStatus::Expired), eq(now()))
        .returning(|_, _, _| Err(ecom_kernel::InfraError::unexpected("stock_count violated")));
    stock
        .expect_finish()
        .with(eq(good), eq(ReservationStatus::Expired), eq(now()))
        .times(1)
        .returning(|_, _, _| Ok(Transition::Applied(vec![])));
    assert!(service(stock, quiet_observer()).expire_due(100).await.is_err(), "the failure is reported");
}

#[pollster::test]
async fn an_adjustment_below_reserved_is_refused() {
    let mut stock = MockStockRepository::new();
    stock.expect_adjust().returning(|_, _, _| Err(AdjustError::BelowReserved { reserved: 4 }));
    let err = service(stock, MockStockObserver::new())
        .adjust(ProductId::new(), Adjustment::Set(1), ecom_kernel::CustomerId::new(), None)
        .await;
    assert!(matches!(err, Err(InventoryError::BelowReserved { reserved: 4 })));
}
