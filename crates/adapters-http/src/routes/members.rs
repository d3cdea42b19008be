//! `/api/v1/members` and `/api/v1/invitations`.

use actix_web::{HttpRequest, HttpResponse, delete, get, patch, post, web};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use nexus_application::TeamUseCases;
use nexus_application::team::AcceptCommand;
use nexus_domain::{Action, InvitationId, Resource, UserId};
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

use crate::HttpSettings;
use crate::auth::{Auth, client_meta, permitted};
use crate::dto::auth::TokenResponse;
use crate::dto::common::Page;
use crate::dto::team::{
    AcceptInvitationRequest, CreateInvitationRequest, InvitationDto, MemberDto, UpdateMemberRequest,
};
use crate::extract::json_body;
use crate::problem::ApiError;
use crate::responses::{
    BadRequest, Conflict, Forbidden, NotFound, PayloadTooLarge, ServiceUnavailable, Unauthorized,
    Unprocessable, UnsupportedMediaType,
};
use crate::session_cookies::{grant, new_csrf_token};

type Team = web::Data<dyn TeamUseCases>;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// 1–200, default 50.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    /// `nextCursor` of the previous page.
    pub cursor: Option<String>,
}

fn decode_cursor(raw: &str) -> Result<(DateTime<Utc>, UserId), ApiError> {
    let invalid = || {
        ApiError::new(
            actix_web::http::StatusCode::BAD_REQUEST,
            "invalid_cursor",
            "The cursor is invalid.",
        )
    };
    let text = String::from_utf8(URL_SAFE_NO_PAD.decode(raw).map_err(|_| invalid())?)
        .map_err(|_| invalid())?;
    let (at, id) = text.split_once('|').ok_or_else(invalid)?;
    let at = DateTime::parse_from_rfc3339(at)
        .map_err(|_| invalid())?
        .with_timezone(&Utc);
    Ok((at, id.parse().map_err(|_| invalid())?))
}

fn encode_cursor(at: DateTime<Utc>, id: UserId) -> String {
    URL_SAFE_NO_PAD.encode(format!(
        "{}|{id}",
        at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
    ))
}

/// Members of the organization, oldest first.
#[utoipa::path(
    operation_id = "listMembers",
    tag = "members",
    params(ListQuery),
    responses(
        (status = 200, description = "A page of members.", body = Page<MemberDto>),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 503, response = ServiceUnavailable),
    )
)]
#[get("")]
pub async fn list_members(
    auth: Auth,
    team: Team,
    query: web::Query<ListQuery>,
) -> Result<Page<MemberDto>, ApiError> {
    let limit = query.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::new(
            actix_web::http::StatusCode::BAD_REQUEST,
            "invalid_query",
            "limit is 1 to 200.",
        ));
    }
    let after = query.cursor.as_deref().map(decode_cursor).transpose()?;
    let mut members = team.members(auth.0, after, limit + 1).await?;
    let more = crate::dto::common::take_page(&mut members, limit);
    let next_cursor = more
        .then(|| {
            members
                .last()
                .map(|m| encode_cursor(m.joined_at, m.user_id))
        })
        .flatten();
    Ok(Page {
        data: members.into_iter().map(Into::into).collect(),
        next_cursor,
        total: None,
    })
}

/// Change a member's role (OWNER, ADMIN; only an OWNER touches OWNERs; not your own).
#[utoipa::path(
    operation_id = "updateMember",
    tag = "members",
    params(("userId" = Uuid, Path, description = "The member's user id.")),
    request_body = UpdateMemberRequest,
    responses(
        (status = 200, description = "Updated.", body = MemberDto),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 503, response = ServiceUnavailable),
    )
)]
#[patch("/{userId}")]
pub async fn update_member(
    req: HttpRequest,
    auth: Auth,
    team: Team,
    path: web::Path<Uuid>,
    body: web::Bytes,
) -> Result<web::Json<MemberDto>, ApiError> {
    permitted(&auth.0, Resource::Members, Action::Update)?;
    let body: UpdateMemberRequest = json_body(&req, &body)?;
    let member = team
        .change_role(
            auth.0,
            UserId::from_uuid(path.into_inner()),
            body.role.into(),
        )
        .await?;
    Ok(web::Json(member.into()))
}

