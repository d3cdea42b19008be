//! `/api/v1/api-keys`: organization keys for integrations.

use actix_web::{HttpRequest, HttpResponse, delete, get, post, web};
use nexus_application::TeamUseCases;
use nexus_domain::{Action, ApiKeyId, Resource};
use uuid::Uuid;

use crate::auth::{Auth, permitted};
use crate::dto::common::Page;
use crate::dto::team::{ApiKeyDto, CreateApiKeyRequest, CreatedApiKeyResponse};
use crate::extract::json_body;
use crate::middleware::idempotency::{self, shown_once};
use crate::problem::ApiError;
use crate::responses::{
    BadRequest, Forbidden, NotFound, PayloadTooLarge, ServiceUnavailable, Unauthorized,
    Unprocessable, UnsupportedMediaType,
};

type Team = web::Data<dyn TeamUseCases>;

/// Create a key (OWNER, ADMIN). The secret is in this response only; it is stored hashed.
#[utoipa::path(
    operation_id = "createApiKey",
    tag = "api-keys",
    request_body = CreateApiKeyRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = idempotency::SHOWN_ONCE_RETRY)),
    responses(
        (status = 201, description = "Created; copy `secret` now.", body = CreatedApiKeyResponse),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = Unprocessable),
        (status = 503, response = ServiceUnavailable),
    )
)]
#[post("")]
pub async fn create_api_key(
    req: HttpRequest,
    auth: Auth,
    team: Team,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    permitted(&auth.0, Resource::Integrations, Action::Create)?;
    let body: CreateApiKeyRequest = json_body(&req, &body)?;
    let created = team
        .create_api_key(auth.0, body.name, body.role.into(), body.expires_at)
        .await?;
    Ok(shown_once(
        HttpResponse::Created()
            .insert_header((
                "Location",
                format!("/api/v1/api-keys/{}", created.record.id),
            ))
            .json(CreatedApiKeyResponse {
                api_key: created.record.into(),
                secret: created.secret,
            }),
    ))
}

/// Every key of the organization, newest first (never the secrets).
#[utoipa::path(
    operation_id = "listApiKeys",
    tag = "api-keys",
    responses(
        (status = 200, description = "Keys.", body = Page<ApiKeyDto>),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 503, response = ServiceUnavailable),
    )
)]
#[get("")]
pub async fn list_api_keys(auth: Auth, team: Team) -> Result<Page<ApiKeyDto>, ApiError> {
    let keys = team.api_keys(auth.0).await?;
    Ok(Page {
        data: keys.into_iter().map(Into::into).collect(),
        next_cursor: None,
        total: None,
    })
}

/// Revoke a key: it stops working at once.
#[utoipa::path(
    operation_id = "revokeApiKey",
    tag = "api-keys",
    params(("id" = Uuid, Path, description = "API key id.")),
    responses(
        (status = 204, description = "Revoked."),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 503, response = ServiceUnavailable),
    )
)]
#[delete("/{id}")]
pub async fn revoke_api_key(
    auth: Auth,
    team: Team,
    path: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    team.revoke_api_key(auth.0, ApiKeyId::from_uuid(path.into_inner()))
        .await?;
    Ok(HttpResponse::NoContent().finish())
}
