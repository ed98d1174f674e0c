use ecom_kernel::{InfraError, OrderId, ProductId};

use crate::model::{OrderRuleError, PaymentMethod};

#[derive(Debug, thiserror::Error)]
pub enum OrderError {
    #[error("no order {0}")]
    NotFound(OrderId),
    #[error("no such cart")]
    CartNotFound,
    #[error("the cart is empty")]
    CartEmpty,
    #[error("product {0} is no longer available")]
    ProductUnavailable(ProductId),
    #[error("no such address")]
    AddressNotFound,
    #[error("a shipping address is required: shippingAddressId or shippingAddress")]
    AddressRequired,
    #[error("online payments need a paymentToken")]
    PaymentTokenRequired,
    #[error("raw card numbers are never accepted; send a provider token")]
    RawCardNumber,
    #[error("a payment token is at most 255 printable characters")]
    MalformedPaymentToken,
    #[error("{} is not accepted by this shop", .0.as_str())]
    PaymentMethodNotAccepted(PaymentMethod),
    #[error(transparent)]
    Rule(#[from] OrderRuleError),
    #[error("the cursor belongs to another list; start again from the first page")]
    CursorOfAnotherList,
    #[error("the order changed concurrently; try again")]
    Conflict,
    #[error("the order's stock is still being reserved; try again in a moment")]
    NotReadyYet,
    #[error("the order's stock is still leaving the shelf (it was confirmed a moment ago); try again in a moment")]
    NotFinalizedYet,
    #[error("the order's payment is not settled yet (authorized or processing); try again once it is PAID")]
    PaymentNotSettledYet,
    #[error("the order was not confirmed within its confirmation window; it is being cancelled")]
    ConfirmationExpired,
    #[error("order {0} was cancelled: no cash is collected for it")]
    Cancelled(OrderId),
    #[error(transparent)]
    Infrastructure(#[from] InfraError),
}
