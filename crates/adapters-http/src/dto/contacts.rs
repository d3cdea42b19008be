//! Contacts, custom field definitions and tags on the wire.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use nexus_domain::contact::{CompanyName, Contact, LifecycleStage, RESTORE_WINDOW_DAYS};
use nexus_domain::custom_field::{CustomFieldDefinition, FieldType};
use nexus_domain::values::EmailAddress;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::problem::Problem;

/// Where a contact stands in the funnel. Moving backwards is allowed (and recorded).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LifecycleStageDto {
    Lead,
    MarketingQualified,
    SalesQualified,
    Opportunity,
    Customer,
    Evangelist,
    Other,
}

impl From<LifecycleStage> for LifecycleStageDto {
    fn from(s: LifecycleStage) -> Self {
        match s {
            LifecycleStage::Lead => Self::Lead,
            LifecycleStage::MarketingQualified => Self::MarketingQualified,
            LifecycleStage::SalesQualified => Self::SalesQualified,
            LifecycleStage::Opportunity => Self::Opportunity,
            LifecycleStage::Customer => Self::Customer,
            LifecycleStage::Evangelist => Self::Evangelist,
            LifecycleStage::Other => Self::Other,
        }
    }
}

impl From<LifecycleStageDto> for LifecycleStage {
    fn from(s: LifecycleStageDto) -> Self {
        match s {
            LifecycleStageDto::Lead => Self::Lead,
            LifecycleStageDto::MarketingQualified => Self::MarketingQualified,
            LifecycleStageDto::SalesQualified => Self::SalesQualified,
            LifecycleStageDto::Opportunity => Self::Opportunity,
            LifecycleStageDto::Customer => Self::Customer,
            LifecycleStageDto::Evangelist => Self::Evangelist,
            LifecycleStageDto::Other => Self::Other,
        }
    }
}

/// A contact.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ContactDto {
    pub id: Uuid,
    #[schema(example = "Ada")]
    pub first_name: String,
    #[schema(example = "Lovelace")]
    pub last_name: String,
    /// Lower-cased; unique among the organization's contacts.
    #[schema(example = "ada@example.com")]
    #[schema(required = true)]
    pub email: Option<String>,
    /// As entered.
    #[schema(example = "+44 20 7946 0958")]
    #[schema(required = true)]
    pub phone: Option<String>,
    /// The phone in E.164 when it was entered with its country code.
    #[schema(example = "+442079460958")]
    #[schema(required = true)]
    pub phone_e164: Option<String>,
    #[schema(required = true)]
    pub company: Option<String>,
    pub lifecycle_stage: LifecycleStageDto,
    /// 0–100, computed by the server from completeness and funnel position.
    #[schema(minimum = 0, maximum = 100)]
    pub lead_score: u8,
    #[schema(required = true)]
    pub owner_id: Option<Uuid>,
    /// Lower-cased, unique, at most 50.
    pub tags: Vec<String>,
    /// Values by custom field key, typed by the field definitions.
    #[schema(value_type = Object)]
    pub custom_fields: BTreeMap<String, serde_json::Value>,
    /// Also sent as the `ETag`; send it back in `If-Match` to write safely.
    pub version: i32,
    #[serde(serialize_with = "super::timestamp::serialize")]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "super::timestamp::serialize")]
    pub updated_at: DateTime<Utc>,
}

impl From<Contact> for ContactDto {
    fn from(c: Contact) -> Self {
        let f = c.fields;
        let (phone, phone_e164) = f.phone.map_or((None, None), |p| {
            let (raw, e164) = p.into_parts();
            (Some(raw), e164)
        });
        Self {
            id: c.id.as_uuid(),
            first_name: f.first_name.into_string(),
            last_name: f.last_name.into_string(),
            email: f.email.map(EmailAddress::into_string),
            phone,
            phone_e164,
            company: f.company.map(CompanyName::into_string),
            lifecycle_stage: f.lifecycle_stage.into(),
            lead_score: c.lead_score.value(),
            owner_id: f.owner_id.map(|u| u.as_uuid()),
            tags: f.tags.into_strings(),
            custom_fields: f.custom_fields,
            version: c.version,
            created_at: c.created_at,
            updated_at: c.updated_at,
        }
    }
}

