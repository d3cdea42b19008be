use chrono::{DateTime, Utc};
use nexus_application::auth::Me;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::dto::team::RoleDto;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RegisterRequest {
    #[schema(example = "ada@example.com", format = "email")]
    pub email: String,
    /// 8–72 bytes (bcrypt's limit; longer is refused, never truncated).
    #[schema(min_length = 8, max_length = 72)]
    pub password: String,
    #[schema(example = "Ada Lovelace", max_length = 100)]
    pub name: String,
    #[schema(example = "Analytical Engines Ltd", max_length = 100)]
    pub organization_name: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LoginRequest {
    #[schema(example = "ada@example.com")]
    pub email: String,
    pub password: String,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RefreshRequest {
    /// The refresh token; when absent, the `nx_refresh` cookie is used (with CSRF).
    pub refresh_token: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenResponse {
    /// JWT for `Authorization: Bearer`, valid `expiresIn` seconds.
    pub access_token: String,
    /// Opaque, single-use: each refresh returns a new one. Absent when unchanged.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub refresh_token: Option<String>,
    #[schema(example = "Bearer")]
    pub token_type: &'static str,
    #[schema(example = 900)]
    pub expires_in: u64,
    pub organization_id: Uuid,
    pub role: RoleDto,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SwitchOrganizationRequest {
    pub organization_id: Uuid,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ChangePasswordRequest {
    pub current_password: String,
    #[schema(min_length = 8, max_length = 72)]
    pub new_password: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ForgotPasswordRequest {
    pub email: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResetPasswordRequest {
    /// The token from the reset email (valid one hour, single use).
    pub token: String,
    #[schema(min_length = 8, max_length = 72)]
    pub new_password: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserDto {
    pub id: Uuid,
    pub email: String,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MembershipDto {
    pub organization_id: Uuid,
    pub organization_name: String,
    pub organization_slug: String,
    pub role: RoleDto,
    pub joined_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MeResponse {
    pub user: UserDto,
    /// The organization this token acts in.
    pub organization_id: Uuid,
    pub role: RoleDto,
    pub memberships: Vec<MembershipDto>,
    /// Set when the caller is an API key (acting for `user`, its creator).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub api_key_id: Option<Uuid>,
}

impl From<Me> for MeResponse {
    fn from(me: Me) -> Self {
        Self {
            user: UserDto {
                id: me.user.id.as_uuid(),
                email: me.user.email,
                name: me.user.name,
                created_at: me.user.created_at,
            },
            organization_id: me.org_id.as_uuid(),
            role: me.role.into(),
            memberships: me
                .memberships
                .into_iter()
                .map(|m| MembershipDto {
                    organization_id: m.org_id.as_uuid(),
                    organization_name: m.org_name,
                    organization_slug: m.org_slug,
                    role: m.role.into(),
                    joined_at: m.joined_at,
                })
                .collect(),
            api_key_id: me.via_api_key.map(|k| k.as_uuid()),
        }
    }
}
