//! The one error type of the HTTP layer, answered as RFC 9457 `application/problem+json`
//! with a stable snake_case `code`. Nothing internal (SQL, chains, panics) reaches the
//! body: a 500 carries only the request id, which is also in the logs.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use nexus_ports::StoreError;
use serde::Serialize;
use utoipa::ToSchema;

use crate::middleware::request_id;

pub const PROBLEM_JSON: &str = "application/problem+json";

/// One invalid field of a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct FieldError {
    /// JSON pointer-like path of the field, e.g. `email` or `stages[2].name`.
    pub field: String,
    /// Stable machine code, e.g. `required`, `too_long`, `invalid_format`.
    pub code: String,
    pub message: String,
}

/// An RFC 9457 problem document.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Problem {
    /// A URI naming the kind of problem: `urn:nexus:problem:<code>`.
    #[serde(rename = "type")]
    #[schema(example = "urn:nexus:problem:not_found")]
    pub problem_type: String,
    #[schema(example = "Not Found")]
    pub title: String,
    #[schema(example = 404)]
    pub status: u16,
    pub detail: String,
    /// Stable snake_case machine code; switch on this, not on `title` or `detail`.
    #[schema(example = "not_found")]
    pub code: String,
    /// Field-level errors, for validation failures.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub errors: Option<Vec<FieldError>>,
    /// Correlation id of the request, also sent as `X-Request-Id` and logged.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub request_id: Option<String>,
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("{status} {code}: {detail}")]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub detail: String,
    pub errors: Vec<FieldError>,
    /// Seconds, sent as `Retry-After` (429, 503).
    pub retry_after: Option<u64>,
    /// Methods sent as `Allow` (405).
    pub allow: Option<Box<str>>,
    /// Sent as `WWW-Authenticate` (401).
    pub www_authenticate: Option<Box<str>>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            code,
            detail: detail.into(),
            errors: Vec::new(),
            retry_after: None,
            allow: None,
            www_authenticate: None,
        }
    }

    #[must_use]
    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    pub fn not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "The resource does not exist.",
        )
    }

    pub fn malformed(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "malformed_request", detail)
    }

    pub fn validation(errors: Vec<FieldError>) -> Self {
        let mut err = Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            "The request is well-formed but some fields are invalid.",
        );
        err.errors = errors;
        err
    }

    pub fn forbidden() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "Your role does not allow this action.",
        )
    }

    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "An unexpected error occurred. Quote the request id when reporting it.",
        )
    }

    /// Infrastructure failures: logged with their chain, answered without it.
    pub fn from_store(err: &StoreError) -> Self {
        match err {
            StoreError::PoolExhausted(_) => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "database_busy",
                "All database connections are busy; retry shortly.",
            )
            .with_retry_after(1),
            StoreError::Unavailable(_) => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "database_unavailable",
                "The database is unreachable; retry shortly.",
            )
            .with_retry_after(5),
            StoreError::GaveUp(chain) => {
                tracing::warn!(error = ?chain, "the database gave a statement up");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "database_gave_up",
                    "The database gave this request up (a deadlock or a timeout against concurrent work); retry shortly.",
                )
                .with_retry_after(1)
            }
            StoreError::Other(chain) => {
                tracing::error!(error = ?chain, "unexpected storage error");
                Self::internal()
            }
        }
    }

    /// The problem document of this error, stamped with the current request id.
    pub fn problem(&self) -> Problem {
        Problem {
            problem_type: format!("urn:nexus:problem:{}", self.code),
            title: self.status.canonical_reason().unwrap_or("Error").to_owned(),
            status: self.status.as_u16(),
            detail: self.detail.clone(),
            code: self.code.to_owned(),
            errors: (!self.errors.is_empty()).then(|| self.errors.clone()),
            request_id: request_id::current(),
        }
    }
}

impl From<nexus_domain::Forbidden> for ApiError {
    fn from(_: nexus_domain::Forbidden) -> Self {
        Self::forbidden()
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        Self::from_store(&err)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut res = HttpResponse::build(self.status);
        res.insert_header((header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON)));
        if let Some(seconds) = self.retry_after {
            res.insert_header((header::RETRY_AFTER, seconds.to_string()));
        }
        if let Some(allow) = &self.allow {
            res.insert_header((header::ALLOW, allow.to_string()));
        }
        if let Some(challenge) = &self.www_authenticate {
            res.insert_header((header::WWW_AUTHENTICATE, challenge.to_string()));
        }
        res.body(serde_json::to_string(&self.problem()).unwrap_or_default())
    }
}

