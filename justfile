# Tasks of the ecom backend. `just run` starts it, `just test` checks everything CI checks.

set shell := ["bash", "-euo", "pipefail", "-c"]

# Parallel test processes; each end-to-end test runs a whole api.
jobs := env_var_or_default("TEST_JOBS", "4")

# List the recipes.
default:
    @just --list

# Start api + worker against local PostgreSQL/Redis (starts them if stopped; creates and migrates the database).
run: services
    cargo build --bin api --bin worker
    scripts/run.sh

# Everything CI checks: formatting, lints, architecture, and every test against real PostgreSQL and Redis.
test: services fmt-check lint check-arch
    cargo test --workspace --doc --quiet
    cargo build --workspace --bins
    if cargo nextest --version >/dev/null 2>&1; then \
        cargo nextest run --workspace --no-fail-fast -j {{jobs}}; \
    else \
        echo "cargo-nextest not found: running cargo test (install it with 'cargo install cargo-nextest --locked')"; \
        cargo test --workspace --no-fail-fast; \
    fi

# Start PostgreSQL and Redis if they are installed but stopped.
services:
    scripts/services.sh

# Format the code.
fmt:
    cargo fmt --all

# Check formatting without changing anything.
fmt-check:
    cargo fmt --all -- --check

# Clippy on every target, warnings are errors.
lint:
    cargo clippy --workspace --all-targets -- -D warnings

# Fail if a domain crate depends (even transitively) on diesel, redis, deadpool, actix, reqwest or tokio.
check-arch:
    scripts/check-arch.sh
    scripts/check-arch-selftest.sh

# Create the database if needed and apply migrations.
migrate: services
    cargo run --quiet --bin api -- migrate

# Benchmark the release api (wrk over loopback) and rewrite docs/BENCHMARKS.md.
bench: services
    scripts/bench.sh

# Failure drills under load (Redis restart, PostgreSQL crash, worker SIGKILL, 2 apis + 2 workers); crashes and restarts the local PostgreSQL.
drills *DRILLS: services
    scripts/drills.sh {{DRILLS}}

# Check the database against the system's invariants (exits 1 when one is broken).
check-invariants *ARGS: services
    cargo run --quiet --bin worker -- check-invariants {{ARGS}}

# Fuzz the HTTP surface with schemathesis against /openapi.json: no 5xx, every response as documented.
fuzz: services
    scripts/fuzz.sh

# Load the demo catalog (about 50 products with stock); idempotent.
seed: services
    cargo run --quiet --bin api -- seed

# Drop, recreate and migrate the database (refused with APP_ENV=production).
db-reset: services
    cargo run --quiet --bin api -- db-reset
