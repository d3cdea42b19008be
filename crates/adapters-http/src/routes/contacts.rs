//! `/api/v1/contacts`: CRUD with merge-patch updates and ETags, soft delete and restore,
//! search and filters over keyset pages, the timeline, and batches.

use std::borrow::Cow;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, ContentType};
use actix_web::{HttpRequest, HttpResponse, delete, get, patch, post, web};
use chrono::{DateTime, Utc};
use nexus_application::contacts::{BatchOp, BatchOutcome, ListContacts};
use nexus_application::{AppError, ContactUseCases, SalesUseCases};
use nexus_domain::contact::{LifecycleStage, NUL_REFUSED};
use nexus_domain::{Action, ContactId, Resource, UserId};
use nexus_ports::contacts::{ContactFilter, Sort, TagMode};
use nexus_ports::sales::ActivityFilter;
use serde_json::{Map, Value};
use utoipa::IntoParams;
use uuid::Uuid;

use crate::auth::{Auth, permitted};
use crate::concurrency::{etag, if_match};
use crate::cursor::{CursorCodec, CursorScope, invalid_cursor};
use crate::dto::common::{CountedPage, Page};
use crate::dto::contacts::{
    BatchItem, BatchItemResult, BatchRequest, BatchResponse, ContactCreateRequest, ContactDto,
    ContactPatchRequest, LifecycleStageDto,
};
use crate::dto::sales::ActivityDto;
use crate::extract::json_body;
use crate::problem::{ApiError, FieldError};
use crate::responses::{
    BadRequest, Conflict, Forbidden, NotFound, PayloadTooLarge, PreconditionFailed,
    ServiceUnavailable, Unauthorized, Unprocessable, UnsupportedMediaType,
};
use crate::routes::paging::{PageQuery, limit_of};

type Contacts = web::Data<dyn ContactUseCases>;
type Cursors = web::Data<CursorCodec>;

const DEFAULT_LIMIT: u32 = 50;
const MAX_LIMIT: u32 = 200;

/// Use-case errors of contact writes: a body field outside the contract is a malformed
/// request (400), every other invalid field a 422.
pub(crate) fn write_error(err: AppError) -> ApiError {
    if let AppError::Validation(issues) = &err {
        let unknown: Vec<FieldError> = issues
            .iter()
            .filter(|i| i.code == "unknown_field" && !i.field.contains('.'))
            .map(|i| FieldError {
                field: i.field.clone(),
                code: i.code.clone(),
                message: i.message.clone(),
            })
            .collect();
        if !unknown.is_empty() {
            let mut api = ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_body",
                "The body has fields a contact does not have.",
            );
            api.errors = unknown;
            return api;
        }
    }
    err.into()
}

fn contact_response(status: StatusCode, contact: nexus_domain::contact::Contact) -> HttpResponse {
    let mut res = HttpResponse::build(status);
    res.insert_header(etag(contact.version));
    if status == StatusCode::CREATED {
        res.insert_header((header::LOCATION, format!("/api/v1/contacts/{}", contact.id)));
    }
    res.json(ContactDto::from(contact))
}

/// Create a contact (OWNER, ADMIN, MEMBER).
#[utoipa::path(
    operation_id = "createContact",
    tag = "contacts",
    request_body = ContactCreateRequest,
    responses(
        (status = 201, description = "Created.", body = ContactDto,
         headers(("Location" = String, description = "The new contact."), ("ETag" = String, description = "Its version."))),
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
pub async fn create_contact(
    req: HttpRequest,
    auth: Auth,
    contacts: Contacts,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    permitted(&auth.0, Resource::Contacts, Action::Create)?;
    let body: Map<String, Value> = json_body(&req, &body)?;
    let contact = contacts.create(auth.0, body).await.map_err(write_error)?;
    Ok(contact_response(StatusCode::CREATED, contact))
}

/// One contact.
#[utoipa::path(
    operation_id = "getContact",
    tag = "contacts",
    params(("id" = Uuid, Path, description = "Contact id.")),
    responses(
        (status = 200, description = "The contact.", body = ContactDto,
         headers(("ETag" = String, description = "The version, for If-Match."))),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 503, response = ServiceUnavailable),
    )
)]
#[get("/{id}")]
pub async fn get_contact(
    auth: Auth,
    contacts: Contacts,
    path: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let contact = contacts
        .get(auth.0, ContactId::from_uuid(path.into_inner()))
        .await?;
    Ok(contact_response(StatusCode::OK, contact))
}

