//! Pipelines, deals and activities.

use std::future::Future;
use std::pin::Pin;

use chrono::{DateTime, NaiveDate, Utc};
use nexus_domain::activity::ActivityType;
use nexus_domain::deal::{Deal, DealStatus, MoveError, MoveRequest, MoveSettings, move_deal};
use nexus_domain::money::Money;
use nexus_domain::pipeline::{
    Pipeline, StageDraft, StageKind, StageRemovalError, check_stage_removal, validate_definition,
};
use nexus_domain::{
    Action, ActivityId, Actor, ContactId, DealId, DomainEvent, EventActor, EventId, EventType,
    PipelineId, Principal, Resource, StageId, UserId,
};
use nexus_ports::sales::{
    ActivityFilter, ActivityRecord, BoardData, DealFilter, DealMove, DealRecord, DealWrite,
    DealWriteError, NewActivity, PipelineChange, PipelineRecord, PipelineWriteError, SalesStore,
};
use nexus_ports::{Clock, IdGenerator};

use crate::error::{AppError, FieldIssue};

type Fut<'a, T> = Pin<Box<dyn Future<Output = Result<T, AppError>> + Send + 'a>>;

/// How many times a move re-decides after losing a race to a concurrent move.
const MOVE_RETRIES: usize = 8;

#[derive(Debug, Clone)]
pub struct PipelineInput {
    pub name: String,
    pub stages: Vec<StageDraft>,
    pub is_default: bool,
}

#[derive(Debug, Clone)]
pub struct PipelineUpdate {
    pub name: Option<String>,
    pub stages: Option<Vec<StageDraft>>,
    pub make_default: bool,
    pub move_deals_to: Option<StageId>,
}

#[derive(Debug, Clone)]
pub struct DealInput {
    pub title: String,
    pub amount: String,
    pub currency: Option<String>,
    pub contact_id: ContactId,
    pub pipeline_id: Option<PipelineId>,
    pub stage_id: Option<StageId>,
    pub owner_id: Option<UserId>,
    pub expected_close_date: Option<NaiveDate>,
}

/// Merge patch of a deal's own fields (stage changes go through `move`).
#[derive(Debug, Clone, Default)]
pub struct DealPatch {
    pub title: Option<String>,
    pub amount: Option<String>,
    pub currency: Option<String>,
    pub contact_id: Option<ContactId>,
    pub owner_id: Option<Option<UserId>>,
    pub expected_close_date: Option<Option<NaiveDate>>,
    /// Attributes every deal has (`title`, `value`, `contactId`) that the patch set to
    /// `null`: refused (422 `required`) once the role check has passed.
    pub nulls: Vec<&'static str>,
}

#[derive(Debug, Clone)]
pub struct MoveInput {
    pub stage_id: StageId,
    pub position: Option<u32>,
    pub lost_reason: Option<String>,
    pub won_reason: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ActivityInput {
    pub activity_type: String,
    pub subject: String,
    pub description: Option<String>,
    pub metadata: Option<serde_json::Value>,
    pub contact_id: Option<ContactId>,
    pub deal_id: Option<DealId>,
    pub due_at: Option<DateTime<Utc>>,
    pub assignee_id: Option<UserId>,
    pub occurred_at: Option<DateTime<Utc>>,
}

/// The board of a pipeline.
#[derive(Debug, Clone)]
pub struct Board {
    pub pipeline: PipelineRecord,
    pub data: BoardData,
}

pub trait SalesUseCases: Send + Sync + 'static {
    fn pipelines(&self, actor: Actor) -> Fut<'_, Vec<PipelineRecord>>;
    fn pipeline(&self, actor: Actor, id: PipelineId) -> Fut<'_, PipelineRecord>;
    fn create_pipeline(&self, actor: Actor, input: PipelineInput) -> Fut<'_, PipelineRecord>;
    fn update_pipeline(
        &self,
        actor: Actor,
        id: PipelineId,
        update: PipelineUpdate,
        if_match: Option<i32>,
    ) -> Fut<'_, PipelineRecord>;
    fn delete_pipeline(&self, actor: Actor, id: PipelineId) -> Fut<'_, ()>;
    fn board(&self, actor: Actor, id: PipelineId, per_stage: i64) -> Fut<'_, Board>;
    fn stage_deals(
        &self,
        actor: Actor,
        id: PipelineId,
        stage: StageId,
        after: Option<(f64, DealId)>,
        limit: i64,
    ) -> Fut<'_, Vec<DealRecord>>;
    fn create_deal(&self, actor: Actor, input: DealInput) -> Fut<'_, DealRecord>;
    fn deal(&self, actor: Actor, id: DealId) -> Fut<'_, DealRecord>;
    fn deals(
        &self,
        actor: Actor,
        filter: DealFilter,
        after: Option<(DateTime<Utc>, DealId)>,
        limit: i64,
    ) -> Fut<'_, Vec<DealRecord>>;
    fn update_deal(
        &self,
        actor: Actor,
        id: DealId,
        patch: DealPatch,
        if_match: Option<i32>,
    ) -> Fut<'_, DealRecord>;
    fn delete_deal(&self, actor: Actor, id: DealId, if_match: Option<i32>) -> Fut<'_, ()>;
    fn move_deal(
        &self,
        actor: Actor,
        id: DealId,
        input: MoveInput,
        if_match: Option<i32>,
    ) -> Fut<'_, DealRecord>;
    fn create_activity(&self, actor: Actor, input: ActivityInput) -> Fut<'_, ActivityRecord>;
    fn activity(&self, actor: Actor, id: ActivityId) -> Fut<'_, ActivityRecord>;
    fn activities(
        &self,
        actor: Actor,
        filter: ActivityFilter,
        after: Option<(DateTime<Utc>, ActivityId)>,
        limit: i64,
    ) -> Fut<'_, Vec<ActivityRecord>>;
    fn complete_activity(
        &self,
        actor: Actor,
        id: ActivityId,
        done: bool,
    ) -> Fut<'_, ActivityRecord>;
    fn delete_activity(&self, actor: Actor, id: ActivityId) -> Fut<'_, ()>;
}

