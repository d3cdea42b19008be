//! `/api/v1/tags`: the tags in use, renamed or removed across every contact at once.

use actix_web::{HttpResponse, delete, get, patch, web};
use nexus_application::ContactUseCases;

use crate::auth::Auth;
use crate::dto::common::Page;
use crate::dto::contacts::{RenameTagRequest, TagDto, TagRenamed};
use crate::problem::ApiError;
use crate::responses::{
    BadRequest, Forbidden, NotFound, PayloadTooLarge, ServiceUnavailable, Unauthorized,
    Unprocessable, UnsupportedMediaType,
};

type Contacts = web::Data<dyn ContactUseCases>;

/// Tags carried by live contacts, with counts, most used first.
#[utoipa::path(
    operation_id = "listTags",
    tag = "tags",
    responses(
        (status = 200, description = "Tags.", body = Page<TagDto>),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 503, response = ServiceUnavailable),
    )
)]
#[get("")]
pub async fn list_tags(
    auth: Auth,
    contacts: Contacts,
) -> Result<web::Json<Page<TagDto>>, ApiError> {
    let tags = contacts.tags(auth.0).await?;
    Ok(web::Json(Page {
        data: tags
            .into_iter()
            .map(|(name, count)| TagDto { name, count })
            .collect(),
        next_cursor: None,
        total: None,
    }))
}

/// Rename a tag on every contact; where a contact already has the new name, the two merge.
#[utoipa::path(
    operation_id = "renameTag",
    tag = "tags",
    request_body = RenameTagRequest,
    params(("name" = String, Path, description = "The tag to rename.")),
    responses(
        (status = 200, description = "Renamed.", body = TagRenamed),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = Unprocessable),
        (status = 503, response = ServiceUnavailable),
    )
)]
#[patch("/{name}")]
pub async fn rename_tag(
    auth: Auth,
    contacts: Contacts,
    path: web::Path<String>,
    body: web::Json<RenameTagRequest>,
) -> Result<web::Json<TagRenamed>, ApiError> {
    let to = body.into_inner().name;
    let name = nexus_domain::contact::Tag::parse(&to).map_or(to.clone(), |t| t.as_str().to_owned());
    let contacts_updated = contacts.rename_tag(auth.0, path.into_inner(), to).await?;
    Ok(web::Json(TagRenamed {
        name,
        contacts_updated,
    }))
}

/// Remove a tag from every contact.
#[utoipa::path(
    operation_id = "deleteTag",
    tag = "tags",
    params(("name" = String, Path, description = "The tag to remove.")),
    responses(
        (status = 204, description = "Removed."),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 422, response = Unprocessable),
        (status = 503, response = ServiceUnavailable),
    )
)]
#[delete("/{name}")]
pub async fn delete_tag(
    auth: Auth,
    contacts: Contacts,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    contacts.delete_tag(auth.0, path.into_inner()).await?;
    Ok(HttpResponse::NoContent().finish())
}
