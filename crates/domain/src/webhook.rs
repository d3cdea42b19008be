//! Webhook subscriptions: which events they take, where they may point, and what a
//! delivery attempt's outcome means for the delivery and the subscription.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::event::EventType;
use crate::validation::FieldIssue;

pub mod destination;

pub use destination::{Allowlist, Refusal, check_address, check_port};

/// The longest accepted URL.
pub const MAX_URL_LEN: usize = 2048;
/// The longest description.
pub const MAX_DESCRIPTION_LEN: usize = 500;
/// After this long failing without a single success, a subscription is disabled.
pub const DISABLE_AFTER_DAYS: i64 = 5;
/// The longest overlap during which a rotated-out secret still signs.
pub const MAX_ROTATION_OVERLAP: Duration = Duration::from_secs(7 * 24 * 3600);
/// The prefix Standard Webhooks gives signing secrets.
pub const SECRET_PREFIX: &str = "whsec_";

/// Which events a subscription receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventSelection {
    All,
    Only(Vec<EventType>),
}

impl EventSelection {
    /// Parses `["*"]` or a list of known event names (duplicates dropped, order kept).
    ///
    /// # Errors
    /// An empty list, an unknown name, or `*` mixed with names.
    pub fn parse(names: &[String]) -> Result<Self, FieldIssue> {
        if names.is_empty() {
            return Err(FieldIssue::new(
                "eventTypes",
                "required",
                "list at least one event type, or \"*\" for all",
            ));
        }
        if names.iter().any(|n| n == "*") {
            return if names.len() == 1 {
                Ok(Self::All)
            } else {
                Err(FieldIssue::new(
                    "eventTypes",
                    "invalid",
                    "\"*\" already selects every event; list it alone",
                ))
            };
        }
        let mut types = Vec::with_capacity(names.len());
        for name in names {
            let Some(t) = EventType::parse(name) else {
                return Err(FieldIssue::new(
                    "eventTypes",
                    "unknown_event_type",
                    format!("unknown event type \"{name}\""),
                ));
            };
            if !types.contains(&t) {
                types.push(t);
            }
        }
        Ok(Self::Only(types))
    }

    /// The stored and shown form.
    #[must_use]
    pub fn names(&self) -> Vec<String> {
        match self {
            Self::All => vec!["*".to_owned()],
            Self::Only(types) => types.iter().map(|t| t.as_str().to_owned()).collect(),
        }
    }

    #[must_use]
    pub fn matches(&self, event: EventType) -> bool {
        match self {
            Self::All => true,
            Self::Only(types) => types.contains(&event),
        }
    }
}

/// Checks a subscription URL when it is saved. Where it resolves to is checked at send
/// time (DNS can change), so this only refuses what can never be sent.
///
/// # Errors
/// A field issue for `url`.
pub fn validate_url(raw: &str, allowlist: &Allowlist) -> Result<url::Url, FieldIssue> {
    let issue = |code: &'static str, message: &str| FieldIssue::new("url", code, message);
    if raw.len() > MAX_URL_LEN {
        return Err(issue("too_long", "the URL is longer than 2048 characters"));
    }
    let url = url::Url::parse(raw).map_err(|_| issue("invalid_url", "not an absolute URL"))?;
    let Some(host) = url.host() else {
        return Err(issue("invalid_url", "the URL has no host"));
    };
    if !url.username().is_empty() || url.password().is_some() {
        return Err(issue(
            "credentials_in_url",
            "credentials in the URL would be stored and logged; authenticate with the signature",
        ));
    }
    if url.fragment().is_some() {
        return Err(issue("invalid_url", "a fragment is never sent; remove it"));
    }
    match url.scheme() {
        "https" => Ok(url),
        "http" if allowlist.permits_host(&host) => Ok(url),
        "http" => Err(issue(
            "insecure_url",
            "use https (http only for hosts in NEXUS_WEBHOOK_ALLOWLIST)",
        )),
        _ => Err(issue("invalid_url", "the scheme must be https")),
    }
}

/// # Errors
/// A field issue for `description`.
pub fn validate_description(description: Option<String>) -> Result<Option<String>, FieldIssue> {
    match description.map(|d| d.trim().to_owned()) {
        Some(d) if d.is_empty() => Ok(None),
        Some(d) if d.chars().count() > MAX_DESCRIPTION_LEN => Err(FieldIssue::new(
            "description",
            "too_long",
            "at most 500 characters",
        )),
        other => Ok(other),
    }
}

