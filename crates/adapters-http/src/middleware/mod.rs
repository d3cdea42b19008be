//! Cross-cutting request handling, outermost first: telemetry (request id, span, log
//! line, metrics), the problem+json fallback, panic capture, security headers, and
//! innermost, idempotency keys.

pub mod idempotency;
pub mod panic;
pub mod problem_fallback;
pub mod request_context;
pub mod request_id;
pub mod security_headers;
