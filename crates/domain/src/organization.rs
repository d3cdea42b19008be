//! Organizations: their name, and the URL slug derived from it.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct OrganizationName(String);

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OrganizationNameError {
    #[error("a name is required")]
    Empty,
    #[error("a name is at most 100 characters")]
    TooLong,
}

impl OrganizationNameError {
    #[must_use]
    pub const fn code(self) -> &'static str {
        match self {
            Self::Empty => "required",
            Self::TooLong => "too_long",
        }
    }
}

impl OrganizationName {
    pub const MAX_CHARS: usize = 100;

    /// # Errors
    /// Empty after trimming, or over 100 characters.
    pub fn parse(raw: &str) -> Result<Self, OrganizationNameError> {
        let s = raw.trim();
        if s.is_empty() {
            return Err(OrganizationNameError::Empty);
        }
        if s.chars().count() > Self::MAX_CHARS {
            return Err(OrganizationNameError::TooLong);
        }
        Ok(Self(s.to_owned()))
    }

    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The slug stem: transliterated to ASCII, lower-case, words joined by `-`, at most
    /// 48 characters; `org` when nothing usable remains (e.g. only punctuation).
    #[must_use]
    pub fn slug_stem(&self) -> String {
        let ascii = deunicode::deunicode(&self.0).to_ascii_lowercase();
        let mut slug = String::with_capacity(ascii.len());
        for word in ascii
            .split(|c: char| !c.is_ascii_alphanumeric())
            .filter(|w| !w.is_empty())
        {
            if slug.len() + word.len() + 1 > 48 {
                break;
            }
            if !slug.is_empty() {
                slug.push('-');
            }
            slug.push_str(word);
        }
        if slug.is_empty() {
            "org".to_owned()
        } else {
            slug
        }
    }
}

/// The `attempt`-th slug to try for a stem: `acme`, then `acme-2`, `acme-3`, ...
#[must_use]
pub fn slug_candidate(stem: &str, attempt: u32) -> String {
    if attempt <= 1 {
        stem.to_owned()
    } else {
        format!("{stem}-{attempt}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slug(name: &str) -> String {
        OrganizationName::parse(name).unwrap().slug_stem()
    }

    #[test]
    fn slugs_are_url_safe_and_stable() {
        assert_eq!(slug("Acme, Inc."), "acme-inc");
        assert_eq!(slug("  Café Zürich  "), "cafe-zurich");
        assert_eq!(slug("Ünïcödé ŁÓDŹ"), "unicode-lodz");
        assert_eq!(slug("東京 Trading"), slug("東京 Trading"));
        assert!(
            slug("東京 Trading")
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        );
        assert_eq!(slug("🚀 Launch"), "rocket-launch");
        assert_eq!(slug("!!! ..."), "org");
        assert!(slug(&"word ".repeat(19)).len() <= 48);
    }

    #[test]
    fn collisions_get_numbered_suffixes() {
        assert_eq!(slug_candidate("acme", 1), "acme");
        assert_eq!(slug_candidate("acme", 2), "acme-2");
    }

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(
            OrganizationName::parse("  "),
            Err(OrganizationNameError::Empty)
        );
        assert_eq!(
            OrganizationName::parse(&"x".repeat(101)),
            Err(OrganizationNameError::TooLong)
        );
        assert_eq!(OrganizationName::parse(" Acme ").unwrap().as_str(), "Acme");
    }
}
