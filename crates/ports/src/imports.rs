//! CSV import jobs of contacts: the queue, the file, and chunked, checkpointed writes.

use std::future::Future;
use std::pin::Pin;

use chrono::{DateTime, Utc};
use nexus_domain::contact::Contact;
use nexus_domain::{ApiKeyId, DomainEvent, ImportId, OrgId, UserId};

use crate::error::StoreError;

/// What to do with a row whose email belongs to an existing contact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnDuplicate {
    Skip,
    Update,
}

impl OnDuplicate {
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Skip => "skip",
            Self::Update => "update",
        }
    }

    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Skip, Self::Update]
            .into_iter()
            .find(|d| d.as_str() == s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportStatus {
    Pending,
    Running,
    Completed,
    Failed,
}

impl ImportStatus {
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Completed => "completed",
            Self::Failed => "failed",
        }
    }

    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Pending, Self::Running, Self::Completed, Self::Failed]
            .into_iter()
            .find(|d| d.as_str() == s)
    }
}

/// One problem with one row (row 1 is the first data row after the header).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RowError {
    pub row: i64,
    pub field: String,
    pub message: String,
}

/// Errors kept per job; the counters stay exact beyond.
pub const MAX_ROW_ERRORS: usize = 1000;

#[derive(Debug, Clone, PartialEq)]
pub struct ImportJob {
    pub id: ImportId,
    pub organization_id: OrgId,
    pub created_by: Option<UserId>,
    /// The API key that started the job, if one did: its events name the key.
    pub api_key_id: Option<ApiKeyId>,
    pub status: ImportStatus,
    pub on_duplicate: OnDuplicate,
    pub total_rows: Option<i64>,
    /// The first data row not yet committed (1-based).
    pub next_row: i64,
    pub processed: i64,
    pub created: i64,
    pub updated: i64,
    pub skipped: i64,
    pub failed: i64,
    pub errors: Vec<RowError>,
    pub failure: Option<String>,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    /// How many times a worker took the job up since its last checkpoint (a claim
    /// counts one; a committed chunk resets it).
    pub starts: i64,
}

impl ImportJob {
    /// A job accepted at `now`, nothing read yet.
    #[must_use]
    pub const fn pending(
        id: ImportId,
        organization_id: OrgId,
        created_by: Option<UserId>,
        on_duplicate: OnDuplicate,
        now: DateTime<Utc>,
    ) -> Self {
        Self {
            id,
            organization_id,
            created_by,
            api_key_id: None,
            status: ImportStatus::Pending,
            on_duplicate,
            total_rows: None,
            next_row: 1,
            processed: 0,
            created: 0,
            updated: 0,
            skipped: 0,
            failed: 0,
            errors: Vec::new(),
            failure: None,
            created_at: now,
            finished_at: None,
            starts: 0,
        }
    }
}

/// One chunk of rows, written with the job's checkpoint in one transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct ChunkWrite {
    /// New contacts, with their row numbers and `contact.created` events. A row whose
    /// email was taken meanwhile is not written and counts as failed (or skipped, see
    /// `skip_taken`).
    pub inserts: Vec<(i64, Contact, DomainEvent)>,
    /// Changed contacts with the version they were read at and their events. A contact
    /// changed meanwhile is not written and counts as failed.
    pub updates: Vec<(i64, Contact, i32, DomainEvent)>,
    /// Rows this chunk covers (all of them, whatever became of them).
    pub processed: i64,
    pub skipped: i64,
    /// Rows that failed validation, with their errors (in any order: the repository
    /// stores a chunk's errors, its own among them, in row order).
    pub failed: i64,
    pub errors: Vec<RowError>,
    /// The checkpoint: the next row to read once this commits.
    pub next_row: i64,
    pub total_rows: i64,
    /// The generation of the custom field definitions the rows were validated under
    /// (see [`crate::contacts::FieldSet`]).
    pub fields_generation: i64,
    /// A new row whose email another contact took after the chunk looked it up is
    /// skipped, as the caller asked of duplicates (`onDuplicate=skip`), instead of failed.
    pub skip_taken: bool,
}