/// An error response rendered while the request's context (its id) is at hand. Used
/// where no request is left to build a response from (a panic consumed it), so actix
/// turns the `Err` into this response itself, outside every middleware.
#[derive(Debug)]
pub struct Rendered {
    status: StatusCode,
    body: String,
    request_id: Option<String>,
}

impl std::fmt::Display for Rendered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.status)
    }
}

impl ResponseError for Rendered {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut res = HttpResponse::build(self.status);
        res.insert_header((header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON)))
            .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
            .insert_header((
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ));
        if let Some(id) = &self.request_id {
            res.insert_header((request_id::HEADER, id.clone()));
        }
        res.body(self.body.clone())
    }
}

impl ApiError {
    /// Renders now, stamping the current request id into body and header.
    #[must_use]
    pub fn render_detached(&self) -> Rendered {
        let problem = self.problem();
        Rendered {
            status: self.status,
            request_id: problem.request_id.clone(),
            body: serde_json::to_string(&problem).unwrap_or_default(),
        }
    }
}

/// The generic problem for a bare status (actix's own errors that carry no problem).
pub fn for_status(status: StatusCode) -> ApiError {
    let code = match status.as_u16() {
        400 => "malformed_request",
        401 => "unauthenticated",
        403 => "forbidden",
        404 => "not_found",
        405 => "method_not_allowed",
        408 => "request_timeout",
        411 => "length_required",
        413 => "payload_too_large",
        415 => "unsupported_media_type",
        429 => "rate_limited",
        503 => "service_unavailable",
        s if s >= 500 => "internal_error",
        _ => "request_failed",
    };
    if status.is_server_error() {
        let mut err = ApiError::internal();
        err.status = status;
        err.code = code;
        return err;
    }
    ApiError::new(
        status,
        code,
        status.canonical_reason().unwrap_or("Request failed"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problem_json_is_pinned() {
        let mut err = ApiError::validation(vec![FieldError {
            field: "email".into(),
            code: "invalid_format".into(),
            message: "not an email address".into(),
        }]);
        err.detail = "bad".into();
        let json = serde_json::to_value(err.problem()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "type": "urn:nexus:problem:validation_failed",
                "title": "Unprocessable Entity",
                "status": 422,
                "detail": "bad",
                "code": "validation_failed",
                "errors": [{"field": "email", "code": "invalid_format", "message": "not an email address"}]
            })
        );
    }

    #[test]
    fn store_failures_become_503_with_retry_after_and_no_internals() {
        let err = ApiError::from(StoreError::Unavailable(anyhow::anyhow!(
            "connection refused at 10.1.2.3"
        )));
        assert_eq!(err.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(err.retry_after, Some(5));
        assert!(!err.detail.contains("10.1.2.3"));
        let busy = ApiError::from(StoreError::PoolExhausted(std::time::Duration::from_secs(1)));
        assert_eq!(busy.code, "database_busy");
        let gave_up = ApiError::from(StoreError::GaveUp(anyhow::anyhow!(
            "deadlock detected: process 4242 waits for ShareLock"
        )));
        assert_eq!(
            (gave_up.status, gave_up.code, gave_up.retry_after),
            (StatusCode::SERVICE_UNAVAILABLE, "database_gave_up", Some(1))
        );
        assert!(!gave_up.detail.contains("4242"));
        let other = ApiError::from(StoreError::Other(anyhow::anyhow!(
            "syntax error at or near SELECT"
        )));
        assert_eq!(other.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!other.detail.contains("SELECT"));
    }

    #[test]
    fn bare_statuses_get_stable_codes() {
        assert_eq!(
            for_status(StatusCode::PAYLOAD_TOO_LARGE).code,
            "payload_too_large"
        );
        assert_eq!(for_status(StatusCode::BAD_GATEWAY).code, "internal_error");
        assert_eq!(
            for_status(StatusCode::METHOD_NOT_ALLOWED).code,
            "method_not_allowed"
        );
    }
}