/// Update a contact with a JSON Merge Patch (`application/merge-patch+json` or
/// `application/json`).
#[utoipa::path(
    operation_id = "updateContact",
    tag = "contacts",
    request_body(content(
        (ContactPatchRequest = "application/merge-patch+json"),
        (ContactPatchRequest = "application/json"),
    )),
    params(
        ("id" = Uuid, Path, description = "Contact id."),
        ("If-Match" = Option<String>, Header, nullable = false, description = "The ETag you read; a stale one gives 412 and changes nothing."),
    ),
    responses(
        (status = 200, description = "Updated (or unchanged when the patch changes nothing).", body = ContactDto,
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
pub async fn update_contact(
    req: HttpRequest,
    auth: Auth,
    contacts: Contacts,
    path: web::Path<Uuid>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    permitted(&auth.0, Resource::Contacts, Action::Update)?;
    let expected = if_match(&req)?;
    let patch = merge_patch_body(&req, &body)?;
    let contact = contacts
        .update(
            auth.0,
            ContactId::from_uuid(path.into_inner()),
            patch,
            expected,
        )
        .await
        .map_err(write_error)?;
    Ok(contact_response(StatusCode::OK, contact))
}

/// The body of a PATCH: a JSON object sent as merge-patch or plain JSON.
fn merge_patch_body(req: &HttpRequest, body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if essence != "application/merge-patch+json" && essence != "application/json" {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "Send the patch as application/merge-patch+json (or application/json).",
        ));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_body",
            "A merge patch of a contact is a JSON object.",
        )),
        Err(e) => Err(ApiError::malformed(format!(
            "The body is not valid JSON: {e}."
        ))),
    }
}

/// Delete a contact (soft: restorable for 30 days, then purged).
#[utoipa::path(
    operation_id = "deleteContact",
    tag = "contacts",
    params(
        ("id" = Uuid, Path, description = "Contact id."),
        ("If-Match" = Option<String>, Header, nullable = false, description = "The ETag you read; a stale one gives 412 and deletes nothing."),
    ),
    responses(
        (status = 204, description = "Deleted."),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 412, response = PreconditionFailed),
        (status = 503, response = ServiceUnavailable),
    )
)]
#[delete("/{id}")]
pub async fn delete_contact(
    req: HttpRequest,
    auth: Auth,
    contacts: Contacts,
    path: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    permitted(&auth.0, Resource::Contacts, Action::Delete)?;
    let expected = if_match(&req)?;
    contacts
        .delete(auth.0, ContactId::from_uuid(path.into_inner()), expected)
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Bring back a contact deleted within the last 30 days.
#[utoipa::path(
    operation_id = "restoreContact",
    tag = "contacts",
    params(
        ("id" = Uuid, Path, description = "Contact id."),
        ("If-Match" = Option<String>, Header, nullable = false, description = "The deleted contact's `version` as the trash (`GET /contacts/deleted`) shows it, as an ETag; a stale one gives 412 and restores nothing."),
    ),
    responses(
        (status = 200, description = "Restored.", body = ContactDto,
         headers(("ETag" = String, description = "The new version."))),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 412, response = PreconditionFailed),
        (status = 503, response = ServiceUnavailable),
    )
)]
#[post("/{id}/restore")]
pub async fn restore_contact(
    req: HttpRequest,
    auth: Auth,
    contacts: Contacts,
    path: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    permitted(&auth.0, Resource::Contacts, Action::Update)?;
    let expected = if_match(&req)?;
    let contact = contacts
        .restore(auth.0, ContactId::from_uuid(path.into_inner()), expected)
        .await?;
    Ok(contact_response(StatusCode::OK, contact))
}

