//! Contacts in PostgreSQL. Every statement filters on `organization_id`; every write runs
//! with its outbox event in one short transaction. A create is one prepared statement
//! (contact, event and audit entry; see `outbox::push_gated`), which commits on its own.
//!
//! Lists are built as SQL text with numbered binds. Searches and GIN filters are sent
//! unprepared, so PostgreSQL plans each with its actual pattern (a cached generic plan
//! for a trigram `LIKE` was measured 2.7× slower), and so are stage, owner and date
//! filters; lookups by key and unfiltered pages in index order are prepared once per
//! connection (see `crate::statement`).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::row::NamedRow;
use diesel::sql_types::{
    Array, BigInt, Int2, Integer, Jsonb, Nullable, Text, Timestamptz, Uuid as SqlUuid,
};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use futures_util::FutureExt;
use nexus_domain::contact::{
    CompanyName, Contact, ContactFields, LeadScore, LifecycleStage, PersonName, Tags,
};
use nexus_domain::custom_field::CustomFieldValues;
use nexus_domain::values::{EmailAddress, PhoneNumber};
use nexus_domain::{ContactId, DomainEvent, EventActor, OrgId, UserId};
use nexus_ports::StoreError;
use nexus_ports::contacts::{
    ContactPage, ContactQuery, ContactRepository, ContactSnapshot, ContactWriteError, Keyset,
    SortField, SortValue, TagMode,
};
use serde_json::json;
use uuid::Uuid;

mod snapshot;

use crate::error::from_diesel;
use crate::numberer::CommitBell;
use crate::pool::{Db, PgConn, PgPool};
use crate::positional::column;
use crate::repo::{Flag, foreign_key_violation, holds_generation, unique_violation};
use crate::shared_reader::SharedReader;
pub(crate) use crate::statement::{Bind, Statement};
use crate::{audit, outbox};
use nexus_domain::audit::AuditChange;

const EMAIL_KEY: &str = "contacts_org_email_key";

/// Columns of [`ContactRow`], in order, for hand-written SQL.
pub(crate) const COLUMNS: &str = "organization_id, id, first_name, last_name, email, phone, phone_e164, company, \
     lifecycle_stage, lead_score, owner_id, tags, custom_fields, version, created_at, updated_at, deleted_at";

/// A contact as stored; read by position (see `crate::positional`), in [`COLUMNS`] order.
#[derive(Debug)]
pub(crate) struct ContactRow {
    pub organization_id: Uuid,
    pub id: Uuid,
    pub first_name: String,
    pub last_name: String,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub phone_e164: Option<String>,
    pub company: Option<String>,
    pub lifecycle_stage: String,
    pub lead_score: i16,
    pub owner_id: Option<Uuid>,
    pub tags: Vec<String>,
    pub custom_fields: serde_json::Value,
    pub version: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub deleted_at: Option<DateTime<Utc>>,
}

impl QueryableByName<Pg> for ContactRow {
    fn build<'a>(row: &impl NamedRow<'a, Pg>) -> diesel::deserialize::Result<Self> {
        Ok(Self {
            organization_id: column::<SqlUuid, _, _>(row, 0, "organization_id")?,
            id: column::<SqlUuid, _, _>(row, 1, "id")?,
            first_name: column::<Text, _, _>(row, 2, "first_name")?,
            last_name: column::<Text, _, _>(row, 3, "last_name")?,
            email: column::<Nullable<Text>, _, _>(row, 4, "email")?,
            phone: column::<Nullable<Text>, _, _>(row, 5, "phone")?,
            phone_e164: column::<Nullable<Text>, _, _>(row, 6, "phone_e164")?,
            company: column::<Nullable<Text>, _, _>(row, 7, "company")?,
            lifecycle_stage: column::<Text, _, _>(row, 8, "lifecycle_stage")?,
            lead_score: column::<Int2, _, _>(row, 9, "lead_score")?,
            owner_id: column::<Nullable<SqlUuid>, _, _>(row, 10, "owner_id")?,
            tags: column::<Array<Text>, _, _>(row, 11, "tags")?,
            custom_fields: column::<Jsonb, _, _>(row, 12, "custom_fields")?,
            version: column::<Integer, _, _>(row, 13, "version")?,
            created_at: column::<Timestamptz, _, _>(row, 14, "created_at")?,
            updated_at: column::<Timestamptz, _, _>(row, 15, "updated_at")?,
            deleted_at: column::<Nullable<Timestamptz>, _, _>(row, 16, "deleted_at")?,
        })
    }
}

impl ContactRow {
    /// Binds every column, in [`COLUMNS`] order, after `sql` (which uses `$1`..`$17`).
    pub(crate) fn bind_all(
        self,
        sql: &str,
    ) -> diesel::query_builder::BoxedSqlQuery<
        'static,
        diesel::pg::Pg,
        diesel::query_builder::SqlQuery,
    > {
        crate::statement::unprepared(sql, self.binds())
    }

    /// Every column as a [`Bind`], in [`COLUMNS`] order.
    pub(crate) fn binds(self) -> [Bind; 17] {
        [
            Bind::Uuid(self.organization_id),
            Bind::Uuid(self.id),
            Bind::Text(self.first_name),
            Bind::Text(self.last_name),
            Bind::OptText(self.email),
            Bind::OptText(self.phone),
            Bind::OptText(self.phone_e164),
            Bind::OptText(self.company),
            Bind::Text(self.lifecycle_stage),
            Bind::SmallInt(self.lead_score),
            Bind::OptUuid(self.owner_id),
            Bind::TextArray(self.tags),
            Bind::Json(self.custom_fields),
            Bind::Int(self.version),
            Bind::Time(self.created_at),
            Bind::Time(self.updated_at),
            Bind::OptTime(self.deleted_at),
        ]
    }
}

