//! Phone numbers: kept exactly as the user typed them (trimmed), plus their E.164 form
//! when the number is written internationally and so can be normalized without guessing
//! a country (`+44 20 7946 0958`, `0044 20 7946 0958` → `+442079460958`).
//!
//! A national number (`020 7946 0958`) is stored as given with no E.164 form: turning it
//! into one needs a country, and guessing one would silently corrupt data.

use serde::{Serialize, Serializer};

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PhoneNumber {
    raw: String,
    e164: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PhoneError {
    #[error("a phone number is at most 50 characters")]
    TooLong,
    #[error("a phone number contains digits and may use + ( ) - . / spaces and an extension")]
    Invalid,
}

impl PhoneError {
    #[must_use]
    pub const fn code(self) -> &'static str {
        match self {
            Self::TooLong => "too_long",
            Self::Invalid => "invalid_format",
        }
    }
}

impl PhoneNumber {
    pub const MAX_CHARS: usize = 50;

    /// Parses a non-blank phone number; callers treat a blank one as absent.
    ///
    /// # Errors
    /// Over 50 characters, no digit at all, or characters no phone number uses.
    pub fn parse(raw: &str) -> Result<Self, PhoneError> {
        let s = raw.trim();
        if s.chars().count() > Self::MAX_CHARS {
            return Err(PhoneError::TooLong);
        }
        // An extension (`x123`, `ext. 123`, `ext 123`) is kept in `raw`, not in E.164.
        let lower = s.to_ascii_lowercase();
        let (number, extension) = match lower.find("ext").or_else(|| lower.find('x')) {
            Some(at) => (&s[..at], Some(&lower[at..])),
            None => (s, None),
        };
        if let Some(ext) = extension {
            let digits = ext
                .trim_start_matches("ext")
                .trim_start_matches('x')
                .trim_start_matches('.')
                .trim();
            if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
                return Err(PhoneError::Invalid);
            }
        }
        if !number.chars().any(|c| c.is_ascii_digit())
            || !number
                .chars()
                .all(|c| c.is_ascii_digit() || " +()-./".contains(c))
            || number.matches('+').count() > 1
            || number
                .find('+')
                .is_some_and(|at| !number[..at].trim_start_matches('(').is_empty())
        {
            return Err(PhoneError::Invalid);
        }
        Ok(Self {
            raw: s.to_owned(),
            e164: to_e164(number),
        })
    }

    /// Rebuilds a stored number (its E.164 form is recomputed, never trusted).
    ///
    /// # Errors
    /// As [`PhoneNumber::parse`].
    pub fn from_stored(raw: &str) -> Result<Self, PhoneError> {
        Self::parse(raw)
    }

    /// As the user typed it (trimmed).
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// `+<country code><subscriber number>`, when the number was written internationally.
    #[must_use]
    pub fn e164(&self) -> Option<&str> {
        self.e164.as_deref()
    }
}

/// E.164: a `+` or `00` international prefix, then 8 to 15 digits, the first not zero.
/// A trunk zero written in parentheses (`+44 (0)20 ...`) is not dialled internationally.
fn to_e164(number: &str) -> Option<String> {
    let compact: String = number
        .replace("(0)", "")
        .chars()
        .filter(|c| *c == '+' || c.is_ascii_digit())
        .collect();
    let digits = compact
        .strip_prefix('+')
        .or_else(|| compact.strip_prefix("00"))?;
    let ok = (8..=15).contains(&digits.len())
        && !digits.starts_with('0')
        && digits.chars().all(|c| c.is_ascii_digit());
    ok.then(|| format!("+{digits}"))
}

impl Serialize for PhoneNumber {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e164(raw: &str) -> Option<String> {
        PhoneNumber::parse(raw).unwrap().e164().map(str::to_owned)
    }

    #[test]
    fn international_numbers_normalize_to_e164() {
        assert_eq!(e164("+44 20 7946 0958").as_deref(), Some("+442079460958"));
        assert_eq!(e164("0044 20 7946 0958").as_deref(), Some("+442079460958"));
        assert_eq!(e164("+1 (415) 555-2671").as_deref(), Some("+14155552671"));
        assert_eq!(e164("+49.30.1234567").as_deref(), Some("+49301234567"));
        assert_eq!(
            e164("+44 (0)20 7946 0958").as_deref(),
            Some("+442079460958")
        );
        assert_eq!(
            e164("+1 415 555 2671 ext. 12").as_deref(),
            Some("+14155552671")
        );
    }

    #[test]
    fn national_or_implausible_numbers_keep_no_e164_but_are_stored_as_given() {
        let national = PhoneNumber::parse("  020 7946 0958 ").unwrap();
        assert_eq!(national.as_str(), "020 7946 0958");
        assert_eq!(national.e164(), None);
        assert_eq!(e164("+12"), None, "too short");
        assert_eq!(e164("+1234567890123456"), None, "too long");
        assert_eq!(
            e164("+0 123 456 789"),
            None,
            "no country code starts with 0"
        );
    }

    #[test]
    fn rejects_what_is_not_a_phone_number() {
        for bad in [
            "call me",
            "+44 20 ABC",
            "++44 20 7946 0958",
            "12+34",
            "555 x",
            "555 ext abc",
        ] {
            assert_eq!(PhoneNumber::parse(bad), Err(PhoneError::Invalid), "{bad}");
        }
        assert_eq!(
            PhoneNumber::parse(&"1".repeat(51)),
            Err(PhoneError::TooLong)
        );
        assert!(PhoneNumber::parse("555-0100 x42").is_ok());
    }

    #[test]
    fn serializes_as_typed() {
        let p = PhoneNumber::parse("+1 (415) 555-2671").unwrap();
        assert_eq!(
            serde_json::to_value(&p).unwrap(),
            serde_json::json!("+1 (415) 555-2671")
        );
    }
}
