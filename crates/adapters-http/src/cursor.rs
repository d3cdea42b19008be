//! Opaque, tamper-evident pagination cursors: the keyset position plus what it is valid
//! for (tenant, list, sort, filters), signed with HMAC-SHA256 under a server secret.
//! A cursor that was forged, altered, or minted for another query or tenant is a 400,
//! never a 500 and never someone else's rows.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use nexus_domain::{ContactId, OrgId};
use nexus_ports::contacts::{Keyset, SortValue};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::problem::ApiError;

type HmacSha256 = Hmac<Sha256>;

/// Bytes of the MAC kept in the cursor (128 bits).
const TAG_LEN: usize = 16;

/// Signs and checks cursors. The key is derived from a server secret, so every instance
/// sharing the secret accepts the others' cursors.
pub struct CursorCodec {
    key: [u8; 32],
}

impl std::fmt::Debug for CursorCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CursorCodec(***)")
    }
}

/// What a cursor is valid for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CursorScope {
    pub org: OrgId,
    /// The list: `contacts`, `timeline`, ...
    pub list: &'static str,
    /// The effective sort, e.g. `-createdAt`.
    pub sort: String,
    /// The filters in a canonical form (sorted `key=value` pairs).
    pub filters: String,
}

impl CursorScope {
    fn fingerprint(&self) -> String {
        let digest =
            Sha256::digest(format!("{}\n{}\n{}", self.list, self.sort, self.filters).as_bytes());
        URL_SAFE_NO_PAD.encode(&digest[..12])
    }
}

#[derive(Serialize, Deserialize)]
struct Payload {
    /// Tenant.
    o: uuid::Uuid,
    /// Scope fingerprint.
    f: String,
    /// Sort value: `t` time, `s` text, `n` integer.
    #[serde(skip_serializing_if = "Option::is_none")]
    t: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    s: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    n: Option<i64>,
    /// Id of the last row.
    i: uuid::Uuid,
}

/// The answer to any cursor this server did not issue for the query at hand.
pub fn invalid_cursor() -> ApiError {
    ApiError::new(
        actix_web::http::StatusCode::BAD_REQUEST,
        "invalid_cursor",
        "The cursor is malformed, altered, signed under another server secret, or belongs to another query; list again without it.",
    )
}

impl CursorCodec {
    /// A newest-first keyset position (time, id) for the list `scope` names.
    #[must_use]
    pub fn encode_time(&self, scope: &CursorScope, at: DateTime<Utc>, id: uuid::Uuid) -> String {
        self.encode_value(scope, SortValue::Time(at), id)
    }

    /// The (time, id) position of a cursor from [`Self::encode_time`]; `None` without one.
    ///
    /// # Errors
    /// 400 for a forged, altered or foreign cursor, or one holding another kind of position.
    pub fn decode_time(
        &self,
        scope: &CursorScope,
        raw: Option<&str>,
    ) -> Result<Option<(DateTime<Utc>, uuid::Uuid)>, ApiError> {
        let Some(raw) = raw else { return Ok(None) };
        let keyset = self.decode(scope, raw)?;
        let SortValue::Time(at) = keyset.value else {
            return Err(invalid_cursor());
        };
        Ok(Some((at, keyset.id.as_uuid())))
    }

    /// A position in a list ordered by an integer sequence (with the row's id).
    #[must_use]
    pub fn encode_seq(&self, scope: &CursorScope, seq: i64, id: uuid::Uuid) -> String {
        self.encode_value(scope, SortValue::Int(seq), id)
    }

    /// The sequence of a cursor from [`Self::encode_seq`]; `None` without one.
    ///
    /// # Errors
    /// 400 for a forged, altered or foreign cursor, or one holding another kind of position.
    pub fn decode_seq(
        &self,
        scope: &CursorScope,
        raw: Option<&str>,
    ) -> Result<Option<i64>, ApiError> {
        let Some(raw) = raw else { return Ok(None) };
        match self.decode(scope, raw)?.value {
            SortValue::Int(seq) => Ok(Some(seq)),
            _ => Err(invalid_cursor()),
        }
    }

