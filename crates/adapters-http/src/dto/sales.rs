use chrono::{DateTime, NaiveDate, Utc};
use nexus_domain::StageId;
use nexus_domain::money::format_minor;
use nexus_domain::pipeline::{Stage, StageDraft, StageKind};
use nexus_ports::sales::{ActivityRecord, DealRecord, PipelineRecord};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::dto::common::Money;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StageKindDto {
    Open,
    Won,
    Lost,
}

impl From<StageKind> for StageKindDto {
    fn from(k: StageKind) -> Self {
        match k {
            StageKind::Open => Self::Open,
            StageKind::Won => Self::Won,
            StageKind::Lost => Self::Lost,
        }
    }
}

impl From<StageKindDto> for StageKind {
    fn from(k: StageKindDto) -> Self {
        match k {
            StageKindDto::Open => Self::Open,
            StageKindDto::Won => Self::Won,
            StageKindDto::Lost => Self::Lost,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StageDto {
    pub id: Uuid,
    pub name: String,
    /// 0–100; `won` stages are 100 and `lost` stages 0.
    pub probability: u8,
    pub kind: StageKindDto,
}

impl From<&Stage> for StageDto {
    fn from(s: &Stage) -> Self {
        Self {
            id: s.id.as_uuid(),
            name: s.name.clone(),
            probability: s.probability,
            kind: s.kind.into(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PipelineDto {
    pub id: Uuid,
    pub name: String,
    pub is_default: bool,
    /// In board order.
    pub stages: Vec<StageDto>,
    pub version: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<PipelineRecord> for PipelineDto {
    fn from(r: PipelineRecord) -> Self {
        Self {
            id: r.pipeline.id.as_uuid(),
            name: r.pipeline.name.clone(),
            is_default: r.pipeline.is_default,
            stages: r.pipeline.stages.iter().map(Into::into).collect(),
            version: r.version,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

/// A stage in a definition: with `id` to keep (rename, reorder) an existing stage,
/// without to add one.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StageInput {
    pub id: Option<Uuid>,
    #[schema(example = "Qualified")]
    pub name: String,
    #[schema(minimum = 0, maximum = 100)]
    pub probability: i64,
    pub kind: StageKindDto,
}

impl From<StageInput> for StageDraft {
    fn from(s: StageInput) -> Self {
        Self {
            id: s.id.map(StageId::from_uuid),
            name: s.name,
            probability: s.probability,
            kind: s.kind.into(),
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreatePipelineRequest {
    #[schema(example = "Enterprise")]
    pub name: String,
    /// 1–50 stages, unique names, at least one open stage. New stages carry no `id`.
    pub stages: Vec<StageInput>,
    #[serde(default)]
    pub is_default: bool,
}

/// Redefines a pipeline: rename, reorder, add and remove stages at once.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdatePipelineRequest {
    #[serde(default, deserialize_with = "crate::dto::common::not_null")]
    #[schema(nullable = false)]
    pub name: Option<String>,
    /// The full new list; stages of the old list that are absent are removed.
    #[serde(default, deserialize_with = "crate::dto::common::not_null")]
    #[schema(nullable = false)]
    pub stages: Option<Vec<StageInput>>,
    /// Make this the default pipeline (the previous default stops being one).
    #[serde(default)]
    pub is_default: bool,
    /// Where the deals of removed stages go (required when a removed stage holds deals).
    pub move_deals_to: Option<Uuid>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DealDto {
    pub id: Uuid,
    pub title: String,
    pub value: Money,
    pub pipeline_id: Uuid,
    pub stage_id: Uuid,
    pub contact_id: Uuid,
    #[schema(required = true)]
    pub owner_id: Option<Uuid>,
    #[schema(example = "OPEN")]
    pub status: String,
    pub probability: u8,
    /// value × probability / 100.
    pub weighted_value: Money,
    #[schema(required = true)]
    pub expected_close_date: Option<NaiveDate>,
    #[schema(required = true)]
    pub closed_at: Option<DateTime<Utc>>,
    #[schema(required = true)]
    pub lost_reason: Option<String>,
    #[schema(required = true)]
    pub won_reason: Option<String>,
    pub stage_entered_at: DateTime<Utc>,
    /// Order within the stage on the board.
    pub position: f64,
    pub version: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<DealRecord> for DealDto {
    fn from(r: DealRecord) -> Self {
        let d = r.deal;
        let weighted = nexus_domain::money::weighted_minor(d.value_minor, d.probability);
        Self {
            id: d.id.as_uuid(),
            value: Money {
                amount: format_minor(d.value_minor),
                currency: d.currency.clone(),
            },
            weighted_value: Money {
                amount: format_minor(weighted),
                currency: d.currency,
            },
            title: d.title,
            pipeline_id: d.pipeline_id.as_uuid(),
            stage_id: d.stage_id.as_uuid(),
            contact_id: d.contact_id.as_uuid(),
            owner_id: d.owner_id.map(|u| u.as_uuid()),
            status: d.status.as_str().to_owned(),
            probability: d.probability,
            expected_close_date: r.expected_close_date,
            closed_at: d.closed_at,
            lost_reason: d.lost_reason,
            won_reason: d.won_reason,
            stage_entered_at: d.stage_entered_at,
            position: r.position,
            version: d.version,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateDealRequest {
    #[schema(example = "Annual plan, 40 seats")]
    pub title: String,
    pub value: Money,
    /// A contact of your organization.
    pub contact_id: Uuid,
    /// Defaults to the default pipeline.
    pub pipeline_id: Option<Uuid>,
    /// Defaults to the pipeline's first open stage.
    pub stage_id: Option<Uuid>,
    pub owner_id: Option<Uuid>,
    pub expected_close_date: Option<NaiveDate>,
}

/// Merge patch of a deal. Stage changes go through `POST /deals/{id}/move`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateDealRequest {
    /// A deal always has one: `null` is refused (422 `required`).
    #[serde(default, deserialize_with = "crate::dto::common::present")]
    #[schema(value_type = Option<String>, nullable = false)]
    pub title: Option<Option<String>>,
    /// `null` is refused (422 `required`).
    #[serde(default, deserialize_with = "crate::dto::common::present")]
    #[schema(value_type = Option<Money>, nullable = false)]
    pub value: Option<Option<Money>>,
    /// `null` is refused (422 `required`).
    #[serde(default, deserialize_with = "crate::dto::common::present")]
    #[schema(value_type = Option<Uuid>, nullable = false)]
    pub contact_id: Option<Option<Uuid>>,
    /// `null` clears the owner.
    #[serde(default, deserialize_with = "crate::dto::common::present")]
    #[schema(value_type = Option<Uuid>)]
    pub owner_id: Option<Option<Uuid>>,
    #[serde(default, deserialize_with = "crate::dto::common::present")]
    #[schema(value_type = Option<NaiveDate>)]
    pub expected_close_date: Option<Option<NaiveDate>>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MoveDealRequest {
    /// A stage of the deal's pipeline.
    pub stage_id: Uuid,
    /// 0-based place among the target stage's deals; last when absent.
    pub position: Option<u32>,
    /// Required when moving to a lost stage if the organization's settings say so.
    pub lost_reason: Option<String>,
    pub won_reason: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CurrencyTotals {
    #[schema(example = "USD")]
    pub currency: String,
    pub count: i64,
    #[schema(example = "12500.00")]
    pub value: String,
    #[schema(example = "3125.00")]
    pub weighted_value: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BoardStageDto {
    pub stage: StageDto,
    /// Deals in the stage, all currencies.
    pub count: i64,
    /// Per currency: count, value and weighted value.
    pub totals: Vec<CurrencyTotals>,
    /// The first deals of the stage, in board order.
    pub deals: Vec<DealDto>,
    /// More deals of this stage: `GET /pipelines/{id}/stages/{stageId}/deals?cursor=`.
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BoardDto {
    pub pipeline: PipelineDto,
    pub stages: Vec<BoardStageDto>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ActivityDto {
    pub id: Uuid,
    /// CALL, EMAIL, MEETING, NOTE, TASK, or a system entry (DEAL_CREATED,
    /// DEAL_STAGE_CHANGED, DEAL_WON, DEAL_LOST).
    #[serde(rename = "type")]
    #[schema(example = "CALL")]
    pub activity_type: String,
    pub subject: String,
    #[schema(required = true)]
    pub description: Option<String>,
    pub metadata: serde_json::Value,
    #[schema(required = true)]
    pub contact_id: Option<Uuid>,
    #[schema(required = true)]
    pub deal_id: Option<Uuid>,
    #[schema(required = true)]
    pub due_at: Option<DateTime<Utc>>,
    #[schema(required = true)]
    pub assignee_id: Option<Uuid>,
    #[schema(required = true)]
    pub completed_at: Option<DateTime<Utc>>,
    #[schema(required = true)]
    pub created_by: Option<Uuid>,
    pub occurred_at: DateTime<Utc>,
    pub version: i32,
}

impl From<ActivityRecord> for ActivityDto {
    fn from(a: ActivityRecord) -> Self {
        Self {
            id: a.id.as_uuid(),
            activity_type: a.activity_type.as_str().to_owned(),
            subject: a.subject,
            description: a.description,
            metadata: a.metadata,
            contact_id: a.contact_id.map(|c| c.as_uuid()),
            deal_id: a.deal_id.map(|d| d.as_uuid()),
            due_at: a.due_at,
            assignee_id: a.assignee_id.map(|u| u.as_uuid()),
            completed_at: a.completed_at,
            created_by: a.created_by.map(|u| u.as_uuid()),
            occurred_at: a.occurred_at,
            version: a.version,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateActivityRequest {
    /// CALL, EMAIL, MEETING, NOTE or TASK (system types are refused with 422).
    #[serde(rename = "type")]
    #[schema(example = "CALL")]
    pub activity_type: String,
    #[schema(example = "Intro call")]
    pub subject: String,
    pub description: Option<String>,
    pub metadata: Option<serde_json::Value>,
    pub contact_id: Option<Uuid>,
    pub deal_id: Option<Uuid>,
    /// Tasks only.
    pub due_at: Option<DateTime<Utc>>,
    /// Tasks only: a member of the organization.
    pub assignee_id: Option<Uuid>,
    /// When it happened; now when absent.
    pub occurred_at: Option<DateTime<Utc>>,
}
