//! `/api/v1/deals`: CRUD, filters, moves and the timeline.

use actix_web::{HttpRequest, HttpResponse, delete, get, patch, post, web};
use chrono::NaiveDate;
use nexus_application::SalesUseCases;
use nexus_application::sales::{DealInput, DealPatch, MoveInput};
use nexus_domain::deal::DealStatus;
use nexus_domain::money::Money as DomainMoney;
use nexus_domain::{Action, ContactId, DealId, PipelineId, Resource, StageId, UserId};
use nexus_ports::sales::{ActivityFilter, DealFilter};
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

use crate::auth::{Auth, permitted};
use crate::concurrency::{etag, if_match};
use crate::cursor::{CursorCodec, CursorScope};
use crate::dto::common::Page;
use crate::dto::sales::{
    ActivityDto, CreateDealRequest, DealDto, MoveDealRequest, UpdateDealRequest,
};
use crate::extract::json_body;
use crate::problem::ApiError;
use crate::responses::{
    BadRequest, Forbidden, NotFound, PayloadTooLarge, PreconditionFailed, ServiceUnavailable,
    Unauthorized, Unprocessable, UnsupportedMediaType,
};
use crate::routes::paging::{PageQuery, limit_of};

type Sales = web::Data<dyn SalesUseCases>;
type Cursors = web::Data<CursorCodec>;

fn bad_query(detail: &str) -> ApiError {
    ApiError::new(
        actix_web::http::StatusCode::BAD_REQUEST,
        "invalid_query",
        detail.to_owned(),
    )
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DealQuery {
    pub pipeline_id: Option<Uuid>,
    pub stage_id: Option<Uuid>,
    /// OPEN, WON or LOST.
    pub status: Option<String>,
    pub contact_id: Option<Uuid>,
    pub owner_id: Option<Uuid>,
    /// Minimum value (decimal string), inclusive.
    pub min_value: Option<String>,
    /// Maximum value (decimal string), inclusive.
    pub max_value: Option<String>,
    /// Expected close date on or after.
    pub close_after: Option<NaiveDate>,
    /// Expected close date before.
    pub close_before: Option<NaiveDate>,
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

fn minor(raw: &Option<String>, name: &str) -> Result<Option<i64>, ApiError> {
    raw.as_deref()
        .map(|v| {
            DomainMoney::parse(v, "USD")
                .map(|m| m.minor())
                .map_err(|_| bad_query(&format!("{name} is a decimal amount.")))
        })
        .transpose()
}

/// Deals, newest first, with filters.
#[utoipa::path(
    operation_id = "listDeals",
    tag = "deals",
    params(DealQuery),
    responses(
        (status = 200, description = "A page of deals.", body = Page<DealDto>),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 503, response = ServiceUnavailable),
    )
)]
#[get("")]
pub async fn list_deals(
    auth: Auth,
    sales: Sales,
    cursors: Cursors,
    query: web::Query<DealQuery>,
) -> Result<Page<DealDto>, ApiError> {
    let q = query.into_inner();
    let limit = limit_of(q.limit)?;
    let status = q
        .status
        .as_deref()
        .map(|s| DealStatus::parse(s).ok_or_else(|| bad_query("status is OPEN, WON or LOST.")))
        .transpose()?;
    let filter = DealFilter {
        pipeline_id: q.pipeline_id.map(PipelineId::from_uuid),
        stage_id: q.stage_id.map(StageId::from_uuid),
        status,
        contact_id: q.contact_id.map(ContactId::from_uuid),
        owner_id: q.owner_id.map(UserId::from_uuid),
        min_value_minor: minor(&q.min_value, "minValue")?,
        max_value_minor: minor(&q.max_value, "maxValue")?,
        close_after: q.close_after,
        close_before: q.close_before,
    };
    let scope = CursorScope {
        org: auth.0.org_id,
        list: "deals",
        sort: "-createdAt".into(),
        filters: format!("{filter:?}"),
    };
    let after = cursors
        .decode_time(&scope, q.cursor.as_deref())?
        .map(|(t, id)| (t, DealId::from_uuid(id)));
    let mut items = sales.deals(auth.0, filter, after, limit + 1).await?;
    let more = crate::dto::common::take_page(&mut items, limit);
    let next_cursor = if more {
        items
            .last()
            .map(|d| cursors.encode_time(&scope, d.created_at, d.deal.id.as_uuid()))
    } else {
        None
    };
    Ok(Page {
        data: items.into_iter().map(Into::into).collect(),
        next_cursor,
        total: None,
    })
}

