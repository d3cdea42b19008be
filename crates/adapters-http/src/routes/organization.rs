//! `/api/v1/organizations/current`.

use actix_web::{HttpRequest, HttpResponse, get, patch, web};
use nexus_application::TeamUseCases;
use nexus_application::team::OrganizationUpdate;

use nexus_domain::{Action, Resource};

use crate::auth::{Auth, permitted};
use crate::concurrency::{etag, if_match};
use crate::dto::team::{OrganizationDto, UpdateOrganizationRequest};
use crate::extract::json_body;
use crate::problem::ApiError;
use crate::responses::{
    BadRequest, Forbidden, NotFound, PayloadTooLarge, PreconditionFailed, ServiceUnavailable,
    Unauthorized, Unprocessable, UnsupportedMediaType,
};

/// The organization the caller acts in.
#[utoipa::path(
    operation_id = "getCurrentOrganization",
    tag = "organizations",
    responses(
        (status = 200, description = "The organization.", body = OrganizationDto,
         headers(("ETag" = String, description = "The version, for If-Match."))),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 503, response = ServiceUnavailable),
    )
)]
#[get("/current")]
pub async fn get_current(
    auth: Auth,
    team: web::Data<dyn TeamUseCases>,
) -> Result<HttpResponse, ApiError> {
    let org = team.organization(auth.0).await?;
    Ok(HttpResponse::Ok()
        .insert_header(etag(org.version))
        .json(OrganizationDto::from(org)))
}

/// Update name, default currency or settings (OWNER, ADMIN).
#[utoipa::path(
    operation_id = "updateCurrentOrganization",
    tag = "organizations",
    request_body = UpdateOrganizationRequest,
    params(("If-Match" = Option<String>, Header, nullable = false, description = "The ETag you read; a stale one gives 412.")),
    responses(
        (status = 200, description = "Updated.", body = OrganizationDto,
         headers(("ETag" = String, description = "The new version."))),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 412, response = PreconditionFailed),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = Unprocessable),
        (status = 503, response = ServiceUnavailable),
    )
)]
#[patch("/current")]
pub async fn update_current(
    req: HttpRequest,
    auth: Auth,
    team: web::Data<dyn TeamUseCases>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    permitted(&auth.0, Resource::OrganizationSettings, Action::Update)?;
    let expected = if_match(&req)?;
    let body: UpdateOrganizationRequest = json_body(&req, &body)?;
    let update = OrganizationUpdate {
        name: body.name,
        default_currency: body.default_currency,
        settings: body.settings,
    };
    let org = team.update_organization(auth.0, update, expected).await?;
    Ok(HttpResponse::Ok()
        .insert_header(etag(org.version))
        .json(OrganizationDto::from(org)))
}