/// A new contact, its event and its audit entry in one statement (see
/// `outbox::push_gated`), prepared once per connection. The contact is written only if
/// the organization's custom field definitions are still at `generation` (their row is
/// held `FOR SHARE` until the commit, see migration 000014) and its owner, when it has
/// one, is a member of the organization. The statement returns how many contacts it
/// wrote (0 or 1) and whether the generation matched.
fn insert_statement(row: ContactRow, event: &DomainEvent, generation: i64) -> Statement {
    let (org, owner) = (row.organization_id, row.owner_id);
    let mut s = Statement::default();
    s.push("WITH gate AS (SELECT 1 FROM organizations WHERE id = ")
        .bind(Bind::Uuid(org))
        .push(" AND custom_fields_generation = ")
        .bind(Bind::BigInt(generation))
        .push(&format!(
            " FOR SHARE), created AS (INSERT INTO contacts ({COLUMNS}) SELECT "
        ));
    s.bind_list(row.binds());
    s.push(" FROM gate WHERE ")
        .bind(Bind::OptUuid(owner))
        .push(" IS NULL OR EXISTS (SELECT 1 FROM memberships WHERE organization_id = ")
        .bind(Bind::Uuid(org))
        .push(" AND user_id = ")
        .bind(Bind::OptUuid(owner))
        .push(") RETURNING 1)");
    outbox::push_gated(&mut s, event, "created");
    s.push(" SELECT (SELECT count(*) FROM created) AS n, (SELECT count(*) FROM gate) AS current");
    s
}

#[derive(QueryableByName)]
struct Written {
    #[diesel(sql_type = BigInt)]
    n: i64,
    #[diesel(sql_type = BigInt)]
    current: i64,
}

/// Stores every column but the keys and `created_at` if the version is still `$18`.
pub(crate) const UPDATE: &str = "UPDATE contacts SET first_name = $3, last_name = $4, email = $5, phone = $6, phone_e164 = $7, \
     company = $8, lifecycle_stage = $9, lead_score = $10, owner_id = $11, tags = $12, custom_fields = $13, \
     version = $14, updated_at = $16, deleted_at = $17 \
     WHERE organization_id = $1 AND id = $2 AND version = $18";

impl From<&Contact> for ContactRow {
    fn from(c: &Contact) -> Self {
        let f = &c.fields;
        Self {
            organization_id: c.organization_id.as_uuid(),
            id: c.id.as_uuid(),
            first_name: f.first_name.as_str().to_owned(),
            last_name: f.last_name.as_str().to_owned(),
            email: f.email.as_ref().map(|e| e.as_str().to_owned()),
            phone: f.phone.as_ref().map(|p| p.as_str().to_owned()),
            phone_e164: f
                .phone
                .as_ref()
                .and_then(PhoneNumber::e164)
                .map(str::to_owned),
            company: f.company.as_ref().map(|c| c.as_str().to_owned()),
            lifecycle_stage: f.lifecycle_stage.as_str().to_owned(),
            lead_score: i16::from(c.lead_score.value()),
            owner_id: f.owner_id.map(|u| u.as_uuid()),
            tags: f.tags.to_strings(),
            custom_fields: serde_json::Value::Object(f.custom_fields.clone().into_iter().collect()),
            version: c.version,
            created_at: c.created_at,
            updated_at: c.updated_at,
            deleted_at: c.deleted_at,
        }
    }
}

impl TryFrom<ContactRow> for Contact {
    type Error = StoreError;

    fn try_from(row: ContactRow) -> Result<Self, StoreError> {
        let id = row.id;
        let corrupt = |what: &str| {
            StoreError::Other(anyhow::anyhow!("stored contact {id} has an invalid {what}"))
        };
        // Stored values are checked again (a row written by hand or an older rule must
        // not reach a client unchecked), but moved, not copied: a page rebuilds 200.
        let custom_fields: CustomFieldValues = match row.custom_fields {
            serde_json::Value::Object(map) => map.into_iter().collect(),
            _ => return Err(corrupt("custom_fields")),
        };
        let fields = ContactFields {
            first_name: PersonName::from_stored(row.first_name)
                .map_err(|_| corrupt("first_name"))?,
            last_name: PersonName::from_stored(row.last_name).map_err(|_| corrupt("last_name"))?,
            email: row
                .email
                .map(EmailAddress::from_stored)
                .transpose()
                .map_err(|_| corrupt("email"))?,
            phone: row
                .phone
                .map(PhoneNumber::from_stored)
                .transpose()
                .map_err(|_| corrupt("phone"))?,
            company: row
                .company
                .map(CompanyName::from_stored)
                .transpose()
                .map_err(|_| corrupt("company"))?,
            lifecycle_stage: LifecycleStage::parse(&row.lifecycle_stage)
                .ok_or_else(|| corrupt("lifecycle_stage"))?,
            owner_id: row.owner_id.map(UserId::from_uuid),
            tags: Tags::from_stored(row.tags).map_err(|_| corrupt("tags"))?,
            custom_fields,
        };
        Ok(Self {
            id: ContactId::from_uuid(id),
            organization_id: OrgId::from_uuid(row.organization_id),
            fields,
            lead_score: LeadScore::from_stored(row.lead_score),
            version: row.version,
            created_at: row.created_at,
            updated_at: row.updated_at,
            deleted_at: row.deleted_at,
        })
    }
}

#[derive(Clone)]
pub struct PgContactRepository {
    db: Db,
    commits: CommitBell,
    /// Lookups by id and plain first pages, pipelined on one connection.
    reader: Arc<SharedReader>,
}

