//! One pooled connection that short reads share instead of each checking one out.
//!
//! A lookup by key or a page in index order costs PostgreSQL a few microseconds of
//! work and much more in waking a backend, reading its socket and writing the answer.
//! Reads issued together on one connection are pipelined (diesel-async sends each as
//! soon as it is issued, through a shared reference): the backend finds several in one
//! read, answers them in one pass, and the driver reads several answers per wake-up.
//! Only statements that finish in well under a millisecond belong here; a slow one
//! would hold up every read queued behind it. Transactions never run on it.

use std::sync::{Arc, Weak};

use diesel::QueryResult;
use futures_util::future::BoxFuture;
use nexus_ports::StoreError;
use tokio::sync::Mutex;

use crate::error::from_diesel;
use crate::pool::{Db, PgConn, retire};

/// Reads in flight on the shared connection before another takes a pooled one instead.
pub const MAX_IN_FLIGHT: usize = 32;

/// The shared connection, taken from `db`'s pool on first use; a read that fails on it
/// closes it, and the next read takes a new one, so a broken one is not kept.
pub struct SharedReader {
    db: Db,
    slot: Mutex<Option<Arc<PgConn>>>,
}

impl SharedReader {
    #[must_use]
    pub fn new(db: Db) -> Self {
        Self {
            db,
            slot: Mutex::new(None),
        }
    }

    /// The shared connection, checked out of the pool if none is held.
    ///
    /// # Errors
    /// The pool's: exhausted or database unavailable.
    pub async fn conn(&self) -> Result<Arc<PgConn>, StoreError> {
        // Held while the first connection is checked out, so a burst of first reads
        // waits for it instead of each taking a connection of its own.
        let mut held = self.slot.lock().await;
        match held.as_ref() {
            // The count is the slot's reference plus one per read in flight.
            Some(conn) if Arc::strong_count(conn) - 1 < MAX_IN_FLIGHT => Ok(conn.clone()),
            // Beyond `MAX_IN_FLIGHT` reads, one more waits on a pooled connection of its
            // own, as every read did before: under overload the pool's limit and its
            // acquire timeout (503) apply again, instead of an ever longer queue.
            Some(_) => {
                drop(held);
                self.checkout().await
            }
            None => {
                let conn = self.checkout().await?;
                *held = Some(conn.clone());
                Ok(conn)
            }
        }
    }

    async fn checkout(&self) -> Result<Arc<PgConn>, StoreError> {
        Ok(Arc::new(self.db.conn().await?))
    }

    /// Runs `read` on the shared connection. A read that fails drops the connection
    /// and runs once more on a new one. The connection is held between requests, so
    /// nothing checks it as a pooled one is checked at checkout; when the database has
    /// restarted or ended the backend meanwhile, the failure is only seen here, as a
    /// lost connection or as the backend's last words ("terminating connection due to
    /// administrator command", which diesel reports without its SQLSTATE, so it cannot
    /// be told from other failures). Reading twice is harmless.
    ///
    /// # Errors
    /// The pool's, or the second attempt's.
    pub async fn read<T>(
        &self,
        read: impl Fn(Arc<PgConn>) -> BoxFuture<'static, QueryResult<T>>,
    ) -> Result<T, StoreError> {
        let mut failed_once = false;
        loop {
            let conn = self.conn().await?;
            // Weak: a second strong reference would count as another read in flight.
            let shared = Arc::downgrade(&conn);
            let result = read(conn).await;
            let Err(e) = result else {
                return result.map_err(from_diesel);
            };
            // Closed rather than put back in the pool, where the next checkout could get
            // it again before its driver has seen the socket close. When other reads
            // are still on it, the last one to end puts it back and the pool's recycling
            // discards it if it is closed by then.
            if let Some(conn) = self
                .take(&shared)
                .await
                .and_then(|c| Arc::try_unwrap(c).ok())
            {
                retire(conn);
            }
            if failed_once {
                return Err(from_diesel(e));
            }
            failed_once = true;
        }
    }

    /// Takes `conn` out of the slot if it is still the one shared.
    async fn take(&self, conn: &Weak<PgConn>) -> Option<Arc<PgConn>> {
        let mut held = self.slot.lock().await;
        if held
            .as_ref()
            .is_some_and(|c| std::ptr::eq(Arc::as_ptr(c), conn.as_ptr()))
        {
            held.take()
        } else {
            None
        }
    }
}
