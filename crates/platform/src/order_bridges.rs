//! How orders see the other contexts: carts, catalog, address book, inventory and payments,
//! each through its public service.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ecom_carts::model::{Caller, CartId, CartLine};
use ecom_carts::{CartError, CartService};
use ecom_catalog::{CatalogError, CatalogService};
use ecom_identity::model::{AddressId, Principal, Role};
use ecom_identity::{IdentityError, IdentityService};
use ecom_inventory::model::ReservationLine;
use ecom_inventory::{InventoryError, InventoryService};
use ecom_kernel::{CustomerId, InfraError, OrderId, ProductId, Quantity};
use ecom_orders::model::{Order, ShippingAddress};
use ecom_orders::ports::{
    AddressBook, CartItem, Carts, Catalog, Charged, LowStock, OrderPayments, PricedProduct, RefundState, Reserved,
    Stock,
};
use ecom_payments::model::{PaymentId, PaymentStatus, Provider};
use ecom_payments::service::OrderRefund;
use ecom_payments::{PaymentError, PaymentService};
use futures_util::future::try_join_all;
use uuid::Uuid;

fn unexpected(what: impl std::fmt::Display) -> InfraError {
    InfraError::unexpected(what.to_string())
}

pub struct OrderCarts(pub Arc<CartService>);

fn owner(customer: CustomerId) -> Caller {
    Caller { customer: Some(customer), cart_token: None }
}

#[async_trait]
impl Carts for OrderCarts {
    async fn items(&self, customer: CustomerId, cart_id: Uuid) -> Result<Option<Vec<CartItem>>, InfraError> {
        match self.0.lines(&owner(customer), CartId::from_uuid(cart_id)).await {
            Ok(lines) => {
                Ok(Some(lines.iter().map(|l| CartItem { product_id: l.product_id, quantity: l.quantity }).collect()))
            }
            Err(CartError::CartNotFound) => Ok(None),
            Err(CartError::Infrastructure(e)) => Err(e),
            Err(other) => Err(unexpected(other)),
        }
    }

    async fn take_ordered(&self, cart_id: Uuid, order: &Order) -> Result<(), InfraError> {
        let ordered: Vec<CartLine> =
            order.lines.iter().map(|l| CartLine { product_id: l.product_id, quantity: l.quantity }).collect();
        let cart = CartId::from_uuid(cart_id);
        match self.0.take_ordered(&owner(order.customer_id), cart, order.id, order.created_at, &ordered).await {
            Ok(()) | Err(CartError::CartNotFound) => Ok(()),
            Err(CartError::Infrastructure(e)) => Err(e),
            Err(other) => Err(unexpected(other)),
        }
    }
}

pub struct OrderCatalog(pub Arc<CatalogService>);

#[async_trait]
impl Catalog for OrderCatalog {
    async fn products(&self, ids: &[ProductId]) -> Result<Vec<Option<PricedProduct>>, InfraError> {
        try_join_all(ids.iter().map(|id| async move {
            match self.0.priced_product(*id).await {
                Ok(product) => Ok(Some(PricedProduct {
                    product_id: *id,
                    sku: product.sku.as_str().to_owned(),
                    name: product.name.as_str().to_owned(),
                    unit_price: product.price,
                    active: product.is_active(),
                })),
                Err(CatalogError::ProductNotFound(_)) => Ok(None),
                Err(CatalogError::Infrastructure(e)) => Err(e),
                Err(other) => Err(unexpected(other)),
            }
        }))
        .await
    }
}

pub struct OrderAddresses(pub Arc<IdentityService>);

#[async_trait]
impl AddressBook for OrderAddresses {
    async fn address(&self, customer: CustomerId, id: Uuid) -> Result<Option<ShippingAddress>, InfraError> {
        let principal = Principal { customer_id: customer, role: Role::Customer };
        match self.0.get_address(principal, AddressId::from_uuid(id)).await {
            Ok(a) => Ok(Some(ShippingAddress {
                full_name: a.full_name.as_str().to_owned(),
                line1: a.line1.as_str().to_owned(),
                line2: a.line2.as_ref().map(|v| v.as_str().to_owned()),
                city: a.city.as_str().to_owned(),
                state: a.state.as_ref().map(|v| v.as_str().to_owned()),
                postal_code: a.postal_code.as_str().to_owned(),
                country: a.country.as_str().to_owned(),
                phone: a.phone.as_ref().map(|v| v.as_str().to_owned()),
            })),
            Err(IdentityError::AddressNotFound) => Ok(None),
            Err(IdentityError::Infrastructure(e)) => Err(e),
            Err(other) => Err(unexpected(other)),
        }
    }
}

pub struct OrderStock(pub Arc<InventoryService>);

fn inventory_infra(e: InventoryError) -> InfraError {
    match e {
        InventoryError::Infrastructure(e) => e,
        other => unexpected(other),
    }
}

