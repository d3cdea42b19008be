//! Contacts, their custom field definitions and tags: authorize with the RBAC matrix,
//! load through the ports, let the domain decide, persist change sets atomically.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use nexus_domain::contact::{
    Contact, ContactFields, EventContext, RESTORE_WINDOW_DAYS, RestoreError, Tag,
};
use nexus_domain::custom_field::{
    CustomFieldDefinition, DefinitionChangeError, FieldSpec, FieldType, MAX_DEFINITIONS,
    filter_value,
};
use nexus_domain::{
    Action, Actor, ContactId, CustomFieldId, EventActor, EventId, Principal, Resource,
};
use nexus_ports::contacts::{
    ContactFilter, ContactPage, ContactQuery, ContactRepository, ContactSnapshot,
    ContactWriteError, CustomFieldRepository, DefinitionWriteError, FieldSet, Keyset, Sort,
};
use nexus_ports::{Clock, IdGenerator};
use serde_json::{Map, Value};

use crate::error::{AppError, FieldIssue};
use crate::field_sets::FieldSets;

type Fut<'a, T> = Pin<Box<dyn Future<Output = Result<T, AppError>> + Send + 'a>>;

/// Items a batch may hold.
pub const MAX_BATCH: usize = 100;

/// A batch writes contacts: a caller who may write none of them is refused as a whole,
/// whatever (and however malformed) its items, as a single write would be.
///
/// # Errors
/// 403 when the role may neither create, update nor delete contacts.
pub fn authorize_batch(actor: &Actor) -> Result<(), AppError> {
    if [Action::Create, Action::Update, Action::Delete]
        .into_iter()
        .any(|action| actor.authorize(Resource::Contacts, action).is_ok())
    {
        return Ok(());
    }
    Ok(actor.authorize(Resource::Contacts, Action::Create)?)
}

/// How many times an update without `If-Match` is retried when it races another writer.
const RACE_RETRIES: usize = 3;

/// How many times a write is validated again after the custom field definitions
/// changed under it.
pub(crate) const DEFINITION_RETRIES: usize = 3;

/// A list request: filters as typed by the caller, custom field filters still raw
/// (their type comes from the organization's definitions).
#[derive(Debug, Clone, PartialEq)]
pub struct ListContacts {
    pub filter: ContactFilter,
    /// `customFields.<key>=<value>` pairs.
    pub custom_fields: Vec<(String, String)>,
    pub sort: Sort,
    pub limit: u32,
    pub after: Option<Keyset>,
    pub include_total: bool,
}

/// A custom field definition as a client writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldInput {
    pub key: String,
    pub label: String,
    pub field_type: FieldType,
    pub required: bool,
    pub options: Vec<String>,
}

/// Tags with the number of live contacts carrying each, most used first, then by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagPage {
    pub tags: Vec<(String, i64)>,
    /// More tags follow the last one.
    pub more: bool,
    /// How many tags the whole list holds, when asked for.
    pub total: Option<i64>,
}

/// Changes to a custom field definition, as a merge patch: `None` keeps an attribute,
/// `Some(None)` is the `null` that would clear it (options only; the rest every
/// definition has), `Some(Some(v))` sets it. The key never changes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldPatch {
    pub label: Option<Option<String>>,
    pub field_type: Option<Option<FieldType>>,
    pub required: Option<Option<bool>>,
    pub options: Option<Option<Vec<String>>>,
}

impl FieldPatch {
    /// `current` with the patch applied.
    ///
    /// # Errors
    /// 422 `required` naming every attribute set to `null` but the options.
    fn applied_to(self, current: &FieldSpec) -> Result<FieldInput, AppError> {
        let mut nulls = Vec::new();
        let label = kept(self.label, "label", &mut nulls);
        let field_type = kept(self.field_type, "type", &mut nulls);
        let required = kept(self.required, "required", &mut nulls);
        if !nulls.is_empty() {
            return Err(AppError::Validation(nulls));
        }
        let field_type = field_type.unwrap_or(current.field_type);
        // Options are kept only for a type that has them: `{"type": "text"}` on a select
        // must not be refused for options the client did not send.
        let options = match self.options {
            Some(options) => options.unwrap_or_default(),
            None if field_type.has_options() => current.options.clone(),
            None => Vec::new(),
        };
        Ok(FieldInput {
            key: current.key.as_str().to_owned(),
            label: label.unwrap_or_else(|| current.label.clone()),
            field_type,
            required: required.unwrap_or(current.required),
            options,
        })
    }
}

/// A patched attribute every definition has: absent keeps it (`None`), `null` is noted
/// in `nulls`.
fn kept<T>(value: Option<Option<T>>, field: &str, nulls: &mut Vec<FieldIssue>) -> Option<T> {
    let value = value?;
    if value.is_none() {
        nulls.push(FieldIssue::new(
            field,
            "required",
            "a definition always has one; omit it to keep the current value",
        ));
    }
    value
}

/// The first `limit` of `items`, fetched one more than a page, and whether more follow.
fn one_page<T>(mut items: Vec<T>, limit: u32) -> (Vec<T>, bool) {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let more = items.len() > limit;
    items.truncate(limit);
    (items, more)
}

/// Deleted contacts not yet purged, most recently deleted first.
#[derive(Debug, Clone, PartialEq)]
pub struct DeletedPage {
    pub contacts: Vec<Contact>,
    /// More follow the last one.
    pub more: bool,
}

/// One operation of a batch.
#[derive(Debug, Clone, PartialEq)]
pub enum BatchOp {
    Create {
        body: Map<String, Value>,
    },
    Update {
        id: ContactId,
        patch: Map<String, Value>,
        if_match: Option<i32>,
    },
    Delete {
        id: ContactId,
        if_match: Option<i32>,
    },
}

/// What became of one batch item.
#[derive(Debug)]
pub enum BatchOutcome {
    Created(Contact),
    Updated(Contact),
    Deleted,
}

pub trait ContactUseCases: Send + Sync + 'static {
    fn create(&self, actor: Actor, body: Map<String, Value>) -> Fut<'_, Contact>;
    fn get(&self, actor: Actor, id: ContactId) -> Fut<'_, Contact>;
    fn update(
        &self,
        actor: Actor,
        id: ContactId,
        patch: Map<String, Value>,
        if_match: Option<i32>,
    ) -> Fut<'_, Contact>;
    fn delete(&self, actor: Actor, id: ContactId, if_match: Option<i32>) -> Fut<'_, ()>;
    fn restore(&self, actor: Actor, id: ContactId, if_match: Option<i32>) -> Fut<'_, Contact>;
    fn deleted(
        &self,
        actor: Actor,
        after: Option<(DateTime<Utc>, ContactId)>,
        limit: u32,
    ) -> Fut<'_, DeletedPage>;
    fn list(&self, actor: Actor, request: ListContacts) -> Fut<'_, ContactPage>;
    fn export(&self, actor: Actor, request: ListContacts) -> Fut<'_, Box<dyn ContactSnapshot>>;
    fn batch(
        &self,
        actor: Actor,
        ops: Vec<BatchOp>,
    ) -> Fut<'_, Vec<Result<BatchOutcome, AppError>>>;
    fn custom_fields(&self, actor: Actor) -> Fut<'_, Vec<CustomFieldDefinition>>;
    fn custom_field(&self, actor: Actor, id: CustomFieldId) -> Fut<'_, CustomFieldDefinition>;
    fn create_custom_field(
        &self,
        actor: Actor,
        input: FieldInput,
    ) -> Fut<'_, CustomFieldDefinition>;
    fn update_custom_field(
        &self,
        actor: Actor,
        id: CustomFieldId,
        patch: FieldPatch,
        if_match: Option<i32>,
    ) -> Fut<'_, CustomFieldDefinition>;
    fn delete_custom_field(
        &self,
        actor: Actor,
        id: CustomFieldId,
        if_match: Option<i32>,
    ) -> Fut<'_, ()>;
    fn tags(
        &self,
        actor: Actor,
        after: Option<(i64, String)>,
        limit: u32,
        include_total: bool,
    ) -> Fut<'_, TagPage>;
    /// The purge job: removes contacts deleted more than 30 days ago, in every organization.
    fn purge_expired(&self) -> Fut<'_, u64>;
    fn rename_tag(&self, actor: Actor, from: String, to: String) -> Fut<'_, u64>;
    fn delete_tag(&self, actor: Actor, tag: String) -> Fut<'_, u64>;
}

pub struct ContactService<R, F, C, G> {
    contacts: R,
    fields: F,
    clock: C,
    ids: G,
    field_sets: FieldSets,
}

/// An `ownerId` naming someone outside the organization (contact writes and imports).
pub(crate) fn owner_not_a_member() -> nexus_domain::FieldIssue {
    nexus_domain::FieldIssue::new(
        "ownerId",
        "not_a_member",
        "the owner must be a member of the organization",
    )
}

fn issues(list: Vec<nexus_domain::FieldIssue>) -> AppError {
    AppError::Validation(
        list.into_iter()
            .map(|i| FieldIssue::new(i.field, i.code, i.message))
            .collect(),
    )
}

