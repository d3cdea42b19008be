//! `Idempotency-Key` on every authenticated POST, for every route, present and future.
//!
//! The key is scoped to the caller (organization and user or API key). The request is
//! fingerprinted (method, path, query, content type, `If-Match`, body); the first response that is
//! not a server error is stored and replayed for 24 hours to the same key with the same
//! request (`Idempotent-Replayed: true`). The same key with another request is 422
//! `idempotency_key_reused`; while the first request runs, a duplicate gets 409
//! `idempotency_key_in_flight`. A 5xx releases the key so that a retry runs again.
//!
//! A response that shows a secret once (tokens, an API key, a signing secret) is marked
//! [`ShownOnce`] by its handler and is not kept: storing it would hold a live credential
//! at rest for a day. A retry with its key is not run again either; it gets a 409
//! `idempotency_secret_not_replayed`, with the first response's `Location`.

use actix_web::body::{BoxBody, MessageBody, to_bytes};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::{Method, StatusCode, header};
use actix_web::middleware::Next;
use actix_web::{Error, HttpResponse, ResponseError, web};
use nexus_application::{AppError, Begun, IdempotencyUseCases};
use nexus_domain::Actor;
use nexus_ports::idempotency::{ClaimToken, StoredResponse};
use sha2::{Digest, Sha256};

use crate::auth::Auth;
use crate::problem::ApiError;

pub const HEADER: &str = "idempotency-key";
/// The header as the OpenAPI document spells it.
pub const HEADER_DOC_NAME: &str = "Idempotency-Key";
/// What the OpenAPI document says of the header on an authenticated POST.
pub const RETRY_DOC: &str =
    "Retry safely: the same key and request within 24 h replay the first response.";
/// ... and on one whose response shows a secret once ([`ShownOnce`]).
pub const SHOWN_ONCE_RETRY: &str = "Retry safely: the same key and request within 24 h are not run twice. The response shows a secret once and is not kept, so a retry gets 409 `idempotency_secret_not_replayed` (with the first response's `Location`) instead of the secret.";
pub const REPLAYED: &str = "idempotent-replayed";

/// Response headers worth replaying with the body.
const KEPT_HEADERS: [header::HeaderName; 4] = [
    header::CONTENT_TYPE,
    header::LOCATION,
    header::ETAG,
    header::ALLOW,
];

/// Marks a response that shows a secret once; see the module's documentation.
#[derive(Debug, Clone, Copy)]
pub struct ShownOnce;

/// `res`, marked [`ShownOnce`].
#[must_use]
pub fn shown_once(mut res: HttpResponse) -> HttpResponse {
    res.extensions_mut().insert(ShownOnce);
    res
}

/// What a retry of a [`ShownOnce`] response gets instead of the secret.
fn not_replayed(location: Option<(String, String)>) -> StoredResponse {
    let err = ApiError::new(
        StatusCode::CONFLICT,
        "idempotency_secret_not_replayed",
        "The request with this Idempotency-Key already succeeded. Its response showed a secret once, which is not kept for replay; `Location`, when present, names what it created.",
    );
    let mut headers = vec![(
        header::CONTENT_TYPE.as_str().to_owned(),
        crate::problem::PROBLEM_JSON.to_owned(),
    )];
    headers.extend(location);
    StoredResponse {
        status: err.status.as_u16(),
        headers,
        body: serde_json::to_vec(&err.problem()).unwrap_or_default(),
    }
}

fn begin_error(err: AppError) -> ApiError {
    match err {
        AppError::Validation(issues)
            if issues.iter().any(|i| i.code == "idempotency_key_reused") =>
        {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                "This Idempotency-Key was used with a different request; use a new key for a new request.",
            )
        }
        AppError::Validation(_) => ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_idempotency_key",
            "An Idempotency-Key has 1 to 255 visible ASCII characters.",
        ),
        other => other.into(),
    }
}

