//! Contacts: validated fields, the lead score, and the decisions (create, merge-patch
//! update, delete, restore) that return the new state plus the event they imply.

use std::collections::BTreeSet;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::custom_field::{CustomFieldValues, FieldSpec, validate_values};
use crate::event::{DomainEvent, EventActor, EventType};
use crate::ids::{ContactId, EventId, OrgId, UserId};
use crate::merge_patch;
use crate::validation::{FieldIssue, UNKNOWN_FIELD};
use crate::values::email::EmailAddress;
use crate::values::phone::PhoneNumber;

/// A first or last name: 1–100 characters after trimming.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct PersonName(String);

impl PersonName {
    pub const MAX_CHARS: usize = 100;

    /// # Errors
    /// `required` when blank, `too_long` over 100 characters, `invalid_format` with NUL.
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        bounded(raw, Self::MAX_CHARS).map(Self)
    }

    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Rebuilds a stored name, keeping its buffer when it needs no trimming.
    ///
    /// # Errors
    /// As [`PersonName::parse`].
    pub fn from_stored(raw: String) -> Result<Self, &'static str> {
        bounded_owned(raw, Self::MAX_CHARS).map(Self)
    }

    #[must_use]
    pub fn into_string(self) -> String {
        self.0
    }
}

/// A company name: 1–200 characters after trimming.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct CompanyName(String);

impl CompanyName {
    pub const MAX_CHARS: usize = 200;

    /// # Errors
    /// `required` when blank, `too_long` over 200 characters, `invalid_format` with NUL.
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        bounded(raw, Self::MAX_CHARS).map(Self)
    }

    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Rebuilds a stored name, keeping its buffer when it needs no trimming.
    ///
    /// # Errors
    /// As [`CompanyName::parse`].
    pub fn from_stored(raw: String) -> Result<Self, &'static str> {
        bounded_owned(raw, Self::MAX_CHARS).map(Self)
    }

    #[must_use]
    pub fn into_string(self) -> String {
        self.0
    }
}

/// The message for a [`bounded`] refusal: `length` unless the text held a NUL.
fn text_rule(code: &str, length: &'static str) -> &'static str {
    if code == "invalid_format" {
        NUL_REFUSED
    } else {
        length
    }
}

/// Why a text with a NUL character is refused.
pub const NUL_REFUSED: &str = "text cannot contain a NUL character";

/// [`bounded`] for a value the caller owns: no copy when it is already trimmed.
fn bounded_owned(raw: String, max: usize) -> Result<String, &'static str> {
    // At most `max` bytes is at most `max` characters: most names skip the count.
    let kept = !raw.is_empty()
        && raw.trim().len() == raw.len()
        && (raw.len() <= max || raw.chars().count() <= max);
    if kept { Ok(raw) } else { bounded(&raw, max) }
}

fn bounded(raw: &str, max: usize) -> Result<String, &'static str> {
    let s = raw.trim();
    if s.is_empty() {
        Err("required")
    } else if s.chars().count() > max {
        Err("too_long")
    } else if s.contains('\0') {
        // PostgreSQL cannot store NUL in text: refused here, not by a failed write.
        Err("invalid_format")
    } else {
        Ok(s.to_owned())
    }
}

/// A tag: trimmed, lower-cased, 1–50 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Tag(String);

impl Tag {
    pub const MAX_CHARS: usize = 50;
    /// What separates tags in a CSV cell.
    pub const SEPARATOR: char = ';';
    /// Said of every refused tag.
    pub const RULE: &'static str =
        "a tag has 1 to 50 characters, none of them a control character or ';'";

    /// A tag to write: what [`Tag::parse_existing`] accepts, without `;`, which separates
    /// tags in a CSV cell (export and import), so a tag holding one would come back as two.
    ///
    /// # Errors
    /// As [`Tag::parse_existing`]; `invalid_format` with `;`.
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        let tag = Self::parse_existing(raw)?;
        if tag.0.contains(Self::SEPARATOR) {
            return Err("invalid_format");
        }
        Ok(tag)
    }

    /// A tag as stored or named (a filter, the tag a rename or delete acts on): one
    /// written before `;` was refused is still read, found and renamed.
    ///
    /// # Errors
    /// `required` when blank, `too_long` over 50 characters, `invalid_format` with
    /// control characters.
    pub fn parse_existing(raw: &str) -> Result<Self, &'static str> {
        // Lower-cased before the length check: lower-casing can lengthen a tag (`İ`
        // becomes two characters), and what is stored must pass this check when read.
        let s = bounded(&raw.to_lowercase(), Self::MAX_CHARS)?;
        if s.chars().any(char::is_control) {
            return Err("invalid_format");
        }
        Ok(Self(s))
    }

    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// What [`Tag::parse`] would return unchanged: trimmed, 1–50 characters, lower
    /// case ASCII (anything beyond ASCII is left to `parse`), no control characters.
    fn is_normalized(raw: &str) -> bool {
        !raw.is_empty()
            && raw.len() <= Self::MAX_CHARS
            && raw.trim().len() == raw.len()
            && raw
                .bytes()
                .all(|b| b.is_ascii() && !b.is_ascii_uppercase() && !b.is_ascii_control())
    }
}