/// A deleted contact, as it was when deleted.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeletedContactDto {
    #[serde(flatten)]
    pub contact: ContactDto,
    #[serde(serialize_with = "super::timestamp::serialize")]
    pub deleted_at: DateTime<Utc>,
    /// `POST /contacts/{id}/restore` brings it back until then (409
    /// `restore_window_expired` after); the purge removes it soon after, unless deals
    /// still name it.
    #[serde(serialize_with = "super::timestamp::serialize")]
    pub restorable_until: DateTime<Utc>,
}

impl DeletedContactDto {
    /// `None` for a live contact.
    #[must_use]
    pub fn of(contact: Contact) -> Option<Self> {
        let deleted_at = contact.deleted_at?;
        Some(Self {
            contact: ContactDto::from(contact),
            deleted_at,
            restorable_until: deleted_at + chrono::Duration::days(RESTORE_WINDOW_DAYS),
        })
    }
}

/// A new contact. Unknown fields are rejected (400); `leadScore` and the other
/// server-owned fields cannot be written.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ContactCreateRequest {
    /// 1–100 characters after trimming.
    #[schema(example = "Ada", min_length = 1, max_length = 100)]
    pub first_name: String,
    #[schema(example = "Lovelace", min_length = 1, max_length = 100)]
    pub last_name: String,
    #[schema(example = "ada@example.com")]
    pub email: Option<String>,
    /// Digits with optional `+`, spaces, `()-./` and an extension; at most 50 characters.
    #[schema(example = "+44 20 7946 0958", max_length = 50)]
    pub phone: Option<String>,
    #[schema(max_length = 200)]
    pub company: Option<String>,
    /// Defaults to `lead`.
    pub lifecycle_stage: Option<LifecycleStageDto>,
    /// A member of the organization.
    pub owner_id: Option<Uuid>,
    /// Trimmed, lower-cased, deduplicated; at most 50 of 1–50 characters, without `;`.
    pub tags: Option<Vec<String>>,
    /// Values by custom field key; unknown keys are rejected.
    #[schema(value_type = Option<Object>)]
    pub custom_fields: Option<BTreeMap<String, serde_json::Value>>,
}

/// A JSON Merge Patch (RFC 7396) of a contact: absent = unchanged, `null` = cleared;
/// `customFields` merges key by key, `tags` is replaced whole.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ContactPatchRequest {
    /// Absent = unchanged; a contact always has one, so `null` is refused (422 `required`).
    #[schema(min_length = 1, max_length = 100, nullable = false)]
    pub first_name: Option<String>,
    /// Absent = unchanged; `null` is refused (422 `required`).
    #[schema(min_length = 1, max_length = 100, nullable = false)]
    pub last_name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub company: Option<String>,
    pub lifecycle_stage: Option<LifecycleStageDto>,
    pub owner_id: Option<Uuid>,
    /// Replaces the list; as on create, without `;` in a tag.
    pub tags: Option<Vec<String>>,
    #[schema(value_type = Option<Object>)]
    pub custom_fields: Option<BTreeMap<String, serde_json::Value>>,
}

// Its schema's variants are closed (`additionalProperties: false`, as serde closes them)
// by `crate::openapi`: utoipa does it for structs only.
/// One operation of a batch.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(tag = "op", rename_all = "camelCase", deny_unknown_fields)]
pub enum BatchItem {
    /// Create a contact from `data`.
    Create {
        #[schema(value_type = ContactCreateRequest)]
        data: serde_json::Map<String, serde_json::Value>,
    },
    /// Merge-patch contact `id` with `data`; `ifMatch` is the version you read.
    #[serde(rename_all = "camelCase")]
    Update {
        id: Uuid,
        #[schema(value_type = ContactPatchRequest)]
        data: serde_json::Map<String, serde_json::Value>,
        if_match: Option<i32>,
    },
    /// Soft-delete contact `id`.
    #[serde(rename_all = "camelCase")]
    Delete { id: Uuid, if_match: Option<i32> },
}

/// Up to 100 operations, each applied atomically on its own, in order.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    /// 1 to 100 items (422 otherwise).
    #[schema(min_items = 1, max_items = 100)]
    pub items: Vec<BatchItem>,
}

/// What became of one item: the status it would have had alone, and the contact or the
/// problem.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BatchItemResult {
    /// Position of the item in the request.
    pub index: usize,
    #[schema(example = 201)]
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub data: Option<ContactDto>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Problem>)]
    #[schema(nullable = false)]
    pub error: Option<serde_json::Value>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BatchResponse {
    pub results: Vec<BatchItemResult>,
}

