//! Reusable error responses for the spec: every operation lists the ones it can return.

use utoipa::ToResponse;

use crate::problem::Problem;

/// The request is malformed: invalid JSON, unknown or mistyped fields, bad query.
#[derive(ToResponse)]
#[response(content_type = "application/problem+json")]
pub struct BadRequest(pub Problem);

/// Missing, invalid or expired credentials.
#[derive(ToResponse)]
#[response(
    content_type = "application/problem+json",
    headers(("WWW-Authenticate" = String, description = "`Bearer realm=\"nexus\"` challenge."))
)]
pub struct Unauthorized(pub Problem);

/// Authenticated, but the role (or a CSRF check) does not allow this.
#[derive(ToResponse)]
#[response(content_type = "application/problem+json")]
pub struct Forbidden(pub Problem);

/// No such resource in your organization.
#[derive(ToResponse)]
#[response(content_type = "application/problem+json")]
pub struct NotFound(pub Problem);

/// The request conflicts with the current state (duplicate, rule violation). With
/// `Retry-After`, it lost a race to concurrent writes and the same request may succeed.
#[derive(ToResponse)]
#[response(
    content_type = "application/problem+json",
    headers(("Retry-After" = u64, description = "Sent when the write lost a race a retry may win (`custom_fields_changed`, `concurrent_moves`, `concurrent_changes`) or the same `Idempotency-Key` is still running (`idempotency_key_in_flight`): seconds to wait."))
)]
pub struct Conflict(pub Problem);

/// `If-Match` names a version that is no longer current.
#[derive(ToResponse)]
#[response(content_type = "application/problem+json")]
pub struct PreconditionFailed(pub Problem);

/// The body exceeds the configured limit.
#[derive(ToResponse)]
#[response(content_type = "application/problem+json")]
pub struct PayloadTooLarge(pub Problem);

/// The body did not all arrive in time.
#[derive(ToResponse)]
#[response(content_type = "application/problem+json")]
pub struct RequestTimeout(pub Problem);

/// The body's `Content-Type` is not one the operation takes (see its request body).
#[derive(ToResponse)]
#[response(content_type = "application/problem+json")]
pub struct UnsupportedMediaType(pub Problem);

/// Well-formed but invalid: see `errors` for each field.
#[derive(ToResponse)]
#[response(content_type = "application/problem+json")]
pub struct Unprocessable(pub Problem);

/// Too many attempts.
#[derive(ToResponse)]
#[response(
    content_type = "application/problem+json",
    headers(("Retry-After" = u64, description = "Seconds to wait before retrying."))
)]
pub struct TooManyRequests(pub Problem);

/// Temporarily unable to serve (database unreachable, pool or hashing saturated).
#[derive(ToResponse)]
#[response(
    content_type = "application/problem+json",
    headers(("Retry-After" = u64, description = "Seconds to wait before retrying."))
)]
pub struct ServiceUnavailable(pub Problem);

/// An unexpected failure on the server; nothing is promised about the request's effect.
/// An `Idempotency-Key` is released by it: a retry with the key runs the request again.
#[derive(ToResponse)]
#[response(content_type = "application/problem+json")]
pub struct InternalError(pub Problem);
