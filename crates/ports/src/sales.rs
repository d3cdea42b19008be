//! Storage of pipelines, deals and activities. Every method takes the tenant first.

use std::future::Future;

use chrono::{DateTime, NaiveDate, Utc};
use nexus_domain::activity::ActivityType;
use nexus_domain::deal::{Deal, DealStatus};
use nexus_domain::pipeline::{Pipeline, Stage};
use nexus_domain::{
    ActivityId, ContactId, DealId, DomainEvent, OrgId, PipelineId, StageId, UserId,
};

use crate::error::StoreError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineRecord {
    pub pipeline: Pipeline,
    pub version: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A pipeline's new definition, decided by the domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineChange {
    pub name: String,
    pub stages: Vec<Stage>,
    pub removed: Vec<StageId>,
    /// Where the deals of removed stages go.
    pub move_deals_to: Option<StageId>,
    pub make_default: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum PipelineWriteError {
    #[error("not found")]
    NotFound,
    #[error("stale version")]
    VersionMismatch,
    /// Deals still sit in a stage being removed, or in the pipeline being deleted.
    #[error("the stage or pipeline still holds deals")]
    HasDeals,
    #[error("the default pipeline cannot be deleted")]
    IsDefault,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Per stage and currency: how many deals, their value and weighted value (minor units).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageTotals {
    pub stage_id: StageId,
    pub currency: String,
    pub count: i64,
    pub value_minor: i64,
    pub weighted_minor: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DealRecord {
    pub deal: Deal,
    pub expected_close_date: Option<NaiveDate>,
    pub position: f64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The board's first deals of each stage, and totals, in a constant number of queries.
#[derive(Debug, Clone, PartialEq)]
pub struct BoardData {
    pub totals: Vec<StageTotals>,
    /// Up to the requested number per stage (plus one to tell whether more exist).
    pub deals: Vec<DealRecord>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct DealFilter {
    pub pipeline_id: Option<PipelineId>,
    pub stage_id: Option<StageId>,
    pub status: Option<DealStatus>,
    pub contact_id: Option<ContactId>,
    pub owner_id: Option<UserId>,
    pub min_value_minor: Option<i64>,
    pub max_value_minor: Option<i64>,
    pub close_after: Option<NaiveDate>,
    pub close_before: Option<NaiveDate>,
}

/// A system or user activity to write with a change.
#[derive(Debug, Clone, PartialEq)]
pub struct NewActivity {
    pub id: ActivityId,
    pub activity_type: ActivityType,
    pub subject: String,
    pub description: Option<String>,
    pub metadata: serde_json::Value,
    pub contact_id: Option<ContactId>,
    pub deal_id: Option<DealId>,
    pub due_at: Option<DateTime<Utc>>,
    pub assignee_id: Option<UserId>,
    pub created_by: Option<UserId>,
    pub occurred_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ActivityRecord {
    pub id: ActivityId,
    pub activity_type: ActivityType,
    pub subject: String,
    pub description: Option<String>,
    pub metadata: serde_json::Value,
    pub contact_id: Option<ContactId>,
    pub deal_id: Option<DealId>,
    pub due_at: Option<DateTime<Utc>>,
    pub assignee_id: Option<UserId>,
    pub completed_at: Option<DateTime<Utc>>,
    pub created_by: Option<UserId>,
    pub occurred_at: DateTime<Utc>,
    pub version: i32,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ActivityFilter {
    pub contact_id: Option<ContactId>,
    pub deal_id: Option<DealId>,
    pub types: Vec<ActivityType>,
    pub assignee_id: Option<UserId>,
    /// Open tasks only.
    pub open: bool,
    /// Open tasks past their due time (at `now`).
    pub overdue_at: Option<DateTime<Utc>>,
    pub after: Option<DateTime<Utc>>,
    pub before: Option<DateTime<Utc>>,
}

/// A deal write with everything that must land in the same transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct DealWrite {
    pub deal: Deal,
    pub expected_close_date: Option<NaiveDate>,
    /// The version the row must still have (optimistic concurrency).
    pub expected_version: Option<i32>,
    pub activity: Option<NewActivity>,
    pub events: Vec<DomainEvent>,
}

/// A stage move: the row, its history, its activity and events, in one transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct DealMove {
    pub deal: Deal,
    pub expected_version: i32,
    pub previous_stage: StageId,
    /// 0-based place in the target stage; `None` puts it last.
    pub index: Option<u32>,
    pub activity: NewActivity,
    pub events: Vec<DomainEvent>,
}

#[derive(Debug, thiserror::Error)]
pub enum DealWriteError {
    #[error("not found")]
    NotFound,
    /// The row changed since it was read.
    #[error("stale version")]
    VersionMismatch,
    /// The contact (or owner) does not exist in the organization.
    #[error("unknown reference: {0}")]
    UnknownReference(&'static str),
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait SalesStore: Send + Sync + 'static {
    /// # Errors
    /// Storage failures.
    fn pipelines(
        &self,
        org: OrgId,
    ) -> impl Future<Output = Result<Vec<PipelineRecord>, StoreError>> + Send;

    /// # Errors
    /// Storage failures.
    fn pipeline(
        &self,
        org: OrgId,
        id: PipelineId,
    ) -> impl Future<Output = Result<Option<PipelineRecord>, StoreError>> + Send;

    /// # Errors
    /// Storage failures.
    fn default_pipeline(
        &self,
        org: OrgId,
    ) -> impl Future<Output = Result<Option<PipelineRecord>, StoreError>> + Send;

    /// Creates a pipeline; making it the default unsets the previous one atomically.
    ///
    /// # Errors
    /// Storage failures.
    fn create_pipeline(
        &self,
        org: OrgId,
        pipeline: Pipeline,
    ) -> impl Future<Output = Result<PipelineRecord, StoreError>> + Send;

    /// Deals per stage of a pipeline.
    ///
    /// # Errors
    /// Storage failures.
    fn stage_deal_counts(
        &self,
        org: OrgId,
        id: PipelineId,
    ) -> impl Future<Output = Result<Vec<(StageId, i64)>, StoreError>> + Send;

    /// Applies a new definition: renames, reorders, adds and removes stages (moving
    /// deals of removed stages to the target), in one transaction.
    ///
    /// # Errors
    /// [`PipelineWriteError`].
    fn redefine_pipeline(
        &self,
        org: OrgId,
        id: PipelineId,
        change: PipelineChange,
        expected_version: Option<i32>,
    ) -> impl Future<Output = Result<PipelineRecord, PipelineWriteError>> + Send;

    /// # Errors
    /// [`PipelineWriteError`]: the default pipeline or one with deals stays.
    fn delete_pipeline(
        &self,
        org: OrgId,
        id: PipelineId,
    ) -> impl Future<Output = Result<(), PipelineWriteError>> + Send;

    /// # Errors
    /// Storage failures.
    fn board(
        &self,
        org: OrgId,
        pipeline: PipelineId,
        per_stage: i64,
    ) -> impl Future<Output = Result<BoardData, StoreError>> + Send;

    /// Deals of one stage after `after` (position, id), for the board's per-stage cursor.
    ///
    /// # Errors
    /// Storage failures.
    fn stage_deals(
        &self,
        org: OrgId,
        stage: StageId,
        after: Option<(f64, DealId)>,
        limit: i64,
    ) -> impl Future<Output = Result<Vec<DealRecord>, StoreError>> + Send;

    /// # Errors
    /// [`DealWriteError::UnknownReference`] when the contact is not the organization's.
    fn create_deal(
        &self,
        org: OrgId,
        write: DealWrite,
    ) -> impl Future<Output = Result<DealRecord, DealWriteError>> + Send;

    /// # Errors
    /// Storage failures.
    fn deal(
        &self,
        org: OrgId,
        id: DealId,
    ) -> impl Future<Output = Result<Option<DealRecord>, StoreError>> + Send;

    /// Newest first, after `after` (created_at, id).
    ///
    /// # Errors
    /// Storage failures.
    fn deals(
        &self,
        org: OrgId,
        filter: DealFilter,
        after: Option<(DateTime<Utc>, DealId)>,
        limit: i64,
    ) -> impl Future<Output = Result<Vec<DealRecord>, StoreError>> + Send;

    /// # Errors
    /// [`DealWriteError`].
    fn update_deal(
        &self,
        org: OrgId,
        write: DealWrite,
    ) -> impl Future<Output = Result<DealRecord, DealWriteError>> + Send;

    /// # Errors
    /// [`DealWriteError`].
    fn delete_deal(
        &self,
        org: OrgId,
        id: DealId,
        expected_version: Option<i32>,
        events: Vec<DomainEvent>,
    ) -> impl Future<Output = Result<(), DealWriteError>> + Send;

    /// # Errors
    /// [`DealWriteError::VersionMismatch`] when another move won the race.
    fn save_move(
        &self,
        org: OrgId,
        change: DealMove,
    ) -> impl Future<Output = Result<DealRecord, DealWriteError>> + Send;

    /// # Errors
    /// [`DealWriteError::UnknownReference`] for a contact, deal or assignee not in `org`.
    fn create_activity(
        &self,
        org: OrgId,
        activity: NewActivity,
        events: Vec<DomainEvent>,
    ) -> impl Future<Output = Result<ActivityRecord, DealWriteError>> + Send;

    /// # Errors
    /// Storage failures.
    fn activity(
        &self,
        org: OrgId,
        id: ActivityId,
    ) -> impl Future<Output = Result<Option<ActivityRecord>, StoreError>> + Send;

    /// Newest first, after `after` (occurred_at, id).
    ///
    /// # Errors
    /// Storage failures.
    fn activities(
        &self,
        org: OrgId,
        filter: ActivityFilter,
        after: Option<(DateTime<Utc>, ActivityId)>,
        limit: i64,
    ) -> impl Future<Output = Result<Vec<ActivityRecord>, StoreError>> + Send;

    /// Sets or clears a task's completion.
    ///
    /// # Errors
    /// [`DealWriteError::NotFound`] for unknown ids or non-tasks.
    fn set_completed(
        &self,
        org: OrgId,
        id: ActivityId,
        completed_at: Option<DateTime<Utc>>,
    ) -> impl Future<Output = Result<ActivityRecord, DealWriteError>> + Send;

    /// Deletes a user activity (system entries stay).
    ///
    /// # Errors
    /// [`DealWriteError::NotFound`].
    fn delete_activity(
        &self,
        org: OrgId,
        id: ActivityId,
    ) -> impl Future<Output = Result<(), DealWriteError>> + Send;

    /// Whether `user` is a member of `org` (task assignees must be).
    ///
    /// # Errors
    /// Storage failures.
    fn is_member(
        &self,
        org: OrgId,
        user: UserId,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Whether the organization requires a lost reason (its settings).
    ///
    /// # Errors
    /// Storage failures.
    fn requires_lost_reason(
        &self,
        org: OrgId,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
}
