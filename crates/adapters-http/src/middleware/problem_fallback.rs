//! Every error response is problem+json: anything that left the app with an error
//! status and another body (actix's own errors, a library's) is rewritten here.

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::{Error, ResponseError};

use crate::problem::{PROBLEM_JSON, Rendered, for_status};

pub async fn middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let res = match next.call(req).await {
        Ok(res) => res.map_into_boxed_body(),
        Err(err) if err.as_error::<Rendered>().is_some() => return Err(err),
        Err(err) => {
            return Err(for_status(err.as_response_error().status_code())
                .render_detached()
                .into());
        }
    };
    let is_problem = res
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(PROBLEM_JSON.as_bytes()));
    if !res.status().is_client_error() && !res.status().is_server_error() || is_problem {
        return Ok(res);
    }
    let (req, old) = res.into_parts();
    let mut new = for_status(old.status()).error_response();
    for name in [header::ALLOW, header::RETRY_AFTER, header::WWW_AUTHENTICATE] {
        if let Some(value) = old.headers().get(&name) {
            new.headers_mut().insert(name, value.clone());
        }
    }
    Ok(ServiceResponse::new(req, new))
}
