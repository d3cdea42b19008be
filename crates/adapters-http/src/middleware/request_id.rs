//! `X-Request-Id`: echoed when the client sent a sane one, generated otherwise; set on
//! every response, carried by the request's tracing span (so every log line of the
//! request has it) and by a task-local so error bodies can quote it.

use std::time::Instant;

use actix_web::Error;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::web::Data;
use tracing::Instrument;

use crate::metrics::Metrics;

pub const HEADER: HeaderName = HeaderName::from_static("x-request-id");

tokio::task_local! {
    static REQUEST_ID: String;
}

/// The id of the request being handled, if called while handling one.
pub fn current() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}

fn accept_client_id(value: &HeaderValue) -> Option<String> {
    let s = value.to_str().ok()?;
    // Echo only ids that cannot smuggle anything into logs or headers.
    let sane = !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
    sane.then(|| s.to_owned())
}

pub async fn middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let id = req
        .headers()
        .get(&HEADER)
        .and_then(accept_client_id)
        .unwrap_or_else(|| uuid::Uuid::now_v7().simple().to_string());
    let metrics = req.app_data::<Data<Metrics>>().cloned();
    let method = req.method().clone();
    let span =
        tracing::info_span!("request", request_id = %id, method = %method, path = %req.path());
    let started = Instant::now();

    let result = REQUEST_ID
        .scope(id.clone(), next.call(req))
        .instrument(span.clone())
        .await;
    let elapsed = started.elapsed();
    let (status, route) = match &result {
        Ok(res) => (
            res.status(),
            res.request()
                .match_pattern()
                .unwrap_or_else(|| "unmatched".to_owned()),
        ),
        // Errors reaching this far were rendered with the id already (see `panic`).
        Err(err) => (
            err.as_response_error().status_code(),
            "unmatched".to_owned(),
        ),
    };
    span.in_scope(|| {
        tracing::info!(status = status.as_u16(), route = %route, latency_ms = elapsed.as_secs_f64() * 1e3, "request handled");
    });
    if let Some(metrics) = metrics {
        metrics.observe(method.as_str(), &route, status.as_u16(), elapsed);
    }
    let mut res = result?;
    if let Ok(value) = HeaderValue::from_str(&id) {
        res.headers_mut().insert(HEADER, value);
    }
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sane_client_ids_are_echoed() {
        assert_eq!(
            accept_client_id(&HeaderValue::from_static("abc-123_x.y:z")),
            Some("abc-123_x.y:z".into())
        );
        assert_eq!(
            accept_client_id(&HeaderValue::from_static("has space")),
            None
        );
        assert_eq!(accept_client_id(&HeaderValue::from_static("")), None);
        let long = "a".repeat(129);
        assert_eq!(
            accept_client_id(&HeaderValue::from_str(&long).unwrap()),
            None
        );
    }
}