/// The filters and sort of `listContacts` and `exportContacts` (documentation; parsed by
/// [`parse_list`], which also reads `customFields.<key>`).
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query, rename_all = "camelCase")]
#[allow(dead_code)]
pub struct ContactFilterParams {
    /// Case-insensitive substring of first name, last name, full name, email, company, or
    /// phone as typed or by its digits whatever the punctuation (`20-7946-0958` finds
    /// "+44 20 7946 0958"). At most 300 characters.
    #[param(max_length = 300)]
    q: Option<String>,
    /// Repeatable: contacts carrying any of these tags (all of them with `tagMode=all`).
    tag: Option<Vec<String>>,
    /// `any` (default) or `all`.
    #[param(pattern = "^(any|all)$")]
    tag_mode: Option<String>,
    lifecycle_stage: Option<LifecycleStageDto>,
    owner_id: Option<Uuid>,
    /// Created at or after (RFC 3339).
    created_after: Option<DateTime<Utc>>,
    /// Created strictly before (RFC 3339).
    created_before: Option<DateTime<Utc>>,
    /// `createdAt`, `updatedAt`, `lastName` or `leadScore`; `-` prefix for descending.
    /// Default `-createdAt`. Ties are broken by id.
    #[param(pattern = "^-?(createdAt|updatedAt|lastName|leadScore)$")]
    sort: Option<String>,
    /// Equality on custom fields, one `customFields[<key>]=value` per field, all of which
    /// must hold (`customFields.<key>=value` is read too). A multiselect field matches
    /// when the value is among those chosen.
    #[param(style = DeepObject, explode)]
    custom_fields: Option<std::collections::BTreeMap<String, String>>,
}

/// The paging parameters of `listContacts`, which an export does not take (documentation;
/// parsed by [`parse_list`]).
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query, rename_all = "camelCase")]
#[allow(dead_code)]
pub struct ContactPageParams {
    /// 1–200, default 50.
    #[param(minimum = 1, maximum = 200)]
    limit: Option<u32>,
    /// `nextCursor` of the previous page, with the same filters and sort.
    cursor: Option<String>,
    /// Add the exact number of matches as `total` (costs a count).
    include_total: Option<bool>,
}

/// A parsed list request.
struct ListRequest {
    request: ListContacts,
    cursor: Option<String>,
    /// Canonical filters, for the cursor scope.
    filters: String,
}

fn bad_query(errors: Vec<FieldError>) -> ApiError {
    let mut err = ApiError::new(
        StatusCode::BAD_REQUEST,
        "invalid_query",
        "Some query parameters are invalid.",
    );
    err.errors = errors;
    err
}

