//! File uploads: a CSV sent as the body itself (`text/csv`, `application/csv`) or as the
//! `file` part of a `multipart/form-data` body (what browsers and most HTTP tools send).
//! Both the import route and the idempotency middleware (which reads an upload under this
//! limit, not the JSON one) decide by [`kind`].

use actix_multipart::Multipart;
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderMap};
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use actix_web::{HttpMessage, HttpRequest, web};
use futures_util::{Stream, StreamExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use nexus_domain::{Action, Actor, OrgId, Resource};

use crate::problem::{ApiError, FieldError, for_status};

/// Largest file accepted (50 MB).
pub const MAX_FILE: usize = nexus_application::imports::MAX_BYTES;

/// Largest body read for an upload: the file plus room for the multipart framing (a
/// boundary and a few headers per part), so a file just under the limit is not refused
/// for its envelope.
pub const MAX_BODY: usize = MAX_FILE + 64 * 1024;

/// The one route that takes uploads: elsewhere a CSV body is read under the JSON limit
/// (and refused by the handler), not buffered up to 50 MB.
pub const ROUTE: &str = "/api/v1/contacts/imports";

/// Uploads read at once, per server: each holds up to 50 MB while it is read and
/// checked, so more would let a few callers take the server's memory.
pub const MAX_READ_AT_ONCE: usize = 4;

/// Uploads of one organization read at once: one organization's slow uploads leave the
/// other slots to the others.
pub const MAX_READ_PER_ORGANIZATION: usize = 2;

/// The right to read one upload, shared by the middleware that reads a keyed upload
/// and the route that reads it again (a request holds one, in its extensions).
#[derive(Clone)]
pub struct UploadSlot(#[allow(dead_code)] Arc<Held>);

struct Held {
    _permit: OwnedSemaphorePermit,
    org: OrgId,
    by_org: Arc<Mutex<HashMap<OrgId, usize>>>,
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut by_org = self.by_org.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = by_org.get_mut(&self.org) {
            *n -= 1;
            if *n == 0 {
                by_org.remove(&self.org);
            }
        }
    }
}

/// The slots of [`MAX_READ_AT_ONCE`] uploads, [`MAX_READ_PER_ORGANIZATION`] of them per
/// organization, and how long an upload may take to arrive.
pub struct UploadSlots {
    free: Arc<Semaphore>,
    by_org: Arc<Mutex<HashMap<OrgId, usize>>>,
    deadline: Duration,
}

impl UploadSlots {
    #[must_use]
    pub fn new(deadline: Duration) -> Self {
        Self {
            free: Arc::new(Semaphore::new(MAX_READ_AT_ONCE)),
            by_org: Arc::default(),
            deadline,
        }
    }

    /// The slot `req` already holds, or a free one for `org`.
    ///
    /// # Errors
    /// 503 `uploads_busy` with `Retry-After` when every slot, or every slot `org` may
    /// take, is taken: refused before a byte of the body is read.
    pub fn take(&self, req: &HttpRequest, org: OrgId) -> Result<UploadSlot, ApiError> {
        if let Some(held) = req.extensions().get::<UploadSlot>() {
            return Ok(held.clone());
        }
        let busy = || {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "uploads_busy",
                "The server is reading as many uploads as it takes at once (for this organization or in all); retry shortly.",
            )
            .with_retry_after(2)
        };
        let mut by_org = self.by_org.lock().unwrap_or_else(PoisonError::into_inner);
        if by_org
            .get(&org)
            .is_some_and(|n| *n >= MAX_READ_PER_ORGANIZATION)
        {
            return Err(busy());
        }
        let permit = self.free.clone().try_acquire_owned().map_err(|_| busy())?;
        *by_org.entry(org).or_insert(0) += 1;
        drop(by_org);
        let slot = UploadSlot(Arc::new(Held {
            _permit: permit,
            org,
            by_org: self.by_org.clone(),
        }));
        req.extensions_mut().insert(slot.clone());
        Ok(slot)
    }

    /// `read`, refused with 408 `upload_too_slow` when the body has not all arrived by the
    /// deadline: a slot is not held by a client that sends a byte now and then.
    ///
    /// # Errors
    /// `read`'s, or 408.
    pub async fn within_deadline<T>(
        &self,
        read: impl Future<Output = Result<T, ApiError>>,
    ) -> Result<T, ApiError> {
        tokio::time::timeout(self.deadline, read)
            .await
            .unwrap_or_else(|_| {
                Err(ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "upload_too_slow",
                    format!(
                        "The upload did not arrive within {} seconds; send it again.",
                        self.deadline.as_secs()
                    ),
                ))
            })
    }
}