/// The type of a custom field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum FieldTypeDto {
    Text,
    Number,
    Date,
    Boolean,
    Select,
    Multiselect,
}

impl From<FieldType> for FieldTypeDto {
    fn from(t: FieldType) -> Self {
        match t {
            FieldType::Text => Self::Text,
            FieldType::Number => Self::Number,
            FieldType::Date => Self::Date,
            FieldType::Boolean => Self::Boolean,
            FieldType::Select => Self::Select,
            FieldType::Multiselect => Self::Multiselect,
        }
    }
}

impl From<FieldTypeDto> for FieldType {
    fn from(t: FieldTypeDto) -> Self {
        match t {
            FieldTypeDto::Text => Self::Text,
            FieldTypeDto::Number => Self::Number,
            FieldTypeDto::Date => Self::Date,
            FieldTypeDto::Boolean => Self::Boolean,
            FieldTypeDto::Select => Self::Select,
            FieldTypeDto::Multiselect => Self::Multiselect,
        }
    }
}

/// A custom field definition of the organization.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CustomFieldDto {
    pub id: Uuid,
    /// `^[a-z][a-z0-9_]{0,49}$`; the key under `customFields`. Immutable.
    #[schema(example = "industry")]
    pub key: String,
    #[schema(example = "Industry")]
    pub label: String,
    #[serde(rename = "type")]
    pub field_type: FieldTypeDto,
    pub required: bool,
    /// Allowed values of `select` and `multiselect` fields.
    pub options: Vec<String>,
    pub version: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<CustomFieldDefinition> for CustomFieldDto {
    fn from(d: CustomFieldDefinition) -> Self {
        Self {
            id: d.id.as_uuid(),
            key: d.spec.key.as_str().to_owned(),
            label: d.spec.label,
            field_type: d.spec.field_type.into(),
            required: d.spec.required,
            options: d.spec.options,
            version: d.version,
            created_at: d.created_at,
            updated_at: d.updated_at,
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CustomFieldCreateRequest {
    #[schema(example = "industry", pattern = "^[a-z][a-z0-9_]{0,49}$")]
    pub key: String,
    #[schema(example = "Industry", min_length = 1, max_length = 100)]
    pub label: String,
    #[serde(rename = "type")]
    pub field_type: FieldTypeDto,
    #[serde(default)]
    pub required: bool,
    /// Required (1–100 unique values) for `select` and `multiselect`; absent otherwise.
    #[serde(default)]
    pub options: Vec<String>,
}

/// Changes to a definition, as a merge patch: absent fields stay. The type changes only
/// while no contact holds a value for the field; the key never changes.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CustomFieldUpdateRequest {
    /// A definition always has one: `null` is refused (422 `required`).
    #[serde(default, deserialize_with = "crate::dto::common::present")]
    #[schema(value_type = Option<String>, nullable = false, min_length = 1, max_length = 100)]
    pub label: Option<Option<String>>,
    /// `null` is refused (422 `required`).
    #[serde(
        rename = "type",
        default,
        deserialize_with = "crate::dto::common::present"
    )]
    #[schema(value_type = Option<FieldTypeDto>, nullable = false)]
    pub field_type: Option<Option<FieldTypeDto>>,
    /// `null` is refused (422 `required`).
    #[serde(default, deserialize_with = "crate::dto::common::present")]
    #[schema(value_type = Option<bool>, nullable = false)]
    pub required: Option<Option<bool>>,
    /// `null` clears them, which only a type without options accepts.
    #[serde(default, deserialize_with = "crate::dto::common::present")]
    #[schema(value_type = Option<Vec<String>>)]
    pub options: Option<Option<Vec<String>>>,
}

/// A tag in use, with the number of live contacts carrying it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TagDto {
    #[schema(example = "vip")]
    pub name: String,
    pub count: i64,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RenameTagRequest {
    /// The new name (1–50 characters, without `;`); when contacts already carry it, the
    /// tags merge.
    #[schema(example = "key-account", min_length = 1, max_length = 50)]
    pub name: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TagRenamed {
    pub name: String,
    /// Contacts that changed.
    pub contacts_updated: u64,
}