pub struct SalesService<S, C, G> {
    store: S,
    clock: C,
    ids: G,
}

fn event_actor(actor: &Actor) -> EventActor {
    match actor.principal {
        Principal::User { user_id, .. } => EventActor::User { id: user_id },
        Principal::ApiKey { api_key_id, .. } => EventActor::ApiKey {
            id: api_key_id.as_uuid(),
        },
    }
}

fn issues(list: Vec<nexus_domain::FieldIssue>) -> AppError {
    AppError::Validation(
        list.into_iter()
            .map(|i| FieldIssue::new(i.field, i.code, i.message))
            .collect(),
    )
}

fn deal_write_error(e: DealWriteError) -> AppError {
    match e {
        DealWriteError::NotFound => AppError::NotFound,
        DealWriteError::VersionMismatch => AppError::PreconditionFailed,
        // Another tenant's contact looks exactly like a missing one.
        DealWriteError::UnknownReference(field) => {
            AppError::invalid(field, "not_found", "no such record in this organization")
        }
        DealWriteError::Store(s) => s.into(),
    }
}

/// The deal as events and the API show it.
#[must_use]
pub fn deal_json(d: &Deal) -> serde_json::Value {
    serde_json::json!({
        "id": d.id, "pipelineId": d.pipeline_id, "stageId": d.stage_id, "contactId": d.contact_id,
        "ownerId": d.owner_id, "title": d.title,
        "value": { "amount": nexus_domain::money::format_minor(d.value_minor), "currency": d.currency },
        "status": d.status, "probability": d.probability, "closedAt": d.closed_at,
        "lostReason": d.lost_reason, "wonReason": d.won_reason, "stageEnteredAt": d.stage_entered_at,
        "version": d.version,
    })
}

impl<S: SalesStore, C: Clock, G: IdGenerator> SalesService<S, C, G> {
    pub const fn new(store: S, clock: C, ids: G) -> Self {
        Self { store, clock, ids }
    }

    fn event(
        &self,
        actor: &Actor,
        event_type: EventType,
        payload: serde_json::Value,
    ) -> DomainEvent {
        DomainEvent {
            id: EventId::from_uuid(self.ids.new_id()),
            organization_id: actor.org_id,
            event_type,
            occurred_at: self.clock.now(),
            actor: event_actor(actor),
            payload,
        }
    }

    async fn load_pipeline(
        &self,
        actor: &Actor,
        id: PipelineId,
    ) -> Result<PipelineRecord, AppError> {
        self.store
            .pipeline(actor.org_id, id)
            .await?
            .ok_or(AppError::NotFound)
    }

    /// # Errors
    /// Storage failures.
    pub async fn pipelines(&self, actor: Actor) -> Result<Vec<PipelineRecord>, AppError> {
        actor.authorize(Resource::Deals, Action::Read)?;
        Ok(self.store.pipelines(actor.org_id).await?)
    }