/// The name of the multipart part that holds the file.
pub const FILE_PART: &str = "file";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The body is the CSV.
    Csv,
    /// The CSV is the body's `file` part.
    Multipart,
}

/// What kind of upload a body is, from its `Content-Type` (media type names are
/// case-insensitive, RFC 9110 §8.3.1); `None` for anything else.
pub fn kind(headers: &HeaderMap) -> Option<Kind> {
    let value = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    let essence = value.split(';').next().unwrap_or_default().trim();
    if essence.eq_ignore_ascii_case("text/csv") || essence.eq_ignore_ascii_case("application/csv") {
        Some(Kind::Csv)
    } else if essence.eq_ignore_ascii_case("multipart/form-data") {
        Some(Kind::Multipart)
    } else {
        None
    }
}

/// Who may upload to [`ROUTE`]: checked from the headers, before a byte of a body of
/// up to 50 MB is read, by the route and by the idempotency middleware alike.
///
/// # Errors
/// 403 for a role that may not create contacts.
pub fn authorize(actor: &Actor) -> Result<(), ApiError> {
    crate::auth::permitted(actor, Resource::Contacts, Action::Create)
}

pub fn unsupported() -> ApiError {
    ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        "Send the file as the body (text/csv), or as the `file` part of a multipart/form-data body.",
    )
}

/// The most an upload of `kind` may send: the file, or the file in its form.
#[must_use]
pub const fn limit_of(kind: Kind) -> usize {
    match kind {
        Kind::Csv => MAX_FILE,
        Kind::Multipart => MAX_BODY,
    }
}

/// 413 for an upload whose declared length passes its limit, before a byte is read.
///
/// # Errors
/// 413 `payload_too_large`.
pub fn refuse_declared_too_large(headers: &HeaderMap, kind: Kind) -> Result<(), ApiError> {
    if declared_length(headers).is_some_and(|n| n > limit_of(kind)) {
        Err(too_large())
    } else {
        Ok(())
    }
}

/// 413 with the import's limit in its detail.
#[must_use]
pub fn too_large() -> ApiError {
    let mut err = for_status(StatusCode::PAYLOAD_TOO_LARGE);
    err.detail = "A CSV import is at most 50 MB.".into();
    err
}

fn unreadable(e: impl std::fmt::Display) -> ApiError {
    ApiError::malformed(format!("The body could not be read: {e}."))
}

fn invalid_part(field: &str, code: &str, message: &str) -> ApiError {
    ApiError::validation(vec![FieldError {
        field: field.to_owned(),
        code: code.to_owned(),
        message: message.to_owned(),
    }])
}

/// The body's declared length, when it declares one.
pub fn declared_length(headers: &HeaderMap) -> Option<usize> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
}

/// Reads the file out of an upload of `kind`, refusing more than [`MAX_FILE`] bytes of it
/// (and a declared body over [`MAX_BODY`] before a byte is read).
pub async fn read_file(
    headers: &HeaderMap,
    kind: Kind,
    body: web::Payload,
) -> Result<Vec<u8>, ApiError> {
    let declared = declared_length(headers);
    refuse_declared_too_large(headers, kind)?;
    match kind {
        // A declared size within the limit sizes the buffer once, instead of growing it
        // by copies to twice the file.
        Kind::Csv => collect(body, declared.unwrap_or(0)).await,
        Kind::Multipart => file_part(Multipart::new(headers, body)).await,
    }
}

/// The stream's bytes, refused past [`MAX_FILE`]; `capacity` sizes the buffer when the
/// body comes in several chunks.
async fn collect<S, E>(mut chunks: S, capacity: usize) -> Result<Vec<u8>, ApiError>
where
    S: Stream<Item = Result<web::Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    // A body the idempotency middleware has already read comes back as one chunk that
    // nothing else holds: taking its buffer, instead of copying it, keeps a 50 MB upload
    // in memory once. So nothing is allocated until a second chunk comes.
    let mut first: Option<web::Bytes> = None;
    let mut joined = Vec::new();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(unreadable)?;
        let so_far = first.as_ref().map_or(joined.len(), web::Bytes::len);
        if so_far + chunk.len() > MAX_FILE {
            return Err(too_large());
        }
        match first.take() {
            None if joined.is_empty() => first = Some(chunk),
            None => joined.extend_from_slice(&chunk),
            Some(held) => {
                joined = Vec::with_capacity(capacity.max(held.len() + chunk.len()));
                joined.extend_from_slice(&held);
                joined.extend_from_slice(&chunk);
            }
        }
    }
    Ok(first.map_or(joined, Vec::from))
}

