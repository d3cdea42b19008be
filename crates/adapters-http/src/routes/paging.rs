//! The paging every keyset list takes: `limit` and `cursor`.

use serde::Deserialize;
use utoipa::IntoParams;

use crate::problem::ApiError;

/// A list's paging alone (timelines, tags, webhook logs): any other parameter is a 400.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// 1–200, default 50.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    /// `nextCursor` of the previous page.
    pub cursor: Option<String>,
}

/// A list's paging and its count on demand (tags, custom field definitions): any other
/// parameter is a 400.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CountedPageQuery {
    /// 1–200, default 50.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    /// `nextCursor` of the previous page.
    pub cursor: Option<String>,
    /// `true` adds `total`, the exact count of the whole list (not of this page).
    pub include_total: Option<bool>,
}

/// The page size asked for: 1–200, 50 when absent.
///
/// # Errors
/// 400 `invalid_query` outside 1–200.
pub fn limit_of(raw: Option<i64>) -> Result<i64, ApiError> {
    let limit = raw.unwrap_or(50);
    if (1..=200).contains(&limit) {
        Ok(limit)
    } else {
        Err(ApiError::new(
            actix_web::http::StatusCode::BAD_REQUEST,
            "invalid_query",
            "limit is 1 to 200.",
        ))
    }
}