impl PgContactRepository {
    #[must_use]
    pub fn new(pool: PgPool, acquire_timeout: Duration) -> Self {
        let db = Db::new(pool, acquire_timeout);
        Self {
            reader: Arc::new(SharedReader::new(db.clone())),
            db,
            commits: CommitBell::default(),
        }
    }

    /// Rings `bell` after each write that commits on its own, as the pool's commit
    /// watch does after each `COMMIT` (the pool's own bell, so the numberer hears both).
    #[must_use]
    pub fn with_commit_bell(mut self, bell: CommitBell) -> Self {
        self.commits = bell;
        self
    }

    async fn conn(&self) -> Result<PgConn, StoreError> {
        self.db.conn().await
    }
}

/// Failures inside a write transaction: the domain reason, or the database's.
#[derive(Debug)]
enum TxError {
    Write(ContactWriteError),
    Db(diesel::result::Error),
}

impl From<diesel::result::Error> for TxError {
    fn from(err: diesel::result::Error) -> Self {
        Self::Db(err)
    }
}

impl From<TxError> for ContactWriteError {
    fn from(err: TxError) -> Self {
        match err {
            TxError::Write(w) => w,
            TxError::Db(e) if unique_violation(&e) == Some(EMAIL_KEY) => Self::DuplicateEmail,
            TxError::Db(e) if foreign_key_violation(&e).is_some_and(|c| c.contains("owner")) => {
                Self::OwnerNotMember
            }
            TxError::Db(e) => Self::Store(from_diesel(e)),
        }
    }
}

/// A new owner must be a member of the organization (a user elsewhere is not a valid
/// owner). The contact's current owner is kept even when they have left it since: a
/// change to another field, a delete or a restore must not depend on them.
async fn check_owner(
    conn: &mut AsyncPgConnection,
    org: OrgId,
    contact: ContactId,
    owner: Option<UserId>,
) -> Result<(), TxError> {
    let Some(owner) = owner else { return Ok(()) };
    let member: Flag = diesel::sql_query(
        "SELECT EXISTS (SELECT 1 FROM memberships WHERE organization_id = $1 AND user_id = $2)
             OR EXISTS (SELECT 1 FROM contacts
                        WHERE organization_id = $1 AND id = $3 AND owner_id = $2) AS flag",
    )
    .bind::<SqlUuid, _>(org.as_uuid())
    .bind::<SqlUuid, _>(owner.as_uuid())
    .bind::<SqlUuid, _>(contact.as_uuid())
    .get_result(conn)
    .await?;
    if member.flag {
        Ok(())
    } else {
        Err(TxError::Write(ContactWriteError::OwnerNotMember))
    }
}

/// `%fragment%` for LIKE, with the pattern characters of the fragment escaped. It is not
/// lower-cased here: PostgreSQL's `lower` wrote the searched column, so only the same
/// function lowers the pattern alike for every letter (`İ`, a final `Σ`) and in any locale.
fn contains_pattern(fragment: &str) -> String {
    let mut out = String::with_capacity(fragment.len() + 2);
    out.push('%');
    for c in fragment.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

const fn sort_column(field: SortField) -> &'static str {
    match field {
        SortField::CreatedAt => "created_at",
        SortField::UpdatedAt => "updated_at",
        SortField::LastName => "last_name",
        SortField::LeadScore => "lead_score",
    }
}

/// The `LIKE` pattern of `?q=`, if any.
fn search_pattern(query: &ContactQuery) -> Option<String> {
    query
        .filter
        .q
        .as_deref()
        .map(str::trim)
        .filter(|q| !q.is_empty())
        .map(contains_pattern)
}

/// For a `q` that looks like part of a phone number (digits and phone punctuation, at
/// least three digits, not digits alone, which the first pattern already finds), the
/// `LIKE` pattern of its digits: the searched text holds each phone's digits too (found
/// through its index, then checked against the phone's own digits).
fn phone_digits_pattern(query: &ContactQuery) -> Option<String> {
    let q = query.filter.q.as_deref()?.trim();
    let phone_shaped = q
        .chars()
        .all(|c| c.is_ascii_digit() || " ()+-./".contains(c));
    let digits: String = q.chars().filter(char::is_ascii_digit).collect();
    (phone_shaped && digits.len() >= 3 && digits.len() < q.len()).then(|| format!("%{digits}%"))
}

/// How many of the newest (in sort order) rows a search first scans for its page.
///
/// PostgreSQL estimates `LIKE '%fragment%'` selectivity poorly (99 rows estimated for
/// 14,242 actual on a surname fragment at a million contacts), so it always picks the
/// trigram bitmap scan, which reads every match and sorts them: ~50–170 ms for a common
/// fragment. Walking the sort index and filtering finds a page of a common fragment in
/// a few ms. So a search first walks at most this many rows in order; only when that
/// does not fill the page (a rare fragment) does it ask the trigram index, which is then
/// fast because matches are few. See `docs/perf/contacts.md`.
/// The same holds for tag and custom field filters (GIN indexes too), so every query
/// with one of them takes the same two steps.
const SEARCH_SCAN_FIRST: i64 = 10_000;

/// `FROM contacts WHERE <tenant, live, filters>` shared by the page and the count.
fn filtered(org: OrgId, query: &ContactQuery, select: &str, with_gin: bool) -> Statement {
    let f = &query.filter;
    let mut s = Statement::default();
    s.push(select)
        .push(" FROM contacts WHERE organization_id = ")
        .bind(Bind::Uuid(org.as_uuid()));
    s.push(" AND deleted_at IS NULL");
    if let Some(stage) = f.lifecycle_stage {
        s.push(" AND lifecycle_stage = ")
            .bind(Bind::Text(stage.as_str().to_owned()));
    }
    if let Some(owner) = f.owner_id {
        s.push(" AND owner_id = ").bind(Bind::Uuid(owner.as_uuid()));
    }
    if let Some(after) = f.created_after {
        s.push(" AND created_at >= ").bind(Bind::Time(after));
    }
    if let Some(before) = f.created_before {
        s.push(" AND created_at < ").bind(Bind::Time(before));
    }
    if with_gin {
        gin_conditions(&mut s, query);
    }
    s
}

