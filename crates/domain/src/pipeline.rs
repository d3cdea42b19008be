//! Pipelines and their stages: the rules of DOMAIN.md, checked as one function.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::ids::{PipelineId, StageId};
use crate::validation::FieldIssue;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StageKind {
    Open,
    Won,
    Lost,
}

impl StageKind {
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Won => "won",
            Self::Lost => "lost",
        }
    }

    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Open, Self::Won, Self::Lost]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    pub id: StageId,
    pub name: String,
    pub probability: u8,
    pub kind: StageKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pipeline {
    pub id: PipelineId,
    pub name: String,
    pub is_default: bool,
    /// In board order.
    pub stages: Vec<Stage>,
}

/// A stage as a client proposes it: `id` names an existing stage to keep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageDraft {
    pub id: Option<StageId>,
    pub name: String,
    pub probability: i64,
    pub kind: StageKind,
}

pub const MAX_STAGES: usize = 50;

impl Pipeline {
    #[must_use]
    pub fn stage(&self, id: StageId) -> Option<&Stage> {
        self.stages.iter().find(|s| s.id == id)
    }

    /// The first open stage: where new deals start by default.
    #[must_use]
    pub fn first_open_stage(&self) -> Option<&Stage> {
        self.stages.iter().find(|s| s.kind == StageKind::Open)
    }
}

/// Validates a pipeline definition, giving new stages ids from `new_id`.
///
/// # Errors
/// Every broken rule, as field issues (`name`, `stages`, `stages[i].name`, ...).
pub fn validate_definition(
    name: &str,
    drafts: Vec<StageDraft>,
    mut new_id: impl FnMut() -> StageId,
) -> Result<(String, Vec<Stage>), Vec<FieldIssue>> {
    let mut issues = Vec::new();
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        issues.push(FieldIssue::new(
            "name",
            if name.is_empty() {
                "required"
            } else {
                "too_long"
            },
            "a name of 1–100 characters",
        ));
    }
    if drafts.is_empty() || drafts.len() > MAX_STAGES {
        issues.push(FieldIssue::new(
            "stages",
            "invalid_length",
            format!("a pipeline has 1 to {MAX_STAGES} stages"),
        ));
    }
    let mut seen = HashSet::new();
    let mut ids = HashSet::new();
    let mut stages = Vec::with_capacity(drafts.len());
    for (i, d) in drafts.into_iter().enumerate() {
        let field = |f: &str| format!("stages[{i}].{f}");
        let stage_name = d.name.trim().to_owned();
        if stage_name.is_empty() || stage_name.chars().count() > 100 {
            issues.push(FieldIssue::new(
                field("name"),
                "invalid_length",
                "a stage name has 1–100 characters",
            ));
        } else if !seen.insert(stage_name.to_lowercase()) {
            issues.push(FieldIssue::new(
                field("name"),
                "duplicate",
                "stage names are unique within a pipeline",
            ));
        }
        let probability = u8::try_from(d.probability).ok().filter(|p| *p <= 100);
        match (probability, d.kind) {
            (None, _) => issues.push(FieldIssue::new(
                field("probability"),
                "out_of_range",
                "a probability is 0–100",
            )),
            (Some(p), StageKind::Won) if p != 100 => {
                issues.push(FieldIssue::new(
                    field("probability"),
                    "won_must_be_100",
                    "a won stage has probability 100",
                ));
            }
            (Some(p), StageKind::Lost) if p != 0 => {
                issues.push(FieldIssue::new(
                    field("probability"),
                    "lost_must_be_0",
                    "a lost stage has probability 0",
                ));
            }
            _ => {}
        }
        let id = d.id.unwrap_or_else(&mut new_id);
        if !ids.insert(id) {
            issues.push(FieldIssue::new(
                field("id"),
                "duplicate",
                "a stage appears once",
            ));
        }
        stages.push(Stage {
            id,
            name: stage_name,
            probability: probability.unwrap_or(0),
            kind: d.kind,
        });
    }
    if !stages.is_empty() && !stages.iter().any(|s| s.kind == StageKind::Open) {
        issues.push(FieldIssue::new(
            "stages",
            "no_open_stage",
            "a pipeline needs at least one open stage",
        ));
    }
    if issues.is_empty() {
        Ok((name.to_owned(), stages))
    } else {
        Err(issues)
    }
}

/// The stages of the pipeline registration creates.
#[must_use]
pub fn default_stages() -> Vec<StageDraft> {
    [
        ("Lead", 10, StageKind::Open),
        ("Qualified", 25, StageKind::Open),
        ("Proposal", 50, StageKind::Open),
        ("Negotiation", 75, StageKind::Open),
        ("Closed Won", 100, StageKind::Won),
        ("Closed Lost", 0, StageKind::Lost),
    ]
    .into_iter()
    .map(|(name, probability, kind)| StageDraft {
        id: None,
        name: name.into(),
        probability,
        kind,
    })
    .collect()
}

