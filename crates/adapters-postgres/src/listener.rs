//! One listening connection per app instance (`nexus_events` for numbered events,
//! `nexus_deliveries` for queued webhook deliveries), and one shared reader that fetches
//! each new outbox row once and fans it out to every subscriber in the process.
//!
//! Streams therefore cost a broadcast receiver each, not a connection or a poll: however
//! many are open, the database sees one listening connection and one reader per instance.

use std::sync::Arc;
use std::time::Duration;

use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use futures_util::StreamExt;
use nexus_domain::StoredEvent;
use nexus_ports::events::{EventBus, EventLog, EventNotifier};
use tokio::sync::{broadcast, watch};

use crate::repo::events::PgEventLog;

/// The channel `events_published` (migration 000015) notifies on when events are numbered.
pub const CHANNEL: &str = "nexus_events";
/// The channel notified when deliveries were queued (fan-out, ping or redelivery).
pub const DELIVERIES_CHANNEL: &str = "nexus_deliveries";
/// Rows the shared reader fetches per query.
const PAGE: i64 = 500;
/// Without a notification for this long, the listener checks its connection.
const KEEPALIVE: Duration = Duration::from_secs(30);

/// The instance's wake-up signal and event fan-out.
#[derive(Clone)]
pub struct PgEventHub {
    wake: watch::Receiver<i64>,
    /// Bumped when deliveries were queued: webhook workers wait on this, not on every
    /// event (most events match no subscription, and four workers waking for each
    /// numbering pass halved the write throughput).
    deliveries: watch::Receiver<u64>,
    bus: broadcast::Sender<Arc<StoredEvent>>,
    tasks: Arc<Tasks>,
}

struct Tasks(Vec<tokio::task::JoinHandle<()>>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

impl PgEventHub {
    /// Starts the listener (its own connection to `url`, outside the pool) and the shared
    /// reader. `capacity` is how many events a slow subscriber may fall behind before it
    /// is told it lagged (and re-reads the outbox).
    #[must_use]
    pub fn start(url: String, log: PgEventLog, capacity: usize) -> Self {
        let (wake_tx, wake) = watch::channel(0_i64);
        let (deliveries_tx, deliveries) = watch::channel(0_u64);
        let (bus, _) = broadcast::channel(capacity.max(16));
        let channels = &[CHANNEL, DELIVERIES_CHANNEL];
        let listener = tokio::spawn(listen_channel(url, channels, move |signal| match signal {
            // Notifications sent while we were not listening are gone: wake the reader so
            // it re-reads the outbox from its cursor, and the workers.
            Signal::Listening => {
                wake_tx.send_modify(|_| {});
                deliveries_tx.send_modify(|n| *n += 1);
            }
            Signal::Notified { channel, .. } if channel == DELIVERIES_CHANNEL => {
                deliveries_tx.send_modify(|n| *n += 1);
            }
            Signal::Notified { payload, .. } => {
                let seq = seq_of(payload).unwrap_or(0);
                wake_tx.send_modify(|v| *v = (*v).max(seq));
            }
            Signal::Lost => {}
        }));
        let reader = tokio::spawn(read(log, wake.clone(), bus.clone()));
        Self {
            wake,
            deliveries,
            bus,
            tasks: Arc::new(Tasks(vec![listener, reader])),
        }
    }

    /// Changes when webhook deliveries were queued (in any instance).
    #[must_use]
    pub fn deliveries_queued(&self) -> watch::Receiver<u64> {
        self.deliveries.clone()
    }

    /// Stops the listener and the reader (also when the last clone is dropped).
    pub fn stop(&self) {
        for t in &self.tasks.0 {
            t.abort();
        }
    }
}

impl EventNotifier for PgEventHub {
    fn subscribe(&self) -> watch::Receiver<i64> {
        self.wake.clone()
    }
}

impl EventBus for PgEventHub {
    fn subscribe(&self) -> broadcast::Receiver<Arc<StoredEvent>> {
        self.bus.subscribe()
    }
}

/// The `seq` of a notification payload `org:seq`.
fn seq_of(payload: &str) -> Option<i64> {
    payload.rsplit_once(':').and_then(|(_, s)| s.parse().ok())
}

/// What a channel listener reports to its owner.
pub(crate) enum Signal<'a> {
    /// Listening (again): whatever was notified while not listening is lost.
    Listening,
    Notified {
        channel: &'a str,
        payload: &'a str,
    },
    /// The connection failed; reconnecting.
    Lost,
}

/// Holds `LISTEN` on each of `channels` on its own connection for as long as the task
/// runs, reconnecting with backoff, and reports each notification and each change of
/// state.
pub(crate) async fn listen_channel(
    url: String,
    channels: &'static [&'static str],
    mut on: impl FnMut(Signal<'_>) + Send,
) {
    let mut backoff = Duration::from_millis(200);
    loop {
        match listen_once(&url, channels, &mut on).await {
            Ok(()) => backoff = Duration::from_millis(200),
            Err(e) => {
                tracing::warn!(error = %e, ?channels, "listener connection lost; reconnecting");
            }
        }
        on(Signal::Lost);
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}

async fn listen_once(
    url: &str,
    channels: &'static [&'static str],
    on: &mut (impl FnMut(Signal<'_>) + Send),
) -> anyhow::Result<()> {
    let mut conn = AsyncPgConnection::establish(url).await?;
    let listen: String = channels.iter().map(|c| format!("; LISTEN {c}")).collect();
    conn.batch_execute(&format!("SET application_name = 'nexus-listener'{listen}"))
        .await?;
    on(Signal::Listening);
    loop {
        {
            let mut notifications = std::pin::pin!(conn.notifications_stream());
            loop {
                match tokio::time::timeout(KEEPALIVE, notifications.next()).await {
                    Ok(Some(Ok(n))) => on(Signal::Notified {
                        channel: &n.channel,
                        payload: &n.payload,
                    }),
                    Ok(Some(Err(e))) => return Err(e.into()),
                    Ok(None) => anyhow::bail!("notification stream ended"),
                    Err(_) => break,
                }
            }
        }
        // Quiet for a while: make sure the connection still stands (the stream of a dead
        // connection just stays pending). Buffered notifications are kept meanwhile.
        conn.batch_execute("SELECT 1").await?;
    }
}

async fn read(
    log: PgEventLog,
    mut wake: watch::Receiver<i64>,
    bus: broadcast::Sender<Arc<StoredEvent>>,
) {
    let mut cursor = loop {
        match log.head(None).await {
            Ok(head) => break head,
            Err(e) => {
                tracing::warn!(error = %e, "event reader cannot read the outbox head; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    loop {
        if wake.changed().await.is_err() {
            return;
        }
        if bus.receiver_count() == 0 {
            // Nobody streams from this instance: nothing to fetch. A stream that opens
            // later subscribes before it reads the log's head or replays, so it reads
            // what this skips itself (everything up to the notified `seq` committed
            // before it subscribed).
            cursor = cursor.max(*wake.borrow_and_update());
            continue;
        }
        loop {
            let rows = match log.since(cursor, PAGE).await {
                Ok(rows) => rows,
                Err(e) => {
                    tracing::warn!(error = %e, "event reader failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            let full = rows.len() as i64 == PAGE;
            for row in rows {
                cursor = row.seq;
                // No subscriber is not an error: nobody is streaming right now.
                let _ = bus.send(Arc::new(row));
            }
            if !full {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notification_payloads_carry_the_seq() {
        assert_eq!(seq_of("0190f0e0-0000-7000-8000-000000000000:42"), Some(42));
        assert_eq!(seq_of("garbage"), None);
    }
}