/// An optional sign and digits only.
fn is_whole_number(value: &str) -> bool {
    let digits = value.strip_prefix(['-', '+']).unwrap_or(value);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

fn query_issue(field: &str, code: &str, message: &str) -> FieldError {
    FieldError {
        field: field.to_owned(),
        code: code.to_owned(),
        message: message.to_owned(),
    }
}

/// The list request and cursor of a query string (for routes sharing the list filters).
///
/// # Errors
/// 400 `invalid_query`.
pub(crate) fn parse_list_request(query: &str) -> Result<(ListContacts, Option<String>), ApiError> {
    parse_list(query).map(|r| (r.request, r.cursor))
}

/// List errors: filters the use case finds invalid are a bad query (400).
pub(crate) fn list_error(err: AppError) -> ApiError {
    match err {
        AppError::Validation(issues) => bad_query(
            issues
                .into_iter()
                .map(|i| FieldError {
                    field: i.field,
                    code: i.code,
                    message: i.message,
                })
                .collect(),
        ),
        other => other.into(),
    }
}

/// A list's paging parameters: not filters (a cursor's scope leaves them out), and not
/// taken by an export.
pub(crate) const PAGING: [&str; 3] = ["cursor", "limit", "includeTotal"];

/// The custom field a list parameter filters on: `customFields[<key>]` (OpenAPI's
/// `deepObject`, what generated clients send) or `customFields.<key>`.
fn custom_field_filter(name: &str) -> Option<&str> {
    name.strip_prefix("customFields.")
        .or_else(|| name.strip_prefix("customFields[")?.strip_suffix(']'))
        .filter(|field| !field.is_empty())
}

/// Parameters a list takes once (`tag` and custom field filters repeat).
const SINGLE_VALUED: [&str; 10] = [
    "q",
    "tagMode",
    "lifecycleStage",
    "ownerId",
    "createdAfter",
    "createdBefore",
    "sort",
    "limit",
    "cursor",
    "includeTotal",
];

/// The longest `q`: longer than any one field a contact can hold (an email has 254).
const MAX_Q_CHARS: usize = 300;

fn parse_list(query: &str) -> Result<ListRequest, ApiError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query)
        .map_err(|e| bad_query(vec![query_issue("", "invalid_format", &e.to_string())]))?;
    let mut errors = Vec::new();
    let mut filter = ContactFilter::default();
    let mut custom_fields = Vec::new();
    let mut sort = Sort::DEFAULT;
    let mut limit = DEFAULT_LIMIT;
    let mut cursor = None;
    let mut include_total = false;
    let mut canonical: Vec<(Cow<'_, str>, &str)> = Vec::new();
    let time = |v: &str, errors: &mut Vec<FieldError>, name: &str| {
        DateTime::parse_from_rfc3339(v)
            .or_else(|e| plus_decoded_as_space(v).ok_or(e))
            .map(|t| t.with_timezone(&Utc))
            .map_err(|_| {
                errors.push(query_issue(
                    name,
                    "invalid_format",
                    "expected an RFC 3339 timestamp",
                ))
            })
            .ok()
    };
    let mut seen: Vec<&str> = Vec::new();
    for (key, value) in &pairs {
        if value.contains('\0') {
            errors.push(query_issue(key, "invalid_format", NUL_REFUSED));
            continue;
        }
        // The last of two values would win silently, and both would sign the cursor's
        // scope: a cursor of `q=a&q=b` would then pass for `q=b&q=a`.
        if SINGLE_VALUED.contains(&key.as_str()) {
            if seen.contains(&key.as_str()) {
                errors.push(query_issue(key, "repeated", "give this parameter once"));
                continue;
            }
            seen.push(key);
        }
        match key.as_str() {
            "q" if value.chars().count() > MAX_Q_CHARS => {
                errors.push(query_issue(key, "too_long", "at most 300 characters"))
            }
            "q" => filter.q = Some(value.clone()),
            "tag" => filter.tags.push(value.clone()),
            "tagMode" => match value.as_str() {
                "any" => filter.tag_mode = TagMode::Any,
                "all" => filter.tag_mode = TagMode::All,
                _ => errors.push(query_issue(key, "invalid_option", "expected any or all")),
            },
            "lifecycleStage" => match LifecycleStage::parse(value) {
                Some(stage) => filter.lifecycle_stage = Some(stage),
                None => errors.push(query_issue(key, "invalid_option", "not a lifecycle stage")),
            },
            "ownerId" => match value.parse::<UserId>() {
                Ok(id) => filter.owner_id = Some(id),
                Err(_) => errors.push(query_issue(
                    key,
                    "invalid_format",
                    "expected a user id (UUID)",
                )),
            },
            "createdAfter" => filter.created_after = time(value, &mut errors, key),
            "createdBefore" => filter.created_before = time(value, &mut errors, key),
            "sort" => match Sort::parse(value) {
                Some(s) => sort = s,
                None => errors.push(query_issue(
                    key,
                    "invalid_option",
                    "expected [-]createdAt, updatedAt, lastName or leadScore",
                )),
            },
            "limit" => match value.parse::<i64>() {
                Ok(n) if (1..=i64::from(MAX_LIMIT)).contains(&n) => {
                    limit = u32::try_from(n).unwrap_or(MAX_LIMIT);
                }
                // A whole number too large for i64 is out of range too, not of another type.
                _ => errors.push(query_issue(
                    key,
                    if is_whole_number(value) {
                        "out_of_range"
                    } else {
                        "invalid_type"
                    },
                    "expected an integer from 1 to 200",
                )),
            },
            "cursor" => cursor = Some(value.clone()),
            "includeTotal" => match value.as_str() {
                "true" => include_total = true,
                "false" => include_total = false,
                _ => errors.push(query_issue(key, "invalid_type", "expected true or false")),
            },
            other => match custom_field_filter(other) {
                // One value per field, whichever spelling gives it: a second would
                // otherwise replace the first.
                Some(field) if custom_fields.iter().any(|(f, _)| f == field) => {
                    errors.push(query_issue(key, "repeated", "give each field once"));
                    continue;
                }
                Some(field) => {
                    custom_fields.push((field.to_owned(), value.clone()));
                    // Both spellings of one filter share its cursors.
                    canonical.push((Cow::Owned(format!("customFields.{field}")), value));
                    continue;
                }
                None => errors.push(query_issue(
                    key,
                    "unknown_parameter",
                    "not a parameter of this list",
                )),
            },
        }
        if key != "sort" && !PAGING.contains(&key.as_str()) {
            canonical.push((Cow::Borrowed(key.as_str()), value.as_str()));
        }
    }
    if let (Some(after), Some(before)) = (filter.created_after, filter.created_before)
        && after > before
    {
        errors.push(query_issue(
            "createdBefore",
            "out_of_range",
            "must not be earlier than createdAfter",
        ));
    }
    if !errors.is_empty() {
        return Err(bad_query(errors));
    }
    canonical.sort_unstable();
    // Encoded again so that no two filter sets share a scope (`q=a%26tag%3Db` is not
    // `q=a&tag=b`); serializing pairs of strings cannot fail.
    let filters = serde_urlencoded::to_string(&canonical).unwrap_or_default();
    Ok(ListRequest {
        request: ListContacts {
            filter,
            custom_fields,
            sort,
            limit,
            after: None,
            include_total,
        },
        cursor,
        filters,
    })
}