    /// # Errors
    /// 404 for unknown ids.
    pub async fn pipeline(&self, actor: Actor, id: PipelineId) -> Result<PipelineRecord, AppError> {
        actor.authorize(Resource::Deals, Action::Read)?;
        self.load_pipeline(&actor, id).await
    }

    /// # Errors
    /// 403 below ADMIN, 422 for an invalid definition.
    pub async fn create_pipeline(
        &self,
        actor: Actor,
        input: PipelineInput,
    ) -> Result<PipelineRecord, AppError> {
        actor.authorize(Resource::Pipelines, Action::Create)?;
        let (name, stages) = validate_definition(&input.name, input.stages, || {
            StageId::from_uuid(self.ids.new_id())
        })
        .map_err(issues)?;
        let pipeline = Pipeline {
            id: PipelineId::from_uuid(self.ids.new_id()),
            name,
            is_default: input.is_default,
            stages,
        };
        Ok(self.store.create_pipeline(actor.org_id, pipeline).await?)
    }

    /// # Errors
    /// 403/404/409/412/422.
    pub async fn update_pipeline(
        &self,
        actor: Actor,
        id: PipelineId,
        update: PipelineUpdate,
        if_match: Option<i32>,
    ) -> Result<PipelineRecord, AppError> {
        actor.authorize(Resource::Pipelines, Action::Update)?;
        let current = self.load_pipeline(&actor, id).await?;
        let drafts = update.stages.unwrap_or_else(|| {
            current
                .pipeline
                .stages
                .iter()
                .map(|s| StageDraft {
                    id: Some(s.id),
                    name: s.name.clone(),
                    probability: i64::from(s.probability),
                    kind: s.kind,
                })
                .collect()
        });
        // A stage id the client names must be one of this pipeline's.
        if drafts
            .iter()
            .filter_map(|d| d.id)
            .any(|sid| current.pipeline.stage(sid).is_none())
        {
            return Err(AppError::invalid(
                "stages",
                "unknown_stage",
                "a stage id that is not this pipeline's",
            ));
        }
        let name = update.name.unwrap_or_else(|| current.pipeline.name.clone());
        let (name, stages) =
            validate_definition(&name, drafts, || StageId::from_uuid(self.ids.new_id()))
                .map_err(issues)?;
        let counts = self.store.stage_deal_counts(actor.org_id, id).await?;
        let count = |s: StageId| {
            counts
                .iter()
                .find(|(id, _)| *id == s)
                .map_or(0, |(_, n)| *n)
        };
        let removed = check_stage_removal(
            &current.pipeline.stages,
            &stages,
            count,
            update.move_deals_to,
        )
        .map_err(|e| match e {
            StageRemovalError::TargetRequired { .. } => AppError::conflict(
                "stage_has_deals",
                "A removed stage holds deals: name the stage they move to with moveDealsTo.",
            ),
            StageRemovalError::UnknownTarget => AppError::invalid(
                "moveDealsTo",
                "unknown_stage",
                "moveDealsTo must be a stage of the new definition",
            ),
        })?;
        let change = PipelineChange {
            name,
            stages,
            removed,
            move_deals_to: update.move_deals_to,
            make_default: update.make_default,
        };
        self.store
            .redefine_pipeline(actor.org_id, id, change, if_match)
            .await
            .map_err(|e| match e {
                PipelineWriteError::NotFound => AppError::NotFound,
                PipelineWriteError::VersionMismatch => AppError::PreconditionFailed,
                PipelineWriteError::HasDeals => {
                    AppError::conflict("stage_has_deals", "A removed stage still holds deals.")
                }
                PipelineWriteError::IsDefault => {
                    AppError::conflict("default_pipeline", "The default pipeline stays.")
                }
                PipelineWriteError::Store(s) => s.into(),
            })
    }

    /// # Errors
    /// 409 for the default pipeline or one holding deals.
    pub async fn delete_pipeline(&self, actor: Actor, id: PipelineId) -> Result<(), AppError> {
        actor.authorize(Resource::Pipelines, Action::Delete)?;
        self.store
            .delete_pipeline(actor.org_id, id)
            .await
            .map_err(|e| match e {
                PipelineWriteError::NotFound => AppError::NotFound,
                PipelineWriteError::IsDefault => AppError::conflict(
                    "default_pipeline",
                    "Make another pipeline the default before deleting this one.",
                ),
                PipelineWriteError::HasDeals => {
                    AppError::conflict("pipeline_has_deals", "Move or delete its deals first.")
                }
                PipelineWriteError::VersionMismatch => AppError::PreconditionFailed,
                PipelineWriteError::Store(s) => s.into(),
            })
    }