/// Runs `attempt` (a read, a decision, a write) again when its write lost a race to
/// another change, a few times at most, unless the caller named the version it expects:
/// then the lost race is theirs to see (412). See [`race_error`] for the last loss.
async fn rerun_lost_races<T, A>(
    if_match: Option<i32>,
    mut attempt: impl FnMut() -> A,
) -> Result<T, AppError>
where
    A: Future<Output = Result<Result<T, ContactWriteError>, AppError>>,
{
    let mut raced = 0;
    loop {
        match attempt().await? {
            Err(ContactWriteError::VersionMismatch { .. })
                if if_match.is_none() && raced + 1 < RACE_RETRIES =>
            {
                raced += 1;
            }
            written => return written.map_err(|e| race_error(e, if_match)),
        }
    }
}

/// A write's error once retries are over. A caller without `If-Match` set no precondition,
/// so losing every race is not a 412 for them but a 409 to retry (`Retry-After`).
fn race_error(e: ContactWriteError, if_match: Option<i32>) -> AppError {
    match e {
        ContactWriteError::VersionMismatch { .. } if if_match.is_none() => AppError::contended(
            "concurrent_changes",
            "The contact kept changing during the request; retry it.",
        ),
        other => write_error(other),
    }
}

fn write_error(e: ContactWriteError) -> AppError {
    match e {
        ContactWriteError::DuplicateEmail => AppError::conflict(
            "duplicate_email",
            "Another contact of the organization has this email address.",
        ),
        ContactWriteError::OwnerNotMember => issues(vec![owner_not_a_member()]),
        ContactWriteError::VersionMismatch { .. } => AppError::PreconditionFailed,
        ContactWriteError::NotFound => AppError::NotFound,
        ContactWriteError::DefinitionsChanged => AppError::contended(
            "custom_fields_changed",
            "The organization's custom fields kept changing during the request; retry it.",
        ),
        ContactWriteError::Store(s) => s.into(),
    }
}

fn type_in_use() -> AppError {
    AppError::conflict(
        "field_type_in_use",
        "The type cannot change while contacts hold values for this field.",
    )
}

fn definition_error(e: DefinitionWriteError) -> AppError {
    match e {
        DefinitionWriteError::DuplicateKey => {
            AppError::conflict("duplicate_key", "A custom field with this key exists.")
        }
        DefinitionWriteError::VersionMismatch { .. } => AppError::PreconditionFailed,
        DefinitionWriteError::NotFound => AppError::NotFound,
        DefinitionWriteError::ValuesExist => type_in_use(),
        DefinitionWriteError::TooMany => AppError::invalid(
            "key",
            "too_many",
            format!("an organization has at most {MAX_DEFINITIONS} custom fields"),
        ),
        DefinitionWriteError::Store(s) => s.into(),
    }
}

/// `;` separates a multiselect's values in CSV files (the export joins them with it, an
/// import splits on it), so an option holding one would not come back whole. Refused for
/// options not in `kept` only: a definition stored before this rule still loads and can
/// still be edited.
fn refuse_value_separators(spec: &FieldSpec, kept: &[String]) -> Result<(), AppError> {
    if spec.field_type != FieldType::Multiselect {
        return Ok(());
    }
    let found: Vec<crate::error::FieldIssue> = spec
        .options
        .iter()
        .enumerate()
        .filter(|(_, o)| o.contains(';') && !kept.contains(o))
        .map(|(i, _)| {
            crate::error::FieldIssue::new(
                format!("options[{i}]"),
                "invalid_format",
                "a multiselect option cannot hold `;`, which separates values in CSV files",
            )
        })
        .collect();
    if found.is_empty() {
        Ok(())
    } else {
        Err(AppError::Validation(found))
    }
}

/// A tag to write.
fn tag(field: &str, raw: &str) -> Result<String, AppError> {
    checked_tag(field, raw, Tag::parse)
}

/// A tag that may already be stored (see [`Tag::parse_existing`]).
fn existing_tag(field: &str, raw: &str) -> Result<String, AppError> {
    checked_tag(field, raw, Tag::parse_existing)
}

fn checked_tag(
    field: &str,
    raw: &str,
    parse: fn(&str) -> Result<Tag, &'static str>,
) -> Result<String, AppError> {
    parse(raw)
        .map(|t| t.as_str().to_owned())
        .map_err(|code| AppError::invalid(field, code, Tag::RULE))
}

