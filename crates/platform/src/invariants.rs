//! `worker check-invariants`: checks the database against the system's invariants and prints
//! a report; the process exits non-zero when one is broken.

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::Context as _;
use ecom_postgres::{invariant_checks, InvariantSettings, PgInvariants, PgSettings, Violation};

use crate::Config;

/// At most this many subjects are listed per broken check.
const EXAMPLES: i64 = 20;

/// Runs every check; returns the report and whether everything held.
pub async fn check_invariants(config: &Config, grace: Duration) -> anyhow::Result<(String, bool)> {
    let pool = ecom_postgres::connect(&PgSettings {
        url: config.database_url.clone(),
        max_connections: 1,
        acquire_timeout: Duration::from_secs(5),
        statement_timeout: Duration::from_secs(60),
        application_name: "ecom-invariants".into(),
    })
    .context("connecting to the database")?;
    let settings = InvariantSettings {
        grace,
        payment_window: config.order_payment_window,
        confirmation_window: config.cod_confirmation_window,
    };
    let violations = PgInvariants::new(pool).check(&settings, EXAMPLES).await.context("running the checks")?;
    Ok((report(&violations, grace), violations.is_empty()))
}

fn report(violations: &[Violation], grace: Duration) -> String {
    let mut out = format!("Invariant checks (transient states allowed {} s):\n", grace.as_secs());
    for (check, what) in invariant_checks() {
        let broken: Vec<&Violation> = violations.iter().filter(|v| v.check == check).collect();
        let _ = writeln!(out, "  {}  {check}: {what}", if broken.is_empty() { "ok  " } else { "FAIL" });
        for v in &broken {
            let _ = writeln!(out, "        {}: {}", v.subject, v.detail);
        }
        if broken.len() as i64 >= EXAMPLES {
            let _ = writeln!(out, "        (first {EXAMPLES} shown)");
        }
    }
    let _ = writeln!(
        out,
        "{}",
        if violations.is_empty() {
            "All invariants hold.".to_owned()
        } else {
            format!("{} violation(s).", violations.len())
        }
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_names_every_check_and_lists_the_broken_ones() {
        let clean = report(&[], Duration::from_secs(60));
        assert_eq!(clean.matches("ok  ").count(), invariant_checks().count());
        assert!(clean.ends_with("All invariants hold.\n"));
        let broken = report(
            &[Violation { check: "outbox-published", subject: "job-1".into(), detail: "late".into() }],
            Duration::from_secs(5),
        );
        assert!(broken.contains("FAIL  outbox-published"));
        assert!(broken.contains("job-1: late"));
        assert!(broken.ends_with("1 violation(s).\n"));
    }
}
