//! The per-request session check, remembered for a few seconds.
//!
//! Every authenticated request asks whether its session is live and what role it holds.
//! Asking the database each time costs a round trip per request, as much as the request's
//! own work for a read. This cache answers repeated checks from memory, and stays exact
//! where it matters:
//! - only live sessions are remembered, never a refusal;
//! - a change made by this instance (logout, revocation, switching organization, a role
//!   change or removal) empties the cache before the change is reported done;
//! - a change made anywhere else (another instance, SQL by hand) reaches this instance by
//!   the `nexus_auth` notification that migration 000012's triggers send, which empties
//!   the cache within the notification's delay;
//! - while the listener is not connected, nothing is served from the cache (a lost
//!   notification cannot be told apart from none);
//! - an entry lives at most `ttl` and never past its session's expiry, which bounds the
//!   damage if a listener connection hangs without failing.
//!
//! A lookup that started before an invalidation must not be answered from what it read:
//! each entry carries the generation it was read under, an invalidation bumps the
//! generation, and only entries of the current generation are answered from. So an entry
//! stored just after an invalidation emptied the cache is never served.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use nexus_domain::Role;
use quick_cache::sync::Cache;
use uuid::Uuid;

use crate::listener::{Signal, listen_channel};

/// The channel migration 000012's triggers notify on.
pub const CHANNEL: &str = "nexus_auth";
/// Most sessions remembered at once.
const MAX_ENTRIES: usize = 50_000;

/// Session, user and organization, as the access token names them.
pub type SessionKey = (Uuid, Uuid, Uuid);

/// A cheap handle; clones share one cache.
#[derive(Clone)]
pub struct SessionCache {
    inner: Arc<Inner>,
}

struct Inner {
    ttl: Duration,
    /// Set while the listener holds its `LISTEN`; never set for a disabled cache.
    live: AtomicBool,
    generation: AtomicU64,
    entries: Cache<SessionKey, Entry>,
    listener: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(task) = self
            .listener
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            task.abort();
        }
    }
}

#[derive(Clone, Copy)]
struct Entry {
    role: Role,
    generation: u64,
    fresh_until: Instant,
}

/// What a lookup needs to store its result afterwards.
#[derive(Clone, Copy, Debug)]
pub struct Ticket(u64);

impl SessionCache {
    /// A cache that never answers: every check goes to the database.
    #[must_use]
    pub fn disabled() -> Self {
        Self::new(Duration::ZERO)
    }

    fn new(ttl: Duration) -> Self {
        Self {
            inner: Arc::new(Inner {
                ttl,
                live: AtomicBool::new(false),
                generation: AtomicU64::new(0),
                entries: Cache::new(MAX_ENTRIES),
                listener: Mutex::new(None),
            }),
        }
    }

    /// Starts the cache and its listener (its own connection to `url`). A zero `ttl`
    /// gives [`SessionCache::disabled`]. Needs a Tokio runtime.
    #[must_use]
    pub fn start(url: String, ttl: Duration) -> Self {
        if ttl.is_zero() {
            return Self::disabled();
        }
        let cache = Self::new(ttl);
        // The task holds only a weak reference, so dropping the last handle ends it.
        let weak = Arc::downgrade(&cache.inner);
        let task = tokio::spawn(listen_channel(url, &[CHANNEL], move |signal| {
            if let Some(inner) = weak.upgrade() {
                Self { inner }.on_signal(&signal);
            }
        }));
        *cache
            .inner
            .listener
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(task);
        cache
    }

    fn on_signal(&self, signal: &Signal<'_>) {
        match signal {
            // Anything may have changed while not listening.
            Signal::Listening => {
                self.invalidate();
                self.inner.live.store(true, Ordering::SeqCst);
            }
            Signal::Notified { .. } => self.invalidate(),
            Signal::Lost => {
                self.inner.live.store(false, Ordering::SeqCst);
                self.invalidate();
            }
        }
    }

    /// Whether answers may come from memory now.
    #[must_use]
    pub fn is_live(&self) -> bool {
        self.inner.live.load(Ordering::SeqCst)
    }

    /// The remembered role of a live session, if any.
    #[must_use]
    pub fn get(&self, key: &SessionKey) -> Option<Role> {
        if !self.is_live() {
            return None;
        }
        let generation = self.inner.generation.load(Ordering::SeqCst);
        self.inner
            .entries
            .get(key)
            .filter(|e| e.generation == generation && Instant::now() < e.fresh_until)
            .map(|e| e.role)
    }

    /// Taken before asking the database, handed back to [`SessionCache::put`].
    #[must_use]
    pub fn ticket(&self) -> Ticket {
        Ticket(self.inner.generation.load(Ordering::SeqCst))
    }