/// Whether the query only pages the organization's live contacts in some order.
fn unfiltered(query: &ContactQuery) -> bool {
    let f = &query.filter;
    !has_gin_filters(query)
        && f.lifecycle_stage.is_none()
        && f.owner_id.is_none()
        && f.created_after.is_none()
        && f.created_before.is_none()
}

/// Whether the query filters on what only GIN indexes serve (search, tags, custom fields).
fn has_gin_filters(query: &ContactQuery) -> bool {
    search_pattern(query).is_some()
        || !query.filter.tags.is_empty()
        || !query.filter.custom_fields.is_empty()
}

/// ` AND` the search, tag and custom field conditions.
fn gin_conditions(s: &mut Statement, query: &ContactQuery) {
    let f = &query.filter;
    if let Some(q) = search_pattern(query) {
        match phone_digits_pattern(query) {
            Some(digits) => s
                .push(" AND (search LIKE lower(")
                .bind(Bind::Text(q))
                .push(") OR search LIKE ")
                .bind(Bind::Text(digits.clone()))
                // The indexed text holds every field: the digits must be the phone's, as
                // written or in E.164 (which drops a trunk `0`).
                .push(
                    " AND (regexp_replace(coalesce(phone, ''), '[^0-9]', '', 'g') || ' ' || coalesce(phone_e164, '')) LIKE ",
                )
                .bind(Bind::Text(digits))
                .push(")"),
            None => s
                .push(" AND search LIKE lower(")
                .bind(Bind::Text(q))
                .push(")"),
        };
    }
    if !f.tags.is_empty() {
        let op = match f.tag_mode {
            TagMode::Any => " AND tags && ",
            TagMode::All => " AND tags @> ",
        };
        s.push(op).bind(Bind::TextArray(f.tags.clone()));
    }
    if !f.custom_fields.is_empty() {
        let wanted: serde_json::Map<String, serde_json::Value> =
            f.custom_fields.iter().cloned().collect();
        s.push(" AND custom_fields @> ")
            .bind(Bind::Json(serde_json::Value::Object(wanted)));
    }
}

/// How a page read with its total ends (see `list`): always out of the transaction's
/// closure as an error, so that the transaction rolls back.
enum Snapshot {
    Read(Vec<ContactRow>, i64),
    Failed(StoreError),
    Db(diesel::result::Error),
}

impl From<diesel::result::Error> for Snapshot {
    fn from(err: diesel::result::Error) -> Self {
        Self::Db(err)
    }
}

#[derive(QueryableByName)]
struct Version {
    #[diesel(sql_type = Integer)]
    version: i32,
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

#[derive(QueryableByName)]
struct TagCount {
    #[diesel(sql_type = Text)]
    tag: String,
    #[diesel(sql_type = BigInt)]
    n: i64,
}

fn actor_json(actor: &EventActor) -> serde_json::Value {
    serde_json::to_value(actor).unwrap_or(serde_json::Value::Null)
}

/// Rewrites `tags` of every contact carrying `$2` with `new_tags` (SQL over `tags`),
/// versioning each and writing one `contact.updated` per contact changed; returns how
/// many live contacts changed. Contacts in the trash are rewritten alike (restored, they
/// carry the new name; their event carries `deletedAt`), but only when a live contact
/// carries the tag: a tag only the trash holds is not listed, so it is not found either,
/// and nothing is written.
/// Live and trashed carriers are locked in one scan: after waiting for a contact that a
/// concurrent delete or restore holds, the row is read again as that write left it, so
/// its `deleted_at` then is the one that counts. (Two scans, one for each side, missed
/// such a contact: each rechecked it against its own side's condition after the wait.)
async fn rewrite_tags(
    conn: &mut AsyncPgConnection,
    org: OrgId,
    tag: &str,
    new_tags: &str,
    extra: Option<&str>,
    actor: &EventActor,
    now: DateTime<Utc>,
) -> Result<u64, diesel::result::Error> {
    let sql = format!(
        "WITH carriers AS (
             SELECT id, tags, deleted_at FROM contacts
             WHERE organization_id = $1 AND tags @> ARRAY[$2]::text[] FOR UPDATE
         ), old AS (
             SELECT id, tags FROM carriers
             WHERE EXISTS (SELECT 1 FROM carriers WHERE deleted_at IS NULL)
         ), changed AS (
             UPDATE contacts c SET tags = {new_tags}, version = c.version + 1, updated_at = $3
             FROM old WHERE c.organization_id = $1 AND c.id = old.id
             RETURNING c.organization_id, c.deleted_at, contact_event_json(c) AS doc, old.tags AS before, c.tags AS after
         ), written AS (
             INSERT INTO events (id, organization_id, type, occurred_at, actor, payload)
             SELECT nexus_uuid_v7(), organization_id, 'contact.updated', $3, $4,
                    jsonb_build_object('contact', doc, 'changes',
                        jsonb_build_object('tags', jsonb_build_object('from', to_jsonb(before), 'to', to_jsonb(after))))
             FROM changed
         )
         SELECT count(*) FILTER (WHERE deleted_at IS NULL) AS n FROM changed"
    );
    let mut q = diesel::sql_query(sql)
        .into_boxed()
        .bind::<SqlUuid, _>(org.as_uuid())
        .bind::<Text, _>(tag.to_owned())
        .bind::<Timestamptz, _>(now)
        .bind::<Jsonb, _>(actor_json(actor));
    if let Some(extra) = extra {
        q = q.bind::<Text, _>(extra.to_owned());
    }
    let count: Count = q.get_result(conn).await?;
    Ok(u64::try_from(count.n).unwrap_or(0))
}

