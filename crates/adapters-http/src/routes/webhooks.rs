//! `/api/v1/webhooks`: subscriptions (OWNER, ADMIN), their delivery log, redelivery and
//! test pings. Delivery itself runs in the background workers.

use std::time::Duration;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, delete, get, patch, post, web};
use nexus_application::WebhookUseCases;
use nexus_application::webhooks::{WebhookInput, WebhookUpdate};
use nexus_domain::{Action, DeliveryId, Resource, WebhookId};
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

use crate::auth::{Auth, permitted};
use crate::concurrency::{etag, if_match};
use crate::cursor::{CursorCodec, CursorScope};
use crate::dto::common::{Page, take_page};
use crate::dto::webhooks::{
    CreateWebhookRequest, DeliveryDetailDto, DeliveryDto, DeliveryStatusDto, RotateSecretRequest,
    UpdateWebhookRequest, WebhookDto, WebhookWithSecretDto,
};
use crate::extract::json_body;
use crate::middleware::idempotency::{self, shown_once};
use crate::problem::ApiError;
use crate::responses::{
    BadRequest, Forbidden, NotFound, PayloadTooLarge, PreconditionFailed, ServiceUnavailable,
    Unauthorized, Unprocessable, UnsupportedMediaType,
};
use crate::routes::paging::{PageQuery, limit_of};

type Webhooks = web::Data<dyn WebhookUseCases>;
type Cursors = web::Data<CursorCodec>;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeliveryQuery {
    /// Only deliveries in this state.
    pub status: Option<DeliveryStatusDto>,
    /// 1–200, default 50.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    /// `nextCursor` of the previous page.
    pub cursor: Option<String>,
}

fn scope(auth: &Auth, list: &'static str, filters: String) -> CursorScope {
    CursorScope {
        org: auth.0.org_id,
        list,
        sort: "seq".into(),
        filters,
    }
}

/// Subscribe a URL to events (OWNER, ADMIN). The signing secret is in this response only.
#[utoipa::path(
    operation_id = "createWebhook",
    tag = "webhooks",
    request_body = CreateWebhookRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = idempotency::SHOWN_ONCE_RETRY)),
    responses(
        (status = 201, description = "Created; copy `secret` now.", body = WebhookWithSecretDto,
         headers(("Location" = String, description = "The subscription."), ("ETag" = String, description = "Its version."))),
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
pub async fn create_webhook(
    req: HttpRequest,
    auth: Auth,
    webhooks: Webhooks,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    permitted(&auth.0, Resource::Integrations, Action::Create)?;
    let b: CreateWebhookRequest = json_body(&req, &body)?;
    let created = webhooks
        .create(
            auth.0,
            WebhookInput {
                url: b.url,
                event_types: b.event_types,
                description: b.description,
                active: b.active.unwrap_or(true),
            },
        )
        .await?;
    Ok(shown_once(
        HttpResponse::Created()
            .insert_header((
                header::LOCATION,
                format!("/api/v1/webhooks/{}", created.webhook.id),
            ))
            .insert_header(etag(created.webhook.version))
            .json(WebhookWithSecretDto::from(created)),
    ))
}

/// The organization's subscriptions, oldest first (OWNER, ADMIN).
#[utoipa::path(
    operation_id = "listWebhooks",
    tag = "webhooks",
    params(PageQuery),
    responses(
        (status = 200, description = "Subscriptions.", body = Page<WebhookDto>),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 503, response = ServiceUnavailable),
    )
)]
#[get("")]
pub async fn list_webhooks(
    auth: Auth,
    webhooks: Webhooks,
    cursors: Cursors,
    query: web::Query<PageQuery>,
) -> Result<Page<WebhookDto>, ApiError> {
    let q = query.into_inner();
    let limit = limit_of(q.limit)?;
    let scope = scope(&auth, "webhooks", String::new());
    let after = cursors
        .decode_time(&scope, q.cursor.as_deref())?
        .map(|(_, id)| WebhookId::from_uuid(id));
    let mut items = webhooks.list(auth.0, after, limit + 1).await?;
    let more = take_page(&mut items, limit);
    let next_cursor = more
        .then(|| items.last())
        .flatten()
        .map(|w| cursors.encode_time(&scope, w.created_at, w.id.as_uuid()));
    Ok(Page {
        data: items.into_iter().map(Into::into).collect(),
        next_cursor,
        total: None,
    })
}