    /// # Errors
    /// 404 for unknown pipelines.
    pub async fn board(
        &self,
        actor: Actor,
        id: PipelineId,
        per_stage: i64,
    ) -> Result<Board, AppError> {
        actor.authorize(Resource::Deals, Action::Read)?;
        let pipeline = self.load_pipeline(&actor, id).await?;
        let data = self.store.board(actor.org_id, id, per_stage + 1).await?;
        Ok(Board { pipeline, data })
    }

    /// # Errors
    /// 404 when the stage is not the pipeline's.
    pub async fn stage_deals(
        &self,
        actor: Actor,
        id: PipelineId,
        stage: StageId,
        after: Option<(f64, DealId)>,
        limit: i64,
    ) -> Result<Vec<DealRecord>, AppError> {
        actor.authorize(Resource::Deals, Action::Read)?;
        let pipeline = self.load_pipeline(&actor, id).await?;
        pipeline.pipeline.stage(stage).ok_or(AppError::NotFound)?;
        Ok(self
            .store
            .stage_deals(actor.org_id, stage, after, limit)
            .await?)
    }

    async fn check_owner(&self, actor: &Actor, owner: Option<UserId>) -> Result<(), AppError> {
        if let Some(owner) = owner
            && !self.store.is_member(actor.org_id, owner).await?
        {
            return Err(AppError::invalid(
                "ownerId",
                "not_found",
                "the owner is not a member of this organization",
            ));
        }
        Ok(())
    }

    /// # Errors
    /// 403 for VIEWER, 422 for invalid fields or a stage of another pipeline, 404-like
    /// 422 for a contact that is not the organization's.
    pub async fn create_deal(
        &self,
        actor: Actor,
        input: DealInput,
    ) -> Result<DealRecord, AppError> {
        actor.authorize(Resource::Deals, Action::Create)?;
        let mut problems = Vec::new();
        let title = input.title.trim().to_owned();
        if title.is_empty() || title.chars().count() > 200 {
            problems.push(FieldIssue::new(
                "title",
                "invalid_length",
                "a title has 1–200 characters",
            ));
        }
        let currency = input.currency.clone().unwrap_or_else(|| "USD".into());
        let money = Money::parse(&input.amount, &currency)
            .map_err(|e| {
                problems.push(FieldIssue::new(
                    if e.code() == "invalid_currency" {
                        "value.currency"
                    } else {
                        "value.amount"
                    },
                    e.code(),
                    e.to_string(),
                ))
            })
            .ok();
        let pipeline = match input.pipeline_id {
            Some(id) => self.store.pipeline(actor.org_id, id).await?,
            None => self.store.default_pipeline(actor.org_id).await?,
        };
        let Some(pipeline) = pipeline else {
            return Err(AppError::invalid(
                "pipelineId",
                "not_found",
                "no such pipeline in this organization",
            ));
        };
        let stage = match input.stage_id {
            Some(id) => pipeline.pipeline.stage(id).cloned(),
            None => pipeline.pipeline.first_open_stage().cloned(),
        };
        let Some(stage) = stage else {
            problems.push(FieldIssue::new(
                "stageId",
                "not_in_pipeline",
                "the stage belongs to another pipeline",
            ));
            return Err(AppError::Validation(problems));
        };
        if !problems.is_empty() {
            return Err(AppError::Validation(problems));
        }
        let Some(money) = money else {
            return Err(AppError::Validation(problems));
        };
        self.check_owner(&actor, input.owner_id).await?;
        let now = self.clock.now();
        let status = DealStatus::of(stage.kind);
        let deal = Deal {
            id: DealId::from_uuid(self.ids.new_id()),
            pipeline_id: pipeline.pipeline.id,
            stage_id: stage.id,
            contact_id: input.contact_id,
            owner_id: input.owner_id,
            title,
            value_minor: money.minor(),
            currency: money.currency().as_str().to_owned(),
            status,
            probability: stage.probability,
            closed_at: (stage.kind != StageKind::Open).then_some(now),
            lost_reason: None,
            won_reason: None,
            stage_entered_at: now,
            version: 1,
        };
        let activity = NewActivity {
            id: ActivityId::from_uuid(self.ids.new_id()),
            activity_type: ActivityType::DealCreated,
            subject: format!("Deal created: {}", deal.title),
            description: None,
            metadata: serde_json::json!({ "stageId": stage.id, "stage": stage.name }),
            contact_id: Some(deal.contact_id),
            deal_id: Some(deal.id),
            due_at: None,
            assignee_id: None,
            created_by: Some(actor.user_id()),
            occurred_at: now,
        };
        let events = vec![self.event(&actor, EventType::DealCreated, deal_json(&deal))];
        let write = DealWrite {
            deal,
            expected_close_date: input.expected_close_date,
            expected_version: None,
            activity: Some(activity),
            events,
        };
        self.store
            .create_deal(actor.org_id, write)
            .await
            .map_err(deal_write_error)
    }

