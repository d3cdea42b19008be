//! `/api/v1/pipelines`: definitions, and the board.

use actix_web::{HttpRequest, HttpResponse, delete, get, patch, post, web};
use nexus_application::SalesUseCases;
use nexus_application::sales::{PipelineInput, PipelineUpdate};
use nexus_domain::money::format_minor;
use nexus_domain::{Action, ContactId, DealId, PipelineId, Resource, StageId};
use nexus_ports::contacts::{Keyset, SortValue};
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

use crate::auth::{Auth, permitted};
use crate::concurrency::{etag, if_match};
use crate::cursor::{CursorCodec, CursorScope};
use crate::dto::common::Page;
use crate::dto::sales::{
    BoardDto, BoardStageDto, CreatePipelineRequest, CurrencyTotals, DealDto, PipelineDto,
    UpdatePipelineRequest,
};
use crate::extract::json_body;
use crate::problem::ApiError;
use crate::responses::{
    BadRequest, Conflict, Forbidden, NotFound, PayloadTooLarge, PreconditionFailed,
    ServiceUnavailable, Unauthorized, Unprocessable, UnsupportedMediaType,
};

type Sales = web::Data<dyn SalesUseCases>;
type Cursors = web::Data<CursorCodec>;

/// The organization's pipelines, oldest first.
#[utoipa::path(
    operation_id = "listPipelines",
    tag = "pipelines",
    responses(
        (status = 200, description = "Pipelines with their stages.", body = Page<PipelineDto>),
        (status = 401, response = Unauthorized),
        (status = 503, response = ServiceUnavailable),
    )
)]
#[get("")]
pub async fn list_pipelines(auth: Auth, sales: Sales) -> Result<Page<PipelineDto>, ApiError> {
    let items = sales.pipelines(auth.0).await?;
    Ok(Page {
        data: items.into_iter().map(Into::into).collect(),
        next_cursor: None,
        total: None,
    })
}

/// Create a pipeline (OWNER, ADMIN).
#[utoipa::path(
    operation_id = "createPipeline",
    tag = "pipelines",
    request_body = CreatePipelineRequest,
    responses(
        (status = 201, description = "Created.", body = PipelineDto),
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
pub async fn create_pipeline(
    req: HttpRequest,
    auth: Auth,
    sales: Sales,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    permitted(&auth.0, Resource::Pipelines, Action::Create)?;
    let body: CreatePipelineRequest = json_body(&req, &body)?;
    if body.stages.iter().any(|s| s.id.is_some()) {
        return Err(ApiError::new(
            actix_web::http::StatusCode::BAD_REQUEST,
            "invalid_body",
            "new stages carry no id",
        ));
    }
    let input = PipelineInput {
        name: body.name,
        stages: body.stages.into_iter().map(Into::into).collect(),
        is_default: body.is_default,
    };
    let record = sales.create_pipeline(auth.0, input).await?;
    Ok(HttpResponse::Created()
        .insert_header((
            "Location",
            format!("/api/v1/pipelines/{}", record.pipeline.id),
        ))
        .insert_header(etag(record.version))
        .json(PipelineDto::from(record)))
}

/// One pipeline.
#[utoipa::path(
    operation_id = "getPipeline",
    tag = "pipelines",
    params(("id" = Uuid, Path, description = "Pipeline id.")),
    responses(
        (status = 200, description = "The pipeline.", body = PipelineDto, headers(("ETag" = String, description = "Version."))),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 503, response = ServiceUnavailable),
    )
)]
#[get("/{id}")]
pub async fn get_pipeline(
    auth: Auth,
    sales: Sales,
    path: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let record = sales
        .pipeline(auth.0, PipelineId::from_uuid(path.into_inner()))
        .await?;
    Ok(HttpResponse::Ok()
        .insert_header(etag(record.version))
        .json(PipelineDto::from(record)))
}

