//! The HTTP API.
//!
//! `api` serves until SIGTERM/SIGINT (in-flight requests are drained);
//! `api migrate` creates the database if needed and applies migrations;
//! `api db-reset` drops and recreates the database (refused with APP_ENV=production);
//! `api seed` migrates and loads the demo catalog (idempotent).

use ecom_platform::{prepare_database, reset_database, seed, start_api, telemetry, Config, Services};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::from_env()?;
    telemetry::init(config.log_format)?;
    match std::env::args().nth(1).as_deref() {
        None | Some("serve") => {
            let api = start_api(&config).await?;
            api.server.await?;
            tracing::info!("api stopped");
        }
        Some("migrate") => prepare_database(&Config { run_migrations: true, ..config }).await?,
        Some("db-reset") => reset_database(&config).await?,
        Some("seed") => {
            prepare_database(&Config { run_migrations: true, ..config.clone() }).await?;
            let services = Services::build(&config, "ecom-seed")?;
            let created = seed::seed_demo_catalog(&services.catalog).await?;
            tracing::info!(created, total = seed::demo_size(), "demo catalog seeded");
        }
        Some(other) => anyhow::bail!("unknown command {other:?}; expected serve, migrate, db-reset or seed"),
    }
    Ok(())
}
