//! Extractor settings: body limits and problem+json for every parse failure.

use actix_web::error::{JsonPayloadError, PathError, QueryPayloadError};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, web};

use crate::problem::ApiError;

fn json_error(err: JsonPayloadError, _req: &HttpRequest) -> actix_web::Error {
    let api = match &err {
        JsonPayloadError::ContentType => not_json(),
        JsonPayloadError::Overflow { limit }
        | JsonPayloadError::OverflowKnownLength { limit, .. } => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("The body exceeds the limit of {limit} bytes."),
        ),
        JsonPayloadError::Deserialize(de) => undecodable(de),
        other => ApiError::malformed(format!("The body could not be read: {other}.")),
    };
    api.into()
}

fn not_json() -> ApiError {
    ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        "Send the body as application/json.",
    )
}

fn undecodable(de: &serde_json::Error) -> ApiError {
    // serde's message names the field and what was expected; it holds no internals.
    if de.is_data() {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_body",
            format!("The JSON body does not fit: {de}."),
        )
    } else {
        ApiError::malformed(format!("The body is not valid JSON: {de}."))
    }
}

/// A JSON body read as `web::Json` reads it (`application/json` or any `+json` type, the
/// same errors), for routes that first decide the caller's role on the raw bytes.
///
/// # Errors
/// 415 for another content type, 400 for a body that is not JSON or not of `T`'s shape.
pub fn json_body<T: serde::de::DeserializeOwned>(
    req: &HttpRequest,
    body: &[u8],
) -> Result<T, ApiError> {
    use actix_web::HttpMessage;
    let json = req.mime_type().ok().flatten().is_some_and(|m| {
        m.subtype().as_str() == "json" || m.suffix().is_some_and(|s| s.as_str() == "json")
    });
    if !json {
        return Err(not_json());
    }
    serde_json::from_slice(body).map_err(|e| undecodable(&e))
}

fn query_error(err: QueryPayloadError, _req: &HttpRequest) -> actix_web::Error {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "invalid_query",
        format!("Invalid query string: {err}."),
    )
    .into()
}

fn path_error(err: PathError, _req: &HttpRequest) -> actix_web::Error {
    // A path segment that cannot be an id cannot name an existing resource.
    let _ = err;
    ApiError::not_found().into()
}

pub fn configure(cfg: &mut web::ServiceConfig, body_limit: usize) {
    cfg.app_data(
        web::JsonConfig::default()
            .limit(body_limit)
            .error_handler(json_error),
    )
    .app_data(web::PayloadConfig::default().limit(body_limit))
    .app_data(web::QueryConfig::default().error_handler(query_error))
    .app_data(web::PathConfig::default().error_handler(path_error));
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Named {
        name: String,
    }

    fn read(content_type: Option<&str>, body: &str) -> Result<Named, ApiError> {
        let mut req = TestRequest::default();
        if let Some(t) = content_type {
            req = req.insert_header(("content-type", t));
        }
        json_body(&req.to_http_request(), body.as_bytes())
    }

    #[test]
    fn a_json_body_is_read_as_the_json_extractor_reads_it() {
        for t in [
            "application/json",
            "application/json; charset=utf-8",
            "application/merge-patch+json",
        ] {
            assert_eq!(read(Some(t), r#"{"name":"a"}"#).unwrap().name, "a", "{t}");
        }
        for t in [
            None,
            Some("text/plain"),
            Some("application/x-www-form-urlencoded"),
        ] {
            let e = read(t, r#"{"name":"a"}"#).unwrap_err();
            assert_eq!(
                (e.status.as_u16(), e.code),
                (415, "unsupported_media_type"),
                "{t:?}"
            );
        }
        let e = read(Some("application/json"), "{not json").unwrap_err();
        assert_eq!((e.status.as_u16(), e.code), (400, "malformed_request"));
        let e = read(Some("application/json"), r#"{"name":"a","colour":1}"#).unwrap_err();
        assert_eq!((e.status.as_u16(), e.code), (400, "invalid_body"));
    }
}
