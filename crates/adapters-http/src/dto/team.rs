use chrono::{DateTime, Utc};
use nexus_domain::Role;
use nexus_ports::team::{ApiKeyRecord, InvitationRecord, MemberRecord, OrganizationRecord};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// A member's role, highest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RoleDto {
    Owner,
    Admin,
    Member,
    Viewer,
}

impl From<Role> for RoleDto {
    fn from(r: Role) -> Self {
        match r {
            Role::Owner => Self::Owner,
            Role::Admin => Self::Admin,
            Role::Member => Self::Member,
            Role::Viewer => Self::Viewer,
        }
    }
}

impl From<RoleDto> for Role {
    fn from(r: RoleDto) -> Self {
        match r {
            RoleDto::Owner => Self::Owner,
            RoleDto::Admin => Self::Admin,
            RoleDto::Member => Self::Member,
            RoleDto::Viewer => Self::Viewer,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrganizationDto {
    pub id: Uuid,
    pub name: String,
    pub slug: String,
    #[schema(example = "USD")]
    pub default_currency: String,
    /// Free-form organization settings (e.g. `requireLostReason`).
    pub settings: serde_json::Value,
    /// Also sent as the `ETag`; send it back in `If-Match` to update safely.
    pub version: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<OrganizationRecord> for OrganizationDto {
    fn from(o: OrganizationRecord) -> Self {
        Self {
            id: o.id.as_uuid(),
            name: o.name,
            slug: o.slug,
            default_currency: o.default_currency,
            settings: o.settings,
            version: o.version,
            created_at: o.created_at,
            updated_at: o.updated_at,
        }
    }
}

/// Merge patch: absent fields stay as they are.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateOrganizationRequest {
    #[serde(default, deserialize_with = "crate::dto::common::not_null")]
    #[schema(max_length = 100, nullable = false)]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "crate::dto::common::not_null")]
    #[schema(example = "EUR", pattern = "^[A-Z]{3}$", nullable = false)]
    pub default_currency: Option<String>,
    #[serde(default, deserialize_with = "crate::dto::common::not_null")]
    #[schema(nullable = false)]
    pub settings: Option<serde_json::Value>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MemberDto {
    pub user_id: Uuid,
    pub email: String,
    pub name: String,
    pub role: RoleDto,
    pub joined_at: DateTime<Utc>,
}

impl From<MemberRecord> for MemberDto {
    fn from(m: MemberRecord) -> Self {
        Self {
            user_id: m.user_id.as_uuid(),
            email: m.email,
            name: m.name,
            role: m.role.into(),
            joined_at: m.joined_at,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateMemberRequest {
    pub role: RoleDto,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InvitationDto {
    pub id: Uuid,
    pub email: String,
    pub role: RoleDto,
    pub invited_by: Uuid,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

impl From<InvitationRecord> for InvitationDto {
    fn from(i: InvitationRecord) -> Self {
        Self {
            id: i.id.as_uuid(),
            email: i.email,
            role: i.role.into(),
            invited_by: i.invited_by.as_uuid(),
            created_at: i.created_at,
            expires_at: i.expires_at,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateInvitationRequest {
    #[schema(example = "grace@example.com")]
    pub email: String,
    pub role: RoleDto,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AcceptInvitationRequest {
    /// The existing account's password, or the new account's.
    pub password: String,
    /// Required when no account exists for the invited email.
    pub name: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiKeyDto {
    pub id: Uuid,
    pub name: String,
    /// The first characters of the secret, to recognise it.
    #[schema(example = "nx_live_AbCdEf")]
    pub prefix: String,
    pub role: RoleDto,
    pub created_by: Uuid,
    pub created_at: DateTime<Utc>,
    #[schema(required = true)]
    pub expires_at: Option<DateTime<Utc>>,
    #[schema(required = true)]
    pub last_used_at: Option<DateTime<Utc>>,
    #[schema(required = true)]
    pub revoked_at: Option<DateTime<Utc>>,
}

impl From<ApiKeyRecord> for ApiKeyDto {
    fn from(k: ApiKeyRecord) -> Self {
        Self {
            id: k.id.as_uuid(),
            name: k.name,
            prefix: k.prefix,
            role: k.role.into(),
            created_by: k.created_by.as_uuid(),
            created_at: k.created_at,
            expires_at: k.expires_at,
            last_used_at: k.last_used_at,
            revoked_at: k.revoked_at,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateApiKeyRequest {
    #[schema(example = "Zapier sync", max_length = 100)]
    pub name: String,
    /// At most the creator's own role.
    pub role: RoleDto,
    pub expires_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatedApiKeyResponse {
    pub api_key: ApiKeyDto,
    /// The full key, shown this once: store it now.
    #[schema(example = "nx_live_AbCdEf...")]
    pub secret: String,
}