/// Waits between attempts: the n-th entry follows the n-th failed attempt; when the
/// list runs out, the delivery has failed for good.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrySchedule(Vec<Duration>);

impl Default for RetrySchedule {
    /// 5 s, 5 min, 30 min, 2 h, 5 h, then 10 h six times: about 2.8 days of retries.
    fn default() -> Self {
        let m = 60;
        let h = 3600;
        let mut delays = vec![5, 5 * m, 30 * m, 2 * h, 5 * h];
        delays.extend([10 * h; 6]);
        Self(delays.into_iter().map(Duration::from_secs).collect())
    }
}

impl RetrySchedule {
    #[must_use]
    pub const fn new(delays: Vec<Duration>) -> Self {
        Self(delays)
    }

    #[must_use]
    pub fn delays(&self) -> &[Duration] {
        &self.0
    }

    /// The wait after `failed_attempts` failures, spread by ±20 % with `jitter` in
    /// [0, 1) so that a receiver coming back is not hit by every retry at once.
    #[must_use]
    pub fn delay_after(&self, failed_attempts: u32, jitter: f64) -> Option<Duration> {
        let index = usize::try_from(failed_attempts.checked_sub(1)?).ok()?;
        let base = *self.0.get(index)?;
        Some(base.mul_f64(0.8 + 0.4 * jitter.clamp(0.0, 1.0)))
    }
}

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// A 2xx answer.
    Delivered,
    /// 410 Gone: the receiver asks never to be called again.
    Gone,
    /// Any other answer, a timeout or a connection failure.
    Failed,
    /// The destination is not allowed (SSRF guard); retrying cannot help.
    Refused,
}

impl AttemptOutcome {
    #[must_use]
    pub const fn from_status(status: u16) -> Self {
        match status {
            200..=299 => Self::Delivered,
            410 => Self::Gone,
            _ => Self::Failed,
        }
    }
}

/// What happens to the delivery after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryNext {
    Succeeded,
    RetryAt(DateTime<Utc>),
    Failed,
}

/// Why a subscription is switched off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisableReason {
    Gone,
    FailingTooLong,
}

impl DisableReason {
    #[must_use]
    pub const fn message(self) -> &'static str {
        match self {
            Self::Gone => "the endpoint answered 410 Gone",
            Self::FailingTooLong => "every attempt failed for 5 days",
        }
    }
}

/// The decision after an attempt, for the delivery and for its subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttemptDecision {
    pub delivery: DeliveryNext,
    /// `None` after a success: the failing streak ends.
    pub failing_since: Option<DateTime<Utc>>,
    pub disable: Option<DisableReason>,
}

