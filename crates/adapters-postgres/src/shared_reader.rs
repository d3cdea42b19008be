//! One pooled connection that short reads share instead of each checking one out.
//!
//! A lookup by key or a page in index order costs PostgreSQL a few microseconds of
//! work and much more in waking a backend, reading its socket and writing the answer.
//! Reads issued together on one connection are pipelined (diesel-async sends each as
//! soon as it is issued, through a shared reference): the backend finds several in one
//! read, answers them in one pass, and the driver reads several answers per wake-up.
//! Only statements that finish in well under a millisecond belong here; a slow one
//! would hold up every read queued behind it. Transactions never run on it.
//!
//! Its statements are prepared once and planned once: the connection runs with
//! `plan_cache_mode = force_generic_plan`. Left to choose, PostgreSQL compares a generic
//! plan priced for an average organization with one priced for the organization at hand,
//! and for a large one (a page of the newest among a million contacts: 39 against 8)
//! keeps planning every execution anew, which cost it more than the page itself. The
//! generic plans walk the same indexes (docs/perf/contacts.md, sections 18 to 22). So
//! that no other request inherits the setting, the connection never goes back to the
//! pool: it is closed when it is let go.

use std::ops::Deref;
use std::sync::{Arc, Weak};

use diesel::QueryResult;
use diesel_async::{AsyncPgConnection, SimpleAsyncConnection};
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
    slot: Mutex<Option<Arc<SharedConn>>>,
}

/// The connection a read runs on: the shared one, in its own mode and closed (never
/// returned to the pool) when the last read on it ends; or, past [`MAX_IN_FLIGHT`], a
/// pooled one as any other request's, back to the pool when the read ends.
pub struct SharedConn {
    conn: Option<PgConn>,
    shared: bool,
}

impl SharedConn {
    /// Whether this is the shared connection (not an overflow read's own).
    #[must_use]
    pub const fn is_shared(&self) -> bool {
        self.shared
    }
}

impl Deref for SharedConn {
    type Target = AsyncPgConnection;

    fn deref(&self) -> &AsyncPgConnection {
        // Only `Drop` takes it out.
        self.conn
            .as_deref()
            .unwrap_or_else(|| unreachable!("a read's connection is held until dropped"))
    }
}

impl Drop for SharedConn {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take()
            && self.shared
        {
            retire(conn);
        }
    }
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
    pub async fn conn(&self) -> Result<Arc<SharedConn>, StoreError> {
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
                Ok(Arc::new(SharedConn {
                    conn: Some(self.db.conn().await?),
                    shared: false,
                }))
            }
            None => {
                let conn = self.checkout().await?;
                *held = Some(conn.clone());
                Ok(conn)
            }
        }
    }

    async fn checkout(&self) -> Result<Arc<SharedConn>, StoreError> {
        let mut conn = self.db.conn().await?;
        // Wrapped before the outcome is looked at, so that a failure closes it too.
        let set = conn
            .batch_execute("SET plan_cache_mode = force_generic_plan")
            .await;
        let conn = SharedConn {
            conn: Some(conn),
            shared: true,
        };
        set.map_err(from_diesel)?;
        Ok(Arc::new(conn))
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
        read: impl Fn(Arc<SharedConn>) -> BoxFuture<'static, QueryResult<T>>,
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
            // Out of the slot, and closed when the last read on it ends (`SharedConn`).
            drop(self.take(&shared).await);
            if failed_once {
                return Err(from_diesel(e));
            }
            failed_once = true;
        }
    }

    /// Takes `conn` out of the slot if it is still the one shared.
    async fn take(&self, conn: &Weak<SharedConn>) -> Option<Arc<SharedConn>> {
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