/// Remove a member (OWNER), or leave (anyone). Their sessions in this organization end.
#[utoipa::path(
    operation_id = "removeMember",
    tag = "members",
    params(("userId" = Uuid, Path, description = "The member's user id.")),
    responses(
        (status = 204, description = "Removed."),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 503, response = ServiceUnavailable),
    )
)]
#[delete("/{userId}")]
pub async fn remove_member(
    auth: Auth,
    team: Team,
    path: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    team.remove_member(auth.0, UserId::from_uuid(path.into_inner()))
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Invite someone by email (OWNER, ADMIN; never above your own role). The token is
/// emailed, valid 7 days, single use.
#[utoipa::path(
    operation_id = "createInvitation",
    tag = "members",
    request_body = CreateInvitationRequest,
    responses(
        (status = 201, description = "Invited.", body = InvitationDto),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 409, response = Conflict),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = Unprocessable),
        (status = 503, response = ServiceUnavailable),
    )
)]
#[post("")]
pub async fn create_invitation(
    req: HttpRequest,
    auth: Auth,
    team: Team,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    permitted(&auth.0, Resource::Members, Action::Create)?;
    let body: CreateInvitationRequest = json_body(&req, &body)?;
    let invitation = team.invite(auth.0, body.email, body.role.into()).await?;
    Ok(HttpResponse::Created()
        .insert_header(("Location", format!("/api/v1/invitations/{}", invitation.id)))
        .json(InvitationDto::from(invitation)))
}

/// Pending invitations, newest first.
#[utoipa::path(
    operation_id = "listInvitations",
    tag = "members",
    responses(
        (status = 200, description = "Pending invitations.", body = Page<InvitationDto>),
        (status = 401, response = Unauthorized),
        (status = 503, response = ServiceUnavailable),
    )
)]
#[get("")]
pub async fn list_invitations(auth: Auth, team: Team) -> Result<Page<InvitationDto>, ApiError> {
    let items = team.invitations(auth.0).await?;
    Ok(Page {
        data: items.into_iter().map(Into::into).collect(),
        next_cursor: None,
        total: None,
    })
}

/// Revoke a pending invitation (OWNER, ADMIN).
#[utoipa::path(
    operation_id = "revokeInvitation",
    tag = "members",
    params(("id" = Uuid, Path, description = "Invitation id.")),
    responses(
        (status = 204, description = "Revoked."),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 503, response = ServiceUnavailable),
    )
)]
#[delete("/{id}")]
pub async fn revoke_invitation(
    auth: Auth,
    team: Team,
    path: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    team.revoke_invitation(auth.0, InvitationId::from_uuid(path.into_inner()))
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Accept an invitation: an existing account proves itself with its password; a new
/// one is created with `name` and `password`. Returns a session in the organization.
#[utoipa::path(
    operation_id = "acceptInvitation",
    tag = "members",
    security(()),
    params(("token" = String, Path, description = "The token from the invitation email.")),
    request_body = AcceptInvitationRequest,
    responses(
        (status = 200, description = "Joined; a session in the organization.", body = TokenResponse),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = Unprocessable),
        (status = 503, response = ServiceUnavailable),
    )
)]
#[post("/{token}/accept")]
pub async fn accept_invitation(
    req: HttpRequest,
    team: Team,
    settings: web::Data<HttpSettings>,
    path: web::Path<String>,
    body: web::Json<AcceptInvitationRequest>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let cmd = AcceptCommand {
        token: path.into_inner(),
        password: body.password,
        name: body.name,
    };
    let tokens = team.accept_invitation(cmd, client_meta(&req)).await?;
    Ok(grant(
        HttpResponse::Ok(),
        tokens,
        &settings,
        new_csrf_token(),
    ))
}