/// The one `file` part of a form; any other part is refused, as an unknown JSON field is.
async fn file_part(mut form: Multipart) -> Result<Vec<u8>, ApiError> {
    let mut file = None;
    while let Some(part) = form.next().await {
        let part = part.map_err(unreadable)?;
        match part.name() {
            Some(FILE_PART) if file.is_none() => file = Some(collect(part, 0).await?),
            Some(FILE_PART) => {
                return Err(invalid_part(
                    FILE_PART,
                    "duplicate",
                    "Send one file per import.",
                ));
            }
            other => {
                return Err(invalid_part(
                    other.unwrap_or_default(),
                    "unknown_field",
                    "The form takes one part, `file`.",
                ));
            }
        }
    }
    file.ok_or_else(|| {
        invalid_part(
            FILE_PART,
            "required",
            "The form has no `file` part holding the CSV.",
        )
    })
}

#[cfg(test)]
mod tests {
    use actix_web::http::header::{HeaderName, HeaderValue};

    use super::*;

    fn headers(content_type: &str) -> HeaderMap {
        let mut map = HeaderMap::new();
        map.insert(
            HeaderName::from_static("content-type"),
            HeaderValue::from_str(content_type).unwrap_or_else(|_| unreachable!()),
        );
        map
    }

    fn chunks(parts: Vec<web::Bytes>) -> impl Stream<Item = Result<web::Bytes, String>> + Unpin {
        futures_util::stream::iter(parts.into_iter().map(Ok))
    }

    #[actix_web::test]
    async fn a_body_read_whole_is_taken_without_a_copy() {
        // As the idempotency middleware hands it on: one frozen buffer.
        let mut read = web::BytesMut::with_capacity(1024);
        read.extend_from_slice(b"email\na@example.com\n");
        let whole = read.freeze();
        let at = whole.as_ptr();
        let file = collect(chunks(vec![whole]), 1024).await;
        let file = file.unwrap_or_else(|_| unreachable!());
        assert_eq!(file, b"email\na@example.com\n");
        assert_eq!(file.as_ptr(), at, "the buffer was copied");
    }

    #[actix_web::test]
    async fn chunks_are_joined_in_order_and_held_to_the_limit() {
        let parts = vec![
            web::Bytes::from_static(b"email\n"),
            web::Bytes::from_static(b"a@example.com\n"),
            web::Bytes::from_static(b"b@example.com\n"),
        ];
        let file = collect(chunks(parts), 0).await;
        assert_eq!(
            file.unwrap_or_else(|_| unreachable!()),
            b"email\na@example.com\nb@example.com\n"
        );
        let half = web::Bytes::from(vec![b'x'; MAX_FILE / 2 + 1]);
        for parts in [
            vec![half.clone(), half.clone()],
            vec![web::Bytes::from(vec![b'x'; MAX_FILE + 1])],
        ] {
            let err = collect(chunks(parts), 0).await.err();
            assert_eq!(err.map(|e| e.status), Some(StatusCode::PAYLOAD_TOO_LARGE));
        }
    }

    #[test]
    fn media_types_are_matched_without_regard_to_case_or_parameters() {
        assert_eq!(kind(&headers("text/csv")), Some(Kind::Csv));
        assert_eq!(kind(&headers("TEXT/CSV; charset=utf-8")), Some(Kind::Csv));
        assert_eq!(kind(&headers("Application/CSV")), Some(Kind::Csv));
        assert_eq!(
            kind(&headers("multipart/form-data; boundary=x")),
            Some(Kind::Multipart)
        );
        assert_eq!(
            kind(&headers("Multipart/Form-Data; boundary=x")),
            Some(Kind::Multipart)
        );
        assert_eq!(kind(&headers("application/json")), None);
        assert_eq!(kind(&headers("text/csvx")), None);
        assert_eq!(kind(&HeaderMap::new()), None);
    }
}
