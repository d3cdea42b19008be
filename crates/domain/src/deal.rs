//! Deals and the one decision that matters most: moving a deal between stages.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::activity::ActivityType;
use crate::ids::{ContactId, DealId, PipelineId, StageId, UserId};
use crate::pipeline::{Pipeline, Stage, StageKind};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DealStatus {
    Open,
    Won,
    Lost,
}

impl DealStatus {
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Open => "OPEN",
            Self::Won => "WON",
            Self::Lost => "LOST",
        }
    }

    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Open, Self::Won, Self::Lost]
            .into_iter()
            .find(|k| k.as_str() == s)
    }

    #[must_use]
    pub const fn of(kind: StageKind) -> Self {
        match kind {
            StageKind::Open => Self::Open,
            StageKind::Won => Self::Won,
            StageKind::Lost => Self::Lost,
        }
    }
}

/// A deal as the rules see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deal {
    pub id: DealId,
    pub pipeline_id: PipelineId,
    pub stage_id: StageId,
    pub contact_id: ContactId,
    pub owner_id: Option<UserId>,
    pub title: String,
    pub value_minor: i64,
    pub currency: String,
    pub status: DealStatus,
    pub probability: u8,
    pub closed_at: Option<DateTime<Utc>>,
    pub lost_reason: Option<String>,
    pub won_reason: Option<String>,
    pub stage_entered_at: DateTime<Utc>,
    pub version: i32,
}

/// Organization settings that shape moves.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MoveSettings {
    pub require_lost_reason: bool,
}

/// A request to move a deal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoveRequest {
    pub stage_id: StageId,
    pub lost_reason: Option<String>,
    pub won_reason: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MoveError {
    #[error("the stage belongs to another pipeline")]
    StageNotInPipeline,
    #[error("a lost reason is required when a deal is lost")]
    LostReasonRequired,
    #[error("a reason is at most 500 characters")]
    ReasonTooLong,
}

/// The system activity a move records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoveActivity {
    pub activity_type: ActivityType,
    pub subject: String,
    pub metadata: serde_json::Value,
}

/// Everything one move changes: the new deal, its history entry and its event names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoveChange {
    pub deal: Deal,
    pub from: Stage,
    pub to: Stage,
    pub activity: MoveActivity,
    /// `deal.stage_changed`, plus `deal.won` or `deal.lost` when it closes.
    pub closes: Option<DealStatus>,
}

fn reason(raw: Option<String>) -> Result<Option<String>, MoveError> {
    let r = raw.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty());
    if r.as_ref().is_some_and(|s| s.chars().count() > 500) {
        return Err(MoveError::ReasonTooLong);
    }
    Ok(r)
}

