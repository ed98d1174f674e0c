//! The registry picks each provider's gateway.

use std::sync::Arc;

use ecom_gateways::{GatewayRegistry, PayPalClient, PayPalConfig, PayPalGateway, StripeConfig, StripeGateway};
use ecom_kernel::Secret;
use ecom_payments::model::Provider;
use ecom_payments::ports::{Gateways, PaymentGateway};

#[test]
fn each_provider_gets_its_own_gateway() {
    let stripe: Arc<dyn PaymentGateway> =
        Arc::new(StripeGateway::new(StripeConfig::new(Secret::new("sk_test_x".to_owned()))).unwrap());
    let paypal_client = PayPalClient::new(PayPalConfig::sandbox("id", Secret::new("secret".to_owned()))).unwrap();
    let paypal: Arc<dyn PaymentGateway> = Arc::new(PayPalGateway::new(Arc::new(paypal_client)));

    let registry = GatewayRegistry::new([stripe, paypal]);

    assert_eq!(registry.get(Provider::Stripe).map(|g| g.provider()), Some(Provider::Stripe));
    assert_eq!(registry.get(Provider::PayPal).map(|g| g.provider()), Some(Provider::PayPal));
    assert!(registry.get(Provider::Simulated).is_none());
    assert!(registry.get(Provider::CashOnDelivery).is_none());
    assert_eq!(registry.providers(), vec![Provider::Stripe, Provider::PayPal]);
}