    fn encode_value(&self, scope: &CursorScope, value: SortValue, id: uuid::Uuid) -> String {
        // Keyset ids are plain UUIDs; the contacts keyset type carries them.
        self.encode(
            scope,
            &Keyset {
                value,
                id: ContactId::from_uuid(id),
            },
        )
    }

    /// Derives the cursor key from a server secret (domain-separated from its other uses).
    #[must_use]
    pub fn from_secret(secret: &[u8]) -> Self {
        let mut mac = <HmacSha256 as Mac>::new_from_slice(secret).unwrap_or_else(|_| {
            <HmacSha256 as Mac>::new_from_slice(b"nexus")
                .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"))
        });
        mac.update(b"nexus pagination cursor v1");
        let mut key = [0_u8; 32];
        key.copy_from_slice(&mac.finalize().into_bytes());
        Self { key }
    }

    /// A key of this process only (cursors then do not survive a restart).
    #[must_use]
    pub fn random() -> Self {
        Self {
            key: rand::random(),
        }
    }

    fn mac(&self) -> HmacSha256 {
        <HmacSha256 as Mac>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"))
    }

    #[must_use]
    pub fn encode(&self, scope: &CursorScope, keyset: &Keyset) -> String {
        self.encode_position(scope, &keyset.value, keyset.id.as_uuid())
    }

    /// # Errors
    /// 400 `invalid_cursor` for anything this server did not issue for this scope.
    pub fn decode(&self, scope: &CursorScope, raw: &str) -> Result<Keyset, ApiError> {
        let (value, id) = self.decode_position(scope, raw)?;
        Ok(Keyset {
            value,
            id: ContactId::from_uuid(id),
        })
    }

    /// A cursor for any list ordered by (sort value, row id).
    #[must_use]
    pub fn encode_position(
        &self,
        scope: &CursorScope,
        value: &SortValue,
        id: uuid::Uuid,
    ) -> String {
        let (t, s, n) = match value {
            SortValue::Time(t) => (Some(*t), None, None),
            SortValue::Text(s) => (None, Some(s.clone()), None),
            SortValue::Int(n) => (None, None, Some(*n)),
        };
        self.seal(&Payload {
            o: scope.org.as_uuid(),
            f: scope.fingerprint(),
            t,
            s,
            n,
            i: id,
        })
    }

    /// # Errors
    /// 400 `invalid_cursor` for anything this server did not issue for this scope.
    pub fn decode_position(
        &self,
        scope: &CursorScope,
        raw: &str,
    ) -> Result<(SortValue, uuid::Uuid), ApiError> {
        let payload = self.open(scope, raw)?;
        let value = match (payload.t, payload.s, payload.n) {
            (Some(t), None, None) => SortValue::Time(t),
            (None, Some(s), None) => SortValue::Text(s),
            (None, None, Some(n)) => SortValue::Int(n),
            _ => return Err(invalid_cursor()),
        };
        Ok((value, payload.i))
    }

    /// A position in a list of aggregates ordered by a count, then a name (tags): they
    /// have no row id.
    #[must_use]
    pub fn encode_count_name(&self, scope: &CursorScope, count: i64, name: &str) -> String {
        self.seal(&Payload {
            o: scope.org.as_uuid(),
            f: scope.fingerprint(),
            t: None,
            s: Some(name.to_owned()),
            n: Some(count),
            i: uuid::Uuid::nil(),
        })
    }

    /// The (count, name) of a cursor from [`Self::encode_count_name`].
    ///
    /// # Errors
    /// 400 `invalid_cursor` for anything this server did not issue for this scope.
    pub fn decode_count_name(
        &self,
        scope: &CursorScope,
        raw: &str,
    ) -> Result<(i64, String), ApiError> {
        match self.open(scope, raw)? {
            Payload {
                t: None,
                s: Some(name),
                n: Some(count),
                ..
            } => Ok((count, name)),
            _ => Err(invalid_cursor()),
        }
    }

