//! An export's pages, read in one `REPEATABLE READ` snapshot on a connection of its own:
//! keyset pages read one after another otherwise each see the database as it is then,
//! and a contact edited meanwhile (sorted by `updatedAt`, say) could move behind the
//! cursor and be skipped, or ahead of it and be read twice.

use std::future::Future;
use std::pin::Pin;

use diesel::{ExpressionMethods, QueryDsl};
use diesel_async::{RunQueryDsl, SimpleAsyncConnection};
use nexus_domain::OrgId;
use nexus_domain::contact::Contact;
use nexus_ports::StoreError;
use nexus_ports::contacts::{ContactQuery, ContactSnapshot, SNAPSHOT_IDLE};

use super::{page_of, rows_on};
use crate::error::from_diesel;
use crate::pool::{PgConn, retire};
use crate::schema::custom_field_definitions as defs;

pub(super) struct Snapshot {
    /// In its read-only transaction until the last page; `None` once committed (and
    /// back in the pool) or retired.
    conn: Option<PgConn>,
    org: OrgId,
    query: ContactQuery,
    keys: Vec<String>,
}

impl Snapshot {
    pub(super) async fn begin(
        conn: PgConn,
        org: OrgId,
        query: ContactQuery,
    ) -> Result<Self, StoreError> {
        // Owned by the snapshot before its `BEGIN`: dropped on any error, or when the
        // caller is cancelled, it retires the connection, which must not go back to the
        // pool inside this transaction (the pool cannot see a `BEGIN` sent as text).
        let mut snapshot = Self {
            conn: Some(conn),
            org,
            query,
            keys: Vec::new(),
        };
        snapshot.keys = snapshot.settle().await?;
        Ok(snapshot)
    }

    /// The transaction, its idle limit, then the custom field keys it sees.
    async fn settle(&mut self) -> Result<Vec<String>, StoreError> {
        let Some(conn) = self.conn.as_mut() else {
            return Ok(Vec::new());
        };
        conn.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .await
            .map_err(from_diesel)?;
        // A backstop for the reader's own watch (the HTTP export gives up an unread
        // snapshot after `SNAPSHOT_IDLE`): PostgreSQL ends a session left idle longer.
        conn.batch_execute(&format!(
            "SET LOCAL idle_in_transaction_session_timeout = '{}s'",
            SNAPSHOT_IDLE.as_secs() + 30
        ))
        .await
        .map_err(from_diesel)?;
        Self::keys(conn, self.org).await
    }

    /// Read inside the snapshot: a definition created (and filled in) or deleted while
    /// the export begins is in both the columns and the rows, or in neither.
    async fn keys(conn: &mut PgConn, org: OrgId) -> Result<Vec<String>, StoreError> {
        defs::table
            .filter(defs::organization_id.eq(org.as_uuid()))
            .order((defs::created_at.asc(), defs::id.asc()))
            .select(defs::key)
            .load(conn)
            .await
            .map_err(from_diesel)
    }

    async fn page(&mut self) -> Result<Vec<Contact>, StoreError> {
        let outcome = self.read().await;
        if outcome.is_err()
            && let Some(conn) = self.conn.take()
        {
            // A failed statement leaves the transaction aborted: never back to the pool.
            retire(conn);
        }
        outcome
    }

    async fn read(&mut self) -> Result<Vec<Contact>, StoreError> {
        let Some(conn) = self.conn.as_mut() else {
            return Ok(Vec::new());
        };
        let rows = rows_on(conn, self.org, &self.query).await?;
        let (items, next) = page_of(rows, &self.query)?;
        if next.is_some() {
            self.query.after = next;
        } else {
            conn.batch_execute("COMMIT").await.map_err(from_diesel)?;
            // Dropped out of its transaction: back to the pool.
            self.conn = None;
        }
        Ok(items)
    }
}

impl ContactSnapshot for Snapshot {
    fn custom_field_keys(&self) -> &[String] {
        &self.keys
    }

    fn next_page(
        &mut self,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<Contact>, StoreError>> + Send + '_>> {
        Box::pin(self.page())
    }
}

impl Drop for Snapshot {
    fn drop(&mut self) {
        // Left before its last page (the client went away): still in its transaction,
        // so it is closed rather than pooled.
        if let Some(conn) = self.conn.take() {
            retire(conn);
        }
    }
}