/// `AND (sort, id) < (…)` (or `>`) after the keyset, when the query has one for its sort.
fn push_keyset(page: &mut Statement, query: &ContactQuery) {
    let Some(after) = query.after.as_ref().filter(|k| k.fits(query.sort.field)) else {
        return;
    };
    let value = match &after.value {
        SortValue::Time(t) => Bind::Time(*t),
        SortValue::Text(s) => Bind::Text(s.clone()),
        SortValue::Int(n) => Bind::SmallInt(i16::try_from(*n).unwrap_or(i16::MAX)),
    };
    let cmp = if query.sort.descending { "<" } else { ">" };
    page.push(&format!(
        " AND ({}, id) {cmp} (",
        sort_column(query.sort.field)
    ))
    .bind(value)
    .push(", ")
    .bind(Bind::Uuid(after.id.as_uuid()))
    .push(")");
}

/// ` ORDER BY … LIMIT ` with the page's limit plus one (to tell whether more follow).
fn push_order(page: &mut Statement, query: &ContactQuery) {
    let dir = if query.sort.descending { "DESC" } else { "ASC" };
    let column = sort_column(query.sort.field);
    page.push(&format!(" ORDER BY {column} {dir}, id {dir} LIMIT "))
        .bind(Bind::BigInt(i64::from(query.limit.clamp(1, 200)) + 1));
}

/// The row counts a page statement's `LIMIT` is written with: the common page sizes
/// (10, 20, 25, 50, 100, 200) plus the one row that tells whether more follow.
const LIMIT_STEPS: [u32; 6] = [11, 21, 26, 51, 101, 201];

/// ` ORDER BY … LIMIT <n>` with `n` a constant in the text, the first of [`LIMIT_STEPS`]
/// that holds the page's limit plus one ([`page_of`] drops the extra rows). A prepared
/// statement's plan is then the same for every execution: with `LIMIT $n`, PostgreSQL
/// prices its generic plan as if a tenth of the organization were read, never prefers
/// it, and plans the statement again on every execution (0.07 ms, about three times
/// the page's execution; `pg_prepared_statements` showed custom plans only).
fn push_order_limit_constant(page: &mut Statement, query: &ContactQuery) {
    let dir = if query.sort.descending { "DESC" } else { "ASC" };
    let column = sort_column(query.sort.field);
    let wanted = query.limit.clamp(1, 200) + 1;
    let rows = LIMIT_STEPS
        .into_iter()
        .find(|n| *n >= wanted)
        .unwrap_or(wanted);
    page.push(&format!(" ORDER BY {column} {dir}, id {dir} LIMIT {rows}"));
}

/// One page, filters and keyset included, in one statement.
fn page_statement(org: OrgId, query: &ContactQuery) -> Statement {
    let mut page = filtered(org, query, &format!("SELECT {COLUMNS}"), true);
    push_keyset(&mut page, query);
    push_order_limit_constant(&mut page, query);
    page
}

/// The contacts of a page read by [`rows_on`] or [`page_statement`], and the keyset
/// after its last one when more follow.
fn page_of(
    mut rows: Vec<ContactRow>,
    query: &ContactQuery,
) -> Result<(Vec<Contact>, Option<Keyset>), StoreError> {
    let page_size = usize::try_from(query.limit.clamp(1, 200)).unwrap_or(usize::MAX);
    let more = rows.len() > page_size;
    rows.truncate(page_size);
    let items = rows
        .into_iter()
        .map(Contact::try_from)
        .collect::<Result<Vec<_>, _>>()?;
    let next = if more {
        items.last().map(|c| Keyset::after(c, query.sort.field))
    } else {
        None
    };
    Ok((items, next))
}

/// One page's rows (one more than its limit when more follow) on `conn`.
async fn rows_on(
    conn: &mut AsyncPgConnection,
    org: OrgId,
    query: &ContactQuery,
) -> Result<Vec<ContactRow>, StoreError> {
    let page_size = usize::try_from(query.limit.clamp(1, 200)).unwrap_or(usize::MAX);
    if has_gin_filters(query) {
        // Phase 1: the first rows in sort order, filtered (see SEARCH_SCAN_FIRST).
        let mut recent = filtered(
            org,
            query,
            &format!("SELECT {COLUMNS} FROM (SELECT {COLUMNS}, search"),
            false,
        );
        push_keyset(&mut recent, query);
        let dir = if query.sort.descending { "DESC" } else { "ASC" };
        let column = sort_column(query.sort.field);
        recent
            .push(&format!(" ORDER BY {column} {dir}, id {dir} LIMIT "))
            .bind(Bind::BigInt(SEARCH_SCAN_FIRST));
        recent.push(") AS contacts WHERE true");
        gin_conditions(&mut recent, query);
        push_order(&mut recent, query);
        let rows: Vec<ContactRow> = recent.query().load(conn).await.map_err(from_diesel)?;
        if rows.len() > page_size {
            return Ok(rows);
        }
        // Phase 2: the matches are sparse; collect them all through the GIN indexes
        // (`OFFSET 0` keeps the planner from walking the sort index instead, which it
        // picks when it misjudges how rare the matches are).
        let mut all = filtered(
            org,
            query,
            &format!("SELECT {COLUMNS} FROM (SELECT {COLUMNS}"),
            true,
        );
        push_keyset(&mut all, query);
        all.push(" OFFSET 0) AS matches");
        push_order(&mut all, query);
        all.query().load(conn).await.map_err(from_diesel)
    } else if unfiltered(query) {
        // In the order of an index, whatever the values: prepared once per connection.
        page_statement(org, query)
            .prepared()
            .load(conn)
            .await
            .map_err(from_diesel)
    } else {
        // A stage, owner or date filter's best plan depends on how common its value
        // is: plan each with its value.
        page_statement(org, query)
            .query()
            .load(conn)
            .await
            .map_err(from_diesel)
    }
}

