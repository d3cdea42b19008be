//! `/api/v1/activities`: calls, emails, meetings, notes and tasks.

use actix_web::{HttpRequest, HttpResponse, delete, get, post, web};
use chrono::{DateTime, Utc};
use nexus_application::SalesUseCases;
use nexus_application::sales::ActivityInput;
use nexus_domain::activity::ActivityType;
use nexus_domain::{Action, ActivityId, Actor, ContactId, DealId, Resource, UserId};
use nexus_ports::sales::ActivityFilter;
use uuid::Uuid;

use crate::auth::{Auth, permitted};
use crate::cursor::{CursorCodec, CursorScope};
use crate::dto::common::Page;
use crate::dto::sales::{ActivityDto, CreateActivityRequest};
use crate::extract::json_body;
use crate::problem::ApiError;
use crate::responses::{
    BadRequest, Forbidden, NotFound, PayloadTooLarge, ServiceUnavailable, Unauthorized,
    Unprocessable, UnsupportedMediaType,
};
use crate::routes::paging::limit_of;

type Sales = web::Data<dyn SalesUseCases>;
type Cursors = web::Data<CursorCodec>;

fn bad_query(detail: String) -> ApiError {
    ApiError::new(
        actix_web::http::StatusCode::BAD_REQUEST,
        "invalid_query",
        detail,
    )
}

/// One page of activities, newest first, with a cursor signed for `list` and `filter`.
pub(crate) async fn page_of(
    sales: &Sales,
    cursors: &CursorCodec,
    actor: Actor,
    filter: ActivityFilter,
    list: &'static str,
    cursor: Option<&str>,
    limit: i64,
) -> Result<Page<ActivityDto>, ApiError> {
    let scope = CursorScope {
        org: actor.org_id,
        list,
        sort: "-occurredAt".into(),
        filters: format!("{filter:?}"),
    };
    let after = cursors
        .decode_time(&scope, cursor)?
        .map(|(t, id)| (t, ActivityId::from_uuid(id)));
    let mut items = sales.activities(actor, filter, after, limit + 1).await?;
    let more = crate::dto::common::take_page(&mut items, limit);
    let next_cursor = if more {
        items
            .last()
            .map(|a| cursors.encode_time(&scope, a.occurred_at, a.id.as_uuid()))
    } else {
        None
    };
    Ok(Page {
        data: items.into_iter().map(Into::into).collect(),
        next_cursor,
        total: None,
    })
}

/// Query of `GET /activities`; `type` may repeat.
#[derive(Debug, utoipa::IntoParams)]
#[into_params(parameter_in = Query, rename_all = "camelCase")]
#[allow(dead_code)]
pub struct ActivityQuery {
    contact_id: Option<Uuid>,
    deal_id: Option<Uuid>,
    /// Repeatable: `type=CALL&type=TASK`.
    #[param(rename = "type")]
    activity_type: Option<Vec<String>>,
    assignee_id: Option<Uuid>,
    /// Only open tasks.
    open: Option<bool>,
    /// Only open tasks past their due time.
    overdue: Option<bool>,
    /// Occurred at or after.
    after: Option<DateTime<Utc>>,
    /// Occurred before.
    before: Option<DateTime<Utc>>,
    #[param(minimum = 1, maximum = 200)]
    limit: Option<i64>,
    cursor: Option<String>,
}

fn parse_query(raw: &str) -> Result<(ActivityFilter, Option<i64>, Option<String>), ApiError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw)
        .map_err(|e| bad_query(format!("invalid query string: {e}")))?;
    let mut f = ActivityFilter::default();
    let (mut limit, mut cursor) = (None, None);
    let uuid = |k: &str, v: &str| {
        v.parse::<Uuid>()
            .map_err(|_| bad_query(format!("{k} is a UUID.")))
    };
    let time = |k: &str, v: &str| {
        DateTime::parse_from_rfc3339(v)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|_| bad_query(format!("{k} is an RFC 3339 time.")))
    };
    let flag = |k: &str, v: &str| {
        v.parse::<bool>()
            .map_err(|_| bad_query(format!("{k} is true or false.")))
    };
    for (k, v) in pairs {
        match k.as_str() {
            "contactId" => f.contact_id = Some(ContactId::from_uuid(uuid(&k, &v)?)),
            "dealId" => f.deal_id = Some(DealId::from_uuid(uuid(&k, &v)?)),
            "assigneeId" => f.assignee_id = Some(UserId::from_uuid(uuid(&k, &v)?)),
            "type" => f.types.push(
                ActivityType::parse(&v).ok_or_else(|| bad_query(format!("unknown type {v}")))?,
            ),
            "open" => f.open = flag(&k, &v)?,
            "overdue" => f.overdue_at = flag(&k, &v)?.then(Utc::now),
            "after" => f.after = Some(time(&k, &v)?),
            "before" => f.before = Some(time(&k, &v)?),
            "limit" => {
                limit = Some(
                    v.parse()
                        .map_err(|_| bad_query("limit is 1 to 200.".into()))?,
                )
            }
            "cursor" => cursor = Some(v),
            other => return Err(bad_query(format!("unknown parameter {other}"))),
        }
    }
    Ok((f, limit, cursor))
}

