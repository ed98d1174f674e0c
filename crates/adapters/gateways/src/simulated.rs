//! The simulator: a provider for local use and tests whose outcomes Stripe's test tokens decide.
//! Its state lives in Redis, so the api and every worker see the same payments. A successful
//! charge is authorized and captures itself `capture_delay` later, announced by the same
//! `payments.event` job a real provider's webhook would lead to.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use deadpool_redis::{redis, Pool};
use ecom_kernel::jobs::JobQueue;
use ecom_kernel::{Clock, Currency, InfraError, Money};
use ecom_payments::model::{
    DeclineReason, EventKind, PaymentId, Provider, ProviderPayment, ProviderState, RefundStatus,
};
use ecom_payments::ports::{ChargeLookup, ChargeRequest, GatewayError, PaymentGateway, ProviderRefund, RefundRequest};
use ecom_payments::service::payment_event_job;
use ecom_redis::SharedConnection;

/// How long after a charge the simulator captures it.
pub const DEFAULT_CAPTURE_DELAY: Duration = Duration::from_secs(1);
/// Simulated payments are forgotten this long after their last change.
const STATE_TTL_SECS: u64 = 30 * 24 * 60 * 60;
/// Amounts are compared in Lua, whose numbers are doubles: exact up to 2^53.
const MAX_AMOUNT: i64 = 1 << 53;
const PROVIDER: &str = "simulated";

pub struct SimulatedGateway {
    redis: SharedConnection,
    prefix: String,
    queue: Arc<dyn JobQueue>,
    clock: Arc<dyn Clock>,
    capture_delay: Duration,
    latency: Duration,
    charge_script: redis::Script,
    capture_script: redis::Script,
    refund_script: redis::Script,
}

impl std::fmt::Debug for SimulatedGateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimulatedGateway")
            .field("prefix", &self.prefix)
            .field("capture_delay", &self.capture_delay)
            .field("latency", &self.latency)
            .finish_non_exhaustive()
    }
}

/// KEYS: charge key, charge count, payment hash (of the new reference).
/// ARGV: reference, amount, currency, capture_at (µs), event id, ttl (s), the shop's payment id.
/// Creates the payment unless the charge key names one already; returns {created, reference}.
const CHARGE: &str = r"
local existing = redis.call('GET', KEYS[1])
if existing then return {0, existing} end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[6])
redis.call('INCR', KEYS[2])
redis.call('EXPIRE', KEYS[2], ARGV[6])
redis.call('HSET', KEYS[3], 'amount', ARGV[2], 'currency', ARGV[3], 'capture_at', ARGV[4],
  'refunded', 0, 'event_id', ARGV[5], 'payment_id', ARGV[7])
redis.call('EXPIRE', KEYS[3], ARGV[6])
return {1, ARGV[1]}";

/// KEYS: payment hash. ARGV: now (µs). Captures now unless captured already; 0 if unknown.
const CAPTURE: &str = r"
local at = redis.call('HGET', KEYS[1], 'capture_at')
if not at then return 0 end
if tonumber(at) > tonumber(ARGV[1]) then redis.call('HSET', KEYS[1], 'capture_at', ARGV[1]) end
return 1";

/// KEYS: payment hash, refund key. ARGV: refund reference, amount, currency, now (µs), ttl (s).
/// Refunds unless the key did already; refuses more than captured minus refunded.
/// Returns {1, reference} or {0, why}.
const REFUND: &str = r"
local existing = redis.call('GET', KEYS[2])
if existing then return {1, existing} end
local p = redis.call('HMGET', KEYS[1], 'amount', 'currency', 'capture_at', 'refunded')
if not p[1] then return {0, 'unknown reference'} end
if p[2] ~= ARGV[3] then return {0, 'the refund is not in the currency of the payment'} end
local captured = 0
if tonumber(ARGV[4]) >= tonumber(p[3]) then captured = tonumber(p[1]) end
if tonumber(p[4]) + tonumber(ARGV[2]) > captured then
  return {0, 'the refund exceeds what was captured and not yet refunded'}
