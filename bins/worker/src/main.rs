//! The background worker: configuration, telemetry, then the worker until SIGTERM/SIGINT.
//!
//! `worker check-invariants [--grace-secs N]` checks the database against the system's
//! invariants instead, prints a report, and exits 1 when one is broken.

use std::time::Duration;

use anyhow::Context as _;
use ecom_platform::{check_invariants, run_worker, telemetry, Config};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::from_env()?;
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        None => {
            telemetry::init(config.log_format)?;
            run_worker(&config).await
        }
        Some("check-invariants") => {
            let grace = match (args.get(1).map(String::as_str), args.get(2)) {
                (None, _) => 60,
                (Some("--grace-secs"), Some(n)) => n.parse().context("--grace-secs takes a number of seconds")?,
                _ => anyhow::bail!("usage: worker check-invariants [--grace-secs N]"),
            };
            let (report, held) = check_invariants(&config, Duration::from_secs(grace)).await?;
            #[allow(clippy::print_stdout)]
            {
                print!("{report}");
            }
            if !held {
                std::process::exit(1);
            }
            Ok(())
        }
        Some(other) => anyhow::bail!("unknown command {other:?}; usage: worker [check-invariants [--grace-secs N]]"),
    }
}
