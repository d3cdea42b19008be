use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::QueryableByName;
use diesel::sql_types::{Integer, Text, Timestamptz};
use diesel_async::RunQueryDsl;
use nexus_ports::StoreError;
use nexus_ports::security::{RateDecision, RateLimiter};

use crate::error::from_diesel;
use crate::pool::Db;

/// Fixed windows in one table, so every app instance sees the same counts.
#[derive(Clone)]
pub struct PgRateLimiter {
    db: Db,
}

impl PgRateLimiter {
    #[must_use]
    pub const fn new(db: Db) -> Self {
        Self { db }
    }
}

#[derive(QueryableByName)]
struct Window {
    #[diesel(sql_type = Integer)]
    count: i32,
    #[diesel(sql_type = Timestamptz)]
    window_start: DateTime<Utc>,
    #[diesel(sql_type = Timestamptz)]
    now: DateTime<Utc>,
}

fn decide(
    w: &Window,
    limit: u32,
    window: Duration,
    over: impl Fn(u32, u32) -> bool,
) -> RateDecision {
    let count = u32::try_from(w.count).unwrap_or(0);
    let ends = w.window_start + chrono::Duration::from_std(window).unwrap_or(chrono::Duration::MAX);
    if over(count, limit) && ends > w.now {
        let left = (ends - w.now).to_std().unwrap_or_default();
        // Round up: "retry after 0 seconds" would invite an immediate retry.
        RateDecision::Limited {
            retry_after: Duration::from_secs(left.as_secs() + 1),
        }
    } else {
        RateDecision::Allowed
    }
}

impl RateLimiter for PgRateLimiter {
    async fn hit(
        &self,
        key: &str,
        limit: u32,
        window: Duration,
    ) -> Result<RateDecision, StoreError> {
        let mut conn = self.db.conn().await?;
        let w: Window = diesel::sql_query(
            "INSERT INTO rate_limits AS r (key, window_start, count) VALUES ($1, now(), 1)
             ON CONFLICT (key) DO UPDATE SET
               count = CASE WHEN r.window_start <= now() - make_interval(secs => $2) THEN 1 ELSE r.count + 1 END,
               window_start = CASE WHEN r.window_start <= now() - make_interval(secs => $2) THEN now() ELSE r.window_start END
             RETURNING count, window_start, now() AS now",
        )
        .bind::<Text, _>(key)
        .bind::<diesel::sql_types::Double, _>(window.as_secs_f64())
        .get_result(&mut conn)
        .await
        .map_err(from_diesel)?;
        Ok(decide(&w, limit, window, |count, limit| count > limit))
    }

    async fn peek(
        &self,
        key: &str,
        limit: u32,
        window: Duration,
    ) -> Result<RateDecision, StoreError> {
        let mut conn = self.db.conn().await?;
        let w: Option<Window> = diesel::sql_query(
            "SELECT count, window_start, now() AS now FROM rate_limits WHERE key = $1",
        )
        .bind::<Text, _>(key)
        .get_result(&mut conn)
        .await
        .map(Some)
        .or_else(|e| {
            if e == diesel::result::Error::NotFound {
                Ok(None)
            } else {
                Err(e)
            }
        })
        .map_err(from_diesel)?;
        Ok(w.map_or(RateDecision::Allowed, |w| {
            decide(&w, limit, window, |count, limit| count >= limit)
        }))
    }

    async fn reset(&self, key: &str) -> Result<(), StoreError> {
        let mut conn = self.db.conn().await?;
        diesel::sql_query("DELETE FROM rate_limits WHERE key = $1")
            .bind::<Text, _>(key)
            .execute(&mut conn)
            .await
            .map_err(from_diesel)?;
        Ok(())
    }
}
