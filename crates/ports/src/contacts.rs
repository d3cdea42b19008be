//! What the contacts use cases need from storage: contacts, custom field definitions
//! and tags, each write a whole change set (row + outbox event) run in one transaction.

use std::future::Future;

use chrono::{DateTime, Utc};
use nexus_domain::contact::{Contact, LifecycleStage};
use nexus_domain::custom_field::{CustomFieldDefinition, FieldSpec};
use nexus_domain::{ContactId, CustomFieldId, DomainEvent, EventActor, OrgId, UserId};

use crate::error::StoreError;

/// The orders a contact list can be read in; ties are broken by id, in the same direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SortField {
    CreatedAt,
    UpdatedAt,
    LastName,
    LeadScore,
}

impl SortField {
    pub const ALL: [Self; 4] = [
        Self::CreatedAt,
        Self::UpdatedAt,
        Self::LastName,
        Self::LeadScore,
    ];

    /// The name used in `?sort=` (prefixed by `-` for descending).
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::CreatedAt => "createdAt",
            Self::UpdatedAt => "updatedAt",
            Self::LastName => "lastName",
            Self::LeadScore => "leadScore",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sort {
    pub field: SortField,
    pub descending: bool,
}

impl Sort {
    /// Newest first.
    pub const DEFAULT: Self = Self {
        field: SortField::CreatedAt,
        descending: true,
    };

    /// Parses `createdAt`, `-createdAt`, ...
    #[must_use]
    pub fn parse(raw: &str) -> Option<Self> {
        let (descending, name) = raw
            .strip_prefix('-')
            .map_or((false, raw), |rest| (true, rest));
        SortField::ALL
            .into_iter()
            .find(|f| f.as_str() == name)
            .map(|field| Self { field, descending })
    }

    #[must_use]
    pub fn as_param(self) -> String {
        format!(
            "{}{}",
            if self.descending { "-" } else { "" },
            self.field.as_str()
        )
    }
}

/// The sort key of the last row of a page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SortValue {
    Time(DateTime<Utc>),
    Text(String),
    Int(i64),
}

/// Where the next page starts: strictly after this (sort value, id) in the list's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keyset {
    pub value: SortValue,
    pub id: ContactId,
}

impl Keyset {
    /// The position just after `contact` in a list sorted by `field`.
    #[must_use]
    pub fn after(contact: &Contact, field: SortField) -> Self {
        let value = match field {
            SortField::CreatedAt => SortValue::Time(contact.created_at),
            SortField::UpdatedAt => SortValue::Time(contact.updated_at),
            SortField::LastName => SortValue::Text(contact.fields.last_name.as_str().to_owned()),
            SortField::LeadScore => SortValue::Int(i64::from(contact.lead_score.value())),
        };
        Self {
            value,
            id: contact.id,
        }
    }

