//! Each organization's custom field definitions, kept between contact writes.
//!
//! A create or an update validates its custom fields against the definitions; reading
//! them from the database cost every write one more round trip (a quarter of a
//! create's throughput). A kept set may be stale (another instance, or SQL by hand,
//! changed the definitions), so it is only trusted where staleness shows:
//! - a write states the generation it validated under, and the database refuses it
//!   when the definitions moved on (`ContactWriteError::DefinitionsChanged`): the
//!   write is validated again under a fresh set;
//! - a validation that fails under a kept set is repeated under a fresh one before it
//!   is reported (a field added elsewhere must not be called unknown);
//! - reads (list filters) never use it.

use std::sync::Arc;

use nexus_domain::OrgId;
use nexus_ports::contacts::FieldSet;
use quick_cache::sync::{Cache, EntryAction, EntryResult};

/// Most organizations remembered at once (each entry is a few definitions).
const MAX_ENTRIES: usize = 10_000;

pub(crate) struct FieldSets {
    sets: Cache<OrgId, Arc<FieldSet>>,
}

impl Default for FieldSets {
    fn default() -> Self {
        Self {
            sets: Cache::new(MAX_ENTRIES),
        }
    }
}

impl FieldSets {
    pub(crate) fn get(&self, org: OrgId) -> Option<Arc<FieldSet>> {
        self.sets.get(&org)
    }

    /// Keeps `set` unless a newer generation is kept already (a slow reader must not
    /// put back what a faster one replaced).
    pub(crate) fn put(&self, org: OrgId, set: Arc<FieldSet>) {
        let offered = Arc::clone(&set);
        // The comparison and the replacement happen under the entry's shard lock.
        let vacant = self.sets.entry(&org, None, move |_, kept| {
            if kept.generation <= offered.generation {
                *kept = offered;
            }
            EntryAction::Retain(())
        });
        if let EntryResult::Vacant(slot) = vacant {
            // Refused only when the cache moved on meanwhile; the next write reads again.
            let _ = slot.insert(set);
        }
    }

    pub(crate) fn forget(&self, org: OrgId) {
        self.sets.remove(&org);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn set(generation: i64) -> Arc<FieldSet> {
        Arc::new(FieldSet {
            generation,
            specs: Vec::new(),
        })
    }

    #[test]
    fn keeps_the_newest_generation_and_forgets_on_request() {
        let sets = FieldSets::default();
        let org = OrgId::from_uuid(Uuid::now_v7());
        assert!(sets.get(org).is_none());
        sets.put(org, set(3));
        sets.put(org, set(2));
        assert_eq!(sets.get(org).map(|s| s.generation), Some(3));
        sets.put(org, set(4));
        assert_eq!(sets.get(org).map(|s| s.generation), Some(4));
        sets.forget(org);
        assert!(sets.get(org).is_none());
    }

    #[test]
    fn its_size_is_bounded() {
        let sets = FieldSets::default();
        for _ in 0..2 * MAX_ENTRIES {
            sets.put(OrgId::from_uuid(Uuid::now_v7()), set(1));
        }
        let len = sets.sets.len();
        assert!((1..=MAX_ENTRIES).contains(&len), "{len}");
    }
}