end
redis.call('HINCRBY', KEYS[1], 'refunded', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[5])
redis.call('SET', KEYS[2], ARGV[1], 'EX', ARGV[5])
return {1, ARGV[1]}";

/// A simulated payment as stored.
struct Stored {
    amount: Money,
    refunded: Money,
    capture_at: DateTime<Utc>,
    event_id: String,
    /// The shop's payment the charge was made for (none in charges stored before it was kept).
    payment_id: Option<PaymentId>,
}

impl SimulatedGateway {
    /// Keys start with `prefix` (`{prefix}sim:…`). Charges capture themselves `capture_delay`
    /// ([`DEFAULT_CAPTURE_DELAY`] is usual) after they are made; calls answer at once unless
    /// [`SimulatedGateway::with_latency`] says otherwise.
    pub fn new(
        pool: Pool,
        prefix: impl Into<String>,
        queue: Arc<dyn JobQueue>,
        clock: Arc<dyn Clock>,
        capture_delay: Duration,
    ) -> Self {
        Self {
            redis: SharedConnection::new(pool),
            prefix: prefix.into(),
            queue,
            clock,
            capture_delay,
            latency: Duration::ZERO,
            charge_script: redis::Script::new(CHARGE),
            capture_script: redis::Script::new(CAPTURE),
            refund_script: redis::Script::new(REFUND),
        }
    }

    /// Every call waits this long first, as a real provider would.
    #[must_use]
    pub fn with_latency(mut self, latency: Duration) -> Self {
        self.latency = latency;
        self
    }

    /// How many charges were made under an idempotency key (0 or 1).
    pub async fn charges_made(&self, idempotency_key: &str) -> Result<u64, GatewayError> {
        self.wait().await;
        let count: Option<u64> =
            self.redis.cmd(redis::cmd("GET").arg(self.charge_count_key(idempotency_key))).await.map_err(unavailable)?;
        Ok(count.unwrap_or(0))
    }

    fn key(&self, parts: &[&str]) -> String {
        format!("{}sim:{}", self.prefix, parts.join(":"))
    }

    fn payment_key(&self, reference: &str) -> String {
        self.key(&["payment", reference])
    }

    fn charge_key(&self, idempotency_key: &str) -> String {
        self.key(&["charge", idempotency_key])
    }

    fn charge_count_key(&self, idempotency_key: &str) -> String {
        self.key(&["charges", idempotency_key])
    }

    fn refund_key(&self, idempotency_key: &str) -> String {
        self.key(&["refund", idempotency_key])
    }

    /// The provider's latency, if any, before a call.
    async fn wait(&self) {
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
    }

    async fn load(&self, reference: &str) -> Result<Stored, GatewayError> {
        let fields: HashMap<String, String> =
            self.redis.cmd(redis::cmd("HGETALL").arg(self.payment_key(reference))).await.map_err(unavailable)?;
        if fields.is_empty() {
            return Err(GatewayError::Rejected(format!("unknown simulated payment {reference}")));
        }
        Stored::from_fields(&fields).ok_or_else(|| GatewayError::Unavailable("corrupt simulated payment".into()))
    }

    fn seen(&self, reference: String, stored: &Stored) -> ProviderPayment {
        let state =
            if self.clock.now() >= stored.capture_at { ProviderState::Succeeded } else { ProviderState::Authorized };
        ProviderPayment {
            reference,
            state,
            amount: stored.amount,
            refunded: stored.refunded,
            payment_id: stored.payment_id,
        }
    }
}

impl Stored {
    fn from_fields(fields: &HashMap<String, String>) -> Option<Self> {
        let currency = Currency::parse(fields.get("currency")?).ok()?;
        let number = |name: &str| fields.get(name)?.parse::<i64>().ok();
        Some(Self {
            amount: Money::new(number("amount")?, currency),
            refunded: Money::new(number("refunded")?, currency),
            capture_at: DateTime::from_timestamp_micros(number("capture_at")?)?,
            event_id: fields.get("event_id")?.clone(),
            payment_id: fields.get("payment_id").and_then(|id| id.parse().ok()),
        })
    }
}