/// One subscription (OWNER, ADMIN).
#[utoipa::path(
    operation_id = "getWebhook",
    tag = "webhooks",
    params(("id" = Uuid, Path, description = "Subscription id.")),
    responses(
        (status = 200, description = "The subscription.", body = WebhookDto,
         headers(("ETag" = String, description = "The version, for If-Match."))),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 503, response = ServiceUnavailable),
    )
)]
#[get("/{id}")]
pub async fn get_webhook(
    auth: Auth,
    webhooks: Webhooks,
    path: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let w = webhooks
        .get(auth.0, WebhookId::from_uuid(path.into_inner()))
        .await?;
    Ok(HttpResponse::Ok()
        .insert_header(etag(w.version))
        .json(WebhookDto::from(w)))
}

/// Change the URL, events, description or active flag (OWNER, ADMIN). Setting `active`
/// to true re-enables a disabled subscription; its queued deliveries resume.
#[utoipa::path(
    operation_id = "updateWebhook",
    tag = "webhooks",
    request_body = UpdateWebhookRequest,
    params(
        ("id" = Uuid, Path, description = "Subscription id."),
        ("If-Match" = Option<String>, Header, nullable = false, description = "The ETag you read; a stale one gives 412."),
    ),
    responses(
        (status = 200, description = "Updated.", body = WebhookDto,
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
#[patch("/{id}")]
pub async fn update_webhook(
    req: HttpRequest,
    auth: Auth,
    webhooks: Webhooks,
    path: web::Path<Uuid>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    permitted(&auth.0, Resource::Integrations, Action::Update)?;
    let expected = if_match(&req)?;
    let b: UpdateWebhookRequest = json_body(&req, &body)?;
    let w = webhooks
        .update(
            auth.0,
            WebhookId::from_uuid(path.into_inner()),
            WebhookUpdate {
                url: b.url,
                event_types: b.event_types,
                description: b.description,
                active: b.active,
            },
            expected,
        )
        .await?;
    Ok(HttpResponse::Ok()
        .insert_header(etag(w.version))
        .json(WebhookDto::from(w)))
}

/// Delete a subscription and its delivery log (OWNER, ADMIN).
#[utoipa::path(
    operation_id = "deleteWebhook",
    tag = "webhooks",
    params(
        ("id" = Uuid, Path, description = "Subscription id."),
        ("If-Match" = Option<String>, Header, nullable = false, description = "The ETag you read; a stale one gives 412."),
    ),
    responses(
        (status = 204, description = "Deleted."),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 412, response = PreconditionFailed),
        (status = 503, response = ServiceUnavailable),
    )
)]
#[delete("/{id}")]
pub async fn delete_webhook(
    req: HttpRequest,
    auth: Auth,
    webhooks: Webhooks,
    path: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let expected = if_match(&req)?;
    webhooks
        .delete(auth.0, WebhookId::from_uuid(path.into_inner()), expected)
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Issue a new signing secret (OWNER, ADMIN). The old one keeps signing beside it for
/// the overlap, so receivers can switch without losing messages.
#[utoipa::path(
    operation_id = "rotateWebhookSecret",
    tag = "webhooks",
    request_body = RotateSecretRequest,
    params(
        ("id" = Uuid, Path, description = "Subscription id."),
        ("Idempotency-Key" = Option<String>, Header, description = idempotency::SHOWN_ONCE_RETRY),
    ),
    responses(
        (status = 200, description = "Rotated; copy `secret` now.", body = WebhookWithSecretDto),
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
#[post("/{id}/rotate-secret")]
pub async fn rotate_webhook_secret(
    req: HttpRequest,
    auth: Auth,
    webhooks: Webhooks,
    path: web::Path<Uuid>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    permitted(&auth.0, Resource::Integrations, Action::Update)?;
    let overlap = json_body::<RotateSecretRequest>(&req, &body)?
        .overlap_seconds
        .map(Duration::from_secs);
    let rotated = webhooks
        .rotate_secret(auth.0, WebhookId::from_uuid(path.into_inner()), overlap)
        .await?;
    Ok(shown_once(
        HttpResponse::Ok().json(WebhookWithSecretDto::from(rotated)),
    ))
}

/// The subscription's deliveries, newest first (OWNER, ADMIN). Kept 30 days.
#[utoipa::path(
    operation_id = "listWebhookDeliveries",
    tag = "webhooks",
    params(("id" = Uuid, Path, description = "Subscription id."), DeliveryQuery),
    responses(
        (status = 200, description = "Deliveries.", body = Page<DeliveryDto>),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 503, response = ServiceUnavailable),
    )
)]
#[get("/{id}/deliveries")]
pub async fn list_webhook_deliveries(
    auth: Auth,
    webhooks: Webhooks,
    cursors: Cursors,
    path: web::Path<Uuid>,
    query: web::Query<DeliveryQuery>,
) -> Result<Page<DeliveryDto>, ApiError> {
    let id = path.into_inner();
    let q = query.into_inner();
    let limit = limit_of(q.limit)?;
    let status = q.status.map(Into::into);
    let filters = format!(
        "webhook={id}&status={}",
        status.map_or("", nexus_ports::webhooks::DeliveryStatus::as_str)
    );
    let scope = scope(&auth, "webhook_deliveries", filters);
    let before = cursors.decode_seq(&scope, q.cursor.as_deref())?;
    let mut items = webhooks
        .deliveries(auth.0, WebhookId::from_uuid(id), status, before, limit + 1)
        .await?;
    let more = take_page(&mut items, limit);
    let next_cursor = more
        .then(|| items.last())
        .flatten()
        .map(|d| cursors.encode_seq(&scope, d.seq, d.id.as_uuid()));
    Ok(Page {
        data: items.into_iter().map(Into::into).collect(),
        next_cursor,
        total: None,
    })
}

