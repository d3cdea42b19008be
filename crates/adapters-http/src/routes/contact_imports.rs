//! `/api/v1/contacts/imports`: CSV files accepted at once as jobs (202), worked through in
//! the background; the job shows its progress and every row's problems.

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, get, post, web};
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use nexus_application::ImportUseCases;
use nexus_domain::ImportId;
use nexus_ports::imports::{ImportJob, OnDuplicate};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::auth::Auth;
use crate::problem::{ApiError, for_status};
use crate::responses::{
    BadRequest, Conflict, Forbidden, NotFound, PayloadTooLarge, ServiceUnavailable, Unauthorized,
    Unprocessable, UnsupportedMediaType,
};

/// Largest CSV accepted (50 MB).
pub const MAX_UPLOAD: usize = nexus_application::imports::MAX_BYTES;

type Imports = web::Data<dyn ImportUseCases>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OnDuplicateDto {
    /// Leave the existing contact as it is (the row counts as skipped).
    Skip,
    /// Merge the row's non-empty cells into the existing contact.
    Update,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ImportParams {
    /// What to do with a row whose email belongs to an existing contact (default `skip`).
    pub on_duplicate: Option<OnDuplicateDto>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ImportStatusDto {
    Pending,
    Running,
    Completed,
    Failed,
}

/// One problem of one row (row 1 is the first line after the header).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ImportRowError {
    pub row: i64,
    /// The field (`email`, `customFields.seats`, ...), empty for the whole row.
    pub field: String,
    pub message: String,
}

/// An import job and its progress.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImportJobDto {
    pub id: Uuid,
    pub status: ImportStatusDto,
    pub on_duplicate: OnDuplicateDto,
    /// Data rows in the file, once the worker has read it.
    pub total_rows: Option<i64>,
    pub rows_processed: i64,
    pub created: i64,
    pub updated: i64,
    /// Duplicates left alone (`onDuplicate=skip`) and updates that changed nothing.
    pub skipped: i64,
    pub failed: i64,
    /// The first 1,000 row errors (the counters are exact).
    pub errors: Vec<ImportRowError>,
    /// Why a failed job stopped (e.g. an unreadable file).
    pub failure: Option<String>,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

impl From<ImportJob> for ImportJobDto {
    fn from(j: ImportJob) -> Self {
        use nexus_ports::imports::ImportStatus as S;
        Self {
            id: j.id.as_uuid(),
            status: match j.status {
                S::Pending => ImportStatusDto::Pending,
                S::Running => ImportStatusDto::Running,
                S::Completed => ImportStatusDto::Completed,
                S::Failed => ImportStatusDto::Failed,
            },
            on_duplicate: match j.on_duplicate {
                OnDuplicate::Skip => OnDuplicateDto::Skip,
                OnDuplicate::Update => OnDuplicateDto::Update,
            },
            total_rows: j.total_rows,
            rows_processed: j.processed,
            created: j.created,
            updated: j.updated,
            skipped: j.skipped,
            failed: j.failed,
            errors: j
                .errors
                .into_iter()
                .map(|e| ImportRowError {
                    row: e.row,
                    field: e.field,
                    message: e.message,
                })
                .collect(),
            failure: j.failure,
            created_at: j.created_at,
            finished_at: j.finished_at,
        }
    }
}

/// Import contacts from a CSV file (`text/csv`, UTF-8, up to 50 MB).
///
/// The header maps columns to fields by name or a common alias, ignoring case and
/// punctuation (`firstName`/`First Name`, `lastName`/`Surname`, `email`/`E-mail`,
/// `phone`/`Mobile`, `company`, `lifecycleStage`/`Stage`, `ownerId`, `tags` separated by
/// `;`), and to custom fields by `customFields.<key>`, key or label; other columns are
/// ignored. `firstName` and `lastName` columns are required. Rows are validated like
/// `createContact`; a bad row is reported in the job and never stops the others.
/// Contacts are deduplicated by email (`onDuplicate`).
#[utoipa::path(
    operation_id = "importContacts",
    tag = "contacts",
    params(
        ImportParams,
        ("Idempotency-Key" = Option<String>, Header, description = "Retry safely: the same key and file within 24 h replays the first response."),
    ),
    request_body(content = String, content_type = "text/csv", description = "The CSV file, header first."),
    responses(
        (status = 202, description = "Accepted: the job runs in the background; poll `Location`.", body = ImportJobDto,
         headers(("Location" = String, description = "The job."))),
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
#[post("/imports")]
pub async fn import_contacts(
    req: HttpRequest,
    auth: Auth,
    imports: Imports,
    params: web::Query<ImportParams>,
    mut body: web::Payload,
) -> Result<HttpResponse, ApiError> {
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
    if essence != "text/csv" && essence != "application/csv" {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "Send the file as text/csv.",
        ));
    }
    let too_large = || {
        let mut err = for_status(StatusCode::PAYLOAD_TOO_LARGE);
        err.detail = "A CSV import is at most 50 MB.".into();
        err
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    // A declared size over the limit is refused before a byte is read; a declared size
    // within it sizes the buffer once, instead of growing it by copies to twice the file.
    if declared.is_some_and(|n| n > MAX_UPLOAD) {
        return Err(too_large());
    }
    let mut csv = Vec::with_capacity(declared.unwrap_or(0));
    while let Some(chunk) = body.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::malformed(format!("The body could not be read: {e}.")))?;
        if csv.len() + chunk.len() > MAX_UPLOAD {
            return Err(too_large());
        }
        csv.extend_from_slice(&chunk);
    }
    let on_duplicate = match params.on_duplicate {
        Some(OnDuplicateDto::Update) => OnDuplicate::Update,
        _ => OnDuplicate::Skip,
    };
    let job = imports.start(auth.0, csv, on_duplicate).await?;
    Ok(HttpResponse::Accepted()
        .insert_header((
            header::LOCATION,
            format!("/api/v1/contacts/imports/{}", job.id),
        ))
        .json(ImportJobDto::from(job)))
}

/// An import job: status, counters and row errors.
#[utoipa::path(
    operation_id = "getContactImport",
    tag = "contacts",
    params(("id" = Uuid, Path, description = "Import job id.")),
    responses(
        (status = 200, description = "The job.", body = ImportJobDto),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 503, response = ServiceUnavailable),
    )
)]
#[get("/imports/{id}")]
pub async fn get_contact_import(
    auth: Auth,
    imports: Imports,
    path: web::Path<Uuid>,
) -> Result<web::Json<ImportJobDto>, ApiError> {
    let job = imports
        .get(auth.0, ImportId::from_uuid(path.into_inner()))
        .await?;
    Ok(web::Json(job.into()))
}
