//! CSV imports of contacts: accepted at once as a job, then worked through in chunks by
//! a background worker. Each chunk (rows, events, checkpoint) commits atomically, so a
//! crash resumes at the last checkpoint; a bad row is reported and never stops the rest.

use std::collections::hash_map::Entry;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use chrono::{DateTime, Utc};
use nexus_domain::contact::{Contact, ContactFields, EventContext};
use nexus_domain::custom_field::{FieldSpec, FieldType};
use nexus_domain::validation::FieldIssue;
use nexus_domain::values::email::EmailAddress;
use nexus_domain::{
    Action, Actor, ContactId, EventActor, EventId, ImportId, Principal, Resource, UserId,
};
use nexus_ports::contacts::{CustomFieldRepository, FieldSet};
use nexus_ports::imports::{
    ChunkWrite, ChunkWriteError, ImportJob, ImportRepository, ImportStatus, OnDuplicate, RowError,
};
use nexus_ports::{Clock, IdGenerator, StoreError};
use serde_json::{Map, Value};
use tokio::sync::Notify;

use self::writes::{Slot, Writes};
use crate::contacts::{DEFINITION_RETRIES, owner_not_a_member};
use crate::csv::Records;
use crate::error::AppError;

mod writes;

type Fut<'a, T> = Pin<Box<dyn Future<Output = Result<T, AppError>> + Send + 'a>>;

/// Largest accepted file.
pub const MAX_BYTES: usize = 50 * 1024 * 1024;
/// Rows per chunk (one transaction each).
pub const CHUNK_ROWS: usize = 1000;
/// A running job whose worker has not checkpointed for this long is taken over.
pub const STALE_AFTER: Duration = Duration::from_secs(120);

/// Starts without progress after which a job fails instead of being taken up again: it
/// stopped that many times at the same row (a storage error that does not go away, or a
/// worker that died on it).
pub const MAX_STARTS: i64 = 3;
/// Imports an organization may have waiting or running at once; one more is a 429. Files
/// wait in the database until their turn, so the bound keeps one organization from
/// filling it (50 MB each) or the queue.
pub const MAX_UNFINISHED: usize = 10;

pub trait ImportUseCases: Send + Sync + 'static {
    /// # Errors
    /// 403, 413 over 50 MB, 422 for a file that is not UTF-8 or lacks name columns.
    fn start(&self, actor: Actor, csv: Vec<u8>, on_duplicate: OnDuplicate) -> Fut<'_, ImportJob>;
    fn get(&self, actor: Actor, id: ImportId) -> Fut<'_, ImportJob>;
    /// The worker's step: runs the next queued job to its end. `false` when none waits.
    fn run_next(&self) -> Fut<'_, bool>;
    /// Resolves once a job was queued here since the last call, so that the worker starts
    /// it at once instead of at its next poll (which still finds jobs queued elsewhere).
    fn queued(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
}

/// Where a CSV column goes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Column {
    Field(&'static str),
    Custom(FieldSpec),
    /// `customFields.<key>` naming no definition: refused, never dropped unseen.
    UnknownCustom,
    /// A header naming several definitions by their label (labels need not be unique):
    /// refused rather than filling the first one; their keys.
    Ambiguous(Vec<String>),
    Ignored,
}

/// A header or label without case, spaces and punctuation; letters of every script stay
/// (`電話番号` is not the empty name of a blank header, `Größe` is not `Grüße`).
fn normalize(header: &str) -> String {
    header
        .chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect()
}

/// Maps headers to contact fields (by name or a common alias, ignoring case, spaces and
/// punctuation) and custom fields (`customFields.<key>`, the key, or the label). A header
/// that names nothing whole is tried again without what it holds in brackets: an
/// annotation such as `Email (required)` or `Email（必須）` does not hide its field, while
/// a custom field labelled with the annotation (`Email（請求先）`) is still found first.
fn map_header(header: &[String], specs: &[FieldSpec]) -> Vec<Column> {
    let named: Vec<Column> = header.iter().map(|h| column_of(h, specs)).collect();
    let bare: Vec<Option<Column>> = header
        .iter()
        .zip(&named)
        .map(|(h, column)| {
            if !matches!(column, Column::Ignored | Column::UnknownCustom) {
                return None;
            }
            let bare = without_annotations(h);
            let found = (bare.trim() != h.trim()).then(|| column_of(&bare, specs))?;
            target_of(&found).is_some().then_some(found)
        })
        .collect();
    // A bare name is taken only when no other column names the same field: `Phone (Work)`
    // beside `Phone (Mobile)` or `Phone` stays the column it was.
    let targets: Vec<String> = named
        .iter()
        .chain(bare.iter().flatten())
        .filter_map(target_of)
        .collect();
    named
        .into_iter()
        .zip(bare)
        .map(|(column, bare)| match bare {
            Some(found)
                if target_of(&found)
                    .is_some_and(|t| targets.iter().filter(|u| **u == t).count() == 1) =>
            {
                found
            }
            _ => column,
        })
        .collect()
}

/// The field a column feeds, by its name in the API (`email`, `customFields.seats`).
fn target_of(column: &Column) -> Option<String> {
    match column {
        Column::Field(name) => Some((*name).to_owned()),
        Column::Custom(spec) => Some(format!("{PREFIX}{}", spec.key.as_str())),
        Column::UnknownCustom | Column::Ambiguous(_) | Column::Ignored => None,
    }
}

/// The column a header names, all its letters counted.
fn column_of(h: &str, specs: &[FieldSpec]) -> Column {
    let field = match normalize(h).as_str() {
        "firstname" | "first" | "givenname" => Some("firstName"),
        "lastname" | "last" | "surname" | "familyname" => Some("lastName"),
        "email" | "emailaddress" | "mail" => Some("email"),
        "phone" | "phonenumber" | "mobile" | "telephone" | "tel" => Some("phone"),
        "company" | "companyname" | "organization" | "organisation" | "account" => Some("company"),
        "lifecyclestage" | "stage" | "lifecycle" => Some("lifecycleStage"),
        "ownerid" | "owner" => Some("ownerId"),
        "tags" | "tag" | "labels" => Some("tags"),
        _ => None,
    };
    if let Some(field) = field {
        return Column::Field(field);
    }
    let h = h.trim();
    let key = h
        .get(..PREFIX.len())
        .filter(|p| p.eq_ignore_ascii_case(PREFIX))
        .map_or(h, |_| &h[PREFIX.len()..]);
    let nk = normalize(key);
    if let Some(spec) = specs.iter().find(|s| s.key.as_str() == key) {
        return Column::Custom(spec.clone());
    }
    // A header of punctuation alone names nothing.
    let found: Vec<&FieldSpec> = specs
        .iter()
        .filter(|s| {
            !nk.is_empty() && (normalize(s.key.as_str()) == nk || normalize(&s.label) == nk)
        })
        .collect();
    match found.as_slice() {
        [spec] => Column::Custom((*spec).clone()),
        [_, _, ..] => Column::Ambiguous(found.iter().map(|s| s.key.as_str().to_owned()).collect()),
        [] if key.len() < h.len() => Column::UnknownCustom,
        [] => Column::Ignored,
    }
}

