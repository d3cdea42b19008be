//! What a use case can answer besides success. Each variant maps to one HTTP status
//! and a stable code in the HTTP adapter.

use std::time::Duration;

use nexus_ports::StoreError;
use nexus_ports::security::HashError;

/// One invalid input field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldIssue {
    pub field: String,
    pub code: String,
    pub message: String,
}

impl FieldIssue {
    pub fn new(
        field: impl Into<String>,
        code: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            field: field.into(),
            code: code.into(),
            message: message.into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("invalid input")]
    Validation(Vec<FieldIssue>),
    /// No or bad credentials; `code` says which (`invalid_token`, `token_expired`, ...).
    #[error("unauthenticated: {0}")]
    Unauthenticated(&'static str),
    /// Wrong email or password; deliberately says no more.
    #[error("invalid email or password")]
    InvalidCredentials,
    #[error("forbidden: {0}")]
    Forbidden(&'static str),
    #[error("not found")]
    NotFound,
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    /// A write kept losing races that a retry may win (409 with `Retry-After`): unlike
    /// a conflict, the same request may succeed a moment later.
    #[error("{message}")]
    Contended { code: &'static str, message: String },
    #[error("the resource changed since the version you have")]
    PreconditionFailed,
    #[error("too many attempts")]
    RateLimited { retry_after: Duration },
    /// A per-organization bound on work in progress is reached (429 with `Retry-After`).
    #[error("{message}")]
    Throttled {
        code: &'static str,
        message: String,
        retry_after: Duration,
    },
    /// A bounded resource (password hashing) is saturated.
    #[error("busy")]
    Busy,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl AppError {
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::Conflict {
            code,
            message: message.into(),
        }
    }

    pub fn contended(code: &'static str, message: impl Into<String>) -> Self {
        Self::Contended {
            code,
            message: message.into(),
        }
    }

    pub fn invalid(field: &str, code: &str, message: impl Into<String>) -> Self {
        Self::Validation(vec![FieldIssue::new(field, code, message)])
    }
}

impl From<HashError> for AppError {
    fn from(err: HashError) -> Self {
        match err {
            HashError::Busy => Self::Busy,
            HashError::Other(e) => Self::Store(StoreError::Other(e)),
        }
    }
}

impl From<nexus_domain::Forbidden> for AppError {
    fn from(_: nexus_domain::Forbidden) -> Self {
        Self::Forbidden("role")
    }
}

/// Collects field errors so a request reports all of them at once.
#[derive(Debug, Default)]
pub struct Issues(Vec<FieldIssue>);

impl Issues {
    /// Keeps `Ok` values, records `Err`s under `field`.
    pub fn check<T, E: std::fmt::Display>(
        &mut self,
        field: &str,
        code: impl Fn(&E) -> &'static str,
        r: Result<T, E>,
    ) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                self.0.push(FieldIssue::new(field, code(&e), e.to_string()));
                None
            }
        }
    }

    pub fn push(&mut self, field: &str, code: &str, message: impl Into<String>) {
        self.0.push(FieldIssue::new(field, code, message));
    }

    /// # Errors
    /// [`AppError::Validation`] when anything was recorded.
    pub fn finish(self) -> Result<(), AppError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(AppError::Validation(self.0))
        }
    }
}

/// A person's display name: 1–100 characters after trimming.
///
/// # Errors
/// The issue code: `required` or `too_long`.
pub fn person_name(raw: &str) -> Result<String, NameError> {
    let name = raw.trim();
    if name.is_empty() {
        Err(NameError::Empty)
    } else if name.chars().count() > 100 {
        Err(NameError::TooLong)
    } else {
        Ok(name.to_owned())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("a name is required")]
    Empty,
    #[error("a name is at most 100 characters")]
    TooLong,
}

impl NameError {
    #[must_use]
    pub const fn code(&self) -> &'static str {
        match self {
            Self::Empty => "required",
            Self::TooLong => "too_long",
        }
    }
}

/// SHA-256 of a high-entropy secret: what we store instead of the secret.
#[must_use]
pub fn digest(secret: &str) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(secret.as_bytes()).to_vec()
}
