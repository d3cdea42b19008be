//! `/api/v1/tags`: the tags in use, renamed or removed across every contact at once.

use actix_web::{HttpRequest, HttpResponse, delete, get, patch, web};
use nexus_application::ContactUseCases;
use nexus_domain::{Action, Resource};

use crate::auth::{Auth, permitted};
use crate::cursor::{CursorCodec, CursorScope};
use crate::dto::common::{CountedPage, Page};
use crate::dto::contacts::{RenameTagRequest, TagDto, TagRenamed};
use crate::extract::json_body;
use crate::problem::ApiError;
use crate::responses::{
    BadRequest, Forbidden, NotFound, PayloadTooLarge, ServiceUnavailable, Unauthorized,
    Unprocessable, UnsupportedMediaType,
};
use crate::routes::paging::{CountedPageQuery, limit_of};

type Contacts = web::Data<dyn ContactUseCases>;

/// Tags carried by live contacts, with counts, most used first (ties by name), a page at
/// a time. Counts are taken afresh for each page: a tag whose count changes between two
/// pages may move across the cursor.
#[utoipa::path(
    operation_id = "listTags",
    tag = "tags",
    params(CountedPageQuery),
    responses(
        (status = 200, description = "Tags.", body = CountedPage<TagDto>),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 503, response = ServiceUnavailable),
    )
)]
#[get("")]
pub async fn list_tags(
    auth: Auth,
    contacts: Contacts,
    cursors: web::Data<CursorCodec>,
    query: web::Query<CountedPageQuery>,
) -> Result<Page<TagDto>, ApiError> {
    let limit = u32::try_from(limit_of(query.limit)?).unwrap_or(50);
    let scope = CursorScope {
        org: auth.0.org_id,
        list: "tags",
        sort: "-count,name".into(),
        filters: String::new(),
    };
    let after = query
        .cursor
        .as_deref()
        .map(|raw| cursors.decode_count_name(&scope, raw))
        .transpose()?;
    let page = contacts
        .tags(auth.0, after, limit, query.include_total.unwrap_or(false))
        .await?;
    let next_cursor = page
        .tags
        .last()
        .filter(|_| page.more)
        .map(|(name, count)| cursors.encode_count_name(&scope, *count, name));
    Ok(Page {
        data: page
            .tags
            .into_iter()
            .map(|(name, count)| TagDto { name, count })
            .collect(),
        next_cursor,
        total: page.total,
    })
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
    req: HttpRequest,
    auth: Auth,
    contacts: Contacts,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<web::Json<TagRenamed>, ApiError> {
    permitted(&auth.0, Resource::Contacts, Action::Update)?;
    let to = json_body::<RenameTagRequest>(&req, &body)?.name;
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