    fn seal(&self, payload: &Payload) -> String {
        let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(payload).unwrap_or_default());
        let mut mac = self.mac();
        mac.update(body.as_bytes());
        let tag = mac.finalize().into_bytes();
        format!("{body}.{}", URL_SAFE_NO_PAD.encode(&tag[..TAG_LEN]))
    }

    /// The payload of a cursor this server signed for `scope`.
    fn open(&self, scope: &CursorScope, raw: &str) -> Result<Payload, ApiError> {
        let (body, tag) = raw.split_once('.').ok_or_else(invalid_cursor)?;
        let tag = URL_SAFE_NO_PAD.decode(tag).map_err(|_| invalid_cursor())?;
        if tag.len() != TAG_LEN {
            return Err(invalid_cursor());
        }
        let mut mac = self.mac();
        mac.update(body.as_bytes());
        mac.verify_truncated_left(&tag)
            .map_err(|_| invalid_cursor())?;
        let bytes = URL_SAFE_NO_PAD.decode(body).map_err(|_| invalid_cursor())?;
        let payload: Payload = serde_json::from_slice(&bytes).map_err(|_| invalid_cursor())?;
        if payload.o != scope.org.as_uuid() || payload.f != scope.fingerprint() {
            return Err(invalid_cursor());
        }
        Ok(payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(org: OrgId, sort: &str) -> CursorScope {
        CursorScope {
            org,
            list: "contacts",
            sort: sort.into(),
            filters: "q=ada".into(),
        }
    }

    #[test]
    fn round_trips_and_rejects_tampering_and_foreign_scopes() {
        let codec = CursorCodec::from_secret(b"secret");
        let org = OrgId::from_uuid(uuid::Uuid::now_v7());
        let keyset = Keyset {
            value: SortValue::Text("Lovelace".into()),
            id: ContactId::from_uuid(uuid::Uuid::now_v7()),
        };
        let cursor = codec.encode(&scope(org, "lastName"), &keyset);
        assert_eq!(
            codec.decode(&scope(org, "lastName"), &cursor).unwrap(),
            keyset
        );

        let other_org = OrgId::from_uuid(uuid::Uuid::now_v7());
        for (s, raw) in [
            (scope(other_org, "lastName"), cursor.clone()),
            (scope(org, "-lastName"), cursor.clone()),
            (
                CursorScope {
                    filters: "q=bob".into(),
                    ..scope(org, "lastName")
                },
                cursor.clone(),
            ),
            (scope(org, "lastName"), format!("x{cursor}")),
            (scope(org, "lastName"), cursor.replace('.', "")),
            (scope(org, "lastName"), "garbage".into()),
            (scope(org, "lastName"), String::new()),
        ] {
            let err = codec.decode(&s, &raw).unwrap_err();
            assert_eq!((err.status.as_u16(), err.code), (400, "invalid_cursor"));
        }
        // Same payload, another server's key.
        assert!(
            CursorCodec::from_secret(b"other")
                .decode(&scope(org, "lastName"), &cursor)
                .is_err()
        );
        // A re-signed payload with a truncated tag is refused too.
        let (body, _) = cursor.split_once('.').unwrap();
        assert!(
            codec
                .decode(&scope(org, "lastName"), &format!("{body}.AA"))
                .is_err()
        );
    }

    #[test]
    fn count_and_name_positions_round_trip_and_never_pass_for_row_positions() {
        let codec = CursorCodec::from_secret(b"secret");
        let org = OrgId::from_uuid(uuid::Uuid::now_v7());
        let tags = CursorScope {
            list: "tags",
            ..scope(org, "-count")
        };
        let cursor = codec.encode_count_name(&tags, 12, "vip");
        assert_eq!(
            codec.decode_count_name(&tags, &cursor).unwrap(),
            (12, "vip".to_owned())
        );
        assert!(codec.decode_position(&tags, &cursor).is_err());
        let row = codec.encode_position(&tags, &SortValue::Int(12), uuid::Uuid::now_v7());
        assert!(codec.decode_count_name(&tags, &row).is_err());
        let other = OrgId::from_uuid(uuid::Uuid::now_v7());
        assert!(
            codec
                .decode_count_name(&CursorScope { org: other, ..tags }, &cursor)
                .is_err()
        );
    }
}