/// Create a deal for one of your contacts. Records a DEAL_CREATED activity and the
/// `deal.created` event with it.
#[utoipa::path(
    operation_id = "createDeal",
    tag = "deals",
    request_body = CreateDealRequest,
    responses(
        (status = 201, description = "Created.", body = DealDto),
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
pub async fn create_deal(
    req: HttpRequest,
    auth: Auth,
    sales: Sales,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    permitted(&auth.0, Resource::Deals, Action::Create)?;
    let b: CreateDealRequest = json_body(&req, &body)?;
    let input = DealInput {
        title: b.title,
        amount: b.value.amount,
        currency: Some(b.value.currency),
        contact_id: ContactId::from_uuid(b.contact_id),
        pipeline_id: b.pipeline_id.map(PipelineId::from_uuid),
        stage_id: b.stage_id.map(StageId::from_uuid),
        owner_id: b.owner_id.map(UserId::from_uuid),
        expected_close_date: b.expected_close_date,
    };
    let deal = sales.create_deal(auth.0, input).await?;
    Ok(HttpResponse::Created()
        .insert_header(("Location", format!("/api/v1/deals/{}", deal.deal.id)))
        .insert_header(etag(deal.deal.version))
        .json(DealDto::from(deal)))
}

/// One deal.
#[utoipa::path(
    operation_id = "getDeal",
    tag = "deals",
    params(("id" = Uuid, Path, description = "Deal id.")),
    responses(
        (status = 200, description = "The deal.", body = DealDto, headers(("ETag" = String, description = "Version."))),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 503, response = ServiceUnavailable),
    )
)]
#[get("/{id}")]
pub async fn get_deal(
    auth: Auth,
    sales: Sales,
    path: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let deal = sales
        .deal(auth.0, DealId::from_uuid(path.into_inner()))
        .await?;
    Ok(HttpResponse::Ok()
        .insert_header(etag(deal.deal.version))
        .json(DealDto::from(deal)))
}

