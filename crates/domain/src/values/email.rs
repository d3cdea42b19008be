use serde::{Deserialize, Serialize};

/// A syntactically valid email address, trimmed and lower-cased, so that equality is
/// the case-insensitive uniqueness the rules ask for.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct EmailAddress(String);

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EmailError {
    #[error("an email address is required")]
    Empty,
    #[error("an email address is at most 254 characters")]
    TooLong,
    #[error("not a valid email address")]
    Invalid,
}

impl EmailError {
    #[must_use]
    pub const fn code(self) -> &'static str {
        match self {
            Self::Empty => "required",
            Self::TooLong => "too_long",
            Self::Invalid => "invalid_format",
        }
    }
}

impl EmailAddress {
    /// # Errors
    /// Empty, longer than 254 characters, or not `local@domain.tld`.
    pub fn parse(raw: &str) -> Result<Self, EmailError> {
        // Checked after lower-casing, which can lengthen a local part or turn a letter
        // into one the rules refuse (`İ`): what is stored must pass this check when read.
        let s = raw.trim();
        let lower = lowercase(s).unwrap_or_else(|| s.to_owned());
        Self::check(&lower)?;
        Ok(Self(lower))
    }

    /// Rebuilds a stored address, keeping the stored text's buffer when it is already
    /// trimmed and lower case: lists rebuild thousands.
    ///
    /// # Errors
    /// As [`EmailAddress::parse`].
    pub fn from_stored(raw: String) -> Result<Self, EmailError> {
        if raw.trim().len() != raw.len() {
            return Self::parse(&raw);
        }
        let lower = lowercase(&raw).unwrap_or(raw);
        Self::check(&lower)?;
        Ok(Self(lower))
    }

    fn check(s: &str) -> Result<(), EmailError> {
        if s.is_empty() {
            return Err(EmailError::Empty);
        }
        if s.len() > 254 {
            return Err(EmailError::TooLong);
        }
        let (local, domain) = s.rsplit_once('@').ok_or(EmailError::Invalid)?;
        let valid = address(local, domain);
        if valid {
            Ok(())
        } else {
            Err(EmailError::Invalid)
        }
    }

    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    #[must_use]
    pub fn into_string(self) -> String {
        self.0
    }
}

/// What a local part may hold besides letters and digits (of any script).
const LOCAL_EXTRA: &str = "!#$%&'*+-/=?^_`{|}~.";
/// What a domain label may hold besides letters and digits.
const LABEL_EXTRA: &str = "-";

/// The rules of `local@domain`.
fn address(local: &str, domain: &str) -> bool {
    // The dots and dashes are ASCII, so they are looked for byte by byte (a byte of a
    // character beyond ASCII is never one).
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.as_bytes().windows(2).any(|w| w == b"..")
        && all_allowed(local, &LOCAL, LOCAL_EXTRA);
    let domain_ok = domain.as_bytes().contains(&b'.')
        && domain.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && all_allowed(l, &LABEL, LABEL_EXTRA)
        })
        && domain
            .rsplit('.')
            .next()
            .is_some_and(|tld| tld.len() >= 2 && !tld.bytes().all(|b| b.is_ascii_digit()));
    local_ok && domain_ok
}

/// Whether every character of `s` is a letter, a digit or one of `extra`: by `table`
/// when `s` is ASCII, character by character otherwise. Every contact read checks its
/// stored address again, and asking `extra` for each character was a tenth of a list
/// page's server instructions; a test holds each table to its characters.
fn all_allowed(s: &str, table: &[bool; 128], extra: &str) -> bool {
    if s.is_ascii() {
        s.bytes().all(|b| allows(table, b))
    } else {
        s.chars().all(|c| c.is_alphanumeric() || extra.contains(c))
    }
}

/// [`all_allowed`]'s tables: ASCII letters, digits and the extra characters.
const LOCAL: [bool; 128] = allowed(LOCAL_EXTRA.as_bytes());
const LABEL: [bool; 128] = allowed(LABEL_EXTRA.as_bytes());

const fn allowed(extra: &[u8]) -> [bool; 128] {
    let mut table = [false; 128];
    let mut b = 0;
    while b < 128 {
        table[b] = (b as u8).is_ascii_alphanumeric();
        b += 1;
    }
    let mut i = 0;
    while i < extra.len() {
        table[extra[i] as usize] = true;
        i += 1;
    }
    table
}

/// Whether `table` allows `b` (never a byte beyond ASCII).
fn allows(table: &[bool; 128], b: u8) -> bool {
    table.get(usize::from(b)).copied().unwrap_or(false)
}