/// What happens to the deals of stages a redefinition removes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StageRemovalError {
    /// A removed stage holds deals and no target was named.
    TargetRequired { stage: StageId },
    /// The target is not a stage of the new definition.
    UnknownTarget,
}

/// Checks removed stages against the deals they hold (`deal_count`) and the target.
///
/// # Errors
/// [`StageRemovalError`].
pub fn check_stage_removal(
    old: &[Stage],
    new: &[Stage],
    deal_count: impl Fn(StageId) -> i64,
    move_deals_to: Option<StageId>,
) -> Result<Vec<StageId>, StageRemovalError> {
    if move_deals_to.is_some_and(|target| !new.iter().any(|s| s.id == target)) {
        return Err(StageRemovalError::UnknownTarget);
    }
    let removed: Vec<StageId> = old
        .iter()
        .filter(|o| !new.iter().any(|n| n.id == o.id))
        .map(|s| s.id)
        .collect();
    for stage in &removed {
        if move_deals_to.is_none() && deal_count(*stage) > 0 {
            return Err(StageRemovalError::TargetRequired { stage: *stage });
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;

    fn id() -> StageId {
        StageId::from_uuid(Uuid::now_v7())
    }

    fn draft(name: &str, probability: i64, kind: StageKind) -> StageDraft {
        StageDraft {
            id: None,
            name: name.into(),
            probability,
            kind,
        }
    }

    #[test]
    fn the_default_pipeline_is_valid() {
        let (name, stages) = validate_definition("Sales", default_stages(), id).unwrap();
        assert_eq!(name, "Sales");
        let names: Vec<_> = stages
            .iter()
            .map(|s| (s.name.as_str(), s.probability))
            .collect();
        assert_eq!(names[0], ("Lead", 10));
        assert_eq!(names[4], ("Closed Won", 100));
        assert_eq!(stages[5].kind, StageKind::Lost);
    }

    #[test]
    fn every_rule_is_reported() {
        let issues = validate_definition(
            " ",
            vec![
                draft("Won", 90, StageKind::Won),
                draft("won", 0, StageKind::Lost),
                draft("Lost", 10, StageKind::Lost),
            ],
            id,
        )
        .unwrap_err();
        let codes: Vec<_> = issues.iter().map(|i| (i.field.as_str(), i.code)).collect();
        assert!(codes.contains(&("name", "required")));
        assert!(codes.contains(&("stages[0].probability", "won_must_be_100")));
        assert!(codes.contains(&("stages[1].name", "duplicate")));
        assert!(codes.contains(&("stages[2].probability", "lost_must_be_0")));
        assert!(codes.contains(&("stages", "no_open_stage")));
    }

    #[test]
    fn stage_counts_and_probabilities_are_bounded() {
        assert!(validate_definition("P", vec![], id).is_err());
        let many: Vec<_> = (0..51)
            .map(|i| draft(&format!("S{i}"), 10, StageKind::Open))
            .collect();
        assert!(
            validate_definition("P", many, id)
                .unwrap_err()
                .iter()
                .any(|i| i.field == "stages")
        );
        let bad = validate_definition("P", vec![draft("A", 101, StageKind::Open)], id).unwrap_err();
        assert_eq!(bad[0].code, "out_of_range");
        let fifty: Vec<_> = (0..50)
            .map(|i| draft(&format!("S{i}"), 10, StageKind::Open))
            .collect();
        assert!(validate_definition("P", fifty, id).is_ok());
    }

    #[test]
    fn removing_a_stage_with_deals_needs_a_target() {
        let (_, old) = validate_definition("P", default_stages(), id).unwrap();
        let new: Vec<Stage> = old
            .iter()
            .filter(|s| s.name != "Qualified")
            .cloned()
            .collect();
        let qualified = old[1].id;
        let counts = |s: StageId| if s == qualified { 3 } else { 0 };
        assert_eq!(
            check_stage_removal(&old, &new, counts, None),
            Err(StageRemovalError::TargetRequired { stage: qualified })
        );
        assert_eq!(
            check_stage_removal(&old, &new, counts, Some(new[0].id)),
            Ok(vec![qualified])
        );
        assert_eq!(
            check_stage_removal(&old, &new, counts, Some(qualified)),
            Err(StageRemovalError::UnknownTarget)
        );
        assert_eq!(
            check_stage_removal(&old, &new, |_| 0, None),
            Ok(vec![qualified])
        );
    }
}