    /// # Errors
    /// 404.
    pub async fn deal(&self, actor: Actor, id: DealId) -> Result<DealRecord, AppError> {
        actor.authorize(Resource::Deals, Action::Read)?;
        self.store
            .deal(actor.org_id, id)
            .await?
            .ok_or(AppError::NotFound)
    }

    /// # Errors
    /// Storage failures.
    pub async fn deals(
        &self,
        actor: Actor,
        filter: DealFilter,
        after: Option<(DateTime<Utc>, DealId)>,
        limit: i64,
    ) -> Result<Vec<DealRecord>, AppError> {
        actor.authorize(Resource::Deals, Action::Read)?;
        Ok(self.store.deals(actor.org_id, filter, after, limit).await?)
    }

    /// # Errors
    /// 403/404/412/422.
    pub async fn update_deal(
        &self,
        actor: Actor,
        id: DealId,
        patch: DealPatch,
        if_match: Option<i32>,
    ) -> Result<DealRecord, AppError> {
        actor.authorize(Resource::Deals, Action::Update)?;
        let current = self
            .store
            .deal(actor.org_id, id)
            .await?
            .ok_or(AppError::NotFound)?;
        if if_match.is_some_and(|v| v != current.deal.version) {
            return Err(AppError::PreconditionFailed);
        }
        let mut deal = current.deal.clone();
        let mut problems: Vec<FieldIssue> = patch
            .nulls
            .iter()
            .map(|field| {
                FieldIssue::new(
                    *field,
                    "required",
                    "a deal always has one; omit it to keep the current value",
                )
            })
            .collect();
        let mut changed = Vec::new();
        if let Some(title) = patch.title {
            let title = title.trim().to_owned();
            if title.is_empty() || title.chars().count() > 200 {
                problems.push(FieldIssue::new(
                    "title",
                    "invalid_length",
                    "a title has 1–200 characters",
                ));
            }
            deal.title = title;
            changed.push("title");
        }
        if patch.amount.is_some() || patch.currency.is_some() {
            let amount = patch
                .amount
                .unwrap_or_else(|| nexus_domain::money::format_minor(deal.value_minor));
            let currency = patch.currency.unwrap_or_else(|| deal.currency.clone());
            match Money::parse(&amount, &currency) {
                Ok(m) => {
                    deal.value_minor = m.minor();
                    deal.currency = m.currency().as_str().to_owned();
                    changed.push("value");
                }
                Err(e) => problems.push(FieldIssue::new("value", e.code(), e.to_string())),
            }
        }
        if let Some(contact) = patch.contact_id {
            deal.contact_id = contact;
            changed.push("contactId");
        }
        if let Some(owner) = patch.owner_id {
            self.check_owner(&actor, owner).await?;
            deal.owner_id = owner;
            changed.push("ownerId");
        }
        let close = patch
            .expected_close_date
            .unwrap_or(current.expected_close_date);
        if patch.expected_close_date.is_some() {
            changed.push("expectedCloseDate");
        }
        if !problems.is_empty() {
            return Err(AppError::Validation(problems));
        }
        deal.version += 1;
        let mut payload = deal_json(&deal);
        // Field by field, `{ field: { from, to } }`, as `contact.updated` has them (the
        // audit log records them as they are).
        let mut before = deal_json(&current.deal);
        before["expectedCloseDate"] = serde_json::json!(current.expected_close_date);
        let mut after = payload.clone();
        after["expectedCloseDate"] = serde_json::json!(close);
        let mut changes = nexus_domain::audit::field_changes(&before, &after);
        if let Some(fields) = changes.as_object_mut() {
            fields.remove("version");
            // A field the patch named but left as it was is no change.
            fields.retain(|k, _| changed.contains(&k.as_str()));
        }
        payload["changes"] = changes;
        let events = vec![self.event(&actor, EventType::DealUpdated, payload)];
        let write = DealWrite {
            deal,
            expected_close_date: close,
            expected_version: Some(current.deal.version),
            activity: None,
            events,
        };
        self.store
            .update_deal(actor.org_id, write)
            .await
            .map_err(deal_write_error)
    }

