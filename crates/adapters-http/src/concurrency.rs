//! Optimistic concurrency over HTTP: `version` as a strong `ETag`, `If-Match` to guard
//! writes.

use actix_web::HttpRequest;
use actix_web::http::header::{self, HeaderValue};

use crate::problem::ApiError;

/// The `ETag` value for a version: `"3"`.
#[must_use]
pub fn etag(version: i32) -> (header::HeaderName, HeaderValue) {
    let value = HeaderValue::from_str(&format!("\"{version}\""))
        .unwrap_or(HeaderValue::from_static("\"0\""));
    (header::ETAG, value)
}

/// The version `If-Match` demands: `None` when absent or `*`.
///
/// # Errors
/// 400 `invalid_if_match` for anything but `"<integer>"`, `W/"<integer>"` or `*`.
pub fn if_match(req: &HttpRequest) -> Result<Option<i32>, ApiError> {
    let Some(raw) = req.headers().get(header::IF_MATCH) else {
        return Ok(None);
    };
    let raw = raw.to_str().unwrap_or_default().trim();
    if raw == "*" {
        return Ok(None);
    }
    raw.trim_start_matches("W/")
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .and_then(|s| s.parse().ok())
        .map(Some)
        .ok_or_else(|| {
            ApiError::new(
                actix_web::http::StatusCode::BAD_REQUEST,
                "invalid_if_match",
                "If-Match must be an ETag this API returned, such as \"3\".",
            )
        })
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::*;

    #[test]
    fn parses_etags() {
        let req = |v: &str| {
            TestRequest::default()
                .insert_header((header::IF_MATCH, v))
                .to_http_request()
        };
        assert_eq!(if_match(&req("\"3\"")).unwrap(), Some(3));
        assert_eq!(if_match(&req("W/\"12\"")).unwrap(), Some(12));
        assert_eq!(if_match(&req("*")).unwrap(), None);
        assert!(if_match(&req("3")).is_err());
        assert_eq!(
            if_match(&TestRequest::default().to_http_request()).unwrap(),
            None
        );
        assert_eq!(etag(7).1, "\"7\"");
    }
}
