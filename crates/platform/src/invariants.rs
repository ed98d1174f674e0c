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
    // One more than is listed: it tells a list cut short from one exactly that long.
    let violations = PgInvariants::new(pool).check(&settings, EXAMPLES + 1).await.context("running the checks")?;
    Ok((report(&violations, grace), violations.is_empty()))
}

fn report(violations: &[Violation], grace: Duration) -> String {
    let mut out = format!("Invariant checks (transient states allowed {} s):\n", grace.as_secs());
    let limit = usize::try_from(EXAMPLES).unwrap_or(usize::MAX);
    let (mut listed, mut cut) = (0, false);
    for (check, what) in invariant_checks() {
        let broken: Vec<&Violation> = violations.iter().filter(|v| v.check == check).collect();
        let _ = writeln!(out, "  {}  {check}: {what}", if broken.is_empty() { "ok  " } else { "FAIL" });
        for v in broken.iter().take(limit) {
            let _ = writeln!(out, "        {}: {}", v.subject, v.detail);
        }
        listed += broken.len().min(limit);
        if broken.len() > limit {
            cut = true;
            let _ = writeln!(out, "        (the first {limit} shown; there are more)");
        }
    }
    let _ = writeln!(
        out,
        "{}",
        match (violations.is_empty(), cut) {
            (true, _) => "All invariants hold.".to_owned(),
            (false, false) => format!("{listed} violation(s)."),
            (false, true) => format!("More than {listed} violation(s)."),
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

        // Exactly as many as are listed, then one more than that.
        let many = |n: usize| -> Vec<Violation> {
            (0..n)
                .map(|i| Violation { check: "outbox-published", subject: format!("job-{i}"), detail: "late".into() })
                .collect()
        };
        let full = report(&many(20), Duration::from_secs(5));
        assert!(!full.contains("there are more") && full.ends_with("\n20 violation(s).\n"), "{full}");
        let cut = report(&many(21), Duration::from_secs(5));
        assert!(cut.contains("job-19: late") && !cut.contains("job-20"), "{cut}");
        assert!(cut.contains("(the first 20 shown; there are more)") && cut.ends_with("More than 20 violation(s).\n"));
    }
}