    /// # Errors
    /// 403/404/412.
    pub async fn delete_deal(
        &self,
        actor: Actor,
        id: DealId,
        if_match: Option<i32>,
    ) -> Result<(), AppError> {
        actor.authorize(Resource::Deals, Action::Delete)?;
        let current = self
            .store
            .deal(actor.org_id, id)
            .await?
            .ok_or(AppError::NotFound)?;
        let events = vec![self.event(&actor, EventType::DealDeleted, deal_json(&current.deal))];
        self.store
            .delete_deal(actor.org_id, id, if_match, events)
            .await
            .map_err(deal_write_error)
    }

    /// Moves a deal: decided by the domain, written with its history, activity and
    /// events in one transaction; re-decided when a concurrent move wins first.
    ///
    /// # Errors
    /// 403 for VIEWER, 404 for unknown deals, 412 for a stale `If-Match`, 422 for a stage
    /// of another pipeline or a missing required lost reason.
    pub async fn move_deal(
        &self,
        actor: Actor,
        id: DealId,
        input: MoveInput,
        if_match: Option<i32>,
    ) -> Result<DealRecord, AppError> {
        actor.authorize(Resource::Deals, Action::Update)?;
        let settings = MoveSettings {
            require_lost_reason: self.store.requires_lost_reason(actor.org_id).await?,
        };
        for _ in 0..MOVE_RETRIES {
            let current = self
                .store
                .deal(actor.org_id, id)
                .await?
                .ok_or(AppError::NotFound)?;
            if if_match.is_some_and(|v| v != current.deal.version) {
                return Err(AppError::PreconditionFailed);
            }
            let pipeline = self.load_pipeline(&actor, current.deal.pipeline_id).await?;
            let request = MoveRequest {
                stage_id: input.stage_id,
                lost_reason: input.lost_reason.clone(),
                won_reason: input.won_reason.clone(),
            };
            let now = self.clock.now();
            let change = move_deal(&current.deal, &pipeline.pipeline, request, now, settings)
                .map_err(|e| match e {
                    MoveError::StageNotInPipeline => AppError::invalid(
                        "stageId",
                        "not_in_pipeline",
                        "the stage belongs to another pipeline",
                    ),
                    MoveError::LostReasonRequired => AppError::invalid(
                        "lostReason",
                        "required",
                        "this organization requires a lost reason",
                    ),
                    MoveError::ReasonTooLong => AppError::invalid(
                        "lostReason",
                        "too_long",
                        "a reason is at most 500 characters",
                    ),
                })?;
            let Some(change) = change else {
                return Ok(current);
            };
            let mut payload = deal_json(&change.deal);
            payload["fromStageId"] = serde_json::json!(change.from.id);
            payload["toStageId"] = serde_json::json!(change.to.id);
            let mut events = vec![self.event(&actor, EventType::DealStageChanged, payload.clone())];
            match change.closes {
                Some(DealStatus::Won) => {
                    events.push(self.event(&actor, EventType::DealWon, payload))
                }
                Some(DealStatus::Lost) => {
                    events.push(self.event(&actor, EventType::DealLost, payload))
                }
                _ => {}
            }
            let activity = NewActivity {
                id: ActivityId::from_uuid(self.ids.new_id()),
                activity_type: change.activity.activity_type,
                subject: change.activity.subject.clone(),
                description: None,
                metadata: change.activity.metadata.clone(),
                contact_id: Some(change.deal.contact_id),
                deal_id: Some(change.deal.id),
                due_at: None,
                assignee_id: None,
                created_by: Some(actor.user_id()),
                occurred_at: now,
            };
            let write = DealMove {
                expected_version: current.deal.version,
                previous_stage: change.from.id,
                index: input.position,
                deal: change.deal,
                activity,
                events,
            };
            match self.store.save_move(actor.org_id, write).await {
                Err(DealWriteError::VersionMismatch) if if_match.is_none() => {}
                other => return other.map_err(deal_write_error),
            }
        }
        Err(AppError::contended(
            "concurrent_moves",
            "The deal kept changing; retry.",
        ))
    }