/// A header without its bracketed parts (`()`, `[]`, `（）`, `【】`).
fn without_annotations(h: &str) -> String {
    let mut depth = 0_usize;
    h.chars()
        .filter(|c| match c {
            '(' | '[' | '（' | '【' => {
                depth += 1;
                false
            }
            ')' | ']' | '）' | '】' => {
                depth = depth.saturating_sub(1);
                false
            }
            _ => depth == 0,
        })
        .collect()
}

const PREFIX: &str = "customFields.";

/// Most columns a file may have: far more than any contact export holds, and few enough
/// that a header of millions of commas is refused before it becomes millions of strings.
pub const MAX_COLUMNS: usize = 500;

/// The header of `text`, mapped to fields and checked.
///
/// # Errors
/// 422 for an unreadable or empty file, more than [`MAX_COLUMNS`] columns, two columns for
/// one field, or a custom field column naming no field.
fn read_header(text: &str, specs: &[FieldSpec]) -> Result<(Vec<String>, Vec<Column>), AppError> {
    let header = Records::new(text)
        .keeping(MAX_COLUMNS + 1)
        .next()
        .transpose()
        .map_err(|e| AppError::invalid("file", "malformed_csv", e.to_string()))?
        .ok_or_else(|| AppError::invalid("file", "required", "the file is empty"))?;
    if header.len() > MAX_COLUMNS {
        return Err(AppError::invalid(
            "file",
            "too_many_columns",
            format!("a CSV import has at most {MAX_COLUMNS} columns"),
        ));
    }
    let columns = map_header(&header, specs);
    check_distinct(&header, &columns)?;
    Ok((header, columns))
}

/// Two columns feeding one field would leave which cell wins to the order of the
/// columns: refused, naming both; and so is a custom field column naming no field.
fn check_distinct(header: &[String], columns: &[Column]) -> Result<(), AppError> {
    let target = target_of;
    if let Some(i) = columns.iter().position(|c| *c == Column::UnknownCustom) {
        let named = header[i].trim();
        return Err(AppError::invalid(
            named,
            "unknown_field",
            format!("the column \"{named}\" names no custom field of this organization"),
        ));
    }
    if let Some((i, Column::Ambiguous(keys))) = columns
        .iter()
        .enumerate()
        .find(|(_, c)| matches!(c, Column::Ambiguous(_)))
    {
        let named = header[i].trim();
        return Err(AppError::invalid(
            named,
            "ambiguous_column",
            format!(
                "the column \"{named}\" matches the custom fields {}; name one as {PREFIX}<key>",
                keys.join(", ")
            ),
        ));
    }
    for (i, column) in columns.iter().enumerate() {
        let Some(field) = target(column) else {
            continue;
        };
        if let Some(j) = columns[..i]
            .iter()
            .position(|c| target(c).as_ref() == Some(&field))
        {
            return Err(AppError::invalid(
                &field,
                "duplicate_column",
                format!(
                    "the columns \"{}\" and \"{}\" both map to {field}",
                    header[j].trim(),
                    header[i].trim()
                ),
            ));
        }
    }
    Ok(())
}

fn cell_value(spec: &FieldSpec, raw: &str) -> Value {
    match spec.field_type {
        FieldType::Number => raw
            .parse::<serde_json::Number>()
            .map_or_else(|_| Value::String(raw.to_owned()), Value::Number),
        FieldType::Boolean => match raw.to_ascii_lowercase().as_str() {
            "true" | "yes" | "1" => Value::Bool(true),
            "false" | "no" | "0" => Value::Bool(false),
            _ => Value::String(raw.to_owned()),
        },
        FieldType::Multiselect => Value::Array(
            raw.split(';')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| Value::String(s.to_owned()))
                .collect(),
        ),
        FieldType::Text | FieldType::Date | FieldType::Select => Value::String(raw.to_owned()),
    }
}

/// One CSV record as the JSON object a contact is parsed from (empty cells are absent).
fn row_object(columns: &[Column], record: &[String]) -> Map<String, Value> {
    let mut map = Map::new();
    let mut custom = Map::new();
    for (column, cell) in columns.iter().zip(record) {
        // The export's formula guard comes off, so an exported file imports as it was.
        let cell = crate::csv::unguarded(cell.trim());
        if cell.is_empty() {
            continue;
        }
        match column {
            Column::Field("tags") => {
                // `;` is the export's separator, so a cell holding one is split there
                // only (a tag may hold a comma); a hand-written `vip, hot` splits on `,`.
                let separator = if cell.contains(';') { ';' } else { ',' };
                let tags = cell
                    .split(separator)
                    .map(str::trim)
                    .filter(|t| !t.is_empty());
                map.insert(
                    "tags".into(),
                    Value::Array(tags.map(|t| Value::String(t.to_owned())).collect()),
                );
            }
            Column::Field(name) => {
                map.insert((*name).to_owned(), Value::String(cell.to_owned()));
            }
            Column::Custom(spec) => {
                custom.insert(spec.key.as_str().to_owned(), cell_value(spec, cell));
            }
            Column::UnknownCustom | Column::Ambiguous(_) | Column::Ignored => {}
        }
    }
    if !custom.is_empty() {
        map.insert("customFields".into(), Value::Object(custom));
    }
    map
}

pub struct ImportService<I, F, C, G> {
    imports: I,
    fields: F,
    clock: C,
    ids: G,
    /// Holds one wake-up for the worker while it is busy or between its polls.
    queued: Notify,
}

/// Who the job's events name: the API key that started it, else the user, else (the
/// user deleted since) the system.
fn event_actor(job: &ImportJob) -> EventActor {
    match (job.api_key_id, job.created_by) {
        (Some(key), _) => EventActor::ApiKey { id: key.as_uuid() },
        (None, Some(id)) => EventActor::User { id },
        (None, None) => EventActor::System,
    }
}

