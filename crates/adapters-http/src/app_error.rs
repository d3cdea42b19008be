//! Use-case errors as problem documents: one status and one stable code each.

use actix_web::http::StatusCode;
use nexus_application::AppError;

use crate::problem::{ApiError, FieldError};

impl ApiError {
    /// A 401 with the `WWW-Authenticate: Bearer` challenge clients expect.
    pub fn unauthenticated(code: &'static str, detail: impl Into<String>) -> Self {
        let mut err = Self::new(StatusCode::UNAUTHORIZED, code, detail);
        let challenge = if code == "unauthenticated" {
            r#"Bearer realm="nexus""#.to_owned()
        } else {
            format!(r#"Bearer realm="nexus", error="invalid_token", error_description="{code}""#)
        };
        err.www_authenticate = Some(challenge.into());
        err
    }
}

fn unauthenticated_detail(code: &str) -> &'static str {
    match code {
        "token_expired" => "The access token has expired; refresh it.",
        "session_revoked" => {
            "The session has ended (logout, password change or removal); log in again."
        }
        "refresh_token_reused" => {
            "This refresh token was already used; the session has been revoked for safety."
        }
        "refresh_token_superseded" => {
            "This refresh token was just rotated by another request; use the newest one."
        }
        "invalid_refresh_token" => "The refresh token is unknown, expired or revoked.",
        "api_key_revoked" => "The API key has been revoked.",
        "api_key_expired" => "The API key has expired.",
        "api_key_creator_removed" => {
            "The member who created this API key has left the organization; create a new key."
        }
        "unauthenticated" => "Authentication is required: send `Authorization: Bearer <token>`.",
        _ => "The credentials are invalid.",
    }
}

impl From<AppError> for ApiError {
    fn from(err: AppError) -> Self {
        match err {
            AppError::Validation(issues) => Self::validation(
                issues
                    .into_iter()
                    .map(|i| FieldError {
                        field: i.field,
                        code: i.code,
                        message: i.message,
                    })
                    .collect(),
            ),
            AppError::Unauthenticated(code) => {
                Self::unauthenticated(code, unauthenticated_detail(code))
            }
            AppError::InvalidCredentials => {
                Self::unauthenticated("invalid_credentials", "Invalid email or password.")
            }
            AppError::Forbidden("role") => Self::forbidden(),
            AppError::Forbidden("owner_only") => Self::new(
                StatusCode::FORBIDDEN,
                "owner_only",
                "Only an owner may grant, change or remove an owner.",
            ),
            AppError::Forbidden("session_required") => Self::new(
                StatusCode::FORBIDDEN,
                "session_required",
                "This operation needs a user session, not an API key.",
            ),
            AppError::Forbidden(code) => {
                Self::new(StatusCode::FORBIDDEN, code, "This action is not allowed.")
            }
            AppError::NotFound => Self::not_found(),
            AppError::Conflict { code, message } => Self::new(StatusCode::CONFLICT, code, message),
            AppError::Contended { code, message } => {
                Self::new(StatusCode::CONFLICT, code, message).with_retry_after(1)
            }
            AppError::PreconditionFailed => Self::new(
                StatusCode::PRECONDITION_FAILED,
                "version_mismatch",
                "The resource changed since the version in If-Match; fetch it again.",
            ),
            AppError::RateLimited { retry_after } => Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "Too many attempts; retry later.",
            )
            .with_retry_after(retry_after.as_secs().max(1)),
            AppError::Throttled {
                code,
                message,
                retry_after,
            } => Self::new(StatusCode::TOO_MANY_REQUESTS, code, message)
                .with_retry_after(retry_after.as_secs().max(1)),
            AppError::Busy => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                "The server is saturated with password checks; retry shortly.",
            )
            .with_retry_after(1),
            AppError::Store(e) => Self::from_store(&e),
        }
    }
}
