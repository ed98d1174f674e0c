//! Adapters between contexts: how carts see the catalog and inventory, through the catalog's
//! public service (its cached product detail carries the units available now).

use std::sync::Arc;

use async_trait::async_trait;
use ecom_carts::model::ProductInfo;
use ecom_carts::ports::ProductLookup;
use ecom_catalog::{CatalogError, CatalogService};
use ecom_kernel::{InfraError, ProductId};
use futures_util::future::try_join_all;

pub struct CatalogProducts {
    catalog: Arc<CatalogService>,
}

impl CatalogProducts {
    pub fn new(catalog: Arc<CatalogService>) -> Self {
        Self { catalog }
    }
}

#[async_trait]
impl ProductLookup for CatalogProducts {
    async fn products(&self, ids: &[ProductId]) -> Result<Vec<Option<ProductInfo>>, InfraError> {
        try_join_all(ids.iter().map(|id| async move {
            match self.catalog.lookup_product(*id).await {
                Ok(view) => Ok(Some(ProductInfo {
                    product_id: *id,
                    name: view.product.name.as_str().to_owned(),
                    unit_price: view.product.price,
                    active: view.product.is_active(),
                    available: u32::try_from(view.available.max(0)).unwrap_or(u32::MAX),
                })),
                Err(CatalogError::ProductNotFound(_)) => Ok(None),
                Err(CatalogError::Infrastructure(e)) => Err(e),
                Err(other) => Err(InfraError::unexpected(other.to_string())),
            }
        }))
        .await
    }
}

/// Publishes outbox jobs right after their commit: straight to the queue in one round trip,
/// the rows removed from the outbox in the background (the relay catches whatever is left).
pub struct OutboxPublisher {
    pub queue: Arc<dyn ecom_kernel::jobs::JobQueue>,
    pub removals: ecom_postgres::OutboxRemovals,
}

#[async_trait]
impl ecom_payments::ports::JobPublisher for OutboxPublisher {
    async fn publish(&self, jobs: &[ecom_kernel::jobs::NewJob]) {
        // A job of a worker whose commits do not wait for the disk publishes after its flush.
        if jobs.is_empty() || ecom_jobs::hold(jobs) {
            return;
        }
        match self.queue.enqueue_many(jobs).await {
            Ok(_) => self.removals.remove(jobs.iter().map(|j| j.id.as_str().to_owned()).collect()),
            // Not an error: the worker's relay publishes whatever is left in the outbox.
            Err(err) => tracing::warn!(error = %err, "eager publish failed; the outbox relay will publish"),
        }
    }

    /// Straight to the queue, never held: these jobs wait for no write of the caller's, and
    /// no outbox row stands behind them.
    async fn reoffer(&self, jobs: &[ecom_kernel::jobs::NewJob], revive_after: std::time::Duration) {
        if jobs.is_empty() {
            return;
        }
        match self.queue.reoffer(jobs, revive_after).await {
            Ok(answers) => {
                let redriven: Vec<&str> = jobs
                    .iter()
                    .zip(&answers)
                    .filter(|(_, a)| **a == ecom_kernel::jobs::Enqueued::Redriven)
                    .map(|(j, _)| j.id.as_str())
                    .collect();
                if !redriven.is_empty() {
                    tracing::warn!(jobs = ?redriven, "jobs dead-lettered after their retries ran out run again");
                }
            }
            Err(err) => tracing::warn!(error = %err, "jobs not offered again; the next sweep will"),
        }
    }
}