impl<I, F, C, G> ImportService<I, F, C, G>
where
    I: ImportRepository,
    F: CustomFieldRepository,
    C: Clock,
    G: IdGenerator,
{
    pub fn new(imports: I, fields: F, clock: C, ids: G) -> Self {
        Self {
            imports,
            fields,
            clock,
            ids,
            queued: Notify::new(),
        }
    }

    fn now(&self) -> DateTime<Utc> {
        let now = self.clock.now();
        DateTime::from_timestamp_micros(now.timestamp_micros()).unwrap_or(now)
    }

    /// Accepts a file: checks size, encoding and header, stores it as a pending job.
    ///
    /// # Errors
    /// See [`ImportUseCases::start`].
    pub async fn start(
        &self,
        actor: Actor,
        csv: Vec<u8>,
        on_duplicate: OnDuplicate,
    ) -> Result<ImportJob, AppError> {
        actor.authorize(Resource::Contacts, Action::Create)?;
        if csv.len() > MAX_BYTES {
            return Err(AppError::invalid(
                "file",
                "too_large",
                "a CSV import is at most 50 MB",
            ));
        }
        let text = std::str::from_utf8(&csv)
            .map_err(|_| AppError::invalid("file", "invalid_encoding", "the file is not UTF-8"))?;
        let specs: Vec<FieldSpec> = self
            .fields
            .list(actor.org_id)
            .await?
            .into_iter()
            .map(|d| d.spec)
            .collect();
        let (_, columns) = read_header(text, &specs)?;
        // Names are what a new contact needs; a file that only updates contacts found by
        // email (`onDuplicate=update`) may leave them out, and then creates none.
        let updates_only =
            on_duplicate == OnDuplicate::Update && columns.contains(&Column::Field("email"));
        for needed in ["firstName", "lastName"] {
            if !updates_only && !columns.contains(&Column::Field(needed)) {
                return Err(AppError::invalid(
                    needed,
                    "missing_column",
                    format!("the header needs a {needed} column"),
                ));
            }
        }
        let (created_by, api_key_id) = match actor.principal {
            Principal::User { user_id, .. } => (user_id, None),
            Principal::ApiKey {
                created_by,
                api_key_id,
                ..
            } => (created_by, Some(api_key_id)),
        };
        let job = ImportJob {
            api_key_id,
            ..ImportJob::pending(
                ImportId::from_uuid(self.ids.new_id()),
                actor.org_id,
                Some(created_by),
                on_duplicate,
                self.now(),
            )
        };
        if !self
            .imports
            .create(actor.org_id, &job, &csv, MAX_UNFINISHED)
            .await?
        {
            return Err(AppError::Throttled {
                code: "too_many_imports",
                message: format!(
                    "This organization already has {MAX_UNFINISHED} imports waiting or running; retry when one has finished."
                ),
                retry_after: std::time::Duration::from_secs(30),
            });
        }
        self.queued.notify_one();
        Ok(job)
    }

    /// # Errors
    /// 404 for unknown ids and other organizations' jobs.
    pub async fn get(&self, actor: Actor, id: ImportId) -> Result<ImportJob, AppError> {
        actor.authorize(Resource::Contacts, Action::Read)?;
        self.imports
            .get(actor.org_id, id)
            .await?
            .ok_or(AppError::NotFound)
    }

    /// # Errors
    /// Storage failures (the job then resumes from its checkpoint on the next run).
    pub async fn run_next(&self) -> Result<bool, AppError> {
        let now = self.now();
        let stale = now - chrono::Duration::from_std(STALE_AFTER).unwrap_or(chrono::Duration::MAX);
        let Some((job, csv)) = self.imports.claim_next(now, stale).await? else {
            return Ok(false);
        };
        let org = job.organization_id;
        if job.starts > MAX_STARTS {
            let message = format!(
                "the import stopped {MAX_STARTS} times at row {row} without getting further; rows from {row} on were not imported",
                row = job.next_row
            );
            self.imports
                .finish(org, job.id, ImportStatus::Failed, Some(message), self.now())
                .await?;
            return Ok(true);
        }
        let (mut job, mut changed) = (job, 0);
        let outcome = loop {
            match self.process(&job, &csv).await {
                // A chunk validated under definitions that changed before it landed
                // wrote nothing: resume from the last checkpoint under fresh ones.
                Err(Failure::DefinitionsChanged) if changed < DEFINITION_RETRIES => {
                    changed += 1;
                    job = self
                        .imports
                        .get(org, job.id)
                        .await?
                        .ok_or(AppError::NotFound)?;
                }
                outcome => break outcome,
            }
        };
        match outcome {
            Ok(()) => {
                self.imports
                    .finish(org, job.id, ImportStatus::Completed, None, self.now())
                    .await?
            }
            Err(Failure::File(message)) => {
                self.imports
                    .finish(org, job.id, ImportStatus::Failed, Some(message), self.now())
                    .await?;
            }
            Err(Failure::DefinitionsChanged) => {
                let message = format!(
                    "the custom fields kept changing during the import; rows from {} on were not imported",
                    job.next_row
                );
                self.imports
                    .finish(org, job.id, ImportStatus::Failed, Some(message), self.now())
                    .await?;
            }
            Err(Failure::App(e)) => return Err(e),
        }
        Ok(true)
    }

    async fn process(&self, job: &ImportJob, csv: &[u8]) -> Result<(), Failure> {
        let org = job.organization_id;
        let text =
            std::str::from_utf8(csv).map_err(|_| Failure::File("the file is not UTF-8".into()))?;
        let set = self
            .fields
            .field_set(org)
            .await
            .map_err(|e| Failure::App(e.into()))?;
        let specs = &set.specs;
        // Checked again: the definitions may have changed since the upload was accepted
        // (two columns now feeding one new field, a column's field deleted).
        let (header, columns) = read_header(text, specs).map_err(|e| match e {
            AppError::Validation(issues) => Failure::File(
                issues
                    .into_iter()
                    .map(|i| i.message)
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
            other => Failure::App(other),
        })?;
        // Cells past the header's columns are never read into memory.
        let mut records = Records::new(text).keeping(header.len());
        records.next();
        // Count the rows once (cheap next to the writes) so progress has a total.
        let total =
            i64::try_from(Records::new(text).keeping(1).skip(1).count()).unwrap_or(i64::MAX);
        let mut row: i64 = 0;
        let mut chunk: Vec<(i64, Result<Vec<String>, String>)> = Vec::with_capacity(CHUNK_ROWS);
        // Each chunk is validated while the ones before it are written, so the worker's
        // CPU work and the database's overlap.
        let mut writes = Writes::new();
        let mut earlier = EarlierEmails::default();
        let mut written_before: Vec<(i64, Result<Vec<String>, String>)> = Vec::new();
        for record in records {
            row += 1;
            if row < job.next_row {
                // Rows a crash or a retry left behind still hold their emails: read them
                // again (not written), so that a resumed job reports a repeat as one
                // run without a stop would.
                match record {
                    Ok(cells) => written_before.push((row, Ok(cells))),
                    // The chunk holding the unreadable row committed, and the stop came
                    // before the job was marked failed: it fails now, as it would have.
                    Err(e) => return Err(unreadable(row, &e)),
                }
                if written_before.len() == CHUNK_ROWS || row + 1 == job.next_row {
                    let rows = std::mem::take(&mut written_before);
                    let mut v = validate(job, &columns, specs, rows, total).await;
                    earlier.report_repeats(&mut v);
                }
                continue;
            }
            match record {
                Ok(cells) => chunk.push((row, Ok(cells))),
                Err(e) => {
                    // The rest of the file is unreadable: the rows before stay, this one
                    // is reported, and the job fails with the reason.
                    chunk.push((row, Err(e.to_string())));
                    let rows = std::mem::take(&mut chunk);
                    let mut last = writes
                        .alongside(validate(job, &columns, specs, rows, total))
                        .await?;
                    earlier.report_repeats(&mut last);
                    self.enqueue(&mut writes, job, &set, last).await?;
                    writes.finish().await?;
                    return Err(unreadable(row, &e));
                }
            }
            if chunk.len() == CHUNK_ROWS {
                let rows = std::mem::take(&mut chunk);
                let mut next = writes
                    .alongside(validate(job, &columns, specs, rows, total))
                    .await?;
                earlier.report_repeats(&mut next);
                self.enqueue(&mut writes, job, &set, next).await?;
            }
        }
        // A new job on a file without rows still commits one (empty) chunk, to record
        // its total; a file whose rows filled its last chunk exactly has nothing left to
        // write (an empty chunk's checkpoint would be the job's first row, not its end).
        if !chunk.is_empty() || (row == 0 && job.next_row == 1) {
            let mut last = writes
                .alongside(validate(job, &columns, specs, chunk, total))
                .await?;
            earlier.report_repeats(&mut last);
            self.enqueue(&mut writes, job, &set, last).await?;
        }
        writes.finish().await
    }

    /// Starts writing a validated chunk once [`Writes`] has room for it.
    async fn enqueue<'a>(
        &'a self,
        writes: &mut Writes<'a>,
        job: &'a ImportJob,
        set: &'a FieldSet,
        validated: Validated,
    ) -> Result<(), Failure> {
        writes.room().await?;
        writes.start(|slot| Box::pin(self.write_chunk(job, set, validated, slot)));
        Ok(())
    }

    /// Looks up the chunk's emails, builds the rows and events, and commits them with
    /// the checkpoint in the chunk's turn.
    async fn write_chunk(
        &self,
        job: &ImportJob,
        set: &FieldSet,
        validated: Validated,
        slot: Slot,
    ) -> Result<(), Failure> {
        let org = job.organization_id;
        let specs = &set.specs;
        let emails: Vec<String> = validated.emails().collect();
        let Validated { mut write, parsed } = validated;
        write.fields_generation = set.generation;

        let existing: HashMap<String, Contact> = if emails.is_empty() {
            HashMap::new()
        } else {
            self.imports
                .existing_by_email(org, &emails)
                .await
                .map_err(|e| Failure::App(e.into()))?
                .into_iter()
                .filter_map(|c| {
                    c.fields
                        .email
                        .as_ref()
                        .map(|e| (e.as_str().to_owned(), c.clone()))
                })
                .collect()
        };
        let owners: Vec<UserId> = parsed
            .iter()
            .filter_map(|(_, object, p)| match p {
                Parsed::Contact(fields) => fields.owner_id,
                // Checked as a patch later; its owner, when valid, is asked about now.
                Parsed::UpdateOnly { .. } => object
                    .get("ownerId")
                    .and_then(Value::as_str)
                    .and_then(|o| o.parse().ok()),
            })
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let members: HashSet<UserId> = if owners.is_empty() {
            HashSet::new()
        } else {
            self.imports
                .members_among(org, &owners)
                .await
                .map_err(|e| Failure::App(e.into()))?
                .into_iter()
                .collect()
        };
        let actor = event_actor(job);
        let outside = |owner: Option<UserId>| owner.is_some_and(|o| !members.contains(&o));
        for (row, object, parsed) in parsed {
            let ctx = EventContext {
                event_id: EventId::from_uuid(self.ids.new_id()),
                actor: actor.clone(),
                now: self.now(),
            };
            // Each email occurs once among a chunk's rows (`EarlierEmails`), so each
            // existing contact is matched by one row at most.
            let Some(current) = parsed.email().and_then(|e| existing.get(e.as_str())) else {
                match parsed {
                    Parsed::Contact(fields) if outside(fields.owner_id) => {
                        fail_row(&mut write, row, vec![owner_not_a_member()]);
                    }
                    Parsed::Contact(fields) => {
                        let id = ContactId::from_uuid(self.ids.new_id());
                        let (contact, event) = Contact::create(id, org, fields, &ctx);
                        write.inserts.push((row, contact, event));
                    }
                    // No contact to update: it stands as the new contact it is not.
                    Parsed::UpdateOnly { issues, .. } => fail_row(&mut write, row, issues),
                }
                continue;
            };
            if job.on_duplicate == OnDuplicate::Skip {
                write.skipped += 1;
                continue;
            }
            match current.apply_merge_patch(&object, specs) {
                // A new owner must be a member; the contact's own may stay after leaving.
                Ok(patched)
                    if patched.owner_id != current.fields.owner_id && outside(patched.owner_id) =>
                {
                    fail_row(&mut write, row, vec![owner_not_a_member()]);
                }
                Ok(patched) => match current.update(patched, &ctx) {
                    Some((updated, event)) => {
                        write.updates.push((row, updated, current.version, event));
                    }
                    None => write.skipped += 1,
                },
                Err(issues) => fail_row(&mut write, row, issues),
            }
        }
        let turn = if write.updates.is_empty() {
            slot.turn
        } else {
            // Rows that change existing contacts are not held while waiting for the
            // chunk before: a third transaction (a tag rename) could wait for one of
            // them while holding a row that chunk needs, a deadlock PostgreSQL would not see.
            if !slot.turn.await {
                return Err(abandoned());
            }
            Box::pin(std::future::ready(true))
        };
        self.imports
            .commit_chunk(org, job.id, &write, self.now(), turn)
            .await
            .map_err(|e| match e {
                ChunkWriteError::DefinitionsChanged => Failure::DefinitionsChanged,
                ChunkWriteError::Abandoned => abandoned(),
                ChunkWriteError::Store(e) => Failure::App(e.into()),
            })?;
        // The receiver is gone only when the job stopped before the next chunk.
        let _ = slot.committed.send(());
        Ok(())
    }
}

