//! Gives committed events their `seq`, the cursor every outbox reader follows.
//!
//! Writers insert events without a number and without any lock (see `outbox::append`);
//! only an import chunk numbers its own, under the same lock (`repo::import_chunk`,
//! migration `000015`).
//! The SQL function `events_number` numbers committed rows, one pass at a time
//! across all instances, so a number is never visible before a smaller one (migration
//! `000013`). This task runs those passes: right after a transaction commits on one of
//! the pool's connections (the [`CommitBell`] rings), and every [`SWEEP`] for rows that
//! another instance or a hand-written transaction committed.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use diesel::connection::{Instrumentation, InstrumentationEvent};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use tokio::sync::Notify;

use crate::error::from_diesel;
use crate::pool::Db;
use crate::statement::{Bind, Statement};

/// Rows numbered per pass: one pass commits before the next starts, so a large import
/// is numbered in several short transactions.
pub const BATCH: i32 = 5_000;
/// How often the task looks for rows that no local commit announced.
pub const SWEEP: Duration = Duration::from_millis(500);
/// How long the task waits after a pass that numbered more than one event before it
/// starts the next. A pass is a transaction of its own with the global lock, a commit
/// and two statement triggers, so its cost per event falls with its size (measured on
/// this machine: 956 µs per event in passes of one, 120 in passes of ten, 49 in passes
/// of fifty); without a pause, a steady stream of creates was numbered a few events per
/// pass: the pause gave 16 % more creates per second at 8 connections
/// (docs/benchmarks.md, twenty-second pass). Events that come one at a time (a pass
/// finds one) are numbered at once, as is the first after a quiet moment, and feed
/// readers number what they need themselves (`repo::events`); live listeners hear of a
/// busy moment's events up to this much later.
pub const PACE: Duration = Duration::from_millis(10);

/// Rings after each committed top-level transaction of the pool's connections.
#[derive(Clone, Debug, Default)]
pub struct CommitBell(Arc<Notify>);

impl CommitBell {
    /// Several rings before the numberer wakes count as one: one pass numbers them all.
    pub fn ring(&self) {
        self.0.notify_one();
    }

    pub async fn rung(&self) {
        self.0.notified().await;
    }

    /// Diesel instrumentation for one connection that rings this bell on its commits,
    /// and passes every event on to the process's default instrumentation, if one was
    /// set (`diesel::connection::set_default_instrumentation`), which it replaces.
    #[must_use]
    pub fn watch(&self) -> CommitWatch {
        CommitWatch {
            bell: self.clone(),
            committing: false,
            next: diesel::connection::get_default_instrumentation(),
        }
    }
}

/// Sees `COMMIT` go out (the transaction manager's event) and come back without error
/// (the query's finish), which is the first moment the writer's rows are visible.
pub struct CommitWatch {
    bell: CommitBell,
    committing: bool,
    next: Option<Box<dyn Instrumentation>>,
}

impl Instrumentation for CommitWatch {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        match &event {
            InstrumentationEvent::CommitTransaction { depth, .. } => {
                // A deeper level is a savepoint release, not a commit.
                self.committing = *depth == NonZeroU32::MIN;
            }
            InstrumentationEvent::FinishQuery { error, .. } if self.committing => {
                self.committing = false;
                if error.is_none() {
                    self.bell.ring();
                }
            }
            _ => {}
        }
        if let Some(next) = self.next.as_mut() {
            next.on_connection_event(event);
        }
    }
}

#[derive(diesel::QueryableByName)]
struct Numbered {
    #[diesel(sql_type = diesel::sql_types::Integer)]
    n: i32,
}

/// Runs one numbering pass on `conn`, which must not be inside a transaction (the pass
/// is its own transaction). Returns how many events it numbered.
///
/// # Errors
/// Database failures; nothing is numbered then.
pub async fn number_pass(
    conn: &mut AsyncPgConnection,
    batch: i32,
) -> Result<i32, diesel::result::Error> {
    // Prepared once per connection: a pass follows nearly every commit.
    let mut pass = Statement::default();
    pass.push("SELECT events_number(")
        .bind(Bind::Int(batch))
        .push(") AS n");
    let row: Numbered = pass.prepared().get_result(conn).await?;
    Ok(row.n)
}

/// Numbers every committed event that has no number yet, on `conn` (outside any
/// transaction); returns how many.
///
/// # Errors
/// Database failures.
pub async fn number_pending(conn: &mut AsyncPgConnection) -> Result<u64, diesel::result::Error> {
    let mut total = 0_u64;
    loop {
        let n = number_pass(conn, BATCH).await?;
        total += u64::try_from(n).unwrap_or(0);
        if n < BATCH {
            return Ok(total);
        }
    }
}

/// [`number_pending`] on a pool connection.
///
/// # Errors
/// Storage failures.
pub async fn number_all(db: &Db) -> Result<u64, nexus_ports::StoreError> {
    let mut conn = db.conn().await?;
    number_pending(&mut conn).await.map_err(from_diesel)
}

/// The instance's numbering task, pausing `pace` after each pass that numbered more
/// than one event ([`PACE`] in the server): never returns.
pub async fn run(db: Db, bell: CommitBell, pace: Duration) {
    loop {
        match number_all(&db).await {
            Err(e) => {
                tracing::warn!(error = %e, "numbering events failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            // Commits during the pause ring the bell, which keeps one ring: the next
            // pass starts right after it and numbers them together.
            Ok(n) if n > 1 && !pace.is_zero() => tokio::time::sleep(pace).await,
            Ok(_) => {}
        }
        tokio::select! {
            () = bell.rung() => {}
            () = tokio::time::sleep(SWEEP) => {}
        }
    }
}