impl ContactRepository for PgContactRepository {
    async fn insert(
        &self,
        org: OrgId,
        contact: &Contact,
        event: &DomainEvent,
        fields_generation: i64,
    ) -> Result<(), ContactWriteError> {
        let mut conn = self.conn().await?;
        let row = ContactRow {
            organization_id: org.as_uuid(),
            ..ContactRow::from(contact)
        };
        let written: Written = insert_statement(row, event, fields_generation)
            .prepared()
            .get_result(&mut conn)
            .await
            .map_err(|e| ContactWriteError::from(TxError::Db(e)))?;
        if written.current == 0 {
            return Err(ContactWriteError::DefinitionsChanged);
        }
        if written.n == 0 {
            return Err(ContactWriteError::OwnerNotMember);
        }
        // Committed without a `COMMIT` the pool's commit watch would see.
        self.commits.ring();
        Ok(())
    }

    async fn get(
        &self,
        org: OrgId,
        id: ContactId,
        include_deleted: bool,
    ) -> Result<Option<Contact>, StoreError> {
        let row: Option<ContactRow> = self
            .reader
            .read(|conn| {
                let mut lookup = Statement::default();
                lookup
                    .push(&format!(
                        "SELECT {COLUMNS} FROM contacts WHERE organization_id = "
                    ))
                    .bind(Bind::Uuid(org.as_uuid()))
                    .push(" AND id = ")
                    .bind(Bind::Uuid(id.as_uuid()));
                async move { lookup.prepared().get_result(&mut &**conn).await.optional() }.boxed()
            })
            .await?;
        row.filter(|r| include_deleted || r.deleted_at.is_none())
            .map(Contact::try_from)
            .transpose()
    }

    async fn save(
        &self,
        org: OrgId,
        contact: &Contact,
        expected_version: i32,
        event: &DomainEvent,
        fields_generation: Option<i64>,
    ) -> Result<(), ContactWriteError> {
        let mut conn = self.conn().await?;
        let row = ContactRow {
            organization_id: org.as_uuid(),
            ..ContactRow::from(contact)
        };
        let owner = contact.fields.owner_id;
        let id = contact.id.as_uuid();
        let events = std::slice::from_ref(event);
        conn.transaction(async |conn| {
            if let Some(generation) = fields_generation
                && !holds_generation(conn, org, generation).await?
            {
                return Err(TxError::Write(ContactWriteError::DefinitionsChanged));
            }
            check_owner(conn, org, contact.id, owner).await?;
            let updated = row
                .bind_all(UPDATE)
                .bind::<Integer, _>(expected_version)
                .execute(conn)
                .await?;
            if updated == 0 {
                let current: Option<Version> = diesel::sql_query(
                    "SELECT version FROM contacts WHERE organization_id = $1 AND id = $2",
                )
                .bind::<SqlUuid, _>(org.as_uuid())
                .bind::<SqlUuid, _>(id)
                .get_result(conn)
                .await
                .optional()?;
                let current = current.map(|v| v.version);
                return Err(TxError::Write(match current {
                    Some(current) => ContactWriteError::VersionMismatch { current },
                    None => ContactWriteError::NotFound,
                }));
            }
            outbox::append(conn, events).await?;
            Ok(())
        })
        .await
        .map_err(ContactWriteError::from)
    }

    async fn list(&self, org: OrgId, query: &ContactQuery) -> Result<ContactPage, StoreError> {
        // The count needs its own connection; a plain page alone goes to the shared one.
        let (rows, total) = if unfiltered(query) && !query.include_total {
            // A page in the order of an index, whatever the values: a generic plan walks
            // the same index a custom one would, so prepare it once.
            let rows: Vec<ContactRow> = self
                .reader
                .read(|conn| {
                    let page = page_statement(org, query);
                    async move { page.prepared().load(&mut &**conn).await }.boxed()
                })
                .await?;
            (rows, None)
        } else if query.include_total {
            // The page and its total from one snapshot: taken apart, a contact created
            // between them would make the total disagree with the pages. The snapshot
            // ends in a rollback, which for a read is the same as a commit, except that
            // it does not wake the event numberer (see `numberer::CommitWatch`).
            let read = self
                .conn()
                .await?
                .build_transaction()
                .read_only()
                .repeatable_read()
                .run(async |conn| {
                    let rows = rows_on(conn, org, query).await.map_err(Snapshot::Failed)?;
                    let count: Count = filtered(org, query, "SELECT count(*) AS n", true)
                        .query()
                        .get_result(conn)
                        .await?;
                    Err::<std::convert::Infallible, _>(Snapshot::Read(rows, count.n))
                })
                .await;
            match read {
                Err(Snapshot::Read(rows, n)) => (rows, Some(n)),
                Err(Snapshot::Failed(e)) => return Err(e),
                Err(Snapshot::Db(e)) => return Err(from_diesel(e)),
                Ok(never) => match never {},
            }
        } else {
            (rows_on(&mut *self.conn().await?, org, query).await?, None)
        };
        let (items, next) = page_of(rows, query)?;
        Ok(ContactPage { items, next, total })
    }