/// A contact's tags: normalized, deduplicated (first occurrence kept), at most 50.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[serde(transparent)]
pub struct Tags(Vec<Tag>);

impl Tags {
    pub const MAX: usize = 50;

    /// # Errors
    /// Every invalid tag (`tags[i]`), or `too_many` past 50 distinct tags.
    pub fn parse<S: AsRef<str>>(raw: &[S]) -> Result<Self, Vec<FieldIssue>> {
        Self::parse_with(raw, Tag::parse)
    }

    /// As [`Tags::parse`], but a tag the contact already holds (`kept`) is checked as
    /// stored: one written before a rule (a `;` in it) does not block its contact's updates.
    ///
    /// # Errors
    /// As [`Tags::parse`].
    pub fn parse_keeping<S: AsRef<str>>(raw: &[S], kept: &[Tag]) -> Result<Self, Vec<FieldIssue>> {
        Self::parse_with(raw, |s| {
            Tag::parse(s).or_else(|code| {
                Tag::parse_existing(s)
                    .ok()
                    .filter(|t| kept.contains(t))
                    .ok_or(code)
            })
        })
    }

    fn parse_with<S: AsRef<str>>(
        raw: &[S],
        tag: impl Fn(&str) -> Result<Tag, &'static str>,
    ) -> Result<Self, Vec<FieldIssue>> {
        let mut issues = Vec::new();
        let mut seen = BTreeSet::new();
        let mut tags = Vec::with_capacity(raw.len());
        for (i, item) in raw.iter().enumerate() {
            match tag(item.as_ref()) {
                Ok(tag) => {
                    if seen.insert(tag.clone()) {
                        tags.push(tag);
                    }
                }
                Err(code) => issues.push(FieldIssue::new(format!("tags[{i}]"), code, Tag::RULE)),
            }
        }
        if tags.len() > Self::MAX {
            issues.push(FieldIssue::new(
                "tags",
                "too_many",
                "a contact has at most 50 tags",
            ));
        }
        if issues.is_empty() {
            Ok(Self(tags))
        } else {
            Err(issues)
        }
    }

    #[must_use]
    pub fn as_slice(&self) -> &[Tag] {
        &self.0
    }

    #[must_use]
    pub fn to_strings(&self) -> Vec<String> {
        self.0.iter().map(|t| t.0.clone()).collect()
    }

    #[must_use]
    pub fn into_strings(self) -> Vec<String> {
        self.0.into_iter().map(|t| t.0).collect()
    }

    /// Rebuilds stored tags, keeping their buffers when they are already normalized and
    /// distinct (what [`Tags::parse`] stores); anything else goes through
    /// [`Tag::parse_existing`].
    ///
    /// # Errors
    /// As [`Tags::parse`].
    pub fn from_stored(raw: Vec<String>) -> Result<Self, Vec<FieldIssue>> {
        let normalized = raw.len() <= Self::MAX
            && raw
                .iter()
                .enumerate()
                .all(|(i, t)| Tag::is_normalized(t) && !raw[..i].contains(t));
        if normalized {
            Ok(Self(raw.into_iter().map(Tag).collect()))
        } else {
            Self::parse_with(&raw, Tag::parse_existing)
        }
    }
}

/// Where a contact stands in the funnel, earliest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LifecycleStage {
    #[default]
    Lead,
    MarketingQualified,
    SalesQualified,
    Opportunity,
    Customer,
    Evangelist,
    Other,
}

impl LifecycleStage {
    pub const ALL: [Self; 7] = [
        Self::Lead,
        Self::MarketingQualified,
        Self::SalesQualified,
        Self::Opportunity,
        Self::Customer,
        Self::Evangelist,
        Self::Other,
    ];

    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Lead => "lead",
            Self::MarketingQualified => "marketing_qualified",
            Self::SalesQualified => "sales_qualified",
            Self::Opportunity => "opportunity",
            Self::Customer => "customer",
            Self::Evangelist => "evangelist",
            Self::Other => "other",
        }
    }

    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// Position in the funnel; `other` stands outside it.
    #[must_use]
    pub const fn rank(self) -> Option<u8> {
        match self {
            Self::Lead => Some(0),
            Self::MarketingQualified => Some(1),
            Self::SalesQualified => Some(2),
            Self::Opportunity => Some(3),
            Self::Customer => Some(4),
            Self::Evangelist => Some(5),
            Self::Other => None,
        }
    }

    /// Moving from `self` to `to` goes back down the funnel (allowed, but recorded).
    #[must_use]
    pub fn is_regression_to(self, to: Self) -> bool {
        matches!((self.rank(), to.rank()), (Some(a), Some(b)) if b < a)
    }
}

/// 0–100, computed by the server from what is known of the contact; clients never set it.
///
/// Completeness (email 20, phone 10, company 10) plus funnel position (0 for a lead,
/// 10 per stage up to 50 for an evangelist; `other` adds nothing), capped at 100.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct LeadScore(u8);