    /// Whether this position fits a list sorted by `field`.
    #[must_use]
    pub const fn fits(&self, field: SortField) -> bool {
        matches!(
            (&self.value, field),
            (
                SortValue::Time(_),
                SortField::CreatedAt | SortField::UpdatedAt
            ) | (SortValue::Text(_), SortField::LastName)
                | (SortValue::Int(_), SortField::LeadScore)
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TagMode {
    /// Contacts with at least one of the tags.
    #[default]
    Any,
    /// Contacts with every one of the tags.
    All,
}

/// Filters of a contact list; all of them must hold.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ContactFilter {
    /// Case-insensitive substring of first, last or full name, email, company or phone.
    pub q: Option<String>,
    pub tags: Vec<String>,
    pub tag_mode: TagMode,
    pub lifecycle_stage: Option<LifecycleStage>,
    pub owner_id: Option<UserId>,
    pub created_after: Option<DateTime<Utc>>,
    pub created_before: Option<DateTime<Utc>>,
    /// `customFields.<key> = value` (a multiselect value matches when chosen).
    pub custom_fields: Vec<(String, serde_json::Value)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ContactQuery {
    pub filter: ContactFilter,
    pub sort: Sort,
    /// 1–200.
    pub limit: u32,
    pub after: Option<Keyset>,
    /// Also count every match (a second query; off by default).
    pub include_total: bool,
}

/// How long an export's snapshot waits for its reader to ask for the next page before it
/// is given up: a client that stops reading must not hold a connection and a snapshot
/// for as long as it keeps its socket open.
pub const SNAPSHOT_IDLE: std::time::Duration = std::time::Duration::from_secs(60);

/// The pages of an export, read in one snapshot (see [`ContactRepository::export`]).
/// Dropped before its last page, it lets its snapshot go.
pub trait ContactSnapshot: Send {
    /// The keys of the organization's custom field definitions as the snapshot sees
    /// them, oldest first: the export's columns match its rows.
    fn custom_field_keys(&self) -> &[String];

    /// The next page; empty once every contact has been read.
    ///
    /// # Errors
    /// Storage failures (the snapshot is gone after one).
    fn next_page(
        &mut self,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<Vec<Contact>, StoreError>> + Send + '_>>;
}

#[derive(Debug, Clone, PartialEq)]
pub struct ContactPage {
    pub items: Vec<Contact>,
    /// Set when more rows follow.
    pub next: Option<Keyset>,
    pub total: Option<i64>,
}

/// Why a contact write did not happen.
#[derive(Debug, thiserror::Error)]
pub enum ContactWriteError {
    #[error("another live contact of the organization has this email")]
    DuplicateEmail,
    #[error("the owner is not a member of the organization")]
    OwnerNotMember,
    #[error("the contact changed meanwhile (version {current})")]
    VersionMismatch { current: i32 },
    #[error("no such contact")]
    NotFound,
    /// The organization's custom field definitions changed since the generation the
    /// write was validated under: nothing was written; validate again and retry.
    #[error("the custom field definitions changed meanwhile")]
    DefinitionsChanged,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// An organization's custom field definitions as of one generation (see
/// [`CustomFieldRepository::field_set`]).
#[derive(Debug, Clone, PartialEq)]
pub struct FieldSet {
    pub generation: i64,
    pub specs: Vec<FieldSpec>,
}

/// Contacts of one organization (`org` leads every method; rows of others are invisible).
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait ContactRepository: Send + Sync + 'static {
    /// Inserts a new contact with its `contact.created` event, atomically, if the
    /// organization's custom field definitions are still at `fields_generation` (the
    /// [`FieldSet`] its custom fields were validated against).
    ///
    /// # Errors
    /// [`ContactWriteError::DuplicateEmail`], [`ContactWriteError::OwnerNotMember`],
    /// [`ContactWriteError::DefinitionsChanged`], storage.
    fn insert(
        &self,
        org: OrgId,
        contact: &Contact,
        event: &DomainEvent,
        fields_generation: i64,
    ) -> impl Future<Output = Result<(), ContactWriteError>> + Send;

    /// One contact; soft-deleted ones only with `include_deleted`.
    ///
    /// # Errors
    /// Storage failures.
    fn get(
        &self,
        org: OrgId,
        id: ContactId,
        include_deleted: bool,
    ) -> impl Future<Output = Result<Option<Contact>, StoreError>> + Send;

    /// Stores `contact` (its new state: update, delete or restore) and its event, if the
    /// stored version is still `expected_version` and, when given, the custom field
    /// definitions are still at `fields_generation`.
    ///
    /// # Errors
    /// [`ContactWriteError::VersionMismatch`], [`ContactWriteError::NotFound`],
    /// [`ContactWriteError::DuplicateEmail`], [`ContactWriteError::OwnerNotMember`],
    /// [`ContactWriteError::DefinitionsChanged`], storage.
    fn save(
        &self,
        org: OrgId,
        contact: &Contact,
        expected_version: i32,
        event: &DomainEvent,
        fields_generation: Option<i64>,
    ) -> impl Future<Output = Result<(), ContactWriteError>> + Send;

    /// One page of live contacts.
    ///
    /// # Errors
    /// Storage failures.
    fn list(
        &self,
        org: OrgId,
        query: &ContactQuery,
    ) -> impl Future<Output = Result<ContactPage, StoreError>> + Send;

    /// Every live contact matching `query` (its `after`, `limit` as the page size and
    /// `include_total` aside), page by page from one snapshot of the database: a contact
    /// changed while the pages are read is neither skipped nor read twice, whatever the
    /// sort.
    ///
    /// # Errors
    /// Storage failures.
    fn export(
        &self,
        org: OrgId,
        query: ContactQuery,
    ) -> impl Future<Output = Result<Box<dyn ContactSnapshot>, StoreError>> + Send;

    /// Soft-deleted contacts not yet purged, most recently deleted first: at most `limit`
    /// of them, those after the `(deleted_at, id)` position `after`.
    ///
    /// # Errors
    /// Storage failures.
    fn deleted(
        &self,
        org: OrgId,
        after: Option<(DateTime<Utc>, ContactId)>,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<Contact>, StoreError>> + Send;

    /// Organizations holding contacts soft-deleted before `before` that the purge may
    /// remove (those without deals; for the purge job).
    ///
    /// # Errors
    /// Storage failures.
    fn organizations_to_purge(
        &self,
        before: DateTime<Utc>,
    ) -> impl Future<Output = Result<Vec<OrgId>, StoreError>> + Send;

    /// Removes for good up to `batch` contacts of `org` soft-deleted before `before`,
    /// with their activities; returns how many. Contacts that still have deals are
    /// kept (soft-deleted): a purge never destroys deals.
    ///
    /// # Errors
    /// Storage failures.
    fn purge_deleted(
        &self,
        org: OrgId,
        before: DateTime<Utc>,
        batch: i64,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Tags in use by live contacts, with how many carry each, most used first (then by
    /// name): at most `limit` of them, those after the `(count, name)` position `after`.
    ///
    /// # Errors
    /// Storage failures.
    fn tag_counts(
        &self,
        org: OrgId,
        after: Option<(i64, String)>,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<(String, i64)>, StoreError>> + Send;

    /// How many distinct tags live contacts carry (the length of the whole tag list).
    ///
    /// # Errors
    /// Storage failures.
    fn tag_total(&self, org: OrgId) -> impl Future<Output = Result<i64, StoreError>> + Send;

    /// Renames `from` to `to` on every contact (merging when a contact has both), each
    /// changed contact getting a new version and a `contact.updated` event. Returns how
    /// many contacts changed.
    ///
    /// # Errors
    /// Storage failures.
    fn rename_tag(
        &self,
        org: OrgId,
        from: &str,
        to: &str,
        actor: &EventActor,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Removes `tag` from every contact, as [`ContactRepository::rename_tag`] records it.
    ///
    /// # Errors
    /// Storage failures.
    fn delete_tag(
        &self,
        org: OrgId,
        tag: &str,
        actor: &EventActor,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;
}

/// Why a definition write did not happen.
#[derive(Debug, thiserror::Error)]
pub enum DefinitionWriteError {
    #[error("a custom field with this key exists")]
    DuplicateKey,
    #[error("the definition changed meanwhile (version {current})")]
    VersionMismatch { current: i32 },
    #[error("no such custom field")]
    NotFound,
    /// A type change found values of the field (checked inside the change's transaction).
    #[error("contacts hold values of this field")]
    ValuesExist,
    /// The organization already has as many definitions as it may.
    #[error("the organization has its most custom fields")]
    TooMany,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Custom field definitions of one organization.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait CustomFieldRepository: Send + Sync + 'static {
    /// Every definition, in creation order.
    ///
    /// # Errors
    /// Storage failures.
    fn list(
        &self,
        org: OrgId,
    ) -> impl Future<Output = Result<Vec<CustomFieldDefinition>, StoreError>> + Send;

    /// The specs of every definition, in creation order, with the generation they were
    /// read at (one snapshot). Every definition write bumps the generation.
    ///
    /// # Errors
    /// Storage failures.
    fn field_set(&self, org: OrgId) -> impl Future<Output = Result<FieldSet, StoreError>> + Send;

    /// # Errors
    /// Storage failures.
    fn get(
        &self,
        org: OrgId,
        id: CustomFieldId,
    ) -> impl Future<Output = Result<Option<CustomFieldDefinition>, StoreError>> + Send;

    /// Stores a new definition unless the organization already has `limit` of them;
    /// the count is taken after concurrent inserts of the organization have committed.
    ///
    /// # Errors
    /// [`DefinitionWriteError::DuplicateKey`], [`DefinitionWriteError::TooMany`], storage.
    fn insert(
        &self,
        org: OrgId,
        definition: &CustomFieldDefinition,
        limit: usize,
    ) -> impl Future<Output = Result<(), DefinitionWriteError>> + Send;

    /// Stores a changed definition if the stored version is still `expected_version`;
    /// a type change is refused when contacts hold values of the field.
    ///
    /// # Errors
    /// [`DefinitionWriteError::VersionMismatch`], [`DefinitionWriteError::NotFound`],
    /// [`DefinitionWriteError::ValuesExist`], storage.
    fn update(
        &self,
        org: OrgId,
        definition: &CustomFieldDefinition,
        expected_version: i32,
    ) -> impl Future<Output = Result<(), DefinitionWriteError>> + Send;

    /// Whether any contact (deleted ones included: they can be restored) holds a value.
    ///
    /// # Errors
    /// Storage failures.
    fn values_exist(
        &self,
        org: OrgId,
        key: &str,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Deletes the definition, if its version is still `expected` when one is given, and
    /// removes its values from every contact (each changed contact, deleted ones too,
    /// gets a new version and a `contact.updated` event), atomically.
    ///
    /// # Errors
    /// [`DefinitionWriteError::VersionMismatch`], [`DefinitionWriteError::NotFound`],
    /// storage.
    fn delete(
        &self,
        org: OrgId,
        id: CustomFieldId,
        expected: Option<i32>,
        actor: &EventActor,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<(), DefinitionWriteError>> + Send;
}