/// A chunk's rows parsed and validated, before the database is asked about them.
struct Validated {
    /// The chunk's counters and row errors so far; no writes yet.
    write: ChunkWrite,
    parsed: Vec<(i64, Map<String, Value>, Parsed)>,
}

/// A row that passed validation, as far as it can before the database is asked.
enum Parsed {
    /// Valid as a new contact (and as an update of the one its email finds).
    Contact(ContactFields),
    /// Not a valid new contact, but with `onDuplicate=update` it may still update the
    /// contact its email finds (its cells are checked as a patch then); `issues` are
    /// what it lacks as a new contact, reported when no contact has the email.
    UpdateOnly {
        email: EmailAddress,
        issues: Vec<FieldIssue>,
    },
}

impl Parsed {
    fn email(&self) -> Option<&EmailAddress> {
        match self {
            Self::Contact(fields) => fields.email.as_ref(),
            Self::UpdateOnly { email, .. } => Some(email),
        }
    }
}

/// The first row of each email read so far, so that a repeat is reported wherever it
/// falls, in the same chunk or a later one, before or after a restart.
#[derive(Default)]
struct EarlierEmails {
    first_row: HashMap<Box<str>, i64>,
}

impl EarlierEmails {
    /// Fails the chunk's rows whose email a row before had, remembering the others'.
    fn report_repeats(&mut self, chunk: &mut Validated) {
        let (write, first_row) = (&mut chunk.write, &mut self.first_row);
        chunk.parsed.retain(|(row, _, parsed)| {
            let Some(email) = parsed.email() else {
                return true;
            };
            match first_row.entry(email.as_str().into()) {
                Entry::Vacant(entry) => {
                    entry.insert(*row);
                    true
                }
                Entry::Occupied(first) => {
                    write.failed += 1;
                    write.errors.push(RowError {
                        row: *row,
                        field: "email".into(),
                        message: format!("the same email as row {} of this file", first.get()),
                    });
                    false
                }
            }
        });
    }
}