/// `s` in lower case, or `None` when it already is (the common case, checked without
/// allocating; anything beyond ASCII takes Unicode's full lowercasing).
fn lowercase(s: &str) -> Option<String> {
    if s.bytes().all(|b| b.is_ascii() && !b.is_ascii_uppercase()) {
        None
    } else {
        Some(s.to_lowercase())
    }
}

impl<'de> Deserialize<'de> for EmailAddress {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl std::fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_case_and_whitespace() {
        let a = EmailAddress::parse("  Ada.Lovelace@Example.COM ").unwrap();
        assert_eq!(a.as_str(), "ada.lovelace@example.com");
        assert_eq!(a, EmailAddress::parse("ada.lovelace@example.com").unwrap());
        assert!(EmailAddress::parse("o'brien+crm@mail.example.ie").is_ok());
        assert!(EmailAddress::parse("josé@exämple.de").is_ok());
    }

    #[test]
    fn whatever_is_accepted_reads_back_as_itself() {
        // Lower-casing `İ` gives `i` and a combining dot, so a local part can grow past
        // 64 bytes or gain a character the rules refuse after it was checked.
        let tricky = [
            format!("{}@example.com", "İ".repeat(32)),
            "İ@example.com".to_owned(),
            "ẞTRASSE@example.de".to_owned(),
            "ΟΔΟΣ@example.gr".to_owned(),
            format!("a@{}.com", "İ".repeat(31)),
            "Ada@EXAMPLE.com".to_owned(),
        ];
        for raw in tricky {
            if let Ok(parsed) = EmailAddress::parse(&raw) {
                let stored = parsed.as_str().to_owned();
                assert_eq!(
                    EmailAddress::from_stored(stored.clone()).as_ref(),
                    Ok(&parsed),
                    "{raw} was stored as {stored}"
                );
            }
        }
        assert!(EmailAddress::parse(&format!("{}@example.com", "İ".repeat(32))).is_err());
    }

    #[test]
    fn the_tables_allow_exactly_the_ascii_characters_the_rules_name() {
        for b in 0u8..=0x7f {
            let c = char::from(b);
            for (table, extra) in [(&LOCAL, LOCAL_EXTRA), (&LABEL, LABEL_EXTRA)] {
                assert_eq!(
                    allows(table, b),
                    c.is_alphanumeric() || extra.contains(c),
                    "{c:?} with {extra:?}"
                );
            }
        }
        assert!(!allows(&LOCAL, 0xC3), "nothing beyond ASCII by table");
        // The same rules either way: an ASCII part and one that is not.
        assert!(EmailAddress::parse("o'brien+crm@mail.example.ie").is_ok());
        assert!(EmailAddress::parse("josé+crm@exämple.de").is_ok());
        assert!(EmailAddress::parse("jo sé@example.de").is_err());
        assert!(EmailAddress::parse("ada@ex_ample.com").is_err());
        assert!(EmailAddress::parse("ada@exä_mple.com").is_err());
    }

    #[test]
    fn rejects_what_is_not_an_address() {
        for bad in [
            "plain",
            "@example.com",
            "a@",
            "a@b",
            "a@@b.com",
            "a@b..com",
            ".a@b.com",
            "a b@c.com",
            "a@-b.com",
            "a@1.23",
        ] {
            assert_eq!(EmailAddress::parse(bad), Err(EmailError::Invalid), "{bad}");
        }
        assert_eq!(EmailAddress::parse("   "), Err(EmailError::Empty));
        let long = format!("{}@example.com", "a".repeat(250));
        assert_eq!(EmailAddress::parse(&long), Err(EmailError::TooLong));
    }

    #[test]
    fn lower_cases_beyond_ascii_too() {
        let a = EmailAddress::parse("JOSÉ@EXÄMPLE.DE").unwrap();
        assert_eq!(a.as_str(), "josé@exämple.de");
    }

    #[test]
    fn a_stored_address_is_checked_and_normalized_like_a_new_one() {
        for raw in ["ada@example.com", " Ada@Example.com", "JOSÉ@EXÄMPLE.DE"] {
            assert_eq!(
                EmailAddress::from_stored(raw.to_owned()),
                EmailAddress::parse(raw),
                "{raw}"
            );
        }
        assert_eq!(
            EmailAddress::from_stored("a@b".to_owned()),
            Err(EmailError::Invalid)
        );
        assert_eq!(
            EmailAddress::from_stored(String::new()),
            Err(EmailError::Empty)
        );
    }
}
