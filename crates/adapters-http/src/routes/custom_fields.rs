//! `/api/v1/custom-fields`: the organization's custom field definitions (read by every
//! role, written by OWNER and ADMIN).

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, delete, get, patch, post, web};
use nexus_application::ContactUseCases;
use nexus_application::contacts::{FieldInput, FieldPatch};
use nexus_domain::{Action, CustomFieldId, Resource};
use uuid::Uuid;

use crate::auth::{Auth, permitted};
use crate::concurrency::{etag, if_match};
use crate::cursor::{CursorCodec, CursorScope};
use crate::dto::common::{CountedPage, Page, take_page};
use crate::dto::contacts::{CustomFieldCreateRequest, CustomFieldDto, CustomFieldUpdateRequest};
use crate::extract::json_body;
use crate::problem::ApiError;
use crate::responses::{
    BadRequest, Conflict, Forbidden, NotFound, PayloadTooLarge, PreconditionFailed,
    ServiceUnavailable, Unauthorized, Unprocessable, UnsupportedMediaType,
};
use crate::routes::paging::{CountedPageQuery, limit_of};

type Contacts = web::Data<dyn ContactUseCases>;

/// The definitions in creation order, a page at a time (an organization holds at most
/// 200, so the default page of 50 may not hold them all).
#[utoipa::path(
    operation_id = "listCustomFields",
    tag = "custom-fields",
    params(CountedPageQuery),
    responses(
        (status = 200, description = "Definitions.", body = CountedPage<CustomFieldDto>),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 503, response = ServiceUnavailable),
    )
)]
#[get("")]
pub async fn list_custom_fields(
    auth: Auth,
    contacts: Contacts,
    cursors: web::Data<CursorCodec>,
    query: web::Query<CountedPageQuery>,
) -> Result<Page<CustomFieldDto>, ApiError> {
    let limit = limit_of(query.limit)?;
    let scope = CursorScope {
        org: auth.0.org_id,
        list: "custom-fields",
        sort: "createdAt".into(),
        filters: String::new(),
    };
    let after = cursors.decode_time(&scope, query.cursor.as_deref())?;
    // At most 200 rows, all read anyway to validate contacts: paged here, not in SQL.
    let defs = contacts.custom_fields(auth.0).await?;
    let total = query
        .include_total
        .unwrap_or(false)
        .then(|| i64::try_from(defs.len()).unwrap_or(i64::MAX));
    let mut rest: Vec<_> = defs
        .into_iter()
        .filter(|d| after.is_none_or(|at| (d.created_at, d.id.as_uuid()) > at))
        .collect();
    let more = take_page(&mut rest, limit);
    let next_cursor = rest
        .last()
        .filter(|_| more)
        .map(|d| cursors.encode_time(&scope, d.created_at, d.id.as_uuid()));
    Ok(Page {
        data: rest.into_iter().map(Into::into).collect(),
        next_cursor,
        total,
    })
}

/// Define a custom field (OWNER, ADMIN); at most 200 per organization.
#[utoipa::path(
    operation_id = "createCustomField",
    tag = "custom-fields",
    request_body = CustomFieldCreateRequest,
    responses(
        (status = 201, description = "Created.", body = CustomFieldDto,
         headers(("Location" = String, description = "The definition."), ("ETag" = String, description = "Its version."))),
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
pub async fn create_custom_field(
    req: HttpRequest,
    auth: Auth,
    contacts: Contacts,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    permitted(&auth.0, Resource::Pipelines, Action::Create)?;
    let b: CustomFieldCreateRequest = json_body(&req, &body)?;
    let input = FieldInput {
        key: b.key,
        label: b.label,
        field_type: b.field_type.into(),
        required: b.required,
        options: b.options,
    };
    let def = contacts.create_custom_field(auth.0, input).await?;
    Ok(HttpResponse::Created()
        .insert_header((
            header::LOCATION,
            format!("/api/v1/custom-fields/{}", def.id),
        ))
        .insert_header(etag(def.version))
        .json(CustomFieldDto::from(def)))
}

/// One definition.
#[utoipa::path(
    operation_id = "getCustomField",
    tag = "custom-fields",
    params(("id" = Uuid, Path, description = "Definition id.")),
    responses(
        (status = 200, description = "The definition.", body = CustomFieldDto,
         headers(("ETag" = String, description = "The version, for If-Match."))),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 503, response = ServiceUnavailable),
    )
)]
#[get("/{id}")]
pub async fn get_custom_field(
    auth: Auth,
    contacts: Contacts,
    path: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let def = contacts
        .custom_field(auth.0, CustomFieldId::from_uuid(path.into_inner()))
        .await?;
    Ok(HttpResponse::Ok()
        .insert_header(etag(def.version))
        .json(CustomFieldDto::from(def)))
}

/// Change a definition's label, required flag, options or (while no contact holds a
/// value) its type (OWNER, ADMIN).
#[utoipa::path(
    operation_id = "updateCustomField",
    tag = "custom-fields",
    request_body(content(
        (CustomFieldUpdateRequest = "application/merge-patch+json"),
        (CustomFieldUpdateRequest = "application/json"),
    )),
    params(
        ("id" = Uuid, Path, description = "Definition id."),
        ("If-Match" = Option<String>, Header, nullable = false, description = "The ETag you read; a stale one gives 412."),
    ),
    responses(
        (status = 200, description = "Updated.", body = CustomFieldDto,
         headers(("ETag" = String, description = "The new version."))),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 412, response = PreconditionFailed),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = Unprocessable),
        (status = 503, response = ServiceUnavailable),
    )
)]
#[patch("/{id}")]
pub async fn update_custom_field(
    req: HttpRequest,
    auth: Auth,
    contacts: Contacts,
    path: web::Path<Uuid>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    permitted(&auth.0, Resource::Pipelines, Action::Update)?;
    let expected = if_match(&req)?;
    let id = CustomFieldId::from_uuid(path.into_inner());
    let b: CustomFieldUpdateRequest = json_body(&req, &body)?;
    let patch = FieldPatch {
        label: b.label,
        field_type: b.field_type.map(|t| t.map(Into::into)),
        required: b.required,
        options: b.options,
    };
    let def = contacts
        .update_custom_field(auth.0, id, patch, expected)
        .await?;
    Ok(HttpResponse::Ok()
        .insert_header(etag(def.version))
        .json(CustomFieldDto::from(def)))
}

/// Delete a definition and every contact's value for it (OWNER, ADMIN).
#[utoipa::path(
    operation_id = "deleteCustomField",
    tag = "custom-fields",
    params(
        ("id" = Uuid, Path, description = "Definition id."),
        ("If-Match" = Option<String>, Header, nullable = false, description = "The ETag you read; a stale one gives 412 and deletes nothing."),
    ),
    responses(
        (status = 204, description = "Deleted, with its values."),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 412, response = PreconditionFailed),
        (status = 503, response = ServiceUnavailable),
    )
)]
#[delete("/{id}")]
pub async fn delete_custom_field(
    req: HttpRequest,
    auth: Auth,
    contacts: Contacts,
    path: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    permitted(&auth.0, Resource::Pipelines, Action::Delete)?;
    let expected = if_match(&req)?;
    contacts
        .delete_custom_field(
            auth.0,
            CustomFieldId::from_uuid(path.into_inner()),
            expected,
        )
        .await?;
    Ok(HttpResponse::NoContent().finish())
}
