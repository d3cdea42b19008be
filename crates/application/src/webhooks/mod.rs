//! Webhook subscriptions (OWNER and ADMIN), their delivery log, redelivery and pings.
//! The delivery itself is in [`delivery`].

pub mod delivery;
pub mod signature;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use chrono::{DateTime, Utc};
use nexus_domain::webhook::{
    Allowlist, EventSelection, MAX_ROTATION_OVERLAP, RetrySchedule, validate_description,
    validate_url,
};
use nexus_domain::{Action, Actor, DeliveryId, Resource, WebhookId};
use nexus_ports::security::SecretGenerator;
use nexus_ports::webhooks::{
    AttemptRecord, DeliveryRecord, DeliveryStatus, NewDelivery, NewWebhook, WebhookPatch,
    WebhookRecord, WebhookStore, WebhookWriteError,
};
use nexus_ports::{Clock, IdGenerator};

use crate::error::{AppError, FieldIssue};

type Fut<'a, T> = Pin<Box<dyn Future<Output = Result<T, AppError>> + Send + 'a>>;

/// How webhooks behave, from configuration.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    pub allowlist: Allowlist,
    pub schedule: RetrySchedule,
    /// Per attempt.
    pub timeout: Duration,
    /// How long a claimed delivery stays a worker's before another may take it over.
    pub lease: Duration,
    /// How long a rotated-out secret keeps signing unless the caller says otherwise.
    pub rotation_overlap: Duration,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self {
            allowlist: Allowlist::default(),
            schedule: RetrySchedule::default(),
            timeout: Duration::from_secs(10),
            lease: Duration::from_secs(60),
            rotation_overlap: Duration::from_secs(24 * 3600),
        }
    }
}

#[derive(Debug, Clone)]
pub struct WebhookInput {
    pub url: String,
    pub event_types: Vec<String>,
    pub description: Option<String>,
    pub active: bool,
}

/// Merge patch of a subscription.
#[derive(Debug, Clone, Default)]
pub struct WebhookUpdate {
    pub url: Option<String>,
    pub event_types: Option<Vec<String>>,
    pub description: Option<Option<String>>,
    pub active: Option<bool>,
}

/// A subscription with its new secret, shown once.
#[derive(Debug, Clone)]
pub struct WebhookWithSecret {
    pub webhook: WebhookRecord,
    pub secret: String,
}

pub trait WebhookUseCases: Send + Sync + 'static {
    fn create(&self, actor: Actor, input: WebhookInput) -> Fut<'_, WebhookWithSecret>;
    fn list(
        &self,
        actor: Actor,
        after: Option<WebhookId>,
        limit: i64,
    ) -> Fut<'_, Vec<WebhookRecord>>;
    fn get(&self, actor: Actor, id: WebhookId) -> Fut<'_, WebhookRecord>;
    fn update(
        &self,
        actor: Actor,
        id: WebhookId,
        update: WebhookUpdate,
        if_match: Option<i32>,
    ) -> Fut<'_, WebhookRecord>;
    fn delete(&self, actor: Actor, id: WebhookId, if_match: Option<i32>) -> Fut<'_, ()>;
    /// A new secret; the old one keeps signing for `overlap` (the default when `None`).
    fn rotate_secret(
        &self,
        actor: Actor,
        id: WebhookId,
        overlap: Option<Duration>,
    ) -> Fut<'_, WebhookWithSecret>;
    fn deliveries(
        &self,
        actor: Actor,
        id: WebhookId,
        status: Option<DeliveryStatus>,
        before_seq: Option<i64>,
        limit: i64,
    ) -> Fut<'_, Vec<DeliveryRecord>>;
    fn delivery(
        &self,
        actor: Actor,
        id: WebhookId,
        delivery: DeliveryId,
    ) -> Fut<'_, (DeliveryRecord, Vec<AttemptRecord>)>;
    /// Queues the same message (same `webhook-id`) again, as a new delivery.
    fn redeliver(
        &self,
        actor: Actor,
        id: WebhookId,
        delivery: DeliveryId,
    ) -> Fut<'_, DeliveryRecord>;
    /// Queues a `ping` message.
    fn ping(&self, actor: Actor, id: WebhookId) -> Fut<'_, DeliveryRecord>;
}

pub struct WebhookService<S, C, G, R> {
    store: S,
    clock: C,
    ids: G,
    secrets: R,
    settings: WebhookSettings,
}

fn write_error(e: WebhookWriteError) -> AppError {
    match e {
        WebhookWriteError::NotFound => AppError::NotFound,
        WebhookWriteError::VersionMismatch => AppError::PreconditionFailed,
        WebhookWriteError::Store(s) => AppError::Store(s),
    }
}

fn issue(i: nexus_domain::FieldIssue) -> FieldIssue {
    FieldIssue::new(i.field, i.code, i.message)
}

