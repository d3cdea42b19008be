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
    /// Exact count of matching items, only with `includeTotal=true`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub total: Option<i64>,
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