/// Activities, newest first, with filters.
#[utoipa::path(
    operation_id = "listActivities",
    tag = "activities",
    params(ActivityQuery),
    responses(
        (status = 200, description = "A page of activities.", body = Page<ActivityDto>),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 503, response = ServiceUnavailable),
    )
)]
#[get("")]
pub async fn list_activities(
    req: actix_web::HttpRequest,
    auth: Auth,
    sales: Sales,
    cursors: Cursors,
) -> Result<Page<ActivityDto>, ApiError> {
    let (filter, limit, cursor) = parse_query(req.query_string())?;
    page_of(
        &sales,
        &cursors,
        auth.0,
        filter,
        "activities",
        cursor.as_deref(),
        limit_of(limit)?,
    )
    .await
}

/// Log an activity on a contact and/or a deal of your organization. System types
/// (DEAL_*) are written by the server only: sending one is 422.
#[utoipa::path(
    operation_id = "createActivity",
    tag = "activities",
    request_body = CreateActivityRequest,
    responses(
        (status = 201, description = "Created.", body = ActivityDto),
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
pub async fn create_activity(
    req: HttpRequest,
    auth: Auth,
    sales: Sales,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    permitted(&auth.0, Resource::Deals, Action::Create)?;
    let b: CreateActivityRequest = json_body(&req, &body)?;
    let input = ActivityInput {
        activity_type: b.activity_type,
        subject: b.subject,
        description: b.description,
        metadata: b.metadata,
        contact_id: b.contact_id.map(ContactId::from_uuid),
        deal_id: b.deal_id.map(DealId::from_uuid),
        due_at: b.due_at,
        assignee_id: b.assignee_id.map(UserId::from_uuid),
        occurred_at: b.occurred_at,
    };
    let activity = sales.create_activity(auth.0, input).await?;
    Ok(HttpResponse::Created()
        .insert_header(("Location", format!("/api/v1/activities/{}", activity.id)))
        .json(ActivityDto::from(activity)))
}

/// One activity.
#[utoipa::path(
    operation_id = "getActivity",
    tag = "activities",
    params(("id" = Uuid, Path, description = "Activity id.")),
    responses(
        (status = 200, description = "The activity.", body = ActivityDto),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 503, response = ServiceUnavailable),
    )
)]
#[get("/{id}")]
pub async fn get_activity(
    auth: Auth,
    sales: Sales,
    path: web::Path<Uuid>,
) -> Result<web::Json<ActivityDto>, ApiError> {
    Ok(web::Json(
        sales
            .activity(auth.0, ActivityId::from_uuid(path.into_inner()))
            .await?
            .into(),
    ))
}

/// Mark a task done.
#[utoipa::path(
    operation_id = "completeActivity",
    tag = "activities",
    params(("id" = Uuid, Path, description = "Task id.")),
    responses(
        (status = 200, description = "Completed.", body = ActivityDto),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 503, response = ServiceUnavailable),
    )
)]
#[post("/{id}/complete")]
pub async fn complete_activity(
    auth: Auth,
    sales: Sales,
    path: web::Path<Uuid>,
) -> Result<web::Json<ActivityDto>, ApiError> {
    Ok(web::Json(
        sales
            .complete_activity(auth.0, ActivityId::from_uuid(path.into_inner()), true)
            .await?
            .into(),
    ))
}

/// Reopen a completed task.
#[utoipa::path(
    operation_id = "reopenActivity",
    tag = "activities",
    params(("id" = Uuid, Path, description = "Task id.")),
    responses(
        (status = 200, description = "Reopened.", body = ActivityDto),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 503, response = ServiceUnavailable),
    )
)]
#[post("/{id}/reopen")]
pub async fn reopen_activity(
    auth: Auth,
    sales: Sales,
    path: web::Path<Uuid>,
) -> Result<web::Json<ActivityDto>, ApiError> {
    Ok(web::Json(
        sales
            .complete_activity(auth.0, ActivityId::from_uuid(path.into_inner()), false)
            .await?
            .into(),
    ))
}

/// Delete an activity you logged (system entries stay).
#[utoipa::path(
    operation_id = "deleteActivity",
    tag = "activities",
    params(("id" = Uuid, Path, description = "Activity id.")),
    responses(
        (status = 204, description = "Deleted."),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 503, response = ServiceUnavailable),
    )
)]
#[delete("/{id}")]
pub async fn delete_activity(
    auth: Auth,
    sales: Sales,
    path: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    sales
        .delete_activity(auth.0, ActivityId::from_uuid(path.into_inner()))
        .await?;
    Ok(HttpResponse::NoContent().finish())
}
