//! An export's pages, read in one `REPEATABLE READ` snapshot on a connection of its own:
//! keyset pages read one after another otherwise each see the database as it is then,
//! and a contact edited meanwhile (sorted by `updatedAt`, say) could move behind the
//! cursor and be skipped, or ahead of it and be read twice.

use std::future::Future;
use std::pin::Pin;

use diesel_async::SimpleAsyncConnection;
use nexus_domain::OrgId;
use nexus_domain::contact::Contact;
use nexus_ports::StoreError;
use nexus_ports::contacts::{ContactQuery, ContactSnapshot};

use super::{page_of, rows_on};
use crate::error::from_diesel;
use crate::pool::{PgConn, retire};

pub(super) struct Snapshot {
    /// In its read-only transaction until the last page; `None` once committed (and
    /// back in the pool) or retired.
    conn: Option<PgConn>,
    org: OrgId,
    query: ContactQuery,
}

impl Snapshot {
    pub(super) async fn begin(
        mut conn: PgConn,
        org: OrgId,
        query: ContactQuery,
    ) -> Result<Self, StoreError> {
        // A client that stops reading leaves the transaction idle: past a minute,
        // PostgreSQL ends the session, the connection is retired, and the export's
        // stream is cut, rather than a connection and its snapshot held for good.
        conn.batch_execute(
            "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY; \
             SET LOCAL idle_in_transaction_session_timeout = '60s'",
        )
        .await
        .map_err(from_diesel)?;
        Ok(Self {
            conn: Some(conn),
            org,
            query,
        })
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
