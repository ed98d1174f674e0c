//! Command-line options, each with an environment fallback (`LOADGEN_*`); hand-parsed.

use std::time::Duration;

pub const USAGE: &str = "\
loadgen: many virtual customers against running api instances (and their worker).

usage: cargo run --release -p ecom-e2e --bin loadgen -- [options]

  --base-url URL        api to load; repeat it or separate with commas to spread the
                        customers over several instances   [LOADGEN_BASE_URL, http://127.0.0.1:18090]
  --scenario NAME       browse | cart | checkout | mix      [LOADGEN_SCENARIO, mix]
  --customers N         virtual customers                   [LOADGEN_CUSTOMERS, 32]
  --seconds N           length of the load                  [LOADGEN_SECONDS, 20]
  --settle-seconds N    afterwards, wait up to N s for every order placed to settle
                                                            [LOADGEN_SETTLE_SECONDS, 60]
  --no-confirm-cod      leave cash-on-delivery orders waiting for the admin (settled once their
                        stock is reserved) instead of confirming them   [LOADGEN_CONFIRM_COD=false]
  --strict              exit 3 when an order settled otherwise than its kind expects (a card
                        order CANCELLED, say)               [LOADGEN_STRICT=true]
  --admin-email E       the api's admin                     [LOADGEN_ADMIN_EMAIL, admin@bench.test]
  --admin-password P                                        [LOADGEN_ADMIN_PASSWORD, bench-admin-password]
  --stock N             top every product used up to N available units before the load
                        (0: leave stock as it is, e.g. for stock pressure)   [LOADGEN_STOCK, 100000]
  --think-ms N          pause of each customer between operations   [LOADGEN_THINK_MS, 0]
  --timeout-secs N      per-request timeout                 [LOADGEN_TIMEOUT_SECS, 10]
  --progress-secs N     progress line on stderr every N s (0: none)  [LOADGEN_PROGRESS_SECS, 5]
  --json PATH           also write the figures as JSON      [LOADGEN_JSON]
  --help

Exit status: 0; 2 when orders did not settle in time; 3 (with --strict) when all settled but
some otherwise than expected; 1 when the setup failed.
";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    Browse,
    Cart,
    Checkout,
    Mix,
}

impl Scenario {
    fn parse(raw: &str) -> Option<Self> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "browse" => Some(Self::Browse),
            "cart" => Some(Self::Cart),
            "checkout" => Some(Self::Checkout),
            "mix" => Some(Self::Mix),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Browse => "browse",
            Self::Cart => "cart",
            Self::Checkout => "checkout",
            Self::Mix => "mix",
        }
    }

    /// Checkouts need signed-in customers; browsing and guest carts do not.
    pub fn needs_accounts(self) -> bool {
        matches!(self, Self::Checkout | Self::Mix)
    }
}

#[derive(Debug, Clone)]
pub struct Options {
    pub base_urls: Vec<String>,
    pub scenario: Scenario,
    pub customers: usize,
    pub seconds: u64,
    pub settle_seconds: u64,
    pub confirm_cod: bool,
    pub strict: bool,
    pub admin_email: String,
    pub admin_password: String,
    pub stock: u32,
    pub think: Duration,
    pub timeout: Duration,
    pub progress: Duration,
    pub json: Option<String>,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn urls(raw: &str) -> Vec<String> {
    raw.split(',').map(|u| u.trim().trim_end_matches('/').to_owned()).filter(|u| !u.is_empty()).collect()
}

fn number<T: std::str::FromStr>(name: &str, raw: &str) -> Result<T, String> {
    raw.trim().parse().map_err(|_| format!("{name}: not a number: {raw:?}"))
}

fn boolean(name: &str, raw: &str) -> Result<bool, String> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(format!("{name}: expected true or false, got {raw:?}")),
    }
}