impl<R, F, C, G> ContactService<R, F, C, G>
where
    R: ContactRepository,
    F: CustomFieldRepository,
    C: Clock,
    G: IdGenerator,
{
    pub fn new(contacts: R, fields: F, clock: C, ids: G) -> Self {
        Self {
            contacts,
            fields,
            clock,
            ids,
            field_sets: FieldSets::default(),
        }
    }

    /// Now, at the database's precision (microseconds), so what a write returns equals
    /// what a later read shows.
    fn now(&self) -> DateTime<Utc> {
        let now = self.clock.now();
        DateTime::from_timestamp_micros(now.timestamp_micros()).unwrap_or(now)
    }

    fn ctx(&self, actor: &Actor) -> EventContext {
        EventContext {
            event_id: EventId::from_uuid(self.ids.new_id()),
            actor: event_actor(actor),
            now: self.now(),
        }
    }

    /// The kept field set of the organization (see `field_sets`), or with `fresh` one
    /// read now; and whether it was read now.
    async fn field_set(
        &self,
        actor: &Actor,
        fresh: bool,
    ) -> Result<(Arc<FieldSet>, bool), AppError> {
        if !fresh && let Some(set) = self.field_sets.get(actor.org_id) {
            return Ok((set, false));
        }
        let set = Arc::new(self.fields.field_set(actor.org_id).await?);
        self.field_sets.put(actor.org_id, Arc::clone(&set));
        Ok((set, true))
    }

    /// Definitions as of now, for reads (never the kept set: see `field_sets`).
    async fn specs(&self, actor: &Actor) -> Result<Vec<FieldSpec>, AppError> {
        Ok(self
            .fields
            .list(actor.org_id)
            .await?
            .into_iter()
            .map(|d| d.spec)
            .collect())
    }

    /// # Errors
    /// 403 for VIEWER, 422 for invalid fields (unknown ones carry `unknown_field`),
    /// 409 for a duplicate email.
    pub async fn create(
        &self,
        actor: Actor,
        body: Map<String, Value>,
    ) -> Result<Contact, AppError> {
        actor.authorize(Resource::Contacts, Action::Create)?;
        let (mut fresh, mut changed) = (false, 0);
        loop {
            let set;
            (set, fresh) = self.field_set(&actor, fresh).await?;
            let fields = match ContactFields::parse(&body, &set.specs, None) {
                Ok(fields) => fields,
                Err(_) if !fresh => {
                    fresh = true;
                    continue;
                }
                Err(list) => return Err(issues(list)),
            };
            let id = ContactId::from_uuid(self.ids.new_id());
            let (contact, event) = Contact::create(id, actor.org_id, fields, &self.ctx(&actor));
            match self
                .contacts
                .insert(actor.org_id, &contact, &event, set.generation)
                .await
            {
                Ok(()) => return Ok(contact),
                Err(ContactWriteError::DefinitionsChanged) if changed < DEFINITION_RETRIES => {
                    changed += 1;
                    fresh = true;
                }
                Err(e) => return Err(write_error(e)),
            }
        }
    }

    /// # Errors
    /// 404 when missing, deleted or another organization's.
    pub async fn get(&self, actor: Actor, id: ContactId) -> Result<Contact, AppError> {
        actor.authorize(Resource::Contacts, Action::Read)?;
        self.contacts
            .get(actor.org_id, id, false)
            .await?
            .ok_or(AppError::NotFound)
    }

    /// The live contact, refused with 412 when `if_match` names another version.
    async fn live(
        &self,
        actor: &Actor,
        id: ContactId,
        if_match: Option<i32>,
    ) -> Result<Contact, AppError> {
        let current = self
            .contacts
            .get(actor.org_id, id, false)
            .await?
            .ok_or(AppError::NotFound)?;
        if if_match.is_some_and(|v| v != current.version) {
            return Err(AppError::PreconditionFailed);
        }
        Ok(current)
    }

    /// Applies a JSON Merge Patch. With `if_match`, a stale version is 412; without it,
    /// a concurrent change is merged again on the fresh state (a few times at most).
    ///
    /// # Errors
    /// 403, 404, 412, 422, 409 as for create.
    pub async fn update(
        &self,
        actor: Actor,
        id: ContactId,
        patch: Map<String, Value>,
        if_match: Option<i32>,
    ) -> Result<Contact, AppError> {
        actor.authorize(Resource::Contacts, Action::Update)?;
        let (mut fresh, mut changed, mut raced) = (false, 0, 0);
        loop {
            let set;
            (set, fresh) = self.field_set(&actor, fresh).await?;
            let current = self.live(&actor, id, if_match).await?;
            let fields = match current.apply_merge_patch(&patch, &set.specs) {
                Ok(fields) => fields,
                Err(_) if !fresh => {
                    fresh = true;
                    continue;
                }
                Err(list) => return Err(issues(list)),
            };
            let Some((updated, event)) = current.update(fields, &self.ctx(&actor)) else {
                return Ok(current);
            };
            match self
                .contacts
                .save(
                    actor.org_id,
                    &updated,
                    current.version,
                    &event,
                    Some(set.generation),
                )
                .await
            {
                Ok(()) => return Ok(updated),
                Err(ContactWriteError::VersionMismatch { .. })
                    if if_match.is_none() && raced + 1 < RACE_RETRIES =>
                {
                    raced += 1;
                }
                Err(ContactWriteError::DefinitionsChanged) if changed < DEFINITION_RETRIES => {
                    changed += 1;
                    fresh = true;
                }
                Err(e) => return Err(race_error(e, if_match)),
            }
        }
    }

    /// Soft-deletes (restorable for 30 days). With `if_match`, a stale version is 412;
    /// without it, a change that lands between the read and the write is read again
    /// (a few times at most), as for [`Self::update`]: the caller set no precondition.
    ///
    /// # Errors
    /// 403, 404, 412.
    pub async fn delete(
        &self,
        actor: Actor,
        id: ContactId,
        if_match: Option<i32>,
    ) -> Result<(), AppError> {
        actor.authorize(Resource::Contacts, Action::Delete)?;
        rerun_lost_races(if_match, move || async move {
            let current = self.live(&actor, id, if_match).await?;
            let (deleted, event) = current.delete(&self.ctx(&actor));
            Ok(self
                .contacts
                .save(actor.org_id, &deleted, current.version, &event, None)
                .await)
        })
        .await
    }

    /// Restores a contact deleted within 30 days. Without a precondition, a change that
    /// lands between the read and the write (a tag rename) is read again, as for
    /// [`Self::delete`] without one; with `if_match`, the deleted contact must still have
    /// that version.
    ///
    /// # Errors
    /// 403, 404, 412, 409 when not deleted or past the window (or its email was taken
    /// meanwhile).
    pub async fn restore(
        &self,
        actor: Actor,
        id: ContactId,
        if_match: Option<i32>,
    ) -> Result<Contact, AppError> {
        actor.authorize(Resource::Contacts, Action::Update)?;
        rerun_lost_races(if_match, move || async move {
            let current = self
                .contacts
                .get(actor.org_id, id, true)
                .await?
                .ok_or(AppError::NotFound)?;
            if if_match.is_some_and(|v| v != current.version) {
                return Err(AppError::PreconditionFailed);
            }
            let (restored, event) = current.restore(&self.ctx(&actor)).map_err(|e| match e {
                RestoreError::NotDeleted => {
                    AppError::conflict("not_deleted", "The contact is not deleted.")
                }
                RestoreError::Expired => AppError::conflict(
                    "restore_window_expired",
                    "Deleted contacts can be restored for 30 days only.",
                ),
            })?;
            Ok(self
                .contacts
                .save(actor.org_id, &restored, current.version, &event, None)
                .await
                .map(|()| restored))
        })
        .await
    }

    /// # Errors
    /// 403; 422 for a custom field filter on an unknown key or with a value of the wrong type.
    pub async fn list(&self, actor: Actor, request: ListContacts) -> Result<ContactPage, AppError> {
        let query = self.query_of(&actor, request).await?;
        Ok(self.contacts.list(actor.org_id, &query).await?)
    }

    /// Every contact the filters match, page by page from one snapshot, for an export.
    ///
    /// # Errors
    /// As [`Self::list`].
    pub async fn export(
        &self,
        actor: Actor,
        request: ListContacts,
    ) -> Result<Box<dyn ContactSnapshot>, AppError> {
        let query = self.query_of(&actor, request).await?;
        Ok(self.contacts.export(actor.org_id, query).await?)
    }

    /// The repository's query for a list request: the role checked, tags normalized,
    /// custom field filters typed by their definitions.
    async fn query_of(
        &self,
        actor: &Actor,
        request: ListContacts,
    ) -> Result<ContactQuery, AppError> {
        actor.authorize(Resource::Contacts, Action::Read)?;
        let mut filter = request.filter;
        let mut problems = Vec::new();
        let mut tags = Vec::with_capacity(filter.tags.len());
        for raw in &filter.tags {
            match existing_tag("tag", raw) {
                Ok(t) => tags.push(t),
                Err(AppError::Validation(mut v)) => problems.append(&mut v),
                Err(e) => return Err(e),
            }
        }
        filter.tags = tags;
        if !request.custom_fields.is_empty() {
            let specs = self.specs(actor).await?;
            for (key, raw) in &request.custom_fields {
                match filter_value(&specs, key, raw) {
                    Ok(value) => filter.custom_fields.push((key.clone(), value)),
                    Err(i) => problems.push(FieldIssue::new(i.field, i.code, i.message)),
                }
            }
        }
        if !problems.is_empty() {
            return Err(AppError::Validation(problems));
        }
        Ok(ContactQuery {
            filter,
            sort: request.sort,
            limit: request.limit.clamp(1, 200),
            after: request.after,
            include_total: request.include_total,
        })
    }

    /// Runs each operation on its own (each atomic), reporting each outcome.
    ///
    /// # Errors
    /// 403 when the caller may not do one of the batch's kinds of operation (nothing
    /// runs); 422 when the batch is empty or holds more than [`MAX_BATCH`] items.
    pub async fn batch(
        &self,
        actor: Actor,
        ops: Vec<BatchOp>,
    ) -> Result<Vec<Result<BatchOutcome, AppError>>, AppError> {
        authorize_batch(&actor)?;
        for op in &ops {
            let action = match op {
                BatchOp::Create { .. } => Action::Create,
                BatchOp::Update { .. } => Action::Update,
                BatchOp::Delete { .. } => Action::Delete,
            };
            actor.authorize(Resource::Contacts, action)?;
        }
        if ops.is_empty() || ops.len() > MAX_BATCH {
            return Err(AppError::invalid(
                "items",
                "invalid_length",
                "a batch holds 1 to 100 items",
            ));
        }
        let mut out = Vec::with_capacity(ops.len());
        for op in ops {
            out.push(match op {
                BatchOp::Create { body } => {
                    self.create(actor, body).await.map(BatchOutcome::Created)
                }
                BatchOp::Update {
                    id,
                    patch,
                    if_match,
                } => self
                    .update(actor, id, patch, if_match)
                    .await
                    .map(BatchOutcome::Updated),
                BatchOp::Delete { id, if_match } => self
                    .delete(actor, id, if_match)
                    .await
                    .map(|()| BatchOutcome::Deleted),
            });
        }
        Ok(out)
    }

    /// # Errors
    /// Storage failures.
    pub async fn custom_fields(
        &self,
        actor: Actor,
    ) -> Result<Vec<CustomFieldDefinition>, AppError> {
        actor.authorize(Resource::Pipelines, Action::Read)?;
        Ok(self.fields.list(actor.org_id).await?)
    }

    /// # Errors
    /// 404.
    pub async fn custom_field(
        &self,
        actor: Actor,
        id: CustomFieldId,
    ) -> Result<CustomFieldDefinition, AppError> {
        actor.authorize(Resource::Pipelines, Action::Read)?;
        self.fields
            .get(actor.org_id, id)
            .await?
            .ok_or(AppError::NotFound)
    }

    /// # Errors
    /// 403 below ADMIN, 422 for an invalid definition or past 200 of them, 409 for a taken key.
    pub async fn create_custom_field(
        &self,
        actor: Actor,
        input: FieldInput,
    ) -> Result<CustomFieldDefinition, AppError> {
        actor.authorize(Resource::Pipelines, Action::Create)?;
        let spec = FieldSpec::new(
            &input.key,
            &input.label,
            input.field_type,
            input.required,
            &input.options,
        )
        .map_err(issues)?;
        refuse_value_separators(&spec, &[])?;
        let now = self.now();
        let definition = CustomFieldDefinition {
            id: CustomFieldId::from_uuid(self.ids.new_id()),
            organization_id: actor.org_id,
            spec,
            version: 1,
            created_at: now,
            updated_at: now,
        };
        let written = self
            .fields
            .insert(actor.org_id, &definition, MAX_DEFINITIONS)
            .await;
        // Writes here would find out anyway (the generation moved); this spares them a
        // refused attempt.
        self.field_sets.forget(actor.org_id);
        written.map_err(definition_error)?;
        Ok(definition)
    }

    /// # Errors
    /// 403, 404, 412, 422 (the key is immutable), 409 for a type change while values exist
    /// or (`concurrent_changes`) when other changes kept winning and no `If-Match` was sent.
    pub async fn update_custom_field(
        &self,
        actor: Actor,
        id: CustomFieldId,
        patch: FieldPatch,
        if_match: Option<i32>,
    ) -> Result<CustomFieldDefinition, AppError> {
        actor.authorize(Resource::Pipelines, Action::Update)?;
        // A caller without `If-Match` set no precondition: a race lost to another change
        // of the definition is decided again on its new state, a few times, then a 409.
        let mut raced = 0;
        loop {
            match self
                .change_custom_field(actor, id, &patch, if_match)
                .await?
            {
                Err(DefinitionWriteError::VersionMismatch { .. }) if if_match.is_none() => {
                    raced += 1;
                    if raced == RACE_RETRIES {
                        return Err(AppError::contended(
                            "concurrent_changes",
                            "The custom field kept changing during the request; retry it.",
                        ));
                    }
                }
                written => return written.map_err(definition_error),
            }
        }
    }

    /// One read, decision and write of [`Self::update_custom_field`]: the outer error
    /// refuses the change, the inner one is the write's.
    async fn change_custom_field(
        &self,
        actor: Actor,
        id: CustomFieldId,
        patch: &FieldPatch,
        if_match: Option<i32>,
    ) -> Result<Result<CustomFieldDefinition, DefinitionWriteError>, AppError> {
        let current = self
            .fields
            .get(actor.org_id, id)
            .await?
            .ok_or(AppError::NotFound)?;
        if if_match.is_some_and(|v| v != current.version) {
            return Err(AppError::PreconditionFailed);
        }
        let input = patch.clone().applied_to(&current.spec)?;
        let spec = FieldSpec::new(
            &input.key,
            &input.label,
            input.field_type,
            input.required,
            &input.options,
        )
        .map_err(issues)?;
        // A select's options could hold `;`: made a multiselect, none of them is kept.
        let kept: &[String] = if current.spec.field_type == FieldType::Multiselect {
            &current.spec.options
        } else {
            &[]
        };
        refuse_value_separators(&spec, kept)?;
        let values_exist = spec.field_type != current.spec.field_type
            && self
                .fields
                .values_exist(actor.org_id, current.spec.key.as_str())
                .await?;
        let changed = current
            .change(spec, values_exist, self.now())
            .map_err(|e| match e {
                DefinitionChangeError::KeyChanged => {
                    AppError::invalid("key", "immutable", "a field's key cannot change")
                }
                DefinitionChangeError::TypeChangeWithValues => type_in_use(),
            })?;
        let Some(changed) = changed else {
            return Ok(Ok(current));
        };
        let written = self
            .fields
            .update(actor.org_id, &changed, current.version)
            .await;
        self.field_sets.forget(actor.org_id);
        Ok(written.map(|()| changed))
    }

    /// Deletes the definition and every contact's value for it.
    ///
    /// # Errors
    /// 403, 404.
    pub async fn delete_custom_field(
        &self,
        actor: Actor,
        id: CustomFieldId,
        if_match: Option<i32>,
    ) -> Result<(), AppError> {
        actor.authorize(Resource::Pipelines, Action::Delete)?;
        let written = self
            .fields
            .delete(actor.org_id, id, if_match, &event_actor(&actor), self.now())
            .await;
        self.field_sets.forget(actor.org_id);
        written.map_err(definition_error)
    }

    /// Removes for good, organization by organization and in batches, the contacts
    /// deleted more than [`RESTORE_WINDOW_DAYS`] ago (a system job: no actor). Returns
    /// how many went.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn purge_expired(&self) -> Result<u64, AppError> {
        const BATCH: i64 = 1000;
        let before = self.now() - chrono::Duration::days(RESTORE_WINDOW_DAYS);
        let mut purged = 0;
        let mut first_failure = None;
        // One organization whose batch fails (a statement timeout, say) does not keep the
        // others from their purge: each is tried, and the first failure is reported.
        for org in self.contacts.organizations_to_purge(before).await? {
            loop {
                match self.contacts.purge_deleted(org, before, BATCH).await {
                    Ok(n) => {
                        purged += n;
                        if n < u64::try_from(BATCH).unwrap_or(u64::MAX) {
                            break;
                        }
                    }
                    Err(e) => {
                        first_failure.get_or_insert(e);
                        break;
                    }
                }
            }
        }
        match first_failure {
            Some(e) => Err(e.into()),
            None => Ok(purged),
        }
    }

    /// A page of the tags in use, with counts, most used first (see [`TagPage`]).
    ///
    /// # Errors
    /// Storage failures.
    pub async fn tags(
        &self,
        actor: Actor,
        after: Option<(i64, String)>,
        limit: u32,
        include_total: bool,
    ) -> Result<TagPage, AppError> {
        actor.authorize(Resource::Contacts, Action::Read)?;
        let limit = limit.clamp(1, 200);
        let tags = self
            .contacts
            .tag_counts(actor.org_id, after, limit + 1)
            .await?;
        let (tags, more) = one_page(tags, limit);
        let total = if include_total {
            Some(self.contacts.tag_total(actor.org_id).await?)
        } else {
            None
        };
        Ok(TagPage { tags, more, total })
    }

    /// A page of the deleted contacts still held, most recently deleted first: those a
    /// restore can bring back (within [`RESTORE_WINDOW_DAYS`]) and those kept past it for
    /// their deals.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn deleted(
        &self,
        actor: Actor,
        after: Option<(DateTime<Utc>, ContactId)>,
        limit: u32,
    ) -> Result<DeletedPage, AppError> {
        actor.authorize(Resource::Contacts, Action::Read)?;
        let limit = limit.clamp(1, 200);
        let contacts = self
            .contacts
            .deleted(actor.org_id, after, limit + 1)
            .await?;
        let (contacts, more) = one_page(contacts, limit);
        Ok(DeletedPage { contacts, more })
    }

    /// Renames a tag everywhere (merging into `to` where a contact has both).
    ///
    /// # Errors
    /// 403, 422 for an invalid tag name, 404 when no contact carries `from`.
    pub async fn rename_tag(
        &self,
        actor: Actor,
        from: String,
        to: String,
    ) -> Result<u64, AppError> {
        actor.authorize(Resource::Contacts, Action::Update)?;
        let from = existing_tag("tag", &from)?;
        let to = tag("name", &to)?;
        if from == to {
            // Nothing to rename, but a tag no contact carries is still a 404.
            let carriers = ContactQuery {
                filter: ContactFilter {
                    tags: vec![from],
                    ..ContactFilter::default()
                },
                sort: Sort::DEFAULT,
                limit: 1,
                after: None,
                include_total: false,
            };
            let page = self.contacts.list(actor.org_id, &carriers).await?;
            return if page.items.is_empty() {
                Err(AppError::NotFound)
            } else {
                Ok(0)
            };
        }
        let changed = self
            .contacts
            .rename_tag(actor.org_id, &from, &to, &event_actor(&actor), self.now())
            .await?;
        if changed == 0 {
            Err(AppError::NotFound)
        } else {
            Ok(changed)
        }
    }

    /// Removes a tag from every contact.
    ///
    /// # Errors
    /// 403, 404 when no contact carries it.
    pub async fn delete_tag(&self, actor: Actor, raw: String) -> Result<u64, AppError> {
        actor.authorize(Resource::Contacts, Action::Delete)?;
        let name = existing_tag("tag", &raw)?;
        let changed = self
            .contacts
            .delete_tag(actor.org_id, &name, &event_actor(&actor), self.now())
            .await?;
        if changed == 0 {
            Err(AppError::NotFound)
        } else {
            Ok(changed)
        }
    }
}