impl LeadScore {
    #[must_use]
    pub fn compute(fields: &ContactFields) -> Self {
        let completeness = 20 * u8::from(fields.email.is_some())
            + 10 * u8::from(fields.phone.is_some())
            + 10 * u8::from(fields.company.is_some());
        let funnel = fields.lifecycle_stage.rank().map_or(0, |r| r * 10);
        Self((completeness + funnel).min(100))
    }

    /// A stored score (the database checks 0–100).
    #[must_use]
    pub fn from_stored(value: i16) -> Self {
        Self(u8::try_from(value.clamp(0, 100)).unwrap_or(0))
    }

    #[must_use]
    pub const fn value(self) -> u8 {
        self.0
    }
}

/// Everything a client may write about a contact, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactFields {
    pub first_name: PersonName,
    pub last_name: PersonName,
    pub email: Option<EmailAddress>,
    pub phone: Option<PhoneNumber>,
    pub company: Option<CompanyName>,
    pub lifecycle_stage: LifecycleStage,
    pub owner_id: Option<UserId>,
    pub tags: Tags,
    pub custom_fields: CustomFieldValues,
}

/// The fields a request body may carry, in their wire (camelCase) names.
pub const WRITABLE_FIELDS: [&str; 9] = [
    "firstName",
    "lastName",
    "email",
    "phone",
    "company",
    "lifecycleStage",
    "ownerId",
    "tags",
    "customFields",
];
/// Fields of the resource that only the server writes.
pub const READ_ONLY_FIELDS: [&str; 8] = [
    "id",
    "leadScore",
    "phoneE164",
    "version",
    "createdAt",
    "updatedAt",
    "deletedAt",
    "organizationId",
];

impl ContactFields {
    /// Parses a request body (or a merge-patched document), collecting every problem.
    /// Absent, `null` or blank optional fields mean "none"; `lifecycleStage` defaults to
    /// `lead`. `previous_custom` is the stored `customFields` on update (see
    /// [`validate_values`]).
    ///
    /// # Errors
    /// Every invalid field; keys outside the contract carry [`UNKNOWN_FIELD`] and
    /// server-owned ones `read_only`.
    pub fn parse(
        input: &Map<String, Value>,
        definitions: &[FieldSpec],
        previous_custom: Option<&CustomFieldValues>,
    ) -> Result<Self, Vec<FieldIssue>> {
        Self::parse_over(input, definitions, previous_custom, &[])
    }

    /// [`Self::parse`] of an update: `previous_tags` are the contact's stored tags, which
    /// it keeps even where they predate a rule (a `;` in a tag).
    fn parse_over(
        input: &Map<String, Value>,
        definitions: &[FieldSpec],
        previous_custom: Option<&CustomFieldValues>,
        previous_tags: &[Tag],
    ) -> Result<Self, Vec<FieldIssue>> {
        let mut issues = Vec::new();
        for key in input.keys() {
            if READ_ONLY_FIELDS.contains(&key.as_str()) {
                issues.push(FieldIssue::new(
                    key.clone(),
                    "read_only",
                    "this field is set by the server",
                ));
            } else if !WRITABLE_FIELDS.contains(&key.as_str()) {
                issues.push(FieldIssue::new(
                    key.clone(),
                    UNKNOWN_FIELD,
                    "not a field of a contact",
                ));
            }
        }
        let mut name = |key: &str| match input.get(key) {
            Some(Value::String(s)) => PersonName::parse(s)
                .map_err(|code| {
                    issues.push(FieldIssue::new(
                        key,
                        code,
                        text_rule(code, "a name has 1 to 100 characters"),
                    ))
                })
                .ok(),
            None | Some(Value::Null) => {
                issues.push(FieldIssue::new(key, "required", "a name is required"));
                None
            }
            Some(_) => {
                issues.push(FieldIssue::new(key, "invalid_type", "expected a string"));
                None
            }
        };
        let first_name = name("firstName");
        let last_name = name("lastName");
        let email = optional_text(input, "email", &mut issues, |s| {
            EmailAddress::parse(s).map_err(|e| (e.code(), e.to_string()))
        });
        let phone = optional_text(input, "phone", &mut issues, |s| {
            PhoneNumber::parse(s).map_err(|e| (e.code(), e.to_string()))
        });
        let company = optional_text(input, "company", &mut issues, |s| {
            CompanyName::parse(s).map_err(|code| {
                (
                    code,
                    text_rule(code, "a company name has at most 200 characters").to_owned(),
                )
            })
        });
        let lifecycle_stage = match input.get("lifecycleStage") {
            None | Some(Value::Null) => LifecycleStage::default(),
            Some(Value::String(s)) => LifecycleStage::parse(s).unwrap_or_else(|| {
                issues.push(FieldIssue::new(
                    "lifecycleStage",
                    "invalid_option",
                    stage_list(),
                ));
                LifecycleStage::default()
            }),
            Some(_) => {
                issues.push(FieldIssue::new(
                    "lifecycleStage",
                    "invalid_type",
                    stage_list(),
                ));
                LifecycleStage::default()
            }
        };
        let owner_id = optional_text(input, "ownerId", &mut issues, |s| {
            s.parse::<UserId>()
                .map_err(|_| ("invalid_format", "expected a user id (UUID)".to_owned()))
        });
        let tags = match input.get("tags") {
            None | Some(Value::Null) => Tags::default(),
            Some(Value::Array(items)) => {
                let strings: Option<Vec<&str>> = items.iter().map(Value::as_str).collect();
                match strings {
                    Some(strings) => {
                        Tags::parse_keeping(&strings, previous_tags).unwrap_or_else(|mut e| {
                            issues.append(&mut e);
                            Tags::default()
                        })
                    }
                    None => {
                        issues.push(FieldIssue::new(
                            "tags",
                            "invalid_type",
                            "expected an array of strings",
                        ));
                        Tags::default()
                    }
                }
            }
            Some(_) => {
                issues.push(FieldIssue::new(
                    "tags",
                    "invalid_type",
                    "expected an array of strings",
                ));
                Tags::default()
            }
        };
        let empty = Map::new();
        let custom_input = match input.get("customFields") {
            None | Some(Value::Null) => Some(&empty),
            Some(Value::Object(map)) => Some(map),
            Some(_) => {
                issues.push(FieldIssue::new(
                    "customFields",
                    "invalid_type",
                    "expected an object",
                ));
                None
            }
        };
        let custom_fields = custom_input
            .map(|values| {
                validate_values(values, definitions, previous_custom).unwrap_or_else(|mut e| {
                    issues.append(&mut e);
                    CustomFieldValues::new()
                })
            })
            .unwrap_or_default();
        match (first_name, last_name) {
            (Some(first_name), Some(last_name)) if issues.is_empty() => Ok(Self {
                first_name,
                last_name,
                email,
                phone,
                company,
                lifecycle_stage,
                owner_id,
                tags,
                custom_fields,
            }),
            _ => Err(issues),
        }
    }