/// `Ok(None)` when `--help` was asked for.
pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Option<Options>, String> {
    let mut o = Options {
        base_urls: env("LOADGEN_BASE_URL").map(|v| urls(&v)).unwrap_or_default(),
        scenario: Scenario::Mix,
        customers: 32,
        seconds: 20,
        settle_seconds: 60,
        confirm_cod: true,
        strict: false,
        admin_email: env("LOADGEN_ADMIN_EMAIL").unwrap_or_else(|| "admin@bench.test".to_owned()),
        admin_password: env("LOADGEN_ADMIN_PASSWORD").unwrap_or_else(|| "bench-admin-password".to_owned()),
        stock: 100_000,
        think: Duration::ZERO,
        timeout: Duration::from_secs(10),
        progress: Duration::from_secs(5),
        json: env("LOADGEN_JSON"),
    };
    if let Some(v) = env("LOADGEN_SCENARIO") {
        o.scenario = Scenario::parse(&v).ok_or_else(|| format!("LOADGEN_SCENARIO: unknown scenario {v:?}"))?;
    }
    if let Some(v) = env("LOADGEN_CUSTOMERS") {
        o.customers = number("LOADGEN_CUSTOMERS", &v)?;
    }
    if let Some(v) = env("LOADGEN_SECONDS") {
        o.seconds = number("LOADGEN_SECONDS", &v)?;
    }
    if let Some(v) = env("LOADGEN_SETTLE_SECONDS") {
        o.settle_seconds = number("LOADGEN_SETTLE_SECONDS", &v)?;
    }
    if let Some(v) = env("LOADGEN_CONFIRM_COD") {
        o.confirm_cod = boolean("LOADGEN_CONFIRM_COD", &v)?;
    }
    if let Some(v) = env("LOADGEN_STRICT") {
        o.strict = boolean("LOADGEN_STRICT", &v)?;
    }
    if let Some(v) = env("LOADGEN_STOCK") {
        o.stock = number("LOADGEN_STOCK", &v)?;
    }
    if let Some(v) = env("LOADGEN_THINK_MS") {
        o.think = Duration::from_millis(number("LOADGEN_THINK_MS", &v)?);
    }
    if let Some(v) = env("LOADGEN_TIMEOUT_SECS") {
        o.timeout = Duration::from_secs(number("LOADGEN_TIMEOUT_SECS", &v)?);
    }
    if let Some(v) = env("LOADGEN_PROGRESS_SECS") {
        o.progress = Duration::from_secs(number("LOADGEN_PROGRESS_SECS", &v)?);
    }

    let mut cli_urls = Vec::new();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
            _ => (arg.clone(), None),
        };
        let mut value = |name: &str| -> Result<String, String> {
            inline.clone().or_else(|| args.next()).ok_or_else(|| format!("{name} needs a value"))
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(None),
            "--base-url" => cli_urls.extend(urls(&value("--base-url")?)),
            "--scenario" => {
                let v = value("--scenario")?;
                o.scenario = Scenario::parse(&v).ok_or_else(|| format!("--scenario: unknown scenario {v:?}"))?;
            }
            "--customers" => o.customers = number("--customers", &value("--customers")?)?,
            "--seconds" => o.seconds = number("--seconds", &value("--seconds")?)?,
            "--settle-seconds" => o.settle_seconds = number("--settle-seconds", &value("--settle-seconds")?)?,
            "--no-confirm-cod" => o.confirm_cod = false,
            "--confirm-cod" => o.confirm_cod = true,
            "--strict" => o.strict = true,
            "--admin-email" => o.admin_email = value("--admin-email")?,
            "--admin-password" => o.admin_password = value("--admin-password")?,
            "--stock" => o.stock = number("--stock", &value("--stock")?)?,
            "--think-ms" => o.think = Duration::from_millis(number("--think-ms", &value("--think-ms")?)?),
            "--timeout-secs" => o.timeout = Duration::from_secs(number("--timeout-secs", &value("--timeout-secs")?)?),
            "--progress-secs" => {
                o.progress = Duration::from_secs(number("--progress-secs", &value("--progress-secs")?)?)
            }
            "--json" => o.json = Some(value("--json")?),
            other => return Err(format!("unknown option {other:?} (see --help)")),
        }
    }
    if !cli_urls.is_empty() {
        o.base_urls = cli_urls;
    }
    if o.base_urls.is_empty() {
        o.base_urls.push("http://127.0.0.1:18090".to_owned());
    }
    if o.customers == 0 {
        return Err("--customers must be at least 1".to_owned());
    }
    if o.stock > 1_000_000 {
        return Err("--stock must be at most 1000000 (the api's adjustment limit)".to_owned());
    }
    if o.timeout.is_zero() {
        return Err("--timeout-secs must be at least 1".to_owned());
    }
    Ok(Some(o))
}
