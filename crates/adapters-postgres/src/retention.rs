//! Retention of the outbox, the audit log and the remembered idempotent responses: batched
//! deletes of what is older than its configured age, run on a schedule by the app.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use nexus_ports::StoreError;

use crate::error::from_diesel;
use crate::pool::Db;

/// Retention: removes events older than `days`, in batches; returns how many.
///
/// The newest numbered event always stays: positions continue from the highest one
/// stored, and an emptied outbox would start them again at 1, below the `Last-Event-ID`
/// and cursors that clients hold.
///
/// # Errors
/// Infrastructure failures.
pub async fn purge_events(db: &Db, days: u32, batch: i64) -> Result<u64, StoreError> {
    let cutoff = chrono::Utc::now() - chrono::Duration::days(i64::from(days));
    delete_in_batches(
        db,
        "DELETE FROM events WHERE (organization_id, id) IN \
         (SELECT organization_id, id FROM events WHERE occurred_at < $1 AND seq IS NOT NULL \
            AND seq < (SELECT max(seq) FROM events) LIMIT $2)",
        cutoff,
        batch,
    )
    .await
}

/// Runs `delete` (`$1` the cutoff, `$2` the batch size) until a batch removes fewer
/// rows than `batch`; returns how many went in all.
async fn delete_in_batches(
    db: &Db,
    delete: &'static str,
    cutoff: chrono::DateTime<chrono::Utc>,
    batch: i64,
) -> Result<u64, StoreError> {
    let mut conn = db.conn().await?;
    let mut total = 0_u64;
    loop {
        let n = diesel::sql_query(delete)
            .bind::<diesel::sql_types::Timestamptz, _>(cutoff)
            .bind::<diesel::sql_types::BigInt, _>(batch)
            .execute(&mut conn)
            .await
            .map_err(from_diesel)?;
        total += n as u64;
        if (n as i64) < batch {
            return Ok(total);
        }
    }
}

/// Retention: removes audit entries older than `days` through `audit_log_purge`, the one
/// sanctioned way past the table's append-only trigger; returns how many.
///
/// # Errors
/// Infrastructure failures.
pub async fn purge_audit(db: &Db, days: u32, batch: i32) -> Result<u64, StoreError> {
    #[derive(QueryableByName)]
    struct Removed {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        removed: i64,
    }
    let mut conn = db.conn().await?;
    let cutoff = chrono::Utc::now() - chrono::Duration::days(i64::from(days));
    let mut total = 0_u64;
    loop {
        let r: Removed = diesel::sql_query("SELECT audit_log_purge($1, $2) AS removed")
            .bind::<diesel::sql_types::Timestamptz, _>(cutoff)
            .bind::<diesel::sql_types::Integer, _>(batch)
            .get_result(&mut conn)
            .await
            .map_err(from_diesel)?;
        total += r.removed.unsigned_abs();
        if r.removed < i64::from(batch) {
            return Ok(total);
        }
    }
}

/// Retention: removes remembered `Idempotency-Key` responses claimed more than `ttl` ago
/// (past it a key is claimed afresh anyway), in batches; returns how many. Their bodies
/// hold contact data, which must not outlive the contacts' own purge.
///
/// # Errors
/// Infrastructure failures.
pub async fn purge_idempotency_keys(
    db: &Db,
    ttl: std::time::Duration,
    batch: i64,
) -> Result<u64, StoreError> {
    let cutoff = chrono::Utc::now()
        - chrono::Duration::from_std(ttl).map_err(|e| StoreError::Other(e.into()))?;
    delete_in_batches(
        db,
        "DELETE FROM idempotency_keys WHERE (scope, key) IN \
         (SELECT scope, key FROM idempotency_keys WHERE created_at < $1 LIMIT $2)",
        cutoff,
        batch,
    )
    .await
}