    /// The writable fields as a JSON object (the document a merge patch applies to).
    #[must_use]
    pub fn to_json(&self) -> Map<String, Value> {
        let mut map = Map::new();
        map.insert("firstName".into(), json!(self.first_name));
        map.insert("lastName".into(), json!(self.last_name));
        map.insert("email".into(), json!(self.email));
        map.insert("phone".into(), json!(self.phone));
        map.insert("company".into(), json!(self.company));
        map.insert("lifecycleStage".into(), json!(self.lifecycle_stage));
        map.insert("ownerId".into(), json!(self.owner_id));
        map.insert("tags".into(), json!(self.tags));
        map.insert("customFields".into(), json!(self.custom_fields));
        map
    }
}

fn stage_list() -> String {
    let names: Vec<&str> = LifecycleStage::ALL.iter().map(|s| s.as_str()).collect();
    format!("expected one of: {}", names.join(", "))
}

/// An optional string field: absent, `null` or blank is `None`.
fn optional_text<T>(
    input: &Map<String, Value>,
    key: &str,
    issues: &mut Vec<FieldIssue>,
    parse: impl FnOnce(&str) -> Result<T, (&'static str, String)>,
) -> Option<T> {
    match input.get(key) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.trim().is_empty() => None,
        Some(Value::String(s)) => parse(s)
            .map_err(|(code, message)| issues.push(FieldIssue::new(key, code, message)))
            .ok(),
        Some(_) => {
            issues.push(FieldIssue::new(key, "invalid_type", "expected a string"));
            None
        }
    }
}

/// What every decision needs to stamp its event: passed in, so rules stay pure.
#[derive(Debug, Clone, PartialEq)]
pub struct EventContext {
    pub event_id: EventId,
    pub actor: EventActor,
    pub now: DateTime<Utc>,
}

/// A contact as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Contact {
    pub id: ContactId,
    pub organization_id: OrgId,
    pub fields: ContactFields,
    pub lead_score: LeadScore,
    /// Starts at 1, grows by one with every change; the `ETag`.
    pub version: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub deleted_at: Option<DateTime<Utc>>,
}

/// How long a deleted contact can be restored before the purge removes it.
pub const RESTORE_WINDOW_DAYS: i64 = 30;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RestoreError {
    #[error("the contact is not deleted")]
    NotDeleted,
    #[error("the contact was deleted more than 30 days ago")]
    Expired,
}

impl Contact {
    /// A new contact at version 1, and its `contact.created` event.
    #[must_use]
    pub fn create(
        id: ContactId,
        organization_id: OrgId,
        fields: ContactFields,
        ctx: &EventContext,
    ) -> (Self, DomainEvent) {
        let contact = Self {
            id,
            organization_id,
            lead_score: LeadScore::compute(&fields),
            fields,
            version: 1,
            created_at: ctx.now,
            updated_at: ctx.now,
            deleted_at: None,
        };
        let event = contact.event(
            EventType::ContactCreated,
            ctx,
            json!({ "contact": contact.to_json() }),
        );
        (contact, event)
    }

