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

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use nexus_domain::OrgId;
use nexus_ports::contacts::FieldSet;

/// Most organizations remembered at once; past this the cache starts over (a bound,
/// not an eviction policy: each entry is a few definitions).
const MAX_ENTRIES: usize = 10_000;

#[derive(Default)]
pub(crate) struct FieldSets {
    sets: Mutex<HashMap<OrgId, Arc<FieldSet>>>,
}

impl FieldSets {
    pub(crate) fn get(&self, org: OrgId) -> Option<Arc<FieldSet>> {
        self.lock().get(&org).cloned()
    }

    /// Keeps `set` unless a newer generation is kept already (a slow reader must not
    /// put back what a faster one replaced).
    pub(crate) fn put(&self, org: OrgId, set: Arc<FieldSet>) {
        let mut sets = self.lock();
        if sets
            .get(&org)
            .is_some_and(|kept| kept.generation > set.generation)
        {
            return;
        }
        if sets.len() >= MAX_ENTRIES && !sets.contains_key(&org) {
            sets.clear();
        }
        sets.insert(org, set);
    }

    pub(crate) fn forget(&self, org: OrgId) {
        self.lock().remove(&org);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<OrgId, Arc<FieldSet>>> {
        // The map holds no invariant a panicking holder could break halfway.
        self.sets.lock().unwrap_or_else(PoisonError::into_inner)
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
    fn starts_over_past_its_bound() {
        let sets = FieldSets::default();
        let first = OrgId::from_uuid(Uuid::now_v7());
        sets.put(first, set(1));
        for _ in 1..MAX_ENTRIES {
            sets.put(OrgId::from_uuid(Uuid::now_v7()), set(1));
        }
        assert!(sets.get(first).is_some());
        let last = OrgId::from_uuid(Uuid::now_v7());
        sets.put(last, set(1));
        assert!(sets.get(first).is_none());
        assert!(sets.get(last).is_some());
    }
}
