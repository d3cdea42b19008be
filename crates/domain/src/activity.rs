//! Activities: what people did (calls, emails, meetings, notes, tasks) and what the
//! system recorded (deal created, moved, won, lost).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ActivityType {
    Call,
    Email,
    Meeting,
    Note,
    Task,
    DealCreated,
    DealStageChanged,
    DealWon,
    DealLost,
}

impl ActivityType {
    pub const ALL: [Self; 9] = [
        Self::Call,
        Self::Email,
        Self::Meeting,
        Self::Note,
        Self::Task,
        Self::DealCreated,
        Self::DealStageChanged,
        Self::DealWon,
        Self::DealLost,
    ];

    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Call => "CALL",
            Self::Email => "EMAIL",
            Self::Meeting => "MEETING",
            Self::Note => "NOTE",
            Self::Task => "TASK",
            Self::DealCreated => "DEAL_CREATED",
            Self::DealStageChanged => "DEAL_STAGE_CHANGED",
            Self::DealWon => "DEAL_WON",
            Self::DealLost => "DEAL_LOST",
        }
    }

    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// Written by the server only; a client that sends one gets 422.
    #[must_use]
    pub const fn is_system(self) -> bool {
        matches!(
            self,
            Self::DealCreated | Self::DealStageChanged | Self::DealWon | Self::DealLost
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_system_types_are_marked() {
        for t in ActivityType::ALL {
            assert_eq!(ActivityType::parse(t.as_str()), Some(t));
            assert_eq!(
                serde_json::to_string(&t).unwrap(),
                format!("\"{}\"", t.as_str())
            );
        }
        assert!(ActivityType::DealWon.is_system());
        assert!(!ActivityType::Task.is_system());
        assert_eq!(ActivityType::parse("call"), None);
    }
}
