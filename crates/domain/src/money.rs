//! Money as integer minor units (cents) plus an ISO 4217 currency: exact, never a float.
//! On the wire it is a decimal string with at most two decimals, e.g. `"1250.00"`.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Currency(String);

impl Currency {
    /// # Errors
    /// Anything but three upper-case ASCII letters.
    pub fn parse(raw: &str) -> Result<Self, MoneyError> {
        if raw.len() == 3 && raw.bytes().all(|b| b.is_ascii_uppercase()) {
            Ok(Self(raw.to_owned()))
        } else {
            Err(MoneyError::Currency)
        }
    }

    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Money {
    minor: i64,
    currency: Currency,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("an amount is a non-negative decimal with at most two decimals, e.g. \"1250.00\"")]
    Format,
    #[error("the amount is too large")]
    TooLarge,
    #[error("a currency is an ISO 4217 code such as USD")]
    Currency,
}

impl MoneyError {
    #[must_use]
    pub const fn code(self) -> &'static str {
        match self {
            Self::Format => "invalid_format",
            Self::TooLarge => "too_large",
            Self::Currency => "invalid_currency",
        }
    }
}

/// Largest amount accepted: 10^13 - 0.01 (fits any real deal, and sums of millions).
const MAX_MINOR: i64 = 1_000_000_000_000_000 - 1;

impl Money {
    /// Parses `"1250"`, `"1250.5"` or `"1250.00"`; refuses signs, exponents, a third
    /// decimal and anything else.
    ///
    /// # Errors
    /// [`MoneyError`].
    pub fn parse(amount: &str, currency: &str) -> Result<Self, MoneyError> {
        let currency = Currency::parse(currency)?;
        let (whole, frac) = amount.split_once('.').unwrap_or((amount, ""));
        let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty()
            || !digits(whole)
            || !digits(frac)
            || frac.len() > 2
            || (amount.contains('.') && frac.is_empty())
        {
            return Err(MoneyError::Format);
        }
        if whole.len() > 13 {
            return Err(MoneyError::TooLarge);
        }
        let whole: i64 = whole.parse().map_err(|_| MoneyError::TooLarge)?;
        let frac: i64 = format!("{frac:0<2}")
            .parse()
            .map_err(|_| MoneyError::Format)?;
        let minor = whole
            .checked_mul(100)
            .and_then(|w| w.checked_add(frac))
            .ok_or(MoneyError::TooLarge)?;
        if minor > MAX_MINOR {
            return Err(MoneyError::TooLarge);
        }
        Ok(Self { minor, currency })
    }

    /// # Errors
    /// Negative or too large amounts.
    pub fn from_minor(minor: i64, currency: Currency) -> Result<Self, MoneyError> {
        if (0..=MAX_MINOR).contains(&minor) {
            Ok(Self { minor, currency })
        } else {
            Err(MoneyError::TooLarge)
        }
    }

    #[must_use]
    pub const fn minor(&self) -> i64 {
        self.minor
    }

    #[must_use]
    pub const fn currency(&self) -> &Currency {
        &self.currency
    }

    /// value × probability / 100, rounded half up to the cent.
    #[must_use]
    pub fn weighted(&self, probability: u8) -> i64 {
        weighted_minor(self.minor, probability)
    }
}

/// value × probability / 100 in minor units, rounded half up.
#[must_use]
pub fn weighted_minor(minor: i64, probability: u8) -> i64 {
    (i128::from(minor) * i128::from(probability) + 50)
        .div_euclid(100)
        .try_into()
        .unwrap_or(i64::MAX)
}

/// Minor units as the wire's decimal string: `125000` → `"1250.00"`.
#[must_use]
pub fn format_minor(minor: i64) -> String {
    let sign = if minor < 0 { "-" } else { "" };
    let abs = minor.unsigned_abs();
    format!("{sign}{}.{:02}", abs / 100, abs % 100)
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", format_minor(self.minor), self.currency.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_decimal_strings_exactly() {
        assert_eq!(Money::parse("1250.00", "USD").unwrap().minor(), 125_000);
        assert_eq!(Money::parse("1250.5", "USD").unwrap().minor(), 125_050);
        assert_eq!(Money::parse("0", "EUR").unwrap().minor(), 0);
        assert_eq!(Money::parse("0.07", "EUR").unwrap().minor(), 7);
        assert_eq!(format_minor(125_050), "1250.50");
        assert_eq!(format_minor(7), "0.07");
    }

    #[test]
    fn refuses_what_is_not_an_exact_amount() {
        for bad in [
            "-1", "1.234", "1e5", "", ".5", "5.", "1,000", " 1", "NaN", "+3",
        ] {
            assert_eq!(Money::parse(bad, "USD"), Err(MoneyError::Format), "{bad:?}");
        }
        assert_eq!(Money::parse("1", "usd"), Err(MoneyError::Currency));
        assert_eq!(
            Money::parse("99999999999999", "USD"),
            Err(MoneyError::TooLarge)
        );
        assert!(Money::parse("9999999999999.99", "USD").is_ok());
    }

    #[test]
    fn weighted_value_rounds_half_up_to_the_cent() {
        let m = Money::parse("100.01", "USD").unwrap();
        assert_eq!(m.weighted(50), 5001); // 50.005 → 50.01
        assert_eq!(m.weighted(0), 0);
        assert_eq!(m.weighted(100), 10_001);
        assert_eq!(weighted_minor(333, 33), 110); // 1.0989 → 1.10
    }
}