fn unavailable(err: InfraError) -> GatewayError {
    tracing::warn!(provider = PROVIDER, error = %err, "simulator state unavailable");
    GatewayError::Unavailable("the simulator's state is unavailable".into())
}

/// What a test token does: `Ok` to approve, else the refusal.
fn outcome_of(token: &str) -> Result<(), GatewayError> {
    match token {
        "pm_card_visa" | "pm_card_mastercard" => Ok(()),
        "pm_card_chargeDeclined" => Err(GatewayError::Declined(DeclineReason::CardDeclined)),
        "pm_card_chargeDeclinedInsufficientFunds" => Err(GatewayError::Declined(DeclineReason::InsufficientFunds)),
        "pm_card_chargeDeclinedExpiredCard" => Err(GatewayError::Declined(DeclineReason::ExpiredCard)),
        raw if looks_like_a_card_number(raw) => {
            Err(GatewayError::Rejected("raw card numbers are refused: use a test token such as pm_card_visa".into()))
        }
        _ => Err(GatewayError::Rejected("unknown test token".into())),
    }
}

fn looks_like_a_card_number(token: &str) -> bool {
    token.bytes().any(|b| b.is_ascii_digit()) && token.bytes().all(|b| b.is_ascii_digit() || b == b' ' || b == b'-')
}

fn checked_amount(money: Money) -> Result<i64, GatewayError> {
    let amount = money.amount();
    if amount <= 0 || amount > MAX_AMOUNT {
        return Err(GatewayError::Rejected("the amount must be positive and at most 2^53 minor units".into()));
    }
    Ok(amount)
}

#[async_trait]
impl PaymentGateway for SimulatedGateway {
    fn provider(&self) -> Provider {
        Provider::Simulated
    }

    async fn charge(&self, request: &ChargeRequest) -> Result<ProviderPayment, GatewayError> {
        if let Err(refused) = outcome_of(&request.token) {
            // The token is never logged: it may be a card number.
            tracing::info!(provider = PROVIDER, error = %refused, "simulated charge refused");
            return Err(refused);
        }
        let amount = checked_amount(request.amount)?;
        if request.idempotency_key.is_empty() {
            return Err(GatewayError::Rejected("an idempotency key is required".into()));
        }
        let capture_at = TimeDelta::from_std(self.capture_delay)
            .ok()
            .and_then(|delay| self.clock.now().checked_add_signed(delay))
            .ok_or_else(|| GatewayError::Rejected("capture delay out of range".into()))?;
        let reference = format!("pi_sim_{}", uuid::Uuid::now_v7().simple());
        let event_id = format!("evt_sim_{}", uuid::Uuid::now_v7().simple());

        self.wait().await;
        let mut call = self.charge_script.prepare_invoke();
        call.key(self.charge_key(&request.idempotency_key))
            .key(self.charge_count_key(&request.idempotency_key))
            .key(self.payment_key(&reference))
            .arg(&reference)
            .arg(amount)
            .arg(request.amount.currency().code())
            .arg(capture_at.timestamp_micros())
            .arg(&event_id)
            .arg(STATE_TTL_SECS)
            .arg(request.payment_id.to_string());
        let (created, reference): (i64, String) = self.redis.script(&call).await.map_err(unavailable)?;
        // A new charge is what this call stored; a replay is read back (its first call's).
        let stored = if created == 1 {
            // Stored to the microsecond, as a read would give it back.
            let capture_at = DateTime::from_timestamp_micros(capture_at.timestamp_micros()).unwrap_or(capture_at);
            Stored {
                amount: request.amount,
                refunded: Money::zero(request.amount.currency()),
                capture_at,
                event_id,
                payment_id: Some(request.payment_id),
            }
        } else {
            self.load(&reference).await?
        };
        if stored.amount != request.amount {
            return Err(GatewayError::Rejected("idempotency key reused for another amount".into()));
        }
        // Enqueued on every call, replays included (idempotent on the event's job id), so that
        // a charge whose enqueue failed is announced when the caller retries.
        let job = payment_event_job(Provider::Simulated, &stored.event_id, &reference, EventKind::PaymentSucceeded);
        self.queue.enqueue_at(job, stored.capture_at).await.map_err(|e| {
            tracing::warn!(provider = PROVIDER, error = %e, "simulated capture event not enqueued");
            GatewayError::Unavailable("the simulator could not schedule its capture".into())
        })?;
        tracing::info!(provider = PROVIDER, %reference, new = created == 1, capture_at = %stored.capture_at, "simulated charge");
        Ok(self.seen(reference, &stored))
    }