    /// Applies a JSON Merge Patch to the writable fields and validates the result.
    ///
    /// # Errors
    /// Every invalid field of the patched document (unknown and read-only keys included).
    pub fn apply_merge_patch(
        &self,
        patch: &Map<String, Value>,
        definitions: &[FieldSpec],
    ) -> Result<ContactFields, Vec<FieldIssue>> {
        let mut issues: Vec<FieldIssue> = patch
            .keys()
            .filter(|k| !WRITABLE_FIELDS.contains(&k.as_str()))
            .map(|k| {
                if READ_ONLY_FIELDS.contains(&k.as_str()) {
                    FieldIssue::new(k.clone(), "read_only", "this field is set by the server")
                } else {
                    FieldIssue::new(k.clone(), UNKNOWN_FIELD, "not a field of a contact")
                }
            })
            .collect();
        if !issues.is_empty() {
            return Err(issues);
        }
        let merged = merge_patch::apply(
            &Value::Object(self.fields.to_json()),
            &Value::Object(patch.clone()),
        );
        let Value::Object(merged) = merged else {
            issues.push(FieldIssue::new(
                "",
                "invalid_type",
                "a patch is a JSON object",
            ));
            return Err(issues);
        };
        ContactFields::parse_over(
            &merged,
            definitions,
            Some(&self.fields.custom_fields),
            self.fields.tags.as_slice(),
        )
    }

    /// Replaces the writable fields. `None` when nothing changes (no new version, no
    /// event); else the next version and `contact.updated` with the changed fields.
    #[must_use]
    pub fn update(&self, fields: ContactFields, ctx: &EventContext) -> Option<(Self, DomainEvent)> {
        if fields == self.fields {
            return None;
        }
        let before = self.fields.to_json();
        let after = fields.to_json();
        let mut changes = Map::new();
        for key in WRITABLE_FIELDS {
            let (from, to) = (&before[key], &after[key]);
            if from != to {
                changes.insert(key.to_owned(), json!({ "from": from, "to": to }));
            }
        }
        let regressed = self
            .fields
            .lifecycle_stage
            .is_regression_to(fields.lifecycle_stage);
        let updated = Self {
            lead_score: LeadScore::compute(&fields),
            fields,
            version: self.version + 1,
            updated_at: ctx.now,
            ..self.clone()
        };
        // Server-owned, but a change of the contact all the same: integrations syncing
        // scores learn of it from the event alone.
        if updated.lead_score != self.lead_score {
            changes.insert(
                "leadScore".to_owned(),
                json!({ "from": self.lead_score.value(), "to": updated.lead_score.value() }),
            );
        }
        let e164_before = self.fields.phone.as_ref().and_then(PhoneNumber::e164);
        let e164_after = updated.fields.phone.as_ref().and_then(PhoneNumber::e164);
        if e164_before != e164_after {
            changes.insert(
                "phoneE164".to_owned(),
                json!({ "from": e164_before, "to": e164_after }),
            );
        }
        let mut payload = json!({ "contact": updated.to_json(), "changes": changes });
        if regressed {
            payload["lifecycleStageRegressed"] = Value::Bool(true);
        }
        let event = updated.event(EventType::ContactUpdated, ctx, payload);
        Some((updated, event))
    }

    /// Soft-deletes: the next version, `deletedAt` set, `contact.deleted`.
    #[must_use]
    pub fn delete(&self, ctx: &EventContext) -> (Self, DomainEvent) {
        let deleted = Self {
            version: self.version + 1,
            updated_at: ctx.now,
            deleted_at: Some(ctx.now),
            ..self.clone()
        };
        let event = deleted.event(
            EventType::ContactDeleted,
            ctx,
            json!({ "contact": deleted.to_json() }),
        );
        (deleted, event)
    }

    /// Brings a soft-deleted contact back within [`RESTORE_WINDOW_DAYS`]; recorded as
    /// `contact.updated` with `deletedAt` among the changes.
    ///
    /// # Errors
    /// [`RestoreError`].
    pub fn restore(&self, ctx: &EventContext) -> Result<(Self, DomainEvent), RestoreError> {
        let deleted_at = self.deleted_at.ok_or(RestoreError::NotDeleted)?;
        if ctx.now - deleted_at > Duration::days(RESTORE_WINDOW_DAYS) {
            return Err(RestoreError::Expired);
        }
        let restored = Self {
            version: self.version + 1,
            updated_at: ctx.now,
            deleted_at: None,
            ..self.clone()
        };
        let payload = json!({
            "contact": restored.to_json(),
            "changes": { "deletedAt": { "from": deleted_at, "to": null } },
            "restored": true,
        });
        let event = restored.event(EventType::ContactUpdated, ctx, payload);
        Ok((restored, event))
    }

    /// The contact as events carry it (camelCase, as the API shows it).
    #[must_use]
    pub fn to_json(&self) -> Value {
        let mut map = Map::new();
        map.insert("id".into(), json!(self.id));
        map.append(&mut self.fields.to_json());
        map.insert(
            "phoneE164".into(),
            json!(self.fields.phone.as_ref().and_then(PhoneNumber::e164)),
        );
        map.insert("leadScore".into(), json!(self.lead_score));
        map.insert("version".into(), json!(self.version));
        map.insert("createdAt".into(), json!(self.created_at));
        map.insert("updatedAt".into(), json!(self.updated_at));
        if let Some(deleted_at) = self.deleted_at {
            map.insert("deletedAt".into(), json!(deleted_at));
        }
        Value::Object(map)
    }