fn fingerprint(req: &ServiceRequest, body: &[u8]) -> Vec<u8> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    // A form's boundary is drawn afresh on every send (browsers, curl), so a retry of the
    // same form differs from the first only by it: the fingerprint leaves it out.
    let boundary = match actix_web::HttpMessage::mime_type(req) {
        Ok(Some(mime)) if mime.essence_str() == "multipart/form-data" => mime
            .get_param(actix_web::mime::BOUNDARY)
            .map(|b| b.as_str().to_owned())
            .filter(|b| !b.is_empty()),
        _ => None,
    };
    let content_type = if boundary.is_some() {
        b"multipart/form-data".as_slice()
    } else {
        content_type
    };
    let mut hash = Sha256::new();
    for part in [
        req.method().as_str().as_bytes(),
        req.path().as_bytes(),
        req.query_string().as_bytes(),
        content_type,
    ] {
        hash.update((part.len() as u64).to_be_bytes());
        hash.update(part);
    }
    // The version a write is conditioned on is part of the request: a retry that names a
    // newer one is another request, not a replay of the first's 412. Left out when absent,
    // so that keys claimed before it was hashed still match their retries.
    if let Some(if_match) = req.headers().get(header::IF_MATCH) {
        hash.update(b"if-match");
        hash.update((if_match.len() as u64).to_be_bytes());
        hash.update(if_match.as_bytes());
    }
    match boundary {
        Some(boundary) => hash_without(&mut hash, body, boundary.as_bytes()),
        None => hash.update(body),
    }
    hash.finalize().to_vec()
}

/// Hashes `body` with every occurrence of `cut` left out (a form's boundary cannot occur
/// inside its parts).
fn hash_without(hash: &mut Sha256, body: &[u8], cut: &[u8]) {
    let mut start = 0;
    for at in memchr::memmem::find_iter(body, cut) {
        hash.update(&body[start..at]);
        start = at + cut.len();
    }
    hash.update(&body[start..]);
}

fn replay(req: ServiceRequest, stored: StoredResponse) -> ServiceResponse<BoxBody> {
    let mut res =
        HttpResponse::build(StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK));
    for (name, value) in &stored.headers {
        res.insert_header((name.as_str(), value.as_str()));
    }
    res.insert_header((REPLAYED, "true"));
    req.into_response(res.body(stored.body))
}

async fn finish(
    service: &web::Data<dyn IdempotencyUseCases>,
    actor: Actor,
    key: String,
    token: ClaimToken,
    res: ServiceResponse<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    // A response that says to retry later (a 5xx, a 429, a 409 with `Retry-After`) is
    // not the request's outcome: the key is released, so the retry runs.
    if res.status().is_server_error() || res.headers().contains_key(header::RETRY_AFTER) {
        if let Err(e) = service.abandon(actor, key, token).await {
            tracing::warn!(error = %e, "releasing an idempotency key failed");
        }
        return Ok(res.map_into_boxed_body());
    }
    if res.response().extensions().contains::<ShownOnce>() {
        let location = res
            .headers()
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(|v| (header::LOCATION.as_str().to_owned(), v.to_owned()));
        store(service, actor, &key, token, not_replayed(location)).await;
        return Ok(res.map_into_boxed_body());
    }
    let (req, res) = res.into_parts();
    let (res, body) = res.into_parts();
    let Ok(bytes) = to_bytes(body).await else {
        if let Err(e) = service.abandon(actor, key, token).await {
            tracing::warn!(error = %e, "releasing an idempotency key failed");
        }
        return Err(ApiError::internal().into());
    };
    let headers = KEPT_HEADERS
        .iter()
        .filter_map(|name| {
            res.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(|v| (name.as_str().to_owned(), v.to_owned()))
        })
        .collect();
    let stored = StoredResponse {
        status: res.status().as_u16(),
        headers,
        body: bytes.to_vec(),
    };
    store(service, actor, &key, token, stored).await;
    Ok(ServiceResponse::new(
        req,
        res.set_body(bytes).map_into_boxed_body(),
    ))
}

/// Stores the request's outcome, retrying a failed write a few times: a key left claimed
/// would answer 409 to every retry, then, once presumed abandoned, let the request run a
/// second time although its effect already happened.
async fn store(
    service: &web::Data<dyn IdempotencyUseCases>,
    actor: Actor,
    key: &str,
    token: ClaimToken,
    response: StoredResponse,
) {
    for pause_ms in [50, 250, 1_000, 0] {
        match service.finish(actor, key, token, &response).await {
            Ok(()) => return,
            Err(e) if pause_ms == 0 => {
                tracing::error!(error = %e, "storing an idempotent response failed; the key stays claimed");
            }
            Err(e) => {
                tracing::warn!(error = %e, "storing an idempotent response failed; retrying");
                tokio::time::sleep(std::time::Duration::from_millis(pause_ms)).await;
            }
        }
    }
}

