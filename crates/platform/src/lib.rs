//! Configuration, telemetry, shutdown and the composition root shared by `api` and `worker`.

mod bridges;
pub mod config;
mod invariants;
pub mod operator_jobs;
mod order_bridges;
pub mod shutdown;
pub mod telemetry;

pub mod seed;
mod services;
mod worker;

pub use config::{AppEnv, Config, ConfigError, LogFormat};
pub use invariants::check_invariants;
pub use services::{prepare_database, reset_database, start_api, RunningApi, Services};
pub use worker::run_worker;