    fn event(&self, event_type: EventType, ctx: &EventContext, payload: Value) -> DomainEvent {
        DomainEvent {
            id: ctx.event_id,
            organization_id: self.organization_id,
            event_type,
            occurred_at: ctx.now,
            actor: ctx.actor.clone(),
            payload,
        }
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;
    use crate::custom_field::FieldType;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn ctx() -> EventContext {
        EventContext {
            event_id: EventId::from_uuid(Uuid::now_v7()),
            actor: EventActor::User {
                id: UserId::from_uuid(Uuid::now_v7()),
            },
            now: Utc::now(),
        }
    }

    fn defs() -> Vec<FieldSpec> {
        vec![
            FieldSpec::new(
                "industry",
                "Industry",
                FieldType::Select,
                false,
                &["saas".into(), "retail".into()],
            )
            .unwrap(),
        ]
    }

    fn ada() -> ContactFields {
        ContactFields::parse(
            &obj(json!({
                "firstName": "  Ada ", "lastName": "Lovelace", "email": "ADA@Example.com",
                "phone": "+44 20 7946 0958", "company": "Analytical Engines",
                "tags": [" VIP ", "vip", "Math"], "customFields": {"industry": "saas"}
            })),
            &defs(),
            None,
        )
        .unwrap()
    }

    fn created() -> Contact {
        Contact::create(
            ContactId::from_uuid(Uuid::now_v7()),
            OrgId::from_uuid(Uuid::now_v7()),
            ada(),
            &ctx(),
        )
        .0
    }

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(PersonName::parse("  Ada ").unwrap().as_str(), "Ada");
        assert_eq!(PersonName::parse("   "), Err("required"));
        assert_eq!(
            PersonName::parse(&"é".repeat(100))
                .unwrap()
                .as_str()
                .chars()
                .count(),
            100
        );
        assert_eq!(PersonName::parse(&"é".repeat(101)), Err("too_long"));
        assert_eq!(PersonName::parse("A\0da"), Err("invalid_format"));
        assert_eq!(CompanyName::parse("Acme\0"), Err("invalid_format"));
    }

    #[test]
    fn stored_names_are_checked_like_new_ones() {
        for raw in [
            "Ada",
            "  Ada ",
            "",
            "   ",
            &"é".repeat(100),
            &"é".repeat(101),
        ] {
            assert_eq!(
                PersonName::from_stored(raw.to_owned()),
                PersonName::parse(raw),
                "{raw}"
            );
        }
        assert_eq!(CompanyName::from_stored("x".repeat(201)), Err("too_long"));
    }

    #[test]
    fn stored_tags_are_checked_and_normalized_like_new_ones() {
        let owned = |v: &[&str]| v.iter().map(|t| (*t).to_owned()).collect::<Vec<_>>();
        for raw in [
            &["vip", "q3-2026"][..],
            &["VIP", " q3 "],
            &["vip", "vip", "Vip"],
            &["déjà vu"],
            &["bad\u{7}"],
            &[""],
        ] {
            assert_eq!(Tags::from_stored(owned(raw)), Tags::parse(raw), "{raw:?}");
        }
        let many: Vec<String> = (0..51).map(|i| format!("t{i}")).collect();
        assert!(Tags::from_stored(many).is_err(), "51 tags");
        let fifty: Vec<String> = (0..50).map(|i| format!("t{i}")).collect();
        assert_eq!(
            Tags::from_stored(fifty.clone()).unwrap().into_strings(),
            fifty
        );
    }

    #[test]
    fn tags_are_normalized_deduplicated_and_limited() {
        let tags = Tags::parse(&[" VIP ", "vip", "Big Deal", "big deal"]).unwrap();
        assert_eq!(tags.to_strings(), ["vip", "big deal"]);
        let fifty: Vec<String> = (0..50).map(|i| format!("t{i}")).collect();
        assert!(Tags::parse(&fifty).is_ok());
        let mut fifty_one = fifty.clone();
        fifty_one.push("one-more".into());
        assert_eq!(Tags::parse(&fifty_one).unwrap_err()[0].code, "too_many");
        // Duplicates do not count twice.
        let mut dupes = fifty;
        dupes.push("T0".into());
        assert!(Tags::parse(&dupes).is_ok());
        let errs = Tags::parse(&["ok", " ", &"x".repeat(51), "a\u{7}b"]).unwrap_err();
        let got: Vec<_> = errs.iter().map(|e| (e.field.as_str(), e.code)).collect();
        assert_eq!(
            got,
            [
                ("tags[1]", "required"),
                ("tags[2]", "too_long"),
                ("tags[3]", "invalid_format")
            ]
        );
    }

    #[test]
    fn a_stored_tag_with_the_separator_does_not_block_its_contacts_updates() {
        let mut contact = created();
        contact.fields.tags = Tags::from_stored(vec!["old;tag".to_owned()]).unwrap();
        let renamed = contact
            .apply_merge_patch(json!({"firstName": "Bo"}).as_object().unwrap(), &defs())
            .unwrap();
        assert_eq!(renamed.tags.to_strings(), ["old;tag"]);
        let added = contact
            .apply_merge_patch(
                json!({"tags": ["old;tag", "new"]}).as_object().unwrap(),
                &defs(),
            )
            .unwrap();
        assert_eq!(added.tags.to_strings(), ["old;tag", "new"]);
        let errs = contact
            .apply_merge_patch(
                json!({"tags": ["old;tag", "x;y"]}).as_object().unwrap(),
                &defs(),
            )
            .unwrap_err();
        assert_eq!(
            (errs[0].field.as_str(), errs[0].code),
            ("tags[1]", "invalid_format")
        );
    }

