//! Money ⇄ decimal strings (`"19.99"`), exactly, by the currency's exponent: never through floats.

use ecom_kernel::{Currency, Money};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecimalError {
    #[error("not a decimal amount")]
    Syntax,
    #[error("more decimal places than the currency has")]
    TooPrecise,
    #[error("amount out of range")]
    Overflow,
}

/// `money` as a decimal string with the currency's exponent: 1999 USD is `"19.99"`, 500 JPY `"500"`.
pub fn format_decimal(money: Money) -> String {
    render(i128::from(money.amount()), money.currency().exponent())
}

/// `money` with only `digits` decimal places (fewer than the currency's exponent when a provider
/// takes whole units, as PayPal does for HUF and TWD); `None` when the amount has minor units
/// that cannot be shown that way.
pub(crate) fn format_decimal_digits(money: Money, digits: u8) -> Option<String> {
    let exponent = money.currency().exponent();
    let dropped = exponent.checked_sub(digits)?;
    let divisor = 10_i128.pow(u32::from(dropped));
    let amount = i128::from(money.amount());
    if amount % divisor != 0 {
        return None;
    }
    Some(render(amount / divisor, digits))
}

fn render(amount: i128, digits: u8) -> String {
    let sign = if amount < 0 { "-" } else { "" };
    let abs = amount.abs();
    if digits == 0 {
        return format!("{sign}{abs}");
    }
    let scale = 10_i128.pow(u32::from(digits));
    format!("{sign}{}.{:0width$}", abs / scale, abs % scale, width = usize::from(digits))
}

/// Reads a non-negative decimal string (`"19.99"`, `"19.9"`, `"19"`) as minor units of
/// `currency`. Trailing zeros beyond the exponent are accepted (`"500.00"` JPY), other digits
/// beyond it are refused.
pub fn parse_decimal(value: &str, currency: Currency) -> Result<Money, DecimalError> {
    let exponent = usize::from(currency.exponent());
    let (whole, fraction) = match value.split_once('.') {
        Some((_, "")) => return Err(DecimalError::Syntax),
        Some((whole, fraction)) => (whole, fraction),
        None => (value, ""),
    };
    let digits_only = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !digits_only(whole) || !digits_only(fraction) {
        return Err(DecimalError::Syntax);
    }
    let (kept, extra) = fraction.split_at(fraction.len().min(exponent));
    if extra.bytes().any(|b| b != b'0') {
        return Err(DecimalError::TooPrecise);
    }
    let padding = std::iter::repeat_n(b'0', exponent - kept.len());
    let mut amount: i64 = 0;
    for digit in whole.bytes().chain(kept.bytes()).chain(padding) {
        amount = amount
            .checked_mul(10)
            .and_then(|a| a.checked_add(i64::from(digit - b'0')))
            .ok_or(DecimalError::Overflow)?;
    }
    Ok(Money::new(amount, currency))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn currency(code: &str) -> Currency {
        Currency::parse(code).unwrap()
    }

    #[test]
    fn amounts_are_formatted_with_the_currency_exponent() {
        assert_eq!(format_decimal(Money::new(1999, Currency::USD)), "19.99");
        assert_eq!(format_decimal(Money::new(5, Currency::USD)), "0.05");
        assert_eq!(format_decimal(Money::new(0, Currency::EUR)), "0.00");
        assert_eq!(format_decimal(Money::new(500, currency("JPY"))), "500");
        assert_eq!(format_decimal(Money::new(1234, currency("KWD"))), "1.234");
        assert_eq!(format_decimal(Money::new(i64::MAX, Currency::USD)), "92233720368547758.07");
    }

    #[test]
    fn whole_unit_formatting_refuses_minor_units() {
        assert_eq!(format_decimal_digits(Money::new(150_000, currency("HUF")), 0).as_deref(), Some("1500"));
        assert_eq!(format_decimal_digits(Money::new(150_050, currency("HUF")), 0), None);
        assert_eq!(format_decimal_digits(Money::new(1999, Currency::USD), 2).as_deref(), Some("19.99"));
        assert_eq!(format_decimal_digits(Money::new(1999, Currency::USD), 3), None);
    }

    #[test]
    fn decimal_strings_are_read_exactly() {
        assert_eq!(parse_decimal("19.99", Currency::USD), Ok(Money::new(1999, Currency::USD)));
        assert_eq!(parse_decimal("19.9", Currency::USD), Ok(Money::new(1990, Currency::USD)));
        assert_eq!(parse_decimal("19", Currency::USD), Ok(Money::new(1900, Currency::USD)));
        assert_eq!(parse_decimal("0.10", Currency::USD), Ok(Money::new(10, Currency::USD)));
        assert_eq!(parse_decimal("500", currency("JPY")), Ok(Money::new(500, currency("JPY"))));
        assert_eq!(parse_decimal("500.00", currency("JPY")), Ok(Money::new(500, currency("JPY"))));
        assert_eq!(parse_decimal("1500", currency("HUF")), Ok(Money::new(150_000, currency("HUF"))));
        assert_eq!(parse_decimal("1.234", currency("KWD")), Ok(Money::new(1234, currency("KWD"))));
    }

    #[test]
    fn malformed_or_too_precise_decimals_are_refused() {
        for bad in ["", ".5", "5.", "-1.00", "+1", "1,00", "1.0.0", " 1", "1e3", "١٢"] {
            assert_eq!(parse_decimal(bad, Currency::USD), Err(DecimalError::Syntax), "{bad:?}");
        }
        assert_eq!(parse_decimal("19.999", Currency::USD), Err(DecimalError::TooPrecise));
        assert_eq!(parse_decimal("1.5", currency("JPY")), Err(DecimalError::TooPrecise));
        assert_eq!(parse_decimal("92233720368547758.08", Currency::USD), Err(DecimalError::Overflow));
        assert_eq!(parse_decimal("92233720368547758.07", Currency::USD), Ok(Money::new(i64::MAX, Currency::USD)));
    }

    #[test]
    fn formatting_and_parsing_round_trip() {
        for amount in [0, 1, 9, 10, 99, 100, 101, 123_456_789] {
            for code in ["USD", "JPY", "KWD"] {
                let money = Money::new(amount, currency(code));
                assert_eq!(parse_decimal(&format_decimal(money), money.currency()), Ok(money));
            }
        }
    }
}