/// Rows between two yields of [`validate`]: small enough that the write it
/// runs beside is resumed within a fraction of a millisecond of its answer.
const VALIDATE_SLICE: usize = 50;

impl Validated {
    /// The (lower-case) emails of the chunk's valid rows, in row order.
    fn emails(&self) -> impl Iterator<Item = String> + '_ {
        self.parsed
            .iter()
            .filter_map(|(_, _, p)| p.email().map(|e| e.as_str().to_owned()))
    }

    /// A chunk covering `rows`, nothing validated yet.
    fn covering(job: &ImportJob, rows: &[(i64, Result<Vec<String>, String>)], total: i64) -> Self {
        Self {
            write: ChunkWrite {
                inserts: Vec::new(),
                updates: Vec::new(),
                processed: i64::try_from(rows.len()).unwrap_or(0),
                skipped: 0,
                failed: 0,
                errors: Vec::new(),
                next_row: rows.last().map_or(job.next_row, |(r, _)| r + 1),
                total_rows: total,
                // Set when the chunk is written (`write_chunk`).
                fields_generation: 0,
                skip_taken: job.on_duplicate == OnDuplicate::Skip,
            },
            parsed: Vec::with_capacity(rows.len()),
        }
    }
}

/// Parses and checks a chunk's rows, handing control back every few rows so that a
/// write awaited beside it (`join`) proceeds as soon as the database answers.
async fn validate(
    job: &ImportJob,
    columns: &[Column],
    specs: &[FieldSpec],
    rows: Vec<(i64, Result<Vec<String>, String>)>,
    total: i64,
) -> Validated {
    let mut v = Validated::covering(job, &rows, total);
    for (i, (row, record)) in rows.into_iter().enumerate() {
        if i % VALIDATE_SLICE == 0 {
            yield_now().await;
        }
        validate_row(
            &mut v,
            columns,
            specs,
            job.on_duplicate == OnDuplicate::Update,
            row,
            record,
        );
    }
    v
}

/// Counts `row` as failed, with its issues.
fn fail_row(write: &mut ChunkWrite, row: i64, issues: Vec<FieldIssue>) {
    write.failed += 1;
    write.errors.extend(issues.into_iter().map(|i| RowError {
        row,
        field: i.field,
        message: i.message,
    }));
}

/// Checks one row; with `update` (`onDuplicate=update`) a row that is no valid new
/// contact is kept for the contact its email may find.
fn validate_row(
    v: &mut Validated,
    columns: &[Column],
    specs: &[FieldSpec],
    update: bool,
    row: i64,
    record: Result<Vec<String>, String>,
) {
    let cells = match record {
        Ok(cells) => cells,
        Err(message) => {
            v.write.failed += 1;
            v.write.errors.push(RowError {
                row,
                field: String::new(),
                message,
            });
            return;
        }
    };
    // A blank line, or a row of empty cells (spreadsheets export them), holds no
    // contact: it keeps its row number and is skipped, not reported.
    if cells.iter().all(|c| c.trim().is_empty()) {
        v.write.skipped += 1;
        return;
    }
    let object = row_object(columns, &cells);
    match ContactFields::parse(&object, specs, None) {
        Ok(fields) => v.parsed.push((row, object, Parsed::Contact(fields))),
        Err(issues) => {
            // Only what a new contact lacks (names, a required custom field) can be left
            // to the contact an email finds; a malformed cell fails the row either way.
            let email = object
                .get("email")
                .and_then(Value::as_str)
                .and_then(|e| EmailAddress::parse(e).ok())
                .filter(|_| update && issues.iter().all(|i| i.code == "required"));
            match email {
                Some(email) => v
                    .parsed
                    .push((row, object, Parsed::UpdateOnly { email, issues })),
                None => fail_row(&mut v.write, row, issues),
            }
        }
    }
}

/// Returns to the executor once (any executor: it only wakes itself).
async fn yield_now() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if yielded {
            std::task::Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        }
    })
    .await;
}

/// Never the job's outcome: the failure of the chunk before comes first.
fn abandoned() -> Failure {
    Failure::App(
        StoreError::Other(anyhow::anyhow!("the chunk before this one was not written")).into(),
    )
}

enum Failure {
    /// The file itself cannot be read further: the job fails with this message.
    File(String),
    /// A chunk was validated under custom field definitions that changed before it
    /// landed; nothing of it was written.
    DefinitionsChanged,
    App(AppError),
}

impl<I, F, C, G> ImportUseCases for ImportService<I, F, C, G>
where
    I: ImportRepository,
    F: CustomFieldRepository,
    C: Clock,
    G: IdGenerator,
{
    fn start(&self, actor: Actor, csv: Vec<u8>, on_duplicate: OnDuplicate) -> Fut<'_, ImportJob> {
        Box::pin(Self::start(self, actor, csv, on_duplicate))
    }
    fn get(&self, actor: Actor, id: ImportId) -> Fut<'_, ImportJob> {
        Box::pin(Self::get(self, actor, id))
    }
    fn run_next(&self) -> Fut<'_, bool> {
        Box::pin(Self::run_next(self))
    }
    fn queued(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(self.queued.notified())
    }
}