/// List contacts: search, filter, sort, keyset pages.
///
/// `customFields[<key>]=<value>` (or `customFields.<key>=<value>`) filters on a custom
/// field (equality; for `multiselect`, the value is among those chosen); repeat it for
/// several. No count is made unless `includeTotal=true`.
#[utoipa::path(
    operation_id = "listContacts",
    tag = "contacts",
    params(ContactFilterParams, ContactPageParams),
    responses(
        (status = 200, description = "One page.", body = CountedPage<ContactDto>),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 503, response = ServiceUnavailable),
    )
)]
#[get("")]
pub async fn list_contacts(
    req: HttpRequest,
    auth: Auth,
    contacts: Contacts,
    cursors: Cursors,
) -> Result<Page<ContactDto>, ApiError> {
    let ListRequest {
        mut request,
        cursor,
        filters,
    } = parse_list(req.query_string())?;
    let scope = CursorScope {
        org: auth.0.org_id,
        list: "contacts",
        sort: request.sort.as_param(),
        filters,
    };
    if let Some(raw) = &cursor {
        let keyset = cursors.decode(&scope, raw)?;
        if !keyset.fits(request.sort.field) {
            return Err(invalid_cursor());
        }
        request.after = Some(keyset);
    }
    let page = contacts.list(auth.0, request).await.map_err(list_error)?;
    Ok(Page {
        next_cursor: page.next.as_ref().map(|k| cursors.encode(&scope, k)),
        total: page.total,
        data: page.items.into_iter().map(ContactDto::from).collect(),
    })
}

