//! Catalog jobs: a changed product's cache entries evicted once more.

use std::sync::Arc;

use async_trait::async_trait;
use ecom_catalog::service::EvictCachedJob;
use ecom_catalog::CatalogService;
use ecom_kernel::jobs::{JobEnvelope, JobOutcome};

use crate::{payload, JobFailure, JobHandler};

/// `catalog.evict-cached`.
pub struct EvictCachedHandler {
    pub catalog: Arc<CatalogService>,
}

#[async_trait]
impl JobHandler for EvictCachedHandler {
    async fn handle(&self, job: &JobEnvelope) -> Result<JobOutcome, JobFailure> {
        let EvictCachedJob { product_id } = payload(job)?;
        // Only the cache can fail here (Redis): worth retrying until it answers.
        self.catalog.evict_cached(product_id).await.map_err(|e| JobFailure::Retryable(e.to_string()))?;
        tracing::debug!(product_id = %product_id, "product cache entries evicted");
        Ok(JobOutcome::Done)
    }
}
