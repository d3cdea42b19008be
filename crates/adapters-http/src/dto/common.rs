//! Schemas shared by many resources, defined once.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A keyset-paginated list.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Page<T> {
    pub data: Vec<T>,
    /// Opaque cursor for the next page; `null` on the last page.
    #[schema(required = true)]
    pub next_cursor: Option<String>,
    /// Sent only by the lists that count ([`CountedPage`] in the document), and only
    /// with `includeTotal=true`; left out of `Page`'s schema, so that a generated client
    /// does not expect it from the lists that never send it.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(ignore)]
    pub total: Option<i64>,
}

// The schema of a `Page` from a list that takes `includeTotal` (contacts, tags, custom
// fields). Never built: those routes answer with a `Page` holding `total`.
/// A keyset-paginated list that also counts itself when asked (`includeTotal=true`).
#[derive(ToSchema)]
#[schema(bound = "T: ToSchema", rename_all = "camelCase")]
#[allow(dead_code)]
pub struct CountedPage<T> {
    data: Vec<T>,
    /// Opaque cursor for the next page; `null` on the last page.
    #[schema(required = true)]
    next_cursor: Option<String>,
    /// Exact count of the whole list (not of this page), only with `includeTotal=true`.
    #[schema(nullable = false)]
    total: Option<i64>,
}

/// Bytes a page's body is first given per item, so that a page of contacts (about 550
/// bytes each as JSON) is written into its buffer without growing it by copies.
const BYTES_PER_ITEM: usize = 640;

/// A page answers as JSON written into a buffer sized for it once (actix's `Json` starts
/// at 128 bytes and doubles: eight copies for a page of 50 contacts), by sonic-rs, whose
/// SIMD string escaping replaces serde_json's byte-at-a-time loop (15 % of a list page's
/// instructions).
impl<T: Serialize> actix_web::Responder for Page<T> {
    type Body = actix_web::body::BoxBody;

    fn respond_to(self, _: &actix_web::HttpRequest) -> actix_web::HttpResponse {
        let mut body = Vec::with_capacity(128 + self.data.len() * BYTES_PER_ITEM);
        match sonic_rs::to_writer(&mut body, &self) {
            Ok(()) => actix_web::HttpResponse::Ok()
                .content_type(actix_web::http::header::ContentType::json())
                .body(body),
            Err(e) => {
                tracing::error!(error = %e, "a page could not be serialized");
                actix_web::ResponseError::error_response(&crate::problem::ApiError::internal())
            }
        }
    }
}

/// An amount of money: a decimal string (never a float) and its ISO 4217 currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Money {
    #[schema(example = "1250.00", pattern = r"^\d{1,13}(\.\d{1,2})?$")]
    pub amount: String,
    #[schema(example = "USD", pattern = "^[A-Z]{3}$")]
    pub currency: String,
}

/// For merge-patch fields: a present key (even `null`) becomes `Some(..)`, so "absent"
/// (unchanged) and `null` (cleared) stay distinguishable.
///
/// # Errors
/// When the value does not deserialize as `T`.
pub fn present<'de, T, D>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    T: Deserialize<'de>,
    D: serde::Deserializer<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// For merge-patch fields that cannot be cleared: absent stays `None`, a value is
/// `Some(..)`, and `null` is refused (400 `invalid_body`) instead of passing for absent.
///
/// # Errors
/// On `null`, or when the value does not deserialize as `T`.
pub fn not_null<'de, T, D>(d: D) -> Result<Option<T>, D::Error>
where
    T: Deserialize<'de>,
    D: serde::Deserializer<'de>,
{
    Option::<T>::deserialize(d)?.map(Some).ok_or_else(|| {
        serde::de::Error::custom("null is not allowed here: omit the field to keep its value")
    })
}

/// Lists fetch `limit + 1` rows: keeps `limit` of them and says whether more exist.
pub fn take_page<T>(items: &mut Vec<T>, limit: i64) -> bool {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let more = items.len() > limit;
    items.truncate(limit);
    more
}

#[cfg(test)]
mod page_body_tests {
    use actix_web::Responder;
    use actix_web::body::MessageBody;

    use super::Page;

    #[test]
    fn a_page_body_is_the_json_serde_json_would_write() {
        let tricky = [
            "plain",
            "quote \" and backslash \\",
            "controls \u{0} \u{1f} \t \n \r",
            "Ünïcödé, 電話番号, emoji 😀",
            "separators \u{2028}\u{2029} and </script>",
            "",
        ];
        let page = Page {
            data: tricky
                .iter()
                .map(|s| serde_json::json!({"name": s, "n": 1.5, "none": null}))
                .collect(),
            next_cursor: Some("abc".to_owned()),
            total: None,
        };
        let expected = serde_json::to_value(&page).unwrap();
        let req = actix_web::test::TestRequest::default().to_http_request();
        let res = page.respond_to(&req);
        assert_eq!(
            res.headers().get("content-type").unwrap(),
            "application/json"
        );
        let body = res.into_body().try_into_bytes().unwrap();
        let written: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(written, expected);
        assert!(!body.contains(&0), "control characters are escaped");
    }
}
