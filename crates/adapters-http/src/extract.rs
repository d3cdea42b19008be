//! Extractor settings: body limits and problem+json for every parse failure.

use actix_web::error::{JsonPayloadError, PathError, QueryPayloadError};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, web};

use crate::problem::ApiError;

fn json_error(err: JsonPayloadError, _req: &HttpRequest) -> actix_web::Error {
    let api = match &err {
        JsonPayloadError::ContentType => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "Send the body as application/json.",
        ),
        JsonPayloadError::Overflow { limit }
        | JsonPayloadError::OverflowKnownLength { limit, .. } => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("The body exceeds the limit of {limit} bytes."),
        ),
        // serde's message names the field and what was expected; it holds no internals.
        JsonPayloadError::Deserialize(de) if de.is_data() => ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_body",
            format!("The JSON body does not fit: {de}."),
        ),
        JsonPayloadError::Deserialize(de) => {
            ApiError::malformed(format!("The body is not valid JSON: {de}."))
        }
        other => ApiError::malformed(format!("The body could not be read: {other}.")),
    };
    api.into()
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
