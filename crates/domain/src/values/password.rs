/// A password as typed, 8–72 bytes. bcrypt silently ignores bytes past 72, so a longer
/// password is refused here rather than truncated there. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    #[error("a password has at least 8 bytes")]
    TooShort,
    #[error("a password has at most 72 bytes (bcrypt's limit)")]
    TooLong,
}

impl PasswordError {
    #[must_use]
    pub const fn code(self) -> &'static str {
        match self {
            Self::TooShort => "too_short",
            Self::TooLong => "too_long",
        }
    }
}

impl Password {
    pub const MIN_BYTES: usize = 8;
    pub const MAX_BYTES: usize = 72;

    /// # Errors
    /// Fewer than 8 or more than 72 bytes (UTF-8).
    pub fn new(raw: String) -> Result<Self, PasswordError> {
        match raw.len() {
            n if n < Self::MIN_BYTES => Err(PasswordError::TooShort),
            n if n > Self::MAX_BYTES => Err(PasswordError::TooLong),
            _ => Ok(Self(raw)),
        }
    }

    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_is_counted_in_bytes() {
        assert_eq!(
            Password::new("1234567".into()),
            Err(PasswordError::TooShort)
        );
        assert!(Password::new("12345678".into()).is_ok());
        assert!(Password::new("a".repeat(72)).is_ok());
        assert_eq!(Password::new("a".repeat(73)), Err(PasswordError::TooLong));
        // 24 three-byte characters are 72 bytes; 25 are 75.
        assert!(Password::new("€".repeat(24)).is_ok());
        assert_eq!(Password::new("€".repeat(25)), Err(PasswordError::TooLong));
    }

    #[test]
    fn never_prints() {
        let p = Password::new("hunter2hunter2".into()).unwrap();
        assert_eq!(format!("{p:?}"), "Password(***)");
    }
}