fn millis(ts: DateTime<Utc>) -> String {
    ts.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

impl<S, C, G, R> WebhookService<S, C, G, R>
where
    S: WebhookStore,
    C: Clock,
    G: IdGenerator,
    R: SecretGenerator,
{
    pub const fn new(store: S, clock: C, ids: G, secrets: R, settings: WebhookSettings) -> Self {
        Self {
            store,
            clock,
            ids,
            secrets,
            settings,
        }
    }

    /// Validates the given fields, reporting every problem at once.
    fn parse_input(
        &self,
        url: Option<&str>,
        event_types: Option<&[String]>,
        description: Option<Option<String>>,
    ) -> Result<WebhookPatch, AppError> {
        let mut problems = Vec::new();
        let url = url.and_then(|u| match validate_url(u.trim(), &self.settings.allowlist) {
            Ok(parsed) => Some(parsed.to_string()),
            Err(i) => {
                problems.push(issue(i));
                None
            }
        });
        let events = event_types.and_then(|names| match EventSelection::parse(names) {
            Ok(sel) => Some(sel.names()),
            Err(i) => {
                problems.push(issue(i));
                None
            }
        });
        let description = match description.map(validate_description) {
            Some(Ok(d)) => Some(d),
            Some(Err(i)) => {
                problems.push(issue(i));
                None
            }
            None => None,
        };
        if problems.is_empty() {
            Ok(WebhookPatch {
                url,
                description,
                event_types: events,
                active: None,
            })
        } else {
            Err(AppError::Validation(problems))
        }
    }

    async fn create(
        &self,
        actor: Actor,
        input: WebhookInput,
    ) -> Result<WebhookWithSecret, AppError> {
        actor.authorize(Resource::Integrations, Action::Create)?;
        let parsed = self.parse_input(
            Some(&input.url),
            Some(&input.event_types),
            Some(input.description),
        )?;
        let description = parsed.description;
        let (Some(url), Some(event_types)) = (parsed.url, parsed.event_types) else {
            return Err(AppError::invalid("url", "required", "url is required"));
        };
        let secret = signature::secret_from_token(&self.secrets.token());
        let webhook = self
            .store
            .create(
                actor.org_id,
                NewWebhook {
                    id: WebhookId::from_uuid(self.ids.new_id()),
                    url,
                    description: description.flatten(),
                    event_types,
                    active: input.active,
                    secret: secret.clone(),
                    created_by: actor.user_id(),
                },
            )
            .await?;
        Ok(WebhookWithSecret { webhook, secret })
    }

    async fn list(
        &self,
        actor: Actor,
        after: Option<WebhookId>,
        limit: i64,
    ) -> Result<Vec<WebhookRecord>, AppError> {
        actor.authorize(Resource::Integrations, Action::Read)?;
        Ok(self.store.list(actor.org_id, after, limit).await?)
    }

    async fn get(&self, actor: Actor, id: WebhookId) -> Result<WebhookRecord, AppError> {
        actor.authorize(Resource::Integrations, Action::Read)?;
        self.store
            .get(actor.org_id, id)
            .await?
            .ok_or(AppError::NotFound)
    }

    async fn update(
        &self,
        actor: Actor,
        id: WebhookId,
        update: WebhookUpdate,
        if_match: Option<i32>,
    ) -> Result<WebhookRecord, AppError> {
        actor.authorize(Resource::Integrations, Action::Update)?;
        let patch = WebhookPatch {
            active: update.active,
            ..self.parse_input(
                update.url.as_deref(),
                update.event_types.as_deref(),
                update.description,
            )?
        };
        self.store
            .update(actor.org_id, id, patch, if_match)
            .await
            .map_err(write_error)
    }

    async fn delete(
        &self,
        actor: Actor,
        id: WebhookId,
        if_match: Option<i32>,
    ) -> Result<(), AppError> {
        actor.authorize(Resource::Integrations, Action::Delete)?;
        self.store
            .delete(actor.org_id, id, if_match)
            .await
            .map_err(write_error)
    }

    async fn rotate_secret(
        &self,
        actor: Actor,
        id: WebhookId,
        overlap: Option<Duration>,
    ) -> Result<WebhookWithSecret, AppError> {
        actor.authorize(Resource::Integrations, Action::Update)?;
        let overlap = overlap.unwrap_or(self.settings.rotation_overlap);
        if overlap > MAX_ROTATION_OVERLAP {
            return Err(AppError::invalid(
                "overlapSeconds",
                "out_of_range",
                "the overlap is at most 7 days (604800 seconds)",
            ));
        }
        let until = self.clock.now()
            + chrono::TimeDelta::from_std(overlap).unwrap_or(chrono::TimeDelta::zero());
        let secret = signature::secret_from_token(&self.secrets.token());
        let webhook = self
            .store
            .rotate_secret(actor.org_id, id, secret.clone(), until)
            .await
            .map_err(write_error)?;
        Ok(WebhookWithSecret { webhook, secret })
    }

    async fn deliveries(
        &self,
        actor: Actor,
        id: WebhookId,
        status: Option<DeliveryStatus>,
        before_seq: Option<i64>,
        limit: i64,
    ) -> Result<Vec<DeliveryRecord>, AppError> {
        self.get(actor, id).await?;
        Ok(self
            .store
            .deliveries(actor.org_id, id, status, before_seq, limit)
            .await?)
    }

    async fn delivery(
        &self,
        actor: Actor,
        id: WebhookId,
        delivery: DeliveryId,
    ) -> Result<(DeliveryRecord, Vec<AttemptRecord>), AppError> {
        actor.authorize(Resource::Integrations, Action::Read)?;
        self.store
            .delivery(actor.org_id, id, delivery)
            .await?
            .ok_or(AppError::NotFound)
    }

    async fn redeliver(
        &self,
        actor: Actor,
        id: WebhookId,
        delivery: DeliveryId,
    ) -> Result<DeliveryRecord, AppError> {
        actor.authorize(Resource::Integrations, Action::Update)?;
        let original = self
            .store
            .delivery_body(actor.org_id, id, delivery)
            .await?
            .ok_or(AppError::NotFound)?;
        let again = NewDelivery {
            id: DeliveryId::from_uuid(self.ids.new_id()),
            ..original
        };
        self.store
            .enqueue(actor.org_id, id, again)
            .await
            .map_err(write_error)
    }

    async fn ping(&self, actor: Actor, id: WebhookId) -> Result<DeliveryRecord, AppError> {
        actor.authorize(Resource::Integrations, Action::Update)?;
        let message_id = self.ids.new_id();
        let body = serde_json::json!({
            "id": message_id,
            "type": "ping",
            "timestamp": millis(self.clock.now()),
            "organizationId": actor.org_id,
            "data": { "webhookId": id },
        });
        self.store
            .enqueue(
                actor.org_id,
                id,
                NewDelivery {
                    id: DeliveryId::from_uuid(self.ids.new_id()),
                    message_id,
                    event_id: None,
                    event_type: "ping".to_owned(),
                    body: body.to_string(),
                },
            )
            .await
            .map_err(write_error)
    }
}

impl<S, C, G, R> WebhookUseCases for WebhookService<S, C, G, R>
where
    S: WebhookStore,
    C: Clock,
    G: IdGenerator,
    R: SecretGenerator,
{
    fn create(&self, actor: Actor, input: WebhookInput) -> Fut<'_, WebhookWithSecret> {
        Box::pin(Self::create(self, actor, input))
    }
    fn list(
        &self,
        actor: Actor,
        after: Option<WebhookId>,
        limit: i64,
    ) -> Fut<'_, Vec<WebhookRecord>> {
        Box::pin(Self::list(self, actor, after, limit))
    }
    fn get(&self, actor: Actor, id: WebhookId) -> Fut<'_, WebhookRecord> {
        Box::pin(Self::get(self, actor, id))
    }
    fn update(
        &self,
        actor: Actor,
        id: WebhookId,
        update: WebhookUpdate,
        if_match: Option<i32>,
    ) -> Fut<'_, WebhookRecord> {
        Box::pin(Self::update(self, actor, id, update, if_match))
    }
    fn delete(&self, actor: Actor, id: WebhookId, if_match: Option<i32>) -> Fut<'_, ()> {
        Box::pin(Self::delete(self, actor, id, if_match))
    }
    fn rotate_secret(
        &self,
        actor: Actor,
        id: WebhookId,
        overlap: Option<Duration>,
    ) -> Fut<'_, WebhookWithSecret> {
        Box::pin(Self::rotate_secret(self, actor, id, overlap))
    }
    fn deliveries(
        &self,
        actor: Actor,
        id: WebhookId,
        status: Option<DeliveryStatus>,
        before_seq: Option<i64>,
        limit: i64,
    ) -> Fut<'_, Vec<DeliveryRecord>> {
        Box::pin(Self::deliveries(self, actor, id, status, before_seq, limit))
    }
    fn delivery(
        &self,
        actor: Actor,
        id: WebhookId,
        delivery: DeliveryId,
    ) -> Fut<'_, (DeliveryRecord, Vec<AttemptRecord>)> {
        Box::pin(Self::delivery(self, actor, id, delivery))
    }
    fn redeliver(
        &self,
        actor: Actor,
        id: WebhookId,
        delivery: DeliveryId,
    ) -> Fut<'_, DeliveryRecord> {
        Box::pin(Self::redeliver(self, actor, id, delivery))
    }
    fn ping(&self, actor: Actor, id: WebhookId) -> Fut<'_, DeliveryRecord> {
        Box::pin(Self::ping(self, actor, id))
    }
}