fn event_actor(actor: &Actor) -> EventActor {
    match actor.principal {
        Principal::User { user_id, .. } => EventActor::User { id: user_id },
        Principal::ApiKey { api_key_id, .. } => EventActor::ApiKey {
            id: api_key_id.as_uuid(),
        },
    }
}

impl<R, F, C, G> ContactUseCases for ContactService<R, F, C, G>
where
    R: ContactRepository,
    F: CustomFieldRepository,
    C: Clock,
    G: IdGenerator,
{
    fn create(&self, actor: Actor, body: Map<String, Value>) -> Fut<'_, Contact> {
        Box::pin(Self::create(self, actor, body))
    }
    fn get(&self, actor: Actor, id: ContactId) -> Fut<'_, Contact> {
        Box::pin(Self::get(self, actor, id))
    }
    fn update(
        &self,
        actor: Actor,
        id: ContactId,
        patch: Map<String, Value>,
        if_match: Option<i32>,
    ) -> Fut<'_, Contact> {
        Box::pin(Self::update(self, actor, id, patch, if_match))
    }
    fn delete(&self, actor: Actor, id: ContactId, if_match: Option<i32>) -> Fut<'_, ()> {
        Box::pin(Self::delete(self, actor, id, if_match))
    }
    fn restore(&self, actor: Actor, id: ContactId, if_match: Option<i32>) -> Fut<'_, Contact> {
        Box::pin(Self::restore(self, actor, id, if_match))
    }
    fn list(&self, actor: Actor, request: ListContacts) -> Fut<'_, ContactPage> {
        Box::pin(Self::list(self, actor, request))
    }
    fn export(&self, actor: Actor, request: ListContacts) -> Fut<'_, Box<dyn ContactSnapshot>> {
        Box::pin(Self::export(self, actor, request))
    }
    fn batch(
        &self,
        actor: Actor,
        ops: Vec<BatchOp>,
    ) -> Fut<'_, Vec<Result<BatchOutcome, AppError>>> {
        Box::pin(Self::batch(self, actor, ops))
    }
    fn custom_fields(&self, actor: Actor) -> Fut<'_, Vec<CustomFieldDefinition>> {
        Box::pin(Self::custom_fields(self, actor))
    }
    fn custom_field(&self, actor: Actor, id: CustomFieldId) -> Fut<'_, CustomFieldDefinition> {
        Box::pin(Self::custom_field(self, actor, id))
    }
    fn create_custom_field(
        &self,
        actor: Actor,
        input: FieldInput,
    ) -> Fut<'_, CustomFieldDefinition> {
        Box::pin(Self::create_custom_field(self, actor, input))
    }
    fn update_custom_field(
        &self,
        actor: Actor,
        id: CustomFieldId,
        patch: FieldPatch,
        if_match: Option<i32>,
    ) -> Fut<'_, CustomFieldDefinition> {
        Box::pin(Self::update_custom_field(self, actor, id, patch, if_match))
    }
    fn delete_custom_field(
        &self,
        actor: Actor,
        id: CustomFieldId,
        if_match: Option<i32>,
    ) -> Fut<'_, ()> {
        Box::pin(Self::delete_custom_field(self, actor, id, if_match))
    }
    fn purge_expired(&self) -> Fut<'_, u64> {
        Box::pin(Self::purge_expired(self))
    }
    fn tags(
        &self,
        actor: Actor,
        after: Option<(i64, String)>,
        limit: u32,
        include_total: bool,
    ) -> Fut<'_, TagPage> {
        Box::pin(Self::tags(self, actor, after, limit, include_total))
    }
    fn deleted(
        &self,
        actor: Actor,
        after: Option<(DateTime<Utc>, ContactId)>,
        limit: u32,
    ) -> Fut<'_, DeletedPage> {
        Box::pin(Self::deleted(self, actor, after, limit))
    }
    fn rename_tag(&self, actor: Actor, from: String, to: String) -> Fut<'_, u64> {
        Box::pin(Self::rename_tag(self, actor, from, to))
    }
    fn delete_tag(&self, actor: Actor, tag: String) -> Fut<'_, u64> {
        Box::pin(Self::delete_tag(self, actor, tag))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    use nexus_domain::custom_field::FieldType;
    use nexus_domain::{EventType, OrgId, Role, SessionId, UserId};
    use nexus_ports::StoreError;
    use nexus_ports::clock::MockClock;
    use nexus_ports::contacts::{MockContactRepository, MockCustomFieldRepository, TagMode};
    use nexus_ports::ids::MockIdGenerator;
    use serde_json::json;
    use uuid::Uuid;

    use super::*;

    type Service = ContactService<
        MockContactRepository,
        MockCustomFieldRepository,
        MockClock,
        MockIdGenerator,
    >;

    fn actor(role: Role) -> Actor {
        Actor {
            principal: Principal::User {
                user_id: UserId::from_uuid(Uuid::now_v7()),
                session_id: SessionId::from_uuid(Uuid::now_v7()),
            },
            org_id: OrgId::from_uuid(Uuid::now_v7()),
            role,
        }
    }

    fn service(contacts: MockContactRepository, fields: MockCustomFieldRepository) -> Service {
        let mut clock = MockClock::new();
        clock.expect_now().returning(Utc::now);
        let mut ids = MockIdGenerator::new();
        ids.expect_new_id().returning(Uuid::now_v7);
        ContactService::new(contacts, fields, clock, ids)
    }

    /// A stored definition of `org` (version 1).
    fn definition(org: OrgId, spec: FieldSpec) -> CustomFieldDefinition {
        let now = Utc::now();
        CustomFieldDefinition {
            id: CustomFieldId::from_uuid(Uuid::now_v7()),
            organization_id: org,
            spec,
            version: 1,
            created_at: now,
            updated_at: now,
        }
    }

    /// A definitions repository whose `get` finds `def`.
    fn finding(def: &CustomFieldDefinition) -> MockCustomFieldRepository {
        let mut fields = MockCustomFieldRepository::new();
        let d = def.clone();
        fields.expect_get().returning(move |_, _| {
            let d = d.clone();
            Box::pin(async move { Ok(Some(d)) })
        });
        fields
    }

    fn no_fields() -> MockCustomFieldRepository {
        let mut fields = MockCustomFieldRepository::new();
        fields
            .expect_list()
            .returning(|_| Box::pin(async { Ok(Vec::new()) }));
        fields.expect_field_set().returning(|_| {
            Box::pin(async {
                Ok(FieldSet {
                    generation: 0,
                    specs: Vec::new(),
                })
            })
        });
        fields
    }

    fn body(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn stored(org: OrgId, version: i32) -> Contact {
        let fields = ContactFields::parse(
            &body(json!({"firstName": "Ada", "lastName": "Lovelace"})),
            &[],
            None,
        )
        .unwrap();
        let ctx = EventContext {
            event_id: EventId::from_uuid(Uuid::now_v7()),
            actor: EventActor::System,
            now: Utc::now(),
        };
        let (mut c, _) = Contact::create(ContactId::from_uuid(Uuid::now_v7()), org, fields, &ctx);
        c.version = version;
        c
    }

    type GetResult = Pin<Box<dyn Future<Output = Result<Option<Contact>, StoreError>> + Send>>;

    fn returning_contact(c: Contact) -> impl Fn(OrgId, ContactId, bool) -> GetResult {
        move |_, _, _| {
            let c = c.clone();
            Box::pin(async move { Ok(Some(c)) })
        }
    }

    #[tokio::test]
    async fn viewers_read_but_never_write_and_nothing_is_touched() {
        // Mocks without expectations panic when called: the role check comes first.
        let s = service(
            MockContactRepository::new(),
            MockCustomFieldRepository::new(),
        );
        let viewer = actor(Role::Viewer);
        let id = ContactId::from_uuid(Uuid::now_v7());
        assert!(matches!(
            s.create(viewer, body(json!({}))).await,
            Err(AppError::Forbidden(_))
        ));
        assert!(matches!(
            s.update(viewer, id, body(json!({})), None).await,
            Err(AppError::Forbidden(_))
        ));
        assert!(matches!(
            s.delete(viewer, id, None).await,
            Err(AppError::Forbidden(_))
        ));
        assert!(matches!(
            s.restore(viewer, id, None).await,
            Err(AppError::Forbidden(_))
        ));
        assert!(matches!(
            s.rename_tag(viewer, "a".into(), "b".into()).await,
            Err(AppError::Forbidden(_))
        ));
        assert!(matches!(
            s.batch(viewer, vec![BatchOp::Delete { id, if_match: None }])
                .await,
            Err(AppError::Forbidden(_))
        ));
        assert!(matches!(
            s.delete_tag(viewer, "a".into()).await,
            Err(AppError::Forbidden(_))
        ));
        let input = FieldInput {
            key: "k".into(),
            label: "K".into(),
            field_type: FieldType::Text,
            required: false,
            options: vec![],
        };
        // Custom field definitions are ADMIN+ (like pipelines): a MEMBER or VIEWER may not
        // create, change or delete them.
        let field = CustomFieldId::from_uuid(Uuid::now_v7());
        for role in [Role::Member, Role::Viewer] {
            assert!(matches!(
                s.create_custom_field(actor(role), input.clone()).await,
                Err(AppError::Forbidden(_))
            ));
            // A patch the role could not make anyway is refused for the role first.
            assert!(matches!(
                s.update_custom_field(
                    actor(role),
                    field,
                    FieldPatch {
                        label: Some(None),
                        ..FieldPatch::default()
                    },
                    None
                )
                .await,
                Err(AppError::Forbidden(_))
            ));
            assert!(matches!(
                s.delete_custom_field(actor(role), field, None).await,
                Err(AppError::Forbidden(_))
            ));
        }
    }

    #[tokio::test]
    async fn the_trash_is_read_by_every_role_a_page_at_a_time() {
        let viewer = actor(Role::Viewer);
        let org = viewer.org_id;
        let at = Utc::now();
        let after = ContactId::from_uuid(Uuid::now_v7());
        let mut contacts = MockContactRepository::new();
        contacts
            .expect_deleted()
            .withf(move |o, a, limit| *o == org && *a == Some((at, after)) && *limit == 3)
            .returning(move |o, _, _| {
                let page = (0..3).map(|_| stored(o, 2)).collect();
                Box::pin(async move { Ok(page) })
            });
        contacts
            .expect_deleted()
            .withf(move |_, a, limit| a.is_none() && *limit == 201)
            .returning(|o, _, _| {
                let page = vec![stored(o, 2)];
                Box::pin(async move { Ok(page) })
            });
        let s = service(contacts, MockCustomFieldRepository::new());
        // One more than asked tells whether a page follows; the extra one is not shown.
        let page = s.deleted(viewer, Some((at, after)), 2).await.unwrap();
        assert_eq!((page.contacts.len(), page.more), (2, true));
        let page = s.deleted(viewer, None, 5_000).await.unwrap();
        assert_eq!((page.contacts.len(), page.more), (1, false));
    }

    #[tokio::test]
    async fn deleting_a_definition_passes_its_if_match_and_reports_a_stale_one() {
        let admin = actor(Role::Admin);
        let field = CustomFieldId::from_uuid(Uuid::now_v7());
        let mut fields = MockCustomFieldRepository::new();
        fields
            .expect_delete()
            .withf(move |org, id, expected, _, _| {
                *org == admin.org_id && *id == field && *expected == Some(3)
            })
            .returning(|_, _, _, _, _| {
                Box::pin(async { Err(DefinitionWriteError::VersionMismatch { current: 4 }) })
            });
        let s = service(MockContactRepository::new(), fields);
        assert!(matches!(
            s.delete_custom_field(admin, field, Some(3)).await,
            Err(AppError::PreconditionFailed)
        ));
    }

    #[tokio::test]
    async fn create_validates_before_writing_and_scopes_to_the_actors_organization() {
        let mut contacts = MockContactRepository::new();
        let owner = actor(Role::Member);
        let org = owner.org_id;
        contacts
            .expect_insert()
            .withf(move |o, c, e, _| {
                *o == org
                    && c.organization_id == org
                    && e.event_type == EventType::ContactCreated
                    && e.organization_id == org
            })
            .times(1)
            .returning(|_, _, _, _| Box::pin(async { Ok(()) }));
        let s = service(contacts, no_fields());
        let bad = s.create(owner, body(json!({"firstName": "", "lastName": "L", "email": "nope", "tags": vec!["x"; 51]}))).await;
        let Err(AppError::Validation(found)) = bad else {
            panic!("expected a validation error")
        };
        let fields: Vec<_> = found.iter().map(|i| i.field.as_str()).collect();
        assert_eq!(
            fields,
            ["firstName", "email"],
            "51 copies of one tag are one tag"
        );
        let created = s
            .create(owner, body(json!({"firstName": "Ada", "lastName": "L"})))
            .await
            .unwrap();
        assert_eq!(created.version, 1);
        assert_eq!(
            created.created_at.timestamp_subsec_nanos() % 1000,
            0,
            "microsecond precision"
        );
    }

    #[tokio::test]
    async fn duplicate_emails_are_conflicts() {
        let mut contacts = MockContactRepository::new();
        contacts
            .expect_insert()
            .returning(|_, _, _, _| Box::pin(async { Err(ContactWriteError::DuplicateEmail) }));
        let s = service(contacts, no_fields());
        let err = s
            .create(
                actor(Role::Admin),
                body(json!({"firstName": "A", "lastName": "B", "email": "a@b.co"})),
            )
            .await;
        assert!(matches!(
            err,
            Err(AppError::Conflict {
                code: "duplicate_email",
                ..
            })
        ));
    }

    /// Field sets read in turn: generation 1 without definitions, then generation 2
    /// with a text field `plan`.
    fn fields_gaining_a_plan(reads: Arc<AtomicUsize>) -> MockCustomFieldRepository {
        let mut fields = MockCustomFieldRepository::new();
        fields.expect_field_set().returning(move |_| {
            let first = reads.fetch_add(1, Ordering::SeqCst) == 0;
            Box::pin(async move {
                Ok(if first {
                    FieldSet {
                        generation: 1,
                        specs: Vec::new(),
                    }
                } else {
                    FieldSet {
                        generation: 2,
                        specs: vec![
                            FieldSpec::new("plan", "Plan", FieldType::Text, false, &[]).unwrap(),
                        ],
                    }
                })
            })
        });
        fields
    }

    #[tokio::test]
    async fn definitions_are_kept_between_writes_and_read_again_before_a_refusal() {
        let a = actor(Role::Member);
        let generations = Arc::new(Mutex::new(Vec::new()));
        let seen = generations.clone();
        let mut contacts = MockContactRepository::new();
        contacts
            .expect_insert()
            .times(3)
            .returning(move |_, _, _, generation| {
                seen.lock().unwrap().push(generation);
                Box::pin(async { Ok(()) })
            });
        let reads = Arc::new(AtomicUsize::new(0));
        let s = service(contacts, fields_gaining_a_plan(reads.clone()));
        let plain = json!({"firstName": "A", "lastName": "B"});
        s.create(a, body(plain.clone())).await.unwrap();
        s.create(a, body(plain)).await.unwrap();
        assert_eq!(
            reads.load(Ordering::SeqCst),
            1,
            "the second write reuses the set"
        );
        // Under the kept set `plan` is unknown; the set read again knows it.
        let with_plan = json!({"firstName": "A", "lastName": "B", "customFields": {"plan": "pro"}});
        let created = s.create(a, body(with_plan)).await.unwrap();
        assert_eq!(
            created.fields.custom_fields.get("plan"),
            Some(&json!("pro"))
        );
        assert_eq!(reads.load(Ordering::SeqCst), 2);
        assert_eq!(*generations.lock().unwrap(), [1, 1, 2]);
        // A value that is wrong under fresh definitions is refused after one read.
        let wrong = json!({"firstName": "A", "lastName": "B", "customFields": {"plan": 3}});
        assert!(matches!(
            s.create(a, body(wrong)).await,
            Err(AppError::Validation(_))
        ));
        assert_eq!(reads.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_write_refused_for_changed_definitions_is_validated_again_then_given_up() {
        let a = actor(Role::Member);
        let mut contacts = MockContactRepository::new();
        let mut attempt = 0;
        contacts
            .expect_insert()
            .times(2)
            .returning(move |_, _, _, generation| {
                attempt += 1;
                let changed = attempt == 1;
                assert_eq!(generation, if changed { 1 } else { 2 });
                Box::pin(async move {
                    if changed {
                        Err(ContactWriteError::DefinitionsChanged)
                    } else {
                        Ok(())
                    }
                })
            });
        let reads = Arc::new(AtomicUsize::new(0));
        let s = service(contacts, fields_gaining_a_plan(reads.clone()));
        s.create(a, body(json!({"firstName": "A", "lastName": "B"})))
            .await
            .unwrap();
        assert_eq!(reads.load(Ordering::SeqCst), 2);

        let mut contacts = MockContactRepository::new();
        contacts
            .expect_insert()
            .times(DEFINITION_RETRIES + 1)
            .returning(|_, _, _, _| Box::pin(async { Err(ContactWriteError::DefinitionsChanged) }));
        let s = service(contacts, no_fields());
        assert!(matches!(
            s.create(a, body(json!({"firstName": "A", "lastName": "B"})))
                .await,
            Err(AppError::Contended {
                code: "custom_fields_changed",
                ..
            })
        ));
    }

    #[tokio::test]
    async fn a_stale_if_match_changes_nothing() {
        let a = actor(Role::Member);
        let mut contacts = MockContactRepository::new();
        contacts
            .expect_get()
            .returning(returning_contact(stored(a.org_id, 3)));
        let s = service(contacts, no_fields());
        let id = ContactId::from_uuid(Uuid::now_v7());
        assert!(matches!(
            s.update(a, id, body(json!({"company": "X"})), Some(2))
                .await,
            Err(AppError::PreconditionFailed)
        ));
        assert!(matches!(
            s.delete(a, id, Some(2)).await,
            Err(AppError::PreconditionFailed)
        ));
    }

    /// Expects `times` saves, the first of which loses a race (another write moved the
    /// version); returns the count of saves made.
    fn saves_after_a_lost_race(
        contacts: &mut MockContactRepository,
        times: usize,
    ) -> Arc<AtomicUsize> {
        let saves = Arc::new(AtomicUsize::new(0));
        let counter = saves.clone();
        contacts
            .expect_save()
            .times(times)
            .returning(move |_, _, _, _, _| {
                let first = counter.fetch_add(1, Ordering::SeqCst) == 0;
                Box::pin(async move {
                    if first {
                        Err(ContactWriteError::VersionMismatch { current: 2 })
                    } else {
                        Ok(())
                    }
                })
            });
        saves
    }

    #[tokio::test]
    async fn updates_without_if_match_retry_a_lost_race_on_fresh_state() {
        let a = actor(Role::Member);
        let mut contacts = MockContactRepository::new();
        contacts
            .expect_get()
            .times(2)
            .returning(returning_contact(stored(a.org_id, 1)));
        let saves = saves_after_a_lost_race(&mut contacts, 2);
        let s = service(contacts, no_fields());
        let updated = s
            .update(
                a,
                ContactId::from_uuid(Uuid::now_v7()),
                body(json!({"company": "X"})),
                None,
            )
            .await
            .unwrap();
        assert_eq!(updated.fields.company.unwrap().as_str(), "X");
        assert_eq!(saves.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn deletes_retry_a_lost_race_only_without_if_match() {
        for (if_match, saves_expected, outcome_ok) in [(None, 2, true), (Some(1), 1, false)] {
            let a = actor(Role::Member);
            let mut contacts = MockContactRepository::new();
            contacts
                .expect_get()
                .times(saves_expected)
                .returning(returning_contact(stored(a.org_id, 1)));
            let saves = saves_after_a_lost_race(&mut contacts, saves_expected);
            let s = service(contacts, no_fields());
            let outcome = s
                .delete(a, ContactId::from_uuid(Uuid::now_v7()), if_match)
                .await;
            if outcome_ok {
                assert!(outcome.is_ok(), "{outcome:?}");
            } else {
                assert!(
                    matches!(outcome, Err(AppError::PreconditionFailed)),
                    "{outcome:?}"
                );
            }
            assert_eq!(saves.load(Ordering::SeqCst), saves_expected);
        }
    }

    /// A caller without `If-Match` who loses every race is told to retry (409 with
    /// `Retry-After`), not that a precondition they never set failed.
    #[tokio::test]
    async fn losing_every_race_without_if_match_is_a_409_to_retry() {
        let a = actor(Role::Member);
        let mut contacts = MockContactRepository::new();
        contacts
            .expect_get()
            .returning(returning_contact(stored(a.org_id, 1)));
        contacts
            .expect_save()
            .times(2 * RACE_RETRIES)
            .returning(|_, _, _, _, _| {
                Box::pin(async { Err(ContactWriteError::VersionMismatch { current: 9 }) })
            });
        let s = service(contacts, no_fields());
        let id = ContactId::from_uuid(Uuid::now_v7());
        let updated = s.update(a, id, body(json!({"company": "X"})), None).await;
        let deleted = s.delete(a, id, None).await;
        for outcome in [updated.map(|_| ()), deleted] {
            assert!(
                matches!(
                    outcome,
                    Err(AppError::Contended {
                        code: "concurrent_changes",
                        ..
                    })
                ),
                "{outcome:?}"
            );
        }
    }

    #[tokio::test]
    async fn restores_retry_a_lost_race_on_fresh_state() {
        let a = actor(Role::Member);
        let mut deleted = stored(a.org_id, 2);
        deleted.deleted_at = Some(Utc::now());
        let mut contacts = MockContactRepository::new();
        contacts
            .expect_get()
            .times(2)
            .returning(returning_contact(deleted));
        let saves = saves_after_a_lost_race(&mut contacts, 2);
        let s = service(contacts, no_fields());
        let restored = s
            .restore(a, ContactId::from_uuid(Uuid::now_v7()), None)
            .await
            .unwrap();
        assert_eq!((restored.deleted_at, restored.version), (None, 3));
        assert_eq!(saves.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_patch_that_changes_nothing_writes_nothing() {
        let a = actor(Role::Member);
        let mut contacts = MockContactRepository::new();
        contacts
            .expect_get()
            .returning(returning_contact(stored(a.org_id, 4)));
        contacts.expect_save().never();
        let s = service(contacts, no_fields());
        let same = s
            .update(
                a,
                ContactId::from_uuid(Uuid::now_v7()),
                body(json!({"firstName": "Ada"})),
                Some(4),
            )
            .await
            .unwrap();
        assert_eq!(same.version, 4);
    }

    #[tokio::test]
    async fn missing_contacts_are_not_found() {
        let mut contacts = MockContactRepository::new();
        contacts
            .expect_get()
            .returning(|_, _, _| Box::pin(async { Ok(None) }));
        let s = service(contacts, no_fields());
        let id = ContactId::from_uuid(Uuid::now_v7());
        let a = actor(Role::Owner);
        assert!(matches!(s.get(a, id).await, Err(AppError::NotFound)));
        assert!(matches!(
            s.update(a, id, body(json!({})), None).await,
            Err(AppError::NotFound)
        ));
        assert!(matches!(
            s.delete(a, id, None).await,
            Err(AppError::NotFound)
        ));
    }

    #[tokio::test]
    async fn a_definition_past_the_organizations_limit_is_a_422() {
        let mut fields = MockCustomFieldRepository::new();
        fields
            .expect_insert()
            .withf(|_, _, limit| *limit == MAX_DEFINITIONS)
            .times(1)
            .returning(|_, _, _| Box::pin(async { Err(DefinitionWriteError::TooMany) }));
        let s = service(MockContactRepository::new(), fields);
        let input = FieldInput {
            key: "seats".into(),
            label: "Seats".into(),
            field_type: FieldType::Number,
            required: false,
            options: vec![],
        };
        let Err(AppError::Validation(issues)) =
            s.create_custom_field(actor(Role::Admin), input).await
        else {
            panic!("past the limit is a validation error")
        };
        assert_eq!(
            (issues[0].field.as_str(), issues[0].code.as_str()),
            ("key", "too_many")
        );
    }

    #[tokio::test]
    async fn list_normalizes_tags_and_types_custom_field_filters() {
        let a = actor(Role::Viewer);
        let org = a.org_id;
        let mut fields = MockCustomFieldRepository::new();
        fields.expect_list().returning(move |_| {
            let spec = FieldSpec::new("seats", "Seats", FieldType::Number, false, &[]).unwrap();
            let now = Utc::now();
            let def = CustomFieldDefinition {
                id: CustomFieldId::from_uuid(Uuid::now_v7()),
                organization_id: org,
                spec,
                version: 1,
                created_at: now,
                updated_at: now,
            };
            Box::pin(async move { Ok(vec![def]) })
        });
        let mut contacts = MockContactRepository::new();
        contacts
            .expect_list()
            .withf(move |o, q| {
                *o == org
                    && q.filter.tags == ["vip"]
                    && q.filter.custom_fields == [("seats".to_owned(), json!(12))]
                    && q.limit == 200
            })
            .times(1)
            .returning(|_, _| {
                Box::pin(async {
                    Ok(ContactPage {
                        items: vec![],
                        next: None,
                        total: None,
                    })
                })
            });
        let s = service(contacts, fields);
        let request = |cf: Vec<(&str, &str)>| ListContacts {
            filter: ContactFilter {
                tags: vec![" VIP ".into()],
                tag_mode: TagMode::Any,
                ..ContactFilter::default()
            },
            custom_fields: cf
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            sort: Sort::DEFAULT,
            limit: 500,
            after: None,
            include_total: false,
        };
        s.list(a, request(vec![("seats", "12")])).await.unwrap();
        let Err(AppError::Validation(found)) = s
            .list(a, request(vec![("seats", "many"), ("nope", "1")]))
            .await
        else {
            panic!("expected a validation error");
        };
        assert_eq!(
            found.iter().map(|i| i.code.as_str()).collect::<Vec<_>>(),
            ["invalid_type", "unknown_field"]
        );
    }

    #[tokio::test]
    async fn a_new_multiselect_option_may_not_hold_the_csv_value_separator() {
        let a = actor(Role::Admin);
        let mut fields = MockCustomFieldRepository::new();
        fields.expect_insert().never();
        let s = service(MockContactRepository::new(), fields);
        let input = |field_type, options: &[&str]| FieldInput {
            key: "teams".into(),
            label: "Teams".into(),
            field_type,
            required: false,
            options: options.iter().map(|o| (*o).to_owned()).collect(),
        };
        let Err(AppError::Validation(issues)) = s
            .create_custom_field(a, input(FieldType::Multiselect, &["Ops", "R&D; Ops"]))
            .await
        else {
            panic!("an option holding `;` was accepted");
        };
        assert_eq!(
            (issues[0].field.as_str(), issues[0].code.as_str()),
            ("options[1]", "invalid_format")
        );

        // An option stored before the rule is kept through an edit; a new one is not.
        let stored = definition(
            a.org_id,
            FieldSpec::new(
                "teams",
                "Teams",
                FieldType::Multiselect,
                false,
                &["R&D; Ops".into()],
            )
            .unwrap(),
        );
        let mut fields = finding(&stored);
        fields
            .expect_update()
            .times(1)
            .returning(|_, _, _| Box::pin(async { Ok(()) }));
        let s = service(MockContactRepository::new(), fields);
        let relabel = FieldPatch {
            label: Some(Some("Team".into())),
            ..FieldPatch::default()
        };
        assert!(
            s.update_custom_field(a, stored.id, relabel, None)
                .await
                .is_ok()
        );
        let added = FieldPatch {
            options: Some(Some(vec!["R&D; Ops".into(), "a;b".into()])),
            ..FieldPatch::default()
        };
        let Err(AppError::Validation(issues)) =
            s.update_custom_field(a, stored.id, added, None).await
        else {
            panic!("a new option holding `;` was accepted");
        };
        assert_eq!(issues[0].field, "options[1]");

        // A select's options may hold `;`; made a multiselect, they are new options.
        let select = definition(
            a.org_id,
            FieldSpec::new(
                "teams",
                "Teams",
                FieldType::Select,
                false,
                &["R&D; Ops".into(), "Sales".into()],
            )
            .unwrap(),
        );
        let mut fields = finding(&select);
        fields
            .expect_values_exist()
            .returning(|_, _| Box::pin(async { Ok(false) }));
        fields.expect_update().never();
        let s = service(MockContactRepository::new(), fields);
        let retyped = FieldPatch {
            field_type: Some(Some(FieldType::Multiselect)),
            ..FieldPatch::default()
        };
        let Err(AppError::Validation(issues)) =
            s.update_custom_field(a, select.id, retyped, None).await
        else {
            panic!("a select option holding `;` became a multiselect option");
        };
        assert_eq!(
            (issues[0].field.as_str(), issues[0].code.as_str()),
            ("options[0]", "invalid_format")
        );
    }

    #[tokio::test]
    async fn type_changes_are_refused_while_values_exist() {
        let a = actor(Role::Admin);
        let org = a.org_id;
        let def = definition(
            org,
            FieldSpec::new("seats", "Seats", FieldType::Number, false, &[]).unwrap(),
        );
        let mut fields = finding(&def);
        fields
            .expect_values_exist()
            .withf(move |o, k| *o == org && k == "seats")
            .returning(|_, _| Box::pin(async { Ok(true) }));
        fields.expect_update().never();
        let s = service(MockContactRepository::new(), fields);
        let patch = FieldPatch {
            field_type: Some(Some(FieldType::Text)),
            ..FieldPatch::default()
        };
        let err = s.update_custom_field(a, def.id, patch, None).await;
        assert!(matches!(
            err,
            Err(AppError::Conflict {
                code: "field_type_in_use",
                ..
            })
        ));
    }

    #[tokio::test]
    async fn a_definition_change_without_if_match_is_decided_again_after_a_lost_race() {
        let a = actor(Role::Admin);
        let def = definition(
            a.org_id,
            FieldSpec::new("seats", "Seats", FieldType::Number, false, &[]).unwrap(),
        );
        // `losses` races lost before a write goes through.
        let run = |losses: usize, if_match: Option<i32>| {
            let mut fields = finding(&def);
            let writes = Arc::new(AtomicUsize::new(0));
            let seen = Arc::clone(&writes);
            fields.expect_update().returning(move |_, _, _| {
                let lost = seen.fetch_add(1, Ordering::SeqCst) < losses;
                Box::pin(async move {
                    if lost {
                        Err(DefinitionWriteError::VersionMismatch { current: 2 })
                    } else {
                        Ok(())
                    }
                })
            });
            let s = service(MockContactRepository::new(), fields);
            let patch = FieldPatch {
                label: Some(Some("Licences".to_owned())),
                ..FieldPatch::default()
            };
            async move {
                let result = s.update_custom_field(a, def.id, patch, if_match).await;
                (result, writes.load(Ordering::SeqCst))
            }
        };
        let (won, writes) = run(2, None).await;
        assert_eq!(won.unwrap().spec.label, "Licences");
        assert_eq!(writes, 3);
        let (lost, writes) = run(usize::MAX, None).await;
        assert!(matches!(
            lost,
            Err(AppError::Contended {
                code: "concurrent_changes",
                ..
            })
        ));
        assert_eq!(writes, RACE_RETRIES);
        // With `If-Match` the race is the caller's to see, at once.
        let (stale, writes) = run(1, Some(1)).await;
        assert!(matches!(stale, Err(AppError::PreconditionFailed)));
        assert_eq!(writes, 1);
    }

    #[tokio::test]
    async fn batches_are_bounded_and_report_each_item() {
        let a = actor(Role::Member);
        let mut contacts = MockContactRepository::new();
        contacts
            .expect_insert()
            .returning(|_, _, _, _| Box::pin(async { Ok(()) }));
        contacts
            .expect_get()
            .returning(|_, _, _| Box::pin(async { Ok(None) }));
        let s = service(contacts, no_fields());
        let create = |first: &str| BatchOp::Create {
            body: body(json!({"firstName": first, "lastName": "L"})),
        };
        assert!(matches!(
            s.batch(a, vec![]).await,
            Err(AppError::Validation(_))
        ));
        assert!(matches!(
            s.batch(a, (0..101).map(|_| create("A")).collect()).await,
            Err(AppError::Validation(_))
        ));
        let results = s
            .batch(
                a,
                vec![
                    create("A"),
                    create(""),
                    BatchOp::Delete {
                        id: ContactId::from_uuid(Uuid::now_v7()),
                        if_match: None,
                    },
                ],
            )
            .await
            .unwrap();
        assert!(matches!(results[0], Ok(BatchOutcome::Created(_))));
        assert!(matches!(results[1], Err(AppError::Validation(_))));
        assert!(matches!(results[2], Err(AppError::NotFound)));
    }

    #[tokio::test]
    async fn restore_outside_the_window_is_a_conflict() {
        let a = actor(Role::Member);
        let mut gone = stored(a.org_id, 2);
        gone.deleted_at = Some(Utc::now() - chrono::Duration::days(31));
        let mut contacts = MockContactRepository::new();
        contacts
            .expect_get()
            .withf(|_, _, include_deleted| *include_deleted)
            .returning(returning_contact(gone));
        contacts.expect_save().never();
        let s = service(contacts, no_fields());
        let err = s
            .restore(a, ContactId::from_uuid(Uuid::now_v7()), None)
            .await;
        assert!(matches!(
            err,
            Err(AppError::Conflict {
                code: "restore_window_expired",
                ..
            })
        ));
    }

    #[tokio::test]
    async fn renaming_a_tag_nobody_has_is_not_found() {
        let a = actor(Role::Member);
        let mut contacts = MockContactRepository::new();
        contacts
            .expect_rename_tag()
            .withf(|_, from, to, _, _| from == "old" && to == "new")
            .returning(|_, _, _, _, _| Box::pin(async { Ok(0) }));
        // A rename to the same name only looks for a carrier: none, then one.
        let org = a.org_id;
        let mut carriers = vec![vec![stored(org, 1)], vec![]];
        contacts
            .expect_list()
            .withf(|_, q| q.filter.tags == ["same"] && q.limit == 1)
            .times(2)
            .returning(move |_, _| {
                let items = carriers.pop().unwrap_or_default();
                Box::pin(async move {
                    Ok(ContactPage {
                        items,
                        next: None,
                        total: None,
                    })
                })
            });
        let s = service(contacts, no_fields());
        assert!(matches!(
            s.rename_tag(a, " OLD ".into(), "New".into()).await,
            Err(AppError::NotFound)
        ));
        assert!(matches!(
            s.rename_tag(a, "same".into(), "SAME".into()).await,
            Err(AppError::NotFound)
        ));
        assert_eq!(
            s.rename_tag(a, "same".into(), "SAME".into()).await.unwrap(),
            0
        );
    }

    #[tokio::test]
    async fn the_purge_goes_organization_by_organization_in_batches_after_30_days() {
        let (a, b) = (
            OrgId::from_uuid(Uuid::now_v7()),
            OrgId::from_uuid(Uuid::now_v7()),
        );
        let mut contacts = MockContactRepository::new();
        contacts
            .expect_organizations_to_purge()
            .withf(|before| {
                (Utc::now() - *before - chrono::Duration::days(30))
                    .num_seconds()
                    .abs()
                    < 5
            })
            .returning(move |_| Box::pin(async move { Ok(vec![a, b]) }));
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = calls.clone();
        contacts
            .expect_purge_deleted()
            .returning(move |org, _, batch| {
                let n = counter.fetch_add(1, Ordering::SeqCst);
                // Org a: a full batch, then 7; org b: nothing.
                let removed = if org == a {
                    if n == 0 {
                        u64::try_from(batch).unwrap()
                    } else {
                        7
                    }
                } else {
                    0
                };
                Box::pin(async move { Ok(removed) })
            });
        let s = service(contacts, MockCustomFieldRepository::new());
        assert_eq!(s.purge_expired().await.unwrap(), 1007);
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn an_organization_whose_purge_fails_does_not_stop_the_others() {
        let (a, b) = (
            OrgId::from_uuid(Uuid::now_v7()),
            OrgId::from_uuid(Uuid::now_v7()),
        );
        let mut contacts = MockContactRepository::new();
        contacts
            .expect_organizations_to_purge()
            .returning(move |_| Box::pin(async move { Ok(vec![a, b]) }));
        let purged_b = Arc::new(AtomicUsize::new(0));
        let seen = purged_b.clone();
        contacts.expect_purge_deleted().returning(move |org, _, _| {
            if org == b {
                seen.fetch_add(1, Ordering::SeqCst);
            }
            Box::pin(async move {
                if org == a {
                    Err(StoreError::GaveUp(anyhow::anyhow!(
                        "canceling statement due to statement timeout"
                    )))
                } else {
                    Ok(3)
                }
            })
        });
        let s = service(contacts, MockCustomFieldRepository::new());
        assert!(
            s.purge_expired().await.is_err(),
            "the failure is still reported"
        );
        assert_eq!(
            purged_b.load(Ordering::SeqCst),
            1,
            "b was purged all the same"
        );
    }
}