/// Reads the whole body, refusing (413) past `limit` bytes.
async fn read_body(req: &mut ServiceRequest, limit: usize) -> Result<web::Bytes, ApiError> {
    use futures_util::StreamExt;
    let mut payload = actix_web::HttpMessage::take_payload(req);
    // Sized once from a declared length (already checked against the limit), so a large
    // upload is not grown by copies.
    let declared = crate::upload::declared_length(req.headers()).filter(|n| *n <= limit);
    let mut body = web::BytesMut::with_capacity(declared.unwrap_or(0));
    while let Some(chunk) = payload.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::malformed(format!("The body could not be read: {e}.")))?;
        if body.len() + chunk.len() > limit {
            return Err(crate::upload::too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

pub async fn middleware(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let key = req
        .headers()
        .get(HEADER)
        .map(|v| v.to_str().map(str::to_owned));
    let service = req
        .app_data::<web::Data<dyn IdempotencyUseCases>>()
        .cloned();
    let (Some(key), Some(service), true) = (key, service, req.method() == Method::POST) else {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_boxed_body);
    };
    let Ok(key) = key else {
        let err = begin_error(AppError::invalid(
            "Idempotency-Key",
            "invalid_format",
            "not ASCII",
        ));
        return Ok(req.into_response(err.error_response()));
    };
    // Keys belong to a caller; without credentials the handler answers 401 on its own
    // (or serves a route that needs none, such as signing in). Any other failure to
    // authenticate (the database unreachable) is answered here: running the request
    // unkeyed would let its retry run it again.
    let actor = match req.extract::<Auth>().await {
        Ok(Auth(actor)) => actor,
        Err(err)
            if matches!(
                err.status_code(),
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
            ) =>
        {
            return next
                .call(req)
                .await
                .map(ServiceResponse::map_into_boxed_body);
        }
        Err(err) => return Ok(req.into_response(err.error_response())),
    };
    // Uploads may be larger than JSON bodies, up to their kind's own limit.
    let upload = crate::upload::kind(req.headers())
        .filter(|_| req.match_pattern().as_deref() == Some(crate::upload::ROUTE));
    // A caller who may not upload is refused by the route from the headers; reading
    // (and keying) their body first would hold up to 50 MB for a 403.
    if upload.is_some() && crate::upload::authorize(&actor).is_err() {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_boxed_body);
    }
    let body = if let Some(kind) = upload {
        // Refused from its headers alone, before it takes a slot.
        if let Err(err) = crate::upload::refuse_declared_too_large(req.headers(), kind) {
            return Ok(req.into_response(err.error_response()));
        }
        // The slot is held by the request until the route has read and checked it too.
        let Some(slots) = req
            .app_data::<web::Data<crate::upload::UploadSlots>>()
            .cloned()
        else {
            return Ok(req.into_response(ApiError::internal().error_response()));
        };
        if let Err(err) = slots.take(req.request(), actor.org_id) {
            return Ok(req.into_response(err.error_response()));
        }
        match slots
            .within_deadline(read_body(&mut req, crate::upload::limit_of(kind)))
            .await
        {
            Ok(body) => body,
            Err(err) => return Ok(req.into_response(err.error_response())),
        }
    } else {
        let body = req.extract::<web::Bytes>().await?;
        // The extractor decoded a compressed body; the handler gets it decoded, so it
        // must not be told to decode it again.
        if req
            .headers_mut()
            .remove(header::CONTENT_ENCODING)
            .next()
            .is_some()
        {
            req.headers_mut().insert(
                header::CONTENT_LENGTH,
                header::HeaderValue::from(body.len()),
            );
        }
        body
    };
    let hash = fingerprint(&req, &body);
    req.set_payload(Payload::from(body));
    match service.begin(actor, key.clone(), hash).await {
        Err(err) => Ok(req.into_response(begin_error(err).error_response())),
        Ok(Begun::Replay(stored)) => Ok(replay(req, stored)),
        Ok(Begun::Run(token)) => match next.call(req).await {
            Ok(res) => finish(&service, actor, key, token, res).await,
            Err(err) => {
                if let Err(e) = service.abandon(actor, key, token).await {
                    tracing::warn!(error = %e, "releasing an idempotency key failed");
                }
                Err(err)
            }
        },
    }
}