/// Change a deal's own fields (merge patch). Stage changes go through `move`.
#[utoipa::path(
    operation_id = "updateDeal",
    tag = "deals",
    params(("id" = Uuid, Path, description = "Deal id."), ("If-Match" = Option<String>, Header, nullable = false, description = "The ETag you read.")),
    request_body = UpdateDealRequest,
    responses(
        (status = 200, description = "Updated.", body = DealDto),
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
#[patch("/{id}")]
pub async fn update_deal(
    req: HttpRequest,
    auth: Auth,
    sales: Sales,
    path: web::Path<Uuid>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    permitted(&auth.0, Resource::Deals, Action::Update)?;
    let expected = if_match(&req)?;
    let b: UpdateDealRequest = json_body(&req, &body)?;
    let nulls = [
        ("title", b.title.as_ref().is_some_and(Option::is_none)),
        ("value", b.value.as_ref().is_some_and(Option::is_none)),
        ("contactId", b.contact_id.is_some_and(|c| c.is_none())),
    ]
    .into_iter()
    .filter_map(|(field, null)| null.then_some(field))
    .collect();
    let value = b.value.flatten();
    let patch = DealPatch {
        title: b.title.flatten(),
        amount: value.as_ref().map(|v| v.amount.clone()),
        currency: value.map(|v| v.currency),
        contact_id: b.contact_id.flatten().map(ContactId::from_uuid),
        owner_id: b.owner_id.map(|o| o.map(UserId::from_uuid)),
        expected_close_date: b.expected_close_date,
        nulls,
    };
    let deal = sales
        .update_deal(
            auth.0,
            DealId::from_uuid(path.into_inner()),
            patch,
            expected,
        )
        .await?;
    Ok(HttpResponse::Ok()
        .insert_header(etag(deal.deal.version))
        .json(DealDto::from(deal)))
}

/// Delete a deal. Its activities stay on the contact's timeline.
#[utoipa::path(
    operation_id = "deleteDeal",
    tag = "deals",
    params(("id" = Uuid, Path, description = "Deal id."), ("If-Match" = Option<String>, Header, nullable = false, description = "The ETag you read.")),
    responses(
        (status = 204, description = "Deleted."),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 412, response = PreconditionFailed),
        (status = 503, response = ServiceUnavailable),
    )
)]
#[delete("/{id}")]
pub async fn delete_deal(
    req: HttpRequest,
    auth: Auth,
    sales: Sales,
    path: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    permitted(&auth.0, Resource::Deals, Action::Delete)?;
    let expected = if_match(&req)?;
    sales
        .delete_deal(auth.0, DealId::from_uuid(path.into_inner()), expected)
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Move a deal to a stage of its pipeline: status, probability and closedAt follow the
/// stage; the deal row, its DEAL_STAGE_CHANGED / DEAL_WON / DEAL_LOST activity and the
/// `deal.stage_changed` (+ `deal.won` / `deal.lost`) events are written in one
/// transaction. Moving to the current stage changes nothing.
#[utoipa::path(
    operation_id = "moveDeal",
    tag = "deals",
    params(("id" = Uuid, Path, description = "Deal id."), ("If-Match" = Option<String>, Header, nullable = false, description = "The ETag you read.")),
    request_body = MoveDealRequest,
    responses(
        (status = 200, description = "Moved (or already there).", body = DealDto),
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
#[post("/{id}/move")]
pub async fn move_deal(
    req: HttpRequest,
    auth: Auth,
    sales: Sales,
    path: web::Path<Uuid>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    permitted(&auth.0, Resource::Deals, Action::Update)?;
    let expected = if_match(&req)?;
    let b: MoveDealRequest = json_body(&req, &body)?;
    let input = MoveInput {
        stage_id: StageId::from_uuid(b.stage_id),
        position: b.position,
        lost_reason: b.lost_reason,
        won_reason: b.won_reason,
    };
    let deal = sales
        .move_deal(
            auth.0,
            DealId::from_uuid(path.into_inner()),
            input,
            expected,
        )
        .await?;
    Ok(HttpResponse::Ok()
        .insert_header(etag(deal.deal.version))
        .json(DealDto::from(deal)))
}

/// A deal's history, newest first: its system entries and linked activities.
#[utoipa::path(
    operation_id = "getDealTimeline",
    tag = "deals",
    params(("id" = Uuid, Path, description = "Deal id."), PageQuery),
    responses(
        (status = 200, description = "A page of the timeline.", body = Page<ActivityDto>),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 503, response = ServiceUnavailable),
    )
)]
#[get("/{id}/timeline")]
pub async fn deal_timeline(
    auth: Auth,
    sales: Sales,
    cursors: Cursors,
    path: web::Path<Uuid>,
    query: web::Query<PageQuery>,
) -> Result<Page<ActivityDto>, ApiError> {
    let id = DealId::from_uuid(path.into_inner());
    let limit = limit_of(query.limit)?;
    sales.deal(auth.0, id).await?;
    let filter = ActivityFilter {
        deal_id: Some(id),
        ..ActivityFilter::default()
    };
    crate::routes::activities::page_of(
        &sales,
        &cursors,
        auth.0,
        filter,
        "deal_timeline",
        query.cursor.as_deref(),
        limit,
    )
    .await
}
