//! The pure core of NEXUS: value types, invariants and decisions.
//!
//! Nothing in this crate performs IO, spawns tasks or reads the clock: callers pass
//! `now` and fresh ids in, so every rule is testable as a plain function.

pub mod activity;
pub mod actor;
pub mod audit;
pub mod contact;
pub mod custom_field;
pub mod deal;
pub mod event;
pub mod ids;
pub mod membership;
pub mod merge_patch;
pub mod money;
pub mod organization;
pub mod pipeline;
pub mod rbac;
pub mod validation;
pub mod values;
pub mod webhook;

pub use actor::{Actor, Forbidden, Principal};
pub use event::{DomainEvent, EventActor, EventType, StoredEvent};
pub use ids::{
    ActivityId, ApiKeyId, ContactId, CustomFieldId, DealId, DeliveryId, EventId, ImportId,
    InvitationId, OrgId, PipelineId, SessionId, StageId, UserId, WebhookId,
};
pub use rbac::{Action, Resource, Role};
pub use validation::FieldIssue;