/// A contact's timeline: its activities (calls, emails, meetings, notes, tasks and the
/// deal history entries linked to it), newest first, keyset paginated.
#[utoipa::path(
    operation_id = "getContactTimeline",
    tag = "contacts",
    params(("id" = Uuid, Path, description = "Contact id."), PageQuery),
    responses(
        (status = 200, description = "A page of the timeline.", body = Page<ActivityDto>),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 503, response = ServiceUnavailable),
    )
)]
#[get("/{id}/timeline")]
pub async fn contact_timeline(
    auth: Auth,
    contacts: Contacts,
    sales: web::Data<dyn SalesUseCases>,
    cursors: Cursors,
    path: web::Path<Uuid>,
    query: web::Query<PageQuery>,
) -> Result<Page<ActivityDto>, ApiError> {
    let id = ContactId::from_uuid(path.into_inner());
    let limit = limit_of(query.limit)?;
    contacts.get(auth.0, id).await?;
    let filter = ActivityFilter {
        contact_id: Some(id),
        ..ActivityFilter::default()
    };
    crate::routes::activities::page_of(
        &sales,
        &cursors,
        auth.0,
        filter,
        "contact_timeline",
        query.cursor.as_deref(),
        limit,
    )
    .await
}

/// Up to 100 creates, updates and deletes in one request. Each item is atomic on its own
/// and reported with the status it would have had alone; the batch is not all-or-nothing.
#[utoipa::path(
    operation_id = "batchContacts",
    tag = "contacts",
    request_body = BatchRequest,
    responses(
        (status = 200, description = "Per-item results, in request order.", body = BatchResponse),
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
#[post("/batch")]
pub async fn batch_contacts(
    auth: Auth,
    contacts: Contacts,
    body: Result<web::Json<BatchRequest>, actix_web::Error>,
) -> Result<HttpResponse, actix_web::Error> {
    // The role first: a caller who may not write is told so, not what is wrong with
    // a body it may not send at all.
    nexus_application::contacts::authorize_batch(&auth.0).map_err(ApiError::from)?;
    let ops = body?
        .into_inner()
        .items
        .into_iter()
        .map(|item| match item {
            BatchItem::Create { data } => BatchOp::Create { body: data },
            BatchItem::Update { id, data, if_match } => BatchOp::Update {
                id: ContactId::from_uuid(id),
                patch: data,
                if_match,
            },
            BatchItem::Delete { id, if_match } => BatchOp::Delete {
                id: ContactId::from_uuid(id),
                if_match,
            },
        })
        .collect();
    let outcomes = contacts.batch(auth.0, ops).await.map_err(ApiError::from)?;
    let results = outcomes
        .into_iter()
        .enumerate()
        .map(|(index, outcome)| match outcome {
            Ok(BatchOutcome::Created(c)) => BatchItemResult {
                index,
                status: 201,
                data: Some(c.into()),
                error: None,
            },
            Ok(BatchOutcome::Updated(c)) => BatchItemResult {
                index,
                status: 200,
                data: Some(c.into()),
                error: None,
            },
            Ok(BatchOutcome::Deleted) => BatchItemResult {
                index,
                status: 204,
                data: None,
                error: None,
            },
            Err(e) => {
                let api = write_error(e);
                BatchItemResult {
                    index,
                    status: api.status.as_u16(),
                    data: None,
                    error: serde_json::to_value(api.problem()).ok(),
                }
            }
        })
        .collect();
    Ok(HttpResponse::Ok()
        .insert_header(ContentType::json())
        .json(BatchResponse { results }))
}

/// A timestamp whose offset's `+` came through unencoded, so that form decoding made it a
/// space (`…T09:00:00 02:00`): read as the `+` it was. A space can stand nowhere else in
/// the last six characters of an RFC 3339 timestamp.
fn plus_decoded_as_space(v: &str) -> Option<DateTime<chrono::FixedOffset>> {
    let at = v.len().checked_sub(6)?;
    if v.as_bytes()[at] != b' ' {
        return None;
    }
    DateTime::parse_from_rfc3339(&format!("{}+{}", &v[..at], &v[at + 1..])).ok()
}
