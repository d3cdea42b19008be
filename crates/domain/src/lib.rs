//! The pure core of NEXUS: value types, invariants and decisions.
//!
//! Nothing in this crate performs IO, spawns tasks or reads the clock: callers pass
//! `now` and fresh ids in, so every rule is testable as a plain function.

pub mod event;
pub mod ids;

pub use event::{DomainEvent, EventActor, EventType};
pub use ids::{EventId, OrgId, UserId};