    async fn capture(&self, reference: &str, _idempotency_key: &str) -> Result<ProviderPayment, GatewayError> {
        self.wait().await;
        let mut call = self.capture_script.prepare_invoke();
        call.key(self.payment_key(reference)).arg(self.clock.now().timestamp_micros());
        let known: i64 = self.redis.script(&call).await.map_err(unavailable)?;
        if known == 0 {
            return Err(GatewayError::Rejected(format!("unknown simulated payment {reference}")));
        }
        let stored = self.load(reference).await?;
        Ok(self.seen(reference.to_owned(), &stored))
    }

    async fn refund(&self, request: &RefundRequest) -> Result<ProviderRefund, GatewayError> {
        let amount = checked_amount(request.amount)?;
        if request.idempotency_key.is_empty() {
            return Err(GatewayError::Rejected("an idempotency key is required".into()));
        }
        let reference = format!("re_sim_{}", uuid::Uuid::now_v7().simple());
        self.wait().await;
        let mut call = self.refund_script.prepare_invoke();
        call.key(self.payment_key(&request.reference))
            .key(self.refund_key(&request.idempotency_key))
            .arg(&reference)
            .arg(amount)
            .arg(request.amount.currency().code())
            .arg(self.clock.now().timestamp_micros())
            .arg(STATE_TTL_SECS);
        let (done, answer): (i64, String) = self.redis.script(&call).await.map_err(unavailable)?;
        if done != 1 {
            tracing::info!(provider = PROVIDER, payment = %request.reference, why = %answer, "simulated refund refused");
            return Err(GatewayError::Rejected(answer));
        }
        tracing::info!(provider = PROVIDER, payment = %request.reference, refund = %answer, "simulated refund");
        Ok(ProviderRefund { reference: answer, status: RefundStatus::Succeeded })
    }

    async fn retrieve(&self, reference: &str) -> Result<ProviderPayment, GatewayError> {
        self.wait().await;
        let stored = self.load(reference).await?;
        Ok(self.seen(reference.to_owned(), &stored))
    }

    async fn find_charge(&self, idempotency_key: &str) -> Result<ChargeLookup, GatewayError> {
        self.wait().await;
        let reference: Option<String> =
            self.redis.cmd(redis::cmd("GET").arg(self.charge_key(idempotency_key))).await.map_err(unavailable)?;
        let Some(reference) = reference else { return Ok(ChargeLookup::NotFound) };
        let stored = self.load(&reference).await?;
        Ok(ChargeLookup::Found(self.seen(reference, &stored)))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn test_tokens_decide_the_outcome() {
        assert!(outcome_of("pm_card_visa").is_ok());
        assert!(outcome_of("pm_card_mastercard").is_ok());
        assert!(matches!(
            outcome_of("pm_card_chargeDeclined"),
            Err(GatewayError::Declined(DeclineReason::CardDeclined))
        ));
        assert!(matches!(
            outcome_of("pm_card_chargeDeclinedInsufficientFunds"),
            Err(GatewayError::Declined(DeclineReason::InsufficientFunds))
        ));
        assert!(matches!(
            outcome_of("pm_card_chargeDeclinedExpiredCard"),
            Err(GatewayError::Declined(DeclineReason::ExpiredCard))
        ));
        for raw in ["4242424242424242", "4242 4242 4242 4242", "4000-0000-0000-0002"] {
            assert!(matches!(outcome_of(raw), Err(GatewayError::Rejected(m)) if m.contains("raw card")), "{raw}");
        }
        for unknown in ["", "pm_card_amex_nope", "tok_visa", "  "] {
            assert!(matches!(outcome_of(unknown), Err(GatewayError::Rejected(m)) if m == "unknown test token"));
        }
    }
}
