//! One pooled connection that short reads share instead of each checking one out.
//!
//! A lookup by key or a page in index order costs PostgreSQL a few microseconds of
//! work and much more in waking a backend, reading its socket and writing the answer.
//! Reads issued together on one connection are pipelined (diesel-async sends each as
//! soon as it is issued, through a shared reference): the backend finds several in one
//! read, answers them in one pass, and the driver reads several answers per wake-up.
//! Only statements that finish in well under a millisecond belong here; a slow one
//! would hold up every read queued behind it. Transactions never run on it.

use std::sync::Arc;
use std::time::Duration;

use nexus_ports::StoreError;
use tokio::sync::Mutex;

use crate::error::from_pool;
use crate::pool::{PgConn, PgPool};

/// Reads in flight on the shared connection before another takes a pooled one instead.
pub const MAX_IN_FLIGHT: usize = 32;

/// The shared connection, taken from `pool` on first use and given back (and replaced
/// on the next read) after a failure, so a broken one is not kept.
pub struct SharedReader {
    pool: PgPool,
    acquire_timeout: Duration,
    slot: Mutex<Option<Arc<PgConn>>>,
}

impl SharedReader {
    #[must_use]
    pub fn new(pool: PgPool, acquire_timeout: Duration) -> Self {
        Self {
            pool,
            acquire_timeout,
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
        let conn = self
            .pool
            .get()
            .await
            .map_err(|e| from_pool(e, self.acquire_timeout))?;
        Ok(Arc::new(conn))
    }

    /// Stops sharing `conn` after a failed read: it returns to the pool when its
    /// in-flight reads end, and the pool's recycling drops it if it is broken.
    pub async fn forget(&self, conn: &Arc<PgConn>) {
        let mut held = self.slot.lock().await;
        if held.as_ref().is_some_and(|c| Arc::ptr_eq(c, conn)) {
            *held = None;
        }
    }
}