    async fn export(
        &self,
        org: OrgId,
        query: ContactQuery,
    ) -> Result<Box<dyn ContactSnapshot>, StoreError> {
        let query = ContactQuery {
            after: None,
            include_total: false,
            ..query
        };
        let snapshot = snapshot::Snapshot::begin(self.conn().await?, org, query).await?;
        Ok(Box::new(snapshot))
    }

    async fn deleted(
        &self,
        org: OrgId,
        after: Option<(DateTime<Utc>, ContactId)>,
        limit: u32,
    ) -> Result<Vec<Contact>, StoreError> {
        let mut conn = self.conn().await?;
        let mut page = Statement::default();
        page.push(&format!(
            "SELECT {COLUMNS} FROM contacts WHERE organization_id = "
        ))
        .bind(Bind::Uuid(org.as_uuid()))
        .push(" AND deleted_at IS NOT NULL");
        if let Some((at, id)) = after {
            page.push(" AND (deleted_at, id) < (")
                .bind(Bind::Time(at))
                .push(", ")
                .bind(Bind::Uuid(id.as_uuid()))
                .push(")");
        }
        page.push(" ORDER BY deleted_at DESC, id DESC LIMIT ")
            .bind(Bind::BigInt(i64::from(limit)));
        let rows: Vec<ContactRow> = page.query().load(&mut conn).await.map_err(from_diesel)?;
        rows.into_iter().map(Contact::try_from).collect()
    }

    async fn organizations_to_purge(
        &self,
        before: DateTime<Utc>,
    ) -> Result<Vec<OrgId>, StoreError> {
        #[derive(QueryableByName)]
        struct Org {
            #[diesel(sql_type = SqlUuid)]
            organization_id: Uuid,
        }
        let mut conn = self.conn().await?;
        let rows: Vec<Org> = diesel::sql_query(
            // The same rows `purge_deleted` takes: an organization whose only old deleted
            // contacts are kept for their deals is not visited every hour for nothing.
            "SELECT DISTINCT c.organization_id FROM contacts c
             WHERE c.deleted_at IS NOT NULL AND c.deleted_at < $1
               AND NOT EXISTS (SELECT 1 FROM deals d
                               WHERE d.organization_id = c.organization_id AND d.contact_id = c.id)",
        )
        .bind::<Timestamptz, _>(before)
        .load(&mut conn)
        .await
        .map_err(from_diesel)?;
        Ok(rows
            .into_iter()
            .map(|r| OrgId::from_uuid(r.organization_id))
            .collect())
    }

    async fn purge_deleted(
        &self,
        org: OrgId,
        before: DateTime<Utc>,
        batch: i64,
    ) -> Result<u64, StoreError> {
        #[derive(QueryableByName)]
        struct Doomed {
            #[diesel(sql_type = SqlUuid)]
            id: uuid::Uuid,
        }
        let mut conn = self.conn().await?;
        let deleted = conn
            .transaction(async |conn| {
                let doomed: Vec<uuid::Uuid> = diesel::sql_query(
                    "SELECT c.id FROM contacts c
                     WHERE c.organization_id = $1 AND c.deleted_at IS NOT NULL AND c.deleted_at < $2
                       -- A contact with deals stays (soft-deleted): purging must not take
                       -- deals with it (the foreign key refuses it too).
                       AND NOT EXISTS (SELECT 1 FROM deals d
                                       WHERE d.organization_id = c.organization_id AND d.contact_id = c.id)
                     LIMIT $3 FOR UPDATE OF c SKIP LOCKED",
                )
                .bind::<SqlUuid, _>(org.as_uuid())
                .bind::<Timestamptz, _>(before)
                .bind::<BigInt, _>(batch)
                .load::<Doomed>(conn)
                .await?
                .into_iter()
                .map(|d| d.id)
                .collect();
                if doomed.is_empty() {
                    return Ok::<_, diesel::result::Error>(0);
                }
                // An activity on a deal is the deal's history too (a deal moved to another
                // contact keeps its old entries): it stays, no longer on the purged
                // contact's timeline, instead of going with the contact (cascade).
                diesel::sql_query(
                    "UPDATE activities SET contact_id = NULL
                     WHERE organization_id = $1 AND contact_id = ANY($2) AND deal_id IS NOT NULL",
                )
                .bind::<SqlUuid, _>(org.as_uuid())
                .bind::<Array<SqlUuid>, _>(&doomed)
                .execute(conn)
                .await?;
                let removed =
                    diesel::sql_query("DELETE FROM contacts WHERE organization_id = $1 AND id = ANY($2)")
                        .bind::<SqlUuid, _>(org.as_uuid())
                        .bind::<Array<SqlUuid>, _>(&doomed)
                        .execute(conn)
                        .await?;
                // A removal for good emits no event (the contacts' deletions did), but it
                // is recorded: one entry per batch, naming the contacts, actor `system`.
                let change = AuditChange::new(
                    "contacts.purged",
                    "contact",
                    None,
                    &serde_json::json!({ "before": { "ids": doomed, "count": removed } }),
                );
                audit::record(conn, org, change).await?;
                Ok(removed)
            })
            .await
            .map_err(from_diesel)?;
        Ok(u64::try_from(deleted).unwrap_or(0))
    }