/// Decides what an attempt means. `attempts` counts this one; `failing_since` is the
/// subscription's current streak of failures, if any.
#[must_use]
pub fn decide(
    outcome: &AttemptOutcome,
    attempts: u32,
    failing_since: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    schedule: &RetrySchedule,
    jitter: f64,
) -> AttemptDecision {
    if *outcome == AttemptOutcome::Delivered {
        return AttemptDecision {
            delivery: DeliveryNext::Succeeded,
            failing_since: None,
            disable: None,
        };
    }
    let since = failing_since.unwrap_or(now);
    let disable = if *outcome == AttemptOutcome::Gone {
        Some(DisableReason::Gone)
    } else if now - since >= chrono::TimeDelta::days(DISABLE_AFTER_DAYS) {
        Some(DisableReason::FailingTooLong)
    } else {
        None
    };
    let retry = match outcome {
        AttemptOutcome::Failed if disable.is_none() => schedule.delay_after(attempts, jitter),
        _ => None,
    };
    let delivery = match retry.and_then(|d| chrono::TimeDelta::from_std(d).ok()) {
        Some(wait) => DeliveryNext::RetryAt(now + wait),
        None => DeliveryNext::Failed,
    };
    AttemptDecision {
        delivery,
        failing_since: Some(since),
        disable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn event_selection_parses_star_names_and_refuses_the_rest() {
        assert_eq!(
            EventSelection::parse(&names(&["*"])).unwrap(),
            EventSelection::All
        );
        let only =
            EventSelection::parse(&names(&["deal.won", "contact.created", "deal.won"])).unwrap();
        assert_eq!(only.names(), names(&["deal.won", "contact.created"]));
        assert!(only.matches(EventType::DealWon));
        assert!(!only.matches(EventType::DealLost));
        assert!(EventSelection::All.matches(EventType::MemberRemoved));
        assert_eq!(EventSelection::parse(&[]).unwrap_err().code, "required");
        assert_eq!(
            EventSelection::parse(&names(&["deal.exploded"]))
                .unwrap_err()
                .code,
            "unknown_event_type"
        );
        assert_eq!(
            EventSelection::parse(&names(&["*", "deal.won"]))
                .unwrap_err()
                .code,
            "invalid"
        );
    }

    #[test]
    fn urls_must_be_https_unless_allowlisted_and_carry_no_credentials() {
        let none = Allowlist::default();
        let local = Allowlist::parse("127.0.0.0/8,localhost").unwrap();
        assert!(validate_url("https://hooks.example.com/x?a=1", &none).is_ok());
        assert_eq!(
            validate_url("http://hooks.example.com/x", &none)
                .unwrap_err()
                .code,
            "insecure_url"
        );
        assert!(validate_url("http://127.0.0.1:8080/in", &local).is_ok());
        assert!(validate_url("http://localhost:8080/in", &local).is_ok());
        assert_eq!(
            validate_url("http://127.0.0.1:8080/in", &none)
                .unwrap_err()
                .code,
            "insecure_url"
        );
        for bad in [
            "ftp://example.com/",
            "not a url",
            "https://u:p@example.com/",
        ] {
            assert!(validate_url(bad, &none).is_err(), "{bad}");
        }
        let long = format!("https://example.com/{}", "a".repeat(2048));
        assert_eq!(validate_url(&long, &none).unwrap_err().code, "too_long");
    }

    #[test]
    fn the_schedule_spreads_retries_over_about_three_days_then_stops() {
        let s = RetrySchedule::default();
        let total: Duration = s.delays().iter().sum();
        assert!(total > Duration::from_secs(60 * 3600) && total < Duration::from_secs(80 * 3600));
        assert_eq!(s.delay_after(0, 0.5), None);
        assert_eq!(s.delay_after(1, 0.5), Some(Duration::from_secs(5)));
        assert_eq!(s.delay_after(1, 0.0), Some(Duration::from_secs(4)));
        assert_eq!(s.delay_after(2, 0.999_999).map(|d| d.as_secs()), Some(359));
        let n = u32::try_from(s.delays().len()).unwrap();
        assert!(s.delay_after(n, 0.5).is_some());
        assert_eq!(s.delay_after(n + 1, 0.5), None);
    }

    #[test]
    fn outcomes_decide_retries_and_disabling() {
        let now = Utc::now();
        let s = RetrySchedule::default();
        let ok = decide(&AttemptOutcome::Delivered, 3, Some(now), now, &s, 0.5);
        assert_eq!(ok.delivery, DeliveryNext::Succeeded);
        assert_eq!(ok.failing_since, None);

        let failed = decide(&AttemptOutcome::Failed, 1, None, now, &s, 0.5);
        assert_eq!(
            failed.delivery,
            DeliveryNext::RetryAt(now + chrono::TimeDelta::seconds(5))
        );
        assert_eq!(failed.failing_since, Some(now));
        assert_eq!(failed.disable, None);

        let gone = decide(&AttemptOutcome::Gone, 1, None, now, &s, 0.5);
        assert_eq!(gone.delivery, DeliveryNext::Failed);
        assert_eq!(gone.disable, Some(DisableReason::Gone));

        let refused = decide(&AttemptOutcome::Refused, 1, None, now, &s, 0.5);
        assert_eq!(refused.delivery, DeliveryNext::Failed);
        assert_eq!(refused.disable, None);

        let long_ago = now - chrono::TimeDelta::days(5);
        let tired = decide(&AttemptOutcome::Failed, 2, Some(long_ago), now, &s, 0.5);
        assert_eq!(tired.disable, Some(DisableReason::FailingTooLong));
        assert_eq!(tired.delivery, DeliveryNext::Failed);
        let almost = now - chrono::TimeDelta::days(4);
        assert_eq!(
            decide(&AttemptOutcome::Failed, 2, Some(almost), now, &s, 0.5).disable,
            None
        );

        let exhausted = decide(&AttemptOutcome::Failed, 12, Some(now), now, &s, 0.5);
        assert_eq!(exhausted.delivery, DeliveryNext::Failed);
    }

    #[test]
    fn status_codes_map_to_outcomes() {
        assert_eq!(AttemptOutcome::from_status(204), AttemptOutcome::Delivered);
        assert_eq!(AttemptOutcome::from_status(410), AttemptOutcome::Gone);
        assert_eq!(AttemptOutcome::from_status(301), AttemptOutcome::Failed);
        assert_eq!(AttemptOutcome::from_status(500), AttemptOutcome::Failed);
    }
}
