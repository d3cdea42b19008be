//! Scopes a [`RequestContext`] (client IP, user agent, and once authenticated the actor)
//! around each request, so the audit writer deep in the repositories can record where a
//! change came from without every use case and port passing it along (see
//! `nexus_ports::request_context` for why a task-local).

use std::sync::Arc;

use actix_web::Error;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use nexus_ports::request_context::{self, RequestContext};

pub async fn middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let meta = crate::auth::client_meta(req.request());
    let ctx = Arc::new(RequestContext::new(meta.ip, meta.user_agent));
    request_context::scope(ctx, next.call(req)).await
}
