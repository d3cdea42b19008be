//! Idempotency keys in PostgreSQL: a claim is one `INSERT .. ON CONFLICT`, so two
//! concurrent requests with the same key cannot both win.

use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Binary, Jsonb, Nullable, SmallInt, Text, Timestamptz, Uuid};
use diesel_async::RunQueryDsl;
use nexus_ports::StoreError;
use nexus_ports::idempotency::{Claim, ClaimToken, IdempotencyStore, StoredResponse};

use crate::error::{from_diesel, from_pool};
use crate::pool::{PgConn, PgPool};

#[derive(Clone)]
pub struct PgIdempotencyStore {
    pool: PgPool,
    acquire_timeout: Duration,
}

impl PgIdempotencyStore {
    #[must_use]
    pub const fn new(pool: PgPool, acquire_timeout: Duration) -> Self {
        Self {
            pool,
            acquire_timeout,
        }
    }

    async fn conn(&self) -> Result<PgConn, StoreError> {
        self.pool
            .get()
            .await
            .map_err(|e| from_pool(e, self.acquire_timeout))
    }
}

#[derive(QueryableByName)]
struct Row {
    /// Whether this statement took the key (new, expired or abandoned before).
    #[diesel(sql_type = diesel::sql_types::Bool)]
    taken: bool,
    #[diesel(sql_type = Uuid)]
    claim_token: uuid::Uuid,
    #[diesel(sql_type = Binary)]
    request_hash: Vec<u8>,
    #[diesel(sql_type = Nullable<SmallInt>)]
    status: Option<i16>,
    #[diesel(sql_type = Nullable<Jsonb>)]
    response_headers: Option<serde_json::Value>,
    #[diesel(sql_type = Nullable<Binary>)]
    response_body: Option<Vec<u8>>,
}

impl IdempotencyStore for PgIdempotencyStore {
    async fn claim(
        &self,
        scope: &str,
        key: &str,
        request_hash: &[u8],
        now: DateTime<Utc>,
        expires_before: DateTime<Utc>,
        abandoned_before: DateTime<Utc>,
    ) -> Result<Claim, StoreError> {
        let mut conn = self.conn().await?;
        // Insert, or take over an expired or abandoned entry; otherwise leave the row as
        // it is and report it. `xmax = 0` tells a fresh insert from an update.
        let row: Option<Row> = diesel::sql_query(
            "INSERT INTO idempotency_keys AS k (scope, key, request_hash, created_at)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (scope, key) DO UPDATE
                 SET request_hash = EXCLUDED.request_hash, created_at = EXCLUDED.created_at,
                     claim_token = gen_random_uuid(), status = NULL, response_headers = NULL, response_body = NULL, completed_at = NULL
                 WHERE k.created_at < $5 OR (k.status IS NULL AND k.created_at < $6)
             RETURNING true AS taken, claim_token, request_hash, status, response_headers, response_body",
        )
        .bind::<Text, _>(scope)
        .bind::<Text, _>(key)
        .bind::<Binary, _>(request_hash)
        .bind::<Timestamptz, _>(now)
        .bind::<Timestamptz, _>(expires_before)
        .bind::<Timestamptz, _>(abandoned_before)
        .get_result(&mut conn)
        .await
        .optional()
        .map_err(from_diesel)?;
        if let Some(row) = row.filter(|r| r.taken) {
            return Ok(Claim::Fresh(ClaimToken(row.claim_token)));
        }
        let existing: Option<Row> = diesel::sql_query(
            "SELECT false AS taken, claim_token, request_hash, status, response_headers, response_body
             FROM idempotency_keys WHERE scope = $1 AND key = $2",
        )
        .bind::<Text, _>(scope)
        .bind::<Text, _>(key)
        .get_result(&mut conn)
        .await
        .optional()
        .map_err(from_diesel)?;
        // Deleted in between (released): the caller may retry as new.
        let Some(existing) = existing else {
            return Ok(Claim::InFlight);
        };
        if existing.request_hash != request_hash {
            return Ok(Claim::Mismatch);
        }
        let Some(status) = existing.status else {
            return Ok(Claim::InFlight);
        };
        let headers: Vec<(String, String)> = existing
            .response_headers
            .and_then(|h| serde_json::from_value(h).ok())
            .unwrap_or_default();
        Ok(Claim::Replay(StoredResponse {
            status: u16::try_from(status).unwrap_or(500),
            headers,
            body: existing.response_body.unwrap_or_default(),
        }))
    }

    async fn complete(
        &self,
        scope: &str,
        key: &str,
        token: ClaimToken,
        response: &StoredResponse,
    ) -> Result<bool, StoreError> {
        let mut conn = self.conn().await?;
        let stored = diesel::sql_query(
            "UPDATE idempotency_keys SET status = $4, response_headers = $5, response_body = $6, completed_at = now()
             WHERE scope = $1 AND key = $2 AND claim_token = $3 AND status IS NULL",
        )
        .bind::<Text, _>(scope)
        .bind::<Text, _>(key)
        .bind::<Uuid, _>(token.0)
        .bind::<SmallInt, _>(i16::try_from(response.status).unwrap_or(500))
        .bind::<Jsonb, _>(serde_json::to_value(&response.headers).unwrap_or_default())
        .bind::<Binary, _>(response.body.as_slice())
        .execute(&mut conn)
        .await
        .map_err(from_diesel)?;
        Ok(stored == 1)
    }

    async fn release(&self, scope: &str, key: &str, token: ClaimToken) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        diesel::sql_query(
            "DELETE FROM idempotency_keys
             WHERE scope = $1 AND key = $2 AND claim_token = $3 AND status IS NULL",
        )
        .bind::<Text, _>(scope)
        .bind::<Text, _>(key)
        .bind::<Uuid, _>(token.0)
        .execute(&mut conn)
        .await
        .map_err(from_diesel)?;
        Ok(())
    }
}
