//! `GET /api/v1/contacts/deleted`: the organization's deleted contacts not yet purged, so
//! that a restore can be found without having kept the id.

use actix_web::{get, web};
use nexus_application::ContactUseCases;
use nexus_domain::ContactId;

use crate::auth::Auth;
use crate::cursor::{CursorCodec, CursorScope};
use crate::dto::common::Page;
use crate::dto::contacts::DeletedContactDto;
use crate::problem::ApiError;
use crate::responses::{BadRequest, Forbidden, ServiceUnavailable, Unauthorized};
use crate::routes::paging::{PageQuery, limit_of};

/// Deleted contacts, most recently deleted first, a page at a time: those a restore can
/// still bring back, and those kept past the 30 days because deals still name them.
#[utoipa::path(
    operation_id = "listDeletedContacts",
    tag = "contacts",
    params(PageQuery),
    responses(
        (status = 200, description = "A page of deleted contacts.", body = Page<DeletedContactDto>),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 503, response = ServiceUnavailable),
    )
)]
#[get("/deleted")]
pub async fn list_deleted_contacts(
    auth: Auth,
    contacts: web::Data<dyn ContactUseCases>,
    cursors: web::Data<CursorCodec>,
    query: web::Query<PageQuery>,
) -> Result<Page<DeletedContactDto>, ApiError> {
    let limit = u32::try_from(limit_of(query.limit)?).unwrap_or(50);
    let scope = CursorScope {
        org: auth.0.org_id,
        list: "contacts_deleted",
        sort: "-deletedAt".into(),
        filters: String::new(),
    };
    let after = cursors
        .decode_time(&scope, query.cursor.as_deref())?
        .map(|(at, id)| (at, ContactId::from_uuid(id)));
    let page = contacts.deleted(auth.0, after, limit).await?;
    let data: Vec<DeletedContactDto> = page
        .contacts
        .into_iter()
        .filter_map(DeletedContactDto::of)
        .collect();
    let next_cursor = data
        .last()
        .filter(|_| page.more)
        .map(|last| cursors.encode_time(&scope, last.deleted_at, last.contact.id));
    Ok(Page {
        data,
        next_cursor,
        total: None,
    })
}