impl ChunkWrite {
    /// The first row the chunk covers: its rows are consecutive and end before
    /// `next_row`. The job's checkpoint must stand there for the chunk to commit.
    #[must_use]
    pub fn first_row(&self) -> i64 {
        self.next_row - self.processed
    }
}

/// A chunk's turn to commit: resolves to `true` once the chunk before it committed, to
/// `false` when that one will not (then this one must not either). Chunks are written
/// side by side but commit in file order, so a checkpoint never passes a chunk that
/// did not land.
pub type Turn = Pin<Box<dyn Future<Output = bool> + Send>>;

/// Why a chunk was not written (then nothing of it was, not even its checkpoint).
#[derive(Debug, thiserror::Error)]
pub enum ChunkWriteError {
    /// The custom field definitions moved past `ChunkWrite::fields_generation`.
    #[error("the custom field definitions changed meanwhile")]
    DefinitionsChanged,
    /// The chunk before this one did not commit, so this one rolled back.
    #[error("the chunk before this one was not written")]
    Abandoned,
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait ImportRepository: Send + Sync + 'static {
    /// Stores a pending job with its file, unless the organization already has
    /// `max_unfinished` jobs pending or running (`false`, nothing stored). Concurrent
    /// creates of one organization are counted one after the other.
    ///
    /// # Errors
    /// Storage failures.
    fn create(
        &self,
        org: OrgId,
        job: &ImportJob,
        csv: &[u8],
        max_unfinished: usize,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// # Errors
    /// Storage failures.
    fn get(
        &self,
        org: OrgId,
        id: ImportId,
    ) -> impl Future<Output = Result<Option<ImportJob>, StoreError>> + Send;

    /// Takes the oldest pending job, or a running one whose worker stopped beating
    /// before `stale_before` (it crashed: the job resumes from its checkpoint), with its
    /// file, counting one more start. The import queue is the one place that looks across organizations: the
    /// job it returns names its organization, and every later call is scoped by it.
    ///
    /// # Errors
    /// Storage failures.
    fn claim_next(
        &self,
        now: DateTime<Utc>,
        stale_before: DateTime<Utc>,
    ) -> impl Future<Output = Result<Option<(ImportJob, Vec<u8>)>, StoreError>> + Send;

    /// Live contacts of `org` with these (lower-case) emails.
    ///
    /// # Errors
    /// Storage failures.
    fn existing_by_email(
        &self,
        org: OrgId,
        emails: &[String],
    ) -> impl Future<Output = Result<Vec<Contact>, StoreError>> + Send;

    /// Which of `users` are members of `org`: a row naming anyone else as its owner is
    /// refused, as `POST /contacts` refuses it.
    ///
    /// # Errors
    /// Storage failures.
    fn members_among(
        &self,
        org: OrgId,
        users: &[UserId],
    ) -> impl Future<Output = Result<Vec<UserId>, StoreError>> + Send;

    /// Writes the chunk (multi-row inserts, their events, the updates) and advances the
    /// job's checkpoint and counters, atomically; refreshes the heartbeat. The rows may
    /// be written while an earlier chunk is still open; the events and the checkpoint
    /// wait for `turn`. Nothing is written when the custom field definitions moved past
    /// `chunk.fields_generation`, or when `turn` says the chunk before failed.
    ///
    /// # Errors
    /// [`ChunkWriteError::DefinitionsChanged`], [`ChunkWriteError::Abandoned`], storage
    /// failures (nothing of the chunk is then written).
    fn commit_chunk(
        &self,
        org: OrgId,
        id: ImportId,
        chunk: &ChunkWrite,
        now: DateTime<Utc>,
        turn: Turn,
    ) -> impl Future<Output = Result<(), ChunkWriteError>> + Send;

    /// Marks the job completed or failed.
    ///
    /// # Errors
    /// Storage failures.
    fn finish(
        &self,
        org: OrgId,
        id: ImportId,
        status: ImportStatus,
        failure: Option<String>,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}
