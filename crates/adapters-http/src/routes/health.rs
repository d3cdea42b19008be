//! Liveness, readiness and metrics: outside `/api/v1`, no token, cheap.

use actix_web::http::header::ContentType;
use actix_web::{HttpResponse, get, web};
use nexus_application::{HealthUseCases, Readiness};
use serde::Serialize;
use utoipa::ToSchema;

use crate::metrics::Metrics;
use crate::problem::{ApiError, Problem};

#[derive(Debug, Serialize, ToSchema)]
pub struct HealthStatus {
    #[schema(example = "ok")]
    pub status: &'static str,
}

/// The process is up and serving HTTP. Never touches the database.
#[utoipa::path(
    operation_id = "getLiveness",
    tag = "health",
    security(()),
    responses((status = 200, description = "The process is alive.", body = HealthStatus))
)]
#[get("/health/live")]
pub async fn live() -> web::Json<HealthStatus> {
    web::Json(HealthStatus { status: "ok" })
}

/// The database answers: the instance can take traffic.
#[utoipa::path(
    operation_id = "getReadiness",
    tag = "health",
    security(()),
    responses(
        (status = 200, description = "Ready to serve.", body = HealthStatus),
        (status = 503, description = "The database is unreachable or the pool is exhausted.",
         body = Problem, content_type = "application/problem+json",
         headers(("Retry-After" = u64, description = "Seconds to wait before retrying.")))
    )
)]
#[get("/health/ready")]
pub async fn ready(
    health: web::Data<dyn HealthUseCases>,
) -> Result<web::Json<HealthStatus>, ApiError> {
    match health.readiness().await {
        Readiness::Ready => Ok(web::Json(HealthStatus { status: "ok" })),
        Readiness::NotReady(err) => Err(ApiError::from(err)),
    }
}

/// Prometheus text exposition: request counts and latency by route, pool figures.
#[utoipa::path(
    operation_id = "getMetrics",
    tag = "health",
    security(()),
    responses((status = 200, description = "Prometheus text format 0.0.4.", body = String,
               content_type = "text/plain; version=0.0.4"))
)]
#[get("/metrics")]
pub async fn metrics(
    metrics: web::Data<Metrics>,
    health: web::Data<dyn HealthUseCases>,
) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(ContentType(
            "text/plain; version=0.0.4; charset=utf-8"
                .parse()
                .unwrap_or(mime_plain()),
        ))
        .body(metrics.render(health.pool_stats()))
}

fn mime_plain() -> actix_web::mime::Mime {
    actix_web::mime::TEXT_PLAIN_UTF_8
}
