//! The gateways configured at start, one per provider.

use std::collections::HashMap;
use std::sync::Arc;

use ecom_payments::model::Provider;
use ecom_payments::ports::{Gateways, PaymentGateway};

#[derive(Clone, Default)]
pub struct GatewayRegistry {
    gateways: HashMap<Provider, Arc<dyn PaymentGateway>>,
}

impl std::fmt::Debug for GatewayRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayRegistry").field("providers", &self.providers()).finish()
    }
}

impl GatewayRegistry {
    /// Each gateway under its provider; of two for one provider, the later one is kept.
    pub fn new(gateways: impl IntoIterator<Item = Arc<dyn PaymentGateway>>) -> Self {
        let mut registry = HashMap::new();
        for gateway in gateways {
            let provider = gateway.provider();
            if registry.insert(provider, gateway).is_some() {
                tracing::warn!(%provider, "two gateways for one provider; the later one is used");
            }
        }
        Self { gateways: registry }
    }

    /// The providers with a gateway, in `Provider::ALL` order.
    pub fn providers(&self) -> Vec<Provider> {
        Provider::ALL.into_iter().filter(|p| self.gateways.contains_key(p)).collect()
    }
}

impl Gateways for GatewayRegistry {
    fn get(&self, provider: Provider) -> Option<Arc<dyn PaymentGateway>> {
        self.gateways.get(&provider).cloned()
    }
}