    async fn tag_counts(
        &self,
        org: OrgId,
        after: Option<(i64, String)>,
        limit: u32,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        let mut conn = self.conn().await?;
        let (after_count, after_name) = after.unzip();
        let rows: Vec<TagCount> = diesel::sql_query(
            "SELECT t AS tag, count(*) AS n FROM contacts, unnest(tags) AS t
             WHERE organization_id = $1 AND deleted_at IS NULL GROUP BY t
             HAVING $2::bigint IS NULL OR count(*) < $2 OR (count(*) = $2 AND t > $3)
             ORDER BY n DESC, t LIMIT $4",
        )
        .bind::<SqlUuid, _>(org.as_uuid())
        .bind::<Nullable<BigInt>, _>(after_count)
        .bind::<Nullable<Text>, _>(after_name)
        .bind::<BigInt, _>(i64::from(limit))
        .load(&mut conn)
        .await
        .map_err(from_diesel)?;
        Ok(rows.into_iter().map(|r| (r.tag, r.n)).collect())
    }

    async fn tag_total(&self, org: OrgId) -> Result<i64, StoreError> {
        let mut conn = self.conn().await?;
        let row: Count = diesel::sql_query(
            "SELECT count(DISTINCT t) AS n FROM contacts, unnest(tags) AS t
             WHERE organization_id = $1 AND deleted_at IS NULL",
        )
        .bind::<SqlUuid, _>(org.as_uuid())
        .get_result(&mut conn)
        .await
        .map_err(from_diesel)?;
        Ok(row.n)
    }

    async fn rename_tag(
        &self,
        org: OrgId,
        from: &str,
        to: &str,
        actor: &EventActor,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let mut conn = self.conn().await?;
        // Replaced in place; a contact that already had `to` keeps it once, at its first place.
        let new_tags = "ARRAY(SELECT t FROM unnest(array_replace(c.tags, $2, $5)) WITH ORDINALITY AS u(t, n) GROUP BY t ORDER BY min(n))";
        conn.transaction(async |conn| {
            let n = rewrite_tags(conn, org, from, new_tags, Some(to), actor, now).await?;
            if n == 0 {
                // Not found: the caller is told 404, and a 404 leaves no trace.
                return Ok(0);
            }
            let change = AuditChange::new(
                "tag.renamed",
                "tag",
                Some(from.to_owned()),
                &json!({ "name": { "from": from, "to": to }, "contactsUpdated": n }),
            );
            audit::record(conn, org, change).await?;
            Ok(n)
        })
        .await
        .map_err(from_diesel)
    }

    async fn delete_tag(
        &self,
        org: OrgId,
        tag: &str,
        actor: &EventActor,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let mut conn = self.conn().await?;
        conn.transaction(async |conn| {
            let n =
                rewrite_tags(conn, org, tag, "array_remove(c.tags, $2)", None, actor, now).await?;
            if n == 0 {
                return Ok(0);
            }
            let change = AuditChange::new(
                "tag.deleted",
                "tag",
                Some(tag.to_owned()),
                &json!({ "contactsUpdated": n }),
            );
            audit::record(conn, org, change).await?;
            Ok(n)
        })
        .await
        .map_err(from_diesel)
    }
}

#[cfg(test)]
mod tests {
    use diesel::QueryableByName;
    use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
    use nexus_domain::OrgId;
    use nexus_ports::contacts::{ContactFilter, ContactQuery, Sort};

    use super::{ContactRow, page_statement, phone_digits_pattern};
    use crate::testing::TestDatabase;

    #[tokio::test]
    async fn a_prepared_plain_page_is_planned_once_not_on_every_execution() {
        #[derive(QueryableByName)]
        struct Plans {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            generic: i64,
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            custom: i64,
        }
        let db = TestDatabase::create().await;
        let mut conn = AsyncPgConnection::establish(db.url()).await.unwrap();
        let org = crate::seed::organization(&mut conn, "plans").await.unwrap();
        crate::seed::contacts(&mut conn, org, 5_000, |_| {})
            .await
            .unwrap();
        diesel::sql_query("ANALYZE contacts")
            .execute(&mut conn)
            .await
            .unwrap();
        for limit in [50, 37] {
            let query = ContactQuery {
                filter: ContactFilter::default(),
                sort: Sort::DEFAULT,
                limit,
                after: None,
                include_total: false,
            };
            for _ in 0..8 {
                let rows: Vec<ContactRow> = page_statement(OrgId::from_uuid(org), &query)
                    .prepared()
                    .load(&mut conn)
                    .await
                    .unwrap();
                assert_eq!(rows.len(), 51, "the page and the row past it, or more");
            }
        }
        // Both limits share the one statement (LIMIT 51): five custom plans while
        // PostgreSQL compares, then its generic plan for the other executions.
        let plans: Plans = diesel::sql_query(
            "SELECT coalesce(sum(generic_plans), 0)::bigint AS generic,
                    coalesce(sum(custom_plans), 0)::bigint AS custom
             FROM pg_prepared_statements WHERE statement LIKE '%ORDER BY created_at DESC%'",
        )
        .get_result(&mut conn)
        .await
        .unwrap();
        assert_eq!(plans.custom, 5, "planned anew only while compared");
        assert!(plans.generic >= 11, "{}", plans.generic);
    }

    fn digits_of(q: &str) -> Option<String> {
        phone_digits_pattern(&ContactQuery {
            filter: ContactFilter {
                q: Some(q.into()),
                ..ContactFilter::default()
            },
            sort: Sort::DEFAULT,
            limit: 50,
            after: None,
            include_total: false,
        })
    }

    #[test]
    fn phone_shaped_searches_also_look_for_their_digits() {
        assert_eq!(digits_of(" 415-555-2671 ").as_deref(), Some("%4155552671%"));
        assert_eq!(digits_of("+1 (415) 555").as_deref(), Some("%1415555%"));
        assert_eq!(digits_of("415.555").as_deref(), Some("%415555%"));
        // Digits alone are found as they are; two digits say too little; words are no phone.
        for q in ["4155552671", "+4", "(41)", "ada 415", "415-55x", ""] {
            assert_eq!(digits_of(q), None, "{q}");
        }
    }
}