    /// # Errors
    /// 403 for VIEWER; 422 for system types, bad fields, or links outside the organization.
    pub async fn create_activity(
        &self,
        actor: Actor,
        input: ActivityInput,
    ) -> Result<ActivityRecord, AppError> {
        actor.authorize(Resource::Deals, Action::Create)?;
        let mut problems = Vec::new();
        let activity_type = match ActivityType::parse(&input.activity_type) {
            Some(t) if t.is_system() => {
                problems.push(FieldIssue::new(
                    "type",
                    "system_type",
                    "system entries are written by the server only",
                ));
                None
            }
            Some(t) => Some(t),
            None => {
                problems.push(FieldIssue::new(
                    "type",
                    "invalid_value",
                    "one of CALL, EMAIL, MEETING, NOTE, TASK",
                ));
                None
            }
        };
        let subject = input.subject.trim().to_owned();
        if subject.is_empty() || subject.chars().count() > 200 {
            problems.push(FieldIssue::new(
                "subject",
                "invalid_length",
                "a subject has 1–200 characters",
            ));
        }
        if input
            .description
            .as_ref()
            .is_some_and(|d| d.chars().count() > 10_000)
        {
            problems.push(FieldIssue::new(
                "description",
                "too_long",
                "a description has at most 10000 characters",
            ));
        }
        if input.metadata.as_ref().is_some_and(|m| !m.is_object()) {
            problems.push(FieldIssue::new(
                "metadata",
                "invalid_type",
                "metadata is a JSON object",
            ));
        }
        if activity_type != Some(ActivityType::Task)
            && (input.due_at.is_some() || input.assignee_id.is_some())
        {
            problems.push(FieldIssue::new(
                "dueAt",
                "task_only",
                "only tasks have a due date and an assignee",
            ));
        }
        if input.contact_id.is_none() && input.deal_id.is_none() {
            problems.push(FieldIssue::new(
                "contactId",
                "required",
                "link the activity to a contact, a deal or both",
            ));
        }
        if !problems.is_empty() {
            return Err(AppError::Validation(problems));
        }
        let Some(activity_type) = activity_type else {
            return Err(AppError::Validation(problems));
        };
        if let Some(assignee) = input.assignee_id
            && !self.store.is_member(actor.org_id, assignee).await?
        {
            return Err(AppError::invalid(
                "assigneeId",
                "not_found",
                "the assignee is not a member of this organization",
            ));
        }
        // A deal link implies its contact when none is given.
        let mut contact_id = input.contact_id;
        if let Some(deal_id) = input.deal_id {
            let deal = self.store.deal(actor.org_id, deal_id).await?;
            let Some(deal) = deal else {
                return Err(AppError::invalid(
                    "dealId",
                    "not_found",
                    "no such deal in this organization",
                ));
            };
            contact_id = contact_id.or(Some(deal.deal.contact_id));
        }
        let activity = NewActivity {
            id: ActivityId::from_uuid(self.ids.new_id()),
            activity_type,
            subject,
            description: input.description,
            metadata: input.metadata.unwrap_or_else(|| serde_json::json!({})),
            contact_id,
            deal_id: input.deal_id,
            due_at: input.due_at,
            assignee_id: input.assignee_id,
            created_by: Some(actor.user_id()),
            occurred_at: input.occurred_at.unwrap_or_else(|| self.clock.now()),
        };
        let payload = serde_json::json!({
            "id": activity.id, "type": activity.activity_type, "subject": activity.subject,
            "contactId": activity.contact_id, "dealId": activity.deal_id, "dueAt": activity.due_at,
            "assigneeId": activity.assignee_id, "occurredAt": activity.occurred_at,
        });
        let events = vec![self.event(&actor, EventType::ActivityCreated, payload)];
        self.store
            .create_activity(actor.org_id, activity, events)
            .await
            .map_err(deal_write_error)
    }

    /// # Errors
    /// 404.
    pub async fn activity(&self, actor: Actor, id: ActivityId) -> Result<ActivityRecord, AppError> {
        actor.authorize(Resource::Deals, Action::Read)?;
        self.store
            .activity(actor.org_id, id)
            .await?
            .ok_or(AppError::NotFound)
    }

    /// # Errors
    /// Storage failures.
    pub async fn activities(
        &self,
        actor: Actor,
        mut filter: ActivityFilter,
        after: Option<(DateTime<Utc>, ActivityId)>,
        limit: i64,
    ) -> Result<Vec<ActivityRecord>, AppError> {
        actor.authorize(Resource::Deals, Action::Read)?;
        if filter.overdue_at.is_some() {
            filter.overdue_at = Some(self.clock.now());
        }
        Ok(self
            .store
            .activities(actor.org_id, filter, after, limit)
            .await?)
    }

    /// # Errors
    /// 404 for unknown ids and activities that are not tasks.
    pub async fn complete_activity(
        &self,
        actor: Actor,
        id: ActivityId,
        done: bool,
    ) -> Result<ActivityRecord, AppError> {
        actor.authorize(Resource::Deals, Action::Update)?;
        let at = done.then(|| self.clock.now());
        self.store
            .set_completed(actor.org_id, id, at)
            .await
            .map_err(deal_write_error)
    }

