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
        let e164 = Self::check(s)?;
        Ok(Self {
            raw: s.to_owned(),
            e164,
        })
    }

    /// Rebuilds a stored number (its E.164 form is recomputed, never trusted), keeping
    /// the stored text's buffer when it needs no trimming: lists rebuild thousands.
    ///
    /// # Errors
    /// As [`PhoneNumber::parse`].
    pub fn from_stored(raw: String) -> Result<Self, PhoneError> {
        if raw.trim().len() != raw.len() {
            return Self::parse(&raw);
        }
        let e164 = Self::check(&raw)?;
        Ok(Self { raw, e164 })
    }

    /// Validates a trimmed number and returns its E.164 form, allocating only for that.
    /// Every contact read checks its stored number again, so the common case takes one
    /// pass or two (a list page's phones were 6 % of its server instructions); the test
    /// against the reference rules holds the shortcuts to the same answers.
    fn check(s: &str) -> Result<Option<String>, PhoneError> {
        // A text has at least as many bytes as characters: only a long one needs counting.
        if s.len() > Self::MAX_CHARS && s.chars().count() > Self::MAX_CHARS {
            return Err(PhoneError::TooLong);
        }
        // An extension (`x123`, `ext. 123`, `ext 123`) is kept in `raw`, not in E.164.
        // `ext` holds an `x`, so a number with no `x` has none (most numbers).
        let extension_at = if s.bytes().any(|b| b | 0x20 == b'x') {
            find_ignoring_ascii_case(s, b"ext").or_else(|| find_ignoring_ascii_case(s, b"x"))
        } else {
            None
        };
        let (number, extension) = match extension_at {
            Some(at) => (&s[..at], Some(&s[at..])),
            None => (s, None),
        };
        if let Some(ext) = extension {
            let digits = trim_start_ignoring_ascii_case(ext, b"ext");
            let digits = trim_start_ignoring_ascii_case(digits, b"x")
                .trim_start_matches('.')
                .trim();
            if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
                return Err(PhoneError::Invalid);
            }
        }
        // Digits and ` +()-./` only, at least one digit, one `+` at most with only `(`
        // before it: in one pass.
        let bytes = number.as_bytes();
        let (mut digit, mut plus) = (false, None);
        for (i, &c) in bytes.iter().enumerate() {
            match c {
                b'0'..=b'9' => digit = true,
                b'+' if plus.is_none() => plus = Some(i),
                b' ' | b'(' | b')' | b'-' | b'.' | b'/' => {}
                _ => return Err(PhoneError::Invalid),
            }
        }
        if !digit || plus.is_some_and(|at| bytes[..at].iter().any(|&c| c != b'(')) {
            return Err(PhoneError::Invalid);
        }
        Ok(to_e164(bytes))
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

    /// As typed, and its E.164 form.
    #[must_use]
    pub fn into_parts(self) -> (String, Option<String>) {
        (self.raw, self.e164)
    }
}

/// E.164: a `+` or `00` international prefix, then 8 to 15 digits, the first not zero.
/// A trunk zero written in parentheses (`+44 (0)20 ...`) is not dialled internationally.
/// `number` holds only digits, one leading `+` at most and ` ()-./`.
fn to_e164(number: &[u8]) -> Option<String> {
    let mut compact = String::with_capacity(number.len());
    let mut i = 0;
    while i < number.len() {
        if number[i..].starts_with(b"(0)") {
            i += 3;
            continue;
        }
        if number[i] == b'+' || number[i].is_ascii_digit() {
            compact.push(char::from(number[i]));
        }
        i += 1;
    }
    if compact.starts_with("00") {
        compact.replace_range(..2, "+");
    }
    let digits = compact.strip_prefix('+')?;
    let ok = (8..=15).contains(&digits.len())
        && !digits.starts_with('0')
        && digits.bytes().all(|c| c.is_ascii_digit());
    ok.then_some(compact)
}

/// Where `needle` (ASCII, lower case) first occurs in `s`, ignoring ASCII case; a byte
/// index on a char boundary, since the match is ASCII.
fn find_ignoring_ascii_case(s: &str, needle: &[u8]) -> Option<usize> {
    s.as_bytes()
        .windows(needle.len())
        .position(|w| w.eq_ignore_ascii_case(needle))
}

/// `s` without every leading repetition of `prefix` (ASCII, lower case), ignoring ASCII
/// case.
fn trim_start_ignoring_ascii_case<'a>(mut s: &'a str, prefix: &[u8]) -> &'a str {
    while s.len() >= prefix.len() && s.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix) {
        s = &s[prefix.len()..];
    }
    s
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

    /// The rules as first written, allocating as they go: the parser above must agree
    /// with them on every input.
    fn reference(raw: &str) -> Result<(String, Option<String>), PhoneError> {
        let s = raw.trim();
        if s.chars().count() > PhoneNumber::MAX_CHARS {
            return Err(PhoneError::TooLong);
        }
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
        let compact: String = number
            .replace("(0)", "")
            .chars()
            .filter(|c| *c == '+' || c.is_ascii_digit())
            .collect();
        let e164 = compact
            .strip_prefix('+')
            .or_else(|| compact.strip_prefix("00"))
            .filter(|d| {
                (8..=15).contains(&d.len())
                    && !d.starts_with('0')
                    && d.chars().all(|c| c.is_ascii_digit())
            })
            .map(|d| format!("+{d}"));
        Ok((s.to_owned(), e164))
    }

    #[test]
    fn agrees_with_the_reference_rules_on_generated_numbers() {
        const PIECES: [&str; 24] = [
            "0", "00", "1", "4", "9", "44", " ", "+", "(", ")", "(0)", "-", ".", "/", "x", "X",
            "ext", "EXT", "Ext.", "e", "t", "a", "é", "\t",
        ];
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut valid = 0;
        for _ in 0..200_000 {
            let len = next() % 16;
            let starts = ["", "+", "00", "+44 (0)", "(+", " "];
            let mut raw = starts[usize::try_from(next() % 6).unwrap()].to_owned();
            for _ in 0..len {
                let pick = usize::try_from(next() % 64).unwrap();
                // Digits most of the time, so that many inputs are valid numbers.
                raw.push_str(PIECES.get(pick).copied().unwrap_or("7"));
            }
            let ours = PhoneNumber::parse(&raw).map(|p| (p.raw, p.e164));
            assert_eq!(ours, reference(&raw), "{raw:?}");
            let stored = PhoneNumber::from_stored(raw.clone()).map(|p| (p.raw, p.e164));
            assert_eq!(stored, reference(&raw), "stored {raw:?}");
            valid += usize::from(ours.is_ok_and(|(_, e)| e.is_some()));
        }
        assert!(valid > 1_000, "too few E.164 numbers generated: {valid}");
        for long in [
            "+44 20 7946 0958 ext. 12345678901234567890123",
            &"1".repeat(51),
        ] {
            assert_eq!(
                PhoneNumber::parse(long).map(|p| p.raw),
                reference(long).map(|r| r.0)
            );
        }
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