/// One delivery with every attempt: status codes, errors, the first 4 KiB of each
/// answer, durations (OWNER, ADMIN).
#[utoipa::path(
    operation_id = "getWebhookDelivery",
    tag = "webhooks",
    params(
        ("id" = Uuid, Path, description = "Subscription id."),
        ("deliveryId" = Uuid, Path, description = "Delivery id."),
    ),
    responses(
        (status = 200, description = "The delivery.", body = DeliveryDetailDto),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 503, response = ServiceUnavailable),
    )
)]
#[get("/{id}/deliveries/{deliveryId}")]
pub async fn get_webhook_delivery(
    auth: Auth,
    webhooks: Webhooks,
    path: web::Path<(Uuid, Uuid)>,
) -> Result<web::Json<DeliveryDetailDto>, ApiError> {
    let (id, delivery) = path.into_inner();
    let (d, attempts) = webhooks
        .delivery(
            auth.0,
            WebhookId::from_uuid(id),
            DeliveryId::from_uuid(delivery),
        )
        .await?;
    Ok(web::Json(DeliveryDetailDto {
        delivery: d.into(),
        attempt_log: attempts.into_iter().map(Into::into).collect(),
    }))
}

/// Send a delivery's message again, with the same `webhook-id` (OWNER, ADMIN). It is
/// queued as a new delivery behind the subscription's pending ones.
#[utoipa::path(
    operation_id = "redeliverWebhookDelivery",
    tag = "webhooks",
    params(
        ("id" = Uuid, Path, description = "Subscription id."),
        ("deliveryId" = Uuid, Path, description = "The delivery to send again."),
    ),
    responses(
        (status = 202, description = "Queued.", body = DeliveryDto),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 503, response = ServiceUnavailable),
    )
)]
#[post("/{id}/deliveries/{deliveryId}/redeliver")]
pub async fn redeliver_webhook_delivery(
    auth: Auth,
    webhooks: Webhooks,
    path: web::Path<(Uuid, Uuid)>,
) -> Result<HttpResponse, ApiError> {
    let (id, delivery) = path.into_inner();
    let queued = webhooks
        .redeliver(
            auth.0,
            WebhookId::from_uuid(id),
            DeliveryId::from_uuid(delivery),
        )
        .await?;
    Ok(HttpResponse::Accepted().json(DeliveryDto::from(queued)))
}

/// Queue a signed `ping` message to the subscription's URL (OWNER, ADMIN); follow its
/// outcome with `getWebhookDelivery`.
#[utoipa::path(
    operation_id = "testWebhook",
    tag = "webhooks",
    params(("id" = Uuid, Path, description = "Subscription id.")),
    responses(
        (status = 202, description = "Queued.", body = DeliveryDto),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 503, response = ServiceUnavailable),
    )
)]
#[post("/{id}/test")]
pub async fn test_webhook(
    auth: Auth,
    webhooks: Webhooks,
    path: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let queued = webhooks
        .ping(auth.0, WebhookId::from_uuid(path.into_inner()))
        .await?;
    Ok(HttpResponse::Accepted().json(DeliveryDto::from(queued)))
}