/// Redefine a pipeline (OWNER, ADMIN): rename, reorder, add or remove stages, or make
/// it the default. Removing a stage that holds deals needs `moveDealsTo` (else 409).
#[utoipa::path(
    operation_id = "updatePipeline",
    tag = "pipelines",
    params(
        ("id" = Uuid, Path, description = "Pipeline id."),
        ("If-Match" = Option<String>, Header, nullable = false, description = "The ETag you read."),
    ),
    request_body = UpdatePipelineRequest,
    responses(
        (status = 200, description = "Updated.", body = PipelineDto),
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
pub async fn update_pipeline(
    req: HttpRequest,
    auth: Auth,
    sales: Sales,
    path: web::Path<Uuid>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    permitted(&auth.0, Resource::Pipelines, Action::Update)?;
    let expected = if_match(&req)?;
    let body: UpdatePipelineRequest = json_body(&req, &body)?;
    let update = PipelineUpdate {
        name: body.name,
        stages: body.stages.map(|s| s.into_iter().map(Into::into).collect()),
        make_default: body.is_default,
        move_deals_to: body.move_deals_to.map(StageId::from_uuid),
    };
    let record = sales
        .update_pipeline(
            auth.0,
            PipelineId::from_uuid(path.into_inner()),
            update,
            expected,
        )
        .await?;
    Ok(HttpResponse::Ok()
        .insert_header(etag(record.version))
        .json(PipelineDto::from(record)))
}

/// Delete a pipeline (OWNER, ADMIN): not the default one, not one holding deals.
#[utoipa::path(
    operation_id = "deletePipeline",
    tag = "pipelines",
    params(("id" = Uuid, Path, description = "Pipeline id.")),
    responses(
        (status = 204, description = "Deleted."),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 503, response = ServiceUnavailable),
    )
)]
#[delete("/{id}")]
pub async fn delete_pipeline(
    auth: Auth,
    sales: Sales,
    path: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    sales
        .delete_pipeline(auth.0, PipelineId::from_uuid(path.into_inner()))
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct BoardQuery {
    /// Deals shown per stage, 1–100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
}

fn stage_scope(org: nexus_domain::OrgId, stage: StageId) -> CursorScope {
    CursorScope {
        org,
        list: "stage_deals",
        sort: "position".into(),
        filters: stage.to_string(),
    }
}

fn stage_cursor(cursors: &CursorCodec, scope: &CursorScope, last: &DealDto) -> String {
    // Keyset ids are plain UUIDs; the contacts keyset type carries them.
    let keyset = Keyset {
        value: SortValue::Text(last.position.to_string()),
        id: ContactId::from_uuid(last.id),
    };
    cursors.encode(scope, &keyset)
}

/// The board: every stage with its deal count, value and weighted value per currency,
/// and its first deals in order — in a constant number of queries.
#[utoipa::path(
    operation_id = "getPipelineBoard",
    tag = "pipelines",
    params(("id" = Uuid, Path, description = "Pipeline id."), BoardQuery),
    responses(
        (status = 200, description = "The board.", body = BoardDto),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 503, response = ServiceUnavailable),
    )
)]
#[get("/{id}/board")]
pub async fn board(
    auth: Auth,
    sales: Sales,
    cursors: Cursors,
    path: web::Path<Uuid>,
    query: web::Query<BoardQuery>,
) -> Result<web::Json<BoardDto>, ApiError> {
    let limit = query.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::new(
            actix_web::http::StatusCode::BAD_REQUEST,
            "invalid_query",
            "limit is 1 to 100.",
        ));
    }
    let org = auth.0.org_id;
    let board = sales
        .board(auth.0, PipelineId::from_uuid(path.into_inner()), limit)
        .await?;
    let stages = board
        .pipeline
        .pipeline
        .stages
        .iter()
        .map(|stage| {
            let totals: Vec<CurrencyTotals> = board
                .data
                .totals
                .iter()
                .filter(|t| t.stage_id == stage.id)
                .map(|t| CurrencyTotals {
                    currency: t.currency.clone(),
                    count: t.count,
                    value: format_minor(t.value_minor),
                    weighted_value: format_minor(t.weighted_minor),
                })
                .collect();
            let mut deals: Vec<DealDto> = board
                .data
                .deals
                .iter()
                .filter(|d| d.deal.stage_id == stage.id)
                .cloned()
                .map(Into::into)
                .collect();
            let more = crate::dto::common::take_page(&mut deals, limit);
            let next_cursor = if more {
                deals
                    .last()
                    .map(|d| stage_cursor(&cursors, &stage_scope(org, stage.id), d))
            } else {
                None
            };
            BoardStageDto {
                stage: stage.into(),
                count: totals.iter().map(|t| t.count).sum(),
                totals,
                deals,
                next_cursor,
            }
        })
        .collect();
    Ok(web::Json(BoardDto {
        pipeline: board.pipeline.into(),
        stages,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StageDealsQuery {
    /// 1–100, default 20.
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
    /// `nextCursor` of the board stage or of the previous page.
    pub cursor: Option<String>,
}

/// More deals of one board stage, in order.
#[utoipa::path(
    operation_id = "listStageDeals",
    tag = "pipelines",
    params(
        ("id" = Uuid, Path, description = "Pipeline id."),
        ("stageId" = Uuid, Path, description = "Stage id."),
        StageDealsQuery,
    ),
    responses(
        (status = 200, description = "A page of the stage's deals.", body = Page<DealDto>),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 503, response = ServiceUnavailable),
    )
)]
#[get("/{id}/stages/{stageId}/deals")]
pub async fn stage_deals(
    auth: Auth,
    sales: Sales,
    cursors: Cursors,
    path: web::Path<(Uuid, Uuid)>,
    query: web::Query<StageDealsQuery>,
) -> Result<Page<DealDto>, ApiError> {
    let (pipeline, stage) = path.into_inner();
    let stage = StageId::from_uuid(stage);
    let limit = query.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::new(
            actix_web::http::StatusCode::BAD_REQUEST,
            "invalid_query",
            "limit is 1 to 100.",
        ));
    }
    let scope = stage_scope(auth.0.org_id, stage);
    let after = match &query.cursor {
        Some(raw) => {
            let keyset = cursors.decode(&scope, raw)?;
            let SortValue::Text(p) = keyset.value else {
                return Err(crate::cursor::invalid_cursor());
            };
            Some((
                p.parse::<f64>()
                    .map_err(|_| crate::cursor::invalid_cursor())?,
                DealId::from_uuid(keyset.id.as_uuid()),
            ))
        }
        None => None,
    };
    let mut deals: Vec<DealDto> = sales
        .stage_deals(
            auth.0,
            PipelineId::from_uuid(pipeline),
            stage,
            after,
            limit + 1,
        )
        .await?
        .into_iter()
        .map(Into::into)
        .collect();
    let more = crate::dto::common::take_page(&mut deals, limit);
    let next_cursor = if more {
        deals.last().map(|d| stage_cursor(&cursors, &scope, d))
    } else {
        None
    };
    Ok(Page {
        data: deals,
        next_cursor,
        total: None,
    })
}