/// Why a job stops at `row`: the file cannot be read from there on.
fn unreadable(row: i64, e: &impl std::fmt::Display) -> Failure {
    Failure::File(format!("the file is unreadable from row {row} on ({e})"))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn specs() -> Vec<FieldSpec> {
        vec![
            FieldSpec::new("seats", "Seats", FieldType::Number, false, &[]).unwrap(),
            FieldSpec::new(
                "channels",
                "Preferred channels",
                FieldType::Multiselect,
                false,
                &["sms".into(), "email".into()],
            )
            .unwrap(),
            FieldSpec::new("churned", "Churned", FieldType::Boolean, false, &[]).unwrap(),
        ]
    }

    #[tokio::test]
    async fn a_chunk_refused_for_changed_definitions_resumes_at_its_checkpoint_under_fresh_ones() {
        use std::sync::{Arc, Mutex};

        use nexus_ports::clock::MockClock;
        use nexus_ports::contacts::MockCustomFieldRepository;
        use nexus_ports::ids::MockIdGenerator;
        use nexus_ports::imports::MockImportRepository;
        use uuid::Uuid;

        let mut imports = MockImportRepository::new();
        let job = claims(
            &mut imports,
            "firstName,lastName,plan\nAda,Lovelace,pro\n".into(),
        );
        // (generation, rows inserted, whether the row carries `plan`) per attempt.
        let attempts = Arc::new(Mutex::new(Vec::new()));
        let seen = attempts.clone();
        imports
            .expect_commit_chunk()
            .times(2)
            .returning(move |_, _, chunk, _, _| {
                let mut seen = seen.lock().unwrap();
                let has_plan = chunk
                    .inserts
                    .first()
                    .is_some_and(|(_, c, _)| c.fields.custom_fields.contains_key("plan"));
                seen.push((chunk.fields_generation, chunk.inserts.len(), has_plan));
                let refused = seen.len() == 1;
                Box::pin(async move {
                    if refused {
                        Err(ChunkWriteError::DefinitionsChanged)
                    } else {
                        Ok(())
                    }
                })
            });
        let checkpoint = job.clone();
        imports.expect_get().times(1).returning(move |_, _| {
            let checkpoint = checkpoint.clone();
            Box::pin(async move { Ok(Some(checkpoint)) })
        });
        imports
            .expect_finish()
            .withf(|_, _, status, failure, _| {
                *status == ImportStatus::Completed && failure.is_none()
            })
            .times(1)
            .returning(|_, _, _, _, _| Box::pin(async { Ok(()) }));
        let mut fields = MockCustomFieldRepository::new();
        let reads = Arc::new(Mutex::new(0));
        fields.expect_field_set().times(2).returning(move |_| {
            let mut reads = reads.lock().unwrap();
            *reads += 1;
            let set = if *reads == 1 {
                FieldSet {
                    generation: 1,
                    specs: vec![],
                }
            } else {
                FieldSet {
                    generation: 2,
                    specs: vec![
                        FieldSpec::new("plan", "Plan", FieldType::Text, false, &[]).unwrap(),
                    ],
                }
            };
            Box::pin(async move { Ok(set) })
        });
        let mut clock = MockClock::new();
        clock.expect_now().returning(Utc::now);
        let mut ids = MockIdGenerator::new();
        ids.expect_new_id().returning(Uuid::now_v7);

        let service = ImportService::new(imports, fields, clock, ids);
        assert!(service.run_next().await.unwrap());
        // Under the first definitions `plan` was an unknown column; the chunk validated
        // under them was refused and redone under the fresh ones, which know it.
        assert_eq!(*attempts.lock().unwrap(), [(1, 1, false), (2, 1, true)]);
    }

    /// A job over `csv` as a mock queue hands it out, under no custom fields.
    fn claims(imports: &mut nexus_ports::imports::MockImportRepository, csv: String) -> ImportJob {
        claims_as(imports, running(), csv)
    }

    /// A running job, nothing committed yet.
    fn running() -> ImportJob {
        use nexus_domain::{ImportId, OrgId};
        use uuid::Uuid;

        ImportJob {
            status: ImportStatus::Running,
            ..ImportJob::pending(
                ImportId::from_uuid(Uuid::now_v7()),
                OrgId::from_uuid(Uuid::now_v7()),
                None,
                OnDuplicate::Skip,
                Utc::now(),
            )
        }
    }

    /// `job` over `csv`, as a mock queue hands it out.
    fn claims_as(
        imports: &mut nexus_ports::imports::MockImportRepository,
        job: ImportJob,
        csv: String,
    ) -> ImportJob {
        let claimed = (job.clone(), csv.into_bytes());
        imports.expect_claim_next().times(1).returning(move |_, _| {
            let claimed = claimed.clone();
            Box::pin(async move { Ok(Some(claimed)) })
        });
        job
    }

    fn service(
        imports: nexus_ports::imports::MockImportRepository,
    ) -> ImportService<
        nexus_ports::imports::MockImportRepository,
        nexus_ports::contacts::MockCustomFieldRepository,
        nexus_ports::clock::MockClock,
        nexus_ports::ids::MockIdGenerator,
    > {
        let mut fields = nexus_ports::contacts::MockCustomFieldRepository::new();
        fields
            .expect_list()
            .returning(|_| Box::pin(async { Ok(vec![]) }));
        fields.expect_field_set().returning(|_| {
            Box::pin(async {
                Ok(FieldSet {
                    generation: 1,
                    specs: vec![],
                })
            })
        });
        let mut clock = nexus_ports::clock::MockClock::new();
        clock.expect_now().returning(Utc::now);
        let mut ids = nexus_ports::ids::MockIdGenerator::new();
        ids.expect_new_id().returning(uuid::Uuid::now_v7);
        ImportService::new(imports, fields, clock, ids)
    }

    #[tokio::test]
    async fn a_queued_job_wakes_the_worker_once_and_a_refused_file_does_not() {
        use futures_util::FutureExt;
        let mut imports = nexus_ports::imports::MockImportRepository::new();
        // The second file finds the organization's queue full.
        let mut room = vec![false, true];
        imports
            .expect_create()
            .withf(|_, _, _, max| *max == MAX_UNFINISHED)
            .times(2)
            .returning(move |_, _, _, _| {
                let stored = room.pop().unwrap_or(false);
                Box::pin(async move { Ok(stored) })
            });
        let service = service(imports);
        let actor = Actor {
            principal: Principal::User {
                user_id: nexus_domain::UserId::from_uuid(uuid::Uuid::now_v7()),
                session_id: nexus_domain::SessionId::from_uuid(uuid::Uuid::now_v7()),
            },
            org_id: nexus_domain::OrgId::from_uuid(uuid::Uuid::now_v7()),
            role: nexus_domain::Role::Member,
        };
        assert!(service.queued().now_or_never().is_none());

        let refused = service
            .start(actor, b"firstName\nAda\n".to_vec(), OnDuplicate::Skip)
            .await;
        assert!(refused.is_err());
        assert!(service.queued().now_or_never().is_none());

        service
            .start(
                actor,
                b"firstName,lastName\nAda,L\n".to_vec(),
                OnDuplicate::Skip,
            )
            .await
            .unwrap();
        assert!(service.queued().now_or_never().is_some());
        assert!(service.queued().now_or_never().is_none());

        let full = service
            .start(
                actor,
                b"firstName,lastName\nAda,L\n".to_vec(),
                OnDuplicate::Skip,
            )
            .await;
        assert!(
            matches!(
                full,
                Err(AppError::Throttled {
                    code: "too_many_imports",
                    ..
                })
            ),
            "{full:?}"
        );
        assert!(service.queued().now_or_never().is_none());
    }

    /// 2,500 rows: chunks of rows 1–1000, 1001–2000 and 2001–2500, where row 2001
    /// repeats the email of row 1500.
    fn three_chunks() -> String {
        let mut csv = String::from("firstName,lastName,email\n");
        for row in 1..=2500 {
            let email = if row == 2001 { 1500 } else { row };
            csv.push_str(&format!("A,B{row},r{email}@x.io\n"));
        }
        csv
    }

    /// Which chunk a write is about, by its first row.
    fn chunk_of(row: i64) -> i64 {
        (row - 1) / i64::try_from(CHUNK_ROWS).unwrap() + 1
    }

    /// Gives other tasks `n` turns.
    async fn pause(n: usize) {
        for _ in 0..n {
            yield_now().await;
        }
    }

    #[tokio::test]
    async fn chunks_are_written_side_by_side_commit_in_file_order_and_report_earlier_emails() {
        use std::sync::{Arc, Mutex};

        use nexus_ports::imports::MockImportRepository;

        let log = Arc::new(Mutex::new(Vec::<String>::new()));
        let mut imports = MockImportRepository::new();
        claims(&mut imports, three_chunks());
        let lookups = log.clone();
        imports
            .expect_existing_by_email()
            .times(3)
            .returning(move |_, emails| {
                let last = emails.last().unwrap();
                let row: i64 = last[1..last.find('@').unwrap()].parse().unwrap();
                lookups
                    .lock()
                    .unwrap()
                    .push(format!("lookup {}", chunk_of(row)));
                Box::pin(async { Ok(vec![]) })
            });
        let commits = log.clone();
        imports
            .expect_commit_chunk()
            .times(3)
            .returning(move |_, _, chunk, _, turn| {
                let n = chunk_of(chunk.inserts[0].0);
                let commits = commits.clone();
                let reported: Vec<(i64, String)> = chunk
                    .errors
                    .iter()
                    .map(|e| (e.row, e.message.clone()))
                    .collect();
                Box::pin(async move {
                    if n == 3 {
                        assert_eq!(
                            reported,
                            [(2001, "the same email as row 1500 of this file".to_owned())]
                        );
                    } else {
                        assert!(reported.is_empty(), "{reported:?}");
                    }
                    // The first chunk's rows take long to write, the second one's
                    // events and checkpoint.
                    pause(if n == 1 { 200 } else { 1 }).await;
                    if !turn.await {
                        return Err(ChunkWriteError::Abandoned);
                    }
                    pause(if n == 2 { 100 } else { 1 }).await;
                    commits.lock().unwrap().push(format!("commit {n}"));
                    Ok(())
                })
            });
        imports
            .expect_finish()
            .withf(|_, _, status, _, _| *status == ImportStatus::Completed)
            .times(1)
            .returning(|_, _, _, _, _| Box::pin(async { Ok(()) }));

        assert!(service(imports).run_next().await.unwrap());
        assert_eq!(
            *log.lock().unwrap(),
            [
                // Each chunk goes in while the ones before are open (the third without
                // the row repeating the second's email)...
                "lookup 1", "lookup 2", "lookup 3", // ...and commits after them.
                "commit 1", "commit 2", "commit 3",
            ]
        );
    }

    #[tokio::test]
    async fn a_resumed_job_reports_a_repeat_of_an_email_written_before_its_checkpoint() {
        use std::sync::{Arc, Mutex};

        use nexus_ports::imports::MockImportRepository;

        let mut imports = MockImportRepository::new();
        // Rows 1 and 2 were committed before the restart; row 3 repeats row 1's email.
        let job = ImportJob {
            next_row: 3,
            ..running()
        };
        claims_as(
            &mut imports,
            job,
            "firstName,lastName,email\nA,B,a@x.io\nC,D,b@x.io\nE,F,A@X.io\nG,H,c@x.io\n".into(),
        );
        let looked_up = Arc::new(Mutex::new(Vec::new()));
        let seen = looked_up.clone();
        imports
            .expect_existing_by_email()
            .times(1)
            .returning(move |_, emails| {
                seen.lock().unwrap().extend(emails.to_vec());
                Box::pin(async { Ok(vec![]) })
            });
        let written = Arc::new(Mutex::new(None));
        let chunk = written.clone();
        imports
            .expect_commit_chunk()
            .times(1)
            .returning(move |_, _, c, _, _| {
                *chunk.lock().unwrap() = Some(c.clone());
                Box::pin(async { Ok(()) })
            });
        imports
            .expect_finish()
            .withf(|_, _, status, _, _| *status == ImportStatus::Completed)
            .times(1)
            .returning(|_, _, _, _, _| Box::pin(async { Ok(()) }));

        assert!(service(imports).run_next().await.unwrap());
        assert_eq!(*looked_up.lock().unwrap(), ["c@x.io"]);
        let chunk = written.lock().unwrap().take().unwrap();
        let inserted: Vec<i64> = chunk.inserts.iter().map(|(row, _, _)| *row).collect();
        assert_eq!(inserted, [4]);
        assert_eq!((chunk.processed, chunk.failed, chunk.next_row), (2, 1, 5));
        assert_eq!(
            (chunk.errors[0].row, chunk.errors[0].message.as_str()),
            (3, "the same email as row 1 of this file")
        );
    }

    #[tokio::test]
    async fn a_failed_chunk_stops_the_ones_behind_it_from_committing() {
        use std::sync::{Arc, Mutex};

        use nexus_ports::imports::MockImportRepository;

        let outcomes = Arc::new(Mutex::new(Vec::<(i64, bool)>::new()));
        let mut imports = MockImportRepository::new();
        claims(&mut imports, three_chunks());
        imports
            .expect_existing_by_email()
            .returning(|_, _| Box::pin(async { Ok(vec![]) }));
        let seen = outcomes.clone();
        imports
            .expect_commit_chunk()
            .times(3)
            .returning(move |_, _, chunk, _, turn| {
                let n = chunk_of(chunk.inserts[0].0);
                let seen = seen.clone();
                Box::pin(async move {
                    pause(if n == 1 { 200 } else { 1 }).await;
                    if n == 1 {
                        seen.lock().unwrap().push((n, false));
                        return Err(ChunkWriteError::Store(StoreError::Other(anyhow::anyhow!(
                            "disk full"
                        ))));
                    }
                    let committed = turn.await;
                    seen.lock().unwrap().push((n, committed));
                    if committed {
                        Ok(())
                    } else {
                        Err(ChunkWriteError::Abandoned)
                    }
                })
            });
        imports.expect_finish().never();

        let failed = service(imports).run_next().await.unwrap_err();
        assert!(failed.to_string().contains("disk full"), "{failed}");
        // The chunks behind it had started, were told their turn never comes, and were
        // waited for.
        assert_eq!(
            *outcomes.lock().unwrap(),
            [(1, false), (2, false), (3, false)]
        );
    }

    #[tokio::test]
    async fn a_job_that_keeps_stopping_at_the_same_row_fails_instead_of_running_again() {
        for (starts, fails) in [(MAX_STARTS, false), (MAX_STARTS + 1, true)] {
            let job = ImportJob {
                next_row: 2001,
                starts,
                ..running()
            };
            let mut imports = nexus_ports::imports::MockImportRepository::new();
            claims_as(&mut imports, job, "firstName,lastName\n".into());
            imports
                .expect_finish()
                .withf(move |_, _, status, failure, _| {
                    if fails {
                        *status == ImportStatus::Failed
                            && failure.as_deref().is_some_and(|f| {
                                f.contains("stopped 3 times at row 2001")
                                    && f.contains("rows from 2001 on were not imported")
                            })
                    } else {
                        *status == ImportStatus::Completed
                    }
                })
                .times(1)
                .returning(|_, _, _, _, _| Box::pin(async { Ok(()) }));
            assert!(service(imports).run_next().await.unwrap(), "{starts}");
        }
    }

    #[test]
    fn headers_in_any_script_map_by_their_letters_and_blank_ones_name_nothing() {
        let specs = vec![
            FieldSpec::new("phone_jp", "電話番号", FieldType::Text, false, &[]).unwrap(),
            FieldSpec::new("size", "Größe", FieldType::Text, false, &[]).unwrap(),
        ];
        let specs = [
            specs,
            vec![
                FieldSpec::new("seats", "Seats", FieldType::Number, false, &[]).unwrap(),
                FieldSpec::new(
                    "billing_email",
                    "Email（請求先）",
                    FieldType::Text,
                    false,
                    &[],
                )
                .unwrap(),
            ],
        ]
        .concat();
        let header: Vec<String> = [
            "電話番号",
            "会社メモ",
            "",
            " - ",
            "GRÖSSE",
            "Grüße",
            "größe",
            "Email（必須）",
            "Seats（必須）",
            "Last 更新日",
            "Owner (previous)",
            "Email（請求先）",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        let columns = map_header(&header, &specs);
        assert!(matches!(&columns[0], Column::Custom(s) if s.key.as_str() == "phone_jp"));
        assert!(
            columns[1..6].iter().all(|c| *c == Column::Ignored),
            "{columns:?}"
        );
        assert!(matches!(&columns[6], Column::Custom(s) if s.key.as_str() == "size"));
        assert_eq!(columns[7], Column::Field("email"));
        assert!(matches!(&columns[8], Column::Custom(s) if s.key.as_str() == "seats"));
        // Other words outside brackets are no annotation: the header names nothing.
        assert_eq!(columns[9], Column::Ignored);
        assert_eq!(columns[10], Column::Field("ownerId"));
        // Two annotated columns of one field, or one beside the plain name, stay what
        // they were instead of making the file a duplicate_column.
        let pairs: Vec<String> = [
            "Phone (Work)",
            "Phone (Mobile)",
            "Email",
            "Email (secondary)",
            "customFields.seats (required)",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        let paired = map_header(&pairs, &specs);
        assert_eq!(
            paired[..4],
            [
                Column::Ignored,
                Column::Ignored,
                Column::Field("email"),
                Column::Ignored
            ]
        );
        assert!(matches!(&paired[4], Column::Custom(s) if s.key.as_str() == "seats"));
        assert!(check_distinct(&pairs, &paired).is_ok());
        // A field labelled with the annotation is found before the bare name.
        assert!(matches!(&columns[11], Column::Custom(s) if s.key.as_str() == "billing_email"));
        assert!(check_distinct(&header, &columns).is_ok());
    }

    #[test]
    fn a_custom_field_column_naming_no_field_or_too_many_columns_refuse_the_file() {
        let Err(AppError::Validation(issues)) = read_header(
            "firstName,lastName,customFields.nope\r\nA,B,1\r\n",
            &specs(),
        ) else {
            panic!("an unknown custom field column was accepted");
        };
        assert_eq!(
            (issues[0].field.as_str(), issues[0].code.as_str()),
            ("customFields.nope", "unknown_field")
        );
        let wide = format!("firstName,lastName{}\r\n", ",".repeat(MAX_COLUMNS - 2));
        assert!(read_header(&wide, &specs()).is_ok());
        let wider = format!("firstName,lastName{}\r\n", ",".repeat(MAX_COLUMNS - 1));
        let Err(AppError::Validation(issues)) = read_header(&wider, &specs()) else {
            panic!("{} columns were accepted", MAX_COLUMNS + 1);
        };
        assert_eq!(issues[0].code, "too_many_columns");
    }

    #[test]
    fn a_header_matching_two_labels_is_refused_naming_both_keys() {
        let mut specs = specs();
        for key in ["region_a", "region_b"] {
            specs.push(FieldSpec::new(key, "Region", FieldType::Text, false, &[]).unwrap());
        }
        let Err(AppError::Validation(issues)) =
            read_header("firstName,lastName,Region\r\nA,B,emea\r\n", &specs)
        else {
            panic!("an ambiguous column was accepted");
        };
        assert_eq!(
            (issues[0].field.as_str(), issues[0].code.as_str()),
            ("Region", "ambiguous_column")
        );
        assert!(
            issues[0].message.contains("region_a, region_b"),
            "{}",
            issues[0].message
        );
        // Named by key, each is its own column.
        assert!(
            read_header(
                "firstName,lastName,customFields.region_a,region_b\r\nA,B,emea,apac\r\n",
                &specs
            )
            .is_ok()
        );
    }

    #[test]
    fn headers_map_by_name_alias_key_and_label() {
        let header: Vec<String> = [
            "First Name",
            "SURNAME",
            "E-mail",
            "Mobile",
            "Company Name",
            "Stage",
            "Tags",
            "CUSTOMFIELDS.Seats",
            "Preferred Channels",
            "churned",
            "Shoe size",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        let columns = map_header(&header, &specs());
        assert_eq!(
            columns[..7],
            [
                Column::Field("firstName"),
                Column::Field("lastName"),
                Column::Field("email"),
                Column::Field("phone"),
                Column::Field("company"),
                Column::Field("lifecycleStage"),
                Column::Field("tags"),
            ]
        );
        assert!(matches!(&columns[7], Column::Custom(s) if s.key.as_str() == "seats"));
        assert!(matches!(&columns[8], Column::Custom(s) if s.key.as_str() == "channels"));
        assert!(matches!(&columns[9], Column::Custom(s) if s.key.as_str() == "churned"));
        assert_eq!(columns[10], Column::Ignored);

        let record: Vec<String> = [
            "Ada",
            "Lovelace",
            "ADA@x.io",
            "",
            "Engines",
            "customer",
            "vip; math",
            "12",
            "sms;email",
            "no",
            "44",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        let object = row_object(&columns, &record);
        assert_eq!(
            Value::Object(object.clone()),
            json!({"firstName": "Ada", "lastName": "Lovelace", "email": "ADA@x.io", "company": "Engines",
                   "lifecycleStage": "customer", "tags": ["vip", "math"],
                   "customFields": {"seats": 12, "channels": ["sms", "email"], "churned": false}})
        );
        assert!(ContactFields::parse(&object, &specs(), None).is_ok());

        // Tags: on `;` when the cell has one (as exports write them), else on `,`.
        let tags = [Column::Field("tags")];
        for (cell, expected) in [
            ("vip, hot", json!(["vip", "hot"])),
            ("acme, inc;vip", json!(["acme, inc", "vip"])),
            ("acme, inc;", json!(["acme, inc"])),
            ("", Value::Null),
        ] {
            let object = row_object(&tags, &[cell.to_owned()]);
            assert_eq!(
                object.get("tags").cloned().unwrap_or(Value::Null),
                expected,
                "{cell}"
            );
        }
    }

    #[test]
    fn two_columns_for_one_field_are_refused_naming_both() {
        let header =
            |cells: &[&str]| -> Vec<String> { cells.iter().map(|s| (*s).to_owned()).collect() };
        let check = |cells: &[&str]| {
            let h = header(cells);
            check_distinct(&h, &map_header(&h, &specs()))
        };
        assert!(
            check(&[
                "First Name",
                "Last Name",
                "Email",
                "Seats",
                "Shoe size",
                "Hat size"
            ])
            .is_ok()
        );
        for (cells, field, named) in [
            (
                &["first", "last", "Phone", "Mobile"][..],
                "phone",
                "\"Phone\" and \"Mobile\"",
            ),
            (
                &["first", "last", "seats", "customFields.seats"][..],
                "customFields.seats",
                "\"seats\" and \"customFields.seats\"",
            ),
        ] {
            let Err(AppError::Validation(issues)) = check(cells) else {
                panic!("{cells:?} was accepted");
            };
            assert_eq!(
                (issues[0].field.as_str(), issues[0].code.as_str()),
                (field, "duplicate_column")
            );
            assert!(issues[0].message.contains(named), "{}", issues[0].message);
        }
    }
}
