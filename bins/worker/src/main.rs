//! The background worker: configuration, telemetry, then the worker until SIGTERM/SIGINT.

use ecom_platform::{run_worker, telemetry, Config};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::from_env()?;
    telemetry::init(config.log_format)?;
    run_worker(&config).await
}