    /// Remembers a live session read under `ticket`, unless something was invalidated
    /// since (the read may predate the change) or the cache is not live.
    pub fn put(&self, key: SessionKey, role: Role, expires_in: Duration, ticket: Ticket) {
        if !self.is_live() {
            return;
        }
        // A bump between this check and the insert leaves an entry of an old
        // generation, which `get` never answers from.
        if self.inner.generation.load(Ordering::SeqCst) != ticket.0 {
            return;
        }
        self.inner.entries.insert(
            key,
            Entry {
                role,
                generation: ticket.0,
                fresh_until: Instant::now() + expires_in.min(self.inner.ttl),
            },
        );
    }

    /// Forgets every session: called after any change to sessions or memberships.
    pub fn invalidate(&self) {
        // The bump comes first: from then on nothing stored before it is answered from.
        self.inner.generation.fetch_add(1, Ordering::SeqCst);
        self.inner.entries.clear();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    const KEY: SessionKey = (Uuid::nil(), Uuid::max(), Uuid::nil());

    fn live(ttl: Duration) -> SessionCache {
        let cache = SessionCache::new(ttl);
        cache.on_signal(&Signal::Listening);
        cache
    }

    #[test]
    fn remembers_a_live_session_until_its_ttl() {
        let cache = live(Duration::from_millis(50));
        assert_eq!(cache.get(&KEY), None);
        cache.put(KEY, Role::Admin, Duration::from_secs(600), cache.ticket());
        assert_eq!(cache.get(&KEY), Some(Role::Admin));
        assert_eq!(cache.get(&(Uuid::max(), Uuid::max(), Uuid::nil())), None);
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(cache.get(&KEY), None, "past its ttl");
    }

    #[test]
    fn never_past_the_sessions_own_expiry() {
        let cache = live(Duration::from_secs(60));
        cache.put(KEY, Role::Viewer, Duration::from_millis(20), cache.ticket());
        assert_eq!(cache.get(&KEY), Some(Role::Viewer));
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(cache.get(&KEY), None);
    }

    #[test]
    fn a_read_that_predates_an_invalidation_is_not_stored() {
        let cache = live(Duration::from_secs(60));
        let before = cache.ticket();
        // The revocation commits and empties the cache while the lookup is in flight.
        cache.invalidate();
        cache.put(KEY, Role::Owner, Duration::from_secs(600), before);
        assert_eq!(cache.get(&KEY), None);
        cache.put(KEY, Role::Owner, Duration::from_secs(600), cache.ticket());
        assert_eq!(cache.get(&KEY), Some(Role::Owner));
    }

    #[test]
    fn an_entry_stored_as_an_invalidation_empties_the_cache_is_never_answered_from() {
        let cache = live(Duration::from_secs(60));
        let before = cache.ticket();
        // `put` checked the generation, then the invalidation ran, then the insert.
        cache.invalidate();
        cache.inner.entries.insert(
            KEY,
            Entry {
                role: Role::Owner,
                generation: before.0,
                fresh_until: Instant::now() + Duration::from_secs(60),
            },
        );
        assert_eq!(cache.get(&KEY), None);
    }

    #[test]
    fn notifications_and_a_lost_listener_empty_it_and_a_lost_one_stops_answers() {
        let cache = live(Duration::from_secs(60));
        cache.put(KEY, Role::Member, Duration::from_secs(600), cache.ticket());
        cache.on_signal(&Signal::Notified {
            channel: CHANNEL,
            payload: "sessions",
        });
        assert_eq!(cache.get(&KEY), None);

        cache.put(KEY, Role::Member, Duration::from_secs(600), cache.ticket());
        cache.on_signal(&Signal::Lost);
        assert!(!cache.is_live());
        assert_eq!(cache.get(&KEY), None);
        cache.put(KEY, Role::Member, Duration::from_secs(600), cache.ticket());
        assert_eq!(
            cache.get(&KEY),
            None,
            "nothing is stored while not listening"
        );

        cache.on_signal(&Signal::Listening);
        assert_eq!(cache.get(&KEY), None, "what was stored before is gone");
    }

    #[test]
    fn a_disabled_cache_never_answers() {
        let cache = SessionCache::disabled();
        cache.put(KEY, Role::Owner, Duration::from_secs(600), cache.ticket());
        assert_eq!(cache.get(&KEY), None);
    }

    #[test]
    fn its_size_is_bounded() {
        let cache = live(Duration::from_secs(60));
        for i in 0..=MAX_ENTRIES {
            let key = (Uuid::from_u128(i as u128), Uuid::nil(), Uuid::nil());
            cache.put(key, Role::Viewer, Duration::from_secs(600), cache.ticket());
        }
        let len = cache.inner.entries.len();
        assert!(len <= MAX_ENTRIES, "{len}");
    }
}
