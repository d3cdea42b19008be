//! HS256 access tokens. The algorithm is pinned on verification (so `none` and every
//! other algorithm are refused), issuer and audience are checked, and the clock leeway
//! is set to a few seconds (the crate's default is a minute).
//!
//! Every authenticated request presents the same token for its whole life (15 minutes),
//! and checking it (base64, HMAC, two JSON parses) was 7 % of the server's CPU for a get
//! by id. So a verified token's claims are remembered, keyed by the exact token text: a
//! token's verdict depends only on its bytes, the key and the clock, and the clock's part
//! (expiry) is checked again on every use. Revocation is not decided here but by the
//! session check that follows, which is not affected.

use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use nexus_domain::{OrgId, Role, SessionId, UserId};
use nexus_ports::security::{AccessClaims, TokenCodec, TokenError};
use quick_cache::sync::Cache;
use serde::{Deserialize, Serialize};

pub const ISSUER: &str = "nexus";
pub const AUDIENCE: &str = "nexus-api";
const LEEWAY_SECS: u64 = 5;
/// Most verified tokens remembered at once.
const MAX_VERIFIED: usize = 10_000;

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: uuid::Uuid,
    org: uuid::Uuid,
    role: Role,
    sid: uuid::Uuid,
    jti: uuid::Uuid,
    iat: i64,
    exp: i64,
    iss: String,
    aud: String,
}

#[derive(Clone)]
pub struct JwtCodec {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl: Duration,
    /// Claims of tokens already verified with this key; clones share it.
    verified: Arc<Cache<Box<str>, AccessClaims>>,
}

impl JwtCodec {
    #[must_use]
    pub fn new(secret: &[u8], ttl: Duration) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = LEEWAY_SECS;
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "iat", "sub", "iss", "aud"]);
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            ttl,
            verified: Arc::new(Cache::new(MAX_VERIFIED)),
        }
    }

    fn decode(&self, token: &str) -> Result<AccessClaims, TokenError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid,
            })?;
        let c = data.claims;
        let at = |secs: i64| {
            Utc.timestamp_opt(secs, 0)
                .single()
                .ok_or(TokenError::Invalid)
        };
        Ok(AccessClaims {
            user_id: UserId::from_uuid(c.sub),
            org_id: OrgId::from_uuid(c.org),
            role: c.role,
            session_id: SessionId::from_uuid(c.sid),
            token_id: c.jti,
            issued_at: at(c.iat)?,
            expires_at: at(c.exp)?,
        })
    }
}

/// jsonwebtoken's own expiry rule: expired once `exp` is more than the leeway ago.
fn unexpired(claims: &AccessClaims, now_secs: i64) -> bool {
    claims.expires_at.timestamp() >= now_secs.saturating_sub(LEEWAY_SECS.cast_signed())
}

impl TokenCodec for JwtCodec {
    fn access_ttl(&self) -> Duration {
        self.ttl
    }