    #[test]
    fn a_new_tag_may_not_hold_the_csv_separator_but_a_stored_one_is_still_read() {
        assert_eq!(Tag::parse("a;b"), Err("invalid_format"));
        assert_eq!(Tags::parse(&["ok", "a;b"]).unwrap_err()[0].field, "tags[1]");
        assert_eq!(Tag::parse_existing("A;B").unwrap().as_str(), "a;b");
        // Stored before the rule: read back, through the normalized path and the other.
        for stored in [vec!["a;b".to_owned()], vec!["É;x".to_owned()]] {
            let read = Tags::from_stored(stored.clone()).unwrap().to_strings();
            assert_eq!(read, [stored[0].to_lowercase()]);
        }
    }

    #[test]
    fn a_tag_is_checked_as_it_is_stored() {
        // `İ` lower-cases to two characters: 26 of them are 52 once stored.
        let long = "İ".repeat(26);
        assert_eq!(Tag::parse(&long), Err("too_long"));
        let fits = "İ".repeat(25);
        let tag = Tag::parse(&fits).unwrap();
        assert_eq!(tag.as_str().chars().count(), 50);
        let stored = Tags::parse(&[fits]).unwrap().to_strings();
        assert_eq!(
            Tags::from_stored(stored.clone()).unwrap().to_strings(),
            stored
        );
    }

    #[test]
    fn parse_normalizes_every_field() {
        let f = ada();
        assert_eq!(f.first_name.as_str(), "Ada");
        assert_eq!(f.email.as_ref().unwrap().as_str(), "ada@example.com");
        assert_eq!(f.phone.as_ref().unwrap().e164(), Some("+442079460958"));
        assert_eq!(f.tags.to_strings(), ["vip", "math"]);
        assert_eq!(f.lifecycle_stage, LifecycleStage::Lead);
        let blank = ContactFields::parse(
            &obj(json!({"firstName": "A", "lastName": "B", "email": " ", "phone": ""})),
            &[],
            None,
        )
        .unwrap();
        assert_eq!((blank.email, blank.phone), (None, None));
    }

    #[test]
    fn parse_collects_every_problem() {
        let errs = ContactFields::parse(
            &obj(json!({
                "firstName": "", "lastName": 7, "email": "nope", "phone": "call me",
                "lifecycleStage": "prospect", "ownerId": "x", "tags": "vip",
                "customFields": {"colour": "red"}, "leadScore": 99, "nickname": "Ada"
            })),
            &defs(),
            None,
        )
        .unwrap_err();
        let got: Vec<_> = errs.iter().map(|e| (e.field.as_str(), e.code)).collect();
        for expected in [
            ("leadScore", "read_only"),
            ("nickname", UNKNOWN_FIELD),
            ("firstName", "required"),
            ("lastName", "invalid_type"),
            ("email", "invalid_format"),
            ("phone", "invalid_format"),
            ("lifecycleStage", "invalid_option"),
            ("ownerId", "invalid_format"),
            ("tags", "invalid_type"),
            ("customFields.colour", UNKNOWN_FIELD),
        ] {
            assert!(got.contains(&expected), "{expected:?} in {got:?}");
        }
        assert_eq!(got.len(), 10);
    }

    #[test]
    fn lead_score_is_computed_from_completeness_and_funnel() {
        let c = created();
        assert_eq!(c.lead_score.value(), 40);
        let mut f = ada();
        f.lifecycle_stage = LifecycleStage::Evangelist;
        assert_eq!(LeadScore::compute(&f).value(), 90);
        f.lifecycle_stage = LifecycleStage::Other;
        f.email = None;
        assert_eq!(LeadScore::compute(&f).value(), 20);
    }

    #[test]
    fn create_emits_contact_created_with_the_resource() {
        let c = ctx();
        let (contact, event) = Contact::create(
            ContactId::from_uuid(Uuid::now_v7()),
            OrgId::from_uuid(Uuid::now_v7()),
            ada(),
            &c,
        );
        assert_eq!(contact.version, 1);
        assert_eq!(event.event_type, EventType::ContactCreated);
        assert_eq!(event.id, c.event_id);
        assert_eq!(event.organization_id, contact.organization_id);
        assert_eq!(event.payload["contact"]["email"], "ada@example.com");
        assert_eq!(event.payload["contact"]["phoneE164"], "+442079460958");
        assert_eq!(event.payload["contact"]["leadScore"], 40);
    }

