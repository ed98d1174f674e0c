//! Time as a port, so that logic that depends on "now" can be tested.

use chrono::{DateTime, Duration, SubsecRound, Utc};

/// The source of the current UTC time.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

/// The wall clock, at microsecond precision: what a client is told is exactly what storage
/// keeps (PostgreSQL timestamps hold microseconds).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now().trunc_subsecs(6)
    }
}

/// The time to stamp on a change of something last changed at `previous`: `now`, or one
/// microsecond after `previous` when `now` is not later (the same microsecond, or a clock behind
/// the writer's before). A change's stamp is thus always later than the last one, at the precision
/// storage keeps, and can serve as the version that optimistic concurrency compares.
pub fn changed_at(previous: DateTime<Utc>, now: DateTime<Utc>) -> DateTime<Utc> {
    let now = now.trunc_subsecs(6);
    let next = previous.trunc_subsecs(6) + Duration::microseconds(1);
    now.max(next)
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Timelike};

    use super::*;

    fn at(micros: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000, 0).unwrap() + Duration::microseconds(micros)
    }

    #[test]
    fn a_change_is_stamped_now_when_now_is_later() {
        assert_eq!(changed_at(at(10), at(25)), at(25));
    }

    #[test]
    fn a_change_in_the_same_microsecond_or_behind_is_stamped_just_after_the_last() {
        assert_eq!(changed_at(at(10), at(10)), at(11));
        assert_eq!(changed_at(at(10), at(10) + Duration::nanoseconds(900)), at(11));
        assert_eq!(changed_at(at(10), at(-5_000_000)), at(11));
    }

    #[test]
    fn the_system_clock_ticks_in_microseconds() {
        assert_eq!(SystemClock.now().nanosecond() % 1_000, 0);
    }
}
