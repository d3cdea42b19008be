//! Field-level validation results shared by every input the domain parses.

use serde::Serialize;

/// One invalid field of an input: where, a stable machine code, and a human message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldIssue {
    /// Path of the field in the request, e.g. `email` or `customFields.industry`.
    pub field: String,
    /// Stable snake_case code: `required`, `too_long`, `invalid_format`, `unknown_field`...
    pub code: &'static str,
    pub message: String,
}

impl FieldIssue {
    #[must_use]
    pub fn new(field: impl Into<String>, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            code,
            message: message.into(),
        }
    }

    /// Whether the issue is a field the input may not carry at all (a malformed request,
    /// rather than a semantically invalid one).
    #[must_use]
    pub fn is_unknown_field(&self) -> bool {
        self.code == UNKNOWN_FIELD
    }
}

/// The code of a key that is not part of the input's contract.
pub const UNKNOWN_FIELD: &str = "unknown_field";