    #[test]
    fn merge_patch_changes_only_what_it_names() {
        let contact = created();
        let fields = contact
            .apply_merge_patch(&obj(json!({"company": null, "lifecycleStage": "customer", "customFields": {"industry": null}})), &defs())
            .unwrap();
        assert_eq!(fields.company, None);
        assert_eq!(fields.first_name.as_str(), "Ada");
        assert!(fields.custom_fields.is_empty());
        assert_eq!(fields.tags, contact.fields.tags);

        let (updated, event) = contact.update(fields, &ctx()).unwrap();
        assert_eq!(updated.version, 2);
        assert_eq!(updated.lead_score.value(), 30 + 40);
        assert_eq!(event.event_type, EventType::ContactUpdated);
        let changes = event.payload["changes"].as_object().unwrap();
        let mut keys: Vec<_> = changes.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            ["company", "customFields", "leadScore", "lifecycleStage"]
        );
        assert_eq!(
            changes["company"],
            json!({"from": "Analytical Engines", "to": null})
        );
        assert_eq!(
            changes["leadScore"],
            json!({"from": contact.lead_score.value(), "to": 70})
        );
        // A change that leaves the score as it was does not list it.
        let renamed = contact
            .apply_merge_patch(&obj(json!({"firstName": "Augusta"})), &defs())
            .unwrap();
        let (_, event) = contact.update(renamed, &ctx()).unwrap();
        let changes = event.payload["changes"].as_object().unwrap();
        assert_eq!(changes.keys().collect::<Vec<_>>(), ["firstName"]);
        assert!(event.payload.get("lifecycleStageRegressed").is_none());
    }

    #[test]
    fn merge_patch_rejects_unknown_read_only_and_invalid_fields() {
        let contact = created();
        let errs = contact
            .apply_merge_patch(&obj(json!({"leadScore": 100, "shoeSize": 9})), &defs())
            .unwrap_err();
        let codes: Vec<_> = errs.iter().map(|e| e.code).collect();
        assert_eq!(codes, ["read_only", UNKNOWN_FIELD]);
        let errs = contact
            .apply_merge_patch(&obj(json!({"firstName": null, "email": "x@"})), &defs())
            .unwrap_err();
        let codes: Vec<_> = errs.iter().map(|e| (e.field.as_str(), e.code)).collect();
        assert_eq!(
            codes,
            [("firstName", "required"), ("email", "invalid_format")]
        );
    }

    #[test]
    fn a_phone_change_lists_its_e164_form_when_that_changes_too() {
        let contact = created();
        let patch = |c: &Contact, phone: &str| {
            let fields = c
                .apply_merge_patch(&obj(json!({ "phone": phone })), &defs())
                .unwrap();
            c.update(fields, &ctx()).unwrap()
        };
        // National (no E.164 form), then international: the E.164 form appears.
        let (national, event) = patch(&contact, "020 7946 0111");
        assert_eq!(
            event.payload["changes"]["phoneE164"],
            json!({"from": "+442079460958", "to": null})
        );
        let (parsed, event) = patch(&national, "+44 20 7946 0111");
        assert_eq!(
            event.payload["changes"]["phoneE164"],
            json!({"from": null, "to": "+442079460111"})
        );
        // Typed differently, the same number: the phone changed, its E.164 form did not.
        let (_, event) = patch(&parsed, "+442079460111");
        assert!(event.payload["changes"].get("phone").is_some());
        assert!(event.payload["changes"].get("phoneE164").is_none());
    }

    #[test]
    fn an_update_that_changes_nothing_records_nothing() {
        let contact = created();
        let same = contact
            .apply_merge_patch(
                &obj(json!({"firstName": " Ada", "tags": ["VIP", "math"]})),
                &defs(),
            )
            .unwrap();
        assert!(contact.update(same, &ctx()).is_none());
    }

    #[test]
    fn moving_back_down_the_funnel_is_allowed_and_recorded() {
        let contact = created();
        let up = contact
            .apply_merge_patch(&obj(json!({"lifecycleStage": "customer"})), &defs())
            .unwrap();
        let (customer, _) = contact.update(up, &ctx()).unwrap();
        let down = customer
            .apply_merge_patch(&obj(json!({"lifecycleStage": "lead"})), &defs())
            .unwrap();
        let (_, event) = customer.update(down, &ctx()).unwrap();
        assert_eq!(event.payload["lifecycleStageRegressed"], true);
        assert!(LifecycleStage::Customer.is_regression_to(LifecycleStage::Lead));
        assert!(!LifecycleStage::Customer.is_regression_to(LifecycleStage::Other));
        assert!(!LifecycleStage::Other.is_regression_to(LifecycleStage::Lead));
    }

    #[test]
    fn delete_and_restore_within_thirty_days() {
        let contact = created();
        assert_eq!(contact.restore(&ctx()), Err(RestoreError::NotDeleted));
        let del_ctx = ctx();
        let (deleted, event) = contact.delete(&del_ctx);
        assert_eq!(event.event_type, EventType::ContactDeleted);
        assert_eq!(deleted.deleted_at, Some(del_ctx.now));
        assert_eq!(deleted.version, 2);

        let mut later = ctx();
        later.now = del_ctx.now + Duration::days(29);
        let (restored, event) = deleted.restore(&later).unwrap();
        assert_eq!((restored.deleted_at, restored.version), (None, 3));
        assert_eq!(event.event_type, EventType::ContactUpdated);
        assert_eq!(event.payload["restored"], true);

        later.now = del_ctx.now + Duration::days(31);
        assert_eq!(deleted.restore(&later), Err(RestoreError::Expired));
    }
}