    /// # Errors
    /// 404 for unknown ids and system entries.
    pub async fn delete_activity(&self, actor: Actor, id: ActivityId) -> Result<(), AppError> {
        actor.authorize(Resource::Deals, Action::Delete)?;
        self.store
            .delete_activity(actor.org_id, id)
            .await
            .map_err(deal_write_error)
    }
}

impl<S: SalesStore, C: Clock, G: IdGenerator> SalesUseCases for SalesService<S, C, G> {
    fn pipelines(&self, actor: Actor) -> Fut<'_, Vec<PipelineRecord>> {
        Box::pin(Self::pipelines(self, actor))
    }
    fn pipeline(&self, actor: Actor, id: PipelineId) -> Fut<'_, PipelineRecord> {
        Box::pin(Self::pipeline(self, actor, id))
    }
    fn create_pipeline(&self, actor: Actor, input: PipelineInput) -> Fut<'_, PipelineRecord> {
        Box::pin(Self::create_pipeline(self, actor, input))
    }
    fn update_pipeline(
        &self,
        actor: Actor,
        id: PipelineId,
        update: PipelineUpdate,
        if_match: Option<i32>,
    ) -> Fut<'_, PipelineRecord> {
        Box::pin(Self::update_pipeline(self, actor, id, update, if_match))
    }
    fn delete_pipeline(&self, actor: Actor, id: PipelineId) -> Fut<'_, ()> {
        Box::pin(Self::delete_pipeline(self, actor, id))
    }
    fn board(&self, actor: Actor, id: PipelineId, per_stage: i64) -> Fut<'_, Board> {
        Box::pin(Self::board(self, actor, id, per_stage))
    }
    fn stage_deals(
        &self,
        actor: Actor,
        id: PipelineId,
        stage: StageId,
        after: Option<(f64, DealId)>,
        limit: i64,
    ) -> Fut<'_, Vec<DealRecord>> {
        Box::pin(Self::stage_deals(self, actor, id, stage, after, limit))
    }
    fn create_deal(&self, actor: Actor, input: DealInput) -> Fut<'_, DealRecord> {
        Box::pin(Self::create_deal(self, actor, input))
    }
    fn deal(&self, actor: Actor, id: DealId) -> Fut<'_, DealRecord> {
        Box::pin(Self::deal(self, actor, id))
    }
    fn deals(
        &self,
        actor: Actor,
        filter: DealFilter,
        after: Option<(DateTime<Utc>, DealId)>,
        limit: i64,
    ) -> Fut<'_, Vec<DealRecord>> {
        Box::pin(Self::deals(self, actor, filter, after, limit))
    }
    fn update_deal(
        &self,
        actor: Actor,
        id: DealId,
        patch: DealPatch,
        if_match: Option<i32>,
    ) -> Fut<'_, DealRecord> {
        Box::pin(Self::update_deal(self, actor, id, patch, if_match))
    }
    fn delete_deal(&self, actor: Actor, id: DealId, if_match: Option<i32>) -> Fut<'_, ()> {
        Box::pin(Self::delete_deal(self, actor, id, if_match))
    }
    fn move_deal(
        &self,
        actor: Actor,
        id: DealId,
        input: MoveInput,
        if_match: Option<i32>,
    ) -> Fut<'_, DealRecord> {
        Box::pin(Self::move_deal(self, actor, id, input, if_match))
    }
    fn create_activity(&self, actor: Actor, input: ActivityInput) -> Fut<'_, ActivityRecord> {
        Box::pin(Self::create_activity(self, actor, input))
    }
    fn activity(&self, actor: Actor, id: ActivityId) -> Fut<'_, ActivityRecord> {
        Box::pin(Self::activity(self, actor, id))
    }
    fn activities(
        &self,
        actor: Actor,
        filter: ActivityFilter,
        after: Option<(DateTime<Utc>, ActivityId)>,
        limit: i64,
    ) -> Fut<'_, Vec<ActivityRecord>> {
        Box::pin(Self::activities(self, actor, filter, after, limit))
    }
    fn complete_activity(
        &self,
        actor: Actor,
        id: ActivityId,
        done: bool,
    ) -> Fut<'_, ActivityRecord> {
        Box::pin(Self::complete_activity(self, actor, id, done))
    }
    fn delete_activity(&self, actor: Actor, id: ActivityId) -> Fut<'_, ()> {
        Box::pin(Self::delete_activity(self, actor, id))
    }
}
