//! Structured logs with `tracing`: JSON or human-readable, filtered by `RUST_LOG`.
//!
//! Every line written while a request is handled carries that request's id (the
//! `http_request` span; JSON lines list every enclosing span).

use tracing::Subscriber;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Registry};

use crate::LogFormat;

const DEFAULT_FILTER: &str = "info,actix_server=warn";

/// A subscriber writing to `writer`; `filter` overrides `RUST_LOG` (tests pass one).
pub fn subscriber<W>(format: LogFormat, filter: Option<&str>, writer: W) -> Box<dyn Subscriber + Send + Sync>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let filter = match filter {
        Some(f) => EnvFilter::new(f),
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER)),
    };
    let registry = Registry::default().with(filter);
    match format {
        LogFormat::Json => Box::new(registry.with(
            tracing_subscriber::fmt::layer().json().with_current_span(false).with_span_list(true).with_writer(writer),
        )),
        LogFormat::Pretty => Box::new(registry.with(tracing_subscriber::fmt::layer().compact().with_writer(writer))),
    }
}

/// Installs the process-wide subscriber writing to stdout.
pub fn init(format: LogFormat) -> Result<(), tracing_subscriber::util::TryInitError> {
    subscriber(format, None, std::io::stdout).try_init()
}
