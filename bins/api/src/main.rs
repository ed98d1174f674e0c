//! The HTTP API: configuration, telemetry, then the server until SIGTERM/SIGINT (drained).

use ecom_platform::{start_api, telemetry, Config};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::from_env()?;
    telemetry::init(config.log_format)?;
    let api = start_api(&config).await?;
    api.server.await?;
    tracing::info!("api stopped");
    Ok(())
}