    fn issue(&self, c: &AccessClaims) -> anyhow::Result<String> {
        let claims = Claims {
            sub: c.user_id.as_uuid(),
            org: c.org_id.as_uuid(),
            role: c.role,
            sid: c.session_id.as_uuid(),
            jti: c.token_id,
            iat: c.issued_at.timestamp(),
            exp: c.expires_at.timestamp(),
            iss: ISSUER.into(),
            aud: AUDIENCE.into(),
        };
        Ok(jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &self.encoding,
        )?)
    }

    fn verify(&self, token: &str) -> Result<AccessClaims, TokenError> {
        if let Some(claims) = self.verified.get(token) {
            return if unexpired(&claims, Utc::now().timestamp()) {
                Ok(claims)
            } else {
                Err(TokenError::Expired)
            };
        }
        let claims = self.decode(token)?;
        self.verified.insert(token.into(), claims.clone());
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use uuid::Uuid;

    use super::*;

    const SECRET: &[u8] = b"a-test-secret-of-at-least-32-bytes!!";

    fn claims(exp_in: i64) -> AccessClaims {
        let now = Utc::now();
        AccessClaims {
            user_id: UserId::from_uuid(Uuid::now_v7()),
            org_id: OrgId::from_uuid(Uuid::now_v7()),
            role: Role::Admin,
            session_id: SessionId::from_uuid(Uuid::now_v7()),
            token_id: Uuid::now_v7(),
            issued_at: now,
            expires_at: now + chrono::Duration::seconds(exp_in),
        }
    }

    fn codec() -> JwtCodec {
        JwtCodec::new(SECRET, Duration::from_secs(900))
    }

    #[test]
    fn round_trips() {
        let c = claims(900);
        let token = codec().issue(&c).unwrap();
        let back = codec().verify(&token).unwrap();
        assert_eq!(back.user_id, c.user_id);
        assert_eq!(back.role, Role::Admin);
        assert_eq!(back.session_id, c.session_id);
    }

    #[test]
    fn expired_beyond_the_leeway_is_refused() {
        let token = codec().issue(&claims(-30)).unwrap();
        assert_eq!(codec().verify(&token), Err(TokenError::Expired));
        // Within the explicit leeway of a few seconds it still passes.
        let token = codec().issue(&claims(-2)).unwrap();
        assert!(codec().verify(&token).is_ok());
    }

    #[test]
    fn tampering_other_keys_audiences_and_alg_none_are_refused() {
        let token = codec().issue(&claims(900)).unwrap();
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        // Flip the payload: the signature no longer matches.
        let mut payload: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&parts[1]).unwrap()).unwrap();
        payload["role"] = "OWNER".into();
        let forged_payload = URL_SAFE_NO_PAD.encode(payload.to_string());
        let tampered = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);
        assert_eq!(codec().verify(&tampered), Err(TokenError::Invalid));

        let other = JwtCodec::new(
            b"another-secret-of-at-least-32-bytes!",
            Duration::from_secs(900),
        );
        assert_eq!(
            codec().verify(&other.issue(&claims(900)).unwrap()),
            Err(TokenError::Invalid)
        );

        parts[0] = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
        let none = format!("{}.{}.", parts[0], parts[1]);
        assert_eq!(codec().verify(&none), Err(TokenError::Invalid));

        let mut wrong_aud = payload.clone();
        wrong_aud["role"] = "ADMIN".into();
        wrong_aud["aud"] = "someone-else".into();
        let foreign = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &wrong_aud,
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap();
        assert_eq!(codec().verify(&foreign), Err(TokenError::Invalid));

        let hs512 = jsonwebtoken::encode(
            &Header::new(Algorithm::HS512),
            &payload,
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap();
        assert_eq!(codec().verify(&hs512), Err(TokenError::Invalid));
    }

    #[test]
    fn verified_tokens_are_remembered_by_their_exact_text_and_refusals_are_not() {
        let codec = codec();
        let c = claims(900);
        let token = codec.issue(&c).unwrap();
        let bad = format!("{token}x");
        assert_eq!(codec.verify(&bad), Err(TokenError::Invalid));
        assert!(codec.verified.is_empty());

        let first = codec.verify(&token).unwrap();
        assert_eq!(codec.clone().verify(&token).unwrap(), first);
        assert_eq!(codec.verified.len(), 1);
        // A remembered token does not vouch for anything that merely resembles it.
        assert_eq!(codec.verify(&bad), Err(TokenError::Invalid));
        let (head, _) = token.rsplit_once('.').unwrap();
        assert_eq!(
            codec.verify(&format!("{head}.AAAA")),
            Err(TokenError::Invalid)
        );
        // Another key's codec has its own memory.
        let other = JwtCodec::new(
            b"another-secret-of-at-least-32-bytes!",
            Duration::from_secs(900),
        );
        assert_eq!(other.verify(&token), Err(TokenError::Invalid));
    }

    #[test]
    fn a_remembered_token_expires_by_the_same_rule_as_a_fresh_one() {
        let c = claims(0);
        let exp = c.expires_at.timestamp();
        assert!(unexpired(&c, exp));
        assert!(unexpired(&c, exp + 5));
        assert!(!unexpired(&c, exp + 6));

        // Remembered while valid, refused as expired once the clock passes it.
        let codec = codec();
        let token = codec.issue(&c).unwrap();
        assert!(codec.verify(&token).is_ok());
        let mut remembered = codec.verified.get(token.as_str()).unwrap();
        remembered.expires_at = Utc::now() - chrono::Duration::seconds(30);
        codec.verified.insert(token.clone().into(), remembered);
        assert_eq!(codec.verify(&token), Err(TokenError::Expired));
    }
}