/// Decides a move. `Ok(None)`: the deal is already in that stage, nothing changes and
/// nothing is recorded.
///
/// # Errors
/// [`MoveError`] when the target is not a stage of the deal's pipeline, or the
/// organization requires a lost reason and none was given.
pub fn move_deal(
    deal: &Deal,
    pipeline: &Pipeline,
    request: MoveRequest,
    now: DateTime<Utc>,
    settings: MoveSettings,
) -> Result<Option<MoveChange>, MoveError> {
    let to = pipeline
        .stage(request.stage_id)
        .ok_or(MoveError::StageNotInPipeline)?
        .clone();
    if deal.stage_id == to.id {
        return Ok(None);
    }
    let from = pipeline
        .stage(deal.stage_id)
        .cloned()
        .unwrap_or_else(|| Stage {
            id: deal.stage_id,
            name: "(removed stage)".into(),
            probability: deal.probability,
            kind: StageKind::Open,
        });
    let lost_reason = reason(request.lost_reason)?;
    let won_reason = reason(request.won_reason)?;
    if to.kind == StageKind::Lost && settings.require_lost_reason && lost_reason.is_none() {
        return Err(MoveError::LostReasonRequired);
    }
    let status = DealStatus::of(to.kind);
    let mut next = deal.clone();
    next.stage_id = to.id;
    next.status = status;
    next.probability = to.probability;
    next.stage_entered_at = now;
    next.version += 1;
    match to.kind {
        StageKind::Open => {
            next.closed_at = None;
            next.lost_reason = None;
            next.won_reason = None;
        }
        StageKind::Won => {
            next.closed_at = Some(now);
            next.won_reason = won_reason;
            next.lost_reason = None;
        }
        StageKind::Lost => {
            next.closed_at = Some(now);
            next.lost_reason = lost_reason;
            next.won_reason = None;
        }
    }
    let (activity_type, verb) = match to.kind {
        StageKind::Open => (ActivityType::DealStageChanged, "moved"),
        StageKind::Won => (ActivityType::DealWon, "won"),
        StageKind::Lost => (ActivityType::DealLost, "lost"),
    };
    let activity = MoveActivity {
        activity_type,
        subject: format!("Deal {verb}: {} → {}", from.name, to.name),
        metadata: serde_json::json!({
            "fromStageId": from.id, "fromStage": from.name,
            "toStageId": to.id, "toStage": to.name,
            "lostReason": next.lost_reason, "wonReason": next.won_reason,
        }),
    };
    let closes = (status != DealStatus::Open).then_some(status);
    Ok(Some(MoveChange {
        deal: next,
        from,
        to,
        activity,
        closes,
    }))
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;
    use crate::pipeline::{default_stages, validate_definition};

    fn pipeline() -> Pipeline {
        let (name, stages) = validate_definition("Sales", default_stages(), || {
            StageId::from_uuid(Uuid::now_v7())
        })
        .unwrap();
        Pipeline {
            id: PipelineId::from_uuid(Uuid::now_v7()),
            name,
            is_default: true,
            stages,
        }
    }

    fn deal(p: &Pipeline) -> Deal {
        Deal {
            id: DealId::from_uuid(Uuid::now_v7()),
            pipeline_id: p.id,
            stage_id: p.stages[0].id,
            contact_id: ContactId::from_uuid(Uuid::now_v7()),
            owner_id: None,
            title: "Big one".into(),
            value_minor: 100_000,
            currency: "USD".into(),
            status: DealStatus::Open,
            probability: 10,
            closed_at: None,
            lost_reason: None,
            won_reason: None,
            stage_entered_at: Utc::now() - chrono::Duration::days(3),
            version: 1,
        }
    }

    fn to(stage: StageId) -> MoveRequest {
        MoveRequest {
            stage_id: stage,
            lost_reason: None,
            won_reason: None,
        }
    }

    #[test]
    fn moving_to_an_open_stage_takes_its_probability_and_reopens() {
        let p = pipeline();
        let mut d = deal(&p);
        d.status = DealStatus::Won;
        d.closed_at = Some(Utc::now());
        d.stage_id = p.stages[4].id;
        let now = Utc::now();
        let change = move_deal(&d, &p, to(p.stages[2].id), now, MoveSettings::default())
            .unwrap()
            .unwrap();
        assert_eq!(change.deal.status, DealStatus::Open);
        assert_eq!(change.deal.probability, 50);
        assert_eq!(change.deal.closed_at, None);
        assert_eq!(change.deal.stage_entered_at, now);
        assert_eq!(change.deal.version, 2);
        assert_eq!(
            change.activity.activity_type,
            ActivityType::DealStageChanged
        );
        assert_eq!(change.activity.metadata["fromStage"], "Closed Won");
        assert_eq!(change.closes, None);
    }

    #[test]
    fn winning_and_losing_close_the_deal() {
        let p = pipeline();
        let d = deal(&p);
        let now = Utc::now();
        let won = move_deal(
            &d,
            &p,
            MoveRequest {
                stage_id: p.stages[4].id,
                lost_reason: None,
                won_reason: Some(" price ".into()),
            },
            now,
            MoveSettings::default(),
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            (won.deal.status, won.deal.probability, won.deal.closed_at),
            (DealStatus::Won, 100, Some(now))
        );
        assert_eq!(won.deal.won_reason.as_deref(), Some("price"));
        assert_eq!(won.activity.activity_type, ActivityType::DealWon);
        assert_eq!(won.closes, Some(DealStatus::Won));

        let lost = move_deal(&d, &p, to(p.stages[5].id), now, MoveSettings::default())
            .unwrap()
            .unwrap();
        assert_eq!(
            (lost.deal.status, lost.deal.probability),
            (DealStatus::Lost, 0)
        );
        assert_eq!(lost.activity.activity_type, ActivityType::DealLost);
        assert_eq!(lost.closes, Some(DealStatus::Lost));
    }

    #[test]
    fn a_lost_reason_is_required_when_the_organization_says_so() {
        let p = pipeline();
        let d = deal(&p);
        let strict = MoveSettings {
            require_lost_reason: true,
        };
        assert_eq!(
            move_deal(&d, &p, to(p.stages[5].id), Utc::now(), strict),
            Err(MoveError::LostReasonRequired)
        );
        let blank = MoveRequest {
            stage_id: p.stages[5].id,
            lost_reason: Some("  ".into()),
            won_reason: None,
        };
        assert_eq!(
            move_deal(&d, &p, blank, Utc::now(), strict),
            Err(MoveError::LostReasonRequired)
        );
        let given = MoveRequest {
            stage_id: p.stages[5].id,
            lost_reason: Some("budget".into()),
            won_reason: None,
        };
        let change = move_deal(&d, &p, given, Utc::now(), strict)
            .unwrap()
            .unwrap();
        assert_eq!(change.deal.lost_reason.as_deref(), Some("budget"));
    }

    #[test]
    fn the_same_stage_is_a_no_op_and_foreign_stages_are_refused() {
        let p = pipeline();
        let d = deal(&p);
        assert_eq!(
            move_deal(&d, &p, to(d.stage_id), Utc::now(), MoveSettings::default()),
            Ok(None)
        );
        let other = pipeline();
        assert_eq!(
            move_deal(
                &d,
                &p,
                to(other.stages[1].id),
                Utc::now(),
                MoveSettings::default()
            ),
            Err(MoveError::StageNotInPipeline)
        );
        let long = MoveRequest {
            stage_id: p.stages[5].id,
            lost_reason: Some("x".repeat(501)),
            won_reason: None,
        };
        assert_eq!(
            move_deal(&d, &p, long, Utc::now(), MoveSettings::default()),
            Err(MoveError::ReasonTooLong)
        );
    }
}