#[async_trait]
impl Stock for OrderStock {
    async fn reserve(
        &self,
        order: OrderId,
        items: &[CartItem],
        expires_at: DateTime<Utc>,
    ) -> Result<Reserved, InfraError> {
        let lines = items
            .iter()
            .map(|i| {
                Quantity::new(i64::from(i.quantity))
                    .map(|quantity| ReservationLine { product_id: i.product_id, quantity })
                    .map_err(unexpected)
            })
            .collect::<Result<Vec<_>, _>>()?;
        match self.0.reserve(order, &lines, expires_at).await {
            Ok(reservation) => Ok(Reserved::Done {
                low_stock: reservation
                    .crossed_low_stock
                    .iter()
                    .map(|c| LowStock { product_id: c.product_id, available: c.available, threshold: c.threshold })
                    .collect(),
            }),
            Err(InventoryError::OutOfStock { product_id, .. } | InventoryError::ProductNotFound(product_id)) => {
                Ok(Reserved::OutOfStock { product_id })
            }
            Err(e) => Err(inventory_infra(e)),
        }
    }

    async fn confirm(&self, order: OrderId) -> Result<(), InfraError> {
        self.0.confirm(order).await.map_err(inventory_infra)
    }

    async fn release(&self, order: OrderId) -> Result<(), InfraError> {
        self.0.give_back(order).await.map_err(inventory_infra)
    }

    async fn hold(&self, order: OrderId, until: DateTime<Utc>) -> Result<bool, InfraError> {
        self.0.hold(order, until).await.map_err(inventory_infra)
    }
}

/// Online orders pay through the configured card provider (PayPal orders through PayPal when
/// it is configured); cash on delivery through the courier.
pub struct OrderPaymentsBridge {
    pub payments: Arc<PaymentService>,
    pub card_provider: Provider,
    pub paypal_provider: Provider,
}

fn payment_infra(e: PaymentError) -> InfraError {
    match e {
        PaymentError::Infrastructure(e) => e,
        PaymentError::ProviderUnavailable(m) => InfraError::unavailable(m),
        other => unexpected(other),
    }
}

#[async_trait]
impl OrderPayments for OrderPaymentsBridge {
    async fn charge(&self, order: &Order, token: &str) -> Result<Charged, InfraError> {
        let provider = if order.payment_method == ecom_orders::model::PaymentMethod::PayPal {
            self.paypal_provider
        } else {
            self.card_provider
        };
        match self.payments.charge_order(order.id, order.customer_id, provider, order.total, token).await {
            Ok(p) if p.status == PaymentStatus::Failed => {
                Ok(Charged::Declined { reason: p.failure_reason.unwrap_or_else(|| "declined".into()) })
            }
            // A compensation refunds all that is left: a partial refund is someone else's (an
            // admin's goodwill), and the order goes on.
            Ok(p) if p.status == PaymentStatus::Refunded => Ok(Charged::Refunded),
            Ok(p) => Ok(Charged::Accepted(p.status)),
            Err(PaymentError::ProviderUnavailable(_)) => Ok(Charged::Unavailable),
            Err(PaymentError::ProviderNotConfigured(p)) => {
                Ok(Charged::Declined { reason: format!("{p} is not configured") })
            }
            Err(e) => Err(payment_infra(e)),
        }
    }

    async fn open_cash(&self, order: &Order) -> Result<(), InfraError> {
        self.payments.open_cash_for_order(order.id, order.customer_id, order.total).await.map_err(payment_infra)?;
        Ok(())
    }

    async fn recover_charge(&self, order: &Order) -> Result<(), InfraError> {
        self.payments.recover_charge(order.id).await.map(|_| ()).map_err(payment_infra)
    }

    async fn status(&self, payment: PaymentId) -> Result<Option<PaymentStatus>, InfraError> {
        self.payments.status(payment).await.map_err(payment_infra)
    }

    async fn refunds_answered(&self, payment: PaymentId) -> Result<bool, InfraError> {
        self.payments.refunds_answered(payment).await.map_err(payment_infra)
    }

    async fn refunded_payment(&self, order: OrderId) -> Result<Option<(PaymentId, bool)>, InfraError> {
        self.payments.refunded_payment(order).await.map_err(payment_infra)
    }

    async fn refund_all(&self, order: OrderId, reason: &str) -> Result<RefundState, InfraError> {
        Ok(match self.payments.refund_order(order, reason).await.map_err(payment_infra)? {
            OrderRefund::NothingTaken => RefundState::NothingToRefund,
            OrderRefund::CollectionCancelled(payment) => RefundState::CollectionCancelled(payment),
            OrderRefund::Refunded(payment) => RefundState::Refunded(payment),
            OrderRefund::Refused { payment, reason } => RefundState::Refused { payment, reason },
            OrderRefund::NotYetCapturable => RefundState::NotYetCapturable,
        })
    }
}
